"""LTC/CfC/NCP models, baselines, perception heads and policy files (torch only, no transport).

Optional extras, imported on their own: :mod:`.fast` (numba inference steps), :mod:`.export`
(TorchScript/ONNX export, :class:`~.export.OnnxStepModel`), :mod:`.onnx` (the runtime's
``"onnx"`` backend), :mod:`.ncps_import` (ncps-trained weights into a policy file).
"""

from .cfc import CfC, CfCCell, WiredCfCCell
from .cores import Core, CoreSize, CTRNNCore, GRUCore, LSTMCore, MLPCore
from .heads import ConvHead, DroneTrunk, per_image_standardization
from .ltc import LTC, LTCCell
from .policy import ARCHITECTURES, Crop, Policy, PolicyConfig
from .policy_file import PolicyFileError, load_policy, save_policy
from .summary import ModelSize, model_size
from .wiring import NCP, AutoNCP, FullyConnected, Random, Wiring, wiring_from_config

__all__ = [
    "ARCHITECTURES",
    "LTC",
    "NCP",
    "AutoNCP",
    "CTRNNCore",
    "CfC",
    "CfCCell",
    "ConvHead",
    "Core",
    "CoreSize",
    "Crop",
    "DroneTrunk",
    "FullyConnected",
    "GRUCore",
    "LSTMCore",
    "LTCCell",
    "MLPCore",
    "ModelSize",
    "Policy",
    "PolicyConfig",
    "PolicyFileError",
    "Random",
    "WiredCfCCell",
    "Wiring",
    "load_policy",
    "model_size",
    "per_image_standardization",
    "save_policy",
    "wiring_from_config",
]
