"""Speed of the drone simulator with its camera, against real time and against the car's.

One 30 s episode (simulation time) per world: the perturbed expert commands at the training camera
rate (20 Hz, ``training/recording.py``), and every command tick renders the 200 x 78 front camera
and keeps the frame (as ``record`` does before writing the bag). Measured on one core: the OpenGL
software rasteriser is limited to one thread (``LP_NUM_THREADS=1``, set before MuJoCo loads), and
CPU time is the process's. Reported per run:

- real-time factor per CPU second: simulated seconds / process CPU seconds (target >= 5);
- wall seconds to record the 30 s episode;
- the same without the camera (physics, controller, expert only);
- reference, in the same run: the car's ``LaneKeepingSim`` with its camera at the same rate and
  image size, same 30 s; ratio drone / car.

Run: ``python bench/bench_drone_sim.py [--episodes N] [--seconds S]`` (default 3 worlds of 30 s,
under a minute).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ["LP_NUM_THREADS"] = "1"

import argparse
import platform
import time

import numpy as np

from ltc_controller.sim.drone.scenario import PerturbedDroneExpert, make_drone_sim
from ltc_controller.sim.lane_sim import LaneKeepingSim

CAMERA_HZ = 20.0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def drone_episode(seed: int, seconds: float, camera: bool) -> tuple[float, float, int]:
    """(CPU s, wall s, frames) for one episode; the simulator is built outside the timing."""
    sim = make_drone_sim("clean", seed, render_enabled=camera)
    ex = PerturbedDroneExpert(seed=seed)
    frames: list[np.ndarray] = []
    dt = 1.0 / CAMERA_HZ
    c0, w0 = time.process_time(), time.perf_counter()
    while sim.time < seconds - 1e-9:
        if camera:
            frames.append(sim.render())
        sim.set_command(*ex.command(sim).executed)
        sim.step(dt)
    c1, w1 = time.process_time(), time.perf_counter()
    sim.close()
    return c1 - c0, w1 - w0, len(frames)


def car_episode(seed: int, seconds: float) -> tuple[float, float, int]:
    sim = LaneKeepingSim(seed, initial_speed=5.0, record_history=False)
    frames: list[np.ndarray] = []
    dt = 1.0 / CAMERA_HZ
    c0, w0 = time.process_time(), time.perf_counter()
    while sim.time < seconds - 1e-9:
        frames.append(sim.render())
        sim.set_command(*sim.expert_command(4.0, 5.0))
        sim.step(dt)
    c1, w1 = time.process_time(), time.perf_counter()
    sim.close()
    return c1 - c0, w1 - w0, len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    rows = []
    for name, fn in (
        ("drone + camera", lambda s: drone_episode(s, a.seconds, True)),
        ("drone, no camera", lambda s: drone_episode(s, a.seconds, False)),
        ("car + camera (reference)", lambda s: car_episode(s, a.seconds)),
    ):
        res = [fn(s) for s in range(a.episodes)]
        cpu = float(np.median([r[0] for r in res]))
        wall = float(np.median([r[1] for r in res]))
        rows.append((name, a.seconds / cpu, wall, res[0][2]))
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; one rasteriser thread; "
        f"camera 200x78 @ {CAMERA_HZ:.0f} Hz"
    )
    print(f"{'run':28s} {'RTF/CPU-s':>10s} {'wall s/ep':>10s} {'frames':>7s}")
    for name, rtf, wall, frames in rows:
        print(f"{name:28s} {rtf:10.1f} {wall:10.2f} {frames:7d}")
    drone, car = rows[0][1], rows[2][1]
    print(
        f"drone + camera vs real time: {drone:.1f}x (target >= 5x); "
        f"vs car + camera: {drone / car:.2f}x"
    )
    print(f"a {a.seconds:.0f} s drone episode with its camera recorded in {rows[0][2]:.1f} s wall")


if __name__ == "__main__":
    main()
