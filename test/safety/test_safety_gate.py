"""The safety gate: state machine, faults and fallback, with explicit times (no sleeping)."""

import math
from dataclasses import replace

import pytest

from ltc_controller.safety.gate import (
    Command,
    Fault,
    GateConfig,
    GateEvent,
    GateInputs,
    GateState,
    SafetyState,
    initial_state,
    tick,
)
from ltc_controller.safety.limits import AxisLimits

N = 3
CFG = GateConfig(command_timeout_s=0.25, heartbeat_timeout_s=0.5, recovery_heartbeats=N)
DT = 0.02
STEER, SPEED = 0, 1


def healthy(t: float, hb: int, steer: float = 0.1, speed: float = 5.0) -> GateInputs:
    return GateInputs(
        command=Command((steer, speed), int(t * 1e9)),
        command_time=t,
        heartbeat_time=t,
        heartbeats=hb,
    )


def run(cfg, st, inputs_at, t0: float, t1: float):
    """Tick from t0 to t1 every DT; ``inputs_at(t, k)`` gives the inputs. Returns the final state
    and [(t, state, output)]."""
    outs = []
    t, k = t0, 0
    while t < t1 - 1e-12:
        st, out = tick(cfg, st, inputs_at(t, k), t)
        outs.append((t, st.state, out))
        t += DT
        k += 1
    return st, outs


def drive_active(cfg=CFG, t1: float = 4.0, steer: float = 0.1, speed: float = 5.0):
    """Healthy policy from t=0 (one heartbeat per tick) until the output has settled."""
    st, outs = run(cfg, initial_state(cfg), lambda t, k: healthy(t, k + 1, steer, speed), 0.0, t1)
    assert st.state == SafetyState.ACTIVE
    return st, outs


def counts(st: GateState) -> dict[str, int]:
    return dict(st.fault_counts)


def test_startup_sends_only_zero_until_inputs_are_healthy():
    st, outs = run(CFG, initial_state(CFG), lambda t, k: GateInputs(), 0.0, 1.0)
    assert st.state == SafetyState.STARTUP
    assert all(o.command.values == (0.0, 0.0) for _, _, o in outs)
    assert outs[-1][2].faults == (Fault.COMMAND_TIMEOUT, Fault.HEARTBEAT_TIMEOUT)
    assert sum(counts(st).values()) == 0  # inputs not up yet at start-up is not counted


def test_startup_needs_n_heartbeats_before_active():
    st = initial_state(CFG)
    for k in range(N - 1):
        st, _ = tick(CFG, st, healthy(k * DT, k + 1), k * DT)
        assert st.state == SafetyState.STARTUP
    st, _ = tick(CFG, st, healthy(N * DT, N), N * DT)
    assert st.state == SafetyState.ACTIVE


def test_active_passes_command_within_limits_and_keeps_its_stamp():
    st, outs = drive_active()
    out = outs[-1][2]
    assert out.command.values == pytest.approx((0.1, 5.0))
    assert out.command.stamp_ns == int(outs[-1][0] * 1e9)  # the camera stamp passes unchanged
    # The speed ramped up at max_accel (2 m/s^2): 5 m/s took 2.5 s, never a jump.
    speeds = [o.command.values[SPEED] for _, _, o in outs]
    assert max(b - a for a, b in zip(speeds, speeds[1:], strict=False)) <= 2.0 * DT + 1e-9


def test_fallback_within_command_timeout_then_ramps_to_stop_holding_steering():
    st, outs = drive_active()
    t_silent = outs[-1][0]
    last = healthy(t_silent, 1000)
    st, outs = run(CFG, st, lambda t, k: last, t_silent + DT, t_silent + 3.0)
    t_fb, _, o_fb = next(x for x in outs if x[1] == SafetyState.FALLBACK)
    assert t_fb - t_silent <= CFG.command_timeout_s + DT + 1e-9
    assert st.active_fault == Fault.COMMAND_TIMEOUT
    assert o_fb.transition == (SafetyState.ACTIVE, SafetyState.FALLBACK)
    speeds = [o.command.values[SPEED] for _, _, o in outs]
    assert speeds[-1] == 0.0
    decel = CFG.axes[SPEED].decel
    assert all(0.0 <= a - b <= decel * DT + 1e-9 for a, b in zip(speeds, speeds[1:], strict=False))
    assert all(o.command.values[STEER] == pytest.approx(0.1) for _, _, o in outs)  # held
    assert "speed.rate" in o_fb.active_limiters


