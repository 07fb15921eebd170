"""``ltc-controller``: the command-line entry point, and the node executables.

ltc-controller demo [--duration S] [--output DIR] [--policy FILE]
ltc-controller node {ltc_policy,safety_fallback,simulator} [--log FILE] [--ros-args ...]
ltc_policy [--ros-args ...]          # same as `ltc-controller node ltc_policy`
safety_fallback [--ros-args ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

NODE_KINDS = ("ltc_policy", "safety_fallback", "simulator")


def run_node(kind: str, argv: Sequence[str], log_path: str | None = None) -> int:
    """Run one node until SIGINT/SIGTERM. Returns the process exit status: 0 on a clean stop,
    2 when the node could not start (invalid parameter, unreadable policy file; the message
    names the cause)."""
    from ltc_controller.models.policy_file import PolicyFileError
    from ltc_controller.nodes.params import ParameterError
    from ltc_controller.transport import create_node
    from ltc_controller.transport.ros_args import RosArgsError

    try:
        node, rargs = create_node(kind, list(argv))
    except RosArgsError as e:
        print(f"{kind}: {e}", file=sys.stderr)
        return 2
    try:
        obj: object
        if kind == "ltc_policy":
            from ltc_controller.nodes.policy_node import PolicyNode

            obj = PolicyNode(node, dict(rargs.params))
        elif kind == "safety_fallback":
            from ltc_controller.nodes.safety_node import SafetyNode

            obj = SafetyNode(node, dict(rargs.params))
        else:
            from ltc_controller.nodes.simulator import SimulatorNode

            obj = SimulatorNode(node, dict(rargs.params))
    except (ParameterError, PolicyFileError) as e:
        print(f"{kind}: {e}", file=sys.stderr)
        node.shutdown()
        return 2
    try:
        node.spin()
    finally:
        if log_path is not None and hasattr(obj, "write_log"):
            obj.write_log(Path(log_path))
        node.shutdown()
    return 0


def ltc_policy_main(argv: Sequence[str] | None = None) -> int:
    return run_node("ltc_policy", sys.argv[1:] if argv is None else argv)


def safety_fallback_main(argv: Sequence[str] | None = None) -> int:
    return run_node("safety_fallback", sys.argv[1:] if argv is None else argv)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # Everything from --ros-args on belongs to the node, not to argparse.
    ros_tail: list[str] = []
    if "--ros-args" in args_in:
        i = args_in.index("--ros-args")
        args_in, ros_tail = args_in[:i], args_in[i:]

    ap = argparse.ArgumentParser(prog="ltc-controller", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser(
        "demo",
        help="closed-loop demo: simulator, policy and safety node as "
        "processes over DDS on loopback; prints a summary and writes a plot",
    )
    d.add_argument("--duration", type=float, default=20.0, help="driving time in s (default 20)")
    d.add_argument(
        "--output",
        type=Path,
        default=Path("demo_out"),
        help="folder for the run log, summary and plot (default ./demo_out)",
    )
    d.add_argument(
        "--policy",
        type=str,
        default="",
        help="policy file (.safetensors); default: the bundled policy",
    )
    d.add_argument("--track-seed", type=int, default=7, help="seed of the generated track")
    d.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="DDS domain (default: ROS_DOMAIN_ID, else one derived from the pid)",
    )

    n = sub.add_parser("node", help="run one node (the ROS executables do the same)")
    n.add_argument("kind", choices=NODE_KINDS)
    n.add_argument("--log", default=None, help="simulator: write the run log here on exit")

    a = ap.parse_args(args_in)
    if a.cmd == "node":
        return run_node(a.kind, ros_tail, a.log)
    if a.cmd == "demo":
        from ltc_controller.demo import run_demo

        return run_demo(
            duration_s=a.duration,
            output=a.output,
            policy=a.policy,
            track_seed=a.track_seed,
            domain_id=a.domain_id,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
