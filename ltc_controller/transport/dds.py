"""The Cyclone DDS backend of the transport port: a ROS 2 node without a ROS install.

One :class:`DdsNode` owns one DDS ``DomainParticipant`` on domain ``ROS_DOMAIN_ID`` (default 0) and
follows rmw_cyclonedds_cpp's wire conventions: topic ``/a/b`` is the DDS topic ``rt/a/b``, types are
``pkg::msg::dds_::Name_`` (see :mod:`.types`), data is XCDR1 (``use_cdrv0_representation``), and
each endpoint carries ``typehash=RIHS01_…;`` in USER_DATA as ROS 2 Iron and later expect.

The executor is single threaded: :meth:`DdsNode.spin` waits on a DDS WaitSet until data arrives or
the next timer is due, then runs subscription callbacks and timers on the calling thread.

Logging: the node's ``logging.Logger`` prints ROS-style lines to stderr and, as rcl does,
publishes each record as ``rcl_interfaces/msg/Log`` on ``/rosout`` (reliable, transient local,
keep last 1000), so ``ros2 topic echo /rosout`` and rqt_console on a ROS 2 machine see it.

ROS 2 graph: the node publishes its ``ParticipantEntitiesInfo`` on ``ros_discovery_info`` (see
:mod:`.graph`), so ``ros2 node list``/``ros2 node info`` on a ROS 2 machine show it, and serves the
six ROS 2 parameter services (see :mod:`.param_services`), so ``ros2 param`` works on it from a
ROS 2 machine that uses rmw_cyclonedds_cpp. ROS 2 services do not work across DDS vendors (a
Fast DDS machine cannot call them), as in ROS 2 itself; topics do.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from cyclonedds.core import (
    DDSException,
    GuardCondition,
    InstanceState,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.core import Policy as _Policy
from cyclonedds.core import Qos as _Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.internal import InvalidSample
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ltc_controller import stop
from ltc_controller.params import ParamSpec, resolve, validate_set

from . import graph
from . import types as msg_types
from .port import RELIABLE, QoS

__all__ = [
    "DdsNode",
    "DdsPublisher",
    "DdsTimer",
    "NameError_",
    "loopback_env",
    "resolve_topic_name",
]

Policy: Any = _Policy
Qos: Any = _Qos

# Longest single WaitSet wait: a signal's Python handler only runs once the C wait returns.
_MAX_WAIT_S = 0.1
# How many tracebacks to print per callback before switching to one-line error logs.
_TRACEBACKS_PER_CALLBACK = 3

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROS_LEVELS = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}
#: rcl's /rosout QoS (rcl_qos_profile_rosout_default, without its 10 s lifespan).
ROSOUT_QOS = QoS("reliable", "transient_local", 1000)
_LOG_TYPE = "rcl_interfaces/msg/Log"
_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
}


class NameError_(ValueError):  # noqa: N801 - avoid shadowing the builtin NameError
    """An invalid ROS node name, namespace or topic name."""


# --------------------------------------------------------------------------------------------
# Names


def _check_tokens(name: str, what: str) -> None:
    for tok in name.strip("/").split("/"):
        if tok and not _TOKEN.match(tok):
            raise NameError_(f"invalid {what} {name!r}: token {tok!r}")
    if "//" in name:
        raise NameError_(f"invalid {what} {name!r}: empty token")


def normalize_namespace(namespace: str) -> str:
    """``""``/``"ns"``/``"/ns/"`` -> ``"/"``/``"/ns"``/``"/ns"``. Raises :class:`NameError_`."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else "/"
    _check_tokens(ns, "namespace")
    return ns


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a valid ROS node name (one token).

    Raises :class:`NameError_` otherwise.
    """
    if not _TOKEN.match(name):
        raise NameError_(f"invalid node name {name!r}")
    return name


def resolve_topic_name(
    name: str, node_name: str, namespace: str, remaps: Mapping[str, str] | None = None
) -> str:
    """Expand a ROS 2 topic name to its fully qualified form, then apply remaps.

    ``"/abs"`` stays; ``"rel"`` -> ``"<ns>/rel"``; ``"~"``/``"~/x"`` -> ``"<ns>/<node>[/x]"``;
    ``{node}`` and ``{ns}``/``{namespace}`` are substituted. ``remaps`` maps names to names; both
    sides are resolved the same way, and a remap matches on the fully qualified name. Raises
    :class:`NameError_` for an invalid name.
    """
    fq = _expand(name, node_name, namespace)
    if remaps:
        for src, dst in remaps.items():
            if src.startswith("__"):
                continue  # __ns / __node are node-level, not topic remaps
            if _expand(src, node_name, namespace) == fq:
                return _expand(dst, node_name, namespace)
    return fq


def _expand(name: str, node_name: str, namespace: str) -> str:
    if not name:
        raise NameError_("empty topic name")
    ns = normalize_namespace(namespace)
    name = name.replace("{node}", node_name).replace("{namespace}", ns).replace("{ns}", ns)
    if name.startswith("~"):
        if len(name) > 1 and name[1] != "/":
            raise NameError_(f"invalid topic name {name!r}: '~' must be followed by '/'")
        private = ns.rstrip("/") + "/" + node_name
        name = private + name[1:]
    elif not name.startswith("/"):
        name = ns.rstrip("/") + "/" + name
    if name != "/" and name.endswith("/"):
        raise NameError_(f"invalid topic name {name!r}: trailing '/'")
    _check_tokens(name, "topic name")
    return name


# --------------------------------------------------------------------------------------------
# Loopback configuration


def loopback_config_xml(max_participants: int = 32) -> str:
    """A Cyclone DDS configuration (XML text) that uses only 127.0.0.1, unicast discovery.

    Discovery goes to ``127.0.0.1`` at the unicast ports of participant indices
    ``0..max_participants`` (``ParticipantIndex auto``), so it needs no multicast on ``lo``;
    up to ``max_participants + 1`` processes per domain on one machine find each other.
    """
    return (
        '<CycloneDDS xmlns="https://cdds.io/config"><Domain id="any">'
        '<General><Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>'
        "<AllowMulticast>false</AllowMulticast></General>"
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{int(max_participants)}</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
        "</Domain></CycloneDDS>"
    )


def loopback_env(domain_id: int | None = None, max_participants: int = 32) -> dict[str, str]:
    """Environment variables that keep Cyclone DDS on the loopback interface.

    Returns ``{"CYCLONEDDS_URI": <xml>}`` (plus ``ROS_DOMAIN_ID`` when ``domain_id`` is given) to
    merge into ``os.environ`` (before the first participant is created) or a subprocess env.
    """
    env = {"CYCLONEDDS_URI": loopback_config_xml(max_participants)}
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    return env


def domain_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``ROS_DOMAIN_ID`` as an int (default 0). Raises ``ValueError`` if it is not 0..232."""
    raw = (environ if environ is not None else os.environ).get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID={raw!r} is not an integer") from None
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID={value} is outside 0..232")
    return value


