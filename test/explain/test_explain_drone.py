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


BUNDLED_DRONE = (
    Path(__file__).resolve().parents[2]
    / "ltc_controller/policies/ncp_drone_fly_to_target.safetensors"
)


@pytest.mark.skipif(not BUNDLED_DRONE.exists(), reason="no bundled drone policy in this checkout")
def test_contact_sheet_and_video_show_every_output_of_the_bundled_drone_policy(tmp_path, drone_bag):
    from PIL import Image as PILImage

    from ltc_controller.explain.plots import OutputTraces

    out = tmp_path / "out"
    rc = main(
        [
            "explain", "--policy", f"drone={BUNDLED_DRONE}", "--bag", str(drone_bag),
            "--out", str(out), "--max-frames", "12", "--video", "gif", "--sheet-frames", "3",
            "--no-ig",
        ]
    )  # fmt: skip
    assert rc == 0
    policy = load_policy(BUNDLED_DRONE)  # read only
    names, units = policy.config.output_names, policy.config.output_units
    assert names == ("linear_x", "linear_y", "linear_z", "angular_z")
    frames = read_frames(drone_bag, "/camera/image_raw", max_frames=12)
    run = run_open_loop(policy, frames.frames, label="drone")

    # The contact sheet: under each frame, every output with its name, value and unit.
    sheet = json.loads((out / "summary.json").read_text())["contact_sheet"]
    assert len(sheet["frames"]) == 3
    for i, caption in zip(sheet["frames"], sheet["captions"]["drone"], strict=True):
        lines = [line.split(" ") for line in caption.splitlines()]
        assert [(n, u) for n, _, u in lines] == list(zip(names, units, strict=True))
        values = [float(v) for _, v, _ in lines]
        assert values == pytest.approx(run.outputs[i].tolist(), abs=6e-4)

    # The video: under the policy's panel one trace row per output, each with a dot at the
    # frame's value on that output's own scale (larger values higher up).
    traces = OutputTraces(run.outputs, names, units, 2 * 200)
    with PILImage.open(out / "saliency.gif") as gif:
        assert gif.n_frames == 12
        gif.seek(11)
        last = np.asarray(gif.convert("RGB"))
    top = 14 + 2 * 78  # label strip + the enlarged panel
    assert last.shape == (top + 4 * OutputTraces.ROW_PX, 2 * 2 * 200, 3)
    strip = traces.render(11)
    for k in range(4):
        x, y = traces.dot(k, 11)
        assert tuple(strip[y, x]) == OutputTraces.DOT, names[k]
        # In the GIF the palette may shift the dot's red towards orange; the strip around it is
        # greys (trace, cursor, text on black), so a warm pixel is the dot.
        r, g, b = (int(c) for c in last[top + y, 2 * 200 + x])
        assert r > 150 and r - b > 60 and r >= g, (names[k], (r, g, b))
        col = run.outputs[1:, k]
        hi, lo = 1 + int(np.argmax(col)), 1 + int(np.argmin(col))
        if col.max() > col.min():
            assert traces.dot(k, hi)[1] < traces.dot(k, lo)[1]
