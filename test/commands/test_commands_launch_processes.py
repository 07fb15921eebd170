"""``ltc-controller launch config/*.yaml``: both nodes as processes, with namespace and remaps from
``--ros-args``, stopped cleanly by SIGINT; a bad parameter stops the launch naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("dds_loopback")]
ROOT = Path(__file__).resolve().parents[2]


def launch(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)  # the dds_loopback fixture set the domain and loopback
    with open(log, "wb") as out:
        # A session of its own: if the test fails, the whole group (launch and both nodes) can
        # be stopped, none is left behind.
        return subprocess.Popen(
            [sys.executable, "-m", "ltc_controller", "launch", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.mark.parametrize(
    "profile,cmd_type,out_topic",
    [
        ("vehicle.yaml", "ackermann_msgs/msg/AckermannDriveStamped", "drive"),
        ("drone.yaml", "geometry_msgs/msg/Twist", "setpoint_velocity"),
    ],
)
def test_launch_starts_both_nodes_under_a_namespace_with_remaps(
    profile, cmd_type, out_topic, tmp_path
):
    default_out = "ackermann_cmd" if "ackermann" in cmd_type else "cmd_vel"
    log = tmp_path / "launch.log"
    p = launch(
        [
            str(ROOT / "config" / profile),
            "--ros-args",
            "-r",
            "__ns:=/car1",
            "-r",
            f"{default_out}:={out_topic}",
        ],
        log,
    )
    node = DdsNode("launch_probe", parameter_services=False)
    seen: dict[str, Any] = {}
    node.create_subscription(
        "ltc_controller/msg/SafetyStatus",
        "/car1/safety_status",
        lambda m: seen.setdefault("safety", m),
        RELIABLE,
    )
    node.create_subscription(
        "ltc_controller/msg/PolicyStatus",
        "/car1/policy_status",
        lambda m: seen.setdefault("policy", m),
        RELIABLE,
    )
    node.create_subscription(cmd_type, f"/car1/{out_topic}", lambda m: seen.setdefault("out", m))
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and len(seen) < 3 and p.poll() is None:
            node.spin_once(0.05)
        assert set(seen) == {"safety", "policy", "out"}, (seen.keys(), log.read_text()[-3000:])
        assert seen["safety"].state_name == "STARTUP"  # no camera: only the safe output
        axes = list(seen["safety"].axes)
        assert axes == (
            ["steering_angle", "speed"]
            if "ackermann" in cmd_type
            else ["linear_x", "linear_y", "linear_z", "angular_z"]
        )
        os.killpg(p.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
        assert p.wait(60) == 0, log.read_text()[-3000:]
    finally:
        node.shutdown()
        stop_group(p)
    text = log.read_text()
    assert "exit statuses {'ltc_policy': 0, 'safety_fallback': 0}" in text


def test_launch_stops_with_status_2_when_a_node_cannot_start(tmp_path):
    log = tmp_path / "launch.log"
    p = launch(
        [str(ROOT / "config" / "vehicle.yaml"), "--ros-args", "-p", "safety_fallback:rate_hz:=0.0"],
        log,
    )
    assert p.wait(120) == 2
    text = log.read_text()
    assert "rate_hz" in text and "could not start" in text


def test_launch_gives_a_parameter_only_to_the_nodes_that_declare_it(tmp_path):
    from ltc_controller.commands.launch import _route

    nodes = ["safety_fallback", "ltc_policy"]
    routed, problem = _route(nodes, ["-p", "speed_mps:=3.0", "-r", "__ns:=/car1"])
    assert problem == ""
    assert routed["ltc_policy"] == ["-p", "speed_mps:=3.0", "-r", "__ns:=/car1"]
    assert routed["safety_fallback"] == ["-r", "__ns:=/car1"]
    routed, problem = _route(nodes, ["-p", "use_sim_time:=true", "-p", "ltc_policy:x:=1"])
    assert problem == "" and routed["safety_fallback"][:2] == ["-p", "use_sim_time:=true"]
    assert routed["ltc_policy"] == ["-p", "use_sim_time:=true", "-p", "ltc_policy:x:=1"]


def test_launch_refuses_a_parameter_no_node_declares(tmp_path):
    log = tmp_path / "launch.log"
    p = launch([str(ROOT / "config" / "vehicle.yaml"), "--ros-args", "-p", "max_sped:=1.0"], log)
    assert p.wait(60) == 2
    text = log.read_text()
    assert "'max_sped' is not declared by safety_fallback or ltc_policy" in text
    assert "started" not in text  # refused before any process ran


def test_launch_refuses_a_missing_parameter_file(tmp_path):
    log = tmp_path / "launch.log"
    p = launch([str(tmp_path / "nope.yaml")], log)
    assert p.wait(60) == 2
    assert "nope.yaml" in log.read_text()


def test_launch_names_a_node_its_parameter_file_leaves_on_defaults(tmp_path, capsys):
    from ltc_controller.commands.launch import _check

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert _check(empty, ["safety_fallback", "ltc_policy"], []) == ""
    err = capsys.readouterr().err
    assert "sets no parameter of safety_fallback" in err
    assert "sets no parameter of ltc_policy" in err
    only_safety = tmp_path / "safety.yaml"
    only_safety.write_text("safety_fallback:\n  ros__parameters:\n    rate_hz: 50.0\n")
    assert _check(only_safety, ["safety_fallback", "ltc_policy"], []) == ""
    err = capsys.readouterr().err
    assert "of ltc_policy" in err and "of safety_fallback" not in err
    _check(ROOT / "config" / "vehicle.yaml", ["safety_fallback", "ltc_policy"], [])
    assert "sets no parameter" not in capsys.readouterr().err
