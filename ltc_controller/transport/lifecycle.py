"""The ROS 2 managed-node (lifecycle) state machine, pure: no DDS, no rclpy, no clock.

The states, transitions and labels are those of ROS 2's default lifecycle (design article
"Managed nodes"; ``rcl_lifecycle``'s default state machine; ``lifecycle_msgs/msg/State`` and
``Transition`` ids), so a ROS 2 lifecycle manager or ``ros2 lifecycle set/get/list`` drives a
node of either backend the same way:

- primary states: ``unconfigured`` (1), ``inactive`` (2), ``active`` (3), ``finalized`` (4);
- transition states, where the node's callback runs: ``configuring`` (10), ``cleaningup``
  (11), ``shuttingdown`` (12), ``activating`` (13), ``deactivating`` (14),
  ``errorprocessing`` (15);
- a requested transition (``configure`` 1, ``cleanup`` 2, ``activate`` 3, ``deactivate`` 4,
  ``shutdown`` 5/6/7 from unconfigured/inactive/active) enters its transition state, runs the
  callback, and leaves by ``transition_success`` / ``transition_failure`` /
  ``transition_error`` (a callback that raises); errors go through ``errorprocessing``, whose
  callback decides between ``unconfigured`` (success) and ``finalized``.

:class:`LifecycleMachine` keeps the state and runs the callbacks; every state change is
reported to ``on_event(transition, start, goal)`` (the DDS backend publishes it as
``lifecycle_msgs/msg/TransitionEvent`` on ``~/transition_event``). Under rclpy the machine of
``rcl_lifecycle`` does this job (:mod:`.rclpy_backend`); both call the same node callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "PRIMARY_STATES",
    "REQUESTS",
    "STATE_LABELS",
    "TRANSITIONS",
    "LifecycleMachine",
    "State",
    "Transition",
]


class State(IntEnum):
    """``lifecycle_msgs/msg/State`` ids."""

    UNKNOWN = 0
    UNCONFIGURED = 1
    INACTIVE = 2
    ACTIVE = 3
    FINALIZED = 4
    CONFIGURING = 10
    CLEANINGUP = 11
    SHUTTINGDOWN = 12
    ACTIVATING = 13
    DEACTIVATING = 14
    ERRORPROCESSING = 15


#: State id -> label, as ``rcl_lifecycle`` names them (``ros2 lifecycle get`` prints these).
STATE_LABELS: dict[int, str] = {s.value: s.name.lower() for s in State}
#: The states a node rests in between transitions.
PRIMARY_STATES = (State.UNCONFIGURED, State.INACTIVE, State.ACTIVE, State.FINALIZED)


@dataclass(frozen=True)
class Transition:
    """One edge of the graph: ``lifecycle_msgs/msg/Transition`` id and label, start and goal
    state ids (``lifecycle_msgs/msg/TransitionDescription``)."""

    id: int
    label: str
    start: State
    goal: State


_OK, _FAIL, _ERR = "transition_success", "transition_failure", "transition_error"
S = State
#: The default graph: requested transitions (ids 1-7) and the callback outcomes (10-62).
TRANSITIONS: tuple[Transition, ...] = (
    Transition(1, "configure", S.UNCONFIGURED, S.CONFIGURING),
    Transition(10, _OK, S.CONFIGURING, S.INACTIVE),
    Transition(11, _FAIL, S.CONFIGURING, S.UNCONFIGURED),
    Transition(12, _ERR, S.CONFIGURING, S.ERRORPROCESSING),
    Transition(2, "cleanup", S.INACTIVE, S.CLEANINGUP),
    Transition(20, _OK, S.CLEANINGUP, S.UNCONFIGURED),
    Transition(21, _FAIL, S.CLEANINGUP, S.INACTIVE),
    Transition(22, _ERR, S.CLEANINGUP, S.ERRORPROCESSING),
    Transition(3, "activate", S.INACTIVE, S.ACTIVATING),
    Transition(30, _OK, S.ACTIVATING, S.ACTIVE),
    Transition(31, _FAIL, S.ACTIVATING, S.INACTIVE),
    Transition(32, _ERR, S.ACTIVATING, S.ERRORPROCESSING),
    Transition(4, "deactivate", S.ACTIVE, S.DEACTIVATING),
    Transition(40, _OK, S.DEACTIVATING, S.INACTIVE),
    Transition(41, _FAIL, S.DEACTIVATING, S.ACTIVE),
    Transition(42, _ERR, S.DEACTIVATING, S.ERRORPROCESSING),
    Transition(5, "shutdown", S.UNCONFIGURED, S.SHUTTINGDOWN),
    Transition(6, "shutdown", S.INACTIVE, S.SHUTTINGDOWN),
    Transition(7, "shutdown", S.ACTIVE, S.SHUTTINGDOWN),
    Transition(50, _OK, S.SHUTTINGDOWN, S.FINALIZED),
    Transition(51, _FAIL, S.SHUTTINGDOWN, S.FINALIZED),
    Transition(52, _ERR, S.SHUTTINGDOWN, S.ERRORPROCESSING),
    Transition(60, _OK, S.ERRORPROCESSING, S.UNCONFIGURED),
    Transition(61, _FAIL, S.ERRORPROCESSING, S.FINALIZED),
    Transition(62, _ERR, S.ERRORPROCESSING, S.FINALIZED),
)
#: The transitions a client may request (the others are callback outcomes).
REQUESTS = ("configure", "cleanup", "activate", "deactivate", "shutdown")

#: ``callback() -> ""`` (success) or the reason it failed; raising is an error.
Callback = Callable[[], str]
#: ``on_event(transition, start, goal)`` after every state change.
EventSink = Callable[[Transition, State, State], None]


class LifecycleMachine:
    """The state of one managed node and the transitions it may take.

    Args:
        callbacks: transition state -> the node's callback run in it (``CONFIGURING``:
            on_configure, ``ACTIVATING``: on_activate, ..., ``ERRORPROCESSING``: on_error). A
            callback returns ``""`` for success or the reason of a failure; one that raises is
            an error. A missing callback succeeds.
        on_event: told of every state change (two per requested transition, four through
            ``errorprocessing``).

    Starts in ``unconfigured``. Not thread-safe: call it from the node's executor thread.
    """

    def __init__(
        self, callbacks: Mapping[State, Callback], on_event: EventSink | None = None
    ) -> None:
        self._callbacks = dict(callbacks)
        self._on_event = on_event
        self.state = State.UNCONFIGURED
        #: why the last requested transition failed or erred ("" after a success)
        self.last_error = ""
        self._busy = False

    @property
    def label(self) -> str:
        """The current state's label (``"active"``...)."""
        return STATE_LABELS[self.state]

    def available_transitions(self) -> tuple[Transition, ...]:
        """The transitions that leave the current state (``~/get_available_transitions``)."""
        return tuple(t for t in TRANSITIONS if t.start == self.state)

    def find(self, transition_id: int = 0, label: str = "") -> Transition | None:
        """The requested transition from the current state: by ``label`` when one is given (as
        rclpy's ``change_state`` does), else by id; None if the state has no such transition."""
        for t in self.available_transitions():
            if (t.label == label) if label else (t.id == transition_id):
                return t
        return None

    def trigger(self, transition_id: int = 0, label: str = "") -> bool:
        """Take a requested transition (``label`` or ``transition_id``) and run its callback.

        Returns whether the callback succeeded (``ChangeState.Response.success``); False
        without any change when the current state has no such transition or another
        transition is running (a callback that requests one). The reason of a failure is in
        :attr:`last_error`.
        """
        t = self.find(transition_id, label) if not self._busy else None
        if t is None or t.label not in REQUESTS:
            asked = label or str(transition_id)
            self.last_error = f"no transition {asked!r} from state {self.label!r}"
            return False
        self._busy = True
        try:
            ok = self._run(t) == _OK
        finally:
            self._busy = False
        if ok:
            self.last_error = ""
        return ok

    def _run(self, t: Transition) -> str:
        """Enter ``t``'s transition state, run its callback, leave by its outcome; returns the
        outcome label."""
        self._enter(t)
        outcome = self._call(t.goal)
        self._enter(self._edge(t.goal, outcome))
        if self.state == State.ERRORPROCESSING:
            self._enter(self._edge(State.ERRORPROCESSING, self._call(State.ERRORPROCESSING)))
        return outcome

    def _call(self, state: State) -> str:
        callback = self._callbacks.get(state)
        try:
            reason = callback() if callback is not None else ""
        except Exception as exc:  # an error outcome, handled by errorprocessing
            self.last_error = f"{STATE_LABELS[state]}: {type(exc).__name__}: {exc}"
            return _ERR
        if reason:
            self.last_error = f"{STATE_LABELS[state]}: {reason}"
            return _FAIL
        return _OK

    def _edge(self, state: State, outcome: str) -> Transition:
        return next(t for t in TRANSITIONS if t.start == state and t.label == outcome)

    def _enter(self, t: Transition) -> None:
        start, self.state = self.state, t.goal
        if self._on_event is not None:
            self._on_event(t, start, t.goal)
