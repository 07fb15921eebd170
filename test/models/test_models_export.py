"""TorchScript and ONNX exports of the control step equal the eager policy; ONNX Runtime backend."""

import numpy as np
import onnx
import pytest
import torch

from ltc_controller.models.export import (
    GRAPHS,
    OnnxStepModel,
    export_onnx,
    export_onnx_pair,
    export_torchscript,
    graph_inputs,
    read_config,
)
from ltc_controller.models.policy import ARCHITECTURES, Policy, PolicyConfig
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor

TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _policy(arch: str, **extra) -> Policy:
    return Policy.from_config(PolicyConfig(architecture=arch, **extra), seed=6).eval()


def _inputs(policy: Policy, batch: int = 3):
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(batch, 32, generator=gen) * 2
    state = 0.3 * torch.randn(batch, policy.state_size, generator=gen)
    elapsed = torch.rand(batch, generator=gen) * 0.1 + 0.02
    return feats, state, elapsed


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_onnx_and_torchscript_steps_equal_eager(arch, tmp_path):
    policy = _policy(arch)
    feats, state, elapsed = _inputs(policy)
    with torch.no_grad():
        expected = policy.step(feats, state, elapsed)
        onnx_model = OnnxStepModel(export_onnx(policy, tmp_path / "step.onnx"))
        got = onnx_model.step(feats, state, elapsed)  # batch 3, per-sample elapsed
        traced = export_torchscript(policy, tmp_path / "step.pt")
        loaded = torch.jit.load(str(tmp_path / "step.pt"))
        scripted = loaded(feats[:1], state[:1], elapsed[:1].unsqueeze(1))
        single = policy.step(feats[:1], state[:1], elapsed[:1])
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=TOL)
    for a, b in zip(single, scripted, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=TOL)
    assert traced is not None
    # discrete-time cores do not read elapsed; the graph then has no such input
    expected_inputs = {"features", "state"} | (
        set() if arch in ("lstm", "gru", "cnn") else {"elapsed"}
    )
    assert set(graph_inputs(tmp_path / "step.onnx")) == expected_inputs


def test_fused_ltc_step_is_unrolled_with_constant_weights(tmp_path):
    policy = _policy("ncp_ltc")
    model = onnx.load_from_string(export_onnx(policy))
    ops = [node.op_type for node in model.graph.node]
    # one sigmoid for the sensory synapses, one per ODE unfold; no softplus left (folded in)
    assert ops.count("Sigmoid") == 1 + policy.config.ode_unfolds
    assert "Softplus" not in ops and "Loop" not in ops
    assert read_config(model.SerializeToString()) == policy.config.to_dict()


@pytest.mark.parametrize("feature_norm", ["none", "layer"])
def test_image_step_and_head_graphs_equal_eager(tmp_path, feature_norm):
    policy = _policy("ncp_ltc", feature_norm=feature_norm)
    images = torch.rand(2, 3, 78, 200)
    feats, state, elapsed = _inputs(policy, 2)
    with torch.no_grad():
        expected_feats = policy.features(images)
        expected = policy.step(expected_feats, state, elapsed)
        pair = OnnxStepModel.from_directory(export_onnx_pair(policy, tmp_path)[0].parent)
        torch.testing.assert_close(pair.features(images), expected_feats, rtol=0, atol=TOL)
        import onnxruntime as ort

        session = ort.InferenceSession(export_onnx(policy, graph="image_step"))
        out, new_state, f = session.run(
            None,
            {"images": images.numpy(), "state": state.numpy(), "elapsed": elapsed[:, None].numpy()},
        )
    torch.testing.assert_close(torch.from_numpy(f), expected_feats, rtol=0, atol=TOL)
    torch.testing.assert_close(torch.from_numpy(out), expected[0], rtol=0, atol=TOL)
    torch.testing.assert_close(torch.from_numpy(new_state), expected[1], rtol=0, atol=TOL)


def _frames(n: int = 10) -> list[RawFrame]:
    rng = np.random.default_rng(1)
    return [
        RawFrame(
            5.0 + 0.05 * k,
            "rgb8",
            78,
            200,
            600,
            rng.integers(0, 256, (78, 200, 3), np.uint8).tobytes(),
        )
        for k in range(n)
    ]


def _drive(model, frames: int = 10) -> np.ndarray:
    runtime = PolicyRuntime(
        model, Preprocessor(PreprocessConfig()), RuntimeConfig(deadline_s=10.0, max_lag_s=10.0)
    )
    outs = []
    for frame in _frames(frames):
        runtime.offer_frame(frame)
        result = runtime.tick(frame.stamp + 0.01)
        if result.outputs is not None:
            outs.append(result.outputs.copy())
    assert len(outs) >= frames - 2
    return np.stack(outs)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_runs_in_the_real_runtime(arch):
    policy = _policy(arch)
    outs = _drive(policy, frames=4)
    assert outs.shape[1] == 1 and np.isfinite(outs).all()
    assert len({float(v) for v in outs[:, 0]}) > 1  # the outputs follow the frames


def test_an_onnx_pair_loads_and_a_head_is_no_step_graph(tmp_path):
    policy = _policy("gru")
    export_onnx_pair(policy, tmp_path / "gru")
    model = OnnxStepModel.from_directory(tmp_path / "gru")
    assert model.config == policy.config and model.initial_state(2).shape == (2, 64)
    np.testing.assert_allclose(_drive(model), _drive(policy), rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="not a ltc_controller step graph"):
        OnnxStepModel(tmp_path / "gru" / "head.onnx")


def test_export_leaves_the_policy_in_eval_mode(tmp_path):
    """The exporters restore a module's own mode recursively afterwards: a graph wrapper left in
    train mode switched the drone trunk's dropout on in the exported policy."""
    policy = Policy.from_config(
        PolicyConfig(head="drone_trunk", image_height=144, image_width=256, architecture="cnn"),
        seed=0,
    ).eval()
    x = torch.rand(1, 3, 144, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = policy.features(x)
    for graph in GRAPHS:
        export_onnx(policy, None, graph)
        assert not any(m.training for m in policy.modules()), graph
    export_torchscript(policy, tmp_path / "head.pt", "head")
    assert not any(m.training for m in policy.modules())
    with torch.inference_mode():
        assert torch.equal(policy.features(x), before)
