"""The factory of the runtime's ``"onnx"`` backend: a policy exported to ONNX, run by ONNX Runtime.

``ltc_controller.runtime.backend.BACKENDS`` names :func:`onnx_step_model` (extra ``onnx``) and
imports this module on first use of ``backend="onnx"``; this module knows nothing of the runtime.
It imports ``onnxruntime`` at once, so a missing install fails the import (and the runtime's
error names the extra). The model is :class:`~ltc_controller.models.export.OnnxStepModel`,
exported in memory from the policy: equal to the torch policy within 1e-5.
"""

from __future__ import annotations

import onnxruntime  # noqa: F401  (the backend's dependency: fail here when it is missing)
import torch

from .export import OnnxStepModel
from .policy import Policy

__all__ = ["onnx_step_model"]


def onnx_step_model(policy: Policy, device: torch.device) -> OnnxStepModel:
    """``factory(policy, device)`` of the ``"onnx"`` backend (CPU only).

    Raises:
        ValueError: a device other than the CPU (the pinned onnxruntime is the CPU build).
    """
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend 'onnx' runs on the CPU (onnxruntime CPU build), not {device}")
    return OnnxStepModel.from_policy(policy)
