"""One-command recipes: the bundled NCP-19 (`train --preset bundled`) and the model comparison
(`compare`, with a `--reduced` version for CI).

Bundled NCP-19 (:func:`train_bundled`):

1. record ``expert_episodes`` episodes of the perturbed expert on tracks 1000.. (rosbag2, MCAP);
2. train NCP-19 from that bag (:func:`~ltc_controller.training.trainer.train`);
3. ``dagger_rounds`` times: let the policy drive ``dagger_episodes`` episodes on new tracks while
   the expert labels (and takes over far off-centre), add the bag, fine-tune on everything;
4. write the policy file.

Comparison (:func:`run_compare`, the flow in :mod:`~ltc_controller.training.comparison`): record
one data set, search every model's learning rates, train every model of the recipe on it with
every seed (same data, same head, same schedule), run the same DAgger rounds for each (every policy
drives its own on-policy episodes, the expert labels), evaluate all of them closed loop under the
recipe's conditions on the same unseen tracks, write the report and return the table. The drone's
recipes (``DRONE_COMPARE``...) are in :mod:`~ltc_controller.training.drone_presets`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltc_controller.sim.scenario import PerturbationConfig
from ltc_controller.training.bag import Demonstrations, read_demonstrations
from ltc_controller.training.comparison import DaggerConfig
from ltc_controller.training.evaluation import EvalConfig
from ltc_controller.training.json_safe import json_safe
from ltc_controller.training.recording import RecordConfig, record
from ltc_controller.training.search import SearchConfig
from ltc_controller.training.trainer import TrainConfig, train

if TYPE_CHECKING:
    from ltc_controller.training.drone_evaluation import DroneEvalConfig
    from ltc_controller.training.drone_recording import DroneRecordConfig

__all__ = [
    "BUNDLED",
    "COMPARE_CLUSTER",
    "COMPARE_FULL",
    "COMPARE_REDUCED",
    "BundledRecipe",
    "CompareRecipe",
    "run_compare",
    "select_models",
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
    #: Episodes of unperturbed expert driving (tracks 2000..) to calibrate the out-of-distribution
    #: monitor on; its statistics come from every training frame (0: no monitor in the file).
    monitor_episodes: int = 20
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

    monitor: dict[str, Any] = {}
    if recipe.monitor_episodes > 0:
        from ltc_controller.training.monitor import fit_attention, fit_monitor

        calib = _bag(
            work / "calibration",
            RecordConfig(
                episodes=recipe.monitor_episodes,
                episode_s=recipe.episode_s,
                first_track_seed=2000,
                seed=7,
                perturbation=PerturbationConfig.none(recipe.speed_mps),
            ),
            log,
        )
        calibration = read_demonstrations(calib, IMAGE_TOPIC, LABEL_TOPIC)
        policy.feature_stats = stats = fit_monitor(policy, demos, calibration=calibration)
        monitor = {"degraded": stats.degraded, "fault": stats.fault, **stats.calibration}
        policy.attention_stats = att = fit_attention(policy, demos, calibration=calibration)
        monitor["attention"] = {"degraded": att.degraded, "fault": att.fault, **att.calibration}
        log(
            f"out-of-distribution monitor: degraded {stats.degraded:.3f}, fault "
            f"{stats.fault:.3f} ({stats.calibration['heldout_onsets_degraded']} alarm onsets in "
            f"{stats.calibration['heldout_minutes']:.1f} min of calibration driving)"
        )
    save_policy(policy, output)
    summary = {
        "output": str(output),
        "rounds": rounds,
        "monitor": monitor,
        "wall_s": round(time.perf_counter() - t0, 1),
        "recipe": json_safe(asdict(recipe)),
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
    """What `compare` trains and evaluates (the car's defaults; the drone's recipes set
    ``scenario="drone"`` with its recording and evaluation configs).

    Attributes:
        models: ``(label, architecture, units)``; ``units=None`` = the architecture's default.
            The first is the reference of P(improvement).
        seeds: training seeds per model.
        record: the data set (recorded once, shared by all models): a ``RecordConfig`` (car) or
            ``DroneRecordConfig`` (drone); the DAgger rounds record with it too.
        train: training settings (``arch``/``units``/``seed`` are set per model).
        evaluation: closed-loop protocol: ``EvalConfig`` (car) or ``DroneEvalConfig`` (drone).
        dagger: DAgger rounds, the same for every model and seed (each policy collects its own
            on-policy episodes; the expert labels).
        scenario: ``"car"`` or ``"drone"``
            (:data:`~ltc_controller.training.comparison.SCENARIOS`).
        stats_reps: bootstrap resamples of every interval of the statistics (rliable; 2000 is
            the usual; a CI-sized run uses fewer: each metric x condition costs about 25 ms per
            resample here).
        search: the learning-rate search every model gets with the same budget before its
            training runs (:mod:`~ltc_controller.training.search`); None = the ``train`` rates.
        monitor_episodes: episodes of unperturbed expert driving (tracks/worlds 2000..) that
            calibrate every trained policy's out-of-distribution monitor alike, as
            ``train --preset bundled`` does (0: no monitor, the report says unavailable).
        min_val_corr: sanity check of every trained policy: the correlation of its outputs with
            the expert's labels on held-out frames (``TrainResult.val_corr``) must reach this;
            a policy below it is a *training failure*: counted, named in the report, and kept
            in every table (never dropped).
        expert_reference: evaluate the privileged expert once per condition x episode and put
            every policy's closed-loop numbers against it (car: steering-rate RMS ratio; drone:
            time-to-target ratio) in the report.
        attention_frames: frames of the attention stage (saliency SSIM under noise, saliency
            mass on the task), spread over the calibration episodes, the same for every
            policy (:mod:`~ltc_controller.training.attention_evaluation`); 0: no attention
            stage.
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
    record: RecordConfig | DroneRecordConfig = field(
        default_factory=lambda: RecordConfig(
            episodes=BUNDLED.expert_episodes,
            episode_s=BUNDLED.episode_s,
            first_track_seed=1000,
            seed=1,
        )
    )
    train: TrainConfig = field(default_factory=lambda: replace(BUNDLED.train, epochs=3))
    evaluation: EvalConfig | DroneEvalConfig = field(
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
    # The bundled recipe's DAgger (rounds, episodes per round, fine-tune epochs).
    dagger: DaggerConfig = field(
        default_factory=lambda: DaggerConfig(
            rounds=BUNDLED.dagger_rounds,
            episodes=BUNDLED.dagger_episodes,
            finetune_epochs=BUNDLED.finetune_epochs,
        )
    )
    scenario: str = "car"
    stats_reps: int = 2000
    monitor_episodes: int = BUNDLED.monitor_episodes
    expert_reference: bool = True
    attention_frames: int = 200


#: ``compare --preset cluster``: the bundled NCP-19's budget for every model (its data, 6
#: epochs, its DAgger rounds), 8 search runs x 200 steps, 5 episodes per condition and seed.
#: About 8 CPU-hours of DAgger recording alone and ~20 of training for 6 models x 5 seeds: a
#: Ray cluster's budget (``--address``), not a 2-core machine's.
COMPARE_CLUSTER = CompareRecipe(
    train=replace(BUNDLED.train, threads=1),
    evaluation=replace(CompareRecipe().evaluation, episodes=5),
)

#: ``compare`` (``--preset full``, the default): sized to finish one car run of 6 models x 5
#: seeds in about 2 h on 2 cores. Costs measured here (CPU-s, one thread): ~1.2 per optimiser
#: step of 8 x 16 frames (the conv head dominates: every model alike), ~0.2 per simulated
#: second driven through the runtime with rendering. Budget per policy: ~110 training steps (6,000
#: expert frames, 3 epochs, early stopping), one DAgger round of 3 on-policy episodes and one
#: fine-tune epoch, the monitor calibrated on 5 min of expert driving, 8 conditions x 1 episode
#: of 300 m; per model a search of 3 runs x 50 steps (the recipe's rates first). One thread per
#: job: two jobs at once on 2 cores ran faster than one job on two threads (``drone_presets``:
#: 1.36 vs 2.81 s a step).
COMPARE_FULL = CompareRecipe(
    record=RecordConfig(episodes=10, episode_s=BUNDLED.episode_s, first_track_seed=1000, seed=1),
    train=replace(BUNDLED.train, epochs=3, patience=2, threads=1),
    evaluation=replace(CompareRecipe().evaluation, episodes=1),
    search=SearchConfig(trials=3, steps=50),
    dagger=DaggerConfig(rounds=1, episodes=3, finetune_epochs=1),
    monitor_episodes=10,
)

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
    dagger=DaggerConfig(rounds=1, episodes=1, finetune_epochs=1),
    stats_reps=200,
    monitor_episodes=1,
    attention_frames=8,
)


