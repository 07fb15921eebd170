"""Training from generated bags: a policy file comes out, resume is exact, checkpoints hold no
pickle, the runtime semantics are the ones trained, and torchrun + DDP (gloo) keeps two CPU
processes in lock-step."""

from __future__ import annotations

import math
import os
from dataclasses import replace

os.environ.setdefault("MUJOCO_GL", "osmesa")

import dataclasses
import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ltc_controller.cli import main
from ltc_controller.models.policy_file import load_policy
from ltc_controller.training.bag import read_demonstrations
from ltc_controller.training.recording import RecordConfig, record
from ltc_controller.training.trainer import (
    AugmentConfig,
    TrainConfig,
    _augment,
    scale_ltc_capacitance,
    train,
)

SMALL = TrainConfig(
    seq_len=4, batch_size=2, epochs=2, max_steps=None, val_fraction=0.25, threads=1, patience=5
)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    record(root / "raw", RecordConfig(episodes=2, episode_s=1.2, seed=1))
    record(
        root / "jpeg",
        RecordConfig(episodes=1, episode_s=1.2, seed=2),
        compressed=True,
        storage="sqlite3",
    )
    return root


@pytest.fixture(scope="module")
def demos(bags):
    return read_demonstrations(bags / "raw", "/camera/image_raw", "/expert_cmd")


