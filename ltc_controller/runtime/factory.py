"""The one way a :class:`~ltc_controller.runtime.loop.PolicyRuntime` is assembled from a policy.

A policy file carries what the runtime must match (image size, crop, colour order, the
integration step ``step_s``); the caller sets the rest (deadline, staleness, lag bound, re-warm
time) and may override the step and the crop. :func:`build_runtime` puts the three together:

    policy ──make_step_model(backend, device)──▶ step model ──wrap──▶ model
    policy.config + overrides ──preprocess_config──▶ Preprocessor
    policy.config + overrides ──runtime_config────▶ RuntimeConfig
                                                        ──▶ PolicyRuntime(model, pre, cfg, clock)

Its users: the ``ltc_policy`` node (overrides from its parameters, a fault-injection ``wrap``),
closed-loop evaluation (``training.closed_loop``: a frozen work clock), explain
(``explain.openloop``: a frozen work clock, crop applied before the runtime) and the benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ltc_controller.runtime.backend import StepModel, make_step_model
from ltc_controller.runtime.loop import PolicyRuntime, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor

__all__ = ["RuntimeOverrides", "build_runtime", "preprocess_config", "runtime_config"]

_CROPS = ("crop_top", "crop_bottom", "crop_left", "crop_right")
_DEFAULTS = RuntimeConfig()


@dataclass(frozen=True)
class RuntimeOverrides:
    """What a caller sets over the policy file's own settings; None = the policy file's
    (step_s, crops) or RuntimeConfig's default (the rest).

    Attributes:
        step_s: integration step h (s); default the policy file's ``step_s``.
        deadline_s: work budget of a tick (s), see
            :class:`~ltc_controller.runtime.loop.RuntimeConfig`.
        max_frame_age_s: staleness bound of frames and held features (s).
        max_lag_s: lag beyond this is a fault, the backlog is dropped (s).
        rewarm_s: integration on fresh frames after a reset before outputs are given (s).
        tick_period_s: the caller's tick period (s; sets the stall/jump gap bound),
            ``clock_stop_s``: steady time without ROS time advancing that is a stopped clock (s;
            0: ``max_frame_age_s``), ``reject_zero_stamps``: frames stamped 0 are rejected
            (ROS's "unset"); see :class:`~ltc_controller.runtime.loop.RuntimeConfig`.
        crop_top, crop_bottom, crop_left, crop_right: pixels removed from each side of the
            camera image before resizing (>= 0); default the policy file's ``crop``.

    Times are checked where they are used (:class:`RuntimeConfig` raises ``ValueError`` naming
    the field).

    Raises:
        ValueError: a crop that is not an int >= 0 (naming the field).
    """

    step_s: float | None = None
    deadline_s: float | None = None
    max_frame_age_s: float | None = None
    max_lag_s: float | None = None
    rewarm_s: float | None = None
    tick_period_s: float | None = None
    clock_stop_s: float | None = None
    reject_zero_stamps: bool | None = None
    crop_top: int | None = None
    crop_bottom: int | None = None
    crop_left: int | None = None
    crop_right: int | None = None

    def __post_init__(self) -> None:
        for name in _CROPS:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"RuntimeOverrides.{name} must be an int >= 0, got {value!r}")


def runtime_config(
    policy_config: Any, overrides: RuntimeOverrides = RuntimeOverrides()
) -> RuntimeConfig:
    """The runtime settings for a policy: ``step_s`` from ``overrides`` or else the policy file
    (``PolicyConfig.step_s``), the other fields of :class:`RuntimeOverrides` from ``overrides``
    or else :class:`RuntimeConfig`'s defaults.

    Args:
        policy_config: a ``models.policy.PolicyConfig`` (anything with ``step_s``).
        overrides: see :class:`RuntimeOverrides`.

    Raises:
        ValueError: a value :class:`RuntimeConfig` rejects (naming the field).
    """
    o, d = overrides, _DEFAULTS
    return RuntimeConfig(
        step_s=float(policy_config.step_s if o.step_s is None else o.step_s),
        deadline_s=d.deadline_s if o.deadline_s is None else float(o.deadline_s),
        max_frame_age_s=d.max_frame_age_s
        if o.max_frame_age_s is None
        else float(o.max_frame_age_s),
        max_lag_s=d.max_lag_s if o.max_lag_s is None else float(o.max_lag_s),
        rewarm_s=d.rewarm_s if o.rewarm_s is None else float(o.rewarm_s),
        tick_period_s=d.tick_period_s if o.tick_period_s is None else float(o.tick_period_s),
        clock_stop_s=d.clock_stop_s if o.clock_stop_s is None else float(o.clock_stop_s),
        reject_zero_stamps=d.reject_zero_stamps
        if o.reject_zero_stamps is None
        else bool(o.reject_zero_stamps),
    )


def preprocess_config(
    policy_config: Any, overrides: RuntimeOverrides = RuntimeOverrides()
) -> PreprocessConfig:
    """The preprocessing for a policy: image size and colour order from the policy file
    (``PolicyConfig.image_height``/``image_width``/``color_order``), the crop from
    ``overrides`` where given, else the policy file's ``crop``.

    Args:
        policy_config: a ``models.policy.PolicyConfig``.
        overrides: see :class:`RuntimeOverrides`.
    """
    base = PreprocessConfig.from_policy(policy_config)
    crops = {name: v for name in _CROPS if (v := getattr(overrides, name)) is not None}
    return replace(base, **crops) if crops else base


def build_runtime(
    policy: Any,
    overrides: RuntimeOverrides = RuntimeOverrides(),
    clock: Callable[[], float] = time.perf_counter,
    *,
    backend: str = "torch",
    device: str = "cpu",
    wrap: Callable[[StepModel], StepModel] | None = None,
) -> PolicyRuntime:
    """A :class:`PolicyRuntime` for ``policy``, warm-up included (as its constructor does).

    Args:
        policy: a ``models.policy.Policy`` (``config`` gives preprocessing and ``step_s``).
            The ``"torch"`` backend runs the policy itself (moved to ``device``, eval mode);
            copy it first if the caller needs it elsewhere.
        overrides: settings over the policy file's (see :class:`RuntimeOverrides`).
        clock: monotonic clock for deadlines (s); a frozen clock (``lambda: 0.0``) makes every
            due step fit (the deterministic regime of offline evaluation).
        backend, device: the step model's backend and device
            (:func:`~ltc_controller.runtime.backend.make_step_model`).
        wrap: applied to the step model before the runtime gets it (e.g. the node's
            fault-injection model).

    Returns:
        The runtime (``runtime.model`` is the wrapped step model).

    Raises:
        ValueError: an unknown or unusable backend or device (the message names the backend,
            the import error and the pip extra to install), or a bad override.
    """
    config = policy.config
    pre = Preprocessor(preprocess_config(config, overrides))
    cfg = runtime_config(config, overrides)
    model = make_step_model(policy, backend, device)
    if wrap is not None:
        model = wrap(model)
    return PolicyRuntime(model, pre, cfg, clock)
