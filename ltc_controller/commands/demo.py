"""``ltc-controller demo``: the closed-loop demo on its built-in defaults.

simulator → ltc_policy → safety_fallback → simulator, as three processes talking ROS 2's wire
protocol over Cyclone DDS on loopback. :class:`~ltc_controller.supervisor.Stack` starts and
watches the processes; :func:`run_demo` drives, stops everything cleanly, prints a summary
(:func:`print_summary`) and writes ``summary.json`` and a plot.

Scenarios: ``car`` (lane keeping on track :data:`DEMO_TRACK_SEED`, Ackermann commands, the
nodes' vehicle defaults) and ``drone`` (fly to the target of world :data:`DRONE_DEMO_WORLD_SEED`
under a named condition; both nodes with the drone profile ``config/drone.yaml``: Twist velocity
setpoints straight from the policy's four outputs, hover then land on a fault) until the task
ends (reached, collision, time limit).

Fault injection: ``--kill-policy-at S`` SIGKILLs ``ltc_policy`` S seconds after the safety node
went ACTIVE and the demo goes on without it; the summary's ``fault`` section measures the safety
node's answer on its own stamps (last ACTIVE tick, FALLBACK tick, the tick whose output reached
zero, the landing request) and, for the drone, the simulator's log (setpoints received, landing,
touchdown, collisions).

Time base: every time of day the summary prints (safety state changes, the fault's events) is
simulator time, s since the simulator started, the time axis of ``demo_run.png``
(:func:`simulator_clock` maps the nodes' ROS-time stamps onto it through the simulator's frame
log); durations stay differences of one node's own stamps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ltc_controller.commands import output_folder, seed
from ltc_controller.extras import MissingExtra, require
from ltc_controller.interfaces.command_axes import TWIST, TWIST_STAMPED
from ltc_controller.outputs import output_problem
from ltc_controller.supervisor import (
    DomainInUse,
    Interrupted,
    Monitor,
    ProcessDied,
    SafetyTick,
    Stack,
    log_tail,
)

NAME = "demo"
HELP = (
    "closed-loop demo (car or drone): simulator, ltc_policy and safety_fallback as processes "
    "over DDS on loopback; prints a summary and writes a plot"
)

#: Track of the demo: unseen in training (those start at seed 1000), with a left curve within
#: the first 20 s at the demo's speed.
DEMO_TRACK_SEED = 43
#: World of the drone demo: unseen in training (seeds from 1000) and evaluation (from 5000).
DRONE_DEMO_WORLD_SEED = 7
#: The drone demo's default policy (``train --preset drone`` writes it).
DRONE_POLICY = (
    Path(__file__).resolve().parents[1] / "policies" / "ncp_drone_fly_to_target.safetensors"
)
#: Drone: flying time after the task ended, so its last messages and the log are complete.
_SETTLE_S = 0.5
#: Drone with ``--kill-policy-at``: time allowed after the kill for ``land_after_s`` (5 s) and
#: the descent (a few m at 0.3 m/s), with room for a loaded machine; the demo ends at touchdown.
_LAND_MARGIN_S = 30.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ltc_controller.sim.drone.conditions import DRONE_CONDITIONS

    p.add_argument(
        "--scenario",
        choices=("car", "drone"),
        default="car",
        help="car: lane keeping (Ackermann); drone: fly to a target (Twist setpoints, the drone "
        "profile of config/drone.yaml) (default car)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="driving time in s (car default 20; drone default: until the task ends)",
    )
    p.add_argument(
        "--output",
        type=output_folder,
        default="demo_out",
        help="folder for the logs, run log, summary and plot (default ./demo_out)",
    )
    p.add_argument(
        "--policy",
        type=_policy_path,
        default=None,
        help="policy file (.safetensors); default: bundled (car: ncp19_lane_keeping, drone: "
        f"{DRONE_POLICY.name})",
    )
    # The scenario-specific options default to None ("not given"), so that run_demo can refuse
    # one given with the other scenario instead of ignoring it (SCENARIO_OPTIONS).
    p.add_argument(
        "--world-seed",
        type=seed,
        default=None,
        help=f"drone: seed of the generated world (default {DRONE_DEMO_WORLD_SEED}: unseen in "
        "training and evaluation)",
    )
    p.add_argument(
        "--condition",
        choices=tuple(DRONE_CONDITIONS),
        default=None,
        help="drone: scene condition (training scene or a named shift; default clean)",
    )
    p.add_argument(
        "--stamped",
        action="store_true",
        help="drone: TwistStamped instead of Twist from the policy through safety_fallback to "
        "the simulator, so each setpoint carries its camera frame's stamp and the camera->safety "
        "output latency is measured (a plain Twist has no stamp)",
    )
    p.add_argument(
        "--kill-policy-at",
        type=float,
        default=None,
        metavar="S",
        help="fault injection: SIGKILL ltc_policy S seconds after the safety node went ACTIVE "
        "and go on without "
        "it (car: ramp to a stop; drone: hover, then land after land_after_s); the summary "
        "measures it",
    )
    p.add_argument(
        "--track-seed",
        type=seed,
        default=None,
        help=f"car: seed of the generated track (default {DEMO_TRACK_SEED}: a curve within 20 s)",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="DDS domain (default: ROS_DOMAIN_ID, else one in 100-199 that no other demo, soak "
        "or test run on this machine holds)",
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
        policy=args.policy or "",
        track_seed=args.track_seed,
        domain_id=args.domain_id,
        scenario=args.scenario,
        world_seed=args.world_seed,
        condition=args.condition,
        kill_policy_at_s=args.kill_policy_at,
        stamped=args.stamped,
    )


#: The summary's time base, in words.
TIME_BASE = "simulator time (s since the simulator started; the plot's time axis)"


def simulator_clock(log: Mapping[str, Any]) -> Callable[[float], float]:
    """ROS time (s, the nodes' stamps) -> simulator time (s since the simulator started: the
    time axis of its plots), from its run log's frames: ``frame_stamp`` (ROS time a frame was
    published) and ``frame_sim_t`` (the simulator's time then), linear between frames (the
    simulator may fall behind the wall clock when a tick is capped at ``max_catchup_s``), and
    at the rate of ROS time before the first frame and after the last (the safety node's
    STARTUP before the simulator started is negative). Without frames: ``t - start_wall``.

    Raises:
        KeyError: the log has neither frames with ``frame_sim_t`` nor ``start_wall``.
    """
    import numpy as np

    wall = np.asarray(log.get("frame_stamp", ()), dtype=np.float64)
    sim = np.asarray(log.get("frame_sim_t", ()), dtype=np.float64)
    if wall.size == 0 or sim.size != wall.size:
        start = float(log["start_wall"])
        return lambda t: t - start

    def to_sim(t: float) -> float:
        if t <= wall[0]:
            return float(sim[0] + (t - wall[0]))
        if t >= wall[-1]:
            return float(sim[-1] + (t - wall[-1]))
        return float(np.interp(t, wall, sim))

    return to_sim


def _pct(values: Any, q: float) -> float | None:
    """The ``q``-th percentile of a 1-D array, ``None`` when it is empty."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else None