def test_train_command_on_raw_and_compressed_bags_writes_a_loadable_policy(bags, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    rc = main(
        [
            "train",
            "--bag",
            str(bags / "raw"),
            "--bag",
            str(bags / "jpeg"),
            "--image-topic",
            "/camera/image_raw",
            "--command-topic",
            "/expert_cmd",
            "--output",
            str(out),
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--seq-len",
            "4",
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    # The two bags name their image topics differently: a clear error for the second.
    assert rc == 2
    assert "no image topic '/camera/image_raw'" in capsys.readouterr().err
    rc = main(
        [
            "train",
            "--bag",
            str(bags / "jpeg"),
            "--image-topic",
            "/camera/image_raw/compressed",
            "--output",
            str(out),
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--seq-len",
            "4",
            "--batch-size",
            "2",
            "--val-fraction",
            "0",
            "--quiet",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 2
    p = load_policy(out)
    assert p.config.architecture == "ncp_ltc" and p.config.output_names == ("steering_angle",)
    assert p.config.step_s == 0.05 and p.state_size == 19
    assert p.config.feature_norm == "layer"  # the CLI default


def test_training_changes_weights_and_keeps_best_validation(demos, tmp_path):
    r = train(
        demos, SMALL, output=tmp_path / "p.safetensors", show_progress=False, log=lambda s: None
    )
    assert len(r.history) == 2 and r.steps > 0
    assert r.best_val_loss == pytest.approx(min(h["val_loss"] for h in r.history))
    best = min(r.history, key=lambda h: h["val_loss"])
    assert r.val_corr == best["val_corr"] and -1.0 <= r.val_corr <= 1.0
    init = _init_policy(SMALL)
    changed = [k for k, v in r.policy.state_dict().items() if not torch.equal(v, init[k])]
    assert "ltc.w" in changed and "head.convs.0.weight" in changed or len(changed) > 5


def test_the_learning_rate_search_is_seeded_within_its_ranges_and_needs_validation(demos):
    pytest.importorskip("optuna", reason="needs the [compare] extra (optuna)")
    from ltc_controller.training.search import SearchConfig, search_learning_rates

    sc = SearchConfig(
        trials=2, steps=2, lr=(1e-4, 1e-3), lr_rnn=(1e-3, 1e-2), seed=7, start_from_config=False
    )
    a = search_learning_rates(demos, SMALL, sc)
    assert len(a["trials"]) == 2 and 1e-4 <= a["lr"] <= 1e-3 and 1e-3 <= a["lr_rnn"] <= 1e-2
    assert a["best_val_loss"] == min(t["val_loss"] for t in a["trials"])
    b = search_learning_rates(demos, SMALL, sc)
    assert [t["lr"] for t in b["trials"]] == [t["lr"] for t in a["trials"]]  # seeded
    with pytest.raises(ValueError, match="validation data"):
        search_learning_rates(demos, replace(SMALL, val_fraction=0.0), sc)


def test_the_search_starts_from_the_recipes_rates_and_keeps_them_unless_beaten(demos):
    pytest.importorskip("optuna", reason="needs the [compare] extra (optuna)")
    from ltc_controller.training.search import SearchConfig, search_learning_rates

    cfg = replace(SMALL, lr=2e-3, lr_rnn=1e-2)
    sc = SearchConfig(trials=3, steps=2, seed=7)
    res = search_learning_rates(demos, cfg, sc)
    first = res["trials"][0]
    assert (first["lr"], first["lr_rnn"]) == (2e-3, 1e-2)  # run 0: the recipe's own rates
    # the other runs are the sampler's proposals, within the ranges
    assert len({(t["lr"], t["lr_rnn"]) for t in res["trials"]}) == 3
    assert all(1e-4 <= t["lr"] <= 1e-2 and 1e-4 <= t["lr_rnn"] <= 3e-2 for t in res["trials"])
    best = min(res["trials"], key=lambda t: t["val_loss"])
    assert (res["lr"], res["lr_rnn"]) == (best["lr"], best["lr_rnn"])
    # a config without a core rate starts from its head rate on both
    none = search_learning_rates(demos, replace(cfg, lr_rnn=None), replace(sc, trials=1))
    assert (none["lr"], none["lr_rnn"]) == (2e-3, 2e-3)
    with pytest.raises(ValueError, match="outside its range"):
        search_learning_rates(demos, replace(cfg, lr=0.5), sc)


def test_the_sanity_correlation_is_pearson_per_output_averaged():
    from ltc_controller.training.trainer import _correlation

    y = torch.linspace(-1.0, 1.0, 50)[:, None]
    assert _correlation(2.0 * y + 3.0, y) == pytest.approx(1.0)
    assert _correlation(-y, y) == pytest.approx(-1.0)
    assert math.isnan(_correlation(torch.zeros_like(y), y))  # a collapsed, constant policy
    noise = torch.sin(torch.arange(50.0) * 7.3)[:, None]
    two = _correlation(torch.cat([y, noise], 1), torch.cat([y, y], 1))
    expected = (1.0 + float(torch.corrcoef(torch.stack([noise[:, 0], y[:, 0]]))[0, 1])) / 2
    assert two == pytest.approx(expected, abs=1e-9)


def test_label_mean_output_bias_starts_the_untrained_policy_at_the_label_mean(demos):
    from ltc_controller.training.trainer import _burn_in, frame_periods_ns, make_windows

    quiet = {"show_progress": False, "log": lambda s: None}
    # lr 0: one optimiser step leaves the weights as initialised (bias shift included).
    cfg = replace(SMALL, epochs=1, max_steps=1, lr=0.0, lr_rnn=0.0, val_fraction=0.0)
    starts = make_windows(demos.segment, cfg.seq_len, cfg.seq_len, 0)
    idx = starts[:, None] + np.arange(cfg.seq_len)[None, :]
    periods = frame_periods_ns(demos)
    from ltc_controller.training.trainer import window_steps

    steps = torch.from_numpy(window_steps(demos.stamps_ns, periods, idx, 50_000_000))
    x = torch.from_numpy(demos.images[idx]).permute(0, 1, 4, 2, 3).float() / 255.0

    def mean_output(policy):
        with torch.no_grad():
            return float(policy(x, steps)[:, _burn_in(cfg) :].mean())

    label = float(demos.targets.mean())
    spread = float(demos.targets.std())
    shifted = train(demos, replace(cfg, output_bias="label_mean"), **quiet).policy
    plain = train(demos, cfg, **quiet).policy
    assert abs(mean_output(shifted) - label) < 0.02 * spread
    assert abs(mean_output(plain) - label) > 0.1 * spread  # the shift did something
    with pytest.raises(ValueError, match="output_bias"):
        TrainConfig(output_bias="median")


def _init_policy(cfg):
    from ltc_controller.models.policy import Policy
    from ltc_controller.training.trainer import build_policy_config

    pol = Policy.from_config(
        build_policy_config(cfg.arch, cfg.units, ("steering_angle",), ("rad",), (0.1,), 0.05),
        seed=cfg.seed,
    )
    scale_ltc_capacitance(pol, 0.05)
    return pol.state_dict()


def test_resume_from_checkpoint_gives_the_same_weights_as_an_uninterrupted_run(demos, tmp_path):
    cfg = dataclasses.replace(SMALL, epochs=2, patience=10, output_scale=0.1)
    quiet = {"show_progress": False, "log": lambda s: None}
    full = train(demos, cfg, **quiet)
    ck = tmp_path / "ck"
    train(demos, dataclasses.replace(cfg, epochs=1), checkpoint_dir=ck, **quiet)
    assert sorted(p.name for p in ck.iterdir()) == [
        "best.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    state = json.loads((ck / "state.json").read_text())
    assert state["epoch"] == 1 and state["config"]["arch"] == "ncp_ltc"
    resumed = train(demos, cfg, resume=ck, **quiet)
    assert resumed.steps == full.steps
    for k, v in full.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[k], v, rtol=0, atol=0)
    assert [h["val_loss"] for h in resumed.history] == pytest.approx(
        [h["val_loss"] for h in full.history]
    )


def test_resume_refuses_a_checkpoint_of_another_architecture(demos, tmp_path):
    ck = tmp_path / "ck"
    quiet = {"show_progress": False, "log": lambda s: None}
    train(demos, dataclasses.replace(SMALL, epochs=1), checkpoint_dir=ck, **quiet)
    with pytest.raises(
        ValueError, match=r"checkpoint is for arch 'ncp_ltc' \(units None\), not 'lstm'"
    ):
        train(demos, dataclasses.replace(SMALL, arch="lstm", units=8), resume=ck, **quiet)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        train(demos, SMALL, resume=tmp_path, **quiet)


def test_too_little_data_is_a_clear_error(demos):
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train(demos, dataclasses.replace(SMALL, seq_len=40, batch_size=8), show_progress=False)


@pytest.mark.parametrize("feature_norm", ["none", "layer"])
def test_offline_forward_with_stamps_equals_the_runtime_driving_the_same_frames(
    demos, feature_norm
):
    """Training sees what the runtime does: Policy.forward over a recorded window with the step
    counts training uses gives the outputs the runtime produces frame by frame (after the first
    frame), with and without the head's feature normalisation."""
    from ltc_controller.runtime.schedule import seconds_to_ns
    from ltc_controller.training.closed_loop import PolicyDriver
    from ltc_controller.training.trainer import frame_periods_ns, window_steps

    pol = load_policy_from(
        train(
            demos,
            dataclasses.replace(SMALL, epochs=1, max_steps=1, feature_norm=feature_norm),
            show_progress=False,
            log=lambda s: None,
        )
    )
    assert pol.config.feature_norm == feature_norm
    step_ns = seconds_to_ns(pol.config.step_s)
    periods = frame_periods_ns(demos)
    idx = np.arange(1, 9)
    steps = torch.from_numpy(window_steps(demos.stamps_ns, periods, idx[None], step_ns))
    imgs = torch.from_numpy(demos.images[idx]).permute(0, 3, 1, 2).float().div(255.0)
    with torch.no_grad():
        ref = pol(imgs[None], steps)[0, :, 0].numpy()
    drv = PolicyDriver(pol, max_steering=10.0)
    out = [drv.act(demos.images[i], float(demos.stamps[i])) for i in idx]
    # The runtime starts its clock at the first frame (no step for it); offline the first frame
    # gets one step. Shift: runtime output k equals offline output k on a window starting at k=1.
    steps2 = torch.from_numpy(window_steps(demos.stamps_ns, periods, idx[None, 1:], step_ns))
    with torch.no_grad():
        ref2 = pol(imgs[None, 1:], steps2)[0, :, 0].numpy()
    assert out[0] is None
    np.testing.assert_allclose(np.array(out[1:], dtype=np.float64), ref2, atol=1e-5)
    assert not np.allclose(ref[1:], ref2)  # the state really carries information


def test_the_bundled_and_compare_recipes_normalise_the_head_features_for_every_model():
    from ltc_controller.training.presets import BUNDLED, COMPARE_FULL, COMPARE_REDUCED

    assert BUNDLED.train.feature_norm == "layer"
    # compare sets only arch/units/seed (and searched rates) per model on this config
    assert COMPARE_FULL.train.feature_norm == COMPARE_REDUCED.train.feature_norm == "layer"


def test_an_interrupted_bundled_round_resumes_only_its_own_config(demos, tmp_path):
    from ltc_controller.training.presets import _resumable

    cfg = dataclasses.replace(SMALL, epochs=1, max_steps=1, feature_norm="layer")
    ck = tmp_path / "ckpt_round0"
    assert _resumable(ck, cfg, print) is None  # nothing there yet
    first = train(demos, cfg, checkpoint_dir=ck, show_progress=False, log=lambda s: None)
    assert _resumable(ck, dataclasses.replace(cfg, threads=2), print) == ck
    lines: list[str] = []
    assert _resumable(ck, dataclasses.replace(cfg, feature_norm="none"), lines.append) is None
    assert "another training config" in lines[0]
    again = train(demos, cfg, resume=ck, show_progress=False, log=lambda s: None)
    assert again.steps == first.steps  # the finished round is not trained again
    for k, v in first.policy.state_dict().items():
        assert torch.equal(v, again.policy.state_dict()[k])


def load_policy_from(result):
    return result.policy


def test_augmentation_is_seeded_and_keeps_images_in_range():
    x = torch.rand(3, 4, 3, 78, 200)
    a = _augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = _augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, x)
    off = _augment(x, AugmentConfig.off(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(off, x)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
def test_torchrun_two_cpu_processes_gloo_end_with_identical_weights(bags, tmp_path):
    # torchrun is the console script of torch.distributed.run; the module runs with this test's
    # interpreter also where torch comes from another environment (a ROS 2 venv that borrows the
    # project's packages has no torchrun script next to its python).
    ranks = tmp_path / "ranks"
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "ltc_controller",
            "train",
            "--bag",
            str(bags / "raw"),
            "--output",
            str(out),
            "--epochs",
            "1",
            "--max-steps",
            "3",
            "--seq-len",
            "4",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.25",
            "--quiet",
            "--rank-weights-dir",
            str(ranks),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch 2 x 2 process(es)" in proc.stderr
    r0 = load_file(str(ranks / "rank0.safetensors"))
    r1 = load_file(str(ranks / "rank1.safetensors"))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    init = _init_policy(TrainConfig())
    assert not torch.equal(r0["ltc.w"], init["ltc.w"])
    assert load_policy(out).state_dict()["ltc.w"].equal(r0["ltc.w"])


def test_a_yaw_rate_policy_steers_the_car_through_the_inverse_bicycle(demos):
    """evaluate and DAgger drive the car with a Twist-trained policy: its angular_z becomes
    steering = atan(wheelbase * angular_z / speed), the inverse of record --command-type twist."""
    from ltc_controller.models.policy import Policy, PolicyConfig
    from ltc_controller.training.closed_loop import PolicyDriver

    steer_pol = Policy.from_config(PolicyConfig(), seed=3)
    yaw_cfg = dataclasses.replace(
        PolicyConfig(), output_names=("angular_z",), output_units=("rad/s",)
    )
    yaw_pol = Policy.from_config(yaw_cfg, seed=3)
    yaw_pol.load_state_dict(steer_pol.state_dict())
    raw = PolicyDriver(steer_pol, max_steering=10.0)
    drv = PolicyDriver(yaw_pol, max_steering=10.0, wheelbase_m=2.0, speed_mps=4.0)
    got = 0
    for i in range(len(demos)):
        a = raw.act(demos.images[i], float(demos.stamps[i]))
        b = drv.act(demos.images[i], float(demos.stamps[i]))
        assert (a is None) == (b is None)
        if a is not None:
            assert b == pytest.approx(np.arctan(2.0 * a / 4.0), rel=1e-6, abs=1e-9)
            got += 1
    assert got >= 5
    bad = dataclasses.replace(PolicyConfig(), output_names=("linear_x",), output_units=("m/s",))
    with pytest.raises(ValueError, match="steering_angle or an angular_z"):
        PolicyDriver(Policy.from_config(bad, seed=0))