def test_centre_fallback_brings_steering_back_at_its_rate():
    cfg = replace(CFG, fallback=("zero", "zero"))
    st, outs = drive_active(cfg, steer=0.4)
    t0 = outs[-1][0] + DT
    st, outs = run(cfg, st, lambda t, k: GateInputs(heartbeats=10_000), t0, t0 + 1.0)
    steer = [o.command.values[STEER] for _, _, o in outs]
    assert steer[-1] == 0.0
    rate = cfg.axes[STEER].decel
    assert all(0 <= a - b <= rate * DT + 1e-9 for a, b in zip(steer, steer[1:], strict=False))


@pytest.mark.parametrize(
    "steer,speed,fault",
    [
        (math.nan, 5.0, Fault.COMMAND_NON_FINITE),
        (0.1, math.inf, Fault.COMMAND_NON_FINITE),
        (2.0, 5.0, Fault.COMMAND_OUT_OF_RANGE),
        (0.1, 50.0, Fault.COMMAND_OUT_OF_RANGE),
        (0.1, -2.0, Fault.COMMAND_OUT_OF_RANGE),
    ],
)
def test_bad_command_triggers_fallback_and_is_counted(steer, speed, fault):
    st, outs = drive_active(t1=0.5)
    t = outs[-1][0] + DT
    st, out = tick(CFG, st, healthy(t, 1000, steer, speed), t)
    assert st.state == SafetyState.FALLBACK and st.active_fault == fault
    assert counts(st)[fault] == 1
    assert all(math.isfinite(v) for v in out.command.values)


def test_slightly_out_of_range_command_is_clamped_not_a_fault():
    st, outs = drive_active(steer=0.52)  # max 0.5, tolerance 10 %
    assert outs[-1][2].command.values[STEER] == 0.5
    assert "steering_angle.value" in outs[-1][2].active_limiters


def test_policy_fault_and_stale_command_are_faults():
    st, outs = drive_active(t1=0.5)
    t = outs[-1][0] + DT
    st2, _ = tick(CFG, st, replace(healthy(t, 1000), policy_fault=True), t)
    assert st2.active_fault == Fault.POLICY_FAULT
    cfg = replace(CFG, command_max_age_s=0.2)
    st3, _ = tick(cfg, st, replace(healthy(t, 1000), command_age_s=0.25), t)
    assert st3.state == SafetyState.FALLBACK and st3.active_fault == Fault.COMMAND_STALE


def test_recovery_needs_n_heartbeats_without_fault():
    st, outs = drive_active(t1=0.5)
    st, _ = tick(CFG, st, GateInputs(heartbeats=100), 2.0)  # everything timed out
    assert st.state == SafetyState.FALLBACK
    hb = 100
    for k in range(1, N):
        hb += 1
        st, out = tick(CFG, st, healthy(2.0 + k * DT, hb), 2.0 + k * DT)
        assert st.state == SafetyState.FALLBACK
    hb += 1
    st, out = tick(CFG, st, healthy(2.0 + N * DT, hb), 2.0 + N * DT)
    assert out.transition == (SafetyState.FALLBACK, SafetyState.ACTIVE)


def test_no_auto_recover_needs_a_reset_request_refused_while_unhealthy():
    cfg = replace(CFG, auto_recover=False)
    st, outs = drive_active(cfg, t1=0.5)
    st, _ = tick(cfg, st, GateInputs(heartbeats=100), 2.0)
    hb = 100
    for k in range(1, 2 * N):
        hb += 1
        st, _ = tick(cfg, st, healthy(2.0 + k * DT, hb), 2.0 + k * DT)
    assert st.state == SafetyState.FALLBACK  # healthy, but nobody asked
    st, out = tick(cfg, st, replace(GateInputs(heartbeats=hb), reset_requested=True), 2.5)
    assert st.state == SafetyState.FALLBACK and GateEvent.REENGAGE_REFUSED in out.events
    assert st.resets_refused == 1
    t = 3.0
    for k in range(N):
        hb += 1
        st, _ = tick(cfg, st, healthy(t + k * DT, hb), t + k * DT)
    t += N * DT
    st, out = tick(cfg, st, replace(healthy(t, hb), reset_requested=True), t)
    assert st.state == SafetyState.ACTIVE and GateEvent.REENGAGED in out.events


