"""Feature statistics of the out-of-distribution monitor (issue 16 §1a): fit, calibration and
scores, numpy only; the per-frame monitor is :class:`ltc_controller.runtime.ood.FeatureMonitor`.

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
    "FeatureStats",
    "alarm_onsets",
    "auroc",
    "ema_scores",
    "fit_feature_stats",
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
    degraded = margin * level
    fault = fault_factor * degraded
    train_scores = probe.scores(x)
    calibration = {
        "train_frames": int(x.shape[0]),
        "heldout_frames": int(sum(len(e) for e in emas)),
        "heldout_minutes": round(minutes, 3),
        "false_alarms_per_10min_target": false_alarms_per_10min,
        "heldout_onsets_degraded": alarm_onsets(emas, degraded),
        "heldout_onsets_fault": alarm_onsets(emas, fault),
        "heldout_ema_max": float(values[-1]),
        "train_score_p50": float(np.quantile(train_scores, 0.5)),
        "train_score_p99": float(np.quantile(train_scores, 0.99)),
        "margin": margin,
        "fault_factor": fault_factor,
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