def _ms(seconds: float | None) -> float:
    """Seconds → ms; NaN where the simulator matched no command to a frame."""
    return float("nan") if seconds is None else 1e3 * seconds


#: The options that only one scenario reads: option -> (scenario, what it is for there).
SCENARIO_OPTIONS: dict[str, tuple[str, str]] = {
    "--track-seed": ("car", "the seed of the car's generated track"),
    "--world-seed": ("drone", "the seed of the drone's generated world"),
    "--condition": ("drone", "the drone's scene condition"),
    "--stamped": ("drone", "the car's Ackermann command is stamped already"),
}


def scenario_option_problem(scenario: str, given: dict[str, bool]) -> str | None:
    """Why these options do not fit ``scenario`` (one line naming the first misplaced option
    and the scenario it belongs to), or ``None``. ``given``: option (a key of
    :data:`SCENARIO_OPTIONS`) -> whether the user gave it."""
    from ltc_controller.params import scenario_mismatch

    return scenario_mismatch(scenario, [o for o, g in given.items() if g], SCENARIO_OPTIONS)


def _policy_path(text: str) -> str:
    """argparse ``type`` of ``--policy``: a path; an empty one is refused (leaving the option out
    runs the bundled policy).

    Raises:
        argparse.ArgumentTypeError: an empty path.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty path (leave --policy out for the bundled policy)"
        )
    return text


def check_demo_args(
    duration_s: float | None,
    output: Path,
    policy: str,
    domain_id: int | None,
    scenario: str = "car",
) -> str | None:
    """Why the demo cannot start with these arguments (a one-line message), or ``None``.
    A given policy must load and its outputs fit the scenario's command mapping."""
    if duration_s is not None and not (duration_s > 0 and duration_s < 24 * 3600):
        return f"--duration must be in (0, 86400) s, got {duration_s:g}"
    if domain_id is None and os.environ.get("ROS_DOMAIN_ID"):
        try:
            domain_id = int(os.environ["ROS_DOMAIN_ID"])
        except ValueError:
            return f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']!r} is not an integer"
    if domain_id is not None and not 0 <= domain_id <= 232:
        return f"DDS domain id must be in 0..232, got {domain_id}"
    # Checked without creating it: a refused demo leaves no empty folder behind.
    bad = output_problem(output, folder=True)
    if bad:
        return f"--output: {bad}"
    if (output / "demo_run.png").is_dir():
        return f"{output / 'demo_run.png'} is a folder; the plot cannot be written"
    if policy:
        from ltc_controller.models.policy_file import PolicyFileError, load_policy
        from ltc_controller.nodes.commands import TWIST
        from ltc_controller.nodes.policy_logic import CommandMapping, check_outputs
        from ltc_controller.params import ParameterError

        mapping = (
            CommandMapping(command_type=TWIST, twist_mapping="direct")
            if scenario == "drone"
            else CommandMapping()
        )
        try:
            names = load_policy(Path(policy)).config.output_names
            check_outputs(mapping, names, f"{policy} for --scenario {scenario}")
        except (PolicyFileError, ParameterError) as e:
            return str(e)
    return None


