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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ltc_controller.sim.scenario import PerturbationConfig
from ltc_controller.training.bag import Demonstrations, read_demonstrations
from ltc_controller.training.evaluation import EvalConfig, ModelEntry, evaluate, write_report
from ltc_controller.training.recording import RecordConfig, record
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
    res = train(demos, cfg, checkpoint_dir=work / "ckpt_round0", show_progress=True, log=log)
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
        res = train(
            demos,
            replace(cfg, epochs=recipe.finetune_epochs, seed=cfg.seed + r),
            checkpoint_dir=work / f"ckpt_round{r}",
            init_state=policy.state_dict(),
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


@dataclass(frozen=True)
class CompareRecipe:
    """What `compare` trains and evaluates.

    Attributes:
        models: ``(label, architecture, units)``; ``units=None`` = the architecture's default.
        seeds: training seeds per model.
        record: the data set (recorded once, shared by all models).
        train: training settings (``arch``/``units``/``seed`` are set per model).
        evaluation: closed-loop protocol.
    """

    models: tuple[tuple[str, str, int | None], ...] = (
        ("NCP-19", "ncp_ltc", None),
        ("LSTM(64)", "lstm", 64),
        ("LSTM(19)", "lstm", 19),
        ("GRU(64)", "gru", 64),
        ("CT-RNN(64)", "ctrnn", 64),
        ("CNN", "cnn", None),
    )
    seeds: tuple[int, ...] = (0, 1, 2)
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
        val_fraction=0.0,
        threads=1,
    ),
    evaluation=EvalConfig(conditions=("clean", "noise_0.1"), episodes=1, distance_m=8.0),
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
) -> dict[str, Any]:
    """Train every model x seed on the same data, evaluate closed loop, write the report.

    Args:
        work: folder for the data, policies and the report (``work/report``).
        recipe: the recipe.
        bags: use these bags instead of recording (``/camera/image_raw`` + ``/expert_cmd``).
        label_offset_s, max_pair_dt_s: frame/command pairing of the bags (see
            :func:`~ltc_controller.training.bag.read_demonstrations`); each bag's command-image
            lag is logged, with a warning when it is large.
        log: line logger.
        show_progress: tqdm bars while training.

    Returns:
        ``{"report": path, "table": markdown, "wall_s": {...}, "skipped": [...]}``.
    """
    from ltc_controller.models import policy as policy_mod
    from ltc_controller.training.evaluation import markdown_tables, summarise

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not bags:
        bags = [_bag(work / "data", recipe.record, log)]
    demos = Demonstrations.concatenate(
        [
            read_demonstrations(
                b,
                IMAGE_TOPIC,
                LABEL_TOPIC,
                label_offset_s=label_offset_s,
                max_pair_dt_s=max_pair_dt_s,
            )
            for b in bags
        ]
    )
    log(
        "command-image lag (s): "
        + (", ".join(f"{e.lag_s:+.3f}" for e in demos.lag_estimates) or "not estimated")
        + f"; label offset {label_offset_s:g} s"
    )
    for w in demos.lag_warnings():
        log(f"warning: {w}")
    t_data = time.perf_counter() - t0
    available = set(getattr(policy_mod, "ARCHITECTURES", ("ncp_ltc",)))
    entries: list[ModelEntry] = []
    skipped: list[str] = []
    train_wall: dict[str, float] = {}
    for label, arch, units in recipe.models:
        if arch not in available:
            skipped.append(f"{label} ({arch} not available)")
            log(f"skipping {label}: architecture {arch!r} not in this version")
            continue
        for seed in recipe.seeds:
            out = work / "policies" / f"{_slug(label)}_seed{seed}.safetensors"
            if not out.is_file():
                cfg = replace(recipe.train, arch=arch, units=units, seed=seed)
                res = train(demos, cfg, output=out, show_progress=show_progress, log=log)
                train_wall[out.name] = res.wall_s
            entries.append(ModelEntry(label, out))
    t_train = time.perf_counter() - t0 - t_data
    records, sizes = evaluate(entries, recipe.evaluation, progress=log)
    t_eval = time.perf_counter() - t0 - t_data - t_train
    report = write_report(
        work / "report",
        records,
        sizes,
        recipe.evaluation,
        title="Model comparison: NCP-19 vs LSTM, GRU, CT-RNN, CNN on the same data",
        notes=(
            f"Data: {len(demos)} frames ({int(demos.segment.max()) + 1} segments). Training per "
            f"model: {recipe.train.epochs} epoch(s), T={recipe.train.seq_len}, batch "
            f"{recipe.train.batch_size}, head lr {recipe.train.lr}, core lr "
            f"{recipe.train.lr_rnn}, seeds {list(recipe.seeds)}."
        ),
    )
    by_model: dict[str, dict[str, int]] = {}
    for r in records:
        if r.policy in sizes:
            by_model.setdefault(r.model, sizes[r.policy])
    table = markdown_tables(summarise(records), by_model)
    return {
        "report": str(report),
        "table": table,
        "skipped": skipped,
        "wall_s": {
            "data": round(t_data, 1),
            "train": round(t_train, 1),
            "evaluate": round(t_eval, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "train_wall_s": train_wall,
    }


def _slug(label: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "_" for ch in label).strip("_")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x
