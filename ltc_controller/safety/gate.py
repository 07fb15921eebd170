"""The safety gate: a small state machine with named faults, pure in (config, state, inputs, now).

States (values equal ``STATE_*`` in ``msg/SafetyStatus.msg``; DESIGN.md §6)::

    STARTUP  --no fault and N heartbeats seen-->                  ACTIVE
    ACTIVE   --any fault-->                                       FALLBACK
    FALLBACK --no fault for N heartbeats, auto_recover
               (or a reset request when auto_recover is off)-->   ACTIVE
    STARTUP/ACTIVE/FALLBACK --fresh teleop command-->             TELEOP
    TELEOP   --teleop stale (cause "teleop_released")-->          FALLBACK
    any      --e-stop asserted-->                                 ESTOP
    ESTOP    --reset request while the e-stop is released-->      FALLBACK
             (a reset while it is still asserted is refused: event "estop_reset_refused")
    (start)  --the e-stop was latched when the node last ran-->   ESTOP
             (:func:`initial_state` with ``estop_latched``; the node keeps the latch on disk)

Priority, highest first: e-stop, teleop, policy — as twist_mux's lock > high-priority input >
low-priority input, but the output never goes silent: every state has a defined command.

Output by state: ACTIVE passes the policy command, TELEOP the teleop command; STARTUP, FALLBACK
and ESTOP send the *fallback target*: per axis ``zero`` (ramp to 0 at the axis's ``decel``: stop,
hover, centre the steering), ``hold`` (keep the last output: hold the steering) or
``hold_curvature`` (yaw rate = last curvature × the forward speed being sent, for a car driven by
Twist, so "hold steering" stays a path, not a spin). Everything goes through
:func:`~ltc_controller.safety.limits.limit_axis` (value, rate, jerk; fixed order, each reporting
whether it acted). On every state change the limiters are *seeded*: from measured odometry when
it is fresh, else from the last output, and with zero rate — so the output never jumps and a
fallback brakes from the speed the vehicle really has (vehicle_cmd_gate PR #2717).

Fault names and their order (:data:`FAULTS`); each has a counter of rising edges:
``shutdown`` (the node is stopping: it brings the vehicle to its fallback target before it
exits; teleop is ignored from then on), ``command_timeout``, ``heartbeat_timeout``,
``command_stale`` (the stamp of the command, i.e. of its camera frame, older than
``command_max_age_s``), ``command_non_finite``, ``command_out_of_range`` (beyond a limit by more
than the tolerance: clamping would hide a confused policy), ``policy_fault`` (the policy's status
says FAULT), ``estop``; and the cause ``teleop_released`` (FALLBACK entered because the operator
stopped sending).

Time is an argument (steady-clock seconds): the tests need no sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum

from ltc_controller.safety.limits import AxisLimits, limit_axis


class SafetyState(IntEnum):
    """Values equal the ``STATE_*`` constants of ``msg/SafetyStatus.msg``."""

    STARTUP = 0
    ACTIVE = 1
    FALLBACK = 2
    ESTOP = 3
    TELEOP = 4


class Fault(StrEnum):
    """Faults and causes, in reporting order: the first present fault names a FALLBACK
    (``SafetyStatus.active_fault``, ``faults``; diagnostics keys ``faults.<name>``)."""

    SHUTDOWN = "shutdown"
    COMMAND_TIMEOUT = "command_timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    COMMAND_STALE = "command_stale"
    COMMAND_NON_FINITE = "command_non_finite"
    COMMAND_OUT_OF_RANGE = "command_out_of_range"
    POLICY_FAULT = "policy_fault"
    ESTOP = "estop"
    TELEOP_RELEASED = "teleop_released"


#: Every fault and cause, in reporting order.
FAULTS: tuple[Fault, ...] = tuple(Fault)


class GateEvent(StrEnum):
    """What a tick did besides a state change (``SafetyStatus.events`` spells these values)."""

    ESTOP_RESET = "estop_reset"
    ESTOP_RESET_REFUSED = "estop_reset_refused"
    REENGAGED = "reengaged"
    REENGAGE_REFUSED = "reengage_refused"
    LAND_REQUESTED = "land_requested"

    @property
    def refused(self) -> bool:
        """A reset or re-engage request that the gate refused."""
        return self in (GateEvent.ESTOP_RESET_REFUSED, GateEvent.REENGAGE_REFUSED)


#: Fallback modes of an axis.
FALLBACK_MODES = ("zero", "hold", "hold_curvature")
#: Axes that carry a velocity: their fallback must be ``zero`` (stop / hover).
VELOCITY_AXES = frozenset({"speed", "linear_x", "linear_y", "linear_z"})
#: The axis whose sent value ``hold_curvature`` follows.
CURVATURE_REFERENCE = ("speed", "linear_x")


def _vehicle_axes() -> tuple[AxisLimits, ...]:
    return (
        AxisLimits("steering_angle", -0.5, 0.5, 2.0, 2.0),
        AxisLimits("speed", 0.0, 8.0, 2.0, 4.0),
    )


@dataclass(frozen=True)
class GateConfig:
    """Axes, limits, timeouts. Units: s, and each axis's own (see ``nodes.commands.UNITS``).

    ``axes`` and ``fallback`` (one mode of :data:`FALLBACK_MODES` per axis) come from the
    profile in ``config/*.yaml``; the default is the Ackermann vehicle.

    Raises:
        ValueError: ``fallback`` does not match ``axes``, a velocity axis does not fall back to
            ``zero``, ``hold_curvature`` without a forward-speed axis before it, or a timeout
            that is not positive; the message names the field.
    """

    axes: tuple[AxisLimits, ...] = field(default_factory=_vehicle_axes)
    fallback: tuple[str, ...] = ("hold", "zero")
    command_timeout_s: float = 0.25
    heartbeat_timeout_s: float = 0.5
    #: Fault when the command's stamp (its camera frame) is older than this; 0 = off.
    command_max_age_s: float = 0.0
    #: Commands beyond a limit by more than this fraction of the bound are a fault; within it
    #: they are clamped.
    out_of_range_tolerance: float = 0.1
    recovery_heartbeats: int = 10
    auto_recover: bool = True
    teleop_timeout_s: float = 0.25
    #: Request a landing after this long in FALLBACK/ESTOP; 0 = never (vehicles).
    land_after_s: float = 0.0
    #: Odometry older than this does not seed the limiters.
    odom_timeout_s: float = 0.2

    def __post_init__(self) -> None:
        if len(self.fallback) != len(self.axes):
            raise ValueError(
                f"fallback: {len(self.fallback)} modes for {len(self.axes)} axes "
                f"({', '.join(a.name for a in self.axes)})"
            )
        names = [a.name for a in self.axes]
        for i, (lim, mode) in enumerate(zip(self.axes, self.fallback, strict=True)):
            if mode not in FALLBACK_MODES:
                raise ValueError(f"fallback of {lim.name}: {mode!r} is not one of {FALLBACK_MODES}")
            if lim.name in VELOCITY_AXES and mode != "zero":
                raise ValueError(
                    f"fallback of {lim.name}: a velocity axis must fall back to 'zero' "
                    f"(stop / hover), got {mode!r}"
                )
            if mode == "hold_curvature" and not any(n in CURVATURE_REFERENCE for n in names[:i]):
                raise ValueError(
                    f"fallback of {lim.name}: 'hold_curvature' needs a forward-speed axis "
                    f"({' or '.join(CURVATURE_REFERENCE)}) before it"
                )
        for name in ("command_timeout_s", "heartbeat_timeout_s", "teleop_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.recovery_heartbeats < 1:
            raise ValueError(f"recovery_heartbeats: must be >= 1, got {self.recovery_heartbeats}")

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)


@dataclass(frozen=True)
class Command:
    """One command: ``values`` over the config's axes (units per axis), and the
    ``header.stamp`` it carried (integer ns, 0 when unknown), passed through unchanged so the
    final command can be matched to the camera frame it came from."""

    values: tuple[float, ...]
    stamp_ns: int = 0


@dataclass(frozen=True)
class GateInputs:
    """The newest inputs as the node's callbacks stored them (times on the steady clock, s).

    ``heartbeats`` counts healthy heartbeats since the node started; ``command_age_s`` is the
    age of the command's stamp in ROS time when it arrived (NaN when it carries none);
    ``measured`` holds odometry per axis (None where odometry does not measure the axis).
    ``reset_requested`` is one request (e-stop clear, or re-engage when auto_recover is off).
    """

    command: Command | None = None
    command_time: float | None = None
    command_age_s: float = math.nan
    heartbeat_time: float | None = None
    heartbeats: int = 0
    policy_fault: bool = False
    estop: bool = False
    shutdown: bool = False
    reset_requested: bool = False
    teleop: Command | None = None
    teleop_time: float | None = None
    measured: tuple[float | None, ...] | None = None
    measured_time: float | None = None


@dataclass(frozen=True)
class GateState:
    """Everything the gate remembers between ticks. Start with :func:`initial_state`."""

    state: SafetyState = SafetyState.STARTUP
    output: tuple[float, ...] = ()
    rates: tuple[float, ...] = ()
    last_tick: float | None = None
    since: float | None = None
    fallback_since: float | None = None
    active_fault: Fault | None = None
    heartbeats_at_fault: int = 0
    transitions: int = 0
    faults_present: tuple[Fault, ...] = ()
    fault_counts: tuple[tuple[Fault, int], ...] = tuple((f, 0) for f in FAULTS)
    resets_refused: int = 0
    land_requested: bool = False


def initial_state(cfg: GateConfig, estop_latched: bool = False) -> GateState:
    """STARTUP with a zero output on every axis; ESTOP (cause ``estop``) instead when
    ``estop_latched``: a node restarted while its e-stop was latched stays latched until the
    same explicit reset it needed before."""
    n = len(cfg.axes)
    if estop_latched:
        return GateState(
            state=SafetyState.ESTOP, output=(0.0,) * n, rates=(0.0,) * n, active_fault=Fault.ESTOP
        )
    return GateState(output=(0.0,) * n, rates=(0.0,) * n)


@dataclass(frozen=True)
class GateOutput:
    """What a tick sends: the command, the faults present, the limiters that acted, the state
    change (``(before, after)`` or None), other events, and whether a landing is requested
    (FALLBACK/ESTOP for ``land_after_s`` or more)."""

    command: Command
    faults: tuple[Fault, ...]
    active_limiters: tuple[str, ...]
    transition: tuple[SafetyState, SafetyState] | None = None
    events: tuple[GateEvent, ...] = ()
    land_request: bool = False


def command_fault(cfg: GateConfig, cmd: Command) -> Fault | None:
    """None if ``cmd`` may be used, else the fault it is (non-finite, out of range)."""
    if len(cmd.values) != len(cfg.axes) or not all(math.isfinite(v) for v in cmd.values):
        return Fault.COMMAND_NON_FINITE
    for lim, v in zip(cfg.axes, cmd.values, strict=True):
        if lim.out_of_range(v, cfg.out_of_range_tolerance):
            return Fault.COMMAND_OUT_OF_RANGE
    return None


def detect_faults(cfg: GateConfig, inputs: GateInputs, now: float) -> tuple[Fault, ...]:
    """Names of the faults present at ``now`` (steady-clock s), in :data:`FAULTS` order."""
    found: set[Fault] = set()
    if inputs.shutdown:
        found.add(Fault.SHUTDOWN)
    if inputs.command_time is None or now - inputs.command_time > cfg.command_timeout_s:
        found.add(Fault.COMMAND_TIMEOUT)
    if inputs.heartbeat_time is None or now - inputs.heartbeat_time > cfg.heartbeat_timeout_s:
        found.add(Fault.HEARTBEAT_TIMEOUT)
    cmd = inputs.command
    if cmd is not None:
        if (
            cfg.command_max_age_s > 0.0
            and math.isfinite(inputs.command_age_s)
            and inputs.command_time is not None
            and inputs.command_age_s + (now - inputs.command_time) > cfg.command_max_age_s
        ):
            found.add(Fault.COMMAND_STALE)
        bad = command_fault(cfg, cmd)
        if bad:
            found.add(bad)
    if inputs.policy_fault:
        found.add(Fault.POLICY_FAULT)
    if inputs.estop:
        found.add(Fault.ESTOP)
    return tuple(f for f in FAULTS if f in found)


def fresh_teleop(cfg: GateConfig, inputs: GateInputs, now: float) -> Command | None:
    """The teleop command if it is recent and finite, else None."""
    t = inputs.teleop
    if (
        inputs.shutdown
        or t is None
        or inputs.teleop_time is None
        or now - inputs.teleop_time > cfg.teleop_timeout_s
    ):
        return None
    if len(t.values) != len(cfg.axes) or not all(math.isfinite(v) for v in t.values):
        return None
    return t


def _seed(
    cfg: GateConfig, output: tuple[float, ...], inputs: GateInputs, now: float
) -> tuple[float, ...]:
    """The limiter start point on a state change: measured values where odometry is fresh."""
    m = inputs.measured
    if (
        m is None
        or inputs.measured_time is None
        or now - inputs.measured_time > cfg.odom_timeout_s
        or len(m) != len(output)
    ):
        return output
    return tuple(
        o if v is None or not math.isfinite(v) else v for o, v in zip(output, m, strict=True)
    )


_SAFE_STATES = (SafetyState.FALLBACK, SafetyState.ESTOP)


def tick(
    cfg: GateConfig, st: GateState, inputs: GateInputs, now: float
) -> tuple[GateState, GateOutput]:
    """One safety tick at steady time ``now`` (s): the new state and the command to send."""
    n = len(cfg.axes)
    prev = st.output if len(st.output) == n else (0.0,) * n
    prev_rates = st.rates if len(st.rates) == n else (0.0,) * n
    dt = 0.0 if st.last_tick is None else max(0.0, now - st.last_tick)
    faults = detect_faults(cfg, inputs, now)
    teleop = fresh_teleop(cfg, inputs, now)
    events: list[GateEvent] = []
    counts = dict(st.fault_counts)
    for f in FAULTS:
        counts.setdefault(f, 0)
    if st.state != SafetyState.STARTUP:  # inputs not up yet at start-up is expected
        for f in faults:
            if f not in st.faults_present:
                counts[f] += 1
    state, cause, hb_mark = st.state, st.active_fault, st.heartbeats_at_fault
    refused = st.resets_refused
    healthy_hbs = inputs.heartbeats - hb_mark

    if inputs.estop:
        if state != SafetyState.ESTOP:
            state, cause = SafetyState.ESTOP, Fault.ESTOP
        if inputs.reset_requested:
            events.append(GateEvent.ESTOP_RESET_REFUSED)
            refused += 1
    elif state == SafetyState.ESTOP:
        if inputs.reset_requested:
            state, hb_mark = SafetyState.FALLBACK, inputs.heartbeats
            events.append(GateEvent.ESTOP_RESET)
    elif teleop is not None:
        if state != SafetyState.TELEOP:
            state, cause = SafetyState.TELEOP, None
    elif state == SafetyState.TELEOP:
        state, cause, hb_mark = SafetyState.FALLBACK, Fault.TELEOP_RELEASED, inputs.heartbeats
        counts[Fault.TELEOP_RELEASED] += 1
    elif state == SafetyState.STARTUP:
        if not faults and inputs.heartbeats >= cfg.recovery_heartbeats:
            state = SafetyState.ACTIVE
    elif state == SafetyState.ACTIVE:
        if faults:
            state, cause, hb_mark = SafetyState.FALLBACK, faults[0], inputs.heartbeats
    elif state == SafetyState.FALLBACK:
        if faults:
            hb_mark = inputs.heartbeats  # recovery counts heartbeats with no fault at all
            if inputs.reset_requested:
                events.append(GateEvent.REENGAGE_REFUSED)
                refused += 1
        elif healthy_hbs >= cfg.recovery_heartbeats and (
            cfg.auto_recover or inputs.reset_requested
        ):
            state, cause = SafetyState.ACTIVE, None
            if inputs.reset_requested:
                events.append(GateEvent.REENGAGED)
        elif inputs.reset_requested and not cfg.auto_recover:
            events.append(GateEvent.REENGAGE_REFUSED)
            refused += 1

    changed = state != st.state
    since = now if changed or st.since is None else st.since
    fallback_since = st.fallback_since
    if state in _SAFE_STATES:
        if fallback_since is None:
            fallback_since = now
    else:
        fallback_since = None
    if changed:
        prev = _seed(cfg, prev, inputs, now)
        prev_rates = (0.0,) * n

    # Targets, then the limiters, axis by axis (hold_curvature reads this tick's speed).
    if state == SafetyState.ACTIVE and inputs.command is not None:
        source: Command | None = inputs.command
    elif state == SafetyState.TELEOP:
        source = teleop
    else:
        source = None
    values: list[float] = []
    rates: list[float] = []
    active: list[str] = []
    for i, lim in enumerate(cfg.axes):
        if source is not None:
            target = source.values[i]
        else:
            mode = cfg.fallback[i]
            if mode == "hold":
                target = prev[i]
            elif mode == "hold_curvature":
                r = max(j for j in range(i) if cfg.axes[j].name in CURVATURE_REFERENCE)
                kappa = prev[i] / prev[r] if abs(prev[r]) > 1e-3 else 0.0
                target = kappa * values[r]
            else:
                target = 0.0
        v, rate, acts = limit_axis(lim, target, prev[i], prev_rates[i], dt)
        values.append(v)
        rates.append(rate)
        active.extend(acts)

    land = (
        cfg.land_after_s > 0.0
        and fallback_since is not None
        and now - fallback_since >= cfg.land_after_s
    )
    if land and not st.land_requested:
        events.append(GateEvent.LAND_REQUESTED)
    stamp = source.stamp_ns if source is not None else 0
    new_state = replace(
        st,
        state=state,
        output=tuple(values),
        rates=tuple(rates),
        last_tick=now,
        since=since,
        fallback_since=fallback_since,
        active_fault=cause,
        heartbeats_at_fault=hb_mark,
        transitions=st.transitions + (1 if changed else 0),
        faults_present=faults,
        fault_counts=tuple((f, counts[f]) for f in FAULTS),
        resets_refused=refused,
        land_requested=land,
    )
    return new_state, GateOutput(
        Command(tuple(values), stamp),
        faults,
        tuple(active),
        (st.state, state) if changed else None,
        tuple(events),
        land,
    )
