"""LTC/NCP models, perception heads and policy files (torch only, no transport)."""

from .heads import ConvHead, per_image_standardization
from .ltc import LTC, LTCCell
from .policy import Crop, Policy, PolicyConfig, substep_counts
from .policy_file import PolicyFileError, load_policy, save_policy
from .wiring import NCP, AutoNCP, FullyConnected, Wiring, wiring_from_config

__all__ = [
    "LTC",
    "NCP",
    "AutoNCP",
    "ConvHead",
    "Crop",
    "FullyConnected",
    "LTCCell",
    "Policy",
    "PolicyConfig",
    "PolicyFileError",
    "Wiring",
    "load_policy",
    "per_image_standardization",
    "save_policy",
    "substep_counts",
    "wiring_from_config",
]
