"""Fault injection on real processes over Cyclone DDS on loopback (DESIGN.md §6, issue 5).

``safety_fallback`` and ``ltc_policy`` run as their own processes (the real CLI, or a fork of a
process that has imported torch once, see :class:`ForkServer`); this test process is a plain DDS
participant that plays the camera, the e-stop, the teleop and — for the safety-only tests — the
policy, and records what the nodes send. Faults are real: SIGKILL, SIGSTOP, a stalled inference
(``debug.step_delay_s`` sleeps inside the runtime's step), a 1 kHz camera flood, malformed frames,
NaN commands, bad parameters.

What is asserted is what the nodes decided and when, from their own stamps and counters, so a
test process (or a node) that the OS did not schedule for a while cannot fail a test whose node
behaved. The safety node stamps every ``SafetyStatus`` and every fallback output with the time of
its tick; its counters (``commands_received``, ``heartbeats_received``, ``teleop_received``,
``transitions``) go up in the tick right after the input arrived (callbacks and the timer share
one thread). So "no ACTIVE tick later than ``command_timeout_s`` after the last command" and "the
ramp follows ``limits.speed.decel`` to a stop" are checked on the node's clock, exactly; the only
slack left (``CLOCK_READ_S``) is the gap between the two clock reads of one safety tick (steady
time for the decision, ROS time for the stamp), which a preemption can stretch. Receive-side
latencies (kill -> FALLBACK status, e-stop publish -> ESTOP tick) depend on how the OS scheduled
both processes: they are printed as measurements (``pytest -s``), never asserted. This process's
subscriptions keep 1,000 samples, so a late ``spin`` takes them late instead of losing them, and
a lost status (possible on the writer side) is bridged by the counters.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltc_controller.models.policy import Policy
from ltc_controller.models.policy_file import save_policy
from ltc_controller.nodes.commands import ACKERMANN, TWIST, build_command
from ltc_controller.supervisor import Launcher
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import LATCHED, RELIABLE, SENSOR_DATA, QoS

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("dds_loopback")]

ROOT = Path(__file__).resolve().parents[2]
VEHICLE = str(ROOT / "config" / "vehicle.yaml")
DRONE = str(ROOT / "config" / "drone.yaml")
H, W = 78, 200

RATE_HZ = 50.0  # safety tick
PERIOD_S = 1.0 / RATE_HZ
COMMAND_TIMEOUT_S = 0.25
HEARTBEAT_TIMEOUT_S = 0.5
RECOVERY_HEARTBEATS = 5
POLICY_RATE_HZ = 20.0
DECEL = 4.0  # limits.speed.decel in config/vehicle.yaml
#: The gap between the two clock reads of one safety tick (decision on the steady clock, stamp
#: from ROS time): microseconds, unless the node is preempted between them.
CLOCK_READ_S = 0.05
#: This process's subscriptions: reliable, deep enough for seconds of a late spin.
DEEP = QoS("reliable", "volatile", 1000)
SAFETY_ARGS = [
    "--params-file",
    VEHICLE,
    "-p",
    f"rate_hz:={RATE_HZ}",
    "-p",
    f"command_timeout_s:={COMMAND_TIMEOUT_S}",
    "-p",
    f"heartbeat_timeout_s:={HEARTBEAT_TIMEOUT_S}",
    "-p",
    f"recovery_heartbeats:={RECOVERY_HEARTBEATS}",
]
# The Camera's noise frames are out of distribution for the bundled policy's monitor, which
# would hand over (policy_fault) from the start; these tests are about the other faults.
POLICY_ARGS = [
    "--params-file",
    VEHICLE,
    "-p",
    "speed_mps:=2.0",
    "-p",
    "ood.enabled:=false",
    "-p",
    "attention.enabled:=false",
]

FORKSERVER = r"""
import json, os, signal, sys, traceback
import torch  # noqa: F401 - the expensive import, paid once
import ltc_controller.nodes.policy_node  # noqa: F401
from ltc_controller.nodes.registry import run_node

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
print("ready", flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    log, argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            rc = run_node("ltc_policy", argv)
        except BaseException:
            traceback.print_exc()
            rc = 1
        sys.stderr.flush()
        os._exit(rc)
    print(pid, flush=True)
"""


class ForkServer:
    """Starts ``ltc_policy`` processes by forking a process that has imported torch and the
    package once, so each start skips the ~1.5 s interpreter + torch import. The children are
    ordinary ``ltc_policy`` processes (``registry.run_node``) with their own DDS participant."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKSERVER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.pids: list[int] = []

    def spawn(self, ros_args: list[str], log: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([str(log), ["--ros-args", *ros_args]]) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        self.pids.append(pid)
        return pid

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        for pid in self.pids:
            if self.alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


@dataclass
class Watch:
    """What this process sees in one namespace. Times are ``time.monotonic()`` at receipt."""

    status: list[tuple[float, Any]] = field(default_factory=list)
    out: list[tuple[float, Any]] = field(default_factory=list)
    policy_status: list[tuple[float, Any]] = field(default_factory=list)
    policy_cmds: list[float] = field(default_factory=list)
    hbs: list[float] = field(default_factory=list)
    land: list[float] = field(default_factory=list)

    def state(self) -> str:
        return str(self.status[-1][1].state_name) if self.status else ""

    def speed(self) -> float:
        m = self.out[-1][1]
        return float(m.drive.speed if hasattr(m, "drive") else m.linear.x)


class Rig:
    """The processes and this test's DDS participant, all on one domain on loopback."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = dict(os.environ)  # the dds_loopback fixture set the domain
        self.launcher = Launcher(self.env, tmp)
        self.forks = ForkServer(self.env)
        self.node = DdsNode("fault_rig", parameter_services=False)
        self.cameras: list[Camera] = []
        self.fakes: list[FakePolicy] = []

    # -- processes ---------------------------------------------------------------------------
    def start_safety(
        self, ns: str, extra: Sequence[str] = (), base: Sequence[str] = tuple(SAFETY_ARGS)
    ) -> str:
        key = f"safety_fallback{ns.replace('/', '_')}"
        self.launcher.start("safety_fallback", [*base, *extra, "-r", f"__ns:={ns}"], key=key)
        return key

    def start_policy(self, ns: str, extra: Sequence[str] = ()) -> int:
        log = self.tmp / f"ltc_policy{ns.replace('/', '_')}.log"
        return self.forks.spawn([*POLICY_ARGS, *extra, "-r", f"__ns:={ns}"], log)

    def check_alive(self, *kinds: str) -> None:
        dead = {k: rc for k, rc in self.launcher.exited().items() if k in kinds}
        assert not dead, f"processes died: {dead}; logs in {self.tmp}"

    def finish(self, *kinds: str) -> None:
        """End of a test: its safety processes must be alive; stop them (status 0 expected) and
        the inputs this process was playing, so the next test runs on a quiet machine."""
        self.check_alive(*kinds)
        for k in kinds:
            p = self.launcher.procs.pop(k)
            p.send_signal(signal.SIGINT)
            assert p.wait(15) == 0, f"{k} did not stop cleanly; see {self.tmp / (k + '.log')}"
        self.cameras.clear()
        self.fakes.clear()

    # -- this participant --------------------------------------------------------------------
    def watch(self, ns: str, cmd_type: str = ACKERMANN) -> Watch:
        w = Watch()
        n = self.node
        now = time.monotonic
        out_topic = "ackermann_cmd" if cmd_type == ACKERMANN else "cmd_vel"
        n.create_subscription(
            "ltc_controller/msg/SafetyStatus",
            f"{ns}/safety_status",
            lambda m: w.status.append((now(), m)),
            DEEP,
        )
        out = f"{ns}/{out_topic}"
        n.create_subscription(cmd_type, out, lambda m: w.out.append((now(), m)), DEEP)
        n.create_subscription(
            "ltc_controller/msg/PolicyStatus",
            f"{ns}/policy_status",
            lambda m: w.policy_status.append((now(), m)),
            DEEP,
        )
        n.create_subscription(
            "std_msgs/msg/Header", f"{ns}/policy_heartbeat", lambda m: w.hbs.append(now()), DEEP
        )
        n.create_subscription(
            cmd_type, f"{ns}/policy_cmd", lambda m: w.policy_cmds.append(now()), DEEP
        )
        n.create_subscription(
            "std_msgs/msg/Empty", f"{ns}/land", lambda m: w.land.append(now()), DEEP
        )
        return w

    def param_client(self, target: str) -> Any:
        """A ``ParameterClient`` for ``target`` whose services are found while the camera and
        the fake policies keep running (the client's own wait would pause them)."""
        from ltc_controller.transport.param_client import ParameterClient

        client = ParameterClient(target, node=self.node, timeout_s=0.02)
        assert self.spin(20.0, lambda: client.wait_for_services()), f"no services of {target}"
        client.timeout_s = 5.0
        return client

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.node.spin_once(0.001)
            now = time.monotonic()
            for c in self.cameras:
                c.pump(now)
            for f in self.fakes:
                f.pump(now)
            if until is not None and until():
                return True
        return False

    def close(self) -> dict[str, int]:
        for p in self.launcher.procs.values():  # all at once: each stops cleanly on its own
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        codes = self.launcher.stop(signalled=True)
        self.forks.close()
        self.node.shutdown()
        return codes


class Camera:
    """``sensor_msgs/Image`` 200x78 rgb8 at ``rate_hz`` on ``<ns>/camera/image_raw``; frames
    that are due are sent even when the loop was late (so 1 kHz means 1000 frames a second)."""

    def __init__(self, rig: Rig, ns: str, rate_hz: float = 20.0) -> None:
        self.node = rig.node
        self.pub = rig.node.create_publisher(
            "sensor_msgs/msg/Image", f"{ns}/camera/image_raw", SENSOR_DATA
        )
        rng = np.random.default_rng(1)
        self.images = [rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes() for _ in range(8)]
        self.rate_hz = rate_hz
        self.next = 0.0
        self.sent = 0
        self.on = True
        self.bad: Callable[[Any, int], None] | None = None  # mutates frames (see every)
        self.every = 2  # bad is applied to one frame in ``every``
        rig.cameras.append(self)

    def frame(self, k: int) -> Any:
        img = self.node.msg(
            "sensor_msgs/msg/Image",
            height=H,
            width=W,
            encoding="rgb8",
            step=W * 3,
            data=self.images[k % len(self.images)],
        )
        img.header.stamp.sec, img.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        return img

    def pump(self, now: float) -> None:
        if not self.on:
            return
        if self.next == 0.0 or now - self.next > 0.5:
            self.next = now
        while self.next <= now:
            img = self.frame(self.sent)
            if self.bad is not None and self.sent % self.every == self.every - 1:
                self.bad(img, self.sent // self.every)
            self.pub.publish(img)
            self.sent += 1
            self.next += 1.0 / self.rate_hz


class FakePolicy:
    """Plays ltc_policy for safety-only tests: command + heartbeat + OK status at 20 Hz."""

    def __init__(self, rig: Rig, ns: str, cmd_type: str = ACKERMANN) -> None:
        n = self.node = rig.node
        self.type = cmd_type
        self.cmd = n.create_publisher(cmd_type, f"{ns}/policy_cmd", RELIABLE)
        self.hb = n.create_publisher("std_msgs/msg/Header", f"{ns}/policy_heartbeat", RELIABLE)
        self.status = n.create_publisher(
            "ltc_controller/msg/PolicyStatus", f"{ns}/policy_status", RELIABLE
        )
        self.values: tuple[float, ...] | None = None
        self.heartbeat = True
        self.next = 0.0
        rig.fakes.append(self)

    def pump(self, now: float) -> None:
        if self.values is None or now < self.next:
            return
        self.next = now + 1.0 / POLICY_RATE_HZ
        self.cmd.publish(build_command(self.type, self.node.msg, self.values, time.time_ns()))
        self.status.publish(self.node.msg("ltc_controller/msg/PolicyStatus", health=0))
        if self.heartbeat:
            self.hb.publish(self.node.msg("std_msgs/msg/Header"))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, dds_loopback: int) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("faults"))
    yield r
    r.close()


def stamp_s(msg: Any) -> float:
    return int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9


def max_gap(stamps: Sequence[float]) -> float:
    """The longest interval between consecutive stamps (s); 0 for fewer than two."""
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


def during_cmds(w: Watch, since: int) -> list[Any]:
    """The policy's status messages from ``since`` on whose tick sent a command."""
    ms = [m for _, m in w.policy_status[max(since - 1, 0) :]]
    return [b for a, b in itertools.pairwise(ms) if b.commands_sent > a.commands_sent]


def commands_sent_and_received(w: Watch) -> tuple[int, int]:
    """The policy's ``commands_sent`` and the safety node's ``commands_received``, both counted
    since the nodes started, at the latest safety status and the last policy status at least
    0.5 s older than it (on the nodes' stamps), so that every command counted was due."""
    s = w.status[-1][1]
    t = stamp_s(s) - 0.5
    p = next(m for _, m in reversed(w.policy_status) if stamp_s(m) <= t)
    return int(p.commands_sent), int(s.commands_received)


def fell_back_on(w: Watch, since: int, fault: str) -> bool:
    """Whether a status from ``since`` on is FALLBACK with ``fault`` present."""
    return any(m.state_name == "FALLBACK" and fault in m.faults for _, m in w.status[since:])


def first_status(w: Watch, since: int, pred: Callable[[Any], bool]) -> tuple[float, Any] | None:
    return next(((t, m) for t, m in w.status[since:] if pred(m)), None)


def last_input_tick(statuses: Sequence[Any], counter: str) -> Any:
    """The ``SafetyStatus`` of the tick after the last input counted by ``counter`` (e.g.
    ``commands_received``) arrived: that input reached the node before this tick's stamp.
    A status lost on the way only moves it later (a looser bound, never a false failure)."""
    last = statuses[0]
    for prev, m in zip(statuses, statuses[1:], strict=False):
        if getattr(m, counter) > getattr(prev, counter):
            last = m
    return last


def no_state_after_timeout(
    statuses: Sequence[Any], counter: str, state: str, timeout_s: float
) -> tuple[Any, float]:
    """Assert, on the safety node's clock, that no tick stayed in ``state`` once ``timeout_s``
    had passed since the last input counted by ``counter``; returns that input's tick and the
    time from it to the first tick that left ``state``."""
    k = last_input_tick(statuses, counter)
    t_k = stamp_s(k)
    late = [
        stamp_s(m) - t_k
        for m in statuses
        if m.state_name == state and stamp_s(m) - t_k >= timeout_s + CLOCK_READ_S
    ]
    assert not late, f"{state} ticks {late} s after the last {counter} (timeout {timeout_s} s)"
    left = next(m for m in statuses if stamp_s(m) > t_k and m.state_name != state)
    return k, stamp_s(left) - t_k


def check_ramp(status_fb: Any, outs: Sequence[Any]) -> tuple[float, float]:
    """Assert that the fallback outputs in ``outs`` (those stamped after ``status_fb``, the
    first FALLBACK tick) ramp the speed to 0 at ``DECEL`` on the safety node's clock: at each
    tick the speed is where the ramp from ``status_fb`` says, and it is 0 from the first tick at
    or after the ideal stop time. Returns (time to 0, longest gap between two outputs), both
    from the node's stamps."""
    t_fb, v_fb = stamp_s(status_fb), float(status_fb.command[1])
    t_ideal = v_fb / DECEL
    prev = t_fb
    gap = 0.0
    n = 0
    for m in outs:
        t, v = stamp_s(m), float(m.drive.speed)
        if t <= t_fb:
            continue
        n += 1
        gap, prev = max(gap, t - prev), t
        ideal = max(0.0, v_fb - DECEL * (t - t_fb))
        assert abs(v - ideal) <= DECEL * CLOCK_READ_S + 1e-6, (
            f"speed {v} m/s at {t - t_fb:.3f} s after FALLBACK; the ramp says {ideal:.3f}"
        )
        assert v == 0.0 or t - t_fb < t_ideal + CLOCK_READ_S, (
            f"still {v} m/s at {t - t_fb:.3f} s; the ramp ends at {t_ideal:.3f} s"
        )
        if v == 0.0:
            return t - t_fb, gap
    raise AssertionError(f"no stop in {n} fallback outputs")


def report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n[fault injection] {title}")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")


# ------------------------------------------------------------------------------------------------
# Policy loss: SIGKILL and SIGSTOP, 20 trials


TRIALS = 20


def test_fallback_within_timeout_after_policy_sigkill_or_sigstop_worst_of_20(rig):
    ns = "/loss"
    w = rig.watch(ns)
    safety = rig.start_safety(ns)
    Camera(rig, ns)
    latencies: dict[str, list[float]] = {"SIGKILL": [], "SIGSTOP": []}
    after_cmd: list[float] = []
    to_stop: list[float] = []
    gaps: list[float] = []
    recoveries: list[int] = []
    starts: list[float] = []
    lost_transition_status = 0
    early: list[str] = []
    rng = random.Random(5)
    for trial in range(TRIALS):
        t_start = time.monotonic()
        pid = rig.start_policy(ns)
        n0 = len(w.status)
        assert rig.spin(60.0, lambda: w.state() == "ACTIVE"), why_not_active(rig, w, pid, ns)
        starts.append(time.monotonic() - t_start)
        went_active = first_status(w, n0, lambda m: m.state_name == "ACTIVE")
        assert went_active is not None
        if trial:  # FALLBACK -> ACTIVE: recovery counted N healthy heartbeats first
            act = went_active[1]
            recoveries.append(int(act.heartbeats_since_fault))
            assert act.heartbeats_since_fault >= RECOVERY_HEARTBEATS
            before = [
                m for _, m in w.status if m.state_name == "FALLBACK" and stamp_s(m) < stamp_s(act)
            ]
            if (
                act.transitions == before[-1].transitions + 1
                and "FALLBACK->ACTIVE" not in act.events
            ):
                # That tick's status was lost on the way (the writer keeps 10): the counter
                # shows one transition, from FALLBACK, and nothing else in between.
                lost_transition_status += 1
            else:
                assert "FALLBACK->ACTIVE" in act.events, act.events
        rig.spin(0.3 + rng.random() * 0.3)  # mid-drive, at a random phase of both ticks
        while w.state() != "ACTIVE" or w.speed() <= 0.0:
            # A loaded machine made the fresh policy miss its heartbeats: the safety node doing
            # its job (counted, printed). The fault under test is injected while ACTIVE.
            early.append(str(w.status[-1][1].active_fault))
            assert rig.spin(30.0, lambda: w.state() == "ACTIVE"), f"trial {trial}: not ACTIVE"
            rig.spin(0.3)
        sig = "SIGKILL" if trial % 2 == 0 else "SIGSTOP"
        n1, n_out = len(w.status) - 1, len(w.out)
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL if sig == "SIGKILL" else signal.SIGSTOP)
        assert rig.spin(5.0, lambda: w.state() == "FALLBACK"), f"trial {trial}: no fallback"
        t_fb, fb = first_status(w, n1, lambda m: m.state_name == "FALLBACK")
        if stamp_s(fb) < t_kill:  # decided before the kill (load; not yet seen here): counted
            early.append(str(fb.active_fault))
        else:
            assert fb.active_fault in ("command_timeout", "command_stale"), fb.active_fault
        # The bound, on the safety node's clock: no ACTIVE tick command_timeout_s after the last
        # command it received. (kill -> FALLBACK tick also counts how late the OS ran the node.)
        _, decided = no_state_after_timeout(
            [m for _, m in w.status[n1:]], "commands_received", "ACTIVE", COMMAND_TIMEOUT_S
        )
        after_cmd.append(decided)
        latencies[sig].append(stamp_s(fb) - t_kill)
        # The ramp to a stop (at limits.speed.decel) keeps coming while the policy is gone.
        assert rig.spin(3.0, lambda: w.speed() == 0.0)
        rig.spin(0.2)
        t_stop, gap = check_ramp(fb, [m for _, m in w.out[n_out:]])
        to_stop.append(t_stop)
        gaps.append(gap)
        # Timer-driven: outputs keep coming with nobody commanding (counted on its stamps).
        stamps = [stamp_s(m) for _, m in w.out[n_out:] if stamp_s(m) >= stamp_s(fb)]
        assert len(stamps) >= 0.5 * RATE_HZ * (stamps[-1] - stamps[0]), len(stamps)
        if sig == "SIGSTOP":
            os.kill(pid, signal.SIGKILL)  # a frozen policy does not come back by itself
        rig.check_alive(safety)
    allv = latencies["SIGKILL"] + latencies["SIGSTOP"]
    report(
        f"policy loss mid-drive, {TRIALS} trials (command_timeout_s "
        f"{COMMAND_TIMEOUT_S * 1e3:.0f} ms, safety period {PERIOD_S * 1e3:.0f} ms)",
        [
            (
                "last command -> FALLBACK tick (node clock)",
                f"max {max(after_cmd) * 1e3:.1f} ms, median "
                f"{statistics.median(after_cmd) * 1e3:.1f} ms",
            ),
            ("kill -> FALLBACK tick (measured, scheduling included)", ""),
            ("  worst / median", f"{max(allv) * 1e3:.1f} / {statistics.median(allv) * 1e3:.1f} ms"),
            ("  SIGKILL worst / best", _wb(latencies["SIGKILL"])),
            ("  SIGSTOP worst / best", _wb(latencies["SIGSTOP"])),
            (
                "FALLBACK -> speed 0 (ramp at 4 m/s^2, node clock)",
                f"max {max(to_stop) * 1e3:.0f} ms; longest gap between outputs "
                f"{max(gaps) * 1e3:.0f} ms",
            ),
            ("FALLBACK->ACTIVE statuses lost on the way", f"{lost_transition_status}"),
            ("fallbacks before the kill (load)", f"{len(early)} {sorted(set(early))}"),
            (
                "heartbeats counted at recovery",
                f"min {min(recoveries)} (N = {RECOVERY_HEARTBEATS})",
            ),
            ("policy (re)start -> ACTIVE", f"median {statistics.median(starts):.2f} s"),
        ],
    )
    rig.finish(safety)


