"""The safety_fallback node class over real Cyclone DDS (loopback, in this process): profiles from
the shipped YAML, message mapping, odometry seeding, landing requests, runtime parameter sets,
status and diagnostics."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.nodes.commands import ACKERMANN, build_command
from ltc_controller.nodes.safety_node import SafetyNode
from ltc_controller.nodes.stamps import diagnostic_name, to_seconds
from ltc_controller.params import ParameterError
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import LATCHED, RELIABLE
from ltc_controller.transport.ros_args import load_params_file

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("dds_loopback")]
ROOT = Path(__file__).resolve().parents[2]
N = 3  # recovery_heartbeats in these tests


class Rig:
    """A SafetyNode under test; a peer plays the policy (command + heartbeat at ``period``),
    teleop, e-stop and odometry, and records what the node sends."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.ns = "/t" + uuid.uuid4().hex[:8]
        self.dut_node = DdsNode("safety_fallback", self.ns, parameters=params)
        self.safety = SafetyNode(self.dut_node)
        self.peer = peer = DdsNode("peer", self.ns, parameter_services=False)
        t = self.type = self.safety.cmd_type
        self.out: list[Any] = []
        self.status: list[Any] = []
        self.land: list[float] = []
        self.diag: list[Any] = []
        out_topic = "ackermann_cmd" if t == ACKERMANN else "cmd_vel"
        peer.create_subscription(t, out_topic, self.out.append, RELIABLE)
        peer.create_subscription(
            "ltc_controller/msg/SafetyStatus", "safety_status", self.status.append
        )
        peer.create_subscription(
            "std_msgs/msg/Empty", "land", lambda m: self.land.append(time.monotonic())
        )
        peer.create_subscription(
            "diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", self.diag.append
        )
        self.cmd = peer.create_publisher(t, "policy_cmd", RELIABLE)
        self.hb = peer.create_publisher("std_msgs/msg/Header", "policy_heartbeat", RELIABLE)
        self.teleop = peer.create_publisher(t, "teleop_cmd", RELIABLE)
        self.estop = peer.create_publisher("std_msgs/msg/Bool", "estop", LATCHED)
        self.odom = peer.create_publisher("nav_msgs/msg/Odometry", "odom")
        self.policy_values: tuple[float, ...] | None = None
        self.odom_speed: float | None = None
        self._next = 0.0

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.dut_node.spin_once(0.002)
            self.peer.spin_once(0.0)
            now = time.monotonic()
            if now >= self._next:
                self._next = now + 0.05
                if self.policy_values is not None:
                    stamp = time.time_ns()
                    self.cmd.publish(
                        build_command(self.type, self.peer.msg, self.policy_values, stamp)
                    )
                    self.hb.publish(self.peer.msg("std_msgs/msg/Header"))
                if self.odom_speed is not None:
                    o = self.peer.msg("nav_msgs/msg/Odometry")
                    o.twist.twist.linear.x = self.odom_speed
                    self.odom.publish(o)
            if until is not None and until():
                return True
        return False

    def state(self) -> str:
        return str(self.status[-1].state_name) if self.status else ""

    def close(self) -> None:
        self.peer.shutdown()
        self.dut_node.shutdown()


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(profile: str = "vehicle.yaml", **params: Any) -> Rig:
        p = load_params_file(ROOT / "config" / profile, "/safety_fallback")
        rigs.append(Rig({**p, "recovery_heartbeats": N, **params}))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def twist_values(msg: Any) -> tuple[float, float, float, float]:
    return (msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.z)


def test_drone_profile_hovers_on_fault_then_requests_landing(rig_factory):
    rig = rig_factory("drone.yaml", land_after_s=0.5, auto_recover=True)
    assert rig.state() == "" and rig.safety.axes == (
        "linear_x",
        "linear_y",
        "linear_z",
        "angular_z",
    )
    rig.policy_values = (1.0, -0.5, 0.25, 0.2)
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    assert rig.spin(3.0, lambda: twist_values(rig.out[-1]) == pytest.approx(rig.policy_values))
    assert not rig.land
    rig.policy_values = None  # the policy goes silent
    assert rig.spin(2.0, lambda: rig.state() == "FALLBACK")
    t_fb = time.monotonic()
    assert rig.spin(3.0, lambda: twist_values(rig.out[-1]) == (0.0, 0.0, 0.0, 0.0))  # hover
    assert rig.spin(3.0, lambda: bool(rig.land))
    assert rig.land[0] - t_fb == pytest.approx(0.5, abs=0.15)
    assert any(s.land_requested for s in rig.status) and rig.status[-1].land_requested
    rig.spin(1.2)
    assert 2 <= len(rig.land) <= 3  # repeated once a second while it lasts


