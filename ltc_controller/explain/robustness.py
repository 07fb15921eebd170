"""Attention robustness: SSIM between saliency maps of clean and noise-perturbed frames.

The protocol of Lechner et al. 2020 (*Neural circuit policies enabling auditable autonomy*, Nat.
Mach. Intell. 2:642-652, Fig. 4b and Methods): for each model, VisualBackProp saliency maps of
camera frames and of the same frames with additive zero-mean Gaussian noise of variance
``sigma^2`` in {0.1, 0.2, 0.3} (images in [0, 1]; here clipped back to [0, 1]), compared by the
structural similarity index (Wang et al. 2004, *Image quality assessment: from error visibility
to structural similarity*, IEEE TIP 13(4), Eq. 13 with alpha = beta = gamma = 1, C1 = (0.01 L)^2,
C2 = (0.03 L)^2, C3 = C2 / 2), averaged over the frames (the paper: 200 frames). Higher = the
attention moves less under noise.

:func:`ssim` is Wang et al.'s mean SSIM with an 11-tap Gaussian window (sigma 1.5, truncated at
3.5 sigma), population (co)variances, symmetric boundary extension and the border of half a
window left out of the mean: the same number as scikit-image's
``structural_similarity(a, b, data_range=L, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` (tested against it).

For the evaluation report: :func:`attention_robustness_section` returns a Markdown section (the
protocol in one paragraph and the table) for any set of policies, on frames the caller gives or
on :func:`sim_frames` (the clean evaluation scene driven by the privileged expert).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.explain.saliency import visual_backprop
from ltc_controller.models.policy import Policy

__all__ = [
    "NOISE_VARIANCES",
    "SsimStats",
    "add_noise",
    "attention_robustness_section",
    "robustness_table",
    "saliency_robustness",
    "saliency_ssim_per_frame",
    "sim_frames",
    "ssim",
]

#: The NCP paper's noise variances on images in [0, 1].
NOISE_VARIANCES: tuple[float, ...] = (0.1, 0.2, 0.3)


def _gaussian_taps(sigma: float, truncate: float) -> NDArray[np.float64]:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter(img: NDArray[np.float64], taps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Separable correlation with symmetric extension ("reflect" in SciPy's naming)."""
    r = len(taps) // 2
    padded = np.pad(img, r, mode="symmetric")
    rows = np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=0) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, len(taps), axis=1) @ taps


