"""``ltc-controller param get|set|list|describe NODE …``: ROS 2 parameter services over DDS.

The same services ``ros2 param`` calls, so this talks to the nodes of this package in DDS mode and
to any ROS 2 node on rmw_cyclonedds_cpp (ROS 2 services do not cross DDS vendors). The domain is
``ROS_DOMAIN_ID``; ``CYCLONEDDS_URI`` configures the network as for the nodes.

Exit status: 0 done; 1 a parameter asked for (get, describe) is not set; 2 bad input: a set the
node refused (read-only, out of range, wrong type, not declared) or a value that does not parse,
bad arguments, or the node's services were not found in time.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

NAME = "param"
HELP = "get, set, list or describe a node's ROS 2 parameters (over DDS, like `ros2 param`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True)
    get = sub.add_parser("get", help="print parameter values")
    get.add_argument("node", help="node name, e.g. /ltc_policy or /car/safety_fallback")
    get.add_argument("names", nargs="+", metavar="name")
    put = sub.add_parser("set", help="set one parameter (value parsed as YAML, as ros2 does)")
    put.add_argument("node")
    put.add_argument("name")
    put.add_argument("value")
    ls = sub.add_parser("list", help="list parameter names")
    ls.add_argument("node")
    ls.add_argument("--prefix", action="append", default=[], help="only names under PREFIX")
    desc = sub.add_parser("describe", help="print parameter descriptors (type, range, …)")
    desc.add_argument("node")
    desc.add_argument("names", nargs="+", metavar="name")
    for sp in (get, put, ls, desc):
        sp.add_argument(
            "--timeout", type=float, default=5.0, help="seconds to find the node (default 5)"
        )


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value)


def _typed_value(text: str, declared: int) -> Any:
    """The value to send for ``text``: parsed as YAML, then fitted to the declared type where
    that is lossless (``20`` for a double is sent as 20.0; any text for a string as text)."""
    from ltc_controller.transport import param_values as pv
    from ltc_controller.transport.ros_args import parse_param_value

    value = parse_param_value(text, text)
    if declared == pv.DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if declared == pv.STRING and not isinstance(value, str):
        return text
    return value


def _describe(d: dict[str, Any]) -> list[str]:
    from ltc_controller.transport import param_values as pv

    lines = [f"Parameter name: {d['name']}", f"  Type: {pv.TYPE_NAMES.get(d['type'], d['type'])}"]
    if d["description"]:
        lines.append(f"  Description: {d['description']}")
    lines.append("  Constraints:")
    for lo, hi, _step in d["floating_point_range"] + d["integer_range"]:
        if not (isinstance(lo, float) and math.isinf(lo)) and lo != pv.INT64_MIN:
            lines.append(f"    Min value: {lo}")
        if not (isinstance(hi, float) and math.isinf(hi)) and hi != pv.INT64_MAX:
            lines.append(f"    Max value: {hi}")
    if d["read_only"]:
        lines.append("    Read only: true")
    if d["additional_constraints"]:
        lines.append(f"    {d['additional_constraints']}")
    return lines


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.transport import param_values as pv
    from ltc_controller.transport.dds import NameError_
    from ltc_controller.transport.param_client import ParameterClient, ParameterServiceError
    from ltc_controller.transport.ros_args import RosArgsError

    node = args.node if args.node.startswith("/") else "/" + args.node
    try:
        with ParameterClient(node, timeout_s=args.timeout) as client:
            if args.verb == "get":
                status = 0
                for name, value in zip(args.names, client.get(args.names), strict=True):
                    if value is None:
                        print(f"{name}: (not set)")
                        status = 1
                    else:
                        print(f"{name}: {_format(value)}")
                return status
            if args.verb == "set":
                declared = client.types([args.name])[0]
                try:
                    value = _typed_value(args.value, declared)
                except RosArgsError as e:
                    print(f"Setting parameter failed: {e}", file=sys.stderr)
                    return 2
                reason = client.set({args.name: value})[0]
                if reason:  # the value the user gave is refused: bad input, as everywhere
                    print(f"Setting parameter failed: {reason}", file=sys.stderr)
                    return 2
                print("Set parameter successful")
                return 0
            if args.verb == "list":
                names, _ = client.list_parameters(args.prefix)
                for name in names:
                    print(name)
                return 0
            status = 0
            for d in client.describe(args.names):
                if d["type"] == pv.NOT_SET:
                    print(f"Parameter name: {d['name']}\n  (not declared)")
                    status = 1
                else:
                    print("\n".join(_describe(d)))
            return status
    except (ParameterServiceError, NameError_, ValueError) as e:  # ValueError: no node name
        print(f"param {args.verb} {node}: {e}", file=sys.stderr)
        return 2
