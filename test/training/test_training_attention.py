"""`compare`'s attention stage and expert reference on known inputs: which frames are used, how
they group into episodes (the statistics' tasks), and the numbers the tables are built from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ltc_controller.explain.metrics import marking_like_mask
from ltc_controller.models.policy_file import load_policy
from ltc_controller.training.attention_evaluation import (
    attention_markdown,
    attention_records,
    measure_attention,
)
from ltc_controller.training.comparison import CAR, DRONE, _expert_md
from ltc_controller.training.drone_evaluation import DroneEpisodeRecord
from ltc_controller.training.evaluation import EpisodeRecord

BUNDLED = (
    Path(__file__).resolve().parents[2] / "ltc_controller/policies/ncp19_lane_keeping.safetensors"
)


def _frames(n: int) -> np.ndarray:
    """Grey road with a white stripe that moves across the lower rows, different per frame."""
    img = np.full((n, 78, 200, 3), 90, dtype=np.uint8)
    for k in range(n):
        x = 20 + 13 * k
        img[k, 40:, x : x + 6] = 235
    return img


def test_measure_attention_uses_evenly_spread_frames_grouped_by_episode():
    policy = load_policy(BUNDLED)
    images = _frames(12)
    segment = np.repeat([4, 7, 9], 4)  # three episodes of four frames
    res = measure_attention(policy, images, segment, mask="marking_like", frames=6, seed=3)
    # linspace(0, 11, 6) rounds to frames 0, 2, 4, 7, 9, 11: two per episode
    assert res["frames"] == 6 and res["episodes"] == [4, 7, 9]
    assert set(res["ssim"]) == {"0.1", "0.2", "0.3"}
    for values in res["ssim"].values():
        assert len(values) == 3 and all(-1.0 <= v <= 1.0 for v in values)
    # the mask's share of the image, per episode, from the frames used
    share = marking_like_mask(images[[0, 2, 4, 7, 9, 11]]).mean(axis=(1, 2))
    assert res["share"] == pytest.approx([share[0:2].mean(), share[2:4].mean(), share[4:6].mean()])
    assert all(0.0 <= m <= 1.0 for m in res["mass"])
    # the same noise draws for the same seed: the same numbers
    again = measure_attention(policy, images, segment, mask="marking_like", frames=6, seed=3)
    assert again["ssim"] == res["ssim"]
    other = measure_attention(policy, images, segment, mask="marking_like", frames=6, seed=4)
    assert other["ssim"] != res["ssim"]


def test_measure_attention_refuses_bad_input():
    policy = load_policy(BUNDLED)
    images = _frames(3)
    with pytest.raises(ValueError, match="mask must be one of"):
        measure_attention(policy, images, np.zeros(3, np.int64), mask="road")
    with pytest.raises(ValueError, match=r"images \(N, H, W, 3\)"):
        measure_attention(policy, images, np.zeros(2, np.int64), mask="target_like")
    with pytest.raises(ValueError, match=r"images \(N, H, W, 3\)"):
        measure_attention(policy, images[..., 0], np.zeros(3, np.int64), mask="target_like")


def _result(ssim: float, mass: float) -> dict:
    return {
        "frames": 4,
        "mask": "marking_like",
        "episodes": [10, 11],
        "ssim": {"0.1": [ssim, ssim + 0.1], "0.3": [ssim - 0.1, ssim]},
        "mass": [mass, mass],
        "share": [0.05, 0.07],
    }


def test_attention_tables_rank_by_ssim_and_mass_with_the_reference_beating_a_worse_model():
    results = {("NCP-19", s): _result(0.8 + 0.01 * s, 0.3) for s in range(3)} | {
        ("GRU(64)", s): _result(0.5 + 0.01 * s, 0.1) for s in range(3)
    }
    records = [
        r for (m, s), res in results.items() for r in attention_records(m, f"{m}_seed{s}", res)
    ]
    # per policy: 2 episodes x (2 noise variances + the clean mass record)
    assert len(records) == 6 * 2 * 3
    clean = [r for r in records if r.policy == "NCP-19_seed0" and r.condition == "clean"]
    assert [(r.episode, r.task_mass) for r in clean] == [(0, 0.3), (1, 0.3)]
    md = attention_markdown(
        records, list(results.values()), reference="NCP-19", reps=200, source="test frames"
    )
    assert "cover 6.0% of the image" in md  # mean share
    # NCP-19 always has the higher SSIM and mass: ranked first, P(NCP-19 better) = 1
    assert "| noise_0.1 | 1 | NCP-19 | 0.860 |" in md  # IQM of 0.80..0.92 over seeds x episodes
    assert "| noise_0.1 | 2 | GRU(64) |" in md and "| 1.00 [1.00, 1.00] |" in md
    assert "Metric: task_mass (IQM" in md and "| clean | 1 | NCP-19 | 0.300 |" in md
    assert "Not measured" in attention_markdown([], [], reference="x", reps=10, source="none")


def _car(model: str, seed: int, k: int, rate: float) -> EpisodeRecord:
    return EpisodeRecord(
        model, f"{model}_{seed}", "clean", k, 5000 + k, 300.0, 300.0, 0, 0.02, 1.0, rate, 60.0
    )


def test_expert_reference_divides_by_the_expert_on_the_same_episode():
    expert = [_car("expert", 0, 0, 0.010), _car("expert", 0, 1, 0.020)]
    records = [_car("NCP-19", s, k, 0.030 * (k + 1)) for s in range(3) for k in (0, 1)]
    records += [_car("GRU(64)", s, k, 0.015 * (k + 1)) for s in range(3) for k in (0, 1)]
    md = _expert_md(CAR, records, expert, "NCP-19", reps=200)
    # NCP-19: 0.03/0.01 = 3 and 0.06/0.02 = 3 on every seed; GRU(64): 1.5
    assert "Metric: steering_rate_rms_ratio (IQM" in md
    assert "| clean | 1 | GRU(64) | 1.50 | [1.50, 1.50] |" in md
    assert "| clean | 2 | NCP-19 | 3.00 | [3.00, 3.00] |" in md
    assert "| 0.00 [0.00, 0.00] |" in md  # P(NCP-19 smoother than GRU(64))
    assert "Not run" in _expert_md(CAR, records, [], "NCP-19", reps=10)


def test_drone_expert_reference_counts_a_miss_at_the_time_limit():
    def rec(model: str, k: int, t: float) -> DroneEpisodeRecord:
        ok = t == t
        return DroneEpisodeRecord(
            model, f"{model}_0", "fog", k, 3000 + k, 10.0, float(ok), ok, t, 0.5, 0.5, 0, 20.0, 20.0
        )

    expert = [rec("expert", 0, 8.0), rec("expert", 1, 10.0)]
    records = [rec("NCP-34", 0, 16.0), rec("NCP-34", 1, float("nan"))]  # miss: 20 s
    records = [replace(r, policy="NCP-34_0") for r in records]
    md = _expert_md(DRONE, records, expert, "NCP-34", reps=200)
    assert "Metric: time_to_target_s_ratio (IQM" in md and "the time limit" in md
    assert "| fog | 1 | NCP-34 | 2.00 | [2.00, 2.00] |" in md  # 16/8 and 20/10
