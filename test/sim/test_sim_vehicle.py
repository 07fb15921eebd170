"""Kinematic bicycle model: limits, lag and geometry."""

from __future__ import annotations

import math

import pytest

from ltc_controller.sim.vehicle import VehicleParams, VehicleState, step_vehicle

P = VehicleParams()


def run(state, steer, speed, seconds, dt=0.01):
    for _ in range(int(round(seconds / dt))):
        state, rep = step_vehicle(state, steer, speed, dt, P)
    return state, rep


def test_steering_limit_applied():
    st, rep = run(VehicleState(speed=5.0), 2.0, 5.0, 3.0)
    assert st.steering == pytest.approx(P.max_steer_rad)
    assert rep.steer_clipped
    st, _ = run(VehicleState(speed=5.0), -2.0, 5.0, 3.0)
    assert st.steering == pytest.approx(-P.max_steer_rad)


def test_steering_rate_limit_applied():
    st, rep = step_vehicle(VehicleState(), 0.5, 0.0, 0.1, P)
    assert st.steering == pytest.approx(P.max_steer_rate_rad_s * 0.1)
    assert rep.steer_rate_limited


def test_acceleration_and_braking_limits():
    st, _ = run(VehicleState(), 0.0, 10.0, 1.0)
    assert st.speed == pytest.approx(P.max_accel_mps2 * 1.0, rel=0.02)
    st, _ = run(VehicleState(speed=10.0), 0.0, 0.0, 1.0)
    assert st.speed == pytest.approx(10.0 - P.max_decel_mps2, rel=0.02)


def test_first_order_lag_settles_without_overshoot():
    st, _ = run(VehicleState(), 0.05, 3.0, 5.0)
    assert st.steering == pytest.approx(0.05, abs=1e-6)
    assert st.speed == pytest.approx(3.0, abs=1e-6)
    st, _ = step_vehicle(VehicleState(steering=0.049), 0.05, 0.0, 1.0, P)  # dt >> tau
    assert st.steering == pytest.approx(0.05)


def test_no_reverse_and_speed_clipped():
    st, rep = run(VehicleState(speed=1.0), 0.0, -5.0, 3.0)
    assert 0.0 <= st.speed < 1e-3 and rep.speed_clipped
    st, _ = run(VehicleState(), 0.0, 99.0, 20.0)
    assert st.speed == pytest.approx(P.max_speed_mps)


def test_constant_steering_drives_circle_of_bicycle_radius():
    delta = 0.2
    st = VehicleState(speed=5.0, steering=delta)
    for _ in range(2000):
        st, _ = step_vehicle(st, delta, 5.0, 0.005, P)
    r = P.wheelbase_m / math.tan(delta)
    # centre of the circle is at (0, r) for a start at the origin heading +x
    assert math.hypot(st.x, st.y - r) == pytest.approx(r, rel=1e-3)
    assert st.yaw > 0.0  # positive steering turns left (CCW)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="dt"):
        step_vehicle(VehicleState(), 0.0, 0.0, 0.0, P)
    with pytest.raises(ValueError, match="non-finite"):
        step_vehicle(VehicleState(), math.nan, 0.0, 0.01, P)
    with pytest.raises(ValueError, match="wheelbase_m"):
        VehicleParams(wheelbase_m=0.0)
