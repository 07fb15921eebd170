"""Inference backends and devices for the runtime: what a step model is and how one is made.

The runtime needs three things of a model (:class:`StepModel`, ``models.policy.Policy`` has
them). A *backend* turns a loaded policy into a step model on a device:

- ``"torch"`` (built in): the policy itself, moved to the device, in eval mode.
- ``"onnx"``: ONNX Runtime, provided by the models package. Its module registers itself with
  :func:`register_backend` on import; :func:`make_step_model` imports
  :data:`BACKEND_MODULES` (``"onnx"``, ``"numba"``) the first time it is asked for.

Devices: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (an error if torch sees no CUDA device) and
``"auto"`` (CUDA when available, else CPU). The runtime puts its input buffers on the device of
the model's ``initial_state`` tensor, so a backend chooses where inputs live.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "BACKEND_MODULES",
    "StepModel",
    "StepModelFactory",
    "available_backends",
    "make_step_model",
    "register_backend",
    "resolve_device",
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

#: Modules imported on first use of a backend name; importing one registers the backend.
BACKEND_MODULES: dict[str, str] = {
    "onnx": "ltc_controller.models.onnx",
    "numba": "ltc_controller.models.fast",
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


def _torch_backend(policy: Any, device: torch.device) -> StepModel:
    model: StepModel = policy.to(device).eval()
    return model


_BACKENDS: dict[str, StepModelFactory] = {"torch": _torch_backend}


def register_backend(name: str, factory: StepModelFactory, replace: bool = False) -> None:
    """Make ``make_step_model(policy, backend=name)`` use ``factory``.

    Raises:
        ValueError: ``name`` is taken and ``replace`` is false.
    """
    if name in _BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered")
    _BACKENDS[name] = factory


def available_backends() -> tuple[str, ...]:
    """Names registered so far (``"torch"`` always; others once their module is imported)."""
    return tuple(_BACKENDS)


def make_step_model(
    policy: Any, backend: str = "torch", device: str | torch.device = "cpu"
) -> StepModel:
    """The step model the runtime should run for ``policy``.

    Args:
        policy: a ``models.policy.Policy`` (loaded with ``load_policy`` or built).
        backend: ``"torch"``, ``"onnx"`` or any name given to :func:`register_backend`.
        device: see :func:`resolve_device`.

    Raises:
        ValueError: unknown backend, a backend whose module cannot be imported (names the
            module and the import error), or a bad device.
    """
    dev = resolve_device(device)
    if backend not in _BACKENDS and backend in BACKEND_MODULES:
        module = BACKEND_MODULES[backend]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"backend {backend!r} needs {module}, which failed: {exc}") from exc
    factory = _BACKENDS.get(backend)
    if factory is None:
        raise ValueError(f"unknown backend {backend!r}; available: {sorted(_BACKENDS)}")
    return factory(policy, dev)
