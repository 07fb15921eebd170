"""Drone scenario building blocks: a simulator for a condition, and the privileged expert with
injected perturbations that makes demonstrations contain recoveries (as the car's
:mod:`ltc_controller.sim.scenario`).

The expert knows the target and every obstacle footprint (:meth:`~.world.DroneWorld.clearance`)
and flies an artificial potential field (Khatib 1986) in the horizontal plane: an attraction of
``speed_mps`` towards the target, slowing inside ``slow_radius_m``; for each obstacle whose edge is
closer than ``influence_m``, a push away of weight ``1/c - 1/influence`` (``c`` the clearance left
after ``margin_m``) plus the same weight along the obstacle's tangent on the target's side, which
slides the drone around an obstacle instead of stopping in front of it (the local minimum of a
pure gradient field). It turns the camera towards the target (yaw rate proportional to the
bearing error) and holds the world's flight altitude. The command is the body-frame velocity
setpoint ``(vx, vy, vz, yaw_rate)`` a ``geometry_msgs/Twist`` carries.

Perturbations (DART, Laskey et al. 2017): the *executed* setpoint gets Poisson-timed bursts of
sideways velocity and of yaw rate, while the *label* stays the clean expert setpoint for the true
state, so the learner sees how to recover. Bursts are suppressed within ``safe_clearance_m`` of
an obstacle: a demonstration that crashes teaches nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ltc_controller.sim.drone.conditions import DroneCondition, get_drone_condition
from ltc_controller.sim.drone.drone_sim import DroneMetrics, DroneSim

__all__ = [
    "DroneExpertCommand",
    "DronePerturbationConfig",
    "PerturbedDroneExpert",
    "expert_setpoint",
    "fly_expert",
    "make_drone_sim",
]

Setpoint = tuple[float, float, float, float]


def make_drone_sim(
    condition: DroneCondition | str = "clean",
    world_seed: int = 0,
    *,
    render_enabled: bool = True,
    record_history: bool = False,
    image_width: int = 200,
    image_height: int = 78,
) -> DroneSim:
    """A :class:`~.drone_sim.DroneSim` in world ``world_seed`` drawn from the condition's world
    distribution, with its style (image noise is separate:
    :class:`~ltc_controller.sim.conditions.ImageEffects` of ``condition.image_condition``).

    Raises:
        KeyError: unknown condition name. WorldGenerationError: no world for the seed.
    """
    cond = get_drone_condition(condition) if isinstance(condition, str) else condition
    return DroneSim(
        world_seed,
        world_params=cond.world,
        style=cond.style,
        render_enabled=render_enabled,
        record_history=record_history,
        image_width=image_width,
        image_height=image_height,
    )


@dataclass(frozen=True)
class DronePerturbationConfig:
    """Expert and perturbation settings (SI units).

    Attributes:
        speed_mps: cruise speed towards the target.
        slow_radius_m: the attraction falls linearly to zero inside this distance.
        influence_m: obstacles whose edge is farther than this (after ``margin_m``) are ignored.
        margin_m: clearance kept from obstacle edges (drone radius 0.07 m plus a margin).
        repulsion: gain of the push and slide terms (m/s per 1/m).
        yaw_gain: yaw rate per rad of bearing error (1/s).
        altitude_gain: climb rate per m of altitude error (1/s).
        lateral_rate_hz, lateral_mps, lateral_duration_s: sideways velocity bursts (Poisson
            rate, magnitude range, duration range).
        yaw_rate_hz, yaw_rps, yaw_duration_s: yaw-rate bursts.
        safe_clearance_m: no burst starts or continues closer than this to an obstacle edge.
    """

    speed_mps: float = 1.0
    slow_radius_m: float = 1.5
    influence_m: float = 1.2
    margin_m: float = 0.2
    repulsion: float = 0.25
    yaw_gain: float = 1.5
    altitude_gain: float = 1.0
    lateral_rate_hz: float = 0.15
    lateral_mps: tuple[float, float] = (0.3, 0.6)
    lateral_duration_s: tuple[float, float] = (0.4, 1.0)
    yaw_rate_hz: float = 0.15
    yaw_rps: tuple[float, float] = (0.3, 0.7)
    yaw_duration_s: tuple[float, float] = (0.3, 0.8)
    safe_clearance_m: float = 0.7

    @classmethod
    def none(cls, speed_mps: float = 1.0) -> DronePerturbationConfig:
        """The clean expert (no perturbations)."""
        return cls(speed_mps, lateral_rate_hz=0.0, yaw_rate_hz=0.0)

    @property
    def perturbs(self) -> bool:
        """Whether any perturbation can happen (a lateral or yaw burst rate above zero)."""
        return self.lateral_rate_hz > 0.0 or self.yaw_rate_hz > 0.0


def expert_setpoint(
    sim: DroneSim, cfg: DronePerturbationConfig | None = None
) -> tuple[Setpoint, float]:
    """The clean expert setpoint for the true state, and the smallest obstacle clearance.

    Returns:
        ``((vx, vy, vz, yaw_rate), clearance)``: body-frame setpoint (m/s, rad/s) and the
        horizontal distance from the drone to the nearest obstacle edge (m; the target excluded).
    """
    c = cfg if cfg is not None else DronePerturbationConfig()
    w = sim.world
    x, y, z = sim.data.qpos[0:3].tolist()
    yaw = sim.yaw
    tx, ty, _ = w.target
    dx, dy = tx - x, ty - y
    dist = math.hypot(dx, dy)
    ux, uy = (dx / dist, dy / dist) if dist > 1e-6 else (1.0, 0.0)
    att = c.speed_mps * min(1.0, dist / c.slow_radius_m)
    vx, vy = att * ux, att * uy
    d, nx, ny = w.clearance(x, y, target=False)
    d, nx, ny = d[0], nx[0], ny[0]
    clearance = float(d.min()) if d.size else math.inf
    cl = d - c.margin_m
    near = cl < c.influence_m
    if np.any(near):
        cl_n = np.maximum(cl[near], 0.05)
        wgt = c.repulsion * (1.0 / cl_n - 1.0 / c.influence_m)
        n_x, n_y = nx[near], ny[near]
        # Tangent on the target's side (left on a tie).
        s = np.where(n_x * uy - n_y * ux >= 0.0, 1.0, -1.0)
        t_x, t_y = -n_y * s, n_x * s
        vx += float(np.sum(wgt * (n_x + t_x)))
        vy += float(np.sum(wgt * (n_y + t_y)))
    h = math.hypot(vx, vy)
    vmax = 1.5 * c.speed_mps
    if h > vmax:
        vx, vy = vx * vmax / h, vy * vmax / h
    cy, sy = math.cos(yaw), math.sin(yaw)
    bearing = math.remainder(math.atan2(dy, dx) - yaw, math.tau) if dist > 0.3 else 0.0
    vz = c.altitude_gain * (sim.params.start_altitude_m - z)
    sp = (cy * vx + sy * vy, -sy * vx + cy * vy, max(-0.5, min(0.5, vz)), c.yaw_gain * bearing)
    return sim.controller.clip_setpoint(*sp), clearance


@dataclass(frozen=True)
class DroneExpertCommand:
    """One expert decision.

    Attributes:
        label: clean expert setpoint ``(vx, vy, vz, yaw_rate)`` for the true state (m/s, rad/s,
            body frame) - the training label.
        executed: what is sent to the drone, perturbed (clipped to the controller's limits).
        perturbed: True while a burst is active.
        clearance: horizontal distance to the nearest obstacle edge (m).
    """

    label: Setpoint
    executed: Setpoint
    perturbed: bool
    clearance: float


class PerturbedDroneExpert:
    """The potential-field expert with injected sideways and yaw-rate bursts.

    Args:
        config: expert and perturbation settings.
        seed: RNG seed (event times, sizes, signs).
    """

    def __init__(self, config: DronePerturbationConfig | None = None, seed: int = 0) -> None:
        self.cfg = config if config is not None else DronePerturbationConfig()
        self.rng = np.random.default_rng(seed)
        self._lat_until = -1.0
        self._lat = 0.0
        self._yaw_until = -1.0
        self._yaw = 0.0
        self._last_t: float | None = None
        #: Bursts started since construction (sideways and yaw-rate).
        self.bursts = 0

    def _draw(self, lo_hi: tuple[float, float]) -> float:
        return float(self.rng.uniform(lo_hi[0], lo_hi[1])) * float(self.rng.choice((-1.0, 1.0)))

    def command(self, sim: DroneSim) -> DroneExpertCommand:
        """The expert's command at ``sim.time`` (call at the control rate, times increasing)."""
        c = self.cfg
        t = sim.time
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        label, clearance = expert_setpoint(sim, c)
        safe = clearance > c.safe_clearance_m
        if not safe:
            self._lat_until = self._yaw_until = -1.0
        else:
            if t >= self._lat_until and self.rng.random() < 1.0 - math.exp(-c.lateral_rate_hz * dt):
                self._lat = self._draw(c.lateral_mps)
                self._lat_until = t + abs(self._draw(c.lateral_duration_s))
                self.bursts += 1
            if t >= self._yaw_until and self.rng.random() < 1.0 - math.exp(-c.yaw_rate_hz * dt):
                self._yaw = self._draw(c.yaw_rps)
                self._yaw_until = t + abs(self._draw(c.yaw_duration_s))
                self.bursts += 1
        vx, vy, vz, r = label
        perturbed = False
        if t < self._lat_until:
            vy += self._lat
            perturbed = True
        if t < self._yaw_until:
            r += self._yaw
            perturbed = True
        executed = sim.controller.clip_setpoint(vx, vy, vz, r)
        return DroneExpertCommand(label, executed, perturbed, clearance)


def fly_expert(
    sim: DroneSim, expert: PerturbedDroneExpert | None = None, rate_hz: float = 20.0
) -> DroneMetrics:
    """Fly an episode under the expert's executed setpoints until the task is done (reached,
    collided or timed out); no rendering.

    Args:
        sim: a simulator, reset or not (it is reset first).
        expert: default the clean expert.
        rate_hz: command rate (Hz; the camera rate in recordings).

    Returns:
        The final :class:`~.drone_sim.DroneMetrics`.
    """
    ex = expert if expert is not None else PerturbedDroneExpert(DronePerturbationConfig.none())
    sim.reset()
    dt = 1.0 / rate_hz
    m = sim.metrics
    while not m.done:
        sim.set_command(*ex.command(sim).executed)
        sim.step(dt)
        m = sim.metrics
    return m
