"""The closed-loop demo: simulator → ltc_policy → safety_fallback → simulator, as three processes
talking ROS 2's wire protocol over Cyclone DDS on loopback.

:class:`Stack` starts and watches the processes (the fault-injection tests use it too);
:func:`run_demo` drives, stops everything cleanly, prints a summary and writes a plot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Track of the demo: unseen in training (those start at seed 1000), with a left curve within
#: the first 20 s at the demo's speed.
DEMO_TRACK_SEED = 43


class ProcessDied(RuntimeError):
    """A node process exited while it should have been running."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the demo."""


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


@dataclass
class Monitor:
    """What an in-process DDS participant sees of the running stack."""

    safety_states: list[tuple[float, str]] = field(default_factory=list)
    policy_status: Any = None
    safety_status: Any = None
    final_cmds: int = 0
    last_cmd: tuple[float, float, float] | None = None  # (receive time, steer, speed)


class Launcher:
    """Node processes (``python -m ltc_controller node KIND --ros-args ...``) and their end.

    Each process gets ``env``; its stdout/stderr go to ``<log_dir>/<kind>.log`` when ``log_dir``
    is given, else to this process's terminal. Used by :class:`Stack` (demo, fault injection) and
    by ``ltc-controller launch``.
    """

    def __init__(self, env: dict[str, str], log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
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
            cmd, env=self.env, stdout=out, stderr=out, preexec_fn=_die_with_parent
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

        ``signalled``: the processes already got a SIGINT (Ctrl-C in a terminal reaches the
        whole process group); they are given ``timeout_s`` to end before a second one, which
        would interrupt their clean shutdown.
        """
        codes: dict[str, int] = {}
        kinds = [k for k in order if k in self.procs] + [k for k in self.procs if k not in order]
        if signalled:
            end = time.monotonic() + timeout_s
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
    """

    KINDS = ("simulator", "safety_fallback", "ltc_policy")

    def __init__(
        self,
        output: Path,
        node_args: dict[str, list[str]] | None = None,
        domain_id: int | None = None,
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        from ltc_controller.transport.dds import loopback_env

        self.output = output
        output.mkdir(parents=True, exist_ok=True)
        if domain_id is None:
            env_dom = os.environ.get("ROS_DOMAIN_ID")
            domain_id = int(env_dom) if env_dom else 100 + os.getpid() % 100
        self.env = {**os.environ, **loopback_env(), "ROS_DOMAIN_ID": str(domain_id)}
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

    def start(self) -> None:
        for kind in self.kinds:
            extra = ["--log", str(self.output / "sim_log.npz")] if kind == "simulator" else []
            self.launcher.start(kind, self.node_args.get(kind, []), extra)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("CYCLONE", "ROS"))})
        from ltc_controller.transport.dds import DdsNode
        from ltc_controller.transport.port import RELIABLE

        self._mon_node = mon = DdsNode("demo_monitor")
        m = self.monitor

        def on_safety(msg: Any) -> None:
            m.safety_status = msg
            if not m.safety_states or m.safety_states[-1][1] != msg.state_name:
                m.safety_states.append((time.monotonic(), str(msg.state_name)))

        def on_policy(msg: Any) -> None:
            m.policy_status = msg

        def on_cmd(msg: Any) -> None:
            m.final_cmds += 1
            m.last_cmd = (time.monotonic(), msg.drive.steering_angle, msg.drive.speed)

        mon.create_subscription(
            "ltc_controller/msg/SafetyStatus", "safety_status", on_safety, RELIABLE
        )
        mon.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", on_policy, RELIABLE
        )
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
        return codes


def _ms(seconds: float | None) -> float:
    """Seconds → ms; NaN where the simulator matched no command to a frame."""
    return float("nan") if seconds is None else 1e3 * seconds


def check_demo_args(
    duration_s: float, output: Path, policy: str, domain_id: int | None
) -> str | None:
    """Why the demo cannot start with these arguments (a one-line message), or ``None``."""
    if not (duration_s > 0 and duration_s < 24 * 3600):
        return f"--duration must be > 0 s, got {duration_s}"
    if domain_id is None and os.environ.get("ROS_DOMAIN_ID"):
        try:
            domain_id = int(os.environ["ROS_DOMAIN_ID"])
        except ValueError:
            return f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']!r} is not an integer"
    if domain_id is not None and not 0 <= domain_id <= 232:
        return f"DDS domain id must be in 0..232, got {domain_id}"
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"cannot write to the output folder {output}: {e.strerror or e}"
    if (output / "demo_run.png").is_dir():
        return f"{output / 'demo_run.png'} is a folder; the plot cannot be written"
    if policy:
        from ltc_controller.models.policy_file import PolicyFileError, load_policy

        try:
            load_policy(Path(policy))
        except PolicyFileError as e:
            return str(e)
    return None


def policy_source(policy: str) -> str:
    """What the demo's policy node will run, in words."""
    from ltc_controller.models.policy_file import BUNDLED_POLICY

    if policy:
        return policy
    if BUNDLED_POLICY.exists():
        return f"bundled {BUNDLED_POLICY.name}"
    return "UNTRAINED NCP-19 (seed 0; no bundled policy in this checkout)"


