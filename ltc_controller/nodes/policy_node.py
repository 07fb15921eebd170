"""``ltc_policy``: camera in, LTC policy under a deadline, drive command + heartbeat out.

Thin by design: the camera subscription stores the newest frame; a steady-clock timer at
``control_rate_hz`` calls :class:`~ltc_controller.runtime.loop.PolicyRuntime` and publishes.

Topics (relative names, so ``-r __ns:=/car1`` moves them all):

- in  ``camera/image_raw`` (``sensor_msgs/msg/Image``) or ``camera/image_raw/compressed``
  (``sensor_msgs/msg/CompressedImage``), by ``camera_type``; QoS ``camera_qos`` (``sensor_data``:
  best effort, keep last 5 — matches every camera; ``reliable`` for drivers that require it)
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
- out ``policy_status`` (``ltc_controller/msg/PolicyStatus``) every tick; ``/diagnostics``
  (``diagnostic_msgs/msg/DiagnosticArray``) every ``diagnostics_period_s``
- out ``~/saliency`` (``sensor_msgs/msg/Image``, ``rgb8``, stamped with the camera frame) when
  ``saliency.enabled``: the network input with its VisualBackProp saliency overlaid, at most
  ``saliency.rate_hz`` per second, computed in a worker thread on its own copy of the conv head
  (:class:`~ltc_controller.explain.live.SaliencyWorker`); the tick only hands the newest
  preprocessed frame over (one copy, never waits), after it has published its command

Command mapping (``command_type``): Ackermann: ``steering_angle`` = policy ``steering_angle`` ×
``steering_scale`` clamped to ±``max_steering_angle``, ``speed`` = policy ``speed`` if it has one,
else ``speed_mps``. Twist with ``twist_mapping: bicycle`` (a car): ``linear.x`` = that speed,
``angular.z`` = speed · tan(steering) / ``wheelbase_m`` (kinematic bicycle). Twist with
``twist_mapping: direct`` (a drone policy): outputs named ``linear_x``, ``linear_y``, ``linear_z``
(× ``velocity_scale``) and ``angular_z`` (× ``yaw_rate_scale``) go to those fields (missing ones
are 0; a missing ``linear_x`` is ``speed`` or ``speed_mps``).

Changing ``policy_file`` at run time loads the new file inside the parameter callback (a failure
rejects the set with the loader's message) and swaps it in between two ticks: the new policy starts
from a reset state and sends no heartbeat before it has acted on a fresh frame.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ltc_controller.nodes.stamps import header, header_ns, to_ns, to_seconds
from ltc_controller.params import COMMON, ParameterError, ParamSpec, resolve
from ltc_controller.runtime.backend import StepModel, make_step_model
from ltc_controller.runtime.loop import PolicyRuntime, RuntimeConfig, TickResult
from ltc_controller.runtime.preprocess import (
    PreprocessConfig,
    Preprocessor,
    frame_from_compressed,
    frame_from_image,
)
from ltc_controller.safety import commands as C
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA, Node, QoS

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_TOPIC = {IMAGE: "camera/image_raw", COMPRESSED: "camera/image_raw/compressed"}
#: Policy outputs each mapping understands.
_BICYCLE_OUTPUTS = frozenset({"steering_angle", "speed"})
_DIRECT_OUTPUTS = frozenset({"linear_x", "linear_y", "linear_z", "angular_z", "speed"})
_CROPS = ("top", "bottom", "left", "right")

PARAMS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec(
        "policy_file",
        str,
        "",
        "Policy file (.safetensors); empty = the bundled policy, or an untrained NCP-19 if none "
        "is bundled. Setting it at run time loads and swaps the policy",
    ),
    ParamSpec(
        "untrained_seed",
        int,
        0,
        "Seed of the untrained policy used when no file is given",
        min=0,
        read_only=True,
    ),
    ParamSpec(
        "num_threads",
        int,
        1,
        "CPU threads for inference (1 keeps latency predictable beside other processes)",
        "",
        1,
        64,
        read_only=True,
    ),
    ParamSpec("device", str, "cpu", "Inference device: cpu, cuda, cuda:N or auto", read_only=True),
    ParamSpec(
        "backend",
        str,
        "torch",
        "Inference backend (torch; onnx where ONNX Runtime is installed)",
        read_only=True,
    ),
    ParamSpec(
        "control_rate_hz", float, 20.0, "Control tick rate", "Hz", 1.0, 1000.0, read_only=True
    ),
    ParamSpec(
        "integration.step_s",
        float,
        0.0,
        "Fixed integration step; 0 = the policy file's",
        "s",
        0.0,
        1.0,
        read_only=True,
    ),
    ParamSpec(
        "deadline_s",
        float,
        0.0,
        "Work budget per tick (at most the control period); 0 = half the control period",
        "s",
        0.0,
        1.0,
    ),
    ParamSpec("max_frame_age_s", float, 0.3, "Frames older than this are stale", "s", 0.001, 10.0),
    ParamSpec("max_lag_s", float, 0.25, "Integration lag beyond this is a fault", "s", 0.0, 10.0),
    ParamSpec(
        "camera_type",
        str,
        IMAGE,
        "Camera message type (topic camera/image_raw or camera/image_raw/compressed)",
        choices=(IMAGE, COMPRESSED),
        read_only=True,
    ),
    ParamSpec(
        "camera_qos",
        str,
        "sensor_data",
        "Camera subscription QoS: sensor_data (best effort) or reliable",
        choices=("sensor_data", "reliable"),
        read_only=True,
    ),
    *(
        ParamSpec(
            f"preprocess.crop_{side}",
            int,
            -1,
            f"Pixels cropped from the {side} of the camera image; -1 = the policy file's",
            "px",
            -1,
            100000,
        )
        for side in _CROPS
    ),
    ParamSpec(
        "command_type",
        str,
        C.ACKERMANN,
        "Type of policy_cmd",
        choices=C.COMMAND_TYPES,
        read_only=True,
    ),
    ParamSpec(
        "twist_mapping",
        str,
        "bicycle",
        "Twist commands: bicycle (car: yaw rate from steering) or direct (drone outputs)",
        choices=("bicycle", "direct"),
        read_only=True,
    ),
    ParamSpec("wheelbase_m", float, 2.7, "Wheelbase for the bicycle mapping", "m", 0.01, 100.0),
    ParamSpec(
        "speed_mps",
        float,
        5.0,
        "Commanded speed when the policy outputs steering only",
        "m/s",
        0.0,
        50.0,
    ),
    ParamSpec(
        "steering_scale",
        float,
        1.0,
        "Factor applied to the policy's steering output",
        "",
        -10.0,
        10.0,
    ),
    ParamSpec(
        "max_steering_angle", float, 0.5, "Steering output is clamped to ±this", "rad", 0.0, 1.6
    ),
    ParamSpec(
        "velocity_scale",
        float,
        1.0,
        "Factor on linear_* outputs (direct mapping)",
        "",
        -100.0,
        100.0,
    ),
    ParamSpec(
        "yaw_rate_scale",
        float,
        1.0,
        "Factor on the angular_z output (direct mapping)",
        "",
        -100.0,
        100.0,
    ),
    ParamSpec(
        "rewarm_s",
        float,
        0.0,
        "After a state reset, integrate this long on fresh frames before sending commands "
        "(0: after the first step)",
        "s",
        0.0,
        10.0,
        read_only=True,
    ),
    ParamSpec(
        "state_reset_on",
        str,
        "leave",
        "When the LTC state is reset around a fallback: handback (safety goes ACTIVE again) or "
        "leave (safety leaves ACTIVE, so the state re-warms while the fallback drives)",
        choices=("handback", "leave"),
        read_only=True,
    ),
    ParamSpec(
        "diagnostics_period_s",
        float,
        1.0,
        "Period of /diagnostics",
        "s",
        0.05,
        60.0,
        read_only=True,
    ),
    ParamSpec(
        "saliency.enabled",
        bool,
        False,
        "Publish ~/saliency (sensor_msgs/Image rgb8: VisualBackProp overlay on the network "
        "input), computed in a worker thread off the control path",
    ),
    ParamSpec(
        "saliency.rate_hz",
        float,
        2.0,
        "At most this many ~/saliency images per second",
        "Hz",
        0.1,
        30.0,
    ),
    ParamSpec(
        "debug.step_delay_s",
        float,
        0.0,
        "Fault injection: sleep this long in every integration step (stalls inference while "
        "the node keeps running); 0 in production",
        "s",
        0.0,
        5.0,
    ),
)

#: PolicyStatus health levels
HEALTH_OK, HEALTH_DEGRADED, HEALTH_FAULT = 0, 1, 2
_LOG_PERIOD_S = 1.0
#: Runtime events after which a tick never sends a heartbeat.
_BAD_EVENTS = frozenset({"lag", "non_finite", "state_norm", "clock_jump_back", "stale_state"})
#: Parameters that define the loaded policy and its runtime: changing one at run time builds a
#: new engine (policy loaded again, state reset) and swaps it in between two ticks.
ENGINE_PARAMS = frozenset(
    {"policy_file", "max_frame_age_s", "max_lag_s"} | {f"preprocess.crop_{s}" for s in _CROPS}
)
#: QoS of ``~/saliency``: reliable (rviz's default), keep only the newest image.
SALIENCY_QOS = QoS("reliable", "volatile", 1)
#: Outputs of the untrained placeholder used for ``twist_mapping: direct`` without a file.
DRONE_OUTPUTS = ("linear_x", "linear_y", "linear_z", "angular_z")


#: The NCP-19 lane-keeping policy shipped with the package (used when no file is given).
BUNDLED_POLICY = (
    Path(__file__).resolve().parent.parent / "policies" / "ncp19_lane_keeping.safetensors"
)


def load_model(policy_file: str, seed: int, outputs: tuple[str, ...] | None = None) -> Any:
    """The policy to run: ``policy_file``, else the bundled policy, else an untrained NCP.

    The untrained NCP is the NCP-19 (one motor neuron, ``steering_angle``) unless ``outputs``
    names other outputs (e.g. :data:`DRONE_OUTPUTS`): then one motor neuron per output. Both are
    placeholders so the loop runs before a trained policy ships.

    Raises:
        PolicyFileError: the file is missing, corrupt or does not match its config.
    """
    from ltc_controller.models.policy import Policy, PolicyConfig
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.models.wiring import NCP

    if policy_file:
        return load_policy(Path(policy_file))
    if outputs is None and BUNDLED_POLICY.exists():
        return load_policy(BUNDLED_POLICY)
    if outputs is None:
        return Policy.from_config(PolicyConfig(), seed=seed)
    m = len(outputs)
    wiring = NCP(12, 6, m, 6, 4, 6, 6, seed=22222, input_dim=32).get_config()
    units = tuple("rad/s" if n.startswith("angular") else "m/s" for n in outputs)
    cfg = PolicyConfig(
        wiring=wiring, output_names=outputs, output_units=units, output_scale=(1.0,) * m
    )
    return Policy.from_config(cfg, seed=seed)


class StallableModel:
    """A runtime step model that can be made to stall: ``delay_s`` > 0 makes every
    :meth:`step` sleep that long first — fault injection for a stalled inference
    (``debug.step_delay_s``), a real stall in the real call path. Otherwise it delegates."""

    def __init__(self, inner: StepModel, config: Any) -> None:
        self.inner = inner
        self.config = config
        self.delay_s = 0.0

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` -> ``(1, F)`` (the inner model's)."""
        return self.inner.features(images)

    def step(
        self, features: torch.Tensor, state: torch.Tensor, elapsed_s: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs (1, M), state (1, N))`` after ``elapsed_s`` s, after the injected delay."""
        if self.delay_s > 0.0:
            time.sleep(self.delay_s)
        return self.inner.step(features, state, elapsed_s)

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.inner.initial_state(batch)


@dataclass
class Engine:
    """Everything that belongs to one loaded policy; swapped as one reference."""

    model: StallableModel
    runtime: PolicyRuntime
    output_names: tuple[str, ...]
    policy_file: str
    load_s: float
    #: a private CPU copy of the conv head, for the saliency worker (None: not a torch policy)
    head: Any = None


def check_outputs(p: Mapping[str, Any], names: tuple[str, ...], where: str) -> None:
    """Raise ParameterError if the policy's outputs do not fit the command mapping."""
    direct = p["command_type"] != C.ACKERMANN and p["twist_mapping"] == "direct"
    known = _DIRECT_OUTPUTS if direct else _BICYCLE_OUTPUTS
    unknown = [n for n in names if n not in known]
    if unknown:
        mapping = (
            "Ackermann"
            if p["command_type"] == C.ACKERMANN
            else f"Twist with twist_mapping={p['twist_mapping']}"
        )
        raise ParameterError(
            f"{where}: policy outputs {list(names)}; {mapping} uses only "
            f"{sorted(known)} (unknown: {unknown}); set command_type/twist_mapping to match"
        )


