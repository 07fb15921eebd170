"""ROS 2 message types for the DDS backend, built at run time from ``.msg`` definitions.

The project's one :mod:`rosbags` typestore (:func:`ltc_controller.interfaces.typestore`: ROS 2
Jazzy plus this package's ``msg/*.msg``, and the ackermann_msgs messages and rcl_interfaces
parameter services that rosbags lacks). From it, Cyclone DDS ``IdlStruct`` classes are made with the
DDS type names that rmw_cyclonedds_cpp uses (``pkg::msg::dds_::Name_``,
``pkg::srv::dds_::Name_Request_``), final and keyless, so that their XCDR1 bytes equal what ROS 2
(and ``rosbags``) put on the wire.

Service requests and replies travel with rmw_cyclonedds_cpp's 16-byte request header in front of
the payload: see :func:`service_wire_class`. Type hashes are REP-2011 RIHS01 (:func:`rihs01`).

Python field types: integers ``int``, floats ``float``, ``bool``, strings ``str``; ``uint8`` and
``byte`` sequences and fixed arrays ``bytes``/``bytearray`` (fast, no per-element work); other
sequences and arrays ``list``; nested messages instances of their class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Annotated, Any

from cyclonedds.idl import make_idl_struct
from cyclonedds.idl import types as _idl_types
from cyclonedds.idl._builder import Builder as _Builder
from cyclonedds.idl._machinery import BytesMachine as _BytesMachine
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from ltc_controller.interfaces import typestore

# cyclonedds' array/sequence/bounded_str are subscripted at run time; mypy cannot see that.
idl_t: Any = _idl_types
_SequenceBase: Any = _idl_types.sequence
_BytesMachineBase: Any = _BytesMachine
_Annotated: Any = Annotated
_Sequence: Any = Sequence

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


def dds_type_name(type_name: str) -> str:
    """``"sensor_msgs/msg/Image"`` -> ``"sensor_msgs::msg::dds_::Image_"`` (the rmw name)."""
    pkg, kind, name = type_name.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


class _ClassFactory:
    """Builds (and caches) ``IdlStruct`` classes from one rosbags typestore's field definitions.

    The package uses one factory over :func:`typestore`; ``ros_discovery_info`` for ROS 2 Humble
    (24-byte GIDs) needs a second one over rosbags' Humble store, see :func:`discovery_classes`.
    """

    def __init__(self, store: Callable[[], Typestore], label: str) -> None:
        self._store = store
        self._label = label
        self.classes: dict[str, type[Any]] = {}

    def fielddefs(self, type_name: str) -> tuple[list[Any], list[Any]]:
        try:
            consts, fields = self._store().fielddefs[type_name]
        except KeyError:
            raise UnknownTypeError(f"unknown message type {type_name!r}") from None
        return consts, fields

    def default_factory(self, desc: tuple[Any, ...]) -> Callable[[], Any]:
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
            return lambda: self.get(arg)()
        sub, size = arg
        if kind == _ARRAY:
            if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
                return lambda: bytearray(size)
            elem = self.default_factory(sub)
            return lambda: [elem() for _ in range(size)]
        # Sequences start empty; uint8 sequences are bytes.
        if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
            return bytes
        return list

    def annotation(self, desc: tuple[Any, ...]) -> Any:
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
            return self.get(arg)
        sub, size = arg
        if kind == _ARRAY:
            # array[uint8, N] becomes a raw byte block in cyclonedds (ByteArrayMachine).
            return idl_t.array[self.annotation(sub), size]
        if kind == _SEQUENCE:
            if sub[0] == _BASE and sub[1][0] in _BYTE_LIKE:
                # Octet sequence as bytes: one memcpy instead of a list of ints.
                marker = _OctetSequence(self.annotation(sub), size or None)
                return _Annotated[_Sequence[self.annotation(sub)], marker]
            if size:
                return idl_t.sequence[self.annotation(sub), size]
            return idl_t.sequence[self.annotation(sub)]
        raise TypeError(f"unsupported field description {desc!r}")

    def build(
        self,
        type_name: str,
        dds_name: str,
        lead: Sequence[tuple[str, Any, Callable[[], Any]]] = (),
    ) -> type[Any]:
        """A new class for ``type_name`` with DDS type name ``dds_name``; ``lead`` are extra
        ``(name, annotation, default factory)`` fields in front of the message's own."""
        consts, fields = self.fielddefs(type_name)
        annotations = {fname: ann for fname, ann, _ in lead}
        clash = sorted(set(annotations) & {fname for fname, _ in fields})
        if clash:
            raise TypeError(f"{type_name}: fields {clash} collide with the request header")
        annotations.update({fname: self.annotation(desc) for fname, desc in fields})
        pkg, kind, name = type_name.split("/")
        suffix = "__wire" if lead else ""
        cls = make_idl_struct(
            f"{pkg}__{kind}__{name}{suffix}{self._label}",
            dds_name,
            annotations,
            dataclassify=False,
        )
        # Defaults go on the class before dataclass() so every field is optional in __init__.
        for fname, _, factory in lead:
            setattr(cls, fname, dataclasses.field(default_factory=factory))
        for fname, desc in fields:
            setattr(cls, fname, dataclasses.field(default_factory=self.default_factory(desc)))
        cls = dataclasses.dataclass(cls)
        for cname, _ctype, value in consts:
            setattr(cls, cname, value)
        setattr(cls, "__ros_type__", type_name)  # noqa: B010 - IdlStruct has no such attribute
        return cls

    def get(self, type_name: str) -> type[Any]:
        cls = self.classes.get(type_name)
        if cls is not None:
            return cls
        with _lock:
            cls = self.classes.get(type_name)
            if cls is None:
                cls = self.build(type_name, dds_type_name(type_name))
                self.classes[type_name] = cls
            return cls


