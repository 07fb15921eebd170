"""The ltc_policy node's tick trigger (``nodes.ticks.TickRule``): frame ticks, their rate
limit, timer ticks between frames, and one command per (grid step, frame). Times are passed in."""

from __future__ import annotations

import math

import pytest

from ltc_controller.nodes.ticks import TickRule

P = 0.05  # control_rate_hz 20


def run(rule: TickRule, frames: list[float], timer_phase: float, end: float) -> list[tuple]:
    """Feed frame arrivals and timer firings (every P from ``timer_phase``) in time order;
    returns the ticks as (time, 'frame'|'timer')."""
    period = rule.period_s
    events = [(t, "frame") for t in frames]
    events += [(timer_phase + k * period, "timer") for k in range(int(end / period) + 1)]
    ticks = []
    for t, kind in sorted(events):
        if rule.frame_arrived(t) if kind == "frame" else rule.timer_fired(t):
            ticks.append((t, kind))
    return ticks


def test_each_frame_at_the_control_rate_ticks_on_arrival_and_the_timer_stays_quiet():
    rule = TickRule(P, on_frame=True)
    frames = [0.0101 + 0.05 * k + 0.003 * math.sin(k) for k in range(40)]  # 20 Hz, jittered
    ticks = run(rule, frames, timer_phase=0.0237, end=1.95)
    assert [t for t, kind in ticks if kind == "frame"] == frames
    assert rule.frame_ticks == 40 and rule.frame_ticks_deferred == 0
    # The timer ticks only where a frame came more than a period after the previous one.
    for (t0, _), (t1, kind) in zip(ticks, ticks[1:], strict=False):
        if kind == "timer":
            assert t1 - t0 >= P
    late = sum(b - a > P for a, b in zip(frames, frames[1:], strict=False))
    assert [k for _, k in ticks].count("timer") <= late


def test_a_faster_timer_integrates_between_frames():
    rule = TickRule(0.01, on_frame=True)  # 100 Hz control, 20 Hz camera
    frames = [0.05 * k + 0.0004 for k in range(20)]
    ticks = run(rule, frames, timer_phase=0.0063, end=0.9999)
    kinds = [k for _, k in ticks]
    assert kinds.count("frame") == 20  # a timer tick just before never delays a frame
    # Between two frames 50 ms apart: the firing 5.9 ms after the frame is skipped, 4 run.
    assert kinds.count("timer") == 4 * 20
    assert rule.timer_ticks_skipped == 20


def test_a_camera_faster_than_the_control_rate_is_limited_to_twice_the_control_rate():
    rule = TickRule(P, on_frame=True)
    frames = [0.001 + k / 500 for k in range(1000)]  # 500 Hz camera for 2 s
    ticks = run(rule, frames, timer_phase=0.013, end=2.0)
    assert len(ticks) <= 2.0 * (2 / P) + 1
    frame_times = [t for t, k in ticks if k == "frame"]
    assert min(b - a for a, b in zip(frame_times, frame_times[1:], strict=False)) >= P / 2 - 1e-9
    assert rule.frame_ticks + rule.frame_ticks_deferred == 1000
    assert rule.frame_ticks == len(ticks)  # the camera drives every tick (every 26 ms)


@pytest.mark.parametrize("camera_hz", [7.0, 13.0, 19.0, 21.0, 27.0, 39.0, 41.0, 90.0])
def test_ticks_never_exceed_twice_the_control_rate_at_any_camera_rate(camera_hz):
    rule = TickRule(P, on_frame=True)
    frames = [0.0031 + k / camera_hz for k in range(int(10 * camera_hz))]
    ticks = run(rule, frames, timer_phase=0.0177, end=10.0)
    assert len(ticks) <= 2 * 10.0 / P + 1
    # Every frame ticks while the camera is no faster than twice the control rate.
    if camera_hz < 2 / P:
        assert rule.frame_ticks == len(frames) and rule.frame_ticks_deferred == 0


def test_the_timer_takes_over_when_the_camera_stops_and_takes_a_deferred_frame():
    rule = TickRule(P, on_frame=True)
    ticks = run(rule, [0.0, 0.05, 0.1], timer_phase=0.02, end=0.5)
    timer_ticks = [t for t, k in ticks if k == "timer"]
    # Firings at 0.02, 0.07, 0.12 are within a period of a frame tick; 0.17 on they tick.
    assert timer_ticks == pytest.approx([0.17, 0.22, 0.27, 0.32, 0.37, 0.42, 0.47, 0.52])
    # A frame deferred by the rate limit is taken by the first timer firing a period after the
    # last frame tick (at most 2 P later), or by the next frame tick.
    rule = TickRule(P, on_frame=True)
    assert rule.frame_arrived(1.0)
    assert not rule.frame_arrived(1.01)  # within P / 2: waits
    assert rule.frame_ticks_deferred == 1
    assert not rule.timer_fired(1.04)
    assert rule.timer_fired(1.09)


def test_one_command_per_grid_step_and_frame_no_double_publish():
    rule = TickRule(P, on_frame=True)
    assert rule.new_command(1_000, 900)  # a frame tick: step reached 1000 ns, frame 900
    assert not rule.new_command(1_000, 900)  # a coinciding timer tick: nothing new
    assert rule.new_command(1_000, 990)  # a new frame before the next grid step
    assert rule.new_command(1_050, 990)  # the next grid step with the same frame
    assert not rule.new_command(1_050, 990)
    assert rule.new_command(None, 0)  # after a reset


def test_without_tick_on_frame_only_the_timer_ticks_and_every_tick_publishes():
    rule = TickRule(P, on_frame=False)
    assert not rule.frame_arrived(0.0)
    assert rule.timer_fired(0.001) and rule.timer_fired(0.002)
    assert rule.new_command(5, 5) and rule.new_command(5, 5)
    assert (rule.frame_ticks, rule.frame_ticks_deferred, rule.timer_ticks_skipped) == (0, 0, 0)


@pytest.mark.parametrize("period", [0.0, -1.0, math.inf, math.nan])
def test_a_bad_period_is_refused(period):
    with pytest.raises(ValueError, match="period_s"):
        TickRule(period, on_frame=True)