def why_not_active(rig: Rig, w: Watch, pid: int, ns: str) -> str:
    """What the safety node and the policy last said, for a start that never went ACTIVE."""
    st = w.status[-1][1] if w.status else None
    ps = w.policy_status[-1][1] if w.policy_status else None
    log = rig.tmp / f"ltc_policy{ns.replace('/', '_')}.log"
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    return (
        f"never ACTIVE; policy {pid} alive: {ForkServer.alive(pid)}; safety: "
        + (
            f"{st.state_name}, faults {list(st.faults)}, heartbeats since fault "
            f"{st.heartbeats_since_fault}, received {st.heartbeats_received}"
            if st is not None
            else "no status"
        )
        + "; policy: "
        + (
            f"health {ps.health} {list(ps.reasons)}, ticks {ps.ticks}, frames used "
            f"{ps.frames_used}, heartbeats {ps.heartbeats}, misses {ps.deadline_misses}"
            if ps is not None
            else "no status"
        )
        + "\n"
        + "\n".join(tail)
    )


def _wb(values: list[float]) -> str:
    return f"{max(values) * 1e3:.1f} / {min(values) * 1e3:.1f} ms ({len(values)} trials)"


# ------------------------------------------------------------------------------------------------
# Policy alive, inference stalled


def test_stalled_inference_stops_the_heartbeat_and_fallback_follows(rig):
    ns = "/stall"
    w = rig.watch(ns)
    safety = rig.start_safety(ns)
    Camera(rig, ns)
    pid = rig.start_policy(ns)
    assert rig.spin(60.0, lambda: w.state() == "ACTIVE")
    rig.spin(0.5)
    # Stall it now: every integration step sleeps 0.1 s, four times the 25 ms deadline (a
    # parameter set over the ROS 2 parameter services, as `ros2 param set` would do it).
    client = rig.param_client(f"{ns}/ltc_policy")
    assert rig.spin(30.0, lambda: w.state() == "ACTIVE")
    n = len(w.status)
    assert client.set_atomically({"debug.step_delay_s": 0.1}) == ""
    # The stall's fallback is the one that lasts (no heartbeat, no recovery). One before it is
    # possible on a loaded machine: the set call above blocks this process, and with it the
    # camera, for as long as the service takes to answer.
    for _ in range(3):
        assert rig.spin(5.0, lambda: w.state() == "FALLBACK")
        rig.spin(1.0)
        if w.state() == "FALLBACK":
            break
    seq = [m for _, m in w.status[n - 1 :]]
    k = max(
        i for i in range(1, len(seq)) if seq[i].state_name == "FALLBACK" != seq[i - 1].state_name
    )
    fb = seq[k]
    t_fb = next(t for t, m in w.status if m is fb)
    last_hb = max(t for t in w.hbs if t <= t_fb)
    cmds_before = sum(1 for t in w.policy_cmds if last_hb < t <= t_fb)
    cmds_after = sum(1 for t in w.policy_cmds if t_fb < t <= t_fb + 1.0)
    assert ForkServer.alive(pid)
    # The policy kept publishing commands, but no heartbeat (its own counter, in the statuses of
    # its ticks after the fallback): its inference missed deadlines.
    sent = {int(m.heartbeats) for _, m in w.policy_status if stamp_s(m) > stamp_s(fb)}
    assert cmds_after >= 5 and len(sent) == 1, (cmds_after, sent)
    # Named by the heartbeat loss or the policy's own FAULT as a rule. A tick that runs a
    # stalled step also publishes its command late (the stall is on the tick's thread), so on a
    # loaded machine that gap can reach command_timeout_s first: also a correct fallback, and
    # the claim holds either way (commands kept coming, heartbeats did not).
    assert fb.active_fault in ("heartbeat_timeout", "policy_fault", "command_timeout")
    # On the safety node's clock: no ACTIVE tick heartbeat_timeout_s after the last heartbeat.
    _, hb_to_fb = no_state_after_timeout(seq, "heartbeats_received", "ACTIVE", HEARTBEAT_TIMEOUT_S)
    reasons = set(w.policy_status[-1][1].reasons)
    assert reasons & {"overruns", "deadline_miss", "lag", "lagging"}
    report(
        "stalled inference (step sleeps 0.1 s; the node keeps running)",
        [
            ("last heartbeat -> FALLBACK tick (node clock)", f"{hb_to_fb * 1e3:.0f} ms"),
            ("last heartbeat -> FALLBACK received here", f"{(t_fb - last_hb) * 1e3:.0f} ms"),
            ("fault named", fb.active_fault),
            (
                "policy commands with no heartbeat",
                f"{cmds_before} until FALLBACK, {cmds_after} in the next second",
            ),
            ("policy status reasons", ", ".join(sorted(reasons))),
        ],
    )
    os.kill(pid, signal.SIGKILL)
    rig.finish(safety)


