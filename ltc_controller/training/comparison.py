"""The `compare` flow, shared by the car and the drone: record one data set, then for every model x
seed search, train, run DAgger rounds, evaluate closed loop, and write the report.

Per model (the same for every model; jobs of :mod:`ltc_controller.training.jobs`, cached by their
inputs):

1. one learning-rate search on the shared data (:mod:`~ltc_controller.training.search`);
2. per seed, round 0: train on the shared expert data;
3. per seed, ``dagger.rounds`` rounds (DAgger, Ross et al. 2011): the seed's own policy of the
   previous round drives ``dagger.episodes`` on-policy episodes in new worlds/tracks (the same
   ones for every model) while the expert labels and takes over (the recorders' takeover rules:
   :mod:`~ltc_controller.training.recording`, :mod:`~ltc_controller.training.drone_recording`),
   the bag is kept, and the policy is fine-tuned from its weights on the expert data plus all
   of its own DAgger bags so far;
4. with ``recipe.monitor_episodes`` > 0, the last round's policy gets its out-of-distribution
   monitor fitted (:func:`~ltc_controller.training.monitor.fit_monitor`, the same for every
   model: statistics from the shared expert frames, thresholds calibrated on one shared bag of
   ``monitor_episodes`` unperturbed expert episodes on tracks/worlds 2000.., 1 false alarm per
   10 min), and its attention monitor calibrated on the same calibration episodes
   (:func:`~ltc_controller.training.monitor.fit_attention`, one pair every
   :data:`ATTENTION_EVERY_N` frames); the copy with both goes to ``work/monitored``;
5. that policy is evaluated per condition and episode on unseen tracks/worlds, both monitors
   recorded in the same episodes (:mod:`~ltc_controller.training.ood_evaluation`); the report
   gains their columns per model x condition (AUROC, alarm onsets per 10 min, failures flagged
   >= 1 s ahead), with IQM intervals over seeds x tracks for the AUROC and the clean false
   alarm rate of each.
6. with ``recipe.expert_reference``, the privileged expert drives every condition x episode
   once (not per model): its rows join the tables, and each policy's steering-rate RMS (car)
   or time to target (drone) is put over the expert's on the same episode;
7. with ``recipe.attention_frames`` > 0, every trained policy's attention is measured on the
   same frames of the calibration episodes
   (:mod:`~ltc_controller.training.attention_evaluation`: saliency SSIM under camera noise,
   saliency mass on marking-like / target-like pixels), one job per policy.

Every table of steps 5-7 is an IQM with a 95 % stratified-bootstrap interval and P(first model
better) (:mod:`~ltc_controller.training.stats`).

A scenario (:class:`Scenario`: :data:`CAR`, :data:`DRONE`) supplies what differs: the recorder,
the label axes, the evaluation episode and its record, the report and the metrics the statistics
use. Round ``r``'s job is keyed by the previous round's policy file (content hash), so a rerun
resumes at the first unfinished round and a seed added later trains only that seed.
"""

from __future__ import annotations

import math
import shutil
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "CAR",
    "DRONE",
    "SCENARIOS",
    "DaggerConfig",
    "Scenario",
    "attention_job",
    "dagger_job",
    "evaluate_job",
    "monitor_job",
    "run_comparison",
    "search_job",
    "train_job",
]

IMAGE_TOPIC = "/camera/image_raw"
#: The attention monitor's pair rate in ``compare``'s fits: one pair every N frames (1: every
#: frame, as ``monitor fit`` and the bundled file; 0: no attention monitor).
ATTENTION_EVERY_N = 1
#: Optuna's ``TPESampler`` default ``n_startup_trials``: its first proposals are random.
TPE_STARTUP_TRIALS = 10
#: Calibration episodes recorded for the attention stage when the recipe fits no monitor.
ATTENTION_CALIBRATION_EPISODES = 5
LABEL_TOPIC = "/expert_cmd"
_JOBS = "ltc_controller.training.comparison"


@dataclass(frozen=True)
class DaggerConfig:
    """DAgger rounds of `compare`: the same for every model and seed.

    Attributes:
        rounds: rounds after the expert-data training (0 = no DAgger).
        episodes: on-policy episodes per round (one track/world each; the round's recording
            config is the recipe's ``record`` with these episodes, the seeds from
            ``first_*_seed + 100 * round`` and ``seed + round``).
        finetune_epochs: epochs of each round's fine-tune on all data so far.

    Raises:
        ValueError: ``rounds < 0``, ``episodes < 1`` or ``finetune_epochs < 1``.
    """

    rounds: int = 0
    episodes: int = 6
    finetune_epochs: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.episodes < 1 or self.finetune_epochs < 1:
            raise ValueError(
                f"DaggerConfig: rounds={self.rounds} >= 0, episodes={self.episodes} >= 1 and "
                f"finetune_epochs={self.finetune_epochs} >= 1 required"
            )


class Scenario(ABC):
    """What the car and the drone do differently in `compare` (:data:`CAR`, :data:`DRONE`)."""

    name: str = ""
    title: str = ""
    #: ``read_demonstrations``'s ``command_fields`` (None: the steering axis).
    command_fields: tuple[str, ...] | None = None
    #: Metrics of the statistics tables (keys of ``stats.HIGHER_IS_BETTER``).
    stats_metrics: tuple[str, ...] = ()
    #: The metric each policy is put against the expert's in the expert reference (its ratio
    #: per episode: 1 = as the expert).
    expert_ratio_metric: str = ""
    #: The colour mask of the attention stage's task mass (``explain.metrics``).
    attention_mask: str = ""
    record_config_type: type = object
    eval_config_type: type = object

    @abstractmethod
    def record(self, path: Path, cfg: Any, learner: Any) -> dict[str, Any]:
        """Record ``cfg`` into a new bag at ``path``; ``learner`` drives (DAgger) when given."""
        raise NotImplementedError

    @abstractmethod
    def record_line(self, s: Mapping[str, Any]) -> str:
        """One log line about a recording summary."""
        raise NotImplementedError

    @abstractmethod
    def dagger_record(self, cfg: Any, dagger: DaggerConfig, round_: int) -> Any:
        """The recording config of DAgger round ``round_`` (new worlds/tracks, new seed)."""
        raise NotImplementedError

    @abstractmethod
    def calibration_record(self, cfg: Any, episodes: int) -> Any:
        """The recording config of the monitor's calibration data: ``episodes`` episodes of the
        unperturbed expert on unseen tracks/worlds (2000..), otherwise as ``cfg``."""
        raise NotImplementedError

    @abstractmethod
    def evaluate_episode(
        self, label: str, policy: str, condition: str, k: int, cfg: Any
    ) -> tuple[Any, Any]:
        """Episode ``k`` of ``policy`` (``""``: the privileged expert) under ``condition``: the
        scenario's episode record and the monitor's
        :class:`~ltc_controller.training.ood_evaluation.MonitorEpisode` (None when the file has
        no statistics)."""
        raise NotImplementedError

    @abstractmethod
    def episode_record(self, d: Mapping[str, Any]) -> Any:
        """An episode record from its dict (a job's cached result)."""
        raise NotImplementedError

    @abstractmethod
    def tables(self, records: Sequence[Any], sizes_by_model: dict[str, dict[str, int]]) -> str:
        """Markdown tables (models x conditions, mean ± sd over seeds)."""
        raise NotImplementedError

    @abstractmethod
    def write_report(
        self, out: Path, records: Sequence[Any], sizes: Any, cfg: Any, **kw: Any
    ) -> Path:
        """Write the scenario's report into ``out`` (``title``/``notes`` keywords); returns the
        path of ``report.md``."""
        raise NotImplementedError

    @abstractmethod
    def driver(self, policy: Any) -> Any:
        """An object whose ``act(frame, stamp_s)`` runs ``policy`` through the runtime."""
        raise NotImplementedError


