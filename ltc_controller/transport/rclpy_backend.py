"""The rclpy backend of the transport port: the node classes as ordinary ROS 2 nodes.

Thin by design: each port call maps to one rclpy call.

- Parameters are ROS parameters, declared from :class:`~ltc_controller.params.ParamSpec` with a
  ``ParameterDescriptor`` (description, unit and choices as ``additional_constraints``,
  ``read_only``, ``floating_point_range``/``integer_range``), so ``ros2 param describe`` shows the
  declaration and rclpy enforces type, range and read-only before the node's validator runs
  (``add_on_set_parameters_callback``). As in rclpy, a parameter keeps its declared type: a YAML
  ``rate_hz: 20`` for a double is refused; write ``20.0``.
- Timers run on a steady clock (``Clock(clock_type=STEADY_TIME)``), so the control loop and the
  safety timer keep firing when ``/clock`` stops; ``now()`` is the node's ROS clock, which follows
  ``/clock`` when ``use_sim_time`` is true.
- Messages are the generated rclpy classes: ``msg("sensor_msgs/msg/Image")`` imports
  ``sensor_msgs.msg.Image``.
- One executor, single threaded: callbacks never run concurrently with timers.

Each :class:`RclpyNode` has its own rclpy ``Context``, initialised with the process's ROS
arguments (``--ros-args …``: remaps, ``__ns``/``__node``, ``-p``, ``--params-file``), which rcl
applies itself; parameter overrides then follow the DDS backend's order (command-line order, the
later wins; see :func:`_in_command_line_order`).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node as _RosNode
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from ltc_controller import stop
from ltc_controller.params import ParameterError, ParamSpec, check_known, validate_set

from . import param_values
from .lifecycle import STATE_LABELS, LifecycleMachine, State
from .port import RELIABLE, QoS
from .ros_args import parse_ros_args

__all__ = ["RclpyNode", "descriptor", "qos_profile"]

_SPIN_STEP_S = 0.1


def qos_profile(qos: QoS) -> QoSProfile:
    """The rclpy ``QoSProfile`` of a port :class:`~.port.QoS` (keep last ``depth``)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE
        if qos.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
    )


def descriptor(spec: ParamSpec) -> Any:
    """The ``rcl_interfaces/msg/ParameterDescriptor`` of ``spec`` (see
    :func:`.param_values.descriptor_fields`)."""
    fields = param_values.descriptor_fields(spec)
    fp = [
        FloatingPointRange(from_value=a, to_value=b, step=c)
        for a, b, c in fields.pop("floating_point_range")
    ]
    ir = [IntegerRange(from_value=a, to_value=b, step=c) for a, b, c in fields.pop("integer_range")]
    return ParameterDescriptor(floating_point_range=fp, integer_range=ir, **fields)


def _in_command_line_order(resolved: Mapping[str, Any]) -> list[Parameter]:
    """``resolved`` (:func:`.ros_args.parse_ros_args`: ``-p`` and ``--params-file`` in
    command-line order, the later wins) as rclpy ``parameter_overrides``, which rclpy applies
    over rcl's own resolution. rcl lets a node key of a params file win over a wildcard one
    whatever the order, and ``-p name:=v`` is a wildcard (``/**``): ``--params-file
    vehicle.yaml -p speed_mps:=2.0`` would keep the file's ``/**/ltc_policy`` value, while the
    DDS backend takes 2.0 (ros2/rclcpp#953 calls rcl's ordering unspecified). Values without one
    rclpy type (an empty list, a mixed list) stay as rcl resolved them."""
    out = []
    for name, value in resolved.items():
        if isinstance(value, list | tuple) and not value:
            continue
        try:
            out.append(Parameter(name, value=value))
        except TypeError:
            continue
    return out


class MissingInterfaceError(ImportError):
    """A message type's generated package is not importable in this ROS 2 environment."""


