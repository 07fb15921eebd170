"""Video files in and out: a video as a rosbag2 camera stream, and saliency videos.

Decoding and encoding go through ``imageio-ffmpeg``, whose wheel ships an FFmpeg binary (no
system FFmpeg needed); frames are RGB24. GIFs are written with Pillow.

:func:`video_to_bag` turns a video file (MP4, AVI, MOV, ... anything FFmpeg reads) into a
rosbag2 of ``sensor_msgs/msg/CompressedImage`` (JPEG, Pillow): frame k is stamped
``start_s + k / fps`` (``fps`` from the container, or given), in ``header.stamp`` and as the bag's
log time, so the runtime and the training reader see the camera timing the video had.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage

from ltc_controller.extras import needs_extra

__all__ = [
    "VideoBagSummary",
    "VideoError",
    "VideoFrames",
    "read_video",
    "record_from_video",
    "summary_json",
    "video_to_bag",
    "write_video",
]

COMPRESSED = "sensor_msgs/msg/CompressedImage"


class VideoError(ValueError):
    """A video that cannot be read or written, or a bag that cannot be created; the message
    names the file."""


@dataclass(frozen=True)
class VideoBagSummary:
    """What :func:`video_to_bag` wrote.

    Attributes:
        bag, topic, storage: the bag directory, image topic and storage plugin.
        frames: messages written. fps: frame rate used for the stamps.
        width, height: image size in the bag. source_width, source_height: the video's.
        duration_s: stamp of the last frame minus the first.
    """

    bag: Path
    topic: str
    storage: str
    frames: int
    fps: float
    width: int
    height: int
    source_width: int
    source_height: int
    duration_s: float


class VideoFrames:
    """Iterator over a video's frames, ``(height, width, 3)`` uint8 RGB; :meth:`close` (or
    exhausting it) stops the FFmpeg process."""

    def __init__(self, path: Path, gen: Any, width: int, height: int) -> None:
        self.path, self._gen, self.width, self.height = path, gen, width, height

    def __iter__(self) -> Iterator[NDArray[np.uint8]]:
        return self

    def __next__(self) -> NDArray[np.uint8]:
        try:
            raw = next(self._gen)
        except StopIteration:
            self.close()
            raise
        except (OSError, RuntimeError) as exc:
            self.close()
            raise VideoError(f"{self.path}: decoding failed: {_one_line(exc)}") from exc
        return np.frombuffer(raw, dtype=np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        self._gen.close()


def read_video(path: str | Path) -> tuple[dict[str, Any], VideoFrames]:
    """Open a video; returns ``(metadata, frames)``.

    ``metadata`` has ``fps`` (float, may be 0 or missing when the container does not say),
    ``size`` ``(width, height)`` and ``duration`` (s) as FFmpeg reports them; ``frames`` is a
    :class:`VideoFrames` iterator (close it when not read to the end).

    Raises:
        VideoError: the file is missing or FFmpeg cannot read it.
    """
    with needs_extra("explain", "MP4 video"):
        import imageio_ffmpeg

    src = Path(path)
    if not src.is_file():
        raise VideoError(f"{src}: no such video file")
    gen = imageio_ffmpeg.read_frames(str(src), pix_fmt="rgb24")
    try:
        meta: dict[str, Any] = next(gen)
        width, height = (int(v) for v in meta["size"])
    except (OSError, RuntimeError, StopIteration, KeyError, TypeError, ValueError) as exc:
        gen.close()
        raise VideoError(f"{src}: cannot read as video: {_one_line(exc)}") from exc
    return meta, VideoFrames(src, gen, width, height)


def _one_line(exc: BaseException) -> str:
    """An FFmpeg failure in one line: imageio-ffmpeg's message (its first line) and FFmpeg's own
    last line (the cause, after a banner of build options that says nothing to the user)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    head, tail = lines[0], [ln for ln in lines[1:] if not ln.startswith("===")]
    return f"{head} ({tail[-1]})" if tail else head


