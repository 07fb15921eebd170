"""One factory assembles a runtime from a policy: the policy file's step and crop unless
overridden, RuntimeConfig's defaults for the rest, the backend table's model, the caller's wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltc_controller.models.policy import Crop, Policy, PolicyConfig
from ltc_controller.runtime.backend import StepModel
from ltc_controller.runtime.factory import (
    RuntimeOverrides,
    build_runtime,
    preprocess_config,
    runtime_config,
)
from ltc_controller.runtime.loop import RawFrame, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig

CONFIG = PolicyConfig(step_s=0.02, crop=Crop(10, 4, 2, 6), color_order="bgr")


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    return Policy.from_config(CONFIG, seed=1).eval()


def test_no_overrides_take_the_policy_files_step_and_crop_and_the_runtime_defaults():
    cfg = runtime_config(CONFIG)
    assert cfg == RuntimeConfig(step_s=0.02)
    pre = preprocess_config(CONFIG)
    assert pre == PreprocessConfig(78, 200, 10, 4, 2, 6, "bgr")


def test_overrides_replace_only_what_they_set():
    over = RuntimeOverrides(step_s=0.01, deadline_s=0.004, rewarm_s=0.1, crop_top=0, crop_right=3)
    cfg = runtime_config(CONFIG, over)
    default = RuntimeConfig()
    assert (cfg.step_s, cfg.deadline_s, cfg.rewarm_s) == (0.01, 0.004, 0.1)
    assert (cfg.max_frame_age_s, cfg.max_lag_s) == (default.max_frame_age_s, default.max_lag_s)
    pre = preprocess_config(CONFIG, over)
    assert (pre.crop_top, pre.crop_bottom, pre.crop_left, pre.crop_right) == (0, 4, 2, 3)
    assert (pre.height, pre.width, pre.color_order) == (78, 200, "bgr")


def test_bad_overrides_are_clear_errors_naming_the_field():
    with pytest.raises(ValueError, match="crop_left must be an int >= 0"):
        RuntimeOverrides(crop_left=-1)
    with pytest.raises(ValueError, match="RuntimeConfig.max_lag_s must be positive"):
        runtime_config(CONFIG, RuntimeOverrides(max_lag_s=0.0))


class Counting:
    """A wrapper like the node's fault-injection model: counts the steps it passes on."""

    def __init__(self, inner: StepModel) -> None:
        self.inner = inner
        self.steps = 0

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.features(images)

    def step(self, features, state, elapsed_s):
        self.steps += 1
        return self.inner.step(features, state, elapsed_s)

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.inner.initial_state(batch)


def test_build_runtime_wraps_the_backends_model_and_runs_the_policy_files_settings(policy):
    ticks = iter(np.arange(0.0, 10.0, 1e-4))
    rt = build_runtime(
        policy,
        RuntimeOverrides(deadline_s=5.0, max_lag_s=5.0),
        clock=lambda: float(next(ticks)),
        wrap=Counting,
    )
    model = rt.model
    assert isinstance(model, Counting) and model.inner is policy
    assert rt.cfg.step_s == 0.02 and rt.pre.cfg == preprocess_config(CONFIG)
    warm_up = model.steps
    assert warm_up > 0  # the constructor warmed the model up
    h, w = 78 + 14, 200 + 8  # a camera frame the crop fits
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes()
    rt.offer_frame(RawFrame(1.0, "rgb8", h, w, w * 3, img))
    assert rt.tick(1.0).outputs is None
    rt.offer_frame(RawFrame(1.05, "rgb8", h, w, w * 3, img))
    r = rt.tick(1.05)
    assert r.steps == 2 and model.steps == warm_up + 2 and r.outputs is not None


def test_build_runtime_names_the_backend_it_cannot_use(policy):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        build_runtime(policy, backend="tpu")
