"""``ltc-controller record``: drive the simulator in-process and write demonstrations to rosbag2."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ltc_controller.commands import (
    float_in,
    int_in,
    output_folder,
    positive_int,
    seed,
    topic_name,
)
from ltc_controller.extras import MissingExtra, require

NAME = "record"
HELP = (
    "record expert demonstrations (camera, expert command, executed command, odometry) from the "
    "simulator into a rosbag2 (MCAP or sqlite3), faster than real time"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", type=output_folder, help="bag directory to create (must not exist)")
    p.add_argument(
        "--scenario",
        choices=("car", "drone"),
        default="car",
        help="car (lane keeping, default) or drone (fly to the target: geometry_msgs/Twist "
        "body-frame velocity setpoints, 3-D odometry; conditions of --list-conditions "
        "--scenario drone in evaluate)",
    )
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="default mcap")
    p.add_argument(
        "--compressed",
        action="store_true",
        help="write sensor_msgs/CompressedImage (JPEG) on <image-topic>/compressed",
    )
    p.add_argument(
        "--jpeg-quality", type=int_in(1, 100), default=90, help="JPEG quality (default 90)"
    )
    p.add_argument(
        "--episodes",
        type=positive_int,
        default=4,
        help="episodes, one track or world each (default 4)",
    )
    p.add_argument(
        "--episode-s",
        type=float_in(0.0, 86400.0, open_low=True),
        default=30.0,
        help="seconds per episode (30)",
    )
    p.add_argument(
        "--first-track-seed", type=seed, default=1000, help="track (drone: world) seed of episode 0"
    )
    p.add_argument("--condition", default="clean", help="scenario condition (default clean)")
    p.add_argument(
        "--speed",
        type=float_in(0.0, 50.0, open_low=True),
        default=None,
        help="driving speed in m/s (default 5; drone: the expert's cruise speed, default 1)",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of starts and perturbations")
    p.add_argument(
        "--no-perturb", action="store_true", help="clean expert (no bursts or excursions)"
    )
    p.add_argument(
        "--dagger",
        type=Path,
        default=None,
        metavar="POLICY",
        help="let this policy drive (the expert only labels, and takes over far off-centre)",
    )
    p.add_argument(
        "--command-type",
        choices=("ackermann", "twist", "twist_stamped"),
        default=None,
        help="type of the expert and executed commands: ackermann_msgs/AckermannDriveStamped "
        "(car default), or geometry_msgs/Twist (drone default) or TwistStamped carrying the "
        "car's body velocity (linear.x = speed, angular.z = speed * tan(steering) / wheelbase) "
        "or the drone's velocity setpoint (linear.x/y/z, angular.z)",
    )
    p.add_argument(
        "--image-topic", type=topic_name, default="/camera/image_raw", help="image topic"
    )
    p.add_argument(
        "--label-topic", type=topic_name, default="/expert_cmd", help="clean expert command topic"
    )
    p.add_argument(
        "--executed-topic",
        type=topic_name,
        default=None,
        help="executed command topic (default /ackermann_cmd, /cmd_vel for Twist)",
    )
    p.add_argument("--odom-topic", type=topic_name, default="/odom", help="odometry topic")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller record", "sim")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from ltc_controller.interfaces.command_axes import ACKERMANN, TWIST, TWIST_STAMPED
    from ltc_controller.models.policy_file import PolicyFileError, load_policy
    from ltc_controller.sim.scenario import PerturbationConfig
    from ltc_controller.training.bag import BagError, RecordTopics
    from ltc_controller.training.recording import RecordConfig, record

    if args.scenario == "drone":
        return _run_drone(args)
    done = _Episodes(args.output)
    ctype = {"ackermann": ACKERMANN, "twist": TWIST, "twist_stamped": TWIST_STAMPED}[
        args.command_type or "ackermann"
    ]
    executed = args.executed_topic or RecordTopics.default_executed(ctype)
    if args.speed is None:
        args.speed = 5.0
    try:
        pert = (
            PerturbationConfig.none(args.speed)
            if args.no_perturb
            else PerturbationConfig(speed_mps=args.speed)
        )
        cfg = RecordConfig(
            episodes=args.episodes,
            episode_s=args.episode_s,
            first_track_seed=args.first_track_seed,
            condition=args.condition,
            seed=args.seed,
            perturbation=pert,
        )
        if args.dagger is not None:  # e.g. the drone policy driving the car: refused
            from ltc_controller.commands.evaluate import check_car_outputs

            check_car_outputs(args.dagger)
        learner = load_policy(args.dagger) if args.dagger is not None else None
        summary = record(
            args.output,
            cfg,
            storage=args.storage,
            compressed=args.compressed,
            topics=RecordTopics(args.image_topic, args.label_topic, executed, args.odom_topic),
            command_type=ctype,
            learner=learner,
            progress=done.note,
        )
    except (BagError, PolicyFileError, ValueError, KeyError) as e:
        done.discard_empty(args.output)
        print(f"record: {e}", file=sys.stderr)
        return 2
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    return 0


class _Episodes:
    """Finished episodes of a recording (its progress callback): a recording refused before
    its first episode ended removes the bag folder it created, so that a corrected rerun to the
    same path is not refused as "already exists"; a recorded episode is never removed."""

    def __init__(self, output: Path) -> None:
        self.created = not Path(output).exists()
        self.count = 0

    def note(self, i: int, n: int) -> None:
        self.count = i
        print(f"episode {i}/{n}", file=sys.stderr)

    def discard_empty(self, output: Path) -> None:
        if self.created and self.count == 0 and Path(output).is_dir():
            shutil.rmtree(output, ignore_errors=True)


def _run_drone(args: argparse.Namespace) -> int:
    """``record --scenario drone``: the perturbed drone expert (or a DAgger policy) in seeded
    worlds, Twist setpoints (see :mod:`ltc_controller.training.drone_recording`)."""
    done = _Episodes(args.output)
    from ltc_controller.interfaces.command_axes import TWIST, TWIST_STAMPED
    from ltc_controller.models.policy_file import PolicyFileError, load_policy
    from ltc_controller.sim.drone.scenario import DronePerturbationConfig
    from ltc_controller.training.bag import BagError, RecordTopics
    from ltc_controller.training.drone_recording import DroneRecordConfig, record_drone

    if args.command_type == "ackermann":
        print(
            "record: the drone flies velocity setpoints (--command-type twist or twist_stamped)",
            file=sys.stderr,
        )
        return 2
    ctype = TWIST_STAMPED if args.command_type == "twist_stamped" else TWIST
    speed = 1.0 if args.speed is None else args.speed
    try:
        pert = (
            DronePerturbationConfig.none(speed)
            if args.no_perturb
            else DronePerturbationConfig(speed_mps=speed)
        )
        cfg = DroneRecordConfig(
            episodes=args.episodes,
            episode_s=args.episode_s,
            first_world_seed=args.first_track_seed,
            condition=args.condition,
            seed=args.seed,
            perturbation=pert,
        )
        learner = load_policy(args.dagger) if args.dagger is not None else None
        if learner is not None:
            import torch

            # Batch-1 inference: on a loaded 2-core machine a second torch thread made each
            # policy tick ~25x slower (7 ms -> 175-260 ms wall).
            torch.set_num_threads(1)
        summary = record_drone(
            args.output,
            cfg,
            storage=args.storage,
            compressed=args.compressed,
            jpeg_quality=args.jpeg_quality,
            topics=RecordTopics(
                args.image_topic,
                args.label_topic,
                args.executed_topic or "/cmd_vel",
                args.odom_topic,
            ),
            command_type=ctype,
            learner=learner,
            progress=done.note,
        )
    except (BagError, PolicyFileError, ValueError, KeyError) as e:
        done.discard_empty(args.output)
        print(f"record: {e}", file=sys.stderr)
        return 2
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    return 0
