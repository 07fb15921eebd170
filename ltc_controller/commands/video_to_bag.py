"""``ltc-controller video-to-bag``: a video file as a rosbag2 of ``sensor_msgs/CompressedImage``
with stamps from its frame rate (see :func:`ltc_controller.explain.video.video_to_bag`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ltc_controller.commands import output_folder
from ltc_controller.extras import MissingExtra, require

NAME = "video-to-bag"
HELP = (
    "turn a video file (MP4, ...) into a rosbag2 of sensor_msgs/CompressedImage (JPEG) stamped "
    "from its frame rate, for explain, replay or evaluation on real footage"
)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``; raises ``argparse.ArgumentTypeError``."""
    w, sep, h = text.lower().partition("x")
    if not sep or not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"--resize {text!r}: expected WIDTHxHEIGHT, e.g. 480x270")
    return int(w), int(h)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path, help="video file")
    p.add_argument("output", type=output_folder, help="bag directory to create (must not exist)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="default mcap")
    p.add_argument("--topic", default="/camera/image_raw/compressed", help="image topic")
    p.add_argument(
        "--fps", type=float, default=None, help="frame rate for the stamps (default: the video's)"
    )
    p.add_argument("--resize", type=parse_size, default=None, metavar="WxH", help="resize frames")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument("--start", type=float, default=0.0, help="stamp of the first frame (s)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller video-to-bag", "explain")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    from ltc_controller.explain.video import VideoError, summary_json, video_to_bag

    try:
        s = video_to_bag(
            args.video,
            args.output,
            topic=args.topic,
            storage=args.storage,
            fps=args.fps,
            resize=args.resize,
            jpeg_quality=args.jpeg_quality,
            start_s=args.start,
            max_frames=args.max_frames,
        )
    except VideoError as e:
        print(f"video-to-bag: {e}", file=sys.stderr)
        return 2
    print(summary_json(s))
    return 0