class _Logger:
    """The port's Logger over rclpy's (which returns bools and names its argument ``message``)."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def debug(self, msg: str) -> None:
        self._logger.debug(msg)

    def info(self, msg: str) -> None:
        self._logger.info(msg)

    def warning(self, msg: str) -> None:
        self._logger.warning(msg)

    def error(self, msg: str) -> None:
        self._logger.error(msg)


class RclpyNode:
    """A ROS 2 node on rclpy, implementing ``transport.port.Node``.

    Args:
        name: default node name (``-r __node:=…`` overrides it).
        argv: the process arguments without the program name; only ``--ros-args`` blocks matter.
        namespace: default namespace (``-r __ns:=…`` overrides it).
        managed: an ``rclpy.lifecycle.LifecycleNode`` (services ``~/change_state`` …,
            ``~/transition_event``) whose callbacks :meth:`manage_lifecycle` sets.

    Raises what ``rclpy.init`` and ``rclpy.node.Node`` raise for bad arguments or names.
    """

    def __init__(
        self, name: str, argv: Sequence[str] = (), namespace: str = "/", managed: bool = False
    ) -> None:
        self._context = Context()
        # In a process that runs one node, SIGINT/SIGTERM only request a stop
        # (ltc_controller.stop): rclpy's own handlers would raise KeyboardInterrupt wherever the
        # main thread is.
        options = SignalHandlerOptions.NO if stop.installed() else SignalHandlerOptions.ALL
        rclpy.init(
            args=["ltc_controller", *argv], context=self._context, signal_handler_options=options
        )
        resolved = parse_ros_args(argv, name, namespace).params
        cls = _ManagedRosNode if managed else _RosNode
        self._node = cls(
            name,
            namespace=namespace,
            context=self._context,
            parameter_overrides=_in_command_line_order(resolved),
        )
        # rclpy keeps overrides of undeclared names silently: check them against the
        # declarations (declare_parameters), as the DDS backend does.
        self._overrides = tuple(resolved)
        self._own_params = tuple(self._node.get_parameters_by_prefix(""))  # rclpy's own
        self._logger = _Logger(self._node.get_logger())
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._specs: tuple[ParamSpec, ...] = ()
        self._classes: dict[str, Any] = {}
        self._stop = False
        self._spinning = False
        self._spin_done = threading.Event()
        self._spin_thread = 0
        self._closed = False

    # -- port.Node ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self._node.get_name())

    @property
    def namespace(self) -> str:
        return str(self._node.get_namespace())

    @property
    def logger(self) -> _Logger:
        return self._logger

    @property
    def ros_node(self) -> _RosNode:
        """The underlying ``rclpy.node.Node``."""
        return self._node

    def msg(self, type_name: str, **fields: Any) -> Any:
        """A new ``pkg/msg/Name`` message of the generated class. Raises ``ImportError`` /
        ``AttributeError`` for an unknown type, what the class raises for bad fields."""
        cls = self._classes.get(type_name)
        if cls is None:
            pkg, kind, short = type_name.split("/")
            try:
                cls = getattr(importlib.import_module(f"{pkg}.{kind}"), short)
            except ModuleNotFoundError as e:
                hint = (
                    "build this package with colcon and source its install"
                    if pkg == "ltc_controller"
                    else f"install it (e.g. ros-<distro>-{pkg.replace('_', '-')})"
                )
                raise MissingInterfaceError(
                    f"message package '{pkg}' (for {type_name}) is not in this ROS 2 "
                    f"environment: {hint}, or run without rclpy: LTC_CONTROLLER_TRANSPORT=dds"
                ) from e
            self._classes[type_name] = cls
        return cls(**fields)

    def create_publisher(self, type_name: str, topic: str, qos: QoS = RELIABLE) -> Any:
        return self._node.create_publisher(self.msg(type_name).__class__, topic, qos_profile(qos))

    def create_subscription(
        self, type_name: str, topic: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        cls = self.msg(type_name).__class__
        self._node.create_subscription(cls, topic, callback, qos_profile(qos))

    def count_publishers(self, topic: str) -> int:
        """Publishers of ``topic`` in the ROS graph (``Node.count_publishers``)."""
        return int(self._node.count_publishers(topic))  # rclpy expands the name itself

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """A timer on the steady clock (never frozen by ``/clock``); rcl skips missed periods.
        Raises ``ValueError`` for ``period_s <= 0``."""
        if not period_s > 0:
            raise ValueError(f"timer period must be > 0 s, got {period_s!r}")
        return self._node.create_timer(period_s, callback, clock=self._steady_clock)

    def declare_parameters(self, specs: Sequence[ParamSpec]) -> dict[str, Any]:
        """Declare ``specs`` as ROS parameters (overrides from ``-p``/``--params-file`` apply)
        and return their values. ``use_sim_time``, which rclpy declares itself, is read back.

        Raises :class:`~ltc_controller.params.ParameterError` for an override that no spec
        declares (a misspelled ``-p`` or params-file key; named, as in DDS mode), that rclpy
        refuses (type, range) or that the ParamSpec refuses (choices).
        """
        check_known(
            self._specs + tuple(specs),
            self._overrides,
            also=self._own_params,
            prefixes=("qos_overrides.",),
        )
        values: dict[str, Any] = {}
        for spec in specs:
            try:
                if self._node.has_parameter(spec.name):
                    value = self._node.get_parameter(spec.name).value
                else:
                    value = self._node.declare_parameter(
                        spec.name, spec.default, descriptor(spec)
                    ).value
            except ParameterException as exc:
                raise ParameterError(f"parameter '{spec.name}': {exc}") from None
            values[spec.name] = spec.coerce(value)
        self._specs = self._specs + tuple(specs)
        return values

    def on_parameters_set(
        self,
        callback: Callable[[dict[str, Any]], str],
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Register ``callback`` through ``add_on_set_parameters_callback`` and ``apply``
        through ``add_post_set_parameters_callback``. rclpy has already checked type, range and
        read-only; the ParamSpec check (choices) runs again here."""
        specs = {s.name: s for s in self._specs}

        def on_set(parameters: list[Parameter]) -> Any:
            changes: dict[str, Any] = {}
            for p in parameters:
                spec = specs.get(p.name)
                if spec is None:
                    continue  # rclpy's own parameters, or one being declared
                try:
                    changes[p.name] = spec.coerce(p.value)
                except ParameterError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            reason = callback(changes) if changes else ""
            if not reason and changes and apply is not None and add_post_set is None:
                apply(changes)  # Humble: no post-set callbacks; accepted, apply now
            return SetParametersResult(successful=not reason, reason=reason)

        # Iron and later (Jazzy) apply an accepted set after it is stored.
        add_post_set = getattr(self._node, "add_post_set_parameters_callback", None)
        self._node.add_on_set_parameters_callback(on_set)
        if apply is None or add_post_set is None:
            return

        def post_set(parameters: list[Parameter]) -> None:
            changes = {p.name: specs[p.name].coerce(p.value) for p in parameters if p.name in specs}
            if changes:
                apply(changes)

        add_post_set(post_set)

    def set_parameters(self, changes: Mapping[str, Any]) -> str:
        """Set parameters through rclpy (all or nothing); ``""`` or the reason of the refusal."""
        coerced, reason = validate_set(self._specs, changes)
        if reason:
            return reason
        result = self._node.set_parameters_atomically(
            [Parameter(name, value=value) for name, value in coerced.items()]
        )
        return "" if result.successful else str(result.reason)

    def get_parameters(self) -> dict[str, Any]:
        return {s.name: self._node.get_parameter(s.name).value for s in self._specs}

    def manage_lifecycle(self, callbacks: Mapping[State, Callable[[], str]]) -> Any:
        """The node's callbacks for rcl's lifecycle state machine (node created with
        ``managed=True``: the ``lifecycle_msgs`` services are rclpy's). On a node created
        unmanaged, the same machine runs without services (a node class used directly)."""
        node = self._node
        if isinstance(node, _ManagedRosNode):
            node.ltc_callbacks = dict(callbacks)
            node.ltc_logger = self._logger
            return _RclpyLifecycle(node)
        return _LocalLifecycle(LifecycleMachine(callbacks), self._logger)

    def now(self) -> float:
        """ROS time in seconds: ``/clock`` under ``use_sim_time``, else the system clock."""
        return float(self._node.get_clock().now().nanoseconds) * 1e-9

    def steady(self) -> float:
        return time.monotonic()

    def spin(self) -> None:
        """Run callbacks and timers until :meth:`shutdown`, SIGINT or SIGTERM. The node stays
        usable after a stop (publishers, timers): the node class's ``close()`` may still
        publish (the safety node's brake ramp, a managed node's shutdown transition) before
        :meth:`shutdown` destroys it."""
        executor = SingleThreadedExecutor(context=self._context)
        executor.add_node(self._node)
        self._spin_done.clear()
        self._spin_thread = threading.get_ident()
        self._spinning = True
        try:
            while not self._stop and not stop.requested() and self._context.ok():
                executor.spin_once(timeout_sec=_SPIN_STEP_S)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            self._spinning = False
            executor.shutdown()
            self._spin_done.set()

    def shutdown(self) -> None:
        """Stop :meth:`spin` and destroy the node. From a callback (the spinning thread) it
        only stops the spin: the node is destroyed by the next call, after the node class's
        ``close()`` (as :func:`~ltc_controller.nodes.registry.run_node` does); from another
        thread it waits for the spin to end first."""
        self._stop = True
        if self._spinning:
            if threading.get_ident() == self._spin_thread:
                return
            self._spin_done.wait(5.0)
        self._close()

    # -- internals ------------------------------------------------------------------------

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if isinstance(self._node, _ManagedRosNode) and self._context.ok():
            # Finalize while the node can still announce it (~/transition_event).
            _RclpyLifecycle(self._node).trigger("shutdown")
        self._node.destroy_node()
        if self._context.ok():
            rclpy.shutdown(context=self._context)


