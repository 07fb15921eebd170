"""A policy driving the in-process simulator with the runtime's semantics (no DDS, no wall clock).

:class:`PolicyDriver` feeds rendered frames to the real
:class:`~ltc_controller.runtime.loop.PolicyRuntime` (the code the ``ltc_policy`` node runs,
assembled by the same :func:`~ltc_controller.runtime.factory.build_runtime`), with a clock that
never advances, so deadlines never cut work short and results do not depend on the
machine's speed. Each tick at ROS time ``now`` advances the hidden state in fixed steps of
``step_s`` from the time it has reached, holding the newest frame's features: the interval ending
at frame t is integrated with frame t's features, exactly as
:meth:`~ltc_controller.models.policy.Policy.run_sequence` does in training.

:func:`drive_episode` runs one episode: camera frames at ``camera_rate_hz``, one control tick per
frame at the frame's stamp, the command applied ``latency_s`` later (the node pipeline's delay).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ltc_controller.runtime.factory import RuntimeOverrides, build_runtime
from ltc_controller.runtime.loop import PolicyRuntime, RawFrame
from ltc_controller.runtime.schedule import seconds_to_ns
from ltc_controller.sim.conditions import Condition, ImageEffects
from ltc_controller.sim.lane_sim import LaneKeepingSim
from ltc_controller.sim.vehicle import VehicleParams

__all__ = ["EpisodeResult", "PolicyDriver", "drive_episode"]


class PolicyDriver:
    """A policy under :class:`PolicyRuntime`, stepped by simulation time.

    The car steers with the policy's ``steering_angle`` output (a policy trained on Ackermann
    commands); a policy trained on Twist commands steers with its ``angular_z`` (yaw rate)
    through the inverse kinematic bicycle, ``steering = atan(wheelbase * angular_z / speed)``:
    the inverse of how ``record --command-type twist`` wrote the expert, and of the node's
    ``twist_mapping: bicycle``.

    Args:
        policy: a ``Policy`` (``config``, ``features``, ``step``, ``initial_state``); the
            runtime runs it on the CPU (torch backend).
        step_s: integration step (s); default (``None``) the policy file's ``config.step_s``.
        max_steering: output clamp (rad), as the ``ltc_policy`` node's ``max_steering_angle``.
        wheelbase_m: wheelbase of the yaw-rate conversion (m; the simulator's car).
        speed_mps: speed of the yaw-rate conversion (m/s; the speed the car is commanded).

    Raises:
        ValueError: the policy has neither a ``steering_angle`` nor an ``angular_z`` output.
    """

    def __init__(
        self,
        policy: Any,
        step_s: float | None = None,
        max_steering: float = 0.5,
        wheelbase_m: float = VehicleParams().wheelbase_m,
        speed_mps: float = 5.0,
    ) -> None:
        self.policy = policy
        self.max_steering = max_steering
        self.output_names = list(policy.config.output_names)
        if "steering_angle" in self.output_names:
            self._index, self._yaw_gain = self.output_names.index("steering_angle"), 0.0
        elif "angular_z" in self.output_names:
            self._index = self.output_names.index("angular_z")
            self._yaw_gain = wheelbase_m / max(speed_mps, 1e-3)
        else:
            raise ValueError(
                f"policy outputs {self.output_names}: the car steers with a steering_angle or "
                "an angular_z (yaw rate) output"
            )
        # Generous bounds: simulation time, a frozen work clock (every due step fits).
        overrides = RuntimeOverrides(
            step_s=step_s, deadline_s=1.0, max_frame_age_s=1.0, max_lag_s=10.0
        )
        self.runtime: PolicyRuntime = build_runtime(policy, overrides, clock=lambda: 0.0)

    def reset(self) -> None:
        """Zero the hidden state (episode start, or after an intervention)."""
        self.runtime.reset()

    def act(self, image: NDArray[np.uint8], stamp_s: float) -> float | None:
        """Offer a frame stamped ``stamp_s`` and tick at that time.

        Returns:
            steering angle (rad, clamped), or None before the first output or on a non-finite
            one.
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
        steer = float(r.outputs[self._index])
        if self._yaw_gain:
            steer = math.atan(self._yaw_gain * steer)
        if not math.isfinite(steer):
            return None
        return max(-self.max_steering, min(self.max_steering, steer))


@dataclass
class EpisodeResult:
    """Closed-loop metrics of one episode.

    Attributes:
        duration_s: simulated time driven (s).
        distance_m: progress along the track (m).
        lap_length_m: the track's lap length (m).
        departures: lane departures (each followed by an intervention: the car is put back on
            the centreline and the policy state reset).
        first_departure_m: progress at the first departure (m), None if none.
        mean_abs_lateral_error_m: mean ``|lateral error|`` over physics steps (m).
        steering_rate_rms: RMS of the commanded steering rate between frames (rad/s), a
            smoothness measure.
        frames: camera frames rendered.
    """

    duration_s: float
    distance_m: float
    lap_length_m: float
    departures: int
    first_departure_m: float | None
    mean_abs_lateral_error_m: float
    steering_rate_rms: float
    frames: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def completion(self) -> float:
        """Fraction of the target distance covered before the first departure (0..1)."""
        target = self.extra.get("target_m", self.lap_length_m)
        done = self.distance_m if self.first_departure_m is None else self.first_departure_m
        return max(0.0, min(1.0, done / target)) if target > 0 else 0.0


def drive_episode(
    sim: LaneKeepingSim,
    controller: Callable[[NDArray[np.uint8], float], float | None] | None,
    *,
    condition: Condition,
    effects_seed: int,
    distance_m: float | None = None,
    max_time_s: float = 600.0,
    speed_mps: float = 5.0,
    camera_rate_hz: float = 20.0,
    latency_s: float = 0.02,
    on_departure: Callable[[], None] | None = None,
    on_frame: Callable[[LaneKeepingSim, NDArray[np.uint8], float, float], None] | None = None,
    render: bool = True,
    expert_lookahead_m: float = 4.0,
) -> EpisodeResult:
    """Drive until ``distance_m`` of progress (default one lap) or ``max_time_s``.

    Args:
        sim: a reset simulator (its track and style are the condition's).
        controller: ``(image, stamp_s) -> steering rad or None``; ``None`` = the clean expert.
        condition: supplies the image effects.
        effects_seed: seed of the image effects (noise, occluder place).
        distance_m: target progress (m); default one lap.
        max_time_s: time limit (s).
        speed_mps: commanded speed (m/s).
        camera_rate_hz: frame rate; one control tick per frame.
        latency_s: delay from frame to command (s, < frame period).
        on_departure: called after each departure's intervention (e.g. reset the policy).
        on_frame: ``(sim, image, stamp_s, steer)`` after each frame's command is known.
        render: False drives the expert without rendering (faster; needs ``controller=None``).
        expert_lookahead_m: pure-pursuit lookahead of the expert (``controller=None``).

    Returns:
        :class:`EpisodeResult`.
    """
    target = sim.track.length if distance_m is None else float(distance_m)
    period = 1.0 / camera_rate_hz
    if not 0.0 <= latency_s < period:
        raise ValueError(f"latency_s={latency_s}: expected in [0, {period})")
    effects = ImageEffects(condition, effects_seed, sim.image_height, sim.image_width)
    lat_sum = 0.0
    lat_n = 0
    departures = 0
    first_dep: float | None = None
    steers: list[float] = []
    frames = 0
    steer = 0.0
    t0 = sim.time
    while sim.metrics.progress < target and sim.time - t0 < max_time_s:
        stamp = sim.time
        img: NDArray[np.uint8] | None = None
        if render or controller is not None:
            img = effects(sim.render())
            frames += 1
        if controller is None:
            steer = sim.expert_command(expert_lookahead_m, speed_mps)[0]
        else:
            assert img is not None
            out = controller(img, stamp)
            steer = steer if out is None else out
        steers.append(steer)
        if on_frame is not None and img is not None:
            on_frame(sim, img, stamp, steer)
        # Command reaches the car latency_s after the frame.
        if latency_s > 0.0:
            _advance(sim, latency_s)
        sim.set_command(steer, speed_mps)
        n = max(1, int(round((period - latency_s) / sim.physics_dt)))
        for _ in range(n):
            sim.physics_step()
            lat_sum += abs(sim.frenet.d)
            lat_n += 1
            if sim.metrics.departed:
                departures += 1
                if first_dep is None:
                    first_dep = sim.metrics.progress
                sim.intervene()
                if on_departure is not None:
                    on_departure()
                break
    rates = np.diff(np.asarray(steers)) / period if len(steers) > 1 else np.zeros(1)
    return EpisodeResult(
        duration_s=sim.time - t0,
        distance_m=sim.metrics.progress,
        lap_length_m=sim.track.length,
        departures=departures,
        first_departure_m=first_dep,
        mean_abs_lateral_error_m=lat_sum / max(1, lat_n),
        steering_rate_rms=float(np.sqrt(np.mean(rates**2))),
        frames=frames,
        extra={"target_m": target},
    )


def _advance(sim: LaneKeepingSim, dt: float) -> None:
    for _ in range(int(round(dt / sim.physics_dt))):
        sim.physics_step()
