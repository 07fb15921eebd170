"""``ltc-controller compare``: NCP-19 vs LSTM(64), LSTM(19), GRU, CT-RNN and CNN, trained on the
same data with the same learning-rate search and DAgger rounds, evaluated closed loop under the
same conditions, for the car (default) or the drone (``--scenario drone``); prints the tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ltc_controller.commands import float_in, output_folder, positive_int
from ltc_controller.extras import MissingExtra, require

NAME = "compare"
HELP = (
    "train NCP-19, LSTM(64), LSTM(19), GRU, CT-RNN and CNN on the same data with the same DAgger "
    "rounds, evaluate them closed loop in and out of distribution, print the tables (--scenario "
    "drone: the drone; --reduced: a CI-sized run)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=("car", "drone"),
        default="car",
        help="car: lane keeping (departures/km); drone: fly to the target (success rate, time to "
        "target, collisions), 4-output velocity policies (default car)",
    )
    p.add_argument(
        "--preset",
        choices=("full", "cluster", "reduced"),
        default="full",
        help="the recipe's budget: full (default; sized for about 2 h of one scenario on 2 "
        "cores), cluster (the larger budget a Ray cluster makes practical: longer training, "
        "more DAgger and evaluation), reduced (tiny data and training: minutes, for CI)",
    )
    p.add_argument("--reduced", action="store_true", help="the same as --preset reduced")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated model labels of the recipe to run (default all; e.g. "
        "'NCP-19,GRU(64)'; the first is the reference of P(improvement))",
    )
    p.add_argument("--work", type=output_folder, default="compare_out", help="output folder")
    p.add_argument("--bag", type=Path, action="append", default=[], help="use these bags")
    p.add_argument(
        "--max-pair-dt",
        type=float_in(0.0, 10.0, open_low=True),
        default=0.05,
        help="--bag pairing tolerance (s, default 0.05): as in train",
    )
    p.add_argument(
        "--label-offset-s",
        type=float_in(-60.0, 60.0),
        default=0.0,
        help="pair the frame stamped t with the command stamped t + this (s, default 0); each "
        "bag's command-image lag is estimated and logged, with a warning when large: as in train",
    )
    p.add_argument("--seeds", type=positive_int, default=None, help="training seeds per model")
    p.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes per model and condition"
    )
    p.add_argument(
        "--conditions",
        default=None,
        help="comma-separated conditions of the scenario (or 'all'; see evaluate "
        "--list-conditions [--scenario drone])",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to run the jobs on (host:port, ray://..., auto; default $RAY_ADDRESS, "
        "else a local Ray instance on this machine's cores); --work must be on a shared disk",
    )
    p.add_argument(
        "--num-cpus", type=positive_int, default=None, help="cores of the local Ray instance"
    )


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller compare", "sim", "train", "compare")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from dataclasses import replace

    from ltc_controller.training.jobs import JobsFailed, address_problem

    # Before any recording or training: a bad cluster address used to surface minutes in.
    problem = address_problem(args.address or os.environ.get("RAY_ADDRESS"))
    if problem:
        print(f"compare: {problem}", file=sys.stderr)
        return 2
    from ltc_controller.training.presets import (
        COMPARE_CLUSTER,
        COMPARE_FULL,
        COMPARE_REDUCED,
        run_compare,
        select_models,
    )

    missing = [str(b) for b in args.bag if not Path(b).exists()]
    if missing:
        print(f"compare: --bag not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.reduced and args.preset != "full":
        print(f"compare: --reduced and --preset {args.preset} conflict", file=sys.stderr)
        return 2
    preset = "reduced" if args.reduced else args.preset
    if args.scenario == "drone":
        from ltc_controller.sim.drone.conditions import parse_drone_conditions as parse_conditions
        from ltc_controller.training.drone_presets import (
            DRONE_COMPARE,
            DRONE_COMPARE_CLUSTER,
            DRONE_COMPARE_REDUCED,
        )

        recipes = {
            "full": DRONE_COMPARE,
            "cluster": DRONE_COMPARE_CLUSTER,
            "reduced": DRONE_COMPARE_REDUCED,
        }
    else:
        from ltc_controller.sim.conditions import parse_conditions  # type: ignore[assignment]

        recipes = {"full": COMPARE_FULL, "cluster": COMPARE_CLUSTER, "reduced": COMPARE_REDUCED}
    recipe = recipes[preset]
    try:
        if args.models is not None:
            recipe = replace(recipe, models=select_models(recipe.models, args.models))
        if args.seeds is not None:
            recipe = replace(recipe, seeds=tuple(range(args.seeds)))
        ev = recipe.evaluation
        if args.episodes is not None:
            ev = replace(ev, episodes=args.episodes)
        if args.conditions is not None:
            ev = replace(ev, conditions=tuple(c.name for c in parse_conditions(args.conditions)))
        recipe = replace(recipe, evaluation=ev)
        out = run_compare(
            args.work,
            recipe,
            bags=args.bag,
            label_offset_s=args.label_offset_s,
            max_pair_dt_s=args.max_pair_dt,
            log=lambda s: print(s, file=sys.stderr),
            show_progress=not args.quiet,
            address=args.address,
            num_cpus=args.num_cpus,
        )
    except (KeyError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    except JobsFailed as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("compare: interrupted; finished jobs are cached, rerun to resume", file=sys.stderr)
        return 130
    print(out["table"])
    print()
    print(out["stats_table"])
    print()
    print(out["expert_table"])
    print(out["attention_table"])
    print(out["cost_table"])
    keys = (
        "scenario",
        "report",
        "skipped",
        "training_failures",
        "learning_rates",
        "dagger",
        "wall_s",
        "jobs",
        "monitor",
        "attention",
    )
    print(json.dumps({k: out[k] for k in keys}, indent=2))
    return 0
