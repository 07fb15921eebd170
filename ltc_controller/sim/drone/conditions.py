"""Named drone conditions: the training scene (summer forest) and its shifts.

The shifts follow the out-of-distribution tests of Chahine et al. 2023 (Science Robotics, "Robust
flight navigation out of distribution with liquid neural networks"): other seasons, lighting, fog,
camera noise, an unseen (urban) background, a rotated or partly occluded target, distractor
objects and a target farther away than in training. Each is a :class:`DroneCondition` looked up by
name (:data:`DRONE_CONDITIONS`), used as the car's :class:`~ltc_controller.sim.conditions.Condition`
is: its ``style`` and ``world`` go to :func:`~.scenario.make_drone_sim`, its image effects
(:attr:`DroneCondition.image_condition`) to :class:`~ltc_controller.sim.conditions.ImageEffects`.

Camera noise is the car's (NCP paper): additive Gaussian noise of variance 0.1 / 0.2 / 0.3 on
images in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ltc_controller.sim.conditions import Condition, UnknownCondition
from ltc_controller.sim.drone.world import DroneWorldStyle, WorldParams

__all__ = [
    "DRONE_CONDITIONS",
    "DroneCondition",
    "get_drone_condition",
    "parse_drone_conditions",
]


@dataclass(frozen=True)
class DroneCondition:
    """One drone scenario condition.

    Attributes:
        name: key in :data:`DRONE_CONDITIONS` (e.g. ``"clean"``, ``"winter"``).
        description: one line for reports.
        style: appearance (:class:`~.world.DroneWorldStyle`).
        world: world distribution (:class:`~.world.WorldParams`).
        noise_var: variance of additive Gaussian noise on [0, 1] images (0.1-0.3); 0 = none.
        in_distribution: True for the training condition.
    """

    name: str
    description: str = ""
    style: DroneWorldStyle = field(default_factory=DroneWorldStyle)
    world: WorldParams = field(default_factory=WorldParams)
    noise_var: float = 0.0
    in_distribution: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("DroneCondition.name must not be empty")
        if not (0.0 <= self.noise_var <= 1.0):
            raise ValueError(
                f"DroneCondition {self.name}: noise_var={self.noise_var}; expected [0, 1]"
            )

    @property
    def image_condition(self) -> Condition:
        """The image-side part as a car :class:`Condition`, for
        :class:`~ltc_controller.sim.conditions.ImageEffects`."""
        return Condition(self.name, self.description, noise_var=self.noise_var)


_S = DroneWorldStyle()
_W = WorldParams()


def _conditions() -> dict[str, DroneCondition]:
    c: list[DroneCondition] = [
        DroneCondition(
            "clean",
            "training distribution: summer forest, daylight, red chair 6-10 m ahead",
            in_distribution=True,
        ),
        DroneCondition(
            "autumn",
            "season: orange-brown leaves, brown leaf-litter ground",
            style=replace(
                _S,
                crown_rgb=(0.78, 0.40, 0.10),
                ground_rgb=(0.45, 0.33, 0.18),
                ground_mark_rgb=(0.62, 0.42, 0.15),
            ),
        ),
        DroneCondition(
            "winter",
            "season: snow on the ground, bare dark trunks, grey sky",
            style=replace(
                _S,
                crown_rgb=None,
                trunk_rgb=(0.22, 0.20, 0.19),
                ground_rgb=(0.90, 0.91, 0.94),
                ground_mark_rgb=(0.78, 0.80, 0.85),
                sky_top_rgb=(0.62, 0.65, 0.70),
                sky_bottom_rgb=(0.85, 0.86, 0.88),
            ),
        ),
        DroneCondition(
            "dusk",
            "lighting: sun at 25 %, ambient at 30 %, darker sky",
            style=replace(
                _S,
                light_diffuse=0.18,
                ambient=0.10,
                sky_top_rgb=(0.10, 0.12, 0.25),
                sky_bottom_rgb=(0.45, 0.30, 0.25),
            ),
        ),
        DroneCondition(
            "fog",
            "fog: grey-white, from 2 m, opaque at 14 m",
            style=replace(_S, fog_rgb=(0.78, 0.80, 0.82), fog_start_m=2.0, fog_end_m=14.0),
        ),
    ]
    for var in (0.1, 0.2, 0.3):
        c.append(
            DroneCondition(
                f"noise_{var}",
                f"additive Gaussian camera noise, variance {var} on [0, 1] images (NCP paper)",
                noise_var=var,
            )
        )
    c += [
        DroneCondition(
            "urban",
            "unseen background: box buildings on asphalt instead of trees on grass",
            style=replace(_S, ground_rgb=(0.34, 0.34, 0.36), ground_mark_rgb=(0.42, 0.42, 0.43)),
            world=replace(_W, scene="urban", density_per_100m2=2.5, min_gap_m=1.4),
        ),
        DroneCondition(
            "target_rotated",
            "target rotated 90-180 deg: its back or side faces the drone (training: +-20 deg)",
            world=replace(_W, target_yaw_rad=(math.radians(90.0), math.radians(180.0))),
        ),
        DroneCondition(
            "target_occluded",
            "a bush 2 m in front of the target hides about half of it from the start",
            world=replace(_W, occluder=True),
        ),
        DroneCondition(
            "distractors",
            "four coloured objects (boxes, balls, posts; one red) near the line of sight",
            world=replace(_W, n_distractors=4),
        ),
        DroneCondition(
            "range",
            "target 14-20 m away (training: 6-10 m); time limit 45 s",
            world=replace(_W, target_range_m=(14.0, 20.0), time_limit_s=45.0),
        ),
    ]
    return {x.name: x for x in c}


#: Every named drone condition. ``clean`` is the training distribution.
DRONE_CONDITIONS: dict[str, DroneCondition] = _conditions()


def get_drone_condition(name: str) -> DroneCondition:
    """The drone condition called ``name``.

    Raises:
        UnknownCondition: unknown name (a ``KeyError``); the message lists the known ones.
    """
    try:
        return DRONE_CONDITIONS[name]
    except KeyError:
        raise UnknownCondition(
            f"unknown drone condition {name!r}; known: {', '.join(DRONE_CONDITIONS)}"
        ) from None


def parse_drone_conditions(text: str) -> list[DroneCondition]:
    """``"clean,fog"`` -> conditions; ``"all"`` gives every drone condition.

    Raises:
        KeyError: an unknown name, or no name.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UnknownCondition(f"no condition named in {text!r} (comma-separated names, or 'all')")
    if names == ["all"]:
        return list(DRONE_CONDITIONS.values())
    return [get_drone_condition(n) for n in names]