def test_estop_latches_and_reset_is_refused_while_asserted():
    st, outs = drive_active(t1=0.5)
    t = 0.5
    st, out = tick(CFG, st, replace(healthy(t, 100), estop=True), t)
    assert st.state == SafetyState.ESTOP and st.active_fault == Fault.ESTOP
    assert out.command.values[SPEED] < outs[-1][2].command.values[SPEED]  # braking this tick
    t += DT
    st, out = tick(CFG, st, replace(healthy(t, 101), estop=True, reset_requested=True), t)
    assert st.state == SafetyState.ESTOP and GateEvent.ESTOP_RESET_REFUSED in out.events
    assert st.resets_refused == 1
    t += DT
    st, out = tick(CFG, st, healthy(t, 102), t)  # released but not reset: still latched
    assert st.state == SafetyState.ESTOP
    t += DT
    st, out = tick(CFG, st, replace(healthy(t, 103), reset_requested=True), t)
    assert st.state == SafetyState.FALLBACK and GateEvent.ESTOP_RESET in out.events
    for k in range(1, N + 1):
        st, out = tick(CFG, st, healthy(t + k * DT, 103 + k), t + k * DT)
    assert st.state == SafetyState.ACTIVE
    assert counts(st)[Fault.ESTOP] == 1


def test_restart_with_a_latched_estop_stays_latched_until_an_explicit_reset():
    st = initial_state(CFG, estop_latched=True)
    assert st.state == SafetyState.ESTOP and st.active_fault == Fault.ESTOP
    # A healthy policy and no e-stop asserted (its source is gone): still ESTOP, zero output.
    st, outs = run(CFG, st, lambda t, k: healthy(t, k + 1), 0.0, 2.0)
    assert {s for _, s, _ in outs} == {SafetyState.ESTOP}
    assert all(o.command.values == (0.0, 0.0) for _, _, o in outs)
    assert all(o.transition is None for _, _, o in outs[1:])
    # Teleop does not unlatch it either.
    inp = replace(healthy(2.0, 200), teleop=Command((0.1, 1.0)), teleop_time=2.0)
    st, out = tick(CFG, st, inp, 2.0)
    assert st.state == SafetyState.ESTOP and out.command.values == (0.0, 0.0)
    # The reset is refused while an e-stop is asserted, accepted once it is not.
    st, out = tick(CFG, st, replace(healthy(2.02, 201), estop=True, reset_requested=True), 2.02)
    assert st.state == SafetyState.ESTOP and GateEvent.ESTOP_RESET_REFUSED in out.events
    st, out = tick(CFG, st, replace(healthy(2.04, 202), reset_requested=True), 2.04)
    assert st.state == SafetyState.FALLBACK and GateEvent.ESTOP_RESET in out.events
    st, outs = run(CFG, st, lambda t, k: healthy(t, 203 + k), 2.06, 2.06 + (N + 1) * DT)
    assert st.state == SafetyState.ACTIVE


def test_teleop_overrides_policy_and_release_falls_back():
    st, outs = drive_active(t1=1.0)
    t, hb = 1.0, 100
    teleop = Command((-0.2, 1.0), 42)
    for _ in range(100):  # 2 s of teleop while the policy stays healthy
        hb += 1
        inp = replace(healthy(t, hb), teleop=teleop, teleop_time=t)
        st, out = tick(CFG, st, inp, t)
        t += DT
    assert st.state == SafetyState.TELEOP
    assert out.command.values == pytest.approx((-0.2, 1.0)) and out.command.stamp_ns == 42
    # Teleop stops: FALLBACK after teleop_timeout_s, named; then the usual recovery.
    t_last = t - DT
    st, outs = run(
        CFG,
        st,
        lambda tt, k: replace(healthy(tt, hb + k + 1), teleop=teleop, teleop_time=t_last),
        t,
        t + 1.0,
    )
    states = [s for _, s, _ in outs]
    i_fb = states.index(SafetyState.FALLBACK)
    assert outs[i_fb][0] - t_last <= CFG.teleop_timeout_s + DT + 1e-9
    assert outs[i_fb][2].transition == (SafetyState.TELEOP, SafetyState.FALLBACK)
    assert counts(st)[Fault.TELEOP_RELEASED] == 1
    assert states[-1] == SafetyState.ACTIVE
    assert states.index(SafetyState.ACTIVE) - i_fb >= N  # N heartbeats (one per tick) first


