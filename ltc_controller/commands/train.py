"""``ltc-controller train``: behaviour cloning from rosbag2 demonstrations into a policy file.

Distributed: ``torchrun --nproc_per_node N -m ltc_controller train ...`` (gloo on CPU, nccl on
CUDA); every process reads the bags, rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ltc_controller.commands import (
    float_in,
    non_negative_int,
    output_file,
    output_folder,
    positive_float,
    seed,
    topic_name,
)
from ltc_controller.extras import MissingExtra, require

NAME = "train"
HELP = (
    "train a policy (NCP-19 and baselines) from rosbag2 bags, or `--preset bundled` to record "
    "data and train the bundled NCP-19 in one go"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=("bundled", "drone"),
        default=None,
        help="bundled: record expert + DAgger data and train the shipped NCP-19; drone: record "
        "drone expert + DAgger data, train the shipped 4-output velocity NCP and evaluate it "
        "(a rerun with the same --work resumes from its bags and epoch checkpoints; both ignore "
        "--bag)",
    )
    p.add_argument("--work", type=output_folder, default="train_work", help="preset work folder")
    p.add_argument("--bag", type=Path, action="append", default=[], help="rosbag2 (repeatable)")
    p.add_argument(
        "--image-topic",
        type=topic_name,
        default="/camera/image_raw",
        help="Image or CompressedImage",
    )
    p.add_argument(
        "--command-topic", type=topic_name, default="/expert_cmd", help="command (label) topic"
    )
    p.add_argument(
        "--command-field",
        action="append",
        default=None,
        help="dotted field(s) to learn, repeatable (default: the steering axis, "
        "drive.steering_angle for Ackermann, angular.z for Twist; 'all': every command axis "
        "of the type, e.g. linear.x linear.y linear.z angular.z); outputs are named after the "
        "command axes (steering_angle, speed, linear_x, ..., angular_z) that ltc_policy maps",
    )
    p.add_argument(
        "--max-pair-dt",
        type=float_in(0.0, 10.0, open_low=True),
        default=0.05,
        help="pairing tolerance (s, default 0.05): each frame gets the command nearest to its "
        "stamp + --label-offset-s, if within this; frames without one are dropped (unpaired)",
    )
    p.add_argument(
        "--label-offset-s",
        type=float_in(-60.0, 60.0),
        default=0.0,
        help="pair the frame stamped t with the command stamped t + this (s, default 0). "
        "Commands stamped late by half a frame or more otherwise label every frame with another "
        "frame's command, silently; each bag's command-image lag is estimated and printed "
        "(warning when large): pass that estimate here",
    )
    p.add_argument(
        "--check-data",
        action="store_true",
        help="read the bags, print the pairing counts and each bag's command-image lag as JSON, "
        "and stop (no training)",
    )
    p.add_argument(
        "--max-gap", type=positive_float, default=0.3, help="gap that starts a segment (s)"
    )
    p.add_argument(
        "--arch",
        default="ncp_ltc",
        help="architecture: ncp_ltc (default), ltc_fc, cfc, ncp_cfc, lstm, gru, ctrnn or cnn",
    )
    p.add_argument("--units", type=int, default=None, help="hidden units (lstm, gru, ...)")
    p.add_argument("--output", "-o", type=output_file, default="policy.safetensors")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=16, help="frames per window (T)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step and process")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate of the conv head")
    p.add_argument("--lr-rnn", type=float, default=5e-3, help="learning rate of the rest")
    p.add_argument("--loss-alpha", type=float, default=0.5, help="turn weighting exp(a|y|/s)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=3, help="early stopping patience (epochs)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--step-s", type=float, default=0.05, help="integration step (s)")
    p.add_argument(
        "--feature-norm",
        choices=("layer", "none"),
        default="layer",
        help="normalise the head's features per frame before the core (layer, default: keeps "
        "an LTC's sigmoid synapses out of saturation, whose staircase output oscillated in "
        "closed loop) or feed them raw (none, the papers' heads)",
    )
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--threads", type=non_negative_int, default=1, help="CPU threads (0 = torch default)"
    )
    p.add_argument(
        "--checkpoint", type=output_folder, default=None, help="checkpoint folder (per epoch)"
    )
    p.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many per bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rank-weights-dir", type=Path, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:  # the bundled preset records its data in the simulator
        require("ltc-controller train", "train", *(("sim",) if args.preset else ()))
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from ltc_controller.training.bag import BagError, Demonstrations, read_demonstrations
    from ltc_controller.training.trainer import AugmentConfig, TrainConfig, train

    if args.preset == "bundled":
        from ltc_controller.training.presets import train_bundled

        summary = train_bundled(args.work, args.output)
        print(json.dumps(summary, indent=2))
        return 0
    if args.preset == "drone":
        from ltc_controller.training.drone_presets import train_drone

        summary = train_drone(
            args.work,
            args.output,
            log=lambda s: print(s, file=sys.stderr),
            show_progress=not args.quiet,
        )
        print(json.dumps(summary, indent=2))
        return 0
    if not args.bag:
        print("train: give at least one --bag (or --preset bundled)", file=sys.stderr)
        return 2
    from ltc_controller.models.policy import ARCHITECTURES

    if args.arch not in ARCHITECTURES:
        # Before the bags are read: --check-data would otherwise pass with an arch train refuses.
        print(
            f"train: --arch {args.arch!r} is not an architecture; choose from "
            f"{', '.join(ARCHITECTURES)}",
            file=sys.stderr,
        )
        return 2
    try:
        demos = Demonstrations.concatenate(
            [
                read_demonstrations(
                    bag,
                    args.image_topic,
                    args.command_topic,
                    command_fields=args.command_field,
                    max_pair_dt_s=args.max_pair_dt,
                    label_offset_s=args.label_offset_s,
                    max_gap_s=args.max_gap,
                    max_frames=args.max_frames,
                )
                for bag in args.bag
            ]
        )
        outputs = zip(demos.output_names, demos.output_units, strict=True)
        print(
            f"data: {len(demos)} frames in {int(demos.segment.max()) + 1} segments "
            f"from {len(args.bag)} bag(s) {demos.stats}; outputs "
            + ", ".join(f"{n} ({u or '-'})" for n, u in outputs)
            + "; command-image lag (s): "
            + (", ".join(f"{e.lag_s:+.3f}" for e in demos.lag_estimates) or "not estimated")
            + f"; --label-offset-s {args.label_offset_s:g}",
            file=sys.stderr,
        )
        for w in demos.lag_warnings():
            print(f"train: warning: {w}", file=sys.stderr)
        if args.check_data:
            print(json.dumps(_data_report(args, demos), indent=2))
            return 0
        cfg = TrainConfig(
            arch=args.arch,
            units=args.units,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            epochs=args.epochs,
            max_steps=args.max_steps,
            lr=args.lr,
            lr_rnn=args.lr_rnn,
            loss_alpha=args.loss_alpha,
            val_fraction=args.val_fraction,
            patience=args.patience,
            seed=args.seed,
            step_s=args.step_s,
            feature_norm=args.feature_norm,
            augment=AugmentConfig.off() if args.no_augment else AugmentConfig(),
            device=args.device,
            threads=args.threads,
        )
        result = train(
            demos,
            cfg,
            output=args.output,
            checkpoint_dir=args.checkpoint,
            resume=args.resume,
            show_progress=not args.quiet,
            log=lambda s: print(s, file=sys.stderr),
            rank_weights_dir=args.rank_weights_dir,
        )
    except (BagError, ValueError, FileNotFoundError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "output": str(args.output),
                "best_val_loss": result.best_val_loss,
                "steps": result.steps,
                "epochs": len(result.history),
                "stopped_early": result.stopped_early,
                "wall_s": round(result.wall_s, 1),
            },
            indent=2,
        )
    )
    return 0


def _data_report(args: argparse.Namespace, demos: Any) -> dict[str, Any]:
    """What ``--check-data`` prints: pairing counts, outputs and each bag's lag estimate."""
    return {
        "bags": [str(b) for b in args.bag],
        "frames": len(demos),
        "segments": int(demos.segment.max()) + 1,
        "stats": demos.stats,
        "outputs": dict(zip(demos.output_names, demos.output_units, strict=True)),
        "max_pair_dt_s": args.max_pair_dt,
        "label_offset_s": args.label_offset_s,
        "lag": [e.as_dict() for e in demos.lag_estimates],
        "warnings": demos.lag_warnings(),
    }
