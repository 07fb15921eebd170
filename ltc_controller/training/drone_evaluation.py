"""Closed-loop evaluation of drone velocity policies per condition, and its report.

Protocol (the drone counterpart of :mod:`ltc_controller.training.evaluation`): for every policy and
drone condition (:data:`~ltc_controller.sim.drone.conditions.DRONE_CONDITIONS`), ``episodes``
episodes are flown in unseen worlds (seeds ``first_world_seed + k``, the same worlds for every
policy; training data uses seeds from 1000 on, evaluation from 5000 on), camera and control at
``camera_rate_hz`` through the runtime
(:class:`~ltc_controller.training.drone_closed_loop.DronePolicyDriver`), each until the task is
done: the target reached (within the world's ``success_radius_m``), a collision, or the time limit.

Metrics per episode (the task's, issue 14): success (reached with no collision before), time to
target (s; only for reached episodes), final distance to the target (m), collisions. Per policy and
condition they are pooled over episodes (success rate, mean time to target over the successful
episodes, mean final distance, mean collisions per episode); per model (several policy files =
training seeds) the spread over seeds is the sample standard deviation of the per-policy values.
Records carry ``success``, ``time_to_target_s`` and ``collisions`` under the names
:data:`~ltc_controller.training.stats.HIGHER_IS_BETTER` knows, for ``compare``'s statistics.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.extras import needs_extra
from ltc_controller.sim.drone.conditions import get_drone_condition
from ltc_controller.sim.drone.scenario import make_drone_sim
from ltc_controller.training.drone_closed_loop import DronePolicyDriver, fly_episode
from ltc_controller.training.evaluation import (
    EXPERT,
    ModelEntry,
    markdown_tables,
    metric_charts,
    model_sizes,
    monitor_markdown,
    write_monitor,
)
from ltc_controller.training.json_safe import json_safe
from ltc_controller.training.ood_evaluation import (
    DRONE_STOP_S,
    MonitorEpisode,
    MonitorLog,
    MonitorRecorder,
)

__all__ = [
    "DRONE_METRICS",
    "DroneEpisodeRecord",
    "DroneEvalConfig",
    "DroneSummary",
    "evaluate_drone",
    "evaluate_drone_episode",
    "evaluate_drone_episode_monitored",
    "summarise_drone",
    "write_drone_report",
]


@dataclass(frozen=True)
class DroneEvalConfig:
    """Drone evaluation protocol.

    Attributes:
        conditions: drone condition names.
        episodes: episodes (worlds) per policy and condition.
        first_world_seed: seed of the first evaluation world.
        camera_rate_hz: frame and control rate (Hz).
        latency_s: frame-to-setpoint delay (s).
        max_time_s: time limit per episode (s); None = the world's ``time_limit_s``.

    Raises:
        KeyError: unknown condition. ValueError: ``episodes < 1`` or bad rate / latency.
    """

    conditions: tuple[str, ...] = ("clean",)
    episodes: int = 5
    first_world_seed: int = 5000
    camera_rate_hz: float = 20.0
    latency_s: float = 0.02
    max_time_s: float | None = None

    def __post_init__(self) -> None:
        for c in self.conditions:
            get_drone_condition(c)
        if self.episodes < 1:
            raise ValueError("DroneEvalConfig.episodes must be >= 1")
        if not (self.camera_rate_hz > 0.0 and 0.0 <= self.latency_s < 1.0 / self.camera_rate_hz):
            raise ValueError(
                f"DroneEvalConfig: camera_rate_hz={self.camera_rate_hz} must be > 0 and "
                f"latency_s={self.latency_s} in [0, frame period)"
            )


@dataclass(frozen=True)
class DroneEpisodeRecord:
    """One evaluated drone episode (a row of ``episodes.csv``; SI units).

    ``success`` is 1.0 or 0.0 (a float, so the statistics average it); ``time_to_target_s`` is
    NaN when the target was not reached; ``time_limit_s`` is the episode's time limit (the
    statistics count an episode that did not reach the target at this time).
    """

    model: str
    policy: str
    condition: str
    episode: int
    world_seed: int
    target_range_m: float
    success: float
    reached: bool
    time_to_target_s: float
    final_distance_m: float
    min_distance_m: float
    collisions: int
    duration_s: float
    time_limit_s: float = math.nan


def evaluate_drone(
    models: Sequence[ModelEntry],
    cfg: DroneEvalConfig,
    *,
    progress: Callable[[str], None] | None = None,
    monitor: MonitorLog | None = None,
) -> tuple[list[DroneEpisodeRecord], dict[str, dict[str, int]]]:
    """Fly every model under every condition, in this process.

    Args:
        models: policies (``ModelEntry(EXPERT, None)`` = the privileged clean expert).
        cfg: the protocol.
        progress: called with one line per episode.
        monitor: when given, the episodes of every policy whose file carries the
            out-of-distribution monitor's statistics record it as they fly (the same episodes;
            :mod:`~ltc_controller.training.ood_evaluation`: a collision is a failure at its
            time, a time-out one at the limit) into ``monitor.episodes``; files without
            statistics go to ``monitor.unavailable``.

    Returns:
        ``(episode records, sizes by policy name)``.

    Raises:
        PolicyFileError: a policy file cannot be loaded. ValueError: a policy without velocity
        outputs.
    """
    from ltc_controller.models.policy_file import load_policy

    records: list[DroneEpisodeRecord] = []
    sizes: dict[str, dict[str, int]] = {}
    for m in models:
        policy = load_policy(m.path) if m.path is not None else None
        name = str(m.path) if m.path is not None else EXPERT
        stats = None
        if policy is not None:
            sizes[name] = model_sizes(policy)
            if monitor is not None:
                stats = policy.feature_stats
                if stats is None:
                    monitor.unavailable.append(name)
        driver = DronePolicyDriver(policy) if policy is not None else None
        for cname in cfg.conditions:
            for k in range(cfg.episodes):
                t0 = time.perf_counter()
                rec, mep = _episode(driver, m.label, name, cname, k, cfg, stats)
                records.append(rec)
                line = (
                    f"{m.label} {Path(name).name} {cname} ep {k}: "
                    f"{'success' if rec.success else 'failure'}, final distance "
                    f"{rec.final_distance_m:.2f} m, {rec.collisions} collision(s)"
                )
                if mep is not None and monitor is not None:
                    monitor.episodes.append(mep)
                    line += (
                        f", monitor alarm frames {np.mean(mep.levels >= 1):.0%}, fault frames "
                        f"{np.mean(mep.levels >= 2):.0%}"
                    )
                    if mep.attention_levels is not None:
                        line += f", attention alarm frames {np.mean(mep.attention_levels >= 1):.0%}"
                if progress is not None:
                    progress(f"{line}, {time.perf_counter() - t0:.0f} s")
    return records, sizes


def evaluate_drone_episode(
    model: ModelEntry, condition: str, episode: int, cfg: DroneEvalConfig
) -> DroneEpisodeRecord:
    """Episode ``episode`` (world ``cfg.first_world_seed + episode``) of ``model`` under
    ``condition``: one unit of work (a job for ``compare``), the same as inside
    :func:`evaluate_drone`.

    Raises:
        PolicyFileError: the policy file cannot be loaded.
    """
    return _load_and_run(model, condition, episode, cfg, monitored=False)[0]


def evaluate_drone_episode_monitored(
    model: ModelEntry, condition: str, episode: int, cfg: DroneEvalConfig
) -> tuple[DroneEpisodeRecord, MonitorEpisode | None]:
    """:func:`evaluate_drone_episode` with the out-of-distribution monitor recorded in the same
    episode when the policy file carries its statistics (else ``None``; the expert has none).

    Raises:
        PolicyFileError: the policy file cannot be loaded.
    """
    return _load_and_run(model, condition, episode, cfg, monitored=True)


def _load_and_run(
    model: ModelEntry, condition: str, episode: int, cfg: DroneEvalConfig, monitored: bool
) -> tuple[DroneEpisodeRecord, MonitorEpisode | None]:
    """Load ``model``'s policy (none for the expert) and run the episode, recording the monitor
    when ``monitored`` and the file carries statistics."""
    from ltc_controller.models.policy_file import load_policy

    policy = load_policy(model.path) if model.path is not None else None
    driver = DronePolicyDriver(policy) if policy is not None else None
    name = str(model.path) if model.path is not None else EXPERT
    stats = policy.feature_stats if monitored and policy is not None else None
    return _episode(driver, model.label, name, condition, episode, cfg, stats)


def _episode(
    driver: DronePolicyDriver | None,
    label: str,
    name: str,
    cname: str,
    k: int,
    cfg: DroneEvalConfig,
    stats: Any = None,
) -> tuple[DroneEpisodeRecord, MonitorEpisode | None]:
    """One episode; with ``stats`` (and a policy) the monitor is recorded in it too."""
    cond = get_drone_condition(cname)
    seed = cfg.first_world_seed + k
    sim = make_drone_sim(cond, seed, render_enabled=driver is not None, record_history=False)
    limit = sim.params.time_limit_s if cfg.max_time_s is None else float(cfg.max_time_s)
    rec = (
        MonitorRecorder(driver.runtime, stats) if driver is not None and stats is not None else None
    )

    def on_frame(s: Any, img: Any, stamp: float, sp: Any) -> None:
        if rec is not None:
            rec.frame(stamp)  # the simulator's clock starts at 0 with the episode

    try:
        if driver is not None:
            driver.reset()
        r = fly_episode(
            sim,
            driver.act if driver is not None else None,
            condition=cond,
            effects_seed=10_000 + k,
            camera_rate_hz=cfg.camera_rate_hz,
            latency_s=cfg.latency_s,
            max_time_s=cfg.max_time_s,
            on_frame=on_frame if rec is not None else None,
        )
    finally:
        sim.close()
        if rec is not None:
            rec.detach()
    mep = None
    if rec is not None:
        # A collision ends the episode (its time); not reaching the target, the time limit.
        if r.collisions > 0:
            rec.failure(r.duration_s)
        timeout = r.duration_s if r.collisions == 0 and not r.reached else None
        mep = rec.episode(cname, k, seed, r.duration_s, timeout_s=timeout, model=label, policy=name)
    return DroneEpisodeRecord(
        model=label,
        policy=name,
        condition=cname,
        episode=k,
        world_seed=seed,
        target_range_m=r.target_range_m,
        success=1.0 if r.success else 0.0,
        reached=r.reached,
        time_to_target_s=r.time_to_target_s,
        final_distance_m=r.final_distance_m,
        min_distance_m=r.min_distance_m,
        collisions=r.collisions,
        duration_s=r.duration_s,
        time_limit_s=limit,
    ), mep


#: The drone's failures in the monitor's tables.
DRONE_FAILURES = "failures"
DRONE_FAILURE_KINDS = (
    "a collision, or not reaching the target by the time limit: a time-out, at the limit, "
    "which a hand-over cannot avoid"
)

#: ``(key, title, format)`` of the pooled metrics, in report order.
DRONE_METRICS = (
    ("success", "success rate", "{:.0%}"),
    ("time_to_target_s", "time to target (s, successful episodes)", "{:.1f}"),
    ("final_distance_m", "final distance to target (m)", "{:.2f}"),
    ("collisions", "collisions per episode", "{:.2f}"),
)


@dataclass
class DroneSummary:
    """Per policy x condition pooled metrics, and per model x condition mean/sd over seeds."""

    per_policy: list[dict[str, Any]] = field(default_factory=list)
    per_model: list[dict[str, Any]] = field(default_factory=list)


def summarise_drone(records: Sequence[DroneEpisodeRecord]) -> DroneSummary:
    """Pool episodes per (policy, condition), then mean and sd over a model's policies.

    The time to target is the mean over successful episodes (NaN when none succeeded); a
    model's mean over seeds skips seeds with NaN.
    """
    out = DroneSummary()
    keys = sorted({(r.model, r.policy, r.condition) for r in records})
    for model, pol, cond in keys:
        rs = [r for r in records if (r.model, r.policy, r.condition) == (model, pol, cond)]
        ok = [r.time_to_target_s for r in rs if r.success]
        out.per_policy.append(
            {
                "model": model,
                "policy": pol,
                "condition": cond,
                "episodes": len(rs),
                "successes": int(sum(r.success for r in rs)),
                "success": float(np.mean([r.success for r in rs])),
                "time_to_target_s": float(np.mean(ok)) if ok else math.nan,
                "final_distance_m": float(np.mean([r.final_distance_m for r in rs])),
                "collisions": float(np.mean([r.collisions for r in rs])),
            }
        )
    groups = sorted({(p["model"], p["condition"]) for p in out.per_policy})
    for model, cond in groups:
        ps = [p for p in out.per_policy if (p["model"], p["condition"]) == (model, cond)]
        row: dict[str, Any] = {"model": model, "condition": cond, "seeds": len(ps)}
        for key, _, _ in DRONE_METRICS:
            vals = [p[key] for p in ps if math.isfinite(p[key])]
            row[key] = float(np.mean(vals)) if vals else math.nan
            row[key + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["episodes"] = sum(p["episodes"] for p in ps)
        out.per_model.append(row)
    return out


def drone_markdown_tables(summary: DroneSummary, sizes_by_model: dict[str, dict[str, int]]) -> str:
    """The report's tables: sizes, then one table per drone metric (models x conditions)."""
    return markdown_tables(summary, sizes_by_model, DRONE_METRICS)


