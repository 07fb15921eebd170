"""Closed-loop evaluation of policies per scenario condition, and its report (Markdown + PNG).

Protocol. For every policy and condition, ``episodes`` episodes are driven on unseen tracks
(seeds ``first_track_seed + k``, the same tracks for every policy; the training data uses seeds
from 1000 on, evaluation from 5000 on) at ``speed_mps``, with frames at 20 Hz through the runtime
(:class:`~ltc_controller.training.closed_loop.PolicyDriver`). An episode is one lap (or
``distance_m``). When the car leaves the lane the departure is counted and a "safety driver"
puts it back on the centreline (the NCP paper's crash = intervention count) and the policy state
is reset; the episode goes on.

Metrics per episode: departures, distance, departures per km, mean ``|lateral error|``,
completion (fraction of the target distance before the first departure), RMS steering rate
(smoothness). Per policy and condition they are pooled over episodes (departures / km over the
pooled distance, laps without departure as a fraction); per model (several policy files = training
seeds) the spread over seeds is the sample standard deviation of the per-policy values.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.extras import needs_extra
from ltc_controller.sim.conditions import Condition, get_condition
from ltc_controller.sim.scenario import make_sim
from ltc_controller.training.closed_loop import PolicyDriver, drive_episode
from ltc_controller.training.json_safe import json_safe
from ltc_controller.training.ood_evaluation import (
    ATTENTION_METRICS,
    ATTENTION_UNAVAILABLE,
    CAR_STOP_S,
    MONITOR_METRICS,
    UNAVAILABLE,
    MonitorEpisode,
    MonitorLog,
    MonitorRecorder,
    attention_episodes,
    attention_unavailable,
    car_stop_s,
    episode_records,
    monitor_tables,
    summarise_monitor,
    summarise_monitor_models,
)

__all__ = [
    "EpisodeRecord",
    "EvalConfig",
    "ModelEntry",
    "evaluate",
    "evaluate_episode",
    "evaluate_episode_monitored",
    "model_sizes",
    "monitor_markdown",
    "summarise",
    "write_report",
]

EXPERT = "expert"


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol.

    Attributes:
        conditions: condition names.
        episodes: episodes (tracks) per policy and condition.
        first_track_seed: seed of the first evaluation track.
        speed_mps: driving speed (the policy node's ``speed_mps``).
        latency_s: frame-to-command delay (s).
        distance_m: target distance per episode (m); None = one lap.
        track_length_m: lap length of the evaluation tracks (m); None = the condition's.
        max_time_s: time limit per episode (s).
    """

    conditions: tuple[str, ...] = ("clean",)
    episodes: int = 5
    first_track_seed: int = 5000
    speed_mps: float = 5.0
    latency_s: float = 0.02
    distance_m: float | None = None
    track_length_m: float | None = None
    max_time_s: float = 600.0

    def __post_init__(self) -> None:
        for c in self.conditions:
            get_condition(c)
        if self.episodes < 1:
            raise ValueError("EvalConfig.episodes must be >= 1")


@dataclass(frozen=True)
class ModelEntry:
    """A policy to evaluate: ``label`` groups training seeds of one model; ``path`` is the
    policy file (``None`` with ``label == "expert"``: the privileged pure-pursuit expert)."""

    label: str
    path: Path | None


@dataclass(frozen=True)
class EpisodeRecord:
    """One evaluated episode (a row of ``episodes.csv``)."""

    model: str
    policy: str
    condition: str
    episode: int
    track_seed: int
    lap_length_m: float
    distance_m: float
    departures: int
    mean_abs_lateral_error_m: float
    completion: float
    steering_rate_rms: float
    duration_s: float


