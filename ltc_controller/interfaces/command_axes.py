"""Drive-command message types, their axes, units and the message field of each axis.

One table shared by the nodes (which publish and read commands, :mod:`ltc_controller.nodes
.commands`) and the offline rooms (which learn policy outputs from recorded commands,
:mod:`ltc_controller.training.bag`), so that a policy trained on a command topic carries output
names the policy node maps. Pure data: no message classes, no transport.

=============================================  ==================================================
type                                           axes (in limiter order) <- message fields
=============================================  ==================================================
``ackermann_msgs/msg/AckermannDriveStamped``   ``steering_angle`` <- ``drive.steering_angle``
                                               (rad), ``speed`` <- ``drive.speed`` (m/s)
``ackermann_msgs/msg/AckermannDrive``          the same without ``drive.`` (read only)
``geometry_msgs/msg/Twist``                    ``linear_x``, ``linear_y``, ``linear_z`` <-
                                               ``linear.*`` (m/s), ``angular_z`` <- ``angular.z``
                                               (rad/s)
``geometry_msgs/msg/TwistStamped``             as Twist, under ``twist``
=============================================  ==================================================

Axes follow REP 103 (x forward, y left, z up; positive yaw = left turn).
"""

from __future__ import annotations

__all__ = [
    "ACKERMANN",
    "ACKERMANN_DRIVE",
    "ALL_AXES",
    "AXES",
    "COMMAND_TYPES",
    "FIELDS",
    "TWIST",
    "TWIST_STAMPED",
    "UNITS",
    "axis_of_field",
]

ACKERMANN = "ackermann_msgs/msg/AckermannDriveStamped"
ACKERMANN_DRIVE = "ackermann_msgs/msg/AckermannDrive"
TWIST = "geometry_msgs/msg/Twist"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
#: The types the nodes publish and gate.
COMMAND_TYPES = (ACKERMANN, TWIST, TWIST_STAMPED)

_TWIST_AXES = ("linear_x", "linear_y", "linear_z", "angular_z")
#: Axes of each command type, in the order the limiters run.
AXES: dict[str, tuple[str, ...]] = {
    ACKERMANN: ("steering_angle", "speed"),
    TWIST: _TWIST_AXES,
    TWIST_STAMPED: _TWIST_AXES,
}
#: Every axis any command type has, with its unit.
UNITS: dict[str, str] = {
    "steering_angle": "rad",
    "speed": "m/s",
    "linear_x": "m/s",
    "linear_y": "m/s",
    "linear_z": "m/s",
    "angular_z": "rad/s",
}
ALL_AXES = tuple(UNITS)

_TWIST_FIELDS = {a: a.replace("_", ".") for a in _TWIST_AXES}
#: Message field (dotted path) of each axis, per message type that carries commands.
FIELDS: dict[str, dict[str, str]] = {
    ACKERMANN: {"steering_angle": "drive.steering_angle", "speed": "drive.speed"},
    ACKERMANN_DRIVE: {"steering_angle": "steering_angle", "speed": "speed"},
    TWIST: dict(_TWIST_FIELDS),
    TWIST_STAMPED: {a: f"twist.{f}" for a, f in _TWIST_FIELDS.items()},
}


def axis_of_field(msgtype: str, field: str) -> str | None:
    """The command axis a message field carries (``("geometry_msgs/msg/Twist", "angular.z")``
    -> ``"angular_z"``), or None when the type or the field carries no command axis."""
    for axis, f in FIELDS.get(msgtype, {}).items():
        if f == field:
            return axis
    return None
