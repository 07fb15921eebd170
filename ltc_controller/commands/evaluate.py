"""``ltc-controller evaluate``: closed-loop episodes per policy and condition, and a report.

Policy files that carry the out-of-distribution monitor's statistics (``monitor fit``) have the
monitor recorded in the same episodes; the report gains its section (AUROC per shift, false
alarms, failures flagged ahead, with and without the hand-over), a file without them is listed
as ``monitor: unavailable``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ltc_controller.commands import float_in, output_folder, positive_float, positive_int, seed
from ltc_controller.extras import MissingExtra, require

NAME = "evaluate"
HELP = (
    "drive policies closed loop in the simulator under named conditions (clean, noise_0.1, ...) "
    "and write a Markdown + PNG report"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="[LABEL=]FILE",
        help="policy file, repeatable; files sharing a LABEL are training seeds of one model "
        "(default label: the file's architecture)",
    )
    p.add_argument(
        "--scenario",
        choices=("car", "drone"),
        default="car",
        help="car (lane keeping, default) or drone (fly to the target in unseen worlds: success "
        "rate, time to target, final distance, collisions per condition)",
    )
    p.add_argument("--expert", action="store_true", help="also drive the privileged expert")
    p.add_argument(
        "--conditions",
        default="clean",
        help="comma-separated condition names, or 'all' (default clean); see --list-conditions",
    )
    p.add_argument("--list-conditions", action="store_true", help="print the conditions and exit")
    p.add_argument(
        "--episodes", type=positive_int, default=5, help="episodes per policy and condition"
    )
    p.add_argument("--first-track-seed", type=seed, default=5000, help="seed of the first track")
    p.add_argument(
        "--speed",
        type=float_in(0.0, 50.0, open_low=True),
        default=None,
        help="car: driving speed (m/s, default 5)",
    )
    p.add_argument(
        "--latency", type=float_in(0.0, 1.0), default=0.02, help="frame-to-command latency (s)"
    )
    p.add_argument(
        "--distance",
        type=float_in(0.0, 1e6, open_low=True),
        default=None,
        help="metres per episode (one lap)",
    )
    p.add_argument(
        "--track-length", type=positive_float, default=None, help="lap length of the tracks (m)"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument(
        "--attention",
        action="store_true",
        help="add the attention-robustness section (saliency SSIM under camera noise "
        "σ² = 0.1/0.2/0.3, Lechner et al. 2020) for the first file of each label",
    )
    p.add_argument("--output", "-o", type=output_folder, default="eval_out", help="report folder")


def parse_policy_args(items: list[str]) -> list[tuple[str | None, Path]]:
    """``["ncp=a.safetensors", "b.safetensors"]`` -> ``[("ncp", a), (None, b)]``."""
    out: list[tuple[str | None, Path]] = []
    for it in items:
        label, sep, path = it.partition("=")
        out.append((label, Path(path)) if sep else (None, Path(it)))
    return out


def default_label(path: Path) -> str:
    """``architecture`` (+ ``units``) from the file's config."""
    from ltc_controller.models.policy_file import load_policy

    cfg = load_policy(path).config
    units = getattr(cfg, "units", None)
    return cfg.architecture + (f"({units})" if units else "")


#: Outputs of a car policy trained on Twist commands (yaw rate, and optionally speed).
_CAR_TWIST_OUTPUTS = frozenset({"angular_z", "linear_x", "speed"})


