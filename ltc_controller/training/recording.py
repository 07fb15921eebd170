"""Record demonstrations from the in-process simulator into a rosbag2, faster than real time.

Each episode drives a fresh seeded track from a random start (arc length, small lateral and
heading offset). At every camera frame (``camera_rate_hz``, simulation clock) the frame, the clean
expert command for the true pose (the label), the executed command and the odometry are written
with the frame's stamp; the executed command then reaches the car ``latency_s`` later.

Who drives:

* ``learner=None``: the :class:`~ltc_controller.sim.scenario.PerturbedExpert` (steering bursts and
  lateral excursions, so the data holds recoveries);
* ``learner=policy`` (DAgger, Ross et al. 2011): the policy drives under the runtime's semantics
  (:class:`~ltc_controller.training.closed_loop.PolicyDriver`) and the expert only labels; when
  the car strays past ``takeover_m`` from the centre the expert takes over until it is back
  within ``release_m``, so the data covers the states the learner actually reaches.

Episodes are separated in the bag by a gap of ``gap_s`` in the stamps, so readers start a new
segment there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.interfaces.command_axes import ACKERMANN
from ltc_controller.sim.conditions import ImageEffects, get_condition
from ltc_controller.sim.scenario import PerturbationConfig, PerturbedExpert, make_sim
from ltc_controller.sim.vehicle import VehicleParams
from ltc_controller.training.bag import DemoBagWriter, RecordTopics
from ltc_controller.training.json_safe import json_safe

__all__ = ["RecordConfig", "record"]


@dataclass(frozen=True)
class RecordConfig:
    """What to record.

    Attributes:
        episodes: number of episodes (one track each).
        episode_s: simulated duration of each episode (s).
        first_track_seed: track seeds are ``first_track_seed + episode``.
        condition: scenario condition name (``"clean"`` = training distribution).
        camera_rate_hz: frame (and label) rate (Hz).
        latency_s: delay from frame to executed command (s).
        gap_s: stamp gap between episodes (s).
        start_offset_m: range of the random lateral start offset magnitude (m).
        seed: RNG seed for starts and perturbations.
        perturbation: expert settings.
        takeover_m, release_m: DAgger expert takeover thresholds on ``|lateral error|`` (m).
    """

    episodes: int = 4
    episode_s: float = 30.0
    first_track_seed: int = 1000
    condition: str = "clean"
    camera_rate_hz: float = 20.0
    latency_s: float = 0.02
    gap_s: float = 5.0
    start_offset_m: float = 0.7
    seed: int = 0
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    takeover_m: float = 0.75
    release_m: float = 0.25

    def __post_init__(self) -> None:
        if self.episodes < 1 or not self.episode_s > 0.0:
            raise ValueError("RecordConfig: episodes >= 1 and episode_s > 0 required")
        if not 0.0 <= self.latency_s < 1.0 / self.camera_rate_hz:
            raise ValueError(
                f"RecordConfig.latency_s={self.latency_s}: expected in [0, frame period)"
            )
        get_condition(self.condition)


def record(
    path: str | Path,
    cfg: RecordConfig,
    *,
    storage: str = "mcap",
    compressed: bool = False,
    topics: RecordTopics | None = None,
    learner: Any = None,
    progress: Callable[[int, int], None] | None = None,
    command_type: str = ACKERMANN,
) -> dict[str, Any]:
    """Record ``cfg.episodes`` episodes into a new bag at ``path``.

    Args:
        path: bag directory to create.
        cfg: what to record.
        storage: ``"mcap"`` or ``"sqlite3"``.
        compressed: JPEG ``CompressedImage`` frames instead of raw ``Image``.
        topics: topic names.
        learner: a policy to drive (DAgger) instead of the perturbed expert.
        progress: ``(episode, episodes)`` callback after each episode.
        command_type: type of the label and executed commands (Ackermann, or Twist /
            TwistStamped through the car's kinematic bicycle: see :class:`DemoBagWriter`).

    Returns:
        Summary: frames, episodes, departures, perturbed/takeover fractions, wall time.

    Raises:
        BagError: the bag exists, or the storage or command type is unknown.
    """
    from ltc_controller.training.closed_loop import PolicyDriver

    cond = get_condition(cfg.condition)
    rng = np.random.default_rng(cfg.seed)
    period = 1.0 / cfg.camera_rate_hz
    speed = cfg.perturbation.speed_mps
    frames = perturbed = takeover_frames = departures = 0
    wall0 = time.perf_counter()
    base_s = 0.0
    driver = PolicyDriver(learner, speed_mps=speed) if learner is not None else None
    wheelbase = VehicleParams().wheelbase_m  # the car make_sim builds
    with DemoBagWriter(
        path,
        storage=storage,
        compressed=compressed,
        topics=topics,
        command_type=command_type,
        wheelbase_m=wheelbase,
    ) as writer:
        for ep in range(cfg.episodes):
            sim = make_sim(cond, cfg.first_track_seed + ep, initial_speed=speed)
            try:
                sim.reset(
                    s0=float(rng.uniform(0.0, sim.track.length)),
                    lateral_offset=float(rng.uniform(-cfg.start_offset_m, cfg.start_offset_m)),
                    heading_offset=float(rng.uniform(-0.05, 0.05)),
                )
                expert = PerturbedExpert(cfg.perturbation, seed=int(rng.integers(2**31)))
                effects = ImageEffects(
                    cond, int(rng.integers(2**31)), sim.image_height, sim.image_width
                )
                if driver is not None:
                    driver.reset()
                taking_over = False
                n_frames = int(round(cfg.episode_s / period))
                for _ in range(n_frames):
                    stamp = base_s + sim.time
                    img = effects(sim.render())
                    ec = expert.command(sim)
                    executed = ec.executed_steer
                    if driver is not None:
                        out = driver.act(img, stamp)
                        d = abs(sim.frenet.d)
                        taking_over = d > cfg.takeover_m or (taking_over and d > cfg.release_m)
                        if taking_over or out is None:
                            executed = ec.label_steer
                            takeover_frames += 1
                        else:
                            executed = out
                    perturbed += int(ec.perturbed and driver is None)
                    st = sim.state
                    writer.write(
                        int(round(stamp * 1e9)),
                        img,
                        ec.label_steer,
                        executed,
                        ec.speed,
                        (st.x, st.y, st.yaw, st.speed, st.yaw_rate(sim.vehicle_params)),
                    )
                    frames += 1
                    if cfg.latency_s > 0.0:
                        sim.step(cfg.latency_s)
                    sim.set_command(executed, ec.speed)
                    sim.step(period - cfg.latency_s)
                    if sim.metrics.departed:
                        departures += 1
                        sim.intervene()
                        if driver is not None:
                            driver.reset()
                base_s += sim.time + cfg.gap_s
            finally:
                sim.close()
            if progress is not None:
                progress(ep + 1, cfg.episodes)
    summary: dict[str, Any] = {
        "bag": str(path),
        "storage": storage,
        "compressed": compressed,
        "episodes": cfg.episodes,
        "frames": frames,
        "departures": departures,
        "perturbed_fraction": perturbed / max(1, frames),
        "takeover_fraction": takeover_frames / max(1, frames),
        "wall_s": time.perf_counter() - wall0,
        "sim_s": cfg.episodes * cfg.episode_s,
        "driver": driver_name(learner is not None, cfg.perturbation.perturbs),
        "command_type": command_type,
        "config": json_safe(asdict(cfg)),
    }
    return summary


def driver_name(learner: bool, perturbed: bool) -> str:
    """Who drove a recording, for its summary: the DAgger learner, else the expert with or
    without perturbations (``perturbed``: the configuration's ``perturbs``)."""
    if learner:
        return "learner (DAgger)"
    return "perturbed expert" if perturbed else "expert (no perturbations)"
