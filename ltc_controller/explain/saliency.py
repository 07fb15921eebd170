"""Where a policy looks: VisualBackProp for the conv head, integrated gradients for any policy.

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

**Integrated gradients** (Sundararajan et al. 2017, *Axiomatic attribution for deep networks*,
ICML, Eq. 1-3) of one output at one frame of a sequence, through the head *and* the core: with
the state before frame ``t`` fixed (computed from the real frames ``< t``), ``f(x)`` is the
output after frame ``t``'s integration steps with features of image ``x``; the attribution is
``(x - x') * mean_k grad f(x' + a_k (x - x'))`` with midpoint nodes ``a_k = (k + 1/2) / n``
(completeness: ``sum(attr) ~= f(x) - f(x')``). Written out here (a few lines of autograd) rather
than pulled from a library. The default baseline ``x'`` is the frame blurred (Gaussian, 5 px),
not a black or grey image: the head standardises each image, so it cannot tell ``x`` from
``c + a (x - c)`` for a constant ``c`` and any ``a`` above a tiny threshold, and the whole path
integral of a constant baseline would sit in that threshold (a degenerate, badly sampled
attribution). From a blurred baseline the path adds the image's detail, which is what the head
reads.
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
from ltc_controller.models.policy import Policy

__all__ = [
    "attribution_map",
    "gaussian_blur",
    "integrated_gradients",
    "normalize_maps",
    "overlay",
    "visual_backprop",
]


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


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """``(..., C, H, W)`` images blurred by a separable Gaussian of ``sigma`` px (radius
    3 sigma, reflected borders)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    taps = taps / taps.sum()
    shape = images.shape
    flat = images.reshape(-1, 1, shape[-2], shape[-1])
    pad_h, pad_w = min(radius, shape[-2] - 1), min(radius, shape[-1] - 1)
    flat = F.pad(flat, (pad_w, pad_w, 0, 0), mode="reflect")
    flat = F.conv2d(flat, taps[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    flat = F.pad(flat, (0, 0, pad_h, pad_h), mode="reflect")
    flat = F.conv2d(flat, taps[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return flat.reshape(shape)


def integrated_gradients(
    policy: Policy,
    images: Tensor,
    step: int = -1,
    frame_steps: Tensor | None = None,
    output: int | str = 0,
    baseline: Tensor | str = "blur",
    blur_sigma: float = 5.0,
    n_steps: int = 32,
    batch_size: int = 16,
    state: Tensor | None = None,
) -> Tensor:
    """Integrated gradients of one output at frame ``step`` w.r.t. that frame's image.

    Args:
        policy: any :class:`~ltc_controller.models.policy.Policy` (every architecture).
        images: ``(T, 3, H, W)`` float in [0, 1], one sequence.
        step: the frame t whose output is explained (negative counts from the end).
        frame_steps: ``(T,)`` integer integration steps each frame takes, as
            :meth:`Policy.run_sequence` takes them (from the runtime's stepping rule:
            ``runtime.schedule.step_counts`` of the frame stamps, or the runtime's own
            ``TickResult.steps``); ``None`` = one fixed step per frame.
        output: output index or name (``config.output_names``), e.g. ``"steering_angle"``.
        baseline: ``(3, H, W)`` reference image ``x'``, or ``"blur"`` (the frame blurred by
            ``blur_sigma`` px; the default, see the module docstring) or ``"black"``.
        blur_sigma: Gaussian blur of the ``"blur"`` baseline (px).
        n_steps: Riemann nodes on the path (midpoint rule).
        batch_size: path points per forward/backward pass (memory vs speed).
        state: ``(1, S)`` state before frame 0; ``None`` = zeros.

    Returns:
        ``(3, H, W)`` attribution of frame ``step``'s image, in output units (sums to about
        ``f(x) - f(x')``).

    Raises:
        ValueError: bad shapes, an unknown output, or a frame that takes no integration step
            (its image cannot change its own output: e.g. the first frame of
            ``step_counts(stamps)``, which starts the grid).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (T, 3, H, W), got {tuple(images.shape)}")
    frames = int(images.shape[0])
    t = step + frames if step < 0 else step
    if not 0 <= t < frames:
        raise ValueError(f"step {step} out of range for {frames} frames")
    names = policy.config.output_names
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"unknown output {output!r}; the policy has {list(names)}")
        k = names.index(output)
    else:
        k = int(output)
        if not 0 <= k < len(names):
            raise ValueError(f"output index {output} out of range for outputs {list(names)}")
    if n_steps < 1 or batch_size < 1:
        raise ValueError("n_steps and batch_size must be >= 1")
    if frame_steps is not None and frame_steps.shape != (frames,):
        raise ValueError(f"frame_steps must be ({frames},), got {tuple(frame_steps.shape)}")
    counts = None if frame_steps is None else frame_steps.reshape(1, frames).to(torch.int64)
    n_t = 1 if counts is None else int(counts[0, t])
    if n_t == 0:
        raise ValueError(
            f"frame {t} takes no integration step (frame_steps[{t}] = 0): its image does not "
            "reach its own output"
        )
    x = images[t]
    if isinstance(baseline, str):
        if baseline not in ("blur", "black"):
            raise ValueError(f"baseline {baseline!r}: expected 'blur', 'black' or an image")
        x0 = gaussian_blur(x, blur_sigma) if baseline == "blur" else torch.zeros_like(x)
    else:
        x0 = baseline.to(x)
    if x0.shape != x.shape:
        raise ValueError(f"baseline must be {tuple(x.shape)}, got {tuple(x0.shape)}")
    with torch.no_grad():
        s0 = policy.initial_state(1, x.device, x.dtype) if state is None else state
        if t > 0:
            feats = policy.features(images[:t]).unsqueeze(0)
            s0 = policy.run_sequence(feats, None if counts is None else counts[:, :t], s0)[1]
    # Frame t alone, with its n_t steps.
    n_path = None if counts is None else counts[:, t : t + 1]
    alphas = (torch.arange(n_steps, dtype=x.dtype, device=x.device) + 0.5) / n_steps
    grad_sum = torch.zeros_like(x)
    for a in alphas.split(batch_size):
        path = (x0 + a.view(-1, 1, 1, 1) * (x - x0)).requires_grad_(True)
        n = path.shape[0]
        feats = policy.features(path).unsqueeze(1)
        out = policy.run_sequence(
            feats, None if n_path is None else n_path.expand(n, 1), s0.expand(n, -1)
        )[0]
        (grad,) = torch.autograd.grad(out[:, 0, k].sum(), path)
        grad_sum += grad.sum(0)
    return ((x - x0) * grad_sum / n_steps).detach()


def attribution_map(attribution: Tensor, clip_percentile: float = 99.0) -> Tensor:
    """``(3, H, W)`` or ``(B, 3, H, W)`` attribution -> ``(H, W)`` / ``(B, H, W)`` map in [0, 1]:
    the absolute attribution summed over colour channels, divided by its ``clip_percentile``-th
    percentile and clipped at 1 (a few extreme pixels would otherwise leave the rest black)."""
    single = attribution.dim() == 3
    a = (attribution.unsqueeze(0) if single else attribution).abs().sum(1)
    top = torch.quantile(a.flatten(1).float(), clip_percentile / 100.0, dim=1).to(a.dtype)
    top = torch.where(top > 0, top, a.flatten(1).amax(1).clamp_min(1e-30))
    m = (a / top.view(-1, 1, 1)).clamp(0.0, 1.0)
    return m[0] if single else m


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