def check_car_outputs(path: Path | None) -> None:
    """Refuse a policy whose outputs the car cannot drive.

    The car steers with ``steering_angle`` (Ackermann-trained) or with ``angular_z``
    (Twist-trained; :class:`~ltc_controller.training.closed_loop.PolicyDriver`); a policy with
    other axes (``linear_y``, ``linear_z``: the drone's) is refused.

    Raises:
        ParameterError (a ValueError): the outputs do not map to the car's command.
    """
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.nodes.policy_logic import CommandMapping, check_outputs

    if path is None:
        return
    names = load_policy(path).config.output_names
    if "angular_z" in names and set(names) <= _CAR_TWIST_OUTPUTS:
        return
    check_outputs(CommandMapping(), names, f"{path} for --scenario car")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    import torch

    from ltc_controller.models.policy_file import PolicyFileError
    from ltc_controller.sim.conditions import CONDITIONS, parse_conditions
    from ltc_controller.training.evaluation import (
        EXPERT,
        EvalConfig,
        ModelEntry,
        evaluate,
        write_report,
    )
    from ltc_controller.training.ood_evaluation import MonitorLog

    if args.scenario == "drone":
        return _run_drone(args)
    if args.list_conditions:
        for c in CONDITIONS.values():
            print(f"{c.name:14s} {c.description}")
        return 0
    try:
        require("ltc-controller evaluate", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    try:
        conds = tuple(c.name for c in parse_conditions(args.conditions))
        cfg = EvalConfig(
            conditions=conds,
            episodes=args.episodes,
            first_track_seed=args.first_track_seed,
            speed_mps=5.0 if args.speed is None else args.speed,
            latency_s=args.latency,
            distance_m=args.distance,
            track_length_m=args.track_length,
        )
        models = [
            ModelEntry(label or default_label(path), path)
            for label, path in parse_policy_args(args.policy)
        ]
        for m in models:  # e.g. a drone policy given to the car: refused, as the demo does
            check_car_outputs(m.path)
        if args.expert:
            models.append(ModelEntry(EXPERT, None))
        if not models:
            print("evaluate: give --policy FILE (repeatable) and/or --expert", file=sys.stderr)
            return 2
        monitor = MonitorLog()
        records, sizes = evaluate(
            models, cfg, progress=lambda s: print(s, file=sys.stderr), monitor=monitor
        )
    except (PolicyFileError, KeyError, ValueError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    report = write_report(args.output, records, sizes, cfg, monitor=monitor)
    if args.attention:
        from ltc_controller.explain.robustness import attention_robustness_section

        first: dict[str, Path] = {}
        for m in models:
            if m.path is not None:
                first.setdefault(m.label, Path(m.path))
        with report.open("a") as f:
            f.write("\n" + attention_robustness_section(first) + "\n")
    print(report.read_text())
    print(f"report: {report}", file=sys.stderr)
    return 0


def _run_drone(args: argparse.Namespace) -> int:
    """``evaluate --scenario drone``: fly velocity policies per drone condition (see
    :mod:`ltc_controller.training.drone_evaluation`); ``--first-track-seed`` is the first world
    seed."""
    from ltc_controller.sim.drone.conditions import DRONE_CONDITIONS, parse_drone_conditions

    if args.list_conditions:
        for c in DRONE_CONDITIONS.values():
            print(f"{c.name:16s} {c.description}")
        return 0
    ignored = [
        f"--{n.replace('_', '-')}"
        for n in ("attention", "distance", "track_length", "speed")
        if getattr(args, n) not in (None, False)
    ]
    if ignored:
        print(f"evaluate: {', '.join(ignored)} apply to the car only", file=sys.stderr)
        return 2
    try:
        require("ltc-controller evaluate", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    import torch

    from ltc_controller.models.policy_file import PolicyFileError
    from ltc_controller.training.drone_evaluation import (
        DroneEvalConfig,
        evaluate_drone,
        write_drone_report,
    )
    from ltc_controller.training.evaluation import EXPERT, ModelEntry
    from ltc_controller.training.ood_evaluation import MonitorLog

    torch.set_num_threads(max(1, args.threads))
    try:
        cfg = DroneEvalConfig(
            conditions=tuple(c.name for c in parse_drone_conditions(args.conditions)),
            episodes=args.episodes,
            first_world_seed=args.first_track_seed,
            latency_s=args.latency,
        )
        models = [
            ModelEntry(label or default_label(path), path)
            for label, path in parse_policy_args(args.policy)
        ]
        if args.expert:
            models.append(ModelEntry(EXPERT, None))
        if not models:
            print("evaluate: give --policy FILE (repeatable) and/or --expert", file=sys.stderr)
            return 2
        monitor = MonitorLog()
        records, sizes = evaluate_drone(
            models, cfg, progress=lambda s: print(s, file=sys.stderr), monitor=monitor
        )
    except (PolicyFileError, KeyError, ValueError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    report = write_drone_report(args.output, records, sizes, cfg, monitor=monitor)
    print(report.read_text())
    print(f"report: {report}", file=sys.stderr)
    return 0
