"""Numbers about where saliency lies: mass on a pixel mask, enrichment, concentration.

A saliency map ``S`` (non-negative) has *mass* ``sum S``; the mass fraction on a mask ``K`` is
``sum S K / sum S`` and its *enrichment* is that fraction divided by the mask's share of the
image (1 = no preference; a map that put all its mass on the mask would reach ``1 / share``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["attention_stats", "dilate", "marking_like_mask", "mass_fraction", "target_like_mask"]


def mass_fraction(saliency: NDArray[Any], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Fraction of each map's mass on ``mask``.

    Args:
        saliency: ``(H, W)`` or ``(N, H, W)`` non-negative maps.
        mask: ``(H, W)`` or ``(N, H, W)`` boolean, broadcast against ``saliency``.

    Returns:
        ``(N,)`` (or ``()``) fractions in [0, 1]; 0 for a map with no mass.
    """
    s = np.asarray(saliency, dtype=np.float64)
    on = (s * mask).sum(axis=(-2, -1))
    total = s.sum(axis=(-2, -1))
    return np.where(total > 0, on / np.where(total > 0, total, 1.0), 0.0)


def dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """Grow a ``(..., H, W)`` boolean mask by a disk of ``radius`` pixels (Euclidean)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool).copy()
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape[-2:]
    r = int(radius)
    padded = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(r, r), (r, r)])
    out = np.zeros_like(m)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                out |= padded[..., r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def marking_like_mask(rgb: NDArray[np.uint8], horizon: float = 1.0 / 3.0) -> NDArray[np.bool_]:
    """Pixels that look like lane paint: bright and unsaturated (white) or yellow, below the top
    ``horizon`` fraction of rows. A colour threshold for unlabelled footage, approximate: white
    cars, glare and bright concrete pass it too.

    White: min(R, G, B) >= 170 and (max - min) <= 40. Yellow: R >= 150, G >= 120, B <= 0.6 G.

    Args:
        rgb: ``(..., H, W, 3)`` uint8.
        horizon: fraction of rows from the top left out (the sky in a forward camera).

    Returns:
        ``(..., H, W)`` boolean.
    """
    x = np.asarray(rgb, dtype=np.int16)
    lo, hi = x.min(axis=-1), x.max(axis=-1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    white = (lo >= 170) & (hi - lo <= 40)
    yellow = (r >= 150) & (g >= 120) & (b * 10 <= g * 6)
    mask = white | yellow
    rows = mask.shape[-2]
    mask[..., : int(round(horizon * rows)), :] = False
    return mask


def target_like_mask(rgb: NDArray[np.uint8], grow_px: int = 1) -> NDArray[np.bool_]:
    """Pixels that look like the drone scenario's target, a saturated red chair (its white front
    panel is reached by growing the red pixels ``grow_px``): R >= 110, R >= 2 G and R >= 2 B.
    A colour threshold, approximate: red distractors and red bark pass it too.

    Args:
        rgb: ``(..., H, W, 3)`` uint8.
        grow_px: dilation radius (pixels).

    Returns:
        ``(..., H, W)`` boolean.
    """
    x = np.asarray(rgb, dtype=np.int16)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return dilate((r >= 110) & (r >= 2 * g) & (r >= 2 * b), grow_px)


def attention_stats(saliency: NDArray[Any], rgb: NDArray[np.uint8]) -> dict[str, float]:
    """Where saliency maps ``(N, H, W)`` put their mass, averaged over frames.

    Returns:
        ``top_third``: mass fraction in the top third of rows (sky and horizon in a forward
        camera); ``centroid_x``: mass-weighted column, -1 = left edge, +1 = right edge;
        ``centroid_y``: 0 = top, 1 = bottom; ``area_half_mass``: smallest share of pixels that
        holds half the mass (small = focused); ``marking_like_share``,
        ``marking_like_mass``, ``marking_like_enrichment``: the :func:`marking_like_mask`
        pixels' share of the image, the mass fraction on them, and the ratio (lane markings,
        the car); ``target_like_*``: the same for :func:`target_like_mask` (the drone's target).
        Shares and masses are means over frames with saliency mass.
    """
    s = np.asarray(saliency, dtype=np.float64)
    n, h, w = s.shape
    total = s.sum(axis=(1, 2))
    ok = total > 0
    weights = np.where(ok, total, 1.0)
    ys = (np.arange(h) + 0.5) / h
    xs = (np.arange(w) + 0.5) / w * 2.0 - 1.0
    cy = (s.sum(axis=2) @ ys) / weights
    cx = (s.sum(axis=1) @ xs) / weights
    top = s[:, : h // 3].sum(axis=(1, 2)) / weights
    flat = np.sort(s.reshape(n, -1), axis=1)[:, ::-1]
    cum = np.cumsum(flat, axis=1) / weights[:, None]
    area = (np.argmax(cum >= 0.5, axis=1) + 1) / float(h * w)

    def avg(v: NDArray[Any]) -> float:
        return float(v[ok].mean()) if ok.any() else float("nan")

    out = {
        "top_third": avg(top),
        "centroid_x": avg(cx),
        "centroid_y": avg(cy),
        "area_half_mass": avg(area),
    }
    for name, mask in (
        ("marking_like", marking_like_mask(rgb)),
        ("target_like", target_like_mask(rgb)),
    ):
        share = float(mask.mean(axis=(1, 2))[ok].mean()) if ok.any() else 0.0
        mass = float(mass_fraction(s, mask)[ok].mean()) if ok.any() else 0.0
        out[f"{name}_share"] = share
        out[f"{name}_mass"] = mass
        out[f"{name}_enrichment"] = mass / share if share > 0 else float("nan")
    return out