def test_estop_beats_teleop_and_non_finite_teleop_is_ignored():
    st, _ = drive_active(t1=0.5)
    t = 0.6
    inp = replace(healthy(t, 100), teleop=Command((0.0, 1.0)), teleop_time=t, estop=True)
    st, _ = tick(CFG, st, inp, t)
    assert st.state == SafetyState.ESTOP
    st2, _ = drive_active(t1=0.5)
    inp = replace(healthy(t, 100), teleop=Command((math.nan, 1.0)), teleop_time=t)
    st2, _ = tick(CFG, st2, inp, t)
    assert st2.state == SafetyState.ACTIVE


def test_odometry_seeds_the_fallback_ramp_from_the_measured_speed():
    st, outs = drive_active()  # commanding 5 m/s
    t = outs[-1][0] + DT
    gone = t - 1.0  # the policy went silent a second ago
    inp = GateInputs(
        command=Command((0.1, 5.0)),
        command_time=gone,
        heartbeat_time=gone,
        heartbeats=10_000,
        measured=(None, 3.0),
        measured_time=t,
    )
    st, out = tick(CFG, st, inp, t)
    assert st.state == SafetyState.FALLBACK
    assert out.command.values[SPEED] == pytest.approx(3.0 - CFG.axes[SPEED].decel * DT)
    # Stale odometry seeds nothing: the ramp starts from the last output.
    st2, outs2 = drive_active()
    t2 = outs2[-1][0] + DT
    inp = GateInputs(heartbeats=10_000, measured=(None, 3.0), measured_time=t2 - 1.0)
    inp = replace(inp, command=Command((0.1, 5.0)), command_time=t2 - 1.0, heartbeat_time=t2)
    st2, out2 = tick(CFG, st2, inp, t2)
    assert out2.command.values[SPEED] == pytest.approx(5.0 - CFG.axes[SPEED].decel * DT)


DRONE = GateConfig(
    axes=(
        AxisLimits("linear_x", -2.0, 2.0, 2.0, 3.0),
        AxisLimits("linear_y", -2.0, 2.0, 2.0, 3.0),
        AxisLimits("linear_z", -1.0, 1.0, 1.0, 2.0),
        AxisLimits("angular_z", -1.0, 1.0, 2.0, 4.0),
    ),
    fallback=("zero", "zero", "zero", "zero"),
    recovery_heartbeats=N,
    land_after_s=2.0,
)


def drone_cmd(t: float, hb: int) -> GateInputs:
    return GateInputs(
        command=Command((1.5, -0.5, 0.5, 0.3)), command_time=t, heartbeat_time=t, heartbeats=hb
    )


def test_drone_fallback_hovers_then_requests_landing_once():
    st, outs = run(DRONE, initial_state(DRONE), lambda t, k: drone_cmd(t, k + 1), 0.0, 2.0)
    assert outs[-1][2].command.values == pytest.approx((1.5, -0.5, 0.5, 0.3))
    st, outs = run(DRONE, st, lambda t, k: GateInputs(heartbeats=10_000), 2.0, 6.0)
    t_fb = next(t for t, s, _ in outs if s == SafetyState.FALLBACK)
    hover = next(t for t, _, o in outs if o.command.values == (0.0, 0.0, 0.0, 0.0))
    assert hover - t_fb <= 1.5 / 3.0 + DT + 1e-9  # slowest axis: 1.5 m/s at 3 m/s^2
    lands = [t for t, _, o in outs if GateEvent.LAND_REQUESTED in o.events]
    assert len(lands) == 1 and lands[0] - t_fb == pytest.approx(DRONE.land_after_s, abs=DT)
    assert all(o.land_request == (t >= lands[0]) for t, _, o in outs)


