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


def drive(node, sn, seconds: float) -> None:
    """Physics at 100 Hz, a frame and its command at 20 Hz, for ``seconds`` of fake time."""
    for k in range(int(seconds * 100)):
        if k % 5 == 0:
            sn.on_camera()
            sec, ns = split_stamp(node.t)
            node.subs["ackermann_cmd"](command(sec, ns, 0.0, 5.0))
        node.mono += 0.01
        node.t += 0.01
        sn.on_physics()


def test_run_log_streams_to_parts_so_a_killed_simulator_leaves_its_run(tmp_path):
    node = FakeNode()
    sn = SimulatorNode(node, {"track_seed": 1}, sim=LaneKeepingSim(track_seed=1))
    sn.open_log(tmp_path / "run.npz")
    assert sn.log_dir == tmp_path / "run.parts"
    drive(node, sn, 3.0)
    # No write_log, no close: what a SIGKILL leaves. Every column is a valid .npy with all
    # rows up to the last flush (at most LOG_FLUSH_S = 1 s old).
    t = np.load(tmp_path / "run.parts" / "phys_t.npy")
    assert 200 <= t.size <= 301 and np.all(np.diff(t) > 0)  # 301 rows: t = 0 is one
    stamps = np.load(tmp_path / "run.parts" / "frame_stamp_ns.npy")
    assert stamps.dtype == np.int64 and 40 <= stamps.size <= 60
    assert np.load(tmp_path / "run.parts" / "cmd_stamp_ns.npy").size == stamps.size
    summ = sn.write_log(tmp_path / "run.npz")  # the normal end: one .npz, the folder gone
    assert not (tmp_path / "run.parts").exists()
    with np.load(tmp_path / "run.npz") as z:
        assert z["phys_t"].size == 301 and z["frame_stamp_ns"].size == 60
        assert np.array_equal(z["phys_t"][: t.size], t)
        assert np.array_equal(z["frame_stamp_ns"][: stamps.size], stamps)
    assert summ["frames_published"] == 60 and summ["latency_p50_s"] == pytest.approx(0.0)
    sn.close()


def test_run_log_memory_stays_flat_however_long_the_run(tmp_path):
    import tracemalloc

    node = FakeNode()
    sn = SimulatorNode(node, {"track_seed": 1}, sim=LaneKeepingSim(track_seed=1))
    sn.on_camera = lambda: None  # rendering is not what is measured here
    sn.open_log(tmp_path / "run.npz")
    drive(node, sn, 5.0)
    tracemalloc.start()
    drive(node, sn, 10.0)
    short, _ = tracemalloc.get_traced_memory()
    drive(node, sn, 100.0)  # 10,000 more physics rows and 2,000 commands
    long, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The old in-memory log held ~200 B per physics row: 2 MB here.
    assert long - short < 64 * 1024, long - short
    assert np.load(tmp_path / "run.parts" / "phys_t.npy").size >= 11_000
    sn.close()