def ssim(
    a: NDArray[Any],
    b: NDArray[Any],
    data_range: float = 1.0,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two grey images (Wang et al. 2004, Eq. 13).

    Args:
        a, b: ``(H, W)`` arrays, same shape, at least one window (11 x 11 by default) large.
        data_range: L, the value range (1 for maps in [0, 1]; 255 for 8-bit images).
        sigma, truncate: Gaussian window (sigma px, radius ``int(truncate * sigma + 0.5)``).
        k1, k2: C1 = (k1 L)^2, C2 = (k2 L)^2.

    Returns:
        Mean SSIM over the image less a border of half a window, in [-1, 1].

    Raises:
        ValueError: shapes differ, are not 2-D, or are smaller than the window.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape, got {x.shape} and {y.shape}")
    taps = _gaussian_taps(sigma, truncate)
    win = len(taps)
    if min(x.shape) < win:
        raise ValueError(f"images {x.shape} are smaller than the {win}x{win} window")
    mx, my = _filter(x, taps), _filter(y, taps)
    vx = _filter(x * x, taps) - mx * mx
    vy = _filter(y * y, taps) - my * my
    cxy = _filter(x * y, taps) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def add_noise(
    images: NDArray[np.float32], variance: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """``images`` in [0, 1] plus zero-mean Gaussian noise of ``variance``, clipped to [0, 1]."""
    if variance < 0 or not math.isfinite(variance):
        raise ValueError(f"noise variance must be finite and >= 0, got {variance}")
    noise = rng.normal(0.0, math.sqrt(variance), size=images.shape).astype(np.float32)
    return np.clip(images + noise, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class SsimStats:
    """SSIM of clean vs noisy saliency over frames: mean, sample standard deviation, count."""

    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}"


def _saliency(policy: Policy, images: NDArray[np.float32], batch_size: int) -> NDArray[Any]:
    out = []
    with torch.inference_mode():
        for k in range(0, len(images), batch_size):
            out.append(visual_backprop(policy.head, torch.from_numpy(images[k : k + batch_size])))
    return torch.cat(out).numpy()


def saliency_ssim_per_frame(
    policy: Policy,
    images: NDArray[np.float32],
    variances: Sequence[float] = NOISE_VARIANCES,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[NDArray[Any], dict[float, NDArray[np.float64]]]:
    """VisualBackProp maps of the clean frames, and per noise variance the SSIM of each frame's
    clean map against its noisy one (the per-frame numbers behind :func:`saliency_robustness`).

    Args:
        policy, images, variances, seed, batch_size: see :func:`saliency_robustness`.

    Returns:
        ``(maps, {variance: ssim})``: ``maps`` ``(N, H, W)`` non-negative, ``ssim`` ``(N,)``.

    Raises:
        ValueError: ``images`` not ``(N, 3, H, W)`` with N >= 1, or a negative variance.
    """
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got {images.shape}")
    policy.eval()
    clean = _saliency(policy, images, batch_size)
    out: dict[float, NDArray[np.float64]] = {}
    for var in variances:
        rng = np.random.default_rng([seed, round(var * 1e6)])
        noisy = _saliency(policy, add_noise(images, var, rng), batch_size)
        out[float(var)] = np.array(
            [ssim(c, n_, data_range=1.0) for c, n_ in zip(clean, noisy, strict=True)]
        )
    return clean, out


def saliency_robustness(
    policy: Policy,
    images: NDArray[np.float32],
    variances: Sequence[float] = NOISE_VARIANCES,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[float, SsimStats]:
    """SSIM between VisualBackProp maps of clean and noisy frames, per noise variance.

    Args:
        policy: any policy with a conv head.
        images: ``(N, 3, H, W)`` float32 in [0, 1], the network input (policy colour order).
        variances: noise variances (the paper: 0.1, 0.2, 0.3).
        seed: noise RNG seed; the same seed gives every policy the same noise draws.
        batch_size: frames per head pass.

    Returns:
        ``{variance: SsimStats}`` (maps compared with L = 1).

    Raises:
        ValueError: ``images`` not ``(N, 3, H, W)`` with N >= 1, or a negative variance.
    """
    _, per_frame = saliency_ssim_per_frame(policy, images, variances, seed, batch_size)
    out: dict[float, SsimStats] = {}
    for var, v in per_frame.items():
        values = [float(x) for x in v]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[var] = SsimStats(statistics.fmean(values), sd, len(values))
    return out


def robustness_table(results: Mapping[str, Mapping[float, SsimStats]]) -> str:
    """A Markdown table: one row per model, one column per noise variance (mean ± sd)."""
    variances = sorted({v for r in results.values() for v in r})
    head = "| model | " + " | ".join(f"σ² = {v:g}" for v in variances) + " |"
    rule = "|---|" + "---:|" * len(variances)
    rows = [
        f"| {name} | " + " | ".join(str(r[v]) if v in r else "–" for v in variances) + " |"
        for name, r in results.items()
    ]
    return "\n".join([head, rule, *rows])


def sim_frames(
    n: int = 200,
    track_seed: int = 5000,
    condition: str = "clean",
    rate_hz: float = 20.0,
    speed_mps: float = 5.0,
    height: int = 78,
    width: int = 200,
) -> NDArray[np.float32]:
    """``n`` consecutive camera frames of the simulator driven by the privileged expert.

    Args:
        n: frames. track_seed: the track (evaluation tracks start at 5000). condition: scene
            condition (its style and track distribution; image effects are not applied).
        rate_hz: camera rate. speed_mps: driving speed. height, width: image size.

    Returns:
        ``(n, 3, height, width)`` float32 RGB in [0, 1].
    """
    from ltc_controller.sim.scenario import make_sim

    out = np.zeros((n, 3, height, width), dtype=np.float32)
    with make_sim(
        condition,
        track_seed,
        initial_speed=speed_mps,
        image_width=width,
        image_height=height,
    ) as sim:
        for k in range(n):
            out[k] = sim.render().transpose(2, 0, 1).astype(np.float32) / 255.0
            sim.set_command(*sim.expert_command(speed=speed_mps))
            sim.step(1.0 / rate_hz)
    return out


def attention_robustness_section(
    policies: Mapping[str, Policy | str | Path],
    images: NDArray[np.float32] | None = None,
    variances: Sequence[float] = NOISE_VARIANCES,
    seed: int = 0,
    n_frames: int = 200,
) -> str:
    """The report section: protocol paragraph + SSIM table (Markdown).

    Args:
        policies: ``{label: policy or policy file}``, e.g. ``{"NCP-19": ..., "LSTM(64)": ...,
            "CNN": ...}``.
        images: ``(N, 3, H, W)`` frames in [0, 1] (RGB; converted for ``bgr`` policies);
            default :func:`sim_frames` ``(n_frames)`` (the clean scene, track 5000).
        variances, seed: see :func:`saliency_robustness`.
        n_frames: frames rendered when ``images`` is not given.

    Raises:
        PolicyFileError: a file that does not load. ValueError: bad images.
    """
    from ltc_controller.models.policy_file import load_policy

    frames = sim_frames(n_frames) if images is None else images
    results: dict[str, dict[float, SsimStats]] = {}
    for label, p in policies.items():
        policy = p if isinstance(p, Policy) else load_policy(Path(p))
        x = frames[:, ::-1].copy() if policy.config.color_order == "bgr" else frames
        results[label] = saliency_robustness(policy, x, variances, seed)
    source = (
        f"{len(frames)} consecutive frames of the clean evaluation scene (track 5000, expert "
        "driving, 20 Hz)"
        if images is None
        else f"{len(frames)} frames"
    )
    text = [
        "## Attention robustness (saliency SSIM under camera noise)",
        "",
        "Protocol of Lechner et al. 2020 (Fig. 4b): VisualBackProp saliency of each frame and of "
        "the same frame with additive Gaussian noise of variance σ² (images in [0, 1], clipped), "
        "compared by SSIM (Gaussian window σ = 1.5 px, C1 = (0.01 L)², C2 = (0.03 L)², L = 1); "
        f"mean ± sd over {source}; the same noise draws for every model (seed {seed}). "
        "1 = the attention map does not change under noise.",
        "",
        robustness_table(results),
        "",
    ]
    return "\n".join(text)
