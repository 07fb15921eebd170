"""Speed of ``record --scenario drone``: a 30 s episode into a rosbag2, against the simulator alone.

Each episode flies a ``range`` world (target 14-20 m away, so the 30 s are flown before the episode
ends at the target) under the perturbed expert with ``after_reach_s`` = the episode length, and
writes every frame, both setpoints and the odometry (``training/drone_recording.py``). Reported
per storage (MCAP, sqlite3; raw frames):

- wall seconds per 30 s episode and the real-time factor (simulated s / wall s);
- reference, in the same run: the same episodes with the camera but no bag
  (``bench_drone_sim.py``'s loop, the simulator built outside the timing); ratio recording /
  reference = what writing the bag and building each world and renderer (about 0.8 s an
  episode) cost.

One rasteriser thread (``LP_NUM_THREADS=1``). Run: ``python bench/bench_drone_record.py
[--episodes N] [--seconds S]`` (default 2 episodes of 30 s, under a minute).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ["LP_NUM_THREADS"] = "1"

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ltc_controller.sim.drone.scenario import PerturbedDroneExpert, make_drone_sim
from ltc_controller.training.drone_recording import DroneRecordConfig, record_drone

CAMERA_HZ = 20.0
CONDITION = "range"


def reference(seed: int, seconds: float) -> tuple[float, float]:
    """(wall s, simulated s) of the simulator with its camera, frames kept, no bag."""
    sim = make_drone_sim(CONDITION, seed, record_history=False)
    ex = PerturbedDroneExpert(seed=seed)
    frames: list[np.ndarray] = []
    w0 = time.perf_counter()
    while sim.time < seconds - 1e-9 and not sim.metrics.collided:
        frames.append(sim.render())
        sim.set_command(*ex.command(sim).executed)
        sim.step(1.0 / CAMERA_HZ)
    wall = time.perf_counter() - w0
    sim.close()
    return wall, sim.time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, one rasteriser thread; camera 200x78 @ {CAMERA_HZ:.0f} Hz")
    ref_wall, ref_sim = 0.0, 0.0
    for k in range(a.episodes):
        w, s = reference(1000 + k, a.seconds)
        ref_wall, ref_sim = ref_wall + w, ref_sim + s
    ref_rtf = ref_sim / ref_wall
    print(f"{'run':26s} {'sim s/ep':>9s} {'wall s/ep':>10s} {'RTF':>6s} {'frames':>7s}")
    print(
        f"{'sim + camera (reference)':26s} {ref_sim / a.episodes:9.1f} "
        f"{ref_wall / a.episodes:10.2f} {ref_rtf:6.1f} {'':>7s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("mcap", "sqlite3"):
            cfg = DroneRecordConfig(
                episodes=a.episodes,
                episode_s=a.seconds,
                condition=CONDITION,
                after_reach_s=a.seconds,
            )
            s = record_drone(Path(tmp) / storage, cfg, storage=storage)
            rtf = s["sim_s"] / s["wall_s"]
            print(
                f"{'record ' + storage:26s} {s['sim_s'] / a.episodes:9.1f} "
                f"{s['wall_s'] / a.episodes:10.2f} {rtf:6.1f} {s['frames']:7d}"
                f"   ratio to reference {rtf / ref_rtf:.2f}"
            )


if __name__ == "__main__":
    main()
