"""``safety_fallback``: the only node that talks to the actuators.

Callbacks store the newest input and return; a steady-clock timer at ``rate_hz`` runs the pure
:func:`ltc_controller.safety.gate.tick` and publishes its command — always, also when every input
has gone silent (the timer does not depend on them, and it runs on the steady clock, which keeps
going when ROS time stops).

Topics (relative):

- in  ``policy_cmd`` (``ackermann_msgs/msg/AckermannDriveStamped``)
- in  ``policy_heartbeat`` (``std_msgs/msg/Header``)
- in  ``policy_status`` (``ltc_controller/msg/PolicyStatus``; health FAULT is a policy fault)
- in  ``estop`` (``std_msgs/msg/Bool``, latched QoS), ``estop_reset`` (``std_msgs/msg/Bool``)
- out ``ackermann_cmd`` (``ackermann_msgs/msg/AckermannDriveStamped``), the final command
- out ``safety_status`` (``ltc_controller/msg/SafetyStatus``)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ltc_controller.nodes.stamps import header, header_ns, to_ns
from ltc_controller.params import COMMON, ParamSpec, resolve
from ltc_controller.safety.gate import (
    FAULTS,
    Command,
    GateConfig,
    GateInputs,
    GateState,
    SafetyState,
    tick,
)
from ltc_controller.transport.port import LATCHED, RELIABLE, Node

_D = GateConfig()
PARAMS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec(
        "rate_hz", float, 50.0, "Safety tick (and output) rate", "Hz", 1.0, 1000.0, read_only=True
    ),
    ParamSpec(
        "command_timeout_s",
        float,
        _D.command_timeout_s,
        "Fallback when no policy command arrived for this long",
        "s",
        0.001,
        10.0,
    ),
    ParamSpec(
        "heartbeat_timeout_s",
        float,
        _D.heartbeat_timeout_s,
        "Fallback when no healthy heartbeat arrived for this long",
        "s",
        0.001,
        10.0,
    ),
    ParamSpec(
        "max_steering_angle",
        float,
        _D.max_steering_angle,
        "Absolute steering limit",
        "rad",
        0.0,
        1.6,
    ),
    ParamSpec(
        "max_steering_rate", float, _D.max_steering_rate, "Steering rate limit", "rad/s", 0.0, 100.0
    ),
    ParamSpec("max_speed", float, _D.max_speed, "Absolute speed limit", "m/s", 0.0, 100.0),
    ParamSpec(
        "min_speed",
        float,
        _D.min_speed,
        "Lowest speed (negative allows reverse)",
        "m/s",
        -100.0,
        0.0,
    ),
    ParamSpec("max_accel", float, _D.max_accel, "Acceleration limit", "m/s^2", 0.0, 100.0),
    ParamSpec(
        "max_decel",
        float,
        _D.max_decel,
        "Deceleration limit (also the fallback ramp)",
        "m/s^2",
        0.01,
        100.0,
    ),
    ParamSpec(
        "recovery_heartbeats",
        int,
        _D.recovery_heartbeats,
        "Healthy heartbeats needed to leave FALLBACK",
        "",
        1,
        100000,
    ),
    ParamSpec("auto_recover", bool, _D.auto_recover, "Return to ACTIVE after recovery"),
    ParamSpec(
        "fallback_steering",
        str,
        _D.fallback_steering,
        "Steering during fallback",
        choices=("hold", "centre"),
    ),
)

_GATE_FIELDS = {f for f in GateConfig.__dataclass_fields__}


class SafetyNode:
    """The ``safety_fallback`` node on a transport :class:`~ltc_controller.transport.port.Node`.

    Raises:
        ParameterError: an unknown or invalid parameter (at construction).
    """

    def __init__(self, node: Node, params: Mapping[str, Any] | None = None) -> None:
        self.node = node
        # Parameters come from the node (command line, params files) unless given directly.
        self.p = p = node.declare_parameters(PARAMS) if params is None else resolve(PARAMS, params)
        self.cfg = GateConfig(**{k: v for k, v in p.items() if k in _GATE_FIELDS})
        self.state = GateState()
        self.inputs = GateInputs()
        self.commands_received = 0
        self.commands_rejected = 0
        self.fault_log: list[tuple[float, str]] = []
        cmd_type = "ackermann_msgs/msg/AckermannDriveStamped"
        node.create_subscription(cmd_type, "policy_cmd", self._on_command, RELIABLE)
        node.create_subscription("std_msgs/msg/Header", "policy_heartbeat", self._on_hb, RELIABLE)
        node.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", self._on_status, RELIABLE
        )
        node.create_subscription("std_msgs/msg/Bool", "estop", self._on_estop, LATCHED)
        node.create_subscription("std_msgs/msg/Bool", "estop_reset", self._on_reset, RELIABLE)
        self.pub_cmd = node.create_publisher(cmd_type, "ackermann_cmd", RELIABLE)
        self.pub_status = node.create_publisher(
            "ltc_controller/msg/SafetyStatus", "safety_status", RELIABLE
        )
        self.timer = node.create_timer(1.0 / p["rate_hz"], self._tick)

    # -- callbacks: store and return ---------------------------------------------------------
    def _on_command(self, msg: Any) -> None:
        self.commands_received += 1
        cmd = Command(
            float(msg.drive.steering_angle), float(msg.drive.speed), to_ns(msg.header.stamp)
        )
        if not (math.isfinite(cmd.steering_angle) and math.isfinite(cmd.speed)):
            self.commands_rejected += 1
        self.inputs = replace(self.inputs, command=cmd, command_time=self.node.steady())

    def _on_hb(self, msg: Any) -> None:
        self.inputs = replace(
            self.inputs, heartbeat_time=self.node.steady(), heartbeats=self.inputs.heartbeats + 1
        )

    def _on_status(self, msg: Any) -> None:
        self.inputs = replace(self.inputs, policy_fault=int(msg.health) >= 2)

    def _on_estop(self, msg: Any) -> None:
        self.inputs = replace(self.inputs, estop=bool(msg.data))

    def _on_reset(self, msg: Any) -> None:
        if msg.data:
            self.inputs = replace(self.inputs, estop_reset_requested=True)

    # -- the timer ---------------------------------------------------------------------------
    def _tick(self) -> None:
        node = self.node
        self.state, out = tick(self.cfg, self.state, self.inputs, node.steady())
        if self.inputs.estop_reset_requested:
            self.inputs = replace(self.inputs, estop_reset_requested=False)
        for e in out.events:
            if "->" in e:
                node.logger.warning(f"safety: {e} ({self.state.active_fault or 'inputs healthy'})")
                self.fault_log.append((node.now(), e))
            else:
                node.logger.info(f"safety: {e}")
        now = node.now()
        # Passed-through commands keep the camera stamp they carried (latency accounting);
        # fallback commands are stamped now.
        if self.state.state == SafetyState.ACTIVE:
            cmd_header = header_ns(node, out.command.stamp_ns, "base_link")
        else:
            cmd_header = header(node, now, "base_link")
        self.pub_cmd.publish(
            node.msg(
                "ackermann_msgs/msg/AckermannDriveStamped",
                header=cmd_header,
                drive=node.msg(
                    "ackermann_msgs/msg/AckermannDrive",
                    steering_angle=float(out.command.steering_angle),
                    speed=float(out.command.speed),
                ),
            )
        )
        self.pub_status.publish(
            node.msg(
                "ltc_controller/msg/SafetyStatus",
                header=header(node, now),
                state=int(self.state.state),
                state_name=self.state.state.name,
                active_fault=self.state.active_fault,
                faults=[f for f in FAULTS if f in out.faults],
                active_limiters=list(out.active_limiters),
                transitions=self.state.transitions,
                commands_received=self.commands_received,
                commands_rejected=self.commands_rejected,
                heartbeats_received=self.inputs.heartbeats,
                steering_angle=float(out.command.steering_angle),
                speed=float(out.command.speed),
            )
        )
