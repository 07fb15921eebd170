"""``ltc_policy``: camera in, LTC policy under a deadline, drive command + heartbeat out.

Thin by design: the subscription stores the newest frame; a steady-clock timer at
``control_rate_hz`` calls :class:`~ltc_controller.runtime.loop.PolicyRuntime` and publishes.

Topics (relative names, so ``-r __ns:=/car1`` moves them all):

- in  ``camera/image_raw`` (``sensor_msgs/msg/Image``, QoS ``camera_qos``)
- out ``policy_cmd`` (``ackermann_msgs/msg/AckermannDriveStamped``; ``header.stamp`` is the stamp
  of the camera frame the command was computed from, so latency can be measured downstream)
- out ``policy_heartbeat`` (``std_msgs/msg/Header``), only on ticks that met their deadline and
  acted on a frame no older than ``max_frame_age_s``
- out ``policy_status`` (``ltc_controller/msg/PolicyStatus``), every tick
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ltc_controller.nodes.stamps import header, header_ns, to_ns, to_seconds
from ltc_controller.params import COMMON, ParamSpec, resolve
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame, RuntimeConfig
from ltc_controller.runtime.preprocess import PreprocessConfig, Preprocessor
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA, Node

PARAMS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec(
        "policy_file",
        str,
        "",
        "Policy file (.safetensors); empty = the bundled policy, "
        "or an untrained NCP-19 if none is bundled",
        read_only=True,
    ),
    ParamSpec(
        "untrained_seed",
        int,
        0,
        "Seed of the untrained policy used when no file is given",
        min=0,
        read_only=True,
    ),
    ParamSpec(
        "num_threads",
        int,
        1,
        "CPU threads for inference (1 keeps latency predictable beside other processes)",
        "",
        1,
        64,
        read_only=True,
    ),
    ParamSpec("device", str, "cpu", "Inference device", choices=("cpu",), read_only=True),
    ParamSpec(
        "control_rate_hz", float, 20.0, "Control tick rate", "Hz", 1.0, 1000.0, read_only=True
    ),
    ParamSpec(
        "integration.step_s",
        float,
        0.0,
        "Fixed integration step; 0 = the policy file's",
        "s",
        0.0,
        1.0,
        read_only=True,
    ),
    ParamSpec(
        "deadline_s", float, 0.0, "Work budget per tick; 0 = half the control period", "s", 0.0, 1.0
    ),
    ParamSpec("max_frame_age_s", float, 0.3, "Frames older than this are stale", "s", 0.001, 10.0),
    ParamSpec("max_lag_s", float, 0.25, "Integration lag beyond this is a fault", "s", 0.0, 10.0),
    ParamSpec(
        "camera_qos",
        str,
        "sensor_data",
        "Camera subscription QoS",
        choices=("sensor_data", "reliable"),
        read_only=True,
    ),
    ParamSpec(
        "speed_mps",
        float,
        5.0,
        "Commanded speed when the policy outputs steering only",
        "m/s",
        0.0,
        50.0,
    ),
    ParamSpec(
        "steering_scale",
        float,
        1.0,
        "Factor applied to the policy's steering output",
        "",
        -10.0,
        10.0,
    ),
    ParamSpec(
        "max_steering_angle", float, 0.5, "Steering output is clamped to ±this", "rad", 0.0, 1.6
    ),
)


def load_model(policy_file: str, seed: int) -> Any:
    """The policy to run: ``policy_file``, else the bundled policy, else an untrained NCP-19.

    Raises:
        PolicyFileError: the file is missing, corrupt or does not match its config.
    """
    from ltc_controller.models.policy import Policy, PolicyConfig
    from ltc_controller.models.policy_file import load_policy

    if policy_file:
        return load_policy(Path(policy_file))
    bundled = Path(__file__).resolve().parent.parent / "policies" / "ncp19_lane_keeping.safetensors"
    if bundled.exists():
        return load_policy(bundled)
    return Policy.from_config(PolicyConfig(), seed=seed)


class PolicyNode:
    """The ``ltc_policy`` node on a transport :class:`~ltc_controller.transport.port.Node`.

    Raises:
        ParameterError: an unknown or invalid parameter (at construction, before any topic).
        PolicyFileError: the policy file cannot be loaded.
    """

    def __init__(self, node: Node, params: Mapping[str, Any] | None = None) -> None:
        self.node = node
        # Parameters come from the node (command line, params files) unless given directly.
        self.p = p = node.declare_parameters(PARAMS) if params is None else resolve(PARAMS, params)
        torch.set_num_threads(p["num_threads"])
        model = load_model(p["policy_file"], p["untrained_seed"])
        model.eval()
        cfg = model.config
        self.output_names: list[str] = list(cfg.output_names)
        period = 1.0 / p["control_rate_hz"]
        step_s = p["integration.step_s"] or cfg.step_s
        self.runtime = PolicyRuntime(
            model,
            Preprocessor(
                PreprocessConfig(
                    height=cfg.image_height,
                    width=cfg.image_width,
                    crop_top=cfg.crop.top,
                    crop_bottom=cfg.crop.bottom,
                    crop_left=cfg.crop.left,
                    crop_right=cfg.crop.right,
                    color_order=cfg.color_order,
                )
            ),
            RuntimeConfig(
                step_s=step_s,
                deadline_s=p["deadline_s"] or 0.5 * period,
                max_frame_age_s=p["max_frame_age_s"],
                max_lag_s=p["max_lag_s"],
            ),
            clock=node.steady,
        )
        qos = SENSOR_DATA if p["camera_qos"] == "sensor_data" else RELIABLE
        node.create_subscription("sensor_msgs/msg/Image", "camera/image_raw", self._on_image, qos)
        cmd_type = "ackermann_msgs/msg/AckermannDriveStamped"
        self.pub_cmd = node.create_publisher(cmd_type, "policy_cmd", RELIABLE)
        self.pub_hb = node.create_publisher("std_msgs/msg/Header", "policy_heartbeat", RELIABLE)
        self.pub_status = node.create_publisher(
            "ltc_controller/msg/PolicyStatus", "policy_status", RELIABLE
        )
        self.heartbeats = 0
        self._last: Any = None
        self.timer = node.create_timer(period, self._tick)
        node.logger.info(
            f"ltc_policy: {cfg.architecture}, {model.state_size} neurons, step {step_s} s, "
            f"control {p['control_rate_hz']} Hz, "
            f"deadline {self.runtime.cfg.deadline_s * 1e3:.1f} ms"
        )

    def _on_image(self, msg: Any) -> None:
        self.runtime.offer_frame(
            RawFrame(
                stamp=to_seconds(msg.header.stamp),
                stamp_ns=to_ns(msg.header.stamp),
                encoding=msg.encoding,
                height=msg.height,
                width=msg.width,
                step=msg.step,
                data=msg.data,
            )
        )

    def _tick(self) -> None:
        node, p = self.node, self.p
        r = self.runtime.tick(node.now())
        self._last = r
        for e in r.events:
            if e != "frame_skipped":
                node.logger.warning(f"runtime event: {e}")
        if r.outputs is not None:
            out = dict(zip(self.output_names, r.outputs.tolist(), strict=False))
            lim = p["max_steering_angle"]
            steer = max(-lim, min(lim, out.get("steering_angle", 0.0) * p["steering_scale"]))
            speed = out.get("speed", p["speed_mps"])
            self.pub_cmd.publish(
                node.msg(
                    "ackermann_msgs/msg/AckermannDriveStamped",
                    header=header_ns(node, r.frame_stamp_ns, "base_link"),
                    drive=node.msg(
                        "ackermann_msgs/msg/AckermannDrive",
                        steering_angle=float(steer),
                        speed=float(speed),
                    ),
                )
            )
            if r.deadline_met and r.fresh:
                self.heartbeats += 1
                self.pub_hb.publish(header_ns(node, r.frame_stamp_ns, "ok"))
        self.pub_status.publish(self._status(r))

    def _status(self, r: Any) -> Any:
        node, c = self.node, self.runtime.counters
        reasons: list[str] = []
        health = 0
        if r.outputs is None:
            reasons.append("no_frame")
            health = 2
        elif not r.fresh:
            reasons.append("stale_frame")
            health = 2
        if "lag" in r.events:
            reasons.append("lag")
            health = 2
        if not r.deadline_met:
            reasons.append("deadline_miss")
            health = max(health, 1)
        return node.msg(
            "ltc_controller/msg/PolicyStatus",
            header=header(node, node.now()),
            health=health,
            reasons=reasons,
            ticks=c.ticks,
            deadline_misses=c.deadline_misses,
            frames_received=c.frames_received,
            frames_used=c.frames_used,
            frames_rejected=c.frames_rejected,
            frames_skipped=c.frames_skipped,
            step_s=self.runtime.cfg.step_s,
            steps_last_tick=r.steps,
            lag_s=r.lag_s,
            tick_duration_s=r.duration_s,
            frame_age_s=r.frame_age_s if math.isfinite(r.frame_age_s) else -1.0,
        )
