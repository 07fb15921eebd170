"""A managed node's lifecycle interface over plain DDS, as an rclpy lifecycle node serves it.

Under ``<node fully qualified name>/``:

- services ``change_state`` (``lifecycle_msgs/srv/ChangeState``), ``get_state``
  (``GetState``), ``get_available_states`` (``GetAvailableStates``),
  ``get_available_transitions`` and ``get_transition_graph`` (``GetAvailableTransitions``);
- topic ``transition_event`` (``lifecycle_msgs/msg/TransitionEvent``, reliable, volatile, keep
  last 10): one event per state change; besides the start and goal states that rcl fills,
  ``transition`` and ``timestamp`` (ns, system clock) are set.

So ``ros2 lifecycle get/set/list/nodes`` and a lifecycle manager on a ROS 2 machine with
rmw_cyclonedds_cpp drive a DDS-mode node like an rclpy one. The state machine is
:class:`~.lifecycle.LifecycleMachine`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .lifecycle import STATE_LABELS, TRANSITIONS, LifecycleMachine, State, Transition
from .lifecycle import Callback as LifecycleCallback
from .param_services import ServiceNode
from .port import RELIABLE
from .services import ServiceServer

__all__ = ["LIFECYCLE_SERVICES", "LifecycleServer"]

#: service short name -> type, the lifecycle services of an rclpy lifecycle node.
LIFECYCLE_SERVICES = {
    "change_state": "lifecycle_msgs/srv/ChangeState",
    "get_state": "lifecycle_msgs/srv/GetState",
    "get_available_states": "lifecycle_msgs/srv/GetAvailableStates",
    "get_available_transitions": "lifecycle_msgs/srv/GetAvailableTransitions",
    "get_transition_graph": "lifecycle_msgs/srv/GetAvailableTransitions",
}


class LifecycleServer:
    """The lifecycle machine of one :class:`~.dds.DdsNode` and its services and events.

    ``callbacks``: transition state -> node callback (see :class:`~.lifecycle.LifecycleMachine`).
    ``trigger(label)`` requests a transition locally (autostart, shutdown on exit): the same
    path as a ``change_state`` request, events included.
    """

    def __init__(self, node: ServiceNode, callbacks: Mapping[State, LifecycleCallback]) -> None:
        self._node = node
        self._events = node.create_publisher(
            "lifecycle_msgs/msg/TransitionEvent", "~/transition_event", RELIABLE
        )
        self.machine = LifecycleMachine(callbacks, self._publish_event)
        base = node.fully_qualified_name
        handlers = {
            "change_state": self._change_state,
            "get_state": self._get_state,
            "get_available_states": self._get_available_states,
            "get_available_transitions": self._get_available_transitions,
            "get_transition_graph": self._get_transition_graph,
        }
        self.servers = {
            short: ServiceServer(node, f"{base}/{short}", LIFECYCLE_SERVICES[short], handler)
            for short, handler in handlers.items()
        }

    @property
    def state(self) -> str:
        """The current state's label."""
        return self.machine.label

    def trigger(self, label: str) -> str:
        """Take transition ``label``; ``""`` on success, else why not (logged)."""
        if self.machine.trigger(label=label):
            return ""
        reason = self.machine.last_error
        self._node.logger.error(f"lifecycle transition {label!r} failed: {reason}")
        return reason or f"transition {label!r} failed"

    # -- wire ------------------------------------------------------------------------------

    def _state_msg(self, state: int) -> Any:
        return self._node.msg("lifecycle_msgs/msg/State", id=state, label=STATE_LABELS[state])

    def _description(self, t: Transition) -> Any:
        msg = self._node.msg
        return msg(
            "lifecycle_msgs/msg/TransitionDescription",
            transition=msg("lifecycle_msgs/msg/Transition", id=t.id, label=t.label),
            start_state=self._state_msg(t.start),
            goal_state=self._state_msg(t.goal),
        )

    def _publish_event(self, t: Transition, start: State, goal: State) -> None:
        msg = self._node.msg
        self._events.publish(
            msg(
                "lifecycle_msgs/msg/TransitionEvent",
                timestamp=time.time_ns(),
                transition=msg("lifecycle_msgs/msg/Transition", id=t.id, label=t.label),
                start_state=self._state_msg(start),
                goal_state=self._state_msg(goal),
            )
        )
        self._node.logger.info(f"lifecycle: {STATE_LABELS[start]} -> {STATE_LABELS[goal]}")

    def _change_state(self, req: Any) -> dict[str, Any]:
        t = req.transition
        label = str(t.label)
        ok = self.machine.trigger(int(t.id), label)
        if not ok:
            self._node.logger.warning(
                f"lifecycle change_state {label or int(t.id)!r} refused or failed: "
                f"{self.machine.last_error}"
            )
        return {"success": ok}

    def _get_state(self, req: Any) -> dict[str, Any]:
        return {"current_state": self._state_msg(self.machine.state)}

    def _get_available_states(self, req: Any) -> dict[str, Any]:
        return {"available_states": [self._state_msg(s) for s in STATE_LABELS]}

    def _get_available_transitions(self, req: Any) -> dict[str, Any]:
        ts = self.machine.available_transitions()
        return {"available_transitions": [self._description(t) for t in ts]}

    def _get_transition_graph(self, req: Any) -> dict[str, Any]:
        return {"available_transitions": [self._description(t) for t in TRANSITIONS]}
