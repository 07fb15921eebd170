"""The same small learning-rate search for every model of a comparison, on validation data only.

Each model gets ``trials`` short training runs of ``steps`` optimiser steps (the same budget for
every architecture), proposed by Optuna's TPE sampler (seeded), scored by the validation loss on
held-out segments of the training data (``TrainConfig.val_fraction``; the evaluation tracks are
never seen). Searched: the head's and the recurrent core's learning rates (``lr``, ``lr_rnn``: for
the LTC the core rate also drives its ODE parameters: gleak, vleak, cm, sigma, mu, w, erev), on a
log scale.
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
        steps: optimiser steps per run.
        lr: ``(low, high)`` of the head's learning rate.
        lr_rnn: ``(low, high)`` of the core's learning rate.
        seed: the sampler's seed.
    """

    trials: int = 8
    steps: int = 200
    lr: tuple[float, float] = (1e-4, 1e-2)
    lr_rnn: tuple[float, float] = (1e-4, 3e-2)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.steps < 1:
            raise ValueError("SearchConfig: trials and steps must be >= 1")


def search_learning_rates(
    demos: Demonstrations, cfg: TrainConfig, search: SearchConfig
) -> dict[str, Any]:
    """The best ``lr`` and ``lr_rnn`` for ``cfg``'s model on ``demos`` (validation loss).

    Returns:
        ``{"lr", "lr_rnn", "best_val_loss", "trials": [{"lr", "lr_rnn", "val_loss"}, ...]}``.

    Raises:
        ValueError: ``cfg.val_fraction`` is 0 (the search needs validation data).
    """
    import optuna

    if cfg.val_fraction <= 0.0:
        raise ValueError("the learning-rate search needs validation data: val_fraction > 0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=search.seed)
    )
    trials: list[dict[str, float]] = []

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", *search.lr, log=True)
        lr_rnn = trial.suggest_float("lr_rnn", *search.lr_rnn, log=True)
        run = replace(
            cfg, lr=lr, lr_rnn=lr_rnn, max_steps=search.steps, epochs=10**6, patience=10**6
        )
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
