"""Scenario conditions (domain shifts) and the perturbed expert."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import math

import numpy as np
import pytest

from ltc_controller.sim.conditions import (
    CONDITIONS,
    ImageEffects,
    get_condition,
    parse_conditions,
)
from ltc_controller.sim.scenario import PerturbationConfig, PerturbedExpert, make_sim


def test_condition_names_cover_the_ncp_paper_noise_levels_and_each_shift_kind():
    for name in (
        "clean",
        "noise_0.1",
        "noise_0.2",
        "noise_0.3",
        "dim",
        "bright",
        "road_colours",
        "road_texture",
        "blur",
        "occlusion",
        "camera_offset",
        "sharp_curves",
    ):
        assert CONDITIONS[name].name == name
    assert [c.name for c in CONDITIONS.values() if c.in_distribution] == ["clean"]
    assert get_condition("noise_0.2").noise_var == 0.2
    assert [c.name for c in parse_conditions("clean, noise_0.3")] == ["clean", "noise_0.3"]
    assert len(parse_conditions("all")) == len(CONDITIONS)


def test_unknown_condition_error_lists_the_known_names():
    with pytest.raises(KeyError, match="unknown condition 'fog'.*noise_0.1") as e:
        get_condition("fog")
    assert str(e.value).startswith("unknown condition")  # printed as is, not as a quoted key


@pytest.mark.parametrize("var", [0.1, 0.3])
def test_camera_noise_has_the_papers_variance_on_unit_images(var):
    # Mid-grey: the clipped noise has E|clip(0.5 + N) - 0.5| = E[min(|N|, 0.5)] (closed form).
    img = np.full((78, 200, 3), 128, np.uint8)
    out = ImageEffects(get_condition(f"noise_{var}"), 0, 78, 200)(img)
    got = np.abs(out.astype(np.float64) - 128.0).mean() / 255.0
    sigma, a = math.sqrt(var), 0.5
    want = sigma * math.sqrt(2 / math.pi) * (
        1 - math.exp(-(a**2) / (2 * sigma**2))
    ) + a * math.erfc(a / (sigma * math.sqrt(2)))
    assert got == pytest.approx(want, rel=0.03)


def test_clean_condition_leaves_images_untouched_and_occlusion_covers_its_fraction():
    img = np.full((78, 200, 3), 200, np.uint8)
    assert ImageEffects(get_condition("clean"), 0, 78, 200)(img) is img
    occ = ImageEffects(get_condition("occlusion"), 3, 78, 200)(img)
    dark = (occ == 25).all(axis=2).mean()
    assert dark == pytest.approx(0.12, abs=0.02)
    assert img.min() == 200  # input not modified


def test_blur_softens_a_marking_edge():
    img = np.zeros((78, 200, 3), np.uint8)
    img[:, 100:] = 255
    out = ImageEffects(get_condition("blur"), 0, 78, 200)(img)
    assert out[40, 99, 0] > 40 and out[40, 100, 0] < 215


def test_lighting_camera_pose_and_curvature_shifts_change_the_scene():
    clean = make_sim("clean", 1)
    dim = make_sim("dim", 1)
    cam = make_sim("camera_offset", 1)
    try:
        for s in (clean, dim, cam):
            s.reset(s0=30.0)
        a, b, c = clean.render(), dim.render(), cam.render()
        assert b[30:].mean() < 0.6 * a[30:].mean()  # ground (the sky is unlit)
        assert np.abs(a.astype(int) - c.astype(int)).mean() > 5.0
    finally:
        for s in (clean, dim, cam):
            s.close()
    sharp = make_sim("sharp_curves", 1, render_enabled=False)
    base = make_sim("clean", 1, render_enabled=False)
    assert np.abs(sharp.track.curvature).max() > 0.045 > np.abs(base.track.curvature).max()


def test_perturbed_expert_labels_are_the_clean_expert_and_recoveries_stay_in_the_lane():
    sim = make_sim("clean", 3, render_enabled=False, initial_speed=5.0)
    cfg = PerturbationConfig(burst_rate_hz=0.3, offset_rate_hz=0.15)
    expert = PerturbedExpert(cfg, seed=0)
    perturbed, max_d = 0, 0.0
    for _ in range(int(90 / 0.05)):
        clean = sim.expert_command(cfg.lookahead_m, cfg.speed_mps)[0]
        ec = expert.command(sim)
        assert ec.label_steer == pytest.approx(clean)
        perturbed += ec.perturbed and abs(ec.executed_steer - ec.label_steer) > 1e-3
        sim.set_command(ec.executed_steer, ec.speed)
        sim.step(0.05)
        max_d = max(max_d, abs(sim.metrics.lateral_error))
    assert perturbed > 100  # the data holds many perturbed frames
    assert 0.2 < max_d < sim.limit_half_width + 0.2
    assert sim.metrics.departures <= 1


def test_expert_target_offset_drives_a_parallel_line():
    sim = make_sim("clean", 0, render_enabled=False, initial_speed=5.0)
    for _ in range(400):
        sim.set_command(*sim.expert_command(6.0, 5.0, target_offset_m=0.5))
        sim.step(0.05)
    assert sim.metrics.lateral_error == pytest.approx(0.5, abs=0.15)


def test_intervention_puts_the_car_back_and_keeps_progress_and_count():
    sim = make_sim("clean", 0, render_enabled=False, initial_speed=6.0)
    sim.set_command(0.0, 6.0)
    while not sim.metrics.departed:
        sim.step(0.05)
    progress = sim.metrics.progress
    sim.intervene()
    m = sim.metrics
    assert not m.departed and m.departures == 1
    assert abs(m.lateral_error) < 0.05 and abs(m.heading_error) < 0.02
    assert m.progress == pytest.approx(progress, abs=0.5)