def model_sizes(policy: Any) -> dict[str, int]:
    """Neurons and parameter counts of a policy (the models package's ``model_size`` when it
    exists, else plain parameter counts)."""
    try:
        from ltc_controller.models.summary import model_size

        s = model_size(policy)
        return {
            "neurons": s.neurons,
            "synapses": s.synapses,
            "rnn_parameters": s.recurrent_parameters,
            "head_parameters": s.head_parameters,
            "trainable_parameters": s.trainable_parameters,
        }
    except (ImportError, AttributeError):
        head = sum(p.numel() for n, p in policy.named_parameters() if n.startswith("head."))
        total = sum(p.numel() for p in policy.parameters())
        return {
            "neurons": int(policy.state_size),
            "synapses": -1,
            "rnn_parameters": total - head,
            "head_parameters": head,
            "trainable_parameters": total,
        }


def _condition(cfg: EvalConfig, name: str) -> Condition:
    c = get_condition(name)
    if cfg.track_length_m is not None:
        c = replace(c, track=replace(c.track, target_length_m=cfg.track_length_m))
    return c


def evaluate(
    models: Sequence[ModelEntry],
    cfg: EvalConfig,
    *,
    progress: Callable[[str], None] | None = None,
    monitor: MonitorLog | None = None,
) -> tuple[list[EpisodeRecord], dict[str, dict[str, int]]]:
    """Drive every model under every condition (in this process; ``compare`` runs the same
    episodes as Ray jobs through :func:`evaluate_episode_monitored`).

    Args:
        models, cfg: what to drive and how.
        progress: called with one line per episode.
        monitor: when given, the episodes of every policy whose file carries the
            out-of-distribution monitor's statistics record the monitor as they drive
            (:mod:`~ltc_controller.training.ood_evaluation`; the same episodes, no second run)
            into ``monitor.episodes``; the files without statistics go to
            ``monitor.unavailable``.

    Returns:
        ``(episode records, sizes by policy name)``.

    Raises:
        PolicyFileError: a policy file cannot be loaded.
    """
    from ltc_controller.models.policy_file import load_policy

    records: list[EpisodeRecord] = []
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
        driver = PolicyDriver(policy, speed_mps=cfg.speed_mps) if policy is not None else None
        for cname in cfg.conditions:
            for k in range(cfg.episodes):
                t0 = time.perf_counter()
                rec, mep = _episode(driver, m.label, name, cname, k, cfg, stats)
                records.append(rec)
                line = (
                    f"{m.label} {Path(name).name} {cname} ep {k}: {rec.departures} "
                    f"departures, |lat| {rec.mean_abs_lateral_error_m:.3f} m"
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


def evaluate_episode(
    model: ModelEntry, condition: str, episode: int, cfg: EvalConfig
) -> EpisodeRecord:
    """Episode ``episode`` (track ``cfg.first_track_seed + episode``) of ``model`` under
    ``condition``: one unit of work, the same as inside :func:`evaluate`.

    Raises:
        PolicyFileError: the policy file cannot be loaded.
    """
    return _load_and_run(model, condition, episode, cfg, monitored=False)[0]


def evaluate_episode_monitored(
    model: ModelEntry, condition: str, episode: int, cfg: EvalConfig
) -> tuple[EpisodeRecord, MonitorEpisode | None]:
    """:func:`evaluate_episode` with the out-of-distribution monitor recorded in the same
    episode when the policy file carries its statistics (else ``None``; the expert has none).

    Raises:
        PolicyFileError: the policy file cannot be loaded.
    """
    return _load_and_run(model, condition, episode, cfg, monitored=True)


def _load_and_run(
    model: ModelEntry, condition: str, episode: int, cfg: EvalConfig, monitored: bool
) -> tuple[EpisodeRecord, MonitorEpisode | None]:
    """Load ``model``'s policy (none for the expert) and run the episode, recording the monitor
    when ``monitored`` and the file carries statistics."""
    from ltc_controller.models.policy_file import load_policy

    policy = load_policy(model.path) if model.path is not None else None
    driver = PolicyDriver(policy, speed_mps=cfg.speed_mps) if policy is not None else None
    name = str(model.path) if model.path is not None else EXPERT
    stats = policy.feature_stats if monitored and policy is not None else None
    return _episode(driver, model.label, name, condition, episode, cfg, stats)


def episode_protocol(cfg: EvalConfig, k: int) -> dict[str, Any]:
    """:func:`~.closed_loop.drive_episode` keywords of episode ``k`` under ``cfg`` (image
    effects seed, distance, time limit, speed, latency): every closed-loop evaluation drives an
    episode with these, so their episodes are the same."""
    return {
        "effects_seed": 10_000 + k,
        "distance_m": cfg.distance_m,
        "max_time_s": cfg.max_time_s,
        "speed_mps": cfg.speed_mps,
        "latency_s": cfg.latency_s,
    }


def _episode(
    driver: PolicyDriver | None,
    label: str,
    name: str,
    cname: str,
    k: int,
    cfg: EvalConfig,
    stats: Any = None,
) -> tuple[EpisodeRecord, MonitorEpisode | None]:
    """One episode; with ``stats`` (and a policy) the monitor is recorded in it too."""
    cond = _condition(cfg, cname)
    seed = cfg.first_track_seed + k
    sim = make_sim(cond, seed, initial_speed=cfg.speed_mps, render_enabled=True)
    rec = (
        MonitorRecorder(driver.runtime, stats) if driver is not None and stats is not None else None
    )
    t0 = sim.time

    def on_frame(s: Any, img: Any, stamp: float, steer: float) -> None:
        if rec is not None:
            rec.frame(stamp - t0)

    def on_departure() -> None:
        if rec is not None:
            rec.failure(sim.time - t0)
        if driver is not None:
            driver.reset()

    try:
        if driver is not None:
            driver.reset()
        r = drive_episode(
            sim,
            driver.act if driver is not None else None,
            condition=cond,
            on_departure=on_departure if driver is not None else None,
            on_frame=on_frame if rec is not None else None,
            render=driver is not None,
            **episode_protocol(cfg, k),
        )
    finally:
        sim.close()
        if rec is not None:
            rec.detach()
    mep = (
        rec.episode(cname, k, seed, r.duration_s, model=label, policy=name)
        if rec is not None
        else None
    )
    return EpisodeRecord(
        model=label,
        policy=name,
        condition=cname,
        episode=k,
        track_seed=seed,
        lap_length_m=r.lap_length_m,
        distance_m=r.distance_m,
        departures=r.departures,
        mean_abs_lateral_error_m=r.mean_abs_lateral_error_m,
        completion=r.completion,
        steering_rate_rms=r.steering_rate_rms,
        duration_s=r.duration_s,
    ), mep


@dataclass
class Summary:
    """Per policy x condition pooled metrics, and per model x condition mean/sd over seeds."""

    per_policy: list[dict[str, Any]] = field(default_factory=list)
    per_model: list[dict[str, Any]] = field(default_factory=list)


METRICS = (
    ("departures_per_km", "departures / km", "{:.2f}"),
    ("clean_laps", "episodes without departure", "{:.0%}"),
    ("mean_abs_lateral_error_m", "mean |lat err| (m)", "{:.3f}"),
    ("completion", "completion", "{:.0%}"),
    ("steering_rate_rms", "steer rate RMS (rad/s)", "{:.3f}"),
)


def summarise(records: Sequence[EpisodeRecord]) -> Summary:
    """Pool episodes per (policy, condition), then mean and sd over a model's policies."""
    out = Summary()
    keys = sorted({(r.model, r.policy, r.condition) for r in records})
    for model, pol, cond in keys:
        rs = [r for r in records if (r.model, r.policy, r.condition) == (model, pol, cond)]
        km = sum(r.distance_m for r in rs) / 1000.0
        deps = sum(r.departures for r in rs)
        out.per_policy.append(
            {
                "model": model,
                "policy": pol,
                "condition": cond,
                "episodes": len(rs),
                "km": km,
                "departures": deps,
                "departures_per_km": deps / km if km > 0 else math.nan,
                "clean_laps": sum(r.departures == 0 for r in rs) / len(rs),
                "mean_abs_lateral_error_m": float(
                    np.average(
                        [r.mean_abs_lateral_error_m for r in rs],
                        weights=[max(r.distance_m, 1e-9) for r in rs],
                    )
                ),
                "completion": float(np.mean([r.completion for r in rs])),
                "steering_rate_rms": float(np.mean([r.steering_rate_rms for r in rs])),
            }
        )
    groups = sorted({(p["model"], p["condition"]) for p in out.per_policy})
    for model, cond in groups:
        ps = [p for p in out.per_policy if (p["model"], p["condition"]) == (model, cond)]
        row: dict[str, Any] = {"model": model, "condition": cond, "seeds": len(ps)}
        for key, _, _ in METRICS:
            vals = [p[key] for p in ps]
            row[key] = float(np.mean(vals))
            row[key + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["episodes"] = sum(p["episodes"] for p in ps)
        row["km"] = sum(p["km"] for p in ps)
        out.per_model.append(row)
    return out


def _fmt(row: dict[str, Any], key: str, fmt: str) -> str:
    v, sd = row[key], row.get(key + "_sd", 0.0)
    if not math.isfinite(v):
        return "n/a"
    s = fmt.format(v)
    if row.get("seeds", 1) > 1:
        s += " ± " + fmt.format(sd)
    return s


def markdown_tables(
    summary: Any,
    sizes_by_model: dict[str, dict[str, int]] | None,
    metrics: Sequence[tuple[str, str, str]] = METRICS,
) -> str:
    """The report's tables: sizes (unless ``sizes_by_model`` is None), then one table per metric
    (models x conditions).

    ``summary``: anything with ``per_model`` rows (:class:`Summary`, the drone's summary, the
    monitor's :class:`~ltc_controller.training.ood_evaluation.MonitorModels`); ``metrics``:
    ``(key, title, format)`` per table (the car's :data:`METRICS` by default)."""
    models = list(dict.fromkeys(r["model"] for r in summary.per_model))
    conds = list(dict.fromkeys(r["condition"] for r in summary.per_model))
    lines = []
    if sizes_by_model is not None:
        lines += ["| model | seeds | neurons | RNN params | head params | trainable params |"]
        lines.append("|---|---:|---:|---:|---:|---:|")
    for m in models if sizes_by_model is not None else ():
        seeds = max(r["seeds"] for r in summary.per_model if r["model"] == m)
        s = sizes_by_model.get(m) if sizes_by_model is not None else None
        if s is None:
            lines.append(f"| {m} | {seeds} | – | – | – | – |")
        else:
            lines.append(
                f"| {m} | {seeds} | {s['neurons']} | {s['rnn_parameters']:,} | "
                f"{s['head_parameters']:,} | {s['trainable_parameters']:,} |"
            )
    for key, title, fmt in metrics:
        lines += ["", f"**{title}** (mean ± sd over training seeds)", ""]
        lines.append("| model | " + " | ".join(conds) + " |")
        lines.append("|---|" + "---:|" * len(conds))
        for m in models:
            cells = []
            for c in conds:
                row = next(
                    (r for r in summary.per_model if r["model"] == m and r["condition"] == c), None
                )
                cells.append("–" if row is None else _fmt(row, key, fmt))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    out_dir: str | Path,
    records: Sequence[EpisodeRecord],
    sizes: dict[str, dict[str, int]],
    cfg: EvalConfig,
    *,
    title: str = "Closed-loop evaluation",
    notes: str = "",
    monitor: MonitorLog | None = None,
) -> Path:
    """Write ``report.md``, ``episodes.csv``, ``summary.json`` and PNG plots into ``out_dir``;
    with ``monitor`` also the out-of-distribution monitor's section (:func:`monitor_markdown`),
    its ``monitor_episodes.csv`` and ``summary.json["monitor"]``.

    Returns:
        The path of ``report.md``.
    """
    with needs_extra("sim", "the evaluation report"):
        import matplotlib

    matplotlib.use("Agg", force=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(records)
    by_model: dict[str, dict[str, int]] = {}
    for r in records:
        if r.policy in sizes and r.model not in by_model:
            by_model[r.model] = sizes[r.policy]
    with open(out / "episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(records[0]).keys()))
        w.writeheader()
        for r in records:
            w.writerow(asdict(r))
    stop_s = car_stop_s(cfg.speed_mps)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "per_model": summary.per_model,
                "per_policy": summary.per_policy,
                "sizes": sizes,
                **({} if monitor is None else {"monitor": write_monitor(out, monitor, stop_s)}),
            },
            indent=1,
        )
    )
    pngs = metric_charts(summary, METRICS[:3], out)
    km = sum(r.distance_m for r in records) / 1000.0
    text = [
        f"# {title}",
        "",
        f"{len(records)} episodes, {km:.1f} km driven. Protocol: {cfg.episodes} episode(s) per "
        f"policy and condition on unseen tracks (seeds {cfg.first_track_seed}–"
        f"{cfg.first_track_seed + cfg.episodes - 1}), "
        + (f"{cfg.distance_m:.0f} m each" if cfg.distance_m else "one lap each")
        + f", {cfg.speed_mps} m/s, camera and control at 20 Hz through the runtime, "
        f"{cfg.latency_s * 1e3:.0f} ms command latency. A departure is counted when the car "
        "centre is further than half the lane minus half the car width from the centreline; the "
        "car is then put back on the centreline and the policy state reset.",
        "",
    ]
    if notes:
        text += [notes, ""]
    text += [markdown_tables(summary, by_model), ""]
    text += [f"![{p}]({p})" for p in pngs]
    text.append("")
    if monitor is not None:
        text += [monitor_markdown(monitor, stop_s=stop_s), ""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return report


def monitor_markdown(
    log: MonitorLog,
    *,
    failures: str = "departures",
    kinds: str = "a lane departure",
    stop_s: float = CAR_STOP_S,
) -> str:
    """The report's out-of-distribution monitor section: a line per policy file without
    statistics (:data:`~ltc_controller.training.ood_evaluation.UNAVAILABLE`) and per file
    without the attention monitor's calibration
    (:data:`~ltc_controller.training.ood_evaluation.ATTENTION_UNAVAILABLE`), then the models x
    conditions tables of :data:`~ltc_controller.training.ood_evaluation.MONITOR_METRICS` and,
    where recorded, of :data:`~ltc_controller.training.ood_evaluation.ATTENTION_METRICS` (mean ±
    sd over seeds), and per model the with/without hand-over tables of both monitors
    (:func:`~ltc_controller.training.ood_evaluation.monitor_tables`, as ``monitor evaluate``
    prints them). ``failures`` names the scenario's failures in the tables, ``kinds`` says what
    one is; ``stop_s`` is the fallback's stopping time (s)."""
    lines = [
        "## Out-of-distribution monitor",
        "",
        "Recorded in the same episodes as the tables above, for every policy file that carries "
        "the monitor's feature statistics (`ltc-controller monitor fit`); the attention monitor "
        "(saliency instability between consecutive frames) beside it for the files that also "
        "carry its calibration. AUROC: each shifted condition's per-frame scores (attention: "
        "pair scores) against the same policy's clean ones (0.5 = no separation; none for "
        "clean). Alarm onsets per 10 min in the clean condition are false alarms. A failure "
        f"({kinds}) is flagged when the monitor was DEGRADED or worse in the 10 s before it, "
        "at least 1 s before it. With the hand-over, the first FAULT of that monitor falls "
        f"back and the vehicle stops within {stop_s:.3g} s: later {failures} are avoided; a "
        "fallback followed by none is needless.",
        "",
    ]
    for name in log.unavailable:
        lines.append(
            f"- `{Path(name).name}`: {UNAVAILABLE} (the file carries no feature statistics; "
            "`ltc-controller monitor fit` adds them)"
        )
    for name in attention_unavailable(log):
        lines.append(
            f"- `{Path(name).name}`: {ATTENTION_UNAVAILABLE} (the file carries no attention "
            "calibration; `ltc-controller monitor fit` adds it)"
        )
    if lines[-1] != "":
        lines.append("")
    if log.episodes:
        lines.append(
            markdown_tables(
                summarise_monitor_models(log.episodes, stop_s=stop_s), None, MONITOR_METRICS
            )
        )
        att = attention_episodes(log.episodes)
        if att:
            lines += [
                "",
                markdown_tables(
                    summarise_monitor_models(att, stop_s=stop_s), None, ATTENTION_METRICS
                ),
            ]
        for model in dict.fromkeys(e.model for e in log.episodes):
            lines += [
                "",
                f"**{model}**: the monitor with and without the hand-over",
                "",
                monitor_tables(
                    [e for e in log.episodes if e.model == model], failures, stop_s=stop_s
                ),
            ]
    return "\n".join(lines)


def write_monitor(out: Path, log: MonitorLog, stop_s: float) -> dict[str, Any]:
    """Write ``out/monitor_episodes.csv`` (one row per episode with the monitor,
    :class:`~ltc_controller.training.ood_evaluation.MonitorRecord`: the feature monitor's
    columns, then the attention monitor's, empty without it) and return the monitor's part of
    ``summary.json`` (strict JSON: NaN as null): the feature monitor's ``unavailable``,
    ``per_model``, ``per_policy``, ``with_handover``, and the same of the attention monitor
    under ``attention``."""
    recs = episode_records(log.episodes)
    if recs:
        with open(out / "monitor_episodes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(asdict(recs[0]).keys()))
            w.writeheader()
            for r in recs:
                w.writerow(asdict(r))
    models = summarise_monitor_models(log.episodes, stop_s=stop_s)
    att = attention_episodes(log.episodes)
    att_models = summarise_monitor_models(att, stop_s=stop_s)
    return json_safe(
        {
            "unavailable": log.unavailable,
            "per_model": models.per_model,
            "per_policy": models.per_policy,
            "with_handover": summarise_monitor(log.episodes, stop_s=stop_s),
            "attention": {
                "unavailable": attention_unavailable(log),
                "per_model": att_models.per_model,
                "per_policy": att_models.per_policy,
                "with_handover": summarise_monitor(att, stop_s=stop_s),
            },
        }
    )


def metric_charts(summary: Any, metrics: Sequence[tuple[str, str, str]], out: Path) -> list[str]:
    """One bar chart per metric (``(key, label, fmt)``) of ``summary.per_model``: models side by
    side per condition, error bars one sd over seeds; written as ``out/<key>.png``. Returns the
    file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in summary.per_model))
    conds = list(dict.fromkeys(r["condition"] for r in summary.per_model))
    pngs = []
    for key, label, _ in metrics:
        fig, ax = plt.subplots(
            figsize=(max(6.0, 1.1 * len(conds) * max(1, len(models)) ** 0.5), 3.6)
        )
        width = 0.8 / max(1, len(models))
        x = np.arange(len(conds))
        for i, m in enumerate(models):
            vals, sds = [], []
            for c in conds:
                row = next(
                    (r for r in summary.per_model if r["model"] == m and r["condition"] == c), None
                )
                vals.append(np.nan if row is None else row[key])
                sds.append(0.0 if row is None else row[key + "_sd"])
            ax.bar(
                x + (i - (len(models) - 1) / 2) * width, vals, width, yerr=sds, label=m, capsize=2
            )
        ax.set_xticks(x, conds, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.legend(fontsize=7, ncol=min(4, len(models)))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        png = out / f"{key}.png"
        fig.savefig(png, dpi=110)
        plt.close(fig)
        pngs.append(png.name)
    return pngs