# --------------------------------------------------------------------------------------------
# Logging


class _RosFormatter(logging.Formatter):
    def __init__(self, node_name: str) -> None:
        super().__init__()
        self._node = node_name

    def format(self, record: logging.LogRecord) -> str:
        level = _ROS_LEVELS.get(record.levelno, record.levelname)
        text = f"[{level}] [{record.created:.9f}] [{self._node}]: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def make_logger(node_name: str, namespace: str = "/", level: str = "info") -> logging.Logger:
    """A ``logging.Logger`` printing ``[LEVEL] [time] [node_name]: msg`` to stderr.

    ``level`` is a ROS log level name (debug, info, warn, error, fatal; any case). Raises
    ``ValueError`` for an unknown level.
    """
    try:
        lvl = _LEVEL_NAMES[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None
    ns = normalize_namespace(namespace)
    dotted = ".".join(t for t in (ns.strip("/").replace("/", "."), node_name) if t)
    logger = logging.getLogger(f"ros.{dotted}")
    logger.setLevel(lvl)
    logger.propagate = False
    if not any(getattr(h, "_ltc_ros", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_RosFormatter(node_name))
        handler._ltc_ros = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


class _RosoutHandler(logging.Handler):
    """Publishes a node's log records on ``/rosout`` as ``rcl_interfaces/msg/Log``.

    Never raises and never logs (a failing write would log again): a record that cannot be
    published is dropped and counted in ``dropped``.
    """

    def __init__(self, node: DdsNode, publisher: DdsPublisher, logger_name: str) -> None:
        super().__init__()
        self._node = node
        self._pub = publisher
        self._name = logger_name
        self._busy = threading.local()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            # Log.msg levels are Python's (DEBUG 10 ... FATAL 50); others go to the nearest.
            level = min(50, max(10, 10 * round(record.levelno / 10)))
            msg = self._node.msg(
                _LOG_TYPE,
                level=level,
                name=self._name,
                msg=record.getMessage(),
                file=record.pathname,
                function=record.funcName,
                line=max(0, int(record.lineno)),
            )
            msg.stamp.sec, msg.stamp.nanosec = divmod(int(record.created * 1e9), 1_000_000_000)
            self._pub.publish(msg)
        except Exception:
            self.dropped += 1
        finally:
            self._busy.on = False


# --------------------------------------------------------------------------------------------
# Entities


def _dds_qos(qos: QoS, type_hash: str | None, user_data: str = "") -> Any:
    """The DDS QoS of a ROS endpoint: ``qos`` plus XCDR1 and USER_DATA ``<user_data>typehash=…;``
    (rmw_cyclonedds_cpp's layout; ``type_hash`` None leaves the hash out)."""
    if qos.depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {qos.depth}")
    reliability = (
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
        if qos.reliability == "reliable"
        else Policy.Reliability.BestEffort
    )
    durability = (
        Policy.Durability.TransientLocal
        if qos.durability == "transient_local"
        else Policy.Durability.Volatile
    )
    return Qos(
        reliability,
        durability,
        Policy.History.KeepLast(qos.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),
        Policy.Userdata(
            data=(user_data + (f"typehash={type_hash};" if type_hash else "")).encode()
        ),
    )


class DdsPublisher:
    """A publisher of one ROS type on one topic (see :meth:`DdsNode.create_publisher`)."""

    __slots__ = ("_node", "_writer", "_cls", "topic", "type_name")

    def __init__(self, node: DdsNode, writer: Any, cls: type, topic: str, type_name: str) -> None:
        self._node = node
        self._writer = writer
        self._cls = cls
        self.topic = topic
        self.type_name = type_name

    def publish(self, msg: Any) -> None:
        """Send ``msg`` (made by :meth:`DdsNode.msg` for this publisher's type).

        A no-op after the node shut down. Raises ``TypeError`` for a message of another type and
        ``cyclonedds.core.DDSException`` when DDS refuses the write.
        """
        if self._node._closed:
            return
        self._writer.write(msg)

    def get_subscription_count(self) -> int:
        """Number of matched remote or local subscriptions."""
        if self._node._closed:
            return 0
        return len(self._writer.get_matched_subscriptions())


class DdsTimer:
    """A periodic timer on the steady clock (see :meth:`DdsNode.create_timer`)."""

    __slots__ = ("period_s", "callback", "next_s", "cancelled", "fired", "skipped")

    def __init__(self, period_s: float, callback: Callable[[], None], start_s: float) -> None:
        self.period_s = period_s
        self.callback = callback
        self.next_s = start_s + period_s
        self.cancelled = False
        #: times the callback ran; periods skipped because the executor was late
        self.fired = 0
        self.skipped = 0

    def cancel(self) -> None:
        """Stop the timer; it never fires again."""
        self.cancelled = True

    def reset(self, now_s: float | None = None) -> None:
        """Restart the period from ``now_s`` (default: now, ``time.monotonic()``)."""
        self.cancelled = False
        self.next_s = (time.monotonic() if now_s is None else now_s) + self.period_s


class _Subscription:
    __slots__ = ("reader", "cond", "callback", "depth", "topic", "type_name", "received")
    # reader: DataReader; topic: ROS name (or DDS name for internal readers); callback(sample)

    def __init__(
        self,
        reader: Any,
        cond: Any,
        callback: Callable[[Any], None],
        depth: int,
        topic: str,
        type_name: str,
    ) -> None:
        self.reader = reader
        self.cond = cond
        self.callback = callback
        self.depth = depth
        self.topic = topic
        self.type_name = type_name
        self.received = 0


class DdsNode:
    """A ROS 2-compatible node on Cyclone DDS, implementing ``transport.port.Node``.

    Args:
        name: node name (one ROS token). ``remaps["__node"]`` overrides it.
        namespace: node namespace (``"/"`` default). ``remaps["__ns"]`` overrides it.
        remaps: ROS remap rules ``{from: to}`` for topic names (after ``-r``).
        parameters: parameter overrides from the command line / params files (see
            :attr:`parameter_overrides`); the node classes declare and validate them.
        domain_id: DDS domain; default ``ROS_DOMAIN_ID`` (0 when unset).
        log_level: ROS log level name for :attr:`logger`.
        parameter_services: serve the six ROS 2 parameter services (``ros2 param``) on
            ``<node>/get_parameters`` etc. (see :mod:`.param_services`).
        gid_size: GID bytes in ``ros_discovery_info``: 16 (Iron and later) or 24 (Humble);
            default from the environment (:func:`.graph.gid_size_from_env`).
        rosout: also publish the log on ``/rosout`` (:data:`ROSOUT_QOS`), as rcl does.

    Raises :class:`NameError_` for an invalid name or namespace, ``ValueError`` for a bad
    ``ROS_DOMAIN_ID``, log level or GID size, ``cyclonedds.core.DDSException`` when DDS cannot
    start (e.g. an invalid ``CYCLONEDDS_URI``).
    """

    def __init__(
        self,
        name: str,
        namespace: str = "/",
        *,
        remaps: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        domain_id: int | None = None,
        log_level: str = "info",
        parameter_services: bool = True,
        gid_size: int | None = None,
        rosout: bool = True,
    ) -> None:
        remaps = dict(remaps or {})
        self._name = validate_node_name(remaps.get("__node", name))
        self._namespace = normalize_namespace(remaps.get("__ns", namespace))
        self._remaps = {k: v for k, v in remaps.items() if not k.startswith("__")}
        self.parameter_overrides: dict[str, Any] = dict(parameters or {})
        self._param_specs: tuple[ParamSpec, ...] = ()
        self._param_values: dict[str, Any] = {}
        self._param_callbacks: list[Callable[[dict[str, Any]], str]] = []
        self._param_appliers: list[Callable[[dict[str, Any]], None]] = []
        self._logger = make_logger(self._name, self._namespace, log_level)
        self.domain_id = domain_from_env() if domain_id is None else int(domain_id)
        self.gid_size = graph.gid_size_from_env() if gid_size is None else int(gid_size)
        if self.gid_size not in msg_types.GID_SIZES:
            raise ValueError(f"GID size must be one of {msg_types.GID_SIZES}, got {gid_size}")
        self._participant = DomainParticipant(
            self.domain_id, qos=Qos(Policy.Userdata(data=graph.ENCLAVE_USER_DATA))
        )
        self._waitset = WaitSet(self._participant)
        self._guard = GuardCondition(self._participant)
        self._waitset.attach(self._guard)
        self._topics: dict[str, tuple[Any, type]] = {}
        self._subs: list[_Subscription] = []
        self._timers: list[DdsTimer] = []
        self._publishers: list[DdsPublisher] = []
        self._spin_hooks: list[Callable[[], float | None]] = []
        self._hook_wait_s: float | None = None
        self._lock = threading.Lock()
        self._stop = False
        self._closed = False
        self._spinning = False
        self._traceback_budget: dict[int, int] = {}
        self._last_error_log: dict[int, float] = {}
        #: callbacks (subscription or timer) that raised, in total
        self.callback_errors = 0
        # ROS graph: GUIDs of this node's readers and writers, published on ros_discovery_info.
        self._reader_guids: list[bytes] = []
        self._writer_guids: list[bytes] = []
        self._graph_dirty = True
        info_cls = msg_types.discovery_classes(self.gid_size)[0]
        self._graph_writer = DataWriter(
            self._participant,
            Topic(self._participant, graph.DISCOVERY_TOPIC, info_cls),
            qos=_dds_qos(
                graph.DISCOVERY_QOS,
                msg_types.type_hash(msg_types.PARTICIPANT_ENTITIES_INFO)
                if self.gid_size == 16
                else None,  # Humble has no type hashes
            ),
        )
        #: the lifecycle services and state (:meth:`manage_lifecycle`), or None: not managed
        self.lifecycle: LifecycleServer | None = None
        #: the parameter services, or None (``parameter_services=False``)
        self.parameter_server: Any = None
        if parameter_services:
            from .param_services import ParameterServer

            self.parameter_server = ParameterServer(self)
        #: the /rosout log handler, or None (``rosout=False``, ``--disable-rosout-logs``)
        self.rosout: _RosoutHandler | None = None
        if rosout:
            pub = self.create_publisher(_LOG_TYPE, "/rosout", ROSOUT_QOS)
            self.rosout = _RosoutHandler(self, pub, self._logger.name.removeprefix("ros."))
            self._logger.addHandler(self.rosout)
        self.publish_graph()

    # -- port.Node ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node name (after ``__node`` remap)."""
        return self._name

    @property
    def namespace(self) -> str:
        """The node namespace, ``"/"`` or ``"/a/b"`` (after ``__ns`` remap)."""
        return self._namespace

    @property
    def fully_qualified_name(self) -> str:
        """``<namespace>/<name>``, e.g. ``"/robot/ltc_policy"``."""
        return self._namespace.rstrip("/") + "/" + self._name

    @property
    def logger(self) -> logging.Logger:
        """The node's logger (standard ``logging``; ROS-style lines on stderr)."""
        return self._logger

    def declare_parameters(self, specs: Sequence[ParamSpec]) -> dict[str, Any]:
        """See :meth:`port.Node.declare_parameters`; overrides come from the constructor's
        ``parameters``. Raises :class:`~ltc_controller.params.ParameterError`."""
        values = resolve(specs, self.parameter_overrides)
        self._param_specs = self._param_specs + tuple(specs)
        self._param_values.update(values)
        if self.parameter_server is not None:
            self.parameter_server.publish_event(new=values)
        return dict(values)

    def on_parameters_set(
        self,
        callback: Callable[[dict[str, Any]], str],
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """See :meth:`port.Node.on_parameters_set`."""
        self._param_callbacks.append(callback)
        if apply is not None:
            self._param_appliers.append(apply)

    def set_parameters(self, changes: Mapping[str, Any]) -> str:
        """See :meth:`port.Node.set_parameters`; returns ``""`` or the rejection reason."""
        coerced, reason = validate_set(self._param_specs, changes)
        if reason:
            return reason
        for cb in self._param_callbacks:
            reason = cb(dict(coerced))
            if reason:
                return reason
        self._param_values.update(coerced)
        for apply in self._param_appliers:
            apply(dict(coerced))
        if self.parameter_server is not None:
            self.parameter_server.publish_event(changed=coerced)
        return ""

    def get_parameters(self) -> dict[str, Any]:
        """See :meth:`port.Node.get_parameters`."""
        return dict(self._param_values)

    @property
    def parameter_specs(self) -> tuple[ParamSpec, ...]:
        """The declarations, for parameter services (describe, list)."""
        return self._param_specs

    def msg(self, type_name: str, **fields: Any) -> Any:
        """A new message of ``type_name`` with ROS defaults for unset fields.

        Raises :class:`.types.UnknownTypeError` / ``TypeError`` (see :func:`.types.new_msg`).
        """
        return msg_types.new_msg(type_name, **fields)

    def resolve(self, topic: str) -> str:
        """The fully qualified, remapped ROS name of ``topic``. Raises :class:`NameError_`."""
        return resolve_topic_name(topic, self._name, self._namespace, self._remaps)

    def create_publisher(self, type_name: str, topic: str, qos: QoS = RELIABLE) -> DdsPublisher:
        """A publisher of ``type_name`` on ``topic`` (resolved, DDS topic ``rt<resolved>``).

        Raises :class:`NameError_`, :class:`.types.UnknownTypeError`, ``ValueError`` (QoS, or a
        topic already used with another type in this node), ``RuntimeError`` after shutdown.
        """
        self._check_open()
        fq = self.resolve(topic)
        cls = msg_types.idl_class(type_name)
        writer = self.open_writer("rt" + fq, cls, qos, msg_types.type_hash(type_name))
        pub = DdsPublisher(self, writer, cls, fq, type_name)
        self._publishers.append(pub)
        return pub

    def create_subscription(
        self, type_name: str, topic: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        """Call ``callback(msg)`` on the executor thread for each message on ``topic``.

        Invalid samples (a writer unregistering) are skipped. Raises like
        :meth:`create_publisher`.
        """
        self._check_open()
        fq = self.resolve(topic)
        cls = msg_types.idl_class(type_name)
        self.open_reader("rt" + fq, cls, qos, msg_types.type_hash(type_name), callback, topic=fq)

    def count_publishers(self, topic: str) -> int:
        """Writers matched to this node's subscription(s) on ``topic`` (see the port).

        Raises ``ValueError`` when this node has no subscription on ``topic``; 0 after shutdown.
        """
        if self._closed:
            return 0
        fq = self.resolve(topic)
        with self._lock:
            readers = [s.reader for s in self._subs if s.topic == fq]
        if not readers:
            raise ValueError(f"count_publishers: node {self._name!r} has no subscription on {fq}")
        return sum(len(r.get_matched_publications()) for r in readers)

    def open_writer(
        self, dds_topic: str, cls: type, qos: QoS, type_hash: str | None, user_data: str = ""
    ) -> Any:
        """A DDS ``DataWriter`` of ``cls`` on the DDS topic ``dds_topic`` (no name mangling),
        listed among this node's writers in the ROS graph. For services and other ROS entities
        that are not plain topics; ``user_data`` goes before ``typehash=…;`` in USER_DATA.

        Raises ``ValueError`` (QoS, or the topic already has another type in this node),
        ``RuntimeError`` after shutdown.
        """
        self._check_open()
        writer = DataWriter(
            self._participant, self._topic(dds_topic, cls), qos=_dds_qos(qos, type_hash, user_data)
        )
        with self._lock:
            self._writer_guids.append(writer.get_guid().bytes)
            self._graph_dirty = True
        self._guard.set(True)
        return writer

    def open_reader(
        self,
        dds_topic: str,
        cls: type,
        qos: QoS,
        type_hash: str | None,
        callback: Callable[[Any], None],
        user_data: str = "",
        topic: str | None = None,
    ) -> Any:
        """A DDS ``DataReader`` whose samples (``cls`` instances, with ``sample.sample_info``)
        go to ``callback`` on the executor thread; listed among this node's readers in the ROS
        graph. ``topic`` names it in error logs (default ``dds_topic``). Raises like
        :meth:`open_writer`."""
        self._check_open()
        reader = DataReader(
            self._participant, self._topic(dds_topic, cls), qos=_dds_qos(qos, type_hash, user_data)
        )
        cond = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        ros_type = str(getattr(cls, "__ros_type__", cls.__name__))
        sub = _Subscription(reader, cond, callback, qos.depth, topic or dds_topic, ros_type)
        with self._lock:
            self._subs.append(sub)
            self._reader_guids.append(reader.get_guid().bytes)
            self._graph_dirty = True
        self._waitset.attach(cond)
        self._guard.set(True)  # let a running spin() pick up the new reader now
        return reader

    def add_spin_hook(self, hook: Callable[[], float | None]) -> None:
        """Call ``hook()`` on the executor thread after every :meth:`spin_once`; it returns the
        longest the executor may wait before calling it again (seconds), or None for no limit."""
        with self._lock:
            self._spin_hooks.append(hook)

    def graph_entities(self) -> tuple[bytes, list[bytes], list[bytes]]:
        """``(participant GUID, reader GUIDs, writer GUIDs)`` as 16-byte values: what this node
        publishes on ``ros_discovery_info``."""
        with self._lock:
            readers, writers = list(self._reader_guids), list(self._writer_guids)
        return self._participant.get_guid().bytes, readers, writers

    def publish_graph(self) -> None:
        """Publish this node's ``ParticipantEntitiesInfo`` on ``ros_discovery_info`` now (done
        automatically at start and, by :meth:`spin_once`, after endpoints were created)."""
        if self._closed:
            return
        participant, readers, writers = self.graph_entities()
        self._graph_dirty = False
        info = graph.participant_entities_info(
            participant, [(self._namespace, self._name, readers, writers)], self.gid_size
        )
        self._graph_writer.write(info)

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> DdsTimer:
        """A periodic timer on ``time.monotonic()``, first firing one period from now.

        Missed periods are skipped, never queued. Raises ``ValueError`` for ``period_s <= 0``.
        """
        if not period_s > 0:
            raise ValueError(f"timer period must be > 0 s, got {period_s!r}")
        timer = DdsTimer(float(period_s), callback, time.monotonic())
        with self._lock:
            self._timers.append(timer)
        if not self._closed:
            self._guard.set(True)
        return timer

    def manage_lifecycle(self, callbacks: Mapping[State, Callable[[], str]]) -> LifecycleServer:
        """Serve the lifecycle services and ``~/transition_event`` with ``callbacks``
        (:class:`~.lifecycle_server.LifecycleServer`); the node starts ``unconfigured``.
        Raises ``RuntimeError`` when called twice or after shutdown."""
        self._check_open()
        if self.lifecycle is not None:
            raise RuntimeError(f"{self.fully_qualified_name} already has a lifecycle")
        from .lifecycle_server import LifecycleServer

        self.lifecycle = LifecycleServer(self, callbacks)
        return self.lifecycle

    def now(self) -> float:
        """ROS time in seconds since the epoch (the system clock, ``time.time()``)."""
        return time.time()

    def steady(self) -> float:
        """Monotonic seconds (``time.monotonic()``)."""
        return time.monotonic()

    def spin(self) -> None:
        """Run callbacks and timers until :meth:`shutdown`, SIGINT or SIGTERM, then close.

        In a process that runs one node (:func:`.stop.install` was called) the process-wide stop
        request ends the loop. Otherwise signal handlers are installed for the loop's duration
        when called from the main thread, and the previous handlers are restored on return.
        """
        previous: dict[signal.Signals, Any] = {}
        if not stop.installed() and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            while not self._stop and not stop.requested():
                self.spin_once(_MAX_WAIT_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close()

    def spin_once(self, timeout_s: float | None = None) -> int:
        """Wait up to ``timeout_s`` seconds (default: until the next timer, at most 0.1 s) for
        data or a due timer, then run every ready callback. Returns the number of callbacks run.
        """
        if self._closed:
            return 0
        if self._stop:
            self._close()  # shutdown() came from another thread while we were waiting
            return 0
        self._spinning = True
        try:
            if self._graph_dirty:
                self.publish_graph()
            wait_s = _MAX_WAIT_S if timeout_s is None else max(0.0, float(timeout_s))
            next_due = self._next_deadline()
            if next_due is not None:
                wait_s = min(wait_s, max(0.0, next_due - time.monotonic()))
            if self._hook_wait_s is not None:
                wait_s = min(wait_s, self._hook_wait_s)
            if wait_s > 0:
                self._waitset.wait(int(wait_s * 1e9))
            if self._stop:
                return 0
            self._guard.set(False)
            ran = self._run_subscriptions() + self._run_timers()
            self._run_hooks()
            return ran
        except DDSException:
            if self._stop or self._closed:
                return 0  # entities deleted under us by a concurrent shutdown()
            raise
        finally:
            self._spinning = False

    def shutdown(self) -> None:
        """Stop :meth:`spin` (from any thread or a callback) and release the DDS participant.

        Idempotent; publishing afterwards is a no-op.
        """
        self._stop = True
        if not self._closed:
            self._guard.set(True)
        if not self._spinning:
            self._close()

    # -- extras ---------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """False once :meth:`shutdown` was called or a signal stopped :meth:`spin`."""
        return not self._stop

    def stats(self) -> dict[str, int]:
        """Counters: ``callback_errors``, ``messages_received``, ``timers_fired``,
        ``timer_periods_skipped``."""
        return {
            "callback_errors": self.callback_errors,
            "messages_received": sum(s.received for s in self._subs),
            "timers_fired": sum(t.fired for t in self._timers),
            "timer_periods_skipped": sum(t.skipped for t in self._timers),
        }

    def __enter__(self) -> DdsNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._stop:
            raise RuntimeError(f"node {self._name!r} is shut down")

    def _topic(self, dds_name: str, cls: type) -> Any:
        with self._lock:
            known = self._topics.get(dds_name)
            if known is not None:
                topic, known_cls = known
                if known_cls is not cls:
                    name = dds_name[2:] if dds_name.startswith("rt/") else dds_name
                    had = getattr(known_cls, "__ros_type__", known_cls.__name__)
                    want = getattr(cls, "__ros_type__", cls.__name__)
                    raise ValueError(f"topic {name!r} already has type {had}, not {want}")
                return topic
            topic = Topic(self._participant, dds_name, cls)
            self._topics[dds_name] = (topic, cls)
            return topic

    def _run_hooks(self) -> None:
        waits = []
        for hook in list(self._spin_hooks):
            try:
                wait = hook()
            except Exception:
                self._callback_failed(hook, "spin hook")
                continue
            if wait is not None:
                waits.append(wait)
        self._hook_wait_s = max(0.0, min(waits)) if waits else None

    def _next_deadline(self) -> float | None:
        due = [t.next_s for t in self._timers if not t.cancelled]
        return min(due) if due else None

    def _run_subscriptions(self) -> int:
        ran = 0
        for sub in list(self._subs):
            samples = sub.reader.take(sub.depth)
            for sample in samples:
                if isinstance(sample, InvalidSample):
                    continue  # an unregistering/disposing writer; no data
                sub.received += 1
                ran += 1
                try:
                    sub.callback(sample)
                except Exception:
                    self._callback_failed(sub.callback, f"subscription on {sub.topic}")
                if self._stop:
                    return ran
        return ran

    def _run_timers(self) -> int:
        ran = 0
        now = time.monotonic()
        with self._lock:
            if any(t.cancelled for t in self._timers):
                self._timers = [t for t in self._timers if not t.cancelled]
            timers = list(self._timers)
        for timer in timers:
            if timer.cancelled or timer.next_s > now:
                continue
            # Skip missed periods: the next deadline is the first one after now, on the grid.
            late = int((now - timer.next_s) // timer.period_s)
            timer.skipped += late
            timer.next_s += (late + 1) * timer.period_s
            timer.fired += 1
            ran += 1
            try:
                timer.callback()
            except Exception:
                self._callback_failed(timer.callback, "timer")
            if self._stop:
                break
        return ran

    def _callback_failed(self, callback: Callable[..., Any], what: str) -> None:
        self.callback_errors += 1
        key = id(callback)
        budget = self._traceback_budget.get(key, _TRACEBACKS_PER_CALLBACK)
        if budget > 0:
            self._traceback_budget[key] = budget - 1
            self._logger.exception(f"{what} callback raised (error #{self.callback_errors})")
            return
        # After that, one line per callback per second so a bad stream cannot flood the log.
        now = time.monotonic()
        if now - self._last_error_log.get(key, -1e9) >= 1.0:
            self._last_error_log[key] = now
            exc = sys.exc_info()[1]
            name = type(exc).__name__
            self._logger.error(f"{what} callback raised {name}: {exc} (#{self.callback_errors})")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._logger.info(f"{signal.Signals(signum).name} received, shutting down")
        self._stop = True

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop = True
        if self.rosout is not None:
            self._logger.removeHandler(self.rosout)
        with self._lock:
            self._subs.clear()
            self._timers.clear()
            self._topics.clear()
        participant = self._participant
        # Delete the participant (and with it every reader/writer) now rather than at GC time,
        # so remote peers see us leave; later __del__ calls on children are harmless no-ops.
        try:
            participant._delete(participant._ref)
        except Exception:  # best effort; GC will try again
            pass


if TYPE_CHECKING:
    from .lifecycle import State
    from .lifecycle_server import LifecycleServer
    from .port import Node

    def _implements_port(node: DdsNode) -> Node:
        """mypy checks here that DdsNode satisfies the port's Node protocol."""
        return node
