"""Drone data and evaluation: `record --scenario drone` bag contents (MCAP and sqlite3), DAgger,
the drone policy driver, the task metrics that separate the expert from a policy flying away, and a
reduced record -> train (4 velocity outputs) -> evaluate round through the CLI."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Reader

from ltc_controller.cli import main
from ltc_controller.interfaces import typestore
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.policy_file import load_policy, save_policy
from ltc_controller.training.bag import BagError
from ltc_controller.training.drone_closed_loop import VELOCITY_AXES, DronePolicyDriver
from ltc_controller.training.drone_evaluation import (
    DroneEvalConfig,
    evaluate_drone,
    summarise_drone,
)
from ltc_controller.training.drone_recording import DroneRecordConfig, record_drone
from ltc_controller.training.evaluation import EXPERT, ModelEntry

TWIST = "geometry_msgs/msg/Twist"


def _read(bag: Path) -> tuple[dict[str, str], dict[str, list[tuple[int, object]]]]:
    store = typestore()
    msgs: dict[str, list[tuple[int, object]]] = {}
    with Reader(bag) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for c, t, raw in r.messages():
            msgs.setdefault(c.topic, []).append((t, store.deserialize_cdr(raw, c.msgtype)))
    return types, msgs


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_drone_writes_camera_twist_label_executed_and_3d_odometry(tmp_path, capsys, storage):
    bag = tmp_path / "drone_bag"
    rc = main(
        [
            "record", str(bag), "--scenario", "drone", "--episodes", "2", "--episode-s", "3",
            "--storage", storage, "--first-track-seed", "1000",
        ]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "drone" and summary["command_type"] == TWIST
    assert summary["frames"] == 120  # 2 episodes x 3 s x 20 Hz, no early end in 3 s
    assert summary["collisions"] == 0
    types, msgs = _read(bag)
    assert types == {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/expert_cmd": TWIST,
        "/cmd_vel": TWIST,
        "/odom": "nav_msgs/msg/Odometry",
    }
    assert {t: len(v) for t, v in msgs.items()} == dict.fromkeys(types, 120)
    img = msgs["/camera/image_raw"][0][1]
    assert (img.height, img.width, img.encoding) == (78, 200, "rgb8")
    # The second episode starts after a stamp gap (segments split there).
    stamps = np.array([t for t, _ in msgs["/camera/image_raw"]]) * 1e-9
    gaps = np.diff(stamps)
    assert np.sum(gaps > 1.0) == 1 and np.allclose(gaps[gaps < 1.0], 0.05)
    # The expert flies forward towards the target and holds altitude; body frame, REP 103.
    label_vx = np.array([m.linear.x for _, m in msgs["/expert_cmd"]])
    assert np.mean(label_vx[20:60]) > 0.5
    odom = [m for _, m in msgs["/odom"]]
    assert all(o.child_frame_id == "base_link" and o.header.frame_id == "odom" for o in odom)
    z = np.array([o.pose.pose.position.z for o in odom])
    assert np.all(np.abs(z - z[0]) < 0.3)
    q = np.array([[o.pose.pose.orientation.w, o.pose.pose.orientation.z] for o in odom])
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=0.02)  # near-level flight
    fwd = np.array([o.twist.twist.linear.x for o in odom])
    assert fwd[59] > 0.5  # the drone actually moves forward in its own frame


def test_perturbed_executed_setpoints_differ_from_the_clean_label(tmp_path):
    s = record_drone(
        tmp_path / "b", DroneRecordConfig(episodes=1, episode_s=30.0, first_world_seed=1000)
    )
    assert s["reached"] == 1 and s["collisions"] == 0
    # Ends one second after reaching the target, long before 30 s.
    assert s["frames"] < 30.0 * 20 and s["sim_s"] < 15.0
    assert s["perturbed_fraction"] > 0.0
    _, msgs = _read(tmp_path / "b")
    lab = np.array([[m.linear.y, m.angular.z] for _, m in msgs["/expert_cmd"]])
    exe = np.array([[m.linear.y, m.angular.z] for _, m in msgs["/cmd_vel"]])
    differs = np.any(np.abs(lab - exe) > 0.1, axis=1)
    assert 0 < differs.mean() <= s["perturbed_fraction"] + 1e-9


def test_record_drone_rejects_ackermann_and_writes_twist_stamped(tmp_path, capsys):
    rc = main(["record", str(tmp_path / "a"), "--scenario", "drone", "--command-type", "ackermann"])
    assert rc == 2 and "velocity setpoints" in capsys.readouterr().err
    with pytest.raises(BagError, match="Twist"):
        record_drone(
            tmp_path / "b",
            DroneRecordConfig(episodes=1, episode_s=0.5),
            command_type="ackermann_msgs/msg/AckermannDriveStamped",
        )
    s = record_drone(
        tmp_path / "c",
        DroneRecordConfig(episodes=1, episode_s=0.5),
        command_type="geometry_msgs/msg/TwistStamped",
        compressed=True,
    )
    types, msgs = _read(tmp_path / "c")
    assert types["/cmd_vel"] == "geometry_msgs/msg/TwistStamped"
    assert types["/camera/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert msgs["/camera/image_raw/compressed"][0][1].format == "jpeg"
    assert msgs["/expert_cmd"][0][1].header.frame_id == "base_link"
    assert s["frames"] == 10


def _velocity_policy(bias: tuple[float, float, float, float]) -> Policy:
    from ltc_controller.models.wiring import NCP

    cfg = PolicyConfig(
        wiring=NCP(12, 6, 4, 6, 4, 6, 6, seed=22222, input_dim=32).get_config(),
        output_names=VELOCITY_AXES,
        output_units=("m/s", "m/s", "m/s", "rad/s"),
        output_scale=(1.0, 1.0, 1.0, 1.0),
    )
    p = Policy.from_config(cfg, seed=0)
    with torch.no_grad():
        p.ltc.output_w.zero_()
        p.ltc.output_b.copy_(torch.tensor(bias))
    return p


def test_driver_maps_outputs_by_axis_name_and_rejects_a_steering_policy():
    d = DronePolicyDriver(_velocity_policy((0.4, -0.2, 0.1, 0.3)))
    img = np.zeros((78, 200, 3), np.uint8)
    sp = None
    for k in range(3):
        sp = d.act(img, 0.05 * k) or sp
    assert sp is not None
    assert np.allclose(sp, (0.4, -0.2, 0.1, 0.3), atol=1e-5)
    with pytest.raises(ValueError, match="velocity outputs"):
        DronePolicyDriver(Policy.from_config(PolicyConfig(), seed=0))


def test_expert_succeeds_and_a_policy_flying_backwards_fails(tmp_path):
    away = save_policy(_velocity_policy((-0.8, 0.0, 0.0, 0.0)), tmp_path / "away.safetensors")
    conds = ("clean", "winter")
    # The expert needs ~6 s to the target; 3 s of the policy flying away say enough.
    recs, _ = evaluate_drone(
        [ModelEntry(EXPERT, None)], DroneEvalConfig(conditions=conds, episodes=1, max_time_s=9.0)
    )
    more, sizes = evaluate_drone(
        [ModelEntry("away", away)], DroneEvalConfig(conditions=conds, episodes=1, max_time_s=3.0)
    )
    recs += more
    assert len(recs) == 4 and str(away) in sizes
    by = {(r.model, r.condition): r for r in recs}
    for c in conds:
        ex, aw = by[(EXPERT, c)], by[("away", c)]
        assert ex.success == 1.0 and ex.collisions == 0
        assert ex.final_distance_m <= 1.0 and 0.0 < ex.time_to_target_s < 9.0
        assert aw.success == 0.0 and math.isnan(aw.time_to_target_s)
        assert aw.world_seed == ex.world_seed == 5000 and aw.duration_s == pytest.approx(3.0)
        # Flew away from the target (0.8 m/s backwards).
        assert aw.final_distance_m > aw.target_range_m + 1.0
        assert aw.min_distance_m == pytest.approx(aw.target_range_m, abs=0.05)
    rows = {(r["model"], r["condition"]): r for r in summarise_drone(recs).per_model}
    assert rows[(EXPERT, "winter")]["success"] == 1.0
    assert rows[("away", "clean")]["success"] == 0.0
    assert math.isnan(rows[("away", "clean")]["time_to_target_s"])


def test_reduced_record_train_evaluate_round_for_the_drone(tmp_path, capsys):
    bag = tmp_path / "demo"
    rc = main(["record", str(bag), "--scenario", "drone", "--episodes", "3", "--episode-s", "2"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 120
    pol = tmp_path / "drone.safetensors"
    rc = main(
        [
            "train", "--bag", str(bag), "--command-field", "all", "--epochs", "1",
            "--max-steps", "2", "--seq-len", "8", "--batch-size", "2", "--quiet",
            "--val-fraction", "0.2", "--output", str(pol),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    cfg = load_policy(pol).config
    assert cfg.output_names == VELOCITY_AXES
    assert cfg.output_units == ("m/s", "m/s", "m/s", "rad/s")
    assert len(cfg.output_scale) == 4 and all(s > 0 for s in cfg.output_scale)
    # DAgger: the tiny policy flies, the expert labels and takes over.
    rc = main(
        [
            "record", str(tmp_path / "dagger"), "--scenario", "drone", "--episodes", "1",
            "--episode-s", "2", "--dagger", str(pol),
        ]
    )  # fmt: skip
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["driver"] == "learner (DAgger)" and s["frames"] == 40
    assert 0.0 < s["takeover_fraction"] <= 1.0  # at least the first frame (no output yet)
    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate", "--scenario", "drone", "--policy", f"tiny={pol}", "--conditions",
            "clean,fog", "--episodes", "1", "--output", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "**success rate**" in text and "| tiny |" in text
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["condition"]: r for r in summary["per_model"]}
    assert set(rows) == {"clean", "fog"}
    for r in rows.values():
        assert r["model"] == "tiny" and r["episodes"] == 1
        assert 0.0 <= r["success"] <= 1.0 and r["final_distance_m"] >= 0.0
        assert r["collisions"] >= 0.0 and "time_to_target_s" in r
    assert (out / "success.png").is_file() and (out / "episodes.csv").is_file()


def test_evaluate_drone_lists_conditions_and_rejects_unknown_ones(tmp_path, capsys):
    assert main(["evaluate", "--scenario", "drone", "--list-conditions"]) == 0
    listing = capsys.readouterr().out
    assert len(listing.strip().splitlines()) == 13 and "target_occluded" in listing
    rc = main(["evaluate", "--scenario", "drone", "--expert", "--conditions", "snowstorm"])
    assert rc == 2 and "snowstorm" in capsys.readouterr().err
    rc = main(["evaluate", "--scenario", "drone", "--expert", "--attention", "--distance", "5"])
    assert rc == 2 and "--attention, --distance apply to the car only" in capsys.readouterr().err


def test_reduced_drone_preset_records_trains_with_dagger_and_evaluates(tmp_path):
    from ltc_controller.training.drone_presets import DRONE_REDUCED, train_drone

    out = tmp_path / "drone.safetensors"
    s = train_drone(tmp_path / "work", out, DRONE_REDUCED, log=lambda _: None, show_progress=False)
    assert [r["round"] for r in s["rounds"]] == [0, 1]
    # 2 expert episodes of 2 s, then a 2 s DAgger episode, at 20 Hz.
    assert [r["frames"] for r in s["rounds"]] == [80, 120]
    assert s["outputs"] == {
        "linear_x": "m/s",
        "linear_y": "m/s",
        "linear_z": "m/s",
        "angular_z": "rad/s",
    }
    cfg = load_policy(out).config
    assert cfg.output_names == VELOCITY_AXES
    # The drone NCP (34 neurons, 4 motor neurons) and the per-axis scales of the recipe.
    assert cfg.units == 34 and cfg.output_scale == (0.4, 0.3, 0.5, 0.4)
    assert cfg.feature_norm == "layer"
    assert [r["steps"] for r in s["rounds"]] == [2, 2]
    assert set(s["rounds"][0]["val_corr_per_output"]) <= set(VELOCITY_AXES)
    rows = {r["model"]: r for r in s["evaluation"]["per_model"]}
    assert set(rows) == {"policy", EXPERT} and rows["policy"]["condition"] == "clean"
    assert Path(s["evaluation"]["report"]).is_file()
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["rounds"] == s["rounds"]
    # A rerun reuses the bags (no re-recording) and resumes each round from its checkpoint:
    # both rounds had finished, so not one more optimiser step, and the same weights.
    logs: list[str] = []
    first = load_policy(out).state_dict()
    again = train_drone(tmp_path / "work", out, DRONE_REDUCED, log=logs.append, show_progress=False)
    assert sum(line.startswith("reusing") for line in logs) == 2
    assert sum(line.startswith("resumed from") for line in logs) == 2
    assert [r["steps"] for r in again["rounds"]] == [2, 2]
    for k, v in load_policy(out).state_dict().items():
        assert torch.equal(v, first[k]), k


def test_bag_writer_velocity_setpoints_need_a_twist_type(tmp_path):
    from ltc_controller.training.bag import DemoBagWriter

    with DemoBagWriter(tmp_path / "a") as w, pytest.raises(BagError, match="Twist command type"):
        w.write_velocity_commands(1, (0.1, 0.0, 0.0, 0.0), (0.1, 0.0, 0.0, 0.0))


def test_train_config_takes_one_output_scale_per_output_and_the_ncp_sizes():
    from ltc_controller.training.bag import Demonstrations
    from ltc_controller.training.trainer import TrainConfig, build_policy_config, train

    cfg = TrainConfig(output_scale=(0.5, 0.5, 0.2, 1.0), ncp=(18, 12, 6, 4, 4, 6))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    pcfg = build_policy_config(
        "ncp_ltc", None, VELOCITY_AXES, ("m/s",) * 3 + ("rad/s",), cfg.output_scale, 0.05,
        ncp=cfg.ncp,
    )  # fmt: skip
    w = pcfg.build_wiring()
    assert (pcfg.units, w.output_dim, pcfg.output_scale) == (34, 4, (0.5, 0.5, 0.2, 1.0))
    with pytest.raises(ValueError, match="expected 6 sizes"):
        TrainConfig(ncp=(18, 12, 4))
    n = 40
    demos = Demonstrations(
        images=np.zeros((n, 78, 200, 3), np.uint8),
        targets=np.zeros((n, 4), np.float32),
        stamps_ns=np.arange(n, dtype=np.int64) * 50_000_000,
        segment=np.zeros(n, np.int64),
        output_names=VELOCITY_AXES,
    )
    with pytest.raises(ValueError, match="2 values for the 4 outputs"):
        train(demos, TrainConfig(output_scale=(1.0, 1.0), seq_len=4, batch_size=2))