# ------------------------------------------------------------------------------------------------
# Safety node on its own: startup, e-stop, teleop, bad commands, runtime sets


def test_startup_without_inputs_sends_only_safe_output(rig):
    wv, wd = rig.watch("/boot_car"), rig.watch("/boot_uav", TWIST)
    car = rig.start_safety("/boot_car")
    uav = rig.start_safety("/boot_uav", base=["--params-file", DRONE])
    assert rig.spin(30.0, lambda: len(wv.out) > 5 and len(wd.out) > 5)
    rig.spin(1.5)
    rates: list[float] = []
    for w, zero in (
        (wv, lambda m: (m.drive.steering_angle, m.drive.speed) == (0.0, 0.0)),
        (wd, lambda m: (m.linear.x, m.linear.y, m.linear.z, m.angular.z) == (0,) * 4),
    ):
        assert all(zero(m) for _, m in w.out)
        assert {m.state_name for _, m in w.status} == {"STARTUP"}
        assert set(w.status[-1][1].faults) >= {"command_timeout", "heartbeat_timeout"}
        # Timer-driven: it talks with nobody to listen to. Its tick rate on its own clock (a
        # status per tick); a Twist output has no stamp.
        t = [stamp_s(m) for _, m in w.status]
        rates.append((len(t) - 1) / (t[-1] - t[0]))
        assert rates[-1] >= 0.8 * RATE_HZ
    assert not wd.land  # a drone on the ground is not told to land at start-up
    report(
        "start-up with no inputs (vehicle and drone profiles)",
        [
            ("outputs, all zero", f"vehicle {len(wv.out)}, drone {len(wd.out)}"),
            ("tick rate (node clock)", f"vehicle {rates[0]:.1f} Hz, drone {rates[1]:.1f} Hz"),
        ],
    )
    rig.finish(car, uav)


