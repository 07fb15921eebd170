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
    """``monitor fit`` of the bundled NCP-19 on the train/calib bags, then ``monitor check`` of
    the clean and the noise bag against the clean one, for both monitors."""
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
    text, err = capsys.readouterr()
    assert "32 features; statistics from 360 frames" in text and "240 calibration frames" in text
    assert "warning" not in err  # 360 frames >= 10 per feature
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
    from ltc_controller.models.policy import Policy
    from ltc_controller.models.policy_file import save_policy

    # The bundled NCP-19 carries its statistics; a file without them is refused by name.
    assert main(["monitor", "check", "--bag", str(bags / "clean")]) == 0
    capsys.readouterr()
    bare = save_policy(Policy.from_config(seed=0), tmp_path / "bare.safetensors")
    assert main(["monitor", "check", "--policy", str(bare), "--bag", str(bags / "clean")]) == 2
    assert "has no statistics" in capsys.readouterr().err
    assert main(["monitor", "fit", "--bag", str(tmp_path / "none"), "-o", str(tmp_path / "x")]) == 2
    assert "monitor:" in capsys.readouterr().err
    assert main(["monitor", "fit", "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_fit_on_few_frames_warns_that_the_statistics_are_unreliable(bags, tmp_path, capsys):
    out = tmp_path / "few.safetensors"
    args = ["monitor", "fit", "--bag", str(bags / "train"), "--max-frames", "100"]
    assert main([*args, "--attention-every-n", "0", "-o", str(out)]) == 0
    text, err = capsys.readouterr()
    n = int(text.split("statistics from ")[1].split(" frames")[0])
    assert n < 320 and out.is_file()
    assert err.startswith(
        f"monitor: warning: the statistics come from {n} frames for 32 features (fewer than "
        "320, 10 per feature): the feature covariance is poorly estimated"
    ), err


def _camera_only(src, dst, topic="/camera/image_raw"):
    """A copy of the bag with its camera topic alone, as real camera footage has no commands."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from ltc_controller.interfaces import typestore

    with Reader(src) as r, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = [c for c in r.connections if c.topic == topic]
        out = w.add_connection(topic, conns[0].msgtype, typestore=typestore())
        for _, log_ns, raw in r.messages(connections=conns):
            w.write(out, log_ns, raw)
    return dst


def _rows(text):
    """The feature monitor's table (the attention monitor's follows it)."""
    text = text.split("attention (saliency instability")[0]
    return {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| bag")
    }


def test_fit_and_check_need_only_the_camera_topic(bags, tmp_path, capsys):
    from ltc_controller.training.bag import bag_topics

    cam = {k: _camera_only(bags / k, tmp_path / k) for k in ("train", "calib", "clean", "noise")}
    assert bag_topics(cam["noise"]) == {"/camera/image_raw": "sensor_msgs/msg/Image"}
    out = tmp_path / "ood.safetensors"
    fit = ["monitor", "fit", "--bag", str(cam["train"]), "--calibration-bag", str(cam["calib"])]
    assert main([*fit, "--output", str(out)]) == 0
    assert "statistics from 360 frames" in capsys.readouterr().out

    def check(folder):
        argv = ["monitor", "check", "--policy", str(out), "--clean", str(folder["clean"])]
        assert main([*argv, "--bag", str(folder["clean"]), "--bag", str(folder["noise"])]) == 0
        return _rows(capsys.readouterr().out)

    rows = check(cam)
    assert float(rows["noise"][-1]) > 0.95 and rows["noise"][0] == "120"  # AUROC, frames
    # The same frames score the same with the commands in the bag: they are never read.
    assert check({k: bags / k for k in ("clean", "noise")}) == rows


def test_monitor_evaluate_drives_through_evaluate_and_refuses_a_file_without_statistics(
    tmp_path, capsys, monkeypatch
):
    import numpy as np
    import torch

    from ltc_controller.models.ood import fit_feature_stats
    from ltc_controller.models.policy_file import BUNDLED_POLICY, save_policy

    policy = load_policy(BUNDLED_POLICY)
    attention = policy.attention_stats  # the bundled file's calibration
    assert attention is not None
    policy.feature_stats = policy.attention_stats = None
    plain = save_policy(policy, tmp_path / "plain.safetensors")
    rng = np.random.default_rng(0)
    policy.feature_stats = fit_feature_stats(
        rng.normal(0.0, 1.0, size=(200, 32)),
        [(rng.normal(0.0, 1.0, size=(40, 32)), np.arange(40) * 0.05)],
    )
    policy.attention_stats = attention
    monitored = save_policy(policy, tmp_path / "monitored.safetensors")
    table = tmp_path / "table.md"
    args = ["--conditions", "clean,noise_0.3", "--episodes", "1", "--distance", "10"]
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    rc = main(["monitor", "evaluate", "--policy", str(monitored), *args, "--output", str(table)])
    assert rc == 0
    assert threads == [1]  # one torch thread by default, as `evaluate` (2 contend under load)
    features, att = table.read_text().split("attention monitor (saliency instability")
    rows = [line.split("|") for line in features.strip().splitlines()[2:]]
    assert [r[1].strip() for r in rows] == ["clean", "noise_0.3"]
    assert rows[0][4].strip() == "" and 0.0 <= float(rows[1][4]) <= 1.0  # AUROC vs clean
    # The attention monitor's table from the same episodes (the shared monitor_tables): its
    # pair scores, 4 digits; noise makes consecutive saliency maps disagree.
    arows = [line.split("|") for line in att.strip().splitlines()[4:]]
    assert [r[1].strip() for r in arows] == ["clean", "noise_0.3"]
    p50 = [float(r[3]) for r in arows]
    assert 0.0 <= p50[0] < p50[1] and len(arows[0][3].strip().split(".")[1]) == 4
    assert arows[0][4].strip() == "" and 0.5 < float(arows[1][4]) <= 1.0
    capsys.readouterr()
    assert main(["monitor", "evaluate", "--policy", str(plain), *args]) == 2
    assert "has no statistics" in capsys.readouterr().err
    # A command latency of a whole 20 Hz camera period: one line, exit 2, no traceback.
    late = [*args, "--speed", "8", "--latency", "0.05"]
    assert main(["monitor", "evaluate", "--policy", str(monitored), *late]) == 2
    assert "latency_s=0.05: expected in [0, 0.05)" in capsys.readouterr().err


def test_the_drone_policy_fits_both_monitors_and_flies_with_them(tmp_path, capsys):
    """The bundled drone NCP-34 (paper-2020 conv head, 4 Twist outputs): ``monitor fit`` on
    recorded drone frames gives it the feature statistics and the attention calibration
    (VisualBackProp pairs 50 ms apart), and ``monitor evaluate --scenario drone`` flies it with
    both monitors attached: heavy camera noise scores above clean on both."""
    from ltc_controller.commands.demo import DRONE_POLICY
    from ltc_controller.sim.drone.scenario import DronePerturbationConfig
    from ltc_controller.training.drone_recording import DroneRecordConfig, record_drone

    record_drone(
        tmp_path / "train", DroneRecordConfig(episodes=2, episode_s=3.0, first_world_seed=1000)
    )
    calm = DronePerturbationConfig.none(1.0)
    record_drone(
        tmp_path / "calib",
        DroneRecordConfig(episodes=2, episode_s=3.0, first_world_seed=2000, perturbation=calm),
    )
    out = tmp_path / "drone_ood.safetensors"
    fit = ["monitor", "fit", "--policy", str(DRONE_POLICY), "--bag", str(tmp_path / "train")]
    assert main([*fit, "--calibration-bag", str(tmp_path / "calib"), "-o", str(out)]) == 0
    assert "32 features; statistics from 120 frames" in capsys.readouterr().out
    fitted = load_policy(out)
    att = fitted.attention_stats
    assert fitted.feature_stats is not None and att is not None
    assert att.pair_gap_s == pytest.approx(0.075) and att.calibration["heldout_frames"] == 118
    assert att.fault == pytest.approx(2.0 * att.degraded) and att.degraded > 0.0
    table = tmp_path / "table.md"
    args = ["--scenario", "drone", "--conditions", "clean,noise_0.3", "--episodes", "1"]
    rc = main(
        [
            "monitor",
            "evaluate",
            "--policy",
            str(out),
            *args,
            "--time-limit",
            "3",
            "--output",
            str(table),
        ]
    )
    assert rc == 0
    features, attention = table.read_text().split("attention monitor")
    # Statistics from 120 frames are rough (32 features): a looser AUROC bound for them.
    for part, least in ((features, 0.7), (attention, 0.9)):
        rows = {
            line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in part.splitlines()
            if line.startswith("| ") and not line.startswith("| condition")
        }
        assert list(rows) == ["clean", "noise_0.3"]
        assert rows["clean"][2] == "" and float(rows["noise_0.3"][2]) > least  # AUROC vs clean
        assert float(rows["noise_0.3"][1]) > 2.0 * float(rows["clean"][1])  # median score
    # The car's distance does not apply to the drone: a clear error, exit 2.
    capsys.readouterr()
    assert main(["monitor", "evaluate", "--policy", str(out), *args, "--distance", "5"]) == 2
    assert "--distance applies to the car only" in capsys.readouterr().err
