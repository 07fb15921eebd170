"""Online runtime == offline training pass on the same frames and stamps (DESIGN.md §5).

The training forward pass is ``Policy.forward``/``Policy.run_sequence`` with frame t's features
held over ``step_counts(stamps_ns, step_ns)[t]`` fixed steps: the runtime's one stepping rule
(``runtime.schedule.steps_reached``) applied to the stamps, offline. The runtime's state starts
at the first frame's stamp, so that frame takes no step: offline its count is 0, whose output is
the output map of the zero state; online the first tick has no output (nothing integrated yet).
Every later tick must agree within 1e-6 (bit for bit on the same features).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.nodes.ticks import TickRule
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame, RuntimeConfig, TickResult
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor, decode_image
from ltc_controller.runtime.schedule import hold_schedule, seconds_to_ns, step_counts

H, W = 78, 200
NS = 1_000_000_000


class FakeClock:
    """A monotonic clock that never advances: every deadline is met."""

    def __call__(self) -> float:
        return 0.0


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    return Policy.from_config(PolicyConfig(step_s=0.05), seed=7).eval()


def recorded_frames(n: int, seed: int) -> tuple[list[RawFrame], np.ndarray]:
    """An irregular camera (10 to 110 ms between frames: jitter and dropped frames), stamps in
    integer ns from t = 1000 s."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(10_000_000, 110_000_000, n - 1)
    stamps = 1000 * NS + np.concatenate([[0], np.cumsum(gaps)])
    frames = []
    for k, ns in enumerate(stamps.tolist()):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        # A moving bright bar, so consecutive features differ a lot.
        img[:, (7 * k) % W : (7 * k) % W + 20] = 255
        frames.append(RawFrame(ns / NS, "rgb8", H, W, W * 3, img.tobytes(), stamp_ns=ns))
    return frames, stamps


def preprocessed(frames: list[RawFrame]) -> torch.Tensor:
    """``(1, T, 3, H, W)`` network inputs, as the runtime's preprocessor makes them."""
    pre = Preprocessor(PreprocessConfig())
    imgs = [pre(decode_image(f.encoding, f.height, f.width, f.step, f.data)).copy() for f in frames]
    return torch.from_numpy(np.stack(imgs)).unsqueeze(0)


def runtime(policy: Policy) -> PolicyRuntime:
    cfg = RuntimeConfig(step_s=policy.config.step_s, deadline_s=1.0, max_lag_s=1.0)
    return PolicyRuntime(policy, Preprocessor(PreprocessConfig()), cfg, FakeClock())


def test_runtime_ticking_at_frame_stamps_equals_policy_forward(policy):
    frames, stamps = recorded_frames(40, seed=1)
    rt = runtime(policy)
    online, steps = [], []
    for f in frames:
        rt.offer_frame(f)
        r = rt.tick(f.stamp, now_ns=f.stamp_ns)
        online.append(None if r.outputs is None else r.outputs.copy())
        steps.append(r.steps)

    counts = step_counts(stamps, seconds_to_ns(policy.config.step_s))
    with torch.inference_mode():
        offline = policy(preprocessed(frames), torch.from_numpy(counts)[None])[0].double().numpy()
    assert counts[0] == 0 and set(counts.tolist()) >= {0, 1, 2}  # jitter: 0, 1 or 2 steps
    assert steps == counts.tolist()  # the tick and the offline counts apply the one rule
    assert online[0] is None  # the first frame only sets the state's time zero
    got = np.stack(online[1:])
    np.testing.assert_allclose(got, offline[1:], rtol=0, atol=1e-6)
    assert np.ptp(got) > 1e-3  # the outputs really move


def test_runtime_equals_run_sequence_bit_for_bit_on_the_same_features(policy):
    frames, stamps = recorded_frames(25, seed=2)
    rt = runtime(policy)
    online = []
    for f in frames:
        rt.offer_frame(f)
        online.append(rt.tick(f.stamp, now_ns=f.stamp_ns).copy().outputs)
    imgs = preprocessed(frames)[0]
    with torch.inference_mode():
        feats = torch.cat([policy.features(imgs[t : t + 1]) for t in range(len(frames))])
        counts = torch.from_numpy(step_counts(stamps, seconds_to_ns(policy.config.step_s)))
        offline = policy.run_sequence(feats.unsqueeze(0), counts[None])[0][0].double().numpy()
    np.testing.assert_array_equal(np.stack(online[1:]), offline[1:])


