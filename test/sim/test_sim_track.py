"""Procedural track: closure, curvature bounds, determinism and Frenet projection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ltc_controller.sim.track import TrackParams, generate_track


@pytest.fixture(scope="module")
def track():
    return generate_track(3)


def test_same_seed_gives_same_track_and_other_seed_differs(track):
    again = generate_track(3)
    other = generate_track(4)
    np.testing.assert_array_equal(track.x, again.x)
    assert track.n != other.n or not np.allclose(track.x, other.x)


def test_track_is_closed_with_uniform_spacing(track):
    xy = track.xy
    steps = np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1)
    assert steps.max() == pytest.approx(track.spacing, abs=0.01)
    assert steps.min() == pytest.approx(track.spacing, abs=0.01)
    # one CCW lap: total heading change 2*pi
    assert track.heading[-1] - track.heading[0] == pytest.approx(2 * math.pi, abs=0.01)


def test_curvature_bounded_and_has_straights_left_and_right_curves():
    for seed in range(8):
        tr = generate_track(seed)
        p = tr.params
        assert np.abs(tr.curvature).max() <= p.max_curvature
        assert np.mean(tr.curvature == 0.0) > 0.2  # straights
        assert tr.curvature.max() > p.min_curvature * 0.9  # left curves
        assert 0.7 * p.target_length_m <= tr.length <= 1.4 * p.target_length_m
    assert any(generate_track(s).curvature.min() < 0.0 for s in range(8))  # right curves exist


def test_road_does_not_overlap_itself(track):
    xy = track.xy[::8]
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    i = np.arange(xy.shape[0])
    sep = np.abs(i[:, None] - i[None]) * 8 * track.spacing
    sep = np.minimum(sep, track.length - sep)
    assert d[sep > 60.0].min() > 2 * track.lane_width_m


def test_lateral_error_sign_left_is_positive(track):
    s = 123.0
    x, y, h, _ = track.point_at(s)
    left = track.project(x - math.sin(h) * 1.0, y + math.cos(h) * 1.0, h)
    right = track.project(x + math.sin(h) * 0.5, y - math.cos(h) * 0.5, h)
    assert left.d == pytest.approx(1.0, abs=0.01)
    assert right.d == pytest.approx(-0.5, abs=0.01)
    assert left.s == pytest.approx(s, abs=0.05)


def test_heading_error_positive_when_pointing_left(track):
    x, y, h, _ = track.point_at(50.0)
    assert track.project(x, y, h + 0.2).heading_error == pytest.approx(0.2, abs=0.01)
    assert track.project(x, y, h - 0.3).heading_error == pytest.approx(-0.3, abs=0.01)


def test_windowed_projection_matches_global_and_wraps_at_lap_end(track):
    rng = np.random.default_rng(0)
    for s in rng.uniform(0, track.length, 20):
        x, y, h, _ = track.point_at(s)
        x += rng.uniform(-1.5, 1.5)
        g = track.project(x, y, h)
        w = track.project(x, y, h, s_hint=s + 2.0)
        assert w.s == pytest.approx(g.s, abs=1e-9)
        assert w.d == pytest.approx(g.d, abs=1e-9)
    near_end = track.project(*track.point_at(track.length - 0.1)[:2], s_hint=0.2)
    assert near_end.s == pytest.approx(track.length - 0.1, abs=0.02)


def test_project_many_agrees_with_project(track):
    pts = np.array([track.point_at(s)[:2] for s in (10.0, 200.0, 400.0)]) + [0.3, -0.2]
    s, d = track.project_many(pts)
    for k in range(3):
        f = track.project(*pts[k])
        assert d[k] == pytest.approx(f.d, abs=0.02)
        assert s[k] == pytest.approx(f.s, abs=track.spacing)


def test_invalid_params_raise():
    with pytest.raises(ValueError, match="lane_width_m"):
        TrackParams(lane_width_m=-1.0)
    with pytest.raises(ValueError, match="min_curvature"):
        TrackParams(min_curvature=0.1, max_curvature=0.05)
