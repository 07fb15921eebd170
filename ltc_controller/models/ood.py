"""Statistics of the out-of-distribution monitors (issue 16 §1a, §1b): fit, calibration and
scores, numpy only; the per-frame monitors are :class:`ltc_controller.runtime.ood.FeatureMonitor`
and :class:`~ltc_controller.runtime.ood.AttentionMonitor`. The attention monitor (saliency
instability between consecutive frames, :class:`AttentionStats`) shares the EMA, the hysteresis
and the calibration below with the feature monitor.

A policy trained on some frames has seen a region of its feature space. At training time
(:func:`fit_feature_stats`) the features of the training frames give a mean ``mu`` and a
covariance ``S`` (shrunk towards its diagonal so it stays invertible with few frames); each new
frame's features ``x`` (``(F,)``, the head's output that the recurrent core integrates) get the
score

    s(x) = (x - mu)^T S^-1 (x - mu) / F,

the squared Mahalanobis distance per feature (Lee et al. 2018, "A simple unified framework for
detecting out-of-distribution samples and adversarial attacks", NeurIPS, applied here to the
policy's one feature layer): about 1 for frames like the training ones, large for frames the
head has never seen. One frame is noisy, so the monitor reports the exponential moving average
of ``s`` over the frames' stamps, time constant ``window_s`` (the score is the EMA).

Thresholds are calibrated on held-out in-distribution frames (segments not used for ``mu``,
``S``): ``degraded`` is the smallest level whose alarm onsets (the EMA rising above it) on the
held-out data are at most ``false_alarms_per_10min`` per 10 minutes, times ``margin``;
``fault`` is ``fault_factor`` × ``degraded``. The statistics and the calibration travel in the
policy file (:mod:`ltc_controller.models.policy_file`); a file without them loads, and the
monitor says it is unavailable.

Cost per frame: one ``(F,)`` subtraction and an ``(F, F)`` mat-vec into preallocated buffers
(F = 32 for the NCP head: a few microseconds), inside the frame's work and its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CLEAR_RATIO",
    "AttentionStats",
    "FeatureStats",
    "alarm_onsets",
    "attention_pairs",
    "auroc",
    "calibrate_thresholds",
    "ema_scores",
    "fit_attention_stats",
    "fit_feature_stats",
    "saliency_instability",
]


@dataclass(frozen=True)
class FeatureStats:
    """Feature statistics of a policy's training frames and the calibrated thresholds.

    Attributes:
        mean: ``(F,)`` float64 mean feature.
        precision: ``(F, F)`` float64 inverse of the shrunk covariance.
        window_s: EMA time constant of the score (s).
        degraded, fault: thresholds on the EMA score (dimensionless, squared Mahalanobis
            distance per feature).
        calibration: what the fit and the calibration measured (frames, minutes, onsets at
            each threshold on the held-out frames, score quantiles), for reports.
    """

    mean: NDArray[np.float64]
    precision: NDArray[np.float64]
    window_s: float
    degraded: float
    fault: float
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.mean.shape
        if len(f) != 1 or self.precision.shape != (f[0], f[0]):
            raise ValueError(
                f"FeatureStats: mean {self.mean.shape} and precision {self.precision.shape} "
                "must be (F,) and (F, F)"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.precision).all()):
            raise ValueError("FeatureStats: non-finite mean or precision")
        if not (self.window_s > 0.0 and 0.0 < self.degraded <= self.fault):
            raise ValueError(
                f"FeatureStats: expected window_s > 0 and 0 < degraded <= fault, got "
                f"window_s={self.window_s}, degraded={self.degraded}, fault={self.fault}"
            )

    @property
    def features(self) -> int:
        """F, the feature count."""
        return int(self.mean.shape[0])

    def scores(self, features: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Per-frame scores ``(N,)`` of features ``(N, F)`` (module docstring)."""
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.einsum("nf,fg,ng->n", d, self.precision, d) / self.features

    def to_metadata(self) -> dict[str, Any]:
        """The scalar part, JSON-ready (the arrays go in tensors)."""
        return {
            "window_s": self.window_s,
            "degraded": self.degraded,
            "fault": self.fault,
            "calibration": self.calibration,
        }

    @classmethod
    def from_parts(
        cls, mean: NDArray[Any], precision: NDArray[Any], meta: dict[str, Any]
    ) -> FeatureStats:
        """Inverse of :meth:`to_metadata` plus the two arrays. Raises ``ValueError``/``KeyError``
        on missing or invalid fields."""
        return cls(
            mean=np.asarray(mean, dtype=np.float64),
            precision=np.asarray(precision, dtype=np.float64),
            window_s=float(meta["window_s"]),
            degraded=float(meta["degraded"]),
            fault=float(meta["fault"]),
            calibration=dict(meta.get("calibration", {})),
        )


