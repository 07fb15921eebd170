"""``ltc-controller record``: drive the simulator in-process and write demonstrations to rosbag2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ltc_controller.extras import MissingExtra, require

NAME = "record"
HELP = (
    "record expert demonstrations (camera, expert command, executed command, odometry) from the "
    "simulator into a rosbag2 (MCAP or sqlite3), faster than real time"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", type=Path, help="bag directory to create (must not exist)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="default mcap")
    p.add_argument(
        "--compressed",
        action="store_true",
        help="write sensor_msgs/CompressedImage (JPEG) on <image-topic>/compressed",
    )
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--episodes", type=int, default=4, help="episodes, one track each (default 4)")
    p.add_argument("--episode-s", type=float, default=30.0, help="seconds per episode (30)")
    p.add_argument("--first-track-seed", type=int, default=1000, help="track seed of episode 0")
    p.add_argument("--condition", default="clean", help="scenario condition (default clean)")
    p.add_argument("--speed", type=float, default=5.0, help="driving speed in m/s (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of starts and perturbations")
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
        default="ackermann",
        help="type of the expert and executed commands: ackermann_msgs/AckermannDriveStamped "
        "(default), or geometry_msgs/Twist or TwistStamped carrying the car's body velocity "
        "(linear.x = speed, angular.z = speed * tan(steering) / wheelbase)",
    )
    p.add_argument("--image-topic", default="/camera/image_raw", help="image topic")
    p.add_argument("--label-topic", default="/expert_cmd", help="clean expert command topic")
    p.add_argument(
        "--executed-topic",
        default=None,
        help="executed command topic (default /ackermann_cmd, /cmd_vel for Twist)",
    )
    p.add_argument("--odom-topic", default="/odom", help="odometry topic")


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

    ctype = {"ackermann": ACKERMANN, "twist": TWIST, "twist_stamped": TWIST_STAMPED}[
        args.command_type
    ]
    executed = args.executed_topic or RecordTopics.default_executed(ctype)
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
        learner = load_policy(args.dagger) if args.dagger is not None else None
        summary = record(
            args.output,
            cfg,
            storage=args.storage,
            compressed=args.compressed,
            topics=RecordTopics(args.image_topic, args.label_topic, executed, args.odom_topic),
            command_type=ctype,
            learner=learner,
            progress=lambda i, n: print(f"episode {i}/{n}", file=sys.stderr),
        )
    except (BagError, PolicyFileError, ValueError, KeyError) as e:
        print(f"record: {e}", file=sys.stderr)
        return 2
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    return 0
