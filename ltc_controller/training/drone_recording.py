"""Record drone demonstrations from the in-process quadrotor simulator into a rosbag2.

Each episode flies a fresh seeded world (:func:`~ltc_controller.sim.drone.scenario.make_drone_sim`,
seeds ``first_world_seed + episode``) from its start. At every camera frame (``camera_rate_hz``,
simulation clock) the forward-camera frame, the clean expert setpoint for the true state (the
label), the executed setpoint and the 3-D odometry are written with the frame's stamp; the executed
setpoint reaches the drone ``latency_s`` later. Setpoints are ``geometry_msgs/Twist`` (or
``TwistStamped``): body-frame velocity, REP 103 (``linear.x`` forward, ``linear.y`` left,
``linear.z`` up in m/s, ``angular.z`` yaw rate in rad/s); the executed one on ``/cmd_vel``.

Who flies:

* ``learner=None``: the :class:`~ltc_controller.sim.drone.scenario.PerturbedDroneExpert`
  (sideways and yaw-rate bursts, so the data holds recoveries);
* ``learner=policy`` (DAgger, Ross et al. 2011): the policy flies under the runtime's semantics
  (:class:`~ltc_controller.training.drone_closed_loop.DronePolicyDriver`) and the expert only
  labels; the expert takes over while an obstacle edge is closer than ``takeover_clearance_m`` or
  the target is more than ``takeover_bearing_rad`` off the camera axis, until both are back within
  ``release_clearance_m`` / ``release_bearing_rad``.

An episode ends after ``episode_s``, ``after_reach_s`` after the drone first reaches the target
(the expert slows down inside its ``slow_radius_m``, so the data shows the approach and the stop;
the expert does not avoid the target itself, so flying on would end on the chair), or on a
collision or a time-out (the world's ``time_limit_s``). Episodes are separated in the bag by a
stamp gap of ``gap_s``, so readers start a new segment there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.interfaces.command_axes import TWIST, TWIST_STAMPED
from ltc_controller.sim.conditions import ImageEffects
from ltc_controller.sim.drone.conditions import get_drone_condition
from ltc_controller.sim.drone.scenario import (
    DronePerturbationConfig,
    PerturbedDroneExpert,
    make_drone_sim,
)
from ltc_controller.training.bag import BagError, DemoBagWriter, RecordTopics
from ltc_controller.training.json_safe import json_safe
from ltc_controller.training.recording import driver_name

__all__ = ["DroneRecordConfig", "drone_topics", "record_drone"]


@dataclass(frozen=True)
class DroneRecordConfig:
    """What to record (SI units).

    Attributes:
        episodes: number of episodes (one world each).
        episode_s: longest simulated duration of an episode (s).
        first_world_seed: world seeds are ``first_world_seed + episode`` (evaluation uses 5000 on).
        condition: drone condition name (``"clean"`` = the training distribution).
        camera_rate_hz: frame (and label) rate (Hz).
        latency_s: delay from frame to executed setpoint (s).
        gap_s: stamp gap between episodes (s).
        seed: RNG seed for perturbations and image effects.
        perturbation: expert settings.
        takeover_clearance_m, release_clearance_m: DAgger takeover on the nearest obstacle edge.
        takeover_bearing_rad, release_bearing_rad: DAgger takeover on ``|target bearing|``.
        after_reach_s: recording goes on this long after the target is first reached (s).
    """

    episodes: int = 4
    episode_s: float = 20.0
    first_world_seed: int = 1000
    condition: str = "clean"
    camera_rate_hz: float = 20.0
    latency_s: float = 0.02
    gap_s: float = 5.0
    seed: int = 0
    perturbation: DronePerturbationConfig = field(default_factory=DronePerturbationConfig)
    takeover_clearance_m: float = 0.45
    release_clearance_m: float = 0.8
    takeover_bearing_rad: float = 0.6
    release_bearing_rad: float = 0.2
    after_reach_s: float = 1.0

    def __post_init__(self) -> None:
        if self.episodes < 1 or not self.episode_s > 0.0:
            raise ValueError("DroneRecordConfig: episodes >= 1 and episode_s > 0 required")
        if not self.camera_rate_hz > 0.0:
            raise ValueError(f"DroneRecordConfig.camera_rate_hz={self.camera_rate_hz}: need > 0")
        if not 0.0 <= self.latency_s < 1.0 / self.camera_rate_hz:
            raise ValueError(
                f"DroneRecordConfig.latency_s={self.latency_s}: expected in [0, frame period)"
            )
        get_drone_condition(self.condition)


def drone_topics(
    image: str = "/camera/image_raw",
    label: str = "/expert_cmd",
    executed: str = "/cmd_vel",
    odom: str = "/odom",
) -> RecordTopics:
    """The drone's default topics (the executed setpoint on ``/cmd_vel``)."""
    return RecordTopics(image, label, executed, odom)


def _bearing(sim: Any) -> float:
    x, y = float(sim.data.qpos[0]), float(sim.data.qpos[1])
    tx, ty, _ = sim.world.target
    if math.hypot(tx - x, ty - y) < 0.3:
        return 0.0
    return math.remainder(math.atan2(ty - y, tx - x) - sim.yaw, math.tau)


