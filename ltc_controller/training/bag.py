"""rosbag2 I/O for demonstrations (MCAP or sqlite3 storage, through ``rosbags``).

Writing (:class:`DemoBagWriter`) uses standard types only:

========================  ==============================================  =========================
topic (default)           type                                            content
========================  ==============================================  =========================
``/camera/image_raw``     ``sensor_msgs/msg/Image`` (``rgb8``)            camera frames
``.../compressed``        ``sensor_msgs/msg/CompressedImage`` (``jpeg``)  with ``compressed=True``
``/expert_cmd``           ``ackermann_msgs/msg/AckermannDriveStamped``    clean expert command
                          (or ``geometry_msgs/msg/Twist[Stamped]``)       (the training label)
``/ackermann_cmd``        the same type (``/cmd_vel`` for Twist)          command actually executed
``/odom``                 ``nav_msgs/msg/Odometry``                       true pose (rear axle)
========================  ==============================================  =========================

Commands are Ackermann by default; with ``command_type`` Twist or TwistStamped a car's
``(steering angle, speed)`` is written as the body velocity it commands (kinematic bicycle, REP
103): ``linear.x`` = speed, ``angular.z`` = speed * tan(steering) / wheelbase, the rest 0.

Every ``header.stamp`` and every bag log time is the simulation clock (ns).

Reading (:func:`read_demonstrations`) works on any rosbag2 with an image topic (``Image`` or
``CompressedImage``) and a command topic the user names: images are decoded, cropped and resized
to the policy input once and kept as uint8; each image is paired with the command whose stamp is
nearest to its own plus ``label_offset_s`` (within ``max_pair_dt_s``); the pairs are cut into
segments where time jumps. The command–image lag of each bag is estimated on the way
(:mod:`ltc_controller.training.lag`). Outputs are named after the command axes their fields carry
(:mod:`ltc_controller.interfaces.command_axes`), the names ``ltc_policy`` maps.
:func:`read_policy_frames` reads the frames alone (no command topic needed: camera footage), cut
into segments the same way.

Messages are read and written with the project's typestore
(:func:`ltc_controller.interfaces.typestore`: ROS 2 Jazzy plus ackermann_msgs; no DDS import here).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from ltc_controller.interfaces import typestore
from ltc_controller.interfaces.command_axes import (
    ACKERMANN,
    COMMAND_TYPES,
    FIELDS,
    TWIST,
    TWIST_STAMPED,
    UNITS,
    axis_of_field,
)
from ltc_controller.runtime.preprocess import (
    FrameRejected,
    PreprocessConfig,
    Preprocessor,
    RawFrame,
    frame_from_compressed,
    frame_from_image,
)
from ltc_controller.training.lag import LagEstimate, estimate_command_lag

__all__ = [
    "BagError",
    "Demonstrations",
    "DemoBagWriter",
    "Frames",
    "RecordTopics",
    "TopicNotFoundError",
    "bag_topics",
    "command_fields_of",
    "default_command_field",
    "output_name",
    "output_unit",
    "read_demonstrations",
    "read_policy_frames",
]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class BagError(ValueError):
    """A bag that cannot be used for training; the message names the bag and what is wrong."""


class TopicNotFoundError(BagError):
    """A requested topic is not in the bag; the message lists the bag's topics and types."""


@dataclass(frozen=True)
class RecordTopics:
    """Topic names written by :class:`DemoBagWriter`."""

    image: str = "/camera/image_raw"
    label: str = "/expert_cmd"
    executed: str = "/ackermann_cmd"
    odom: str = "/odom"

    @staticmethod
    def default_executed(command_type: str) -> str:
        """The executed-command topic the ecosystem expects for a type (``/ackermann_cmd``,
        ``/cmd_vel``)."""
        return "/ackermann_cmd" if command_type == ACKERMANN else "/cmd_vel"

    def image_topic(self, compressed: bool) -> str:
        """The image topic for raw or compressed frames (``<image>/compressed`` as
        image_transport names it)."""
        return f"{self.image}/compressed" if compressed else self.image


STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class DemoBagWriter:
    """Writes demonstration frames to a new rosbag2.

    Args:
        path: the bag directory to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``.
        compressed: write ``CompressedImage`` (JPEG via Pillow) instead of ``Image``.
        jpeg_quality: JPEG quality (1..95).
        topics: topic names.
        command_type: type of the label and executed commands: ``ackermann_msgs/msg/
            AckermannDriveStamped``, ``geometry_msgs/msg/Twist`` or ``.../TwistStamped``.
        wheelbase_m: wheelbase of the bicycle conversion to Twist (m).

    Raises:
        BagError: ``path`` exists, ``storage`` or ``command_type`` is unknown, or
            ``wheelbase_m`` is not positive.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        compressed: bool = False,
        jpeg_quality: int = 90,
        topics: RecordTopics | None = None,
        command_type: str = ACKERMANN,
        wheelbase_m: float = 2.5,
    ) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r}: expected one of {sorted(STORAGES)}")
        if command_type not in COMMAND_TYPES:
            raise BagError(f"command type {command_type!r}: expected one of {COMMAND_TYPES}")
        if not wheelbase_m > 0.0:
            raise BagError(f"wheelbase_m={wheelbase_m}: expected > 0")
        self.command_type = command_type
        self.wheelbase_m = float(wheelbase_m)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists; rosbag2 writes a new directory")
        self.store = typestore()
        self.compressed = compressed
        self.jpeg_quality = int(jpeg_quality)
        self.topics = topics or RecordTopics()
        self.frames = 0
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        t = self.topics
        image_type = IMAGE_TYPES[1] if compressed else IMAGE_TYPES[0]
        self._c_image = self._writer.add_connection(
            t.image_topic(compressed), image_type, typestore=self.store
        )
        self._c_label = self._writer.add_connection(t.label, command_type, typestore=self.store)
        self._c_exec = self._writer.add_connection(t.executed, command_type, typestore=self.store)
        self._c_odom = self._writer.add_connection(
            t.odom, "nav_msgs/msg/Odometry", typestore=self.store
        )

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        T = self.store.types
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](
                sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
            ),
            frame_id=frame_id,
        )

    def _command(self, stamp_ns: int, steer: float, speed: float) -> Any:
        T = self.store.types
        if self.command_type == ACKERMANN:
            return T[ACKERMANN](
                header=self._header(stamp_ns, "base_link"),
                drive=T["ackermann_msgs/msg/AckermannDrive"](
                    steering_angle=float(steer),
                    steering_angle_velocity=0.0,
                    speed=float(speed),
                    acceleration=0.0,
                    jerk=0.0,
                ),
            )
        V3 = T["geometry_msgs/msg/Vector3"]
        yaw_rate = float(speed) * math.tan(float(steer)) / self.wheelbase_m
        twist = T[TWIST](
            linear=V3(x=float(speed), y=0.0, z=0.0), angular=V3(x=0.0, y=0.0, z=yaw_rate)
        )
        if self.command_type == TWIST:
            return twist
        return T[TWIST_STAMPED](header=self._header(stamp_ns, "base_link"), twist=twist)

    def write(
        self,
        stamp_ns: int,
        image: NDArray[np.uint8],
        label_steer: float,
        executed_steer: float,
        speed_cmd: float,
        pose: tuple[float, float, float, float, float],
    ) -> None:
        """Write one frame and the commands and odometry at its stamp.

        Args:
            stamp_ns: simulation time (ns, >= 0, increasing).
            image: ``(H, W, 3)`` uint8 RGB.
            label_steer: clean expert steering (rad). executed_steer: executed steering (rad).
            speed_cmd: commanded speed (m/s).
            pose: ``(x, y, yaw, speed, yaw_rate)`` of the rear axle (m, rad, m/s, rad/s).
        """
        self.write_image(stamp_ns, image)
        self.write_commands(stamp_ns, label_steer, executed_steer, speed_cmd)
        self.write_odom(stamp_ns, pose)
        self.frames += 1

    def write_image(self, stamp_ns: int, image: NDArray[np.uint8]) -> None:
        """Write a camera frame ``(H, W, 3)`` uint8 RGB stamped ``stamp_ns`` (ns)."""
        T = self.store.types
        ser = self.store.serialize_cdr
        hdr = self._header(stamp_ns, "camera_optical_frame")
        if self.compressed:
            buf = io.BytesIO()
            PILImage.fromarray(image).save(buf, format="JPEG", quality=self.jpeg_quality)
            msg = T[IMAGE_TYPES[1]](
                header=hdr, format="jpeg", data=np.frombuffer(buf.getvalue(), dtype=np.uint8)
            )
            self._writer.write(self._c_image, stamp_ns, ser(msg, IMAGE_TYPES[1]))
        else:
            h, w, _ = image.shape
            msg = T[IMAGE_TYPES[0]](
                header=hdr,
                height=h,
                width=w,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * w,
                data=np.ascontiguousarray(image).reshape(-1),
            )
            self._writer.write(self._c_image, stamp_ns, ser(msg, IMAGE_TYPES[0]))

    def write_commands(
        self, stamp_ns: int, label_steer: float, executed_steer: float, speed_cmd: float
    ) -> None:
        """Write the label and executed commands (steering in rad, speed in m/s) stamped
        ``stamp_ns`` (ns; header and log time), as ``command_type``."""
        ser = self.store.serialize_cdr
        ct = self.command_type
        self._writer.write(
            self._c_label, stamp_ns, ser(self._command(stamp_ns, label_steer, speed_cmd), ct)
        )
        self._writer.write(
            self._c_exec, stamp_ns, ser(self._command(stamp_ns, executed_steer, speed_cmd), ct)
        )

    def write_odom(self, stamp_ns: int, pose: tuple[float, float, float, float, float]) -> None:
        """Write odometry ``(x, y, yaw, speed, yaw_rate)`` (m, rad, m/s, rad/s) at ``stamp_ns``."""
        T = self.store.types
        x, y, yaw, v, wz = pose
        V3, P = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Point"]
        odom = T["nav_msgs/msg/Odometry"](
            header=self._header(stamp_ns, "odom"),
            child_frame_id="base_link",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](
                pose=T["geometry_msgs/msg/Pose"](
                    position=P(x=x, y=y, z=0.0),
                    orientation=T["geometry_msgs/msg/Quaternion"](
                        x=0.0, y=0.0, z=math.sin(0.5 * yaw), w=math.cos(0.5 * yaw)
                    ),
                ),
                covariance=np.zeros(36),
            ),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](
                    linear=V3(x=v, y=0.0, z=0.0), angular=V3(x=0.0, y=0.0, z=wz)
                ),
                covariance=np.zeros(36),
            ),
        )
        self._writer.write(self._c_odom, stamp_ns, self.store.serialize_cdr(odom, odom.__msgtype__))

    # -- drone (velocity setpoints, 3-D odometry) ------------------------------------------------

    def _twist(self, stamp_ns: int, v: Sequence[float]) -> Any:
        T = self.store.types
        V3 = T["geometry_msgs/msg/Vector3"]
        twist = T[TWIST](
            linear=V3(x=float(v[0]), y=float(v[1]), z=float(v[2])),
            angular=V3(x=0.0, y=0.0, z=float(v[3])),
        )
        if self.command_type == TWIST:
            return twist
        return T[TWIST_STAMPED](header=self._header(stamp_ns, "base_link"), twist=twist)

    def write_velocity_commands(
        self, stamp_ns: int, label: Sequence[float], executed: Sequence[float]
    ) -> None:
        """Write the label and executed body-frame velocity setpoints ``(vx, vy, vz, yaw_rate)``
        (m/s, m/s, m/s, rad/s; REP 103 ``base_link``) stamped ``stamp_ns`` (ns) as Twist or
        TwistStamped (``command_type``).

        Raises:
            BagError: the writer's ``command_type`` is Ackermann (no velocity axes).
        """
        ct = self.command_type
        if ct not in (TWIST, TWIST_STAMPED):
            raise BagError(f"velocity setpoints need a Twist command type, not {ct}")
        ser = self.store.serialize_cdr
        self._writer.write(self._c_label, stamp_ns, ser(self._twist(stamp_ns, label), ct))
        self._writer.write(self._c_exec, stamp_ns, ser(self._twist(stamp_ns, executed), ct))

    def write_odom_3d(
        self,
        stamp_ns: int,
        position: Sequence[float] | NDArray[np.float64],
        quaternion_wxyz: Sequence[float] | NDArray[np.float64],
        linear_body: Sequence[float] | NDArray[np.float64],
        angular_body: Sequence[float] | NDArray[np.float64],
    ) -> None:
        """Write a full 3-D odometry at ``stamp_ns`` (ns): ``position`` (m, ``odom`` frame),
        orientation as ``(w, x, y, z)``, and the twist in ``base_link`` (m/s, rad/s), as
        ``nav_msgs/Odometry`` defines it (REP 105)."""
        T = self.store.types
        V3, P = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Point"]
        qw, qx, qy, qz = (float(q) for q in quaternion_wxyz)
        odom = T["nav_msgs/msg/Odometry"](
            header=self._header(stamp_ns, "odom"),
            child_frame_id="base_link",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](
                pose=T["geometry_msgs/msg/Pose"](
                    position=P(x=float(position[0]), y=float(position[1]), z=float(position[2])),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
                ),
                covariance=np.zeros(36),
            ),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](
                    linear=V3(
                        x=float(linear_body[0]), y=float(linear_body[1]), z=float(linear_body[2])
                    ),
                    angular=V3(
                        x=float(angular_body[0]),
                        y=float(angular_body[1]),
                        z=float(angular_body[2]),
                    ),
                ),
                covariance=np.zeros(36),
            ),
        )
        self._writer.write(self._c_odom, stamp_ns, self.store.serialize_cdr(odom, odom.__msgtype__))

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml). Idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None  # type: ignore[assignment]

    def __enter__(self) -> DemoBagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bag_topics(path: str | Path) -> dict[str, str]:
    """``{topic: msgtype}`` of a rosbag2 directory.

    Raises:
        BagError: not a readable rosbag2.
    """
    try:
        with Reader(Path(path)) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except BagError:
        raise
    except Exception as exc:  # rosbags raises its own error types
        raise BagError(f"{path}: cannot open as rosbag2: {exc}") from exc


@dataclass
class Demonstrations:
    """Paired demonstration data, ready for windowing.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB at the policy input size (after crop and resize).
        targets: ``(N, M)`` float32 commands (units of the chosen fields).
        stamps_ns: ``(N,)`` int64 image stamps in ns (``header.stamp``, else the log time):
            integer ns end to end, the time base of the runtime's stepping rule.
        segment: ``(N,)`` int64 segment id; a new segment starts where time jumps by more than
            ``max_gap_s`` (or goes backwards), and at each new bag.
        output_names: one name per target column, the command axis it carries (e.g.
            ``("steering_angle",)``, ``("linear_x", "angular_z")``; see :func:`output_name`).
        output_units: SI unit of each column (``rad``, ``m/s``, ``rad/s``; ``""`` if unknown;
            filled from the names when empty).
        lag_estimates: the command–image lag of each bag read (:mod:`.lag`), where it could be
            estimated.
        label_offset_s: the offset the pairing used (see :func:`read_demonstrations`).
        stats: counts (images read, paired, dropped for no command, rejected images).
    """

    images: NDArray[np.uint8]
    targets: NDArray[np.float32]
    stamps_ns: NDArray[np.int64]
    segment: NDArray[np.int64]
    output_names: tuple[str, ...]
    stats: dict[str, int] = field(default_factory=dict)
    output_units: tuple[str, ...] = ()
    lag_estimates: tuple[LagEstimate, ...] = ()
    label_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.output_units:
            self.output_units = tuple(output_unit(n) for n in self.output_names)

    def lag_warnings(self) -> list[str]:
        """One sentence per bag whose command–image lag is half a frame or more after
        :attr:`label_offset_s`, or could not be measured (:meth:`LagEstimate.warning`)."""
        out = []
        for est in self.lag_estimates:
            w = est.warning(self.label_offset_s)
            if w is not None:
                out.append(w)
        return out

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def stamps(self) -> NDArray[np.float64]:
        """``(N,)`` float64 seconds of :attr:`stamps_ns` (for display; step on the ns)."""
        seconds: NDArray[np.float64] = self.stamps_ns.astype(np.float64) * 1e-9
        return seconds

    @staticmethod
    def concatenate(parts: Sequence[Demonstrations]) -> Demonstrations:
        """Join datasets; segment ids are renumbered so segments never merge."""
        if not parts:
            raise BagError("no demonstrations to join")
        names = parts[0].output_names
        offsets = {p.label_offset_s for p in parts}
        if len(offsets) > 1:
            raise BagError(f"label offsets differ: {sorted(offsets)}")
        segs = []
        base = 0
        stats: dict[str, int] = {}
        for p in parts:
            if p.output_names != names:
                raise BagError(f"output names differ: {p.output_names} vs {names}")
            segs.append(p.segment + base)
            base += int(p.segment.max()) + 1 if len(p) else 0
            for k, v in p.stats.items():
                stats[k] = stats.get(k, 0) + v
        return Demonstrations(
            images=np.concatenate([p.images for p in parts]),
            targets=np.concatenate([p.targets for p in parts]),
            stamps_ns=np.concatenate([p.stamps_ns for p in parts]),
            segment=np.concatenate(segs),
            output_names=names,
            stats=stats,
            output_units=parts[0].output_units,
            lag_estimates=tuple(e for p in parts for e in p.lag_estimates),
            label_offset_s=parts[0].label_offset_s,
        )


def _field(msg: Any, dotted: str, bag: Path, topic: str) -> float:
    obj = msg
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise BagError(
                f"{bag}: topic {topic} ({msg.__msgtype__}) has no field '{dotted}' "
                f"(no '{part}' in {type(obj).__name__})"
            )
        obj = getattr(obj, part)
    return float(obj)


def default_command_field(msgtype: str) -> str:
    """The steering field of a command type: ``drive.steering_angle`` for ackermann_msgs,
    ``twist.angular.z`` / ``angular.z`` for geometry_msgs Twist(Stamped) (a yaw rate).

    Raises:
        BagError: a type with no known default (pass the field explicitly).
    """
    fields = FIELDS.get(msgtype)
    if fields is None:
        raise BagError(f"no default command field for {msgtype}; name one with --command-field")
    return fields["steering_angle" if "steering_angle" in fields else "angular_z"]


def command_fields_of(msgtype: str, requested: Sequence[str] | None) -> list[str]:
    """The dotted fields to learn: ``requested`` as given, the type's steering field when it is
    empty (:func:`default_command_field`), and every command axis of the type, in the node's
    axis order, for ``["all"]`` (Twist: ``linear.x, linear.y, linear.z, angular.z``).

    Raises:
        BagError: no default or no axes for ``msgtype``.
    """
    if not requested:
        return [default_command_field(msgtype)]
    if list(requested) == ["all"]:
        fields = FIELDS.get(msgtype)
        if fields is None:
            raise BagError(f"{msgtype} has no command axes; name the fields with --command-field")
        return list(fields.values())
    return list(requested)


def output_name(msgtype: str, dotted: str) -> str:
    """The policy output name of a learned field: the command axis it carries (the names
    ``ltc_policy`` maps: ``drive.steering_angle`` -> ``steering_angle``, Twist ``angular.z`` or
    TwistStamped ``twist.angular.z`` -> ``angular_z``, ``linear.x`` -> ``linear_x``), else the
    field with dots as underscores (``drive.acceleration`` -> ``drive_acceleration``), which no
    command mapping uses."""
    axis = axis_of_field(msgtype, dotted)
    return axis if axis is not None else dotted.replace(".", "_")


def output_unit(name: str) -> str:
    """SI unit of an output name (``rad``, ``m/s``, ``rad/s``; ``""`` when not a command axis)."""
    return UNITS.get(name, "")


@dataclass
class Frames:
    """Camera frames of bags at the policy input size, without commands (what the
    out-of-distribution monitor scores: :mod:`ltc_controller.training.monitor`).

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB (after crop and resize), ordered by stamp.
        stamps_ns: ``(N,)`` int64 ``header.stamp`` in ns, else the log time.
        segment: ``(N,)`` int64 segment id, as :attr:`Demonstrations.segment`.
        stats: counts (``images`` read, ``rejected`` by the runtime's decoding).
    """

    images: NDArray[np.uint8]
    stamps_ns: NDArray[np.int64]
    segment: NDArray[np.int64]
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[Frames]) -> Frames:
        """Join frame sets; segment ids are renumbered so segments never merge.

        Raises:
            BagError: no parts.
        """
        if not parts:
            raise BagError("no frames to join")
        segs = []
        base = 0
        stats: dict[str, int] = {}
        for p in parts:
            segs.append(p.segment + base)
            base += int(p.segment.max()) + 1 if len(p) else 0
            for k, v in p.stats.items():
                stats[k] = stats.get(k, 0) + v
        return Frames(
            images=np.concatenate([p.images for p in parts]),
            stamps_ns=np.concatenate([p.stamps_ns for p in parts]),
            segment=np.concatenate(segs),
            stats=stats,
        )


def _segment_ids(stamps_ns: NDArray[np.int64], max_gap_s: float) -> NDArray[np.int64]:
    """``(N,)`` segment ids of sorted stamps: a new segment where time steps by more than
    ``max_gap_s`` or does not advance."""
    gaps = np.diff(stamps_ns)
    new_seg = np.concatenate([[True], (gaps > round(max_gap_s * 1e9)) | (gaps <= 0)])
    ids: NDArray[np.int64] = np.cumsum(new_seg).astype(np.int64) - 1
    return ids


def _check_topics(bag: Path, topics: dict[str, str], wanted: dict[str, str]) -> None:
    """``wanted`` (role -> topic) are in the bag and the ``image`` one carries images.

    Raises:
        TopicNotFoundError: a topic is missing (the message lists the bag's topics).
        BagError: the image topic has another type.
    """
    listing = ", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"
    for role, topic in wanted.items():
        if topic not in topics:
            raise TopicNotFoundError(
                f"{bag}: no {role} topic '{topic}' in the bag; its topics are: {listing}"
            )
    image_topic = wanted["image"]
    if topics[image_topic] not in IMAGE_TYPES:
        raise BagError(
            f"{bag}: image topic '{image_topic}' has type {topics[image_topic]}; expected one of "
            f"{IMAGE_TYPES}"
        )


def _read_images_and_commands(
    bag: Path,
    image_topic: str,
    pre: Preprocessor,
    max_frames: int | None,
    command_topic: str | None = None,
    fields: Sequence[str] = (),
) -> tuple[list[int], list[NDArray[np.uint8]], int, list[int], list[list[float]]]:
    """One pass over the bag: ``(image stamps, policy images, rejected images, command stamps,
    command values)`` in bag order (no commands without ``command_topic``).

    Raises:
        BagError: unreadable bag or a missing command field.
    """
    store = typestore()
    img_stamps: list[int] = []
    images: list[NDArray[np.uint8]] = []
    cmd_stamps: list[int] = []
    cmds: list[list[float]] = []
    rejected = 0
    try:
        with Reader(bag) as reader:
            conns = [c for c in reader.connections if c.topic in (image_topic, command_topic)]
            for conn, log_ns, raw in reader.messages(connections=conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic == image_topic:
                    if max_frames is not None and len(images) >= max_frames:
                        continue
                    try:
                        images.append(_policy_image(pre, msg, conn.msgtype))
                    except FrameRejected:
                        rejected += 1
                        continue
                    img_stamps.append(_stamp(msg, log_ns))
                else:
                    cmd_stamps.append(_stamp(msg, log_ns))
                    cmds.append([_field(msg, f, bag, conn.topic) for f in fields])
    except BagError:
        raise
    except Exception as exc:  # rosbags raises its own error types
        raise BagError(f"{bag}: cannot read: {exc}") from exc
    return img_stamps, images, rejected, cmd_stamps, cmds


def read_policy_frames(
    path: str | Path,
    image_topic: str,
    *,
    height: int = 78,
    width: int = 200,
    crop: tuple[int, int, int, int] = (0, 0, 0, 0),
    max_gap_s: float = 0.3,
    max_frames: int | None = None,
) -> Frames:
    """The frames of a rosbag2's image topic at the policy input size; no other topic is read
    (footage from a real camera has no commands).

    Args:
        path: bag directory.
        image_topic: ``sensor_msgs/msg/Image`` or ``CompressedImage`` topic.
        height, width, crop: as :func:`read_demonstrations` (the runtime's preprocessing).
        max_gap_s: a larger step between consecutive frames starts a new segment (s).
        max_frames: stop after this many images.

    Returns:
        :class:`Frames`, ordered by stamp.

    Raises:
        TopicNotFoundError: no such topic (the message lists the bag's topics).
        BagError: unreadable bag, a non-image topic, or no usable frame.
    """
    bag = Path(path)
    _check_topics(bag, bag_topics(bag), {"image": image_topic})
    pre = Preprocessor(PreprocessConfig(height, width, *crop))
    stamps, images, rejected, _, _ = _read_images_and_commands(bag, image_topic, pre, max_frames)
    if not images:
        raise BagError(f"{bag}: no usable image on {image_topic} ({rejected} rejected)")
    istamp = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(istamp, kind="stable")
    frames = np.stack(images)
    del images[:]  # the stack holds them now
    if not np.array_equal(order, np.arange(order.size)):
        frames = frames[order]
    return Frames(
        images=frames,
        stamps_ns=istamp[order],
        segment=_segment_ids(istamp[order], max_gap_s),
        stats={"images": int(order.size) + rejected, "rejected": rejected},
    )


def _stamp(msg: Any, log_ns: int) -> int:
    hdr = getattr(msg, "header", None)
    if hdr is not None:
        ns = int(hdr.stamp.sec) * 1_000_000_000 + int(hdr.stamp.nanosec)
        if ns > 0:
            return ns
    return int(log_ns)


def _frame(msg: Any, msgtype: str) -> RawFrame:
    """The message as the runtime's :class:`RawFrame` (stamps are not needed here)."""
    if msgtype == IMAGE_TYPES[1]:
        return frame_from_compressed(0.0, 0, msg.format, msg.data)
    data = np.asarray(msg.data, dtype=np.uint8)
    return frame_from_image(
        0.0, 0, msg.encoding, msg.height, msg.width, msg.step, data, msg.is_bigendian
    )


def _policy_image(pre: Preprocessor, msg: Any, msgtype: str) -> NDArray[np.uint8]:
    """``(height, width, 3)`` uint8 RGB: the runtime's decoding, crop and resize
    (:meth:`Preprocessor.resized`, the same routine that feeds the network on the robot), before
    its scaling to [0, 1]; 16-bit images are rounded to 8 bits.

    Raises:
        FrameRejected: a frame the runtime would reject.
    """
    img = pre.resized(_frame(msg, msgtype))
    if img.dtype != np.uint8:
        img = np.rint(img / 257.0).astype(np.uint8)
    return img


def read_demonstrations(
    path: str | Path,
    image_topic: str,
    command_topic: str,
    *,
    command_fields: Sequence[str] | None = None,
    height: int = 78,
    width: int = 200,
    crop: tuple[int, int, int, int] = (0, 0, 0, 0),
    max_pair_dt_s: float = 0.05,
    label_offset_s: float = 0.0,
    max_gap_s: float = 0.3,
    max_frames: int | None = None,
    estimate_lag: bool = True,
) -> Demonstrations:
    """Read image/command pairs from a rosbag2 (MCAP or sqlite3).

    **Pairing**: the frame stamped ``t`` gets the command whose stamp is nearest to
    ``t + label_offset_s``, if that command is within ``max_pair_dt_s`` of it; frames without
    one are dropped (counted as ``unpaired``). With commands slower than the frames, several
    frames share a command. The tolerance only protects against gaps: a constant lag of the
    command stamps behind the frames (half a frame or more) still pairs every frame, with
    another frame's label. ``estimate_lag`` measures that lag (:func:`~.lag
    .estimate_command_lag`, on every frame read) and :meth:`Demonstrations.lag_warnings` says
    when it is large; ``label_offset_s`` undoes it.

    Args:
        path: bag directory.
        image_topic: ``sensor_msgs/msg/Image`` or ``CompressedImage`` topic.
        command_topic: command topic (e.g. ``AckermannDriveStamped``).
        command_fields: dotted fields of the command to learn (default
            :func:`default_command_field`; ``["all"]``: every command axis of the type, see
            :func:`command_fields_of`); output names are the command axes they carry
            (:func:`output_name`), units those of the axes.
        height, width, crop: policy input geometry ``crop = (top, bottom, left, right)``
            pixels; images are decoded, cropped and resized by the runtime's
            :class:`~ltc_controller.runtime.preprocess.Preprocessor`.
        max_pair_dt_s: largest ``|image stamp + label_offset_s - command stamp|`` of a pair (s).
        label_offset_s: the command stamped ``t + label_offset_s`` labels the frame stamped
            ``t`` (s; positive when commands are stamped after their frames).
        estimate_lag: estimate the command–image lag (:attr:`Demonstrations.lag_estimates`).
        max_gap_s: a larger step between consecutive paired images starts a new segment (s).
        max_frames: stop after this many images (for quick tests).

    Stamps are ``header.stamp`` where the message has one (non-zero), else the bag log time.

    Returns:
        :class:`Demonstrations`, ordered by image stamp.

    Raises:
        TopicNotFoundError: a topic is missing (the message lists the bag's topics).
        BagError: unreadable bag, wrong topic type, a missing field, or no pairs at all.
    """
    bag = Path(path)
    topics = bag_topics(bag)
    _check_topics(bag, topics, {"image": image_topic, "command": command_topic})
    ctype = topics[command_topic]
    fields = command_fields_of(ctype, command_fields)
    pre = Preprocessor(PreprocessConfig(height, width, *crop))
    img_stamps, images, rejected, cmd_stamps, cmds = _read_images_and_commands(
        bag, image_topic, pre, max_frames, command_topic, fields
    )
    if not images or not cmds:
        raise BagError(
            f"{bag}: {len(images)} images on {image_topic} and {len(cmds)} messages on "
            f"{command_topic}; need both"
        )
    istamp = np.asarray(img_stamps, dtype=np.int64)
    cstamp = np.asarray(cmd_stamps, dtype=np.int64)
    corder = np.argsort(cstamp, kind="stable")
    cstamp = cstamp[corder]
    cvals = np.asarray(cmds, dtype=np.float64)[corder]
    # Nearest command to the (offset) frame stamp.
    want = istamp + round(label_offset_s * 1e9)
    j = np.searchsorted(cstamp, want)
    lo = np.clip(j - 1, 0, len(cstamp) - 1)
    hi = np.clip(j, 0, len(cstamp) - 1)
    nearest = np.where(np.abs(cstamp[lo] - want) <= np.abs(cstamp[hi] - want), lo, hi)
    ok = np.abs(cstamp[nearest] - want) <= round(max_pair_dt_s * 1e9)
    iorder = np.argsort(istamp, kind="stable")
    keep = iorder[ok[iorder]]
    if keep.size == 0:
        raise BagError(
            f"{bag}: no image on {image_topic} has a command on {command_topic} within "
            f"{max_pair_dt_s} s of its stamp + {label_offset_s} s"
        )
    frames = np.stack(images)
    del images[:]  # the stack holds them now
    lags: tuple[LagEstimate, ...] = ()
    if estimate_lag:
        try:
            lags = (estimate_command_lag(frames, istamp, cstamp, cvals),)
        except ValueError:
            lags = ()  # too few frames or commands to say anything
    stamps_ns = istamp[keep]
    return Demonstrations(
        images=frames if np.array_equal(keep, np.arange(len(frames))) else frames[keep],
        targets=cvals[nearest[keep]].astype(np.float32),
        stamps_ns=stamps_ns,
        segment=_segment_ids(stamps_ns, max_gap_s),
        output_names=tuple(output_name(ctype, f) for f in fields),
        stats={
            "images": len(frames) + rejected,
            "paired": int(keep.size),
            "unpaired": int(len(frames) - keep.size),
            "rejected": rejected,
            "commands": len(cmds),
        },
        lag_estimates=lags,
        label_offset_s=float(label_offset_s),
    )