def test_a_gap_longer_than_max_frame_age_restarts_the_sequence_as_training_segments_do(policy):
    frames, stamps = recorded_frames(30, seed=4)
    # A bag gap of 0.5 s before frame 15 (> max_frame_age_s 0.3 s): training starts a new
    # segment there (training.bag max_gap_s), the runtime resets (clock_jump_fwd).
    shift = np.where(np.arange(30) >= 15, 500_000_000, 0)
    stamps = stamps + shift
    frames = [
        replace(f, stamp=int(ns) / NS, stamp_ns=int(ns))
        for f, ns in zip(frames, stamps.tolist(), strict=True)
    ]
    rt = runtime(policy)
    online, events = [], []
    for f in frames:
        rt.offer_frame(f)
        r = rt.tick(f.stamp, now_ns=f.stamp_ns)
        online.append(None if r.outputs is None else r.outputs.copy())
        events.append(r.events)
    assert events[15] == ("clock_jump_fwd",) and rt.counters.clock_jumps_fwd == 1
    assert sum(len(e) for e in events) == 1
    step_ns = seconds_to_ns(policy.config.step_s)
    for seg in (slice(0, 15), slice(15, 30)):
        counts = step_counts(stamps[seg], step_ns)
        with torch.inference_mode():
            offline = policy(preprocessed(frames[seg]), torch.from_numpy(counts)[None])[0]
        # Online, no output until the segment's first step; from then on the offline outputs.
        taken = np.cumsum(counts) > 0
        assert [o is not None for o in online[seg]] == taken.tolist()
        got = np.stack([o for o in online[seg] if o is not None])
        np.testing.assert_allclose(got, offline[taken].double().numpy(), rtol=0, atol=1e-6)


