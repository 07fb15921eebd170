"""Kinematic bicycle model with actuator limits and lag (pure functions, no MuJoCo).

State reference point: the centre of the rear axle. Units: metres, seconds, radians; yaw CCW from
+x (REP 103). The model (Rajamani, *Vehicle Dynamics and Control*, sec. 2.2, rear-axle form)::

    x'   = v cos(yaw)
    y'   = v sin(yaw)
    yaw' = v tan(delta) / L

Actuators, applied in this fixed order each step of length ``dt``:

1. steering command clipped to ``+-max_steer_rad``;
2. first-order lag toward it, ``delta' = (delta_cmd - delta) / steer_tau_s``, with the rate clipped
   to ``+-max_steer_rate_rad_s``;
3. speed command clipped to ``[0, max_speed_mps]``;
4. first-order lag toward it, ``v' = (v_cmd - v) / speed_tau_s``, with the acceleration clipped to
   ``[-max_decel_mps2, max_accel_mps2]``.

The pose is then advanced with the average of the old and new speed and yaw rate (second order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleParams:
    """Geometry and actuator limits of the car.

    Attributes:
        wheelbase_m: rear-to-front axle distance (m).
        max_steer_rad: front-wheel steering angle limit (rad, symmetric).
        max_steer_rate_rad_s: steering rate limit (rad/s).
        steer_tau_s: steering actuator time constant (s, > 0).
        max_speed_mps: speed limit (m/s); the car does not reverse.
        max_accel_mps2: acceleration limit (m/s^2).
        max_decel_mps2: braking limit (m/s^2, positive number).
        speed_tau_s: speed controller time constant (s, > 0).
        length_m, width_m, rear_overhang_m: body box for rendering and lane-departure checks (m).
    """

    wheelbase_m: float = 2.5
    max_steer_rad: float = 0.5
    max_steer_rate_rad_s: float = 1.0
    steer_tau_s: float = 0.1
    max_speed_mps: float = 15.0
    max_accel_mps2: float = 2.5
    max_decel_mps2: float = 5.0
    speed_tau_s: float = 0.3
    length_m: float = 4.3
    width_m: float = 1.8
    rear_overhang_m: float = 0.9

    def __post_init__(self) -> None:
        for name in ("wheelbase_m", "max_steer_rad", "max_steer_rate_rad_s", "steer_tau_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"VehicleParams.{name}={getattr(self, name)}: expected > 0")
        for name in ("max_speed_mps", "max_accel_mps2", "max_decel_mps2", "speed_tau_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"VehicleParams.{name}={getattr(self, name)}: expected > 0")


@dataclass(frozen=True)
class VehicleState:
    """Rear-axle pose and actuator state.

    Attributes:
        x, y: rear-axle position (m). yaw: heading (rad, not wrapped).
        speed: forward speed (m/s, >= 0). steering: front-wheel angle (rad, positive = left).
    """

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed: float = 0.0
    steering: float = 0.0

    def centre(self, params: VehicleParams) -> tuple[float, float]:
        """Midpoint of the wheelbase (m): the point lane metrics are measured at."""
        h = 0.5 * params.wheelbase_m
        return self.x + h * math.cos(self.yaw), self.y + h * math.sin(self.yaw)

    def yaw_rate(self, params: VehicleParams) -> float:
        """``v tan(delta) / L`` (rad/s)."""
        return self.speed * math.tan(self.steering) / params.wheelbase_m


@dataclass(frozen=True)
class LimitReport:
    """Which limits were active in one step (for tests and diagnostics)."""

    steer_clipped: bool
    steer_rate_limited: bool
    speed_clipped: bool
    accel_limited: bool


def step_vehicle(
    state: VehicleState,
    steering_cmd: float,
    speed_cmd: float,
    dt: float,
    params: VehicleParams,
) -> tuple[VehicleState, LimitReport]:
    """Advance the car by ``dt`` seconds under a (steering rad, speed m/s) command.

    Args:
        state: current state.
        steering_cmd: commanded front-wheel angle (rad, finite).
        speed_cmd: commanded forward speed (m/s, finite).
        dt: step (s, > 0; keep it <= 0.02 s for accuracy).
        params: vehicle parameters.

    Returns:
        ``(new_state, limits)``.

    Raises:
        ValueError: ``dt`` not > 0 or a non-finite command (filter those before calling).
    """
    if not dt > 0.0:
        raise ValueError(f"step_vehicle: dt={dt}; expected > 0 s")
    if not (math.isfinite(steering_cmd) and math.isfinite(speed_cmd)):
        raise ValueError(f"step_vehicle: non-finite command ({steering_cmd}, {speed_cmd})")
    p = params
    # 1-2: steering
    d_cmd = min(p.max_steer_rad, max(-p.max_steer_rad, steering_cmd))
    rate = (d_cmd - state.steering) / p.steer_tau_s
    rate_lim = min(p.max_steer_rate_rad_s, max(-p.max_steer_rate_rad_s, rate))
    delta = state.steering + rate_lim * dt
    # The lag must not overshoot the command when dt > tau.
    if (d_cmd - state.steering) * (d_cmd - delta) < 0.0:
        delta = d_cmd
    # 3-4: speed
    v_cmd = min(p.max_speed_mps, max(0.0, speed_cmd))
    acc = (v_cmd - state.speed) / p.speed_tau_s
    acc_lim = min(p.max_accel_mps2, max(-p.max_decel_mps2, acc))
    v = state.speed + acc_lim * dt
    if (v_cmd - state.speed) * (v_cmd - v) < 0.0:
        v = v_cmd
    v = max(0.0, v)
    # Pose: trapezoid on speed and yaw rate, midpoint heading.
    w0 = state.speed * math.tan(state.steering) / p.wheelbase_m
    w1 = v * math.tan(delta) / p.wheelbase_m
    dyaw = 0.5 * (w0 + w1) * dt
    v_mid = 0.5 * (state.speed + v)
    h_mid = state.yaw + 0.5 * dyaw
    new = VehicleState(
        x=state.x + v_mid * math.cos(h_mid) * dt,
        y=state.y + v_mid * math.sin(h_mid) * dt,
        yaw=state.yaw + dyaw,
        speed=v,
        steering=delta,
    )
    rep = LimitReport(
        steer_clipped=d_cmd != steering_cmd,
        steer_rate_limited=rate_lim != rate,
        speed_clipped=v_cmd != speed_cmd,
        accel_limited=acc_lim != acc,
    )
    return new, rep
