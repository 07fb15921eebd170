"""``ltc-controller monitor fit|check`` on real recorded bags (MuJoCo, rosbag2 MCAP) with the
bundled NCP-19: the fitted file loads with its statistics and attention calibration, clean frames
score low, heavy camera noise scores high (AUROC near 1) on both monitors, and bad input is a
clear error."""

from __future__ import annotations

import pytest

from ltc_controller.cli import main
from ltc_controller.models.policy_file import load_policy

pytest.importorskip("mujoco")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory):
    from ltc_controller.training.recording import RecordConfig, record

    root = tmp_path_factory.mktemp("monitor")
    record(root / "train", RecordConfig(episodes=3, episode_s=6.0, first_track_seed=1000))
    clean = RecordConfig(episodes=2, episode_s=6.0, first_track_seed=2000)
    record(root / "calib", clean)
    record(root / "clean", RecordConfig(episodes=1, episode_s=6.0, first_track_seed=5000))
    record(
        root / "noise",
        RecordConfig(episodes=1, episode_s=6.0, first_track_seed=5000, condition="noise_0.3"),
    )
    return root


def test_fit_then_check_separates_noise_from_clean_frames(bags, tmp_path, capsys):
    out = tmp_path / "ncp19_ood.safetensors"
    rc = main(
        [
            "monitor",
            "fit",
            "--bag",
            str(bags / "train"),
            "--calibration-bag",
            str(bags / "calib"),
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "32 features; statistics from 360 frames" in text and "240 calibration frames" in text
    stats = load_policy(out).feature_stats
    assert stats is not None and stats.calibration["heldout_onsets_fault"] == 0
    # The attention monitor, calibrated on the same 2 x 6 s: pairs 50 ms apart (20 Hz camera).
    att = load_policy(out).attention_stats
    assert att is not None and att.every_n_frames == 1
    assert att.pair_gap_s == pytest.approx(0.075) and att.calibration["heldout_frames"] == 238
    assert "attention: 238 pairs" in text
    rc = main(
        [
            "monitor",
            "check",
            "--policy",
            str(out),
            "--clean",
            str(bags / "clean"),
            "--bag",
            str(bags / "clean"),
            "--bag",
            str(bags / "noise"),
        ]
    )
    assert rc == 0
    features, attention = capsys.readouterr().out.split("attention (saliency instability")
    for table in (features, attention):
        rows = {
            line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| bag")
        }
        assert float(rows["clean"][-1]) == pytest.approx(0.5)
        assert float(rows["noise"][-1]) > 0.9  # per-frame (pair) scores: noise above clean
        assert float(rows["noise"][1]) > 2.0 * float(rows["clean"][1])  # median score


def test_bad_input_is_a_clear_error(bags, tmp_path, capsys):
    assert main(["monitor", "check", "--bag", str(bags / "clean")]) == 2
    assert "has no statistics" in capsys.readouterr().err
    assert main(["monitor", "fit", "--bag", str(tmp_path / "none"), "-o", str(tmp_path / "x")]) == 2
    assert "monitor:" in capsys.readouterr().err
    assert main(["monitor", "fit", "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
