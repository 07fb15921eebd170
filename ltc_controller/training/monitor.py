"""Fit a policy's out-of-distribution monitor (:mod:`ltc_controller.runtime.ood`) on recorded
in-distribution frames: the same for every architecture, since every policy has the same kind of
perception head whose features the monitor reads.

Only the frames are read, never commands: :class:`~ltc_controller.training.bag.Frames` (camera
footage) or :class:`~ltc_controller.training.bag.Demonstrations` (training data). Their segments
are split like the trainer splits them (:func:`~ltc_controller.training.trainer.split_segments`,
whole segments): the statistics come from one part, the thresholds are calibrated on the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.models.ood import FeatureStats, fit_feature_stats
from ltc_controller.training.bag import Demonstrations, Frames
from ltc_controller.training.trainer import split_segments

__all__ = ["head_features", "fit_monitor"]


def head_features(policy: Any, images: NDArray[np.uint8], batch: int = 256) -> NDArray[np.float32]:
    """Features ``(N, F)`` float32 of ``images (N, H, W, 3)`` uint8 RGB at the policy's input size
    (as :class:`Frames` and :class:`Demonstrations` hold them), through ``policy.features`` in
    eval mode.

    Raises:
        ValueError: no images.
    """
    out = []
    policy.eval()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float().div_(255.0)
            out.append(policy.features(x).float().numpy())
    if not out:
        raise ValueError("no images")
    return np.concatenate(out)


def fit_monitor(
    policy: Any,
    demos: Frames | Demonstrations,
    heldout_fraction: float = 0.3,
    seed: int = 0,
    calibration: Frames | Demonstrations | None = None,
    **settings: Any,
) -> FeatureStats:
    """Statistics on ``1 - heldout_fraction`` of the segments, thresholds calibrated on the rest;
    or, with ``calibration``, statistics on all of ``demos`` and thresholds on ``calibration``.

    Training data with injected perturbations (the recipes' DAgger-style excursions) holds rare
    frames far off the lane that a calibration on it would have to tolerate; in-distribution
    *driving* (the expert or the policy on unseen tracks of the training condition, without
    perturbations) is what a false alarm rate per 10 minutes of driving is measured on.

    Args:
        policy: a :class:`~ltc_controller.models.policy.Policy`.
        demos: in-distribution frames (e.g. the training bags).
        heldout_fraction: share of frames (whole segments) for the calibration (without
            ``calibration``).
        seed: the split's seed.
        calibration: in-distribution driving frames to calibrate the thresholds on.
        settings: :func:`~ltc_controller.runtime.ood.fit_feature_stats` keywords
            (``window_s``, ``false_alarms_per_10min``, ``margin``, ``fault_factor``,
            ``shrinkage``).

    Raises:
        ValueError: too few frames or segments, or bad settings.
    """
    if len(demos) < 4:
        raise ValueError(f"{len(demos)} frames: too few to fit the monitor")
    feats = head_features(policy, demos.images)
    if calibration is not None:
        if len(calibration) == 0:
            raise ValueError("the calibration frames are empty")
        return fit_feature_stats(feats, _segments(policy, calibration), **settings)
    val, seg = split_segments(demos, heldout_fraction, seed)
    stamps = demos.stamps_ns.astype(np.float64) * 1e-9
    heldout = [
        (feats[i], stamps[i]) for i in (np.flatnonzero(seg == s) for s in np.unique(seg[val]))
    ]
    return fit_feature_stats(feats[~val], heldout, **settings)


def _segments(
    policy: Any, demos: Frames | Demonstrations
) -> list[tuple[NDArray[np.float32], NDArray[np.float64]]]:
    """``(features, stamps in s)`` per segment of ``demos``."""
    feats = head_features(policy, demos.images)
    stamps = demos.stamps_ns.astype(np.float64) * 1e-9
    return [
        (feats[i], stamps[i])
        for i in (np.flatnonzero(demos.segment == s) for s in np.unique(demos.segment))
    ]
