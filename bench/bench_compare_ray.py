"""Speed-up of `compare`'s jobs from 1 to 2 Ray workers on this machine.

The same set of evaluation jobs (the bundled NCP-19 driving one episode per condition and track,
``training.comparison.evaluate_job``, exactly what `compare` runs) is run twice through
:func:`~ltc_controller.training.jobs.run_jobs` on a fresh local Ray instance with a fresh cache:
once with ``num_cpus=1`` (one task at a time) and once with ``num_cpus=2``. Printed: wall time of
each, the per-task mean, and the ratio (1 worker / 2 workers; ideal 2.0 on 2 idle cores). Ray's
start-up is inside both walls, as a user sees it.

Run: ``python bench/bench_compare_ray.py [--episodes K] [--distance-m D]`` (default 2 tracks x 4
conditions x 60 m: 8 jobs, about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

from ltc_controller.training.evaluation import EvalConfig
from ltc_controller.training.jobs import Job, JobCache, RunStats, run_jobs

POLICY = Path(__file__).resolve().parents[1] / "ltc_controller" / "policies"
CONDITIONS = ("clean", "noise_0.2", "dim", "sharp_curves")


def jobs(episodes: int, distance_m: float) -> list[Job]:
    policy = str(POLICY / "ncp19_lane_keeping.safetensors")
    cfg = asdict(EvalConfig(conditions=CONDITIONS, episodes=episodes, distance_m=distance_m))
    return [
        Job(
            "evaluate",
            "ltc_controller.training.comparison:evaluate_job",
            {
                "scenario": "car",
                "label": "NCP-19",
                "policy": policy,
                "policy_id": "bundled",
                "condition": c,
                "episode": k,
                "eval_config": cfg,
            },
            label=f"{c} ep {k}",
        )
        for c in CONDITIONS
        for k in range(episodes)
    ]


def run(num_cpus: int, work: list[Job]) -> RunStats:
    st = RunStats()
    with tempfile.TemporaryDirectory() as d:
        run_jobs(work, JobCache(d), num_cpus=num_cpus, progress=False, log=lambda s: None, stats=st)
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--distance-m", type=float, default=60.0)
    a = ap.parse_args()
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = jobs(a.episodes, a.distance_m)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(work)} jobs")
    one = run(1, work)
    two = run(2, work)
    for name, st in (("1 worker ", one), ("2 workers", two)):
        mean = sum(st.task_wall_s) / max(len(st.task_wall_s), 1)
        print(f"{name}: wall {st.wall_s:6.1f} s, {st.ran} jobs, mean task {mean:5.1f} s")
    print(f"speed-up 1 -> 2 workers: {one.wall_s / two.wall_s:.2f}x (ideal 2.00x on 2 idle cores)")


if __name__ == "__main__":
    main()
