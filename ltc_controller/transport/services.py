"""One ROS 2 service served over plain DDS, on rmw_cyclonedds_cpp's wire layout.

The wire facts (request/reply topics, the 16-byte request header, ``serviceid``/``clientid``
USER_DATA, waiting for the client's reply reader) are described in :mod:`.param_services`,
whose helpers this module uses. :class:`ServiceServer` serves any ``pkg/srv/Name`` whose
definition the typestore has, with a handler that maps a request to the reply's fields; the
lifecycle services (:mod:`.lifecycle_server`) use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import types as msg_types
from .graph import user_data_of
from .param_services import (
    SERVICE_QOS,
    ServiceNode,
    endpoint_id,
    reply_topic,
    request_topic,
)

__all__ = ["ServiceServer"]

# How long a reply is kept while the client's reply reader is not matched yet.
_REPLY_WAIT_S = 2.0

#: ``handler(request) -> {reply field: value}``; raising answers nothing (logged, counted).
Handler = Callable[[Any], dict[str, Any]]


class ServiceServer:
    """Serve ``srv_type`` (``"pkg/srv/Name"``) as ``service`` (a fully qualified name) on a
    :class:`~.dds.DdsNode`; ``handler(request)`` runs on the node's executor thread and returns
    the reply's fields.

    Counters: ``requests`` served, ``failures`` (the handler raised: the node keeps running,
    the client gets no reply and times out), ``replies_dropped`` (the client's reply reader
    never matched). Raises :class:`~.types.UnknownTypeError` for an unknown service type.
    """

    def __init__(self, node: ServiceNode, service: str, srv_type: str, handler: Handler) -> None:
        self._node = node
        self._handler = handler
        self._service = service
        self._reply_cls = msg_types.service_wire_class(srv_type + "_Response")
        self._pending: list[tuple[str, Any, float]] = []
        self.requests = 0
        self.failures = 0
        self.replies_dropped = 0
        user = f"serviceid={endpoint_id(node)};"
        self._writer = node.open_writer(
            reply_topic(service),
            self._reply_cls,
            SERVICE_QOS,
            msg_types.type_hash(srv_type + "_Response"),
            user,
        )
        self._reader = node.open_reader(
            request_topic(service),
            msg_types.service_wire_class(srv_type + "_Request"),
            SERVICE_QOS,
            msg_types.type_hash(srv_type + "_Request"),
            self._on_request,
            user,
            topic=service,
        )
        node.add_spin_hook(self._flush)

    def _on_request(self, request: Any) -> None:
        try:
            fields = self._handler(request)
        except Exception as exc:  # a bad request never stops the node
            self.failures += 1
            self._node.logger.error(
                f"service {self._service}: request failed: {type(exc).__name__}: {exc}"
            )
            return
        self.requests += 1
        reply = self._reply_cls(
            **{
                msg_types.HEADER_GUID: getattr(request, msg_types.HEADER_GUID),
                msg_types.HEADER_SEQ: getattr(request, msg_types.HEADER_SEQ),
            },
            **fields,
        )
        client_id = self._client_id(request)
        if client_id is None or self._matched(client_id):
            self._writer.write(reply)
        else:
            self._pending.append((client_id, reply, time.monotonic() + _REPLY_WAIT_S))

    def _client_id(self, request: Any) -> str | None:
        info = getattr(request, "sample_info", None)
        if info is None:
            return None
        endpoint = self._reader.get_matched_publication_data(info.publication_handle)
        return user_data_of(endpoint).get("clientid") if endpoint is not None else None

    def _matched(self, client_id: str) -> bool:
        w = self._writer
        for handle in w.get_matched_subscriptions():
            endpoint = w.get_matched_subscription_data(handle)
            if endpoint is not None and user_data_of(endpoint).get("clientid") == client_id:
                return True
        return False

    def _flush(self) -> float | None:
        """Spin hook: send the replies whose client reader has matched; drop expired ones."""
        if not self._pending:
            return None
        now, keep = time.monotonic(), []
        for client_id, reply, deadline in self._pending:
            if self._matched(client_id):
                self._writer.write(reply)
            elif now > deadline:
                self.replies_dropped += 1
                self._node.logger.warning(
                    f"service {self._service}: dropped a reply, client {client_id} never matched"
                )
            else:
                keep.append((client_id, reply, deadline))
        self._pending = keep
        return 0.01 if keep else None
