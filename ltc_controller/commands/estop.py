"""``ltc-controller estop assert|release|reset|status``: the e-stop of a ``safety_fallback``.

Talks to the node over DDS like the nodes do (``ROS_DOMAIN_ID``, ``CYCLONEDDS_URI``), on the
topics of DESIGN.md §6 under ``--namespace``:

- ``assert``: ``std_msgs/Bool {data: true}`` on ``estop`` (reliable, transient local, as the node
  subscribes), then waits until the node's ``safety_status`` says ESTOP. With ``--hold`` it stays
  running as the e-stop's source until interrupted (a software e-stop button); without, it exits
  and the node keeps the last value it received (asserted) — the node logs that its source left.
- ``release``: ``{data: false}`` on ``estop``; waits until the node says the e-stop is no longer
  asserted. The latch holds: a release alone never drives.
- ``reset``: ``{data: true}`` on ``estop_reset``; prints whether the node accepted it (ESTOP →
  FALLBACK, then ACTIVE after healthy heartbeats) or refused it (e-stop still asserted).
- ``status``: prints the node's state, whether the e-stop is asserted, and the active fault.

Clearing an e-stop whose source is gone: ``release`` then ``reset`` (``reset`` alone when the
last value was already a release, e.g. after a restart that kept the latch).

Exit status: 0 done (assert confirmed, release confirmed, reset accepted, status printed); 1 the
node refused the reset; 2 no ``safety_status`` from the node within ``--timeout``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

NAME = "estop"
HELP = "assert, release or reset a safety_fallback's e-stop, or print its status (over DDS)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("assert", "release", "reset", "status"))
    p.add_argument(
        "--namespace", default="/", help="the safety_fallback's namespace (default /), e.g. /car1"
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the node (default 10)"
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="assert: stay running as the e-stop's source until SIGINT/SIGTERM",
    )


def status_line(node: str, m: Any) -> str:
    """One line for ``status`` from a ``SafetyStatus`` message ``m`` of the node named ``node``."""
    fault = m.active_fault or "none"
    if m.state_name == "FALLBACK" and m.active_fault == "estop":
        # FALLBACK keeps the e-stop as its cause only after an accepted reset.
        fault = "estop (reset accepted; re-engages after healthy policy heartbeats)"
    return (
        f"{node}: state {m.state_name}, e-stop "
        f"{'ASSERTED' if m.estop_asserted else 'released'}, active fault {fault}, "
        f"resets refused {m.resets_refused}"
    )


def _topic(ns: str, name: str) -> str:
    return ns.rstrip("/") + "/" + name if ns.strip("/") else "/" + name


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.transport.dds import DdsNode, NameError_, normalize_namespace
    from ltc_controller.transport.port import LATCHED, RELIABLE

    try:
        ns = normalize_namespace(args.namespace)
    except NameError_ as e:
        print(f"estop: --namespace: {e}", file=sys.stderr)
        return 2
    node = DdsNode("ltc_controller_estop", parameter_services=False, rosout=False)
    last: list[Any] = []
    events: list[str] = []

    def on_status(msg: Any) -> None:
        last[:] = [msg]
        events.extend(str(e) for e in msg.events)

    node.create_subscription(
        "ltc_controller/msg/SafetyStatus", _topic(ns, "safety_status"), on_status, RELIABLE
    )

    def spin_until(pred: Any, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            node.spin_once(0.02)
            if pred():
                return True
        return False

    try:
        if not spin_until(lambda: bool(last), args.timeout):
            print(f"estop: no safety_status on {_topic(ns, 'safety_status')}", file=sys.stderr)
            return 2
        if args.action == "status":
            print(status_line(_topic(ns, "safety_fallback"), last[0]))
            return 0
        if args.action in ("assert", "release"):
            data = args.action == "assert"
            pub = node.create_publisher("std_msgs/msg/Bool", _topic(ns, "estop"), LATCHED)
            pub.publish(node.msg("std_msgs/msg/Bool", data=data))
            if not spin_until(lambda: bool(last[0].estop_asserted) == data, args.timeout):
                print(f"estop: the node did not confirm the {args.action}", file=sys.stderr)
                return 2
            done = {"assert": "asserted", "release": "released"}.get(args.action, args.action)
            print(f"estop: {done}; node state {last[0].state_name}")
            if data and args.hold:
                stop = {"now": False}

                def on_signal(signum: int, frame: Any) -> None:
                    stop["now"] = True

                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, on_signal)
                while not stop["now"]:
                    node.spin_once(0.1)
            return 0
        if last[0].state_name not in ("ESTOP", "FALLBACK"):
            print(f"estop: nothing to reset (node state {last[0].state_name})")
            return 0
        pub = node.create_publisher("std_msgs/msg/Bool", _topic(ns, "estop_reset"), RELIABLE)
        # A reliable, volatile request reaches only a subscription that is already matched.
        if not spin_until(lambda: pub.get_subscription_count() > 0, args.timeout):
            print(f"estop: nobody subscribes to {_topic(ns, 'estop_reset')}", file=sys.stderr)
            return 2
        events.clear()
        pub.publish(node.msg("std_msgs/msg/Bool", data=True))
        answers = ("estop_reset", "estop_reset_refused", "reengaged", "reengage_refused")
        if not spin_until(lambda: any(e in answers for e in events), args.timeout):
            print(
                f"estop: no answer to the reset (node state {last[0].state_name})", file=sys.stderr
            )
            return 2
        if "estop_reset_refused" in events:
            print("estop: reset REFUSED: the e-stop is still asserted; release it first")
            return 1
        if "reengage_refused" in events:
            print(f"estop: re-engage REFUSED: the policy is not healthy ({last[0].active_fault})")
            return 1
        print(f"estop: reset accepted; node state {last[0].state_name}")
        return 0
    finally:
        node.shutdown()
