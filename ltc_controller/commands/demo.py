"""``ltc-controller demo``: the closed-loop demo on its built-in defaults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ltc_controller.demo import DEMO_TRACK_SEED
from ltc_controller.extras import MissingExtra, require

NAME = "demo"
HELP = (
    "closed-loop demo: simulator, ltc_policy and safety_fallback as processes over DDS on "
    "loopback; prints a summary and writes a plot"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=20.0, help="driving time in s (default 20)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("demo_out"),
        help="folder for the logs, run log, summary and plot (default ./demo_out)",
    )
    p.add_argument(
        "--policy", type=str, default="", help="policy file (.safetensors); default: bundled"
    )
    p.add_argument(
        "--track-seed",
        type=int,
        default=DEMO_TRACK_SEED,
        help=f"seed of the generated track (default {DEMO_TRACK_SEED}: a curve within 20 s)",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="DDS domain (default: ROS_DOMAIN_ID, else one derived from the pid)",
    )


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller demo", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from ltc_controller.demo import run_demo

    return run_demo(
        duration_s=args.duration,
        output=args.output,
        policy=args.policy,
        track_seed=args.track_seed,
        domain_id=args.domain_id,
    )