def test_odometry_seeds_the_fallback_ramp(rig_factory):
    rig = rig_factory(use_odometry=True)
    rig.policy_values = (0.0, 5.0)
    rig.odom_speed = 2.0  # the car is slower than commanded
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE" and rig.out[-1].drive.speed == 5.0)
    rig.policy_values = None
    n = len(rig.status)
    assert rig.spin(2.0, lambda: rig.state() == "FALLBACK")
    i = next(i for i in range(n, len(rig.status)) if rig.status[i].state_name == "FALLBACK")
    first = rig.status[i]
    # The node's own tick interval, from its status stamps: a loaded machine delays a tick.
    # 0.05 s: the gap between the tick's steady-clock decision and its ROS-time stamp.
    dt = to_seconds(first.header.stamp) - to_seconds(rig.status[i - 1].header.stamp) + 0.05
    # Ramp starts at the measured 2 m/s (minus one tick of decel), not at the commanded 5.
    assert 2.0 - 4.0 * dt <= first.command[1] <= 2.0
    assert "ACTIVE->FALLBACK" in first.events


def test_runtime_sets_are_validated_and_applied_on_the_next_tick(rig_factory):
    rig = rig_factory()
    n = rig.dut_node
    # Zero (stop) must stay reachable: max >= 0 >= min, by the declared ranges.
    assert "below the minimum" in n.set_parameters({"limits.speed.max": -1.0})
    assert "above the maximum" in n.set_parameters({"limits.speed.min": 0.5})
    assert "read-only" in n.set_parameters({"command_type": "geometry_msgs/msg/Twist"})
    assert "below the minimum" in n.set_parameters({"limits.speed.decel": 0.0})
    rig.policy_values = (0.0, 3.0)
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    assert n.set_parameters({"limits.speed.max": 2.9}) == ""  # within the 10 % tolerance
    assert rig.spin(3.0, lambda: rig.out[-1].drive.speed == pytest.approx(2.9))
    assert "speed.value" in rig.status[-1].active_limiters
    assert rig.state() == "ACTIVE"


def test_runtime_sets_never_loosen_limits_past_the_profile_ceilings(rig_factory):
    rig = rig_factory(**{"limits.speed.ceiling": 9.0})
    n = rig.dut_node
    assert n.set_parameters({"limits.speed.max": 9.0}) == ""  # up to the ceiling
    assert "exceeds its ceiling 9.0" in n.set_parameters({"limits.speed.max": 9.5})
    assert "read-only" in n.set_parameters({"limits.speed.ceiling": 50.0})
    # No ceiling given: the start-up min/max are the bounds; lowering and restoring is fine.
    assert n.set_parameters({"limits.steering_angle.max": 0.3}) == ""
    assert n.set_parameters({"limits.steering_angle.max": 0.5}) == ""
    assert "exceeds its ceiling 0.5" in n.set_parameters({"limits.steering_angle.max": 0.6})
    assert "below its floor -0.5" in n.set_parameters({"limits.steering_angle.min": -0.7})
    # accel may be lowered, never raised above its start-up value.
    assert n.set_parameters({"limits.speed.accel": 1.0}) == ""
    assert "exceeds its start-up value 2.0" in n.set_parameters({"limits.speed.accel": 3.0})
    # decel is also the fallback ramp: steeper at run time, never gentler.
    assert "below its start-up value 4.0" in n.set_parameters({"limits.speed.decel": 0.001})
    assert n.set_parameters({"limits.speed.decel": 6.0}) == ""
    # A forward-only axis (speed min 0) gets no reverse from its ceiling; timeouts only shorten.
    assert "below its floor 0.0" in n.set_parameters({"limits.speed.min": -5.0})
    assert "exceeds its start-up value" in n.set_parameters({"heartbeat_timeout_s": 9.0})
    assert n.set_parameters({"command_timeout_s": 0.2}) == ""
    assert rig.safety.p["limits.speed.max"] == 9.0 and rig.safety.p["limits.speed.accel"] == 1.0
    assert rig.safety.p["limits.speed.decel"] == 6.0 and rig.safety.p["limits.speed.min"] == 0.0


def test_a_start_up_limit_beyond_its_ceiling_stops_the_node_naming_both():
    node = DdsNode("safety_fallback", "/t" + uuid.uuid4().hex[:8], parameters={})
    try:
        with pytest.raises(
            ParameterError, match=r"limits\.speed\.max = 8\.0 .*limits\.speed\.ceiling"
        ):
            SafetyNode(node, {"limits.speed.ceiling": 5.0})
    finally:
        node.shutdown()


def test_closing_the_node_brakes_to_a_stop_before_it_exits(rig_factory):
    rig = rig_factory()
    rig.policy_values = (0.1, 3.0)
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE" and rig.out[-1].drive.speed == 3.0)
    rig.spin(0.1)
    t0 = time.monotonic()
    rig.safety.close()  # what SIGINT/SIGTERM does after the spin ends
    took = time.monotonic() - t0
    rig.spin(0.3)  # collect what the peer's reader kept (the newest 10 samples)
    tail = rig.out[-10:]
    speeds = [m.drive.speed for m in tail]
    assert speeds[-1] == 0.0 and speeds == sorted(speeds, reverse=True)
    # Braked at no more than decel (4 m/s^2) between the node's own output stamps, so 3 m/s
    # took at least 0.75 s, and the node stopped once it stood still (shutdown_ramp_max_s 2 s).
    t = [to_seconds(m.header.stamp) for m in tail]
    assert all(
        a - b <= 4.0 * (tb - ta) + 1e-6
        for a, b, ta, tb in zip(speeds, speeds[1:], t, t[1:], strict=False)
    )
    assert took >= 0.7
    last = rig.status[-1]
    assert last.state_name == "FALLBACK" and last.active_fault == "shutdown"
    assert dict(zip(last.fault_names, last.fault_counts, strict=True))["shutdown"] == 1