def run_demo(
    duration_s: float = 20.0,
    output: Path = Path("demo_out"),
    policy: str = "",
    track_seed: int = DEMO_TRACK_SEED,
    domain_id: int | None = None,
    startup_timeout_s: float = 90.0,
) -> int:
    """Run the closed-loop demo. Returns the exit status: 0 after a full drive, 1 when a node
    died or the drive could not start, 2 for invalid arguments, 130 when interrupted (SIGINT,
    SIGTERM, SIGHUP); every node process is stopped in every case."""
    problem = check_demo_args(duration_s, output, policy, domain_id)
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    node_args = {
        "simulator": ["-p", f"track_seed:={track_seed}"],
        "ltc_policy": ["-p", f"policy_file:={policy}"] if policy else [],
    }

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    source = policy_source(policy)
    stack = Stack(output, node_args, domain_id)
    died: str | None = None
    interrupted = ""
    t_drive = float("nan")
    ticks0 = 0
    try:
        print(f"demo: policy: {source}")
        print(f"demo: starting simulator, safety_fallback, ltc_policy (logs in {output}/)")
        stack.start()
        if not stack.spin_for(
            startup_timeout_s,
            lambda m: m.policy_status is not None and m.policy_status.frames_used > 0,
        ):
            raise ProcessDied(f"the policy processed no frame within {startup_timeout_s} s")
        ticks0 = int(stack.monitor.policy_status.ticks)
        t0 = time.monotonic()
        print(f"demo: driving for {duration_s:g} s ...")
        stack.spin_for(duration_s)
        t_drive = time.monotonic() - t0
    except ProcessDied as e:
        died = str(e)
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = str(e) or "SIGINT"
    finally:
        # A Ctrl-C in a terminal also reached the nodes (same process group): let them finish.
        codes = stack.stop(signalled=interrupted == "SIGINT")
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if interrupted:
        print(f"demo: interrupted ({interrupted}); all nodes stopped", file=sys.stderr)
        return 130
    bad = {k: c for k, c in codes.items() if c != 0}
    if died or bad:
        print(f"demo: FAILED: {died or 'a node failed'}; exit statuses {codes}", file=sys.stderr)
        for kind in [k for k in codes if codes[k] not in (0, -signal.SIGINT)] or list(codes):
            tail = log_tail(output / f"{kind}.log")
            if tail and (codes.get(kind) != 0 or died):
                print(f"  {kind}.log (last lines):\n{tail}", file=sys.stderr)
        return 1

    m = stack.monitor
    rate = (int(m.policy_status.ticks) - ticks0) / t_drive if m.policy_status else 0.0
    summary = summarize(output, m, t_drive, track_seed)
    summary["policy"] = source
    summary["policy_control_rate_hz"] = rate
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    return 0


def summarize(output: Path, m: Monitor, t_drive: float, track_seed: int) -> dict[str, Any]:
    """Numbers for the summary, from the simulator's log and the last status messages."""
    from ltc_controller.sim.plot import plot_run
    from ltc_controller.sim.track import make_track

    sim = json.loads((output / "sim_log.json").read_text())
    ps = m.policy_status
    transitions = []
    t_first = m.safety_states[0][0] if m.safety_states else 0.0
    for t, name in m.safety_states:
        transitions.append({"t_s": round(t - t_first, 3), "state": name})
    png = output / "demo_run.png"
    plot_run(output / "sim_log.npz", png, make_track(track_seed))
    return {
        "drive_time_s": t_drive,
        "frames_published": sim["frames_published"],
        "frames_used_by_policy": int(ps.frames_used) if ps is not None else 0,
        "commands_received_by_sim": sim["commands_received"],
        "policy_ticks": int(ps.ticks) if ps is not None else 0,
        "safety_output_rate_hz": sim["commands_received"] / max(sim["duration_s"], 1e-9),
        "latency_p50_ms": _ms(sim["latency_p50_s"]),
        "latency_p99_ms": _ms(sim["latency_p99_s"]),
        "deadline_misses": int(ps.deadline_misses) if ps is not None else 0,
        "safety_states": transitions,
        "mean_abs_lateral_error_m": sim["mean_abs_lateral_error_m"],
        "max_abs_lateral_error_m": sim["max_abs_lateral_error_m"],
        "lane_departures": sim["lane_departures"],
        "distance_m": sim["distance_m"],
        "progress_m": sim["progress_m"],
        "plot": str(png),
    }


def print_summary(s: dict[str, Any]) -> None:
    states = " -> ".join(f"{x['state']}@{x['t_s']:.1f}s" for x in s["safety_states"]) or "none"
    lines = [
        ("policy", s["policy"]),
        ("drive time", f"{s['drive_time_s']:.1f} s"),
        ("frames published / used", f"{s['frames_published']} / {s['frames_used_by_policy']}"),
        ("final commands received", f"{s['commands_received_by_sim']}"),
        ("policy control rate", f"{s['policy_control_rate_hz']:.1f} Hz"),
        ("final commands at simulator", f"{s['safety_output_rate_hz']:.1f} Hz (safety output)"),
        ("policy ticks / deadline misses", f"{s['policy_ticks']} / {s['deadline_misses']}"),
        (
            "image->command latency",
            f"p50 {s['latency_p50_ms']:.1f} ms, p99 {s['latency_p99_ms']:.1f} ms",
        ),
        ("safety states", states),
        (
            "lateral error",
            f"mean {s['mean_abs_lateral_error_m']:.2f} m, max {s['max_abs_lateral_error_m']:.2f} m",
        ),
        ("lane departures", f"{s['lane_departures']}"),
        ("distance driven", f"{s['distance_m']:.1f} m ({s['progress_m']:.1f} m along the track)"),
        ("plot", s["plot"]),
    ]
    w = max(len(k) for k, _ in lines)
    print("\nltc-controller demo summary")
    for k, v in lines:
        print(f"  {k.ljust(w)}  {v}")
