"""ROS 2 parameter services over plain DDS, the way rmw_cyclonedds_cpp puts them on the wire.

A ROS 2 node serves six services under its fully qualified name (``/ns/node/get_parameters`` …).
rmw_cyclonedds_cpp maps service ``S`` of type ``pkg/srv/T`` to two DDS topics:

- requests on ``rq<S>Request``, type ``pkg::srv::dds_::T_Request_``;
- replies on ``rr<S>Reply``, type ``pkg::srv::dds_::T_Response_``;

both reliable, volatile, keep last 10 (``rmw_qos_profile_services_default``). Every sample starts
with a 16-byte request header, ``uint64 guid`` (the client's request writer's DDS instance handle)
and ``int64 seq`` (the client's request counter); the server echoes both in the reply, and every
client on the reply topic keeps only replies with its own ``guid`` (see
:func:`.types.service_wire_class`). USER_DATA carries ``serviceid=…;`` (server endpoints) or
``clientid=…;`` (client endpoints) before ``typehash=…;``: a client counts a service as available
once it matched a request reader and a reply writer with the same ``serviceid``, and a server
delays a reply until its reply writer matched the reader whose ``clientid`` equals that of the
request's writer, because a reply written before that match is lost.

ROS 2 services do not work across DDS vendors (a Fast DDS machine cannot call them, as with ROS 2
itself): the header layout is rmw_cyclonedds_cpp's.

:class:`ParameterServer` serves a :class:`~.dds.DdsNode`'s declared parameters
(:class:`~ltc_controller.params.ParamSpec`); sets go through ``node.set_parameters`` so that the
node's validator decides, and a rejected set answers with its reason. The node creates its server;
this module does not import :mod:`.dds` (the server sees the node through :class:`ServiceNode`).
The client (``ltc-controller param``) is :class:`.param_client.ParameterClient`.

As rclpy does, the server also publishes ``rcl_interfaces/msg/ParameterEvent`` on
``/parameter_events`` (:data:`PARAMETER_EVENTS_QOS`): the declared parameters as
``new_parameters`` and every accepted set as ``changed_parameters``; a topic, so it crosses DDS
vendors.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ltc_controller.params import ParamSpec

from . import param_values as pv
from . import types as msg_types
from .graph import user_data_of
from .port import QoS

__all__ = [
    "PARAMETER_EVENTS_QOS",
    "SERVICES",
    "SERVICE_QOS",
    "ParameterServer",
    "ServiceNode",
    "endpoint_id",
    "reply_topic",
    "request_topic",
]

#: Service short name -> service type, the six every ROS 2 node serves.
SERVICES = {
    "describe_parameters": "rcl_interfaces/srv/DescribeParameters",
    "get_parameter_types": "rcl_interfaces/srv/GetParameterTypes",
    "get_parameters": "rcl_interfaces/srv/GetParameters",
    "list_parameters": "rcl_interfaces/srv/ListParameters",
    "set_parameters": "rcl_interfaces/srv/SetParameters",
    "set_parameters_atomically": "rcl_interfaces/srv/SetParametersAtomically",
}
#: rmw_qos_profile_services_default.
SERVICE_QOS = QoS("reliable", "volatile", 10)
#: ``rmw_qos_profile_parameter_events``.
PARAMETER_EVENTS_QOS = QoS("reliable", "volatile", 1000)
# How long a server keeps a reply while the client's reply reader is not matched yet.
_REPLY_WAIT_S = 2.0
_ids = itertools.count(1)


def request_topic(service: str) -> str:
    """DDS topic of requests: ``/n/get_parameters`` -> ``rq/n/get_parametersRequest``."""
    return f"rq{service}Request"


def reply_topic(service: str) -> str:
    """DDS topic of a service's replies: ``/n/get_parameters`` -> ``rr/n/get_parametersReply``."""
    return f"rr{service}Reply"


class ServiceNode(Protocol):
    """What the parameter services use of a node: :class:`~.dds.DdsNode` implements it (the
    server is created by the node, so this module names no node class)."""

    @property
    def fully_qualified_name(self) -> str: ...

    @property
    def logger(self) -> logging.Logger: ...

    @property
    def parameter_specs(self) -> tuple[ParamSpec, ...]: ...

    def get_parameters(self) -> dict[str, Any]: ...

    def set_parameters(self, changes: Mapping[str, Any]) -> str: ...

    def msg(self, type_name: str, **fields: Any) -> Any: ...

    def create_publisher(self, type_name: str, topic: str, qos: QoS = ...) -> Any: ...

    def open_writer(
        self, dds_topic: str, cls: type, qos: QoS, type_hash: str | None, user_data: str = ""
    ) -> Any: ...

    def open_reader(
        self,
        dds_topic: str,
        cls: type,
        qos: QoS,
        type_hash: str | None,
        callback: Callable[[Any], None],
        user_data: str = "",
        topic: str | None = None,
    ) -> Any: ...

    def add_spin_hook(self, hook: Callable[[], float | None]) -> None: ...

    def graph_entities(self) -> tuple[bytes, list[bytes], list[bytes]]: ...


