"""``ltc-controller monitor fit|check``: the out-of-distribution monitor of a policy file.

- ``fit``: read in-distribution bags (e.g. the training bags), compute the feature statistics
  of the policy's head on part of their segments and calibrate the thresholds on the rest
  (:func:`~ltc_controller.training.monitor.fit_monitor`), write the policy file with them
  (``--output``; the input file is never changed in place unless ``--output`` names it).
- ``evaluate``: drive the policy closed loop (car simulator; ``--scenario drone``: fly it in
  the drone's worlds) under conditions with the monitor attached (the episodes of
  ``ltc-controller evaluate``, whose report carries the same columns), and print per condition
  the AUROC, false alarms per 10 minutes, the failures (car: departures; drone: collisions and
  time-outs) flagged at least 1 s ahead, and what a hand-over at FAULT would have done (failures
  avoided, needless fallbacks): :mod:`ltc_controller.training.ood_evaluation`.
- ``check``: score the frames of bags with a fitted policy: per bag the score quantiles, the share
  of frames above each threshold, the alarm onsets per 10 minutes, and with ``--clean BAG`` the
  AUROC of per-frame scores (each bag against the clean one: 0.5 = no separation, 1 = perfect);
  the same for the attention monitor's pair scores when the file has its calibration.

``fit`` also calibrates the attention monitor (saliency instability between consecutive frames,
:class:`~ltc_controller.models.ood.AttentionStats`) on the same calibration frames, unless
``--attention-every-n 0``.

Both read only the camera topic (``--image-topic``): the monitor scores frames, so a bag of
camera footage without commands can be fitted on and checked.

Exit status: 0 done; 2 bad arguments, unreadable bag or policy file, or no statistics to check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ltc_controller.commands import (
    at_least,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    seed,
)

NAME = "monitor"
HELP = "fit or check a policy's out-of-distribution monitors (features, attention) from bags"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True)
    fit = sub.add_parser("fit", help="fit the statistics and thresholds, write the policy file")
    chk = sub.add_parser("check", help="score bags with a fitted policy (AUROC with --clean)")
    for sp in (fit, chk):
        sp.add_argument("--policy", type=Path, default=None, help="policy file (default: bundled)")
        sp.add_argument("--bag", type=Path, action="append", default=[], help="rosbag2 (repeat)")
        sp.add_argument(
            "--image-topic",
            default="/camera/image_raw",
            help="Image or CompressedImage topic, the only one read (default /camera/image_raw)",
        )
        sp.add_argument("--max-frames", type=int, default=None, help="frames per bag at most")
    ev = sub.add_parser("evaluate", help="closed loop with the monitor: flagged failures, alarms")
    ev.add_argument("--policy", type=Path, default=None, help="policy file with statistics")
    ev.add_argument(
        "--scenario",
        choices=("car", "drone"),
        default="car",
        help="car (lane keeping, default) or drone (fly to the target; a velocity policy)",
    )
    ev.add_argument(
        "--conditions",
        default=None,
        help="comma-separated conditions (default car: clean,noise_0.2,dim,road_texture,"
        "occlusion; drone: clean,autumn,range,target_occluded,distractors)",
    )
    ev.add_argument(
        "--episodes",
        type=positive_int,
        default=2,
        help="episodes (tracks or worlds) per condition",
    )
    ev.add_argument(
        "--distance",
        type=positive_float,
        default=None,
        help="car: m per episode (default 300)",
    )
    ev.add_argument(
        "--time-limit",
        type=positive_float,
        default=None,
        help="drone: s per episode at most (default: the world's time limit)",
    )
    ev.add_argument("--first-track-seed", type=seed, default=5000, help="first track/world seed")
    ev.add_argument(
        "--speed",
        type=positive_float,
        default=None,
        help="car: driving speed (m/s, default 5); the hand-over brakes from it at 4 m/s²",
    )
    ev.add_argument(
        "--latency",
        type=float,
        default=None,
        help="car: frame-to-command latency (s, default 0.02)",
    )
    ev.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1, as in evaluate: more threads contend on a loaded "
        "machine)",
    )
    ev.add_argument(
        "--output", type=output_file, default=None, help="also write the table here (.md)"
    )
    fit.add_argument("--output", "-o", type=output_file, required=True, help="policy file to write")
    fit.add_argument("--window-s", type=positive_float, default=1.0, help="EMA time constant (s)")
    fit.add_argument(
        "--false-alarms-per-10min",
        type=at_least(0.0),
        default=1.0,
        help="alarm onsets allowed on the held-out frames per 10 minutes (default 1)",
    )
    fit.add_argument(
        "--margin", type=at_least(1.0), default=1.1, help="factor on the calibrated level"
    )
    fit.add_argument(
        "--fault-factor", type=at_least(1.0), default=2.0, help="fault = this x degraded"
    )
    fit.add_argument(
        "--attention-every-n",
        type=non_negative_int,
        default=1,
        help="attention monitor: one pair of consecutive frames scored every N frames (default "
        "1: every frame); 0 = fit no attention monitor",
    )
    fit.add_argument(
        "--calibration-bag",
        type=Path,
        action="append",
        default=[],
        help="in-distribution driving without perturbations (e.g. `record --no-perturb` on "
        "unseen tracks) to calibrate the thresholds on; then every --bag frame goes into the "
        "statistics (repeat)",
    )
    fit.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.3,
        help="without --calibration-bag: share of the --bag frames (whole segments) to "
        "calibrate on (default 0.3)",
    )
    chk.add_argument("--clean", type=Path, default=None, help="in-distribution bag for AUROC")


def _read(args: argparse.Namespace, bag: Path, policy: Any) -> Any:
    """The bag's frames at the policy's input (:class:`~ltc_controller.training.bag.Frames`)."""
    from ltc_controller.training.bag import read_policy_frames

    cfg = policy.config
    c = cfg.crop
    return read_policy_frames(
        bag,
        args.image_topic,
        height=cfg.image_height,
        width=cfg.image_width,
        crop=(c.top, c.bottom, c.left, c.right),
        max_frames=args.max_frames,
    )


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    from ltc_controller.models.policy_file import BUNDLED_POLICY, PolicyFileError, load_policy
    from ltc_controller.training.bag import BagError, Frames

    if args.verb == "evaluate":
        return _evaluate(args)
    if not args.bag:
        print("monitor: give at least one --bag", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.policy or BUNDLED_POLICY)
        demos = [_read(args, b, policy) for b in args.bag]
        clean = _read(args, args.clean, policy) if getattr(args, "clean", None) else None
        calib = [_read(args, b, policy) for b in getattr(args, "calibration_bag", [])]
    except (PolicyFileError, BagError, ValueError, KeyError, OSError) as e:
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    if args.verb == "fit":
        cal = Frames.concatenate(calib) if calib else None
        return _fit(args, policy, Frames.concatenate(demos), cal)
    return _check(args, policy, demos, clean)


def _fit(args: argparse.Namespace, policy: Any, demos: Any, calibration: Any) -> int:
    from ltc_controller.models.policy_file import save_policy
    from ltc_controller.training.monitor import fit_monitor, statistics_warning

    try:
        stats = fit_monitor(
            policy,
            demos,
            heldout_fraction=args.heldout_fraction,
            calibration=calibration,
            window_s=args.window_s,
            false_alarms_per_10min=args.false_alarms_per_10min,
            margin=args.margin,
            fault_factor=args.fault_factor,
        )
    except ValueError as e:
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    policy.feature_stats = stats
    attention = None
    if args.attention_every_n > 0:
        from ltc_controller.training.monitor import fit_attention

        try:
            attention = fit_attention(
                policy,
                demos,
                heldout_fraction=args.heldout_fraction,
                calibration=calibration,
                every_n_frames=args.attention_every_n,
                window_s=args.window_s,
                false_alarms_per_10min=args.false_alarms_per_10min,
                margin=args.margin,
                fault_factor=args.fault_factor,
            )
        except ValueError as e:
            print(f"monitor: attention: {e}", file=sys.stderr)
            return 2
    policy.attention_stats = attention
    save_policy(policy, args.output)
    few = statistics_warning(stats)
    if few:
        print(f"monitor: warning: {few}", file=sys.stderr)
    c = stats.calibration
    print(
        f"monitor: {stats.features} features; statistics from {c['train_frames']} frames, "
        f"thresholds calibrated on {c['heldout_frames']} "
        f"{'calibration' if calibration is not None else 'held-out'} frames "
        f"({c['heldout_minutes']:.1f} min): degraded {stats.degraded:.3f}, fault "
        f"{stats.fault:.3f} (EMA over {stats.window_s:g} s); held-out alarm onsets "
        f"{c['heldout_onsets_degraded']} degraded, {c['heldout_onsets_fault']} fault; "
        f"training score p50 {c['train_score_p50']:.3f} p99 {c['train_score_p99']:.3f}"
    )
    if attention is not None:
        a = attention.calibration
        print(
            f"attention: {a['heldout_frames']} pairs (one every {attention.every_n_frames} "
            f"frame(s), at most {attention.pair_gap_s * 1e3:.0f} ms apart) over "
            f"{a['heldout_minutes']:.1f} min: degraded {attention.degraded:.4f}, fault "
            f"{attention.fault:.4f}; alarm onsets {a['heldout_onsets_degraded']} degraded, "
            f"{a['heldout_onsets_fault']} fault; pair score p50 {a['heldout_score_p50']:.4f} "
            f"p99 {a['heldout_score_p99']:.4f}"
        )
    print(f"wrote {args.output}")
    return 0


def _check(args: argparse.Namespace, policy: Any, demos: list[Any], clean: Any) -> int:
    import numpy as np

    from ltc_controller.models.ood import alarm_onsets, auroc, ema_scores
    from ltc_controller.training.monitor import head_features

    stats = _stats(args, policy)
    if stats is None:
        return 2

    def scored(d: Any) -> tuple[Any, list[Any], float]:
        s = stats.scores(head_features(policy, d.images))
        t = d.stamps_ns.astype(np.float64) * 1e-9
        emas, minutes = [], 0.0
        for seg in np.unique(d.segment):
            i = np.flatnonzero(d.segment == seg)
            emas.append(ema_scores(s[i], t[i], stats.window_s))
            minutes += float(t[i[-1]] - t[i[0]]) / 60.0
        return s, emas, minutes

    ref = scored(clean)[0] if clean is not None else None
    print(
        f"thresholds: degraded {stats.degraded:.3f}, fault {stats.fault:.3f} "
        f"(EMA over {stats.window_s:g} s)"
    )
    print(
        "| bag | frames | score p50 | p99 | EMA > degraded | EMA > fault | onsets/10 min |"
        + (" AUROC vs clean |" if ref is not None else "")
    )
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref is not None else ""))
    for bag, d in zip(args.bag, demos, strict=True):
        s, emas, minutes = scored(d)
        e = np.concatenate(emas)
        rate = alarm_onsets(emas, stats.degraded) / max(minutes, 1e-9) * 10.0
        row = (
            f"| {bag.name} | {len(s)} | {np.median(s):.2f} | {np.quantile(s, 0.99):.2f} | "
            f"{np.mean(e > stats.degraded):.1%} | {np.mean(e > stats.fault):.1%} | {rate:.1f} |"
        )
        if ref is not None:
            row += f" {auroc(ref, s):.3f} |"
        print(row)
    if policy.attention_stats is not None:
        _check_attention(args, policy, demos, clean)
    return 0


def _check_attention(args: argparse.Namespace, policy: Any, demos: list[Any], clean: Any) -> None:
    """The attention monitor's table: per bag its pair scores, EMA above the thresholds,
    alarm onsets per 10 minutes and the AUROC of pair scores against the clean bag."""
    import numpy as np

    from ltc_controller.models.ood import alarm_onsets, auroc, ema_scores
    from ltc_controller.training.monitor import attention_scores

    st = policy.attention_stats

    def scored(d: Any) -> tuple[Any, list[Any], float]:
        s, ok = attention_scores(policy, d, st.every_n_frames, st.pair_gap_s)
        t = d.stamps_ns.astype(np.float64) * 1e-9
        emas, minutes = [], 0.0
        for seg in np.unique(d.segment):
            i = np.flatnonzero((d.segment == seg) & ok)
            if len(i):
                emas.append(ema_scores(s[i], t[i], st.window_s))
                minutes += float(t[i[-1]] - t[i[0]]) / 60.0
        return s[ok], emas, minutes

    ref = scored(clean)[0] if clean is not None else None
    print(
        f"attention (saliency instability, one pair every {st.every_n_frames} frame(s)): "
        f"degraded {st.degraded:.4f}, fault {st.fault:.4f} (EMA over {st.window_s:g} s)"
    )
    print(
        "| bag | pairs | score p50 | p99 | EMA > degraded | EMA > fault | onsets/10 min |"
        + (" AUROC vs clean |" if ref is not None else "")
    )
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref is not None else ""))
    for bag, d in zip(args.bag, demos, strict=True):
        s, emas, minutes = scored(d)
        if not len(s):
            print(f"| {bag.name} | 0 | | | | | |" + (" |" if ref is not None else ""))
            continue
        e = np.concatenate(emas)
        rate = alarm_onsets(emas, st.degraded) / max(minutes, 1e-9) * 10.0
        row = (
            f"| {bag.name} | {len(s)} | {np.median(s):.4f} | {np.quantile(s, 0.99):.4f} | "
            f"{np.mean(e > st.degraded):.1%} | {np.mean(e > st.fault):.1%} | {rate:.1f} |"
        )
        if ref is not None and len(ref):
            row += f" {auroc(ref, s):.3f} |"
        print(row)


def _evaluate(args: argparse.Namespace) -> int:
    from ltc_controller.commands.demo import DRONE_POLICY
    from ltc_controller.extras import MissingExtra, require
    from ltc_controller.models.policy_file import BUNDLED_POLICY, PolicyFileError, load_policy

    try:
        require("ltc-controller monitor evaluate", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from ltc_controller.commands.evaluate import check_car_outputs
    from ltc_controller.training.evaluation import ModelEntry
    from ltc_controller.training.ood_evaluation import (
        DRONE_STOP_S,
        MonitorLog,
        car_stop_s,
        monitor_tables,
    )

    drone = args.scenario == "drone"
    car_only = {"--distance": args.distance, "--speed": args.speed, "--latency": args.latency}
    other = next((k for k, v in car_only.items() if v is not None), None) if drone else None
    if not drone and args.time_limit is not None:
        other = "--time-limit"
    if other is not None:
        print(
            f"monitor: {other} applies to the {'car' if drone else 'drone'} only", file=sys.stderr
        )
        return 2
    path = args.policy or (DRONE_POLICY if drone else BUNDLED_POLICY)
    try:
        if not drone:  # e.g. the drone policy given to the car: refused, as evaluate does
            check_car_outputs(Path(path))
        policy = load_policy(path)
        run = _drone_runner(args) if drone else _car_runner(args)
    except (PolicyFileError, KeyError, ValueError) as e:
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    stats = _stats(args, policy)
    if stats is None:
        return 2
    log = MonitorLog()
    try:
        run(ModelEntry("policy", Path(path)), log)
    except (PolicyFileError, ValueError) as e:  # e.g. a car policy flown as the drone
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    stop_s, failures = (
        (DRONE_STOP_S, "failures") if drone else (car_stop_s(_car_speed(args)), "departures")
    )
    # The same tables as the per-model ones of `evaluate`'s report.
    table = monitor_tables(log.episodes, failures, stop_s)
    print(table)
    if args.output is not None:
        args.output.write_text(table + "\n")
    return 0


def _car_runner(args: argparse.Namespace) -> Any:
    """``run(model, log)`` flying ``monitor evaluate``'s car episodes (``evaluate``'s).

    Raises:
        KeyError: an unknown condition. ValueError: a bad protocol.
    """
    import torch

    from ltc_controller.sim.conditions import parse_conditions
    from ltc_controller.training.evaluation import EvalConfig, evaluate

    cfg = EvalConfig(
        conditions=tuple(
            c.name
            for c in parse_conditions(
                args.conditions or "clean,noise_0.2,dim,road_texture,occlusion"
            )
        ),
        episodes=args.episodes,
        first_track_seed=args.first_track_seed,
        speed_mps=_car_speed(args),
        latency_s=0.02 if args.latency is None else args.latency,
        distance_m=300.0 if args.distance is None else args.distance,
    )
    torch.set_num_threads(args.threads)
    return lambda model, log: evaluate([model], cfg, progress=print, monitor=log)


def _car_speed(args: argparse.Namespace) -> float:
    """``--speed`` (m/s), default 5."""
    return 5.0 if args.speed is None else float(args.speed)


def _drone_runner(args: argparse.Namespace) -> Any:
    """``run(model, log)`` flying ``monitor evaluate --scenario drone``'s episodes
    (``evaluate --scenario drone``'s: worlds from ``--first-track-seed``, one torch thread).

    Raises:
        KeyError: an unknown condition. ValueError: a bad protocol.
    """
    import torch

    from ltc_controller.sim.drone.conditions import parse_drone_conditions
    from ltc_controller.training.drone_evaluation import DroneEvalConfig, evaluate_drone

    cfg = DroneEvalConfig(
        conditions=tuple(
            c.name
            for c in parse_drone_conditions(
                args.conditions or "clean,autumn,range,target_occluded,distractors"
            )
        ),
        episodes=args.episodes,
        first_world_seed=args.first_track_seed,
        max_time_s=args.time_limit,
    )
    torch.set_num_threads(args.threads)  # default 1: batch-1 inference, more threads contend
    return lambda model, log: evaluate_drone([model], cfg, progress=print, monitor=log)


def _stats(args: argparse.Namespace, policy: Any) -> Any:
    """The policy's monitor statistics, or None after saying on stderr that it has none."""
    if policy.feature_stats is None:
        print(
            f"monitor: {args.policy or 'the bundled policy'} has no statistics "
            "(run `ltc-controller monitor fit`)",
            file=sys.stderr,
        )
    return policy.feature_stats
