"""``ltc-controller node KIND``: run one node (the ROS executables do the same).

The kinds come from :data:`ltc_controller.nodes.registry.NODE_KINDS`.
"""

from __future__ import annotations

import argparse

from ltc_controller.nodes.registry import NODE_KINDS, run_node

NAME = "node"
_KINDS = tuple(NODE_KINDS)
HELP = f"run one node: {', '.join(_KINDS[:-1])} or {_KINDS[-1]} (then --ros-args ...)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=_KINDS)
    p.add_argument("--log", default=None, help="simulator: write the run log here on exit")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    return run_node(args.kind, ros_args, args.log)
