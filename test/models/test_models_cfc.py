"""CfCCell / WiredCfCCell / CfC against ncps.torch 1.0.1 (the reference implementation)."""

import ncps.torch as nct
import ncps.wirings as ncw
import pytest
import torch

from ltc_controller.models.cfc import CfC, CfCCell, WiredCfCCell
from ltc_controller.models.wiring import NCP, AutoNCP, Random

MODES = ["default", "pure", "no_gate"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
# name -> (ncps CfC(...) arguments, our CfC(...) arguments, inputs)
MODELS = {
    "fc": (lambda: {"units": 9, "proj_size": 2}, lambda: {"units": 9, "proj_size": 2}, 5),
    "ncp19": (
        lambda: {"units": ncw.NCP(12, 6, 1, 6, 4, 6, 6)},
        lambda: {"units": NCP(12, 6, 1, 6, 4, 6, 6)},
        32,
    ),
    "autoncp": (
        lambda: {"units": ncw.AutoNCP(16, 3, seed=4)},
        lambda: {"units": AutoNCP(16, 3, seed=4)},
        7,
    ),
    "random": (
        lambda: {"units": ncw.Random(8, 2, 0.5, 3)},
        lambda: {"units": Random(8, 2, 0.5, 3)},
        6,
    ),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(name, mode, seed=0, **extra):
    """An ncps CfC with random weights and ours loaded from its state_dict."""
    ref_args, our_args, inputs = MODELS[name]
    torch.manual_seed(seed)
    reference = nct.CfC(inputs, mode=mode, **ref_args(), **extra)
    with torch.no_grad():
        for param in reference.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    ours = CfC(inputs, mode=mode, **our_args(), **extra)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours, inputs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["fc", "ncp19"])
def test_seeded_init_equals_ncps_init(name, mode):
    ref_args, our_args, inputs = MODELS[name]
    extra = {"backbone_layers": 2, "backbone_dropout": 0.1} if name == "fc" else {}
    torch.manual_seed(11)
    reference = nct.CfC(inputs, mode=mode, **ref_args(), **extra)
    torch.manual_seed(11)
    ours = CfC(inputs, mode=mode, **our_args(), **extra)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert set(ref_state) == set(our_state)  # order differs: our masks are buffers
    for key, value in ref_state.items():
        assert torch.equal(value, our_state[key]), key


@pytest.mark.parametrize(
    ("name", "mode", "dtype"),
    [(name, mode, torch.float64) for name in MODELS for mode in MODES]
    + [(name, mode, torch.float32) for name in ("fc", "ncp19") for mode in MODES],
)
def test_100_irregular_steps_equal_ncps(name, mode, dtype):
    reference, ours, inputs = _pair(name, mode)
    reference.to(dtype)
    ours.to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 100, inputs, generator=gen, dtype=dtype)
    elapsed = torch.rand(3, 100, generator=gen, dtype=dtype) * 0.3 + 0.01
    h_ref = torch.zeros(3, ours.state_size, dtype=dtype)
    h_ours = h_ref.clone()
    worst = 0.0
    with torch.no_grad():
        for t in range(100):
            # ncps's cells take per-sample (B, 1) time; its wrapper cannot (issue #81)
            y_ref, h_ref = reference.rnn_cell(x[:, t], h_ref, elapsed[:, t : t + 1])
            y_ours, h_ours = ours.rnn_cell(x[:, t], h_ours, elapsed[:, t])
            worst = max(
                worst,
                (reference.fc(y_ref) - ours.fc(y_ours)).abs().max().item(),
                (h_ref - h_ours).abs().max().item(),
            )
    assert h_ours.dtype == dtype
    assert worst <= TOL[dtype]


