"""ROS 2 graph presence for the DDS backend: ``ParticipantEntitiesInfo`` on ``ros_discovery_info``.

A ROS 2 process learns which *nodes* exist (``ros2 node list``, ``ros2 node info``, the node names
that ``ros2 param`` resolves) not from DDS discovery but from one message per DDS participant on the
topic ``ros_discovery_info`` (no ``rt`` prefix; reliable, transient local, keep last 1): the
participant's GID and, per node, its namespace, name and the GIDs of its readers and writers. A
GID is the entity's 16-byte DDS GUID, padded with zeros to the GID size of the ROS distribution:
16 bytes on Iron and later, 24 on Humble (``rmw_dds_common/msg/Gid``). The participant also
carries ``enclave=/;`` in its USER_DATA, as rmw_cyclonedds_cpp's do.

This module builds that message; :class:`~.dds.DdsNode` owns the writer and republishes whenever it
creates an endpoint. :func:`user_data_of` reads the ``key=value;`` USER_DATA of a discovered
endpoint (``typehash``, the services' ``serviceid``/``clientid``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cyclonedds.core import Policy as _Policy

from . import types as msg_types
from .port import QoS

__all__ = [
    "DISCOVERY_QOS",
    "DISCOVERY_TOPIC",
    "ENCLAVE_USER_DATA",
    "gid",
    "gid_size_from_env",
    "participant_entities_info",
    "user_data_of",
]

# cyclonedds builds its policy classes at run time; mypy cannot see Policy.Userdata.
_DDS_POLICY: Any = _Policy

#: DDS topic name (ROS "avoid namespace conventions": no ``rt`` prefix).
DISCOVERY_TOPIC = "ros_discovery_info"
#: QoS of the discovery writer, as rmw_cyclonedds_cpp creates it.
DISCOVERY_QOS = QoS("reliable", "transient_local", 1)
#: Participant USER_DATA: rmw_cyclonedds_cpp adds a participant to its graph only with an enclave.
ENCLAVE_USER_DATA = b"enclave=/;"


def gid_size_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The GID size in bytes for this process's ROS 2 peers.

    ``LTC_ROS_GID_SIZE`` (16 or 24) wins; otherwise ``ROS_DISTRO=humble`` gives 24 (Humble's
    ``char[24]`` GIDs) and anything else 16 (Iron, Jazzy and later). Raises ``ValueError`` for an
    ``LTC_ROS_GID_SIZE`` other than 16 or 24.
    """
    env = os.environ if environ is None else environ
    raw = env.get("LTC_ROS_GID_SIZE", "").strip()
    if raw:
        if raw not in ("16", "24"):
            raise ValueError(f"LTC_ROS_GID_SIZE={raw!r}: use 16 (Iron and later) or 24 (Humble)")
        return int(raw)
    return 24 if env.get("ROS_DISTRO", "").strip().lower() == "humble" else 16


def gid(guid: uuid.UUID | bytes, size: int = 16) -> bytes:
    """The ROS GID of a DDS entity: its 16-byte GUID, zero-padded to ``size`` bytes (16 or 24).

    Raises ``ValueError`` for another size or a GUID that is not 16 bytes.
    """
    raw = guid.bytes if isinstance(guid, uuid.UUID) else bytes(guid)
    if len(raw) != 16:
        raise ValueError(f"a DDS GUID has 16 bytes, got {len(raw)}")
    if size not in msg_types.GID_SIZES:
        raise ValueError(f"GID size must be one of {msg_types.GID_SIZES}, got {size}")
    return raw + bytes(size - 16)


def participant_entities_info(
    participant_guid: uuid.UUID | bytes,
    nodes: Sequence[tuple[str, str, Sequence[bytes], Sequence[bytes]]],
    gid_size: int = 16,
) -> Any:
    """The ``rmw_dds_common/msg/ParticipantEntitiesInfo`` sample for one participant.

    ``nodes`` holds ``(namespace, name, reader GUIDs, writer GUIDs)`` per node, GUIDs as 16 bytes.
    Returns a ``ParticipantEntitiesInfo`` of :func:`.types.discovery_classes` for ``gid_size``.
    Raises ``ValueError`` for a bad GUID or GID size.
    """
    info_cls, node_cls, gid_cls = msg_types.discovery_classes(gid_size)

    def make_gid(g: uuid.UUID | bytes) -> Any:
        return gid_cls(data=bytearray(gid(g, gid_size)))

    return info_cls(
        gid=make_gid(participant_guid),
        node_entities_info_seq=[
            node_cls(
                node_namespace=ns,
                node_name=name,
                reader_gid_seq=[make_gid(g) for g in readers],
                writer_gid_seq=[make_gid(g) for g in writers],
            )
            for ns, name, readers, writers in nodes
        ],
    )


def user_data_of(endpoint: Any) -> dict[str, str]:
    """``key=value;`` pairs of a discovered endpoint's USER_DATA (a ``DcpsEndpoint``); ``{}`` when
    it has none or it is not text."""
    try:
        raw = endpoint.qos[_DDS_POLICY.Userdata].data
    except (KeyError, AttributeError, TypeError):
        return {}
    try:
        text = bytes(raw).decode()
    except UnicodeDecodeError:
        return {}
    pairs = (item.split("=", 1) for item in text.split(";") if "=" in item)
    return {k: v for k, v in pairs}