def ema_scores(
    scores: NDArray[np.float64], stamps_s: NDArray[np.float64], window_s: float
) -> NDArray[np.float64]:
    """The monitor's EMA of ``scores (N,)`` over one segment with stamps ``stamps_s (N,)`` (s),
    time constant ``window_s``, exactly as :class:`FeatureMonitor` computes it frame by frame."""
    out = np.empty(len(scores))
    ema = math.nan
    last = math.nan
    for i, (s, t) in enumerate(zip(scores, stamps_s, strict=True)):
        if math.isnan(ema):
            ema = float(s)
        else:
            a = 1.0 - math.exp(-max(0.0, float(t) - last) / window_s)
            ema += a * (float(s) - ema)
        last = float(t)
        out[i] = ema
    return out


#: An alarm raised above a threshold clears only below this fraction of it (hysteresis: a
#: score hovering at the threshold is one alarm, not one per crossing).
CLEAR_RATIO = 0.9


def alarm_onsets(emas: list[NDArray[np.float64]], threshold: float) -> int:
    """Alarm onsets over segments, as :class:`~ltc_controller.runtime.ood.FeatureMonitor` counts
    them: the EMA rises above ``threshold`` while no alarm is raised (a segment starts with none);
    a raised alarm clears when the EMA falls below ``CLEAR_RATIO * threshold``."""
    n = 0
    clear = CLEAR_RATIO * threshold
    for e in emas:
        # Indices where the EMA is above the threshold or below the clearing level; between the
        # two the alarm keeps its state, so only those points can change it.
        hi = e > threshold
        lo = e < clear
        idx = np.flatnonzero(hi | lo)
        if not len(idx):
            continue
        up = hi[idx]
        n += int(up[0]) + int(np.count_nonzero(up[1:] & ~up[:-1]))
    return n


def calibrate_thresholds(
    emas: list[NDArray[np.float64]],
    minutes: float,
    false_alarms_per_10min: float = 1.0,
    margin: float = 1.1,
    fault_factor: float = 2.0,
) -> tuple[float, float, dict[str, Any]]:
    """Thresholds on a monitor's EMA from held-out in-distribution segments (module docstring):
    ``degraded`` = ``margin`` x the smallest level with at most ``false_alarms_per_10min`` alarm
    onsets (:func:`alarm_onsets`, hysteresis included) per 10 minutes of ``minutes``,
    ``fault`` = ``fault_factor`` x ``degraded``. Shared by the feature and the attention monitor.

    Args:
        emas: the monitor's EMA over each held-out segment (``(n,)`` each).
        minutes: the segments' total duration (min).

    Returns:
        ``(degraded, fault, calibration)``: the dict holds what was measured (frames, minutes,
        target, onsets at each threshold, the EMA's maximum, margin, fault factor).

    Raises:
        ValueError: no EMA values, or ``margin``/``fault_factor`` below 1.
    """
    if not emas or sum(len(e) for e in emas) == 0:
        raise ValueError("no held-out scores to calibrate the thresholds on")
    if not (margin >= 1.0 and fault_factor >= 1.0 and false_alarms_per_10min >= 0.0):
        raise ValueError("margin and fault_factor must be >= 1, false_alarms_per_10min >= 0")
    allowed = int(math.floor(false_alarms_per_10min * minutes / 10.0))
    values = np.unique(np.concatenate(emas))
    # Smallest level with at most `allowed` onsets (onsets fall, nearly monotonically, with
    # the level): bisection over the observed EMA values, then the maximum as the fallback.
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if alarm_onsets(emas, float(values[mid])) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    level = float(values[lo])
    if alarm_onsets(emas, level) > allowed:
        level = float(values[-1])
    # A level of 0 (every held-out score 0) would make any noise an alarm.
    degraded = margin * max(level, 1e-12)
    fault = fault_factor * degraded
    return (
        degraded,
        fault,
        {
            "heldout_frames": int(sum(len(e) for e in emas)),
            "heldout_minutes": round(minutes, 3),
            "false_alarms_per_10min_target": false_alarms_per_10min,
            "heldout_onsets_degraded": alarm_onsets(emas, degraded),
            "heldout_onsets_fault": alarm_onsets(emas, fault),
            "heldout_ema_max": float(values[-1]),
            "margin": margin,
            "fault_factor": fault_factor,
        },
    )


