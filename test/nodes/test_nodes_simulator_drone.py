"""The simulator node's drone scenario: on an in-test fake node (topics, Twist and land handling,
odometry and task messages, log), and as a process over DDS flown to its target and landed."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from test_nodes_simulator import FakeNode  # the same fake node as the car's tests

from ltc_controller.nodes.simulator import SimulatorNode
from ltc_controller.params import ParameterError
from ltc_controller.sim.drone.world import generate_world
from ltc_controller.transport import port

pytestmark = pytest.mark.timeout(300)


def twist(vx=0.0, vy=0.0, vz=0.0, wz=0.0):
    v = SimpleNamespace
    return v(linear=v(x=vx, y=vy, z=vz), angular=v(x=0.0, y=0.0, z=wz))


@pytest.fixture()
def drone():
    node = FakeNode()
    sn = SimulatorNode(node, {"scenario": "drone", "world_seed": 2, "duration_s": 30.0})
    yield node, sn
    sn.close()


def advance(node, sn, seconds, step=0.01):
    for _ in range(int(round(seconds / step))):
        node.mono += step
        node.t += step
        sn.drone.on_physics()


def test_drone_topics_qos_and_rates(drone):
    node, sn = drone
    assert sn.drone is not None
    assert set(node.subs) == {"cmd_vel", "land"}
    assert node.qos["camera/image_raw"] == port.SENSOR_DATA
    assert {"odom", "ground_truth/task"} <= set(node.published)
    assert "ackermann_cmd" not in node.subs
    assert sorted(p for p, _ in node.timers) == pytest.approx([0.01, 0.02, 0.05])


def test_twist_is_the_body_velocity_setpoint_and_bad_ones_are_counted(drone):
    node, sn = drone
    node.subs["cmd_vel"](twist(0.8, 0.0, 0.0, 0.0))
    node.subs["cmd_vel"](twist(math.nan, 0.0, 0.0, 0.0))
    node.subs["cmd_vel"](SimpleNamespace())
    assert sn.drone.sim.command == (0.8, 0.0, 0.0, 0.0) and sn.drone.bad_commands == 2
    advance(node, sn, 3.0)
    sn.drone.publish_odom()
    odom = node.published["odom"][-1]
    assert odom.header.frame_id == "odom" and odom.child_frame_id == "base_link"
    assert odom.twist.twist.linear.x == pytest.approx(0.8, abs=0.03)
    assert odom.pose.pose.position.z == pytest.approx(1.0, abs=0.03)
    q = odom.pose.pose.orientation
    assert q.w**2 + q.x**2 + q.y**2 + q.z**2 == pytest.approx(1.0)


def test_camera_frame_and_task_status(drone):
    node, sn = drone
    sn.drone.on_camera()
    img = node.published["camera/image_raw"][-1]
    assert (img.height, img.width, img.encoding, img.step) == (78, 200, "rgb8", 600)
    assert len(img.data) == 78 * 600
    sn.drone.publish_odom()
    st = node.published["ground_truth/task"][-1].status[0]
    kv = {k.key: k.value for k in st.values}
    assert st.name == "drone_task" and kv["success"] == "false" and kv["collisions"] == "0"
    d = generate_world(2).distance_to_target(0.0, 0.0)
    assert float(kv["distance_m"]) == pytest.approx(d, abs=1e-3)


def test_land_request_lands_and_the_log_says_so(drone, tmp_path):
    node, sn = drone
    advance(node, sn, 0.5)
    node.subs["land"](SimpleNamespace())
    node.subs["cmd_vel"](twist(1.0, 0.0, 0.5, 0.0))  # ignored once landing
    advance(node, sn, 5.0)
    summ = sn.write_log(tmp_path / "run.npz")
    assert summ["scenario"] == "drone" and summ["mode"] == "landed"
    assert summ["final_altitude_m"] < 0.1 and summ["collisions"] == 0
    assert summ["land_requests"] == 1 and summ["commands_received"] == 1
    z = np.load(tmp_path / "run.npz")
    assert z["phys_vz"].min() > -0.35  # the bounded descent rate (0.3 m/s)
    assert z["obstacles"].shape == (len(sn.drone.sim.world.obstacles), 7)
    assert z["target"].shape == (3,)
    assert json.loads((tmp_path / "run.json").read_text())["mode"] == "landed"


def test_drone_run_log_streams_to_parts_so_a_killed_simulator_leaves_its_flight(drone, tmp_path):
    node, sn = drone
    sn.open_log(tmp_path / "run.npz")
    assert sn.log_dir == tmp_path / "run.parts"
    for k in range(300):  # 3 s: a frame and a setpoint at 20 Hz, physics at 100 Hz
        if k % 5 == 0:
            sn.drone.on_camera()
            node.subs["cmd_vel"](twist(0.5, 0.0, 0.0, 0.1))
        advance(node, sn, 0.01)
    node.subs["land"](SimpleNamespace())
    advance(node, sn, 1.5)
    # No write_log, no close: what a SIGKILL leaves. Every column is a valid .npy holding the
    # rows up to the last flush (at most LOG_FLUSH_S = 1 s old); nothing is kept in memory.
    parts = tmp_path / "run.parts"
    t = np.load(parts / "phys_t.npy")
    assert 300 <= t.size <= 451 and np.all(np.diff(t) > 0)
    stamps = np.load(parts / "frame_stamp_ns.npy")
    assert stamps.dtype == np.int64 and 40 <= stamps.size <= 60
    vx = np.load(parts / "cmd_vx.npy")
    assert 40 <= vx.size <= 60 and np.all(vx == 0.5)
    assert np.load(parts / "land_recv.npy").size == 1  # flushed after the request, 1.5 s ago
    summ = sn.write_log(tmp_path / "run.npz")  # the normal end: one .npz, the folder gone
    assert not parts.exists()
    with np.load(tmp_path / "run.npz") as z:
        assert z["frame_stamp_ns"].size == 60 and z["cmd_twist"].shape == (60, 4)
        assert np.array_equal(z["phys_t"][: t.size], t)
        assert np.array_equal(z["cmd_twist"][0], [0.5, 0.0, 0.0, 0.1])
        land_recv = float(z["land_recv"][0])
    assert summ["frames_published"] == 60 and summ["land_requests"] == 1
    assert summ["land_received_wall_s"] == pytest.approx(land_recv)
    assert summ["hover_speed_mps"] is not None and summ["log_errors"] == 0


def test_twist_stamped_setpoints_carry_the_frame_stamp_so_latency_is_logged(tmp_path):
    node = FakeNode()
    sn = SimulatorNode(
        node, {"scenario": "drone", "world_seed": 2, "twist_type": "geometry_msgs/msg/TwistStamped"}
    )
    v = SimpleNamespace
    try:
        for _ in range(4):
            sn.drone.on_camera()
            stamp = node.published["camera/image_raw"][-1].header.stamp
            node.t += 0.03  # the setpoint arrives 30 ms after the frame's stamp
            node.subs["cmd_vel"](v(header=v(stamp=stamp), twist=twist(0.4, 0.0, 0.0, 0.0)))
            advance(node, sn, 0.05)
        sn.drone.on_camera()  # a frame no setpoint answered
        summ = sn.write_log(tmp_path / "run.npz")
        with np.load(tmp_path / "run.npz") as z:
            lat = z["frame_latency_s"]
        assert lat.shape == (5,) and np.isnan(lat[-1])
        assert lat[:4] == pytest.approx([0.03] * 4, abs=1e-6)
        assert summ["latency_matched_frames"] == 4 and summ["latency_p50_s"] == pytest.approx(0.03)
        assert sn.drone.sim.command == (0.4, 0.0, 0.0, 0.0)
    finally:
        sn.close()


def test_unknown_drone_condition_is_rejected_with_its_name():
    with pytest.raises(ParameterError, match="drone_condition"):
        SimulatorNode(FakeNode(), {"scenario": "drone", "drone_condition": "mars"})
    with pytest.raises(ParameterError, match="scenario"):
        SimulatorNode(FakeNode(), {"scenario": "boat"})


# -- as a process over DDS ------------------------------------------------------------------------


@pytest.mark.usefixtures("dds_loopback")
def test_drone_simulator_process_flies_to_the_target_on_cmd_vel_then_lands(tmp_path: Path):
    """The test flies the drone over DDS with a bearing-only pilot (forward 0.6 m/s, yaw towards
    the target from odometry; every world keeps the line of sight clear), then sends ``land``.
    What is asserted is what the simulator decided and logged: success, no collision, landed."""
    from ltc_controller.transport.dds import DdsNode

    seed = 1
    world = generate_world(seed)
    log = tmp_path / "drone.npz"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ltc_controller",
            "node",
            "simulator",
            "--log",
            str(log),
            "--ros-args",
            "-p",
            "scenario:=drone",
            "-p",
            f"world_seed:={seed}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    node = DdsNode("drone_pilot", parameter_services=False)
    seen: dict[str, Any] = {}
    node.create_subscription("nav_msgs/msg/Odometry", "odom", lambda m: seen.update(odom=m))
    node.create_subscription(
        "diagnostic_msgs/msg/DiagnosticArray",
        "ground_truth/task",
        lambda m: seen.update(task={k.key: k.value for k in m.status[0].values}),
    )
    node.create_subscription(
        "sensor_msgs/msg/Image",
        "camera/image_raw",
        lambda m: seen.update(image=(m.height, m.width, m.encoding)),
        port.SENSOR_DATA,
    )
    cmd = node.create_publisher("geometry_msgs/msg/Twist", "cmd_vel")
    land = node.create_publisher("std_msgs/msg/Empty", "land")
    tx, ty, _ = world.target

    def task(key: str) -> str:
        return str(seen.get("task", {}).get(key, ""))

    try:
        end = time.monotonic() + 150.0  # a bound for a stuck run, not a timing claim
        while time.monotonic() < end and task("done") != "true":
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            node.spin_once(0.05)
            o = seen.get("odom")
            if o is None:
                continue
            p, q = o.pose.pose.position, o.pose.pose.orientation
            yaw = 2.0 * math.atan2(q.z, q.w)
            bearing = math.remainder(math.atan2(ty - p.y, tx - p.x) - yaw, math.tau)
            m = node.msg("geometry_msgs/msg/Twist")
            m.linear.x = 0.6 * max(0.0, math.cos(2.0 * bearing))  # slow while turning
            m.linear.z = 1.0 - p.z
            m.angular.z = 1.5 * bearing
            cmd.publish(m)
        assert task("success") == "true", (seen.get("task"), proc.poll())
        while time.monotonic() < end and task("mode") != "landed":
            land.publish(node.msg("std_msgs/msg/Empty"))
            node.spin_once(0.2)
        assert task("mode") == "landed", seen.get("task")
        assert seen.get("image") == (78, 200, "rgb8")
    finally:
        node.shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    summ = json.loads(log.with_suffix(".json").read_text())
    assert summ["success"] and summ["collisions"] == 0 and summ["mode"] == "landed"
    assert summ["final_altitude_m"] < 0.1 and summ["land_requests"] >= 1
    assert summ["commands_received"] > 20 and summ["bad_commands"] == 0
    assert summ["time_to_target_s"] <= world.params.time_limit_s
    assert "reached the target" in err and "landing requested" in err
