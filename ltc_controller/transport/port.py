"""The transport port: the small surface that node classes are written against.

Both backends (``transport.dds`` on Cyclone DDS, and later rclpy) implement it, so a node class runs
unchanged under either. Message objects are plain attribute bags with the ROS field names
(``msg.header.stamp.sec``); construct them with :meth:`Node.msg` so that every backend can supply
its own classes and defaults.

Time: ``now()`` is ROS time in seconds (system clock, or simulation time); timers and deadlines use
``steady()``, a monotonic clock that never jumps, so a safety timer keeps firing when ``/clock`` or
the wall clock stops or jumps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ltc_controller.params import ParamSpec

from .lifecycle import State


@dataclass(frozen=True)
class QoS:
    """A ROS 2 QoS profile (the subset this package uses).

    reliability: ``"reliable"`` or ``"best_effort"``; durability: ``"volatile"`` or
    ``"transient_local"``; history is always keep-last with ``depth`` samples.
    """

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = 10


#: rclpy's ``qos_profile_sensor_data``: best effort, volatile, keep last 5.
SENSOR_DATA = QoS("best_effort", "volatile", 5)
#: A plain reliable keep-last-10 profile (rclpy's default for publishers and subscriptions).
RELIABLE = QoS("reliable", "volatile", 10)
#: Latched: reliable, transient local, keep last 1 (e-stop, status snapshots).
LATCHED = QoS("reliable", "transient_local", 1)


class Publisher(Protocol):
    def publish(self, msg: Any) -> None: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class Logger(Protocol):
    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


class Lifecycle(Protocol):
    """A managed node's lifecycle (:meth:`Node.manage_lifecycle`): ROS 2's default state
    machine, driven by ``ros2 lifecycle set``, a lifecycle manager, or :meth:`trigger`."""

    @property
    def state(self) -> str:
        """The current state's label: ``"unconfigured"``, ``"inactive"``, ``"active"``,
        ``"finalized"`` (or a transition state's, inside a callback)."""
        ...

    def trigger(self, label: str) -> str:
        """Request transition ``label`` (``configure``, ``activate``, ``deactivate``,
        ``cleanup``, ``shutdown``); ``""`` when its callback succeeded, else why not."""
        ...


class Node(Protocol):
    """What a node class may use of its transport.

    Topic names follow ROS 2 rules: ``"/abs"`` is absolute, ``"rel"`` resolves under the node's
    namespace, ``"~/x"`` under ``<namespace>/<node name>``; remaps given on the command line
    (``-r from:=to``) apply after resolution.
    """

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def logger(self) -> Logger: ...

    def msg(self, type_name: str, **fields: Any) -> Any:
        """A new message of ``type_name`` (e.g. ``"sensor_msgs/msg/Image"``), unset fields at their
        ROS defaults (0, "", empty sequences, nested defaults)."""
        ...

    def create_publisher(self, type_name: str, topic: str, qos: QoS = RELIABLE) -> Publisher: ...

    def create_subscription(
        self, type_name: str, topic: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        """``callback(msg)`` runs on the node's executor thread (never concurrently with timers)."""
        ...

    def count_publishers(self, topic: str) -> int:
        """Publishers on ``topic`` (resolved like a subscription's name) that this node can hear:
        DDS: the writers matched to this node's subscription on ``topic`` (so a publisher whose
        QoS is incompatible is not counted); rclpy: the publishers in the ROS graph. A publisher
        that died without leaving is counted until its DDS lease expires (Cyclone: 10 s).

        Raises:
            ValueError: (DDS) this node has no subscription on ``topic``.
        """
        ...

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        """A periodic timer on the steady clock; missed periods are skipped, not queued."""
        ...

    def declare_parameters(self, specs: Sequence[ParamSpec]) -> dict[str, Any]:
        """Declare the node's parameters (once, at construction) and return their values: the
        defaults, overridden by the command line and parameter files the node was started with.

        Raises:
            ParameterError: an override names an undeclared parameter or has an invalid value.
        """
        ...

    def on_parameters_set(
        self,
        callback: Callable[[dict[str, Any]], str],
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Register the node's validator for runtime sets, and what applies an accepted set
        (Nav2's pattern: the on-set callback only checks, the post-set callback applies).

        ``callback(changes)`` receives values already checked against their
        :class:`ParamSpec` (type, range, read-only) and returns ``""`` to accept or the reason
        to reject; a set is all or nothing. ``apply(changes)`` runs after the values are
        stored, only for an accepted set (rclpy: ``add_post_set_parameters_callback``)."""
        ...

    def set_parameters(self, changes: Mapping[str, Any]) -> str:
        """Set parameters at run time through the same validation as a remote
        ``ros2 param set``; returns ``""`` on success, else the reason it was rejected."""
        ...

    def get_parameters(self) -> dict[str, Any]:
        """Current values of all declared parameters."""
        ...

    def manage_lifecycle(self, callbacks: Mapping[State, Callable[[], str]]) -> Lifecycle:
        """Make this a managed (lifecycle) node with the ``lifecycle_msgs`` services and
        ``~/transition_event``; call once, at construction. ``callbacks`` maps a transition
        state (:class:`~.lifecycle.State`: ``CONFIGURING``, ``ACTIVATING``, ``DEACTIVATING``,
        ``CLEANINGUP``, ``SHUTTINGDOWN``, ``ERRORPROCESSING``) to the node's callback: ``""``
        for success or the reason of a failure; one that raises is an error. The node starts
        ``unconfigured``."""
        ...

    def now(self) -> float:
        """ROS time, seconds since the epoch (float)."""
        ...

    def steady(self) -> float:
        """Monotonic seconds (``time.monotonic`` or equivalent)."""
        ...

    def spin(self) -> None:
        """Run callbacks and timers until :meth:`shutdown` or SIGINT/SIGTERM."""
        ...

    def shutdown(self) -> None: ...