def test_non_finite_commands_are_counted_and_never_sent(rig_factory):
    rig = rig_factory()
    rig.policy_values = (0.0, 2.0)
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    rig.policy_values = (math.nan, 2.0)
    assert rig.spin(2.0, lambda: rig.state() == "FALLBACK")
    rig.spin(0.3)
    s = rig.status[-1]
    assert s.active_fault == "command_non_finite" and s.commands_rejected >= 3
    assert dict(zip(s.fault_names, s.fault_counts, strict=True))["command_non_finite"] == 1
    assert all(
        math.isfinite(m.drive.speed) and math.isfinite(m.drive.steering_angle) for m in rig.out
    )
    rig.policy_values = (0.0, 2.0)  # healthy again: recovery after N heartbeats
    assert rig.spin(3.0, lambda: rig.state() == "ACTIVE")


def test_diagnostics_name_the_fault_and_the_limiters(rig_factory):
    rig = rig_factory(diagnostics_period_s=0.1)
    rig.policy_values = (0.3, 4.0)
    assert rig.spin(10.0, lambda: rig.state() == "ACTIVE")
    rig.policy_values = None
    assert rig.spin(2.0, lambda: rig.state() == "FALLBACK")
    n = len(rig.diag)
    assert rig.spin(2.0, lambda: len(rig.diag) > n + 1)
    state, limiters = rig.diag[-1].status
    # Named from the node's fully qualified name (as diagnostic_updater does): two robots differ.
    assert state.name == f"{rig.ns[1:]}/safety_fallback: state" and state.level == 2
    assert state.hardware_id == f"{rig.ns}/safety_fallback"
    assert state.message.startswith("FALLBACK: command_timeout")
    kv = {v.key: v.value for v in state.values}
    assert (
        kv["active_fault"] == "command_timeout" and int(kv["fault.command_timeout"]) >= 1
    )  # more if a starved peer went quiet
    assert (
        limiters.name == f"{rig.ns[1:]}/safety_fallback: limiters"
        and "speed.rate" in limiters.message
    )


def test_contradicting_limits_stop_the_node_at_start_naming_them():
    node = DdsNode("safety_fallback", "/t" + uuid.uuid4().hex[:8], parameters={})
    try:
        p = {"fallback_steering": "centre", "limits.steering_angle.max": 0.0}
        SafetyNode(node, {**p})  # a zero range is allowed: steering locked straight
        with pytest.raises(ParameterError, match="limits.speed.max"):
            SafetyNode(node, {"limits.speed.max": -0.5})
    finally:
        node.shutdown()


@pytest.mark.parametrize(
    "namespace,expected",
    [
        ("/", "safety_fallback: state"),
        ("/car1", "car1/safety_fallback: state"),
        ("/a/b", "a/b/safety_fallback: state"),
    ],
)
def test_diagnostic_names_carry_the_namespace(namespace, expected):
    node = DdsNode("safety_fallback", namespace, parameters={}, parameter_services=False)
    try:
        assert diagnostic_name(node, "state") == expected
    finally:
        node.shutdown()


def test_histories_stay_bounded_over_thousands_of_fallbacks(rig_factory):
    import gc
    import tracemalloc

    from ltc_controller.nodes.safety_node import FAULT_LOG_LEN
    from ltc_controller.safety.gate import Command

    rig = rig_factory()
    s = rig.safety

    def toggle(times: int) -> None:
        for i in range(times):  # a policy fault on every other tick: one transition per tick
            now = rig.dut_node.steady()
            s.inputs = replace(
                s.inputs,
                command=Command((0.1, 2.0)),
                command_time=now,
                heartbeat_time=now,
                heartbeats=s.inputs.heartbeats + N,
                policy_fault=i % 2 == 0,
            )
            s._tick()

    def held_by_package() -> int:
        """Bytes still allocated from this package's code (pytest keeps every log record, a
        real node does not: those are not counted)."""
        gc.collect()  # garbage in cycles is not growth
        only = [tracemalloc.Filter(True, "*/ltc_controller/*")]
        snap = tracemalloc.take_snapshot().filter_traces(only)
        held.append(snap)
        return sum(t.size for t in snap.traces)

    held: list[Any] = []

    toggle(2 * FAULT_LOG_LEN)
    tracemalloc.start()
    toggle(2000)  # caches that fill once fill here
    short = held_by_package()
    toggle(2000)
    long = held_by_package()
    tracemalloc.stop()
    assert s.state.transitions >= 4000 and len(s.fault_log) == FAULT_LOG_LEN
    # An unbounded list of (time, "A->B") grew ~150 B per transition: ~300 KB here.
    top = held[1].compare_to(held[0], "lineno")[:3]
    assert long - short < 16 * 1024, (long - short, [str(x) for x in top])