def policy_source(policy: str, scenario: str = "car") -> str:
    """What the demo's policy node will run, in words."""
    from ltc_controller.models.policy_file import BUNDLED_POLICY

    if policy:
        return policy
    if scenario == "drone":
        return f"bundled {DRONE_POLICY.name}"
    if BUNDLED_POLICY.exists():
        return f"bundled {BUNDLED_POLICY.name}"
    return "UNTRAINED NCP-19 (seed 0; no bundled policy in this checkout)"


def drone_profile() -> Path:
    """``config/drone.yaml`` as installed (or in the source tree).

    Raises:
        FileNotFoundError: neither has it.
    """
    from ltc_controller.interfaces import share_dir

    folder = share_dir("config")
    path = folder / "drone.yaml" if folder is not None else Path("config/drone.yaml")
    if not path.is_file():
        raise FileNotFoundError(
            f"the drone profile {path} is missing (share/ltc_controller/config of the install)"
        )
    return path


def _node_args(
    scenario: str,
    output: Path,
    policy: str,
    track_seed: int,
    world_seed: int,
    condition: str,
    profile: Path | None,
    twist_type: str = TWIST,
) -> dict[str, list[str]]:
    """``--ros-args`` of each node for the scenario (the drone's command type ``twist_type``
    overrides the profile's Twist)."""
    # The demo's own e-stop latch: a latch left by a vehicle on this machine is not the demo's,
    # and the demo's nodes run on their own domain where no reset could reach.
    estop = ["-p", f"estop_state_file:={Path(output).resolve() / 'estop.json'}"]
    pol = ["-p", f"policy_file:={policy}"] if policy else []
    if scenario == "car":
        return {
            "simulator": ["-p", f"track_seed:={track_seed}"],
            "ltc_policy": pol,
            "safety_fallback": estop,
        }
    prof = ["--params-file", str(profile), "-p", f"command_type:={twist_type}"]
    return {
        "simulator": [
            *("-p", "scenario:=drone", "-p", f"world_seed:={world_seed}"),
            *("-p", f"drone_condition:={condition}", "-p", f"twist_type:={twist_type}"),
        ],
        "ltc_policy": prof + pol,
        "safety_fallback": prof + estop,
    }


def _active(m: Monitor) -> bool:
    return m.safety_status is not None and m.safety_status.state_name == "ACTIVE"


def _drone_done(kill_at: float | None) -> Any:
    """When the drone demo may stop: the task ended (no fault injected) or the drone has landed
    (after a kill)."""
    if kill_at is None:
        return lambda m: m.task.get("done") == "true"
    return lambda m: m.task.get("mode") == "landed"


