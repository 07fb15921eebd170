"""SimulatorNode logic on an in-test fake node (no transport): commands, frames, log, summary."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from ltc_controller.nodes.simulator import DEFAULT_PARAMS, SimulatorNode, split_stamp
from ltc_controller.params import ParameterError
from ltc_controller.sim.lane_sim import LaneKeepingSim
from ltc_controller.transport import port


class FakeLogger:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def debug(self, m):
        self.lines.append(("debug", m))

    def info(self, m):
        self.lines.append(("info", m))

    def warning(self, m):
        self.lines.append(("warning", m))

    def error(self, m):
        self.lines.append(("error", m))


class FakeNode:
    """Records publishers/subscriptions/timers; time is set by the test."""

    name = "sim"
    namespace = "/"

    def __init__(self):
        self.logger = FakeLogger()
        self.t = 1_700_000_000.0
        self.mono = 100.0
        self.published: dict[str, list] = {}
        self.qos: dict[str, port.QoS] = {}
        self.subs: dict[str, object] = {}
        self.timers: list[tuple[float, object]] = []
        self.shut = False

    def msg(self, type_name, **fields):
        return SimpleNamespace(_type=type_name, **fields)

    def create_publisher(self, type_name, topic, qos=port.RELIABLE):
        self.qos[topic] = qos
        lst = self.published.setdefault(topic, [])
        return SimpleNamespace(publish=lst.append)

    def create_subscription(self, type_name, topic, callback, qos=port.RELIABLE):
        self.subs[topic] = callback

    def create_timer(self, period_s, callback):
        self.timers.append((period_s, callback))
        return SimpleNamespace(cancel=lambda: None)

    def now(self):
        return self.t

    def steady(self):
        return self.mono

    def spin(self):
        pass

    def shutdown(self):
        self.shut = True


def command(sec, nanosec, steer, speed):
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
        drive=SimpleNamespace(steering_angle=steer, speed=speed),
    )


@pytest.fixture()
def setup():
    node = FakeNode()
    sim = LaneKeepingSim(track_seed=1, initial_speed=5.0)
    sn = SimulatorNode(node, {"track_seed": 1, "duration_s": 2.0}, sim=sim)
    yield node, sn
    sn.close()


def test_interfaces_topics_qos_and_rates(setup):
    node, sn = setup
    assert node.qos["camera/image_raw"] == port.SENSOR_DATA
    assert "ackermann_cmd" in node.subs and "odom" in node.published
    periods = sorted(p for p, _ in node.timers)
    assert periods == pytest.approx([0.01, 0.02, 0.05])  # physics 100, odom 50, camera 20 Hz


def test_image_message_is_rgb8_stamped_at_render_time(setup):
    node, sn = setup
    sn.on_camera()
    msg = node.published["camera/image_raw"][-1]
    assert (msg.height, msg.width, msg.encoding, msg.step) == (78, 200, "rgb8", 600)
    assert isinstance(msg.data, bytes) and len(msg.data) == 78 * 600
    assert msg.header.frame_id == "camera_optical_frame"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == split_stamp(node.t)


def test_command_applied_and_latency_matched_by_stamp(setup):
    node, sn = setup
    sn.on_camera()
    sec, ns = split_stamp(node.t)
    node.t += 0.030
    node.subs["ackermann_cmd"](command(sec, ns, 0.1, 4.0))
    node.t += 0.010
    node.subs["ackermann_cmd"](command(sec, ns, 0.2, 4.0))  # later duplicate: not the first
    assert sn.sim.command == (0.2, 4.0)
    lat = sn.frame_latencies()
    assert lat.shape == (1,) and lat[0] == pytest.approx(0.030, abs=1e-6)


def test_nan_command_is_ignored_and_counted(setup):
    node, sn = setup
    node.subs["ackermann_cmd"](command(1, 0, 0.1, 3.0))
    node.subs["ackermann_cmd"](command(1, 0, math.nan, 3.0))
    node.subs["ackermann_cmd"](command(1, 0, 0.0, math.inf))
    node.subs["ackermann_cmd"](SimpleNamespace())  # malformed
    assert sn.sim.command == (0.1, 3.0)
    assert sn.bad_commands == 3
    assert sum(1 for lvl, _ in node.logger.lines if lvl == "warning") == 1  # logged once
    sn.on_physics()  # keeps running


def test_physics_follows_steady_clock_and_caps_catch_up(setup):
    node, sn = setup
    sn.on_physics()  # first tick: one period
    node.mono += 0.05
    sn.on_physics()
    assert sn.sim.time == pytest.approx(0.06)
    node.mono += 5.0  # stalled executor
    sn.on_physics()
    assert sn.sim.time == pytest.approx(0.16) and sn.physics_overruns == 1


def test_duration_reached_shuts_node_down(setup):
    node, sn = setup
    for _ in range(25):
        node.mono += 0.1
        sn.on_physics()
    assert node.shut


def test_odometry_pose_and_frames(setup):
    node, sn = setup
    sn.sim.reset(s0=0.0, initial_speed=5.0)
    sn.publish_odom()
    m = node.published["odom"][-1]
    assert m.header.frame_id == "odom" and m.child_frame_id == "base_link"
    q = m.pose.pose.orientation
    assert 2 * math.atan2(q.z, q.w) == pytest.approx(sn.sim.state.yaw)
    assert m.twist.twist.linear.x == pytest.approx(5.0)


def test_write_log_saves_npz_and_summary(setup, tmp_path):
    node, sn = setup
    for i in range(3):
        sn.on_camera()
        sec, ns = split_stamp(node.t)
        node.t += 0.02 + 0.01 * i
        node.subs["ackermann_cmd"](command(sec, ns, 0.0, 5.0))
        for _ in range(5):
            node.mono += 0.01
            node.t += 0.01
            sn.on_physics()
    summ = sn.write_log(tmp_path / "run.npz")
    z = np.load(tmp_path / "run.npz")
    assert z["frame_stamp_ns"].dtype == np.int64 and z["frame_stamp_ns"].shape == (3,)
    assert z["phys_x"].shape == z["phys_t"].shape and z["phys_t"].size >= 15
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk == json.loads(json.dumps(summ))
    assert summ["frames_published"] == 3 and summ["commands_received"] == 3
    assert summ["latency_p50_s"] == pytest.approx(0.03, abs=1e-6)
    assert summ["lane_departures"] == 0 and summ["distance_m"] > 0.5 and summ["progress_m"] > 0.5


def test_bad_parameters_are_rejected_with_their_name():
    with pytest.raises(ParameterError, match="camera_rate_hz"):
        SimulatorNode(FakeNode(), {"camera_rate_hz": -1.0})
    with pytest.raises(ParameterError, match="no_such"):
        SimulatorNode(FakeNode(), {"no_such": 1})
    assert DEFAULT_PARAMS["image_width"] == 200 and DEFAULT_PARAMS["image_height"] == 78


def test_split_stamp_keeps_nanosec_in_range():
    assert split_stamp(1.9999999999) == (2, 0)
    sec, ns = split_stamp(1_700_000_000.123456)
    assert sec == 1_700_000_000 and 0 <= ns < 1_000_000_000