class _Car(Scenario):
    name = "car"
    title = "Model comparison (car): NCP-19 vs LSTM, GRU, CT-RNN, CNN on the same data"
    stats_metrics = ("departures_per_km", "mean_abs_lateral_error_m", "steering_rate_rms")
    expert_ratio_metric = "steering_rate_rms"
    attention_mask = "marking_like"

    def __init__(self) -> None:
        from ltc_controller.training.evaluation import EvalConfig
        from ltc_controller.training.recording import RecordConfig

        self.record_config_type = RecordConfig
        self.eval_config_type = EvalConfig

    def record(self, path: Path, cfg: Any, learner: Any) -> dict[str, Any]:
        from ltc_controller.training.recording import record

        return record(path, cfg, learner=learner)

    def record_line(self, s: Mapping[str, Any]) -> str:
        return f"departures {s['departures']}, takeover {s['takeover_fraction']:.0%}"

    def dagger_record(self, cfg: Any, dagger: DaggerConfig, round_: int) -> Any:
        return replace(
            cfg,
            episodes=dagger.episodes,
            first_track_seed=cfg.first_track_seed + 100 * round_,
            seed=cfg.seed + round_,
        )

    def calibration_record(self, cfg: Any, episodes: int) -> Any:
        from ltc_controller.sim.scenario import PerturbationConfig

        p = cfg.perturbation
        return replace(
            cfg,
            episodes=episodes,
            first_track_seed=2000,
            seed=7,
            perturbation=PerturbationConfig.none(p.speed_mps, p.lookahead_m),
        )

    def evaluate_episode(
        self, label: str, policy: str, condition: str, k: int, cfg: Any
    ) -> tuple[Any, Any]:
        from ltc_controller.training.evaluation import evaluate_episode_monitored

        return evaluate_episode_monitored(_entry(label, policy), condition, k, cfg)

    def episode_record(self, d: Mapping[str, Any]) -> Any:
        from ltc_controller.training.evaluation import EpisodeRecord

        return EpisodeRecord(**d)

    def tables(self, records: Sequence[Any], sizes_by_model: dict[str, dict[str, int]]) -> str:
        from ltc_controller.training.evaluation import markdown_tables, summarise

        return markdown_tables(summarise(records), sizes_by_model)

    def write_report(
        self, out: Path, records: Sequence[Any], sizes: Any, cfg: Any, **kw: Any
    ) -> Path:
        from ltc_controller.training.evaluation import write_report

        return write_report(out, records, sizes, cfg, **kw)

    def driver(self, policy: Any) -> Any:
        from ltc_controller.training.closed_loop import PolicyDriver

        return PolicyDriver(policy)


class _Drone(Scenario):
    name = "drone"
    title = "Model comparison (drone): NCP vs LSTM, GRU, CT-RNN, CNN on the same data"
    command_fields = ("all",)  # the four Twist axes: a velocity policy
    stats_metrics = ("success", "time_to_target_s", "collisions")
    expert_ratio_metric = "time_to_target_s"
    attention_mask = "target_like"

    def __init__(self) -> None:
        from ltc_controller.training.drone_evaluation import DroneEvalConfig
        from ltc_controller.training.drone_recording import DroneRecordConfig

        self.record_config_type = DroneRecordConfig
        self.eval_config_type = DroneEvalConfig

    def record(self, path: Path, cfg: Any, learner: Any) -> dict[str, Any]:
        from ltc_controller.training.drone_recording import record_drone

        return record_drone(path, cfg, learner=learner)

    def record_line(self, s: Mapping[str, Any]) -> str:
        return (
            f"reached {s['reached']}/{s['episodes']}, collisions {s['collisions']}, "
            f"takeover {s['takeover_fraction']:.0%}"
        )

    def dagger_record(self, cfg: Any, dagger: DaggerConfig, round_: int) -> Any:
        return replace(
            cfg,
            episodes=dagger.episodes,
            first_world_seed=cfg.first_world_seed + 100 * round_,
            seed=cfg.seed + round_,
        )

    def calibration_record(self, cfg: Any, episodes: int) -> Any:
        from ltc_controller.sim.drone.scenario import DronePerturbationConfig

        return replace(
            cfg,
            episodes=episodes,
            first_world_seed=2000,
            seed=7,
            perturbation=DronePerturbationConfig.none(cfg.perturbation.speed_mps),
        )

    def evaluate_episode(
        self, label: str, policy: str, condition: str, k: int, cfg: Any
    ) -> tuple[Any, Any]:
        from ltc_controller.training.drone_evaluation import evaluate_drone_episode_monitored

        return evaluate_drone_episode_monitored(_entry(label, policy), condition, k, cfg)

    def episode_record(self, d: Mapping[str, Any]) -> Any:
        from ltc_controller.training.drone_evaluation import DroneEpisodeRecord

        return DroneEpisodeRecord(**d)

    def tables(self, records: Sequence[Any], sizes_by_model: dict[str, dict[str, int]]) -> str:
        from ltc_controller.training.drone_evaluation import drone_markdown_tables, summarise_drone

        return drone_markdown_tables(summarise_drone(records), sizes_by_model)

    def write_report(
        self, out: Path, records: Sequence[Any], sizes: Any, cfg: Any, **kw: Any
    ) -> Path:
        from ltc_controller.training.drone_evaluation import write_drone_report

        return write_drone_report(out, records, sizes, cfg, **kw)

    def driver(self, policy: Any) -> Any:
        from ltc_controller.training.drone_closed_loop import DronePolicyDriver

        return DronePolicyDriver(policy)


