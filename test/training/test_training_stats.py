"""Comparison statistics against scipy on known inputs (rliable does the bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from ltc_controller.training.evaluation import EpisodeRecord
from ltc_controller.training.stats import (
    comparison_tables,
    iqm_intervals,
    markdown,
    probability_of_improvement,
    score_matrix,
)


def _rec(model: str, seed: int, cond: str, k: int, departures: int, km: float = 0.5):
    return EpisodeRecord(
        model=model,
        policy=f"{model}_seed{seed}",
        condition=cond,
        episode=k,
        track_seed=5000 + k,
        lap_length_m=300.0,
        distance_m=km * 1000.0,
        departures=departures,
        mean_abs_lateral_error_m=0.1 * departures,
        completion=1.0,
        steering_rate_rms=0.2,
        duration_s=100.0,
    )


def test_score_matrix_is_seeds_by_tracks_in_departures_per_km():
    recs = [_rec("A", s, "clean", k, departures=s + 2 * k) for s in (1, 0) for k in (0, 1, 2)]
    m = score_matrix(recs, "A", "clean", "departures_per_km")
    # rows: policies in name order (seed0, seed1); columns: tracks; 0.5 km each
    assert m.tolist() == [[0.0, 4.0, 8.0], [2.0, 6.0, 10.0]]
    with pytest.raises(ValueError, match="no episodes"):
        score_matrix(recs, "B", "clean", "departures_per_km")
    with pytest.raises(ValueError, match="different episodes"):
        score_matrix(recs[:-1], "A", "clean", "departures_per_km")


def test_iqm_is_the_25_percent_trimmed_mean_with_an_interval_around_it():
    rng = np.random.default_rng(3)
    a = rng.normal(5.0, 2.0, size=(5, 8))
    b = np.full((5, 8), 1.0)
    out = iqm_intervals({"a": a, "b": b}, reps=500, seed=1)
    assert out["a"].point == pytest.approx(scipy.stats.trim_mean(a, 0.25, axis=None))
    assert out["a"].lo < out["a"].point < out["a"].hi
    assert out["a"].hi - out["a"].lo < 4.0  # 40 scores of sd 2: the CI is far narrower
    assert (out["b"].point, out["b"].lo, out["b"].hi) == (1.0, 1.0, 1.0)
    assert iqm_intervals({"a": a, "b": b}, reps=500, seed=1) == out  # seeded: reproducible


def test_probability_of_improvement_matches_mann_whitney_and_respects_the_direction():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, (5, 4)), rng.normal(0.0, 1.0, (6, 4))
    expected = np.mean(
        [scipy.stats.mannwhitneyu(x[:, t], y[:, t]).statistic / 30.0 for t in range(4)]
    )
    p = probability_of_improvement(x, y, higher_is_better=True, reps=200)
    assert p.point == pytest.approx(expected) and p.lo <= p.point <= p.hi
    # Fewer departures are better: a model that always departs less wins with certainty.
    fewer, more = np.zeros((5, 3)), np.ones((5, 3))
    for a, b, expected_p in ((fewer, more, 1.0), (more, fewer, 0.0), (more, more, 0.5)):
        got = probability_of_improvement(a, b, higher_is_better=False, reps=50)
        assert (got.point, got.lo, got.hi) == (expected_p,) * 3
    with pytest.raises(ValueError, match="different tasks"):
        probability_of_improvement(x, y[:, :3], higher_is_better=True)


def test_tables_rank_models_per_condition_and_compare_the_reference_with_each():
    recs = []
    for s in range(5):
        for k in range(3):
            recs.append(_rec("NCP-19", s, "clean", k, departures=0))
            recs.append(_rec("LSTM(64)", s, "clean", k, departures=3 + (s + k) % 2))
            recs.append(_rec("NCP-19", s, "noise_0.2", k, departures=4))
            recs.append(_rec("LSTM(64)", s, "noise_0.2", k, departures=1))
    t = comparison_tables(recs, reps=100)
    clean, noisy = t["conditions"]["clean"], t["conditions"]["noise_0.2"]
    assert clean["ranking"] == ["NCP-19", "LSTM(64)"] and noisy["ranking"] == ["LSTM(64)", "NCP-19"]
    assert clean["p_improvement"]["LSTM(64)"].point == 1.0
    assert noisy["p_improvement"]["LSTM(64)"].point == 0.0
    assert clean["iqm"]["NCP-19"].point == 0.0 and noisy["iqm"]["NCP-19"].point == 8.0
    text = markdown(t)
    assert "| clean | 1 | NCP-19 | 0.00 | [0.00, 0.00] | - |" in text
    assert "| noise_0.2 | 2 | NCP-19 |" in text


def test_drone_time_to_target_counts_a_failed_episode_at_its_time_limit():
    from ltc_controller.training.drone_evaluation import DroneEpisodeRecord

    def rec(seed: int, k: int, t: float) -> DroneEpisodeRecord:
        ok = np.isfinite(t)
        return DroneEpisodeRecord(
            model="A",
            policy=f"A_seed{seed}",
            condition="clean",
            episode=k,
            world_seed=5000 + k,
            target_range_m=15.0,
            success=float(ok),
            reached=bool(ok),
            time_to_target_s=t,
            final_distance_m=0.2 if ok else 9.0,
            min_distance_m=0.2,
            collisions=0,
            duration_s=t if ok else 45.0,
            time_limit_s=45.0,
        )

    recs = [rec(0, 0, 12.5), rec(0, 1, float("nan")), rec(1, 0, float("nan")), rec(1, 1, 20.0)]
    assert score_matrix(recs, "A", "clean", "time_to_target_s").tolist() == [
        [12.5, 45.0],
        [45.0, 20.0],
    ]
    assert score_matrix(recs, "A", "clean", "success").tolist() == [[1.0, 0.0], [0.0, 1.0]]