def run_demo(
    duration_s: float | None = None,
    output: Path = Path("demo_out"),
    policy: str = "",
    track_seed: int | None = None,
    domain_id: int | None = None,
    startup_timeout_s: float = 90.0,
    scenario: str = "car",
    world_seed: int | None = None,
    condition: str | None = None,
    kill_policy_at_s: float | None = None,
    stamped: bool = False,
) -> int:
    """Run the closed-loop demo. Returns the exit status: 0 after a full drive whose checks
    (:func:`demo_checks`: with ``kill_policy_at_s``, the fallback and, for the drone, the
    landing) passed, 1 when a node died, the drive could not start or a check failed, 2 for
    invalid arguments, 130 when interrupted (SIGINT, SIGTERM, SIGHUP); every node process is
    stopped in every case.

    ``duration_s`` None: 20 s for the car; the drone flies until its task ends (within the
    world's time limit), or, after ``kill_policy_at_s``, until it has landed. ``stamped``
    (drone): TwistStamped between the nodes and to the simulator, so the camera -> safety
    output latency can be matched by stamp.

    The scenario's own options (:data:`SCENARIO_OPTIONS`) are ``None``/``False`` when not
    given (then :data:`DEMO_TRACK_SEED`, :data:`DRONE_DEMO_WORLD_SEED`, ``clean``); one given
    with the other scenario is refused (status 2) rather than ignored.
    """
    given = {
        "--track-seed": track_seed is not None,
        "--world-seed": world_seed is not None,
        "--condition": condition is not None,
        "--stamped": stamped,
    }
    problem = scenario_option_problem(scenario, given)
    track_seed = DEMO_TRACK_SEED if track_seed is None else track_seed
    world_seed = DRONE_DEMO_WORLD_SEED if world_seed is None else world_seed
    condition = "clean" if condition is None else condition
    problem = problem or check_demo_args(duration_s, output, policy, domain_id, scenario)
    if not problem and track_seed < 0:
        problem = f"--track-seed must be >= 0, got {track_seed}"
    if not problem and world_seed < 0:
        problem = f"--world-seed must be >= 0, got {world_seed}"
    if not problem and kill_policy_at_s is not None and not kill_policy_at_s >= 0.0:
        problem = f"--kill-policy-at must be >= 0 s, got {kill_policy_at_s}"
    profile: Path | None = None
    limit_s = 20.0 if duration_s is None else duration_s
    if not problem and scenario == "drone":
        from ltc_controller.sim.drone.conditions import get_drone_condition

        if not policy and not DRONE_POLICY.exists():
            problem = (
                f"no drone policy: the bundled {DRONE_POLICY} is not in this checkout; train one "
                "with `ltc-controller train --preset drone --output FILE` and pass --policy FILE"
            )
        try:
            profile = drone_profile()
        except FileNotFoundError as e:
            problem = problem or str(e)
        world_s = get_drone_condition(condition).world.time_limit_s
        if duration_s is None:
            task_s = world_s + _SETTLE_S
            limit_s = task_s if kill_policy_at_s is None else kill_policy_at_s + _LAND_MARGIN_S
        if not problem and kill_policy_at_s is not None and kill_policy_at_s >= world_s:
            problem = (
                f"--kill-policy-at {kill_policy_at_s} s is past the flight's time limit "
                f"({world_s:g} s under {condition or 'clean'}): the task would end first"
            )
    if not problem and kill_policy_at_s is not None and kill_policy_at_s >= limit_s:
        problem = f"--kill-policy-at {kill_policy_at_s} s is not within the drive ({limit_s} s)"
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    twist_type = TWIST_STAMPED if stamped else TWIST
    # The drone's default is named explicitly: ltc_policy without a file runs an untrained
    # placeholder for a direct Twist mapping (the bundled file it knows is the car's).
    node_policy = policy or (str(DRONE_POLICY) if scenario == "drone" else "")
    node_args = _node_args(
        scenario, output, node_policy, track_seed, world_seed, condition, profile, twist_type
    )

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    source = policy_source(policy, scenario)
    try:
        stack = Stack(output, node_args, domain_id, scenario=scenario, twist_type=twist_type)
    except DomainInUse as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started as a background job of a shell without job control: SIGINT arrives ignored.
        # The nodes take SIGINT regardless (ltc_controller.stop), so the demo must too, or a
        # group SIGINT stops the nodes under a demo that then reports them as failed.
        old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    died: str | None = None
    interrupted = ""
    t_drive = float("nan")
    t_kill = float("nan")  # wall clock (s), comparable with the nodes' stamps
    t_pol = float("nan")  # how long the policy ran in the drive (s)
    ticks0 = 0
    ticks_kill = 0
    done = _drone_done(kill_policy_at_s) if scenario == "drone" else None
    try:
        print(f"demo: policy: {source}")
        print(f"demo: starting simulator, safety_fallback, ltc_policy (logs in {output}/)")
        # The nodes talk on loopback only: say how another shell (estop, lifecycle, param) joins.
        xml = Path(output).resolve() / "cyclonedds.xml"
        xml.write_text(stack.env["CYCLONEDDS_URI"])
        print(
            f"demo: nodes on ROS_DOMAIN_ID={stack.domain_id}, DDS on loopback; from another "
            f"shell: export ROS_DOMAIN_ID={stack.domain_id} CYCLONEDDS_URI=file://{xml}"
        )
        if scenario == "drone":
            # The simulator last: the task's clock starts when the policy is up, not before.
            stack.start(("safety_fallback", "ltc_policy"))
            if not stack.spin_for(startup_timeout_s, lambda m: m.policy_status is not None):
                raise ProcessDied(f"the policy reported no status within {startup_timeout_s} s")
        stack.start()
        if not stack.spin_for(
            startup_timeout_s,
            lambda m: m.policy_status is not None and m.policy_status.frames_used > 0,
        ):
            raise ProcessDied(f"the policy processed no frame within {startup_timeout_s} s")
        # The drone flies from the safety node's first ACTIVE tick, when the policy commands.
        if scenario == "drone" and not stack.spin_for(startup_timeout_s, _active):
            raise ProcessDied(f"the safety node never went ACTIVE within {startup_timeout_s} s")
        ticks0 = ticks_kill = int(stack.monitor.policy_status.ticks)
        t0 = time.monotonic()
        what = "driving" if scenario == "car" else "flying"
        if duration_s is None and scenario == "drone":
            until = (
                "until the drone has landed"
                if kill_policy_at_s is not None
                else "until the task ends"
            )
            print(f"demo: {what} {until} (at most {limit_s:g} s) ...")
        else:
            print(f"demo: {what} for {limit_s:g} s ...")
        if kill_policy_at_s is not None:
            # Counted from the safety node's first ACTIVE tick: a kill must meet a policy in
            # command, not one still starting up.
            if not stack.spin_for(limit_s, _active):
                raise ProcessDied(f"the safety node never went ACTIVE within {limit_s:g} s")
            t_active = time.monotonic()
            stack.spin_for(kill_policy_at_s, done)
            ticks_kill = int(stack.monitor.policy_status.ticks)
            t_pol = time.monotonic() - t0
            t_kill = time.time()
            stack.kill("ltc_policy")
            print(
                f"demo: killed ltc_policy (SIGKILL) {time.monotonic() - t_active:.2f} s after "
                "the safety node went ACTIVE"
            )
        if stack.spin_for(max(0.0, limit_s - (time.monotonic() - t0)), done):
            stack.spin_for(_SETTLE_S)
        t_drive = time.monotonic() - t0
        # The safety node's statuses from the drive's last tenths of a second may still be on
        # their way (more so under load): take them, so a late state change is in the summary.
        t_end = time.time()
        stack.spin_for(1.0, lambda m: bool(m.safety_ticks) and m.safety_ticks[-1].stamp_s >= t_end)
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
    # Control rate while the policy ran (up to the kill when there was one).
    t_pol = t_drive if kill_policy_at_s is None else t_pol
    ticks = (int(m.policy_status.ticks) if kill_policy_at_s is None else ticks_kill) - ticks0
    sim = json.loads((output / "sim_log.json").read_text())
    import numpy as np

    with np.load(output / "sim_log.npz") as z:
        to_sim = simulator_clock({k: z[k] for k in ("frame_stamp", "frame_sim_t", "start_wall")})
        collision_log = (
            (z["phys_t"], z["phys_collisions"]) if "phys_collisions" in z.files else None
        )
    summary = pipeline_summary(sim, m, t_drive, to_sim)
    summary["policy"] = source
    summary["policy_file_loaded"] = str(m.policy_status.policy_file) if m.policy_status else ""
    summary["policy_control_rate_hz"] = ticks / t_pol if t_pol > 0 else 0.0
    if scenario == "drone":
        summary.update(drone_summary(output, sim))
    else:
        summary.update(car_summary(output, sim, track_seed))
    if kill_policy_at_s is not None:
        summary["fault"] = fault_summary(
            m, t_kill, kill_policy_at_s, sim, profile if scenario == "drone" else None, to_sim
        )
        f = summary["fault"]
        if collision_log is not None and f.get("fallback_sim_s") is not None:
            t, n = collision_log
            before = n[t <= f["fallback_sim_s"]]
            f["collisions_after_fallback"] = int(n[-1] - (before[-1] if before.size else 0))
    summary["checks"] = demo_checks(summary)
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    failed = [c["check"] for c in summary["checks"] if not c["passed"]]
    if failed:
        print(f"demo: FAILED checks: {'; '.join(failed)} (see the summary)", file=sys.stderr)
        return 1
    return 0


