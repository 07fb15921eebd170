"""Closed-loop evaluation: metrics that separate a good driver from a bad one, the report files,
clear errors, and the reduced `compare` preset end to end."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import csv
import json
from pathlib import Path

import pytest
import torch

from ltc_controller.cli import main
from ltc_controller.models.policy import Policy, PolicyConfig
from ltc_controller.models.policy_file import save_policy
from ltc_controller.training.evaluation import (
    EvalConfig,
    ModelEntry,
    evaluate,
    summarise,
    write_report,
)


@pytest.fixture(scope="module")
def circling_policy(tmp_path_factory):
    """An NCP-19 whose output is a constant 0.3 rad left turn: it must leave the lane."""
    p = Policy.from_config(PolicyConfig(), seed=0)
    with torch.no_grad():
        p.ltc.output_w.zero_()
        p.ltc.output_b.fill_(0.3)
    return save_policy(p, tmp_path_factory.mktemp("pol") / "circle.safetensors")


def test_expert_keeps_the_lane_and_a_circling_policy_departs(circling_policy):
    cfg = EvalConfig(conditions=("clean",), episodes=1, distance_m=30.0)
    records, sizes = evaluate(
        [ModelEntry("circle", circling_policy), ModelEntry("expert", None)], cfg
    )
    by = {r.model: r for r in records}
    assert by["expert"].departures == 0 and by["expert"].completion == 1.0
    assert by["expert"].mean_abs_lateral_error_m < 0.2
    assert by["expert"].distance_m >= 30.0
    circ = by["circle"]
    assert circ.departures >= 2  # interventions put it back; it keeps leaving
    assert circ.completion < 0.5
    assert circ.mean_abs_lateral_error_m > by["expert"].mean_abs_lateral_error_m
    assert sizes[str(circling_policy)]["neurons"] == 19
    s = summarise(records)
    row = next(r for r in s.per_model if r["model"] == "circle")
    assert row["departures_per_km"] == pytest.approx(circ.departures / (circ.distance_m / 1000))
    assert row["clean_laps"] == 0.0


def test_evaluate_command_writes_markdown_png_csv_and_json(circling_policy, tmp_path, capsys):
    out = tmp_path / "rep"
    second = tmp_path / "circle2.safetensors"  # a second "training seed"
    second.write_bytes(circling_policy.read_bytes())
    rc = main(
        [
            "evaluate",
            "--policy",
            f"circle={circling_policy}",
            "--policy",
            f"circle={second}",
            "--expert",
            "--conditions",
            "clean,noise_0.2",
            "--episodes",
            "1",
            "--distance",
            "15",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| circle | 2 | 19 |" in text  # two "seeds", 19 neurons
    assert "noise_0.2" in text and "departures / km" in text
    for name in (
        "report.md",
        "episodes.csv",
        "summary.json",
        "departures_per_km.png",
        "clean_laps.png",
        "mean_abs_lateral_error_m.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 100
    with open(out / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2  # (2 policies + expert) x 2 conditions
    summ = json.loads((out / "summary.json").read_text())
    assert {r["condition"] for r in summ["per_model"]} == {"clean", "noise_0.2"}
    # Neither file carries the monitor's statistics: the report says so for each.
    report = (out / "report.md").read_text()
    assert report.count("monitor: unavailable") == 2
    assert summ["monitor"]["unavailable"] == [str(circling_policy), str(second)]
    # ... nor the attention monitor's calibration.
    assert report.count("attention: unavailable") == 2
    assert summ["monitor"]["attention"]["unavailable"] == [str(circling_policy), str(second)]


def test_evaluate_reports_the_monitor_from_the_same_episodes(circling_policy, tmp_path, capsys):
    """A policy file whose statistics no camera frame matches: FAULT from the first frame, so
    every departure after the first second is flagged and the hand-over stops the car. Its
    attention calibration is one that consecutive real frames exceed: the attention monitor
    alarms from its first pair that differs, in the same episodes."""
    import numpy as np

    from ltc_controller.models.ood import AttentionStats, fit_feature_stats
    from ltc_controller.models.policy_file import load_policy

    p = load_policy(circling_policy)
    rng = np.random.default_rng(0)
    p.feature_stats = fit_feature_stats(
        rng.normal(100.0, 0.01, size=(100, 32)),
        [(rng.normal(100.0, 0.01, size=(40, 32)), np.arange(40) * 0.05)],
    )
    p.attention_stats = AttentionStats(1.0, 0.075, 1, 1e-9, 2e-9)
    monitored = save_policy(p, tmp_path / "monitored.safetensors")
    out = tmp_path / "rep"
    args = ["--conditions", "clean,noise_0.2", "--episodes", "1", "--distance", "20"]
    rc = main(["evaluate", "--policy", f"circle={monitored}", *args, "--output", str(out)])
    assert rc == 0
    with open(out / "episodes.csv") as f:
        episodes = {r["condition"]: r for r in csv.DictReader(f)}
    with open(out / "monitor_episodes.csv") as f:
        monitor = {r["condition"]: r for r in csv.DictReader(f)}
    summ = json.loads((out / "summary.json").read_text())  # strict JSON: NaN written as null
    rows = {r["condition"]: r for r in summ["monitor"]["with_handover"]}
    for cond in ("clean", "noise_0.2"):
        deps = int(episodes[cond]["departures"])
        assert deps >= 2 and int(monitor[cond]["failures"]) == deps  # the same episode
        assert float(monitor[cond]["duration_s"]) == float(episodes[cond]["duration_s"])
        assert float(monitor[cond]["first_fault_s"]) == 0.0
        r = rows[cond]
        assert (r["fell_back"], r["needless"]) == (1, 0)
        # only a departure within the first second can go unflagged, or unavoided (1.25 s)
        assert deps - 1 <= r["flagged"] <= deps and deps - 1 <= r["avoided"] <= deps
        assert r["flagged_share"] == pytest.approx(r["flagged"] / deps)
    assert rows["clean"]["auroc"] is None and 0.0 <= rows["noise_0.2"]["auroc"] <= 1.0
    assert float(monitor["noise_0.2"]["monitor_auroc"]) == pytest.approx(rows["noise_0.2"]["auroc"])
    # The attention monitor, recorded in the same episodes: a pair per frame after the first
    # (a departure resets the policy, not the camera), FAULT within the first half second.
    att = summ["monitor"]["attention"]
    assert att["unavailable"] == []
    arows = {r["condition"]: r for r in att["with_handover"]}
    for cond in ("clean", "noise_0.2"):
        m, deps = monitor[cond], int(episodes[cond]["departures"])
        assert int(m["frames"]) - 1 <= int(m["attention_pairs"]) <= int(m["frames"])
        assert 0.0 <= float(m["attention_first_fault_s"]) < 0.5
        assert deps - 1 <= int(m["attention_flagged"]) <= deps
        r = arows[cond]
        assert (r["failures"], r["flagged"]) == (deps, int(m["attention_flagged"]))
        assert (r["fell_back"], r["needless"]) == (1, 0) and r["score_p50"] > 0.0
    assert monitor["clean"]["attention_auroc"] == "nan" and arows["clean"]["auroc"] is None
    assert 0.0 <= float(monitor["noise_0.2"]["attention_auroc"]) <= 1.0
    assert float(monitor["noise_0.2"]["attention_auroc"]) == pytest.approx(
        arows["noise_0.2"]["auroc"]
    )
    report = (out / "report.md").read_text()
    assert "monitor: unavailable" not in report and "attention: unavailable" not in report
    assert "**circle**: the monitor with and without the hand-over" in report
    assert "**attention monitor AUROC, shifted vs clean pair scores**" in report
    assert "attention monitor (saliency instability; score: pair scores)" in report


def test_evaluate_rejects_a_bad_policy_file_and_an_unknown_condition(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a policy")
    assert main(["evaluate", "--policy", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert main(["evaluate", "--expert", "--conditions", "fog"]) == 2
    assert "unknown condition 'fog'" in capsys.readouterr().err


def test_report_of_a_single_run(circling_policy, tmp_path):
    cfg = EvalConfig(conditions=("clean",), episodes=1, distance_m=10.0)
    records, sizes = evaluate([ModelEntry("circle", circling_policy)], cfg)
    report = write_report(tmp_path, records, sizes, cfg)
    assert "one lap" not in report.read_text() and "10 m each" in report.read_text()


@pytest.mark.timeout(420)
def test_reduced_compare_trains_and_evaluates_every_model_and_prints_the_table(tmp_path, capsys):
    rc = main(["compare", "--reduced", "--quiet", "--work", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    labels = {"NCP-19", "LSTM(64)", "LSTM(19)", "GRU(64)", "CT-RNN(64)", "CNN"}
    for label in labels:
        assert f"| {label} |" in out
    assert "| NCP-19 | 1 | 19 |" in out
    report = tmp_path / "report" / "report.md"
    assert report.is_file()
    assert len(list((tmp_path / "policies").glob("*.safetensors"))) == 6
    summary = json.loads(out[out.index("\n{") :])
    assert summary["scenario"] == "car"
    assert summary["wall_s"]["total"] > 0
    assert summary["jobs"]["search"] == {"ran": 6, "cached": 0}  # one search per model
    assert set(summary["learning_rates"]) == labels
    assert summary["jobs"]["train"] == {"ran": 6, "cached": 0}
    # DAgger: every policy drove its own on-policy episode (one round of one 4 s episode at
    # 20 Hz = 80 frames, the expert labelling), then was fine-tuned on expert + its own data.
    assert summary["jobs"]["dagger"] == {"ran": 6, "cached": 0}
    dagger = summary["dagger"]
    assert (dagger["rounds"], dagger["episodes_per_policy"]) == (1, 1)
    assert len(dagger["per_policy"]) == 6
    expert_frames = set()
    for name, rounds in dagger["per_policy"].items():
        assert len(rounds) == 1 and rounds[0]["dagger_frames"] == 80, name
        expert_frames.add(rounds[0]["frames"] - 80)  # fine-tuned on all: expert + its own
        assert 0.0 <= rounds[0]["takeover_fraction"] <= 1.0
        bag = tmp_path / "dagger" / name.removesuffix(".safetensors") / "round1"
        assert (bag / "metadata.yaml").is_file()
        round0 = tmp_path / "rounds" / name.removesuffix(".safetensors") / "round0.safetensors"
        assert round0.is_file()  # the learner that drove round 1
    assert len(expert_frames) == 1 and expert_frames.pop() > 80
    assert "DAgger: 1 round(s) of 1 on-policy episode(s)" in report.read_text()
    # 6 policies x 2 conditions x 1 episode, and the expert once per condition x episode.
    assert summary["jobs"]["evaluate"] == {"ran": 14, "cached": 0}
    # Every policy got its out-of-distribution monitor fitted alike (one Ray job each) on the
    # shared calibration bag, and was evaluated with it.
    from ltc_controller.models.policy_file import load_policy

    assert summary["jobs"]["monitor"] == {"ran": 6, "cached": 0}
    mon = summary["monitor"]
    assert mon["fitted"] and len(mon["fits"]) == 6
    assert {f["heldout_frames"] for f in mon["fits"].values()} == {80}  # one 4 s episode
    for name, fit in mon["fits"].items():
        fitted = load_policy(tmp_path / "monitored" / name)
        stats, att = fitted.feature_stats, fitted.attention_stats
        assert stats is not None and stats.degraded == fit["degraded"] > 0.0
        # ... and its attention monitor on the same calibration episode: 79 pairs of 80 frames.
        assert att is not None and att.degraded == fit["attention"]["degraded"] > 0.0
        assert fit["attention"]["heldout_frames"] == 79 and att.every_n_frames == 1
    rows = {(r["model"], r["condition"]): r for r in mon["per_model"]}
    arows = {(r["model"], r["condition"]): r for r in mon["attention"]["per_model"]}
    assert len(rows) == len(arows) == 12 and mon["attention"]["unavailable"] == []
    for label in labels:
        for r in (rows, arows):
            assert r[(label, "clean")]["auroc"] is None  # clean against itself: undefined
            assert 0.0 <= r[(label, "noise_0.1")]["auroc"] <= 1.0
            assert r[(label, "clean")]["alarms_per_10min"] >= 0.0
    with open(tmp_path / "report" / "monitor_episodes.csv") as f:
        mrows = list(csv.DictReader(f))
    assert len(mrows) == 12
    for m in mrows:  # a pair per frame after the first
        assert int(m["frames"]) - 1 <= int(m["attention_pairs"]) <= int(m["frames"])
        assert 0 <= int(m["attention_flagged"]) <= int(m["failures"])
    text = report.read_text()
    assert "## Out-of-distribution monitor" in text and "monitor: unavailable" not in text
    assert "**monitor AUROC, shifted vs clean frames**" in text
    assert "**attention monitor AUROC, shifted vs clean pair scores**" in text
    assert "attention: unavailable" not in text and "Its attention monitor" in text
    assert "Metric: monitor_auroc (IQM" in out and "Metric: alarms_per_10min (IQM" in out
    assert "Metric: attention_auroc (IQM" in out
    assert "Metric: attention_alarms_per_10min (IQM" in out
    assert "| noise_0.1 | 1 |" in out.split("Metric: monitor_auroc")[1]  # ranked per shift
    assert "| noise_0.1 | 1 |" in out.split("Metric: attention_auroc")[1]
    # The expert reference: its rows in the tables, each policy's steering-rate RMS over the
    # expert's on the same track, ranked with P(NCP-19 better).
    assert "| expert | 1 | – |" in out and "## Expert reference" in text
    assert "Metric: steering_rate_rms_ratio (IQM" in out
    with open(tmp_path / "report" / "episodes.csv") as f:
        erows = [r for r in csv.DictReader(f) if r["model"] == "expert"]
    assert sorted(r["condition"] for r in erows) == ["clean", "noise_0.1"]
    ratio = out.split("Metric: steering_rate_rms_ratio")[1]
    assert "| clean | 6 |" in ratio and "expert" not in ratio.split("## Attention")[0]
    # The attention stage: one job per policy on the same 8 calibration frames; SSIM per noise
    # variance and the mass on marking-like pixels, each ranked with P(NCP-19 better).
    assert summary["jobs"]["attention"] == {"ran": 6, "cached": 0}
    for name, a in summary["attention"].items():
        assert a["frames"] == 8 and a["mask"] == "marking_like" and a["episodes"] == [0], name
        for var in ("0.1", "0.2", "0.3"):
            assert -1.0 <= a["ssim"][var][0] <= 1.0
        assert 0.0 <= a["share"][0] < 1.0
    att = out.split("## Attention (saliency SSIM")[1]
    assert "Metric: saliency_ssim (IQM" in att and "| noise_0.3 | 6 |" in att
    assert "## Attention (saliency SSIM" in text
    # Two training steps cannot make a policy that follows the image: the sanity check says so
    # per policy, and the tables still hold all six models.
    failed = {f["model"] for f in summary["training_failures"]}
    assert failed and failed <= labels
    assert "| clean | 1 |" in out  # the statistics table (rank per condition)
    cost = [line for line in out.splitlines() if line.startswith("| NCP-19 | ")][-1].split("|")
    assert int(cost[3]) == 19 and float(cost[5]) > 0.0  # neurons; ms per frame, measured
    # Run again after an interruption that lost one policy's DAgger round (its file is gone):
    # only that round and that policy's episodes run again; the searches, the round-0 training,
    # the other rounds and the other policies' episodes come from the job cache.
    (tmp_path / "policies" / "cnn_seed0.safetensors").unlink()
    assert main(["compare", "--reduced", "--quiet", "--work", str(tmp_path)]) == 0
    jobs = json.loads((o := capsys.readouterr().out)[o.index("\n{") :])["jobs"]
    assert [jobs[k]["ran"] for k in ("search", "train", "dagger")] == [0, 0, 1]
    assert [jobs[k]["cached"] for k in ("search", "train", "dagger")] == [6, 6, 5]
    assert jobs["monitor"]["ran"] <= 1 and jobs["monitor"]["cached"] >= 5
    assert jobs["evaluate"]["ran"] <= 2 and jobs["evaluate"]["cached"] >= 12
    assert jobs["attention"]["ran"] <= 1 and jobs["attention"]["cached"] >= 5
    assert (tmp_path / "policies" / "cnn_seed0.safetensors").is_file()


BUNDLED = (
    Path(__file__).resolve().parents[2]
    / "ltc_controller"
    / "policies"
    / "ncp19_lane_keeping.safetensors"
)


def test_bundled_ncp19_is_small_and_is_what_the_policy_node_loads_by_default():
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.nodes.policy_engine import load_model

    assert BUNDLED.is_file() and BUNDLED.stat().st_size < 1_000_000
    p = load_policy(BUNDLED)
    assert p.config.architecture == "ncp_ltc" and p.state_size == 19
    assert p.config.output_names == ("steering_angle",) and p.config.output_units == ("rad",)
    node_default = load_model("", 0)
    assert torch.equal(node_default.state_dict()["ltc.w"], p.state_dict()["ltc.w"])


def test_bundled_ncp19_keeps_the_lane_on_an_unseen_track():
    cfg = EvalConfig(conditions=("clean",), episodes=1, first_track_seed=5007, distance_m=150.0)
    (rec,), _ = evaluate([ModelEntry("ncp", BUNDLED)], cfg)
    assert rec.departures == 0 and rec.distance_m >= 150.0
    assert rec.mean_abs_lateral_error_m < 0.3


def test_evaluate_adds_the_attention_robustness_section(tmp_path, capsys):
    from ltc_controller.models.policy_file import BUNDLED_POLICY

    rc = main(
        [
            "evaluate",
            "--policy",
            f"NCP-19={BUNDLED_POLICY}",
            "--episodes",
            "1",
            "--distance",
            "30",
            "--conditions",
            "clean",
            "--attention",
            "--output",
            str(tmp_path),
        ]
    )
    assert rc == 0
    report = (tmp_path / "report.md").read_text()
    assert "SSIM" in report and "NCP-19" in report
    row = next(line for line in report.splitlines() if line.startswith("| NCP-19") and "±" in line)
    ssim = [float(cell.split("±")[0]) for cell in row.split("|")[2:5]]
    assert all(0.0 < v <= 1.0 for v in ssim) and ssim[0] >= ssim[-1]  # more noise, less alike
