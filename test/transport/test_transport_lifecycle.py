"""The managed-node state machine follows ROS 2's default lifecycle (rcl_lifecycle): requested
transitions, callback outcomes (success, failure, error through errorprocessing), the events
of every state change, and what a state refuses. Then the same machine served over DDS: the
``lifecycle_msgs`` services and ``~/transition_event`` reached from a peer participant."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ltc_controller.transport.lifecycle import (
    REQUESTS,
    STATE_LABELS,
    TRANSITIONS,
    LifecycleMachine,
    State,
    Transition,
)

S = State


class Recorder:
    def __init__(self, outcomes: dict[State, Any] | None = None) -> None:
        self.outcomes = outcomes or {}
        self.calls: list[State] = []
        self.events: list[tuple[int, str, State, State]] = []

    def callbacks(self) -> dict[State, Any]:
        def make(state: State) -> Any:
            def cb() -> str:
                self.calls.append(state)
                out = self.outcomes.get(state, "")
                if isinstance(out, Exception):
                    raise out
                return str(out)

            return cb

        states = (S.CONFIGURING, S.ACTIVATING, S.DEACTIVATING, S.CLEANINGUP, S.SHUTTINGDOWN)
        return {s: make(s) for s in (*states, S.ERRORPROCESSING)}

    def on_event(self, t: Transition, start: State, goal: State) -> None:
        self.events.append((t.id, t.label, start, goal))


def machine(outcomes: dict[State, Any] | None = None) -> tuple[LifecycleMachine, Recorder]:
    r = Recorder(outcomes)
    return LifecycleMachine(r.callbacks(), r.on_event), r


def test_the_graph_is_rcl_lifecycles_default() -> None:
    assert len(TRANSITIONS) == 25
    assert STATE_LABELS[1] == "unconfigured" and STATE_LABELS[15] == "errorprocessing"
    assert len(STATE_LABELS) == 11
    # Every transition state has exactly one success, failure and error edge.
    for s in (S.CONFIGURING, S.CLEANINGUP, S.SHUTTINGDOWN, S.ACTIVATING, S.DEACTIVATING):
        labels = sorted(t.label for t in TRANSITIONS if t.start == s)
        assert labels == ["transition_error", "transition_failure", "transition_success"]
    shutdowns = {t.start: t.id for t in TRANSITIONS if t.label == "shutdown"}
    assert shutdowns == {S.UNCONFIGURED: 5, S.INACTIVE: 6, S.ACTIVE: 7}


def test_configure_activate_deactivate_cleanup_shutdown_walk_the_primary_states() -> None:
    m, r = machine()
    assert m.label == "unconfigured"
    assert [t.label for t in m.available_transitions()] == ["configure", "shutdown"]
    assert m.trigger(label="configure") and m.state == S.INACTIVE
    assert m.trigger(3) and m.state == S.ACTIVE  # by id, as a manager may send it
    assert m.trigger(label="deactivate") and m.state == S.INACTIVE
    assert m.trigger(label="cleanup") and m.state == S.UNCONFIGURED
    assert m.trigger(label="shutdown") and m.label == "finalized"
    assert r.calls == [S.CONFIGURING, S.ACTIVATING, S.DEACTIVATING, S.CLEANINGUP, S.SHUTTINGDOWN]
    # Two events per transition: into the transition state, then out by its outcome.
    assert r.events[:2] == [
        (1, "configure", S.UNCONFIGURED, S.CONFIGURING),
        (10, "transition_success", S.CONFIGURING, S.INACTIVE),
    ]
    assert r.events[-1] == (50, "transition_success", S.SHUTTINGDOWN, S.FINALIZED)
    assert len(r.events) == 10
    assert m.available_transitions() == ()


def test_a_state_refuses_transitions_it_does_not_have_and_nothing_changes() -> None:
    m, r = machine()
    assert not m.trigger(label="activate")
    assert "no transition 'activate' from state 'unconfigured'" in m.last_error
    assert not m.trigger(99)
    assert not m.trigger(label="transition_success")  # an outcome is not a request
    assert m.state == S.UNCONFIGURED and r.calls == [] and r.events == []
    assert set(REQUESTS) == {"configure", "cleanup", "activate", "deactivate", "shutdown"}


def test_a_label_wins_over_the_id_as_in_rclpy() -> None:
    m, _ = machine()
    assert m.trigger(3, "configure") and m.state == S.INACTIVE


def test_a_failing_configure_stays_unconfigured_with_its_reason() -> None:
    m, r = machine({S.CONFIGURING: "policy.safetensors: no such file"})
    assert not m.trigger(label="configure")
    assert m.state == S.UNCONFIGURED
    assert m.last_error == "configuring: policy.safetensors: no such file"
    assert r.events[-1] == (11, "transition_failure", S.CONFIGURING, S.UNCONFIGURED)
    r.outcomes.clear()
    assert m.trigger(label="configure") and m.last_error == ""


def test_a_failing_activate_stays_inactive() -> None:
    m, _ = machine({S.ACTIVATING: "not ready"})
    m.trigger(label="configure")
    assert not m.trigger(label="activate") and m.state == S.INACTIVE


def test_a_raising_callback_goes_through_errorprocessing() -> None:
    m, r = machine({S.ACTIVATING: RuntimeError("boom")})
    m.trigger(label="configure")
    assert not m.trigger(label="activate")
    assert "RuntimeError: boom" in m.last_error
    assert m.state == S.UNCONFIGURED  # on_error succeeded
    assert [e[:2] for e in r.events[-3:]] == [
        (3, "activate"),
        (32, "transition_error"),
        (60, "transition_success"),
    ]
    assert r.calls[-1] == S.ERRORPROCESSING


def test_a_failing_error_handler_finalizes() -> None:
    m, _ = machine({S.CONFIGURING: ValueError("x"), S.ERRORPROCESSING: "cannot recover"})
    assert not m.trigger(label="configure")
    assert m.state == S.FINALIZED


def test_a_callback_cannot_start_another_transition() -> None:
    box: list[LifecycleMachine] = []
    nested: list[bool] = []

    def configure() -> str:
        nested.append(box[0].trigger(label="shutdown"))
        return ""

    m = LifecycleMachine({S.CONFIGURING: configure})
    box.append(m)
    assert m.trigger(label="configure") and m.state == S.INACTIVE
    assert nested == [False]


# ------------------------------------------------------------------------------------------------
# Over DDS: the services and the events, from a peer participant


@pytest.fixture
def served(dds_loopback: int) -> Any:
    from ltc_controller.transport.dds import DdsNode

    node = DdsNode("managed", "/lc", parameter_services=False)
    r = Recorder({S.CLEANINGUP: "busy"})
    server = node.manage_lifecycle(r.callbacks())
    peer = DdsNode("lc_peer", parameter_services=False)
    yield node, server, r, peer
    peer.shutdown()
    node.shutdown()


def test_lifecycle_services_and_events_over_dds(served: Any) -> None:
    import threading

    from ltc_controller.transport.lifecycle_server import LIFECYCLE_SERVICES
    from ltc_controller.transport.param_client import ParameterClient

    node, server, r, peer = served
    events: list[Any] = []
    peer.create_subscription(
        "lifecycle_msgs/msg/TransitionEvent", "/lc/managed/transition_event", events.append
    )
    # The served node spins in its own thread, as it would in its own process.
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            node.spin_once(0.01)

    t = threading.Thread(target=spin)
    t.start()
    try:
        client = ParameterClient("/lc/managed", node=peer, services=LIFECYCLE_SERVICES)
        client.timeout_s = 20.0
        assert client.wait_for_services()
        assert client.call("get_state").current_state.label == "unconfigured"
        states = client.call("get_available_states").available_states
        assert {(s.id, s.label) for s in states} == set(STATE_LABELS.items())
        avail = client.call("get_available_transitions").available_transitions
        assert [(d.transition.id, d.transition.label, d.goal_state.label) for d in avail] == [
            (1, "configure", "configuring"),
            (5, "shutdown", "shuttingdown"),
        ]
        assert len(client.call("get_transition_graph").available_transitions) == 25
        tr = peer.msg("lifecycle_msgs/msg/Transition", id=1, label="")
        assert client.call("change_state", transition=tr).success
        assert client.call("get_state").current_state.id == S.INACTIVE
        tr = peer.msg("lifecycle_msgs/msg/Transition", id=0, label="activate")
        assert client.call("change_state", transition=tr).success
        assert server.state == "active"
        # Refused: no such transition from active; failed: the cleanup callback says "busy".
        tr = peer.msg("lifecycle_msgs/msg/Transition", id=0, label="cleanup")
        assert not client.call("change_state", transition=tr).success
        assert server.state == "active"
        tr = peer.msg("lifecycle_msgs/msg/Transition", id=4, label="")
        assert client.call("change_state", transition=tr).success
        tr = peer.msg("lifecycle_msgs/msg/Transition", id=0, label="cleanup")
        assert not client.call("change_state", transition=tr).success
        assert server.state == "inactive" and "busy" in server.machine.last_error
        end = time.monotonic() + 10
        while len(events) < 8 and time.monotonic() < end:
            peer.spin_once(0.02)
    finally:
        stop.set()
        t.join()
    got = [(e.start_state.label, e.goal_state.label, e.transition.label) for e in events]
    assert got == [
        ("unconfigured", "configuring", "configure"),
        ("configuring", "inactive", "transition_success"),
        ("inactive", "activating", "activate"),
        ("activating", "active", "transition_success"),
        ("active", "deactivating", "deactivate"),
        ("deactivating", "inactive", "transition_success"),
        ("inactive", "cleaningup", "cleanup"),
        ("cleaningup", "inactive", "transition_failure"),
    ]
    assert all(e.timestamp > 0 for e in events)


def test_ltc_controller_lifecycle_command_gets_sets_and_lists(dds_loopback: int, capsys) -> None:
    import threading

    from ltc_controller.cli import main
    from ltc_controller.transport.dds import DdsNode

    node = DdsNode("managed_cli", "/lc2", parameter_services=False)
    r = Recorder()
    server = node.manage_lifecycle(r.callbacks())
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            node.spin_once(0.01)

    t = threading.Thread(target=spin)
    t.start()
    try:
        target = "/lc2/managed_cli"
        assert main(["lifecycle", "get", target, "--timeout", "20"]) == 0
        assert capsys.readouterr().out == "unconfigured [1]\n"
        assert main(["lifecycle", "set", target, "configure", "--timeout", "20"]) == 0
        assert main(["lifecycle", "set", target, "activate", "--timeout", "20"]) == 0
        assert server.state == "active"
        assert main(["lifecycle", "set", target, "activate", "--timeout", "20"]) == 1
        capsys.readouterr()
        assert main(["lifecycle", "list", target, "--timeout", "20"]) == 0
        out = capsys.readouterr().out
        assert "- deactivate [4]" in out and "- shutdown [7]" in out
        assert main(["lifecycle", "get", "/lc2/nobody", "--timeout", "0.3"]) == 2
        assert "no service /lc2/nobody/get_state" in capsys.readouterr().err
    finally:
        stop.set()
        t.join()
        node.shutdown()
