"""The runtime's ``"onnx"`` backend: a policy exported to ONNX and run by ONNX Runtime (CPU).

Importing this module registers the backend with
:func:`ltc_controller.runtime.backend.register_backend` (the runtime imports it on first use of
``backend="onnx"``). The model is :class:`~ltc_controller.models.export.OnnxStepModel`, exported
in memory from the policy: equal to the torch policy within 1e-5.
"""

from __future__ import annotations

from typing import Any

import torch

from ltc_controller.runtime.backend import register_backend

from .export import OnnxStepModel

__all__ = ["onnx_step_model"]


def onnx_step_model(policy: Any, device: torch.device) -> OnnxStepModel:
    """``factory(policy, device)`` of the ``"onnx"`` backend.

    Raises:
        ValueError: a device other than the CPU (the pinned onnxruntime is the CPU build).
    """
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend 'onnx' runs on the CPU (onnxruntime CPU build), not {device}")
    return OnnxStepModel.from_policy(policy)


register_backend("onnx", onnx_step_model, replace=True)
