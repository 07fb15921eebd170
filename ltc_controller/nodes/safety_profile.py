"""From ``safety_fallback`` parameters to a :class:`~ltc_controller.safety.gate.GateConfig`.

A *profile* is nothing but parameter values: ``config/vehicle.yaml`` (Ackermann car: steering and
speed, ramp to a stop, hold or centre the steering) and ``config/drone.yaml`` (Twist velocity
setpoints: every axis ramps to zero = hover, then a landing request after ``land_after_s``) differ
in their YAML only. The command type picks the axes (``nodes.commands.AXES``); each axis has the
parameters ``limits.<axis>.{min,max,accel,decel,jerk}``; limits of axes the command type does not
carry are declared (one parameter set for every profile) and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ltc_controller.nodes.commands import ALL_AXES, AXES
from ltc_controller.safety.gate import GateConfig
from ltc_controller.safety.limits import AxisLimits

#: Default limits per axis: (min, max, accel, decel, jerk). Conservative; the profiles in
#: ``config/*.yaml`` set the real ones.
AXIS_DEFAULTS: dict[str, tuple[float, float, float, float, float]] = {
    "steering_angle": (-0.5, 0.5, 2.0, 2.0, 0.0),
    "speed": (0.0, 8.0, 2.0, 4.0, 0.0),
    "linear_x": (-1.0, 1.0, 1.0, 2.0, 0.0),
    "linear_y": (0.0, 0.0, 1.0, 2.0, 0.0),
    "linear_z": (0.0, 0.0, 1.0, 2.0, 0.0),
    "angular_z": (-1.0, 1.0, 2.0, 2.0, 0.0),
}
assert tuple(AXIS_DEFAULTS) == ALL_AXES
LIMIT_FIELDS = ("min", "max", "accel", "decel", "jerk")

#: ``fallback_steering`` value -> fallback mode of the ``steering_angle`` axis.
STEERING_FALLBACK = {"hold": "hold", "centre": "zero"}
#: ``fallback_yaw_rate`` value -> fallback mode of the ``angular_z`` axis.
YAW_RATE_FALLBACK = {"zero": "zero", "hold_curvature": "hold_curvature"}

#: Parameters copied one to one into GateConfig.
_SCALARS = (
    "command_timeout_s",
    "heartbeat_timeout_s",
    "command_max_age_s",
    "out_of_range_tolerance",
    "recovery_heartbeats",
    "auto_recover",
    "teleop_timeout_s",
    "land_after_s",
    "odom_timeout_s",
)


def axis_limits(p: Mapping[str, Any], axis: str) -> AxisLimits:
    """The :class:`AxisLimits` of ``axis`` from parameters ``limits.<axis>.*`` (defaults where
    absent). Raises ValueError naming the parameter."""
    vals = dict(zip(LIMIT_FIELDS, AXIS_DEFAULTS[axis], strict=True))
    for f in LIMIT_FIELDS:
        key = f"limits.{axis}.{f}"
        if key in p:
            vals[f] = float(p[key])
    return AxisLimits(axis, **vals)


def gate_config_from_params(p: Mapping[str, Any]) -> GateConfig:
    """The gate configuration the parameters ``p`` describe (``command_type`` selects the axes).

    Raises:
        ValueError: inconsistent values (``min > max``, a bound that excludes zero, a fallback
            mode the axis cannot have); the message names the parameter.
    """
    axes_names = AXES[p.get("command_type", "ackermann_msgs/msg/AckermannDriveStamped")]
    # Validate every axis, also those this command type does not use: a profile file with a
    # wrong value is wrong even where it does not matter today.
    all_limits = {a: axis_limits(p, a) for a in ALL_AXES}
    modes = []
    for a in axes_names:
        if a == "steering_angle":
            modes.append(STEERING_FALLBACK[p.get("fallback_steering", "hold")])
        elif a == "angular_z":
            modes.append(YAW_RATE_FALLBACK[p.get("fallback_yaw_rate", "hold_curvature")])
        else:
            modes.append("zero")
    kwargs = {k: p[k] for k in _SCALARS if k in p}
    return GateConfig(
        axes=tuple(all_limits[a] for a in axes_names), fallback=tuple(modes), **kwargs
    )


#: Timeouts a run-time set may shorten but never lengthen past their start-up values.
TIMEOUTS = ("command_timeout_s", "heartbeat_timeout_s", "teleop_timeout_s", "command_max_age_s")


def ceilings(p: Mapping[str, Any]) -> dict[str, Any]:
    """What run-time sets may not loosen, from the start-up parameters ``p``: per axis
    ``(lowest min, highest max, highest accel, lowest decel)``, and the longest timeouts.

    ``limits.<axis>.ceiling`` (read-only, from the profile YAML) bounds ``max`` and, for an axis
    whose start-up ``min`` is below 0, ``-min``; an axis that starts at ``min = 0`` (speed: no
    reverse) keeps it. 0 makes the start-up ``min``/``max`` the bounds. ``accel`` may be lowered,
    never raised; ``decel`` (also the fallback ramp) raised, never lowered; the timeouts
    (:data:`TIMEOUTS`) shortened, never lengthened.

    Raises:
        ValueError: a start-up ``min``/``max`` beyond its axis's ceiling (names both parameters).
    """
    axes = {}
    for a in ALL_AXES:
        lim = axis_limits(p, a)
        c = float(p.get(f"limits.{a}.ceiling", 0.0))
        if c > 0.0:
            for f, v in (("max", lim.max), ("min", -lim.min)):
                if v > c:
                    raise ValueError(
                        f"limits.{a}.{f} = {getattr(lim, f)} is beyond limits.{a}.ceiling = {c}"
                    )
            axes[a] = (-c if lim.min < 0.0 else lim.min, c, lim.accel, lim.decel)
        else:
            axes[a] = (lim.min, lim.max, lim.accel, lim.decel)
    return {"axes": axes, "timeouts": {k: float(p[k]) for k in TIMEOUTS if k in p}}


def beyond_ceiling(bounds: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    """Why the parameters ``p`` (after a run-time set) loosen a limit past ``bounds``
    (:func:`ceilings` of the start-up parameters); ``""`` when they do not."""
    for a, (lo, hi, acc, dec) in bounds["axes"].items():
        lim = axis_limits(p, a)
        if lim.max > hi:
            return f"limits.{a}.max = {lim.max} exceeds its ceiling {hi} (read-only, set at start)"
        if lim.min < lo:
            return f"limits.{a}.min = {lim.min} is below its floor {lo} (read-only, set at start)"
        if lim.accel > acc:
            return f"limits.{a}.accel = {lim.accel} exceeds its start-up value {acc}"
        if lim.decel < dec:
            return (
                f"limits.{a}.decel = {lim.decel} is below its start-up value {dec} (it is also "
                "the fallback ramp: it can be made steeper at run time, not gentler)"
            )
    for k, longest in bounds["timeouts"].items():
        if k in p and float(p[k]) > longest:
            return f"{k} = {p[k]} exceeds its start-up value {longest} (timeouts only shorten)"
    return ""
