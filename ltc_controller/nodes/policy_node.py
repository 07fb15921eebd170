"""``ltc_policy``: camera in, LTC policy under a deadline, drive command + heartbeat out.

Thin by design: it wires callbacks, timers and publishers. The camera subscription stores the
newest frame; a tick runs the :class:`~ltc_controller.runtime.loop.PolicyRuntime` and publishes
what the pure :func:`~ltc_controller.nodes.policy_logic.decide` makes of the result (command
mapping, heartbeat rule, health).

**When it ticks** (:mod:`~ltc_controller.nodes.ticks`). ``tick_on_frame: true`` (default): a
frame's arrival triggers a tick at once (ROS time ``now`` = the arrival), so its command is
published as soon as the frame is taken and the steps due by ``now`` are integrated (the
runtime's one stepping rule and hold, :mod:`~ltc_controller.runtime.loop`), instead of waiting
up to a control period for the timer. The ``control_rate_hz`` timer ticks between frames (it is
skipped within one control period of a frame tick). Frame ticks are at least half a control
period apart (a frame arriving sooner waits for the next tick): the node ticks and publishes at
most ``2 x control_rate_hz`` times a second, however fast the camera. A tick publishes
``policy_cmd`` only when its command is new (another grid step reached or another frame held),
so a timer tick that coincides with a frame tick sends only ``policy_status``. A frame tick
publishes its frame's command even when no grid step was due yet (the frame arrived just before
the next grid point): that command is the state's output stamped with the frame the state now
holds, whose features enter at the next step (``frame_ticks_stepped`` counts frame ticks that
took a step). ``tick_on_frame: false``: the timer alone ticks and every tick publishes (a frame
waits for the next timer tick).

Parameters: :mod:`~ltc_controller.nodes.policy_params` (declarations; a runtime set is
validated there, then applied here); the policy and its runtime:
:mod:`~ltc_controller.nodes.policy_engine`.

Topics (relative names, so ``-r __ns:=/car1`` moves them all):

- in  ``camera/image_raw`` (``sensor_msgs/msg/Image``) or ``camera/image_raw/compressed``
  (``sensor_msgs/msg/CompressedImage``), by ``camera_type``; QoS ``camera_qos`` (``sensor_data``:
  best effort, keep last 5 — matches every camera; ``reliable`` for drivers that require it)
  Frame time is ``header.stamp`` (``stamp_source: header``; a zero stamp, ROS's "unset", is
  rejected and counted as ``zero_stamp``, never taken for a stale frame), or the node's ROS time
  when the frame arrives (``stamp_source: receive``, for drivers that leave the stamp unset; the
  receive time then stamps the commands too)
- in  ``safety_status`` (``ltc_controller/msg/SafetyStatus``): the LTC hidden state is reset
  around a fallback, so the policy does not resume from a state built while it was not in
  control. ``state_reset_on: leave`` (default): when the safety node leaves ACTIVE, so the state
  re-warms on fresh frames while the fallback drives and no gap follows the hand-back (a
  re-engaged policy acts on a state built only from frames seen after the fault).
  ``handback``: when the safety node hands control back
  (FALLBACK or ESTOP -> ACTIVE); the policy then sends nothing until it has integrated a fresh
  frame (one camera period plus ``rewarm_s``; the safety node keeps the last command for at most
  ``command_timeout_s``), and reports that wait as DEGRADED ``reset``, not as a FAULT that would
  send the safety node straight back.
- out ``policy_cmd`` (``command_type``; ``header.stamp`` = the camera frame the command was
  computed from, so latency can be measured downstream; a plain Twist has no stamp)
- out ``policy_heartbeat`` (``std_msgs/msg/Header``), only on ticks that met their deadline, acted
  on a frame no older than ``max_frame_age_s`` and published a finite command, and whose last
  integration step (in this tick or the last one that had a step due) met its deadline too —
  never from a free-running timer, never from a tick that merely had nothing to do
- out ``policy_status`` (``ltc_controller/msg/PolicyStatus``) every tick (with the frame-tick
  counters and ``frame_to_command_s``: ROS time at publishing minus the stamp of the first
  command carrying a frame); ``/diagnostics``
  (``diagnostic_msgs/msg/DiagnosticArray``) every ``diagnostics_period_s``
- out ``~/saliency`` (``sensor_msgs/msg/Image``, ``rgb8``, stamped with the camera frame) when
  ``saliency.enabled``: the network input with its VisualBackProp saliency overlaid, at most
  ``saliency.rate_hz`` per second, computed in a worker thread on its own copy of the conv head
  (:class:`~ltc_controller.nodes.saliency.SaliencyWorker`); the tick only hands the newest
  preprocessed frame over (one copy, never waits), after it has published its command

Time faults (:mod:`~ltc_controller.runtime.loop`, "Time faults"), each counted, logged and
reported in ``PolicyStatus.reasons`` and ``/diagnostics``: ROS time that stops while the steady
clock runs (a paused simulator, a dead ``/clock``) is FAULT ``clock_stopped`` after
``clock_stop_s``, and no command is sent until it moves again (the safety node falls back on its
policy fault); a stall of the node longer than ``max(max_frame_age_s, 2 / control_rate_hz)``
(``stall``) and a forward jump of ROS time longer than that (``clock_jump_fwd``) reset the state
before the next frame is taken, so no command comes from a state carried across the gap.

Lifecycle (a managed node, DESIGN §6; ``ros2 lifecycle get/set``, a lifecycle manager, the
``lifecycle_msgs`` services on both backends): ``configure`` loads and checks the policy and
warms its runtime up; ``activate`` starts ticking and publishing (from a reset state);
``deactivate`` stops commanding (no ``policy_cmd``, no heartbeat: ``safety_fallback`` falls back
within its timeouts); ``cleanup`` releases the policy; ``shutdown`` finalizes (also on exit).
``autostart`` (default true) configures and activates at start, where a policy that does not
load stops the node (exit 2); with ``autostart: false`` the node waits ``unconfigured`` and a
failed ``configure`` leaves it there with the loader's message in the log.

Changing ``policy_file`` at run time loads and checks the new file while the set is validated (a
failure rejects the set with the loader's message and leaves the running policy untouched); once
the set is accepted the new policy is swapped in between two ticks, starts from a reset state and
sends no heartbeat before it has acted on a fresh frame (``policy_reloads`` counts these). A crop
change builds a new runtime the same way from the policy already loaded (the file is not read
again; state reset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import cv2
import torch

from ltc_controller.nodes import commands as C
from ltc_controller.nodes.policy_engine import Engine, build_engine
from ltc_controller.nodes.policy_logic import (
    CommandMapping,
    Decision,
    HealthLog,
    PolicyNodeState,
    check_outputs,
    decide,
    health_details,
    resets_state,
)
from ltc_controller.nodes.policy_params import (
    CAMERA_TOPIC,
    IMAGE,
    PARAMS,
    SetPlan,
    check_deadline,
    check_ood_thresholds,
    plan_set,
    runtime_overrides,
)
from ltc_controller.nodes.stamps import diagnostic_name, header, header_ns, to_ns, to_seconds
from ltc_controller.nodes.ticks import TickRule
from ltc_controller.params import ParameterError, resolve
from ltc_controller.runtime.factory import runtime_config
from ltc_controller.runtime.loop import PolicyRuntime, TickResult
from ltc_controller.runtime.preprocess import RawFrame, frame_from_compressed, frame_from_image
from ltc_controller.runtime.schedule import seconds_to_ns
from ltc_controller.runtime.watchdog import Health
from ltc_controller.transport.lifecycle import State as LifecycleState
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA, Node, QoS

__all__ = ["PARAMS", "SALIENCY_QOS", "PolicyNode"]

_LOG_PERIOD_S = 1.0
#: A health reason gets at most one log line per this many seconds (the rest are counted).
HEALTH_LOG_PERIOD_S = 5.0
#: QoS of ``~/saliency``: reliable (rviz's default), keep only the newest image.
SALIENCY_QOS = QoS("reliable", "volatile", 1)


class PolicyNode:
    """The ``ltc_policy`` node on a transport :class:`~ltc_controller.transport.port.Node`.

    Raises:
        ParameterError: an unknown or invalid parameter (at construction, before any topic),
            naming it.
        PolicyFileError: the policy file cannot be loaded.
    """

    def __init__(self, node: Node, params: Mapping[str, Any] | None = None) -> None:
        self.node = node
        # Parameters come from the node (command line, params files) unless given directly.
        self.p = p = node.declare_parameters(PARAMS) if params is None else resolve(PARAMS, params)
        check_deadline(p)
        check_ood_thresholds(p)
        torch.set_num_threads(p["num_threads"])
        cv2.setNumThreads(p["num_threads"])  # the frame resize, on the same budget
        self.period_s = 1.0 / p["control_rate_hz"]
        self.ticks = TickRule(self.period_s, p["tick_on_frame"])
        self.frame_ticks_stepped = 0
        self.commands_sent = 0
        self.frames_commanded = 0
        self._last_cmd_stamp = 0
        self.mapping = CommandMapping.from_params(p)
        self._receive_stamps = p["stamp_source"] == "receive"
        # Lifecycle: configure builds the engine; with autostart it is built here, so that a
        # policy that does not load stops the node at start.
        self._engine: Engine | None = build_engine(p, node.steady) if p["autostart"] else None
        self.active = False  # lifecycle state active: ticks work and publish
        self._ran = False  # this engine has been active (its state is not fresh)
        self.state = PolicyNodeState()
        #: validated set waiting for its apply step, with its prepared engine (if any)
        self._staged: tuple[SetPlan, Engine | None] | None = None
        #: engine to swap in at the start of the next tick
        self._pending: Engine | None = None
        self._pending_reload = False  # the pending engine holds a newly loaded policy file
        self.reloads = 0
        self.safety_resets = 0
        self._safety_state = ""
        self._last: TickResult | None = None
        self._last_outputs: list[float] = []
        self._last_health: tuple[Health, tuple[str, ...]] = (Health.FAULT, ("no_frame",))
        self._event_log: dict[str, tuple[float, int]] = {}
        self.health_log = HealthLog(HEALTH_LOG_PERIOD_S)
        self._diag_ticks, self._diag_hbs, self._diag_time = 0, 0, node.steady()
        self._saliency: Any = None  # SaliencyWorker, started when first enabled
        self._saliency_stamp = 0
        self.pub_saliency: Any = None

        qos = SENSOR_DATA if p["camera_qos"] == "sensor_data" else RELIABLE
        cam = p["camera_type"]
        on_cam = self._on_image if cam == IMAGE else self._on_compressed
        node.create_subscription(cam, CAMERA_TOPIC[cam], on_cam, qos)
        node.create_subscription(
            "ltc_controller/msg/SafetyStatus", "safety_status", self._on_safety, RELIABLE
        )
        self.cmd_type: str = p["command_type"]
        self.pub_cmd = node.create_publisher(self.cmd_type, "policy_cmd", RELIABLE)
        self.pub_hb = node.create_publisher("std_msgs/msg/Header", "policy_heartbeat", RELIABLE)
        self.pub_status = node.create_publisher(
            "ltc_controller/msg/PolicyStatus", "policy_status", RELIABLE
        )
        self.pub_diag = node.create_publisher(
            "diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", RELIABLE
        )
        node.on_parameters_set(self._validate_set, self._apply_set)
        self.timer = node.create_timer(self.period_s, self._on_timer)
        self.diag_timer = node.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.lifecycle = node.manage_lifecycle(
            {
                LifecycleState.CONFIGURING: self._on_configure,
                LifecycleState.ACTIVATING: self._on_activate,
                LifecycleState.DEACTIVATING: self._on_deactivate,
                LifecycleState.CLEANINGUP: self._on_cleanup,
                LifecycleState.SHUTTINGDOWN: self._on_shutdown,
                LifecycleState.ERRORPROCESSING: self._on_error,
            }
        )
        if p["autostart"]:
            for transition in ("configure", "activate"):
                reason = self.lifecycle.trigger(transition)
                if reason:
                    raise ParameterError(f"autostart: {transition} failed: {reason}")

    @property
    def engine(self) -> Engine:
        """The loaded policy and its runtime. Raises ``RuntimeError`` while the node is not
        configured (lifecycle ``unconfigured``)."""
        if self._engine is None:
            raise RuntimeError("ltc_policy is not configured: no policy loaded")
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine

    # -- lifecycle callbacks ("" = success, else the reason of a failure) ----------------------
    def _on_configure(self) -> str:
        from ltc_controller.models.policy_file import PolicyFileError

        if self._engine is None:
            try:
                self._engine = build_engine(self.p, self.node.steady)
            except (PolicyFileError, ParameterError) as e:
                return str(e)
            self._ran = False
        self._configure_saliency()
        if self._saliency is not None:
            self._saliency.set_head(self.engine.head, self.engine.config.color_order)
        self._log_loaded()
        return ""

    def _on_activate(self) -> str:
        if self._ran:  # never resume from a state built before the node last stopped commanding
            self.engine.runtime.reset()
            self.state = replace(self.state, grace=True)
        self._ran = self.active = True
        return ""

    def _on_deactivate(self) -> str:
        self.active = False
        self.node.logger.info("deactivated: no policy_cmd, no heartbeat until activated")
        return ""

    def _on_cleanup(self) -> str:
        self.active = False
        self._engine, self._pending, self._staged = None, None, None
        return ""

    def _on_shutdown(self) -> str:
        self.active = False
        return ""

    def _on_error(self) -> str:
        return self._on_cleanup()

    def _log_loaded(self) -> None:
        p, node, cam = self.p, self.node, self.p["camera_type"]
        e = self.engine
        trigger = " and on each frame" if self.ticks.on_frame else " (timer only)"
        node.logger.info(
            f"ltc_policy: {e.config.architecture} ({', '.join(e.output_names)}) on "
            f"{p['device']}/{p['backend']}, step {e.runtime.cfg.step_s} s, control "
            f"{p['control_rate_hz']} Hz{trigger}, "
            f"deadline {e.runtime.cfg.deadline_s * 1e3:.1f} ms, "
            f"camera {cam} on {CAMERA_TOPIC[cam]} ({p['camera_qos']}), command {self.cmd_type}; "
            f"loaded in {e.load_s:.2f} s"
        )
        mon = e.monitor
        node.logger.info(
            "out-of-distribution monitor: unavailable (no feature statistics in the policy file)"
            if mon is None
            else f"out-of-distribution monitor: {e.ood_state}, degraded above {mon.degraded:.3f}, "
            f"fault above {mon.fault:.3f} (hand-over {'on' if p['ood.hand_over'] else 'off'})"
        )
        att = e.attention
        node.logger.info(
            "attention monitor: unavailable (no attention calibration in the policy file)"
            if att is None
            else f"attention monitor: {e.attention_state}, degraded above {att.degraded:.4f}, "
            f"fault above {att.fault:.4f}, one pair every {att.every_n} frame(s) "
            f"(hand-over {'on' if p['attention.hand_over'] else 'off'})"
        )

    @property
    def runtime(self) -> PolicyRuntime:
        """The runtime of the policy in use."""
        return self.engine.runtime

    # -- parameters: validate on set, apply after ------------------------------------------
    def _validate_set(self, changes: dict[str, Any]) -> str:
        """Check a runtime set; applies nothing. A set that needs a new runtime
        (``policy_file``, crops) has it built here, into a staging slot: for ``policy_file``
        the file is loaded and checked, and one that fails rejects the set with the loader's
        message while the running policy is untouched; for crops the loaded policy is reused."""
        from ltc_controller.models.policy_file import PolicyFileError

        self._staged = None
        try:
            plan = plan_set(self.p, changes)
            staged = None
            if plan.rebuild and self._engine is not None:  # unconfigured: configure loads it
                reuse = None if plan.reload else self._engine.policy
                staged = build_engine(plan.params, self.node.steady, reuse)
            current = staged or self._engine
            if current is not None:
                mapping = CommandMapping.from_params(plan.params)
                check_outputs(mapping, current.output_names, "twist_mapping")
        except (ParameterError, PolicyFileError, ValueError) as e:
            self.node.logger.error(f"parameter set {changes} rejected: {e}")
            return str(e)
        if staged is not None:
            what = f"policy {plan.params['policy_file'] or '(default)'} loaded"
            if not plan.reload:
                what = "runtime rebuilt for the new crop"
            self.node.logger.info(
                f"{what} in {staged.load_s:.3f} s; swapping it in at the next tick"
            )
        self._staged = (plan, staged)
        return ""

    def _apply_set(self, changes: dict[str, Any]) -> None:
        """Apply the set :meth:`_validate_set` accepted (the values are stored by now)."""
        if self._staged is None:
            return
        (plan, staged), self._staged = self._staged, None
        self.p = p = plan.params
        self.mapping = CommandMapping.from_params(p)
        if staged is not None:
            self._pending = staged  # swapped in at the start of the next tick
            self._pending_reload = plan.reload
        elif plan.runtime:
            for eng in (self._engine, self._pending):
                if eng is not None:  # read at the next tick; state kept
                    eng.runtime.cfg = runtime_config(eng.config, runtime_overrides(p))
        if plan.saliency and self._engine is not None:
            self._configure_saliency()
        if plan.ood:
            for eng in (self._engine, self._pending):
                if eng is not None:
                    eng.configure_monitor(p)

    # -- callbacks: store and return -----------------------------------------------------------
    def _frame_time(self, stamp: Any) -> tuple[float, int]:
        """The frame's time (s, ns): its ``header.stamp``, or the ROS time now
        (``stamp_source: receive``)."""
        if self._receive_stamps:
            t = self.node.now()
            return t, seconds_to_ns(t)
        return to_seconds(stamp), to_ns(stamp)

    def _on_image(self, msg: Any) -> None:
        if not self.active:
            return
        t, t_ns = self._frame_time(msg.header.stamp)
        self._offer(
            frame_from_image(
                t,
                t_ns,
                msg.encoding,
                msg.height,
                msg.width,
                msg.step,
                msg.data,
                msg.is_bigendian,
            )
        )

    def _on_compressed(self, msg: Any) -> None:
        if not self.active:
            return
        t, t_ns = self._frame_time(msg.header.stamp)
        self._offer(frame_from_compressed(t, t_ns, str(msg.format), msg.data))

    def _offer(self, frame: RawFrame) -> None:
        """Hand the frame to the runtime; with ``tick_on_frame``, tick at once unless the last
        frame tick ran less than half a control period ago (then a later tick takes it)."""
        if self._pending is not None:  # a new policy swaps in now, so this frame reaches it
            self._swap_pending(self._pending)
        self.engine.runtime.offer_frame(frame)
        if self.ticks.frame_arrived(self.node.steady()):
            self._tick(frame_tick=True)

    def _on_safety(self, msg: Any) -> None:
        state, was = str(msg.state_name), self._safety_state
        if resets_state(self.p["state_reset_on"], was, state) and self._engine is not None:
            # Do not resume from (or keep) a state built while the policy was not in control.
            self.engine.runtime.reset()
            self.safety_resets += 1
            self.state = replace(self.state, grace=True)  # no output yet is not a fault
            self.node.logger.info(f"safety {was} -> {state}: policy state reset")
        self._safety_state = state

    # -- the timer -----------------------------------------------------------------------------
    def _swap_pending(self, new: Engine) -> None:
        old, self.engine, self._pending = self.engine, new, None
        self.engine.runtime.counters = old.runtime.counters  # keep counting across reloads
        self.engine.runtime.counters.state_resets += 1
        self.reloads += self._pending_reload
        self.state = replace(self.state, grace=True)
        self.node.logger.info(f"policy swapped in: {self.engine.policy_file or '(default)'}")
        if self._saliency is not None:
            self._saliency.set_head(self.engine.head, self.engine.config.color_order)

    def _on_timer(self) -> None:
        """The control timer: ticks when :class:`~ltc_controller.nodes.ticks.TickRule` says
        (with ``tick_on_frame``: between frames)."""
        if self.ticks.timer_fired(self.node.steady()):
            self._tick()

    def _tick(self, frame_tick: bool = False) -> None:
        if not self.active:  # lifecycle: only an active node commands
            return
        node = self.node
        if self._pending is not None:
            self._swap_pending(self._pending)
        eng = self.engine
        eng.model.delay_s = float(self.p["debug.step_delay_s"])
        r = eng.runtime.tick(node.now())
        self._last = r
        self.frame_ticks_stepped += frame_tick and r.steps > 0
        for e in r.events:
            if e != "frame_skipped":
                self._log_event(e)
        st = self.state
        d = decide(
            r,
            st,
            self.mapping,
            eng.output_names,
            eng.ood_level(self.p),
            eng.attention_level(self.p),
        )
        if d.command is not None and not self.ticks.new_command(
            eng.runtime.state_time_ns, r.frame_stamp_ns
        ):
            # Same grid step, same frame as the last command: nothing new, nothing sent.
            d = replace(
                d, command=None, heartbeat=False, state=replace(d.state, heartbeats=st.heartbeats)
            )
        self.state = d.state
        if r.outputs is not None:
            self._last_outputs = r.outputs.tolist()
        latency = -1.0
        if d.command is not None:
            self.pub_cmd.publish(C.build_command(self.cmd_type, node.msg, d.command, d.stamp_ns))
            self.commands_sent += 1
            if d.stamp_ns != self._last_cmd_stamp:  # the first command carrying this frame
                latency = node.now() - d.stamp_ns * 1e-9
                self._last_cmd_stamp = d.stamp_ns
                self.frames_commanded += 1
        elif d.non_finite:
            self._log_event("non_finite_command")
        if d.heartbeat:
            self.pub_hb.publish(header_ns(node, d.stamp_ns, "ok"))
        last = self._last_health
        if d.health != last[0] or d.reasons != last[1]:
            self._log_health(r, d)
            self._last_health = (d.health, d.reasons)
        elif (line := self.health_log.flush(node.steady(), last)) is not None:
            node.logger.warning(line)
        self.pub_status.publish(self._status(r, d, frame_tick, latency))
        # Last, after the command is out: hand the newest network input to the saliency worker
        # when an overlay is due (one copy; the worker does the rest on its own thread).
        sal = self._saliency
        if sal is not None and r.frame_stamp_ns and r.frame_stamp_ns != self._saliency_stamp:
            if self.p["saliency.enabled"] and sal.offer(
                eng.runtime.pre.out, r.frame_stamp_ns, node.steady()
            ):
                self._saliency_stamp = r.frame_stamp_ns

    # -- saliency ------------------------------------------------------------------------------
    def _configure_saliency(self) -> None:
        """Start the saliency publisher and worker the first time ``saliency.enabled`` is set;
        apply ``saliency.rate_hz``. Disabling keeps them idle (no frame is handed over)."""
        p = self.p
        if self._saliency is not None:
            self._saliency.rate_hz = p["saliency.rate_hz"]
            return
        if not p["saliency.enabled"]:
            return
        from ltc_controller.nodes.saliency import SaliencyWorker

        self.pub_saliency = self.node.create_publisher(
            "sensor_msgs/msg/Image", "~/saliency", SALIENCY_QOS
        )
        self._saliency = SaliencyWorker(
            self.engine.head,
            self.engine.config.color_order,
            p["saliency.rate_hz"],
            self._publish_saliency,
            on_error=lambda m: self.node.logger.warning(f"saliency: {m}"),
        )
        self.node.logger.info(f"saliency: publishing ~/saliency at <= {p['saliency.rate_hz']} Hz")

    def _publish_saliency(self, stamp_ns: int, rgb: Any) -> None:
        """Called on the worker thread with a finished ``(H, W, 3)`` uint8 overlay."""
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        node = self.node
        self.pub_saliency.publish(
            node.msg(
                "sensor_msgs/msg/Image",
                header=header_ns(node, stamp_ns),
                height=h,
                width=w,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * w,
                data=rgb.tobytes(),
            )
        )

    @property
    def saliency_worker(self) -> Any:
        """The :class:`~ltc_controller.nodes.saliency.SaliencyWorker`, or None if never
        enabled."""
        return self._saliency

    def close(self) -> None:
        """Finalize the lifecycle (``shutdown``, its transition events on the wire) and stop the
        saliency worker (if any); call before shutting the transport node down."""
        if self.lifecycle.state not in ("finalized", "shuttingdown"):
            self.lifecycle.trigger("shutdown")
        if self._saliency is not None:
            self._saliency.close()

    # -- reporting -----------------------------------------------------------------------------
    def _log_event(self, event: str) -> None:
        """Warn about a runtime event at most once a second per kind, with the count since."""
        now = self.node.steady()
        last, n = self._event_log.get(event, (-math.inf, 0))
        if now - last >= _LOG_PERIOD_S:
            more = f" (+{n} more in the last {now - last:.1f} s)" if n else ""
            self.node.logger.warning(f"runtime event: {event}{more}")
            self._event_log[event] = (now, 0)
        else:
            self._event_log[event] = (last, n + 1)

    def _log_health(self, r: TickResult, d: Decision) -> None:
        """Log a change of the published health with its reasons (rate-limited per reason,
        :class:`~ltc_controller.nodes.policy_logic.HealthLog`)."""
        now = self.node.steady()
        wd = self.engine.runtime.watchdog
        details = health_details(d.reasons, r, wd.misses_in_window(now), wd.cfg.overrun_window_s)
        line = self.health_log.transition(now, self._last_health, (d.health, d.reasons), details)
        if line is None:
            return
        log = self.node.logger
        if d.health == Health.FAULT and self._last_health[0] != Health.FAULT:
            log.error(
                f"{line}; deadline misses so far {self.engine.runtime.counters.deadline_misses}"
            )
        elif d.health == Health.OK:
            log.info(line)
        else:
            log.warning(line)

    def _status(self, r: TickResult, d: Decision, frame_tick: bool, latency_s: float) -> Any:
        node, eng = self.node, self.engine
        c = eng.runtime.counters
        rej = sorted(c.rejections.items())
        return node.msg(
            "ltc_controller/msg/PolicyStatus",
            header=header(node, node.now()),
            health=int(d.health),
            reasons=list(d.reasons),
            ticks=c.ticks,
            deadline_misses=c.deadline_misses,
            frames_received=c.frames_received,
            frames_used=c.frames_used,
            frames_rejected=c.frames_rejected,
            frames_skipped=c.frames_skipped,
            step_s=eng.runtime.cfg.step_s,
            steps_last_tick=r.steps,
            lag_s=r.lag_s,
            tick_duration_s=r.duration_s,
            frame_age_s=r.frame_age_s if math.isfinite(r.frame_age_s) else -1.0,
            heartbeat_sent=d.heartbeat,
            heartbeats=d.state.heartbeats,
            frames_dropped=c.frames_dropped,
            lag_faults=c.lag_faults,
            state_resets=c.state_resets,
            policy_reloads=self.reloads,
            policy_file=eng.policy_file,
            deadline_s=eng.runtime.cfg.deadline_s,
            period_s=self.period_s,
            rejected_reasons=[k for k, _ in rej],
            rejected_counts=[v for _, v in rej],
            output_names=list(eng.output_names),
            outputs=list(self._last_outputs),
            frame_tick=frame_tick,
            frame_ticks=self.ticks.frame_ticks,
            frame_ticks_stepped=self.frame_ticks_stepped,
            frame_ticks_deferred=self.ticks.frame_ticks_deferred,
            commands_sent=self.commands_sent,
            frames_commanded=self.frames_commanded,
            frame_to_command_s=latency_s,
            ood_monitor=eng.ood_state,
            ood_score=self._ood_score(eng),
            ood_alarms=eng.monitor.alarms if eng.monitor is not None else 0,
            attention_monitor=eng.attention_state,
            attention_score=self._attention_score(eng),
            attention_alarms=eng.attention.alarms if eng.attention is not None else 0,
        )

    @staticmethod
    def _ood_score(eng: Engine) -> float:
        mon = eng.runtime.feature_monitor
        return mon.score if mon is not None and math.isfinite(mon.score) else -1.0

    @staticmethod
    def _attention_score(eng: Engine) -> float:
        att = eng.runtime.attention_monitor
        return att.score if att is not None and math.isfinite(att.score) else -1.0

    def _publish_diagnostics(self) -> None:
        if not self.active:
            self._publish_lifecycle_diagnostics()
            return
        node, eng = self.node, self.engine
        c = eng.runtime.counters
        t = node.steady()
        span = max(t - self._diag_time, 1e-9)
        tick_rate = (c.ticks - self._diag_ticks) / span
        heartbeats = self.state.heartbeats
        hb_rate = (heartbeats - self._diag_hbs) / span
        self._diag_ticks, self._diag_hbs, self._diag_time = c.ticks, heartbeats, t
        health, reasons = self._last_health
        r = self._last
        values = [
            ("policy_file", eng.policy_file or "(default)"),
            ("device", f"{self.p['device']}/{self.p['backend']}"),
            ("tick_rate_hz", f"{tick_rate:.1f}"),
            ("control_rate_hz", f"{1.0 / self.period_s:.1f}"),
            ("heartbeat_rate_hz", f"{hb_rate:.1f}"),
            ("deadline_s", f"{eng.runtime.cfg.deadline_s:.4f}"),
            ("step_s", f"{eng.runtime.cfg.step_s:.4f}"),
            ("ticks", str(c.ticks)),
            ("deadline_misses", str(c.deadline_misses)),
            ("frames_received", str(c.frames_received)),
            ("frames_used", str(c.frames_used)),
            ("frames_rejected", str(c.frames_rejected)),
            ("frames_skipped", str(c.frames_skipped)),
            ("frames_dropped", str(c.frames_dropped)),
            ("tick_on_frame", str(self.ticks.on_frame).lower()),
            ("frame_ticks", str(self.ticks.frame_ticks)),
            ("frame_ticks_stepped", str(self.frame_ticks_stepped)),
            ("frame_ticks_deferred", str(self.ticks.frame_ticks_deferred)),
            ("timer_ticks_skipped", str(self.ticks.timer_ticks_skipped)),
            ("commands_sent", str(self.commands_sent)),
            ("frames_commanded", str(self.frames_commanded)),
            ("lag_faults", str(c.lag_faults)),
            ("stalls", str(c.stalls)),
            ("clock_jumps_fwd", str(c.clock_jumps_fwd)),
            ("clock_stops", str(c.clock_stops)),
            ("state_resets", str(c.state_resets)),
            ("safety_resets", str(self.safety_resets)),
            ("policy_reloads", str(self.reloads)),
            ("heartbeats", str(heartbeats)),
            ("non_finite_outputs", str(self.state.non_finite_outputs)),
            ("health_transitions", str(self.health_log.transitions)),
            ("health_faults", str(self.health_log.faults)),
            ("ood_monitor", eng.ood_state),
            ("ood_score", f"{self._ood_score(eng):.3f}"),
            ("ood_alarms", str(eng.monitor.alarms if eng.monitor is not None else 0)),
            ("attention_monitor", eng.attention_state),
            ("attention_score", f"{self._attention_score(eng):.4f}"),
            ("attention_alarms", str(eng.attention.alarms if eng.attention is not None else 0)),
            ("attention_pairs", str(eng.attention.pairs if eng.attention is not None else 0)),
        ]
        values.append(("lifecycle", self.lifecycle.state))
        values += [(f"rejected.{k}", str(v)) for k, v in sorted(c.rejections.items())]
        if self._saliency is not None:
            values += [(f"saliency.{k}", str(v)) for k, v in self._saliency.stats().items()]
        if r is not None:
            values += [
                ("last_tick_duration_s", f"{r.duration_s:.4f}"),
                ("frame_age_s", f"{r.frame_age_s:.3f}" if math.isfinite(r.frame_age_s) else "-"),
                ("lag_s", f"{r.lag_s:.4f}"),
            ]
        status = node.msg(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=int(health),
            name=diagnostic_name(node, "runtime"),
            message=", ".join(reasons) if reasons else "ok",
            hardware_id=f"{self.p['device']}",
            values=[node.msg("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in values],
        )
        self.pub_diag.publish(
            node.msg(
                "diagnostic_msgs/msg/DiagnosticArray",
                header=header(node, node.now()),
                status=[status],
            )
        )

    def _publish_lifecycle_diagnostics(self) -> None:
        """Diagnostics of a node that is not active: WARN, the lifecycle state says why."""
        node, state = self.node, self.lifecycle.state
        status = node.msg(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=1,
            name=diagnostic_name(node, "runtime"),
            message=f"lifecycle {state}: not commanding",
            hardware_id=f"{self.p['device']}",
            values=[node.msg("diagnostic_msgs/msg/KeyValue", key="lifecycle", value=state)],
        )
        self.pub_diag.publish(
            node.msg(
                "diagnostic_msgs/msg/DiagnosticArray",
                header=header(node, node.now()),
                status=[status],
            )
        )
