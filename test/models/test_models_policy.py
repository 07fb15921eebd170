"""PolicyConfig, Policy and the policy file format (safetensors + JSON metadata)."""

import dataclasses
import json
import os
import stat
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from ltc_controller.models.policy import Crop, Policy, PolicyConfig
from ltc_controller.models.policy_file import PolicyFileError, load_policy, save_policy
from ltc_controller.models.wiring import NCP, AutoNCP


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def policy():
    return Policy.from_config(PolicyConfig(output_scale=(0.5,)), seed=3)


@pytest.fixture
def saved(policy, tmp_path):
    return save_policy(policy, tmp_path / "policy.safetensors")


def test_default_config_is_the_19_neuron_lane_keeping_ncp():
    cfg = PolicyConfig()
    wiring = cfg.build_wiring()
    assert cfg.wiring["type"] == "NCP" and cfg.wiring["seed"] == 22222
    assert (wiring.units, wiring.output_dim, wiring.input_dim) == (19, 1, 32)
    assert (cfg.image_height, cfg.image_width, cfg.step_s) == (78, 200, 0.05)
    assert cfg.output_names == ("steering_angle",) and cfg.output_units == ("rad",)


def test_config_json_round_trip():
    cfg = PolicyConfig(
        wiring=AutoNCP(20, 2, seed=5, input_dim=32).get_config(),
        crop=Crop(top=10, bottom=2),
        output_names=("steering_angle", "speed"),
        output_units=("rad", "m/s"),
        output_scale=(0.3, 2.0),
        step_s=1 / 30,
        color_order="bgr",
    )
    again = PolicyConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"output_names": ("a", "b")}, "output_names"),
        ({"step_s": 0.0}, "step_s"),
        ({"color_order": "yuv"}, "color_order"),
        ({"crop": Crop(top=-1)}, "crop"),
        ({"wiring": AutoNCP(20, 2, input_dim=16).get_config()}, "wiring"),
        ({"architecture": "transformer"}, "architecture"),
    ],
)
def test_invalid_config_names_the_field(change, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        PolicyConfig(**change)


def test_from_config_is_deterministic_and_leaves_global_rng(policy):
    state = torch.random.get_rng_state()
    a = Policy.from_config(PolicyConfig(), seed=7)
    b = Policy.from_config(PolicyConfig(), seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.ltc.w, Policy.from_config(PolicyConfig(), seed=8).ltc.w)


def test_step_scales_outputs_and_uses_step_s(policy):
    feats = torch.rand(2, 32)
    state = policy.initial_state(2)
    with torch.no_grad():
        out, new_state = policy.step(feats, state)
        motor, same_state = policy.ltc(feats, state, 0.05)
    torch.testing.assert_close(out, 0.5 * motor)
    torch.testing.assert_close(new_state, same_state)
    assert out.shape == (2, 1) and new_state.shape == (2, 19)


def test_forward_equals_runtime_style_fixed_stepping(policy):
    images = torch.rand(2, 4, 3, 78, 200)
    counts = torch.tensor([[1, 2, 0, 1], [1, 1, 3, 0]])  # the caller's, by the runtime's rule
    with torch.no_grad():
        out = policy(images, counts)
        for b in range(2):
            state = policy.initial_state(1)
            for t in range(4):
                feats = policy.features(images[b : b + 1, t])
                y = policy.ltc.map_outputs(state) * 0.5
                for _ in range(int(counts[b, t])):
                    y, state = policy.step(feats, state, 0.05)
                torch.testing.assert_close(out[b, t], y[0], rtol=0, atol=1e-6)


def test_save_load_round_trip_gives_identical_outputs(policy, saved):
    loaded = load_policy(saved)
    assert loaded.config == policy.config
    images = torch.rand(1, 3, 3, 78, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), policy(images), rtol=0, atol=0)
    header = json.loads(saved.read_bytes()[8 : 8 + struct.unpack("<Q", saved.read_bytes()[:8])[0]])
    assert header["__metadata__"]["format"] == "ltc_controller.policy"


