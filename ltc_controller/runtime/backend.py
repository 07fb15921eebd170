"""Inference backends and devices for the runtime: what a step model is and how one is made.

The runtime needs three things of a model (:class:`StepModel`; ``models.policy.Policy`` and the
models package's other step models have them, structurally). A *backend* turns a loaded policy
into a step model on a device. Every backend is named in one table, :data:`BACKENDS`: name →
(module, factory attribute, pip extra). A backend's module is imported on its first use, so an
optional dependency is needed only by those who ask for its backend:

- ``"torch"`` (this module's :func:`torch_step_model`, base install): the policy itself, moved
  to the device, in eval mode.
- ``"onnx"`` (``ltc_controller.models.onnx.onnx_step_model``, extra ``onnx``): the policy
  exported in memory and run by ONNX Runtime (CPU).
- ``"numba"`` (``ltc_controller.models.fast.numba_step_model``, extra ``numba``): the LTC/CfC
  core stepped by compiled batch-1 kernels (CPU), the head in torch.

Models never import the runtime: the table points down at them, nothing registers itself.

Devices: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (an error if torch sees no CUDA device) and
``"auto"`` (CUDA when available, else CPU). The runtime puts its input buffers on the device of
the model's ``initial_state`` tensor, so a backend chooses where inputs live.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import torch

__all__ = [
    "BACKENDS",
    "Backend",
    "StepModel",
    "StepModelFactory",
    "available_backends",
    "load_step_model",
    "make_step_model",
    "resolve_device",
    "torch_step_model",
]


@runtime_checkable
class StepModel(Protocol):
    """What the runtime calls, batch 1, inside ``torch.inference_mode()``.

    - ``features(images (1, 3, H, W) float32 in [0, 1]) -> (1, F)``
    - ``step(features (1, F), state (1, N), elapsed_s) -> (outputs (1, M), new state (1, N))``:
      advance the state by ``elapsed_s`` seconds (the runtime always passes ``step_s``) with
      the features held constant.
    - ``initial_state(batch) -> (batch, N)``: the reset state; its device is where the runtime
      puts images, features and state.
    """

    def features(self, images: torch.Tensor) -> torch.Tensor: ...
    def step(
        self, features: torch.Tensor, state: torch.Tensor, elapsed_s: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def initial_state(self, batch: int) -> torch.Tensor: ...


#: ``factory(policy, device) -> StepModel``; ``policy`` is a ``models.policy.Policy``.
StepModelFactory = Callable[[Any, torch.device], StepModel]


@dataclass(frozen=True)
class Backend:
    """One row of :data:`BACKENDS`.

    Attributes:
        module: module that holds the factory, imported on first use.
        factory: name of the :data:`StepModelFactory` in ``module``.
        extra: the pip extra that installs the module's dependencies (``None``: the base
            install).
    """

    module: str
    factory: str
    extra: str | None = None


#: Every backend ``make_step_model`` knows, by name.
BACKENDS: dict[str, Backend] = {
    "torch": Backend(__name__, "torch_step_model"),
    "onnx": Backend("ltc_controller.models.onnx", "onnx_step_model", "onnx"),
    "numba": Backend("ltc_controller.models.fast", "numba_step_model", "numba"),
}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu" | "cuda" | "cuda:N" | "auto"`` → a ``torch.device``.

    Raises:
        ValueError: an unknown name, or CUDA asked for where torch sees no CUDA device (names
            the torch build, so the fix is clear).
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: torch {torch.__version__} sees no CUDA device "
                "(CPU-only build or no GPU); use 'cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return dev


def torch_step_model(policy: Any, device: torch.device) -> StepModel:
    """``factory(policy, device)`` of the ``"torch"`` backend: the policy itself on
    ``device``, in eval mode."""
    model: StepModel = policy.to(device).eval()
    return model


def available_backends() -> tuple[str, ...]:
    """Every backend name of :data:`BACKENDS` (whether its extra is installed or not)."""
    return tuple(BACKENDS)


def _factory(backend: str) -> StepModelFactory:
    """The factory of ``backend``, importing its module.

    Raises:
        ValueError: an unknown name (lists the known ones), or a module that fails to import
            (names the backend, the import error and the extra to install).
    """
    row = BACKENDS.get(backend)
    if row is None:
        raise ValueError(f"unknown backend {backend!r}; available: {sorted(BACKENDS)}")
    try:
        module = importlib.import_module(row.module)
    except ImportError as exc:
        hint = f"; install it with pip install 'ltc_controller[{row.extra}]'" if row.extra else ""
        raise ValueError(f"backend {backend!r} cannot be loaded ({exc}){hint}") from exc
    return cast(StepModelFactory, getattr(module, row.factory))


def make_step_model(
    policy: Any, backend: str = "torch", device: str | torch.device = "cpu"
) -> StepModel:
    """The step model the runtime should run for ``policy``.

    Args:
        policy: a ``models.policy.Policy`` (loaded with ``load_policy`` or built). The torch
            backend returns it moved to ``device``; the others leave it untouched.
        backend: a name of :data:`BACKENDS`.
        device: see :func:`resolve_device`.

    Raises:
        ValueError: unknown backend, a backend whose module cannot be imported (names the
            backend, the import error and the pip extra to install), a device the backend
            does not run on, or a bad device name.
    """
    dev = resolve_device(device)
    return _factory(backend)(policy, dev)


def load_step_model(
    path: str | os.PathLike[str], backend: str = "torch", device: str | torch.device = "cpu"
) -> StepModel:
    """The step model of a policy file, or of an ONNX pair, on ``backend``.

    Args:
        path: a ``.safetensors`` policy file (loaded with ``models.policy_file.load_policy``,
            then :func:`make_step_model`), or a directory with ``head.onnx`` and ``step.onnx``
            written by ``models.export.export_onnx_pair`` (backend ``"onnx"`` only).
        backend, device: as :func:`make_step_model`.

    Returns:
        The step model, in eval mode; it also has ``config`` and ``state_size``.

    Raises:
        ValueError: as :func:`make_step_model`; an ONNX directory with another backend.
        PolicyFileError: the policy file cannot be loaded.
    """
    p = Path(path)
    dev = resolve_device(device)
    factory = _factory(backend)  # before loading: an unusable backend fails fast
    if p.is_dir():
        if backend != "onnx":
            raise ValueError(f"{p} is an ONNX directory: use backend 'onnx', not {backend!r}")
        if dev.type != "cpu":
            raise ValueError(
                f"backend 'onnx' runs on the CPU (onnxruntime CPU build), not {device}"
            )
        from ltc_controller.models.export import OnnxStepModel

        model: StepModel = OnnxStepModel.from_directory(p)
        return model
    from ltc_controller.models.policy_file import load_policy

    return factory(load_policy(p), dev)
