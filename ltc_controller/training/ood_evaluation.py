"""Closed-loop usefulness of the out-of-distribution monitor (issue 16 §3), car and drone.

Every closed-loop evaluation episode of a policy whose file carries the monitor's statistics
(``evaluate``, ``compare``, ``monitor evaluate``) records the monitor as it drives:
:class:`MonitorRecorder` attaches a :class:`~ltc_controller.runtime.ood.FeatureMonitor` to the
driver's runtime, exactly as ``ltc_policy`` runs it (every taken frame's features are scored;
the monitor only reads them, so the driving is the same as without it), and notes per frame the
time, the frame's own score and the monitor's level, and the failures' times. One episode run
gives both the task metrics and the monitor's columns.

Failures: the car's lane departures (each followed by an intervention; the episode goes on); the
drone's collision (the episode ends there) or its not reaching the target by the time limit (a
*time-out*, at the limit).

From one run per episode both arms of the comparison follow, since everything up to the
monitor's first FAULT is the same with and without a hand-over (deterministic simulators,
seeded effects):

- **without** the hand-over: the failures as they happened;
- **with** it: at the first FAULT the safety node falls back and the vehicle stops within
  ``stop_s`` (car: brake from the driving speed at the vehicle profile's 4 m/s²,
  :func:`car_stop_s`, 1.25 s from 5 m/s; drone: the setpoint ramps to a hover from at most
  2 m/s at 3 m/s², :data:`DRONE_STOP_S`, ``config/drone.yaml``) and waits there. Failures
  before the FAULT, or within ``stop_s`` after it, still happen; later departures or
  collisions are *avoided* (a time-out is not: a hovering drone does not reach its target
  either). An episode whose first FAULT is followed by no failure at all is a *needless
  fallback*.

A failure is *flagged* when the monitor was DEGRADED or worse at some frame in the
``window_s`` (10 s) before it, ending ``lead_s`` (1 s) before it: time enough to hand over. (For
a time-out that window is the last 10 s before the limit; an alarm earlier in a lost flight does
not count. The drone's stop, 0.67 s, is shorter than the lead: a FAULT 0.67-1 s before a
collision avoids it without having flagged it.)

The AUROC of a shifted condition compares its per-frame scores with the same policy's frames of
the ``clean`` condition (0.5: no separation, 1: every shifted frame scores above every clean
one); it is undefined (NaN) for ``clean`` itself and when ``clean`` was not driven.

When the driven policy carries the attention monitor's calibration
(:class:`~ltc_controller.models.ood.AttentionStats`), the recorder attaches it too and notes its
pair scores and levels per frame; :func:`attention_episodes` turns the episodes into ones whose
scores and levels are the attention monitor's, for the same summaries and tables (its AUROC:
pair scores of the shifted condition against the clean condition's). Every report of these
episodes (``monitor evaluate``, ``evaluate``, ``compare``) shows both monitors through
:func:`monitor_tables`, :func:`episode_records` (``attention_*`` columns) and
:func:`attention_unavailable`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.models.ood import FeatureStats, auroc
from ltc_controller.runtime.ood import AttentionMonitor, FeatureMonitor

__all__ = [
    "ATTENTION_METRICS",
    "ATTENTION_UNAVAILABLE",
    "CAR_DECEL_MPS2",
    "CAR_STOP_S",
    "car_stop_s",
    "DRONE_STOP_S",
    "MONITOR_METRICS",
    "UNAVAILABLE",
    "attention_episodes",
    "attention_unavailable",
    "MonitorEpisode",
    "MonitorLog",
    "MonitorModels",
    "MonitorRecord",
    "MonitorRecorder",
    "episode_records",
    "monitor_table",
    "monitor_tables",
    "summarise_monitor",
    "summarise_monitor_models",
]

#: Car: the fallback's deceleration, the vehicle profile's ``speed.decel`` (m/s²,
#: ``config/vehicle.yaml``).
CAR_DECEL_MPS2 = 4.0


def car_stop_s(speed_mps: float) -> float:
    """Time (s) the car's fallback takes to brake from ``speed_mps`` (m/s) to a stop at
    :data:`CAR_DECEL_MPS2`."""
    return speed_mps / CAR_DECEL_MPS2


#: Car: braking from 5 m/s, the evaluations' default speed (s).
CAR_STOP_S = car_stop_s(5.0)
#: Drone: the fallback ramps the setpoint to a hover from at most 2 m/s at 3 m/s² (s).
DRONE_STOP_S = 2.0 / 3.0
#: What a report says for a policy file without the monitor's statistics.
UNAVAILABLE = "monitor: unavailable"
#: What a report says for a policy file without the attention monitor's calibration.
ATTENTION_UNAVAILABLE = "attention: unavailable"

#: ``(key, title, format)`` of the per model x condition monitor tables (mean ± sd over seeds).
MONITOR_METRICS = (
    ("auroc", "monitor AUROC, shifted vs clean frames", "{:.3f}"),
    ("alarms_per_10min", "monitor alarm onsets / 10 min (clean: false alarms)", "{:.1f}"),
    ("flagged_share", "failures flagged >= 1 s ahead by the monitor", "{:.0%}"),
)
#: :data:`MONITOR_METRICS` of the attention monitor (rows of :func:`attention_episodes`).
ATTENTION_METRICS = (
    ("auroc", "attention monitor AUROC, shifted vs clean pair scores", "{:.3f}"),
    ("alarms_per_10min", "attention monitor alarm onsets / 10 min (clean: false alarms)", "{:.1f}"),
    ("flagged_share", "failures flagged >= 1 s ahead by the attention monitor", "{:.0%}"),
)


@dataclass
class MonitorEpisode:
    """One episode with the monitor attached.

    Attributes:
        condition, episode, track_seed: what was driven (``track_seed``: the drone's world seed).
        times: ``(N,)`` frame stamps (s, simulation time from the episode start).
        scores: ``(N,)`` each frame's own score.
        levels: ``(N,)`` the monitor's level after each frame (0 OK, 1 DEGRADED, 2 FAULT).
        failures: times (s, same clock) of the failures a hand-over can avoid: the car's
            departures, the drone's collision.
        duration_s: simulated time driven (s).
        timeout_s: the drone's time limit when the episode ended there without reaching the
            target (a failure a hand-over cannot avoid); None otherwise.
        model, policy: the model label and the policy file.
        attention_scores: ``(N,)`` the attention monitor's pair score at each frame (NaN where
            no pair was scored); None without an attention monitor.
        attention_levels: ``(N,)`` its level after each frame; None without it.
    """

    condition: str
    episode: int
    track_seed: int
    times: NDArray[np.float64]
    scores: NDArray[np.float64]
    levels: NDArray[np.int8]
    failures: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    timeout_s: float | None = None
    model: str = ""
    policy: str = ""
    attention_scores: NDArray[np.float64] | None = None
    attention_levels: NDArray[np.int8] | None = None

    def events(self) -> list[float]:
        """Every failure's time: :attr:`failures` and the time-out."""
        return [*self.failures, *([] if self.timeout_s is None else [self.timeout_s])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (arrays as lists); :meth:`from_dict` inverts it."""
        return {
            "condition": self.condition,
            "episode": self.episode,
            "track_seed": self.track_seed,
            "times": self.times.tolist(),
            "scores": self.scores.tolist(),
            "levels": self.levels.tolist(),
            "failures": list(self.failures),
            "duration_s": self.duration_s,
            "timeout_s": self.timeout_s,
            "model": self.model,
            "policy": self.policy,
            "attention_scores": None
            if self.attention_scores is None
            else [None if math.isnan(x) else x for x in self.attention_scores.tolist()],
            "attention_levels": None
            if self.attention_levels is None
            else self.attention_levels.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorEpisode:
        """Inverse of :meth:`to_dict`. Raises ``KeyError`` on a missing field."""
        return cls(
            condition=d["condition"],
            episode=int(d["episode"]),
            track_seed=int(d["track_seed"]),
            times=np.asarray(d["times"], dtype=np.float64),
            scores=np.asarray(d["scores"], dtype=np.float64),
            levels=np.asarray(d["levels"], dtype=np.int8),
            failures=[float(t) for t in d["failures"]],
            duration_s=float(d["duration_s"]),
            timeout_s=None if d.get("timeout_s") is None else float(d["timeout_s"]),
            model=d.get("model", ""),
            policy=d.get("policy", ""),
            attention_scores=None
            if d.get("attention_scores") is None
            else np.array([math.nan if x is None else x for x in d["attention_scores"]]),
            attention_levels=None
            if d.get("attention_levels") is None
            else np.asarray(d["attention_levels"], dtype=np.int8),
        )


@dataclass
class MonitorLog:
    """What an evaluation collected about the monitor: the episodes of the policies with
    statistics, and the policy files without them (their report says :data:`UNAVAILABLE`)."""

    episodes: list[MonitorEpisode] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


class MonitorRecorder:
    """Attach a fresh :class:`FeatureMonitor` of ``stats`` to ``runtime`` (a
    :class:`~ltc_controller.runtime.loop.PolicyRuntime`) for one episode.

    Call :meth:`frame` after each frame's tick, :meth:`failure` at each failure, then
    :meth:`episode`, and :meth:`detach` in any case (a ``finally``).

    The attention monitor is attached as well when the runtime's model is a policy whose file
    carries its calibration (``attention_stats``; the torch backend, where the runtime's model
    is the policy and its head gives the features).
    """

    def __init__(self, runtime: Any, stats: FeatureStats) -> None:
        self.monitor = FeatureMonitor(stats)
        self._runtime = runtime
        runtime.feature_monitor = self.monitor
        model = getattr(runtime, "model", None)
        att = getattr(model, "attention_stats", None)
        self.attention = (
            AttentionMonitor(att, model.head) if att is not None and model is not None else None
        )
        runtime.attention_monitor = self.attention
        self._att_scores: list[float] = []
        self._att_levels: list[int] = []
        self._att_pairs = 0
        self._times: list[float] = []
        self._scores: list[float] = []
        self._levels: list[int] = []
        self._failures: list[float] = []

    def frame(self, t_s: float) -> None:
        """The frame at ``t_s`` (s from the episode start) has been ticked."""
        self._times.append(t_s)
        self._scores.append(self.monitor.last)
        self._levels.append(self.monitor.level)
        att = self.attention
        if att is not None:
            new_pair = att.pairs > self._att_pairs
            self._att_pairs = att.pairs
            self._att_scores.append(att.last if new_pair else math.nan)
            self._att_levels.append(att.level)

    def failure(self, t_s: float) -> None:
        """A departure or collision at ``t_s`` (s from the episode start)."""
        self._failures.append(t_s)

    def detach(self) -> None:
        """Take the monitor off the runtime."""
        if self._runtime.feature_monitor is self.monitor:
            self._runtime.feature_monitor = None
        if self.attention is not None and self._runtime.attention_monitor is self.attention:
            self._runtime.attention_monitor = None

    def episode(
        self,
        condition: str,
        episode: int,
        track_seed: int,
        duration_s: float,
        *,
        timeout_s: float | None = None,
        model: str = "",
        policy: str = "",
    ) -> MonitorEpisode:
        """The recorded episode."""
        return MonitorEpisode(
            condition,
            episode,
            track_seed,
            np.asarray(self._times, dtype=np.float64),
            np.asarray(self._scores, dtype=np.float64),
            np.asarray(self._levels, dtype=np.int8),
            list(self._failures),
            duration_s,
            timeout_s,
            model,
            policy,
            None if self.attention is None else np.asarray(self._att_scores, dtype=np.float64),
            None if self.attention is None else np.asarray(self._att_levels, dtype=np.int8),
        )


def _attention_view(e: MonitorEpisode) -> MonitorEpisode | None:
    """``e`` with the attention monitor's scores (the scored pairs only) and levels in place of
    the feature monitor's; None when ``e`` did not record it."""
    if e.attention_scores is None or e.attention_levels is None:
        return None
    s = e.attention_scores
    return replace(e, scores=s[np.isfinite(s)], levels=e.attention_levels)


def attention_episodes(episodes: Sequence[MonitorEpisode]) -> list[MonitorEpisode]:
    """The episodes that recorded the attention monitor, with its scores (the scored pairs
    only) and levels in place of the feature monitor's, for :func:`summarise_monitor` and
    :func:`monitor_table`."""
    return [a for a in map(_attention_view, episodes) if a is not None]


def attention_unavailable(log: MonitorLog) -> list[str]:
    """The policy files of ``log`` without the attention monitor's calibration, in order: those
    without the monitor at all (``log.unavailable``), then those whose episodes recorded only
    the feature monitor."""
    out = list(log.unavailable)
    for e in log.episodes:
        if e.attention_scores is None and e.policy not in out:
            out.append(e.policy)
    return out


def _onsets(levels: NDArray[np.int8], at_least: int) -> int:
    above = levels >= at_least
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1])) if len(above) else 0


