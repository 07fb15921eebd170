"""Sequence-training throughput: ours vs ncps, B=16 sequences of T=32 steps, one thread.

One training iteration = forward over the sequence, MSE loss on every step's output, backward,
Adam step. Same initial weights in both columns; elapsed time 1.0 per element for both (ncps's
wrappers cannot take per-sample timespans for B > 1). Models on 32 input features, 1 output:

* LTC on the NCP-19 wiring, 6 unfolds, softplus constraints (ncps ``LTC`` vs our ``LTC``);
* CfC on the NCP-19 wiring (ncps ``CfC(32, wiring)`` vs ours);
* CfC(19) fully connected, backbone 128, ``proj_size=1``.

Run: ``python bench/bench_model_training.py [--iterations N]``; prints sequences per second and
the ratio ours / ncps (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import ncps.torch as nct
import ncps.wirings as ncw
import torch
from bench_ltc_step import machine, time_calls

from ltc_controller.models.cfc import CfC
from ltc_controller.models.ltc import LTC
from ltc_controller.models.wiring import NCP

BATCH, STEPS, FEATURES = 16, 32, 32


def _trainer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def iteration() -> None:
        out, _ = model(x)
        loss = torch.nn.functional.mse_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return iteration


def _pairs() -> list[tuple[str, Any, Any]]:
    pairs = []
    torch.manual_seed(0)
    reference = nct.LTC(FEATURES, ncw.NCP(12, 6, 1, 6, 4, 6, 6))
    ours: torch.nn.Module = LTC(FEATURES, NCP(12, 6, 1, 6, 4, 6, 6))
    ours.load_state_dict(reference.state_dict())
    pairs.append(("LTC NCP-19", reference, ours))
    reference = nct.CfC(FEATURES, ncw.NCP(12, 6, 1, 6, 4, 6, 6))
    ours = CfC(FEATURES, NCP(12, 6, 1, 6, 4, 6, 6))
    ours.load_state_dict(reference.state_dict())
    pairs.append(("CfC wired NCP-19", reference, ours))
    reference = nct.CfC(FEATURES, 19, proj_size=1)
    ours = CfC(FEATURES, 19, proj_size=1)
    ours.load_state_dict(reference.state_dict())
    pairs.append(("CfC FC(19)+proj", reference, ours))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10, help="iterations per repeat")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, STEPS, FEATURES, generator=gen)
    y = torch.randn(BATCH, STEPS, 1, generator=gen)
    print(machine())
    print(f"training iteration (fwd + bwd + Adam), B={BATCH}, T={STEPS}, best of 5")
    print(f"{'model':<18} {'ncps seq/s':>11} {'ours seq/s':>11} {'ours/ncps':>10}")
    for name, reference, ours in _pairs():
        t = time_calls(
            {"ncps": _trainer(reference, x, y), "ours": _trainer(ours, x, y)},
            args.iterations,
            repeats=5,
            warmup=2,
        )
        ref_rate, our_rate = BATCH * 1e6 / t["ncps"], BATCH * 1e6 / t["ours"]
        print(f"{name:<18} {ref_rate:>11.0f} {our_rate:>11.0f} {our_rate / ref_rate:>10.2f}")


if __name__ == "__main__":
    main()
