"""Camera frames (and optionally commands) out of a rosbag2, for open-loop runs.

Reads ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage`` from a rosbag2 directory
(sqlite3 or MCAP storage, through ``rosbags``) into the runtime's
:class:`~ltc_controller.runtime.preprocess.RawFrame` (undecoded: the runtime decodes them as the
node would). A frame's time is its ``header.stamp``; a zero stamp falls back to the bag's log
time. Commands (``ackermann_msgs/msg/AckermannDriveStamped``, ``geometry_msgs/msg/Twist[Stamped]``)
can be read alongside, to plot what was recorded next to what the policies command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.interfaces.command_axes import FIELDS
from ltc_controller.runtime.preprocess import RawFrame, frame_from_compressed, frame_from_image

__all__ = [
    "IMAGE",
    "COMPRESSED",
    "BagFrames",
    "ExplainError",
    "bag_topics",
    "read_commands",
    "read_frames",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
#: Default command field per type (the steering-like quantity).
#: The steering field of each command type (a yaw rate for Twist), from the shared axes table.
COMMAND_FIELDS = {
    msgtype: fields.get("steering_angle") or fields["angular_z"]
    for msgtype, fields in FIELDS.items()
}


class ExplainError(ValueError):
    """Input that ``explain`` cannot use; the message names the file and what is wrong."""


@dataclass
class BagFrames:
    """Frames of one image topic.

    Attributes:
        bag: the bag directory. topic, msgtype: the image topic and its type.
        frames: in bag (log time) order.
        stamps_from_log: frames whose header stamp was 0 and took the log time instead.
    """

    bag: Path
    topic: str
    msgtype: str
    frames: list[RawFrame] = field(default_factory=list)
    stamps_from_log: int = 0

    @property
    def stamps_ns(self) -> NDArray[np.int64]:
        """``(N,)`` frame stamps (ns)."""
        return np.asarray([f.stamp_ns for f in self.frames], dtype=np.int64)

    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` in pixels of the first frame (a compressed one's from its
        header), or ``None`` when there is no frame or its header cannot be read (the runtime
        then counts it as rejected)."""
        if not self.frames:
            return None
        f = self.frames[0]
        if f.width > 0 and f.height > 0:
            return f.width, f.height
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(bytes(f.data))) as im:
                return int(im.size[0]), int(im.size[1])
        except (OSError, UnidentifiedImageError, ValueError):
            return None


def crop_problem(crop: Any, size: tuple[int, int] | None, what: str, where: str = "") -> str | None:
    """Why ``crop`` (a :class:`~ltc_controller.models.policy.Crop`, pixels) leaves nothing of
    images of ``size`` ``(width, height)``, naming ``what`` (``--crop 50,50,0,0``), the images
    (``where``, e.g. `` on /camera/image_raw``) and the sizes; ``None`` when something is left
    or the size is unknown."""
    if size is None:
        return None
    w, h = size
    if crop.top + crop.bottom < h and crop.left + crop.right < w:
        return None
    return (
        f"{what} leaves nothing of the {w}x{h} images{where}: top + bottom "
        f"({crop.top + crop.bottom} px) must be < {h} px and left + right "
        f"({crop.left + crop.right} px) < {w} px"
    )


