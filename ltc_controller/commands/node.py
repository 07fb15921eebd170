"""``ltc-controller node KIND``: run one node (the ROS executables do the same)."""

from __future__ import annotations

import argparse

NAME = "node"
HELP = "run one node: ltc_policy, safety_fallback or simulator (then --ros-args ...)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ltc_controller.cli import NODE_KINDS

    p.add_argument("kind", choices=NODE_KINDS)
    p.add_argument("--log", default=None, help="simulator: write the run log here on exit")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.cli import run_node

    return run_node(args.kind, ros_args, args.log)
