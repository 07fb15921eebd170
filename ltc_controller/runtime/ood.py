"""The run-time out-of-distribution monitor on the perception head's features (issue 16 §1a).

The score, its statistics and their calibration are in :mod:`ltc_controller.models.ood`; this
is the per-frame part the runtime calls for each frame it takes (inside the frame's work, so its
cost counts against the deadline), allocation-free.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ltc_controller.models.ood import CLEAR_RATIO, FeatureStats

__all__ = ["FeatureMonitor", "OodLevel"]

#: Monitor levels; the values equal ``Health`` (OK, DEGRADED, FAULT).
OodLevel = int


class FeatureMonitor:
    """The run-time monitor: :meth:`observe` each new frame's features, read :attr:`level`.

    Allocation-free per frame (preallocated buffers). :meth:`reset` forgets the EMA (a state
    reset: the first frame after it starts a new average).

    Attributes:
        score: the EMA score (NaN before the first frame).
        last: the last frame's own score.
        level: 0 OK, 1 DEGRADED (``score > degraded``), 2 FAULT (``score > fault``); a level
            is left when the score falls below ``CLEAR_RATIO`` (0.9) of its threshold.
        frames, alarms, faults: frames observed; onsets of DEGRADED or worse, of FAULT.
    """

    def __init__(self, stats: FeatureStats, degraded: float = 0.0, fault: float = 0.0) -> None:
        """``degraded``/``fault`` > 0 override the calibrated thresholds."""
        self.stats = stats
        self.degraded = degraded if degraded > 0.0 else stats.degraded
        self.fault = fault if fault > 0.0 else stats.fault
        self._mean = stats.mean.astype(np.float32)
        self._prec = stats.precision.astype(np.float32)
        self._d = np.zeros(stats.features, dtype=np.float32)
        self._pd = np.zeros(stats.features, dtype=np.float32)
        self._inv_f = 1.0 / stats.features
        self.score = math.nan
        self.last = math.nan
        self.level: OodLevel = 0
        self._t = math.nan
        self.frames = 0
        self.alarms = 0
        self.faults = 0

    def reset(self) -> None:
        self.score = math.nan
        self._t = math.nan

    def observe(self, features: NDArray[np.float32], stamp_s: float) -> None:
        """One frame's features ``(F,)`` (or ``(1, F)``) float32, stamped ``stamp_s`` (s).
        Non-finite features give a non-finite score: level FAULT."""
        np.subtract(features.reshape(-1), self._mean, out=self._d)
        np.matmul(self._prec, self._d, out=self._pd)
        s = float(np.dot(self._d, self._pd)) * self._inv_f
        self.last = s
        if math.isnan(self.score) or not math.isfinite(s):
            self.score = s
        else:
            a = 1.0 - math.exp(-max(0.0, stamp_s - self._t) / self.stats.window_s)
            self.score += a * (s - self.score)
        self._t = stamp_s
        self.frames += 1
        prev = self.level
        sc = self.score
        # Raise above a threshold, clear below CLEAR_RATIO of it (NaN: FAULT).
        if not sc <= self.fault:
            self.level = 2
        elif prev == 2 and sc >= CLEAR_RATIO * self.fault:
            self.level = 2
        elif sc > self.degraded or (prev >= 1 and sc >= CLEAR_RATIO * self.degraded):
            self.level = 1
        else:
            self.level = 0
        if self.level > 0 and prev == 0:
            self.alarms += 1
        if self.level == 2 and prev < 2:
            self.faults += 1
