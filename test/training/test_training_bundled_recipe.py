"""``train --preset bundled`` at a minute's scale: it records, trains and writes a policy file
that carries the out-of-distribution monitor, fitted on the training frames and calibrated on
unperturbed expert driving; a rerun reuses the bags."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ltc_controller.models.policy_file import load_policy
from ltc_controller.training.presets import BUNDLED, train_bundled

pytest.importorskip("mujoco")
pytestmark = pytest.mark.timeout(600)

TINY = replace(
    BUNDLED,
    expert_episodes=2,
    episode_s=3.0,
    dagger_rounds=0,
    monitor_episodes=2,
    train=replace(BUNDLED.train, epochs=1, max_steps=2, seq_len=8, batch_size=2, threads=1),
)


def test_the_bundled_recipe_writes_its_monitor_into_the_policy_file(tmp_path):
    lines: list[str] = []
    out = tmp_path / "ncp19.safetensors"
    summary = train_bundled(tmp_path / "work", out, TINY, log=lines.append)
    stats = load_policy(out).feature_stats
    assert stats is not None and stats.features == 32
    assert stats.calibration["train_frames"] == 120  # 2 x 3 s at 20 Hz
    assert stats.calibration["heldout_frames"] == 120  # the calibration bag
    assert summary["monitor"]["degraded"] == stats.degraded
    att = load_policy(out).attention_stats
    assert att is not None and att.calibration["heldout_frames"] == 118  # pairs in 2 x 60 frames
    assert summary["monitor"]["attention"]["degraded"] == att.degraded
    assert any(line.startswith("out-of-distribution monitor:") for line in lines)
    lines.clear()
    train_bundled(tmp_path / "work", tmp_path / "again.safetensors", TINY, log=lines.append)
    assert sum(line.startswith("reusing") for line in lines) == 2  # expert + calibration bags