def fit_feature_stats(
    train_features: NDArray[np.floating[Any]],
    heldout: list[tuple[NDArray[np.floating[Any]], NDArray[np.float64]]],
    window_s: float = 1.0,
    false_alarms_per_10min: float = 1.0,
    margin: float = 1.1,
    fault_factor: float = 2.0,
    shrinkage: float = 0.1,
) -> FeatureStats:
    """Fit the statistics on training features and calibrate the thresholds on held-out ones.

    Args:
        train_features: ``(N, F)`` features of the training frames.
        heldout: in-distribution segments not in ``train_features``: ``(features (n, F),
            stamps (n,) in s)`` each, in time order.
        window_s: EMA time constant (s).
        false_alarms_per_10min: alarm onsets allowed on the held-out data per 10 minutes.
        margin: factor on the calibrated level (>= 1).
        fault_factor: ``fault = fault_factor * degraded`` (>= 1).
        shrinkage: weight of the diagonal in the covariance, in [0, 1).

    Raises:
        ValueError: fewer than 2 training frames, no held-out frames, mismatched feature
            counts, non-finite features or bad settings.
    """
    x = np.asarray(train_features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"train_features: expected (N >= 2, F), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("train_features: non-finite values")
    if not heldout or sum(len(f) for f, _ in heldout) == 0:
        raise ValueError("heldout: no held-out frames to calibrate the thresholds on")
    if not (0.0 <= shrinkage < 1.0 and margin >= 1.0 and fault_factor >= 1.0):
        raise ValueError("shrinkage must be in [0, 1), margin and fault_factor >= 1")
    if not (window_s > 0.0 and false_alarms_per_10min >= 0.0):
        raise ValueError("window_s must be > 0 and false_alarms_per_10min >= 0")
    f = x.shape[1]
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False).reshape(f, f)
    diag = np.diag(np.diag(cov))
    shrunk = (1.0 - shrinkage) * cov + shrinkage * diag
    # A dead feature (zero variance) must not make the matrix singular.
    shrunk += np.eye(f) * max(1e-12, 1e-6 * float(np.trace(cov)) / f)
    precision = np.linalg.inv(shrunk)
    precision = 0.5 * (precision + precision.T)
    probe = FeatureStats(mean, precision, window_s, 1.0, 1.0)

    emas: list[NDArray[np.float64]] = []
    minutes = 0.0
    for feats, stamps in heldout:
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != f:
            raise ValueError(f"heldout features: expected (n, {f}), got {feats.shape}")
        st = np.asarray(stamps, dtype=np.float64)
        if len(st):
            minutes += float(st[-1] - st[0]) / 60.0
            emas.append(ema_scores(probe.scores(feats), st, window_s))
    degraded, fault, calibration = calibrate_thresholds(
        emas, minutes, false_alarms_per_10min, margin, fault_factor
    )
    train_scores = probe.scores(x)
    calibration = {
        "train_frames": int(x.shape[0]),
        **calibration,
        "train_score_p50": float(np.quantile(train_scores, 0.5)),
        "train_score_p99": float(np.quantile(train_scores, 0.99)),
        "shrinkage": shrinkage,
    }
    return FeatureStats(mean, precision, window_s, degraded, fault, calibration)


