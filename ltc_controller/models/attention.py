"""Where the conv head looks: VisualBackProp saliency and its overlay on the network input.

**VisualBackProp** (Bojarski et al. 2018, *VisualBackProp: efficient visualization of CNNs for
autonomous driving*, ICRA; Alg. 1, as Lechner et al. 2020 use it for the NCP, Nat. Mach. Intell.
2:642-652, Fig. 4b and Methods). With ``A_l`` the channel mean of conv layer ``l``'s activations
(after ReLU; l = 1 shallow ... L deep)::

    M_L = A_L
    M_{l-1} = up_l(M_l) * A_{l-1}        l = L .. 2   (point-wise product)
    S = up_1(M_1)                        at the input resolution
    S <- (S - min S) / (max S - min S)   per image, in [0, 1]

``up_l`` is a transposed convolution with a kernel of ones of layer ``l``'s kernel size and
stride (the paper's "deconvolution"; the variant of Bojarski et al., not the bilinear resize some
re-implementations use). Its output lives in the coordinates of layer ``l``'s *padded* input, so
it is cropped by the padding before the first row/column (TF ``same``: the smaller half, see
:func:`~ltc_controller.models.heads.same_padding`) and cut (or zero-padded) to the input size of
layer ``l``: every unit's value lands exactly on the pixels its receptive field covered. Each
first-layer unit therefore spreads over its 5 x 5 footprint; a VisualBackProp map cannot be
sharper than that.

VisualBackProp reads only the conv head, so it works for every architecture on the NCP head
(``ncp_ltc``, ``cfc``, ``lstm``, ``cnn``, ...) and on the drone trunk (``valid`` padding).

Used live by the policy node's saliency worker (off the control path) and offline by
:mod:`ltc_controller.explain`. Torch and NumPy only: no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from ltc_controller.models.heads import ConvHead, same_padding

__all__ = ["normalize_maps", "overlay", "visual_backprop"]


def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each ``(H, W)`` map of ``(B, H, W)`` to [0, 1]; a constant map -> 0."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-30), torch.zeros_like(maps))


def _align(up: Tensor, size: tuple[int, int], before: tuple[int, int]) -> Tensor:
    """Crop ``before`` rows/cols of padding, then cut or zero-pad ``up (B, 1, h, w)`` to size."""
    top, left = before
    h, w = size
    up = up[:, :, top : top + h, left : left + w]
    short_h, short_w = h - up.shape[2], w - up.shape[3]
    if short_h > 0 or short_w > 0:
        up = F.pad(up, (0, max(short_w, 0), 0, max(short_h, 0)))
    return up


def visual_backprop(head: nn.Module, images: Tensor) -> Tensor:
    """VisualBackProp saliency of a conv head (see the module docstring).

    Args:
        head: :class:`~ltc_controller.models.heads.ConvHead` (TF ``same`` padding) or
            :class:`~ltc_controller.models.heads.DroneTrunk` (``valid``): anything with
            ``convs`` (``nn.Conv2d`` list) and ``feature_maps(images)`` returning each conv
            layer's activations, shallow to deep.
        images: ``(B, 3, H, W)`` float in [0, 1], the network input (the head normalises).

    Returns:
        ``(B, H, W)`` float saliency in [0, 1] (detached, on ``images``' device).

    Raises:
        ValueError: ``images`` of a shape the head does not take.
    """
    same = isinstance(head, ConvHead)
    convs: Sequence[Any] = head.convs  # type: ignore[assignment]
    with torch.no_grad():
        maps: list[Tensor] = head.feature_maps(images)  # type: ignore[operator]
        means = [m.mean(dim=1, keepdim=True) for m in maps]
        sizes = [(int(images.shape[2]), int(images.shape[3]))]
        sizes += [(int(m.shape[2]), int(m.shape[3])) for m in maps]
        mask = means[-1]
        for layer in range(len(maps) - 1, -1, -1):
            conv = convs[layer]
            kh, kw = conv.kernel_size
            sh, sw = conv.stride
            ones = torch.ones(1, 1, kh, kw, dtype=mask.dtype, device=mask.device)
            up = F.conv_transpose2d(mask, ones, stride=(sh, sw))
            h_in, w_in = sizes[layer]
            if same:
                before = (same_padding(h_in, kh, sh)[0], same_padding(w_in, kw, sw)[0])
            else:
                ph, pw = conv.padding
                before = (int(ph), int(pw))
            up = _align(up, (h_in, w_in), before)
            mask = up * means[layer - 1] if layer > 0 else up
        return normalize_maps(mask[:, 0])


def _hot(s: NDArray[np.float32]) -> NDArray[np.float32]:
    """The "hot" colour map, black -> red -> yellow -> white, as ``(..., 3)`` in [0, 255]
    (computed, so the live path imports no plotting library)."""
    t = 3.0 * s[..., None] - np.array([0.0, 1.0, 2.0], dtype=np.float32)
    return np.clip(t, 0.0, 1.0) * np.float32(255.0)


def overlay(
    rgb: NDArray[np.uint8], saliency: NDArray[Any], alpha: float = 0.8
) -> NDArray[np.uint8]:
    """Blend a saliency map over an image: where saliency is 0 the image shows unchanged, where
    it is ``s`` the "hot" colour map (black, red, yellow, white) covers it with opacity
    ``alpha * sqrt(s)`` (the square root keeps mid-level saliency visible).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        saliency: ``(H, W)`` in [0, 1] (values outside are clipped).
        alpha: opacity at saliency 1.

    Returns:
        ``(H, W, 3)`` uint8 (a new array).

    Raises:
        ValueError: shapes that do not match.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or saliency.shape != rgb.shape[:2]:
        raise ValueError(f"rgb {rgb.shape} and saliency {saliency.shape} do not match")
    s = np.clip(np.asarray(saliency, dtype=np.float32), 0.0, 1.0)
    colour = _hot(s)
    w = (alpha * np.sqrt(s))[:, :, None]
    out = rgb.astype(np.float32) * (1.0 - w) + colour * w
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
