"""Devices and step-model backends: cpu | cuda | auto, and the one backend table (torch, ONNX
Runtime, numba) that names each backend's module and pip extra; models never import the runtime."""

from __future__ import annotations

import ast
import copy
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ltc_controller
from ltc_controller.models.export import export_onnx_pair
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.policy_file import save_policy
from ltc_controller.runtime.backend import (
    BACKENDS,
    Backend,
    StepModel,
    available_backends,
    load_step_model,
    make_step_model,
    resolve_device,
)
from ltc_controller.runtime.factory import (
    RuntimeOverrides,
    build_runtime,
    preprocess_config,
    runtime_config,
)
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame
from ltc_controller.runtime.preprocess import Preprocessor

H, W = 78, 200
NO_CUDA = not torch.cuda.is_available()
MODELS = Path(ltc_controller.__file__).parent / "models"


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


OVERRIDES = RuntimeOverrides(deadline_s=10.0, max_lag_s=10.0)


def run(policy: Policy, backend: str = "torch", device: str = "cpu") -> np.ndarray:
    """Outputs of the runtime ``build_runtime`` makes for ``policy`` on ``backend``."""
    return drive(build_runtime(policy, OVERRIDES, backend=backend, device=device))


def run_model(model: StepModel) -> np.ndarray:
    """Outputs of a runtime around a step model made beforehand."""
    config = model.config
    pre = Preprocessor(preprocess_config(config, OVERRIDES))
    return drive(PolicyRuntime(model, pre, runtime_config(config, OVERRIDES)))


def drive(rt: PolicyRuntime) -> np.ndarray:
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


def test_the_table_names_every_backend_with_its_module_and_extra():
    assert available_backends() == ("torch", "onnx", "numba")
    assert BACKENDS["torch"].extra is None
    assert BACKENDS["onnx"] == Backend("ltc_controller.models.onnx", "onnx_step_model", "onnx")
    assert BACKENDS["numba"] == Backend("ltc_controller.models.fast", "numba_step_model", "numba")


def test_torch_backend_on_cpu_runs_the_policy_itself(policy):
    model = make_step_model(policy, "torch", "cpu")
    assert model is policy
    assert np.isfinite(run(policy)).all()


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


def test_a_row_of_the_table_is_all_a_backend_needs(policy, monkeypatch):
    monkeypatch.setitem(BACKENDS, "float64-test", Backend(__name__, "Float64Backend"))
    model = make_step_model(policy, "float64-test", "cpu")
    assert isinstance(model, Float64Backend)
    np.testing.assert_allclose(run(policy, "float64-test"), run(policy), rtol=0, atol=1e-5)


def test_unknown_backend_names_the_available_ones(policy):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'.*numba.*onnx.*torch"):
        make_step_model(policy, "tensorrt")


def test_a_backend_whose_module_fails_to_import_names_it_the_error_and_the_extra(
    policy, monkeypatch
):
    monkeypatch.setitem(
        BACKENDS, "tensorrt", Backend("ltc_controller.models.no_such_module", "factory", "trt")
    )
    with pytest.raises(ValueError) as info:
        make_step_model(policy, "tensorrt")
    message = str(info.value)
    assert "backend 'tensorrt'" in message
    assert "No module named 'ltc_controller.models.no_such_module'" in message
    assert "pip install 'ltc_controller[trt]'" in message


def test_onnx_backend_without_onnxruntime_asks_for_the_onnx_extra(policy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails: not installed
    monkeypatch.delitem(sys.modules, "ltc_controller.models.onnx", raising=False)
    with pytest.raises(ValueError, match=r"backend 'onnx'.*onnxruntime.*\[onnx\]"):
        make_step_model(policy, "onnx")


def test_onnx_backend_runtime_equals_torch(policy):
    np.testing.assert_allclose(run(policy, "onnx"), run(policy), rtol=0, atol=1e-5)


def test_numba_backend_runtime_equals_torch(policy):
    from ltc_controller.models.fast import FastStepModel

    assert isinstance(make_step_model(policy, "numba", "cpu"), FastStepModel)
    np.testing.assert_allclose(run(policy, "numba"), run(policy), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "numba"])
def test_cpu_only_backends_refuse_another_device(policy, backend):
    row = BACKENDS[backend]
    factory = getattr(importlib.import_module(row.module), row.factory)
    with pytest.raises(ValueError, match=f"backend '{backend}' runs on the CPU"):
        factory(policy, torch.device("cuda"))  # checked before CUDA is touched


@pytest.mark.parametrize("backend", ["onnx", "numba"])
def test_backends_from_a_policy_file_drive_the_runtime_like_torch(backend, tmp_path):
    path = save_policy(
        Policy.from_config(PolicyConfig(architecture="ncp_cfc"), seed=2), tmp_path / "p.safetensors"
    )
    torch_model = load_step_model(path, "torch")
    other = load_step_model(path, backend)
    assert other.config == torch_model.config and other.state_size == torch_model.state_size
    np.testing.assert_allclose(run_model(other), run_model(torch_model), rtol=0, atol=1e-5)


def test_an_onnx_directory_loads_on_the_onnx_backend_only(tmp_path):
    policy = Policy.from_config(PolicyConfig(architecture="gru"), seed=2).eval()
    export_onnx_pair(policy, tmp_path / "gru")
    model = load_step_model(tmp_path / "gru", "onnx")
    assert model.config == policy.config and model.initial_state(2).shape == (2, 64)
    np.testing.assert_allclose(run_model(model), run(policy), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="ONNX directory: use backend 'onnx', not 'torch'"):
        load_step_model(tmp_path / "gru", "torch")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_step_model(tmp_path / "p.safetensors", "tensorrt")


def _runtime_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [n for n in names if n.startswith("ltc_controller.runtime")]


def test_models_never_import_the_runtime():
    found = {p.name: _runtime_imports(p) for p in sorted(MODELS.glob("*.py"))}
    assert len(found) > 5
    assert {k: v for k, v in found.items() if v} == {}
    # Importing the backends' modules loads no runtime module either (no hidden registration).
    code = (
        "import sys, ltc_controller.models.fast, ltc_controller.models.onnx;"
        "print(sorted(m for m in sys.modules if m.startswith('ltc_controller.runtime')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(NO_CUDA, reason="no CUDA device: the CUDA runtime path is not exercised here")
def test_cuda_runtime_equals_cpu(policy):
    np.testing.assert_allclose(
        run(copy.deepcopy(policy), "torch", "cuda"), run(policy), rtol=0, atol=1e-5
    )
