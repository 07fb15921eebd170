"""A latched e-stop survives a restart of ``safety_fallback`` (issue 12 §2), with real processes.

``safety_fallback`` runs as its own process over Cyclone DDS on loopback; the e-stop source is
another process (``ltc-controller estop assert --hold``); this test process plays a healthy
policy (command + heartbeat + OK status at 20 Hz) and watches ``safety_status``. Faults are real:
SIGKILL of the e-stop source and of the safety node. What is asserted is what the node decided
(its status stream, its log, its state file), never how fast this process was scheduled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.nodes.commands import ACKERMANN, build_command
from ltc_controller.supervisor import Launcher
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("dds_loopback")]

ROOT = Path(__file__).resolve().parents[2]
NS = "/latch"
RECOVERY_HEARTBEATS = 5


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_file = tmp / "estop_state.json"
        self.launcher = Launcher(dict(os.environ), tmp)
        self.node = DdsNode("latch_rig", parameter_services=False)
        self.status: list[Any] = []
        self.since = 0.0  # stamps before this (ROS time = system time here) are a killed node's
        self.node.create_subscription(
            "ltc_controller/msg/SafetyStatus", f"{NS}/safety_status", self._on_status
        )
        n = self.node
        self.cmd = n.create_publisher(ACKERMANN, f"{NS}/policy_cmd", RELIABLE)
        self.hb = n.create_publisher("std_msgs/msg/Header", f"{NS}/policy_heartbeat", RELIABLE)
        self.pst = n.create_publisher(
            "ltc_controller/msg/PolicyStatus", f"{NS}/policy_status", RELIABLE
        )
        self._next = 0.0
        self.starts = 0

    def start_safety(self) -> None:
        self.starts += 1
        args = [
            "--params-file",
            str(ROOT / "config" / "vehicle.yaml"),
            "-p",
            f"recovery_heartbeats:={RECOVERY_HEARTBEATS}",
            "-p",
            f"estop_state_file:={self.state_file}",
            "-r",
            f"__ns:={NS}",
        ]
        self.launcher.start("safety_fallback", args)

    def log(self) -> str:
        return (self.tmp / "safety_fallback.log").read_text(errors="replace")

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.node.spin_once(0.005)
            now = time.monotonic()
            if now >= self._next:  # the healthy policy, all along
                self._next = now + 0.05
                self.cmd.publish(
                    build_command(ACKERMANN, self.node.msg, (0.1, 2.0), time.time_ns())
                )
                self.hb.publish(self.node.msg("std_msgs/msg/Header"))
                self.pst.publish(self.node.msg("ltc_controller/msg/PolicyStatus", health=0))
            if until is not None and until():
                return True
        return False

    def state(self) -> str:
        return str(self.status[-1].state_name) if self.status else ""

    def estop_cli(self, *args: str, wait: bool = True) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-m", "ltc_controller", "estop", *args, "--namespace", NS],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait:  # keep playing the policy while the command runs
            self.spin(60.0, lambda: p.poll() is not None)
            p.wait(5)
        return p

    def latched_on_disk(self) -> bool:
        return bool(json.loads(self.state_file.read_text())["estop_latched"])

    def _on_status(self, m: Any) -> None:
        if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 >= self.since:
            self.status.append(m)

    def kill_safety(self) -> None:
        """Kill the node; its statuses still queued for this process are then ignored."""
        self.launcher.kill("safety_fallback")
        self.since = time.time()
        self.status.clear()

    def close(self) -> None:
        self.launcher.stop()
        self.node.shutdown()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("latch"))
    yield r
    r.close()


def test_latched_estop_survives_sigkill_restart_until_an_explicit_reset(rig):
    rig.start_safety()
    assert rig.spin(60.0, lambda: rig.state() == "ACTIVE"), rig.log()
    assert not rig.latched_on_disk()  # written at start: not latched

    # The e-stop source: its own process, asserting and holding.
    source = rig.estop_cli("assert", "--hold", wait=False)
    assert rig.spin(60.0, lambda: rig.state() == "ESTOP"), rig.log()
    assert rig.spin(5.0, lambda: rig.latched_on_disk())

    # The source dies (SIGKILL): the node notices (DDS lease) and says so, once, with the fix.
    source.kill()
    source.wait(10)
    assert rig.spin(60.0, lambda: "e-stop source gone" in rig.log()), rig.log()
    assert rig.log().count("e-stop source gone") == 1
    assert "ltc-controller estop release --namespace /latch" in rig.log()
    assert rig.state() == "ESTOP" and rig.status[-1].estop_asserted  # last value stands

    # Reset while the last value is "asserted": refused; release, and it stays latched.
    p = rig.estop_cli("reset")
    assert p.returncode == 1 and "REFUSED" in (p.stdout.read() if p.stdout else "")
    assert rig.estop_cli("release").returncode == 0
    rig.spin(1.0)
    assert rig.state() == "ESTOP" and not rig.status[-1].estop_asserted

    # The safety node dies (SIGKILL) and restarts: ESTOP from its first status on, never drives.
    rig.kill_safety()
    rig.start_safety()
    assert rig.spin(60.0, lambda: len(rig.status) >= 100), rig.log()  # 2 s of 50 Hz ticks
    states = {m.state_name for m in rig.status}
    assert states == {"ESTOP"}, states
    assert all(m.speed == 0.0 for m in rig.status)
    assert rig.status[-1].heartbeats_received > RECOVERY_HEARTBEATS  # the policy was healthy
    assert "starting in ESTOP" in rig.log()

    # The explicit reset clears it: FALLBACK, then ACTIVE after N healthy heartbeats.
    n = len(rig.status)
    p = rig.estop_cli("reset")
    assert p.returncode == 0, p.stdout.read() if p.stdout else ""
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    seq = [m.state_name for m in rig.status[n:]]
    assert seq.index("FALLBACK") < seq.index("ACTIVE")
    assert rig.spin(5.0, lambda: not rig.latched_on_disk())

    # Restarted again, not latched: STARTUP -> ACTIVE as usual.
    rig.kill_safety()
    rig.start_safety()
    assert rig.spin(60.0, lambda: rig.state() == "ACTIVE"), rig.log()
    assert "ESTOP" not in {m.state_name for m in rig.status}


def test_corrupt_state_file_starts_latched_and_says_why(rig):
    rig.kill_safety()
    rig.state_file.write_text('{"estop_latched": tru')  # a write cut short by hand
    rig.start_safety()
    assert rig.spin(60.0, lambda: len(rig.status) >= 50), rig.log()
    assert {m.state_name for m in rig.status} == {"ESTOP"}
    assert "e-stop state file unusable, starting LATCHED" in rig.log()
    assert rig.latched_on_disk()  # rewritten as a valid, latched file
    assert rig.estop_cli("reset").returncode == 0
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    rig.launcher.procs["safety_fallback"].send_signal(signal.SIGINT)
    assert rig.launcher.procs.pop("safety_fallback").wait(15) == 0
