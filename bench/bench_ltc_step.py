"""Batch-1 LTC step cost: ours vs ncps LTCCell, measured in the same run.

19-neuron NCP(12, 6, 1, 6, 4, 6, 6), 32 inputs, 6 ODE unfolds, float32, one thread, the way the
runtime calls the cell (``torch.inference_mode()``, ``elapsed = step_s``). Same weights in both.

Run: ``python bench/bench_ltc_step.py [--steps N]``; prints one table.
"""

from __future__ import annotations

import argparse
import platform
import time

import ncps.torch as nct
import ncps.wirings as ncw
import torch

from ltc_controller.models.ltc import LTCCell
from ltc_controller.models.wiring import NCP


def _time_per_step(cell: torch.nn.Module, steps: int, repeats: int = 5) -> float:
    x = torch.randn(1, 32)
    best = float("inf")
    with torch.inference_mode():
        h = torch.zeros(1, 19)
        for _ in range(200):  # warm up
            _, h = cell(x, h, 0.05)
        for _ in range(repeats):
            h = torch.zeros(1, 19)
            start = time.perf_counter()
            for _ in range(steps):
                _, h = cell(x, h, 0.05)
            best = min(best, (time.perf_counter() - start) / steps)
    return best * 1e6


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for implicit in (True, False):
        torch.manual_seed(0)
        wiring = ncw.NCP(12, 6, 1, 6, 4, 6, 6)
        wiring.build(32)
        reference = nct.LTCCell(wiring, implicit_param_constraints=implicit).eval()
        ours = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32, implicit_param_constraints=implicit).eval()
        ours.load_state_dict(reference.state_dict())
        t_ours = _time_per_step(ours, args.steps)
        t_ref = _time_per_step(reference, args.steps)
        mode = "softplus" if implicit else "explicit"
        if implicit:
            print(
                f"machine: {_cpu_name()}, python {platform.python_version()}, "
                f"torch {torch.__version__}, threads {torch.get_num_threads()}"
            )
            print(
                f"{'constraints':<12} {'ours us/step':>13} {'ncps us/step':>13} {'ncps/ours':>10}"
            )
        print(f"{mode:<12} {t_ours:>13.1f} {t_ref:>13.1f} {t_ref / t_ours:>10.2f}")


if __name__ == "__main__":
    main()
