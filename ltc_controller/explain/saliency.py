"""Where a policy looks: VisualBackProp for the conv head, integrated gradients for any policy.

**VisualBackProp** (:func:`~ltc_controller.models.attention.visual_backprop`, re-exported here)
and the overlay live in :mod:`ltc_controller.models.attention`, so the live node needs nothing
from this room.

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

import torch
import torch.nn.functional as F
from torch import Tensor

from ltc_controller.models.attention import normalize_maps, overlay, visual_backprop
from ltc_controller.models.policy import Policy

__all__ = [
    "attribution_map",
    "gaussian_blur",
    "integrated_gradients",
    "normalize_maps",
    "overlay",
    "visual_backprop",
]


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