def preprocess_config(p: Mapping[str, Any], policy_config: Any) -> PreprocessConfig:
    """The policy file's preprocessing with the ``preprocess.crop_*`` overrides (>= 0) applied."""
    base = PreprocessConfig.from_policy(policy_config)
    over = {
        f"crop_{s}": p[f"preprocess.crop_{s}"] for s in _CROPS if p[f"preprocess.crop_{s}"] >= 0
    }
    return replace(base, **over)


def runtime_config(p: Mapping[str, Any], step_s: float) -> RuntimeConfig:
    """The runtime settings the parameters give (``step_s``: the policy file's step)."""
    period = 1.0 / p["control_rate_hz"]
    return RuntimeConfig(
        step_s=p["integration.step_s"] or step_s,
        deadline_s=p["deadline_s"] or 0.5 * period,
        max_frame_age_s=p["max_frame_age_s"],
        max_lag_s=p["max_lag_s"],
        rewarm_s=p["rewarm_s"],
    )


def build_engine(p: Mapping[str, Any], clock: Any) -> Engine:
    """Load the policy ``p['policy_file']`` on ``p['device']``/``p['backend']`` and build its
    runtime (warm-up included).

    Raises:
        PolicyFileError: the file cannot be loaded.
        ParameterError: its outputs do not fit ``command_type``/``twist_mapping``, or the device
            or backend is not usable here (the message names the parameter).
    """
    t0 = time.monotonic()
    direct = p["command_type"] != C.ACKERMANN and p["twist_mapping"] == "direct"
    policy = load_model(p["policy_file"], p["untrained_seed"], DRONE_OUTPUTS if direct else None)
    cfg = policy.config
    names = tuple(cfg.output_names)
    check_outputs(p, names, p["policy_file"] or "the default policy")
    # Copied before the backend takes the policy (it may move it to a device or export it).
    head = copy.deepcopy(policy.head).cpu().float().eval() if hasattr(policy, "head") else None
    try:
        inner = make_step_model(policy, p["backend"], p["device"])
    except ValueError as e:
        raise ParameterError(f"parameter 'device'/'backend': {e}") from None
    model = StallableModel(inner, cfg)
    runtime = PolicyRuntime(
        model, Preprocessor(preprocess_config(p, cfg)), runtime_config(p, cfg.step_s), clock
    )
    return Engine(model, runtime, names, p["policy_file"], time.monotonic() - t0, head)


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
        self._check_deadline(p)
        torch.set_num_threads(p["num_threads"])
        self.period_s = 1.0 / p["control_rate_hz"]
        self.engine = build_engine(p, node.steady)
        self._pending: Engine | None = None
        self.cmd_type: str = p["command_type"]
        self.heartbeats = 0
        self.reloads = 0
        self.non_finite_outputs = 0
        self.safety_resets = 0
        self._grace = False  # after a reset or reload: no output yet is not a fault
        self._work_ok = False  # the last tick with inference work met its deadline
        self._safety_state = ""
        self._last: TickResult | None = None
        self._last_outputs: list[float] = []
        self._last_health: tuple[int, list[str]] = (HEALTH_FAULT, ["no_frame"])
        self._event_log: dict[str, tuple[float, int]] = {}
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
        self.pub_cmd = node.create_publisher(self.cmd_type, "policy_cmd", RELIABLE)
        self.pub_hb = node.create_publisher("std_msgs/msg/Header", "policy_heartbeat", RELIABLE)
        self.pub_status = node.create_publisher(
            "ltc_controller/msg/PolicyStatus", "policy_status", RELIABLE
        )
        self.pub_diag = node.create_publisher(
            "diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", RELIABLE
        )
        node.on_parameters_set(self._validate_set)
        self._configure_saliency()
        self.timer = node.create_timer(self.period_s, self._tick)
        self.diag_timer = node.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        e = self.engine
        node.logger.info(
            f"ltc_policy: {e.model.config.architecture} ({', '.join(e.output_names)}) on "
            f"{p['device']}/{p['backend']}, step {e.runtime.cfg.step_s} s, control "
            f"{p['control_rate_hz']} Hz, deadline {e.runtime.cfg.deadline_s * 1e3:.1f} ms, "
            f"camera {cam} on {CAMERA_TOPIC[cam]} ({p['camera_qos']}), command {self.cmd_type}; "
            f"loaded in {e.load_s:.2f} s"
        )

    @property
    def runtime(self) -> PolicyRuntime:
        """The runtime of the policy in use."""
        return self.engine.runtime

    # -- parameters ----------------------------------------------------------------------------
    @staticmethod
    def _check_deadline(p: Mapping[str, Any]) -> None:
        period = 1.0 / p["control_rate_hz"]
        if p["deadline_s"] > period:
            raise ParameterError(
                f"parameter 'deadline_s': {p['deadline_s']} s exceeds the control period "
                f"{period:.4g} s (1/control_rate_hz)"
            )

    def _validate_set(self, changes: dict[str, Any]) -> str:
        """Validate a runtime set as a whole; apply it when valid.

        A change to :data:`ENGINE_PARAMS` (``policy_file`` above all) builds the new engine here,
        so a file that does not load rejects the set with the loader's message; the engine is
        swapped in at the start of the next tick, never in the middle of one.
        """
        from ltc_controller.models.policy_file import PolicyFileError

        merged = {**self.p, **changes}
        rebuild = any(k in ENGINE_PARAMS and changes[k] != self.p[k] for k in changes)
        try:
            self._check_deadline(merged)
            new_engine: Engine | None = None
            if rebuild:
                new_engine = build_engine(merged, self.node.steady)
                self.node.logger.info(
                    f"policy {merged['policy_file'] or '(default)'} loaded in "
                    f"{new_engine.load_s:.3f} s; swapping it in at the next tick"
                )
            else:
                check_outputs(merged, self.engine.output_names, "twist_mapping")
        except (ParameterError, PolicyFileError, ValueError) as e:
            self.node.logger.error(f"parameter set {changes} rejected: {e}")
            return str(e)
        self.p = merged
        if any(k.startswith("saliency.") for k in changes):
            self._configure_saliency()
        if new_engine is not None:
            self._pending = new_engine
        else:
            for eng in (self.engine, self._pending):
                if eng is not None:  # the deadline is read on every tick
                    eng.runtime.cfg = runtime_config(merged, eng.model.config.step_s)
        return ""

    # -- callbacks: store and return -----------------------------------------------------------
    def _on_image(self, msg: Any) -> None:
        st = msg.header.stamp
        self.engine.runtime.offer_frame(
            frame_from_image(
                to_seconds(st),
                to_ns(st),
                msg.encoding,
                msg.height,
                msg.width,
                msg.step,
                msg.data,
                msg.is_bigendian,
            )
        )

    def _on_compressed(self, msg: Any) -> None:
        st = msg.header.stamp
        self.engine.runtime.offer_frame(
            frame_from_compressed(to_seconds(st), to_ns(st), str(msg.format), msg.data)
        )

    def _on_safety(self, msg: Any) -> None:
        state, was = str(msg.state_name), self._safety_state
        if self.p["state_reset_on"] == "handback":
            reset = state == "ACTIVE" and was in ("FALLBACK", "ESTOP")
        else:
            reset = was == "ACTIVE" and state != "ACTIVE"
        if reset:
            # Do not resume from (or keep) a state built while the policy was not in control.
            self.engine.runtime.reset()
            self.safety_resets += 1
            self._grace = True
            self.node.logger.info(f"safety {was} -> {state}: policy state reset")
        self._safety_state = state

    # -- the timer -----------------------------------------------------------------------------
    def _tick(self) -> None:
        node = self.node
        if self._pending is not None:
            old, self.engine, self._pending = self.engine, self._pending, None
            self.engine.runtime.counters = old.runtime.counters  # keep counting across reloads
            self.engine.runtime.counters.state_resets += 1
            self.reloads += 1
            self._grace = True
            node.logger.info(f"policy swapped in: {self.engine.policy_file or '(default)'}")
            if self._saliency is not None and self.engine.head is not None:
                self._saliency.set_head(self.engine.head, self.engine.model.config.color_order)
        eng = self.engine
        eng.model.delay_s = self._step_delay()
        r = eng.runtime.tick(node.now())
        self._last = r
        if r.steps > 0 or r.overrun or not r.deadline_met:
            self._work_ok = r.steps > 0 and r.deadline_met
        for e in r.events:
            if e != "frame_skipped":
                self._log_event(e)
        sent = hb = False
        if r.outputs is not None:
            self._grace = False
            outs = r.outputs.tolist()
            self._last_outputs = outs
            values = self._command_values(dict(zip(eng.output_names, outs, strict=False)))
            if C.finite(values):
                stamp = r.frame_stamp_ns
                self.pub_cmd.publish(C.build_command(self.cmd_type, node.msg, values, stamp))
                sent = True
            else:
                self.non_finite_outputs += 1
                self._log_event("non_finite_command")
            # The heartbeat proves health: this tick met its deadline on a fresh frame with a
            # finite command, and so did the last tick that had inference work to do (a tick
            # with no step due meets any deadline, also while the inference is stalled).
            if (
                sent
                and r.deadline_met
                and r.fresh
                and self._work_ok
                and not _BAD_EVENTS.intersection(r.events)
            ):
                hb = True
                self.heartbeats += 1
                self.pub_hb.publish(header_ns(node, r.frame_stamp_ns, "ok"))
        self.pub_status.publish(self._status(r, hb, sent))
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
        head = self.engine.head
        if head is None:
            self.node.logger.warning("saliency: this policy has no conv head; not published")
            return
        from ltc_controller.explain.live import SaliencyWorker

        self.pub_saliency = self.node.create_publisher(
            "sensor_msgs/msg/Image", "~/saliency", SALIENCY_QOS
        )
        self._saliency = SaliencyWorker(
            head,
            self.engine.model.config.color_order,
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
        """The :class:`~ltc_controller.explain.live.SaliencyWorker`, or None if never enabled."""
        return self._saliency

    def close(self) -> None:
        """Stop the saliency worker (if any); call before shutting the transport node down."""
        if self._saliency is not None:
            self._saliency.close()

    def _step_delay(self) -> float:
        return float(self.p["debug.step_delay_s"])

    def _command_values(self, out: Mapping[str, float]) -> tuple[float, ...]:
        """Policy outputs -> the command's axis values (see the module docstring)."""
        p = self.p
        speed = out.get("speed", p["speed_mps"])
        if self.cmd_type == C.ACKERMANN or p["twist_mapping"] == "bicycle":
            lim = p["max_steering_angle"]
            steer = max(-lim, min(lim, out.get("steering_angle", 0.0) * p["steering_scale"]))
            if self.cmd_type == C.ACKERMANN:
                return (steer, speed)
            return (speed, 0.0, 0.0, speed * math.tan(steer) / p["wheelbase_m"])
        vs = p["velocity_scale"]
        return (
            out["linear_x"] * vs if "linear_x" in out else speed,
            out.get("linear_y", 0.0) * vs,
            out.get("linear_z", 0.0) * vs,
            out.get("angular_z", 0.0) * p["yaw_rate_scale"],
        )

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

    def _health(self, r: TickResult, sent: bool) -> tuple[int, list[str]]:
        """The runtime watchdog's verdict, plus what only the node knows."""
        health, reasons = int(r.health), list(r.reasons)
        if r.outputs is None and self._grace and health == HEALTH_FAULT:
            # Waiting for the first output after a reset or reload: the command and heartbeat
            # timeouts of the safety node cover this gap; a FAULT here would bounce it back to
            # FALLBACK at every hand-back.
            if set(reasons) <= {"no_frame", "warming"}:
                health, reasons = HEALTH_DEGRADED, ["reset"]
        if r.outputs is not None and not sent:
            reasons.append("non_finite_output")
            health = HEALTH_FAULT
        return health, reasons

    def _status(self, r: TickResult, hb: bool, sent: bool) -> Any:
        node, eng = self.node, self.engine
        c = eng.runtime.counters
        health, reasons = self._health(r, sent)
        self._last_health = (health, reasons)
        rej = sorted(c.rejections.items())
        return node.msg(
            "ltc_controller/msg/PolicyStatus",
            header=header(node, node.now()),
            health=health,
            reasons=reasons,
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
            heartbeat_sent=hb,
            heartbeats=self.heartbeats,
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
        )

    def _publish_diagnostics(self) -> None:
        node, eng = self.node, self.engine
        c = eng.runtime.counters
        t = node.steady()
        span = max(t - self._diag_time, 1e-9)
        tick_rate = (c.ticks - self._diag_ticks) / span
        hb_rate = (self.heartbeats - self._diag_hbs) / span
        self._diag_ticks, self._diag_hbs, self._diag_time = c.ticks, self.heartbeats, t
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
            ("lag_faults", str(c.lag_faults)),
            ("state_resets", str(c.state_resets)),
            ("safety_resets", str(self.safety_resets)),
            ("policy_reloads", str(self.reloads)),
            ("heartbeats", str(self.heartbeats)),
            ("non_finite_outputs", str(self.non_finite_outputs)),
        ]
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
            level=health,
            name=f"{node.name}: runtime",
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
