"""The client of the ROS 2 parameter services (``ltc-controller param``), over plain DDS.

:class:`ParameterClient` calls the six services that every ROS 2 node serves (see
:mod:`.param_services` for the topics, the request header and the ``clientid``/``serviceid``
USER_DATA rule) and works against a :class:`~.dds.DdsNode` and against any ROS 2 node on
rmw_cyclonedds_cpp. It lives apart from the server because it makes a DDS node of its own, while
the server is made by one.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import param_values as pv
from . import types as msg_types
from .dds import DdsNode, normalize_namespace
from .graph import user_data_of
from .param_services import SERVICE_QOS, SERVICES, endpoint_id, reply_topic, request_topic

__all__ = ["ParameterClient", "ParameterServiceError", "value_of"]


class ParameterServiceError(RuntimeError):
    """A parameter service was not found or did not answer in time; the message says which."""


class _ServiceClient:
    """Request writer + reply reader of one service, sharing one ``clientid``."""

    def __init__(self, node: DdsNode, service: str, srv_type: str) -> None:
        self.service = service
        self.srv_type = srv_type
        user = f"clientid={endpoint_id(node)};"
        self.request_cls = msg_types.service_wire_class(srv_type + "_Request")
        self.writer = node.open_writer(
            request_topic(service),
            self.request_cls,
            SERVICE_QOS,
            msg_types.type_hash(srv_type + "_Request"),
            user,
        )
        # rmw_cyclonedds_cpp's header guid: the request writer's instance handle, as uint64.
        self.guid = self.writer.get_instance_handle() & 0xFFFF_FFFF_FFFF_FFFF
        self.replies: dict[int, Any] = {}
        self.reader = node.open_reader(
            reply_topic(service),
            msg_types.service_wire_class(srv_type + "_Response"),
            SERVICE_QOS,
            msg_types.type_hash(srv_type + "_Response"),
            self._on_reply,
            user,
        )

    def _on_reply(self, reply: Any) -> None:
        if getattr(reply, msg_types.HEADER_GUID) == self.guid:
            self.replies[getattr(reply, msg_types.HEADER_SEQ)] = reply

    def available(self) -> bool:
        """rmw_cyclonedds_cpp's rule: a matched request reader and reply writer with the same
        ``serviceid`` (or, for servers without ids, any matched pair)."""
        readers = [
            self.writer.get_matched_subscription_data(h)
            for h in self.writer.get_matched_subscriptions()
        ]
        writers = [
            self.reader.get_matched_publication_data(h)
            for h in self.reader.get_matched_publications()
        ]
        ids = {user_data_of(r).get("serviceid") for r in readers if r is not None} - {None}
        if not ids:
            return bool(readers) and bool(writers)
        return any(user_data_of(w).get("serviceid") in ids for w in writers if w is not None)


class ParameterClient:
    """Calls the parameter services of the node ``target`` (e.g. ``"/car/ltc_policy"``).

    Uses ``node`` (a :class:`~.dds.DdsNode`, spun by the calls) or, when None, a hidden node of its
    own (``_ltc_param_client_<pid>``, closed by :meth:`close`). All calls raise
    :class:`ParameterServiceError` when the service is not found or does not answer within
    ``timeout_s`` seconds.
    """

    def __init__(
        self,
        target: str,
        node: DdsNode | None = None,
        timeout_s: float = 5.0,
        services: Mapping[str, str] = SERVICES,
    ) -> None:
        self.target = normalize_namespace(target)
        #: short name -> service type of the services :meth:`call` reaches (default: the six
        #: parameter services; e.g. :data:`.lifecycle_server.LIFECYCLE_SERVICES`)
        self.services = dict(services)
        if self.target == "/":
            raise ValueError("a node name is needed, e.g. /ltc_policy")
        self.timeout_s = timeout_s
        self._own = node is None
        self._node = node or DdsNode(f"_ltc_param_client_{os.getpid()}", parameter_services=False)
        self._clients: dict[str, _ServiceClient] = {}
        self._seq = itertools.count(1)

    def close(self) -> None:
        """Shut down the client's own node (if it made one)."""
        if self._own:
            self._node.shutdown()

    def __enter__(self) -> ParameterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self, short: str) -> _ServiceClient:
        client = self._clients.get(short)
        if client is None:
            client = _ServiceClient(self._node, f"{self.target}/{short}", self.services[short])
            self._clients[short] = client
        return client

    def wait_for_services(self, shorts: Sequence[str] | None = None) -> bool:
        """Wait up to ``timeout_s`` for the named services (default: all of :attr:`services`);
        True when all are available."""
        clients = [self._client(s) for s in (self.services if shorts is None else shorts)]
        end = time.monotonic() + self.timeout_s
        while True:
            if all(c.available() for c in clients):
                return True
            if time.monotonic() >= end:
                return False
            self._node.spin_once(0.02)

    def call(self, short: str, **fields: Any) -> Any:
        """Send one request to service ``short`` (e.g. ``"get_parameters"``) and return the
        reply (a ``…_Response`` wire sample). Raises :class:`ParameterServiceError`."""
        client = self._client(short)
        service = client.service
        if not self.wait_for_services([short]):
            raise ParameterServiceError(
                f"no service {service} within {self.timeout_s:g} s on ROS_DOMAIN_ID="
                f"{self._node.domain_id} (is the node running? ROS 2 services need "
                "rmw_cyclonedds_cpp on the other side: they do not cross DDS vendors)"
            )
        seq = next(self._seq)
        request = client.request_cls(
            **{msg_types.HEADER_GUID: client.guid, msg_types.HEADER_SEQ: seq}, **fields
        )
        client.writer.write(request)
        end = time.monotonic() + self.timeout_s
        while seq not in client.replies:
            if time.monotonic() >= end:
                raise ParameterServiceError(f"{service}: no reply within {self.timeout_s:g} s")
            self._node.spin_once(0.02)
        return client.replies.pop(seq)

    # -- typed helpers -------------------------------------------------------------------------

    def get(self, names: Sequence[str]) -> list[Any]:
        """Current values of ``names`` (None for a parameter that is not set)."""
        reply = self.call("get_parameters", names=list(names))
        return [value_of(v) for v in reply.values]

    def types(self, names: Sequence[str]) -> list[int]:
        """``rcl_interfaces/msg/ParameterType`` numbers of ``names`` (0: not set)."""
        return list(bytes(self.call("get_parameter_types", names=list(names)).types))

    def list_parameters(
        self, prefixes: Sequence[str] = (), depth: int = 0
    ) -> tuple[list[str], list[str]]:
        """``(names, prefixes)`` from ``list_parameters`` (depth 0: recursive)."""
        result = self.call("list_parameters", prefixes=list(prefixes), depth=depth).result
        return list(result.names), list(result.prefixes)

    def describe(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Descriptors of ``names`` as dicts (the ``ParameterDescriptor`` fields; ranges as lists
        of ``(from_value, to_value, step)``)."""
        out = []
        for d in self.call("describe_parameters", names=list(names)).descriptors:
            out.append(
                {
                    "name": d.name,
                    "type": int(d.type),
                    "description": d.description,
                    "additional_constraints": d.additional_constraints,
                    "read_only": bool(d.read_only),
                    "dynamic_typing": bool(d.dynamic_typing),
                    "floating_point_range": [
                        (r.from_value, r.to_value, r.step) for r in d.floating_point_range
                    ],
                    "integer_range": [(r.from_value, r.to_value, r.step) for r in d.integer_range],
                }
            )
        return out

    def set(self, values: Mapping[str, Any]) -> list[str]:
        """Set each parameter separately; returns one reason per parameter (``""``: accepted).
        Values are sent with the ROS type of their Python type (see :func:`parameter`)."""
        reply = self.call(
            "set_parameters", parameters=[self.parameter(n, v) for n, v in values.items()]
        )
        return [r.reason if not r.successful else "" for r in reply.results]

    def set_atomically(self, values: Mapping[str, Any]) -> str:
        """Set all of ``values`` or none; returns ``""`` or the reason of the rejection."""
        params = [self.parameter(n, v) for n, v in values.items()]
        result = self.call("set_parameters_atomically", parameters=params).result
        return "" if result.successful else str(result.reason)

    def parameter(self, name: str, value: Any) -> Any:
        """An ``rcl_interfaces/msg/Parameter`` for ``value`` (type from the Python type: bool,
        int, float, str, bytes, or a list of one of them). Raises ``TypeError``."""
        t = pv.type_of_value(value)
        fields = {pv.VALUE_FIELDS[t]: list(value) if isinstance(value, tuple) else value}
        pvalue = msg_types.new_msg("rcl_interfaces/msg/ParameterValue", type=t, **fields)
        return msg_types.new_msg("rcl_interfaces/msg/Parameter", name=name, value=pvalue)


def value_of(value: Any) -> Any:
    """The Python value of an ``rcl_interfaces/msg/ParameterValue`` (None when not set)."""
    t = int(value.type)
    if t == pv.NOT_SET:
        return None
    if t not in pv.VALUE_FIELDS:
        raise ValueError(f"unknown ParameterType {t}")
    v = getattr(value, pv.VALUE_FIELDS[t])
    if t == pv.BYTE_ARRAY:
        return bytes(v)
    return list(v) if isinstance(v, list | tuple) else v
