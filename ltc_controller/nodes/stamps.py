"""Conversions between ``builtin_interfaces/msg/Time`` and float seconds; names that identify a node
on shared topics."""

from __future__ import annotations

import math
from typing import Any

from ltc_controller.transport.port import Node


def to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/msg/Time`` → seconds (float)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def to_ns(stamp: Any) -> int:
    """``builtin_interfaces/msg/Time`` → integer nanoseconds (exact; use it to carry a stamp
    through the pipeline unchanged)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(node: Node, ns: int) -> Any:
    """Integer nanoseconds → ``builtin_interfaces/msg/Time`` (exact)."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return node.msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec)


def header_ns(node: Node, ns: int, frame_id: str = "") -> Any:
    """A ``std_msgs/msg/Header`` stamped exactly ``ns`` nanoseconds."""
    return node.msg("std_msgs/msg/Header", stamp=ns_to_stamp(node, ns), frame_id=frame_id)


def to_stamp(node: Node, t: float) -> Any:
    """Seconds → ``builtin_interfaces/msg/Time`` (nanosec in [0, 1e9))."""
    sec = math.floor(t)
    nsec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return node.msg("builtin_interfaces/msg/Time", sec=int(sec), nanosec=nsec)


def header(node: Node, t: float, frame_id: str = "") -> Any:
    """A ``std_msgs/msg/Header`` stamped ``t`` (s)."""
    return node.msg("std_msgs/msg/Header", stamp=to_stamp(node, t), frame_id=frame_id)


def diagnostic_name(node: Node, task: str) -> str:
    """``DiagnosticStatus.name`` for ``task`` of ``node``: ``"<namespace>/<node>: <task>"``
    without the leading ``/`` (``"car1/safety_fallback: state"``; ``"safety_fallback: state"`` in
    the root namespace). ROS 2 ``diagnostic_updater`` names its tasks from the node's fully
    qualified name the same way, so stacks under ``/car1`` and ``/car2`` stay apart on the shared
    ``/diagnostics`` topic (``rqt_robot_monitor``)."""
    return f"{fully_qualified_name(node).lstrip('/')}: {task}"


def fully_qualified_name(node: Node) -> str:
    """``"/<namespace>/<node>"`` of ``node`` (``"/safety_fallback"`` in the root namespace)."""
    return node.namespace.rstrip("/") + "/" + node.name