_factory = _ClassFactory(lambda: typestore(), "")


def _fielddefs(type_name: str) -> tuple[list[Any], list[Any]]:
    return _factory.fielddefs(type_name)


def idl_class(type_name: str) -> type[Any]:
    """The cached cyclonedds ``IdlStruct`` class of a ROS message type.

    ``type_name`` is ``"pkg/msg/Name"`` (or ``"pkg/srv/Name_Request"``/``_Response`` for the
    payload of a service). The class is a dataclass whose fields default to the ROS defaults;
    constants are class attributes (``cls.HEALTH_OK``). Raises :class:`UnknownTypeError` for an
    unknown type, ``TypeError`` for a field type this backend cannot express.
    """
    return _factory.get(type_name)


#: Field names of rmw_cyclonedds_cpp's request header in :func:`service_wire_class` samples.
HEADER_GUID, HEADER_SEQ = "request_header_guid", "request_header_seq"
_wire_classes: dict[str, type[Any]] = {}


def service_wire_class(type_name: str) -> type[Any]:
    """The class of a service request or reply as rmw_cyclonedds_cpp puts it on the wire.

    ``type_name`` is ``"pkg/srv/Name_Request"`` or ``"pkg/srv/Name_Response"``. rmw_cyclonedds_cpp
    sends ``struct { uint64 guid; int64 seq; <payload fields> }`` under the payload's DDS type name
    (``pkg::srv::dds_::Name_Request_``): ``guid`` identifies the client (its request writer's DDS
    instance handle), ``seq`` numbers its requests, and the server echoes both in the reply so that
    each client keeps only its own replies. Both header fields are 8 bytes, so the payload keeps
    its alignment and the bytes after the 16-byte header equal the payload's plain CDR. The header
    fields are named :data:`HEADER_GUID` and :data:`HEADER_SEQ`. Raises :class:`UnknownTypeError`.
    """
    cls = _wire_classes.get(type_name)
    if cls is not None:
        return cls
    if "/srv/" not in type_name or not type_name.endswith(("_Request", "_Response")):
        raise UnknownTypeError(f"{type_name!r} is not a service request or response type")
    with _lock:
        cls = _wire_classes.get(type_name)
        if cls is None:
            lead = ((HEADER_GUID, idl_t.uint64, int), (HEADER_SEQ, idl_t.int64, int))
            cls = _factory.build(type_name, dds_type_name(type_name), lead)
            _wire_classes[type_name] = cls
        return cls


#: GID sizes of ``rmw_dds_common/msg/Gid``: 16 bytes on Iron and later, 24 on Humble.
GID_SIZES = (16, 24)
_humble_factory = _ClassFactory(lambda: get_typestore(Stores.ROS2_HUMBLE), "__humble")
PARTICIPANT_ENTITIES_INFO = "rmw_dds_common/msg/ParticipantEntitiesInfo"


def discovery_classes(gid_size: int = 16) -> tuple[type[Any], type[Any], type[Any]]:
    """The classes ``(ParticipantEntitiesInfo, NodeEntitiesInfo, Gid)`` of ``rmw_dds_common/msg``
    for ``ros_discovery_info``.

    ``gid_size`` 16 gives the Iron/Jazzy layout (``char[16]`` GIDs), 24 the Humble one; both have
    the same DDS type names, so a participant talks to one of the two. Raises ``ValueError`` for
    another size.
    """
    if gid_size not in GID_SIZES:
        raise ValueError(f"GID size must be one of {GID_SIZES} bytes, got {gid_size}")
    factory = _factory if gid_size == 16 else _humble_factory
    pkg = "rmw_dds_common/msg/"
    return tuple(  # type: ignore[return-value]
        factory.get(pkg + n) for n in ("ParticipantEntitiesInfo", "NodeEntitiesInfo", "Gid")
    )


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


