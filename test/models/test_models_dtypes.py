"""Inputs of another dtype: every public model entry point casts or raises a TypeError.

Features and states (cells, cores, ``Policy.step``/``run_sequence``, the numba and ONNX steps) are
cast to the model's dtype, as ncps computes them; images are cast when floating point and refused
when integer (their values are not in [0, 1]); complex tensors are refused everywhere. A cast
input must give exactly what the same values given in the model's dtype give; a strided view
what its contiguous copy gives (to float32 rounding where BLAS takes another path).
"""

from __future__ import annotations

import ncps.torch as nct
import ncps.wirings as ncw
import numpy as np
import pytest
import torch

from ltc_controller.models.cfc import CfC, CfCCell, WiredCfCCell
from ltc_controller.models.heads import ConvHead, DroneTrunk
from ltc_controller.models.ltc import LTC, LTCCell
from ltc_controller.models.policy import ARCHITECTURES, Policy, PolicyConfig
from ltc_controller.models.wiring import NCP

#: Real dtypes that are cast, and the values each can hold (small integers: exact in float32).
CAST_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def values(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Values ``dtype`` holds exactly: small integers (0/1 for bool), floats rounded to it."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if not dtype.is_floating_point:
        return torch.randint(0, 7, shape, generator=g).to(dtype)
    return torch.randn(shape, generator=g).to(dtype)


def strided(x: torch.Tensor) -> torch.Tensor:
    """The same values as a non-contiguous view (a transposed copy, transposed back)."""
    view = x.t().contiguous().t() if x.dim() == 2 else x.transpose(-1, -2).contiguous()
    if x.dim() != 2:
        view = view.transpose(-1, -2)
    assert not view.is_contiguous() and torch.equal(view, x)
    return view


def ncp_cell() -> LTCCell:
    torch.manual_seed(0)
    return LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32).eval()


@pytest.mark.parametrize("dtype", [*CAST_DTYPES, torch.float64])
def test_ltc_cell_casts_inputs_and_state_like_the_float32_values(dtype):
    # A per-sample elapsed tensor once took the input's dtype: 0.05 s became 0 in int64 (NaN).
    cell = ncp_cell()
    x, h = values((3, 32), dtype), values((3, 19), dtype, seed=1)
    for elapsed in (0.05, torch.full((3,), 0.05)):
        with torch.no_grad():
            out, new = cell(x, h, elapsed)
            ref_out, ref_new = cell(x.float(), h.float(), elapsed)
        assert out.dtype == new.dtype == torch.float32
        assert torch.isfinite(new).all()
        torch.testing.assert_close(new, ref_new, rtol=0, atol=0)
        torch.testing.assert_close(out, ref_out, rtol=0, atol=0)


def test_ltc_cell_on_integer_inputs_equals_ncps():
    # ncps computes an integer input by type promotion; ours casts: the same numbers.
    torch.manual_seed(2)
    wiring = ncw.NCP(12, 6, 1, 6, 4, 6, 6)
    wiring.build(32)
    reference = nct.LTCCell(wiring)
    ours = LTCCell(NCP(12, 6, 1, 6, 4, 6, 6), 32)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = values((4, 32), torch.int64)
    h = torch.zeros(4, 19)
    with torch.no_grad():
        ref_out, ref_new = reference(x, h, 1.0)
        out, new = ours(x, h, 1.0)
    torch.testing.assert_close(new, ref_new, rtol=0, atol=1e-5)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("make", ["ltc", "cfc", "wired_cfc", "cfc_seq"])
