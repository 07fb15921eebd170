"""``safety_fallback``: the only node that talks to the actuators.

Callbacks store the newest input and return; a steady-clock timer at ``rate_hz`` runs the pure
:func:`ltc_controller.safety.gate.tick` and publishes its command — always, also when every input
has gone silent (the timer depends on none of them, and it runs on the steady clock, which keeps
going when ROS time stops). States, faults, limits and profiles: :mod:`ltc_controller.safety.gate`
and DESIGN.md §6; the profile (vehicle, drone) is the parameter file.

Topics (relative names, so ``-r __ns:=/car1`` moves them all; ``CMD`` = ``command_type``):

- in  ``policy_cmd`` (CMD), ``policy_heartbeat`` (``std_msgs/msg/Header``), ``policy_status``
  (``ltc_controller/msg/PolicyStatus``; health FAULT is the fault ``policy_fault``)
- in  ``teleop_cmd`` (CMD): overrides the policy while fresh (``teleop_timeout_s``)
- in  ``estop`` (``std_msgs/msg/Bool``, latched QoS: reliable, transient local), latched here
  until a reset
- in  ``estop_reset`` (``std_msgs/msg/Bool``, ``data: true``): clears a latched e-stop — refused
  (logged, status event ``estop_reset_refused``) while the e-stop is still asserted; when
  ``auto_recover`` is false the same request re-engages the policy after FALLBACK
- in  ``odom`` (``nav_msgs/msg/Odometry``, best effort) when ``use_odometry``: seeds the
  limiters with the measured velocity on every state change
- out ``ackermann_cmd`` (Ackermann) or ``cmd_vel`` (Twist, TwistStamped): the final command
- out ``land`` (``std_msgs/msg/Empty``): a landing request after ``land_after_s`` in
  FALLBACK/ESTOP, repeated once a second while that lasts (drone profile)
- out ``safety_status`` (``ltc_controller/msg/SafetyStatus``) every tick, ``/diagnostics``
  (``diagnostic_msgs/msg/DiagnosticArray``) every ``diagnostics_period_s``

E-stop across restarts: the latch is kept in ``estop_state_file`` (:mod:`.estop_state`; default
``$ROS_HOME/ltc_controller/estop/<namespace>.<node>.json``), written atomically on every latch
and accepted reset. A node that starts while the file says latched, or cannot read it, starts in
ESTOP and stays there until an ``estop_reset`` (logged with the command to use); no file = not
latched. Whether the e-stop was still *asserted* is not kept (a live source sends it again).
Once a second the node counts the publishers on ``estop``; when the last one leaves while the
e-stop is asserted or latched it logs that once, with how to clear it: ``ltc-controller estop
release`` (``data: false`` on ``estop``; needed only when the last value was "asserted"), then
``ltc-controller estop reset`` (``data: true`` on ``estop_reset``), each with ``--namespace``.

A service for the e-stop reset is not offered yet: the transport port has no services (a
``std_srvs/Trigger`` wrapper around the same request is the natural addition).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ltc_controller.nodes import commands as C
from ltc_controller.nodes import estop_state
from ltc_controller.nodes.safety_profile import (
    AXIS_DEFAULTS,
    STEERING_FALLBACK,
    YAW_RATE_FALLBACK,
    beyond_ceiling,
    ceilings,
    gate_config_from_params,
)
from ltc_controller.nodes.stamps import diagnostic_name, fully_qualified_name, header
from ltc_controller.params import COMMON, DIAGNOSTICS_PERIOD, ParameterError, ParamSpec, resolve
from ltc_controller.runtime.watchdog import Health
from ltc_controller.safety.gate import (
    FAULTS,
    Command,
    Fault,
    GateConfig,
    GateEvent,
    GateInputs,
    GateOutput,
    SafetyState,
    command_fault,
    initial_state,
    tick,
)
from ltc_controller.transport.port import LATCHED, RELIABLE, SENSOR_DATA, Node

_D = GateConfig()


def fault_name(fault: Fault | None) -> str:
    """``SafetyStatus.active_fault``: the fault's name, ``""`` for none."""
    return "" if fault is None else fault.value


def transition_name(change: tuple[SafetyState, SafetyState]) -> str:
    """``"ACTIVE->FALLBACK"``: how ``SafetyStatus.events`` and the log spell a state change."""
    return f"{change[0].name}->{change[1].name}"