def _flagged(e: MonitorEpisode, t: float, lead_s: float, window_s: float) -> bool:
    sel = (e.times >= t - window_s) & (e.times <= t - lead_s)
    return bool(np.any(e.levels[sel] >= 1))


def _auroc(clean: list[MonitorEpisode], shifted: list[MonitorEpisode]) -> float:
    a = [e.scores for e in clean if len(e.scores)]
    b = [e.scores for e in shifted if len(e.scores)]
    if not a or not b:
        return math.nan
    return auroc(np.concatenate(a), np.concatenate(b))


def _rows(
    episodes: Sequence[MonitorEpisode], by: str, lead_s: float, window_s: float, stop_s: float
) -> list[dict[str, Any]]:
    rows = []
    keys = list(dict.fromkeys((getattr(e, by), e.condition) for e in episodes))
    for group, cname in keys:
        eps = [e for e in episodes if getattr(e, by) == group and e.condition == cname]
        policies = list(dict.fromkeys(e.policy for e in eps))
        # AUROC per policy against its own clean frames (score scales differ between
        # policies), then the mean over the group's policies.
        aucs = []
        if cname != "clean":
            for p in policies:
                clean = [e for e in episodes if e.policy == p and e.condition == "clean"]
                aucs.append(_auroc(clean, [e for e in eps if e.policy == p]))
        finite = [a for a in aucs if math.isfinite(a)]
        scores = np.concatenate([e.scores for e in eps]) if eps else np.zeros(0)
        minutes = sum(e.duration_s for e in eps) / 60.0
        fails = flagged = avoided = fell_back = needless = 0
        for e in eps:
            for t in e.events():
                fails += 1
                flagged += _flagged(e, t, lead_s, window_s)
            faults = np.flatnonzero(e.levels >= 2)
            if len(faults):
                fell_back += 1
                t_f = float(e.times[faults[0]])
                avoided += sum(t > t_f + stop_s for t in e.failures)
                needless += not any(t > t_f for t in e.events())
        per_10 = 10.0 / minutes if minutes > 0 else math.nan
        rows.append(
            {
                by: group,
                "condition": cname,
                "policies": len(policies),
                "episodes": len(eps),
                "minutes": minutes,
                "score_p50": float(np.median(scores)) if len(scores) else math.nan,
                "auroc": float(np.mean(finite)) if finite else math.nan,
                "alarms_per_10min": sum(_onsets(e.levels, 1) for e in eps) * per_10,
                "faults_per_10min": sum(_onsets(e.levels, 2) for e in eps) * per_10,
                "failures": fails,
                "flagged": flagged,
                "flagged_share": flagged / fails if fails else math.nan,
                "fell_back": fell_back,
                "avoided": avoided,
                "needless": needless,
            }
        )
    return rows


