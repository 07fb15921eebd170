"""LaneKeepingSim: expert lap, metrics, commands and the rendered camera view."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import math

import numpy as np
import pytest

from ltc_controller.sim.lane_sim import HISTORY_COLUMNS, LaneKeepingSim
from ltc_controller.sim.world import WorldStyle


@pytest.fixture(scope="module")
def rsim():
    sim = LaneKeepingSim(track_seed=1)
    yield sim
    sim.close()


def drive_expert(sim, until_progress, speed=7.0, lookahead=6.0, t_max=300.0):
    k = 0
    max_d = 0.0
    while sim.metrics.progress < until_progress and sim.time < t_max:
        if k % 5 == 0:  # expert at 20 Hz, physics at 100 Hz
            sim.set_command(*sim.expert_command(lookahead, speed))
        sim.step(0.01)
        max_d = max(max_d, abs(sim.metrics.lateral_error))
        k += 1
    return max_d


@pytest.mark.parametrize("seed", [0, 5])
def test_expert_completes_lap_without_departure(seed):
    sim = LaneKeepingSim(track_seed=seed, render_enabled=False, initial_speed=0.0)
    max_d = drive_expert(sim, sim.track.length + 5.0)
    m = sim.metrics
    assert m.progress >= sim.track.length  # a whole lap, across the s wrap-around
    assert m.departures == 0 and not m.departed
    assert max_d < 0.3
    h = sim.history()
    assert h.shape[1] == len(HISTORY_COLUMNS) and h.shape[0] == pytest.approx(sim.time * 100, abs=2)


def test_straight_command_leaves_the_lane_on_a_curve_and_counts_one_departure():
    sim = LaneKeepingSim(track_seed=0, render_enabled=False, initial_speed=6.0)
    sim.set_command(0.0, 6.0)
    while not sim.metrics.departed and sim.time < 120.0:
        sim.step(0.05)
    assert sim.metrics.departed and sim.metrics.departures == 1
    assert abs(sim.metrics.lateral_error) > sim.limit_half_width


def test_nan_command_is_rejected_and_previous_command_kept():
    sim = LaneKeepingSim(render_enabled=False)
    assert sim.set_command(0.1, 3.0)
    assert not sim.set_command(math.nan, 3.0)
    assert not sim.set_command(0.0, math.inf)
    assert sim.command == (0.1, 3.0)


def test_step_accumulates_fractional_dt_into_whole_physics_steps():
    a = LaneKeepingSim(render_enabled=False, initial_speed=5.0)
    b = LaneKeepingSim(render_enabled=False, initial_speed=5.0)
    for s in (a, b):
        s.set_command(0.05, 5.0)
    a.step(1.0)
    for _ in range(300):
        b.step(1.0 / 300.0)
    assert a.time == pytest.approx(b.time)
    assert a.state.x == pytest.approx(b.state.x) and a.state.yaw == pytest.approx(b.state.yaw)


def test_reset_with_offset_reports_lateral_and_heading_error():
    sim = LaneKeepingSim(render_enabled=False)
    sim.reset(s0=30.0, lateral_offset=0.8, heading_offset=-0.1)
    assert sim.metrics.lateral_error == pytest.approx(0.8, abs=0.02)
    assert sim.metrics.heading_error == pytest.approx(-0.1, abs=0.01)
    assert sim.metrics.progress == 0.0


def bright_counts(img):
    """White marking pixels in the lower half: (left half of the image, right half)."""
    low = img[img.shape[0] // 2 :].astype(int)
    white = (low.min(axis=2) > 190) & (np.ptp(low, axis=2) < 40)
    w = img.shape[1]
    return int(white[:, : w // 2].sum()), int(white[:, w // 2 :].sum())


def test_camera_sees_lane_markings(rsim):
    rsim.reset(s0=2.0)  # start of a straight
    img = rsim.render()
    assert img.shape == (78, 200, 3) and img.dtype == np.uint8
    left, right = bright_counts(img)
    assert left > 40 and right > 40
    assert abs(left - right) < 0.35 * (left + right)  # centred car sees both edges alike
    # sky on top, road (grey) in the bottom centre
    top = img[:5].mean(axis=(0, 1))
    assert top[2] > top[1] > top[0]
    bottom = img[-10:, 90:110].astype(int)
    assert np.ptp(bottom, axis=2).max() < 30


def test_camera_view_shifts_when_car_moves_left(rsim):
    rsim.reset(s0=2.0, lateral_offset=1.0)
    img = rsim.render()
    # 1 m left of centre: both markings move right in the image.
    white = img[40:].min(axis=2) > 190
    cols = np.nonzero(white)[1]
    rsim.reset(s0=2.0)
    centred = np.nonzero(rsim.render()[40:].min(axis=2) > 190)[1]
    assert cols.mean() > centred.mean()  # markings move right in the image as the car moves left


def test_render_after_close_raises():
    sim = LaneKeepingSim(track_seed=2)
    sim.close()
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.render()


def test_dashed_and_centre_line_styles_render():
    sim = LaneKeepingSim(track_seed=2, style=WorldStyle(right_dashed=True, centre_line=True))
    try:
        img = sim.render()
        low = img[39:].astype(int)
        yellow = (low[..., 0] > 180) & (low[..., 1] > 140) & (low[..., 2] < 90)
        assert yellow.sum() > 5
    finally:
        sim.close()
