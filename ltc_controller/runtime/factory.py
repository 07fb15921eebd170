"""TEMPORARY stand-in for helper A's factory (replaced at merge)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from ltc_controller.runtime.backend import StepModel, make_step_model
from ltc_controller.runtime.loop import PolicyRuntime, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor


@dataclass(frozen=True)
class RuntimeOverrides:
    step_s: float | None = None
    deadline_s: float | None = None
    max_frame_age_s: float | None = None
    max_lag_s: float | None = None
    rewarm_s: float | None = None
    crop_top: int | None = None
    crop_bottom: int | None = None
    crop_left: int | None = None
    crop_right: int | None = None


def runtime_config(policy_config: Any, o: RuntimeOverrides = RuntimeOverrides()) -> RuntimeConfig:
    over = {
        f.name: getattr(o, f.name)
        for f in fields(o)
        if not f.name.startswith("crop_") and getattr(o, f.name) is not None
    }
    over.setdefault("step_s", float(policy_config.step_s))
    return replace(RuntimeConfig(), **over)


def preprocess_config(
    policy_config: Any, o: RuntimeOverrides = RuntimeOverrides()
) -> PreprocessConfig:
    over = {
        f.name: getattr(o, f.name)
        for f in fields(o)
        if f.name.startswith("crop_") and getattr(o, f.name) is not None
    }
    return replace(PreprocessConfig.from_policy(policy_config), **over)


def build_runtime(
    policy: Any,
    overrides: RuntimeOverrides = RuntimeOverrides(),
    clock: Callable[[], float] = time.perf_counter,
    *,
    backend: str = "torch",
    device: str = "cpu",
    wrap: Callable[[StepModel], StepModel] | None = None,
) -> PolicyRuntime:
    cfg = policy.config
    model = make_step_model(policy, backend, device)
    if wrap is not None:
        model = wrap(model)
    return PolicyRuntime(
        model,
        Preprocessor(preprocess_config(cfg, overrides)),
        runtime_config(cfg, overrides),
        clock,
    )