@dataclass
class Driven:
    w: Watch
    fake: FakePolicy
    kind: str
    estop: Any
    reset: Any
    teleop: Any


def drive_fake(rig: Rig, ns: str, values=(0.1, 2.0)) -> Driven:
    """A safety process driven ACTIVE by a fake policy; the e-stop and teleop publishers of
    ``ns`` exist from the start, so they are matched before they are used."""
    w = rig.watch(ns)
    estop = rig.node.create_publisher("std_msgs/msg/Bool", f"{ns}/estop", LATCHED)
    reset = rig.node.create_publisher("std_msgs/msg/Bool", f"{ns}/estop_reset", RELIABLE)
    teleop = rig.node.create_publisher(ACKERMANN, f"{ns}/teleop_cmd", RELIABLE)
    kind = rig.start_safety(ns)
    fake = FakePolicy(rig, ns)
    fake.values = values
    assert rig.spin(30.0, lambda: w.state() == "ACTIVE")
    assert rig.spin(3.0, lambda: w.speed() == values[1])
    return Driven(w, fake, kind, estop, reset, teleop)


def test_estop_is_safe_within_one_period_latched_and_clear_refused_while_asserted(rig):
    d = drive_fake(rig, "/estop")
    w, fake, kind, estop, reset = d.w, d.fake, d.kind, d.estop, d.reset
    n = len(w.status)
    t0 = time.time()
    estop.publish(rig.node.msg("std_msgs/msg/Bool", data=True))
    assert rig.spin(2.0, lambda: w.state() == "ESTOP")
    _, first = first_status(w, n, lambda m: m.state_name == "ESTOP")
    latency = stamp_s(first) - t0  # publish -> the tick that acted: a measurement (DDS, OS)
    # Within one period of its arrival: no tick ever saw the e-stop without acting on it.
    assert not [m for _, m in w.status[n:] if m.estop_asserted and m.state_name != "ESTOP"]
    assert first.command[1] < 2.0  # braking on that very tick
    assert rig.spin(2.0, lambda: w.speed() == 0.0)
    # Clear while asserted: refused, said in the status, still latched.
    n = len(w.status)
    reset.publish(rig.node.msg("std_msgs/msg/Bool", data=True))
    assert rig.spin(2.0, lambda: any("estop_reset_refused" in m.events for _, m in w.status[n:]))
    assert w.state() == "ESTOP" and w.status[-1][1].resets_refused == 1
    # Released but not cleared: still latched; the policy is healthy all along.
    estop.publish(rig.node.msg("std_msgs/msg/Bool", data=False))
    rig.spin(0.5)
    assert w.state() == "ESTOP" and w.speed() == 0.0
    n = len(w.status)
    reset.publish(rig.node.msg("std_msgs/msg/Bool", data=True))
    assert rig.spin(3.0, lambda: w.state() == "ACTIVE")
    seq = [m.state_name for _, m in w.status[n:]]
    assert seq.index("FALLBACK") < seq.index("ACTIVE")  # recovery after N heartbeats
    report(
        "e-stop",
        [
            ("e-stop published -> ESTOP tick", f"{latency * 1e3:.1f} ms (DDS delivery included)"),
            ("ticks with the e-stop received but not acted on", "0"),
        ],
    )
    fake.values = None
    rig.finish(kind)