def pipeline_summary(
    sim: dict[str, Any], m: Monitor, t_drive: float, to_sim: Callable[[float], float]
) -> dict[str, Any]:
    """What every scenario reports of the pipeline: frames, policy counters and latencies, the
    final commands at the simulator, deadline misses, safety states (``t_s``: the safety
    node's stamp of the change through ``to_sim``, :data:`TIME_BASE`) and fallbacks."""
    import numpy as np

    ps = m.policy_status
    transitions = [{"t_s": round(to_sim(t), 3), "state": name} for t, name in m.safety_states]
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
        "policy_ticks": count("ticks"),
        "safety_output_rate_hz": sim["commands_received"] / max(sim["duration_s"], 1e-9),
        "latency_p50_ms": _ms(sim.get("latency_p50_s")),
        "latency_p99_ms": _ms(sim.get("latency_p99_s")),
        "deadline_misses": count("deadline_misses"),
        "time_base": TIME_BASE,
        "safety_states": transitions,
        "fallbacks": sum(1 for x in transitions if x["state"] == "FALLBACK"),
    }


def car_summary(output: Path, sim: dict[str, Any], track_seed: int) -> dict[str, Any]:
    """The car's task numbers (lane keeping) and its plot ``demo_run.png``."""
    from ltc_controller.sim.plot import plot_run
    from ltc_controller.sim.track import make_track

    png = output / "demo_run.png"
    plot_run(output / "sim_log.npz", png, make_track(track_seed))
    return {
        "scenario": "car",
        "mean_abs_lateral_error_m": sim["mean_abs_lateral_error_m"],
        "max_abs_lateral_error_m": sim["max_abs_lateral_error_m"],
        "lane_departures": sim["lane_departures"],
        "distance_m": sim["distance_m"],
        "progress_m": sim["progress_m"],
        "plot": str(png),
    }


def drone_summary(output: Path, sim: dict[str, Any]) -> dict[str, Any]:
    """The drone's task numbers (from the simulator's log) and its plot ``demo_run.png``."""
    from ltc_controller.sim.drone.plot import plot_drone_run

    png = output / "demo_run.png"
    plot_drone_run(output / "sim_log.npz", png)
    keys = (
        "world_seed",
        "condition",
        "success",
        "reached",
        "time_to_target_s",
        "final_distance_m",
        "min_distance_m",
        "collisions",
        "timed_out",
        "mode",
        "final_altitude_m",
        "distance_flown_m",
        "land_requests",
    )
    return {"scenario": "drone", **{k: sim[k] for k in keys}, "plot": str(png)}