def test_cells_and_sequence_wrappers_take_ints_halves_doubles_and_strided_views(make):
    torch.manual_seed(0)
    modules = {
        "ltc": lambda: LTC(5, 8),
        "cfc": lambda: CfCCell(5, 8),
        "wired_cfc": lambda: WiredCfCCell(5, NCP(3, 3, 2, 2, 2, 2, 2)),
        "cfc_seq": lambda: CfC(5, 8),
    }
    module = modules[make]().eval()
    seq = make in ("ltc", "cfc_seq")
    shape = (2, 4, 5) if seq else (2, 5)
    hidden = 8 if make != "wired_cfc" else module.state_size

    def run(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x, h, 0.5)[1] if not seq else module(x, h)[1]

    h32 = torch.zeros(2, hidden)
    for dtype in [*CAST_DTYPES, torch.float64]:
        x = values(shape, dtype)
        new = run(x, h32.to(dtype))
        assert new.dtype == torch.float32 and torch.isfinite(new).all(), dtype
        torch.testing.assert_close(new, run(x.float(), h32), rtol=0, atol=0)
    x = values(shape, torch.float32)
    torch.testing.assert_close(run(strided(x), h32), run(x, h32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_policy_step_and_run_sequence_cast_features_and_state(arch):
    policy = Policy.from_config(PolicyConfig(architecture=arch), seed=1).eval()
    feats = values((2, 32), torch.float32)
    state = policy.initial_state(2)
    with torch.no_grad():
        ref_out, ref_new = policy.step(feats, state)
        for dtype in [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8]:
            f = values((2, 32), dtype)
            elapsed = torch.full((2, 1), policy.config.step_s)
            out, new = policy.step(
                f, state.to(dtype) if dtype.is_floating_point else state, elapsed
            )
            exp_out, exp_new = policy.step(f.float(), state, elapsed)
            assert out.dtype == new.dtype == torch.float32, (arch, dtype)
            torch.testing.assert_close(out, exp_out, rtol=0, atol=0)
            torch.testing.assert_close(new, exp_new, rtol=0, atol=0)
        # A strided operand may take another BLAS path: equal to float32 rounding.
        out, new = policy.step(strided(feats), strided(state) if state.shape[1] > 1 else state)
        torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(new, ref_new, rtol=1e-6, atol=1e-6)
        seq = values((2, 3, 32), torch.int32)
        out_seq, _ = policy.run_sequence(seq, state=state.double())
        torch.testing.assert_close(out_seq, policy.run_sequence(seq.float(), state=state)[0])


@pytest.mark.parametrize("head", ["conv", "drone"])
def test_heads_cast_float_images_and_refuse_integer_images(head):
    torch.manual_seed(0)
    module = (ConvHead() if head == "conv" else DroneTrunk(dropout=0.0)).eval()
    h, w = (78, 200) if head == "conv" else (144, 256)
    img = torch.rand(2, 3, h, w)
    with torch.no_grad():
        ref = module(img)
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            low = img.to(dtype)
            out = module(low)
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, module(low.float()), rtol=0, atol=0)
        channels_last = img.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        assert not channels_last.is_contiguous()
        torch.testing.assert_close(module(channels_last), ref, rtol=1e-5, atol=1e-5)
        for dtype in (torch.uint8, torch.int64, torch.bool):
            with pytest.raises(TypeError, match=rf"{dtype}.*\[0, 1\].*/ 255"):
                module((img * 255).to(dtype))


def test_policy_features_and_forward_refuse_uint8_frames_and_take_float16():
    policy = Policy.from_config(PolicyConfig(), seed=0).eval()
    img = torch.rand(1, 2, 3, 78, 200)
    with torch.no_grad():
        with pytest.raises(TypeError, match="torch.uint8"):
            policy.features((img[:, 0] * 255).to(torch.uint8))
        with pytest.raises(TypeError, match="torch.uint8"):
            policy((img * 255).to(torch.uint8))
        half = img.half()
        torch.testing.assert_close(policy(half), policy(half.float()), rtol=0, atol=0)


def test_complex_inputs_are_refused_with_the_dtype_named():
    policy = Policy.from_config(PolicyConfig(), seed=0).eval()
    z = torch.zeros(1, 32, dtype=torch.complex64)
    with pytest.raises(TypeError, match="features has dtype torch.complex64; expected a real"):
        policy.step(z, policy.initial_state(1))
    with pytest.raises(TypeError, match="inputs has dtype torch.complex64"):
        ncp_cell()(z)
    with pytest.raises(TypeError, match="hx has dtype torch.complex128"):
        CfCCell(5, 8)(torch.zeros(1, 5), torch.zeros(1, 8, dtype=torch.complex128))


def test_numba_step_casts_like_the_torch_policy():
    pytest.importorskip("numba")
    from ltc_controller.models.fast import FastStepModel

    policy = Policy.from_config(PolicyConfig(), seed=4).eval()
    fast = FastStepModel(policy)
    state = fast.initial_state(2)
    feats = values((2, 32), torch.float64)
    ref_out, ref_new = fast.step(feats, state)
    for dtype in (torch.float16, torch.bfloat16, torch.int64, torch.bool):
        f = values((2, 32), dtype)
        out, new = fast.step(f, state.to(torch.bfloat16) if dtype == torch.bfloat16 else state)
        exp_out, _ = fast.step(f.double(), state.to(torch.bfloat16).double())
        if dtype != torch.bfloat16:
            exp_out, _ = fast.step(f.double(), state)
        assert out.dtype == torch.float64 and torch.isfinite(new).all()
        torch.testing.assert_close(out, exp_out, rtol=0, atol=0)
    out, _ = fast.step(strided(feats), state)  # copied contiguous: the same kernel call
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    with pytest.raises(TypeError, match="complex"):
        fast.step(feats.to(torch.complex128), state)
    with pytest.raises(TypeError, match="inputs has dtype complex128"):
        fast.kernel.step(np.zeros((1, 32), np.complex128), np.zeros((1, 19)), 0.05)


def test_onnx_step_casts_features_and_refuses_integer_images():
    pytest.importorskip("onnxruntime")
    from ltc_controller.models.export import OnnxStepModel

    policy = Policy.from_config(PolicyConfig(), seed=5).eval()
    model = OnnxStepModel.from_policy(policy)
    state = model.initial_state(1)
    feats = values((1, 32), torch.float32)
    ref_out, _ = model.step(feats, state)
    for dtype in (torch.bfloat16, torch.float64, torch.int64):
        f = values((1, 32), dtype)
        out, _ = model.step(f, state.to(dtype))
        torch.testing.assert_close(out, model.step(f.float(), state)[0], rtol=0, atol=0)
    img = torch.rand(1, 3, 78, 200)
    torch.testing.assert_close(
        model.features(img.to(torch.bfloat16)), model.features(img.to(torch.bfloat16).float())
    )
    with pytest.raises(TypeError, match="torch.uint8"):
        model.features((img * 255).to(torch.uint8))