def test_teleop_overrides_the_policy_and_its_release_falls_back(rig):
    d = drive_fake(rig, "/teleop")
    w, fake, kind, teleop = d.w, d.fake, d.kind, d.teleop
    n = len(w.status)
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        teleop.publish(build_command(ACKERMANN, rig.node.msg, (-0.2, 0.5), time.time_ns()))
        rig.spin(0.05)
    # What the node decided in its TELEOP ticks (a test process that was not scheduled for
    # teleop_timeout_s may have let it fall back in between; it re-enters on the next command).
    tele = [m for _, m in w.status[n:] if m.state_name == "TELEOP"]
    assert tele and all(m.teleop_active for m in tele)
    assert any(tuple(m.command) == pytest.approx((-0.2, 0.5)) for m in tele)
    t_last = time.monotonic()
    assert rig.spin(2.0, lambda: w.state() == "FALLBACK")
    t_fb, fb = first_status(w, n, lambda m: m.state_name == "FALLBACK")
    assert fb.active_fault == "teleop_released"
    # On the node's clock: no TELEOP tick teleop_timeout_s (0.25 s) after the last teleop command.
    _, released = no_state_after_timeout(
        [m for _, m in w.status[max(n - 1, 0) :]], "teleop_received", "TELEOP", 0.25
    )
    report(
        "teleop release",
        [
            ("last teleop command -> FALLBACK tick (node clock)", f"{released * 1e3:.0f} ms"),
            ("last teleop sent -> FALLBACK received here", f"{(t_fb - t_last) * 1e3:.0f} ms"),
        ],
    )
    assert rig.spin(3.0, lambda: w.state() == "ACTIVE")  # the policy was healthy throughout
    fake.values = None
    rig.finish(kind)


