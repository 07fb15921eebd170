"""LTCCell / LTC against ncps.torch 1.0.1 (the reference implementation)."""

import ncps.torch as nct
import ncps.wirings as ncw
import pytest
import torch

import ltc_controller.models.ltc as ltc_module
from ltc_controller.models.ltc import LTC, LTCCell
from ltc_controller.models.wiring import NCP, AutoNCP, FullyConnected, Random

WIRINGS = {
    "ncp19": (lambda: ncw.NCP(12, 6, 1, 6, 4, 6, 6), lambda: NCP(12, 6, 1, 6, 4, 6, 6), 32),
    "autoncp": (lambda: ncw.AutoNCP(16, 3, seed=4), lambda: AutoNCP(16, 3, seed=4), 7),
    "fc": (lambda: ncw.FullyConnected(6, 2), lambda: FullyConnected(6, 2), 5),
    "random": (lambda: ncw.Random(10, 3, 0.6, 5), lambda: Random(10, 3, 0.6, 5), 6),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(name, implicit, seed=0, mapping="affine"):
    """An ncps cell with random (valid) weights and our cell loaded from its state_dict."""
    make_ref, make_ours, inputs = WIRINGS[name]
    torch.manual_seed(seed)
    reference = nct.LTCCell(
        _built(make_ref(), inputs),
        input_mapping=mapping,
        output_mapping=mapping,
        implicit_param_constraints=implicit,
    )
    with torch.no_grad():
        for param in reference.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    reference.apply_weight_constraints()  # explicit mode: keep w, cm, gleak >= 0
    ours = LTCCell(
        make_ours(),
        inputs,
        input_mapping=mapping,
        output_mapping=mapping,
        implicit_param_constraints=implicit,
    )
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours, inputs


def _built(wiring, inputs):
    wiring.build(inputs)
    return wiring


def test_seeded_init_equals_ncps_init():
    torch.manual_seed(123)
    reference = nct.LTCCell(_built(ncw.NCP(12, 6, 1, 6, 4, 6, 6), 32))
    torch.manual_seed(123)
    ours = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(ref_state) == list(our_state) or set(ref_state) == set(our_state)
    for key, value in ref_state.items():
        assert torch.equal(value, our_state[key]), key


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("name", list(WIRINGS))
def test_100_irregular_steps_equal_ncps(name, implicit, dtype):
    reference, ours, inputs = _pair(name, implicit)
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
            # ncps needs (B, 1) for per-sample elapsed; ours takes (B,) too
            y_ref, h_ref = reference(x[:, t], h_ref, elapsed[:, t : t + 1])
            y_ours, h_ours = ours(x[:, t], h_ours, elapsed[:, t])
            worst = max(
                worst, (y_ref - y_ours).abs().max().item(), (h_ref - h_ours).abs().max().item()
            )
    assert h_ours.dtype == dtype
    assert worst <= TOL[dtype]


@pytest.mark.parametrize("mapping", ["linear", "none"])
def test_other_mappings_equal_ncps(mapping):
    reference, ours, inputs = _pair("ncp19", True, mapping="none" if mapping == "none" else mapping)
    x, h = torch.randn(2, inputs), torch.randn(2, 19)
    with torch.no_grad():
        for a, b in zip(reference(x, h, 0.7), ours(x, h, 0.7), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_gradients_equal_ncps():
    reference, ours, inputs = _pair("ncp19", True)
    reference.double()
    ours.double()
    x, h = torch.randn(2, inputs, dtype=torch.float64), torch.randn(2, 19, dtype=torch.float64)
    for cell in (reference, ours):
        y, h_new = cell(x, h, 0.2)
        (y.sum() + h_new.square().sum()).backward()
    ref_params = dict(reference.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ref_params[name].grad, rtol=0, atol=1e-10, msg=name)


def test_ncps_ltc_state_dict_loads_and_sequence_equals():
    torch.manual_seed(5)
    # unbuilt: ncps's NCP.build draws again (and adds synapses) when called a second time
    reference = nct.LTC(32, ncw.NCP(12, 6, 1, 6, 4, 6, 6))  # implicit constraints by default
    ours = LTC(32, NCP(12, 6, 1, 6, 4, 6, 6))
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 20, 32)
    ts = torch.rand(1, 20) + 0.05  # ncps's wrapper only handles timespans for B = 1
    with torch.no_grad():
        for a, b in zip(reference(x, timespans=ts), ours(x, timespans=ts), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_step_by_step_equals_whole_sequence():
    model = LTC(7, AutoNCP(16, 3, seed=4), implicit_param_constraints=False).double()
    x = torch.randn(4, 30, 7, dtype=torch.float64)
    ts = torch.rand(4, 30, dtype=torch.float64) + 0.01
    with torch.no_grad():
        y_seq, h_seq = model(x, timespans=ts)
        h = torch.zeros(4, 16, dtype=torch.float64)
        steps = []
        for t in range(30):
            y, h = model.rnn_cell(x[:, t], h, ts[:, t])
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), y_seq, rtol=0, atol=0)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=0)
    # and in two halves with the carried state
    with torch.no_grad():
        y1, h1 = model(x[:, :13], timespans=ts[:, :13])
        y2, h2 = model(x[:, 13:], h1, timespans=ts[:, 13:])
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_seq, rtol=0, atol=0)