class _ManagedRosNode(LifecycleNode):
    """An rclpy lifecycle node whose transition callbacks are the node class's (returning
    ``""`` or a reason; raising is an error, as in :class:`~.lifecycle.LifecycleMachine`)."""

    ltc_callbacks: dict[State, Callable[[], str]] = {}
    ltc_logger: Any = None

    def _ltc_run(self, state: State) -> Any:
        callback = self.ltc_callbacks.get(state)
        try:
            reason = callback() if callback is not None else ""
        except Exception as exc:
            if self.ltc_logger is not None:
                self.ltc_logger.error(f"{STATE_LABELS[state]}: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.ERROR
        if reason:
            if self.ltc_logger is not None:
                self.ltc_logger.error(f"{STATE_LABELS[state]} failed: {reason}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: Any) -> Any:
        return self._ltc_run(State.CONFIGURING)

    def on_activate(self, state: Any) -> Any:
        return self._ltc_run(State.ACTIVATING)

    def on_deactivate(self, state: Any) -> Any:
        return self._ltc_run(State.DEACTIVATING)

    def on_cleanup(self, state: Any) -> Any:
        return self._ltc_run(State.CLEANINGUP)

    def on_shutdown(self, state: Any) -> Any:
        return self._ltc_run(State.SHUTTINGDOWN)

    def on_error(self, state: Any) -> Any:
        return self._ltc_run(State.ERRORPROCESSING)


class _RclpyLifecycle:
    """port.Lifecycle over an rclpy lifecycle node (rcl's state machine)."""

    def __init__(self, node: _ManagedRosNode) -> None:
        self._node = node

    @property
    def state(self) -> str:
        try:
            return str(self._node._state_machine.current_state[1])
        except Exception:  # the node was destroyed (after spin ended): it was finalized
            return "finalized"

    def trigger(self, label: str) -> str:
        node = self._node
        methods = {
            "configure": node.trigger_configure,
            "activate": node.trigger_activate,
            "deactivate": node.trigger_deactivate,
            "cleanup": node.trigger_cleanup,
            "shutdown": node.trigger_shutdown,
        }
        if label not in methods:
            return f"unknown transition {label!r}"
        if label == "shutdown" and self.state in ("finalized", "shuttingdown"):
            return "already finalized"
        try:
            result = methods[label]()
        except Exception as exc:  # rcl refuses a transition the current state does not have
            return f"no transition {label!r} from state {self.state!r}: {exc}"
        if result != TransitionCallbackReturn.SUCCESS:
            return f"transition {label!r} ended {getattr(result, 'name', result)}"
        return ""


class _LocalLifecycle:
    """port.Lifecycle without services (an rclpy node not created managed)."""

    def __init__(self, machine: LifecycleMachine, logger: _Logger) -> None:
        self._machine = machine
        self._logger = logger

    @property
    def state(self) -> str:
        return self._machine.label

    def trigger(self, label: str) -> str:
        if self._machine.trigger(label=label):
            return ""
        self._logger.error(f"lifecycle transition {label!r} failed: {self._machine.last_error}")
        return self._machine.last_error


def _implements_port(node: RclpyNode) -> Any:
    """Type-checked: RclpyNode satisfies the port's Node protocol."""
    from .port import Node

    checked: Node = node
    return checked