def fault_summary(
    m: Monitor,
    t_kill: float,
    kill_at_s: float,
    sim: dict[str, Any],
    profile: Path | None,
    to_sim: Callable[[float], float] | None = None,
) -> dict[str, Any]:
    """The safety node's answer to the policy's SIGKILL, on its own stamps (ROS time of each
    tick; every ``*_ms``/``*_s`` is a difference of two of them unless named ``kill_*``).

    Keys: ``fault_name`` of the FALLBACK tick; ``fallback_after_last_command_ms`` (from the
    tick that counted the last command) and ``last_active_after_last_command_ms`` (the latest
    ACTIVE tick; ``command_timeout_s`` bounds it); ``zero_bound_ms`` (one tick plus
    ``|command| / decel`` of the slowest axis that falls back to zero — stop, hover — from the
    last ACTIVE output), ``zero_after_fallback_ms`` (first tick with every such axis at 0) and
    ``last_nonzero_after_fallback_ms`` (the last FALLBACK tick that was not; the claim is that it
    is within the bound, ``zero_within_bound``), ``commands_after_zero_all_zero``; with a
    ``land_after_s``: ``land_request_after_fallback_s`` (first tick requesting it) and
    ``no_land_request_until_s`` (the last tick that did not). For the drone, from the
    simulator's log: landing received, ``hover_speed_mps`` then, touchdown, collisions, mode.
    ``kill_to_fallback_ms`` crosses two processes' clocks and the OS's scheduling: a
    measurement only. ``profile``: the safety node's parameter file (None: the node's
    defaults, the vehicle). ``to_sim``: ROS time -> :data:`TIME_BASE` (:func:`simulator_clock`);
    with it, ``*_sim_s`` give the events on the plot's time axis: ``kill_sim_s``,
    ``fallback_sim_s``, ``land_request_sim_s``, and from the simulator's own clock
    ``land_received_sim_s``, ``touchdown_sim_s``."""
    from ltc_controller.nodes.safety_node import PARAMS
    from ltc_controller.nodes.safety_profile import gate_config_from_params
    from ltc_controller.params import resolve
    from ltc_controller.transport.ros_args import load_params_file

    given = load_params_file(profile, "/safety_fallback") if profile is not None else {}
    p = resolve(PARAMS, given)
    gate = gate_config_from_params(p)
    period = 1.0 / float(p["rate_hz"])
    ticks = list(m.safety_ticks)
    out: dict[str, Any] = {"kill_at_s": kill_at_s, "kill_wall_s": t_kill}
    if to_sim is not None:
        out["kill_sim_s"] = to_sim(t_kill)
    # The kill's FALLBACK: the first at or after the kill (an earlier one, e.g. a load-induced
    # command timeout that recovered, is not the answer to the kill).
    fb = next(
        (
            k
            for k, t in enumerate(ticks)
            if t.state == "FALLBACK" and t.stamp_s >= t_kill - CLOCK_READ_S
        ),
        None,
    )
    if fb is None:
        out["fallback"] = False
        return out
    f = ticks[fb]
    after = [t for t in ticks[fb:] if t.state == "FALLBACK"]
    out.update(fallback=True, fault_name=f.fault, fallback_stamp_s=f.stamp_s)
    if to_sim is not None:
        out["fallback_sim_s"] = to_sim(f.stamp_s)
    out["kill_to_fallback_ms"] = 1e3 * (f.stamp_s - t_kill)

    def rel_ms(t: SafetyTick | None, t0: SafetyTick) -> float | None:
        return None if t is None else 1e3 * (t.stamp_s - t0.stamp_s)

    # The tick that counted the last command (callbacks run before the tick that counts them).
    counted = next(
        (
            b
            for a, b in zip(reversed(ticks[:fb]), reversed(ticks[1 : fb + 1]), strict=True)
            if b.commands_received > a.commands_received
        ),
        None,
    )
    out["command_timeout_s"] = gate.command_timeout_s
    if counted is not None:
        out["fallback_after_last_command_ms"] = rel_ms(f, counted)
        active = [t for t in ticks[ticks.index(counted) : fb] if t.state == "ACTIVE"]
        out["last_active_after_last_command_ms"] = rel_ms(active[-1] if active else None, counted)
    last_active = next((t for t in reversed(ticks[:fb]) if t.state == "ACTIVE"), f)
    zero_axes = [
        (k, lim)
        for k, (lim, mode) in enumerate(zip(gate.axes, gate.fallback, strict=True))
        if mode == "zero"
    ]
    bound = period + max(
        (abs(last_active.command[k]) / lim.decel for k, lim in zero_axes), default=0.0
    )

    def at_zero(t: SafetyTick) -> bool:
        return all(t.command[k] == 0.0 for k, _ in zero_axes)

    zero = next((t for t in after if at_zero(t)), None)
    moving = [t for t in after if not at_zero(t)]
    out["zero_bound_ms"] = 1e3 * bound
    out["zero_after_fallback_ms"] = rel_ms(zero, f)
    out["last_nonzero_after_fallback_ms"] = rel_ms(moving[-1], f) if moving else 0.0
    out["zero_within_bound"] = zero is not None and (
        not moving or moving[-1].stamp_s - f.stamp_s <= bound
    )
    out["commands_after_zero_all_zero"] = zero is not None and all(
        at_zero(t) for t in after[after.index(zero) :]
    )
    if gate.land_after_s > 0.0:
        land = next((k for k, t in enumerate(after) if t.land_requested), None)
        out["land_after_s"] = gate.land_after_s
        out["land_request_after_fallback_s"] = (
            None if land is None else after[land].stamp_s - f.stamp_s
        )
        if to_sim is not None:
            out["land_request_sim_s"] = None if land is None else to_sim(after[land].stamp_s)
        before = after[land - 1] if land else (after[-1] if land is None else None)
        out["no_land_request_until_s"] = None if before is None else before.stamp_s - f.stamp_s
    if "touchdown_wall_s" in sim:
        td = sim["touchdown_wall_s"]
        out["touchdown_after_fallback_s"] = None if td is None else td - f.stamp_s
        lr = sim.get("land_received_wall_s")
        out["land_received_after_fallback_s"] = None if lr is None else lr - f.stamp_s
        out["hover_speed_mps"] = sim.get("hover_speed_mps")
        out["land_received_sim_s"] = sim.get("land_received_sim_s")
        out["touchdown_sim_s"] = sim.get("touchdown_sim_s")
        out["collisions"] = sim["collisions"]
        out["mode"] = sim["mode"]
        out["touchdown_on"] = sim.get("touchdown_on")
        out["final_altitude_m"] = sim.get("final_altitude_m")
    return out