def auroc(negatives: NDArray[Any], positives: NDArray[Any]) -> float:
    """Area under the ROC curve of scores (``positives`` should score higher): the probability
    that a random positive scores above a random negative, ties counted half (the Mann-Whitney
    U statistic over ``n_pos * n_neg``).

    Raises:
        ValueError: an empty side.
    """
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError("auroc: both sides need scores")
    _, inverse, counts = np.unique(
        np.concatenate([pos, neg]), return_inverse=True, return_counts=True
    )
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = (first + (counts + 1) / 2.0)[inverse]  # average ranks, 1-based, ties share
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u) / (len(pos) * len(neg))


# -- the attention monitor (issue 16 §1b) -------------------------------------------------------


@dataclass(frozen=True)
class AttentionStats:
    """Calibration of the attention monitor (:class:`~ltc_controller.runtime.ood.AttentionMonitor`).

    The score of a pair of consecutive frames is the *saliency instability*

        a(S_t, S_{t-1}) = 1 - r(S_t, S_{t-1})

    with ``S`` the frame's VisualBackProp map (Bojarski et al. 2018, ICRA; the policy's own
    head, :func:`~ltc_controller.models.attention.visual_backprop`) and ``r`` the Pearson
    correlation over its pixels (0 for two maps that agree up to gain and offset, 1 for
    uncorrelated ones, up to 2; a constant map scores 1). It is the temporal form of the saliency
    stability Lechner et al. 2020 (Nat. Mach. Intell. 2:642-652, Fig. 4b) compare between models
    under input noise (there: SSIM of noisy vs clean maps of the same frame, which a running
    vehicle does not have; here: the frame before, 1/rate s earlier, which it has). At 20 Hz on
    the lane-keeping track consecutive maps correlate at about 0.999; where the head no longer
    finds what it was trained to attend to (sensor noise, an unfamiliar road surface), its
    attention jumps from frame to frame.

    Only pairs at most ``pair_gap_s`` apart are scored (a dropped frame makes a wider pair, which
    the calibration has not seen). With ``every_n_frames`` N > 1 one pair is scored every N taken
    frames (saliency of the frames with index ``i % N`` in ``{N - 1, 0}``, the score at ``i % N
    == 0``). The monitor reports the EMA of the scores over their stamps (time constant
    ``window_s``), thresholds calibrated as the feature monitor's
    (:func:`calibrate_thresholds`).

    Attributes:
        window_s: EMA time constant (s).
        pair_gap_s: the widest pair scored (s).
        every_n_frames: N, the pair rate the thresholds were calibrated at.
        degraded, fault: thresholds on the EMA score (dimensionless).
        calibration: what the calibration measured, for reports.
    """

    window_s: float
    pair_gap_s: float
    every_n_frames: int
    degraded: float
    fault: float
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (
            self.window_s > 0.0
            and self.pair_gap_s > 0.0
            and self.every_n_frames >= 1
            and 0.0 < self.degraded <= self.fault
        ):
            raise ValueError(
                f"AttentionStats: expected window_s > 0, pair_gap_s > 0, every_n_frames >= 1 "
                f"and 0 < degraded <= fault, got window_s={self.window_s}, pair_gap_s="
                f"{self.pair_gap_s}, every_n_frames={self.every_n_frames}, degraded="
                f"{self.degraded}, fault={self.fault}"
            )

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready (the policy file's ``attention`` metadata)."""
        return {
            "score": "saliency_instability",
            "window_s": self.window_s,
            "pair_gap_s": self.pair_gap_s,
            "every_n_frames": self.every_n_frames,
            "degraded": self.degraded,
            "fault": self.fault,
            "calibration": self.calibration,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> AttentionStats:
        """Inverse of :meth:`to_metadata`. Raises ``ValueError``/``KeyError`` on missing or
        invalid fields (an unknown ``score`` included)."""
        score = meta.get("score", "saliency_instability")
        if score != "saliency_instability":
            raise ValueError(f"unknown attention score {score!r}")
        return cls(
            window_s=float(meta["window_s"]),
            pair_gap_s=float(meta["pair_gap_s"]),
            every_n_frames=int(meta["every_n_frames"]),
            degraded=float(meta["degraded"]),
            fault=float(meta["fault"]),
            calibration=dict(meta.get("calibration", {})),
        )


def saliency_instability(
    current: NDArray[np.floating[Any]], previous: NDArray[np.floating[Any]]
) -> NDArray[np.float64]:
    """Row-wise ``1 - r`` (:class:`AttentionStats`) of saliency maps ``(N, H, W)`` (or
    ``(N, P)``) against ``previous`` of the same shape; a constant map scores 1."""
    a = np.asarray(current, dtype=np.float64).reshape(len(current), -1)
    b = np.asarray(previous, dtype=np.float64).reshape(len(previous), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt(np.einsum("np,np->n", a, a) * np.einsum("np,np->n", b, b))
    num = np.einsum("np,np->n", a, b)
    r = np.divide(num, den, out=np.zeros(len(a)), where=den > 0.0)
    return 1.0 - r


def attention_pairs(
    stamps_s: NDArray[np.float64],
    segment: NDArray[np.integer[Any]],
    every_n_frames: int,
    pair_gap_s: float,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which frames of recorded segments the attention monitor would compute saliency for and
    which it would score (against the frame before), as it does frame by frame
    (:class:`AttentionStats`; the frame index counts from each segment's start).

    Args:
        stamps_s: ``(N,)`` frame stamps (s), in time order within each segment.
        segment: ``(N,)`` segment ids (contiguous runs).

    Returns:
        ``(needs_saliency (N,), scored (N,))`` bool.
    """
    n = len(stamps_s)
    seg = np.asarray(segment)
    start = np.ones(n, dtype=bool)
    start[1:] = seg[1:] != seg[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    idx = np.arange(n) - first
    k = idx % every_n_frames
    needs = (k == 0) | (k == every_n_frames - 1)
    gap = np.full(n, np.inf)
    gap[1:] = np.diff(np.asarray(stamps_s, dtype=np.float64))
    scored = (k == 0) & (idx >= 1) & ~start & (gap > 0.0) & (gap <= pair_gap_s)
    return needs, scored


def fit_attention_stats(
    heldout: list[tuple[NDArray[np.float64], NDArray[np.float64]]],
    pair_gap_s: float,
    every_n_frames: int = 1,
    window_s: float = 1.0,
    false_alarms_per_10min: float = 1.0,
    margin: float = 1.1,
    fault_factor: float = 2.0,
) -> AttentionStats:
    """Calibrate the attention monitor on in-distribution driving.

    Args:
        heldout: per segment ``(scores (n,), stamps (n,) in s)`` of its scored pairs
            (:func:`attention_pairs`, :func:`saliency_instability`), in time order; each
            segment's duration counts from its first to its last scored pair.
        pair_gap_s, every_n_frames: as the scores were taken (stored for the monitor).
        window_s, false_alarms_per_10min, margin, fault_factor: as
            :func:`fit_feature_stats`.

    Raises:
        ValueError: no scored pairs, non-finite scores or bad settings.
    """
    if not (window_s > 0.0 and pair_gap_s > 0.0 and every_n_frames >= 1):
        raise ValueError("window_s and pair_gap_s must be > 0, every_n_frames >= 1")
    emas: list[NDArray[np.float64]] = []
    minutes = 0.0
    every: list[NDArray[np.float64]] = []
    for scores, stamps in heldout:
        s = np.asarray(scores, dtype=np.float64)
        t = np.asarray(stamps, dtype=np.float64)
        if s.shape != t.shape or s.ndim != 1:
            raise ValueError(f"heldout: scores {s.shape} and stamps {t.shape} must be (n,)")
        if not np.isfinite(s).all():
            raise ValueError("heldout: non-finite attention scores")
        if len(s):
            minutes += float(t[-1] - t[0]) / 60.0
            emas.append(ema_scores(s, t, window_s))
            every.append(s)
    if not emas:
        raise ValueError("heldout: no scored frame pairs to calibrate the attention monitor on")
    degraded, fault, calibration = calibrate_thresholds(
        emas, minutes, false_alarms_per_10min, margin, fault_factor
    )
    s = np.concatenate(every)
    calibration["heldout_score_p50"] = float(np.quantile(s, 0.5))
    calibration["heldout_score_p99"] = float(np.quantile(s, 0.99))
    return AttentionStats(window_s, pair_gap_s, every_n_frames, degraded, fault, calibration)
