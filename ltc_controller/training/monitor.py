"""Fit a policy's out-of-distribution monitors (:mod:`ltc_controller.runtime.ood`) on recorded
in-distribution frames: the same for every architecture, since every policy has the same kind of
perception head whose features (feature monitor) and saliency (attention monitor) they read.

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

from ltc_controller.models.attention import visual_backprop
from ltc_controller.models.ood import (
    AttentionStats,
    FeatureStats,
    attention_pairs,
    fit_attention_stats,
    fit_feature_stats,
    saliency_instability,
)
from ltc_controller.training.bag import Demonstrations, Frames
from ltc_controller.training.trainer import split_segments

__all__ = [
    "MIN_FRAMES_PER_FEATURE",
    "attention_scores",
    "fit_attention",
    "fit_monitor",
    "head_features",
    "statistics_warning",
]

#: Fewer statistics frames than this per feature: the mean and covariance of the head's features
#: are estimated from too little data (a rule of thumb for covariance estimates), the scores of
#: in-distribution frames come out high, and so do the calibrated thresholds.
MIN_FRAMES_PER_FEATURE = 10


def statistics_warning(stats: FeatureStats) -> str | None:
    """A one-line warning when ``stats`` came from fewer than :data:`MIN_FRAMES_PER_FEATURE`
    frames per feature (``stats.calibration["train_frames"]``), saying why it matters; else
    ``None``."""
    n = int(stats.calibration.get("train_frames", 0))
    need = MIN_FRAMES_PER_FEATURE * stats.features
    if n >= need:
        return None
    return (
        f"the statistics come from {n} frames for {stats.features} features (fewer than "
        f"{need}, {MIN_FRAMES_PER_FEATURE} per feature): the feature covariance is poorly "
        f"estimated, so in-distribution frames score high and the thresholds (degraded "
        f"{stats.degraded:.3f}) are unreliable; fit on more frames (--bag, --max-frames)"
    )


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


def attention_scores(
    policy: Any,
    demos: Frames | Demonstrations,
    every_n_frames: int = 1,
    pair_gap_s: float = 0.075,
    batch: int = 128,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """The attention monitor's pair scores over recorded frames, as it takes them live
    (:func:`~ltc_controller.models.ood.attention_pairs`: frame index from each segment's start).

    Saliency is :func:`~ltc_controller.models.attention.visual_backprop` of the policy's head
    (its min-max normalisation does not change the correlation), computed in batches of
    ``batch`` frames (memory: one batch of maps).

    Returns:
        ``(scores (N,), scored (N,))``: each scored frame's ``1 - r`` against the frame before
        (NaN where not scored).
    """
    stamps = demos.stamps_ns.astype(np.float64) * 1e-9
    needs, scored = attention_pairs(stamps, demos.segment, every_n_frames, pair_gap_s)
    out = np.full(len(demos), np.nan)
    head = policy.head
    policy.eval()
    prev: NDArray[np.float32] | None = None  # the map of frame start - 1
    for start in range(0, len(demos), batch):
        idx = np.arange(start, min(start + batch, len(demos)))
        maps = np.zeros((len(idx), *demos.images.shape[1:3]), dtype=np.float32)
        want = idx[needs[idx]]
        if len(want):
            x = torch.from_numpy(demos.images[want]).permute(0, 3, 1, 2).float().div_(255.0)
            maps[needs[idx]] = visual_backprop(head, x).float().numpy()
        here = idx[scored[idx]]
        if len(here):
            cur = maps[here - start]
            before = np.stack(
                [maps[i - 1 - start] if i > start else prev for i in here]  # type: ignore[misc]
            )
            out[here] = saliency_instability(cur, before)
        prev = maps[-1]
    return out, scored


def _frame_interval(demos: Frames | Demonstrations) -> float:
    """Median interval (s) between consecutive frames of the same segment."""
    t = demos.stamps_ns.astype(np.float64) * 1e-9
    same = demos.segment[1:] == demos.segment[:-1]
    gaps = np.diff(t)[same]
    gaps = gaps[gaps > 0.0]
    if not len(gaps):
        raise ValueError("no consecutive frames to pair")
    return float(np.median(gaps))


def fit_attention(
    policy: Any,
    demos: Frames | Demonstrations,
    heldout_fraction: float = 0.3,
    seed: int = 0,
    calibration: Frames | Demonstrations | None = None,
    every_n_frames: int = 1,
    pair_gap_s: float | None = None,
    **settings: Any,
) -> AttentionStats:
    """Calibrate the attention monitor: on ``calibration`` (in-distribution driving), or
    without it on the same held-out segments of ``demos`` as :func:`fit_monitor` uses.

    Args:
        every_n_frames: one scored pair every N frames (the monitor's default N).
        pair_gap_s: the widest pair scored (s); default 1.5 x the median frame interval of the
            calibration frames (a dropped frame makes a pair the calibration has not seen).
        settings: :func:`~ltc_controller.models.ood.fit_attention_stats` keywords
            (``window_s``, ``false_alarms_per_10min``, ``margin``, ``fault_factor``).

    Raises:
        ValueError: too few frames, no pairs, or bad settings.
    """
    if calibration is None:
        if len(demos) < 4:
            raise ValueError(f"{len(demos)} frames: too few to fit the monitor")
        val, seg = split_segments(demos, heldout_fraction, seed)
        calibration = _subset(demos, val, seg)
    if len(calibration) < 2:
        raise ValueError("the calibration frames are too few to pair")
    gap = pair_gap_s if pair_gap_s is not None else 1.5 * _frame_interval(calibration)
    scores, scored = attention_scores(policy, calibration, every_n_frames, gap)
    stamps = calibration.stamps_ns.astype(np.float64) * 1e-9
    heldout = []
    for s in np.unique(calibration.segment):
        i = np.flatnonzero((calibration.segment == s) & scored)
        if len(i):
            heldout.append((scores[i], stamps[i]))
    return fit_attention_stats(heldout, gap, every_n_frames, **settings)


def _subset(
    demos: Frames | Demonstrations, mask: NDArray[np.bool_], segment: NDArray[np.int64]
) -> Frames:
    """The frames of ``demos`` where ``mask``, in order, with segment ids ``segment[mask]``."""
    return Frames(demos.images[mask], demos.stamps_ns[mask], segment[mask])
