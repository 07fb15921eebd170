"""The policy an ``ltc_policy`` node runs: loaded, checked against the command mapping, and
assembled into a runtime by the one runtime factory (:func:`~ltc_controller.runtime.factory
.build_runtime`). An :class:`Engine` is everything that belongs to one loaded policy; the node
swaps it as one reference between two ticks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.policy_file import BUNDLED_POLICY, load_policy
from ltc_controller.models.wiring import NCP
from ltc_controller.nodes.policy_logic import CommandMapping, check_outputs
from ltc_controller.nodes.policy_params import runtime_overrides
from ltc_controller.params import ParameterError
from ltc_controller.runtime.backend import StepModel
from ltc_controller.runtime.factory import build_runtime
from ltc_controller.runtime.loop import PolicyRuntime
from ltc_controller.runtime.ood import AttentionMonitor, FeatureMonitor

__all__ = ["DRONE_OUTPUTS", "Engine", "StallableModel", "build_engine", "load_model"]

#: Outputs of the untrained placeholder used for ``twist_mapping: direct`` without a file.
DRONE_OUTPUTS = ("linear_x", "linear_y", "linear_z", "angular_z")


def load_model(policy_file: str, seed: int, outputs: tuple[str, ...] | None = None) -> Policy:
    """The policy to run: ``policy_file``, else the bundled policy, else an untrained NCP.

    The untrained NCP is the NCP-19 (one motor neuron, ``steering_angle``) unless ``outputs``
    names other outputs (e.g. :data:`DRONE_OUTPUTS`): then one motor neuron per output. Both are
    placeholders so the loop runs before a trained policy ships.

    Raises:
        PolicyFileError: the file is missing, corrupt or does not match its config.
    """
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

    def __init__(self, inner: StepModel) -> None:
        self.inner = inner
        self.delay_s = 0.0

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` -> ``(1, F)`` (the inner model's)."""
        return self.inner.features(images)

    @property
    def has_channel_means(self) -> bool:
        """Whether the inner model offers ``features_and_channel_means`` (ONNX head_maps)."""
        return bool(getattr(self.inner, "has_channel_means", False))

    def features_and_channel_means(self, images: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
        """The inner model's features and per-layer channel means (see ``OnnxStepModel``)."""
        return self.inner.features_and_channel_means(images)  # type: ignore[attr-defined]

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
    """Everything that belongs to one loaded policy; swapped as one reference.

    Attributes:
        policy: the loaded policy (a crop change builds a new runtime from it, without reading
            the file again).
        config: the policy file's config (``PolicyConfig``).
        model: the runtime's step model (fault injection around the backend's).
        runtime: the policy's runtime.
        output_names: the policy's outputs, in output order.
        policy_file: the file it came from (``""``: the default policy).
        load_s: seconds it took to load and build (warm-up included).
        head: a private CPU copy of the conv head for the saliency worker (None: the policy
            has none).
        monitor: the out-of-distribution monitor on the policy file's feature statistics
            (None: the file has none); attached to the runtime while ``ood.enabled``.
        attention: the attention monitor on the policy file's calibration (None: the file has
            none); attached to the runtime while ``attention.enabled``. It runs the policy's
            own head (one pass for features and saliency with the torch and numba backends;
            with onnx, one pass of the exported ``head_maps`` graph).
    """

    policy: Policy
    config: PolicyConfig
    model: StallableModel
    runtime: PolicyRuntime
    output_names: tuple[str, ...]
    policy_file: str
    load_s: float
    head: Any = None
    monitor: FeatureMonitor | None = None
    attention: AttentionMonitor | None = None

    def configure_monitor(self, p: Mapping[str, Any]) -> None:
        """Apply ``ood.*`` and ``attention.*``: thresholds (0 = the file's), every-N (0 = the
        file's), attached to the runtime or not."""
        mon = self.monitor
        if mon is not None:
            mon.degraded = p["ood.degraded_threshold"] or mon.stats.degraded
            mon.fault = max(p["ood.fault_threshold"] or mon.stats.fault, mon.degraded)
            self.runtime.feature_monitor = mon if p["ood.enabled"] else None
        att = self.attention
        if att is not None:
            att.degraded = p["attention.degraded_threshold"] or att.stats.degraded
            att.fault = max(p["attention.fault_threshold"] or att.stats.fault, att.degraded)
            att.every_n = p["attention.every_n_frames"] or att.stats.every_n_frames
            self.runtime.attention_monitor = att if p["attention.enabled"] else None

    def attention_level(self, p: Mapping[str, Any]) -> int:
        """The attention monitor's level this tick (0 when detached or absent), capped at
        DEGRADED unless ``attention.hand_over``."""
        att = self.runtime.attention_monitor
        if att is None:
            return 0
        return att.level if p["attention.hand_over"] else min(att.level, 1)

    @property
    def attention_state(self) -> str:
        """``active``, ``disabled`` (``attention.enabled`` false) or ``unavailable`` (no
        calibration in the policy file)."""
        if self.attention is None:
            return "unavailable"
        return "active" if self.runtime.attention_monitor is not None else "disabled"

    def ood_level(self, p: Mapping[str, Any]) -> int:
        """The monitor's level this tick (0 when detached or absent), capped at DEGRADED
        unless ``ood.hand_over``."""
        mon = self.runtime.feature_monitor
        if mon is None:
            return 0
        return mon.level if p["ood.hand_over"] else min(mon.level, 1)

    @property
    def ood_state(self) -> str:
        """``active``, ``disabled`` (``ood.enabled`` false) or ``unavailable`` (no statistics
        in the policy file)."""
        if self.monitor is None:
            return "unavailable"
        return "active" if self.runtime.feature_monitor is not None else "disabled"


def build_engine(
    p: Mapping[str, Any], clock: Callable[[], float], policy: Policy | None = None
) -> Engine:
    """Load the policy ``p['policy_file']`` (or take the already loaded ``policy``), check it
    fits the command mapping, and build its runtime on ``p['device']``/``p['backend']`` with the
    parameters' overrides (warm-up included). ``clock``: the monotonic clock deadlines are
    measured on.

    Raises:
        PolicyFileError: the file cannot be loaded.
        ParameterError: its outputs do not fit ``command_type``/``twist_mapping``, or the device
            or backend is not usable here (the message names the parameter).
    """
    t0 = time.monotonic()
    mapping = CommandMapping.from_params(p)
    if policy is None:
        policy = load_model(
            p["policy_file"], p["untrained_seed"], DRONE_OUTPUTS if mapping.direct else None
        )
    cfg = policy.config
    names = tuple(cfg.output_names)
    check_outputs(mapping, names, p["policy_file"] or "the default policy")
    # Copied before the backend takes the policy (it may move it to a device or export it).
    head = copy.deepcopy(policy.head).cpu().float().eval()
    stallable: list[StallableModel] = []

    def wrap(inner: StepModel) -> StepModel:
        stallable.append(StallableModel(inner))
        return stallable[-1]

    try:
        runtime = build_runtime(
            policy,
            runtime_overrides(p),
            clock,
            backend=p["backend"],
            device=p["device"],
            wrap=wrap,
        )
    except ValueError as e:
        raise ParameterError(f"parameter 'device'/'backend': {e}") from None
    stats = getattr(policy, "feature_stats", None)
    engine = Engine(
        policy,
        cfg,
        stallable[0],
        runtime,
        names,
        p["policy_file"],
        time.monotonic() - t0,
        head,
        FeatureMonitor(stats) if stats is not None else None,
    )
    att = getattr(policy, "attention_stats", None)
    if att is not None:
        # After build_runtime: the head is where the backend put it. The torch and numba
        # backends take their features from this head, so one pass gives both; onnx gives both
        # from its head_maps graph (AttentionMonitor.take asks the model).
        engine.attention = AttentionMonitor(att, policy.head, fused=p["backend"] != "onnx")
    engine.configure_monitor(p)
    return engine