@pytest.mark.parametrize("name", ["fc", "ncp19"])
def test_ncps_cfc_state_dict_loads_and_sequence_equals(name):
    reference, ours, inputs = _pair(name, "default", seed=3)
    x = torch.randn(1, 25, inputs)
    ts = torch.rand(1, 25) + 0.05  # ncps's wrapper only handles timespans for B = 1
    with torch.no_grad():
        for a, b in zip(reference(x, timespans=ts), ours(x, timespans=ts), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        last_ref = nct.CfC(inputs, mode="default", return_sequences=False, **MODELS[name][0]())
        last_ref.load_state_dict(reference.state_dict())
        last_ours = CfC(inputs, mode="default", return_sequences=False, **MODELS[name][1]())
        last_ours.load_state_dict(reference.state_dict())
        torch.testing.assert_close(last_ours(x)[0], last_ref(x)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["fc", "ncp19"])
def test_per_sample_timespans_equal_separate_batch_one_calls(name):
    _, model, inputs = _pair(name, "default")
    model.double()
    batch = model.state_size  # B == H: the case where ncps's wrapper mis-broadcasts silently
    x = torch.randn(batch, 4, inputs, dtype=torch.float64)
    ts = torch.rand(batch, 4, dtype=torch.float64) + 0.01
    with torch.no_grad():
        y, h = model(x, timespans=ts)
        for b in range(batch):
            y_b, h_b = model(x[b : b + 1], timespans=ts[b : b + 1])
            torch.testing.assert_close(y[b : b + 1], y_b, rtol=0, atol=1e-12)
            torch.testing.assert_close(h[b : b + 1], h_b, rtol=0, atol=1e-12)


def test_step_by_step_equals_whole_sequence():
    _, model, inputs = _pair("autoncp", "no_gate")
    model.double()
    x = torch.randn(2, 30, inputs, dtype=torch.float64)
    ts = torch.rand(2, 30, dtype=torch.float64) + 0.01
    with torch.no_grad():
        y_seq, h_seq = model(x, timespans=ts)
        h = torch.zeros(2, model.state_size, dtype=torch.float64)
        steps = []
        for t in range(30):
            y, h = model.rnn_cell(x[:, t], h, ts[:, t])
            steps.append(model.fc(y))
        y1, h1 = model(x[:, :11], timespans=ts[:, :11])
        y2, h2 = model(x[:, 11:], h1, timespans=ts[:, 11:])
    torch.testing.assert_close(torch.stack(steps, 1), y_seq, rtol=0, atol=0)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_seq, rtol=0, atol=0)
    torch.testing.assert_close(h2, h_seq, rtol=0, atol=0)


def test_wired_state_is_in_ncps_layer_order_and_output_is_the_motor_layer():
    _, model, _ = _pair("ncp19", "default")
    cell = model.rnn_cell
    assert isinstance(cell, WiredCfCCell)
    assert cell.layer_sizes == [12, 6, 1]
    x, h = torch.randn(2, 32), torch.randn(2, 19)
    with torch.no_grad():
        y, new = cell(x, h, 0.4)
    torch.testing.assert_close(y, new[:, 18:], rtol=0, atol=0)


def test_masked_synapses_have_no_effect():
    _, model, inputs = _pair("ncp19", "default")
    x, h = torch.randn(2, inputs), torch.randn(2, 19)
    with torch.no_grad():
        before = model.rnn_cell(x, h, 0.3)
        assert any(bool((cell.sparsity_mask == 0).any()) for cell in model.rnn_cell.layers)
        for cell in model.rnn_cell.layers:
            dead = cell.sparsity_mask == 0
            cell.ff1.weight[dead] = float("inf")
            cell.ff2.weight[dead] = float("nan")
        after = model.rnn_cell(x, h, 0.3)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_mask_that_disagrees_with_the_wiring_is_rejected():
    torch.manual_seed(0)
    reference = nct.CfC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6, seed=1))
    ours = CfC(32, NCP(12, 6, 1, 6, 4, 6, 6, seed=2))
    with pytest.raises(RuntimeError, match="sparsity_mask disagrees with the wiring"):
        ours.load_state_dict(reference.state_dict())


def test_wiring_is_not_mutated_and_serves_two_models():
    wiring = NCP(12, 6, 1, 6, 4, 6, 6)
    a, b = CfC(32, wiring), CfC(8, wiring)
    assert wiring.input_dim is None
    assert (a.rnn_cell.sensory_size, b.rnn_cell.sensory_size) == (32, 8)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CfCCell(4, 5, mode="fast"), "unknown CfC mode"),
        (lambda: CfCCell(4, 5, backbone_activation="swish"), "backbone_activation"),
        (lambda: CfC(4, NCP(5, 3, 1, 2, 2, 2, 2), backbone_units=64), "backbone_units"),
        (lambda: CfCCell(4, 5)(torch.zeros(2, 4), torch.zeros(2, 5), torch.ones(3)), "ts must"),
        (lambda: CfCCell(4, 5)(torch.zeros(2, 4), torch.zeros(2, 6)), "hx must be"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
