"""``ltc-controller demo``: the closed-loop demo on its built-in defaults.

simulator → ltc_policy → safety_fallback → simulator, as three processes talking ROS 2's wire
protocol over Cyclone DDS on loopback. :class:`~ltc_controller.supervisor.Stack` starts and
watches the processes; :func:`run_demo` drives, stops everything cleanly, prints a summary
(:func:`print_summary`) and writes ``summary.json`` and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ltc_controller.extras import MissingExtra, require
from ltc_controller.supervisor import Interrupted, Monitor, ProcessDied, Stack, log_tail

NAME = "demo"
HELP = (
    "closed-loop demo: simulator, ltc_policy and safety_fallback as processes over DDS on "
    "loopback; prints a summary and writes a plot"
)

#: Track of the demo: unseen in training (those start at seed 1000), with a left curve within
#: the first 20 s at the demo's speed.
DEMO_TRACK_SEED = 43


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=20.0, help="driving time in s (default 20)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("demo_out"),
        help="folder for the logs, run log, summary and plot (default ./demo_out)",
    )
    p.add_argument(
        "--policy", type=str, default="", help="policy file (.safetensors); default: bundled"
    )
    p.add_argument(
        "--track-seed",
        type=int,
        default=DEMO_TRACK_SEED,
        help=f"seed of the generated track (default {DEMO_TRACK_SEED}: a curve within 20 s)",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="DDS domain (default: ROS_DOMAIN_ID, else one derived from the pid)",
    )


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller demo", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    return run_demo(
        duration_s=args.duration,
        output=args.output,
        policy=args.policy,
        track_seed=args.track_seed,
        domain_id=args.domain_id,
    )


def _pct(values: Any, q: float) -> float | None:
    """The ``q``-th percentile of a 1-D array, ``None`` when it is empty."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else None


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
    if not problem and track_seed < 0:
        problem = f"--track-seed must be >= 0, got {track_seed}"
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    node_args = {
        "simulator": ["-p", f"track_seed:={track_seed}"],
        "ltc_policy": ["-p", f"policy_file:={policy}"] if policy else [],
        # The demo's own e-stop latch: a latch left by a vehicle on this machine is not the
        # demo's, and the demo's nodes run on their own domain where no reset could reach.
        "safety_fallback": ["-p", f"estop_state_file:={Path(output).resolve() / 'estop.json'}"],
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
    import numpy as np

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
    lat = np.asarray(m.policy_latencies_s, dtype=np.float64)

    def count(name: str) -> int:
        return int(getattr(ps, name)) if ps is not None else 0

    return {
        "drive_time_s": t_drive,
        "frames_published": sim["frames_published"],
        "frames_used_by_policy": count("frames_used"),
        "frames_received_by_policy": count("frames_received"),
        "frames_dropped_by_policy": count("frames_dropped"),
        "frames_commanded_by_policy": count("frames_commanded"),
        "policy_frame_ticks": count("frame_ticks"),
        "policy_frame_ticks_stepped": count("frame_ticks_stepped"),
        "policy_commands_sent": count("commands_sent"),
        "policy_latency_p50_ms": _ms(_pct(lat, 50.0)),
        "policy_latency_p99_ms": _ms(_pct(lat, 99.0)),
        "policy_latency_frames": int(lat.size),
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
        (
            "frames used / published",
            f"{s['frames_used_by_policy']} / {s['frames_published']} "
            f"({s['frames_dropped_by_policy']} dropped before use, "
            f"{s['frames_commanded_by_policy']} with a policy_cmd of their own)",
        ),
        (
            "policy frame ticks",
            f"{s['policy_frame_ticks']} ({s['policy_frame_ticks_stepped']} took a grid step); "
            f"{s['policy_commands_sent']} policy_cmd sent",
        ),
        ("final commands received", f"{s['commands_received_by_sim']}"),
        ("policy control rate", f"{s['policy_control_rate_hz']:.1f} Hz"),
        ("final commands at simulator", f"{s['safety_output_rate_hz']:.1f} Hz (safety output)"),
        ("policy ticks / deadline misses", f"{s['policy_ticks']} / {s['deadline_misses']}"),
        (
            "camera stamp->safety output",
            f"p50 {s['latency_p50_ms']:.1f} ms, p99 {s['latency_p99_ms']:.1f} ms (simulator)",
        ),
        (
            "frame->policy_cmd (policy)",
            f"p50 {s['policy_latency_p50_ms']:.1f} ms, p99 {s['policy_latency_p99_ms']:.1f} ms "
            f"({s['policy_latency_frames']} frames; stamp to publish, policy's clock)",
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
