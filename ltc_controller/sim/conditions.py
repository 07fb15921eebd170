"""Named scenario conditions: the in-distribution scene and the domain shifts it is tested under.

A :class:`Condition` is a frozen description of everything that differs from the training scene:
appearance (lighting, road and marking colours, textures), the camera mount (pose offset), the
image pipeline (additive Gaussian noise, blur, occlusion) and the track distribution (unseen
curvatures). Conditions are looked up by name (:data:`CONDITIONS`, :func:`get_condition`), so a
report line ``noise_0.2`` always means the same thing.

Camera noise follows Lechner et al. 2020 (NCP paper, active test): images scaled to [0, 1], additive
zero-mean Gaussian noise of *variance* ``sigma^2`` in {0.1, 0.2, 0.3}, i.e. standard deviation
0.316 / 0.447 / 0.548, then clipped to [0, 1] (and quantised back to uint8, as a camera would).

Image effects are applied in this fixed order: occlusion, blur, noise (noise last: it is the
sensor's, the others happen in front of or in the optics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from PIL import ImageFilter

from ltc_controller.sim.track import TrackParams
from ltc_controller.sim.world import WorldStyle

__all__ = [
    "UnknownCondition",
    "CONDITIONS",
    "Condition",
    "ImageEffects",
    "get_condition",
    "parse_conditions",
]


@dataclass(frozen=True)
class Condition:
    """One scenario condition.

    Attributes:
        name: the key in :data:`CONDITIONS` (e.g. ``"clean"``, ``"noise_0.1"``).
        description: one line for reports.
        style: scene appearance and camera mount (:class:`WorldStyle`).
        track: track distribution (:class:`TrackParams`; curvature range, lane width, length).
        noise_var: variance of additive Gaussian noise on images in [0, 1] (NCP paper: 0.1,
            0.2, 0.3); 0 = none.
        blur_sigma_px: Gaussian blur radius (pixels of the 200 x 78 image); 0 = none.
        occlusion_frac: fraction of the image area hidden by one dark box (dirt on the lens),
            placed once per episode in the lower two thirds; 0 = none.
        in_distribution: True for the training condition.
    """

    name: str
    description: str = ""
    style: WorldStyle = field(default_factory=WorldStyle)
    track: TrackParams = field(default_factory=TrackParams)
    noise_var: float = 0.0
    blur_sigma_px: float = 0.0
    occlusion_frac: float = 0.0
    in_distribution: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Condition.name must not be empty")
        if not (0.0 <= self.noise_var <= 1.0):
            raise ValueError(f"Condition {self.name}: noise_var={self.noise_var}; expected [0, 1]")
        if not (0.0 <= self.blur_sigma_px <= 20.0):
            raise ValueError(f"Condition {self.name}: blur_sigma_px={self.blur_sigma_px}")
        if not (0.0 <= self.occlusion_frac < 0.6):
            raise ValueError(
                f"Condition {self.name}: occlusion_frac={self.occlusion_frac}; expected [0, 0.6)"
            )

    @property
    def has_image_effects(self) -> bool:
        """True if :class:`ImageEffects` changes images under this condition."""
        return self.noise_var > 0.0 or self.blur_sigma_px > 0.0 or self.occlusion_frac > 0.0


_BASE_STYLE = WorldStyle()
_BASE_TRACK = TrackParams()


def _conditions() -> dict[str, Condition]:
    c: list[Condition] = [
        Condition(
            "clean",
            "training distribution: daylight, grey road, white markings",
            in_distribution=True,
        ),
    ]
    for var in (0.1, 0.2, 0.3):
        c.append(
            Condition(
                f"noise_{var}",
                f"additive Gaussian camera noise, variance {var} on [0, 1] images (NCP paper)",
                noise_var=var,
            )
        )
    c += [
        Condition(
            "dim",
            "dusk: sun at 25 %, ambient at 30 %",
            style=replace(_BASE_STYLE, light_diffuse=0.18, ambient=0.12),
        ),
        Condition(
            "bright",
            "glare: strong sun and ambient light",
            style=replace(_BASE_STYLE, light_diffuse=1.0, ambient=0.75),
        ),
        Condition(
            "road_colours",
            "brown road, yellow markings, dry grass",
            style=replace(
                _BASE_STYLE,
                road_rgba=(0.42, 0.36, 0.30, 1.0),
                marking_rgba=(0.95, 0.80, 0.15, 1.0),
                grass_rgb=(0.55, 0.50, 0.25),
                grass_mark_rgb=(0.62, 0.58, 0.32),
            ),
        ),
        Condition(
            "road_texture",
            "speckled asphalt, denser grass texture, dashed right marking",
            style=replace(
                _BASE_STYLE,
                road_texture_rgb=(0.55, 0.55, 0.55),
                road_texture_random=0.35,
                grass_random=0.7,
                right_dashed=True,
            ),
        ),
        Condition("blur", "defocus: Gaussian blur, sigma 2 px", blur_sigma_px=2.0),
        Condition("occlusion", "a dark box over 12 % of the image", occlusion_frac=0.12),
        Condition(
            "camera_offset",
            "camera 0.25 m higher, 0.2 m left, pitched 3 deg down, yawed 3 deg left",
            style=replace(
                _BASE_STYLE,
                camera_height_m=_BASE_STYLE.camera_height_m + 0.25,
                camera_y_m=0.2,
                camera_pitch_rad=_BASE_STYLE.camera_pitch_rad + math.radians(3.0),
                camera_yaw_rad=math.radians(3.0),
            ),
        ),
        Condition(
            "sharp_curves",
            "unseen curvatures: turns of 0.045-0.065 1/m (training: 0.015-0.04)",
            track=replace(
                _BASE_TRACK, min_curvature=0.045, max_curvature=0.065, min_separation_m=16.0
            ),
        ),
    ]
    return {x.name: x for x in c}


#: Every named condition. ``clean`` is the training distribution.
CONDITIONS: dict[str, Condition] = _conditions()


class UnknownCondition(KeyError):
    """An unknown condition name (a ``KeyError`` whose text is the message itself, unquoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_condition(name: str) -> Condition:
    """The condition called ``name``.

    Raises:
        UnknownCondition: unknown name (a ``KeyError``); the message lists the known ones.
    """
    try:
        return CONDITIONS[name]
    except KeyError:
        raise UnknownCondition(
            f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}"
        ) from None


