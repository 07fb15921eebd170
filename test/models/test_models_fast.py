"""numba inference steps (FastLTC, FastCfC, FastStepModel) equal the torch modules."""

import pytest
import torch

from ltc_controller.models.fast import FastLTC, FastStepModel
from ltc_controller.models.ltc import LTCCell
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.wiring import NCP, AutoNCP

CASES = {
    "ncp_ltc": {},
    "ncp_ltc_explicit_linear": {"implicit_param_constraints": False, "input_mapping": "linear"},
    "ltc_fc": {"architecture": "ltc_fc", "units": 8},
    "cfc_default": {"architecture": "cfc", "units": 12, "core_options": {"backbone_layers": 2}},
    "cfc_pure": {"architecture": "cfc", "core_options": {"mode": "pure"}},
    "cfc_no_gate_silu": {
        "architecture": "cfc",
        "core_options": {"mode": "no_gate", "backbone_activation": "silu"},
    },
    "cfc_gelu_no_backbone": {
        "architecture": "cfc",
        "core_options": {"backbone_activation": "gelu", "backbone_layers": 0},
    },
    "ncp_cfc": {"architecture": "ncp_cfc"},
    # feature_norm applies at the core's input, so the fast step does it too.
    "ncp_ltc_layer_norm": {"architecture": "ncp_ltc", "feature_norm": "layer"},
    "cfc_layer_norm": {"architecture": "cfc", "feature_norm": "layer"},
    "ncp_cfc_pure": {"architecture": "ncp_cfc", "core_options": {"mode": "pure"}},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _policy(case: str, dtype: torch.dtype) -> Policy:
    policy = Policy.from_config(PolicyConfig(**CASES[case]), seed=8).to(dtype).eval()
    with torch.no_grad():  # move every weight off its init so mistakes show
        for param in policy.core.parameters():
            param.add_(0.2 * torch.randn_like(param))
    policy.apply_weight_constraints()
    return policy


@pytest.mark.parametrize("case", list(CASES))
def test_100_irregular_steps_equal_the_torch_policy_in_float64(case):
    policy = _policy(case, torch.float64)
    fast = FastStepModel(policy)
    gen = torch.Generator().manual_seed(3)
    feats = torch.rand(100, 3, 32, generator=gen, dtype=torch.float64) * 2
    elapsed = torch.rand(100, 3, generator=gen, dtype=torch.float64) * 0.2 + 0.01
    h_torch = policy.initial_state(3, dtype=torch.float64)
    h_fast = fast.initial_state(3)
    worst = 0.0
    with torch.inference_mode():
        for t in range(100):
            y_torch, h_torch = policy.step(feats[t], h_torch, elapsed[t])
            y_fast, h_fast = fast.step(feats[t], h_fast, elapsed[t])
            worst = max(
                worst,
                (y_torch - y_fast).abs().max().item(),
                (h_torch - h_fast).abs().max().item(),
            )
    assert worst <= 1e-10


@pytest.mark.parametrize("case", list(CASES))
def test_every_step_equals_the_float32_torch_policy_within_its_rounding(case):
    """The kernels compute in float64; a float32 torch step rounds at about 1e-7 per term, so
    the 128-wide CfC backbones differ by up to ~2e-6, everything else stays under 1e-6."""
    policy = _policy(case, torch.float32)
    fast = FastStepModel(policy)
    gen = torch.Generator().manual_seed(4)
    feats = torch.rand(100, 3, 32, generator=gen) * 2
    elapsed = torch.rand(100, 3, generator=gen) * 0.2 + 0.01
    state = policy.initial_state(3)
    worst = 0.0
    with torch.inference_mode():
        for t in range(100):
            y_fast, h_fast = fast.step(feats[t], state, elapsed[t])
            y_torch, state = policy.step(feats[t], state, elapsed[t])
            worst = max(
                worst,
                (y_torch.double() - y_fast).abs().max().item(),
                (state.double() - h_fast).abs().max().item(),
            )
    wide_backbone = case in ("cfc_default", "cfc_pure", "cfc_no_gate_silu", "cfc_layer_norm")
    assert worst <= (1e-5 if wide_backbone else 1e-6)


def test_float_elapsed_and_float32_state_are_accepted():
    policy = _policy("ncp_ltc", torch.float32)
    fast = FastStepModel(policy)
    feats, state = torch.rand(1, 32), 0.2 * torch.randn(1, 19)
    with torch.inference_mode():
        expected = policy.step(feats, state)  # config.step_s
        got = fast.step(feats, state)
        step_s = torch.tensor([policy.config.step_s], dtype=torch.float64)
        again = fast.step(feats, state.double(), step_s)
    for a, b, c in zip(expected, got, again, strict=True):
        torch.testing.assert_close(b, a.double(), rtol=0, atol=1e-6)
        torch.testing.assert_close(c, b, rtol=0, atol=0)


def test_masked_synapses_are_never_read():
    torch.manual_seed(0)
    cell = LTCCell(AutoNCP(16, 3, seed=4), 7, implicit_param_constraints=True).double()
    x, h = torch.randn(2, 7, dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64)
    before = FastLTC(cell).step(x.numpy(), h.numpy(), 0.3)
    with torch.no_grad():
        for name in ("w", "sigma", "mu", "erev"):
            getattr(cell, name)[cell.sparsity_mask == 0] = float("nan")
        for name in ("sensory_w", "sensory_sigma", "sensory_mu", "sensory_erev"):
            getattr(cell, name)[cell.sensory_sparsity_mask == 0] = float("inf")
    after = FastLTC(cell).step(x.numpy(), h.numpy(), 0.3)
    for a, b in zip(before, after, strict=True):
        assert (a == b).all()


def test_refresh_picks_up_new_weights():
    policy = _policy("ncp_ltc", torch.float64)
    fast = FastStepModel(policy)
    feats, state = torch.rand(1, 32, dtype=torch.float64), fast.initial_state(1)
    with torch.inference_mode():
        first = fast.step(feats, state)[0]
    with torch.no_grad():
        policy.ltc.gleak.mul_(3.0)
    with torch.inference_mode():
        assert torch.equal(fast.step(feats, state)[0], first)  # a snapshot until refreshed
        fast.refresh()
        torch.testing.assert_close(
            fast.step(feats, state)[0], policy.step(feats, state)[0], rtol=0, atol=1e-12
        )


def test_unsupported_architecture_and_bad_inputs_raise():
    with pytest.raises(ValueError, match="no fast step for architecture 'lstm'"):
        FastStepModel(Policy(PolicyConfig(architecture="lstm")))
    fast = FastStepModel(
        Policy(PolicyConfig(wiring=NCP(12, 6, 1, 6, 4, 6, 6, seed=2).get_config()))
    )
    with pytest.raises(ValueError, match="features must be"):
        fast.step(torch.zeros(1, 31), fast.initial_state(1))
    with pytest.raises(ValueError, match="elapsed must be a positive"):
        fast.step(torch.zeros(1, 32), fast.initial_state(1), 0.0)
