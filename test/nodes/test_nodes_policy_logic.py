"""The ``ltc_policy`` node's decisions as pure functions: command mapping, heartbeat rule,
health during a reset, the state-reset rule around a fallback, and the plan of a parameter set.
No transport, no clock: each case is a TickResult built by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ltc_controller.models.policy import PolicyConfig
from ltc_controller.nodes.commands import TWIST
from ltc_controller.nodes.policy_logic import (
    CommandMapping,
    HealthLog,
    PolicyNodeState,
    check_outputs,
    command_values,
    decide,
    health_details,
    resets_state,
)
from ltc_controller.nodes.policy_params import PARAMS, plan_set, runtime_overrides
from ltc_controller.params import ParameterError, resolve
from ltc_controller.runtime.factory import runtime_config
from ltc_controller.runtime.loop import TickResult
from ltc_controller.runtime.watchdog import Health

NAMES = ("steering_angle",)
CAR = CommandMapping()


def result(outputs=(0.1,), **kw) -> TickResult:
    """A tick that took one step on a fresh frame, on time, unless ``kw`` says otherwise."""
    base = dict(
        outputs=None if outputs is None else np.asarray(outputs, dtype=np.float64),
        frame_stamp_ns=123_000_000,
        fresh=outputs is not None,
        deadline_met=True,
        steps=1,
        health=Health.OK,
    )
    base.update(kw)
    return TickResult(**base)


def test_a_fresh_on_time_tick_sends_the_command_and_a_heartbeat_stamped_with_the_frame():
    d = decide(result(), PolicyNodeState(), CAR, NAMES)
    assert d.command == (0.1, 5.0) and d.heartbeat and d.stamp_ns == 123_000_000
    assert d.health == Health.OK and d.state.heartbeats == 1 and d.state.work_ok


@pytest.mark.parametrize(
    "kw",
    [
        {"deadline_met": False},
        {"fresh": False},
        {"events": ("lag",)},
        {"events": ("clock_jump_back",)},
        {"events": ("stale_state",)},
        {"events": ("stall",)},
        {"events": ("clock_jump_fwd",)},
        {"events": ("clock_stopped",)},
    ],
)
def test_no_heartbeat_when_the_tick_cannot_vouch_for_the_policy(kw):
    d = decide(result(**kw), PolicyNodeState(), CAR, NAMES)
    assert d.command is not None and not d.heartbeat and d.state.heartbeats == 0


def test_a_tick_with_no_step_due_does_not_hide_a_stalled_inference():
    # The last tick with work missed its deadline; one with nothing to do cannot vouch.
    st = decide(result(deadline_met=False), PolicyNodeState(), CAR, NAMES).state
    assert not st.work_ok
    d = decide(result(steps=0), st, CAR, NAMES)
    assert d.command is not None and not d.heartbeat
    d = decide(result(steps=2), d.state, CAR, NAMES)
    assert d.heartbeat and d.state.work_ok


def test_a_non_finite_output_is_never_sent_and_is_a_fault():
    d = decide(result(outputs=(math.nan,)), PolicyNodeState(), CAR, NAMES)
    assert d.command is None and not d.heartbeat and d.non_finite
    assert d.health == Health.FAULT and d.reasons[-1] == "non_finite_output"
    assert d.state.non_finite_outputs == 1


@pytest.mark.parametrize("level, health", [(1, Health.DEGRADED), (2, Health.FAULT)])
def test_the_ood_monitor_level_names_its_reason_and_keeps_a_worse_health(level, health):
    d = decide(result(), PolicyNodeState(), CAR, NAMES, ood_level=level)
    assert d.health == health and d.reasons == ("ood_features",)
    assert d.command == (0.1, 5.0)  # the command still goes out: the safety node decides
    worse = result(health=Health.FAULT, reasons=("overruns",))
    d = decide(worse, PolicyNodeState(), CAR, NAMES, ood_level=1)
    assert d.health == Health.FAULT and d.reasons == ("overruns", "ood_features")


@pytest.mark.parametrize("level, health", [(1, Health.DEGRADED), (2, Health.FAULT)])
def test_the_attention_monitor_level_names_its_own_reason_beside_the_features(level, health):
    d = decide(result(), PolicyNodeState(), CAR, NAMES, attention_level=level)
    assert d.health == health and d.reasons == ("attention_off_task",)
    assert d.command == (0.1, 5.0)
    d = decide(result(), PolicyNodeState(), CAR, NAMES, ood_level=2, attention_level=1)
    assert d.health == Health.FAULT and d.reasons == ("ood_features", "attention_off_task")


def test_waiting_for_the_first_output_after_a_reset_is_degraded_reset_not_a_fault():
    waiting = result(outputs=None, health=Health.FAULT, reasons=("no_frame",))
    d = decide(waiting, PolicyNodeState(grace=True), CAR, NAMES)
    assert (d.health, d.reasons, d.command) == (Health.DEGRADED, ("reset",), None)
    assert d.state.grace
    # Without a reset it stays a FAULT; and another fault is never softened.
    assert decide(waiting, PolicyNodeState(), CAR, NAMES).health == Health.FAULT
    lagging = result(outputs=None, health=Health.FAULT, reasons=("no_frame", "lag"))
    assert decide(lagging, PolicyNodeState(grace=True), CAR, NAMES).reasons == ("no_frame", "lag")
    # The first output ends the grace.
    assert not decide(result(), d.state, CAR, NAMES).state.grace


def test_a_stopped_clock_is_a_fault_even_while_waiting_after_a_reset():
    stopped = result(
        outputs=None, health=Health.FAULT, reasons=("clock_stopped", "no_frame"), steps=0
    )
    d = decide(stopped, PolicyNodeState(grace=True), CAR, NAMES)
    assert (d.health, d.reasons, d.command, d.heartbeat) == (
        Health.FAULT,
        ("clock_stopped", "no_frame"),
        None,
        False,
    )


def test_command_mappings():
    assert command_values(CAR, {"steering_angle": 2.0}) == (0.5, 5.0)  # clamped
    assert command_values(CommandMapping(steering_scale=-1.0), {"steering_angle": 0.2}) == (
        -0.2,
        5.0,
    )
    bike = CommandMapping(command_type=TWIST, wheelbase_m=2.0)
    v, _, _, yaw = command_values(bike, {"steering_angle": 0.3, "speed": 4.0})
    assert v == 4.0 and yaw == pytest.approx(4.0 * math.tan(0.3) / 2.0)
    drone = CommandMapping(command_type=TWIST, twist_mapping="direct", velocity_scale=2.0)
    assert command_values(drone, {"linear_x": 1.0, "linear_z": -0.5, "angular_z": 0.25}) == (
        2.0,
        0.0,
        -1.0,
        0.25,
    )
    assert command_values(drone, {"angular_z": 0.1})[0] == 5.0  # speed_mps


def test_outputs_that_do_not_fit_the_mapping_are_named():
    check_outputs(CAR, NAMES, "p")
    with pytest.raises(ParameterError, match=r"unknown: \['linear_x'\]"):
        check_outputs(CAR, ("linear_x",), "p")
    check_outputs(CommandMapping(command_type=TWIST, twist_mapping="direct"), ("linear_x",), "p")


@pytest.mark.parametrize(
    ("reset_on", "was", "state", "reset"),
    [
        ("leave", "ACTIVE", "FALLBACK", True),
        ("leave", "ACTIVE", "TELEOP", True),
        ("leave", "FALLBACK", "ACTIVE", False),
        ("leave", "", "STARTUP", False),
        ("handback", "FALLBACK", "ACTIVE", True),
        ("handback", "ESTOP", "ACTIVE", True),
        ("handback", "ACTIVE", "FALLBACK", False),
        ("handback", "STARTUP", "ACTIVE", False),
    ],
)
def test_state_reset_rule_around_a_fallback(reset_on, was, state, reset):
    assert resets_state(reset_on, was, state) is reset


def test_a_set_plan_says_what_applying_takes_and_applies_nothing():
    p = resolve(PARAMS, {})
    frozen = dict(p)
    plan = plan_set(p, {"max_frame_age_s": 0.5})
    assert (plan.rebuild, plan.runtime, plan.saliency) == (False, True, False)
    assert plan.params["max_frame_age_s"] == 0.5 and p == frozen
    new_file = plan_set(p, {"policy_file": "x.safetensors"})
    assert new_file.rebuild and new_file.reload
    crop = plan_set(p, {"preprocess.crop_top": 10})
    assert crop.rebuild and not crop.reload  # rebuilt on the policy already loaded
    assert not plan_set(p, {"policy_file": ""}).rebuild  # unchanged
    assert plan_set(p, {"saliency.enabled": True}).saliency
    with pytest.raises(ParameterError, match="deadline_s"):
        plan_set(p, {"deadline_s": 0.2})  # above the 0.05 s period


def test_runtime_overrides_follow_the_parameters():
    p = resolve(PARAMS, {"control_rate_hz": 40.0, "preprocess.crop_top": 7})
    o = runtime_overrides(p)
    assert o.step_s is None and o.deadline_s == pytest.approx(0.5 / 40.0)
    assert o.crop_top == 7 and o.crop_bottom is None
    assert runtime_overrides(resolve(PARAMS, {"deadline_s": 0.01})).deadline_s == 0.01
    # Time faults: the gap bound knows the control period; zero stamps are ROS's "unset".
    assert o.tick_period_s == pytest.approx(1 / 40.0) and o.reject_zero_stamps
    assert o.clock_stop_s == 0.0
    slow = runtime_config(
        PolicyConfig(), runtime_overrides(resolve(PARAMS, {"control_rate_hz": 2.0}))
    )
    assert slow.gap_s == pytest.approx(1.0) and slow.clock_stop_threshold_s == 0.3
    assert runtime_config(PolicyConfig(), o).gap_s == 0.3  # max_frame_age_s at 40 Hz


def test_clock_stop_s_applies_in_place():
    p = resolve(PARAMS, {})
    plan = plan_set(p, {"clock_stop_s": 1.5})
    assert (plan.rebuild, plan.runtime) == (False, True)
    cfg = runtime_config(PolicyConfig(), runtime_overrides(plan.params))
    assert cfg.clock_stop_threshold_s == 1.5


# -- health log ------------------------------------------------------------------------------
OK_ = (Health.OK, ())
MISS = (Health.DEGRADED, ("deadline_miss",))
OVERRUNS = (Health.FAULT, ("overruns",))


def test_health_transition_line_names_the_reasons_and_what_they_measured():
    log = HealthLog(5.0)
    line = log.transition(
        10.0, MISS, (Health.FAULT, ("overruns", "late_frame")), {"overruns": "5 misses in 2 s"}
    )
    assert line is not None
    assert line.startswith("health DEGRADED -> FAULT: +overruns (5 misses in 2 s); +late_frame")
    assert "-deadline_miss" in line and "[now: overruns, late_frame]" in line
    assert (log.transitions, log.faults, log.suppressed) == (1, 1, 0)
    back = log.transition(10.5, (Health.FAULT, ("overruns", "late_frame")), OK_)
    assert back == "health FAULT -> OK: -overruns; -late_frame [now: ok]"


def test_flapping_health_gives_one_line_per_reason_per_period_and_counts_the_rest():
    log = HealthLog(5.0)
    lines = []
    t = 0.0
    for _ in range(100):  # OK <-> DEGRADED at 10 Hz for 10 s
        lines.append(log.transition(t, OK_, MISS))
        lines.append(log.flush(t + 0.05, MISS))
        lines.append(log.transition(t + 0.05, MISS, OK_))
        lines.append(log.flush(t + 0.1, OK_))
        t += 0.1
    out = [x for x in lines if x is not None]
    # Two keys (+deadline_miss, -deadline_miss) over 10 s at one line per 5 s each: the first
    # two transitions, then a count of the rest about every 5 s.
    assert out[0].startswith("health OK -> DEGRADED: +deadline_miss")
    assert out[1].startswith("health DEGRADED -> OK: -deadline_miss")
    assert 3 <= len(out) <= 6, out
    logged = sum(1 for x in out if x.startswith("health ") and "->" in x)
    assert log.transitions == 200 and log.suppressed == log.transitions - logged
    assert all("transitions suppressed in the last 5 s: " in x for x in out[2:]), out
    # Nothing is lost: every suppressed transition shows up in a count, now or at a flush.
    later = log.flush(t + 10.0, OK_)
    counted = sum(int(n) for x in [*out, later or ""] for n in _counts(x))
    assert counted >= log.suppressed  # each transition is counted under each of its keys


def _counts(line: str) -> list[str]:
    import re

    return re.findall(r"\+(\d+) such transitions", line) + re.findall(r" x(\d+)", line)


def test_a_new_reason_is_logged_at_once_even_while_another_is_rate_limited():
    log = HealthLog(5.0)
    assert log.transition(0.0, OK_, MISS) is not None
    assert log.transition(0.1, MISS, OK_) is not None
    assert log.transition(0.2, OK_, MISS) is None  # deadline_miss again: counted
    line = log.transition(0.3, MISS, OVERRUNS, {"overruns": "5 in 1 s"})
    assert line is not None and "+overruns (5 in 1 s)" in line and log.faults == 1


def test_flush_puts_every_pending_count_in_one_line():
    log = HealthLog(1.0)
    log.transition(0.0, OK_, MISS)
    log.transition(0.05, MISS, OK_)
    assert log.transition(0.1, OK_, MISS) is None
    assert log.transition(0.15, MISS, OK_) is None
    line = log.flush(1.0, OK_)  # +deadline_miss is due, -deadline_miss a tick later
    assert line is not None and "deadline_miss x1, -deadline_miss x1" in line
    assert log.flush(1.05, OK_) is None


def test_flush_reports_suppressed_transitions_once_their_period_is_over():
    log = HealthLog(1.0)
    log.transition(0.0, OK_, MISS)
    log.transition(0.1, MISS, OK_)
    assert log.transition(0.2, OK_, MISS) is None
    assert log.flush(0.5, MISS) is None  # not yet
    line = log.flush(1.0, MISS)
    assert line is not None and "deadline_miss x1" in line
    assert "now DEGRADED (deadline_miss)" in line
    assert log.flush(5.0, MISS) is None  # counted once


def test_health_details_measure_each_reason():
    r = result(frame_age_s=0.25, lag_s=0.12, duration_s=0.031, backlog_steps=2)
    d = health_details(("overruns", "late_frame", "lagging", "no_frame"), r, 5, 2.0)
    assert d["overruns"] == (
        "deadline misses in the last 2 s: 5; this tick 31.0 ms, steps postponed: 2"
    )
    assert d["late_frame"] == "frame age 0.250 s" and d["lagging"] == "lag 0.120 s"
    assert "no_frame" not in d
    with pytest.raises(ValueError):
        HealthLog(-1.0)


def test_an_ood_fault_threshold_below_the_degraded_one_is_refused():
    current = resolve(PARAMS, {})
    with pytest.raises(ParameterError, match="ood.fault_threshold.*below ood.degraded"):
        plan_set(current, {"ood.degraded_threshold": 3.0, "ood.fault_threshold": 2.0})
    assert plan_set(current, {"ood.fault_threshold": 2.0}).ood  # the file's degraded: clamped
    with pytest.raises(ParameterError, match="attention.fault_threshold.*below attention"):
        plan_set(current, {"attention.degraded_threshold": 0.3, "attention.fault_threshold": 0.2})
    assert plan_set(current, {"attention.every_n_frames": 4}).ood  # applied like ood.*
