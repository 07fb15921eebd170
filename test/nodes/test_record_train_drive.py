"""Record -> train -> drive for every command type: the simulator's expert recorded as
Ackermann, Twist and TwistStamped commands, a tiny training run on each, and the trained policy
loaded by ``ltc_policy`` with the matching ``command_type``, which then publishes commands of
that type over real Cyclone DDS from the recorded camera frames."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rosbags.rosbag2 import Reader

from ltc_controller.cli import main
from ltc_controller.interfaces import typestore
from ltc_controller.models.policy_file import load_policy
from ltc_controller.nodes.commands import ACKERMANN, TWIST, TWIST_STAMPED
from ltc_controller.nodes.policy_node import PolicyNode
from ltc_controller.params import ParameterError
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("dds_loopback")]

#: (record --command-type, its message type, train --command-field, node parameters,
#:  output names and units the policy file must carry)
CASES = {
    "ackermann": (
        ACKERMANN,
        [],
        {},
        ("steering_angle",),
        ("rad",),
    ),
    "twist": (
        TWIST,
        [],
        {"twist_mapping": "direct", "speed_mps": 4.0},
        ("angular_z",),
        ("rad/s",),
    ),
    "twist_stamped": (
        TWIST_STAMPED,
        ["--command-field", "all"],
        {"twist_mapping": "direct"},
        ("linear_x", "linear_y", "linear_z", "angular_z"),
        ("m/s", "m/s", "m/s", "rad/s"),
    ),
}


def _frames(bag: Path) -> list[Any]:
    store = typestore()
    with Reader(bag) as r:
        conns = [c for c in r.connections if c.topic == "/camera/image_raw"]
        return [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in r.messages(conns)]


def _record_and_train(tmp: Path, kind: str) -> Path:
    msgtype, fields, _, names, units = CASES[kind]
    bag, policy = tmp / "bag", tmp / "policy.safetensors"
    rec = ["record", str(bag), "--episodes", "2", "--episode-s", "2", "--command-type", kind]
    assert main(rec) == 0
    with Reader(bag) as r:
        assert {c.topic: c.msgtype for c in r.connections}["/expert_cmd"] == msgtype
    train = ["train", "--bag", str(bag), *fields, "--epochs", "1", "--seq-len", "4"]
    train += ["--batch-size", "2", "--no-augment", "--quiet", "--device", "cpu", "-o", str(policy)]
    assert main(train) == 0
    cfg = load_policy(policy).config
    assert cfg.output_names == names and cfg.output_units == units
    assert len(cfg.output_scale) == len(names) and all(s > 0 for s in cfg.output_scale)
    return policy


@pytest.mark.parametrize("kind", list(CASES))
def test_a_policy_trained_on_each_command_type_drives_that_type(tmp_path, kind):
    msgtype, _, params, names, _ = CASES[kind]
    policy = _record_and_train(tmp_path, kind)
    frames = _frames(tmp_path / "bag")
    if kind == "twist":  # closed loop in the simulator too (yaw rate -> steering)
        ev = ["evaluate", "--policy", f"twist={policy}", "--conditions", "clean"]
        ev += ["--episodes", "1", "--distance", "5", "-o", str(tmp_path / "eval")]
        assert main(ev) == 0

    ns = "/t" + uuid.uuid4().hex[:8]
    dut = DdsNode(
        "ltc_policy",
        ns,
        parameters={"policy_file": str(policy), "command_type": msgtype, **params},
    )
    peer = DdsNode("peer", ns, parameter_services=False)
    try:
        node = PolicyNode(dut)
        assert tuple(node.engine.output_names) == names
        # What the node published, with the policy outputs of the same tick (a spy on the
        # real publisher: the outputs are stored just before the command goes out).
        sent: list[tuple[Any, dict[str, float]]] = []
        real = node.pub_cmd

        class Spy:
            def publish(self, msg: Any) -> None:
                sent.append((msg, dict(zip(names, node._last_outputs, strict=True))))
                real.publish(msg)

        node.pub_cmd = Spy()
        cmds: list[Any] = []
        peer.create_subscription(msgtype, "policy_cmd", cmds.append, RELIABLE)
        cam = peer.create_publisher("sensor_msgs/msg/Image", "camera/image_raw", SENSOR_DATA)
        # Replay the recorded frames, restamped on the wall clock (the node's frame-age check).
        end, k, next_frame = time.monotonic() + 30.0, 0, 0.0
        while time.monotonic() < end and len(cmds) < 5:
            dut.spin_once(0.002)
            peer.spin_once(0.0)
            if time.monotonic() >= next_frame:
                next_frame = time.monotonic() + 0.05
                f = frames[k % len(frames)]
                img = peer.msg(
                    "sensor_msgs/msg/Image",
                    height=f.height,
                    width=f.width,
                    encoding=f.encoding,
                    step=f.step,
                    data=bytes(f.data),
                )
                img.header.stamp.sec, img.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
                cam.publish(img)
                k += 1
        assert len(cmds) >= 5, f"{kind}: no {msgtype} commands from the trained policy"
        assert len(sent) >= len(cmds)
        for cmd, out in sent:
            assert all(math.isfinite(v) for v in out.values())
            if msgtype == ACKERMANN:
                steer = max(-0.5, min(0.5, out["steering_angle"]))
                assert cmd.drive.steering_angle == pytest.approx(steer, abs=1e-6)
                assert cmd.drive.speed == pytest.approx(5.0)
            else:
                tw = cmd if msgtype == TWIST else cmd.twist
                assert tw.angular.z == pytest.approx(out["angular_z"], rel=1e-5, abs=1e-7)
                assert tw.linear.x == pytest.approx(out.get("linear_x", 4.0), rel=1e-5, abs=1e-7)
                assert tw.linear.y == pytest.approx(out.get("linear_y", 0.0), rel=1e-5, abs=1e-7)
        # What arrived over DDS is what was sent.
        assert all(any(c == m for m, _ in sent) for c in cmds)
    finally:
        peer.shutdown()
        dut.shutdown()


def test_a_velocity_policy_under_a_steering_mapping_is_refused_naming_the_one_that_fits(
    tmp_path,
):
    policy = _record_and_train(tmp_path, "twist")
    dut = DdsNode(
        "ltc_policy",
        "/t" + uuid.uuid4().hex[:8],
        parameters={"policy_file": str(policy), "command_type": ACKERMANN},
    )
    try:
        with pytest.raises(ParameterError, match="fit command_type geometry_msgs/msg/Twist"):
            PolicyNode(dut)
    finally:
        dut.shutdown()
