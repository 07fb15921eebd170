"""One-command recipes: the bundled NCP-19 (`train --preset bundled`) and the model comparison
(`compare`, with a `--reduced` version for CI).

Bundled NCP-19 (:func:`train_bundled`):

1. record ``expert_episodes`` episodes of the perturbed expert on tracks 1000.. (rosbag2, MCAP);
2. train NCP-19 from that bag (:func:`~ltc_controller.training.trainer.train`);
3. ``dagger_rounds`` times: let the policy drive ``dagger_episodes`` episodes on new tracks while
   the expert labels (and takes over far off-centre), add the bag, fine-tune on everything;
4. write the policy file.

Comparison (:func:`run_compare`): record one data set, train every model of the recipe on it
with every seed (same data, same head, same schedule), evaluate all of them closed loop under the
recipe's conditions on the same unseen tracks, write the report and return the table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ltc_controller.sim.scenario import PerturbationConfig
from ltc_controller.training.bag import Demonstrations, read_demonstrations
from ltc_controller.training.evaluation import EvalConfig, ModelEntry, write_report
from ltc_controller.training.recording import RecordConfig, record
from ltc_controller.training.search import SearchConfig
from ltc_controller.training.trainer import TrainConfig, train

__all__ = [
    "BUNDLED",
    "COMPARE_FULL",
    "COMPARE_REDUCED",
    "BundledRecipe",
    "CompareRecipe",
    "run_compare",
    "train_bundled",
]

IMAGE_TOPIC = "/camera/image_raw"
LABEL_TOPIC = "/expert_cmd"


@dataclass(frozen=True)
class BundledRecipe:
    """How the bundled NCP-19 is made (the defaults are what shipped)."""

    expert_episodes: int = 20
    episode_s: float = 30.0
    dagger_rounds: int = 3
    dagger_episodes: int = 6
    finetune_epochs: int = 1
    speed_mps: float = 5.0
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            arch="ncp_ltc",
            seq_len=16,
            batch_size=8,
            epochs=6,
            lr=2e-3,
            lr_rnn=1e-2,
            loss_alpha=0.5,
            output_scale=0.1,
            feature_norm="layer",  # unsaturated LTC sensory synapses (policies/README.md)
            patience=3,
            threads=2,
            seed=0,
        )
    )


BUNDLED = BundledRecipe()


def _bag(path: Path, cfg: RecordConfig, log: Callable[[str], None], learner: Any = None) -> Path:
    """Record ``path`` unless a complete bag is already there (a rerun resumes)."""
    if (path / "metadata.yaml").is_file():
        log(f"reusing {path}")
        return path
    if path.exists():
        import shutil

        shutil.rmtree(path)
    s = record(path, cfg, learner=learner)
    log(
        f"recorded {path.name}: {s['frames']} frames in {s['wall_s']:.0f} s "
        f"({s['driver']}, departures {s['departures']}, takeover {s['takeover_fraction']:.0%})"
    )
    return path


def train_bundled(
    work: str | Path,
    output: str | Path,
    recipe: BundledRecipe = BUNDLED,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Record data and train the bundled NCP-19 (see the module docstring).

    Args:
        work: folder for bags, checkpoints and the summary (reused by a rerun).
        output: the policy file to write.
        recipe: the recipe.
        log: line logger.

    Returns:
        Summary (frames per round, validation losses, wall times).
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pert = PerturbationConfig(speed_mps=recipe.speed_mps)
    rounds: list[dict[str, Any]] = []
    bag = _bag(
        work / "expert",
        RecordConfig(
            episodes=recipe.expert_episodes,
            episode_s=recipe.episode_s,
            first_track_seed=1000,
            seed=1,
            perturbation=pert,
        ),
        log,
    )
    demos = read_demonstrations(bag, IMAGE_TOPIC, LABEL_TOPIC)
    cfg = recipe.train
    res = train(
        demos,
        cfg,
        checkpoint_dir=work / "ckpt_round0",
        resume=_resumable(work / "ckpt_round0", cfg, log),
        show_progress=True,
        log=log,
    )
    rounds.append(
        {"round": 0, "frames": len(demos), "val_loss": res.best_val_loss, "wall_s": res.wall_s}
    )
    policy = res.policy
    for r in range(1, recipe.dagger_rounds + 1):
        bag = _bag(
            work / f"dagger{r}",
            RecordConfig(
                episodes=recipe.dagger_episodes,
                episode_s=recipe.episode_s,
                first_track_seed=1000 + 100 * r,
                seed=1 + r,
                perturbation=pert,
            ),
            log,
            learner=policy,
        )
        demos = Demonstrations.concatenate(
            [demos, read_demonstrations(bag, IMAGE_TOPIC, LABEL_TOPIC)]
        )
        round_cfg = replace(cfg, epochs=recipe.finetune_epochs, seed=cfg.seed + r)
        res = train(
            demos,
            round_cfg,
            checkpoint_dir=work / f"ckpt_round{r}",
            init_state=policy.state_dict(),
            resume=_resumable(work / f"ckpt_round{r}", round_cfg, log),
            log=log,
        )
        policy = res.policy
        rounds.append(
            {"round": r, "frames": len(demos), "val_loss": res.best_val_loss, "wall_s": res.wall_s}
        )
    from ltc_controller.models.policy_file import save_policy

    save_policy(policy, output)
    summary = {
        "output": str(output),
        "rounds": rounds,
        "wall_s": round(time.perf_counter() - t0, 1),
        "recipe": _jsonable(asdict(recipe)),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"wrote {output} in {summary['wall_s']:.0f} s")
    return summary


def _resumable(ckpt: Path, cfg: TrainConfig, log: Callable[[str], None]) -> Path | None:
    """``ckpt`` if it holds a checkpoint of this very training config (threads and device
    aside), so that an interrupted ``train --preset bundled`` continues its round where it
    stopped (a finished round returns its best weights at once); None to train afresh."""
    meta = ckpt / "state.json"
    if not meta.is_file():
        return None
    ignore = ("threads", "device")
    saved = json.loads(meta.read_text()).get("config", {})
    wanted = json.loads(json.dumps(cfg.to_dict()))
    if any(saved.get(k) != v for k, v in wanted.items() if k not in ignore):
        log(f"{ckpt}: checkpoint of another training config; this round starts afresh")
        return None
    return ckpt


@dataclass(frozen=True)
class CompareRecipe:
    """What `compare` trains and evaluates.

    Attributes:
        models: ``(label, architecture, units)``; ``units=None`` = the architecture's default.
        seeds: training seeds per model.
        record: the data set (recorded once, shared by all models).
        train: training settings (``arch``/``units``/``seed`` are set per model).
        evaluation: closed-loop protocol.
        search: the learning-rate search every model gets with the same budget before its
            training runs (:mod:`~ltc_controller.training.search`); None = the ``train`` rates.
        min_val_corr: sanity check of every trained policy: the correlation of its outputs with
            the expert's labels on held-out frames (``TrainResult.val_corr``) must reach this;
            a policy below it is a *training failure*: counted, named in the report, and kept
            in every table (never dropped).
    """

    models: tuple[tuple[str, str, int | None], ...] = (
        ("NCP-19", "ncp_ltc", None),
        ("LSTM(64)", "lstm", 64),
        ("LSTM(19)", "lstm", 19),
        ("GRU(64)", "gru", 64),
        ("CT-RNN(64)", "ctrnn", 64),
        ("CNN", "cnn", None),
    )
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # rliable: at least 5 runs per model
    record: RecordConfig = field(
        default_factory=lambda: RecordConfig(
            episodes=BUNDLED.expert_episodes,
            episode_s=BUNDLED.episode_s,
            first_track_seed=1000,
            seed=1,
        )
    )
    train: TrainConfig = field(default_factory=lambda: replace(BUNDLED.train, epochs=3))
    evaluation: EvalConfig = field(
        default_factory=lambda: EvalConfig(
            conditions=(
                "clean",
                "noise_0.1",
                "noise_0.2",
                "noise_0.3",
                "dim",
                "road_texture",
                "camera_offset",
                "sharp_curves",
            ),
            episodes=2,
            distance_m=300.0,
        )
    )
    min_val_corr: float = 0.5
    search: SearchConfig | None = field(default_factory=SearchConfig)


COMPARE_FULL = CompareRecipe()

COMPARE_REDUCED = CompareRecipe(
    seeds=(0,),
    record=RecordConfig(episodes=2, episode_s=4.0, first_track_seed=1000),
    train=replace(
        BUNDLED.train,
        epochs=1,
        max_steps=2,
        seq_len=8,
        batch_size=2,
        val_fraction=0.3,
        threads=1,
    ),
    evaluation=EvalConfig(conditions=("clean", "noise_0.1"), episodes=1, distance_m=8.0),
    search=SearchConfig(trials=2, steps=2),
)


def run_compare(
    work: str | Path,
    recipe: CompareRecipe = COMPARE_FULL,
    *,
    bags: Sequence[Path] = (),
    label_offset_s: float = 0.0,
    max_pair_dt_s: float = 0.05,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Train every model x seed on the same data, evaluate closed loop, write the report.

    The training runs (model x seed) and the evaluation episodes (policy x condition x episode)
    are Ray jobs (:mod:`ltc_controller.training.jobs`), cached under ``work/jobs`` by their
    inputs (the bags' identity, the training config, the policy file's hash): an interrupted
    run resumes where it stopped, and a seed or condition added later runs only what is new.

    Args:
        work: folder for the data, policies, job cache and the report (``work/report``).
        recipe: the recipe.
        bags: use these bags instead of recording (``/camera/image_raw`` + ``/expert_cmd``).
        label_offset_s, max_pair_dt_s: frame/command pairing of the bags (see
            :func:`~ltc_controller.training.bag.read_demonstrations`); each bag's command-image
            lag is logged, with a warning when it is large.
        log: line logger.
        show_progress: a progress bar over the jobs.
        address: Ray cluster address (None: ``$RAY_ADDRESS``, else a local Ray instance on
            ``num_cpus`` cores, default all). On a cluster ``work`` must be on a shared file
            system.
        num_cpus: cores of the local Ray instance.

    Returns:
        ``{"report", "table", "stats_table", "wall_s", "jobs", "skipped", "train"}``.

    Raises:
        JobsFailed: some jobs raised (the others are cached; rerun to retry).
    """
    from ltc_controller.models import policy as policy_mod
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.training.evaluation import (
        EpisodeRecord,
        markdown_tables,
        model_sizes,
        summarise,
    )
    from ltc_controller.training.jobs import Job, JobCache, RunStats, run_jobs
    from ltc_controller.training.stats import comparison_tables
    from ltc_controller.training.stats import markdown as stats_markdown

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cache = JobCache(work / "jobs")
    t0 = time.perf_counter()
    if not bags:
        bags = [_bag(work / "data", recipe.record, log)]
    bag_list = [str(Path(b).resolve()) for b in bags]
    data_id = _files_id(bag_list)
    pairing = {"label_offset_s": label_offset_s, "max_pair_dt_s": max_pair_dt_s}
    # Read once here for the frame count and each bag's command-image lag (the training jobs
    # read the bags themselves).
    demos = _read(bag_list, **pairing)
    log(
        "command-image lag (s): "
        + (", ".join(f"{e.lag_s:+.3f}" for e in demos.lag_estimates) or "not estimated")
        + f"; label offset {label_offset_s:g} s"
    )
    for w in demos.lag_warnings():
        log(f"warning: {w}")
    t_data = time.perf_counter() - t0

    available = set(getattr(policy_mod, "ARCHITECTURES", ("ncp_ltc",)))
    skipped: list[str] = []
    models = []
    for label, arch, units in recipe.models:
        if arch not in available:
            skipped.append(f"{label} ({arch} not available)")
            log(f"skipping {label}: architecture {arch!r} not in this version")
        else:
            models.append((label, arch, units))
    rates: dict[str, dict[str, Any]] = {}
    search_stats = RunStats()
    if recipe.search is not None:
        search_jobs = [
            Job(
                "search",
                "ltc_controller.training.presets:search_job",
                {
                    "bags": bag_list,
                    "data_id": data_id,
                    "pairing": pairing,
                    "config": asdict(replace(recipe.train, arch=arch, units=units)),
                    "search": asdict(recipe.search),
                },
                label=f"search {label}",
                num_cpus=max(1, recipe.train.threads),
            )
            for label, arch, units in models
        ]
        found = run_jobs(
            search_jobs,
            cache,
            address=address,
            num_cpus=num_cpus,
            progress=show_progress,
            log=log,
            stats=search_stats,
        )
        rates = {label: r for (label, _, _), r in zip(models, found, strict=True)}
        for label, lr in rates.items():
            log(
                f"search {label}: lr {lr['lr']:.2e}, lr_rnn {lr['lr_rnn']:.2e} "
                f"(val {lr['best_val_loss']:.4f})"
            )
    train_jobs: list[tuple[str, Job]] = []
    for label, arch, units in models:
        for seed in recipe.seeds:
            out = work / "policies" / f"{_slug(label)}_seed{seed}.safetensors"
            cfg = replace(recipe.train, arch=arch, units=units, seed=seed)
            if label in rates:
                cfg = replace(cfg, lr=rates[label]["lr"], lr_rnn=rates[label]["lr_rnn"])
            job = Job(
                "train",
                "ltc_controller.training.presets:train_job",
                {
                    "bags": bag_list,
                    "data_id": data_id,
                    "pairing": pairing,
                    "config": asdict(cfg),
                    "output": str(out),
                },
                label=f"train {label} seed {seed}",
                num_cpus=max(1, cfg.threads),
            )
            if not out.is_file():
                cache.path(job).unlink(missing_ok=True)  # its policy file is gone: train again
            train_jobs.append((label, job))
    train_stats = RunStats()
    trained = run_jobs(
        [j for _, j in train_jobs],
        cache,
        address=address,
        num_cpus=num_cpus,
        progress=show_progress,
        log=log,
        stats=train_stats,
    )
    t_train = time.perf_counter() - t0 - t_data
    failures = []
    for (label, _job), res in zip(train_jobs, trained, strict=True):
        corr = res.get("val_corr")
        if corr is None or not corr >= recipe.min_val_corr:
            failures.append({"model": label, "policy": Path(res["output"]).name, "val_corr": corr})
            log(
                f"training failure: {label} {Path(res['output']).name}: held-out correlation "
                f"{'n/a (no validation frames)' if corr is None else f'{corr:.2f}'} < "
                f"{recipe.min_val_corr} (kept in the tables)"
            )

    ev = recipe.evaluation
    eval_cfg = asdict(ev)
    eval_jobs: list[Job] = []
    sizes: dict[str, dict[str, int]] = {}
    for (label, _job), res in zip(train_jobs, trained, strict=True):
        policy = res["output"]
        sizes[policy] = model_sizes(load_policy(policy))
        digest = _files_id([policy], content=True)
        for cname in ev.conditions:
            for k in range(ev.episodes):
                eval_jobs.append(
                    Job(
                        "evaluate",
                        "ltc_controller.training.presets:evaluate_job",
                        {
                            "label": label,
                            "policy": policy,
                            "policy_id": digest,
                            "condition": cname,
                            "episode": k,
                            "eval_config": eval_cfg,
                        },
                        label=f"evaluate {Path(policy).stem} {cname} ep {k}",
                    )
                )
    eval_stats = RunStats()
    rows = run_jobs(
        eval_jobs,
        cache,
        address=address,
        num_cpus=num_cpus,
        progress=show_progress,
        log=log,
        stats=eval_stats,
    )
    records = [EpisodeRecord(**r) for r in rows]
    t_eval = time.perf_counter() - t0 - t_data - t_train
    stats_tables = comparison_tables(records, reference=recipe.models[0][0])
    stats_md = stats_markdown(stats_tables)
    report = write_report(
        work / "report",
        records,
        sizes,
        recipe.evaluation,
        title="Model comparison: NCP-19 vs LSTM, GRU, CT-RNN, CNN on the same data",
        notes=(
            f"Data: {len(demos)} frames from {len(bag_list)} bag(s). "
            f"Training per model: {recipe.train.epochs} epoch(s), "
            f"T={recipe.train.seq_len}, batch {recipe.train.batch_size}, head lr "
            f"{recipe.train.lr}, core lr {recipe.train.lr_rnn}"
            + (
                f" (searched per model: {recipe.search.trials} runs x {recipe.search.steps} "
                f"steps each, rates in the output's learning_rates)"
                if recipe.search is not None
                else ""
            )
            + f", seeds {list(recipe.seeds)}.\n\n"
            + _failures_md(failures, len(trained), recipe.min_val_corr)
            + stats_md
        ),
    )
    by_model: dict[str, dict[str, int]] = {}
    for r in records:
        if r.policy in sizes:
            by_model.setdefault(r.model, sizes[r.policy])
    table = markdown_tables(summarise(records), by_model)
    cost = _cost_table(train_jobs, trained, by_model)
    (work / "report" / "cost.md").write_text(cost + "\n")
    return {
        "report": str(report),
        "table": table,
        "stats_table": stats_md,
        "cost_table": cost,
        "skipped": skipped,
        "training_failures": failures,
        "learning_rates": {k: {"lr": v["lr"], "lr_rnn": v["lr_rnn"]} for k, v in rates.items()},
        "wall_s": {
            "data": round(t_data, 1),
            "train": round(t_train, 1),
            "evaluate": round(t_eval, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "jobs": {
            "address": train_stats.address or eval_stats.address or "none (all cached)",
            "search": {"ran": search_stats.ran, "cached": search_stats.cached},
            "train": {"ran": train_stats.ran, "cached": train_stats.cached},
            "evaluate": {"ran": eval_stats.ran, "cached": eval_stats.cached},
        },
        "train": {Path(r["output"]).name: r for r in trained},
    }


def train_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    config: dict[str, Any],
    output: str,
) -> dict[str, Any]:
    """Ray job of :func:`run_compare`: train one model x seed on ``bags`` paired as ``pairing``
    says (``read_demonstrations`` keywords; ``data_id``, the bags' identity, is part of the cache
    key only) and write the policy file ``output``."""
    from ltc_controller.training.trainer import AugmentConfig

    aug = dict(config.get("augment", {}))
    if "shadow_strength" in aug:
        aug["shadow_strength"] = tuple(aug["shadow_strength"])
    cfg = TrainConfig(**{**config, "augment": AugmentConfig(**aug)})
    demos = _read(bags, **pairing)
    res = train(demos, cfg, output=output, show_progress=False, log=lambda s: None)
    return {
        "output": output,
        "frames": len(demos),
        "wall_s": round(res.wall_s, 2),
        "steps": res.steps,
        "stopped_early": bool(res.stopped_early),
        "best_val_loss": _finite_or_none(res.best_val_loss),
        "val_corr": _finite_or_none(res.val_corr),
    }


def search_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    config: dict[str, Any],
    search: dict[str, Any],
) -> dict[str, Any]:
    """Ray job of :func:`run_compare`: the learning-rate search of one model
    (:func:`~ltc_controller.training.search.search_learning_rates`) on its validation data."""
    from ltc_controller.training.search import search_learning_rates

    sc = SearchConfig(**{**search, "lr": tuple(search["lr"]), "lr_rnn": tuple(search["lr_rnn"])})
    return search_learning_rates(_read(bags, **pairing), TrainConfig.from_dict(config), sc)