def summarise_monitor(
    episodes: Sequence[MonitorEpisode],
    lead_s: float = 1.0,
    window_s: float = 10.0,
    stop_s: float = CAR_STOP_S,
) -> list[dict[str, Any]]:
    """One row per model and condition (module docstring), in the order first driven: episodes,
    minutes, score p50, AUROC against ``clean`` (each policy against its own clean frames, mean
    over the model's policies; NaN for ``clean``), alarm and fault onsets per 10 min, failures,
    flagged failures and their share (NaN without failures), and with the hand-over: episodes
    that fell back, failures avoided, needless fallbacks (counts summed over the model's
    policies)."""
    return _rows(episodes, "model", lead_s, window_s, stop_s)


@dataclass
class MonitorModels:
    """Per model x condition: :data:`MONITOR_METRICS` as mean and sample sd (``<key>_sd``) over
    the model's policies (training seeds), ``seeds`` = policies; the layout of the evaluation
    summaries' ``per_model`` rows, for their tables. ``per_policy``: the per-policy rows."""

    per_policy: list[dict[str, Any]] = field(default_factory=list)
    per_model: list[dict[str, Any]] = field(default_factory=list)


def summarise_monitor_models(
    episodes: Sequence[MonitorEpisode],
    lead_s: float = 1.0,
    window_s: float = 10.0,
    stop_s: float = CAR_STOP_S,
) -> MonitorModels:
    """Per policy and condition (:func:`summarise_monitor`'s rows per policy, with its
    ``model``), then per model the mean ± sd of each of :data:`MONITOR_METRICS` over the
    policies where it is defined (NaN where it is nowhere)."""
    out = MonitorModels()
    model_of = {e.policy: e.model for e in episodes}
    for r in _rows(episodes, "policy", lead_s, window_s, stop_s):
        out.per_policy.append({"model": model_of[r["policy"]], **r})
    for model, cname in dict.fromkeys((r["model"], r["condition"]) for r in out.per_policy):
        ps = [r for r in out.per_policy if (r["model"], r["condition"]) == (model, cname)]
        row: dict[str, Any] = {"model": model, "condition": cname, "seeds": len(ps)}
        for key, _, _ in MONITOR_METRICS:
            vals = [float(p[key]) for p in ps if math.isfinite(p[key])]
            row[key] = float(np.mean(vals)) if vals else math.nan
            row[key + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["failures"] = sum(p["failures"] for p in ps)
        row["flagged"] = sum(p["flagged"] for p in ps)
        out.per_model.append(row)
    return out


@dataclass(frozen=True)
class MonitorRecord:
    """The monitor's numbers of one episode, with the keys the comparison statistics read
    (:func:`~ltc_controller.training.stats.score_matrix`: ``model``, ``policy``,
    ``condition``, ``episode``, the metric).

    Attributes:
        monitor_auroc: AUROC of this episode's frames against the same policy's ``clean``
            episode on the same track/world (NaN for ``clean``, or without it).
        alarms_per_10min, faults_per_10min: onsets of DEGRADED-or-worse, of FAULT, per 10 min.
        failures, flagged: failures, and those flagged >= ``lead_s`` ahead.
        first_fault_s: time of the first FAULT (s; NaN: none).
        attention_pairs, attention_score_p50, attention_auroc, attention_alarms_per_10min,
            attention_faults_per_10min, attention_flagged, attention_first_fault_s: the same
            for the attention monitor (pairs scored, their median score, AUROC of pair scores
            against the clean episode's); None / NaN when the episode did not record it.
    """

    model: str
    policy: str
    condition: str
    episode: int
    frames: int
    duration_s: float
    score_p50: float
    monitor_auroc: float
    alarms_per_10min: float
    faults_per_10min: float
    failures: int
    flagged: int
    first_fault_s: float
    attention_pairs: int | None = None
    attention_score_p50: float = math.nan
    attention_auroc: float = math.nan
    attention_alarms_per_10min: float = math.nan
    attention_faults_per_10min: float = math.nan
    attention_flagged: int | None = None
    attention_first_fault_s: float = math.nan


def _episode_numbers(
    e: MonitorEpisode, ref: MonitorEpisode | None, lead_s: float, window_s: float
) -> dict[str, Any]:
    """One episode's numbers (:class:`MonitorRecord`'s, unprefixed; ``auroc`` against ``ref``,
    the same policy's clean episode on the same track/world)."""
    auc = _auroc([ref], [e]) if ref is not None and e.condition != "clean" else math.nan
    per_10 = 600.0 / e.duration_s if e.duration_s > 0 else math.nan
    faults = np.flatnonzero(e.levels >= 2)
    events = e.events()
    return {
        "frames": len(e.scores),
        "score_p50": float(np.median(e.scores)) if len(e.scores) else math.nan,
        "auroc": auc,
        "alarms_per_10min": _onsets(e.levels, 1) * per_10,
        "faults_per_10min": _onsets(e.levels, 2) * per_10,
        "failures": len(events),
        "flagged": sum(_flagged(e, t, lead_s, window_s) for t in events),
        "first_fault_s": float(e.times[faults[0]]) if len(faults) else math.nan,
    }


def episode_records(
    episodes: Sequence[MonitorEpisode], lead_s: float = 1.0, window_s: float = 10.0
) -> list[MonitorRecord]:
    """One :class:`MonitorRecord` per episode, in order: the feature monitor's numbers, and the
    attention monitor's where the episode recorded it."""
    clean = {(e.policy, e.episode): e for e in episodes if e.condition == "clean"}
    out = []
    for e in episodes:
        ref = clean.get((e.policy, e.episode))
        n = _episode_numbers(e, ref, lead_s, window_s)
        att: dict[str, Any] = {}
        a = _attention_view(e)
        if a is not None:
            a_ref = _attention_view(ref) if ref is not None else None
            m = _episode_numbers(a, a_ref, lead_s, window_s)
            att = {
                "attention_pairs": m["frames"],
                "attention_score_p50": m["score_p50"],
                "attention_auroc": m["auroc"],
                "attention_alarms_per_10min": m["alarms_per_10min"],
                "attention_faults_per_10min": m["faults_per_10min"],
                "attention_flagged": m["flagged"],
                "attention_first_fault_s": m["first_fault_s"],
            }
        out.append(
            MonitorRecord(
                model=e.model,
                policy=e.policy,
                condition=e.condition,
                episode=e.episode,
                frames=n["frames"],
                duration_s=e.duration_s,
                score_p50=n["score_p50"],
                monitor_auroc=n["auroc"],
                alarms_per_10min=n["alarms_per_10min"],
                faults_per_10min=n["faults_per_10min"],
                failures=n["failures"],
                flagged=n["flagged"],
                first_fault_s=n["first_fault_s"],
                **att,
            )
        )
    return out


def monitor_table(
    rows: Sequence[dict[str, Any]], failures: str = "departures", digits: int = 2
) -> str:
    """Markdown table of :func:`summarise_monitor` rows (one model's); ``failures`` names the
    failures in the header (the car's departures, the drone's collisions and time-outs);
    ``digits``: of the score (4 for the attention monitor's)."""
    lines = [
        "| condition | min | score p50 | AUROC vs clean | alarms / 10 min | faults / 10 min | "
        f"{failures} | flagged >= 1 s ahead | episodes fallen back | {failures} avoided | "
        "needless fallbacks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        auc = "" if math.isnan(r["auroc"]) else f"{r['auroc']:.3f}"
        p50 = "" if math.isnan(r["score_p50"]) else f"{r['score_p50']:.{digits}f}"
        lines.append(
            f"| {r['condition']} | {r['minutes']:.1f} | {p50} | {auc} | "
            f"{r['alarms_per_10min']:.1f} | {r['faults_per_10min']:.1f} | {r['failures']} | "
            f"{r['flagged']}/{r['failures']} | {r['fell_back']}/{r['episodes']} | "
            f"{r['avoided']} | {r['needless']} |"
        )
    return "\n".join(lines)


def monitor_tables(
    episodes: Sequence[MonitorEpisode],
    failures: str = "departures",
    stop_s: float = CAR_STOP_S,
    lead_s: float = 1.0,
    window_s: float = 10.0,
) -> str:
    """The with/without hand-over tables of one model's ``episodes``: the feature monitor's
    (:func:`monitor_table` of :func:`summarise_monitor`), then, when the episodes recorded the
    attention monitor, its own (of :func:`attention_episodes`; score = pair scores, 4 digits)
    under a line that names it. ``monitor evaluate`` prints this; the evaluation reports hold
    it per model."""
    text = monitor_table(summarise_monitor(episodes, lead_s, window_s, stop_s), failures)
    att = attention_episodes(episodes)
    if att:
        text += (
            "\n\nattention monitor (saliency instability; score: pair scores):\n\n"
            + monitor_table(summarise_monitor(att, lead_s, window_s, stop_s), failures, digits=4)
        )
    return text
