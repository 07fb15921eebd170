"""Statistics a reviewer accepts for a comparison: interquartile means with stratified-bootstrap
confidence intervals, probability of improvement, and a per-condition ranking.

The layout is rliable's (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS): per model a score matrix of shape ``(runs, tasks)``. Here a *run*
is a training seed and a *task* an evaluation track (episode ``k`` of a condition is the same track
for every model), so the bootstrap resamples seeds within each track. The computations are
rliable's (``rliable.library.get_interval_estimates``, ``rliable.metrics``); this module arranges
the episode records and orients the metrics (lower is better for departures per km).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Metric -> whether a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "departures_per_km": False,
    "mean_abs_lateral_error_m": False,
    "steering_rate_rms": False,
    "completion": True,
    "success": True,
    "time_to_target_s": False,
    "collisions": False,
    # The out-of-distribution monitor (training/ood_evaluation.py MonitorRecord).
    "monitor_auroc": True,
    "alarms_per_10min": False,
    "attention_auroc": True,
    "attention_alarms_per_10min": False,
    # The attention stage (training/attention_evaluation.py AttentionRecord).
    "saliency_ssim": True,
    "task_mass": True,
    # The expert reference (training/comparison.py): a policy's metric over the expert's.
    "steering_rate_rms_ratio": False,
    "time_to_target_s_ratio": False,
}


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (``lo <= point <= hi`` up to bootstrap
    noise), in the metric's unit."""

    point: float
    lo: float
    hi: float


def score_matrix(records: Sequence[Any], model: str, condition: str, metric: str) -> np.ndarray:
    """The ``(runs, tasks)`` score matrix of ``model`` under ``condition``: rows are the model's
    policies (training seeds) in name order, columns the episodes (tracks) in order.

    ``records`` are :class:`~ltc_controller.training.evaluation.EpisodeRecord`-like objects with
    ``model``, ``policy``, ``condition``, ``episode`` and the metric (``departures_per_km`` is
    derived from ``departures`` and ``distance_m``; a NaN ``time_to_target_s``, target not
    reached, counts as the record's ``time_limit_s``).

    Raises:
        ValueError: no records, or policies with different episode sets (not a full matrix).
    """
    rows: dict[str, dict[int, float]] = {}
    for r in records:
        if r.model == model and r.condition == condition:
            rows.setdefault(r.policy, {})[r.episode] = metric_value(r, metric)
    if not rows:
        raise ValueError(f"no episodes of {model!r} under {condition!r}")
    episodes = sorted(next(iter(rows.values())))
    if any(sorted(v) != episodes for v in rows.values()):
        raise ValueError(f"{model!r} under {condition!r}: policies were run on different episodes")
    return np.array([[rows[p][k] for k in episodes] for p in sorted(rows)], dtype=np.float64)


def metric_value(r: Any, metric: str) -> float:
    """The score of record ``r`` on ``metric`` as the statistics use it (:func:`score_matrix`)."""
    if metric == "departures_per_km":
        km = max(float(r.distance_m), 1e-9) / 1000.0
        return float(r.departures) / km
    v = float(getattr(r, metric))
    if metric == "time_to_target_s" and not math.isfinite(v):
        # Not reached: censored at the episode's time limit, so a failure never scores better
        # than a slow success (the IQM needs a number for every run and task).
        return float(getattr(r, "time_limit_s", math.nan))
    return v


