"""Closed-loop evaluation of the out-of-distribution monitor (training/ood_evaluation.py): the
bookkeeping on constructed episodes, and a short real drive with the monitor attached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ltc_controller.models.ood import AttentionStats, auroc, fit_feature_stats
from ltc_controller.training.ood_evaluation import (
    CAR_STOP_S,
    MonitorEpisode,
    attention_episodes,
    car_stop_s,
    monitor_table,
    summarise_monitor,
)


def _ep(cond: str, levels: list[int], deps: list[float], scores: float = 1.0) -> MonitorEpisode:
    n = len(levels)
    t = np.arange(n) * 0.5
    return MonitorEpisode(
        cond, 0, 5000, t, np.full(n, scores), np.asarray(levels, np.int8), deps, n * 0.5
    )


def test_flagged_avoided_and_needless_fallbacks_are_counted_from_the_frames():
    # Alarm from t = 2 s, FAULT at t = 3 s; departures at 3.5 s (within the 1.25 s stop) and 8 s.
    lv = [0, 0, 0, 0, 1, 1, 2, 2] + [2] * 12
    shifted = _ep("dim", lv, [3.5, 8.0], scores=5.0)
    # A FAULT and no departure after it: a needless fallback. An unflagged departure at 4 s.
    clean = _ep("clean", [0] * 6 + [2] * 2 + [0] * 12, [], scores=0.5)
    quiet = _ep("clean", [0] * 20, [4.0], scores=0.4)
    rows = {r["condition"]: r for r in summarise_monitor([clean, quiet, shifted])}
    d = rows["dim"]
    assert (d["failures"], d["flagged"], d["fell_back"], d["avoided"], d["needless"]) == (
        2,
        2,  # 3.5 s: alarm at 2.0-2.5 s (>= 1 s ahead); 8 s: alarm all along
        1,
        1,  # 8 s > 3 + 1.25; 3.5 s is not
        0,
    )
    c = rows["clean"]
    assert (c["failures"], c["flagged"], c["fell_back"], c["needless"]) == (1, 0, 1, 1)
    assert c["alarms_per_10min"] == pytest.approx(30.0)  # one onset in 20 s of clean driving
    assert d["auroc"] == 1.0 and np.isnan(c["auroc"])
    assert "| dim | 0.2 | 5.00 | 1.000 |" in monitor_table([d])


def test_a_faster_car_brakes_longer_so_a_departure_soon_after_the_fault_is_not_avoided():
    assert CAR_STOP_S == car_stop_s(5.0) == pytest.approx(1.25)  # 5 m/s at 4 m/s²
    assert car_stop_s(15.0) == pytest.approx(3.75)
    # FAULT at t = 3 s, a departure at 6 s: after a 1.25 s stop (avoided), within a 3.75 s one.
    ep = _ep("dim", [0] * 4 + [1, 1] + [2] * 14, [6.0], scores=5.0)
    (slow,) = summarise_monitor([ep], stop_s=car_stop_s(5.0))
    (fast,) = summarise_monitor([ep], stop_s=car_stop_s(15.0))
    assert (slow["fell_back"], slow["avoided"], slow["flagged"]) == (1, 1, 1)
    assert (fast["fell_back"], fast["avoided"], fast["flagged"]) == (1, 0, 1)


def test_auroc_counts_ties_half_and_rejects_empty_sides():
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auroc(np.array([3.0]), np.array([1.0, 2.0])) == 0.0
    with pytest.raises(ValueError, match="both sides"):
        auroc(np.array([]), np.array([1.0]))


def test_a_short_drive_records_every_frame_with_the_monitor_attached(tmp_path):
    pytest.importorskip("mujoco")
    from ltc_controller.models.policy_file import BUNDLED_POLICY, load_policy, save_policy
    from ltc_controller.training.evaluation import EvalConfig, ModelEntry, evaluate
    from ltc_controller.training.ood_evaluation import MonitorLog

    policy = load_policy(BUNDLED_POLICY)
    rng = np.random.default_rng(0)
    # Statistics that no camera frame can match: every frame alarms.
    stats = fit_feature_stats(
        rng.normal(100.0, 0.01, size=(100, 32)),
        [(rng.normal(100.0, 0.01, size=(40, 32)), np.arange(40) * 0.05)],
    )
    policy.feature_stats = stats
    # An attention threshold that consecutive real frames exceed: alarms from the first pair.
    policy.attention_stats = AttentionStats(1.0, 0.075, 1, 1e-9, 2e-9)
    path = save_policy(policy, tmp_path / "far.safetensors")
    cfg = EvalConfig(conditions=("clean",), episodes=1, distance_m=15.0)
    log = MonitorLog()
    (rec,), _ = evaluate([ModelEntry("far", path)], cfg, monitor=log)
    (ep,) = log.episodes
    assert (ep.model, ep.policy, ep.condition) == ("far", str(path), "clean")
    assert ep.duration_s == rec.duration_s and len(ep.failures) == rec.departures
    assert len(ep.times) == len(ep.scores) == len(ep.levels) >= 50  # 15 m at 5 m/s, 20 Hz
    assert np.all(ep.levels[1:] == 2) and np.all(ep.scores > stats.fault)
    assert np.all(np.diff(ep.times) > 0)
    # The attention monitor in the same run: every frame after the first closes a pair.
    a = ep.attention_scores
    assert a is not None and ep.attention_levels is not None and len(a) == len(ep.times)
    assert np.isnan(a[0]) and np.all(np.isfinite(a[1:]))
    # The car starts from rest: the first pairs can be identical maps (score 0 up to rounding);
    # from the first pair that differs the alarm holds to the end (one onset).
    first = 1 + int(np.argmax(a[1:] > 2e-9))
    assert first < 10 and np.all(ep.attention_levels[first:] == 2)
    (att,) = attention_episodes(log.episodes)
    (row,) = summarise_monitor([att])
    assert row["score_p50"] == pytest.approx(float(np.median(a[1:])))
    assert row["alarms_per_10min"] == pytest.approx(10.0 / (ep.duration_s / 60.0))


def test_drone_time_out_is_flagged_but_not_avoided_and_a_collision_is_avoided():
    from ltc_controller.training.ood_evaluation import DRONE_STOP_S

    # 40 frames: 20 s at 2 Hz
    fault_from_5s = [0] * 10 + [2] * 30
    # Lost: FAULT from 5 s, flew on to the 20 s limit (time-out): flagged, not avoidable.
    lost = _ep("winter", fault_from_5s, [])
    lost.timeout_s = 20.0
    # FAULT from 5 s, collision at 8 s: flagged and avoided (8 > 5 + 0.67).
    crash = _ep("winter", fault_from_5s, [8.0])
    # FAULT at 5 s, then reached the target: a needless fallback.
    reached = _ep("winter", fault_from_5s, [])
    rows = summarise_monitor([lost, crash, reached], stop_s=DRONE_STOP_S)
    (w,) = rows
    assert (w["failures"], w["flagged"], w["fell_back"], w["avoided"], w["needless"]) == (
        2,
        2,
        3,
        1,
        1,
    )
    assert w["flagged_share"] == 1.0 and np.isnan(w["auroc"])  # no clean frames driven
    assert lost.events() == [20.0] and crash.events() == [8.0]


def test_per_model_rows_average_the_seeds_and_episode_auroc_pairs_the_same_track():
    from ltc_controller.training.ood_evaluation import (
        episode_records,
        summarise_monitor_models,
    )

    def ep(policy: str, cond: str, k: int, scores: float, deps: list[float]) -> MonitorEpisode:
        e = _ep(cond, [1] * 20, deps, scores=scores)
        e.episode, e.model, e.policy = k, "NCP", policy
        return e

    eps = [
        ep("a", "clean", 0, 1.0, []),
        ep("a", "clean", 1, 3.0, []),
        ep("a", "dim", 0, 2.0, [5.0]),  # above track 0's clean frames: AUROC 1
        ep("a", "dim", 1, 2.0, []),  # below track 1's clean frames: AUROC 0
        ep("b", "clean", 0, 1.0, []),
        ep("b", "dim", 0, 0.5, [0.5]),  # departure at 0.5 s: nothing 1 s ahead to flag
    ]
    recs = {(r.policy, r.condition, r.episode): r for r in episode_records(eps)}
    assert recs[("a", "dim", 0)].monitor_auroc == 1.0
    assert recs[("a", "dim", 1)].monitor_auroc == 0.0
    assert np.isnan(recs[("a", "clean", 0)].monitor_auroc)
    assert (recs[("a", "dim", 0)].failures, recs[("a", "dim", 0)].flagged) == (1, 1)
    assert (recs[("b", "dim", 0)].failures, recs[("b", "dim", 0)].flagged) == (1, 0)
    assert recs[("a", "clean", 0)].alarms_per_10min == pytest.approx(60.0)  # 1 onset in 10 s
    m = summarise_monitor_models(eps)
    dim = next(r for r in m.per_model if r["condition"] == "dim")
    # policy a pools its dim frames (all 2.0) against its clean frames (1.0 and 3.0): 0.5;
    # policy b: 0.0. Flagged: a 1/1, b 0/1.
    assert dim["seeds"] == 2
    assert dim["auroc"] == pytest.approx(0.25) and dim["auroc_sd"] == pytest.approx(0.5**0.5 / 2)
    assert dim["flagged_share"] == pytest.approx(0.5) and (dim["failures"], dim["flagged"]) == (
        2,
        1,
    )
    clean = next(r for r in m.per_model if r["condition"] == "clean")
    assert np.isnan(clean["auroc"]) and np.isnan(clean["flagged_share"])


def test_reports_show_the_attention_monitor_beside_the_features_and_name_files_without_it(
    tmp_path,
):
    import csv

    from ltc_controller.training.evaluation import monitor_markdown, write_monitor
    from ltc_controller.training.ood_evaluation import (
        CAR_STOP_S,
        MonitorLog,
        attention_unavailable,
        episode_records,
    )

    def ep(policy: str, model: str, cond: str, att: float | None, deps: list[float]):
        e = _ep(cond, [0] * 20, deps, scores=1.0)  # 10 s, the feature monitor quiet
        e.model, e.policy = model, policy
        if att is not None:  # the first frame closes no pair; alarm from 2 s on
            e.attention_scores = np.r_[np.nan, np.full(19, att)]
            e.attention_levels = np.asarray([0] * 4 + [1 if att > 0.1 else 0] * 16, np.int8)
        return e

    eps = [
        ep("a.safetensors", "NCP", "clean", 0.001, []),
        ep("a.safetensors", "NCP", "dim", 0.5, [5.0]),
        ep("b.safetensors", "CNN", "clean", None, []),  # a file with the feature monitor only
        ep("b.safetensors", "CNN", "dim", None, [5.0]),
    ]
    log = MonitorLog(episodes=eps, unavailable=["c.safetensors"])
    assert attention_unavailable(log) == ["c.safetensors", "b.safetensors"]
    recs = {(r.policy, r.condition): r for r in episode_records(eps)}
    a = recs[("a.safetensors", "dim")]
    assert (a.frames, a.attention_pairs, a.attention_auroc) == (20, 19, 1.0)
    assert a.monitor_auroc == 0.5  # the feature scores tie
    assert a.attention_flagged == 1 and np.isnan(a.attention_first_fault_s)  # never FAULT
    assert a.attention_alarms_per_10min == pytest.approx(60.0)  # 1 onset in 10 s
    assert a.attention_score_p50 == 0.5 and np.isnan(
        recs[("a.safetensors", "clean")].attention_auroc
    )
    b = recs[("b.safetensors", "dim")]
    assert b.attention_pairs is None and b.attention_flagged is None and np.isnan(b.attention_auroc)
    text = monitor_markdown(log)
    assert "- `c.safetensors`: monitor: unavailable" in text
    assert "- `b.safetensors`: attention: unavailable" in text
    assert "- `a.safetensors`: attention" not in text
    att_auroc = text.split("**attention monitor AUROC, shifted vs clean pair scores**")[1]
    assert "| NCP | n/a | 1.000 |" in att_auroc and "| CNN |" not in att_auroc.split("**")[0]
    ncp = text.split("**NCP**: the monitor with and without the hand-over")[1].split("**CNN**")[0]
    assert "attention monitor (saliency instability; score: pair scores)" in ncp
    assert "| dim | 0.2 | 0.5000 | 1.000 | 60.0 | 0.0 | 1 | 1/1 |" in ncp
    cnn = text.split("**CNN**: the monitor with and without the hand-over")[1]
    assert "attention monitor" not in cnn
    summ = json.loads(json.dumps(write_monitor(tmp_path, log, CAR_STOP_S)))  # strict JSON
    rows = {(r["model"], r["condition"]): r for r in summ["attention"]["per_model"]}
    assert set(rows) == {("NCP", "clean"), ("NCP", "dim")}
    assert rows[("NCP", "dim")]["auroc"] == 1.0 and rows[("NCP", "clean")]["auroc"] is None
    assert summ["attention"]["unavailable"] == ["c.safetensors", "b.safetensors"]
    with open(tmp_path / "monitor_episodes.csv") as f:
        csv_rows = {(r["policy"], r["condition"]): r for r in csv.DictReader(f)}
    assert csv_rows[("a.safetensors", "dim")]["attention_pairs"] == "19"
    assert float(csv_rows[("a.safetensors", "dim")]["attention_auroc"]) == 1.0
    assert csv_rows[("b.safetensors", "dim")]["attention_pairs"] == ""


def test_monitor_episode_comes_back_from_json_unchanged():
    import json

    e = _ep("fog", [0, 1, 2], [0.5])
    e.scores[1] = np.nan
    e.timeout_s, e.model, e.policy = 20.0, "NCP", "p.safetensors"
    back = MonitorEpisode.from_dict(json.loads(json.dumps(e.to_dict())))
    assert back.events() == e.events() and (back.model, back.policy) == ("NCP", "p.safetensors")
    np.testing.assert_array_equal(back.scores, e.scores)
    assert back.levels.dtype == np.int8 and back.levels.tolist() == [0, 1, 2]
    assert back.attention_scores is None and attention_episodes([back]) == []
    e.attention_scores, e.attention_levels = np.array([np.nan, 0.01, 0.2]), np.array([0, 0, 1])
    back = MonitorEpisode.from_dict(json.loads(json.dumps(e.to_dict())))
    np.testing.assert_array_equal(back.attention_scores, e.attention_scores)
    (att,) = attention_episodes([back])
    assert att.scores.tolist() == [0.01, 0.2] and att.levels.tolist() == [0, 0, 1]


def test_a_drone_time_out_is_recorded_as_a_failure_in_the_same_episode(tmp_path):
    """The bundled drone policy with statistics no frame matches (FAULT from the first frame)
    cannot reach a target 6-10 m away in 2 s: a time-out at the limit, flagged, not avoided."""
    pytest.importorskip("mujoco")
    from ltc_controller.models.policy_file import load_policy, save_policy
    from ltc_controller.training.drone_evaluation import (
        DroneEvalConfig,
        evaluate_drone,
        write_drone_report,
    )
    from ltc_controller.training.evaluation import ModelEntry
    from ltc_controller.training.ood_evaluation import DRONE_STOP_S, MonitorLog

    policy = load_policy(
        Path(__file__).parents[2] / "ltc_controller/policies/ncp_drone_fly_to_target.safetensors"
    )
    policy.attention_stats = None  # the feature monitor alone (the bundled file has both)
    rng = np.random.default_rng(0)
    policy.feature_stats = fit_feature_stats(
        rng.normal(100.0, 0.01, size=(100, 32)),
        [(rng.normal(100.0, 0.01, size=(40, 32)), np.arange(40) * 0.05)],
    )
    # The attention monitor on the drone's trunk, alarming from the first pair that differs.
    policy.attention_stats = AttentionStats(1.0, 0.075, 1, 1e-9, 2e-9)
    path = save_policy(policy, tmp_path / "far.safetensors")
    cfg = DroneEvalConfig(conditions=("clean",), episodes=1, max_time_s=2.0)
    log = MonitorLog()
    (rec,), sizes = evaluate_drone([ModelEntry("far", path)], cfg, monitor=log)
    (ep,) = log.episodes
    assert not rec.reached and rec.collisions == 0
    assert ep.failures == [] and ep.timeout_s == pytest.approx(2.0) == rec.duration_s
    assert len(ep.times) == 40 and np.all(ep.levels == 2)  # 2 s at 20 Hz, all FAULT
    (row,) = summarise_monitor(log.episodes, stop_s=DRONE_STOP_S)
    assert (row["failures"], row["flagged"], row["fell_back"], row["avoided"], row["needless"]) == (
        1,
        1,
        1,
        0,  # a hover does not reach the target either
        0,
    )
    a = ep.attention_scores
    assert a is not None and ep.attention_levels is not None and len(a) == 40
    assert np.isnan(a[0]) and np.all(np.isfinite(a[1:]))  # every frame after the first pairs
    first = 1 + int(np.argmax(a[1:] > 2e-9))
    assert first < 10 and np.all(ep.attention_levels[first:] == 2)
    text = write_drone_report(tmp_path / "rep", [rec], sizes, cfg, monitor=log).read_text()
    assert "| clean | 0.0 | " in text and "| 1 | 1/1 | 1/1 | 0 | 0 |" in text
    # The attention monitor's table, from the same episode: the time-out flagged by it too.
    att = text.split("attention monitor (saliency instability; score: pair scores)")[1]
    assert "| clean | 0.0 | " in att and "| 1 | 1/1 | 1/1 | 0 | 0 |" in att
    assert "attention: unavailable" not in text
    summ = json.loads((tmp_path / "rep" / "summary.json").read_text())
    (row,) = summ["monitor"]["attention"]["with_handover"]
    assert (row["failures"], row["flagged"], row["fell_back"]) == (1, 1, 1)
    assert row["score_p50"] == pytest.approx(float(np.median(a[1:])))
