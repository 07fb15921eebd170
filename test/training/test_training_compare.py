"""`compare` pieces shared by the car and the drone (DAgger rounds, configs through the job
cache), and the reduced drone comparison end to end: the same models, DAgger rounds and
statistics as the car's, on 4-output velocity policies."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from ltc_controller.cli import main
from ltc_controller.training.comparison import CAR, DRONE, DaggerConfig, _from_dict
from ltc_controller.training.drone_evaluation import DroneEvalConfig
from ltc_controller.training.drone_presets import (
    DRONE_COMPARE,
    DRONE_COMPARE_CLUSTER,
    DRONE_COMPARE_REDUCED,
    DRONE_RECIPE,
)
from ltc_controller.training.evaluation import EvalConfig
from ltc_controller.training.presets import (
    BUNDLED,
    COMPARE_CLUSTER,
    COMPARE_FULL,
    COMPARE_REDUCED,
)
from ltc_controller.training.search import SearchConfig


def test_dagger_config_rejects_a_bad_budget():
    for bad in ({"rounds": -1}, {"episodes": 0}, {"finetune_epochs": 0}):
        with pytest.raises(ValueError, match="DaggerConfig"):
            DaggerConfig(**bad)


def test_every_recipe_gives_every_model_the_same_dagger_budget():
    # cluster: the bundled recipe's DAgger for the car, the drone recipe's for the drone
    assert (COMPARE_CLUSTER.dagger.rounds, COMPARE_CLUSTER.dagger.episodes) == (
        BUNDLED.dagger_rounds,
        BUNDLED.dagger_episodes,
    )
    assert (DRONE_COMPARE_CLUSTER.dagger.rounds, DRONE_COMPARE_CLUSTER.dagger.episodes) == (
        DRONE_RECIPE.dagger_rounds,
        DRONE_RECIPE.dagger_episodes,
    )
    # full (2 h on 2 cores): one round, fewer episodes, the cluster's models and conditions
    assert (COMPARE_FULL.dagger.rounds, COMPARE_FULL.dagger.episodes) == (1, 3)
    assert (DRONE_COMPARE.dagger.rounds, DRONE_COMPARE.dagger.episodes) == (1, 4)
    assert COMPARE_FULL.models == COMPARE_CLUSTER.models and len(COMPARE_FULL.seeds) >= 5
    assert COMPARE_FULL.evaluation.conditions == COMPARE_CLUSTER.evaluation.conditions
    # one thread per job on both (two jobs at once beat one job on two threads)
    for r in (COMPARE_FULL, COMPARE_CLUSTER, DRONE_COMPARE, DRONE_COMPARE_CLUSTER):
        assert r.train.threads == 1
    assert COMPARE_FULL.train.epochs < COMPARE_CLUSTER.train.epochs
    assert DRONE_COMPARE.record.episodes < DRONE_COMPARE_CLUSTER.record.episodes
    assert COMPARE_REDUCED.dagger.rounds == DRONE_COMPARE_REDUCED.dagger.rounds == 1
    # the drone compares the car's architectures
    assert [m[1:] for m in DRONE_COMPARE.models] == [m[1:] for m in COMPARE_FULL.models]
    assert DRONE_COMPARE.scenario == "drone" and COMPARE_FULL.scenario == "car"


def test_dagger_rounds_record_new_tracks_and_worlds_with_new_seeds():
    d = DaggerConfig(rounds=3, episodes=6)
    car = CAR.dagger_record(COMPARE_FULL.record, d, 2)
    assert (car.episodes, car.first_track_seed, car.seed) == (6, 1200, 2 + 1)
    assert car.episode_s == COMPARE_FULL.record.episode_s
    drone = DRONE.dagger_record(DRONE_COMPARE.record, d, 1)
    assert (drone.episodes, drone.first_world_seed, drone.seed) == (6, 1100, 2)


def test_configs_come_back_from_the_job_cache_json_unchanged():
    configs = [
        COMPARE_FULL.record,
        DRONE_COMPARE.record,
        EvalConfig(conditions=("clean", "dim"), episodes=2, distance_m=30.0),
        DroneEvalConfig(conditions=("clean", "fog"), episodes=1, max_time_s=2.0),
        SearchConfig(trials=3, lr=(1e-4, 1e-3)),
    ]
    for cfg in configs:
        back = _from_dict(type(cfg), json.loads(json.dumps(asdict(cfg))))
        assert back == cfg


@pytest.mark.timeout(420)
def test_reduced_drone_compare_trains_dagger_and_evaluates_every_model(tmp_path: Path, capsys):
    from ltc_controller.models.policy_file import load_policy

    rc = main(["compare", "--scenario", "drone", "--reduced", "--quiet", "--work", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    labels = {"NCP-34", "LSTM(64)", "LSTM(19)", "GRU(64)", "CT-RNN(64)", "CNN"}
    for label in labels:
        assert f"| {label} |" in out
    assert "| NCP-34 | 1 | 34 |" in out  # 18 inter + 12 command + 4 motor neurons
    summary = json.loads(out[out.index("\n{") :])
    assert summary["scenario"] == "drone"
    jobs = summary["jobs"]
    kinds = ("search", "train", "dagger", "monitor", "attention", "evaluate")
    # 12 policy episodes and the expert's 2 (once per condition x world)
    assert [jobs[k]["ran"] for k in kinds] == [6, 6, 6, 6, 6, 14]
    for name, rounds in summary["dagger"]["per_policy"].items():
        # one on-policy episode of at most 4 s at 20 Hz, flown by this policy itself
        assert len(rounds) == 1 and 0 < rounds[0]["dagger_frames"] <= 80, name
        policy = load_policy(tmp_path / "policies" / name)
        assert policy.config.output_names == ("linear_x", "linear_y", "linear_z", "angular_z")
    # the statistics of the drone's metrics, per condition, with P(NCP-34 better)
    for metric in ("success", "time_to_target_s", "collisions"):
        assert f"Metric: {metric} (IQM" in out
    assert "| fog | 6 |" in out and "P(NCP-34 better)" in out
    assert "**success rate**" in out and "**collisions per episode**" in out
    report = (tmp_path / "report" / "report.md").read_text()
    assert "DAgger: 1 round(s) of 1 on-policy episode(s)" in report
    # 2 search runs: the report says TPE proposed the same random pairs to every model
    assert "with 2 <= 10 runs Optuna's TPE is still in its seeded random start-up" in report
    # The monitor, fitted alike for every model, in the same episodes: a 2 s episode that did
    # not reach the target is a time-out failure (a hover cannot avoid it).
    mon = summary["monitor"]
    assert mon["fitted"] and len(mon["fits"]) == 6
    rows = {(r["model"], r["condition"]): r for r in mon["per_model"]}
    # The attention monitor, calibrated alike on the drone trunk's saliency, beside it.
    arows = {(r["model"], r["condition"]): r for r in mon["attention"]["per_model"]}
    assert mon["attention"]["unavailable"] == []
    for name, fit in mon["fits"].items():
        att = load_policy(tmp_path / "monitored" / name).attention_stats
        assert att is not None and att.degraded == fit["attention"]["degraded"] > 0.0
        assert fit["attention"]["heldout_frames"] > 0
    for label in labels:
        for r in (rows, arows):
            assert r[(label, "clean")]["auroc"] is None
            assert 0.0 <= r[(label, "fog")]["auroc"] <= 1.0
    assert "## Out-of-distribution monitor" in report and "| fog | 0.0 |" in report
    assert "Metric: monitor_auroc (IQM" in out and "| fog | 1 |" in out.split("monitor_auroc")[1]
    assert "**attention monitor AUROC, shifted vs clean pair scores**" in report
    assert "attention: unavailable" not in report
    assert "Metric: attention_auroc (IQM" in out
    assert "| fog | 1 |" in out.split("Metric: attention_auroc")[1]
    with open(tmp_path / "report" / "monitor_episodes.csv") as f:
        mrows = list(csv.DictReader(f))
    assert len(mrows) == 12
    for m in mrows:
        assert int(m["failures"]) in (0, 1) and 0 <= int(m["flagged"]) <= int(m["failures"])
        assert 0 <= int(m["attention_flagged"]) <= int(m["failures"])
        assert int(m["frames"]) - 1 <= int(m["attention_pairs"]) <= int(m["frames"])
    # Episodes are cut at 2 s; one that did not reach the target counts at that limit in the
    # time-to-target statistics.
    with open(tmp_path / "report" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14 and {float(r["time_limit_s"]) for r in rows} == {2.0}
    if not any(float(r["success"]) for r in rows if r["model"] != "expert"):
        assert "| clean | 1 | CNN | 2.00 | [2.00, 2.00] |" in out
    # The expert reference (time to target over the expert's, a miss counted at the limit) and
    # the attention stage (mass on the red target-like pixels) for the drone.
    assert [r["model"] for r in rows].count("expert") == 2
    assert "Metric: time_to_target_s_ratio (IQM" in out
    assert {a["mask"] for a in summary["attention"].values()} == {"target_like"}
    assert "Metric: task_mass (IQM" in out or "No task-mass number" in out


def test_monitor_job_fits_a_copy_and_reports_a_fit_it_cannot_make(tmp_path: Path):
    from ltc_controller.models.policy import Policy, PolicyConfig
    from ltc_controller.models.policy_file import load_policy, save_policy
    from ltc_controller.sim.scenario import PerturbationConfig
    from ltc_controller.training.comparison import monitor_job
    from ltc_controller.training.recording import RecordConfig, record

    policy = save_policy(Policy.from_config(PolicyConfig(), seed=0), tmp_path / "p.safetensors")
    bags = {}
    for name, seconds in (("data", 1.0), ("calib", 1.0), ("tiny", 0.1)):
        bags[name] = tmp_path / name
        record(
            bags[name],
            RecordConfig(episodes=1, episode_s=seconds, perturbation=PerturbationConfig.none()),
        )
    pairing = {"label_offset_s": 0.0, "max_pair_dt_s": 0.05}

    def fit(data: Path, out: str, attention_every_n: int = 1) -> dict:
        return monitor_job(
            [str(data)],
            "d",
            pairing,
            None,
            str(bags["calib"]),
            "c",
            str(policy),
            "p",
            out,
            attention_every_n=attention_every_n,
        )

    res = fit(bags["data"], str(tmp_path / "monitored" / "p.safetensors"))
    fitted = load_policy(res["output"])
    stats = fitted.feature_stats
    assert stats is not None and stats.degraded == res["degraded"] > 0.0
    assert res["train_frames"] == 20 and res["heldout_frames"] == 20  # 1 s at 20 Hz each
    # The attention monitor calibrated on the same calibration frames: 19 consecutive pairs.
    att = fitted.attention_stats
    assert att is not None and att.degraded == res["attention"]["degraded"] > 0.0
    assert (att.every_n_frames, res["attention"]["heldout_frames"]) == (1, 19)
    assert att.pair_gap_s == pytest.approx(0.075)  # 1.5 camera periods
    none = fit(bags["data"], str(tmp_path / "monitored" / "n.safetensors"), attention_every_n=0)
    assert none["attention"] is None and load_policy(none["output"]).attention_stats is None
    assert load_policy(policy).feature_stats is None  # the trained file is left as it was
    bad = fit(bags["tiny"], str(tmp_path / "monitored" / "q.safetensors"))
    assert bad["output"] is None and "too few" in bad["error"]
    assert not (tmp_path / "monitored" / "q.safetensors").exists()


def test_models_are_selected_by_label_in_the_order_given():
    from ltc_controller.training.presets import select_models

    picked = select_models(COMPARE_FULL.models, "GRU(64), NCP-19")
    assert [m[0] for m in picked] == ["GRU(64)", "NCP-19"]
    assert picked[1] == COMPARE_FULL.models[0]
    for bad in ("", "NCP-19,NCP-19", "NCP-19,Transformer"):
        with pytest.raises(ValueError, match="--models"):
            select_models(COMPARE_FULL.models, bad)


def test_compare_refuses_an_unknown_model_label_before_recording(tmp_path: Path, capsys):
    rc = main(["compare", "--reduced", "--models", "NCP-19,LSTM(7)", "--work", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown: LSTM(7)" in err and "GRU(64)" in err
    assert not any(tmp_path.iterdir())  # nothing recorded
