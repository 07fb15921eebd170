"""Devices and step-model backends: cpu | cuda | auto, and the plug-in hook (e.g. ONNX Runtime)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ltc_controller.models.policy import Policy
from ltc_controller.runtime.backend import (
    BACKEND_MODULES,
    available_backends,
    make_step_model,
    register_backend,
    resolve_device,
)
from ltc_controller.runtime.loop import RawFrame, RuntimeConfig, make_runtime

H, W = 78, 200
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    return Policy.from_config(seed=5).eval()


def frames(n: int = 8) -> list[RawFrame]:
    rng = np.random.default_rng(0)
    return [
        RawFrame(
            3.0 + 0.05 * k,
            "bgr8",
            H,
            W,
            W * 3,
            rng.integers(0, 256, (H, W, 3), dtype=np.uint8).tobytes(),
        )
        for k in range(n)
    ]


def run(model, config) -> np.ndarray:
    rt = make_runtime(model, config, RuntimeConfig(deadline_s=10.0, max_lag_s=10.0))
    outs = []
    for f in frames():
        rt.offer_frame(f)
        r = rt.tick(f.stamp)
        if r.outputs is not None:
            outs.append(r.outputs.copy())
    assert len(outs) == len(frames()) - 1
    return np.stack(outs)


def test_cpu_and_auto_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cpu" if NO_CUDA else "cuda")


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_device_names_are_rejected(name):
    with pytest.raises(ValueError, match="expected cpu, cuda"):
        resolve_device(name)


def test_torch_backend_on_cpu_runs_the_policy_itself(policy):
    model = make_step_model(policy, "torch", "cpu")
    assert model is policy and "torch" in available_backends()
    assert np.isfinite(run(model, policy.config)).all()


class Float64Backend:
    """A real second backend: the same policy evaluated in float64."""

    def __init__(self, policy: Policy, device: torch.device) -> None:
        self.policy = Policy(policy.config).double().to(device).eval()
        self.policy.load_state_dict(policy.state_dict())

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.policy.features(images.double())

    def step(self, features, state, elapsed_s):
        return self.policy.step(features, state, elapsed_s)

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.policy.initial_state(batch)


def test_registered_backend_is_plugged_into_the_runtime(policy):
    register_backend("float64-test", Float64Backend, replace=True)
    model = make_step_model(policy, "float64-test", "cpu")
    assert isinstance(model, Float64Backend)
    np.testing.assert_allclose(
        run(model, policy.config), run(policy, policy.config), rtol=0, atol=1e-5
    )
    with pytest.raises(ValueError, match="already registered"):
        register_backend("float64-test", Float64Backend)


def test_unknown_backend_names_the_available_ones(policy):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'.*torch"):
        make_step_model(policy, "tensorrt")


ONNX_MODULE = BACKEND_MODULES["onnx"]
HAS_ONNX_BACKEND = importlib.util.find_spec(ONNX_MODULE) is not None


@pytest.mark.skipif(HAS_ONNX_BACKEND, reason=f"{ONNX_MODULE} is present")
def test_missing_onnx_backend_is_a_clear_error(policy):
    with pytest.raises(ValueError, match=ONNX_MODULE.replace(".", r"\.")):
        make_step_model(policy, "onnx")


@pytest.mark.skipif(not HAS_ONNX_BACKEND, reason=f"{ONNX_MODULE} (ONNX backend) not written yet")
def test_onnx_backend_runtime_equals_torch(policy):
    model = make_step_model(policy, "onnx", "cpu")
    np.testing.assert_allclose(
        run(model, policy.config), run(policy, policy.config), rtol=0, atol=1e-5
    )


@pytest.mark.skipif(NO_CUDA, reason="no CUDA device: the CUDA runtime path is not exercised here")
def test_cuda_runtime_equals_cpu(policy):
    import copy

    on_gpu = make_step_model(copy.deepcopy(policy), "torch", "cuda")
    np.testing.assert_allclose(
        run(on_gpu, policy.config), run(policy, policy.config), rtol=0, atol=1e-5
    )
