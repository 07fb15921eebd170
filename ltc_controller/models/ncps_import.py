"""Import the recurrent part of an ncps-trained model into a policy (and a policy file).

Accepted ``state_dict`` layouts (ncps 1.0.1, PyTorch):

* LTC architectures (``ncp_ltc``, ``ltc_fc``): ``ncps.torch.LTC`` (keys ``rnn_cell.*``) or
  ``ncps.torch.LTCCell`` (bare keys ``gleak``, ``w``, ..., masks included);
* CfC architectures: ``ncps.torch.CfC`` (``rnn_cell.*``, plus ``fc.*`` with ``proj_size``),
  ``ncps.torch.CfCCell`` or ``ncps.torch.WiredCfCCell`` (bare keys). The ``cfc`` architecture needs
  the projection to its M outputs (ncps ``CfC(..., proj_size=M)``); ``ncp_cfc`` reads the motor
  neurons directly (ncps ``CfC(in, wiring)`` without ``proj_size``).

The ``config`` says what the ncps model was: the architecture, the wiring (arguments and seed:
ncps wiring objects do not keep their seed, so give ours), ``implicit_param_constraints`` (ncps's
``LTC`` defaults to True, its ``LTCCell`` to False: it changes what the weights mean), the CfC
mode and backbone, and the head's feature count (``input_dim``). Sparsity masks in the state_dict
are checked against the config's wiring. The perception head's weights come from
``head_state_dict`` if given, else a seeded random head.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from .policy import Policy, PolicyConfig
from .policy_file import save_policy

__all__ = ["import_ncps", "policy_from_ncps"]


def _core_state_dict(state_dict: Mapping[str, Tensor], config: PolicyConfig) -> dict[str, Tensor]:
    keys = list(state_dict)
    if any(k.startswith("lstm.") for k in keys):
        raise ValueError("ncps mixed_memory models (keys 'lstm.*') are not supported")
    wrapped = bool(keys) and all(k.startswith(("rnn_cell.", "fc.")) for k in keys)
    if config.architecture in ("ncp_ltc", "ltc_fc"):
        if wrapped:
            return {k.removeprefix("rnn_cell."): v for k, v in state_dict.items()}
        return dict(state_dict)
    if config.architecture in ("cfc", "ncp_cfc"):
        if wrapped:
            return dict(state_dict)
        return {f"rnn_cell.{k}": v for k, v in state_dict.items()}
    raise ValueError(
        f"architecture {config.architecture!r} has no ncps counterpart; import LTC or CfC models"
    )


def policy_from_ncps(
    state_dict: Mapping[str, Tensor],
    config: PolicyConfig,
    *,
    head_state_dict: Mapping[str, Tensor] | None = None,
    seed: int = 0,
) -> Policy:
    """A :class:`Policy` whose core holds the weights of an ncps model.

    Args:
        state_dict: the ncps model's ``state_dict()`` (see the module docstring for layouts).
        config: the policy config matching the ncps model (architecture, wiring, constraints).
        head_state_dict: weights for ``policy.head`` (``ConvHead``/``DroneTrunk`` keys), or None
            for a random head drawn from ``seed``.
        seed: seed of the untrained parts.

    Returns:
        The policy (train mode, float32); its outputs equal the ncps model's for the same
        features (times ``config.output_scale``).

    Raises:
        ValueError: an architecture without ncps counterpart, a mixed-memory model, missing or
            unexpected keys, wrong shapes, or sparsity masks that disagree with the wiring; the
            message names the keys.
    """
    policy = Policy.from_config(config, seed=seed)
    core_state = _core_state_dict(state_dict, config)
    ours = policy.core.state_dict()
    missing = sorted(set(ours) - set(core_state))
    extra = sorted(set(core_state) - set(ours))
    if missing or extra:
        hint = ""
        if config.architecture == "cfc" and any(k.startswith("fc.") for k in missing):
            hint = f" (the cfc policy needs ncps CfC(..., proj_size={len(config.output_names)}))"
        raise ValueError(
            f"ncps state_dict does not fit a {config.architecture} policy with this config: "
            f"missing {missing}, unexpected {extra}{hint}"
        )
    for name, value in core_state.items():
        if tuple(value.shape) != tuple(ours[name].shape):
            raise ValueError(
                f"ncps tensor '{name}' has shape {tuple(value.shape)}, the config gives "
                f"{tuple(ours[name].shape)}"
            )
    try:
        policy.core.load_state_dict(
            {k: v.detach().to(torch.float32) for k, v in core_state.items()}, strict=True
        )
        if head_state_dict is not None:
            policy.head.load_state_dict(dict(head_state_dict), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"cannot load the ncps weights: {exc}") from exc
    return policy


def import_ncps(
    state_dict: Mapping[str, Tensor],
    config: PolicyConfig,
    path: str | os.PathLike[str],
    *,
    head_state_dict: Mapping[str, Tensor] | None = None,
    seed: int = 0,
) -> Path:
    """:func:`policy_from_ncps`, written as a policy file to ``path``; returns the path.

    Raises:
        ValueError: see :func:`policy_from_ncps`.
        PolicyFileError: a non-finite weight (nothing is written).
    """
    policy = policy_from_ncps(state_dict, config, head_state_dict=head_state_dict, seed=seed)
    return save_policy(policy, path)
