"""A velocity policy flying the in-process drone simulator with the runtime's semantics.

:class:`DronePolicyDriver` is the drone's
:class:`~ltc_controller.training.closed_loop.PolicyDriver`: rendered frames go to the real
:class:`~ltc_controller.runtime.loop.PolicyRuntime` (assembled by
:func:`~ltc_controller.runtime.factory.build_runtime`, as in the ``ltc_policy`` node) under a
frozen work clock, and the outputs named after the Twist axes (``linear_x``, ``linear_y``,
``linear_z``, ``angular_z``; :mod:`ltc_controller.interfaces.command_axes`) become the body-frame
velocity setpoint directly, as the node's ``twist_mapping: direct`` publishes them. Axes the
policy has no output for are 0.

:func:`fly_episode` flies one episode: frames at ``camera_rate_hz`` (simulation clock), one tick per
frame at the frame's stamp, the setpoint applied ``latency_s`` later, until the task is done
(reached, collided or timed out; :class:`~ltc_controller.sim.drone.drone_sim.DroneMetrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.runtime.factory import RuntimeOverrides, build_runtime
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame
from ltc_controller.runtime.schedule import seconds_to_ns
from ltc_controller.sim.conditions import ImageEffects
from ltc_controller.sim.drone.conditions import DroneCondition
from ltc_controller.sim.drone.drone_sim import DroneSim
from ltc_controller.sim.drone.scenario import DronePerturbationConfig, expert_setpoint

__all__ = ["VELOCITY_AXES", "DroneEpisodeResult", "DronePolicyDriver", "fly_episode"]

#: The setpoint's axes in order ``(vx, vy, vz, yaw_rate)`` (m/s, m/s, m/s, rad/s).
VELOCITY_AXES = ("linear_x", "linear_y", "linear_z", "angular_z")

Setpoint = tuple[float, float, float, float]


class DronePolicyDriver:
    """A velocity policy under :class:`PolicyRuntime`, stepped by simulation time.

    Args:
        policy: a ``Policy`` whose ``config.output_names`` include at least one of
            :data:`VELOCITY_AXES`; run on the CPU (torch backend).
        step_s: integration step (s); default the policy file's ``config.step_s``.

    Raises:
        ValueError: the policy has none of the velocity axes as outputs.
    """

    def __init__(self, policy: Any, step_s: float | None = None) -> None:
        self.policy = policy
        self.output_names = list(policy.config.output_names)
        # (setpoint slot, policy output index) for each axis the policy drives.
        self._slots = [
            (i, self.output_names.index(a))
            for i, a in enumerate(VELOCITY_AXES)
            if a in self.output_names
        ]
        if not self._slots:
            raise ValueError(
                f"policy outputs {self.output_names}: a drone policy needs velocity outputs "
                f"({', '.join(VELOCITY_AXES)})"
            )
        overrides = RuntimeOverrides(
            step_s=step_s, deadline_s=1.0, max_frame_age_s=1.0, max_lag_s=10.0
        )
        self.runtime: PolicyRuntime = build_runtime(policy, overrides, clock=lambda: 0.0)
        self._sp = [0.0, 0.0, 0.0, 0.0]

    def reset(self) -> None:
        """Zero the hidden state (episode start)."""
        self.runtime.reset()

    def act(self, image: NDArray[np.uint8], stamp_s: float) -> Setpoint | None:
        """Offer an ``(H, W, 3)`` uint8 RGB frame stamped ``stamp_s`` (s) and tick at that time.

        Returns:
            ``(vx, vy, vz, yaw_rate)`` body-frame setpoint (m/s, rad/s; unclipped: the
            simulator's controller clips), or None before the first output or when an output
            is not finite.
        """
        h, w, _ = image.shape
        self.runtime.offer_frame(
            RawFrame(
                stamp=stamp_s,
                stamp_ns=seconds_to_ns(stamp_s),
                encoding="rgb8",
                height=h,
                width=w,
                step=3 * w,
                data=np.ascontiguousarray(image).tobytes(),
            )
        )
        r = self.runtime.tick(stamp_s)
        if r.outputs is None:
            return None
        sp = self._sp
        for slot, idx in self._slots:
            v = float(r.outputs[idx])
            if not math.isfinite(v):
                return None
            sp[slot] = v
        return (sp[0], sp[1], sp[2], sp[3])


@dataclass(frozen=True)
class DroneEpisodeResult:
    """Task metrics of one flown episode (SI units).

    Attributes:
        success: reached the target with no collision before it.
        reached: came within the world's ``success_radius_m`` before the time limit.
        time_to_target_s: when it first did (s); NaN if not.
        final_distance_m: horizontal distance to the target at the end (m).
        min_distance_m: smallest horizontal distance to the target (m).
        collisions: collisions counted by the simulator.
        duration_s: simulated time flown (s).
        target_range_m: start-to-target distance of the world (m).
        frames: camera frames rendered.
    """

    success: bool
    reached: bool
    time_to_target_s: float
    final_distance_m: float
    min_distance_m: float
    collisions: int
    duration_s: float
    target_range_m: float
    frames: int


def fly_episode(
    sim: DroneSim,
    controller: Callable[[NDArray[np.uint8], float], Setpoint | None] | None,
    *,
    condition: DroneCondition,
    effects_seed: int,
    camera_rate_hz: float = 20.0,
    latency_s: float = 0.02,
    max_time_s: float | None = None,
    on_frame: Callable[[DroneSim, NDArray[np.uint8], float, Setpoint], None] | None = None,
) -> DroneEpisodeResult:
    """Fly from the world's start until the task is done or ``max_time_s``.

    Args:
        sim: the simulator (reset here); rendering must be enabled when ``controller`` is given.
        controller: ``(image, stamp_s) -> setpoint or None`` (None holds the previous setpoint;
            hover at the start); ``None`` = the clean privileged expert (no rendering).
        condition: supplies the image effects (camera noise).
        effects_seed: seed of the image effects.
        camera_rate_hz: frame and control rate (Hz).
        latency_s: delay from frame to setpoint (s, in ``[0, frame period)``).
        max_time_s: time limit (s); default the world's ``time_limit_s``.
        on_frame: ``(sim, image, stamp_s, setpoint)`` after each frame's setpoint is known.

    Returns:
        :class:`DroneEpisodeResult`.

    Raises:
        ValueError: ``latency_s`` outside ``[0, 1 / camera_rate_hz)``.
    """
    period = 1.0 / camera_rate_hz
    if not 0.0 <= latency_s < period:
        raise ValueError(f"latency_s={latency_s}: expected in [0, {period})")
    sim.reset()
    limit = sim.params.time_limit_s if max_time_s is None else float(max_time_s)
    effects = ImageEffects(
        condition.image_condition, effects_seed, sim.image_height, sim.image_width
    )
    expert_cfg = DronePerturbationConfig.none()
    sp: Setpoint = (0.0, 0.0, 0.0, 0.0)
    frames = 0
    m = sim.metrics
    while not m.done and sim.time < limit - 1e-9:
        stamp = sim.time
        if controller is None:
            sp = expert_setpoint(sim, expert_cfg)[0]
            if on_frame is not None:
                on_frame(sim, np.zeros((0, 0, 3), np.uint8), stamp, sp)
        else:
            img = effects(sim.render())
            frames += 1
            out = controller(img, stamp)
            sp = sp if out is None else out
            if on_frame is not None:
                on_frame(sim, img, stamp, sp)
        if latency_s > 0.0:
            sim.step(latency_s)
        sim.set_command(*sp)
        sim.step(period - latency_s)
        m = sim.metrics
    w = sim.world
    sx, sy = w.start[0], w.start[1]
    return DroneEpisodeResult(
        success=m.success,
        reached=m.reached,
        time_to_target_s=m.time_to_target,
        final_distance_m=m.distance,
        min_distance_m=m.min_distance,
        collisions=m.collisions,
        duration_s=m.time,
        target_range_m=w.distance_to_target(sx, sy),
        frames=frames,
    )
