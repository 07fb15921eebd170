"""``ltc-controller explain``: where policies look, how their neurons move, what they command —
open loop over a bag's camera frames (see :mod:`ltc_controller.explain.report`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ltc_controller.commands import output_folder
from ltc_controller.extras import MissingExtra, require

NAME = "explain"
HELP = (
    "run policies open loop over a rosbag2's camera frames and write saliency (VisualBackProp, "
    "integrated gradients) video and contact sheet, neuron traces, the NCP wiring, commands and "
    "a Markdown report"
)


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"TOP,BOTTOM,LEFT,RIGHT"`` pixels -> a tuple; raises ``argparse.ArgumentTypeError``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"--crop {text!r}: expected TOP,BOTTOM,LEFT,RIGHT pixels >= 0, e.g. 200,0,40,40"
        )
    return values[0], values[1], values[2], values[3]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="[LABEL=]FILE",
        help="policy file (.safetensors), repeatable; LABEL names it in the report",
    )
    p.add_argument("--bag", type=Path, required=True, help="rosbag2 directory (sqlite3 or MCAP)")
    p.add_argument(
        "--image-topic", default=None, help="Image or CompressedImage topic (default: the only one)"
    )
    p.add_argument(
        "--command-topic", default=None, help="recorded command topic to plot beside the policies"
    )
    p.add_argument(
        "--output",
        "--out",
        dest="out",
        type=output_folder,
        default="explain_out",
        help="output folder (--out: the same)",
    )
    p.add_argument(
        "--crop",
        type=parse_crop,
        default=None,
        metavar="T,B,L,R",
        help="pixels cropped from each side before resizing (default: each policy file's)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    p.add_argument("--skip", type=int, default=0, help="skip this many frames first")
    p.add_argument("--sheet-frames", type=int, default=8, help="rows of the contact sheet (8)")
    p.add_argument("--no-ig", action="store_true", help="no integrated gradients on the sheet")
    p.add_argument("--video", choices=("mp4", "gif", "none"), default="mp4", help="video format")
    p.add_argument("--title", default="", help="report title")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    try:
        require("ltc-controller explain", "explain")
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 2
    import torch

    from ltc_controller.explain.frames import ExplainError
    from ltc_controller.explain.report import explain
    from ltc_controller.explain.video import VideoError
    from ltc_controller.models.policy import Crop
    from ltc_controller.models.policy_file import PolicyFileError

    torch.set_num_threads(max(1, args.threads))
    policies: list[tuple[str | None, Path]] = []
    for item in args.policy:
        label, sep, path = item.partition("=")
        policies.append((label, Path(path)) if sep else (None, Path(item)))
    try:
        result = explain(
            policies,
            args.bag,
            args.out,
            image_topic=args.image_topic,
            command_topic=args.command_topic,
            crop=None if args.crop is None else Crop(*args.crop),
            max_frames=args.max_frames,
            skip=args.skip,
            sheet_frames=args.sheet_frames,
            ig=not args.no_ig,
            video="" if args.video == "none" else args.video,
            title=args.title,
        )
    except (ExplainError, PolicyFileError, VideoError) as e:
        print(f"explain: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {k: str(v) for k, v in {"report": result.report, **result.files}.items()}, indent=2
        )
    )
    return 0
