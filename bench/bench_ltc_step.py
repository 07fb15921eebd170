"""Batch-1 control-step cost: ours (torch, numba) vs ncps, measured in the same run.

19-neuron NCP(12, 6, 1, 6, 4, 6, 6), 32 inputs, float32 tensors in and out, one thread, the way
the runtime calls a model (``torch.inference_mode()``, ``elapsed = step_s``, the state carried).
Same weights in every column. Rows:

* LTC, 6 ODE unfolds, softplus (implicit) and explicit constraints: ncps ``LTCCell``, our
  ``LTCCell`` (column "torch"), our numba step as the runtime calls it
  (``FastStepModel.step``: tensors in/out, output scaling included; column "numba") and its raw
  kernel (NumPy in/out; column "kernel");
* CfC on the same NCP wiring (ncps ``WiredCfCCell``) and fully connected CfC(19), backbone
  128, projected to 1 output (ncps ``CfCCell`` + ``Linear``).

Run: ``python bench/bench_ltc_step.py [--steps N]``; prints one table (microseconds per step,
best of 7 repeats, candidates timed in turns) and the ratios ncps / ours.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import ncps.torch as nct
import ncps.wirings as ncw
import torch

from ltc_controller.models.fast import FastStepModel
from ltc_controller.models.policy import Policy, PolicyConfig


def time_calls(
    fns: dict[str, Callable[[], Any]], steps: int, repeats: int = 7, warmup: int = 200
) -> dict[str, float]:
    """Best-of-``repeats`` mean time of each ``fn()`` in microseconds.

    The candidates are timed in turns (one loop of each per repeat), so a load change on a
    shared machine hits all of them alike and the ratios stay meaningful.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return {name: t * 1e6 for name, t in best.items()}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU, versions, torch threads."""
    import numba
    import numpy

    try:
        import onnxruntime

        ort = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = ""
    return (
        f"machine: {cpu_name()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}, numba {numba.__version__}{ort}, "
        f"threads {torch.get_num_threads()}"
    )


class Stepper:
    """Carries the state between calls, as the runtime does."""

    def __init__(self, step: Callable[[Any, Any], tuple[Any, Any]], state: Any) -> None:
        self.step, self.state = step, state

    def __call__(self) -> None:
        _, self.state = self.step(self.state, None)


def _time_row(
    reference: Any, ours: Any, policy: Policy, x: torch.Tensor, steps: int
) -> dict[str, float]:
    fast = FastStepModel(policy)
    kernel = fast.kernel
    x_np = x.numpy()
    with torch.inference_mode():
        h0 = policy.initial_state(1)
        return time_calls(
            {
                "ncps": Stepper(lambda h, _: reference(x, h, 0.05), h0),
                "torch": Stepper(lambda h, _: ours(x, h, 0.05), h0),
                "numba": Stepper(lambda h, _: fast.step(x, h, 0.05), h0.double()),
                "kernel": Stepper(lambda h, _: kernel.step(x_np, h, 0.05), h0.double().numpy()),
            },
            steps,
        )


def _rows(steps: int) -> list[tuple[str, float, float, float, float]]:
    x = torch.randn(1, 32)
    rows = []
    for name, config in (
        ("LTC softplus", PolicyConfig()),
        ("LTC explicit", PolicyConfig(implicit_param_constraints=False)),
        ("CfC wired NCP", PolicyConfig(architecture="ncp_cfc")),
        ("CfC FC(19)+proj", PolicyConfig(architecture="cfc")),
    ):
        policy = Policy.from_config(config, seed=0).eval()
        core: Any = policy.core
        if config.architecture == "ncp_ltc":
            wiring = ncw.NCP(12, 6, 1, 6, 4, 6, 6)
            wiring.build(32)
            reference: Any = nct.LTCCell(
                wiring, implicit_param_constraints=config.implicit_param_constraints
            )
            reference.load_state_dict(core.state_dict())
            ours = core
        elif config.architecture == "ncp_cfc":
            reference = nct.CfC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6)).rnn_cell
            reference.load_state_dict(core.rnn_cell.state_dict())
            ours = core.rnn_cell
        else:
            full = nct.CfC(32, 19, proj_size=1)
            full.load_state_dict(core.state_dict())
            cell, fc = full.rnn_cell, full.fc

            def reference(inp: Any, h: Any, ts: float, cell: Any = cell, fc: Any = fc) -> Any:
                y, h = cell(inp, h, ts)
                return fc(y), h

            def ours(
                inp: Any, h: Any, ts: float, cell: Any = core.rnn_cell, fc: Any = core.fc
            ) -> Any:
                y, h = cell(inp, h, ts)
                return fc(y), h

        t = _time_row(reference, ours, policy, x, steps)
        rows.append((name, t["ncps"], t["torch"], t["numba"], t["kernel"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = _rows(args.steps)
    print(machine())
    print("batch-1 control step, us per step (best of 7), ratio = ncps / ours")
    print(
        f"{'model':<16} {'ncps':>8} {'torch':>8} {'numba':>8} {'kernel':>8} "
        f"{'ncps/torch':>11} {'ncps/numba':>11} {'ncps/kernel':>12}"
    )
    for name, t_ref, t_torch, t_fast, t_kernel in rows:
        print(
            f"{name:<16} {t_ref:>8.1f} {t_torch:>8.1f} {t_fast:>8.1f} {t_kernel:>8.1f} "
            f"{t_ref / t_torch:>11.2f} {t_ref / t_fast:>11.1f} {t_ref / t_kernel:>12.1f}"
        )


if __name__ == "__main__":
    main()