def test_per_sample_elapsed_equals_separate_batch_one_calls():
    _, cell, inputs = _pair("ncp19", True)
    cell.double()
    batch = 19  # B == H: the case where ncps mis-broadcasts
    x = torch.randn(batch, inputs, dtype=torch.float64)
    h = torch.randn(batch, 19, dtype=torch.float64)
    elapsed = torch.rand(batch, dtype=torch.float64) + 0.01
    with torch.no_grad():
        y, h_new = cell(x, h, elapsed)
        for b in range(batch):
            y_b, h_b = cell(x[b : b + 1], h[b : b + 1], float(elapsed[b]))
            torch.testing.assert_close(y[b : b + 1], y_b, rtol=0, atol=1e-12)
            torch.testing.assert_close(h_new[b : b + 1], h_b, rtol=0, atol=1e-12)
        y2, _ = cell(x, h, elapsed.unsqueeze(1))
    torch.testing.assert_close(y2, y, rtol=0, atol=0)


def test_masked_synapses_have_no_effect():
    _, cell, inputs = _pair("ncp19", False)
    x, h = torch.randn(2, inputs), torch.randn(2, 19)
    with torch.no_grad():
        before = cell(x, h, 0.3)
        dead = cell.sparsity_mask == 0
        sensory_dead = cell.sensory_sparsity_mask == 0
        for name in ("w", "sigma", "mu", "erev"):
            getattr(cell, name)[dead] = float("inf") if name == "w" else 1e3
        for name in ("sensory_w", "sensory_sigma", "sensory_mu", "sensory_erev"):
            getattr(cell, name)[sensory_dead] = -7.0
        after = cell(x, h, 0.3)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dense_fallback_equals_gather_path(monkeypatch):
    reference, cell, inputs = _pair("fc", True)
    x, h = torch.randn(3, inputs), torch.randn(3, 6)
    with torch.no_grad():
        gathered = cell(x, h, 0.4)
        monkeypatch.setattr(ltc_module, "_MAX_GATHER_ELEMENTS", 0)
        cell.invalidate_cache()
        dense = cell(x, h, 0.4)
        expected = reference(x, h, 0.4)
    for a, b, c in zip(gathered, dense, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        torch.testing.assert_close(b, c, rtol=0, atol=1e-6)


def test_inference_cache_follows_parameter_updates():
    _, cell, inputs = _pair("ncp19", True)
    x, h = torch.randn(1, inputs), torch.zeros(1, 19)
    with torch.inference_mode():
        first, _ = cell(x, h, 0.05)
        assert cell(x, h, 0.05)[0].equal(first)
    with torch.no_grad():
        cell.cm.mul_(2.0)  # in-place update, as an optimizer step does
        second, _ = cell(x, h, 0.05)
    assert not second.equal(first)
    cell.cm.data = cell.cm.data / 2.0  # storage swap
    with torch.no_grad():
        third, _ = cell(x, h, 0.05)
    torch.testing.assert_close(third, first, rtol=0, atol=1e-6)


def test_apply_weight_constraints_clamps_positive_parameters_in_explicit_mode():
    cell = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32, implicit_param_constraints=False)
    with torch.no_grad():
        for name in ("w", "sensory_w", "cm", "gleak", "vleak"):
            getattr(cell, name).fill_(-1.0)
    cell.apply_weight_constraints()
    for name in ("w", "sensory_w", "cm", "gleak"):
        assert (getattr(cell, name) == 0).all()
    assert (cell.vleak == -1).all()


def test_masks_are_buffers_and_wrong_mask_is_rejected():
    torch.manual_seed(0)
    reference = nct.LTCCell(_built(ncw.NCP(12, 6, 1, 6, 4, 6, 6, seed=1), 32))
    ours = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6, seed=2), 32)
    assert "sparsity_mask" not in dict(ours.named_parameters())
    with pytest.raises(RuntimeError, match="sparsity_mask disagrees with the wiring"):
        ours.load_state_dict(reference.state_dict())


@pytest.mark.parametrize("elapsed", [0.0, -1.0, float("nan"), torch.ones(3), torch.ones(2, 2)])
def test_bad_elapsed_raises(elapsed):
    cell = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32)
    with pytest.raises(ValueError, match="elapsed"):
        cell(torch.zeros(2, 32), torch.zeros(2, 19), elapsed)


def test_unbuilt_wiring_without_in_features_raises():
    with pytest.raises(ValueError, match="in_features"):
        LTCCell(NCP(12, 6, 1, 6, 4, 6, 6))
