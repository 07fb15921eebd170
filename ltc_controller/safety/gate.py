"""The safety gate: a small state machine with named faults, pure in (state, inputs, now).

States (DESIGN.md §6)::

    STARTUP  --inputs healthy-->            ACTIVE
    ACTIVE   --any fault-->                 FALLBACK
    FALLBACK --no fault, N heartbeats,
               auto_recover-->              ACTIVE
    any      --e-stop-->                    ESTOP (latched until a reset that is refused
                                                   while the e-stop input is still asserted)

Only ACTIVE passes the policy's command through (after validation and limits). Every other state
drives the fallback: speed ramps down to zero at ``max_decel`` and the steering is held or
centred (rate-limited), so the output never jumps. Limits are applied in a fixed order —
steering angle, steering rate, speed, acceleration — and each reports whether it was active.

Time is an argument (steady-clock seconds): tests need no sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import IntEnum


class SafetyState(IntEnum):
    """Values equal the ``STATE_*`` constants of ``msg/SafetyStatus.msg``."""

    STARTUP = 0
    ACTIVE = 1
    FALLBACK = 2
    ESTOP = 3
    TELEOP = 4


# Fault names (each has a counter and appears in SafetyStatus.faults).
COMMAND_TIMEOUT = "command_timeout"
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
COMMAND_NON_FINITE = "command_non_finite"
COMMAND_OUT_OF_RANGE = "command_out_of_range"
POLICY_FAULT = "policy_fault"
ESTOP = "estop"
FAULTS = (
    COMMAND_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    COMMAND_NON_FINITE,
    COMMAND_OUT_OF_RANGE,
    POLICY_FAULT,
    ESTOP,
)


@dataclass(frozen=True)
class GateConfig:
    """Limits and timeouts. Units: s, rad, rad/s, m/s, m/s²."""

    command_timeout_s: float = 0.25
    heartbeat_timeout_s: float = 0.5
    max_steering_angle: float = 0.5
    max_steering_rate: float = 2.0
    max_speed: float = 8.0
    min_speed: float = 0.0
    max_accel: float = 2.0
    max_decel: float = 4.0
    #: Commands beyond a limit by more than this fraction are a fault (a confused policy),
    #: within it they are clamped.
    out_of_range_tolerance: float = 0.1
    recovery_heartbeats: int = 10
    auto_recover: bool = True
    #: Fallback steering: "hold" the last output or "centre" it (rate-limited either way).
    fallback_steering: str = "hold"


@dataclass(frozen=True)
class Command:
    """A drive command: steering angle (rad, + = left, REP 103), speed (m/s), and the
    ``header.stamp`` it carried (integer ns, passed through unchanged so that the final command
    can be matched to the camera frame it came from)."""

    steering_angle: float
    speed: float
    stamp_ns: int = 0


@dataclass(frozen=True)
class GateInputs:
    """The newest inputs as the node's callbacks stored them (times on the steady clock, s).

    ``heartbeats`` counts healthy heartbeats since the node started; the gate compares it with
    the count it saw at the last fault to decide recovery.
    """

    command: Command | None = None
    command_time: float | None = None
    heartbeat_time: float | None = None
    heartbeats: int = 0
    policy_fault: bool = False
    estop: bool = False
    estop_reset_requested: bool = False


@dataclass(frozen=True)
class GateState:
    state: SafetyState = SafetyState.STARTUP
    output: Command = Command(0.0, 0.0)
    last_tick: float | None = None
    active_fault: str = ""
    heartbeats_at_fault: int = 0
    transitions: int = 0
    fault_counts: tuple[tuple[str, int], ...] = tuple((f, 0) for f in FAULTS)


@dataclass(frozen=True)
class GateOutput:
    command: Command
    faults: tuple[str, ...]
    active_limiters: tuple[str, ...]
    events: tuple[str, ...] = field(default=())


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def detect_faults(cfg: GateConfig, inputs: GateInputs, now: float) -> list[str]:
    """Names of the faults present at ``now`` (steady-clock s), in :data:`FAULTS` order."""
    faults: list[str] = []
    if inputs.command_time is None or now - inputs.command_time > cfg.command_timeout_s:
        faults.append(COMMAND_TIMEOUT)
    if inputs.heartbeat_time is None or now - inputs.heartbeat_time > cfg.heartbeat_timeout_s:
        faults.append(HEARTBEAT_TIMEOUT)
    cmd = inputs.command
    if cmd is not None:
        if not (math.isfinite(cmd.steering_angle) and math.isfinite(cmd.speed)):
            faults.append(COMMAND_NON_FINITE)
        else:
            tol = 1.0 + cfg.out_of_range_tolerance
            if (
                abs(cmd.steering_angle) > cfg.max_steering_angle * tol
                or cmd.speed > cfg.max_speed * tol
                or cmd.speed < cfg.min_speed - abs(cfg.max_speed) * cfg.out_of_range_tolerance
            ):
                faults.append(COMMAND_OUT_OF_RANGE)
    if inputs.policy_fault:
        faults.append(POLICY_FAULT)
    if inputs.estop:
        faults.append(ESTOP)
    return faults


def apply_limits(
    cfg: GateConfig, target: Command, previous: Command, dt: float
) -> tuple[Command, tuple[str, ...]]:
    """Limit ``target`` given the ``previous`` output and the tick interval ``dt`` (s).

    Order: steering angle, steering rate, speed, acceleration/deceleration. Returns the limited
    command and the names of the limiters that changed it.
    """
    active: list[str] = []
    steer = _clamp(target.steering_angle, -cfg.max_steering_angle, cfg.max_steering_angle)
    if steer != target.steering_angle:
        active.append("steering_angle")
    max_dsteer = cfg.max_steering_rate * dt
    limited = _clamp(
        steer, previous.steering_angle - max_dsteer, previous.steering_angle + max_dsteer
    )
    if limited != steer:
        active.append("steering_rate")
    speed = _clamp(target.speed, cfg.min_speed, cfg.max_speed)
    if speed != target.speed:
        active.append("speed")
    # Deceleration applies when the speed magnitude shrinks.
    lo = previous.speed - (cfg.max_decel if previous.speed > 0 else cfg.max_accel) * dt
    hi = previous.speed + (cfg.max_accel if previous.speed >= 0 else cfg.max_decel) * dt
    accel_limited = _clamp(speed, lo, hi)
    if accel_limited != speed:
        active.append("accel")
    return Command(limited, accel_limited, target.stamp_ns), tuple(active)


def fallback_target(cfg: GateConfig, previous: Command) -> Command:
    """The safe command (vehicle profile): stop, steering held or centred."""
    steer = previous.steering_angle if cfg.fallback_steering == "hold" else 0.0
    return Command(steer, 0.0, 0)


def tick(
    cfg: GateConfig, st: GateState, inputs: GateInputs, now: float
) -> tuple[GateState, GateOutput]:
    """One safety tick at steady time ``now`` (s): the new state and the command to send."""
    dt = 0.0 if st.last_tick is None else max(0.0, now - st.last_tick)
    faults = detect_faults(cfg, inputs, now)
    events: list[str] = []
    counts = dict(st.fault_counts)
    state = st.state
    active_fault = st.active_fault
    hb_at_fault = st.heartbeats_at_fault

    if inputs.estop and state != SafetyState.ESTOP:
        state, active_fault = SafetyState.ESTOP, ESTOP
        counts[ESTOP] += 1
    elif state == SafetyState.ESTOP:
        if inputs.estop_reset_requested:
            if inputs.estop:
                events.append("estop_reset_refused")
            else:
                state, active_fault = SafetyState.FALLBACK, ""
                hb_at_fault = inputs.heartbeats
                events.append("estop_reset")
    elif state == SafetyState.STARTUP:
        if not faults:
            state = SafetyState.ACTIVE
    elif state == SafetyState.ACTIVE:
        if faults:
            state, active_fault = SafetyState.FALLBACK, faults[0]
            hb_at_fault = inputs.heartbeats
            for f in faults:
                counts[f] += 1
    elif state == SafetyState.FALLBACK:
        if faults:
            hb_at_fault = inputs.heartbeats  # recovery needs N heartbeats with no fault
        elif cfg.auto_recover and inputs.heartbeats - hb_at_fault >= cfg.recovery_heartbeats:
            state, active_fault = SafetyState.ACTIVE, ""

    if state != st.state:
        events.append(f"{st.state.name}->{state.name}")

    if state == SafetyState.ACTIVE and inputs.command is not None:
        target = inputs.command
    else:
        target = fallback_target(cfg, st.output)
    out, limiters = apply_limits(cfg, target, st.output, dt)
    new_state = replace(
        st,
        state=state,
        output=out,
        last_tick=now,
        active_fault=active_fault,
        heartbeats_at_fault=hb_at_fault,
        transitions=st.transitions + (1 if state != st.state else 0),
        fault_counts=tuple(counts.items()),
    )
    return new_state, GateOutput(out, tuple(faults), limiters, tuple(events))
