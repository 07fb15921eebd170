"""The out-of-distribution monitor (runtime/ood.py): fit and calibration on features, the
per-frame monitor, the policy file round trip, and its place in the runtime and the health."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltc_controller.models.ood import FeatureStats, alarm_onsets, ema_scores, fit_feature_stats
from ltc_controller.models.policy import Policy
from ltc_controller.models.policy_file import PolicyFileError, load_policy, save_policy
from ltc_controller.runtime.ood import FeatureMonitor

F = 8
RATE_HZ = 20.0


def _segments(rng: np.random.Generator, n_seg: int, seconds: float, shift: float = 0.0):
    """Correlated in-distribution features (and ``shift`` x sigma off in every feature)."""
    a = rng.normal(size=(F, F))
    out = []
    for _ in range(n_seg):
        n = int(seconds * RATE_HZ)
        x = rng.normal(size=(n, F)) @ a + 2.0 + shift * np.sqrt((a * a).sum(axis=0))
        out.append((x.astype(np.float32), np.arange(n) / RATE_HZ))
    return out, a


def _fit(seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    segs, a = _segments(rng, 14, 60.0)
    train = np.concatenate([f for f, _ in segs[:10]])
    return fit_feature_stats(train, segs[10:], **kw), rng


def test_calibration_holds_the_false_alarm_target_on_the_held_out_frames():
    stats, _ = _fit(false_alarms_per_10min=1.0)
    c = stats.calibration
    assert c["heldout_minutes"] == pytest.approx(4 * 59.95 / 60.0, rel=1e-3)
    assert c["heldout_onsets_degraded"] <= 1.0 * c["heldout_minutes"] / 10.0 + 1e-9
    assert c["heldout_onsets_fault"] == 0
    assert stats.fault == pytest.approx(2.0 * stats.degraded)
    # The score is about 1 per feature in distribution.
    assert 0.5 < c["train_score_p50"] < 1.5


def test_shifted_features_score_far_above_the_thresholds_and_the_monitor_faults():
    stats, rng = _fit()
    rng = np.random.default_rng(0)  # the same mixing matrix as the fit
    _, a = _segments(rng, 14, 60.0)
    x = rng.normal(size=(200, F)) @ a + 2.0 + 3.0 * np.sqrt((a * a).sum(axis=0))
    assert np.median(stats.scores(x)) > 3.0 * stats.fault
    mon = FeatureMonitor(stats)
    levels = []
    for i, f in enumerate(x.astype(np.float32)):
        mon.observe(f, i / RATE_HZ)
        levels.append(mon.level)
    assert levels[-1] == 2 and mon.alarms == 1 and mon.faults == 1
    assert mon.frames == 200


def test_the_monitor_computes_the_same_ema_as_the_calibration():
    stats, _ = _fit()
    rng = np.random.default_rng(5)
    segs, _ = _segments(rng, 1, 5.0)
    feats, t = segs[0]
    t = t + rng.uniform(0.0, 0.02, size=t.shape)  # jittered stamps
    want = ema_scores(stats.scores(feats), t, stats.window_s)
    mon = FeatureMonitor(stats)
    got = []
    for f, s in zip(feats, t, strict=True):
        mon.observe(f, float(s))
        got.append(mon.score)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert alarm_onsets([np.array([2.0, 0.5, 2.0, 2.0])], 1.0) == 2
    # Hysteresis: hovering between 0.9x and the threshold keeps the alarm (one onset).
    assert alarm_onsets([np.array([0.5, 1.1, 0.95, 1.05, 0.92, 1.2, 0.5, 1.1])], 1.0) == 2


def test_the_monitor_clears_an_alarm_only_below_nine_tenths_of_its_threshold():
    stats = FeatureStats(np.zeros(1), np.eye(1), 1e-6, 1.0, 4.0)  # EMA = the last score
    mon = FeatureMonitor(stats)
    levels = []
    for k, x in enumerate([0.5, 1.1, 0.97, 1.02, 2.1, 1.95, 1.8, 0.9]):  # scores x^2
        mon.observe(np.array([x], dtype=np.float32), float(k))
        levels.append(mon.level)
    # 0.25 OK; 1.21 DEGRADED; 0.94 and 1.04 stay; 4.41 FAULT; 3.8 stays (>= 3.6); 3.24 DEGRADED
    assert levels == [0, 1, 1, 1, 2, 2, 1, 0]
    assert (mon.alarms, mon.faults) == (1, 1)


def test_non_finite_features_fault_and_thresholds_can_be_overridden():
    stats, _ = _fit()
    mon = FeatureMonitor(stats)
    mon.observe(np.full(F, np.nan, dtype=np.float32), 0.0)
    assert mon.level == 2
    mon = FeatureMonitor(stats, degraded=1e6, fault=2e6)
    mon.observe(np.full(F, 50.0, dtype=np.float32), 0.0)
    assert mon.level == 0 and math.isfinite(mon.score)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"train_features": np.zeros((1, F))}, "N >= 2"),
        ({"heldout": []}, "no held-out frames"),
        ({"shrinkage": 1.0}, "shrinkage"),
    ],
)
def test_bad_fits_raise(kw, match):
    rng = np.random.default_rng(0)
    segs, _ = _segments(rng, 3, 10.0)
    args = {"train_features": segs[0][0], "heldout": segs[1:], **kw}
    with pytest.raises(ValueError, match=match):
        fit_feature_stats(**args)


def test_stats_travel_in_the_policy_file_and_a_file_without_them_still_loads(tmp_path):
    policy = Policy.from_config(seed=0)
    plain = save_policy(policy, tmp_path / "plain.safetensors")
    assert load_policy(plain).feature_stats is None
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 32))
    segs = [(rng.normal(size=(200, 32)), np.arange(200) / RATE_HZ)]
    policy.feature_stats = fit_feature_stats(x, segs)
    path = save_policy(policy, tmp_path / "with.safetensors")
    back = load_policy(path).feature_stats
    assert back is not None
    np.testing.assert_array_equal(back.mean, policy.feature_stats.mean)
    np.testing.assert_array_equal(back.precision, policy.feature_stats.precision)
    assert (back.degraded, back.fault) == (
        policy.feature_stats.degraded,
        policy.feature_stats.fault,
    )
    assert back.calibration == policy.feature_stats.calibration
    # Statistics of another head's size: named, not loaded.
    policy.feature_stats = fit_feature_stats(
        rng.normal(size=(50, 4)), [(rng.normal(size=(20, 4)), np.arange(20) / RATE_HZ)]
    )
    wrong = save_policy(policy, tmp_path / "wrong.safetensors")
    with pytest.raises(PolicyFileError, match="4 features; the ncp_conv head gives 32"):
        load_policy(wrong)


def test_feature_stats_reject_bad_shapes_and_thresholds():
    with pytest.raises(ValueError, match="must be"):
        FeatureStats(np.zeros(3), np.eye(2), 1.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="degraded <= fault"):
        FeatureStats(np.zeros(2), np.eye(2), 1.0, 3.0, 2.0)


def test_the_runtime_feeds_every_taken_frame_to_the_monitor():
    from ltc_controller.runtime.factory import build_runtime
    from ltc_controller.runtime.preprocess import RawFrame

    policy = Policy.from_config(seed=0)
    rng = np.random.default_rng(0)
    policy.feature_stats = fit_feature_stats(
        rng.normal(size=(100, 32)), [(rng.normal(size=(50, 32)), np.arange(50) / RATE_HZ)]
    )
    clk = [0.0]  # steady time that follows the frames (no stall on a loaded machine)
    rt = build_runtime(policy, clock=lambda: clk[0])
    mon = FeatureMonitor(policy.feature_stats)
    rt.feature_monitor = mon
    img = rng.integers(0, 256, 78 * 200 * 3, dtype=np.uint8).tobytes()
    for k in range(1, 6):
        t = 100.0 + 0.05 * k
        rt.offer_frame(RawFrame(t, "rgb8", 78, 200, 600, img, int(round(t * 1e9))))
        clk[0] = t
        rt.tick(t + 0.001)
    assert mon.frames == rt.counters.frames_used == 5
    with torch.inference_mode():
        x = torch.from_numpy(np.frombuffer(img, np.uint8).reshape(1, 78, 200, 3).copy())
        feats = policy.features(x.permute(0, 3, 1, 2).float() / 255.0).numpy()
    assert mon.last == pytest.approx(float(policy.feature_stats.scores(feats)[0]), rel=1e-3)


def test_the_bundled_ncp19_carries_its_monitor():
    from ltc_controller.models.policy_file import BUNDLED_POLICY

    policy = load_policy(BUNDLED_POLICY)
    stats = policy.feature_stats
    assert policy.config.feature_norm == "layer" and stats is not None
    assert stats.calibration["heldout_minutes"] == pytest.approx(10.0, abs=0.1)
    assert stats.calibration["heldout_onsets_degraded"] == 0 and stats.fault > stats.degraded