def test_nan_and_out_of_range_commands_are_counted_rejected_and_the_node_lives(rig):
    d = drive_fake(rig, "/badcmd")
    w, fake, kind = d.w, d.fake, d.kind
    for bad, fault in (
        ((math.nan, 2.0), "command_non_finite"),
        ((0.1, 80.0), "command_out_of_range"),
        ((0.1, math.inf), "command_non_finite"),
    ):
        n = len(w.status)
        fake.values = bad
        # FALLBACK with this fault present. Not necessarily the first cause: this process plays
        # the policy, and a loaded CPU that delays it adds a command_timeout of its own.
        assert rig.spin(3.0, lambda f=fault, n=n: fell_back_on(w, n, f)), fault
        rig.spin(0.3)
        fake.values = (0.1, 2.0)
        assert rig.spin(3.0, lambda: w.state() == "ACTIVE")
    s = w.status[-1][1]
    assert s.commands_rejected >= 15
    counts = dict(zip(s.fault_names, s.fault_counts, strict=True))
    assert counts["command_non_finite"] == 2 and counts["command_out_of_range"] == 1
    assert all(math.isfinite(m.drive.speed) and m.drive.speed <= 8.0 for _, m in w.out)
    fake.values = None
    rig.finish(kind)


def test_rejected_runtime_set_over_parameter_services_never_stops_the_node(rig, tmp_path):
    ns = "/params"
    w = rig.watch(ns)
    kind = rig.start_safety(ns)
    Camera(rig, ns)
    pid = rig.start_policy(ns)
    assert rig.spin(60.0, lambda: w.state() == "ACTIVE")
    safety = rig.param_client(f"{ns}/safety_fallback")
    policy = rig.param_client(f"{ns}/ltc_policy")
    before = safety.get(["limits.speed.max"])
    assert safety.set_atomically({"limits.speed.max": -1.0})  # refused, in the backend's words
    assert safety.get(["limits.speed.max"]) == before
    assert "read-only" in safety.set_atomically({"rate_hz": 10.0})
    # 1.9 m/s: the policy's 2 m/s is within the 10 % tolerance, so it is clamped, not a fault.
    assert safety.set_atomically({"limits.speed.max": 1.9}) == ""
    assert safety.get(["limits.speed.max"]) == [1.9]
    n = len(w.status)
    assert rig.spin(3.0, lambda: w.speed() == pytest.approx(1.9))
    assert any("speed.value" in m.active_limiters for _, m in w.status[n:])
    # A policy file that does not load: rejected with the loader's message; a good one swaps in.
    assert "nope.safetensors" in policy.set_atomically(
        {"policy_file": str(tmp_path / "nope.safetensors")}
    )
    good = save_policy(Policy.from_config(seed=9), tmp_path / "seed9.safetensors")
    assert policy.set_atomically({"policy_file": str(good)}) == ""
    assert rig.spin(5.0, lambda: w.policy_status[-1][1].policy_reloads == 1)
    hb = len(w.hbs)
    assert rig.spin(5.0, lambda: len(w.hbs) >= hb + 5)
    # The reload did not break the heartbeat contract: ACTIVE on the new policy's heartbeats.
    assert rig.spin(5.0, lambda: w.state() == "ACTIVE")
    assert ForkServer.alive(pid)
    os.kill(pid, signal.SIGKILL)
    rig.finish(kind)