#: Slack of the ramp-bound check: the gap between the two clock reads of one safety tick
#: (steady time for the decision, ROS time for its stamp), as the fault tests allow.
CLOCK_READ_S = 0.05


def landing_outcome(f: dict[str, Any]) -> str:
    """The drone's landing after a fault, in words: where and when it touched down, or that it
    had not when the demo ended (``f``: :func:`fault_summary`'s drone keys)."""
    td = f.get("touchdown_after_fallback_s")
    alt = f.get("final_altitude_m")
    at = "" if alt is None else f" at {alt:.2f} m"
    if td is None:
        return f"NOT landed when the demo ended (mode {f.get('mode')}{at})"
    on = f.get("touchdown_on") or "?"
    where = "the ground" if on == "ground" else f"{on} (an obstacle's top, not the ground)"
    return f"touched down on {where}{at}, {td:.2f} s after FALLBACK"


def demo_checks(s: dict[str, Any]) -> list[dict[str, Any]]:
    """What the demo claims about its run, each checked: ``{"check", "passed", "seen"}``.

    With a fault injected (``s["fault"]``, :func:`fault_summary`): the safety node fell back;
    its setpoint reached zero within the ramps' bound (plus :data:`CLOCK_READ_S`) and stayed
    there; with a landing (drone): it was requested, the drone touched down before the demo
    ended, and nothing collided after FALLBACK. Without a fault: none (the task's own numbers,
    e.g. the drone's success, are reported, not checked). A failed check makes the demo's exit
    status 1.
    """
    f = s.get("fault")
    if f is None:
        return []

    def check(name: str, passed: bool, seen: str) -> dict[str, Any]:
        return {"check": name, "passed": bool(passed), "seen": seen}

    out = [check("FALLBACK after the kill", f["fallback"], f.get("fault_name") or "none")]
    if not f["fallback"]:
        return out
    last, bound = f["last_nonzero_after_fallback_ms"], f["zero_bound_ms"]
    out.append(
        check(
            "setpoint at zero within the ramps' bound",
            last <= bound + 1e3 * CLOCK_READ_S,
            f"last non-zero tick {last:.0f} ms after FALLBACK, bound {bound:.0f} ms",
        )
    )
    out.append(
        check(
            "setpoint zero from then on",
            f["commands_after_zero_all_zero"],
            f"zero {_ms_text(f['zero_after_fallback_ms'])} after FALLBACK",
        )
    )
    if "land_after_s" in f:
        lr = f["land_request_after_fallback_s"]
        out.append(
            check(
                "landing requested",
                lr is not None,
                "none" if lr is None else f"{lr:.2f} s after FALLBACK",
            )
        )
    if "touchdown_after_fallback_s" in f:
        out.append(
            check("touched down", f["touchdown_after_fallback_s"] is not None, landing_outcome(f))
        )
        if "collisions_after_fallback" in f:
            n = f["collisions_after_fallback"]
            out.append(check("no collision after FALLBACK", n == 0, f"{n} collision(s)"))
    return out


def _ms_text(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} ms"


def _fault_times(f: dict[str, Any]) -> str:
    """The fault's events on the simulator's clock, e.g. ``kill 3.10 s, FALLBACK 3.36 s, ...``."""
    names = (
        ("kill_sim_s", "kill"),
        ("fallback_sim_s", "FALLBACK"),
        ("land_request_sim_s", "landing request"),
        ("touchdown_sim_s", "touchdown"),
    )
    return ", ".join(f"{name} {f[k]:.2f} s" for k, name in names if f.get(k) is not None)


