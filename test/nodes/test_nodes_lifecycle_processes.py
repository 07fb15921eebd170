"""``ltc_policy`` as a managed node, driven from a peer the way ``ros2 lifecycle set`` or a
lifecycle manager drives it: real ``ltc_policy`` and ``safety_fallback`` processes over Cyclone
DDS on loopback, this test process calling the ``lifecycle_msgs`` services, playing the camera
and recording what the nodes send.

What is asserted comes from the nodes' own stamps and decisions: a command carries the stamp of
the camera frame it was computed from, so "no command from a frame taken after the node was
deactivated" holds however late DDS delivers; the safety node's FALLBACK is its own decision.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltc_controller.supervisor import Launcher
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.lifecycle_server import LIFECYCLE_SERVICES
from ltc_controller.transport.param_client import ParameterClient
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("dds_loopback")]

ROOT = Path(__file__).resolve().parents[2]
VEHICLE = str(ROOT / "config" / "vehicle.yaml")
NS = "/lc"
H, W = 78, 200
SAFETY_ARGS = ["--params-file", VEHICLE, "-p", "command_timeout_s:=0.25"]
SAFETY_ARGS += ["-p", "heartbeat_timeout_s:=0.5", "-p", "recovery_heartbeats:=3"]
# Noise frames: out of distribution for the bundled policy's monitor (it would hand over).
POLICY_ARGS = [
    "--params-file",
    VEHICLE,
    "-p",
    "autostart:=false",
    "-p",
    "ood.enabled:=false",
    "-p",
    "attention.enabled:=false",
]


class Peer:
    """This process: a camera at 20 Hz, recorders of what the nodes send, lifecycle calls."""

    def __init__(self) -> None:
        self.node = n = DdsNode("lifecycle_peer", parameter_services=False)
        self.cam = n.create_publisher(
            "sensor_msgs/msg/Image", f"{NS}/camera/image_raw", SENSOR_DATA
        )
        rng = np.random.default_rng(3)
        self.images = [rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes() for _ in range(4)]
        self.sent = 0
        self.next = 0.0
        #: frame stamps (ns) of the policy_cmd messages received
        self.cmd_stamps: list[int] = []
        self.safety: list[str] = []
        self.events: list[tuple[str, str]] = []
        n.create_subscription(
            "ackermann_msgs/msg/AckermannDriveStamped",
            f"{NS}/policy_cmd",
            lambda m: self.cmd_stamps.append(
                int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec)
            ),
            RELIABLE,
        )
        n.create_subscription(
            "ltc_controller/msg/SafetyStatus",
            f"{NS}/safety_status",
            lambda m: self.safety.append(str(m.state_name)),
            RELIABLE,
        )
        n.create_subscription(
            "lifecycle_msgs/msg/TransitionEvent",
            f"{NS}/ltc_policy/transition_event",
            lambda m: self.events.append((str(m.start_state.label), str(m.goal_state.label))),
            RELIABLE,
        )
        self.client = ParameterClient(
            f"{NS}/ltc_policy", node=n, timeout_s=0.02, services=LIFECYCLE_SERVICES
        )
        self.params = ParameterClient(f"{NS}/ltc_policy", node=n, timeout_s=0.02)

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.node.spin_once(0.002)
            now = time.monotonic()
            if now >= self.next:
                self.next = now + 0.05
                img = self.node.msg(
                    "sensor_msgs/msg/Image",
                    height=H,
                    width=W,
                    encoding="rgb8",
                    step=W * 3,
                    data=self.images[self.sent % 4],
                )
                img.header.stamp.sec, img.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
                self.cam.publish(img)
                self.sent += 1
            if until is not None and until():
                return True
        return False

    def wait_services(self) -> None:
        assert self.spin(60.0, self.client.wait_for_services), "no lifecycle services"
        assert self.spin(20.0, self.params.wait_for_services), "no parameter services"
        self.client.timeout_s = self.params.timeout_s = 20.0

    def state(self) -> str:
        return str(self.client.call("get_state").current_state.label)

    def change(self, label: str) -> bool:
        tr = self.node.msg("lifecycle_msgs/msg/Transition", id=0, label=label)
        return bool(self.client.call("change_state", transition=tr).success)

    def transitions(self) -> list[str]:
        reply = self.client.call("get_available_transitions")
        return [str(d.transition.label) for d in reply.available_transitions]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Launcher, Path]]:
    import os

    tmp = tmp_path_factory.mktemp("lifecycle")
    launcher = Launcher(dict(os.environ), tmp)
    launcher.start("safety_fallback", [*SAFETY_ARGS, "-r", f"__ns:={NS}"])
    launcher.start("ltc_policy", [*POLICY_ARGS, "-r", f"__ns:={NS}"])
    peer = Peer()
    try:
        yield peer, launcher, tmp
    finally:
        for p in launcher.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        launcher.stop(signalled=True)
        peer.node.shutdown()


def _no_cmd_from_frames_after(peer: Peer, t_ns: int) -> list[int]:
    return [s for s in peer.cmd_stamps if s > t_ns]


def test_lifecycle_cli_names_a_running_node_that_is_not_managed(stack: Any) -> None:
    """``ltc-controller lifecycle get`` on ``safety_fallback`` (running, not a managed node) says
    so instead of asking whether the node runs; on ``ltc_policy`` it prints the state."""
    import os
    import subprocess
    import sys

    peer, _, _ = stack

    def cli(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ltc_controller", "lifecycle", "get", target, "--timeout", "60"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )

    policy = cli(f"{NS}/ltc_policy")  # first: waits until the stack is up
    assert policy.returncode == 0, policy
    assert policy.stdout.split()[0] == "unconfigured", policy.stdout  # autostart:=false
    safety = cli(f"{NS}/safety_fallback")
    assert safety.returncode == 2, safety
    assert "is running but is not a managed (lifecycle) node" in safety.stderr


def test_policy_commands_only_while_active_and_the_safety_node_falls_back(stack: Any) -> None:
    peer, launcher, tmp = stack
    peer.wait_services()
    # autostart false: unconfigured, camera playing, nothing commanded.
    assert peer.state() == "unconfigured"
    assert peer.transitions() == ["configure", "shutdown"]
    peer.spin(1.5)
    assert peer.cmd_stamps == [] and "ACTIVE" not in peer.safety

    assert peer.change("configure") and peer.state() == "inactive"
    peer.spin(1.0)
    assert peer.cmd_stamps == [], "an inactive node commanded"
    assert not peer.change("deactivate")  # inactive has no such transition

    t_activate = time.time_ns()
    assert peer.change("activate") and peer.state() == "active"
    assert peer.spin(60.0, lambda: len(peer.cmd_stamps) >= 10 and peer.safety[-1:] == ["ACTIVE"])
    assert all(s > t_activate for s in peer.cmd_stamps), "a command from a frame before activate"

    assert peer.change("deactivate")
    t_off = time.time_ns()
    assert peer.spin(30.0, lambda: peer.safety[-1:] == ["FALLBACK"]), peer.safety[-5:]
    peer.spin(1.0)
    assert _no_cmd_from_frames_after(peer, t_off) == []  # frames after deactivate: no command
    n_before = len(peer.cmd_stamps)

    # Unconfigured again; a policy file that does not load fails configure and stays there.
    assert peer.change("cleanup") and peer.state() == "unconfigured"
    missing = str(tmp / "missing.safetensors")
    assert peer.params.set({"policy_file": missing}) == [""]
    assert not peer.change("configure") and peer.state() == "unconfigured"
    assert peer.params.set({"policy_file": ""}) == [""]
    assert peer.change("configure") and peer.change("activate")
    t_again = time.time_ns()
    assert peer.spin(60.0, lambda: len(_no_cmd_from_frames_after(peer, t_again)) >= 5)
    assert len(peer.cmd_stamps) > n_before

    assert peer.change("shutdown") and peer.state() == "finalized"
    assert peer.transitions() == []
    peer.spin(0.5)
    # Every state change was announced on ~/transition_event, in order.
    goals = [goal for _, goal in peer.events]
    assert goals[:4] == ["configuring", "inactive", "activating", "active"]
    assert goals[-2:] == ["shuttingdown", "finalized"]
    assert ("configuring", "unconfigured") in peer.events  # the failed configure
    # Both processes alive through it all, and the policy still exits cleanly.
    assert launcher.exited() == {}, f"logs in {tmp}"
    p = launcher.procs["ltc_policy"]
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 0
    log = (tmp / "ltc_policy.log").read_text()
    assert "Traceback" not in log
    assert "missing.safetensors" in log  # why configure failed, in either backend's words
