"""Command–image lag: a constant lag of the command stamps shifts every label by whole frames
without changing the pairing counts; the estimate finds it on bags written by the project's
rosbag2 writer (sqlite3 and MCAP), warns, and ``--label-offset-s`` pairs each frame with its
own command again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ltc_controller.cli import main
from ltc_controller.training.bag import DemoBagWriter, read_demonstrations
from ltc_controller.training.lag import estimate_command_lag

PERIOD_NS = 50_000_000  # 20 Hz frames
H, W = 16, 48


def _signal(n: int, seed: int) -> np.ndarray:
    """A smooth random steering-like signal in [-1, 1] at the frame times (sum of sines)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * PERIOD_NS * 1e-9
    freqs = rng.uniform(0.05, 0.6, 6)
    phases = rng.uniform(0, 2 * np.pi, 6)
    s = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).sum(axis=0)
    return s / np.abs(s).max()


def _frame(s: float) -> np.ndarray:
    """What a lane camera shows: a bright band whose column encodes the signal."""
    col = 0.5 * (W - 1) + 0.4 * W * s
    x = np.arange(W)
    row = 255.0 * np.exp(-0.5 * ((x - col) / 2.5) ** 2)
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 1] = row.astype(np.uint8)[None, :]
    img[..., 2] = 40
    return img


def _write_lagged_bag(path, storage: str, lag_ns: int, n: int = 1200, seed: int = 0) -> np.ndarray:
    """Frame k (stamp k * period) shows signal s_k; its command 0.3 * s_k is stamped
    ``lag_ns`` later. Returns the labels by frame."""
    s = _signal(n, seed)
    labels = 0.3 * s
    with DemoBagWriter(path, storage=storage) as w:
        for k in range(n):
            t = 10**9 + k * PERIOD_NS
            w.write_image(t, _frame(float(s[k])))
            w.write_commands(t + lag_ns, float(labels[k]), float(labels[k]), 5.0)
    return labels


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("lag_ms", [0, 30, 50, -40])
def test_lag_estimate_finds_a_known_command_lag(tmp_path, storage, lag_ms):
    _write_lagged_bag(tmp_path / "b", storage, lag_ms * 1_000_000)
    d = read_demonstrations(tmp_path / "b", "/camera/image_raw", "/expert_cmd", height=H, width=W)
    (est,) = d.lag_estimates
    assert est.reliable, est
    assert est.lag_s == pytest.approx(lag_ms * 1e-3, abs=0.004)
    assert est.lag_se_s < 0.004
    assert est.frame_period_s == pytest.approx(0.05)
    if abs(lag_ms) >= 25:  # half a frame or more: labels shifted by whole frames
        (warning,) = d.lag_warnings()
        assert f"--label-offset-s {est.lag_s:.3f}" in warning
    else:
        assert d.lag_warnings() == []


def test_a_one_frame_lag_pairs_every_frame_with_the_previous_label_until_offset(tmp_path):
    labels = _write_lagged_bag(tmp_path / "b", "mcap", PERIOD_NS, n=400, seed=1)
    kw = {"height": H, "width": W}
    d = read_demonstrations(tmp_path / "b", "/camera/image_raw", "/expert_cmd", **kw)
    # The silent failure: every frame is paired, each with the previous frame's label.
    assert d.stats["paired"] == 400 and d.stats["unpaired"] == 0
    np.testing.assert_allclose(d.targets[1:, 0], labels[:-1], atol=1e-6)
    fixed = read_demonstrations(
        tmp_path / "b", "/camera/image_raw", "/expert_cmd", label_offset_s=0.05, **kw
    )
    np.testing.assert_allclose(fixed.targets[:, 0], labels[: len(fixed)], atol=1e-6)
    assert fixed.label_offset_s == 0.05 and fixed.lag_warnings() == []


def test_frames_that_do_not_show_the_command_give_no_lag_but_say_so():
    rng = np.random.default_rng(0)
    n = 600
    images = rng.integers(0, 255, (n, H, W, 3), dtype=np.uint8)
    stamps = np.arange(n, dtype=np.int64) * PERIOD_NS
    est = estimate_command_lag(images, stamps, stamps, rng.normal(size=(n, 1)))
    assert not est.reliable
    assert "not measurable" in (est.warning() or "")


def test_lag_estimate_rejects_too_little_data():
    with pytest.raises(ValueError, match="frames"):
        estimate_command_lag(
            np.zeros((5, H, W, 3), np.uint8),
            np.arange(5, dtype=np.int64),
            np.arange(5, dtype=np.int64),
            np.zeros((5, 1)),
        )


def test_train_check_data_reports_the_lag_and_the_offset_in_use(tmp_path, capsys):
    _write_lagged_bag(tmp_path / "b", "sqlite3", PERIOD_NS, n=600, seed=2)
    common = ["train", "--bag", str(tmp_path / "b"), "--check-data"]
    assert main(common) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["stats"]["paired"] == 600 and report["max_pair_dt_s"] == 0.05
    assert report["lag"][0]["lag_s"] == pytest.approx(0.05, abs=0.008)
    assert "warning: commands lag their frames" in out.err and report["warnings"]
    assert main([*common, "--label-offset-s", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label_offset_s"] == 0.05 and report["warnings"] == []
