"""Closed-loop usefulness of the out-of-distribution monitor (issue 16 §3), car scenario.

The policy drives each episode as :func:`~ltc_controller.training.evaluation.evaluate` drives it
(same tracks, conditions, image effects, latency, intervention after a departure) with the
monitor attached to its runtime, exactly as ``ltc_policy`` runs it: every taken frame's features
are scored. Recorded per frame: the time, the frame's own score and the monitor's level; per
departure: its time.

From one run per episode both arms of the comparison follow, since everything up to the
monitor's first FAULT is the same with and without a hand-over (deterministic simulator, seeded
effects):

- **without** the hand-over: the departures as driven;
- **with** it: at the first FAULT the safety node falls back and the car brakes to a stop at the
  vehicle profile's deceleration (``stop_s = speed / decel``, 1.25 s from 5 m/s at 4 m/s²), and
  waits there. Departures before the FAULT, or within ``stop_s`` after it, still happen; later
  ones are *avoided*. An episode whose first FAULT is followed by no departure at all is a
  *needless fallback*.

A departure is *flagged* when the monitor was DEGRADED or worse at some frame in the
``window_s`` (10 s) before it, ending ``lead_s`` (1 s) before it: time enough to hand over.

With the attention monitor's calibration in the policy file
(:class:`~ltc_controller.models.ood.AttentionStats`), it is attached in the same run and its
pair scores and levels are recorded beside the feature monitor's; :func:`summarise_monitor`
summarises either (``monitor="attention"``: AUROC over the scored pairs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.models.ood import FeatureStats, auroc
from ltc_controller.runtime.ood import AttentionMonitor, FeatureMonitor
from ltc_controller.training.closed_loop import PolicyDriver, drive_episode
from ltc_controller.training.evaluation import EvalConfig, _condition, episode_protocol

__all__ = ["MonitorEpisode", "monitor_episodes", "monitor_table", "summarise_monitor"]


@dataclass
class MonitorEpisode:
    """One episode with the monitor attached.

    Attributes:
        condition, episode, track_seed: what was driven.
        times: ``(N,)`` frame stamps (s, simulation time from the episode start).
        scores: ``(N,)`` each frame's own score.
        levels: ``(N,)`` the monitor's level after each frame (0 OK, 1 DEGRADED, 2 FAULT).
        departures: departure times (s, same clock).
        duration_s: simulated time driven.
        attention_scores: ``(N,)`` the attention monitor's pair score at each frame (NaN where
            no pair was scored, or no attention monitor).
        attention_levels: ``(N,)`` its level after each frame (0 without it).
    """

    condition: str
    episode: int
    track_seed: int
    times: NDArray[np.float64]
    scores: NDArray[np.float64]
    levels: NDArray[np.int8]
    departures: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    attention_scores: NDArray[np.float64] | None = None
    attention_levels: NDArray[np.int8] | None = None


def monitor_episodes(
    policy: Any,
    stats: FeatureStats,
    cfg: EvalConfig,
    progress: Callable[[str], None] | None = None,
) -> list[MonitorEpisode]:
    """Drive ``policy`` under every condition and episode of ``cfg`` with the monitor of
    ``stats`` attached (module docstring)."""
    driver = PolicyDriver(policy, speed_mps=cfg.speed_mps)
    out: list[MonitorEpisode] = []
    try:
        for cname in cfg.conditions:
            for k in range(cfg.episodes):
                ep = _episode(driver, stats, cname, k, cfg)
                out.append(ep)
                if progress is not None:
                    progress(
                        f"{cname} ep {k}: {len(ep.departures)} departures, alarm frames "
                        f"{np.mean(ep.levels >= 1):.0%}, fault frames "
                        f"{np.mean(ep.levels >= 2):.0%}"
                    )
    finally:
        driver.runtime.feature_monitor = None
        driver.runtime.attention_monitor = None
    return out


def _episode(
    driver: PolicyDriver, stats: FeatureStats, cname: str, k: int, cfg: EvalConfig
) -> MonitorEpisode:
    from ltc_controller.sim.scenario import make_sim

    cond = _condition(cfg, cname)
    seed = cfg.first_track_seed + k
    mon = FeatureMonitor(stats)
    driver.runtime.feature_monitor = mon
    att_stats = getattr(driver.policy, "attention_stats", None)
    att = AttentionMonitor(att_stats, driver.policy.head) if att_stats is not None else None
    driver.runtime.attention_monitor = att
    driver.reset()
    sim = make_sim(cond, seed, initial_speed=cfg.speed_mps, render_enabled=True)
    t0 = sim.time
    times: list[float] = []
    scores: list[float] = []
    levels: list[int] = []
    deps: list[float] = []
    att_scores: list[float] = []
    att_levels: list[int] = []
    pairs = [0]

    def on_frame(s: Any, img: Any, stamp: float, steer: float) -> None:
        times.append(stamp - t0)
        scores.append(mon.last)
        levels.append(mon.level)
        if att is not None:
            new_pair = att.pairs > pairs[0]
            pairs[0] = att.pairs
            att_scores.append(att.last if new_pair else math.nan)
            att_levels.append(att.level)

    def on_departure() -> None:
        deps.append(sim.time - t0)
        driver.reset()

    try:
        r = drive_episode(
            sim,
            driver.act,
            condition=cond,
            on_departure=on_departure,
            on_frame=on_frame,
            **episode_protocol(cfg, k),
        )
    finally:
        sim.close()
    return MonitorEpisode(
        cname,
        k,
        seed,
        np.asarray(times),
        np.asarray(scores),
        np.asarray(levels, dtype=np.int8),
        deps,
        r.duration_s,
        np.asarray(att_scores) if att is not None else None,
        np.asarray(att_levels, dtype=np.int8) if att is not None else None,
    )


def _onsets(levels: NDArray[np.int8], at_least: int) -> int:
    above = levels >= at_least
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1])) if len(above) else 0


def _arm(e: MonitorEpisode, monitor: str) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """``(scores, levels)`` of one monitor in an episode (scores: scored frames only)."""
    if monitor == "features":
        return e.scores, e.levels
    if monitor != "attention":
        raise ValueError(f"monitor {monitor!r}: expected 'features' or 'attention'")
    if e.attention_scores is None or e.attention_levels is None:
        raise ValueError(f"{e.condition} episode {e.episode}: no attention monitor recorded")
    s = e.attention_scores
    return s[np.isfinite(s)], e.attention_levels


def summarise_monitor(
    episodes: Sequence[MonitorEpisode],
    lead_s: float = 1.0,
    window_s: float = 10.0,
    stop_s: float = 1.25,
    monitor: str = "features",
) -> list[dict[str, Any]]:
    """One row per condition (module docstring): frames, score p50, AUROC of per-frame scores
    against ``clean`` (when driven), alarm and fault onsets per 10 min, departures, flagged
    departures, and with the hand-over: episodes that fell back, departures avoided, needless
    fallbacks. ``monitor``: ``"features"`` or ``"attention"`` (its scored pairs).

    Raises:
        ValueError: an unknown ``monitor``, or ``"attention"`` for episodes without it.
    """
    clean = [_arm(e, monitor)[0] for e in episodes if e.condition == "clean"]
    ref = np.concatenate(clean) if clean else None
    rows = []
    for cname in dict.fromkeys(e.condition for e in episodes):
        eps = [e for e in episodes if e.condition == cname]
        scores = np.concatenate([_arm(e, monitor)[0] for e in eps])
        minutes = sum(e.duration_s for e in eps) / 60.0
        deps = flagged = avoided = fell_back = needless = 0
        for e in eps:
            levels = _arm(e, monitor)[1]
            for t in e.departures:
                deps += 1
                sel = (e.times >= t - window_s) & (e.times <= t - lead_s)
                flagged += bool(np.any(levels[sel] >= 1))
            faults = np.flatnonzero(levels >= 2)
            if len(faults):
                fell_back += 1
                t_f = float(e.times[faults[0]])
                later = [t for t in e.departures if t > t_f]
                avoided += sum(t > t_f + stop_s for t in later)
                needless += not later
        rows.append(
            {
                "condition": cname,
                "episodes": len(eps),
                "minutes": minutes,
                "score_p50": float(np.median(scores)) if len(scores) else math.nan,
                "auroc": (
                    auroc(ref, scores)
                    if ref is not None and len(ref) and len(scores) and cname != "clean"
                    else math.nan
                ),
                "alarms_per_10min": sum(_onsets(_arm(e, monitor)[1], 1) for e in eps)
                / minutes
                * 10.0,
                "faults_per_10min": sum(_onsets(_arm(e, monitor)[1], 2) for e in eps)
                / minutes
                * 10.0,
                "departures": deps,
                "flagged": flagged,
                "fell_back": fell_back,
                "avoided": avoided,
                "needless": needless,
            }
        )
    return rows


def monitor_table(rows: Sequence[dict[str, Any]], digits: int = 2) -> str:
    """Markdown table of :func:`summarise_monitor` rows (``digits`` for the score)."""
    lines = [
        "| condition | min | score p50 | AUROC vs clean | alarms / 10 min | faults / 10 min | "
        "departures | flagged >= 1 s ahead | episodes fallen back | departures avoided | "
        "needless fallbacks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        auroc = "" if math.isnan(r["auroc"]) else f"{r['auroc']:.3f}"
        lines.append(
            f"| {r['condition']} | {r['minutes']:.1f} | {r['score_p50']:.{digits}f} | {auroc} | "
            f"{r['alarms_per_10min']:.1f} | {r['faults_per_10min']:.1f} | {r['departures']} | "
            f"{r['flagged']}/{r['departures']} | {r['fell_back']}/{r['episodes']} | "
            f"{r['avoided']} | {r['needless']} |"
        )
    return "\n".join(lines)
