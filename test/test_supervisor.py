"""The supervisor (``ltc_controller/supervisor.py``): node processes are started with their log,
a node that could not start is reported with its status and its cause, a stop is a SIGINT that
ends in a clean status, and no node outlives a supervisor that was killed. (The closed-loop
:class:`Stack` runs in test/commands/test_commands_demo.py; test/nodes/test_faults_processes.py
injects its faults through :class:`Launcher`.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltc_controller.supervisor import Launcher, log_tail

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("dds_loopback")]

#: What safety_fallback logs once it is built and about to spin.
READY = "safety_fallback: ackermann_msgs/msg/AckermannDriveStamped"


def _wait_for(predicate, timeout_s: float = 90.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_log_tail_quotes_the_last_lines_indented(tmp_path: Path) -> None:
    log = tmp_path / "n.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    assert log_tail(log, 2) == "    line 18\n    line 19"
    assert log_tail(tmp_path / "absent.log") == ""


def test_a_node_that_cannot_start_is_reported_with_status_2_and_its_cause(tmp_path: Path) -> None:
    launcher = Launcher(dict(os.environ), tmp_path)
    launcher.start("safety_fallback", ["-p", "rate_hz:=-1.0"])
    try:
        assert _wait_for(lambda: "safety_fallback" in launcher.exited())
        assert launcher.exited() == {"safety_fallback": 2}
    finally:
        codes = launcher.stop()
    assert codes == {"safety_fallback": 2}
    assert "rate_hz" in log_tail(tmp_path / "safety_fallback.log")


def test_stop_is_a_sigint_that_ends_with_a_clean_status(tmp_path: Path) -> None:
    launcher = Launcher(dict(os.environ), tmp_path)
    launcher.start("safety_fallback", [], key="safety_a")
    log = tmp_path / "safety_a.log"
    try:
        assert _wait_for(lambda: log.exists() and READY in log.read_text()), log_tail(log)
        assert launcher.exited() == {}
    finally:
        codes = launcher.stop(timeout_s=15.0)
    assert codes == {"safety_a": 0}
    assert "SIGINT received" in log.read_text()


SUPERVISOR = r"""
import os, sys, time
from pathlib import Path
from ltc_controller.supervisor import Launcher

launcher = Launcher(dict(os.environ), Path(sys.argv[1]))
launcher.start("safety_fallback", [])
print(launcher.procs["safety_fallback"].pid, flush=True)
time.sleep(600)
"""


def test_no_node_outlives_a_supervisor_that_was_killed(tmp_path: Path) -> None:
    sup = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child = 0
    log = tmp_path / "safety_fallback.log"
    try:
        assert sup.stdout is not None
        child = int(sup.stdout.readline())
        assert _wait_for(lambda: log.exists() and READY in log.read_text()), log_tail(log)
        sup.send_signal(signal.SIGKILL)
        sup.wait()
        assert _wait_for(lambda: not _alive(child), 20.0), "the node outlived its supervisor"
    finally:
        sup.kill()
        sup.wait()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
    assert "SIGTERM received" in log.read_text()


def test_stacks_that_pick_their_domain_never_share_one(tmp_path, monkeypatch):
    """Two stacks on one DDS domain see each other's frames and commands (a demo beside a soak
    reported 55,486 frames used of 415 published). A stack given no domain takes one that no
    other process holds; the lock goes with its holder. A given domain is taken as it is."""
    import tempfile

    from ltc_controller.supervisor import AUTO_DOMAINS, DomainInUse, claim_domain

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv("LTC_CONTROLLER_DOMAIN_HELD", raising=False)
    first, lock = claim_domain()
    assert first in AUTO_DOMAINS and lock is not None
    # A given domain: refused while another holder has it, shared when the caller says it
    # holds it for its children (the tests' fixture), locked when free.
    with pytest.raises(DomainInUse, match=f"DDS domain {first} is in use"):
        claim_domain(first)
    monkeypatch.setenv("LTC_CONTROLLER_DOMAIN_HELD", str(first))
    assert claim_domain(first) == (first, None)
    monkeypatch.delenv("LTC_CONTROLLER_DOMAIN_HELD")
    # Another process, preferring the held domain, gets the next free one.
    code = (
        "import sys; from ltc_controller.supervisor import claim_domain; "
        f"d, l = claim_domain(prefer={first}); print(d); sys.stdout.flush(); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        other = int(child.stdout.readline())
        assert other != first and other in AUTO_DOMAINS
        second, lock2 = claim_domain(prefer=first)
        assert second not in (first, other)
    finally:
        child.communicate("")
    lock.close()
    # Released by close and by the holder's exit: both come back, the given one locked.
    assert claim_domain(prefer=first)[0] == first
    dom, held = claim_domain(other)
    assert dom == other and held is not None


def test_a_stack_without_a_domain_gives_its_nodes_the_one_it_claimed(tmp_path, monkeypatch):
    from ltc_controller.supervisor import AUTO_DOMAINS, DomainInUse, Stack, claim_domain

    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    stack = Stack(tmp_path / "out")
    try:
        assert stack.domain_id in AUTO_DOMAINS
        assert stack.env["ROS_DOMAIN_ID"] == str(stack.domain_id)
        assert claim_domain(prefer=stack.domain_id)[0] != stack.domain_id  # held
    finally:
        stack.stop()
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    monkeypatch.delenv("LTC_CONTROLLER_DOMAIN_HELD", raising=False)
    first = Stack(tmp_path / "out2")
    assert first.env["ROS_DOMAIN_ID"] == "42"
    # A second stack on the same given domain is refused before it makes anything.
    with pytest.raises(DomainInUse):
        Stack(tmp_path / "out3")
    assert not (tmp_path / "out3").exists()
    first.stop()