# ------------------------------------------------------------------------------------------------
# Camera abuse


def test_camera_flood_at_1khz_keeps_the_control_rate(rig):
    ns = "/flood"
    w = rig.watch(ns)
    kind = rig.start_safety(ns)
    cam = Camera(rig, ns)
    pid = rig.start_policy(ns)
    assert rig.spin(60.0, lambda: w.state() == "ACTIVE")
    rig.spin(1.0)
    p0 = w.policy_status[-1][1]
    n_fb = sum(1 for _, m in w.status if m.state_name == "FALLBACK")
    n_ps, n_st = len(w.policy_status), len(w.status)
    cam.rate_hz, sent0, t0 = 1000.0, cam.sent, time.monotonic()
    rig.spin(3.0)
    dt = time.monotonic() - t0
    cam.rate_hz = 20.0
    p1 = w.policy_status[-1][1]
    during = [m for _, m in w.policy_status[n_ps:]]
    misses = p1.deadline_misses - p0.deadline_misses
    worst_tick = max(m.tick_duration_s for m in during)
    causes = sorted({m.active_fault for _, m in w.status[n_st:] if m.state_name == "FALLBACK"})
    faults = sorted({r for m in during if m.health == 2 for r in m.reasons})
    # Rates on the policy's clock (its status stamps), so a late spin here changes nothing.
    dt_node = stamp_s(p1) - stamp_s(p0)
    tick_rate = (p1.ticks - p0.ticks) / dt_node
    hb_rate = (p1.heartbeats - p0.heartbeats) / dt_node
    recv_rate = (p1.frames_received - p0.frames_received) / dt_node
    cam_rate = (cam.sent - sent0) / dt  # what this (Python) publisher managed; aimed at 1000
    # The premise: a flood, more frames per tick than the policy can take, so it must drop
    # them. How many this process can publish depends on how much CPU it gets (at nice 19 beside
    # two hogs and two other test runs: 68 frames/s reached the node), so the bar is 2 per tick.
    assert recv_rate >= 2 * POLICY_RATE_HZ, (
        f"not a flood: {recv_rate:.0f} frames/s received, {cam_rate:.0f}/s published"
    )
    assert tick_rate >= 0.8 * POLICY_RATE_HZ
    # Heartbeats need ticks that met their deadline on a fresh frame: with this process's flood
    # and other work sharing both cores, about half of them did (10 Hz measured with both cores
    # hogged); the bar is that the flood does not stop them.
    assert hb_rate >= 0.25 * POLICY_RATE_HZ
    # The flood must not starve the tick or the transport: no command or heartbeat loss. A
    # fallback is allowed only when the policy itself declared a FAULT (the safety model doing its
    # job on a CPU this test saturates: its 1 kHz publisher shares the 2 cores); the message names
    # the policy's reasons.
    fell_back = sum(1 for _, m in w.status if m.state_name == "FALLBACK") > n_fb
    # The longest stretch without a command on the policy's own clock, and without a tick on
    # the safety node's: a process the saturated CPU did not run for a while shows here.
    cmd_gap = max_gap([stamp_s(m) for m in during_cmds(w, n_ps)])
    safety_gap = max_gap([stamp_s(m) for _, m in w.status[n_st:]])
    # The flood must not starve the policy's commands: it kept sending them at the control rate
    # on its own clock. Whether each reached the safety node is reported, not asserted: the
    # command topic keeps the newest 10 (rclpy's default), so a safety node the saturated CPU
    # delays drops superseded commands by design.
    cmd_rate = (p1.commands_sent - p0.commands_sent) / dt_node
    assert cmd_rate >= 0.8 * POLICY_RATE_HZ
    assert rig.spin(5.0, lambda: w.state() == "ACTIVE"), "no recovery after the flood"
    rig.spin(1.0)
    sent, received = commands_sent_and_received(w)
    # A fallback is allowed only with a cause the evidence explains: the policy declared a FAULT
    # (policy_fault), or commands sent at rate came late (command_timeout on a CPU this test
    # saturates: its 1 kHz publisher shares the 2 cores). The message names the evidence.
    assert not fell_back or set(causes) <= {"policy_fault", "command_timeout"}, (
        f"fallback causes {causes}, policy FAULT reasons {faults}, deadline misses {misses}, "
        f"worst tick {worst_tick * 1e3:.1f} ms, longest command gap {cmd_gap * 1e3:.0f} ms"
    )
    assert p1.frames_dropped - p0.frames_dropped >= 0.5 * (p1.frames_received - p0.frames_received)
    report(
        "camera flood at 1 kHz for 3 s (control rate 20 Hz)",
        [
            ("frames published", f"{cam_rate:.0f} /s"),
            ("frames received by the policy", f"{recv_rate:.0f} /s (newest kept, rest dropped)"),
            ("policy tick rate", f"{tick_rate:.1f} Hz"),
            ("heartbeat rate", f"{hb_rate:.1f} Hz"),
            ("deadline misses", f"{misses} (worst tick {worst_tick * 1e3:.1f} ms)"),
            ("longest gap between commands (policy clock)", f"{cmd_gap * 1e3:.0f} ms"),
            ("longest gap between safety ticks (its clock)", f"{safety_gap * 1e3:.0f} ms"),
            ("policy commands sent", f"{cmd_rate:.1f} /s (policy clock)"),
            ("commands sent / received since start", f"{sent} / {received}"),
            ("fallback", f"yes, {causes}, policy reasons {faults}" if fell_back else "none"),
            ("safety state", w.state()),
        ],
    )
    assert ForkServer.alive(pid)
    os.kill(pid, signal.SIGKILL)
    rig.finish(kind)


