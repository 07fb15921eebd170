"""Scenario building blocks: a simulator for a condition, and the privileged expert with injected
perturbations that makes demonstrations contain recoveries.

The expert is pure pursuit on the true pose (:meth:`LaneKeepingSim.expert_command`, Coulter 1992).
Behaviour cloning from clean demonstrations alone never shows the learner what to do once it is
off the centreline, so the *executed* command is perturbed (the idea of DART, Laskey et al. 2017)
while the *label* stays the clean expert command for the true pose:

* steering bursts: a constant offset of random sign and size added for a random duration;
* lateral-offset excursions: the executed command follows a line shifted sideways for a while,
  then returns to the centre.

Both arrive as Poisson events; their rates, sizes and durations are in
:class:`PerturbationConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltc_controller.sim.conditions import Condition, get_condition
from ltc_controller.sim.lane_sim import LaneKeepingSim

__all__ = ["ExpertCommand", "PerturbationConfig", "PerturbedExpert", "make_sim"]


def make_sim(
    condition: Condition | str = "clean",
    track_seed: int = 0,
    *,
    render_enabled: bool = True,
    initial_speed: float = 5.0,
    record_history: bool = False,
    image_width: int = 200,
    image_height: int = 78,
) -> LaneKeepingSim:
    """A :class:`LaneKeepingSim` on track ``track_seed`` drawn from the condition's track
    distribution, with the condition's scene style (image effects are separate:
    :class:`~ltc_controller.sim.conditions.ImageEffects`).

    Raises:
        KeyError: unknown condition name. TrackGenerationError: no track for the seed.
    """
    cond = get_condition(condition) if isinstance(condition, str) else condition
    return LaneKeepingSim(
        track_seed,
        track_params=cond.track,
        style=cond.style,
        render_enabled=render_enabled,
        initial_speed=initial_speed,
        record_history=record_history,
        image_width=image_width,
        image_height=image_height,
    )


@dataclass(frozen=True)
class PerturbationConfig:
    """Expert and perturbation settings (SI units).

    Attributes:
        speed_mps: cruise speed of the expert (and of the recorded runs).
        lookahead_m: pure-pursuit lookahead (4 m at 5 m/s recovers from a 0.6 m offset in
            under a second without overshoot; a longer one gives labels that barely react to
            small offsets, which the learner then ignores).
        burst_rate_hz: mean number of steering bursts per second (Poisson).
        burst_steer_rad: range of a burst's steering offset magnitude (rad).
        burst_duration_s: range of a burst's duration (s).
        offset_rate_hz: mean number of lateral excursions per second (Poisson).
        offset_m: range of an excursion's lateral offset magnitude (m).
        offset_duration_s: range of an excursion's duration (s).
    """

    speed_mps: float = 5.0
    lookahead_m: float = 4.0
    burst_rate_hz: float = 0.15
    burst_steer_rad: tuple[float, float] = (0.04, 0.15)
    burst_duration_s: tuple[float, float] = (0.3, 0.9)
    offset_rate_hz: float = 0.1
    offset_m: tuple[float, float] = (0.3, 0.8)
    offset_duration_s: tuple[float, float] = (1.5, 4.0)

    @classmethod
    def none(cls, speed_mps: float = 5.0, lookahead_m: float = 4.0) -> PerturbationConfig:
        """The clean expert (no perturbations)."""
        return cls(speed_mps, lookahead_m, burst_rate_hz=0.0, offset_rate_hz=0.0)

    @property
    def perturbs(self) -> bool:
        """Whether any perturbation can happen (a burst or excursion rate above zero)."""
        return self.burst_rate_hz > 0.0 or self.offset_rate_hz > 0.0


@dataclass(frozen=True)
class ExpertCommand:
    """One expert decision.

    Attributes:
        label_steer: clean pure-pursuit steering for the true pose (rad) - the training label.
        executed_steer: what is actually sent to the car (rad), perturbed.
        speed: commanded speed (m/s).
        perturbed: True while a burst or excursion is active.
    """

    label_steer: float
    executed_steer: float
    speed: float
    perturbed: bool


class PerturbedExpert:
    """Pure pursuit with injected steering bursts and lateral excursions.

    Args:
        config: rates and sizes.
        seed: RNG seed (event times, sizes, signs).
    """

    def __init__(self, config: PerturbationConfig, seed: int = 0) -> None:
        self.cfg = config
        self.rng = np.random.default_rng(seed)
        self._burst_until = -1.0
        self._burst = 0.0
        self._offset_until = -1.0
        self._offset = 0.0
        self._last_t: float | None = None

    def _draw(self, lo_hi: tuple[float, float]) -> float:
        return float(self.rng.uniform(lo_hi[0], lo_hi[1]))

    def command(self, sim: LaneKeepingSim) -> ExpertCommand:
        """The expert's command at ``sim.time`` (call at the control rate, times increasing)."""
        c = self.cfg
        t = sim.time
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        if t >= self._burst_until and self.rng.random() < 1.0 - np.exp(-c.burst_rate_hz * dt):
            self._burst = self._draw(c.burst_steer_rad) * float(self.rng.choice((-1.0, 1.0)))
            self._burst_until = t + self._draw(c.burst_duration_s)
        if t >= self._offset_until and self.rng.random() < 1.0 - np.exp(-c.offset_rate_hz * dt):
            self._offset = self._draw(c.offset_m) * float(self.rng.choice((-1.0, 1.0)))
            self._offset_until = t + self._draw(c.offset_duration_s)
        label, speed = sim.expert_command(c.lookahead_m, c.speed_mps)
        executed = label
        perturbed = False
        if t < self._offset_until:
            executed, _ = sim.expert_command(
                c.lookahead_m, c.speed_mps, target_offset_m=self._offset
            )
            perturbed = True
        if t < self._burst_until:
            executed += self._burst
            perturbed = True
        lim = sim.vehicle_params.max_steer_rad
        executed = min(lim, max(-lim, executed))
        return ExpertCommand(label, executed, speed, perturbed)