def test_drone_startup_never_requests_landing():
    st, outs = run(DRONE, initial_state(DRONE), lambda t, k: GateInputs(), 0.0, 5.0)
    assert not any(o.land_request for _, _, o in outs)


def test_hold_curvature_keeps_the_path_while_slowing_down():
    cfg = GateConfig(
        axes=(
            AxisLimits("linear_x", -1.0, 2.0, 1.0, 1.0),
            AxisLimits("linear_y", 0.0, 0.0, 1.0, 1.0),
            AxisLimits("linear_z", 0.0, 0.0, 1.0, 1.0),
            AxisLimits("angular_z", -1.0, 1.0, 10.0, 10.0),
        ),
        fallback=("zero", "zero", "zero", "hold_curvature"),
        recovery_heartbeats=N,
    )
    inp = GateInputs(
        command=Command((2.0, 0.0, 0.0, 0.5)), command_time=0.0, heartbeat_time=0.0, heartbeats=9
    )
    st, outs = run(cfg, initial_state(cfg), lambda t, k: replace(inp, command_time=t), 0.0, 3.0)
    st, outs = run(cfg, st, lambda t, k: GateInputs(heartbeats=9), 3.0, 6.0)
    for _, s, o in outs:
        v, w = o.command.values[0], o.command.values[3]
        assert s == SafetyState.FALLBACK
        assert w == pytest.approx(0.25 * v, abs=1e-9)  # curvature 0.5 / 2.0 held
    assert outs[-1][2].command.values == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fallback=("hold",)), "2 axes"),
        (dict(fallback=("hold", "hold")), "velocity axis must fall back to 'zero'"),
        (dict(fallback=("hold_curvature", "zero")), "needs a forward-speed axis"),
        (dict(command_timeout_s=0.0), "command_timeout_s"),
    ],
)
def test_inconsistent_config_is_rejected_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GateConfig(**kwargs)


def test_limits_that_exclude_zero_are_rejected_naming_the_axis():
    with pytest.raises(ValueError, match=r"limits\.speed: need min <= 0 <= max"):
        AxisLimits("speed", 1.0, 8.0, 2.0, 4.0)
    with pytest.raises(ValueError, match=r"limits\.speed\.decel"):
        AxisLimits("speed", 0.0, 8.0, 2.0, 0.0)


def test_state_survives_a_config_change_between_ticks():
    st, outs = drive_active()
    slower = replace(CFG, axes=(CFG.axes[0], AxisLimits("speed", 0.0, 3.0, 2.0, 1.0)))
    st, out = tick(slower, st, healthy(5.0, 10_000, speed=3.2), 5.0)
    assert st.state == SafetyState.ACTIVE
    # Above the new max: brought down at the decel limit, not cut.
    assert out.command.values[SPEED] == pytest.approx(5.0 - 1.0 * (5.0 - outs[-1][0]))
    assert set(out.active_limiters) >= {"speed.value", "speed.rate"}


def test_shutdown_ramps_to_the_fallback_target_and_ignores_teleop():
    st, outs = drive_active(t1=4.0)
    t = 4.0
    # A fresh teleop command at the moment the node is told to stop: shutdown wins.
    teleop = dict(teleop=Command((0.3, 2.0), int(t * 1e9)), teleop_time=t)
    st, out = tick(CFG, st, replace(healthy(t, 200), shutdown=True, **teleop), t)
    assert st.state == SafetyState.FALLBACK and st.active_fault == Fault.SHUTDOWN
    assert counts(st)[Fault.SHUTDOWN] == 1
    speeds = [out.command.values[SPEED]]
    while speeds[-1] > 0.0 and t < 10.0:
        t += DT
        st, out = tick(CFG, st, replace(healthy(t, 200), shutdown=True, **teleop), t)
        speeds.append(out.command.values[SPEED])
        assert st.state == SafetyState.FALLBACK
    decel = CFG.axes[SPEED].decel
    # From 5 m/s at 4 m/s^2: 1.25 s of braking, never faster than decel, steering held.
    assert speeds[-1] == 0.0 and t - 4.0 == pytest.approx(5.0 / decel, abs=2 * DT)
    assert all(0.0 <= a - b <= decel * DT + 1e-9 for a, b in zip(speeds, speeds[1:], strict=False))
    assert out.command.values[STEER] == pytest.approx(0.1)
