"""What the ``ltc_policy`` node decides at each tick: pure functions, no transport, no clock.

The node's timer calls :func:`decide` with the runtime's :class:`~ltc_controller.runtime.loop
.TickResult`, the node's :class:`PolicyNodeState` and its :class:`CommandMapping`, and
publishes what comes back; the way :mod:`ltc_controller.safety.gate` serves the safety node.

**Command** (``command_type``, ``twist_mapping``): Ackermann: ``steering_angle`` = policy
``steering_angle`` x ``steering_scale`` clamped to +-``max_steering_angle``, ``speed`` = policy
``speed`` if it has one, else ``speed_mps``. Twist with ``twist_mapping: bicycle`` (a car):
``linear.x`` = that speed, ``angular.z`` = speed * tan(steering) / ``wheelbase_m`` (kinematic
bicycle). Twist with ``twist_mapping: direct`` (a drone policy): outputs named ``linear_x``,
``linear_y``, ``linear_z`` (x ``velocity_scale``) and ``angular_z`` (x ``yaw_rate_scale``) go to
those fields (missing ones are 0; a missing ``linear_x`` is ``speed`` or ``speed_mps``). A
non-finite command is never sent (counted; health FAULT ``non_finite_output``).

**Heartbeat** (the safety node's proof of health, DESIGN.md §6): only on a tick that sent a
finite command, met its deadline, acted on a frame no older than ``max_frame_age_s``, had none
of :data:`BAD_EVENTS`, and whose last tick with inference work (this one or the last one that
had a step due) met its deadline too. A tick with no step due meets any deadline, also while
the inference is stalled, so it cannot vouch for the inference by itself.

**Health**: the runtime watchdog's level and reasons, except while waiting for the first output
after a state reset or a policy swap (``grace``): ``no_frame``/``warming`` FAULTs are reported as
DEGRADED ``reset`` there, since the safety node's command and heartbeat timeouts cover that gap
and a FAULT would bounce it back to FALLBACK at every hand-back.

**Health log** (:class:`HealthLog`): every change of the published health level or reasons is
logged with the reasons that appeared or cleared and what each measured (misses in the window,
frame age, lag), rate-limited per reason: a reason that already had a line in the last
``period_s`` is counted instead, and the count goes out with its next line or, at the latest,
``period_s`` later. A fallback that the safety node blames on ``policy_fault`` therefore always
has its reason in the policy's log.

**State reset around a fallback** (:func:`resets_state`): ``state_reset_on: leave`` resets the
LTC state when the safety node leaves ACTIVE (the state re-warms while the fallback drives);
``handback`` when it hands control back (FALLBACK or ESTOP -> ACTIVE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ltc_controller.nodes.commands import ACKERMANN
from ltc_controller.params import ParameterError
from ltc_controller.runtime.loop import TickResult
from ltc_controller.runtime.watchdog import Health

__all__ = [
    "BAD_EVENTS",
    "CommandMapping",
    "Decision",
    "HealthLog",
    "health_details",
    "PolicyNodeState",
    "check_outputs",
    "command_values",
    "decide",
    "resets_state",
]

#: Runtime events after which a tick never sends a heartbeat.
BAD_EVENTS = frozenset(
    {
        "lag",
        "non_finite",
        "state_norm",
        "clock_jump_back",
        "stale_state",
        "stall",
        "clock_jump_fwd",
        "clock_stopped",
    }
)
#: Policy outputs each mapping understands.
_BICYCLE_OUTPUTS = frozenset({"steering_angle", "speed"})
_DIRECT_OUTPUTS = frozenset({"linear_x", "linear_y", "linear_z", "angular_z", "speed"})
#: Watchdog reasons that only say "no output yet" (covered by ``grace``).
_WAITING = frozenset({"no_frame", "warming"})


@dataclass(frozen=True)
class CommandMapping:
    """Policy outputs -> command axes (see the module docstring). Units: rad, m/s, m, rad/s."""

    command_type: str = ACKERMANN
    twist_mapping: str = "bicycle"
    wheelbase_m: float = 2.7
    speed_mps: float = 5.0
    steering_scale: float = 1.0
    max_steering_angle: float = 0.5
    velocity_scale: float = 1.0
    yaw_rate_scale: float = 1.0

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> CommandMapping:
        """The mapping the node's parameters give."""
        return cls(
            command_type=p["command_type"],
            twist_mapping=p["twist_mapping"],
            wheelbase_m=p["wheelbase_m"],
            speed_mps=p["speed_mps"],
            steering_scale=p["steering_scale"],
            max_steering_angle=p["max_steering_angle"],
            velocity_scale=p["velocity_scale"],
            yaw_rate_scale=p["yaw_rate_scale"],
        )

    @property
    def direct(self) -> bool:
        """Twist fields straight from the outputs (a drone policy)."""
        return self.command_type != ACKERMANN and self.twist_mapping == "direct"


