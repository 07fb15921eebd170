"""ncps-trained state_dicts imported into policy files give ncps's outputs."""

import ncps.torch as nct
import ncps.wirings as ncw
import pytest
import torch

from ltc_controller.models.ncps_import import import_ncps, policy_from_ncps
from ltc_controller.models.policy import PolicyConfig
from ltc_controller.models.policy_file import load_policy
from ltc_controller.models.wiring import NCP


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _perturbed(module):
    """'Trained' weights: the seeded init moved by noise (explicit-mode constraints kept)."""
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.add_(0.2 * torch.randn_like(param))
    return module


def _outputs_match(reference_cell, policy, steps=20, scale=1.0, motor=None):
    """Step both with the same features and elapsed = step_s; compare outputs and states."""
    feats = torch.randn(steps, 1, 32)
    h_ref = torch.zeros(1, policy.state_size)
    h = policy.initial_state(1)
    with torch.no_grad():
        for t in range(steps):
            y_ref, h_ref = reference_cell(feats[t], h_ref, policy.config.step_s)
            y, h = policy.step(feats[t], h)
            y_ref = y_ref if motor is None else motor(y_ref)
            torch.testing.assert_close(y, scale * y_ref, rtol=0, atol=1e-5)
            torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-5)


def test_ncps_ltc_imports_to_a_policy_file_with_ncps_outputs(tmp_path):
    torch.manual_seed(1)
    reference = _perturbed(nct.LTC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6)))  # softplus constraints
    config = PolicyConfig(output_scale=(0.5,), step_s=0.1)  # the default NCP-19, seed 22222
    path = import_ncps(reference.state_dict(), config, tmp_path / "imported.safetensors")
    policy = load_policy(path)
    assert policy.config == config
    _outputs_match(reference.rnn_cell, policy, scale=0.5)


def test_ncps_ltc_cell_in_explicit_mode_imports_with_matching_config():
    wiring = ncw.NCP(12, 6, 1, 6, 4, 6, 6, seed=7)
    wiring.build(32)
    torch.manual_seed(2)
    reference = _perturbed(nct.LTCCell(wiring, input_mapping="linear"))
    reference.apply_weight_constraints()
    config = PolicyConfig(
        wiring=NCP(12, 6, 1, 6, 4, 6, 6, seed=7).get_config(),
        implicit_param_constraints=False,  # ncps's LTCCell default
        input_mapping="linear",
    )
    _outputs_match(reference, policy_from_ncps(reference.state_dict(), config))


def test_ncps_wired_cfc_imports_as_ncp_cfc(tmp_path):
    torch.manual_seed(3)
    reference = _perturbed(nct.CfC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6), mode="no_gate"))
    config = PolicyConfig(architecture="ncp_cfc", core_options={"mode": "no_gate"})
    policy = load_policy(import_ncps(reference.state_dict(), config, tmp_path / "cfc.safetensors"))
    _outputs_match(reference.rnn_cell, policy)


def test_ncps_cfc_with_projection_imports_as_cfc():
    torch.manual_seed(4)
    reference = _perturbed(nct.CfC(32, 12, proj_size=1, backbone_units=64, activation="silu"))
    config = PolicyConfig(
        architecture="cfc",
        units=12,
        core_options={"backbone_units": 64, "backbone_activation": "silu"},
    )
    _outputs_match(
        reference.rnn_cell, policy_from_ncps(reference.state_dict(), config), motor=reference.fc
    )


def test_import_errors_name_the_problem():
    torch.manual_seed(5)
    no_proj = nct.CfC(32, 12)
    with pytest.raises(ValueError, match=r"missing \['fc.bias', 'fc.weight'\].*proj_size=1"):
        policy_from_ncps(no_proj.state_dict(), PolicyConfig(architecture="cfc", units=12))
    other_seed = nct.LTC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6, seed=9))
    with pytest.raises(ValueError, match="sparsity_mask disagrees with the wiring"):
        policy_from_ncps(other_seed.state_dict(), PolicyConfig())
    mixed = nct.LTC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6), mixed_memory=True)
    with pytest.raises(ValueError, match="mixed_memory"):
        policy_from_ncps(mixed.state_dict(), PolicyConfig())
    with pytest.raises(ValueError, match="no ncps counterpart"):
        policy_from_ncps(other_seed.state_dict(), PolicyConfig(architecture="gru"))
    fc16 = nct.LTC(32, 16)
    with pytest.raises(ValueError, match=r"ncps tensor 'gleak' has shape \(16,\)"):
        policy_from_ncps(fc16.state_dict(), PolicyConfig(architecture="ltc_fc", units=19))