@contextmanager
def _seeded(seed: int) -> Iterator[np.random.RandomState]:
    """A seeded RandomState for rliable, and numpy's global generator seeded the same for the
    duration: rliable's stratified bootstrap draws its run indices from ``np.random`` (global),
    not from the ``random_state`` it is given. The global state is restored afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch deprecates the RandomState that rliable hands it; the results are the same.
            warnings.simplefilter("ignore", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


def iqm_intervals(
    scores: Mapping[str, np.ndarray], *, reps: int = 2000, seed: int = 0, ci: float = 0.95
) -> dict[str, Interval]:
    """Interquartile mean (25 % trimmed mean over all runs and tasks) per key with a ``ci``
    stratified-bootstrap percentile interval (``reps`` resamples, seeded: reproducible).

    Args:
        scores: key -> ``(runs, tasks)`` matrix.

    Returns:
        key -> :class:`Interval`.
    """
    from rliable import library as rly
    from rliable import metrics

    with _seeded(seed) as rs:
        point, interval = rly.get_interval_estimates(
            dict(scores),
            lambda x: np.array([metrics.aggregate_iqm(x)]),
            reps=reps,
            confidence_interval_size=ci,
            random_state=rs,
        )
    return {
        k: Interval(float(point[k][0]), float(interval[k][0][0]), float(interval[k][1][0]))
        for k in scores
    }


def probability_of_improvement(
    x: np.ndarray,
    y: np.ndarray,
    *,
    higher_is_better: bool,
    reps: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> Interval:
    """P(X better than Y): per task the Mann-Whitney probability that a run of X beats a run
    of Y (ties count half), averaged over tasks (rliable ``probability_of_improvement``), with a
    ``ci`` stratified-bootstrap interval. ``x``, ``y``: ``(runs, tasks)`` with the same tasks.

    Raises:
        ValueError: different numbers of tasks.
    """
    from rliable import library as rly
    from rliable import metrics

    if x.shape[1] != y.shape[1]:
        raise ValueError(f"different tasks: {x.shape[1]} vs {y.shape[1]}")
    sign = 1.0 if higher_is_better else -1.0
    pair = {"x,y": [sign * x, sign * y]}
    with _seeded(seed) as rs:
        point, interval = rly.get_interval_estimates(
            pair,
            lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
            reps=reps,
            confidence_interval_size=ci,
            random_state=rs,
        )
    return Interval(
        float(point["x,y"][0]), float(interval["x,y"][0][0]), float(interval["x,y"][1][0])
    )


def comparison_tables(
    records: Sequence[Any],
    *,
    metric: str = "departures_per_km",
    reference: str = "NCP-19",
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per condition: every model's IQM with its 95 % interval, a ranking (best first, by IQM)
    and P(``reference`` better than each other model) with its interval.

    Returns:
        ``{"metric", "reference", "conditions": {condition: {"iqm": {model: Interval},
        "ranking": [model, ...], "p_improvement": {model: Interval}}}}`` (``p_improvement``
        empty when ``reference`` was not evaluated under that condition).

    Raises:
        KeyError: an unknown metric.
    """
    higher = HIGHER_IS_BETTER[metric]
    out: dict[str, Any] = {"metric": metric, "reference": reference, "conditions": {}}
    for cond in sorted({r.condition for r in records}):
        models = sorted({r.model for r in records if r.condition == cond})
        mats = {m: score_matrix(records, m, cond, metric) for m in models}
        iqm = iqm_intervals(mats, reps=reps, seed=seed)
        ranking = sorted(models, key=lambda m: iqm[m].point, reverse=higher)
        p_imp = {}
        if reference in mats:
            for m in models:
                if m != reference:
                    p_imp[m] = probability_of_improvement(
                        mats[reference], mats[m], higher_is_better=higher, reps=reps, seed=seed
                    )
        out["conditions"][cond] = {"iqm": iqm, "ranking": ranking, "p_improvement": p_imp}
    return out


def markdown(tables: Mapping[str, Any], fmt: str = "{:.2f}") -> str:
    """The tables of :func:`comparison_tables` as Markdown: one row per condition and model."""
    ref = tables["reference"]
    lines = [
        f"Metric: {tables['metric']} (IQM over seeds x tracks, 95 % stratified-bootstrap CI); "
        f"P(improvement) = P({ref} better than the model).",
        "",
        "| condition | rank | model | IQM | 95 % CI | P(" + ref + " better) |",
        "|---|---|---|---|---|---|",
    ]
    for cond, t in tables["conditions"].items():
        for rank, m in enumerate(t["ranking"], start=1):
            iv = t["iqm"][m]
            p = t["p_improvement"].get(m)
            p_txt = f"{p.point:.2f} [{p.lo:.2f}, {p.hi:.2f}]" if p is not None else "-"
            lines.append(
                f"| {cond} | {rank} | {m} | {fmt.format(iv.point)} | "
                f"[{fmt.format(iv.lo)}, {fmt.format(iv.hi)}] | {p_txt} |"
            )
    return "\n".join(lines)