def select_models(
    models: tuple[tuple[str, str, int | None], ...], labels: str
) -> tuple[tuple[str, str, int | None], ...]:
    """The recipe's ``models`` named in ``labels`` (comma-separated, in the order given: the
    first is the reference of P(improvement)).

    Raises:
        ValueError: a label is not one of the recipe's, repeated, or none is given.
    """
    by_label = {m[0]: m for m in models}
    wanted = [x.strip() for x in labels.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in by_label]
    if not wanted or unknown or len(set(wanted)) != len(wanted):
        raise ValueError(
            f"--models {labels!r}: give distinct labels among {', '.join(by_label)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return tuple(by_label[x] for x in wanted)


def run_compare(
    work: str | Path, recipe: CompareRecipe = COMPARE_FULL, **kwargs: Any
) -> dict[str, Any]:
    """Search, train with DAgger, evaluate and report every model x seed of ``recipe`` (car or
    drone: ``recipe.scenario``): :func:`~ltc_controller.training.comparison.run_comparison`
    (``bags``, ``label_offset_s``, ``max_pair_dt_s``, ``log``, ``show_progress``, ``address``,
    ``num_cpus``) documents the flow, the keywords and the result.

    Raises:
        JobsFailed: some jobs raised (the others are cached; rerun to retry).
    """
    from ltc_controller.training.comparison import run_comparison

    return run_comparison(work, recipe, **kwargs)