CAR: Scenario = _Car()
DRONE: Scenario = _Drone()
SCENARIOS: dict[str, Scenario] = {"car": CAR, "drone": DRONE}


def run_comparison(
    work: str | Path,
    recipe: Any,
    *,
    bags: Sequence[Path] = (),
    label_offset_s: float = 0.0,
    max_pair_dt_s: float = 0.05,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Search, train, DAgger and evaluate every model x seed of ``recipe`` (module docstring).

    Args:
        work: folder for the data, policies, DAgger bags, job cache and the report
            (``work/report``).
        recipe: a :class:`~ltc_controller.training.presets.CompareRecipe` (its ``scenario``
            picks :data:`CAR` or :data:`DRONE`).
        bags: use these bags instead of recording (``/camera/image_raw`` + ``/expert_cmd``);
            the DAgger rounds still record in the simulator.
        label_offset_s, max_pair_dt_s: frame/command pairing of ``bags`` (see
            :func:`~ltc_controller.training.bag.read_demonstrations`); each bag's command-image
            lag is logged, with a warning when it is large. DAgger bags are paired with offset 0.
        log: line logger.
        show_progress: a progress bar over the jobs.
        address: Ray cluster address (None: ``$RAY_ADDRESS``, else a local Ray instance on
            ``num_cpus`` cores, default all). On a cluster ``work`` must be on a shared disk.
        num_cpus: cores of the local Ray instance.

    Returns:
        ``{"scenario", "report", "table", "stats_table", "cost_table", "skipped",
        "training_failures", "learning_rates", "dagger", "wall_s", "jobs", "train", "monitor"}``
        (``monitor``: ``fitted``, each policy's fit, and per model x condition the monitor's
        numbers).

    Raises:
        KeyError: an unknown scenario. JobsFailed: some jobs raised (the others are cached;
        rerun to retry).
    """
    from ltc_controller.training.jobs import ray_session

    with ray_session():  # one Ray instance for all the batches below
        return _run(
            work,
            recipe,
            bags=bags,
            label_offset_s=label_offset_s,
            max_pair_dt_s=max_pair_dt_s,
            log=log,
            show_progress=show_progress,
            address=address,
            num_cpus=num_cpus,
        )


def _run(
    work: str | Path,
    recipe: Any,
    *,
    bags: Sequence[Path],
    label_offset_s: float,
    max_pair_dt_s: float,
    log: Callable[[str], None],
    show_progress: bool,
    address: str | None,
    num_cpus: int | None,
) -> dict[str, Any]:
    from ltc_controller.models import policy as policy_mod
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.training.evaluation import EXPERT, model_sizes
    from ltc_controller.training.jobs import Job, JobCache, RunStats, run_jobs
    from ltc_controller.training.stats import comparison_tables
    from ltc_controller.training.stats import markdown as stats_markdown

    sc = SCENARIOS[recipe.scenario]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cache = JobCache(work / "jobs")
    t0 = time.perf_counter()
    if not bags:
        bags = [_bag(sc, work / "data", recipe.record, log)]
    bag_list = [str(Path(b).resolve()) for b in bags]
    data_id = _files_id(bag_list)
    pairing = {"label_offset_s": label_offset_s, "max_pair_dt_s": max_pair_dt_s}
    fields_ = list(sc.command_fields) if sc.command_fields is not None else None
    # Read once here for the frame count and each bag's command-image lag (the jobs read the
    # bags themselves).
    demos = _read(bag_list, command_fields=fields_, **pairing)
    log(
        "command-image lag (s): "
        + (", ".join(f"{e.lag_s:+.3f}" for e in demos.lag_estimates) or "not estimated")
        + f"; label offset {label_offset_s:g} s"
    )
    for w in demos.lag_warnings():
        log(f"warning: {w}")
    t_data = time.perf_counter() - t0

    def jobs(batch: list[Job], st: RunStats) -> list[dict[str, Any]]:
        return run_jobs(
            batch,
            cache,
            address=address,
            num_cpus=num_cpus,
            progress=show_progress,
            log=log,
            stats=st,
        )

    available = set(getattr(policy_mod, "ARCHITECTURES", ("ncp_ltc",)))
    skipped: list[str] = []
    models = []
    for label, arch, units in recipe.models:
        if arch not in available:
            skipped.append(f"{label} ({arch} not available)")
            log(f"skipping {label}: architecture {arch!r} not in this version")
        else:
            models.append((label, arch, units))
    data_kw = {"bags": bag_list, "data_id": data_id, "pairing": pairing, "command_fields": fields_}
    rates: dict[str, dict[str, Any]] = {}
    search_stats = RunStats()
    if recipe.search is not None:
        found = jobs(
            [
                Job(
                    "search",
                    f"{_JOBS}:search_job",
                    {
                        **data_kw,
                        "config": asdict(replace(recipe.train, arch=arch, units=units)),
                        "search": asdict(recipe.search),
                    },
                    label=f"search {label}",
                    num_cpus=max(1, recipe.train.threads),
                )
                for label, arch, units in models
            ],
            search_stats,
        )
        rates = {label: r for (label, _, _), r in zip(models, found, strict=True)}
        for label, lr in rates.items():
            log(
                f"search {label}: lr {lr['lr']:.2e}, lr_rnn {lr['lr_rnn']:.2e} "
                f"(val {lr['best_val_loss']:.4f})"
            )

    dagger: DaggerConfig = recipe.dagger
    runs = [(label, arch, units, seed) for label, arch, units in models for seed in recipe.seeds]

    def output(label: str, seed: int, round_: int) -> Path:
        if round_ == dagger.rounds:
            return work / "policies" / f"{_slug(label)}_seed{seed}.safetensors"
        return work / "rounds" / f"{_slug(label)}_seed{seed}" / f"round{round_}.safetensors"

    def keep(job: Job, *paths: Path) -> Job:
        if not all(p.exists() for p in paths):
            cache.path(job).unlink(missing_ok=True)  # its files are gone: run it again
        return job

    train_stats = RunStats()
    dagger_stats = RunStats()
    round_results: list[list[dict[str, Any]]] = []
    for round_ in range(dagger.rounds + 1):
        batch = []
        for label, arch, units, seed in runs:
            out = output(label, seed, round_)
            cfg = replace(recipe.train, arch=arch, units=units, seed=seed)
            if label in rates:
                cfg = replace(cfg, lr=rates[label]["lr"], lr_rnn=rates[label]["lr_rnn"])
            if round_ == 0:
                batch.append(
                    keep(
                        Job(
                            "train",
                            f"{_JOBS}:train_job",
                            {**data_kw, "config": asdict(cfg), "output": str(out)},
                            label=f"train {label} seed {seed}",
                            num_cpus=max(1, cfg.threads),
                        ),
                        out,
                    )
                )
                continue
            learner = output(label, seed, round_ - 1)
            bag_dir = _dagger_bag(work, label, seed, round_)
            previous = [str(_dagger_bag(work, label, seed, r)) for r in range(1, round_)]
            batch.append(
                keep(
                    Job(
                        "dagger",
                        f"{_JOBS}:dagger_job",
                        {
                            **data_kw,
                            "scenario": sc.name,
                            "config": asdict(
                                replace(cfg, epochs=dagger.finetune_epochs, seed=seed + round_)
                            ),
                            "record": asdict(sc.dagger_record(recipe.record, dagger, round_)),
                            "learner": str(learner),
                            "learner_id": _files_id([str(learner)], content=True),
                            "previous": previous,
                            "previous_id": _files_id(previous),
                            "bag": str(bag_dir),
                            "output": str(out),
                        },
                        label=f"dagger {label} seed {seed} round {round_}",
                        num_cpus=max(1, cfg.threads),
                    ),
                    out,
                    bag_dir / "metadata.yaml",
                )
            )
        round_results.append(jobs(batch, train_stats if round_ == 0 else dagger_stats))
    trained = round_results[-1]
    t_train = time.perf_counter() - t0 - t_data

    failures = []
    for (label, *_), res in zip(runs, trained, strict=True):
        corr = res.get("val_corr")
        if corr is None or not corr >= recipe.min_val_corr:
            failures.append({"model": label, "policy": Path(res["output"]).name, "val_corr": corr})
            log(
                f"training failure: {label} {Path(res['output']).name}: held-out correlation "
                f"{'n/a (no validation frames)' if corr is None else f'{corr:.2f}'} < "
                f"{recipe.min_val_corr} (kept in the tables)"
            )
    # Training wall time of a policy = all its rounds (DAgger recording included).
    walls = [sum(float(rr[i]["wall_s"]) for rr in round_results) for i in range(len(runs))]
    dagger_summary = {
        "rounds": dagger.rounds,
        "episodes_per_round": dagger.episodes,
        "episodes_per_policy": dagger.rounds * dagger.episodes,
        "finetune_epochs": dagger.finetune_epochs,
        "per_policy": {
            Path(trained[i]["output"]).name: [
                {k: rr[i].get(k) for k in ("frames", "dagger_frames", "takeover_fraction")}
                for rr in round_results[1:]
            ]
            for i in range(len(runs))
        },
    }

    # The out-of-distribution monitor of every trained policy: the same fit for every model.
    evaluated = [res["output"] for res in trained]
    monitor_stats = RunStats()
    monitor_fits: dict[str, dict[str, Any]] = {}
    calib: Path | None = None
    if recipe.monitor_episodes > 0 or recipe.attention_frames > 0:
        calib = _bag(
            sc,
            work / "calibration",
            sc.calibration_record(
                recipe.record, recipe.monitor_episodes or ATTENTION_CALIBRATION_EPISODES
            ),
            log,
        )
        calib_id = _files_id([str(calib)])
    if recipe.monitor_episodes > 0:
        assert calib is not None
        fits = jobs(
            [
                keep(
                    Job(
                        "monitor",
                        f"{_JOBS}:monitor_job",
                        {
                            **data_kw,
                            "calibration": str(calib.resolve()),
                            "calibration_id": calib_id,
                            "policy": str(policy),
                            "policy_id": _files_id([str(policy)], content=True),
                            "output": str(work / "monitored" / Path(policy).name),
                            "attention_every_n": ATTENTION_EVERY_N,
                        },
                        label=f"monitor {Path(policy).stem}",
                    ),
                    work / "monitored" / Path(policy).name,
                )
                for policy in evaluated
            ],
            monitor_stats,
        )
        for f in fits:
            if f.get("error"):
                name = Path(f["policy"]).name
                log(f"monitor of {name} not fitted (evaluated without): {f['error']}")
        # A policy whose fit failed is evaluated as trained; its report line says unavailable.
        evaluated = [f["output"] or f["policy"] for f in fits]
        monitor_fits = {Path(f["policy"]).name: f for f in fits}
    # The attention stage: every trained policy's saliency on the same calibration frames.
    attention_stats = RunStats()
    attention_results: list[dict[str, Any]] = []
    if recipe.attention_frames > 0:
        assert calib is not None
        attention_results = jobs(
            [
                Job(
                    "attention",
                    f"{_JOBS}:attention_job",
                    {
                        "calibration": str(calib.resolve()),
                        "calibration_id": calib_id,
                        "command_fields": fields_,
                        "max_pair_dt_s": max_pair_dt_s,
                        "policy": res["output"],
                        "policy_id": _files_id([res["output"]], content=True),
                        "mask": sc.attention_mask,
                        "frames": recipe.attention_frames,
                    },
                    label=f"attention {Path(res['output']).stem}",
                )
                for res in trained
            ],
            attention_stats,
        )
    t_monitor = time.perf_counter() - t0 - t_data - t_train

    ev = recipe.evaluation
    eval_cfg = asdict(ev)
    sizes: dict[str, dict[str, int]] = {}
    # (label, policy file, its hash, name in the progress line) of everything evaluated.
    entries: list[tuple[str, str, str, str]] = []
    for (label, *_), policy in zip(runs, evaluated, strict=True):
        sizes[policy] = model_sizes(load_policy(policy))
        entries.append((label, policy, _files_id([policy], content=True), Path(policy).stem))
    n_model_jobs = len(entries) * len(ev.conditions) * ev.episodes
    if recipe.expert_reference:
        # The privileged expert once per condition x episode: the reference every model's
        # closed-loop numbers are put against (same tracks/worlds).
        entries.append((EXPERT, "", "", EXPERT))
    eval_jobs = [
        Job(
            "evaluate",
            f"{_JOBS}:evaluate_job",
            {
                "scenario": sc.name,
                "label": label,
                "policy": policy,
                "policy_id": digest,
                "condition": cname,
                "episode": k,
                "eval_config": eval_cfg,
            },
            label=f"evaluate {name} {cname} ep {k}",
        )
        for label, policy, digest, name in entries
        for cname in ev.conditions
        for k in range(ev.episodes)
    ]
    eval_stats = RunStats()
    records = []
    expert_records = []
    monitor_log = None
    if recipe.monitor_episodes > 0:
        from ltc_controller.training.ood_evaluation import MonitorEpisode, MonitorLog

        monitor_log = MonitorLog(
            unavailable=[f["policy"] for f in monitor_fits.values() if not f.get("output")]
        )
    for i, r in enumerate(jobs(eval_jobs, eval_stats)):
        r = dict(r)
        mon = r.pop("monitor", None)
        if i >= n_model_jobs:
            expert_records.append(sc.episode_record(r))
            continue
        records.append(sc.episode_record(r))
        if monitor_log is not None and mon is not None:
            monitor_log.episodes.append(MonitorEpisode.from_dict(mon))
    t_eval = time.perf_counter() - t0 - t_data - t_train - t_monitor
    reference = models[0][0] if models else recipe.models[0][0]
    stats_md = "\n\n".join(
        stats_markdown(
            comparison_tables(records, metric=m, reference=reference, reps=recipe.stats_reps)
        )
        for m in sc.stats_metrics
    )
    if monitor_log is not None and monitor_log.episodes:
        stats_md += "\n\n" + _monitor_stats_md(monitor_log, reference, recipe.stats_reps)
    expert_md = _expert_md(sc, records, expert_records, reference, recipe.stats_reps)
    attention_md = _attention_md(
        runs, trained, attention_results, reference, recipe, calib is not None
    )
    rr = recipe.train
    report = sc.write_report(
        work / "report",
        [*records, *expert_records],
        sizes,
        ev,
        title=sc.title,
        notes=(
            f"Data: {len(demos)} expert frames from {len(bag_list)} bag(s). "
            f"Training per model: {rr.epochs} epoch(s), T={rr.seq_len}, batch {rr.batch_size}, "
            f"head lr {rr.lr}, core lr {rr.lr_rnn}"
            + (
                f" (searched per model: {recipe.search.trials} runs x {recipe.search.steps} "
                f"steps each, rates in the output's learning_rates"
                + (
                    f"; with {recipe.search.trials} <= {TPE_STARTUP_TRIALS} runs Optuna's TPE is "
                    "still in its seeded random start-up, so every model tried the same rate "
                    "pairs and kept its best: equal for all, but no model-specific proposal"
                    if recipe.search.trials <= TPE_STARTUP_TRIALS
                    else ""
                )
                + ")"
                if recipe.search is not None
                else ""
            )
            + f", seeds {list(recipe.seeds)}; intervals from {recipe.stats_reps} bootstrap "
            "resamples. "
            + _dagger_md(dagger, recipe.record)
            + "\n\n"
            + _failures_md(failures, len(trained), recipe.min_val_corr)
            + _monitor_md(recipe.monitor_episodes, monitor_fits)
            + stats_md
            + "\n\n"
            + expert_md
            + "\n\n"
            + attention_md
        ),
        monitor=monitor_log,
    )
    by_model: dict[str, dict[str, int]] = {}
    for r in records:
        if r.policy in sizes:
            by_model.setdefault(r.model, sizes[r.policy])
    table = sc.tables([*records, *expert_records], by_model)
    cost = _cost_table(
        sc,
        [(label, res["output"]) for (label, *_), res in zip(runs, trained, strict=True)],
        walls,
        by_model,
    )
    (work / "report" / "cost.md").write_text(cost + "\n")
    return {
        "scenario": sc.name,
        "report": str(report),
        "table": table,
        "stats_table": stats_md,
        "expert_table": expert_md,
        "attention_table": attention_md,
        "attention": {Path(a["policy"]).name: a for a in attention_results},
        "cost_table": cost,
        "skipped": skipped,
        "training_failures": failures,
        "learning_rates": {k: {"lr": v["lr"], "lr_rnn": v["lr_rnn"]} for k, v in rates.items()},
        "dagger": dagger_summary,
        "wall_s": {
            "data": round(t_data, 1),
            "train": round(t_train, 1),
            "monitor": round(t_monitor, 1),
            "evaluate": round(t_eval, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "jobs": {
            "address": next(
                (
                    s.address
                    for s in (
                        train_stats,
                        dagger_stats,
                        monitor_stats,
                        attention_stats,
                        eval_stats,
                    )
                    if s.address
                ),
                "none (all cached)",
            ),
            "search": {"ran": search_stats.ran, "cached": search_stats.cached},
            "train": {"ran": train_stats.ran, "cached": train_stats.cached},
            "dagger": {"ran": dagger_stats.ran, "cached": dagger_stats.cached},
            "monitor": {"ran": monitor_stats.ran, "cached": monitor_stats.cached},
            "attention": {"ran": attention_stats.ran, "cached": attention_stats.cached},
            "evaluate": {"ran": eval_stats.ran, "cached": eval_stats.cached},
        },
        "monitor": _monitor_summary(monitor_log, monitor_fits, sc),
        "train": {Path(r["output"]).name: r for r in trained},
    }


# -- jobs (module-level functions: what the Ray tasks run) -------------------------------------


def train_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    command_fields: list[str] | None,
    config: dict[str, Any],
    output: str,
) -> dict[str, Any]:
    """Ray job: train one model x seed on ``bags`` paired as ``pairing`` says
    (``read_demonstrations`` keywords; ``data_id``, the bags' identity, is part of the cache key
    only), learning ``command_fields`` (None: steering), and write the policy file ``output``."""
    from ltc_controller.training.trainer import TrainConfig, train

    demos = _read(bags, command_fields=command_fields, **pairing)
    res = train(
        demos, TrainConfig.from_dict(config), output=output, show_progress=False, log=_quiet
    )
    return {"output": output, "frames": len(demos), **_train_summary(res)}


def search_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    command_fields: list[str] | None,
    config: dict[str, Any],
    search: dict[str, Any],
) -> dict[str, Any]:
    """Ray job: the learning-rate search of one model
    (:func:`~ltc_controller.training.search.search_learning_rates`) on its validation data."""
    from ltc_controller.training.search import SearchConfig, search_learning_rates
    from ltc_controller.training.trainer import TrainConfig

    return search_learning_rates(
        _read(bags, command_fields=command_fields, **pairing),
        TrainConfig.from_dict(config),
        _from_dict(SearchConfig, search),
    )


def dagger_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    command_fields: list[str] | None,
    scenario: str,
    config: dict[str, Any],
    record: dict[str, Any],
    learner: str,
    learner_id: str,
    previous: list[str],
    previous_id: str,
    bag: str,
    output: str,
) -> dict[str, Any]:
    """Ray job: one DAgger round of one model x seed.

    The policy file ``learner`` drives the episodes of ``record`` (the scenario's recording
    config as a dict) while the expert labels and takes over; the new bag ``bag`` (recorded anew
    if it exists) joins the expert ``bags`` and this seed's ``previous`` DAgger bags, and the
    learner is fine-tuned from its weights on all of them (``config``) into ``output``.
    ``learner_id`` (the learner file's hash) and ``previous_id`` are part of the cache key only.

    Returns:
        The training summary (``output``, ``frames`` = all frames trained on, ``val_corr`` ...)
        with ``dagger_frames`` (this round's), ``takeover_fraction`` and ``record_wall_s``;
        ``wall_s`` covers the recording and the fine-tune.
    """
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.training.bag import Demonstrations
    from ltc_controller.training.trainer import TrainConfig, train

    sc = SCENARIOS[scenario]
    t0 = time.perf_counter()
    policy = load_policy(learner)
    path = Path(bag)
    if path.exists():  # an interrupted earlier try: its learner may differ
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = sc.record(path, _from_dict(sc.record_config_type, record), policy)
    t_rec = time.perf_counter() - t0
    own = {"label_offset_s": 0.0, "max_pair_dt_s": pairing["max_pair_dt_s"]}  # our stamps
    demos = Demonstrations.concatenate(
        [
            _read(bags, command_fields=command_fields, **pairing),
            _read([*previous, bag], command_fields=command_fields, **own),
        ]
    )
    res = train(
        demos,
        TrainConfig.from_dict(config),
        output=output,
        init_state=policy.state_dict(),
        show_progress=False,
        log=_quiet,
    )
    out = {"output": output, "frames": len(demos), **_train_summary(res)}
    out.update(
        dagger_frames=int(rec["frames"]),
        takeover_fraction=float(rec["takeover_fraction"]),
        record_wall_s=round(t_rec, 2),
        wall_s=round(time.perf_counter() - t0, 2),
    )
    return out


def monitor_job(
    bags: list[str],
    data_id: str,
    pairing: dict[str, float],
    command_fields: list[str] | None,
    calibration: str,
    calibration_id: str,
    policy: str,
    policy_id: str,
    output: str,
    attention_every_n: int = ATTENTION_EVERY_N,
) -> dict[str, Any]:
    """Ray job: fit the out-of-distribution monitor of the policy file ``policy``
    (:func:`~ltc_controller.training.monitor.fit_monitor` with its defaults: statistics from
    every frame of the expert ``bags``, thresholds calibrated on the ``calibration`` bag),
    calibrate its attention monitor on the same ``calibration`` frames
    (:func:`~ltc_controller.training.monitor.fit_attention` with its defaults, one pair every
    ``attention_every_n`` frames; 0: none), and write the policy with them to ``output``.
    ``data_id``, ``calibration_id`` and ``policy_id`` are part of the cache key only.

    Returns:
        ``{"policy", "output", "degraded", "fault", **calibration, "attention"}`` (the feature
        fit's calibration record: frames, minutes, onsets on the calibration frames ...;
        ``attention``: ``{"degraded", "fault", "every_n_frames", "pair_gap_s",
        **calibration}``, or ``{"error"}`` when its calibration is impossible, the file then
        carrying the feature monitor alone, or None with ``attention_every_n`` 0); when the
        feature fit is impossible (e.g. non-finite features of a failed training), ``{"policy",
        "output": None, "error"}``: the comparison goes on without that policy's monitors.
    """
    from ltc_controller.models.policy_file import load_policy, save_policy
    from ltc_controller.training.monitor import fit_attention, fit_monitor

    p = load_policy(policy)
    own = {"label_offset_s": 0.0, "max_pair_dt_s": pairing["max_pair_dt_s"]}  # our stamps
    try:
        calib = _read([calibration], command_fields=command_fields, **own)
        demos = _read(bags, command_fields=command_fields, **pairing)
        stats = fit_monitor(p, demos, calibration=calib)
    except ValueError as e:
        return {"policy": policy, "output": None, "error": str(e)}
    p.feature_stats = stats
    attention: dict[str, Any] | None = None
    p.attention_stats = None  # never a calibration the input file brought from elsewhere
    if attention_every_n > 0:
        try:
            att = fit_attention(p, calib, calibration=calib, every_n_frames=attention_every_n)
        except ValueError as e:
            attention = {"error": str(e)}
        else:
            p.attention_stats = att
            attention = {
                "degraded": att.degraded,
                "fault": att.fault,
                "every_n_frames": att.every_n_frames,
                "pair_gap_s": att.pair_gap_s,
                **att.calibration,
            }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    save_policy(p, output)
    return {
        "policy": policy,
        "output": output,
        "degraded": stats.degraded,
        "fault": stats.fault,
        **stats.calibration,
        "attention": attention,
    }


def evaluate_job(
    scenario: str,
    label: str,
    policy: str,
    policy_id: str,
    condition: str,
    episode: int,
    eval_config: dict[str, Any],
) -> dict[str, Any]:
    """Ray job: one evaluation episode of ``scenario`` (``policy_id``, the policy file's hash, is
    part of the cache key only). Returns the scenario's episode record as a dict, with the
    monitor's episode under ``"monitor"`` (None when the file has no statistics)."""
    sc = SCENARIOS[scenario]
    cfg = _from_dict(sc.eval_config_type, eval_config)
    rec, mon = sc.evaluate_episode(label, policy, condition, episode, cfg)
    return {**asdict(rec), "monitor": None if mon is None else mon.to_dict()}


def attention_job(
    calibration: str,
    calibration_id: str,
    command_fields: list[str] | None,
    max_pair_dt_s: float,
    policy: str,
    policy_id: str,
    mask: str,
    frames: int,
) -> dict[str, Any]:
    """Ray job: the attention numbers of the policy file ``policy`` on ``frames`` frames spread
    evenly over the ``calibration`` bag (unseen tracks/worlds, unperturbed expert):
    :func:`~ltc_controller.training.attention_evaluation.measure_attention` with the ``mask``
    colour mask (``calibration_id``, ``policy_id``: cache key only).

    Returns:
        ``{"policy", **measure_attention's result}``.
    """
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.training.attention_evaluation import measure_attention

    own = {"label_offset_s": 0.0, "max_pair_dt_s": max_pair_dt_s}  # our stamps
    calib = _read([calibration], command_fields=command_fields, **own)
    res = measure_attention(
        load_policy(policy), calib.images, calib.segment, mask=mask, frames=frames
    )
    return {"policy": policy, **res}


# -- helpers ------------------------------------------------------------------------------------


def _entry(label: str, policy: str) -> Any:
    """The evaluators' model entry: ``policy`` ``""`` is the privileged expert."""
    from ltc_controller.training.evaluation import EXPERT, ModelEntry

    return ModelEntry(EXPERT, None) if not policy else ModelEntry(label, Path(policy))


def _expert_md(
    sc: Scenario,
    records: Sequence[Any],
    expert: Sequence[Any],
    reference: str,
    reps: int,
) -> str:
    """The expert-reference section: each policy's ``sc.expert_ratio_metric`` over the
    expert's on the same episode, IQM over seeds x episodes with P(``reference`` better)."""
    from types import SimpleNamespace

    from ltc_controller.training.evaluation import EXPERT
    from ltc_controller.training.stats import comparison_tables, metric_value
    from ltc_controller.training.stats import markdown as stats_markdown

    head = "## Expert reference"
    if not expert:
        return f"{head}\n\nNot run (the recipe's expert_reference is off).\n"
    m = sc.expert_ratio_metric
    ref = {(e.condition, e.episode): metric_value(e, m) for e in expert}
    ratios = []
    for r in records:
        base = ref.get((r.condition, r.episode))
        if base is None or not base > 0:
            continue
        ratios.append(
            SimpleNamespace(
                model=r.model,
                policy=r.policy,
                condition=r.condition,
                episode=r.episode,
                **{f"{m}_ratio": metric_value(r, m) / base},
            )
        )
    text = [
        head,
        "",
        f"The privileged expert drove every condition x episode once (the rows `{EXPERT}` of "
        f"the tables above). Below: each policy's {m} divided by the expert's on the same "
        "episode (1 = as the expert"
        + ("; a flight that missed the target counts at the time limit" if m.endswith("_s") else "")
        + ").",
        "",
    ]
    if ratios:
        text.append(
            stats_markdown(
                comparison_tables(ratios, metric=f"{m}_ratio", reference=reference, reps=reps)
            )
        )
    else:
        text.append(f"No ratio: the expert's {m} is 0 in every episode.")
    return "\n".join(text) + "\n"


def _attention_md(
    runs: Sequence[tuple[str, str, int | None, int]],
    trained: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any]],
    reference: str,
    recipe: Any,
    have_calibration: bool,
) -> str:
    from ltc_controller.training.attention_evaluation import (
        attention_markdown,
        attention_records,
    )

    records = [
        rec
        for (label, *_), res, a in zip(runs, trained, results, strict=True)
        for rec in attention_records(label, res["output"], a)
    ]
    source = (
        f"spread evenly over the {recipe.monitor_episodes or ATTENTION_CALIBRATION_EPISODES} "
        "calibration episode(s) (unseen tracks/worlds 2000.., unperturbed expert)"
        if have_calibration and recipe.attention_frames > 0
        else "the recipe's attention_frames is 0"
    )
    return attention_markdown(
        records, results, reference=reference, reps=recipe.stats_reps, source=source
    )


def _quiet(_: str) -> None:
    pass


def _train_summary(res: Any) -> dict[str, Any]:
    return {
        "wall_s": round(res.wall_s, 2),
        "steps": res.steps,
        "stopped_early": bool(res.stopped_early),
        "best_val_loss": _finite_or_none(res.best_val_loss),
        "val_corr": _finite_or_none(res.val_corr),
    }


def _bag(sc: Scenario, path: Path, cfg: Any, log: Callable[[str], None]) -> Path:
    """Record the expert data at ``path`` unless a complete bag is there (a rerun resumes)."""
    if (path / "metadata.yaml").is_file():
        log(f"reusing {path}")
        return path
    if path.exists():
        shutil.rmtree(path)
    s = sc.record(path, cfg, None)
    log(
        f"recorded {path.name}: {s['frames']} frames in {s['wall_s']:.0f} s ({s['driver']}, "
        + sc.record_line(s)
        + ")"
    )
    return path


def _dagger_bag(work: Path, label: str, seed: int, round_: int) -> Path:
    return work / "dagger" / f"{_slug(label)}_seed{seed}" / f"round{round_}"


def _dagger_md(dagger: DaggerConfig, record: Any) -> str:
    if dagger.rounds == 0:
        return "No DAgger rounds."
    return (
        f"DAgger: {dagger.rounds} round(s) of {dagger.episodes} on-policy episode(s) of at most "
        f"{record.episode_s:g} s for every model and seed ({dagger.rounds * dagger.episodes} "
        "per policy, in the same new worlds/tracks for every model): each policy drives while the "
        "expert labels and takes over, then it is fine-tuned from its weights for "
        f"{dagger.finetune_epochs} epoch(s) on the expert data plus all its own DAgger data."
    )


def _monitor_md(episodes: int, fits: Mapping[str, Mapping[str, Any]]) -> str:
    if episodes <= 0:
        from ltc_controller.training.ood_evaluation import UNAVAILABLE

        return f"Out-of-distribution {UNAVAILABLE} (the recipe fits none: monitor_episodes 0).\n\n"
    ok = [f for f in fits.values() if f.get("output")]
    minutes = {round(float(f["heldout_minutes"]), 1) for f in ok}
    onsets = [int(f["heldout_onsets_degraded"]) for f in ok]
    failed = "".join(
        f"- `{name}`: not fitted ({f['error']}); evaluated without its monitor\n"
        for name, f in fits.items()
        if not f.get("output")
    )
    att = [f["attention"] for f in ok if f.get("attention") and not f["attention"].get("error")]
    failed += "".join(
        f"- `{name}`: attention monitor not calibrated ({f['attention']['error']}); evaluated "
        "with the feature monitor alone\n"
        for name, f in fits.items()
        if f.get("output") and f.get("attention") and f["attention"].get("error")
    )
    att_md = ""
    if att:
        n = sorted({int(a["every_n_frames"]) for a in att})
        a_onsets = [int(a["heldout_onsets_degraded"]) for a in att]
        att_md = (
            f" Its attention monitor (saliency instability) calibrated alike on the same "
            f"episodes for {len(att)} of {len(fits)} policies, one pair every "
            f"{'/'.join(map(str, n))} frame(s); alarm onsets there per policy: "
            f"{'-'.join(str(v) for v in sorted({min(a_onsets), max(a_onsets)}))}."
        )
    return (
        "Out-of-distribution monitor: fitted for every policy alike (statistics from the "
        f"expert frames, thresholds calibrated to 1 false alarm per 10 min on {episodes} "
        f"unperturbed expert episode(s) on unseen tracks/worlds 2000.., "
        f"{', '.join(f'{m:g}' for m in sorted(minutes))} min; alarm onsets there per policy: "
        f"{'-'.join(str(v) for v in sorted({min(onsets, default=0), max(onsets, default=0)}))}"
        f").{att_md} The tables are in the report's last section, the intervals below.\n\n"
        + (failed + "\n" if failed else "")
    )


def _monitor_stats_md(log: Any, reference: str, reps: int) -> str:
    """IQM intervals over seeds x tracks (and P(reference better)) of the monitor's per-episode
    AUROC (shifted conditions; each episode against the same policy's clean episode on the same
    track) and of its alarm onsets per 10 min in the clean condition (false alarms); then the
    same of the attention monitor (``attention_auroc``, ``attention_alarms_per_10min``) over
    the episodes that recorded it. The share of failures flagged ahead has no per-episode value
    where an episode has no failure: the report gives it pooled (mean ± sd over seeds), without
    an interval."""
    from ltc_controller.training.ood_evaluation import episode_records
    from ltc_controller.training.stats import comparison_tables
    from ltc_controller.training.stats import markdown as stats_markdown

    recs = episode_records(log.episodes)
    parts = []
    for auroc, alarms, has in (
        ("monitor_auroc", "alarms_per_10min", lambda r: True),
        ("attention_auroc", "attention_alarms_per_10min", lambda r: r.attention_pairs is not None),
    ):
        shifted = [r for r in recs if r.condition != "clean" and math.isfinite(getattr(r, auroc))]
        if shifted:
            parts.append(
                stats_markdown(
                    comparison_tables(shifted, metric=auroc, reference=reference, reps=reps),
                    "{:.3f}",
                )
            )
        clean = [r for r in recs if r.condition == "clean" and has(r)]
        if clean:
            parts.append(
                stats_markdown(
                    comparison_tables(clean, metric=alarms, reference=reference, reps=reps),
                    "{:.1f}",
                )
            )
    return "\n\n".join(parts)


def _monitor_summary(
    log: Any, fits: Mapping[str, Mapping[str, Any]], sc: Scenario
) -> dict[str, Any]:
    """The output's ``monitor``: each fit, and per model x condition the monitor's numbers
    and, under ``attention``, the attention monitor's (strict JSON)."""
    from ltc_controller.training.json_safe import json_safe
    from ltc_controller.training.ood_evaluation import (
        CAR_STOP_S,
        DRONE_STOP_S,
        attention_episodes,
        attention_unavailable,
        summarise_monitor_models,
    )

    if log is None:
        return {"fitted": False}
    stop = DRONE_STOP_S if sc.name == "drone" else CAR_STOP_S
    return json_safe(
        {
            "fitted": True,
            "fits": dict(fits),
            "per_model": summarise_monitor_models(log.episodes, stop_s=stop).per_model,
            "attention": {
                "unavailable": attention_unavailable(log),
                "per_model": summarise_monitor_models(
                    attention_episodes(log.episodes), stop_s=stop
                ).per_model,
            },
        }
    )


def _cost_table(
    sc: Scenario,
    policies: Sequence[tuple[str, str]],
    walls: Sequence[float],
    sizes: Mapping[str, Mapping[str, int]],
) -> str:
    """Per model: trainable parameters, neurons, training wall time (mean over seeds, all rounds)
    and the inference cost of one camera frame through the deployment runtime (CPU, one thread;
    median of 100 frames after warm-up, first seed's policy), measured here, now."""
    import numpy as np
    import torch

    from ltc_controller.models.policy_file import load_policy

    by_label: dict[str, list[float]] = {}
    first: dict[str, str] = {}
    for (label, path), wall in zip(policies, walls, strict=True):
        by_label.setdefault(label, []).append(float(wall))
        first.setdefault(label, path)
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
            driver = sc.driver(load_policy(path))
            times = []
            for k in range(110):
                t0 = time.perf_counter()
                driver.act(frame, 0.05 * (k + 1))
                times.append(time.perf_counter() - t0)
            size = sizes.get(label, {})
            w = by_label[label]
            lines.append(
                f"| {label} | {size.get('trainable_parameters', '-')} | {size.get('neurons', '-')}"
                f" | {sum(w) / len(w):.1f} | {1e3 * float(np.median(times[10:])):.2f} |"
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


def _read(
    bags: Sequence[str],
    *,
    label_offset_s: float,
    max_pair_dt_s: float,
    command_fields: Sequence[str] | None = None,
) -> Any:
    from ltc_controller.training.bag import Demonstrations, read_demonstrations

    kw: dict[str, Any] = {} if command_fields is None else {"command_fields": list(command_fields)}
    return Demonstrations.concatenate(
        [
            read_demonstrations(
                Path(b),
                IMAGE_TOPIC,
                LABEL_TOPIC,
                label_offset_s=label_offset_s,
                max_pair_dt_s=max_pair_dt_s,
                **kw,
            )
            for b in bags
        ]
    )


def _from_dict(cls: Any, d: Mapping[str, Any]) -> Any:
    """A (frozen) config dataclass from its ``asdict``/JSON form: nested config dataclasses
    rebuilt, JSON lists back to tuples."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        t = hints.get(f.name)
        if isinstance(v, Mapping) and isinstance(t, type) and is_dataclass(t):
            v = _from_dict(t, v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return cls(**kw)


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
