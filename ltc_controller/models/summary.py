"""Neurons, synapses and trainable parameters of a policy, as Lechner et al. 2020 count them.

Table 2 of *Neural circuit policies enabling auditable autonomy* (Nat. Mach. Intell. 2:642-652)
compares the recurrent part of the lane-keeping models on the same 79,420-parameter conv head:

=========  =======  ========  ==========  =============================================
model      neurons  synapses  parameters  convention that reproduces it (32 in, 1 out)
=========  =======  ========  ==========  =============================================
NCP        19       253       1,065       3 N + 4 synapses (gleak, vleak, cm per neuron;
                                          w, sigma, mu, erev per synapse), sensory
                                          synapses included, input/output maps excluded;
                                          1,065 needs 252 synapses (the paper's "253" is
                                          one more than its own code's wiring gives)
CT-RNN     64       6,112     6,273       (I + H) H weights + H biases + readout H M + M;
                                          tau fixed (the same rule gives 6,208 synapses,
                                          not the paper's 6,112)
LSTM       64       24,640    24,897      4 H (I + H) weights + H M readout weights =
                                          synapses; + 4 H gate biases + M readout bias
=========  =======  ========  ==========  =============================================

:func:`model_size` applies those rules (``CoreSize`` of each core) and adds the head.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .policy import Policy

__all__ = ["ModelSize", "format_sizes", "model_size"]


@dataclass(frozen=True)
class ModelSize:
    """Size of one policy.

    Attributes:
        architecture: ``config.architecture``.
        neurons: recurrent units of the core (LSTM: H; ``cnn``: hidden units).
        synapses: connections of the core (see :class:`~ltc_controller.models.cores.CoreSize`).
        recurrent_parameters: Table 2's "RNN parameters" of the core.
        head_parameters: trainable parameters of the perception head (79,420 for the NCP head
            on 78x200 images).
        trainable_parameters: every live trainable number of the policy (head + core, LTC
            input/output maps included, masked synapse entries excluded).
        stored_parameters: every trainable tensor entry, masked ones included (what
            ``sum(p.numel() for p in policy.parameters())`` gives, less the fixed masks).
    """

    architecture: str
    neurons: int
    synapses: int
    recurrent_parameters: int
    head_parameters: int
    trainable_parameters: int
    stored_parameters: int


def model_size(policy: Policy) -> ModelSize:
    """Count neurons, synapses and parameters of ``policy`` (see the module docstring)."""
    core = policy.core.size()
    head = sum(int(p.numel()) for p in policy.head.parameters() if p.requires_grad)
    stored = sum(int(p.numel()) for p in policy.parameters() if p.requires_grad)
    return ModelSize(
        architecture=policy.config.architecture,
        neurons=core.neurons,
        synapses=core.synapses,
        recurrent_parameters=core.parameters,
        head_parameters=head,
        trainable_parameters=head + core.trainable,
        stored_parameters=stored,
    )


def format_sizes(sizes: Iterable[ModelSize]) -> str:
    """A Markdown table of sizes, one row per model."""
    lines = [
        "| architecture | neurons | synapses | RNN params | head params | trainable | stored |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(
            f"| {s.architecture} | {s.neurons:,} | {s.synapses:,} | {s.recurrent_parameters:,} "
            f"| {s.head_parameters:,} | {s.trainable_parameters:,} | {s.stored_parameters:,} |"
        )
    return "\n".join(lines)
