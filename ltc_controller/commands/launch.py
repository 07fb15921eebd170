"""``ltc-controller launch PARAMS.yaml [--ros-args ...]``: the policy and safety nodes as processes,
without ROS (what ``ros2 launch ltc_controller ltc_controller.launch.py`` does with ROS).

Both nodes get ``--ros-args --params-file PARAMS.yaml`` followed by the ``--ros-args`` given here,
so ``-r __ns:=/car1``, topic remaps (``-r ackermann_cmd:=/vehicle/drive``, or node-prefixed
``-r ltc_policy:camera/image_raw:=/front/image``), ``-p name:=value`` and ``--log-level`` work as
with ``ros2 run``. A ``-p name:=value`` without a node prefix goes to the nodes that declare
``name`` (``-p speed_mps:=3.0`` reaches ``ltc_policy`` only); a name no started node declares
stops the launch with status 2 naming it, as each node would. ``safety_fallback`` starts first,
so the actuators see its safe output before the policy exists.

Exit: Ctrl-C (SIGINT) or SIGTERM stops both nodes, the policy first (status 0 when both stop
cleanly); a signal while the launch itself is starting stops it the same way. A node that
cannot start (status 2: a bad parameter, an unreadable policy file; its message names the cause)
stops the launch with status 2. If ``safety_fallback`` ends, everything is stopped (status 1): the
vehicle must not run without it. If ``ltc_policy`` ends, ``safety_fallback`` keeps sending the
safe output and the launch goes on (status 1 at the end), as a vehicle would want.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ltc_controller.commands import output_folder

NAME = "launch"
HELP = (
    "start ltc_policy and safety_fallback as processes with a parameter file "
    "(e.g. config/vehicle.yaml); --ros-args apply to both"
)
NODES = ("safety_fallback", "ltc_policy")
_START_EXIT = 2  # what a node returns when it cannot start


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("params_file", type=Path, help="ROS 2 parameter file (node: ros__parameters:)")
    p.add_argument(
        "--nodes",
        default=",".join(NODES),
        help=f"comma-separated nodes to start (default {','.join(NODES)})",
    )
    p.add_argument(
        "--log-dir",
        type=output_folder,
        default=None,
        help="write each node's output to DIR/<node>.log instead of this terminal",
    )


def _check(params_file: Path, nodes: list[str], ros_args: list[str]) -> str:
    """Problems that should stop the launch before any process starts ("" when none)."""
    from ltc_controller.transport.ros_args import RosArgsError, parse_ros_args

    if not params_file.is_file():
        return f"launch: parameter file {str(params_file)!r} does not exist"
    unknown = [n for n in nodes if n not in NODES]
    if unknown or not nodes:
        return f"launch: unknown node(s) {unknown or nodes}; choose from {', '.join(NODES)}"
    for node in nodes:
        try:
            parse_ros_args(["--ros-args", "--params-file", str(params_file), *ros_args], node)
            from_file = parse_ros_args(["--ros-args", "--params-file", str(params_file)], node)
        except RosArgsError as e:
            return f"launch: {e}"
        if not from_file.params:
            # Not an error (the defaults are a valid setup), but an empty or misnamed section
            # is more often a mistake than a choice: say so instead of starting silently.
            print(
                f"launch: {params_file} sets no parameter of {node} (no '{node}:' or '/**:' "
                "section with ros__parameters); it starts on its defaults",
                file=sys.stderr,
            )
    return ""


def _declared(node: str) -> set[str]:
    """The parameter names ``node`` declares."""
    if node == "ltc_policy":
        from ltc_controller.nodes.policy_params import PARAMS
    else:
        from ltc_controller.nodes.safety_node import PARAMS
    return {spec.name for spec in PARAMS}


def _route(nodes: list[str], ros_args: list[str]) -> tuple[dict[str, list[str]], str]:
    """Each node's ``--ros-args``: an unprefixed ``-p name:=value`` only for the nodes that
    declare ``name``. Returns the per-node lists and a problem ("" when none)."""
    declared = {n: _declared(n) for n in nodes}
    routed: dict[str, list[str]] = {n: [] for n in nodes}
    i = 0
    while i < len(ros_args):
        arg = ros_args[i]
        rule = ros_args[i + 1] if i + 1 < len(ros_args) else ""
        if arg in ("-p", "--param") and ":=" in rule and ":" not in rule.split(":=", 1)[0]:
            name = rule.split(":=", 1)[0]
            takers = [n for n in nodes if name in declared[n]]
            if not takers:
                return routed, (
                    f"launch: parameter {name!r} is not declared by {' or '.join(nodes)} "
                    "(check the spelling; prefix it as NODE:name:=value to aim at one node)"
                )
            for n in takers:
                routed[n] += [arg, rule]
            i += 2
            continue
        for n in nodes:
            routed[n].append(arg)
        i += 1
    return routed, ""


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.supervisor import Launcher

    user_ros = [a for a in ros_args if a != "--ros-args"]
    nodes = [n.strip() for n in str(args.nodes).split(",") if n.strip()]
    nodes = [n for n in NODES if n in nodes] + [n for n in nodes if n not in NODES]
    problem = _check(args.params_file, nodes, user_ros)
    routed: dict[str, list[str]] = {}
    if not problem:
        routed, problem = _route(nodes, user_ros)
    if problem:
        print(problem, file=sys.stderr)
        return _START_EXIT
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(dict(os.environ), args.log_dir, own_sessions=True)
    from ltc_controller import stop as stop_request

    stop = {"signal": stop_request.reason()}  # a Ctrl-C while this process was starting

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    reported: set[str] = set()
    codes: dict[str, int] = {}
    try:
        base = ["--params-file", str(args.params_file)]
        for node in nodes:
            if stop["signal"]:
                break
            launcher.start(node, base + routed[node])
        print(f"launch: started {', '.join(nodes)} with {args.params_file}", file=sys.stderr)
        while not stop["signal"]:
            time.sleep(0.1)
            for node, rc in launcher.exited().items():
                if node in reported:
                    continue
                reported.add(node)
                if rc == _START_EXIT:
                    print(f"launch: {node} could not start (status 2); stopping", file=sys.stderr)
                    status = _START_EXIT
                    stop["signal"] = "start failure"
                elif node == "safety_fallback":
                    print(
                        f"launch: safety_fallback exited with status {rc}; stopping everything",
                        file=sys.stderr,
                    )
                    status = 1
                    stop["signal"] = "safety_fallback exited"
                else:
                    print(
                        f"launch: {node} exited with status {rc}; safety_fallback keeps sending "
                        "the safe output",
                        file=sys.stderr,
                    )
                    status = 1
        # Policy first, then the safety node: it keeps sending the safe output until the
        # policy is gone (the children are in sessions of their own, so a terminal's Ctrl-C
        # reached only this process and the order is ours).
        codes = launcher.stop(("ltc_policy", "safety_fallback"), timeout_s=5.0)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        launcher.stop()
    bad = {k: v for k, v in codes.items() if v != 0 and k not in reported}
    if bad and status == 0:
        status = 1
    print(f"launch: stopped ({stop['signal']}); exit statuses {codes}", file=sys.stderr)
    return status