BAD_FRAMES: list[tuple[str, Callable[[Any], None]]] = [
    ("encoding", lambda m: setattr(m, "encoding", "yuv444")),
    ("size", lambda m: setattr(m, "data", m.data[:1000])),
    ("size", lambda m: setattr(m, "step", 10)),
    ("size", lambda m: (setattr(m, "height", 65535), setattr(m, "width", 65535))),
    ("stale", lambda m: setattr(m.header.stamp, "sec", m.header.stamp.sec - 5)),
    ("future", lambda m: setattr(m.header.stamp, "sec", m.header.stamp.sec + 5)),
]


def test_malformed_frames_are_counted_rejected_and_the_policy_lives(rig):
    ns = "/badframes"
    w = rig.watch(ns)
    kind = rig.start_safety(ns)
    cam = Camera(rig, ns)
    pid = rig.start_policy(ns)
    assert rig.spin(60.0, lambda: w.state() == "ACTIVE")
    before = w.policy_status[-1][1]
    # Only bad frames for 2.4 s at 15 Hz (slower than the ticks, so each one is taken): every
    # kind 6 times. Without a usable frame the heartbeat stops and the safety node falls back.
    cam.rate_hz = 15.0
    cam.bad = lambda m, k: BAD_FRAMES[k % len(BAD_FRAMES)][1](m)
    cam.every = 1
    rig.spin(2.4)
    cam.bad, cam.rate_hz = None, 20.0
    hb = len(w.hbs)
    assert rig.spin(5.0, lambda: len(w.hbs) >= hb + 10)  # healthy again with good frames
    after = w.policy_status[-1][1]
    got = dict(zip(after.rejected_reasons, after.rejected_counts, strict=True))
    old = dict(zip(before.rejected_reasons, before.rejected_counts, strict=True))
    # Each kind was sent 6 times; a frame that arrives before the last one was taken replaces
    # it (frames_dropped), which a late spin here (a burst of due frames) can cause: every kind
    # counted, and most of the 36 rejected.
    delta = {r: got.get(r, 0) - old.get(r, 0) for r, _ in BAD_FRAMES}
    assert min(delta.values()) >= 1 and sum(delta.values()) >= 12, delta
    assert ForkServer.alive(pid)
    report(
        "malformed frames (only bad frames for 2.4 s, 6 of each kind)",
        [(k, f"{got[k] - old.get(k, 0)} rejected") for k in sorted(got)]
        + [("policy", "alive, heartbeats resumed")],
    )
    os.kill(pid, signal.SIGKILL)
    rig.finish(kind)


# ------------------------------------------------------------------------------------------------
# Parameters at start


def test_bad_parameters_stop_the_node_at_start_naming_them(tmp_path):
    env = dict(os.environ)
    bad_yaml = tmp_path / "typo.yaml"
    bad_yaml.write_text("/**/safety_fallback:\n  ros__parameters:\n    comand_timeout_s: 0.2\n")
    cases = [
        ("safety_fallback", ["-p", "limits.speed.max:=-1.0"], "limits.speed.max"),
        ("safety_fallback", ["-p", "command_type:=std_msgs/msg/String"], "command_type"),
        ("safety_fallback", ["-p", "max_sped:=1.0"], "max_sped"),
        ("safety_fallback", ["--params-file", str(bad_yaml)], "comand_timeout_s"),
        ("safety_fallback", ["--params-file", str(tmp_path / "none.yaml")], "none.yaml"),
        ("ltc_policy", ["-p", "policy_file:=/nonexistent/p.safetensors"], "/nonexistent/p"),
        ("ltc_policy", ["-p", "deadline_s:=0.5"], "deadline_s"),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ltc_controller", "node", kind, "--ros-args", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for kind, args, _ in cases
    ]
    for p, (kind, args, name) in zip(procs, cases, strict=True):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 2, (kind, args, out[-2000:])
        assert name in out, (kind, args, out[-2000:])
        assert "Traceback" not in out
