"""The attention monitor (saliency instability between consecutive frames): the live,
allocation-free saliency against VisualBackProp, the pair rule, the calibration, the policy file
round trip and its place in the runtime."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ltc_controller.models.attention import visual_backprop
from ltc_controller.models.ood import (
    AttentionStats,
    alarm_onsets,
    attention_pairs,
    ema_scores,
    fit_attention_stats,
    saliency_instability,
)
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.policy_file import PolicyFileError, load_policy, save_policy
from ltc_controller.runtime.ood import AttentionMonitor

H, W = 78, 200
RATE_HZ = 20.0


def _road(n: int, shift_px: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``(n, 3, H, W)`` frames of a smooth scene that slides ``shift_px`` per frame (so
    consecutive saliency maps are alike, as on a road at speed)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, H + 8, W + int(n * shift_px) + 16, generator=g)
    for _ in range(2):  # smooth: two 9 x 9 box blurs
        base = torch.nn.functional.avg_pool2d(base, 9, stride=1, padding=4)
    base = base[0, :, 4 : 4 + H]
    frames = [base[:, :, int(i * shift_px) : int(i * shift_px) + W] for i in range(n)]
    return torch.stack(frames).contiguous()


def _stats(**kw) -> AttentionStats:
    args = {
        "window_s": 1.0,
        "pair_gap_s": 0.075,
        "every_n_frames": 1,
        "degraded": 0.2,
        "fault": 0.4,
    }
    return AttentionStats(**{**args, **kw})


@pytest.mark.parametrize("head", ["ncp_conv", "drone_trunk"])
def test_live_saliency_scores_equal_visual_backprop_and_the_features_are_unchanged(head):
    kw = {"head": head}
    if head == "drone_trunk":
        kw.update(
            image_height=144,
            image_width=256,
            architecture="cnn",
            output_names=("linear_x", "linear_y", "linear_z", "angular_z"),
            output_units=("m/s",) * 3 + ("rad/s",),
            output_scale=(1.0,) * 4,
        )
    policy = Policy.from_config(PolicyConfig(**kw), seed=0).eval()
    h, w = policy.config.image_height, policy.config.image_width
    x = torch.rand(6, 3, h, w, generator=torch.Generator().manual_seed(0))
    x[3:] = x[2]  # identical frames: score 0
    mon = AttentionMonitor(_stats(), policy.head)
    got = []
    with torch.inference_mode():
        for i in range(len(x)):
            f = mon.take(x[i : i + 1], i / RATE_HZ, policy)
            assert torch.equal(f, policy.features(x[i : i + 1]))
            got.append(mon.last)
        want = saliency_instability(
            visual_backprop(policy.head, x[1:]).numpy(),
            visual_backprop(policy.head, x[:-1]).numpy(),
        )
    np.testing.assert_allclose(got[1:], want, atol=1e-5)
    assert math.isnan(got[0]) and mon.pairs == 5 and mon.saliency_maps == 6
    assert got[4] == pytest.approx(0.0, abs=1e-5) and got[1] > 0.05


def test_unfused_backend_gives_the_same_features_and_scores():
    policy = Policy.from_config(seed=0).eval()
    x = _road(5)
    fused = AttentionMonitor(_stats(), policy.head)
    other = AttentionMonitor(_stats(), policy.head, fused=False)
    with torch.inference_mode():
        for i in range(5):
            a = fused.take(x[i : i + 1], i / RATE_HZ, policy)
            b = other.take(x[i : i + 1], i / RATE_HZ, policy)
            assert torch.equal(a, b)
            assert fused.last == other.last or (math.isnan(fused.last) and math.isnan(other.last))


@pytest.mark.parametrize("head", ["ncp_conv", "drone_trunk"])
def test_the_onnx_backend_gives_features_and_scores_from_one_pass(head, tmp_path):
    """ONNX: features and channel means from the exported head_maps graph (one pass), equal to
    the torch head's within float tolerance; the same from a directory written by
    export_onnx_pair, and without head_maps.onnx the two-pass path still scores."""
    pytest.importorskip("onnxruntime")
    from ltc_controller.models.export import OnnxStepModel, export_onnx_pair

    kw: dict = {"head": head}
    if head == "drone_trunk":
        kw.update(image_height=144, image_width=256, architecture="cnn")
    policy = Policy.from_config(PolicyConfig(**kw), seed=0).eval()
    h, w = policy.config.image_height, policy.config.image_width
    x = torch.rand(5, 3, h, w, generator=torch.Generator().manual_seed(1))
    export_onnx_pair(policy, tmp_path / "pair")
    assert (tmp_path / "pair" / "head_maps.onnx").is_file()
    loaded = OnnxStepModel.from_directory(tmp_path / "pair")
    (tmp_path / "pair" / "head_maps.onnx").unlink()
    two_pass = OnnxStepModel.from_directory(tmp_path / "pair")
    assert loaded.has_channel_means and not two_pass.has_channel_means
    models = [OnnxStepModel.from_policy(policy), loaded, two_pass]
    ref = AttentionMonitor(_stats(), policy.head)
    mons = [AttentionMonitor(_stats(), policy.head, fused=False) for _ in models]
    calls = []
    orig = AttentionMonitor._channel_means

    def spy(self, maps):
        calls.append(self)
        return orig(self, maps)

    with torch.inference_mode(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(AttentionMonitor, "_channel_means", spy)
        for i in range(len(x)):
            want = ref.take(x[i : i + 1], i / RATE_HZ, policy)
            for m, mon in zip(models, mons, strict=True):
                got = mon.take(x[i : i + 1], i / RATE_HZ, m)
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
                if i > 0:
                    assert mon.last == pytest.approx(ref.last, abs=1e-4)
    # The torch head ran for the reference and for the two-pass model only.
    assert set(map(id, calls)) == {id(ref), id(mons[2])}
    assert all(m.pairs == 4 for m in mons)


def test_a_sliding_scene_is_stable_and_noise_is_not():
    policy = Policy.from_config(seed=0).eval()
    road = visual_backprop(policy.head, _road(10)).numpy()
    steady = saliency_instability(road[1:], road[:-1])
    noisy_frames = _road(10) + 0.3 * torch.randn(
        10, 3, H, W, generator=torch.Generator().manual_seed(1)
    )
    noisy = visual_backprop(policy.head, noisy_frames.clamp(0, 1)).numpy()
    jumpy = saliency_instability(noisy[1:], noisy[:-1])
    assert np.median(jumpy) > 3.0 * np.median(steady)
    # A constant map has no correlation: score 1.
    assert saliency_instability(np.zeros((1, 4, 4)), road[:1, :4, :4])[0] == 1.0


def test_pairs_follow_every_n_the_segments_and_the_gap():
    t = np.arange(10) / RATE_HZ
    seg = np.zeros(10, dtype=np.int64)
    needs, scored = attention_pairs(t, seg, 1, 0.075)
    assert needs.all() and scored.tolist() == [False] + [True] * 9
    needs, scored = attention_pairs(t, seg, 3, 0.075)
    # Saliency at i % 3 in {2, 0}; scored at i % 3 == 0 from i = 3 on.
    assert np.flatnonzero(needs).tolist() == [0, 2, 3, 5, 6, 8, 9]
    assert np.flatnonzero(scored).tolist() == [3, 6, 9]
    # A new segment restarts the phase; a dropped frame (gap 0.1 s) is not paired.
    seg[5:] = 1
    t2 = t.copy()
    t2[8:] += 0.05
    _, scored = attention_pairs(t2, seg, 1, 0.075)
    assert np.flatnonzero(~scored).tolist() == [0, 5, 8]


def test_the_monitor_follows_every_n_and_counts_wide_pairs_as_unpaired():
    policy = Policy.from_config(seed=0).eval()
    x = _road(9)
    mon = AttentionMonitor(_stats(), policy.head, every_n=3)
    stamps = [i / RATE_HZ for i in range(9)]
    stamps[6] += 0.05  # frame 5 -> 6 is 100 ms: too wide
    with torch.inference_mode():
        for i in range(9):
            if mon.due():
                mon.take(x[i : i + 1], stamps[i], policy)
            else:
                mon.skip()
    needs, scored = attention_pairs(np.array(stamps), np.zeros(9, np.int64), 3, 0.075)
    assert mon.saliency_maps == int(needs.sum()) == 6 and mon.frames == 9
    assert mon.pairs == int(scored.sum()) == 1 and mon.unpaired == 1


def _calibration_segments(rng, n_seg, seconds, level=0.01):
    out = []
    for _ in range(n_seg):
        n = int(seconds * RATE_HZ)
        out.append((rng.gamma(2.0, level / 2.0, size=n), np.arange(n) / RATE_HZ))
    return out


def test_calibration_holds_the_false_alarm_target_and_shares_the_features_ema():
    rng = np.random.default_rng(0)
    segs = _calibration_segments(rng, 10, 60.0)
    st = fit_attention_stats(segs, pair_gap_s=0.075, false_alarms_per_10min=1.0)
    c = st.calibration
    assert c["heldout_minutes"] == pytest.approx(10 * 59.95 / 60.0, rel=1e-3)
    emas = [ema_scores(s, t, st.window_s) for s, t in segs]
    assert alarm_onsets(emas, st.degraded) == c["heldout_onsets_degraded"] <= 1
    assert st.fault == pytest.approx(2.0 * st.degraded)
    # The monitor's EMA and levels on a shifted stream (scores 10x): alarm, then fault.
    mon = AttentionMonitor(st, Policy.from_config(seed=0).head)
    for k, s in enumerate(rng.gamma(2.0, 0.1 / 2.0, size=100)):
        mon._score(float(s), k / RATE_HZ)
    assert mon.level == 2 and mon.alarms == 1 and mon.faults == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"heldout": []}, "no scored frame pairs"),
        ({"heldout": [(np.array([np.nan, 0.1]), np.array([0.0, 0.05]))]}, "non-finite"),
        ({"pair_gap_s": 0.0}, "pair_gap_s"),
        ({"margin": 0.5}, "margin"),
    ],
)
def test_bad_attention_fits_raise(kw, match):
    args = {"heldout": [(np.array([0.01, 0.02]), np.array([0.0, 0.05]))], "pair_gap_s": 0.075}
    with pytest.raises(ValueError, match=match):
        fit_attention_stats(**{**args, **kw})


def test_attention_calibration_travels_in_the_policy_file(tmp_path):
    policy = Policy.from_config(seed=0)
    plain = save_policy(policy, tmp_path / "plain.safetensors")
    assert load_policy(plain).attention_stats is None
    rng = np.random.default_rng(2)
    policy.attention_stats = fit_attention_stats(_calibration_segments(rng, 3, 30.0), 0.075, 2)
    back = load_policy(save_policy(policy, tmp_path / "att.safetensors")).attention_stats
    assert back == policy.attention_stats and back.every_n_frames == 2
    with pytest.raises(ValueError, match="unknown attention score"):
        AttentionStats.from_metadata({**back.to_metadata(), "score": "ssim"})
    with pytest.raises(ValueError, match="degraded <= fault"):
        _stats(degraded=0.5, fault=0.1)


def test_a_file_with_broken_attention_metadata_is_named(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_policy(Policy.from_config(seed=0), tmp_path / "p.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["attention"] = json.dumps({"window_s": 1.0})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(PolicyFileError, match="invalid attention monitor calibration"):
        load_policy(path)


def test_the_runtime_computes_saliency_in_the_frames_own_work():
    from ltc_controller.runtime.factory import build_runtime
    from ltc_controller.runtime.preprocess import RawFrame

    policy = Policy.from_config(seed=0)
    clk = [0.0]
    rt = build_runtime(policy, clock=lambda: clk[0])
    mon = AttentionMonitor(_stats(every_n_frames=2), policy.head)
    rt.attention_monitor = mon
    frames = (_road(6).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    for k in range(6):
        t = 100.0 + 0.05 * k
        rt.offer_frame(RawFrame(t, "rgb8", H, W, W * 3, frames[k].tobytes(), round(t * 1e9)))
        clk[0] = t
        rt.tick(t + 0.001)
    # every_n 2: saliency on every frame, a pair scored at frames 2 and 4.
    assert mon.frames == rt.counters.frames_used == 6
    assert mon.saliency_maps == 6 and mon.pairs == 2
    x = torch.from_numpy(frames[3:5]).permute(0, 3, 1, 2).float() / 255.0
    m = visual_backprop(policy.head, x).numpy()
    assert mon.last == pytest.approx(float(saliency_instability(m[1:], m[:1])[0]), abs=1e-5)


def test_a_float64_head_goes_through_the_copying_path_with_the_same_scores():
    policy = Policy.from_config(seed=0).eval()
    wide = Policy.from_config(seed=0).double().eval()
    x = _road(4, shift_px=3.0)
    a = AttentionMonitor(_stats(), policy.head)
    b = AttentionMonitor(_stats(), wide.head)
    assert not b._direct
    with torch.inference_mode():
        for i in range(4):
            a.take(x[i : i + 1], i / RATE_HZ, policy)
            b.take(x[i : i + 1], i / RATE_HZ, wide)
            if i:
                assert b.last == pytest.approx(a.last, abs=1e-4)


def test_the_engine_attaches_the_files_monitor_and_applies_the_parameters():
    import time

    from ltc_controller.nodes.policy_engine import build_engine
    from ltc_controller.nodes.policy_params import PARAMS
    from ltc_controller.params import resolve

    policy = Policy.from_config(seed=0)
    policy.attention_stats = _stats(every_n_frames=2)
    p = dict(resolve(PARAMS, {}))
    eng = build_engine(p, time.monotonic, policy)
    att = eng.attention
    assert att is not None and eng.runtime.attention_monitor is att and att.fused
    assert (eng.attention_state, att.every_n, att.degraded, att.fault) == ("active", 2, 0.2, 0.4)
    p.update({"attention.every_n_frames": 5, "attention.degraded_threshold": 0.3})
    eng.configure_monitor(p)
    assert (att.every_n, att.degraded, att.fault) == (5, 0.3, 0.4)
    att.level = 2
    assert eng.attention_level(p) == 2
    p["attention.hand_over"] = False
    assert eng.attention_level(p) == 1
    p["attention.enabled"] = False
    eng.configure_monitor(p)
    assert eng.attention_state == "disabled" and eng.attention_level(p) == 0
    plain = build_engine(dict(resolve(PARAMS, {})), time.monotonic, Policy.from_config(seed=0))
    assert plain.attention is None and plain.attention_state == "unavailable"


def test_the_engine_on_onnx_takes_saliency_from_the_models_own_pass():
    """backend onnx: not fused with the torch head, and the runtime's (stallable) model offers
    the head_maps graph's channel means, so a due frame costs one head pass."""
    pytest.importorskip("onnxruntime")
    import time

    from ltc_controller.nodes.policy_engine import build_engine
    from ltc_controller.nodes.policy_params import PARAMS
    from ltc_controller.params import resolve

    policy = Policy.from_config(seed=0)
    policy.attention_stats = _stats()
    p = dict(resolve(PARAMS, {"backend": "onnx"}))
    eng = build_engine(p, time.monotonic, policy)
    att = eng.attention
    assert att is not None and not att.fused and eng.runtime.model.has_channel_means
    x = _road(1)
    with torch.inference_mode():
        f = att.take(x, 0.0, eng.runtime.model)
    torch.testing.assert_close(f, policy.features(x), atol=1e-4, rtol=1e-4)
    assert att.saliency_maps == 1
