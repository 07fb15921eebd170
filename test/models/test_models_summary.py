"""Neuron, synapse and parameter counts: Table 2 of Lechner et al. 2020 reproduced."""

import pytest
import torch

from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.summary import format_sizes, model_size
from ltc_controller.models.wiring import NCP


def _size(**config):
    with torch.random.fork_rng(devices=[]):
        return model_size(Policy(PolicyConfig(**config)))


def test_ncp_with_252_synapses_has_the_papers_1065_rnn_parameters():
    # NCP(12, 6, 1, 6, 4, 6, 6) draws 252 synapses for seed 1 (250 for ncps's default 22222);
    # the paper's count is 3 N + 4 synapses = 3*19 + 4*252 = 1,065.
    size = _size(wiring=NCP(12, 6, 1, 6, 4, 6, 6, seed=1).get_config())
    assert (size.neurons, size.synapses, size.recurrent_parameters) == (19, 252, 1_065)
    assert size.head_parameters == 79_420
    # live trainable numbers add the affine input (2 x 32) and output (2 x 1) maps
    assert size.trainable_parameters == 79_420 + 1_065 + 66
    # stored: ncps-style dense matrices, 3*19 + 4*19**2 + 4*32*19 + 2*32 + 2*1 = 3,999
    assert size.stored_parameters == 79_420 + 3_999


def test_ct_rnn_64_has_the_papers_6273_parameters():
    size = _size(architecture="ctrnn", units=64)
    assert (size.neurons, size.recurrent_parameters, size.head_parameters) == (64, 6_273, 79_420)
    assert size.synapses == 96 * 64 + 64  # the paper prints 6,112; the same rule gives 6,208


def test_lstm_64_has_the_papers_24897_parameters_and_24640_synapses():
    size = _size(architecture="lstm", units=64)
    assert (size.neurons, size.synapses, size.recurrent_parameters) == (64, 24_640, 24_897)


def test_counts_follow_units_outputs_and_masks():
    lstm19 = _size(architecture="lstm", units=19)
    assert lstm19.recurrent_parameters == 4 * 19 * (32 + 19) + 4 * 19 + 19 + 1
    gru = _size(
        architecture="gru",
        units=10,
        output_names=("a", "b"),
        output_units=("", ""),
        output_scale=(1.0, 1.0),
    )
    assert gru.recurrent_parameters == 3 * 10 * 42 + 6 * 10 + 2 * 10 + 2
    cnn = _size(architecture="cnn", units=16)
    assert (cnn.synapses, cnn.recurrent_parameters) == (32 * 16 + 16, 32 * 16 + 16 + 16 + 1)
    with torch.random.fork_rng(devices=[]):
        wired = Policy(PolicyConfig(architecture="ncp_cfc"))
    size = model_size(wired)
    layers = wired.core.rnn_cell.layers
    weights = sum(p.numel() for n, p in wired.core.named_parameters() if n.endswith("weight"))
    masked_out = sum(int((c.sparsity_mask == 0).sum()) for c in layers)
    assert masked_out > 0
    assert size.synapses == weights - 2 * masked_out  # ff1 and ff2 are masked, time_a/b dense


@pytest.mark.parametrize("arch", ["ncp_ltc", "ltc_fc", "cfc", "ncp_cfc", "lstm", "gru", "ctrnn"])
def test_every_architecture_reports_positive_counts(arch):
    size = _size(architecture=arch)
    assert 0 < size.synapses <= size.recurrent_parameters <= size.trainable_parameters
    assert size.trainable_parameters <= size.stored_parameters
    assert f"| {arch} |" in format_sizes([size])
