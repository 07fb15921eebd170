"""The same small learning-rate search for every model of a comparison, on validation data only.

Each model gets ``trials`` training runs of ``steps`` optimiser steps (the same budget for every
architecture; ``steps=None``: each run as long as the training itself): the first at the
recipe's own rates (``start_from_config``), the rest proposed by Optuna's TPE sampler (seeded;
its first 10 proposals are random), each scored by the validation loss on held-out segments of
the training data (``TrainConfig.val_fraction``; the evaluation tracks are never seen).
Searched: the head's and the recurrent core's learning rates (``lr``, ``lr_rnn``: for the LTC the
core rate also drives its ODE parameters: gleak, vleak, cm, sigma, mu, w, erev), on a log scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ltc_controller.training.bag import Demonstrations
from ltc_controller.training.trainer import TrainConfig, train

__all__ = ["SearchConfig", "search_learning_rates"]


@dataclass(frozen=True)
class SearchConfig:
    """Budget and ranges of the search (the same for every model).

    Attributes:
        trials: training runs per model.
        steps: optimiser steps per run; None: each run is the training itself (the config's
            epochs, early stopping and step limit). On the car's `full` data the full horizon
            ranked the NCP-19's rate pairs as 50 steps did (README, "The full car run"), so
            the presets keep their short horizons.
        lr: ``(low, high)`` of the head's learning rate.
        lr_rnn: ``(low, high)`` of the core's learning rate.
        seed: the sampler's seed.
        start_from_config: the first run uses the training config's own ``lr`` / ``lr_rnn``
            (Optuna ``enqueue_trial``), so the recipe's rates are always a candidate and a
            model leaves them only for a pair that validates better.
    """

    trials: int = 8
    steps: int | None = 200
    lr: tuple[float, float] = (1e-4, 1e-2)
    lr_rnn: tuple[float, float] = (1e-4, 3e-2)
    seed: int = 0
    start_from_config: bool = True

    def __post_init__(self) -> None:
        if self.trials < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError("SearchConfig: trials >= 1 and steps None or >= 1 required")


def search_learning_rates(
    demos: Demonstrations, cfg: TrainConfig, search: SearchConfig
) -> dict[str, Any]:
    """The best ``lr`` and ``lr_rnn`` for ``cfg``'s model on ``demos`` (validation loss).

    Returns:
        ``{"lr", "lr_rnn", "best_val_loss", "trials": [{"lr", "lr_rnn", "val_loss"}, ...]}``.

    Raises:
        ValueError: ``cfg.val_fraction`` is 0 (the search needs validation data), or with
            ``search.start_from_config`` the config's rates lie outside the search ranges.
    """
    import optuna

    if cfg.val_fraction <= 0.0:
        raise ValueError("the learning-rate search needs validation data: val_fraction > 0")
    start = {"lr": cfg.lr, "lr_rnn": cfg.lr if cfg.lr_rnn is None else cfg.lr_rnn}
    if search.start_from_config:
        for name, value in start.items():
            low, high = getattr(search, name)
            if not low <= value <= high:
                raise ValueError(
                    f"the search starts from the config's {name} {value:g}, outside its range "
                    f"[{low:g}, {high:g}]: widen the range or set start_from_config=False"
                )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=search.seed)
    )
    if search.start_from_config:
        study.enqueue_trial(start)
    trials: list[dict[str, float]] = []

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", *search.lr, log=True)
        lr_rnn = trial.suggest_float("lr_rnn", *search.lr_rnn, log=True)
        run = replace(cfg, lr=lr, lr_rnn=lr_rnn)
        if search.steps is not None:
            run = replace(run, max_steps=search.steps, epochs=10**6, patience=10**6)
        res = train(demos, run, output=None, show_progress=False, log=lambda s: None)
        loss = res.best_val_loss if math.isfinite(res.best_val_loss) else math.inf
        trials.append({"lr": lr, "lr_rnn": lr_rnn, "val_loss": loss})
        return loss

    study.optimize(objective, n_trials=search.trials)
    best = study.best_params
    return {
        "lr": float(best["lr"]),
        "lr_rnn": float(best["lr_rnn"]),
        "best_val_loss": float(study.best_value),
        "trials": trials,
    }
