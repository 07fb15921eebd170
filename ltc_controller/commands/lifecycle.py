"""``ltc-controller lifecycle get|set|list NODE …``: a managed node's lifecycle over DDS.

The ``lifecycle_msgs`` services ``ros2 lifecycle`` calls, so this drives ``ltc_policy`` in DDS
mode and any ROS 2 lifecycle node on rmw_cyclonedds_cpp without a ROS install (ROS 2 services
do not cross DDS vendors). The domain is ``ROS_DOMAIN_ID``; ``CYCLONEDDS_URI`` configures the
network as for the nodes.

Exit status: 0 done; 1 the transition was refused or failed (the node's log says why); 2 the
node's lifecycle services were not found in time (or bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ltc_controller.transport.lifecycle import REQUESTS

if TYPE_CHECKING:
    from ltc_controller.transport.dds import DdsNode

NAME = "lifecycle"
HELP = "get, set or list a managed node's lifecycle state (over DDS, like `ros2 lifecycle`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True)
    get = sub.add_parser("get", help="print the current state, e.g. 'active [3]'")
    put = sub.add_parser("set", help="request a transition: configure, activate, deactivate, …")
    ls = sub.add_parser("list", help="the transitions available from the current state")
    for sp in (get, put, ls):
        sp.add_argument("node", help="node name, e.g. /car/ltc_policy")
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds to find the node")
    # The requests a node takes (ROS 2 lifecycle design); a misspelt one is a usage error (2).
    put.add_argument("transition", choices=REQUESTS, help="the transition to request")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.transport.dds import DdsNode, NameError_
    from ltc_controller.transport.param_client import ParameterServiceError

    node = args.node if args.node.startswith("/") else "/" + args.node
    try:
        dds = DdsNode(f"_ltc_lifecycle_{os.getpid()}", parameter_services=False)
    except (NameError_, ValueError) as e:
        print(f"lifecycle: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args, node, dds)
    except (ParameterServiceError, NameError_, ValueError) as e:
        print(f"lifecycle: {_explain(node, dds, e)}", file=sys.stderr)
        return 2
    finally:
        dds.shutdown()


def _run(args: argparse.Namespace, node: str, dds: DdsNode) -> int:
    from ltc_controller.transport.lifecycle_server import LIFECYCLE_SERVICES
    from ltc_controller.transport.param_client import ParameterClient
    from ltc_controller.transport.types import new_msg

    c = ParameterClient(node, node=dds, timeout_s=args.timeout, services=LIFECYCLE_SERVICES)
    if args.verb == "get":
        s = c.call("get_state").current_state
        print(f"{s.label} [{s.id}]")
        return 0
    if args.verb == "list":
        for d in c.call("get_available_transitions").available_transitions:
            t = d.transition
            print(f"- {t.label} [{t.id}]")
            print(f"\tStart: {d.start_state.label}\n\tGoal: {d.goal_state.label}")
        return 0
    msg = new_msg("lifecycle_msgs/msg/Transition", id=0, label=args.transition)
    if c.call("change_state", transition=msg).success:
        print("Transitioning successful")
        return 0
    print("Transitioning failed", file=sys.stderr)
    return 1


def _explain(node: str, dds: DdsNode, error: Exception) -> str:
    """The error, or, when the node runs but has no lifecycle services, that it is not managed."""
    from ltc_controller.transport.param_client import ParameterClient, ParameterServiceError

    if not isinstance(error, ParameterServiceError) or "no service" not in str(error):
        return str(error)
    # Its parameter services were discovered with the same participant: a short wait suffices.
    if ParameterClient(node, node=dds, timeout_s=1.0).wait_for_services(["get_parameters"]):
        return (
            f"{node} is running but is not a managed (lifecycle) node: it offers no "
            f"{node}/get_state service (only ltc_policy is managed; safety_fallback is not)"
        )
    return str(error)
