"""`ltc-controller record`: rosbag2 (MCAP and sqlite3) with standard topics, stamps from the
simulation clock, clean expert labels; read back independently with rosbags."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image
from rosbags.rosbag2 import Reader

from ltc_controller.cli import main
from ltc_controller.interfaces import typestore
from ltc_controller.sim.scenario import make_sim
from ltc_controller.training.recording import RecordConfig


def _read(path):
    store = typestore()
    out: dict[str, list] = {}
    with Reader(path) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, store.deserialize_cdr(raw, conn.msgtype)))
    meta = yaml.safe_load((path / "metadata.yaml").read_text())
    return types, meta["rosbag2_bagfile_information"]["storage_identifier"], out


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "raw"
    rc = main(["record", str(path), "--episodes", "2", "--episode-s", "2", "--seed", "4"])
    assert rc == 0
    return path


def test_record_writes_mcap_with_standard_topics_and_sim_clock_stamps(raw_bag, capsys):
    types, storage, msgs = _read(raw_bag)
    assert storage == "mcap"
    assert types == {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/expert_cmd": "ackermann_msgs/msg/AckermannDriveStamped",
        "/ackermann_cmd": "ackermann_msgs/msg/AckermannDriveStamped",
        "/odom": "nav_msgs/msg/Odometry",
    }
    images = msgs["/camera/image_raw"]
    assert len(images) == 80  # 2 episodes x 2 s x 20 Hz
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images])
    assert stamps[0] == 0 and all(t == s for (t, _), s in zip(images, stamps, strict=True))
    steps = np.diff(stamps)
    assert np.all(steps[:39] == 50_000_000)  # 20 Hz on the simulation clock
    assert steps[39] > 5e9  # the gap between episodes
    img = images[0][1]
    assert (img.height, img.width, img.encoding, img.step) == (78, 200, "rgb8", 600)
    for topic in ("/expert_cmd", "/ackermann_cmd", "/odom"):
        assert [t for t, _ in msgs[topic]] == [t for t, _ in images]
    odom = msgs["/odom"][0][1]
    assert odom.header.frame_id == "odom" and odom.child_frame_id == "base_link"
    assert odom.twist.twist.linear.x == pytest.approx(5.0, abs=0.01)


def test_recorded_label_is_the_clean_expert_command_for_the_recorded_pose(raw_bag):
    _, _, msgs = _read(raw_bag)
    odom = msgs["/odom"][5][1]
    label = msgs["/expert_cmd"][5][1].drive.steering_angle
    sim = make_sim("clean", 1000, render_enabled=False)  # episode 0's track
    p = odom.pose.pose
    yaw = 2.0 * np.arctan2(p.orientation.z, p.orientation.w)
    from ltc_controller.sim.vehicle import VehicleState

    sim.state = VehicleState(x=p.position.x, y=p.position.y, yaw=yaw, speed=5.0)
    sim.frenet = sim.track.project(*sim.state.centre(sim.vehicle_params), yaw)
    assert label == pytest.approx(sim.expert_command(4.0, 5.0)[0], abs=1e-5)


def test_record_sqlite3_with_compressed_jpeg_images(tmp_path):
    path = tmp_path / "jpeg"
    rc = main(
        [
            "record",
            str(path),
            "--storage",
            "sqlite3",
            "--compressed",
            "--episodes",
            "1",
            "--episode-s",
            "1",
            "--no-perturb",
        ]
    )
    assert rc == 0
    types, storage, msgs = _read(path)
    assert storage == "sqlite3"
    assert types["/camera/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    frames = msgs["/camera/image_raw/compressed"]
    assert len(frames) == 20 and frames[0][1].format == "jpeg"
    decoded = np.asarray(Image.open(io.BytesIO(bytes(frames[0][1].data))))
    sim = make_sim("clean", 1000)
    # Perturbation-free run: same start draw as the recorder (seed 0).
    rng = np.random.default_rng(0)
    off = RecordConfig().start_offset_m
    sim.reset(
        s0=float(rng.uniform(0.0, sim.track.length)),
        lateral_offset=float(rng.uniform(-off, off)),
        heading_offset=float(rng.uniform(-0.05, 0.05)),
    )
    ref = sim.render()
    sim.close()
    assert decoded.shape == (78, 200, 3)
    assert np.abs(decoded.astype(int) - ref.astype(int)).mean() < 4.0  # JPEG q90


def test_record_refuses_an_existing_bag_with_a_clear_error(raw_bag, capsys):
    assert main(["record", str(raw_bag), "--episodes", "1", "--episode-s", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_record_prints_a_json_summary(tmp_path, capsys):
    assert main(["record", str(tmp_path / "b"), "--episodes", "1", "--episode-s", "1"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["frames"] == 20 and s["episodes"] == 1 and s["storage"] == "mcap"


@pytest.mark.parametrize("kind", ["twist", "twist_stamped"])
def test_record_twist_commands_carry_the_ackermann_expert_as_a_body_velocity(
    raw_bag, tmp_path, kind
):
    # Same seed and episodes as raw_bag: the same drive, written as Twist (bicycle, REP 103).
    path = tmp_path / kind
    args = ["record", str(path), "--episodes", "2", "--episode-s", "2", "--seed", "4"]
    assert main([*args, "--command-type", kind]) == 0
    types, _, msgs = _read(path)
    msgtype = "geometry_msgs/msg/Twist" + ("Stamped" if kind == "twist_stamped" else "")
    assert types["/expert_cmd"] == msgtype and types["/cmd_vel"] == msgtype
    assert "/ackermann_cmd" not in types
    _, _, ref = _read(raw_bag)
    wheelbase = make_sim("clean", 1000, render_enabled=False).vehicle_params.wheelbase_m
    for topic, ref_topic in (("/expert_cmd", "/expert_cmd"), ("/cmd_vel", "/ackermann_cmd")):
        assert len(msgs[topic]) == len(ref[ref_topic]) == 80
        for (t, m), (t_ref, a) in zip(msgs[topic], ref[ref_topic], strict=True):
            tw = m if kind == "twist" else m.twist
            assert t == t_ref
            if kind == "twist_stamped":
                assert m.header.stamp == a.header.stamp
            d = a.drive
            assert tw.linear.x == pytest.approx(d.speed)
            assert tw.angular.z == pytest.approx(
                d.speed * np.tan(d.steering_angle) / wheelbase, rel=1e-6, abs=1e-9
            )
            assert (tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y) == (0, 0, 0, 0)
    # (Ackermann fields are float32, hence rel=1e-6 above.)


@pytest.mark.parametrize("scenario", ["car", "drone"])
def test_record_summary_names_the_driver_it_recorded(tmp_path, capsys, scenario):
    drivers = {}
    for flags in ([], ["--no-perturb"]):
        bag = tmp_path / ("clean" if flags else "perturbed")
        argv = ["record", str(bag), "--scenario", scenario, "--episodes", "1", "--episode-s", "1"]
        assert main([*argv, *flags]) == 0
        s = json.loads(capsys.readouterr().out)
        drivers[bool(flags)] = (s["driver"], s["perturbed_fraction"])
    assert drivers[False][0] == "perturbed expert"
    assert drivers[True] == ("expert (no perturbations)", 0.0)