def _open(bag: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not bag.exists():
        raise ExplainError(f"{bag}: no such bag directory")
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types
        raise ExplainError(f"{bag}: cannot open as rosbag2: {exc}") from exc
    return reader


def bag_topics(bag: str | Path) -> dict[str, str]:
    """``{topic: msgtype}`` of a rosbag2. Raises :class:`ExplainError` for an unreadable bag."""
    reader = _open(Path(bag))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def _pick_image_topic(bag: Path, topics: dict[str, str], topic: str | None) -> str:
    listing = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
    if topic is not None:
        if topic not in topics:
            raise ExplainError(f"{bag}: no topic '{topic}'; its topics are: {listing}")
        if topics[topic] not in (IMAGE, COMPRESSED):
            raise ExplainError(
                f"{bag}: topic '{topic}' has type {topics[topic]}; expected {IMAGE} or {COMPRESSED}"
            )
        return topic
    images = sorted(t for t, ty in topics.items() if ty in (IMAGE, COMPRESSED))
    if len(images) == 1:
        return images[0]
    if not images:
        raise ExplainError(f"{bag}: no Image or CompressedImage topic; its topics are: {listing}")
    raise ExplainError(f"{bag}: several image topics ({', '.join(images)}); name one")


def _stamp_ns(msg: Any) -> int:
    st = msg.header.stamp
    return int(st.sec) * 1_000_000_000 + int(st.nanosec)


def read_frames(
    bag: str | Path, topic: str | None = None, max_frames: int | None = None, skip: int = 0
) -> BagFrames:
    """Camera frames of one topic of a rosbag2 (sqlite3 or MCAP).

    Args:
        bag: the bag directory.
        topic: an ``Image`` or ``CompressedImage`` topic; ``None`` = the bag's only one.
        max_frames: stop after this many frames (after ``skip``).
        skip: ignore this many frames first.

    Returns:
        :class:`BagFrames` (undecoded frames; stamps from ``header.stamp``, else log time).

    Raises:
        ExplainError: unreadable bag, missing or ambiguous topic, a non-image topic, no frames.
    """
    from ltc_controller.interfaces import typestore

    path = Path(bag)
    store = typestore()
    reader = _open(path)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        name = _pick_image_topic(path, topics, topic)
        msgtype = topics[name]
        out = BagFrames(path, name, msgtype)
        seen = 0
        conns = [c for c in reader.connections if c.topic == name]
        for conn, log_ns, raw in reader.messages(connections=conns):
            seen += 1
            if seen <= skip:
                continue
            if max_frames is not None and len(out.frames) >= max_frames:
                break
            msg: Any = store.deserialize_cdr(raw, conn.msgtype)
            ns = _stamp_ns(msg)
            if ns == 0:
                ns = int(log_ns)
                out.stamps_from_log += 1
            if msgtype == IMAGE:
                frame = frame_from_image(
                    ns * 1e-9,
                    ns,
                    msg.encoding,
                    msg.height,
                    msg.width,
                    msg.step,
                    np.asarray(msg.data, dtype=np.uint8).tobytes(),
                    msg.is_bigendian,
                )
            else:
                frame = frame_from_compressed(
                    ns * 1e-9, ns, str(msg.format), np.asarray(msg.data, dtype=np.uint8).tobytes()
                )
            out.frames.append(frame)
    except ExplainError:
        raise
    except Exception as exc:  # rosbags raises its own error types
        raise ExplainError(f"{path}: cannot read topic {topic}: {exc}") from exc
    finally:
        reader.close()
    if not out.frames:
        raise ExplainError(f"{path}: no frames on {name} (after skipping {skip})")
    return out


def read_commands(
    bag: str | Path, topic: str, field_name: str | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64], str]:
    """A command topic's stamps and one field, e.g. the recorded steering.

    Args:
        bag: the bag directory.
        topic: the command topic.
        field_name: dotted field; default by type (:data:`COMMAND_FIELDS`).

    Returns:
        ``(stamps_ns (K,), values (K,), field_name)``; stamps from ``header.stamp`` when the type
        has one (and it is not 0), else log time.

    Raises:
        ExplainError: unreadable bag, missing topic, a type without a default field, a missing
            field.
    """
    from ltc_controller.interfaces import typestore

    path = Path(bag)
    store = typestore()
    reader = _open(path)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        if topic not in topics:
            listing = ", ".join(sorted(topics))
            raise ExplainError(f"{path}: no command topic '{topic}'; its topics are: {listing}")
        msgtype = topics[topic]
        fname = field_name or COMMAND_FIELDS.get(msgtype)
        if fname is None:
            raise ExplainError(f"{path}: no default field for {msgtype} on {topic}; name one")
        stamps: list[int] = []
        values: list[float] = []
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, log_ns, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            obj: Any = msg
            for part in fname.split("."):
                if not hasattr(obj, part):
                    raise ExplainError(f"{path}: {msgtype} on {topic} has no field '{fname}'")
                obj = getattr(obj, part)
            hdr = getattr(msg, "header", None)
            ns = _stamp_ns(msg) if hdr is not None else 0
            stamps.append(ns if ns else int(log_ns))
            values.append(float(obj))
    except ExplainError:
        raise
    except Exception as exc:  # rosbags raises its own error types
        raise ExplainError(f"{path}: cannot read topic {topic}: {exc}") from exc
    finally:
        reader.close()
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return (
        np.asarray(stamps, dtype=np.int64)[order],
        np.asarray(values, dtype=np.float64)[order],
        fname,
    )