def print_summary(s: dict[str, Any]) -> None:
    states = " -> ".join(f"{x['state']}@{x['t_s']:.1f}s" for x in s["safety_states"]) or "none"
    if math.isnan(s["latency_p50_ms"]):
        cam = "n/a (a plain Twist carries no frame stamp; --stamped measures it)"
    else:
        cam = f"p50 {s['latency_p50_ms']:.1f} ms, p99 {s['latency_p99_ms']:.1f} ms (simulator)"
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
        ("camera stamp->safety output", cam),
        (
            "frame->policy_cmd (policy)",
            f"p50 {s['policy_latency_p50_ms']:.1f} ms, p99 {s['policy_latency_p99_ms']:.1f} ms "
            f"({s['policy_latency_frames']} frames; stamp to publish, policy's clock)",
        ),
        ("safety states", f"{states} (simulator time)"),
        ("fallbacks", f"{s['fallbacks']}"),
    ]
    if s["scenario"] == "car":
        lines += [
            (
                "lateral error",
                f"mean {s['mean_abs_lateral_error_m']:.2f} m, "
                f"max {s['max_abs_lateral_error_m']:.2f} m",
            ),
            ("lane departures", f"{s['lane_departures']}"),
            (
                "distance driven",
                f"{s['distance_m']:.1f} m ({s['progress_m']:.1f} m along the track)",
            ),
        ]
    else:
        ttt = s["time_to_target_s"]
        lines += [
            ("world / condition", f"seed {s['world_seed']} / {s['condition']}"),
            (
                "success",
                f"{'yes' if s['success'] else 'no'} (reached {'yes' if s['reached'] else 'no'}"
                f"{', time limit' if s['timed_out'] else ''})",
            ),
            ("time to target", "n/a" if ttt is None else f"{ttt:.2f} s"),
            (
                "final distance",
                f"{s['final_distance_m']:.2f} m (closest {s['min_distance_m']:.2f} m)",
            ),
            ("collisions", f"{s['collisions']}"),
            (
                "flight",
                f"{s['distance_flown_m']:.1f} m flown, ends {s['mode']} at "
                f"{s['final_altitude_m']:.2f} m",
            ),
        ]
    f = s.get("fault")
    if f is not None:
        if not f["fallback"]:
            lines.append(("policy SIGKILL", "no FALLBACK seen (!)"))
        else:
            lines += [
                (
                    "policy SIGKILL -> FALLBACK",
                    f"{f['fault_name']}: tick that counted the last command -> FALLBACK tick "
                    f"{_ms_text(f.get('fallback_after_last_command_ms'))} (command_timeout_s "
                    f"{1e3 * f['command_timeout_s']:.0f} ms; safety stamps); kill -> FALLBACK "
                    f"tick {f['kill_to_fallback_ms']:.0f} ms",
                ),
                (
                    "output at zero",
                    f"{_ms_text(f['zero_after_fallback_ms'])} after FALLBACK, last non-zero "
                    f"tick {f['last_nonzero_after_fallback_ms']:.0f} ms (bound "
                    f"{f['zero_bound_ms']:.0f} ms from the ramps: "
                    f"{'within' if f['zero_within_bound'] else 'EXCEEDED'})",
                ),
            ]
            if _fault_times(f):
                lines.append(("fault on the plot's axis", f"{_fault_times(f)} (simulator time)"))
            if "land_after_s" in f:
                lr = f["land_request_after_fallback_s"]
                lines.append(
                    (
                        "landing request",
                        ("none" if lr is None else f"{lr:.2f} s after FALLBACK")
                        + f" (land_after_s {f['land_after_s']:g})",
                    )
                )
            if "touchdown_after_fallback_s" in f:
                td = f["touchdown_after_fallback_s"]
                hs = f["hover_speed_mps"]
                lines.append(
                    (
                        "hover, landing",
                        ("hover speed n/a" if hs is None else f"hover speed {hs:.3f} m/s")
                        + ", touchdown "
                        + ("none" if td is None else f"{td:.2f} s after FALLBACK")
                        + f", mode {f['mode']}, collisions {f['collisions']} (simulator)",
                    )
                )
                lines.append(("landing", landing_outcome(f)))
    checks = s.get("checks", [])
    if checks:
        passed = sum(c["passed"] for c in checks)
        lines.append(("checks", f"{passed} / {len(checks)} passed"))
        lines += [
            (f"  {'ok' if c['passed'] else 'FAILED'}", f"{c['check']}: {c['seen']}") for c in checks
        ]
    lines.append(("times", s.get("time_base", TIME_BASE)))
    lines.append(("plot", s["plot"]))
    w = max(len(k) for k, _ in lines)
    print("\nltc-controller demo summary")
    for k, v in lines:
        print(f"  {k.ljust(w)}  {v}")
