"""``ltc-controller explain`` on a drone policy: a bag recorded in the drone simulator (forward
camera, the expert's Twist), a small NCP with four motor neurons named after the Twist axes."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import json
from pathlib import Path

import numpy as np
import pytest

from ltc_controller.cli import main
from ltc_controller.explain.frames import read_frames
from ltc_controller.explain.metrics import target_like_mask
from ltc_controller.explain.openloop import neuron_activity, run_open_loop
from ltc_controller.models.policy_file import load_policy, save_policy
from ltc_controller.nodes.policy_engine import DRONE_OUTPUTS, load_model
from ltc_controller.sim.drone.scenario import make_drone_sim
from ltc_controller.training.drone_recording import DroneRecordConfig, record_drone

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def drone_bag(tmp_path_factory) -> Path:
    """Two seconds of the expert flying towards the red chair in training world 1000."""
    bag = tmp_path_factory.mktemp("drone") / "bag"
    record_drone(bag, DroneRecordConfig(episodes=1, episode_s=2.0, first_world_seed=1000))
    return bag


@pytest.fixture(scope="module")
def drone_policy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "drone.safetensors"
    save_policy(load_model("", 3, DRONE_OUTPUTS), path)
    return path


def test_target_like_mask_finds_the_chair_in_front_and_nothing_without_it():
    sim = make_drone_sim("clean", 1000)
    try:
        img = sim.render()
    finally:
        sim.close()
    mask = target_like_mask(img)
    assert 0 < mask.sum() < 0.05 * mask.size  # the chair, small at 6-10 m
    # The chair is ahead within the bearing limit: its pixels are near the image's middle third.
    cols = np.nonzero(mask.any(axis=0))[0]
    assert img.shape[1] / 6 < cols.mean() < img.shape[1] * 5 / 6
    forest = img.copy()
    forest[mask] = (60, 100, 40)
    assert not target_like_mask(forest, grow_px=0).any()


def test_explain_runs_a_drone_policy_with_four_named_motor_neurons(
    tmp_path, drone_bag, drone_policy
):
    out = tmp_path / "out"
    rc = main(
        [
            "explain", "--policy", f"drone={drone_policy}", "--bag", str(drone_bag),
            "--command-topic", "/expert_cmd", "--out", str(out), "--max-frames", "24",
            "--video", "none", "--sheet-frames", "3",
        ]
    )  # fmt: skip
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    p = s["policies"]["drone"]
    assert set(p["commands"]) == set(DRONE_OUTPUTS)
    assert all(c["frames_with_output"] > 0 for c in p["commands"].values())
    # The recorded frames show the target: its pixels are found, and the saliency's share of
    # them is a finite number (the untrained policy has no reason to prefer them).
    a = p["attention"]
    assert a["target_like_share"] > 0.0 and np.isfinite(a["target_like_enrichment"])
    for name in ("wiring_drone", "neurons_drone", "commands", "contact_sheet"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "target-like" in report and "linear_x" in report and "angular_z" in report

    # The neuron traces name the four motor neurons after the outputs, as the wiring drawing.
    frames = read_frames(drone_bag, "/camera/image_raw", max_frames=8)
    run = run_open_loop(load_policy(drone_policy), frames.frames, label="drone")
    motor = next(g for g in neuron_activity(run) if g.name == "motor")
    assert [lab.split(" [")[0] for lab in motor.labels] == [
        f"m{j} {n}" for j, n in enumerate(DRONE_OUTPUTS)
    ]
