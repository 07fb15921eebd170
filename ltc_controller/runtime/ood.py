"""The run-time out-of-distribution monitors (issue 16 §1a, §1b): on the perception head's
features (:class:`FeatureMonitor`) and on its attention (:class:`AttentionMonitor`, saliency
instability between consecutive frames).

The scores, their statistics and their calibration are in :mod:`ltc_controller.models.ood`; this
is the per-frame part the runtime calls for each frame it takes (inside the frame's work, so its
cost counts against the deadline), allocation-free.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from ltc_controller.models.heads import ConvHead, same_padding
from ltc_controller.models.ood import CLEAR_RATIO, AttentionStats, FeatureStats

__all__ = ["AttentionMonitor", "FeatureMonitor", "OodLevel", "next_level"]

#: Monitor levels; the values equal ``Health`` (OK, DEGRADED, FAULT).
OodLevel = int


def next_level(prev: OodLevel, score: float, degraded: float, fault: float) -> OodLevel:
    """A monitor's level after ``score``, from level ``prev``: raised above a threshold, left
    only below ``CLEAR_RATIO`` of it (hysteresis, as :func:`~ltc_controller.models.ood.
    alarm_onsets` counts onsets); a NaN score is FAULT."""
    if not score <= fault:
        return 2
    if prev == 2 and score >= CLEAR_RATIO * fault:
        return 2
    if score > degraded or (prev >= 1 and score >= CLEAR_RATIO * degraded):
        return 1
    return 0


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
        self.level = next_level(prev, self.score, self.degraded, self.fault)
        if self.level > 0 and prev == 0:
            self.alarms += 1
        if self.level == 2 and prev < 2:
            self.faults += 1


class AttentionMonitor:
    """The run-time attention monitor: saliency instability between consecutive frames
    (:class:`~ltc_controller.models.ood.AttentionStats`, which cites the method).

    Per frame the runtime asks :meth:`due`; a due frame goes through :meth:`take`, which runs
    the conv head once for both the features and the layer activations that VisualBackProp
    (Bojarski et al. 2018, Alg. 1; :func:`~ltc_controller.models.attention.visual_backprop`)
    needs, computes the frame's saliency map and scores it against the previous frame's. Other
    frames go through :meth:`skip`. With a backend whose features do not come from the torch
    head (``fused`` false), :meth:`take` gets both from the model's own pass when it offers
    ``features_and_channel_means`` (the ONNX backend's ``head_maps`` graph); otherwise it runs the
    model for the features and the torch head a second time for the activations (twice the
    head's cost on those frames).

    The saliency here is VisualBackProp before its per-image min-max normalisation (the Pearson
    correlation does not change under it), computed in NumPy into preallocated buffers: channel
    means of each conv layer's activations (torch, ``out=``), then for each layer deep to
    shallow the transposed convolution with a ones kernel as ``k x k`` strided additions into a
    zeroed buffer, cropped by the layer's padding, times the next shallower layer's mean. No
    per-frame allocation of arrays (views and scalars only).

    Attributes:
        score: EMA of the pair scores (NaN before the first scored pair).
        last: the last pair's own score (NaN before the first).
        level: 0 OK, 1 DEGRADED, 2 FAULT, with the feature monitor's hysteresis.
        every_n: N, one pair scored every N frames.
        frames, saliency_maps, pairs, unpaired: frames seen, saliency maps computed, pairs
            scored, due pairs not scored (the previous map missing or more than
            ``pair_gap_s`` older).
        alarms, faults: onsets of DEGRADED or worse, of FAULT.
    """

    def __init__(
        self,
        stats: AttentionStats,
        head: nn.Module,
        fused: bool = True,
        every_n: int = 0,
        degraded: float = 0.0,
        fault: float = 0.0,
    ) -> None:
        """``head``: the policy's conv head (``ConvHead`` or ``DroneTrunk``: ``convs``,
        ``feature_maps`` and ``features_and_maps``), on the runtime's device; ``fused``: the
        runtime's features are ``head(images)`` (torch and numba backends), so one head pass
        gives both. ``every_n``/``degraded``/``fault`` > 0 override the file's values.

        Raises:
            ValueError: a head without conv layers.
        """
        self.stats = stats
        self.head = head
        self.fused = fused
        self.every_n = every_n if every_n > 0 else stats.every_n_frames
        self.degraded = degraded if degraded > 0.0 else stats.degraded
        self.fault = fault if fault > 0.0 else stats.fault
        convs = list(head.convs)  # type: ignore[arg-type]
        if not convs:
            raise ValueError("AttentionMonitor: the head has no conv layers")
        h, w = int(head.image_height), int(head.image_width)  # type: ignore[arg-type]
        param = next(head.parameters())
        with torch.inference_mode():
            probe = head.feature_maps(  # type: ignore[operator]
                torch.zeros(1, 3, h, w, dtype=param.dtype, device=param.device)
            )
        sizes = [(h, w)] + [(int(m.shape[2]), int(m.shape[3])) for m in probe]
        self._cuda = param.device.type == "cuda"
        # Channel means A_l (host, float32), with torch views for out= (and device copies).
        self._means = [np.zeros(s, dtype=np.float32) for s in sizes[1:]]
        self._means_t = [torch.from_numpy(a) for a in self._means]
        self._means_dev = [
            torch.zeros(s, dtype=param.dtype, device=param.device) for s in sizes[1:]
        ]
        self._direct = param.dtype == torch.float32 and not self._cuda
        # Per layer l (deep to shallow): the up-sampling buffer, its k*k strided views for the
        # ones-kernel transposed convolution, the crop to layer l's input, the product buffer.
        same = isinstance(head, ConvHead)
        self._layers: list[tuple[NDArray[np.float32], list[NDArray[np.float32]], Any, Any]] = []
        for layer in range(len(convs) - 1, -1, -1):
            conv = convs[layer]
            kh, kw = conv.kernel_size
            sh, sw = conv.stride
            hl, wl = sizes[layer + 1]
            h_in, w_in = sizes[layer]
            if same:
                top, left = same_padding(h_in, kh, sh)[0], same_padding(w_in, kw, sw)[0]
            else:
                top, left = int(conv.padding[0]), int(conv.padding[1])
            full_h, full_w = (hl - 1) * sh + kh, (wl - 1) * sw + kw
            buf = np.zeros((max(full_h, top + h_in), max(full_w, left + w_in)), dtype=np.float32)
            views = [
                buf[dy : dy + (hl - 1) * sh + 1 : sh, dx : dx + (wl - 1) * sw + 1 : sw]
                for dy in range(kh)
                for dx in range(kw)
            ]
            crop = buf[top : top + h_in, left : left + w_in]
            prod = np.zeros((h_in, w_in), dtype=np.float32) if layer > 0 else None
            self._layers.append((buf, views, crop, prod))
        self._cur = np.zeros((h, w), dtype=np.float32)
        self._prev = np.zeros((h, w), dtype=np.float32)
        self._cur_flat = self._cur.reshape(-1)
        self._prev_flat = self._prev.reshape(-1)
        self._prev_norm2 = 0.0
        self._prev_t = -math.inf
        self._index = 0  # frames since the start (the every-N phase)
        self.score = math.nan
        self.last = math.nan
        self.level: OodLevel = 0
        self._t = math.nan
        self.frames = 0
        self.saliency_maps = 0
        self.pairs = 0
        self.unpaired = 0
        self.alarms = 0
        self.faults = 0

    def due(self) -> bool:
        """Whether the next frame needs its saliency (:class:`AttentionStats`: index ``i % N``
        in ``{N - 1, 0}``)."""
        k = self._index % self.every_n
        return k == 0 or k == self.every_n - 1

    def skip(self) -> None:
        """A frame taken without saliency (not due)."""
        self._index += 1
        self.frames += 1

    def take(self, images: Tensor, stamp_s: float, model: Any) -> Tensor:
        """A due frame: its features ``(1, F)`` (as ``model.features(images)`` gives them) and,
        on the way, its saliency map and, when it closes a pair, the pair's score. Call inside
        ``torch.inference_mode()``. ``images``: ``(1, 3, H, W)`` on the head's device."""
        if self.fused:
            features, maps = self.head.features_and_maps(images)  # type: ignore[operator]
            self._channel_means(maps)
        elif getattr(model, "has_channel_means", False):
            features, means = model.features_and_channel_means(images)
            for dst, src in zip(self._means, means, strict=True):
                np.copyto(dst, src[0])
        else:
            features = model.features(images)
            self._channel_means(self.head.feature_maps(images))  # type: ignore[operator]
        self._saliency()
        self.saliency_maps += 1
        cur = self._cur_flat
        np.subtract(cur, np.float32(cur.mean()), out=cur)  # centred: r is a cosine now
        n2 = float(np.dot(cur, cur))
        k = self._index % self.every_n
        self._index += 1
        self.frames += 1
        if k == 0 and self._index > 1:
            gap = stamp_s - self._prev_t
            if 0.0 < gap <= self.stats.pair_gap_s:
                den = math.sqrt(n2 * self._prev_norm2)
                r = float(np.dot(cur, self._prev_flat)) / den if den > 0.0 else 0.0
                self._score(1.0 - r, stamp_s)
            else:
                self.unpaired += 1
        self._prev_norm2 = n2
        self._cur, self._prev = self._prev, self._cur
        self._cur_flat, self._prev_flat = self._prev_flat, self._cur_flat
        self._prev_t = stamp_s
        return features

    def _channel_means(self, maps: list[Tensor]) -> None:
        """Each conv layer's channel mean of one frame's activations into ``self._means``."""
        for a_t, dev, m in zip(self._means_t, self._means_dev, maps, strict=True):
            if self._direct:
                torch.mean(m[0], dim=0, out=a_t)
            else:
                torch.mean(m[0], dim=0, out=dev)
                a_t.copy_(dev)

    def _saliency(self) -> None:
        """VisualBackProp (un-normalised) from ``self._means`` into ``self._cur``."""
        means = self._means
        mask = means[-1]
        last = len(self._layers) - 1
        for i, (buf, views, crop, prod) in enumerate(self._layers):
            buf.fill(0.0)
            for v in views:
                np.add(v, mask, out=v)
            if i < last:
                # Layer l = last - i; the next mask lives at its input, layer l - 1's output.
                np.multiply(crop, means[last - i - 1], out=prod)
                mask = prod
            else:
                np.copyto(self._cur, crop)

    def _score(self, s: float, stamp_s: float) -> None:
        self.pairs += 1
        self.last = s
        if math.isnan(self.score) or not math.isfinite(s):
            self.score = s
        else:
            a = 1.0 - math.exp(-max(0.0, stamp_s - self._t) / self.stats.window_s)
            self.score += a * (s - self.score)
        self._t = stamp_s
        prev = self.level
        self.level = next_level(prev, self.score, self.degraded, self.fault)
        if self.level > 0 and prev == 0:
            self.alarms += 1
        if self.level == 2 and prev < 2:
            self.faults += 1