def endpoint_id(node: ServiceNode) -> str:
    """A process-unique id for one client or service (its USER_DATA ``clientid``/``serviceid``):
    the participant GUID prefix and a counter, in hex."""
    prefix = node.graph_entities()[0][:12].hex()
    return f"{prefix}.{next(_ids):x}"


@dataclass
class _PendingReply:
    writer: Any
    client_id: str
    reply: Any
    deadline_s: float


# --------------------------------------------------------------------------------------------
# Server


class ParameterServer:
    """The six ROS 2 parameter services of one :class:`~.dds.DdsNode` (created by the node).

    Serves the node's declared parameters (``node.parameter_specs``) and current values. As in
    rclpy: a parameter keeps its declared type (an integer is refused for a double), undeclared
    names get type ``NOT_SET`` from ``get_parameters``/``get_parameter_types``, and parameters
    cannot be undeclared. ``set_parameters`` applies each parameter separately,
    ``set_parameters_atomically`` all or none.

    Counters: ``requests`` served, ``replies_dropped`` (the client's reply reader never matched).
    """

    def __init__(self, node: ServiceNode) -> None:
        self._node = node
        self._pending: list[_PendingReply] = []
        self._readers: dict[str, Any] = {}
        self.requests = 0
        self.replies_dropped = 0
        for short, srv in SERVICES.items():
            service = f"{node.fully_qualified_name}/{short}"
            user = f"serviceid={endpoint_id(node)};"
            writer = node.open_writer(
                reply_topic(service),
                msg_types.service_wire_class(srv + "_Response"),
                SERVICE_QOS,
                msg_types.type_hash(srv + "_Response"),
                user,
            )

            def on_request(sample: Any, short: str = short, writer: Any = writer) -> None:
                self._on_request(short, writer, sample)

            self._readers[short] = node.open_reader(
                request_topic(service),
                msg_types.service_wire_class(srv + "_Request"),
                SERVICE_QOS,
                msg_types.type_hash(srv + "_Request"),
                on_request,
                user,
            )
        node.add_spin_hook(self._flush)
        self._events = node.create_publisher(
            "rcl_interfaces/msg/ParameterEvent", "/parameter_events", PARAMETER_EVENTS_QOS
        )

    def publish_event(
        self, new: Mapping[str, Any] | None = None, changed: Mapping[str, Any] | None = None
    ) -> None:
        """Publish a ``ParameterEvent`` with these declared (``new``) and set (``changed``)
        parameters, names to values."""
        msg = self._node.msg(
            "rcl_interfaces/msg/ParameterEvent",
            node=self._node.fully_qualified_name,
            new_parameters=self._parameters(new or {}),
            changed_parameters=self._parameters(changed or {}),
        )
        msg.stamp.sec, msg.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        self._events.publish(msg)

    def _parameters(self, values: Mapping[str, Any]) -> list[Any]:
        return [
            self._node.msg("rcl_interfaces/msg/Parameter", name=k, value=self._value(v))
            for k, v in sorted(values.items())
        ]

    # -- request handling --------------------------------------------------------------------

    def _on_request(self, short: str, writer: Any, request: Any) -> None:
        self.requests += 1
        fields = getattr(self, "_" + short)(request)
        reply_cls = msg_types.service_wire_class(SERVICES[short] + "_Response")
        reply = reply_cls(
            **{
                msg_types.HEADER_GUID: getattr(request, msg_types.HEADER_GUID),
                msg_types.HEADER_SEQ: getattr(request, msg_types.HEADER_SEQ),
            },
            **fields,
        )
        client_id = self._client_id(short, request)
        if client_id is None or _matches_reader(writer, client_id):
            writer.write(reply)
        else:
            deadline = time.monotonic() + _REPLY_WAIT_S
            self._pending.append(_PendingReply(writer, client_id, reply, deadline))

    def _client_id(self, short: str, request: Any) -> str | None:
        """The ``clientid`` in the USER_DATA of the writer that sent ``request`` (None: none)."""
        info = getattr(request, "sample_info", None)
        if info is None:
            return None
        endpoint = self._readers[short].get_matched_publication_data(info.publication_handle)
        return user_data_of(endpoint).get("clientid") if endpoint is not None else None

    def _flush(self) -> float | None:
        """Spin hook: send the replies whose client reader has matched; drop expired ones."""
        if not self._pending:
            return None
        now = time.monotonic()
        keep = []
        for p in self._pending:
            if _matches_reader(p.writer, p.client_id):
                p.writer.write(p.reply)
            elif now > p.deadline_s:
                self.replies_dropped += 1
                self._node.logger.warning(
                    f"dropped a parameter service reply: client {p.client_id} never matched"
                )
            else:
                keep.append(p)
        self._pending = keep
        return 0.01 if keep else None

    # -- the six services ----------------------------------------------------------------------

    def _specs(self) -> dict[str, Any]:
        return {s.name: s for s in self._node.parameter_specs}

    def _value(self, value: Any) -> Any:
        if value is None:
            return self._node.msg("rcl_interfaces/msg/ParameterValue")
        t = pv.type_of_value(value)
        return self._node.msg(
            "rcl_interfaces/msg/ParameterValue", type=t, **{pv.VALUE_FIELDS[t]: value}
        )

    def _get_parameters(self, req: Any) -> dict[str, Any]:
        values = self._node.get_parameters()
        return {"values": [self._value(values.get(n)) for n in req.names]}

    def _get_parameter_types(self, req: Any) -> dict[str, Any]:
        specs = self._specs()
        types = [pv.parameter_type(specs[n]) if n in specs else pv.NOT_SET for n in req.names]
        return {"types": bytes(types)}

    def _list_parameters(self, req: Any) -> dict[str, Any]:
        names, prefixes = pv.select_parameters(self._specs(), list(req.prefixes), int(req.depth))
        result = self._node.msg(
            "rcl_interfaces/msg/ListParametersResult", names=names, prefixes=prefixes
        )
        return {"result": result}

    def _describe_parameters(self, req: Any) -> dict[str, Any]:
        specs = self._specs()
        out = []
        for name in req.names:
            spec = specs.get(name)
            if spec is None:
                out.append(self._node.msg("rcl_interfaces/msg/ParameterDescriptor", name=name))
                continue
            d = pv.descriptor_fields(spec)
            fp = [
                self._node.msg(
                    "rcl_interfaces/msg/FloatingPointRange", from_value=a, to_value=b, step=c
                )
                for a, b, c in d.pop("floating_point_range")
            ]
            ir = [
                self._node.msg("rcl_interfaces/msg/IntegerRange", from_value=a, to_value=b, step=c)
                for a, b, c in d.pop("integer_range")
            ]
            out.append(
                self._node.msg(
                    "rcl_interfaces/msg/ParameterDescriptor",
                    floating_point_range=fp,
                    integer_range=ir,
                    **d,
                )
            )
        return {"descriptors": out}

    def _changes(self, parameters: Sequence[Any]) -> tuple[dict[str, Any], str]:
        specs = self._specs()
        changes: dict[str, Any] = {}
        for p in parameters:
            spec = specs.get(p.name)
            t = int(p.value.type)
            if spec is None:
                return {}, f"parameter '{p.name}' is not declared"
            if t == pv.NOT_SET:
                return {}, f"parameter '{p.name}' cannot be undeclared"
            reason = pv.type_mismatch(spec, t)
            if reason:
                return {}, reason
            changes[p.name] = getattr(p.value, pv.VALUE_FIELDS[t])
        return changes, ""

    def _apply(self, parameters: Sequence[Any]) -> Any:
        changes, reason = self._changes(parameters)
        if not reason:
            try:
                reason = self._node.set_parameters(changes)
            except Exception as exc:  # a validator that raises rejects; the node keeps running
                reason = f"parameter validator raised {type(exc).__name__}: {exc}"
        return self._node.msg(
            "rcl_interfaces/msg/SetParametersResult", successful=not reason, reason=reason
        )

    def _set_parameters(self, req: Any) -> dict[str, Any]:
        return {"results": [self._apply([p]) for p in req.parameters]}

    def _set_parameters_atomically(self, req: Any) -> dict[str, Any]:
        return {"result": self._apply(list(req.parameters))}


def _matches_reader(writer: Any, client_id: str) -> bool:
    """Whether ``writer`` matched a reader whose USER_DATA has ``clientid=<client_id>``."""
    for handle in writer.get_matched_subscriptions():
        endpoint = writer.get_matched_subscription_data(handle)
        if endpoint is not None and user_data_of(endpoint).get("clientid") == client_id:
            return True
    return False
