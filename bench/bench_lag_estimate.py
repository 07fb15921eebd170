"""What the command–image lag estimate adds to reading a bag for training, and how well it finds
a known lag, measured in the same run.

A simulator recording (``record``: perturbed expert, 20 Hz, ``--episodes`` x ``--episode-s``) is
read with :func:`~ltc_controller.training.bag.read_demonstrations` with and without the estimate
(reading = decoding, resizing and pairing every frame: the reference), best of 3 each, in turns.
Then the same frames are scored with the command stamps shifted by known lags: the table gives
each estimate, its standard error and its error.

Run: ``python bench/bench_lag_estimate.py [--episodes 3] [--episode-s 40]``; prints the machine,
the read times and their ratio, and the lag table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np

from ltc_controller.training.bag import read_demonstrations
from ltc_controller.training.lag import estimate_command_lag
from ltc_controller.training.recording import RecordConfig, record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--episode-s", type=float, default=40.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bag"
        t0 = time.perf_counter()
        record(bag, RecordConfig(episodes=args.episodes, episode_s=args.episode_s, seed=7))
        rec_s = time.perf_counter() - t0
        best = {True: float("inf"), False: float("inf")}
        demos = None
        for _ in range(3):
            for est in (False, True):  # in turns: a load change hits both alike
                t0 = time.perf_counter()
                d = read_demonstrations(bag, "/camera/image_raw", "/expert_cmd", estimate_lag=est)
                best[est] = min(best[est], time.perf_counter() - t0)
                if est:
                    demos = d
    assert demos is not None
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"bag: {len(demos)} frames ({args.episodes} x {args.episode_s:g} s), "
        f"recorded in {rec_s:.1f} s"
    )
    print("| read | s (best of 3) |")
    print("|---|---:|")
    print(f"| without lag estimate (reference) | {best[False]:.2f} |")
    print(f"| with lag estimate | {best[True]:.2f} |")
    print(f"ratio with / without: {best[True] / best[False]:.2f}")
    stamps = demos.stamps_ns
    cmds = demos.targets.astype(np.float64)
    print("\n| true lag (ms) | estimate (ms) | standard error (ms) | error (ms) |")
    print("|---:|---:|---:|---:|")
    for lag_ms in (0, 25, 50, 100, -50):
        e = estimate_command_lag(demos.images, stamps, stamps + lag_ms * 1_000_000, cmds)
        err = e.lag_s * 1e3 - lag_ms
        print(f"| {lag_ms} | {e.lag_s * 1e3:.1f} | {e.lag_se_s * 1e3:.1f} | {err:+.1f} |")


if __name__ == "__main__":
    main()
