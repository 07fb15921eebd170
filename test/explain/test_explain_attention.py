"""Where the trained NCP looks: on frames where only the lane markings carry steering
information, most of its VisualBackProp mass lies on the markings.

Scene: the simulator's evaluation tracks (seeds 5001-5003) with the grass painted the road's
grey and untextured, so the ground is one flat grey and the white markings are the only thing
that tells where the lane goes (the horizon is straight and carries none). Marking pixels are
known exactly: the same pose is rendered a second time with the markings magenta, and the mask
is the magenta pixels.

Measure: for each of 30 frames (10 poses per track, lateral offsets within +-0.5 m, headings
within +-0.05 rad), the fraction of VisualBackProp mass on the *marking band*: marking pixels
grown by a 3-pixel disk. VisualBackProp cannot be sharper than that: each unit of the first conv
layer (5 x 5, stride 2) spreads its value over its whole 5 x 5 footprint, i.e. up to 4 pixels
beyond any marking pixel it saw; the band keeps 3 of those 4. The band covers about 9.5 % of the
image.

Thresholds: mean fraction >= 0.5 ("most of the mass"), every frame >= 0.4, and an enrichment
(mean fraction / band share) >= 4. Control: the same head with untrained weights must stay below
0.3 on the same frames, so the scene alone does not pass the test. Measured: the bundled NCP-19
0.83 (min 0.80, enrichment 8.7; on the unmodified clean scene, grass and all, 0.85); a
preliminary NCP-19 from an earlier bundled-preset run 0.63 (min 0.58); untrained weights 0.17;
an LSTM(64) trained 3 epochs on the expert data 0.33.

Policy: ``$LTC_TRAINED_POLICY`` if set, else the bundled ``ncp19_lane_keeping.safetensors``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ltc_controller.explain.metrics import dilate, mass_fraction
from ltc_controller.explain.saliency import visual_backprop
from ltc_controller.models.policy import Policy
from ltc_controller.models.policy_file import BUNDLED_POLICY

TRAINED = Path(os.environ.get("LTC_TRAINED_POLICY") or BUNDLED_POLICY)
MAGENTA = (1.0, 0.0, 1.0, 1.0)


def markings_only_frames() -> tuple[np.ndarray, np.ndarray]:
    """``(30, 78, 200, 3)`` uint8 frames and their ``(30, 78, 200)`` exact marking masks."""
    from ltc_controller.sim.lane_sim import LaneKeepingSim
    from ltc_controller.sim.world import WorldStyle

    base = WorldStyle()
    grey = base.road_rgba[:3]
    style = replace(base, grass_rgb=grey, grass_mark_rgb=grey, grass_random=0.0)
    images, masks = [], []
    for seed in (5001, 5002, 5003):
        with (
            LaneKeepingSim(seed, style=style, record_history=False) as sim,
            LaneKeepingSim(
                seed, style=replace(style, marking_rgba=MAGENTA), record_history=False
            ) as marked,
        ):
            for k in range(10):
                pose = {
                    "s0": 23.0 * k,
                    "lateral_offset": 0.5 * np.sin(1.3 * k),
                    "heading_offset": 0.05 * np.cos(k),
                }
                sim.reset(**pose)
                marked.reset(**pose)
                images.append(sim.render())
                m = marked.render().astype(np.int16)
                masks.append((m[..., 0] - m[..., 1] > 60) & (m[..., 2] - m[..., 1] > 60))
    return np.stack(images), np.stack(masks)


def vbp(policy: Policy, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if policy.config.color_order == "bgr":
        x = x.flip(1)
    with torch.inference_mode():
        return visual_backprop(policy.head, x).numpy()


@pytest.mark.skipif(not TRAINED.is_file(), reason=f"no trained policy at {TRAINED}")
def test_trained_ncp_puts_most_saliency_on_the_lane_markings():
    from ltc_controller.models.policy_file import load_policy

    images, masks = markings_only_frames()
    share = masks.mean()
    assert 0.01 < share < 0.06  # the markings are thin lines: a sanity check of the mask
    band = dilate(masks, 3)
    trained = mass_fraction(vbp(load_policy(TRAINED), images), band)
    untrained = mass_fraction(vbp(Policy.from_config(seed=0), images), band)
    enrichment = trained.mean() / band.mean()
    print(
        f"marking band share {band.mean():.3f}; VisualBackProp mass on it: trained "
        f"{trained.mean():.3f} (min {trained.min():.3f}, enrichment {enrichment:.2f}), "
        f"untrained {untrained.mean():.3f}"
    )
    assert trained.mean() >= 0.5
    assert trained.min() >= 0.4
    assert enrichment >= 4.0
    assert untrained.mean() < 0.3