def test_control_faster_than_camera_equals_offline_pass_with_the_same_hold():
    policy = Policy.from_config(PolicyConfig(step_s=0.01), seed=7).eval()
    frames, stamps = recorded_frames(45, seed=3)
    # 100 Hz ticks with 2 ms jitter, starting before the first frame; step 10 ms.
    rng = np.random.default_rng(4)
    ticks = 999_980_000_000 + np.arange(200) * 10_000_000 + rng.integers(0, 2_000_000, 200)
    cfg = RuntimeConfig(step_s=0.01, deadline_s=1.0, max_lag_s=1.0)
    rt = PolicyRuntime(policy, Preprocessor(PreprocessConfig()), cfg, FakeClock())
    online, fi = [], 0
    for t in ticks.tolist():
        while fi < len(frames) and frames[fi].stamp_ns <= t:
            rt.offer_frame(frames[fi])
            fi += 1
        online.append(rt.tick(t / NS, now_ns=t).copy())

    sched = hold_schedule(stamps, ticks, 10_000_000)
    assert [r.steps for r in online] == sched.tick_steps.tolist()
    assert sched.tick_steps.max() >= 1 and (sched.tick_steps == 0).any()
    imgs = preprocessed(frames)[0]
    with torch.inference_mode():
        feats = torch.cat([policy.features(imgs[t : t + 1]) for t in range(len(frames))])
        step_feats = feats[torch.from_numpy(sched.step_frame)].unsqueeze(0)
        step_out = policy.run_sequence(step_feats, None)[0][0].double().numpy()
    for r, last in zip(online, sched.tick_last_step.tolist(), strict=True):
        if last < 0:
            assert r.outputs is None
        else:
            np.testing.assert_allclose(r.outputs, step_out[last], rtol=0, atol=1e-6)
    assert sum(r.outputs is not None for r in online) > 180


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 200_000_000), min_size=1, max_size=40),
    step_ns=st.sampled_from([1_000_000, 10_000_000, 33_333_333, 50_000_000, 100_000_000]),
    start=st.integers(0, 2_000_000_000 * NS),
)
def test_hold_schedule_at_frame_stamps_gives_the_training_step_counts(gaps, step_ns, start):
    stamps = start + np.cumsum([0, *gaps])
    sched = hold_schedule(stamps, stamps, step_ns)
    expected = step_counts(stamps, step_ns)
    np.testing.assert_array_equal(sched.tick_steps, expected)
    # Both are the grid rule: floor((stamp - first) / step), counted tick by tick.
    np.testing.assert_array_equal(np.cumsum(expected), (stamps - stamps[0]) // step_ns)
    # Each frame's features are held over the steps of its own tick.
    np.testing.assert_array_equal(sched.step_frame, np.repeat(np.arange(len(stamps)), expected))


def test_hold_schedule_takes_the_newest_arrived_frame_and_starts_at_its_stamp():
    ms = 1_000_000
    stamps = [0, 5 * ms, 12 * ms, 30 * ms]
    arrivals = [3 * ms, 8 * ms, 15 * ms, 33 * ms]
    ticks = [2 * ms, 10 * ms, 20 * ms, 40 * ms]
    s = hold_schedule(stamps, ticks, 5 * ms, arrivals)
    # Tick 10 ms: frames 0 and 1 arrived, 1 wins; the state's time zero is 5 ms: 1 step.
    assert s.origin_ns == 5 * ms
    assert s.tick_frame.tolist() == [-1, 1, 2, 3]
    assert s.tick_steps.tolist() == [0, 1, 2, 4]
    # Frame 3 (stamp 30 ms) is held over the steps 20..40 ms of the tick that took it.
    assert s.step_frame.tolist() == [1, 2, 2, 3, 3, 3, 3]
    assert s.tick_last_step.tolist() == [-1, 0, 2, 6]


def test_hold_schedule_rejects_unsorted_stamps():
    with pytest.raises(ValueError, match="strictly increasing"):
        hold_schedule([0, 10, 10], [0, 20], 5)
    with pytest.raises(ValueError, match="positive"):
        hold_schedule([0], [0], 0)


def test_step_counts_of_windows_start_their_grid_where_each_window_says():
    ms = 1_000_000
    stamps = np.array([[100, 150, 230, 260], [1000, 1040, 1100, 1100]]) * ms
    # Default origin: the first stamp (the runtime's time zero, no step for the first frame).
    assert step_counts(stamps, 50 * ms).tolist() == [[0, 1, 1, 1], [0, 0, 2, 0]]
    # A window cut from a recording: the grid starts one period before its first frame.
    origin = np.array([50, 990]) * ms
    assert step_counts(stamps, 50 * ms, origin).tolist() == [[1, 1, 1, 1], [0, 1, 1, 0]]
    assert step_counts(stamps[0], 50 * ms, 20 * ms).tolist() == [1, 1, 2, 0]
    assert step_counts(np.zeros((2, 0), dtype=np.int64), 5).shape == (2, 0)


def test_step_counts_reject_what_the_runtime_would_not_step_on():
    with pytest.raises(ValueError, match="non-decreasing"):
        step_counts([0, 10, 5], 5)
    with pytest.raises(ValueError, match="integer ns"):
        step_counts(np.array([0.0, 0.05]), 5)
    with pytest.raises(ValueError, match="at or before"):
        step_counts([10, 20], 5, origin_ns=11)
    with pytest.raises(ValueError, match="origin_ns must be a scalar or"):
        step_counts([[10, 20]], 5, origin_ns=[1, 2])
    with pytest.raises(ValueError, match="positive"):
        step_counts([0, 10], 0)


# -- frame-triggered ticks (the ltc_policy node's tick_on_frame) ----------------------------------


def drive_like_the_node(
    rt: PolicyRuntime,
    frames: list[RawFrame],
    arrivals: np.ndarray,
    control_period_ns: int,
    timer_phase_ns: int,
    tail_ns: int = 1,
) -> tuple[list[int], list[TickResult]]:
    """Tick ``rt`` as the node does with ``tick_on_frame``: a frame's arrival ticks at once
    (``TickRule``), the control timer ticks between frames, until ``tail_ns`` after the last
    arrival; ROS time = steady time here. Returns the tick times (ns) and copies of the
    results."""
    rule = TickRule(control_period_ns / NS, on_frame=True)
    end = int(arrivals[-1]) + tail_ns
    events = [(int(a), 0, i) for i, a in enumerate(arrivals)]
    events += [(t, 1, -1) for t in range(timer_phase_ns, end, control_period_ns)]
    ticks, results = [], []
    for t, kind, i in sorted(events):
        if kind == 0:
            rt.offer_frame(frames[i])
            go = rule.frame_arrived(t / NS)
        else:
            go = rule.timer_fired(t / NS)
        if go:
            ticks.append(t)
            results.append(rt.tick(t / NS, now_ns=t).copy())
    return ticks, results


@pytest.mark.parametrize("control_hz", [20.0, 100.0])
def test_frame_triggered_and_timer_ticks_equal_the_offline_pass_with_the_same_hold(control_hz):
    """Frame ticks at arrival (0.2 to 8 ms after the stamp) plus timer ticks between frames:
    the runtime steps and outputs are what ``hold_schedule`` replays offline on those tick and
    arrival times (the one grid, the one hold)."""
    policy = Policy.from_config(PolicyConfig(step_s=0.01), seed=7).eval()
    frames, stamps = recorded_frames(40, seed=5)
    rng = np.random.default_rng(6)
    arrivals = stamps + rng.integers(200_000, 8_000_000, len(stamps))
    arrivals = np.maximum.accumulate(arrivals)  # delivered in order
    cfg = RuntimeConfig(step_s=0.01, deadline_s=1.0, max_lag_s=1.0)
    rt = PolicyRuntime(policy, Preprocessor(PreprocessConfig()), cfg, FakeClock())
    period = round(NS / control_hz)
    ticks, online = drive_like_the_node(
        rt, frames, arrivals, period, 999_997_000_000, tail_ns=2 * period + 1
    )

    sched = hold_schedule(stamps, ticks, 10_000_000, arrivals)
    assert [r.steps for r in online] == sched.tick_steps.tolist()
    # Frames closer than half a control period to the last frame tick waited; a newer one
    # replaced some of them (newest wins), exactly the frames the offline replay skips.
    taken = set(sched.tick_frame.tolist()) - {-1}
    assert rt.counters.frames_used == len(taken)
    assert rt.counters.frames_used + rt.counters.frames_dropped == len(frames)
    if control_hz == 20.0:
        assert rt.counters.frames_dropped > 0  # the rate limit was exercised
    imgs = preprocessed(frames)[0]
    with torch.inference_mode():
        feats = torch.cat([policy.features(imgs[t : t + 1]) for t in range(len(frames))])
        step_out = policy.run_sequence(feats[torch.from_numpy(sched.step_frame)][None], None)
        step_out_np = step_out[0][0].double().numpy()
    for r, last in zip(online, sched.tick_last_step.tolist(), strict=True):
        if last < 0:
            assert r.outputs is None
        else:
            np.testing.assert_allclose(r.outputs, step_out_np[last], rtol=0, atol=1e-6)


def test_frame_ticks_of_a_regular_camera_equal_the_training_pass():
    """A camera at the step rate, stamps 0 to 3 ms after their grid point, delivered 0.5 to
    5 ms later, control timer at the camera rate: every tick is a frame tick, each takes the
    step that ends at its stamp, with its own frame (``step_counts`` of the stamps, as in
    training), so the commands equal ``Policy.forward`` on the recorded sequence."""
    policy = Policy.from_config(PolicyConfig(step_s=0.05), seed=7).eval()
    frames, _ = recorded_frames(30, seed=8)
    rng = np.random.default_rng(9)
    step = 50_000_000
    stamps = 1000 * NS + np.arange(30) * step + np.r_[0, rng.integers(0, 3_000_000, 29)]
    frames = [
        replace(f, stamp=int(s) / NS, stamp_ns=int(s)) for f, s in zip(frames, stamps, strict=True)
    ]
    arrivals = stamps + rng.integers(500_000, 5_000_000, 30)
    rt = runtime(policy)
    ticks, online = drive_like_the_node(rt, frames, arrivals, step, 999_977_000_000)
    first = ticks.index(int(arrivals[0]))
    assert all(r.outputs is None for r in online[:first])  # the timer, before any frame
    ticks, online = ticks[first:], online[first:]
    assert ticks == arrivals.tolist()  # the timer never ticked while frames came
    counts = step_counts(stamps, step)
    assert [r.steps for r in online] == counts.tolist() == [0] + [1] * 29
    with torch.inference_mode():
        offline = policy(preprocessed(frames), torch.from_numpy(counts)[None])[0].double().numpy()
    np.testing.assert_allclose(np.stack([r.outputs for r in online[1:]]), offline[1:], atol=1e-6)


def test_a_tick_that_coincides_with_a_frame_tick_takes_no_step_and_changes_nothing(policy):
    frames, _ = recorded_frames(6, seed=10)
    rt = runtime(policy)
    for f in frames:
        rt.offer_frame(f)
        first = rt.tick(f.stamp, now_ns=f.stamp_ns).copy()
        steps_before = rt.counters.steps
        again = rt.tick(f.stamp, now_ns=f.stamp_ns).copy()  # the timer at the same instant
        assert again.steps == 0 and rt.counters.steps == steps_before
        assert again.frame_stamp_ns == first.frame_stamp_ns
        if first.outputs is not None:
            np.testing.assert_array_equal(again.outputs, first.outputs)
    assert rt.counters.frames_used == 6