def video_to_bag(
    video_path: str | Path,
    bag_path: str | Path,
    topic: str = "/camera/image_raw/compressed",
    storage: str = "mcap",
    fps: float | None = None,
    resize: tuple[int, int] | None = None,
    jpeg_quality: int = 90,
    start_s: float = 0.0,
    max_frames: int | None = None,
    frame_id: str = "camera",
) -> VideoBagSummary:
    """Write a video file's frames to a new rosbag2 as ``sensor_msgs/msg/CompressedImage``.

    Args:
        video_path: the video (any format FFmpeg decodes).
        bag_path: bag directory to create (must not exist).
        topic: image topic (image_transport's name for compressed frames by default).
        storage: ``"mcap"`` or ``"sqlite3"``.
        fps: frame rate for the stamps; default the container's (required if it has none).
        resize: ``(width, height)`` to resize every frame to (Pillow, bilinear); default as is.
        jpeg_quality: JPEG quality 1..95.
        start_s: stamp of the first frame (s).
        max_frames: stop after this many frames.
        frame_id: ``header.frame_id``.

    Stamps: frame k at ``start_s + k / fps``, rounded to whole nanoseconds, in ``header.stamp``
    and as log time.

    Returns:
        :class:`VideoBagSummary`.

    Raises:
        VideoError: unreadable video, no usable frame rate, bad arguments, an existing bag
            path, or a video with no frames (the partial bag is removed).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ltc_controller.interfaces import typestore

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise VideoError(f"storage {storage!r}: expected one of {sorted(plugins)}")
    if not 1 <= jpeg_quality <= 95:
        raise VideoError(f"jpeg_quality {jpeg_quality}: expected 1..95")
    if resize is not None and (resize[0] < 1 or resize[1] < 1):
        raise VideoError(f"resize {resize}: expected a positive (width, height)")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames {max_frames}: expected >= 1")
    bag = Path(bag_path)
    if bag.exists():
        raise VideoError(f"{bag}: already exists; rosbag2 writes a new directory")
    meta, frames = read_video(video_path)
    rate = float(fps) if fps is not None else float(meta.get("fps") or 0.0)
    if not (rate > 0.0 and math.isfinite(rate)):
        frames.close()
        raise VideoError(f"{video_path}: the video has no frame rate; give fps")
    src_w, src_h = (int(v) for v in meta["size"])
    store = typestore()
    T = store.types
    writer = Writer(bag, version=9, storage_plugin=plugins[storage])
    writer.open()
    count = 0
    out_w, out_h = resize if resize is not None else (src_w, src_h)
    start_ns = round(start_s * 1e9)
    last_ns = start_ns
    try:
        conn = writer.add_connection(topic, COMPRESSED, typestore=store)
        for k, rgb in enumerate(frames):
            if max_frames is not None and k >= max_frames:
                break
            img = PILImage.fromarray(rgb)
            if resize is not None and img.size != (out_w, out_h):
                img = img.resize((out_w, out_h), PILImage.Resampling.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(jpeg_quality))
            ns = start_ns + round(k * 1e9 / rate)
            sec, nsec = divmod(ns, 1_000_000_000)
            msg = T[COMPRESSED](
                header=T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                    frame_id=frame_id,
                ),
                format="jpeg",
                data=np.frombuffer(buf.getvalue(), dtype=np.uint8),
            )
            writer.write(conn, ns, store.serialize_cdr(msg, COMPRESSED))
            count += 1
            last_ns = ns
    finally:
        frames.close()
        writer.close()
    if count == 0:
        import shutil

        shutil.rmtree(bag, ignore_errors=True)
        raise VideoError(f"{video_path}: no frames decoded")
    return VideoBagSummary(
        bag=bag,
        topic=topic,
        storage=storage,
        frames=count,
        fps=rate,
        width=out_w,
        height=out_h,
        source_width=src_w,
        source_height=src_h,
        duration_s=(last_ns - start_ns) * 1e-9,
    )


def write_video(
    path: str | Path, frames: Sequence[NDArray[np.uint8]], fps: float, quality: int = 7
) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB frames as a video: ``.mp4`` (H.264, yuv420p, via the FFmpeg
    of ``imageio-ffmpeg``) or ``.gif`` (Pillow). Frames are padded (black) to a multiple of 16
    pixels for H.264.

    Raises:
        VideoError: no frames, frames of different sizes, an unknown suffix or a failing
            encoder.
    """
    out = Path(path)
    if not frames:
        raise VideoError(f"{out}: no frames to write")
    h, w = frames[0].shape[:2]
    if any(f.shape != (h, w, 3) for f in frames):
        raise VideoError(f"{out}: frames must all be ({h}, {w}, 3) uint8")
    suffix = out.suffix.lower()
    if suffix == ".gif":
        images = [PILImage.fromarray(np.ascontiguousarray(f)) for f in frames]
        images[0].save(
            out,
            save_all=True,
            append_images=images[1:],
            duration=max(20, round(1000.0 / fps)),
            loop=0,
        )
        return out
    if suffix != ".mp4":
        raise VideoError(f"{out}: unknown video type {suffix!r}; use .mp4 or .gif")
    with needs_extra("explain", "MP4 video"):
        import imageio_ffmpeg

    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
    canvas = np.zeros((ph, pw, 3), dtype=np.uint8)
    gen = imageio_ffmpeg.write_frames(
        str(out), (pw, ph), fps=fps, quality=quality, macro_block_size=16, ffmpeg_log_level="error"
    )
    try:
        gen.send(None)
        for f in frames:
            canvas[:h, :w] = f
            gen.send(canvas.tobytes())
    except (OSError, RuntimeError) as exc:
        raise VideoError(f"{out}: encoding failed: {exc}") from exc
    finally:
        gen.close()
    return out


def summary_json(summary: VideoBagSummary) -> str:
    """The summary as indented JSON (paths as strings)."""
    data = {k: str(v) if isinstance(v, Path) else v for k, v in vars(summary).items()}
    return json.dumps(data, indent=2)


def record_from_video(args: argparse.Namespace) -> int:
    """``ltc-controller record OUTPUT --from-video VIDEO``: the video's frames into the bag
    ``args.output`` as ``sensor_msgs/CompressedImage`` on ``<args.image_topic>/compressed``
    (``args.storage``, ``args.jpeg_quality``), stamped from the video's frame rate; prints the
    summary as JSON. Returns the exit status (2 with a message on stderr for a bad video)."""
    try:
        summary = video_to_bag(
            args.from_video,
            args.output,
            topic=f"{args.image_topic.rstrip('/')}/compressed",
            storage=args.storage,
            jpeg_quality=args.jpeg_quality,
        )
    except VideoError as e:
        print(f"record: {e}", file=sys.stderr)
        return 2
    print(summary_json(summary))
    return 0
