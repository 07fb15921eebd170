"""The runtime contract (DESIGN.md §5) with the real NCP-19 policy and an injected clock."""

import numpy as np
import pytest
import torch

from ltc_controller.models.policy import Policy
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor, decode_image

H, W = 78, 200


class FakeClock:
    """A monotonic clock that advances ``per_call`` seconds each time it is read."""

    def __init__(self, per_call: float = 0.0) -> None:
        self.t = 0.0
        self.per_call = per_call

    def __call__(self) -> float:
        self.t += self.per_call
        return self.t


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    return Policy.from_config(seed=3).eval()


def frame(stamp: float, seed: int = 0, encoding: str = "rgb8") -> RawFrame:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return RawFrame(stamp, encoding, H, W, W * 3, img.tobytes())


def make(policy: Policy, clock: FakeClock | None = None, **cfg) -> PolicyRuntime:
    return PolicyRuntime(
        policy, Preprocessor(PreprocessConfig()), RuntimeConfig(**cfg), clock or FakeClock()
    )


def drive(rt: PolicyRuntime, frames: list[RawFrame], ticks: list[float]) -> list[np.ndarray]:
    outs, fi = [], 0
    for t in ticks:
        while fi < len(frames) and frames[fi].stamp <= t:
            rt.offer_frame(frames[fi])
            fi += 1
        r = rt.tick(t)
        outs.append(None if r.outputs is None else r.outputs.copy())
    return outs


def test_same_frames_and_stamps_give_bit_identical_outputs(policy):
    frames = [frame(100.0 + 0.05 * k, seed=k) for k in range(20)]
    ticks = [100.0 + 0.02 * k + 0.003 * (k % 3) for k in range(50)]
    a = drive(make(policy), frames, ticks)
    b = drive(make(policy), frames, ticks)
    assert a[0] is None  # before the first frame: nothing to act on
    assert all(
        (x is None and y is None) or np.array_equal(x, y) for x, y in zip(a, b, strict=False)
    )
    assert sum(x is not None for x in a) >= 45


def test_tick_advances_whole_fixed_steps_and_carries_the_remainder(policy):
    rt = make(policy, step_s=0.05)
    rt.offer_frame(frame(10.0))
    r = rt.tick(10.0)
    assert r.steps == 0 and r.outputs is None
    r = rt.tick(10.12)  # 2 whole steps, 0.02 s carried
    assert r.steps == 2 and r.lag_s == pytest.approx(0.02)
    r = rt.tick(10.15)  # 0.05 s since the state time: one step
    assert r.steps == 1 and r.lag_s == pytest.approx(0.0, abs=1e-9)


def test_fixed_steps_equal_direct_cell_calls(policy):
    rt = make(policy, step_s=0.05)
    f = frame(5.0, seed=1)
    rt.offer_frame(f)
    rt.tick(5.0)
    r = rt.tick(5.2)  # four steps
    with torch.inference_mode():
        img = Preprocessor(PreprocessConfig())(decode_image("rgb8", H, W, W * 3, f.data))
        feats = policy.features(torch.from_numpy(img.copy()).unsqueeze(0))
        s = policy.initial_state(1)
        for _ in range(4):
            out, s = policy.step(feats, s, 0.05)
    assert r.steps == 4
    np.testing.assert_allclose(r.outputs, out[0].double().numpy(), rtol=0, atol=1e-7)


def test_overrun_is_counted_carried_as_lag_and_a_command_still_returned(policy):
    clock = FakeClock(per_call=0.0)
    rt = make(policy, clock, step_s=0.01, deadline_s=0.005, max_lag_s=10.0)
    rt.offer_frame(frame(1.0))
    rt.tick(1.0)
    rt.tick(1.02)  # learn the step cost at zero clock cost
    clock.per_call = 0.001  # now every clock read costs 1 ms: few steps fit in 5 ms
    r = rt.tick(1.2)
    assert not r.deadline_met and r.outputs is not None
    assert 0 < r.steps < 18
    assert r.lag_s >= 0.01 * (18 - r.steps) - 1e-9
    assert rt.counters.deadline_misses == 1


def test_lag_beyond_bound_is_a_fault_and_backlog_is_dropped(policy):
    clock = FakeClock(per_call=0.0)
    rt = make(policy, clock, step_s=0.01, deadline_s=0.005, max_lag_s=0.1)
    rt.offer_frame(frame(1.0))
    rt.tick(1.0)
    rt.tick(1.01)
    clock.per_call = 0.002
    r = rt.tick(2.0)
    assert "lag" in r.events and rt.counters.lag_faults == 1
    assert r.lag_s < 0.01 + 1e-9


@pytest.mark.parametrize(
    "stamp,reason",
    [(50.0, "stale"), (101.0, "future"), (99.9, "out_of_order"), (100.0, "duplicate")],
)
def test_bad_frame_stamps_are_dropped_and_counted(policy, stamp, reason):
    rt = make(policy, max_frame_age_s=0.3, max_future_s=0.05)
    rt.offer_frame(frame(100.0))
    rt.tick(100.01)
    rt.offer_frame(frame(stamp, seed=9))
    r = rt.tick(100.05)
    assert rt.counters.rejections == {reason: 1}
    assert r.frame_stamp == 100.0  # still acting on the good frame


def test_clock_jump_backwards_resets_state(policy):
    rt = make(policy)
    rt.offer_frame(frame(100.0))
    rt.tick(100.0)
    rt.tick(100.5)
    rt.offer_frame(frame(3.0))  # simulation reset
    r = rt.tick(3.0)
    assert "clock_jump_back" in r.events and rt.counters.state_resets == 1
    assert r.frame_stamp == 3.0


def test_burst_of_frames_keeps_only_the_newest(policy):
    rt = make(policy)
    for k in range(10):
        rt.offer_frame(frame(1.0 + 0.001 * k, seed=k))
    r = rt.tick(1.01)
    assert r.frame_stamp == pytest.approx(1.009)
    assert rt.counters.frames_used == 1 and rt.counters.frames_dropped == 9


def test_unsupported_encoding_is_a_counted_rejection_not_an_exception(policy):
    rt = make(policy)
    rt.offer_frame(frame(1.0, encoding="bayer_rggb8"))
    r = rt.tick(1.01)
    assert rt.counters.rejections == {"encoding": 1} and r.outputs is None
    rt.offer_frame(RawFrame(1.02, "rgb8", H, W, W * 3, b"\x00" * 10))  # truncated
    rt.tick(1.03)
    assert rt.counters.rejections == {"encoding": 1, "size": 1}


def test_padded_bgr8_rows_decode_like_unpadded_rgb8():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1]
    padded = np.zeros((5, 7 * 3 + 11), dtype=np.uint8)
    padded[:, : 7 * 3] = bgr.reshape(5, -1)
    out = decode_image("bgr8", 5, 7, 7 * 3 + 11, padded.tobytes())
    np.testing.assert_array_equal(out, rgb)
    mono = decode_image("mono8", 5, 7, 7, rgb[:, :, 0].tobytes())
    np.testing.assert_array_equal(mono[:, :, 2], rgb[:, :, 0])


def test_preprocessor_resizes_to_policy_size_in_unit_range():
    pre = Preprocessor(PreprocessConfig(height=78, width=200, crop_top=10))
    img = np.full((120, 320, 3), 255, dtype=np.uint8)
    out = pre(img)
    assert out.shape == (3, 78, 200) and out.dtype == np.float32
    assert out.min() == pytest.approx(1.0) and out.max() == pytest.approx(1.0)