def record_drone(
    path: str | Path,
    cfg: DroneRecordConfig,
    *,
    storage: str = "mcap",
    compressed: bool = False,
    jpeg_quality: int = 90,
    topics: RecordTopics | None = None,
    learner: Any = None,
    progress: Callable[[int, int], None] | None = None,
    command_type: str = TWIST,
) -> dict[str, Any]:
    """Record ``cfg.episodes`` drone episodes into a new bag at ``path``.

    Args:
        path: bag directory to create.
        cfg: what to record.
        storage: ``"mcap"`` or ``"sqlite3"``.
        compressed: JPEG ``CompressedImage`` frames instead of raw ``Image``.
        jpeg_quality: JPEG quality (1..95) of compressed frames.
        topics: topic names (default :func:`drone_topics`).
        learner: a velocity policy to fly (DAgger) instead of the perturbed expert.
        progress: ``(episode, episodes)`` callback after each episode.
        command_type: ``geometry_msgs/msg/Twist`` (default) or ``TwistStamped``.

    Returns:
        Summary: frames, episodes, reached / collisions counts, perturbed and takeover fractions,
        wall and simulated time.

    Raises:
        BagError: the bag exists, or the storage or command type is unusable.
        ValueError: a learner without velocity outputs.
    """
    if command_type not in (TWIST, TWIST_STAMPED):
        raise BagError(f"drone setpoints are Twist or TwistStamped, not {command_type}")
    cond = get_drone_condition(cfg.condition)
    rng = np.random.default_rng(cfg.seed)
    period = 1.0 / cfg.camera_rate_hz
    frames = perturbed = takeover_frames = reached = collisions = 0
    sim_s = 0.0
    wall0 = time.perf_counter()
    base_s = 0.0
    driver = None
    if learner is not None:  # torch loads only for DAgger
        from ltc_controller.training.drone_closed_loop import DronePolicyDriver

        driver = DronePolicyDriver(learner)
    with DemoBagWriter(
        path,
        storage=storage,
        compressed=compressed,
        jpeg_quality=jpeg_quality,
        topics=topics or drone_topics(),
        command_type=command_type,
    ) as writer:
        for ep in range(cfg.episodes):
            sim = make_drone_sim(cond, cfg.first_world_seed + ep, record_history=False)
            try:
                expert = PerturbedDroneExpert(cfg.perturbation, seed=int(rng.integers(2**31)))
                effects = ImageEffects(
                    cond.image_condition,
                    int(rng.integers(2**31)),
                    sim.image_height,
                    sim.image_width,
                )
                if driver is not None:
                    driver.reset()
                taking_over = False
                n_frames = int(round(cfg.episode_s / period))
                for _ in range(n_frames):
                    stamp = base_s + sim.time
                    stamp_ns = int(round(stamp * 1e9))
                    img = effects(sim.render())
                    ec = expert.command(sim)
                    executed = ec.executed
                    if driver is not None:
                        out = driver.act(img, stamp)
                        b = abs(_bearing(sim))
                        c = ec.clearance
                        if taking_over:
                            taking_over = c < cfg.release_clearance_m or b > cfg.release_bearing_rad
                        else:
                            taking_over = (
                                c < cfg.takeover_clearance_m or b > cfg.takeover_bearing_rad
                            )
                        if taking_over or out is None:
                            executed = ec.label
                            takeover_frames += 1
                        else:
                            executed = sim.controller.clip_setpoint(*out)
                    perturbed += int(ec.perturbed and driver is None)
                    writer.write_image(stamp_ns, img)
                    writer.write_velocity_commands(stamp_ns, ec.label, executed)
                    lin, ang = sim.body_twist()
                    writer.write_odom_3d(stamp_ns, sim.data.qpos[0:3], sim.data.qpos[3:7], lin, ang)
                    writer.frames += 1
                    frames += 1
                    if cfg.latency_s > 0.0:
                        sim.step(cfg.latency_s)
                    sim.set_command(*executed)
                    sim.step(period - cfg.latency_s)
                    m = sim.metrics
                    if (
                        m.collided
                        or m.timed_out
                        or (m.reached and sim.time >= m.time_to_target + cfg.after_reach_s)
                    ):
                        break
                m = sim.metrics
                reached += int(m.reached)
                collisions += m.collisions
                sim_s += sim.time
                base_s += sim.time + cfg.gap_s
            finally:
                sim.close()
            if progress is not None:
                progress(ep + 1, cfg.episodes)
    wall = time.perf_counter() - wall0
    return {
        "bag": str(path),
        "scenario": "drone",
        "storage": storage,
        "compressed": compressed,
        "episodes": cfg.episodes,
        "frames": frames,
        "reached": reached,
        "collisions": collisions,
        "perturbed_fraction": perturbed / max(1, frames),
        "takeover_fraction": takeover_frames / max(1, frames),
        "wall_s": wall,
        "sim_s": sim_s,
        "real_time_factor": sim_s / wall if wall > 0 else math.inf,
        "driver": driver_name(learner is not None, cfg.perturbation.perturbs),
        "command_type": command_type,
        "config": json_safe(asdict(cfg)),
    }
