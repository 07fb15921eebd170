"""The bundled drone policy (``policies/ncp_drone_fly_to_target.safetensors``): what it outputs,
in which units, and that it flies an unseen clean world to the target through the runtime."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

from pathlib import Path

import numpy as np

from ltc_controller.models.policy_file import load_policy
from ltc_controller.training.drone_closed_loop import VELOCITY_AXES, DronePolicyDriver
from ltc_controller.training.drone_evaluation import DroneEvalConfig, evaluate_drone_episode
from ltc_controller.training.drone_presets import DRONE_NCP
from ltc_controller.training.evaluation import ModelEntry

DRONE_POLICY = (
    Path(__file__).resolve().parents[2]
    / "ltc_controller"
    / "policies"
    / "ncp_drone_fly_to_target.safetensors"
)


def test_bundled_drone_policy_is_the_drone_ncp_with_four_velocity_outputs():
    assert DRONE_POLICY.is_file() and DRONE_POLICY.stat().st_size < 1_000_000
    p = load_policy(DRONE_POLICY)
    cfg = p.config
    assert cfg.architecture == "ncp_ltc" and p.state_size == 34
    inter, command = DRONE_NCP[:2]
    assert cfg.units == inter + command + 4
    assert cfg.output_names == VELOCITY_AXES
    assert cfg.output_units == ("m/s", "m/s", "m/s", "rad/s")
    assert cfg.step_s == 0.05
    # Frames through the runtime give a finite setpoint on every axis (from the second frame on:
    # the first only starts the runtime's clock).
    drv = DronePolicyDriver(p)
    outs = [drv.act(np.full((78, 200, 3), 128, np.uint8), 0.05 * k) for k in (1, 2, 3)]
    assert outs[-1] is not None and len(outs[-1]) == 4 and all(np.isfinite(outs[-1]))


def test_bundled_drone_policy_flies_unseen_clean_worlds_where_flying_straight_fails():
    # Worlds 5001-5003 (evaluation episodes 1-3): flying straight ahead at cruise speed passes
    # the chair (world 5003 at 1.67 m) and fails; the first bundled policy, which barely
    # steered, flew past it in 5001 and 5002 to the time limit (16-17 m away). The policy steers
    # onto it in each (policies/README.md has the rates per condition).
    cfg = DroneEvalConfig(conditions=("clean",), episodes=4, first_world_seed=5000)
    for episode in (1, 2, 3):
        rec = evaluate_drone_episode(ModelEntry("ncp", DRONE_POLICY), "clean", episode, cfg)
        assert rec.world_seed == 5000 + episode
        assert rec.success == 1.0 and rec.collisions == 0, rec
        assert rec.final_distance_m <= 1.0 and rec.time_to_target_s < 20.0, rec


def test_bundled_drone_policy_carries_both_monitors_calibrated_on_ten_minutes_of_flight():
    # `monitor fit` on the recipe's 96 expert worlds + a 12-world DAgger bag (statistics) and 72
    # unperturbed expert flights in worlds 2000-2071 (thresholds); policies/README.md.
    p = load_policy(DRONE_POLICY)
    st, att = p.feature_stats, p.attention_stats
    assert st is not None and att is not None
    assert st.features == 32 and st.calibration["train_frames"] == 18065
    assert st.calibration["heldout_frames"] == 12270 and st.calibration["heldout_minutes"] > 10.0
    assert st.calibration["heldout_onsets_fault"] == 0 and st.fault == 2.0 * st.degraded
    assert abs(st.degraded - 1.924) < 5e-4
    # The attention monitor: every frame's saliency against the one 50 ms before.
    assert att.every_n_frames == 1 and abs(att.pair_gap_s - 0.075) < 1e-9
    assert (
        att.calibration["heldout_frames"] == 12198 and att.calibration["heldout_onsets_fault"] == 0
    )
    assert abs(att.degraded - 0.6091) < 5e-5 and att.fault == 2.0 * att.degraded