def event_names(out: GateOutput) -> list[str]:
    """``SafetyStatus.events`` of a tick: the state change first, then the gate's events."""
    names = [] if out.transition is None else [transition_name(out.transition)]
    return names + [e.value for e in out.events]


def _limit_specs() -> tuple[ParamSpec, ...]:
    specs: list[ParamSpec] = []
    for axis, (lo, hi, acc, dec, jerk) in AXIS_DEFAULTS.items():
        u = C.UNITS[axis]
        k = f"limits.{axis}"
        specs += [
            ParamSpec(f"{k}.min", float, lo, f"Lowest {axis} sent (<= 0)", u, -100.0, 0.0),
            ParamSpec(f"{k}.max", float, hi, f"Highest {axis} sent (>= 0)", u, 0.0, 100.0),
            ParamSpec(
                f"{k}.ceiling",
                float,
                0.0,
                "Bound on max and -min for run-time sets; 0 = the start-up min/max",
                u,
                0.0,
                100.0,
                read_only=True,
            ),
            ParamSpec(
                f"{k}.accel", float, acc, f"Rate limit while |{axis}| grows", f"{u}/s", 0.0, 1e3
            ),
            ParamSpec(
                f"{k}.decel",
                float,
                dec,
                f"Rate limit while |{axis}| shrinks (also the fallback ramp)",
                f"{u}/s",
                1e-3,
                1e3,
            ),
            ParamSpec(
                f"{k}.jerk",
                float,
                jerk,
                f"Limit on how fast the {axis} rate builds up; 0 = off",
                f"{u}/s^2",
                0.0,
                1e4,
            ),
        ]
    return tuple(specs)


PARAMS: tuple[ParamSpec, ...] = (
    COMMON
    + (
        ParamSpec(
            "command_type",
            str,
            C.ACKERMANN,
            "Type of policy_cmd, teleop_cmd and the final command (selects the axes)",
            choices=C.COMMAND_TYPES,
            read_only=True,
        ),
        ParamSpec(
            "rate_hz",
            float,
            50.0,
            "Safety tick (and output) rate",
            "Hz",
            1.0,
            1000.0,
            read_only=True,
        ),
        ParamSpec(
            "command_timeout_s",
            float,
            _D.command_timeout_s,
            "Fallback when no policy command arrived for this long",
            "s",
            0.001,
            10.0,
        ),
        ParamSpec(
            "heartbeat_timeout_s",
            float,
            _D.heartbeat_timeout_s,
            "Fallback when no healthy heartbeat arrived for this long",
            "s",
            0.001,
            10.0,
        ),
        ParamSpec(
            "command_max_age_s",
            float,
            _D.command_max_age_s,
            "Fallback when the command's stamp (its camera frame) is older than this; 0 = off",
            "s",
            0.0,
            10.0,
        ),
        ParamSpec(
            "out_of_range_tolerance",
            float,
            _D.out_of_range_tolerance,
            "Commands beyond a limit by more than this fraction are a fault (else clamped)",
            "",
            0.0,
            10.0,
        ),
        ParamSpec(
            "recovery_heartbeats",
            int,
            _D.recovery_heartbeats,
            "Healthy heartbeats (with no fault) needed to go ACTIVE",
            "",
            1,
            100000,
        ),
        ParamSpec(
            "auto_recover",
            bool,
            _D.auto_recover,
            "Leave FALLBACK by itself after recovery; false = only on an estop_reset request",
        ),
        ParamSpec(
            "teleop_timeout_s",
            float,
            _D.teleop_timeout_s,
            "TELEOP lasts while teleop commands are younger than this",
            "s",
            0.001,
            10.0,
        ),
        ParamSpec(
            "fallback_steering",
            str,
            "hold",
            "Steering angle in fallback (Ackermann)",
            choices=tuple(STEERING_FALLBACK),
        ),
        ParamSpec(
            "fallback_yaw_rate",
            str,
            "hold_curvature",
            "Yaw rate in fallback (Twist): zero, or keep the curvature while slowing",
            choices=tuple(YAW_RATE_FALLBACK),
        ),
        ParamSpec(
            "land_after_s",
            float,
            _D.land_after_s,
            "Request a landing after this long in FALLBACK/ESTOP; 0 = never",
            "s",
            0.0,
            3600.0,
        ),
        ParamSpec(
            "use_odometry",
            bool,
            False,
            "Seed the limiters from odom on state changes",
            read_only=True,
        ),
        ParamSpec(
            "odom_timeout_s",
            float,
            _D.odom_timeout_s,
            "Odometry older than this does not seed the limiters",
            "s",
            0.001,
            10.0,
        ),
        ParamSpec(
            "shutdown_ramp_max_s",
            float,
            2.0,
            "On SIGINT/SIGTERM, keep sending the fallback ramp this long at most before exiting",
            "s",
            0.0,
            10.0,
        ),
        ParamSpec(
            "estop_state_file",
            str,
            "",
            "Where the e-stop latch is kept across restarts; empty = "
            "$ROS_HOME/ltc_controller/estop/<namespace>.<node>.json (ROS_HOME: ~/.ros)",
            read_only=True,
        ),
        DIAGNOSTICS_PERIOD,
    )
    + _limit_specs()
)