def evaluate_job(
    label: str,
    policy: str | None,
    policy_id: str,
    condition: str,
    episode: int,
    eval_config: dict[str, Any],
) -> dict[str, Any]:
    """Ray job of :func:`run_compare`: one evaluation episode (``policy_id``, the policy file's
    hash, is part of the cache key only). Returns the :class:`EpisodeRecord` as a dict."""
    from ltc_controller.training.evaluation import evaluate_episode

    cfg = EvalConfig(**{**eval_config, "conditions": tuple(eval_config["conditions"])})
    entry = ModelEntry(label, Path(policy) if policy is not None else None)
    return asdict(evaluate_episode(entry, condition, episode, cfg))


def _cost_table(
    train_jobs: Sequence[tuple[str, Any]],
    trained: Sequence[Mapping[str, Any]],
    sizes: Mapping[str, Mapping[str, int]],
) -> str:
    """Per model: trainable parameters, neurons, training wall time (mean over seeds) and the
    inference cost of one camera frame through the deployment runtime (CPU, one thread;
    median of 100 frames after warm-up, first seed's policy), measured here, now."""
    import numpy as np
    import torch

    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.training.closed_loop import PolicyDriver

    walls: dict[str, list[float]] = {}
    first: dict[str, str] = {}
    for (label, _job), res in zip(train_jobs, trained, strict=True):
        walls.setdefault(label, []).append(float(res["wall_s"]))
        first.setdefault(label, res["output"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines = [
        "| model | trainable parameters | neurons | training wall (s, mean) "
        "| ms / frame (median) |",
        "|---|---|---|---|---|",
    ]
    try:
        frame = np.random.default_rng(0).integers(0, 256, (78, 200, 3), dtype=np.uint8)
        for label, path in first.items():
            driver = PolicyDriver(load_policy(path))
            times = []
            for k in range(110):
                t0 = time.perf_counter()
                driver.act(frame, 0.05 * (k + 1))
                times.append(time.perf_counter() - t0)
            size = sizes.get(label, {})
            lines.append(
                f"| {label} | {size.get('trainable_parameters', '-')} | {size.get('neurons', '-')}"
                f" | {sum(walls[label]) / len(walls[label]):.1f}"
                f" | {1e3 * float(np.median(times[10:])):.2f} |"
            )
    finally:
        torch.set_num_threads(threads)
    return "\n".join(lines)


def _finite_or_none(x: float) -> float | None:
    """JSON-able: NaN (no validation frames) becomes null."""
    return float(x) if math.isfinite(x) else None


def _failures_md(failures: Sequence[Mapping[str, Any]], trained: int, threshold: float) -> str:
    lines = [
        f"Training failures (held-out correlation with the expert below {threshold}; kept in "
        f"every table): {len(failures)} of {trained} policies."
    ]
    for f in failures:
        corr = f["val_corr"]
        lines.append(f"- {f['model']} `{f['policy']}`: {'n/a' if corr is None else f'{corr:.2f}'}")
    return "\n".join(lines) + "\n\n"


def _read(bags: Sequence[str], label_offset_s: float, max_pair_dt_s: float) -> Demonstrations:
    return Demonstrations.concatenate(
        [
            read_demonstrations(
                Path(b),
                IMAGE_TOPIC,
                LABEL_TOPIC,
                label_offset_s=label_offset_s,
                max_pair_dt_s=max_pair_dt_s,
            )
            for b in bags
        ]
    )


def _files_id(paths: Sequence[str], content: bool = False) -> str:
    """Identity of files for cache keys: size and mtime (bags: cheap), or a content hash."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{p}:{st.st_size}".encode())
        if content:
            h.update(Path(p).read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:24]


def _slug(label: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "_" for ch in label).strip("_")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x