def check_outputs(m: CommandMapping, names: Sequence[str], where: str) -> None:
    """Raise :class:`~ltc_controller.params.ParameterError` if outputs ``names`` do not fit
    the mapping (``where`` names the policy in the message)."""
    known = _DIRECT_OUTPUTS if m.direct else _BICYCLE_OUTPUTS
    unknown = [n for n in names if n not in known]
    if unknown:
        mapping = (
            "Ackermann"
            if m.command_type == ACKERMANN
            else f"Twist with twist_mapping={m.twist_mapping}"
        )
        if set(names) <= _BICYCLE_OUTPUTS:
            fits = f"command_type {ACKERMANN}, or a Twist type with twist_mapping bicycle"
        elif set(names) <= _DIRECT_OUTPUTS:
            fits = "command_type geometry_msgs/msg/Twist or TwistStamped with twist_mapping direct"
        else:
            fits = "no mapping (name the outputs after command axes when training)"
        raise ParameterError(
            f"{where}: policy outputs {list(names)}; {mapping} uses only "
            f"{sorted(known)} (unknown: {unknown}); these outputs fit {fits}"
        )


def command_values(m: CommandMapping, out: Mapping[str, float]) -> tuple[float, ...]:
    """Policy outputs by name -> the command's axis values, in ``nodes.commands.AXES`` order
    of ``m.command_type`` (see the module docstring)."""
    speed = out.get("speed", m.speed_mps)
    if not m.direct:
        lim = m.max_steering_angle
        steer = max(-lim, min(lim, out.get("steering_angle", 0.0) * m.steering_scale))
        if m.command_type == ACKERMANN:
            return (steer, speed)
        return (speed, 0.0, 0.0, speed * math.tan(steer) / m.wheelbase_m)
    vs = m.velocity_scale
    return (
        out["linear_x"] * vs if "linear_x" in out else speed,
        out.get("linear_y", 0.0) * vs,
        out.get("linear_z", 0.0) * vs,
        out.get("angular_z", 0.0) * m.yaw_rate_scale,
    )


@dataclass(frozen=True)
class PolicyNodeState:
    """What the node remembers between ticks besides the runtime.

    Attributes:
        grace: waiting for the first output after a state reset or a policy swap.
        work_ok: the last tick that had inference work met its deadline.
        heartbeats: heartbeats sent.
        non_finite_outputs: outputs that gave a non-finite command (not sent).
    """

    grace: bool = False
    work_ok: bool = False
    heartbeats: int = 0
    non_finite_outputs: int = 0


@dataclass(frozen=True)
class Decision:
    """What one tick publishes.

    Attributes:
        command: axis values to send on ``policy_cmd`` (``nodes.commands.AXES`` order), or
            None (no output yet, or a non-finite one).
        stamp_ns: the camera frame the command was computed from (``header.stamp``).
        heartbeat: send ``policy_heartbeat`` (stamped ``stamp_ns``).
        health, reasons: ``PolicyStatus.health``/``reasons``.
        non_finite: the outputs gave a non-finite command (log it).
        state: the node state after this tick.
    """

    command: tuple[float, ...] | None
    stamp_ns: int
    heartbeat: bool
    health: Health
    reasons: tuple[str, ...]
    non_finite: bool
    state: PolicyNodeState