def test_saved_file_mode_follows_the_umask_and_leaves_no_temporary(policy, tmp_path):
    old = os.umask(0o022)
    try:
        out = save_policy(policy, tmp_path / "p.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]


def _rewrite(path, tensors=None, metadata=None):
    """Re-save ``path`` with changed tensors and/or metadata (no pickle involved)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        old_meta = f.metadata()
    tensors = load_file(str(path)) if tensors is None else tensors
    save_file(tensors, str(path), metadata=old_meta if metadata is None else metadata)


def _meta(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata())


def _edit_config(path, edit):
    meta = _meta(path)
    cfg = json.loads(meta["config"])
    edit(cfg)
    meta["config"] = json.dumps(cfg)
    _rewrite(path, metadata=meta)


def test_missing_file(tmp_path):
    with pytest.raises(PolicyFileError, match=r"nope\.safetensors: file not found"):
        load_policy(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) - 100])
    with pytest.raises(PolicyFileError, match="policy.safetensors: truncated: tensor"):
        load_policy(saved)
    saved.write_bytes(data[:4])
    with pytest.raises(PolicyFileError, match="truncated"):
        load_policy(saved)


def test_not_a_safetensors_file(saved):
    saved.write_bytes(b"\x80\x04\x95 this is a pickle, not a policy" * 10)
    with pytest.raises(PolicyFileError, match="not a safetensors file"):
        load_policy(saved)


def test_not_a_policy_file(saved):
    _rewrite(saved, metadata={"hello": "world"})
    with pytest.raises(PolicyFileError, match="metadata field 'format'"):
        load_policy(saved)


def test_wrong_format_version(saved):
    _rewrite(saved, metadata={**_meta(saved), "format_version": "3"})
    with pytest.raises(PolicyFileError, match="'format_version' is '3'"):
        load_policy(saved)


def test_missing_config_key(saved):
    _edit_config(saved, lambda cfg: cfg.pop("step_s"))
    with pytest.raises(PolicyFileError, match=r"missing config key\(s\) \['step_s'\]"):
        load_policy(saved)


def test_file_written_before_feature_norm_loads_as_none(saved, policy):
    _edit_config(saved, lambda cfg: cfg.pop("feature_norm"))
    loaded = load_policy(saved)
    assert loaded.config.feature_norm == "none"
    images = torch.rand(1, 3, 78, 200)
    with torch.no_grad():
        assert torch.equal(loaded.features(images), policy.features(images))


def test_feature_norm_round_trips_and_is_applied_at_the_core_input(tmp_path):
    cfg = PolicyConfig(output_scale=(0.5,), feature_norm="layer")
    p = Policy.from_config(cfg, seed=3).eval()
    loaded = load_policy(save_policy(p, tmp_path / "ln.safetensors"))
    assert loaded.config.feature_norm == "layer"
    images = torch.rand(2, 3, 78, 200)
    with torch.no_grad():
        f = loaded.features(images)
        assert torch.equal(f, p.features(images))
        # features() is the head's own output (the OOD monitor reads it); the core sees it
        # standardised per frame, so a feature vector's gain and offset change nothing.
        assert not torch.allclose(f.mean(1), torch.zeros(2), atol=1e-3)
        s0 = loaded.initial_state(2)
        f = f * 100.0  # an initial head's spread is about the variance epsilon's size
        y, h = loaded.step(f, s0)
        y2, h2 = loaded.step(f * 50.0 + 3.0, s0)
        torch.testing.assert_close(y2, y, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(h2, h, atol=1e-4, rtol=1e-4)
        seq = loaded.run_sequence(torch.stack([f, f * 7.0], 1))[0]
        torch.testing.assert_close(seq[:, 0], y)
        plain = Policy.from_config(dataclasses.replace(cfg, feature_norm="none"), seed=3)
        assert not torch.allclose(plain.eval().step(f * 50.0 + 3.0, s0)[1], h, atol=1e-6)
    with pytest.raises(ValueError, match="config field 'feature_norm'"):
        PolicyConfig(feature_norm="batch")


def test_unknown_config_key(saved):
    _edit_config(saved, lambda cfg: cfg.update(gain=3))
    with pytest.raises(PolicyFileError, match=r"unknown config key\(s\) \['gain'\]"):
        load_policy(saved)


def test_invalid_config_value(saved):
    _edit_config(saved, lambda cfg: cfg.update(step_s=-1))
    with pytest.raises(PolicyFileError, match="config field 'step_s'"):
        load_policy(saved)


def test_missing_tensor(saved):
    tensors = load_file(str(saved))
    del tensors["ltc.w"]
    _rewrite(saved, tensors)
    with pytest.raises(PolicyFileError, match=r"missing tensor\(s\) \['ltc.w'\]"):
        load_policy(saved)


def test_extra_tensor(saved):
    tensors = load_file(str(saved))
    tensors["ltc.extra"] = torch.zeros(2)
    _rewrite(saved, tensors)
    with pytest.raises(PolicyFileError, match=r"unexpected tensor\(s\) \['ltc.extra'\]"):
        load_policy(saved)


def test_shape_mismatch_names_tensor_and_config(saved):
    tensors = load_file(str(saved))
    tensors["ltc.w"] = torch.zeros(20, 20)
    _rewrite(saved, tensors)
    with pytest.raises(
        PolicyFileError,
        match=r"policy.safetensors: tensor 'ltc.w' has shape \(20, 20\); config says units=19",
    ):
        load_policy(saved)


def test_non_finite_weights(saved):
    tensors = load_file(str(saved))
    tensors["head.dense_bias"][0, 1] = float("nan")
    _rewrite(saved, tensors)
    with pytest.raises(PolicyFileError, match="tensor 'head.dense_bias' has 1 non-finite"):
        load_policy(saved)


def test_mask_that_disagrees_with_wiring(saved):
    tensors = load_file(str(saved))
    tensors["ltc.sparsity_mask"] = torch.ones(19, 19)
    _rewrite(saved, tensors)
    with pytest.raises(PolicyFileError, match="'ltc.sparsity_mask' disagrees with the wiring"):
        load_policy(saved)


def test_save_refuses_non_finite_and_keeps_existing_file(policy, saved):
    before = saved.read_bytes()
    broken = Policy.from_config(PolicyConfig(), seed=1)
    with torch.no_grad():
        broken.ltc.cm[0] = float("inf")
    with pytest.raises(PolicyFileError, match="'ltc.cm'"):
        save_policy(broken, saved)
    assert saved.read_bytes() == before


# --- architectures beyond ncp_ltc ----------------------------------------------------------------

ARCH_STATE = {
    "ncp_ltc": 19,
    "ltc_fc": 19,
    "cfc": 19,
    "ncp_cfc": 19,
    "lstm": 128,
    "gru": 64,
    "ctrnn": 64,
    "cnn": 0,
}


@pytest.fixture(scope="module")
def policies():
    """One seeded, non-trivial policy of every architecture (2 outputs where the config allows)."""
    out = {}
    for arch in ARCH_STATE:
        extra = {}
        if arch not in ("ncp_ltc", "ncp_cfc"):
            extra = {
                "output_names": ("steering_angle", "speed"),
                "output_units": ("rad", "m/s"),
                "output_scale": (0.5, 2.0),
            }
        out[arch] = Policy.from_config(PolicyConfig(architecture=arch, **extra), seed=4)
    return out


@pytest.mark.parametrize("arch", list(ARCH_STATE))
def test_every_architecture_has_the_same_policy_interface(policies, arch):
    policy = policies[arch]
    m = len(policy.config.output_names)
    assert policy.state_size == ARCH_STATE[arch]
    assert policy.config.architecture == arch
    state = policy.initial_state(2)
    assert state.shape == (2, ARCH_STATE[arch]) and not state.any()
    images = torch.rand(2, 3, 3, 78, 200)
    counts = torch.tensor([[1, 2, 0], [1, 0, 1]])
    with torch.no_grad():
        feats = policy.features(images.flatten(0, 1)).view(2, 3, -1)
        assert feats.shape == (2, 3, 32)
        out, new_state = policy.step(feats[:, 0], state, 0.05)
        assert out.shape == (2, m) and new_state.shape == state.shape
        seq, final = policy.run_sequence(feats, counts)
        assert seq.shape == (2, 3, m) and final.shape == state.shape
        torch.testing.assert_close(policy(images, counts), seq, rtol=0, atol=1e-6)
        # per-sample elapsed equals separate calls
        both, _ = policy.step(feats[:, 1], new_state, torch.tensor([0.05, 0.2]))
        one, _ = policy.step(feats[1:, 1], new_state[1:], 0.2)
    torch.testing.assert_close(both[1:], one, rtol=0, atol=1e-6)
    assert torch.isfinite(seq).all()


def test_run_sequence_takes_integer_step_counts_only(policy):
    feats = torch.rand(2, 3, 32)
    with pytest.raises(ValueError, match=r"steps must be \(2, 3\) integer step counts"):
        policy.run_sequence(feats, torch.full((2, 3), 0.05))  # seconds are not counts
    with pytest.raises(ValueError, match=r"steps must be \(2, 3\)"):
        policy.run_sequence(feats, torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        policy.run_sequence(feats, torch.tensor([[1, -1, 0], [0, 0, 0]]))


@pytest.mark.parametrize("arch", list(ARCH_STATE))
def test_run_sequence_equals_runtime_style_stepping(policies, arch):
    """Offline training pass == the runtime's fixed steps with held features (every core)."""
    policy = policies[arch].double()
    try:
        gen = torch.Generator().manual_seed(2)
        feats = torch.rand(2, 6, 32, generator=gen, dtype=torch.float64)
        counts = torch.tensor([[1, 2, 0, 1, 0, 3], [0, 1, 3, 0, 1, 1]])
        with torch.no_grad():
            out, _ = policy.run_sequence(feats, counts)
            for b in range(2):
                state = policy.initial_state(1, dtype=torch.float64)
                y = out[b, 0] if counts[b, 0] == 0 else None
                for t in range(6):
                    for _ in range(int(counts[b, t])):
                        y, state = policy.step(feats[b : b + 1, t], state, 0.05)
                        y = y[0]
                    torch.testing.assert_close(out[b, t], y, rtol=0, atol=1e-12)
    finally:
        policy.float()


@pytest.mark.parametrize("arch", list(ARCH_STATE))
def test_policy_files_round_trip_every_architecture(policies, arch, tmp_path):
    policy = policies[arch]
    path = save_policy(policy, tmp_path / f"{arch}.safetensors")
    loaded = load_policy(path)
    assert loaded.config == policy.config
    for (name, a), b in zip(policy.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    feats = torch.rand(1, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.run_sequence(feats)[0], policy.run_sequence(feats)[0], rtol=0, atol=0
        )


def test_version_1_ncp_policy_files_still_load(policy, saved):
    """A file written before units/core_options/head existed (format 1) loads unchanged."""
    meta = _meta(saved)
    cfg = json.loads(meta["config"])
    for key in ("units", "core_options", "head"):
        cfg.pop(key)
    _rewrite(saved, metadata={**meta, "format_version": "1", "config": json.dumps(cfg)})
    loaded = load_policy(saved)
    assert loaded.config == policy.config
    images = torch.rand(1, 2, 3, 78, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), policy(images), rtol=0, atol=0)
    cfg["head"] = "ncp_conv"
    _rewrite(saved, metadata={**meta, "format_version": "1", "config": json.dumps(cfg)})
    with pytest.raises(PolicyFileError, match=r"\['head'\] are not part of format 1"):
        load_policy(saved)


def test_policy_file_with_another_architectures_tensors_is_rejected(policies, tmp_path):
    path = save_policy(policies["gru"], tmp_path / "gru.safetensors")
    tensors = load_file(str(path))
    _rewrite(
        path,
        {k: v for k, v in tensors.items() if k.startswith("head.")}
        | {k.replace("gru.", "lstm."): v for k, v in tensors.items() if k.startswith("gru.")},
    )
    with pytest.raises(PolicyFileError, match=r"missing tensor\(s\) \['gru\."):
        load_policy(path)


def test_drone_trunk_policy_with_the_drone_ncp():
    cfg = PolicyConfig(
        head="drone_trunk",
        image_height=144,
        image_width=256,
        normalization="drone_channel_standardization",
        wiring=NCP(18, 12, 4, 6, 4, 4, 6, seed=22224).get_config(),  # unbuilt: built for 128
        output_names=("vx", "vy", "vz", "yaw_rate"),
        output_units=("m/s", "m/s", "m/s", "rad/s"),
        output_scale=(1.0, 1.0, 1.0, 1.0),
    )
    assert cfg.wiring["input_dim"] == 128 and cfg.feature_dim == 128
    policy = Policy.from_config(cfg, seed=1).eval()
    assert sum(p.numel() for p in policy.head.parameters()) == 263_524
    with torch.no_grad():
        out = policy(torch.rand(1, 2, 3, 144, 256))
    assert out.shape == (1, 2, 4) and policy.state_size == 34
    assert PolicyConfig(head="drone_trunk").wiring["input_dim"] == 128  # default NCP-19


def test_units_and_core_options_are_canonical_in_the_config():
    assert PolicyConfig(architecture="lstm").units == 64
    assert PolicyConfig(architecture="lstm", units=19).units == 19
    assert PolicyConfig().units == 19
    cfc = PolicyConfig(architecture="cfc", core_options={"mode": "pure"})
    assert cfc.core_options == {
        "mode": "pure",
        "backbone_activation": "lecun_tanh",
        "backbone_units": 128,
        "backbone_layers": 1,
        "backbone_dropout": 0.0,
    }
    assert PolicyConfig.from_json(cfc.to_json()) == cfc
    fc = PolicyConfig(architecture="ltc_fc", units=8)
    assert fc.wiring["type"] == "FullyConnected" and fc.wiring["units"] == 8


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"architecture": "lstm", "wiring": NCP(12, 6, 1, 6, 4, 6, 6).get_config()}, "wiring"),
        ({"architecture": "cfc", "core_options": {"mode": "fast"}}, "core_options"),
        ({"architecture": "ctrnn", "core_options": {"mode": "default"}}, "core_options"),
        ({"architecture": "ctrnn", "core_options": {"tau_s": 0.0}}, "core_options"),
        ({"architecture": "ltc_fc", "wiring": NCP(12, 6, 1, 6, 4, 6, 6).get_config()}, "wiring"),
        ({"units": 20}, "units"),
        ({"architecture": "gru", "units": 0}, "units"),
        ({"head": "resnet"}, "head"),
        ({"normalization": "imagenet"}, "normalization"),
        ({"head": "drone_trunk", "image_height": 40}, "image_height"),
        ({"architecture": "lstm", "output_units": ("rad", "m/s")}, "output_units"),
    ],
)
def test_invalid_architecture_settings_name_the_field(change, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        PolicyConfig(**change)
