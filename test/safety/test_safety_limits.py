"""Per-axis limiters (value → rate → jerk) hold their bounds for any target, report exactly when
they act, and the jerk stage never overshoots."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltc_controller.safety.limits import AxisLimits, limit_axis, limit_command

SPEED = AxisLimits("speed", -1.0, 8.0, 2.0, 4.0, jerk=10.0)
finite = st.floats(-50, 50, allow_nan=False)


@given(finite, st.floats(-1.0, 8.0), st.floats(-5, 5), st.floats(0.0, 0.2))
def test_output_stays_in_bounds_and_rate_for_any_target(target, prev, prev_rate, dt):
    x, rate, active = limit_axis(SPEED, target, prev, prev_rate, dt)
    assert SPEED.min - 1e-12 <= x <= SPEED.max + 1e-12
    grow = abs(x) > abs(prev) and (x >= 0) == (prev >= 0)
    bound = (SPEED.accel if grow else max(SPEED.accel, SPEED.decel)) * dt
    assert abs(x - prev) <= bound + 1e-9
    if dt > 0:
        assert x - prev == pytest.approx(rate * dt, abs=1e-9)
        # Jerk: the rate builds up by at most jerk*dt beyond the previous rate (easing off free).
        step = SPEED.jerk * dt
        assert min(0.0, prev_rate) - step - 1e-6 <= rate <= max(0.0, prev_rate) + step + 1e-6
    assert bool(active) == (x != target)


@given(finite, st.floats(-1.0, 8.0), st.floats(-5, 5), st.floats(1e-3, 0.2))
def test_limited_value_lies_between_previous_and_target(target, prev, prev_rate, dt):
    """No stage overshoots: the output moves from prev towards the (clamped) target only."""
    x, _, _ = limit_axis(SPEED, target, prev, prev_rate, dt)
    clamped = min(max(target, SPEED.min), SPEED.max)
    lo, hi = sorted((prev, clamped))
    assert lo - 1e-12 <= x <= hi + 1e-12


def test_stages_report_in_documented_order():
    _, _, active = limit_axis(SPEED, 20.0, 0.0, 0.0, 0.1)
    assert active == ("speed.value", "speed.rate", "speed.jerk")
    _, _, active = limit_axis(SPEED, 0.1, 0.0, 0.0, 0.1)
    assert active == ()


def test_jerk_limited_ramp_reaches_target_without_overshoot():
    prev, rate, t, xs = 0.0, 0.0, 0.0, []
    while t < 6.0:
        prev, rate, _ = limit_axis(SPEED, 5.0, prev, rate, 0.02)
        xs.append(prev)
        t += 0.02
    assert xs[-1] == pytest.approx(5.0)
    assert max(xs) <= 5.0 + 1e-12
    assert all(b >= a for a, b in zip(xs, xs[1:], strict=False))  # monotone: no ringing


def test_first_tick_moves_nothing():
    assert limit_axis(SPEED, 5.0, 1.0, 0.0, 0.0)[0] == 1.0


def test_command_is_limited_axis_by_axis():
    steer = AxisLimits("steering_angle", -0.5, 0.5, 1.0, 1.0)
    values, rates, active = limit_command((steer, SPEED), (0.9, 3.0), (0.0, 3.0), (0.0, 0.0), 0.1)
    assert values == pytest.approx((0.1, 3.0))
    assert rates == pytest.approx((1.0, 0.0))
    assert active == ("steering_angle.value", "steering_angle.rate")


def test_non_finite_limit_is_rejected():
    with pytest.raises(ValueError, match=r"limits\.speed\.max: must be finite"):
        AxisLimits("speed", 0.0, math.inf, 1.0, 1.0)