def decide(
    r: TickResult,
    st: PolicyNodeState,
    m: CommandMapping,
    output_names: Sequence[str],
    ood_level: int = 0,
    attention_level: int = 0,
) -> Decision:
    """One tick's command, heartbeat and health from the runtime's result (module docstring).

    Args:
        r: the tick's result (``r.outputs``: ``(M,)`` in the policy's output units, or None).
        st: the node state before the tick.
        m: the command mapping.
        output_names: the policy's ``M`` output names.
        ood_level: the out-of-distribution monitor's level (0 OK, 1 DEGRADED, 2 FAULT; reason
            ``ood_features``), already capped by ``ood.hand_over``.
        attention_level: the attention monitor's level (reason ``attention_off_task``), already
            capped by ``attention.hand_over``.
    """
    work_ok = st.work_ok
    if r.steps > 0 or r.overrun or not r.deadline_met:
        work_ok = r.steps > 0 and r.deadline_met
    grace = st.grace
    command: tuple[float, ...] | None = None
    heartbeat = non_finite = False
    if r.outputs is not None:
        grace = False
        outs = r.outputs.tolist()
        values = command_values(m, dict(zip(output_names, outs, strict=False)))
        # Both: a NaN steering output survives the clamp as a finite value.
        if all(math.isfinite(v) for v in outs) and all(math.isfinite(v) for v in values):
            command = values
            heartbeat = (
                r.deadline_met and r.fresh and work_ok and not BAD_EVENTS.intersection(r.events)
            )
        else:
            non_finite = True
    health, reasons = Health(r.health), r.reasons
    if r.outputs is None and grace and health == Health.FAULT and _WAITING.issuperset(reasons):
        health, reasons = Health.DEGRADED, ("reset",)
    if non_finite:
        health, reasons = Health.FAULT, (*reasons, "non_finite_output")
    if ood_level > 0:
        health, reasons = max(health, Health(ood_level)), (*reasons, "ood_features")
    if attention_level > 0:
        health = max(health, Health(attention_level))
        reasons = (*reasons, "attention_off_task")
    return Decision(
        command=command,
        stamp_ns=r.frame_stamp_ns,
        heartbeat=heartbeat,
        health=health,
        reasons=reasons,
        non_finite=non_finite,
        state=replace(
            st,
            grace=grace,
            work_ok=work_ok,
            heartbeats=st.heartbeats + heartbeat,
            non_finite_outputs=st.non_finite_outputs + non_finite,
        ),
    )


def resets_state(reset_on: str, was: str, state: str) -> bool:
    """Whether a safety state change ``was`` -> ``state`` (``SafetyStatus.state_name``) resets
    the LTC state, for ``state_reset_on`` = ``"leave"`` or ``"handback"``."""
    if reset_on == "handback":
        return state == "ACTIVE" and was in ("FALLBACK", "ESTOP")
    return was == "ACTIVE" and state != "ACTIVE"