def parse_conditions(text: str) -> list[Condition]:
    """``"clean,noise_0.1"`` -> conditions; ``"all"`` gives every condition.

    Raises:
        KeyError: an unknown name, or no name.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UnknownCondition(f"no condition named in {text!r} (comma-separated names, or 'all')")
    if names == ["all"]:
        return list(CONDITIONS.values())
    return [get_condition(n) for n in names]


class ImageEffects:
    """The image-side part of a condition (occlusion, blur, noise), seeded per episode.

    Args:
        condition: the condition.
        seed: RNG seed (noise draws and the occluder's place).
        height, width: image size in pixels.
    """

    def __init__(self, condition: Condition, seed: int, height: int, width: int) -> None:
        self.condition = condition
        self.rng = np.random.default_rng(seed)
        self.box: tuple[int, int, int, int] | None = None
        if condition.occlusion_frac > 0.0:
            area = condition.occlusion_frac * height * width
            bh = max(1, min(height, int(round(math.sqrt(area * 0.6)))))
            bw = max(1, min(width, int(round(area / bh))))
            top = int(self.rng.integers(height // 3, max(height // 3 + 1, height - bh + 1)))
            left = int(self.rng.integers(0, max(1, width - bw + 1)))
            self.box = (top, min(height, top + bh), left, min(width, left + bw))

    def __call__(self, img: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Apply the effects to an ``(H, W, 3)`` uint8 RGB image; returns a new uint8 array (the
        input itself when the condition has no image effects)."""
        c = self.condition
        if not c.has_image_effects:
            return img
        out = img.copy()
        if self.box is not None:
            t, b, lft, r = self.box
            out[t:b, lft:r] = (25, 25, 25)
        if c.blur_sigma_px > 0.0:
            out = np.asarray(
                PILImage.fromarray(out).filter(ImageFilter.GaussianBlur(c.blur_sigma_px)),
                dtype=np.uint8,
            )
        if c.noise_var > 0.0:
            x = out.astype(np.float32) * np.float32(1.0 / 255.0)
            x += self.rng.normal(0.0, math.sqrt(c.noise_var), size=x.shape).astype(np.float32)
            np.clip(x, 0.0, 1.0, out=x)
            out = np.rint(x * 255.0).astype(np.uint8)
        return out