def write_drone_report(
    out_dir: str | Path,
    records: Sequence[DroneEpisodeRecord],
    sizes: dict[str, dict[str, int]],
    cfg: DroneEvalConfig,
    *,
    title: str = "Closed-loop drone evaluation",
    notes: str = "",
    monitor: MonitorLog | None = None,
) -> Path:
    """Write ``report.md``, ``episodes.csv``, ``summary.json`` and PNG bar plots (success rate,
    final distance) into ``out_dir``; with ``monitor`` also the out-of-distribution monitor's
    section (:func:`~ltc_controller.training.evaluation.monitor_markdown`: failures =
    collisions and time-outs), ``monitor_episodes.csv`` and ``summary.json["monitor"]``.

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("write_drone_report: no episode records")
    with needs_extra("sim", "the evaluation report"):
        import matplotlib

    matplotlib.use("Agg", force=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise_drone(records)
    by_model: dict[str, dict[str, int]] = {}
    for r in records:
        if r.policy in sizes and r.model not in by_model:
            by_model[r.model] = sizes[r.policy]
    with open(out / "episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(records[0]).keys()))
        w.writeheader()
        for r in records:
            w.writerow(asdict(r))
    (out / "summary.json").write_text(
        json.dumps(
            json_safe(
                {
                    "scenario": "drone",
                    "config": asdict(cfg),
                    "per_model": summary.per_model,
                    "per_policy": summary.per_policy,
                    "sizes": sizes,
                    **(
                        {}
                        if monitor is None
                        else {"monitor": write_monitor(out, monitor, DRONE_STOP_S)}
                    ),
                }
            ),
            indent=1,
        )
    )
    pngs = metric_charts(summary, (DRONE_METRICS[0], DRONE_METRICS[2]), out)
    text = [
        f"# {title}",
        "",
        f"{len(records)} episodes. Protocol: {cfg.episodes} episode(s) per policy and condition "
        f"in unseen worlds (seeds {cfg.first_world_seed}–{cfg.first_world_seed + cfg.episodes - 1})"
        f", camera and control at {cfg.camera_rate_hz:g} Hz through the runtime, "
        f"{cfg.latency_s * 1e3:.0f} ms setpoint latency. An episode ends when the drone is within "
        "the success radius of the target, collides, or reaches the time limit; success = reached "
        "without a collision before.",
        "",
    ]
    if notes:
        text += [notes, ""]
    text += [drone_markdown_tables(summary, by_model), ""]
    text += [f"![{p}]({p})" for p in pngs]
    text.append("")
    if monitor is not None:
        text += [
            monitor_markdown(
                monitor, failures=DRONE_FAILURES, kinds=DRONE_FAILURE_KINDS, stop_s=DRONE_STOP_S
            ),
            "",
        ]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return report
