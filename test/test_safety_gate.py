"""The safety gate's state machine and limiters, driven with explicit times (no sleeping)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltc_controller.safety.gate import (
    COMMAND_NON_FINITE,
    COMMAND_OUT_OF_RANGE,
    COMMAND_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    Command,
    GateConfig,
    GateInputs,
    GateState,
    SafetyState,
    apply_limits,
    tick,
)

CFG = GateConfig(command_timeout_s=0.25, heartbeat_timeout_s=0.5, recovery_heartbeats=3)
DT = 0.02


def healthy(t: float, hb: int, steer: float = 0.1, speed: float = 5.0) -> GateInputs:
    return GateInputs(
        command=Command(steer, speed, int(t * 1e9)), command_time=t, heartbeat_time=t, heartbeats=hb
    )


def run(st: GateState, inputs: GateInputs, t0: float, t1: float) -> tuple[GateState, list]:
    outs = []
    t = t0
    while t < t1 - 1e-12:
        st, out = tick(CFG, st, inputs, t)
        outs.append((t, st.state, out))
        t += DT
    return st, outs


def test_startup_sends_only_zero_until_inputs_are_healthy():
    st = GateState()
    st, outs = run(st, GateInputs(), 0.0, 1.0)
    assert st.state == SafetyState.STARTUP
    assert all(o.command.speed == 0.0 and o.command.steering_angle == 0.0 for _, _, o in outs)
    assert COMMAND_TIMEOUT in outs[-1][2].faults and HEARTBEAT_TIMEOUT in outs[-1][2].faults


def test_becomes_active_and_passes_command_within_limits():
    st, out = tick(CFG, GateState(), healthy(0.0, 1), 0.0)
    assert st.state == SafetyState.ACTIVE
    for k in range(1, 200):
        st, out = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
    assert out.command.steering_angle == pytest.approx(0.1)
    assert out.command.speed == pytest.approx(5.0)
    assert out.command.stamp_ns == int(199 * DT * 1e9)  # the camera stamp passes unchanged


def test_fallback_within_command_timeout_and_ramps_to_stop():
    st = GateState()
    for k in range(200):
        st, _ = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
    assert st.output.speed == pytest.approx(5.0)
    last = healthy(199 * DT, 200)
    t_silent = 199 * DT
    st, outs = run(st, last, t_silent + DT, t_silent + 5.0)
    t_fb = next(t for t, s, _ in outs if s == SafetyState.FALLBACK)
    assert t_fb - t_silent <= CFG.command_timeout_s + DT + 1e-9
    speeds = [o.command.speed for _, _, o in outs]
    assert speeds[-1] == 0.0
    # Never faster than max_decel, never a jump.
    assert all(a - b <= CFG.max_decel * DT + 1e-9 for a, b in zip(speeds, speeds[1:], strict=False))


@pytest.mark.parametrize(
    "steer,speed,fault",
    [
        (math.nan, 5.0, COMMAND_NON_FINITE),
        (0.1, math.inf, COMMAND_NON_FINITE),
        (2.0, 5.0, COMMAND_OUT_OF_RANGE),
        (0.1, 50.0, COMMAND_OUT_OF_RANGE),
    ],
)
def test_bad_command_triggers_fallback(steer, speed, fault):
    st = GateState()
    for k in range(10):
        st, _ = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
    assert st.state == SafetyState.ACTIVE
    st, out = tick(CFG, st, healthy(10 * DT, 11, steer, speed), 10 * DT)
    assert st.state == SafetyState.FALLBACK and st.active_fault == fault
    assert math.isfinite(out.command.steering_angle) and math.isfinite(out.command.speed)


def test_recovery_needs_n_heartbeats_without_fault():
    st = GateState()
    for k in range(10):
        st, _ = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
    st, _ = tick(CFG, st, GateInputs(heartbeats=10), 2.0)  # everything timed out
    assert st.state == SafetyState.FALLBACK
    hb = 10
    for k in range(1, CFG.recovery_heartbeats):
        hb += 1
        st, _ = tick(CFG, st, healthy(2.0 + k * DT, hb), 2.0 + k * DT)
        assert st.state == SafetyState.FALLBACK
    hb += 1
    st, _ = tick(CFG, st, healthy(2.0 + 10 * DT, hb), 2.0 + 10 * DT)
    assert st.state == SafetyState.ACTIVE


def test_estop_latches_and_reset_is_refused_while_asserted():
    st = GateState()
    for k in range(10):
        st, _ = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
    inp = healthy(0.2, 11)
    st, out = tick(CFG, st, GateInputs(**{**inp.__dict__, "estop": True}), 0.2)
    assert st.state == SafetyState.ESTOP
    st, out = tick(
        CFG, st, GateInputs(**{**inp.__dict__, "estop": True, "estop_reset_requested": True}), 0.22
    )
    assert st.state == SafetyState.ESTOP and "estop_reset_refused" in out.events
    st, out = tick(CFG, st, healthy(0.24, 12), 0.24)  # released but not reset: still latched
    assert st.state == SafetyState.ESTOP
    st, out = tick(
        CFG, st, GateInputs(**{**healthy(0.26, 13).__dict__, "estop_reset_requested": True}), 0.26
    )
    assert st.state == SafetyState.FALLBACK


@given(
    st.floats(-3, 3), st.floats(-20, 20), st.floats(-0.5, 0.5), st.floats(0, 8), st.floats(0, 0.2)
)
def test_limits_hold_for_any_target(steer, speed, prev_steer, prev_speed, dt):
    prev = Command(prev_steer, prev_speed)
    out, active = apply_limits(CFG, Command(steer, speed), prev, dt)
    assert abs(out.steering_angle) <= CFG.max_steering_angle + 1e-12
    assert abs(out.steering_angle - prev_steer) <= CFG.max_steering_rate * dt + 1e-9
    assert CFG.min_speed - 1e-12 <= out.speed <= CFG.max_speed + 1e-12 or "accel" in active
    assert out.speed - prev_speed <= CFG.max_accel * dt + 1e-9
    assert prev_speed - out.speed <= CFG.max_decel * dt + 1e-9
    assert bool(active) == ((out.steering_angle, out.speed) != (steer, speed))