# REP-2011 FieldType ids (type_description_interfaces/msg/FieldType). ``char`` is listed as uint8:
# rosidl turns a .msg ``char`` into IDL ``uint8`` before hashing (rosbags 0.11 hashes it as CHAR,
# which gives rmw_dds_common/msg/Gid a hash that no ROS 2 process uses).
_FIELD_TYPE_IDS = {
    "int8": 2,
    "uint8": 3,
    "char": 3,
    "int16": 4,
    "uint16": 5,
    "int32": 6,
    "uint32": 7,
    "int64": 8,
    "uint64": 9,
    "float32": 10,
    "float64": 11,
    "bool": 15,
    "byte": 16,
    "string": 17,
}
_BOUNDED_STRING = 21
_NESTED = 1
# Offsets added to a value type id for arrays, bounded sequences and unbounded sequences.
_ARRAY_OFFSET, _BOUNDED_SEQUENCE_OFFSET, _SEQUENCE_OFFSET = 48, 96, 144


def _field_type(desc: tuple[Any, ...]) -> tuple[dict[str, Any], str]:
    """REP-2011 ``FieldType`` of one rosbags field description, and its nested type name."""
    kind, arg = desc
    offset, capacity = 0, 0
    if kind == _ARRAY:
        (kind, arg), capacity = arg
        offset = _ARRAY_OFFSET
    elif kind == _SEQUENCE:
        (kind, arg), capacity = arg
        offset = _BOUNDED_SEQUENCE_OFFSET if capacity else _SEQUENCE_OFFSET
    nested, string_capacity = "", 0
    if kind == _NAME:
        type_id, nested = _NESTED, arg
    elif arg[0] == "string" and arg[1]:
        type_id, string_capacity = _BOUNDED_STRING, arg[1]
    else:
        type_id = _FIELD_TYPE_IDS[arg[0]]
    field_type = {
        "type_id": type_id + offset,
        "capacity": capacity,
        "string_capacity": string_capacity,
        "nested_type_name": nested,
    }
    return field_type, nested


def _individual_description(store: Typestore, type_name: str) -> tuple[dict[str, Any], set[str]]:
    fields: list[Any] = list(store.fielddefs[type_name][1])
    # IDL structs need a member; rosidl adds this one to empty messages (std_msgs/Empty).
    fields = fields or [("structure_needs_at_least_one_member", (_BASE, ("uint8", 0)))]
    out, refs = [], set()
    for fname, desc in fields:
        field_type, nested = _field_type(desc)
        out.append({"name": fname, "type": field_type})
        if nested:
            refs.add(nested)
    return {"type_name": type_name, "fields": out}, refs


def rihs01(type_name: str, store: Typestore | None = None) -> str:
    """The REP-2011 type hash ``"RIHS01_<64 hex>"`` of a message type.

    SHA-256 of the JSON text of the type's ``TypeDescription``: the type's fields (name, type id,
    capacity, string capacity, nested type name; no defaults, no constants) and those of every type
    it references, sorted by name, written as ``json.dumps`` does with ``", "``/``": "``
    separators. ``store`` defaults to :func:`typestore`. Raises :class:`UnknownTypeError`.
    """
    store = store or typestore()
    if type_name not in store.fielddefs:
        raise UnknownTypeError(f"unknown message type {type_name!r}")
    top, pending = _individual_description(store, type_name)
    referenced: dict[str, dict[str, Any]] = {}
    while pending:
        name = pending.pop()
        if name in referenced:
            continue
        if name not in store.fielddefs:
            raise UnknownTypeError(f"{type_name}: unknown nested type {name!r}")
        referenced[name], more = _individual_description(store, name)
        pending |= more - referenced.keys()
    description = {
        "type_description": top,
        "referenced_type_descriptions": [referenced[k] for k in sorted(referenced)],
    }
    text = json.dumps(description, separators=(", ", ": "), ensure_ascii=True)
    return "RIHS01_" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@cache
def type_hash(type_name: str) -> str:
    """The RIHS01 type hash string (``"RIHS01_<hex>"``) ROS 2 Iron+ expects in USER_DATA
    (see :func:`rihs01`). Raises :class:`UnknownTypeError`."""
    return rihs01(type_name)
