"""Batch-1 control step on every backend: eager torch vs TorchScript vs ONNX Runtime vs numba.

Every architecture on the NCP paper's head (32 features, 1 output), float32, one thread; the step
graph ``(features, state, elapsed) -> (outputs, new_state)`` with the state carried, and the conv
head ``(1, 3, 78, 200) -> (1, 32)``. Same weights in every column.

Run: ``python bench/bench_model_export.py [--steps N]``; prints microseconds per call (best of 7,
candidates timed in turns) and the ratio eager / ONNX Runtime.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from bench_ltc_step import Stepper, machine, time_calls

from ltc_controller.models.export import OnnxStepModel, export_torchscript
from ltc_controller.models.fast import FastStepModel
from ltc_controller.models.policy import ARCHITECTURES, Policy, PolicyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(1, 32)
    e = torch.full((1, 1), 0.05)
    print(machine())
    print("batch-1 step, us per call (best of 7); eager/ort = speed-up of ONNX Runtime")
    print(f"{'step':<10} {'eager':>8} {'script':>8} {'ort':>8} {'numba':>8} {'eager/ort':>10}")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in ARCHITECTURES:
            policy = Policy.from_config(PolicyConfig(architecture=arch), seed=0).eval()
            ort = OnnxStepModel.from_policy(policy)
            script = export_torchscript(policy, Path(tmp) / f"{arch}.pt")
            with torch.inference_mode():
                h0 = policy.initial_state(1)
                fns: dict[str, Any] = {
                    "eager": Stepper(lambda h, _, p=policy: p.step(x, h, 0.05), h0),
                    "script": Stepper(lambda h, _, s=script: s(x, h, e), h0),
                    "ort": Stepper(lambda h, _, m=ort: m.step(x, h, 0.05), h0),
                }
                if arch in ("ncp_ltc", "ltc_fc", "cfc", "ncp_cfc"):
                    fast = FastStepModel(policy)
                    fns["numba"] = Stepper(lambda h, _, f=fast: f.step(x, h, 0.05), h0.double())
                t = time_calls(fns, args.steps)
            numba = f"{t['numba']:>8.1f}" if "numba" in t else f"{'-':>8}"
            print(
                f"{arch:<10} {t['eager']:>8.1f} {t['script']:>8.1f} {t['ort']:>8.1f} {numba} "
                f"{t['eager'] / t['ort']:>10.2f}"
            )
        policy = Policy.from_config(PolicyConfig(), seed=0).eval()
        ort = OnnxStepModel.from_policy(policy)
        images = torch.rand(1, 3, 78, 200)
        with torch.inference_mode():
            t = time_calls(
                {"eager": lambda: policy.features(images), "ort": lambda: ort.features(images)},
                max(args.steps // 20, 20),
                warmup=20,
            )
        print(
            f"{'conv head':<10} {t['eager']:>8.1f} {'-':>8} {t['ort']:>8.1f} {'-':>8} "
            f"{t['eager'] / t['ort']:>10.2f}"
        )


if __name__ == "__main__":
    main()