#: diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2
_LEVEL = {
    SafetyState.ACTIVE: OK,
    SafetyState.STARTUP: WARN,
    SafetyState.TELEOP: WARN,
    SafetyState.FALLBACK: ERROR,
    SafetyState.ESTOP: ERROR,
}
_LAND_REPEAT_S = 1.0
_REJECT_LOG_PERIOD_S = 1.0
#: State changes kept in :attr:`SafetyNode.fault_log` (the newest; counts are kept in full).
FAULT_LOG_LEN = 256
#: How often the e-stop source (publishers on ``estop``) is looked at, s.
_ESTOP_SOURCE_PERIOD_S = 1.0


class SafetyNode:
    """The ``safety_fallback`` node on a transport :class:`~ltc_controller.transport.port.Node`.

    Raises:
        ParameterError: an unknown or invalid parameter, or limits that contradict each other
            (at construction, before any topic exists); the message names the parameter.
    """

    def __init__(self, node: Node, params: Mapping[str, Any] | None = None) -> None:
        self.node = node
        # Parameters come from the node (command line, params files) unless given directly.
        self.p = p = node.declare_parameters(PARAMS) if params is None else resolve(PARAMS, params)
        try:
            self.cfg = gate_config_from_params(p)
            self._ceilings = ceilings(p)
        except ValueError as e:
            raise ParameterError(str(e)) from None
        self.cmd_type: str = p["command_type"]
        self.axes = C.AXES[self.cmd_type]
        self.estop_file = (
            Path(p["estop_state_file"]).expanduser()
            if p["estop_state_file"]
            else estop_state.default_path(node.namespace, node.name)
        )
        self.estop_file_errors = 0
        record = estop_state.read_record(self.estop_file)
        self.estop_latched_at_start = record.latched
        self.state = initial_state(self.cfg, estop_latched=record.latched)
        self.inputs = GateInputs()
        self.last_output: GateOutput | None = None
        self.commands_received = 0
        self.commands_rejected = 0
        self.teleop_received = 0
        self.teleop_rejected = 0
        self.odom_received = 0
        self.ticks = 0
        self._waiting_logged = node.steady()
        self.limiter_counts: dict[str, int] = {}
        self._limiters_since_diag: set[str] = set()
        #: the newest state changes as (ROS time s, "A->B"); bounded: a node that runs for
        #: days must not grow (SafetyStatus.transitions counts them all)
        self.fault_log: deque[tuple[float, str]] = deque(maxlen=FAULT_LOG_LEN)
        #: writers on ``estop`` at the last look (-1: the transport cannot tell)
        self.estop_publishers = 0
        self._estop_source_seen = False
        self._estop_source_warned = False
        self._latch_changed = False
        self._last_land_pub = -math.inf
        self._last_reject_log = -math.inf
        self._diag_ticks = 0
        self._diag_time = node.steady()
        t = self.cmd_type
        node.create_subscription(t, "policy_cmd", self._on_command, RELIABLE)
        node.create_subscription("std_msgs/msg/Header", "policy_heartbeat", self._on_hb, RELIABLE)
        node.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", self._on_status, RELIABLE
        )
        node.create_subscription(t, "teleop_cmd", self._on_teleop, RELIABLE)
        node.create_subscription("std_msgs/msg/Bool", "estop", self._on_estop, LATCHED)
        node.create_subscription("std_msgs/msg/Bool", "estop_reset", self._on_reset, RELIABLE)
        if p["use_odometry"]:
            node.create_subscription("nav_msgs/msg/Odometry", "odom", self._on_odom, SENSOR_DATA)
        self.pub_cmd = node.create_publisher(t, C.OUTPUT_TOPIC[t], RELIABLE)
        self.pub_land = node.create_publisher("std_msgs/msg/Empty", "land", RELIABLE)
        self.pub_status = node.create_publisher(
            "ltc_controller/msg/SafetyStatus", "safety_status", RELIABLE
        )
        self.pub_diag = node.create_publisher(
            "diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", RELIABLE
        )
        node.on_parameters_set(self._validate_set)
        self.timer = node.create_timer(1.0 / p["rate_hz"], self._tick)
        self.diag_timer = node.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.estop_timer = node.create_timer(_ESTOP_SOURCE_PERIOD_S, self._check_estop_source)
        self._start_estop_latch(record)
        node.logger.info(
            f"safety_fallback: {t} on {C.OUTPUT_TOPIC[t]}, axes {', '.join(self.axes)}, "
            f"{p['rate_hz']} Hz, command timeout {self.cfg.command_timeout_s} s, heartbeat "
            f"timeout {self.cfg.heartbeat_timeout_s} s, fallback "
            f"{', '.join(f'{a}={m}' for a, m in zip(self.axes, self.cfg.fallback, strict=True))}"
            + (f", land after {self.cfg.land_after_s} s" if self.cfg.land_after_s > 0 else "")
        )

    def close(self) -> None:
        """Bring the vehicle to its fallback target before the node exits (SIGINT, SIGTERM).

        The gate gets the fault ``shutdown`` (teleop is ignored from then on): it goes to
        FALLBACK, or stays in FALLBACK/ESTOP, and the node keeps ticking at ``rate_hz``,
        publishing commands and ``SafetyStatus``, until every ``zero`` axis reached 0 (stopped,
        hovering) or ``shutdown_ramp_max_s`` passed (ROS 2 launch sends SIGTERM 5 s after
        SIGINT). A drone is left hovering, not landed: its flight controller's offboard-loss
        failsafe takes over once commands stop.
        """
        self.inputs = replace(self.inputs, shutdown=True)
        period = 1.0 / self.p["rate_hz"]
        zero = [i for i, m in enumerate(self.cfg.fallback) if m == "zero"]
        end = self.node.steady() + self.p["shutdown_ramp_max_s"]
        while True:
            self._tick()
            out = self.last_output
            if out is not None and all(abs(out.command.values[i]) < 1e-9 for i in zero):
                break
            if self.node.steady() >= end:
                self.node.logger.warning(
                    f"safety: stopping after shutdown_ramp_max_s = {self.p['shutdown_ramp_max_s']} "
                    "s with the fallback ramp unfinished"
                )
                break
            time.sleep(period)
        values = self.last_output.command.values if self.last_output else ()
        final = ", ".join(f"{a}={v:g}" for a, v in zip(self.axes, values, strict=False))
        self.node.logger.info(f"safety: final command {final}")

    # -- the e-stop latch across restarts and its source -------------------------------------
    def clear_hint(self, asserted: bool) -> str:
        """How an operator clears the latch (exact commands), for the log."""
        ns = self.node.namespace.rstrip("/")
        arg = f" --namespace {ns}" if ns else ""
        release = (
            f"release it (`ltc-controller estop release{arg}`, or `ros2 topic pub -w 1 --once "
            f"--qos-reliability reliable --qos-durability transient_local {ns}/estop "
            "std_msgs/msg/Bool '{data: false}'`), then "
            if asserted
            else ""
        )
        return (
            f"{release}reset it (`ltc-controller estop reset{arg}`, or `ros2 topic pub -w 1 "
            f"--once {ns}/estop_reset std_msgs/msg/Bool '{{data: true}}'`)"
        )

    def _start_estop_latch(self, record: estop_state.EstopRecord) -> None:
        """Log what the state file said and rewrite it (proves it is writable now, and turns an
        unreadable file into a valid latched one)."""
        log, f = self.node.logger, self.estop_file
        if record.problem:
            log.error(
                f"safety: e-stop state file unusable, starting LATCHED (failing safe): "
                f"{record.problem}. To drive: {self.clear_hint(False)}"
            )
        elif record.latched:
            log.warning(
                f"safety: starting in ESTOP: the e-stop was latched when this node last ran "
                f"({record.reason or 'no reason recorded'}; state file {f}). To drive: "
                f"{self.clear_hint(False)}"
            )
        else:
            log.info(f"safety: e-stop state file {f} ({record.reason or 'not latched'})")
        self._save_estop_latch(
            record.latched,
            "state file unusable at start: " + record.problem
            if record.problem
            else record.reason or "node started",
        )

    def _save_estop_latch(self, latched: bool, reason: str) -> None:
        """Write the latch to :attr:`estop_file`; a failure is logged and counted, never
        raised (the node keeps commanding the safe output either way)."""
        try:
            estop_state.write_record(self.estop_file, latched, reason, self.node.name)
        except OSError as e:
            self.estop_file_errors += 1
            self.node.logger.error(
                f"safety: cannot write the e-stop state file {self.estop_file}: "
                f"{e.strerror or e}; a restart will not remember this latch "
                f"[{self.estop_file_errors} write errors]"
            )

    def _check_estop_source(self) -> None:
        """Once a second: are there still publishers on ``estop``? Warn once when the last one
        left while the e-stop is asserted or latched (nobody can release it from there)."""
        try:
            n = self.node.count_publishers("estop")
        except Exception:  # noqa: BLE001 - a transport that cannot tell: stop asking
            self.estop_publishers = -1
            self.estop_timer.cancel()
            return
        self.estop_publishers = n
        if n > 0:
            self._estop_source_seen = True
            self._estop_source_warned = False
            return
        asserted = self.inputs.estop
        if (
            self._estop_source_seen
            and not self._estop_source_warned
            and (asserted or self.state.state == SafetyState.ESTOP)
        ):
            self._estop_source_warned = True
            ns = self.node.namespace.rstrip("/")
            last = "asserted (true)" if asserted else "released, but the latch holds"
            self.node.logger.warning(
                f"safety: e-stop source gone: no publisher on {ns}/estop any more; last value "
                f"{last}. Staying in ESTOP. To drive again: {self.clear_hint(asserted)}"
            )

    # -- runtime parameter sets ----------------------------------------------------------------
    def _validate_set(self, changes: dict[str, Any]) -> str:
        """Validate a runtime set as a whole (limits against each other) and apply it."""
        merged = {**self.p, **changes}
        try:
            cfg = gate_config_from_params(merged)
        except (ValueError, KeyError) as e:
            return str(e)
        if why := beyond_ceiling(self._ceilings, merged):
            return why
        self.p = merged
        self.cfg = cfg  # takes effect on the next tick; the limiters continue from the output
        self.node.logger.info(f"parameters set: {changes}")
        return ""

    # -- callbacks: store and return -----------------------------------------------------------
    def _read(self, msg: Any) -> tuple[Command, float]:
        values, stamp = C.read_command(self.cmd_type, msg)
        age = self.node.now() - stamp * 1e-9 if stamp else math.nan
        return Command(values, stamp), age

    def _on_command(self, msg: Any) -> None:
        self.commands_received += 1
        cmd, age = self._read(msg)
        bad = command_fault(self.cfg, cmd)
        if bad:
            self.commands_rejected += 1
            now = self.node.steady()
            if now - self._last_reject_log >= _REJECT_LOG_PERIOD_S:
                self._last_reject_log = now
                self.node.logger.warning(
                    f"policy_cmd rejected ({bad}): {dict(zip(self.axes, cmd.values, strict=True))}"
                    f" [{self.commands_rejected} rejected so far]"
                )
        # Stored even when bad: the gate turns it into a named fault and falls back.
        self.inputs = replace(
            self.inputs, command=cmd, command_time=self.node.steady(), command_age_s=age
        )

    def _on_hb(self, msg: Any) -> None:
        self.inputs = replace(
            self.inputs, heartbeat_time=self.node.steady(), heartbeats=self.inputs.heartbeats + 1
        )

    def _on_status(self, msg: Any) -> None:
        self.inputs = replace(self.inputs, policy_fault=int(msg.health) >= Health.FAULT)

    def _on_teleop(self, msg: Any) -> None:
        self.teleop_received += 1
        cmd, _ = self._read(msg)
        if not C.finite(cmd.values):
            self.teleop_rejected += 1
            self.node.logger.warning(f"teleop_cmd rejected (non-finite): {cmd.values}")
            return
        self.inputs = replace(self.inputs, teleop=cmd, teleop_time=self.node.steady())

    def _on_estop(self, msg: Any) -> None:
        if bool(msg.data) != self.inputs.estop:
            self.node.logger.warning(f"e-stop {'ASSERTED' if msg.data else 'released'}")
        self.inputs = replace(self.inputs, estop=bool(msg.data))

    def _on_reset(self, msg: Any) -> None:
        if msg.data:
            self.inputs = replace(self.inputs, reset_requested=True)

    def _on_odom(self, msg: Any) -> None:
        self.odom_received += 1
        tw = msg.twist.twist
        measured: list[float | None] = []
        for a in self.axes:
            src = C.MEASURED_BY.get(a)
            measured.append(None if src is None else float(getattr(getattr(tw, src[0]), src[1])))
        self.inputs = replace(
            self.inputs, measured=tuple(measured), measured_time=self.node.steady()
        )

    # -- the timer -----------------------------------------------------------------------------
    def _report_waiting(self, faults: tuple[Fault, ...]) -> None:
        """While still in STARTUP, say every few seconds what the node is waiting for (a
        mis-remapped topic otherwise looks like a silent hang)."""
        if self.state.state != SafetyState.STARTUP or not faults:
            return
        t = self.node.steady()
        if t - self._waiting_logged >= 5.0:
            self._waiting_logged = t
            self.node.logger.warning(
                f"safety: still in STARTUP, sending the safe output; waiting for: "
                f"{', '.join(faults)} (topics {self.node.namespace.rstrip('/')}/policy_cmd, "
                f"policy_heartbeat)"
            )

    def _tick(self) -> None:
        node = self.node
        # ROS time read right next to the steady time the gate decides on: the stamps of this
        # tick's status and fallback output say when it decided (tests and logs rely on it).
        now = node.now()
        self.state, out = tick(self.cfg, self.state, self.inputs, node.steady())
        self.last_output = out
        self.ticks += 1
        if self.inputs.reset_requested:
            self.inputs = replace(self.inputs, reset_requested=False)
        self._report_waiting(out.faults)
        if out.transition is not None:
            change = transition_name(out.transition)
            node.logger.warning(
                f"safety: {change} ({self.state.active_fault or 'inputs healthy'}; "
                f"faults now: {', '.join(out.faults) or 'none'})"
            )
            self.fault_log.append((now, change))
            before, after = out.transition
            if after == SafetyState.ESTOP or before == SafetyState.ESTOP:
                self._latch_changed = True
        for e in out.events:
            if e.refused:
                node.logger.error(
                    f"safety: {e}: "
                    + (
                        "the e-stop is still asserted; release it first"
                        if e == GateEvent.ESTOP_RESET_REFUSED
                        else f"not healthy yet (faults: {', '.join(out.faults) or 'none'})"
                    )
                )
            else:
                node.logger.warning(f"safety: {e}")
        for name in out.active_limiters:
            self.limiter_counts[name] = self.limiter_counts.get(name, 0) + 1
        self._limiters_since_diag.update(out.active_limiters)
        # Passed-through commands keep the camera stamp they carried (latency accounting);
        # fallback commands are stamped now.
        passing = self.state.state in (SafetyState.ACTIVE, SafetyState.TELEOP)
        stamp = out.command.stamp_ns if passing and out.command.stamp_ns else int(now * 1e9)
        self.pub_cmd.publish(C.build_command(self.cmd_type, node.msg, out.command.values, stamp))
        if out.land_request:
            t = node.steady()
            if t - self._last_land_pub >= _LAND_REPEAT_S:
                self._last_land_pub = t
                self.pub_land.publish(node.msg("std_msgs/msg/Empty"))
                node.logger.warning("safety: landing requested (std_msgs/Empty on 'land')")
        else:
            self._last_land_pub = -math.inf
        self.pub_status.publish(self._status(out, now))
        if self._latch_changed:  # after the publishes: the fsync must not delay the command
            self._latch_changed = False
            latched = self.state.state == SafetyState.ESTOP
            self._save_estop_latch(
                latched,
                "e-stop asserted" if latched else "reset accepted (estop_reset)",
            )

    def _status(self, out: GateOutput, now: float) -> Any:
        st, node = self.state, self.node
        values = dict(zip(self.axes, out.command.values, strict=True))
        counts = dict(st.fault_counts)
        return node.msg(
            "ltc_controller/msg/SafetyStatus",
            header=header(node, now),
            state=int(st.state),
            state_name=st.state.name,
            active_fault=fault_name(st.active_fault),
            faults=[f.value for f in out.faults],
            active_limiters=list(out.active_limiters),
            transitions=st.transitions,
            commands_received=self.commands_received,
            commands_rejected=self.commands_rejected,
            heartbeats_received=self.inputs.heartbeats,
            steering_angle=float(values.get("steering_angle", 0.0)),
            speed=float(values.get("speed", values.get("linear_x", 0.0))),
            events=event_names(out),
            estop_asserted=self.inputs.estop,
            teleop_active=st.state == SafetyState.TELEOP,
            land_requested=out.land_request,
            time_in_state_s=0.0 if st.since is None else node.steady() - st.since,
            heartbeats_since_fault=max(0, self.inputs.heartbeats - st.heartbeats_at_fault),
            teleop_received=self.teleop_received,
            teleop_rejected=self.teleop_rejected,
            resets_refused=st.resets_refused,
            fault_names=[f.value for f in FAULTS],
            fault_counts=[counts.get(f, 0) for f in FAULTS],
            axes=list(self.axes),
            command=[float(v) for v in out.command.values],
        )

    # -- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        node, st, out = self.node, self.state, self.last_output
        t = node.steady()
        rate = (self.ticks - self._diag_ticks) / max(t - self._diag_time, 1e-9)
        self._diag_ticks, self._diag_time = self.ticks, t
        faults = out.faults if out is not None else ()
        kv = node.msg
        state_values = [
            ("state", st.state.name),
            ("active_fault", fault_name(st.active_fault)),
            ("faults_now", ", ".join(faults)),
            ("time_in_state_s", f"{0.0 if st.since is None else t - st.since:.3f}"),
            ("tick_rate_hz", f"{rate:.1f}"),
            ("estop_asserted", str(self.inputs.estop)),
            ("commands_received", str(self.commands_received)),
            ("commands_rejected", str(self.commands_rejected)),
            ("heartbeats_received", str(self.inputs.heartbeats)),
            ("teleop_received", str(self.teleop_received)),
            ("teleop_rejected", str(self.teleop_rejected)),
            ("resets_refused", str(st.resets_refused)),
            ("land_requested", str(st.land_requested)),
            ("estop_state_file", str(self.estop_file)),
            ("estop_state_file_errors", str(self.estop_file_errors)),
            ("estop_latched_at_start", str(self.estop_latched_at_start)),
            ("estop_publishers", str(self.estop_publishers)),
        ]
        state_values += [(f"fault.{f}", str(n)) for f, n in st.fault_counts]
        if out is not None:
            state_values += [
                (f"output.{a}", f"{v:.4f}")
                for a, v in zip(self.axes, out.command.values, strict=True)
            ]
        msg_state = f"{st.state.name}" + (f": {st.active_fault}" if st.active_fault else "")
        if faults:
            msg_state += f" (faults now: {', '.join(faults)})"
        recent = sorted(self._limiters_since_diag)
        self._limiters_since_diag = set(out.active_limiters) if out is not None else set()
        limiter_values = [("active_now", ", ".join(out.active_limiters) if out else "")]
        limiter_values += [(f"count.{k}", str(v)) for k, v in sorted(self.limiter_counts.items())]
        statuses = [
            kv(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=_LEVEL[st.state],
                name=diagnostic_name(node, "state"),
                message=msg_state,
                hardware_id=fully_qualified_name(node),
                values=[
                    kv("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in state_values
                ],
            ),
            kv(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=OK,
                name=diagnostic_name(node, "limiters"),
                message=("active: " + ", ".join(recent)) if recent else "none active",
                hardware_id=fully_qualified_name(node),
                values=[
                    kv("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in limiter_values
                ],
            ),
        ]
        self.pub_diag.publish(
            kv(
                "diagnostic_msgs/msg/DiagnosticArray",
                header=header(node, node.now()),
                status=statuses,
            )
        )
