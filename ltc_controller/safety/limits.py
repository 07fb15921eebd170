"""Per-axis command limiters, applied in one fixed, documented order (pure functions).

A command is a vector over *axes* named after the message fields they drive (``steering_angle``,
``speed`` for ``ackermann_msgs/AckermannDrive``; ``linear_x``, ``linear_y``, ``linear_z``,
``angular_z`` for ``geometry_msgs/Twist``). Each axis has one :class:`AxisLimits`.

Order, per axis, axes in their profile order (as Autoware's vehicle_cmd_gate filters steer, then
steer rate, then jerk/acceleration, then velocity — here value first, so that every later stage
moves between two values that are already inside the absolute bounds):

1. ``<axis>.value`` — absolute bounds ``[min, max]``.
2. ``<axis>.rate``  — rate of change: at most ``accel`` (units/s) while ``|x|`` grows, at most
   ``decel`` while it shrinks (for ``speed``: acceleration and braking; for ``steering_angle``:
   steering away from and back to centre).
3. ``<axis>.jerk``  — how fast that rate may *build up*: ``|r_k| <= |r_{k-1}| + jerk * dt`` in the
   same direction, while easing off (towards zero rate) is never limited. The jerk stage
   therefore only ever shortens a step towards the rate-limited value: it cannot overshoot the
   target, and it keeps stages 1 and 2 satisfied. ``jerk = 0`` disables it.

Each stage that changed the value reports its name (``"speed.rate"``), so status and diagnostics
can say which limiter is active, as vehicle_cmd_gate's ``IsFilterActivated`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Limiter stages in application order (the suffix of the reported names).
STAGES = ("value", "rate", "jerk")


@dataclass(frozen=True)
class AxisLimits:
    """Limits of one command axis. Units: the axis's unit ``u`` (rad, m/s, rad/s), ``u/s``,
    ``u/s²``.

    ``min <= 0 <= max`` (zero — stop, hover, centre — must always be a valid output);
    ``accel >= 0``, ``decel > 0`` (a limiter that cannot brake would make the fallback a lie);
    ``jerk >= 0`` (0 = off).

    Raises:
        ValueError: a bound violates the rules above; the message names the axis and field.
    """

    name: str
    min: float
    max: float
    accel: float
    decel: float
    jerk: float = 0.0

    def __post_init__(self) -> None:
        for f in ("min", "max", "accel", "decel", "jerk"):
            if not math.isfinite(getattr(self, f)):
                raise ValueError(f"limits.{self.name}.{f}: must be finite")
        if not self.min <= 0.0 <= self.max:
            raise ValueError(
                f"limits.{self.name}: need min <= 0 <= max (zero is the safe output), "
                f"got min={self.min}, max={self.max}"
            )
        if self.accel < 0.0:
            raise ValueError(f"limits.{self.name}.accel: must be >= 0, got {self.accel}")
        if self.decel <= 0.0:
            raise ValueError(f"limits.{self.name}.decel: must be > 0, got {self.decel}")
        if self.jerk < 0.0:
            raise ValueError(f"limits.{self.name}.jerk: must be >= 0 (0 = off), got {self.jerk}")

    def out_of_range(self, x: float, tolerance: float) -> bool:
        """``x`` lies beyond ``[min, max]`` by more than ``tolerance`` × the larger bound's
        magnitude (a confused policy, not rounding); such a command is a fault, not clamped."""
        slack = tolerance * max(abs(self.min), abs(self.max)) + 1e-9
        return x > self.max + slack or x < self.min - slack


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def limit_axis(
    lim: AxisLimits, target: float, prev: float, prev_rate: float, dt: float
) -> tuple[float, float, tuple[str, ...]]:
    """Limit one axis for one tick.

    Args:
        lim: the axis limits.
        target: the wanted value (finite).
        prev: the value sent on the previous tick.
        prev_rate: the rate of change of the previous tick (u/s), for the jerk stage.
        dt: seconds since the previous tick (0 on the first tick: nothing may move).

    Returns:
        ``(value, rate, active)``: the value to send, its rate of change (u/s; 0 when ``dt`` is
        0) and the names of the stages that changed it, in :data:`STAGES` order.
    """
    active: list[str] = []
    x = _clamp(target, lim.min, lim.max)
    if x != target:
        active.append(f"{lim.name}.value")
    # Rate: decel applies to the part of the move that shrinks |x|.
    lo = prev - (lim.decel if prev > 0 else lim.accel) * dt
    hi = prev + (lim.accel if prev >= 0 else lim.decel) * dt
    limited = _clamp(x, lo, hi)
    if limited != x:
        active.append(f"{lim.name}.rate")
    if dt <= 0.0:
        return limited, 0.0, tuple(active)
    rate = (limited - prev) / dt
    if lim.jerk > 0.0:
        # The allowed interval always contains 0: easing off is free, building up is bounded.
        step = lim.jerk * dt
        r = _clamp(rate, min(0.0, prev_rate) - step, max(0.0, prev_rate) + step)
        if r != rate:
            active.append(f"{lim.name}.jerk")
            rate = r
            limited = prev + rate * dt
    return limited, rate, tuple(active)


def limit_command(
    limits: Sequence[AxisLimits],
    target: Sequence[float],
    prev: Sequence[float],
    prev_rates: Sequence[float],
    dt: float,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
    """:func:`limit_axis` over every axis, in order. Returns ``(values, rates, active)``."""
    values: list[float] = []
    rates: list[float] = []
    active: list[str] = []
    for i, lim in enumerate(limits):
        v, r, a = limit_axis(lim, target[i], prev[i], prev_rates[i], dt)
        values.append(v)
        rates.append(r)
        active.extend(a)
    return tuple(values), tuple(rates), tuple(active)