class HealthLog:
    """Lines for the policy's health transitions, at most one per reason per ``period_s``.

    Pure (time is passed in, s on a monotonic clock); :meth:`transition` is called only when
    the published ``(health, reasons)`` changed, :meth:`flush` once per tick (one comparison
    while nothing is pending). A transition's keys are the reasons that appeared (``overruns``)
    and cleared (``-overruns``); a level change with no reason change has key ``level``. It gets
    a line if any of its keys had none in the last ``period_s``; otherwise each key counts it as
    suppressed, and the count goes out with the key's next line or from :meth:`flush` once
    ``period_s`` has passed. Memory: one entry per reason code seen (a fixed, small set).

    Attributes:
        transitions: transitions seen; ``faults``: of them, the ones into FAULT;
        ``suppressed``: the ones counted instead of logged.

    Raises:
        ValueError: ``period_s`` < 0.
    """

    def __init__(self, period_s: float = 5.0) -> None:
        if not period_s >= 0.0:
            raise ValueError(f"HealthLog period_s must be >= 0, got {period_s}")
        self.period_s = period_s
        self.transitions = 0
        self.faults = 0
        self.suppressed = 0
        #: key -> (time of its last line, transitions suppressed since)
        self._keys: dict[str, tuple[float, int]] = {}
        self._flush_at = math.inf  # earliest time a suppressed count is due

    def transition(
        self,
        now: float,
        old: tuple[Health, tuple[str, ...]],
        new: tuple[Health, tuple[str, ...]],
        details: Mapping[str, str] | None = None,
    ) -> str | None:
        """The line for a change ``old`` -> ``new`` (``(health, reasons)``), or None when it is
        rate-limited. ``details`` maps a reason to what it measured (e.g. ``"5 misses in the
        last 1 s"``)."""
        self.transitions += 1
        if new[0] == Health.FAULT and old[0] != Health.FAULT:
            self.faults += 1
        added = [r for r in new[1] if r not in old[1]]
        cleared = [r for r in old[1] if r not in new[1]]
        keys = added + [f"-{r}" for r in cleared] or ["level"]
        never = (-math.inf, 0)
        if all(now - self._keys.get(k, never)[0] < self.period_s for k in keys):
            for k in keys:
                last, n = self._keys[k]
                self._keys[k] = (last, n + 1)
                self._flush_at = min(self._flush_at, last + self.period_s)
            self.suppressed += 1
            return None
        more = max(self._keys.get(k, never)[1] for k in keys)
        for k in keys:
            self._keys[k] = (now, 0)
        d = details or {}
        parts = [f"+{r}" + (f" ({d[r]})" if r in d else "") for r in added]
        parts += [f"-{r}" for r in cleared]
        line = (
            f"health {old[0].name} -> {new[0].name}: {'; '.join(parts) or 'level'}"
            f" [now: {', '.join(new[1]) or 'ok'}]"
        )
        if more:
            line += f" (+{more} such transitions suppressed in the last {self.period_s:g} s)"
        return line

    def flush(self, now: float, current: tuple[Health, tuple[str, ...]]) -> str | None:
        """One line counting the suppressed transitions once the ``period_s`` of one of their
        keys has run out (all keys with a count, in one line), or None."""
        if now < self._flush_at:
            return None
        # Once one key is due, every key with a count goes out in the same line (a flapping
        # reason has two keys, +r and -r, due a tick apart).
        self._flush_at = math.inf
        counted = [f"{k} x{n}" for k, (_, n) in self._keys.items() if n]
        for k, (_, n) in list(self._keys.items()):
            if n:
                self._keys[k] = (now, 0)
        if not counted:
            return None
        return (
            f"health: transitions suppressed in the last {self.period_s:g} s: "
            f"{', '.join(counted)}; now {current[0].name} ({', '.join(current[1]) or 'ok'})"
        )


def health_details(
    reasons: Sequence[str], r: TickResult, misses: int, window_s: float
) -> dict[str, str]:
    """What each of ``reasons`` measured at this tick, for :meth:`HealthLog.transition`:
    ``misses`` deadline misses within the watchdog's ``window_s`` (s), and the tick's frame age,
    lag and duration. Reasons with nothing to add are left out."""
    d: dict[str, str] = {}
    for reason in reasons:
        if reason in ("overruns", "deadline_miss"):
            d[reason] = (
                f"deadline misses in the last {window_s:g} s: {misses}; this tick "
                f"{r.duration_s * 1e3:.1f} ms, steps postponed: {r.backlog_steps}"
            )
        elif reason in ("stale_frame", "late_frame"):
            d[reason] = f"frame age {r.frame_age_s:.3f} s"
        elif reason in ("lag", "lagging"):
            d[reason] = f"lag {r.lag_s:.3f} s"
    return d
