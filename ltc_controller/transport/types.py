"""ROS 2 message types for the DDS backend, built at run time from ``.msg`` definitions.

One :mod:`rosbags` typestore (ROS 2 Jazzy) plus this package's ``msg/*.msg`` and the ackermann_msgs
definitions shipped in ``transport/interfaces``. From it, Cyclone DDS ``IdlStruct`` classes are made
with the DDS type names that rmw_cyclonedds_cpp uses (``pkg::msg::dds_::Name_``), final and keyless,
so that their XCDR1 bytes equal what ROS 2 (and ``rosbags``) put on the wire.

Python field types: integers ``int``, floats ``float``, ``bool``, strings ``str``; ``uint8`` and
``byte`` sequences and fixed arrays ``bytes``/``bytearray`` (fast, no per-element work); other
sequences and arrays ``list``; nested messages instances of their class.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from cyclonedds.idl import make_idl_struct
from cyclonedds.idl import types as _idl_types
from cyclonedds.idl._builder import Builder as _Builder
from cyclonedds.idl._machinery import BytesMachine as _BytesMachine
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

#: This package's name, the ROS package of the messages in ``msg/``.
PACKAGE = "ltc_controller"

# cyclonedds' array/sequence/bounded_str are subscripted at run time; mypy cannot see that.
idl_t: Any = _idl_types
_SequenceBase: Any = _idl_types.sequence
_BytesMachineBase: Any = _BytesMachine
_Annotated: Any = Annotated
_Sequence: Any = Sequence

_INTERFACES = Path(__file__).resolve().parent / "interfaces"

# Nodetype values of rosbags' field definitions (rosbags.typesys.base.Nodetype).
_BASE, _NAME, _ARRAY, _SEQUENCE = 1, 2, 3, 4

# ROS primitive -> cyclonedds annotation. ROS 2 maps ``char`` to uint8 and ``byte`` to octet.
_PRIMITIVES: dict[str, Any] = {
    "bool": bool,
    "byte": idl_t.byte,
    "char": idl_t.uint8,
    "int8": idl_t.int8,
    "uint8": idl_t.uint8,
    "int16": idl_t.int16,
    "uint16": idl_t.uint16,
    "int32": idl_t.int32,
    "uint32": idl_t.uint32,
    "int64": idl_t.int64,
    "uint64": idl_t.uint64,
    "float32": idl_t.float32,
    "float64": idl_t.float64,
}
_BYTE_LIKE = frozenset({"uint8", "byte", "char"})
_FLOATS = frozenset({"float32", "float64"})

_lock = threading.RLock()


class _OctetSequence(_SequenceBase):
    """``sequence<uint8>`` (or octet) that (de)serializes as one ``bytes`` block.

    cyclonedds' own ``sequence[uint8]`` packs element by element into a list of ints (tens of ms for
    an image), and a plain ``bytes`` field has no XTypes type object (topic creation fails). This
    marker keeps the sequence type object and swaps in a bytes machine (see ``_install_builder``).
    Distinct equality/hash so that ``typing``'s cache never confuses it with ``sequence[uint8]``.
    """

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is _OctetSequence
            and other.subtype == self.subtype
            and other.max_length == self.max_length
        )

    def __hash__(self) -> int:
        return hash(("octets", self.subtype, self.max_length))


class _OctetsMachine(_BytesMachineBase):
    """Bytes machine accepting any C-contiguous buffer (bytes, bytearray, numpy arrays)."""

    def serialize(self, buffer: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(value, bytes | bytearray):
            value = memoryview(value).cast("B")  # e.g. an (H, W, 3) uint8 numpy frame
        super().serialize(buffer, value, *args, **kwargs)


def _install_builder() -> None:
    """Teach cyclonedds' machine builder about :class:`_OctetSequence` (idempotent)."""
    current = _Builder.__dict__["_machine_for_type"].__func__
    if getattr(current, "_ltc_octets", False):
        return

    def _machine_for_type(cls: Any, _type: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(_type, _OctetSequence):
            return _OctetsMachine(_type.max_length)
        return current(cls, _type, *args, **kwargs)

    _machine_for_type._ltc_octets = True  # type: ignore[attr-defined]
    builder: Any = _Builder
    builder._machine_for_type = classmethod(_machine_for_type)


_install_builder()


class UnknownTypeError(KeyError):
    """A message type name that the typestore does not know."""


def msg_dir() -> Path | None:
    """The directory holding this package's ``.msg`` files, or ``None`` when there is none.

    ``<sys.prefix>/share/ltc_controller/msg`` when installed (pip or colcon data files), else the
    repository's ``msg/`` next to the package directory (editable install / source tree).
    """
    installed = Path(sys.prefix) / "share" / PACKAGE / "msg"
    if installed.is_dir():
        return installed
    source = Path(__file__).resolve().parents[2] / "msg"
    return source if source.is_dir() else None


def _msg_files() -> list[tuple[str, Path]]:
    """(ROS type name, path) of every extra ``.msg`` to register."""
    files: list[tuple[str, Path]] = []
    own = msg_dir()
    if own is not None:
        files += [(f"{PACKAGE}/msg/{p.stem}", p) for p in sorted(own.glob("*.msg"))]
    for pkg_dir in sorted(p for p in _INTERFACES.iterdir() if p.is_dir()):
        for p in sorted((pkg_dir / "msg").glob("*.msg")):
            files.append((f"{pkg_dir.name}/msg/{p.stem}", p))
    return files


@cache
def typestore() -> Typestore:
    """The shared rosbags typestore: ROS 2 Jazzy plus ``ltc_controller`` and ackermann_msgs.

    Raises ``ValueError`` (from rosbags) when a shipped ``.msg`` file does not parse.
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    extra: dict[str, Any] = {}
    for name, path in _msg_files():
        try:
            extra.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as exc:  # rosbags raises its own parse errors; name the file
            raise ValueError(f"cannot parse message definition {path}: {exc}") from exc
    store.register(extra)
    return store


def _fielddefs(type_name: str) -> tuple[list[Any], list[Any]]:
    try:
        consts, fields = typestore().fielddefs[type_name]
    except KeyError:
        raise UnknownTypeError(f"unknown message type {type_name!r}") from None
    return consts, fields


def dds_type_name(type_name: str) -> str:
    """``"sensor_msgs/msg/Image"`` -> ``"sensor_msgs::msg::dds_::Image_"`` (the rmw name)."""
    pkg, kind, name = type_name.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def _default_factory(desc: tuple[Any, ...]) -> Callable[[], Any]:
    """A factory for the ROS default of a field (zero, empty, nested defaults)."""
    kind, arg = desc
    if kind == _BASE:
        prim = arg[0]
        if prim == "string":
            return str
        if prim == "bool":
            return bool
        return float if prim in _FLOATS else int
    if kind == _NAME:
        return lambda: new_msg(arg)
    sub, size = arg
    if kind == _ARRAY:
        if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
            return lambda: bytearray(size)
        elem = _default_factory(sub)
        return lambda: [elem() for _ in range(size)]
    # Sequences start empty; uint8 sequences are bytes.
    if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
        return bytes
    return list


def _annotation(desc: tuple[Any, ...]) -> Any:
    """The cyclonedds annotation for one rosbags field description."""
    kind, arg = desc
    if kind == _BASE:
        prim, bound = arg
        if prim == "string":
            return idl_t.bounded_str[bound] if bound else str
        if prim in _PRIMITIVES:
            return _PRIMITIVES[prim]
        raise TypeError(f"unsupported ROS primitive type {prim!r}")
    if kind == _NAME:
        return idl_class(arg)
    sub, size = arg
    if kind == _ARRAY:
        # array[uint8, N] becomes a raw byte block in cyclonedds (ByteArrayMachine).
        return idl_t.array[_annotation(sub), size]
    if kind == _SEQUENCE:
        if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
            # Octet sequence as bytes: one memcpy instead of a list of ints.
            marker = _OctetSequence(_annotation(sub), size or None)
            return _Annotated[_Sequence[_annotation(sub)], marker]
        if size:
            return idl_t.sequence[_annotation(sub), size]
        return idl_t.sequence[_annotation(sub)]
    raise TypeError(f"unsupported field description {desc!r}")


_classes: dict[str, type[Any]] = {}


def idl_class(type_name: str) -> type[Any]:
    """The cached cyclonedds ``IdlStruct`` class of a ROS message type.

    ``type_name`` is ``"pkg/msg/Name"``. The class is a dataclass whose fields default to the ROS
    defaults; constants are class attributes (``cls.HEALTH_OK``). Raises :class:`UnknownTypeError`
    for an unknown type, ``TypeError`` for a field type this backend cannot express.
    """
    cls = _classes.get(type_name)
    if cls is not None:
        return cls
    with _lock:
        cls = _classes.get(type_name)
        if cls is not None:
            return cls
        consts, fields = _fielddefs(type_name)
        annotations = {fname: _annotation(desc) for fname, desc in fields}
        pkg, _, name = type_name.split("/")
        cls = make_idl_struct(
            f"{pkg}__msg__{name}", dds_type_name(type_name), annotations, dataclassify=False
        )
        # Defaults go on the class before dataclass() so every field is optional in __init__.
        for fname, desc in fields:
            setattr(cls, fname, dataclasses.field(default_factory=_default_factory(desc)))
        cls = dataclasses.dataclass(cls)
        for cname, _ctype, value in consts:
            setattr(cls, cname, value)
        cls.__ros_type__ = type_name
        _classes[type_name] = cls
        return cls


@cache
def constants(type_name: str) -> dict[str, int | float | str]:
    """The constants of a message type, e.g. ``{"HEALTH_OK": 0, ...}``.

    Raises :class:`UnknownTypeError` for an unknown type.
    """
    consts, _ = _fielddefs(type_name)
    return {name: value for name, _ctype, value in consts}


def new_msg(type_name: str, **fields: Any) -> Any:
    """A new message of ``type_name`` (``"pkg/msg/Name"``); unset fields at their ROS defaults.

    Raises :class:`UnknownTypeError` for an unknown type and ``TypeError`` for an unknown field.
    """
    return idl_class(type_name)(**fields)


def ros_type_of(msg: Any) -> str:
    """The ROS type name (``"pkg/msg/Name"``) of a message made by :func:`new_msg`."""
    return str(type(msg).__ros_type__)


def to_rosbags(msg: Any, type_name: str | None = None) -> Any:
    """Convert a message of this module into the rosbags dataclass of the same type.

    Byte sequences become ``numpy.uint8`` arrays and primitive sequences numpy arrays, as rosbags
    expects for serialization. Raises :class:`UnknownTypeError` for an unknown type.
    """
    import numpy as np

    type_name = type_name or ros_type_of(msg)
    _, fields = _fielddefs(type_name)
    store = typestore()
    values: dict[str, Any] = {}
    for fname, (kind, arg) in fields:
        value = getattr(msg, fname)
        if kind == _NAME:
            value = to_rosbags(value, arg)
        elif kind in (_ARRAY, _SEQUENCE):
            sub = arg[0]
            if sub[0] == _NAME:
                value = [to_rosbags(v, sub[1]) for v in value]
            elif sub[1][0] != "string":
                if sub[1][0] in _BYTE_LIKE and not isinstance(value, list):
                    value = np.frombuffer(memoryview(value).cast("B"), dtype=np.uint8).copy()
                else:
                    dtype = "uint8" if sub[1][0] in _BYTE_LIKE else sub[1][0]
                    value = np.asarray(value, dtype=dtype)
            else:
                value = list(value)
        values[fname] = value
    return store.types[type_name](**values)


def from_rosbags(obj: Any, type_name: str | None = None) -> Any:
    """Convert a rosbags message dataclass into a message of this module (inverse of
    :func:`to_rosbags`). Raises :class:`UnknownTypeError` for an unknown type."""
    type_name = type_name or obj.__msgtype__
    _, fields = _fielddefs(type_name)
    values: dict[str, Any] = {}
    for fname, (kind, arg) in fields:
        value = getattr(obj, fname)
        if kind == _NAME:
            value = from_rosbags(value, arg)
        elif kind in (_ARRAY, _SEQUENCE):
            sub = arg[0]
            if sub[0] == _NAME:
                value = [from_rosbags(v, sub[1]) for v in value]
            elif sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
                value = bytes(value) if kind == _SEQUENCE else bytearray(bytes(value))
            else:
                value = [v.item() if hasattr(v, "item") else v for v in value]
        elif hasattr(value, "item"):
            value = value.item()
        values[fname] = value
    return new_msg(type_name, **values)


def serialize(msg: Any) -> bytes:
    """The XCDR1 bytes of ``msg`` (with the 4-byte encapsulation header), as on the ROS 2 wire."""
    return bytes(msg.serialize(use_version_2=False))


def deserialize(type_name: str, data: bytes | memoryview) -> Any:
    """Decode XCDR1 bytes (with header) into a message of ``type_name``.

    Raises :class:`UnknownTypeError` for an unknown type; malformed data raises what cyclonedds
    raises (``struct.error``, ``Exception``).
    """
    return idl_class(type_name).deserialize(bytes(data))


@cache
def type_hash(type_name: str) -> str:
    """The RIHS01 type hash string (``"RIHS01_<hex>"``) ROS 2 Iron+ expects in USER_DATA."""
    return str(typestore().hash_rihs01(type_name))
