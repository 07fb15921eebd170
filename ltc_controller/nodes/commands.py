"""Drive-command message types and their axes: the one place that knows which message field
carries which command axis (used by both nodes; pure: messages come from the ``new_msg`` the
node passes in).

=========================================  ==================================================
type                                       axes (in limiter order) ← message fields
=========================================  ==================================================
``ackermann_msgs/msg/AckermannDriveStamped`` ``steering_angle`` ← ``drive.steering_angle`` (rad),
                                           ``speed`` ← ``drive.speed`` (m/s)
``geometry_msgs/msg/Twist``                ``linear_x``, ``linear_y``, ``linear_z`` ← ``linear.*``
                                           (m/s), ``angular_z`` ← ``angular.z`` (rad/s)
``geometry_msgs/msg/TwistStamped``         as Twist, under ``twist``; plus ``header.stamp``
=========================================  ==================================================

``angular.x``/``angular.y`` of a Twist (roll/pitch rates) are not command axes: they are sent as
0 and ignored on input. Axes follow REP 103 (x forward, y left, z up; positive yaw = left turn).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

# The types, axes, units and fields live with the message definitions, so that training (which
# may not import nodes) names policy outputs after the same axes.
from ltc_controller.interfaces.command_axes import (
    ACKERMANN,
    ALL_AXES,
    AXES,
    COMMAND_TYPES,
    TWIST,
    TWIST_STAMPED,
    UNITS,
)

__all__ = [
    "ACKERMANN",
    "ALL_AXES",
    "AXES",
    "COMMAND_TYPES",
    "MEASURED_BY",
    "OUTPUT_TOPIC",
    "TWIST",
    "TWIST_STAMPED",
    "UNITS",
    "build_command",
    "finite",
    "read_command",
    "stamp_ns",
]

#: Default topic of the final command (remap with ``-r``): the names the ecosystem expects.
OUTPUT_TOPIC: dict[str, str] = {
    ACKERMANN: "ackermann_cmd",
    TWIST: "cmd_vel",
    TWIST_STAMPED: "cmd_vel",
}
#: Which ``nav_msgs/Odometry`` twist field measures an axis (for seeding the limiters);
#: the steering angle is not in odometry.
MEASURED_BY: dict[str, tuple[str, str]] = {
    "speed": ("linear", "x"),
    "linear_x": ("linear", "x"),
    "linear_y": ("linear", "y"),
    "linear_z": ("linear", "z"),
    "angular_z": ("angular", "z"),
}


def stamp_ns(stamp: Any) -> int:
    """``builtin_interfaces/msg/Time`` → integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def read_command(type_name: str, msg: Any) -> tuple[tuple[float, ...], int]:
    """The axis values (in :data:`AXES` order) and the stamp (ns; 0 for a plain Twist) of a
    command message. Values are returned as sent, NaN included: judging them is the gate's job.

    Raises:
        KeyError: ``type_name`` is not one of :data:`COMMAND_TYPES`.
    """
    if type_name == ACKERMANN:
        d = msg.drive
        return (float(d.steering_angle), float(d.speed)), stamp_ns(msg.header.stamp)
    tw = msg if type_name == TWIST else msg.twist
    values = (float(tw.linear.x), float(tw.linear.y), float(tw.linear.z), float(tw.angular.z))
    if type_name == TWIST:
        return values, 0
    if type_name == TWIST_STAMPED:
        return values, stamp_ns(msg.header.stamp)
    raise KeyError(f"unsupported command type {type_name!r} (one of {', '.join(COMMAND_TYPES)})")


def build_command(
    type_name: str,
    new_msg: Callable[..., Any],
    values: Sequence[float],
    stamp_ns_: int,
    frame_id: str = "base_link",
) -> Any:
    """A command message of ``type_name`` carrying ``values`` (in :data:`AXES` order), stamped
    ``stamp_ns_`` (ns, exact). ``new_msg(type_name, **fields)`` makes messages (``node.msg``).

    Raises:
        KeyError: unsupported ``type_name``; ValueError: wrong number of values.
    """
    axes = AXES[type_name]
    if len(values) != len(axes):
        raise ValueError(f"{type_name}: {len(axes)} values expected, got {len(values)}")
    if type_name == ACKERMANN:
        drive = new_msg(
            "ackermann_msgs/msg/AckermannDrive",
            steering_angle=float(values[0]),
            speed=float(values[1]),
        )
        return new_msg(type_name, header=_header(new_msg, stamp_ns_, frame_id), drive=drive)
    twist = new_msg(
        TWIST,
        linear=new_msg(
            "geometry_msgs/msg/Vector3", x=float(values[0]), y=float(values[1]), z=float(values[2])
        ),
        angular=new_msg("geometry_msgs/msg/Vector3", z=float(values[3])),
    )
    if type_name == TWIST:
        return twist
    return new_msg(type_name, header=_header(new_msg, stamp_ns_, frame_id), twist=twist)


def _header(new_msg: Callable[..., Any], ns: int, frame_id: str) -> Any:
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return new_msg(
        "std_msgs/msg/Header",
        stamp=new_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec),
        frame_id=frame_id,
    )


def finite(values: Sequence[float]) -> bool:
    """True when every value is a finite number."""
    return all(math.isfinite(v) for v in values)
