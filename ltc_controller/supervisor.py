"""The supervisor: starts, watches and stops node processes.

- :class:`Launcher` runs nodes as child processes (``python -m ltc_controller node KIND
  --ros-args ...``), logs each to a file or the terminal, reports the ones that ended, sends them
  signals (fault injection) and stops them in order: SIGINT, a grace period, then SIGKILL. A child
  gets SIGTERM if the supervising process dies (Linux ``PR_SET_PDEATHSIG``), so no node outlives
  it. ``ltc-controller launch`` uses it.
- :class:`Stack` is the closed loop on one DDS domain on loopback (simulator, ``safety_fallback``,
  ``ltc_policy``) plus a :class:`Monitor` participant in this process that records what the
  stack reports; the demo (:mod:`ltc_controller.commands.demo`) and the tests use it. A stack
  that picks its own domain takes one that nothing else on this machine holds
  (:func:`claim_domain`; the tests' DDS fixture takes its domains the same way).

:class:`ProcessDied` and :class:`Interrupted` are what a supervising loop raises when a node
ended while it should run, or when a signal asked it to stop; :func:`log_tail` quotes a node's
log in an error message.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Interrupted",
    "Launcher",
    "Monitor",
    "ProcessDied",
    "SafetyTick",
    "DomainInUse",
    "Stack",
    "claim_domain",
    "log_tail",
]

#: Domains a stack (or a test module) picks from when it is given none.
AUTO_DOMAINS = range(100, 200)


#: Environment variable naming a domain whose lock a parent process holds for its children
#: (the tests' DDS fixture): a stack given that domain shares it instead of refusing it.
DOMAIN_HELD_ENV = "LTC_CONTROLLER_DOMAIN_HELD"


class DomainInUse(RuntimeError):
    """The DDS domain asked for is held by another stack on this machine."""


def claim_domain(domain_id: int | None = None, prefer: int | None = None) -> tuple[int, Any]:
    """A DDS domain for a stack, and the open lock file that holds it (keep it open while the
    stack runs; the lock goes with the process).

    Two stacks on one domain see each other's frames and commands, and a demo then reports the
    other stack's drive as its own; so a stack holds an exclusive ``flock`` on
    ``$TMPDIR/ltc_controller-dds-domains/<id>.lock`` while it runs. ``domain_id`` None: the
    first free domain of :data:`AUTO_DOMAINS`, from ``prefer`` on (default: one derived from the
    pid). A given ``domain_id`` (``ROS_DOMAIN_ID``, ``--domain-id``) is locked when free, shared
    (lock None) when :data:`DOMAIN_HELD_ENV` names it, and refused otherwise.

    Raises:
        DomainInUse: the given domain is held by another stack, or every domain of
            :data:`AUTO_DOMAINS` is.
    """
    folder = Path(tempfile.gettempdir()) / "ltc_controller-dds-domains"
    folder.mkdir(parents=True, exist_ok=True)

    def lock(dom: int) -> Any:
        f = open(folder / f"{dom}.lock", "a")  # noqa: SIM115 - held open while the stack runs
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return None
        return f

    if domain_id is not None:
        if os.environ.get(DOMAIN_HELD_ENV) == str(domain_id):
            return domain_id, None
        held = lock(domain_id)
        if held is None:
            raise DomainInUse(
                f"DDS domain {domain_id} is in use by another demo, soak or test run on this "
                "machine (its nodes would see this one's topics); give another domain or none"
            )
        return domain_id, held
    n = len(AUTO_DOMAINS)
    first = (os.getpid() if prefer is None else prefer - AUTO_DOMAINS.start) % n
    for k in range(n):
        dom = AUTO_DOMAINS[(first + k) % n]
        held = lock(dom)
        if held is not None:
            return dom, held
    raise DomainInUse(
        f"every DDS domain {AUTO_DOMAINS.start}..{AUTO_DOMAINS.stop - 1} is held on this "
        "machine; give one with ROS_DOMAIN_ID or --domain-id"
    )


class ProcessDied(RuntimeError):
    """A node process exited while it should have been running."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the supervising process (the demo raises it from its
    signal handler)."""


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the launching process dies, so
    no node outlives a launcher that was killed (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux/glibc: children are still stopped by stop()


def log_tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a node's log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)


@dataclass(frozen=True)
class SafetyTick:
    """One ``SafetyStatus`` as the safety node stamped it: ``stamp_s`` (its tick's ROS time, s),
    ``state`` name, ``fault`` (the active fault, ``""`` if none), ``land_requested``, the
    command it sent on that tick, ``command`` per ``axes`` (SI units), and its count of policy
    commands received so far."""

    stamp_s: float
    state: str
    fault: str
    land_requested: bool
    axes: tuple[str, ...]
    command: tuple[float, ...]
    commands_received: int


@dataclass
class Monitor:
    """What an in-process DDS participant sees of the running stack."""

    #: each change of the safety node's state: (the stamp of the tick that first reported it,
    #: ROS time s; the state name)
    safety_states: list[tuple[float, str]] = field(default_factory=list)
    policy_status: Any = None
    safety_status: Any = None
    final_cmds: int = 0
    last_cmd: tuple[float, float, float] | None = None  # (receive time, steer, speed)
    #: the policy's own frame -> policy_cmd latencies (s), ``PolicyStatus.frame_to_command_s``
    #: of every status that carried one (bounded: the newest 200,000, 2.8 h at 20 Hz)
    policy_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    #: every safety tick, on the safety node's stamps (bounded: the newest 200,000, 66 min at
    #: 50 Hz)
    safety_ticks: deque[SafetyTick] = field(default_factory=lambda: deque(maxlen=200_000))
    #: drone: the last Twist on ``cmd_vel`` (receive time, vx, vy, vz m/s, yaw rate rad/s)
    last_twist: tuple[float, float, float, float, float] | None = None
    #: drone: the simulator's last task status (``ground_truth/task`` key -> value)
    task: dict[str, str] = field(default_factory=dict)


class Launcher:
    """Node processes (``python -m ltc_controller node KIND --ros-args ...``) and their end.

    Each process gets ``env``; its stdout/stderr go to ``<log_dir>/<kind>.log`` when ``log_dir``
    is given, else to this process's terminal. Used by :class:`Stack` (demo, fault injection) and
    by ``ltc-controller launch``.
    """

    def __init__(
        self, env: dict[str, str], log_dir: Path | None = None, own_sessions: bool = False
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        # Each child in a session of its own: a terminal's Ctrl-C reaches only this process,
        # which then stops the children itself, in order.
        self.own_sessions = own_sessions
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: dict[str, int] = {}
        self._logs: list[Any] = []

    def start(
        self,
        kind: str,
        ros_args: list[str],
        extra: list[str] | None = None,
        key: str | None = None,
    ) -> None:
        """Start node ``kind`` (``ltc_policy``, ``safety_fallback``, ``simulator``) with
        ``--ros-args`` items ``ros_args`` and node options ``extra`` (before ``--ros-args``).
        ``key`` names the process here and its log (default ``kind``; several nodes of one
        kind need distinct keys)."""
        key = key or kind
        cmd = [sys.executable, "-m", "ltc_controller", "node", kind, *(extra or [])]
        cmd += ["--ros-args", *ros_args]
        out: Any = None
        if self.log_dir is not None:
            out = open(self.log_dir / f"{key}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(out)
        self.procs[key] = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
            start_new_session=self.own_sessions,
        )

    def exited(self) -> dict[str, int]:
        """Exit status of every watched process that has ended."""
        return {k: rc for k, p in self.procs.items() if (rc := p.poll()) is not None}

    def send(self, kind: str, sig: int) -> None:
        """Send signal ``sig`` to ``kind`` (fault injection: SIGSTOP, SIGCONT, ...)."""
        self.procs[kind].send_signal(sig)

    def kill(self, kind: str) -> float:
        """SIGKILL ``kind`` and stop watching it; returns the monotonic time of the kill."""
        p = self.procs.pop(kind)
        t = time.monotonic()
        p.kill()
        p.wait()
        self.killed[kind] = int(p.returncode)
        return t

    def stop(
        self, order: tuple[str, ...] = (), timeout_s: float = 15.0, signalled: bool = False
    ) -> dict[str, int]:
        """SIGINT every live process (those named in ``order`` first, in that order), wait,
        SIGKILL stragglers. Returns the exit statuses.

        ``signalled``: this process got a SIGINT or SIGTERM. From a terminal's Ctrl-C the nodes
        got it too (it reaches the whole process group) and are given up to a second to end on
        their own; a signal sent to this process alone (``kill -INT PID``) reached none of them,
        so every node still running then gets its SIGINT as usual (a second one is harmless to
        a node: :mod:`ltc_controller.stop`).
        """
        codes: dict[str, int] = {}
        kinds = [k for k in order if k in self.procs] + [k for k in self.procs if k not in order]
        if signalled:
            end = time.monotonic() + min(timeout_s, 1.0)
            while time.monotonic() < end and any(p.poll() is None for p in self.procs.values()):
                time.sleep(0.05)
        for kind in kinds:
            p = self.procs[kind]
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            codes[kind] = int(p.returncode)
        for f in self._logs:
            f.close()
        self._logs.clear()
        return codes


class Stack:
    """Simulator, policy and safety node as child processes, plus a monitor participant.

    ``node_args`` maps a node kind to extra ``--ros-args`` items (e.g. ``["-p", "x:=1"]``).
    Processes share one DDS domain on loopback; their stderr goes to ``<output>/<kind>.log``.
    ``scenario`` picks what the monitor reads of the final command: ``car``
    (``ackermann_cmd``, :attr:`Monitor.last_cmd`) or ``drone`` (``cmd_vel`` Twist,
    :attr:`Monitor.last_twist`, and the simulator's ``ground_truth/task``, :attr:`Monitor.task`);
    the node arguments (``scenario:=drone``, the drone profile) are the caller's;
    ``twist_type``: the drone's ``cmd_vel`` type (Twist or TwistStamped).
    """

    KINDS = ("simulator", "safety_fallback", "ltc_policy")

    def __init__(
        self,
        output: Path,
        node_args: dict[str, list[str]] | None = None,
        domain_id: int | None = None,
        kinds: tuple[str, ...] = KINDS,
        scenario: str = "car",
        twist_type: str = "geometry_msgs/msg/Twist",
    ) -> None:
        from ltc_controller.transport.dds import loopback_env

        if scenario not in ("car", "drone"):
            raise ValueError(f"scenario {scenario!r}: expected 'car' or 'drone'")
        self.scenario = scenario
        self.twist_type = twist_type

        if domain_id is None:
            env_dom = os.environ.get("ROS_DOMAIN_ID")
            domain_id = int(env_dom) if env_dom else None
        #: The DDS domain of the stack's nodes (raises DomainInUse before anything is made).
        self.domain_id, self._domain_lock = claim_domain(domain_id)
        self.output = output
        output.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **loopback_env(), "ROS_DOMAIN_ID": str(self.domain_id)}
        self.env.setdefault("MUJOCO_GL", "osmesa")
        # The monitor is a DDS participant; keep the nodes on DDS too in a ROS-sourced shell.
        self.env.setdefault("LTC_CONTROLLER_TRANSPORT", "dds")
        self.node_args = node_args or {}
        self.kinds = kinds
        self.launcher = Launcher(self.env, output)
        self.monitor = Monitor()
        self._mon_node: Any = None

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.launcher.procs

    @property
    def killed(self) -> dict[str, int]:
        return self.launcher.killed

    def start(self, kinds: tuple[str, ...] | None = None) -> None:
        """Start the processes ``kinds`` (default: all of :attr:`kinds` not started yet); the
        first call also starts the monitor. The drone demo starts the simulator last, once the
        policy runs, so the task's clock does not tick through the policy's start-up."""
        for kind in kinds if kinds is not None else self.kinds:
            if kind in self.launcher.procs:
                continue
            extra = ["--log", str(self.output / "sim_log.npz")] if kind == "simulator" else []
            self.launcher.start(kind, self.node_args.get(kind, []), extra)
        if self._mon_node is not None:
            return
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("CYCLONE", "ROS"))})
        from ltc_controller.transport.dds import DdsNode
        from ltc_controller.transport.port import RELIABLE, QoS

        DEEP = QoS("reliable", "volatile", 1000)  # noqa: N806 - a constant of this method

        self._mon_node = mon = DdsNode("demo_monitor")
        m = self.monitor

        def on_safety(msg: Any) -> None:
            m.safety_status = msg
            st = msg.header.stamp
            stamp_s = int(st.sec) + int(st.nanosec) * 1e-9
            # On the node's own stamps, not on when this process got to the message.
            if not m.safety_states or m.safety_states[-1][1] != msg.state_name:
                m.safety_states.append((stamp_s, str(msg.state_name)))
            m.safety_ticks.append(
                SafetyTick(
                    stamp_s,
                    str(msg.state_name),
                    str(msg.active_fault),
                    bool(msg.land_requested),
                    tuple(str(a) for a in msg.axes),
                    tuple(float(v) for v in msg.command),
                    int(msg.commands_received),
                )
            )

        def on_policy(msg: Any) -> None:
            m.policy_status = msg
            if msg.frame_to_command_s >= 0.0:
                m.policy_latencies_s.append(float(msg.frame_to_command_s))

        def on_cmd(msg: Any) -> None:
            m.final_cmds += 1
            m.last_cmd = (time.monotonic(), msg.drive.steering_angle, msg.drive.speed)

        def on_twist(msg: Any) -> None:
            m.final_cmds += 1
            tw = getattr(msg, "twist", msg)  # TwistStamped or Twist
            lin, ang = tw.linear, tw.angular
            m.last_twist = (time.monotonic(), lin.x, lin.y, lin.z, ang.z)

        def on_task(msg: Any) -> None:
            for s in msg.status:
                if s.name == "drone_task":
                    m.task = {kv.key: kv.value for kv in s.values}

        # Deep enough for seconds of a late spin: the safety ticks are all kept.
        mon.create_subscription("ltc_controller/msg/SafetyStatus", "safety_status", on_safety, DEEP)
        mon.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", on_policy, RELIABLE
        )
        if self.scenario == "drone":
            mon.create_subscription(self.twist_type, "cmd_vel", on_twist, RELIABLE)
            mon.create_subscription(
                "diagnostic_msgs/msg/DiagnosticArray", "ground_truth/task", on_task, RELIABLE
            )
        else:
            mon.create_subscription(
                "ackermann_msgs/msg/AckermannDriveStamped", "ackermann_cmd", on_cmd, RELIABLE
            )

    def check_alive(self) -> None:
        """Raises :class:`ProcessDied` naming the first process that has exited."""
        for kind, rc in self.launcher.exited().items():
            raise ProcessDied(
                f"{kind} exited with status {rc}; see {self.output / (kind + '.log')}"
            )

    def spin_for(self, seconds: float, until: Any = None) -> bool:
        """Process monitor messages for up to ``seconds``, checking the processes; returns
        early (True) when ``until(monitor)`` becomes true."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._mon_node.spin_once(0.02)
            self.check_alive()
            if until is not None and until(self.monitor):
                return True
        return False

    def kill(self, kind: str) -> float:
        """SIGKILL ``kind`` (fault injection) and stop watching it; returns the monotonic time
        of the kill."""
        return self.launcher.kill(kind)

    def stop(self, timeout_s: float = 15.0, signalled: bool = False) -> dict[str, int]:
        """SIGINT every live process (simulator first, so it logs the drive as it was), wait,
        SIGKILL stragglers. Returns the exit statuses. ``signalled``: see
        :meth:`Launcher.stop`."""
        codes = self.launcher.stop(self.kinds, timeout_s, signalled)
        if self._mon_node is not None:
            self._mon_node.shutdown()
            self._mon_node = None
        if self._domain_lock is not None:
            self._domain_lock.close()
            self._domain_lock = None
        return codes
