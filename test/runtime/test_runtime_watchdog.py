"""Watchdog: health levels and reason codes from injected observations and times."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from ltc_controller.runtime.watchdog import (
    Health,
    TickObservation,
    Watchdog,
    WatchdogConfig,
    state_fault,
)


def obs(mono: float, **kw) -> TickObservation:
    base = dict(has_output=True, frame_age_s=0.01, deadline_met=True, lag_s=0.0, events=())
    base.update(kw)
    return TickObservation(mono=mono, **base)


def test_health_values_equal_policy_status_constants():
    text = (Path(__file__).parents[2] / "msg" / "PolicyStatus.msg").read_text()
    consts = dict(re.findall(r"uint8 HEALTH_(\w+)=(\d+)", text))
    assert {k: int(v) for k, v in consts.items()} == {h.name: h.value for h in Health}


def test_fresh_output_on_time_is_ok():
    assert Watchdog().update(obs(0.0)) == (Health.OK, ())


@pytest.mark.parametrize(
    "kw,health,reason",
    [
        (dict(has_output=False), Health.FAULT, "no_frame"),
        (dict(has_output=False, warming=True), Health.FAULT, "warming"),
        (dict(frame_age_s=0.31), Health.FAULT, "stale_frame"),
        (dict(frame_age_s=math.inf), Health.FAULT, "stale_frame"),
        (dict(frame_age_s=0.2), Health.DEGRADED, "late_frame"),
        (dict(lag_s=0.2), Health.DEGRADED, "lagging"),
        (dict(events=("lag",)), Health.FAULT, "lag"),
        (dict(events=("non_finite",)), Health.FAULT, "non_finite"),
        (dict(events=("state_norm",)), Health.FAULT, "state_norm"),
        (dict(events=("clock_jump_back",)), Health.DEGRADED, "clock_jump_back"),
        (dict(events=("stale_state",)), Health.DEGRADED, "stale_state"),
        (dict(events=("stall",)), Health.DEGRADED, "stall"),
        (dict(events=("clock_jump_fwd",)), Health.DEGRADED, "clock_jump_fwd"),
        (dict(clock_stopped=True), Health.FAULT, "clock_stopped"),
    ],
)
def test_each_condition_gives_its_level_and_reason(kw, health, reason):
    wd = Watchdog(WatchdogConfig(max_frame_age_s=0.3, lag_degraded_s=0.1))
    assert wd.update(obs(5.0, **kw)) == (health, (reason,))


def test_overruns_in_the_sliding_window_degrade_then_fault_then_clear():
    wd = Watchdog(WatchdogConfig(overrun_window_s=1.0, overruns_degraded=2, overruns_fault=4))
    levels = []
    for k in range(6):  # a miss every 0.1 s
        levels.append(wd.update(obs(0.1 * k, deadline_met=False))[0])
    assert levels == [Health.OK, Health.DEGRADED, Health.DEGRADED] + [Health.FAULT] * 3
    assert wd.reasons == ("overruns",)
    assert wd.misses_in_window(0.55) == 4  # the ring holds the last overruns_fault misses
    # On-time ticks: the misses age out of the window one by one.
    assert wd.update(obs(1.35)) == (Health.DEGRADED, ("deadline_miss",))  # 0.4 and 0.5 left
    assert wd.update(obs(1.45)) == (Health.OK, ())  # one left, below overruns_degraded


def test_default_thresholds_degrade_on_the_measured_worst_burst_and_fault_on_a_stall():
    """The defaults against the miss pattern measured in the loaded demo (module docstring):
    up to 11 misses in 1 s, 19 in 2 s, 26 in 5 s, 7 in a row, at 20 Hz: DEGRADED, never FAULT.
    A stall (every tick misses) faults within 2.5 s."""
    wd = Watchdog()
    period = 0.05
    # 7 in a row, then 12 more within 2 s, then 7 more within the same 5 s: 26 in 5 s.
    missed = {*range(10, 17), *range(18, 50, 3), *range(60, 100, 6)}
    assert len(missed) == 7 + 11 + 7
    levels = [wd.update(obs(k * period, deadline_met=k not in missed))[0] for k in range(300)]
    assert Health.FAULT not in levels and levels[10] == Health.DEGRADED
    assert wd.reasons == ()  # clear 5 s after the last miss
    stall = [wd.update(obs(20.0 + k * period, deadline_met=False)) for k in range(60)]
    first_fault = next(k for k, (h, _) in enumerate(stall) if h == Health.FAULT)
    assert first_fault * period < 2.5 and stall[first_fault][1] == ("overruns",)


def test_events_are_held_for_hold_s_then_clear():
    wd = Watchdog(WatchdogConfig(hold_s=0.5))
    assert wd.update(obs(10.0, events=("non_finite", "clock_jump_back"))) == (
        Health.FAULT,
        ("non_finite", "clock_jump_back"),
    )
    assert wd.update(obs(10.5)) == (Health.FAULT, ("non_finite", "clock_jump_back"))
    assert wd.update(obs(10.51)) == (Health.OK, ())


def test_faults_are_listed_before_degradations():
    wd = Watchdog()
    health, reasons = wd.update(obs(1.0, frame_age_s=0.2, events=("lag",), deadline_met=False))
    assert health == Health.FAULT and reasons == ("lag", "late_frame", "deadline_miss")


def test_reset_forgets_window_and_holds():
    wd = Watchdog()
    wd.update(obs(1.0, deadline_met=False, events=("lag",)))
    wd.reset()
    assert wd.update(obs(1.1)) == (Health.OK, ())


@pytest.mark.parametrize(
    "norm,finite,reason",
    [
        (1.0, True, ""),
        (math.nan, True, "non_finite"),
        (math.inf, True, "non_finite"),
        (1.0, False, "non_finite"),
        (2e3, True, "state_norm"),
    ],
)
def test_state_fault_names_the_reason(norm, finite, reason):
    assert state_fault(norm, finite, 1e3) == reason


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError, match="overruns_degraded"):
        WatchdogConfig(overruns_degraded=3, overruns_fault=2)
    with pytest.raises(ValueError, match="max_state_norm"):
        WatchdogConfig(max_state_norm=0.0)
