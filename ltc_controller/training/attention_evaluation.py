"""The attention stage of `compare`: does a policy attend to the task, and does its attention hold
under camera noise? The same frames and noise draws for every policy.

Two numbers per policy and calibration episode (an unseen track/world driven by the unperturbed
expert; the episodes are the *tasks* of the statistics, as tracks are for the closed-loop
metrics, and the training seeds the *runs*):

- **saliency SSIM under noise**: the mean over the episode's frames of the SSIM between the
  VisualBackProp map of a frame and of the same frame with Gaussian noise of variance 0.1, 0.2,
  0.3 (Lechner et al. 2020, Nat. Mach. Intell. 2:642-652, Fig. 4b;
  :func:`~ltc_controller.explain.robustness.saliency_ssim_per_frame`);
- **saliency mass on the task**: the mean fraction of each clean map's mass on marking-like
  pixels (car: lane paint) or target-like pixels (drone: the red target), the colour masks of
  :mod:`ltc_controller.explain.metrics`, with the mask's share of the image beside it (a map
  with no preference puts that share on it).

Both go through :func:`~ltc_controller.training.stats.comparison_tables` (IQM with a 95 %
stratified-bootstrap interval, P(reference better)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AttentionRecord",
    "attention_markdown",
    "attention_records",
    "measure_attention",
]

#: Metric names of :class:`AttentionRecord` (the statistics' ``HIGHER_IS_BETTER`` keys).
SSIM = "saliency_ssim"
MASS = "task_mass"


@dataclass(frozen=True)
class AttentionRecord:
    """One policy x calibration episode x condition (``"noise_0.1"`` ...: the SSIM; ``"clean"``:
    the mass on the task mask), shaped for :func:`~ltc_controller.training.stats.score_matrix`
    (``episode`` is the task)."""

    model: str
    policy: str
    condition: str
    episode: int
    saliency_ssim: float
    task_mass: float


def _even(n_total: int, n: int) -> NDArray[np.int64]:
    """``min(n, n_total)`` distinct indices spread evenly over ``range(n_total)``."""
    n = min(n, n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))


def measure_attention(
    policy: Any,
    images: NDArray[np.uint8],
    segment: NDArray[np.int64],
    *,
    mask: str,
    frames: int = 200,
    variances: Sequence[float] = (0.1, 0.2, 0.3),
    seed: int = 0,
) -> dict[str, Any]:
    """The attention numbers of one policy on ``frames`` frames spread evenly over ``images``.

    Args:
        policy: a :class:`~ltc_controller.models.policy.Policy` with a conv head.
        images: ``(N, H, W, 3)`` uint8 RGB at the policy's input size (``Demonstrations.images``).
        segment: ``(N,)`` episode (segment) id of each image: the tasks.
        mask: ``"marking_like"`` (car) or ``"target_like"`` (drone).
        frames: frames used (at most N), the same indices for every policy.
        variances: noise variances of the SSIM. seed: noise seed (the same draws for all).

    Returns:
        ``{"frames", "mask", "episodes": [segment id ...], "ssim": {"0.1": [per-episode mean]
        ...}, "mass": [per-episode mean], "share": [per-episode mean mask share]}``; an episode's
        mass averages its frames whose map has mass (NaN when none has).

    Raises:
        ValueError: no images, a shape mismatch or an unknown ``mask``.
    """
    from ltc_controller.explain.metrics import marking_like_mask, mass_fraction, target_like_mask
    from ltc_controller.explain.robustness import saliency_ssim_per_frame

    masks = {"marking_like": marking_like_mask, "target_like": target_like_mask}
    if mask not in masks:
        raise ValueError(f"mask must be one of {sorted(masks)}, got {mask!r}")
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(segment) or not len(images):
        raise ValueError(f"images (N, H, W, 3) and segment (N,) needed, got {images.shape}")
    idx = _even(len(images), frames)
    rgb = images[idx]
    x = rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    if policy.config.color_order == "bgr":
        x = x[:, ::-1].copy()
    maps, per_frame = saliency_ssim_per_frame(policy, x, variances, seed)
    on = masks[mask](rgb)
    mass = mass_fraction(maps, on)
    has_mass = maps.sum(axis=(1, 2)) > 0
    share = on.mean(axis=(1, 2))
    seg = segment[idx]
    episodes = [int(s) for s in np.unique(seg)]

    def per_episode(v: NDArray[Any], ok: NDArray[np.bool_] | None = None) -> list[float]:
        out = []
        for s in episodes:
            sel = (seg == s) if ok is None else (seg == s) & ok
            out.append(float(v[sel].mean()) if sel.any() else float("nan"))
        return out

    return {
        "frames": len(idx),
        "mask": mask,
        "episodes": episodes,
        "ssim": {f"{v:g}": per_episode(per_frame[float(v)]) for v in variances},
        "mass": per_episode(mass, has_mass),
        "share": per_episode(share),
    }


def attention_records(model: str, policy: str, result: Mapping[str, Any]) -> list[AttentionRecord]:
    """:func:`measure_attention`'s result as records: per episode one ``noise_<var>`` record
    per variance (SSIM) and one ``clean`` record (mass); episodes are numbered 0.. in order."""
    nan = float("nan")
    out = []
    for k, _ in enumerate(result["episodes"]):
        for var, values in result["ssim"].items():
            out.append(AttentionRecord(model, policy, f"noise_{var}", k, values[k], nan))
        out.append(AttentionRecord(model, policy, "clean", k, nan, result["mass"][k]))
    return out


def attention_markdown(
    records: Sequence[AttentionRecord],
    results: Sequence[Mapping[str, Any]],
    *,
    reference: str,
    reps: int,
    source: str,
) -> str:
    """The report section: protocol, then SSIM and task-mass tables (IQM over seeds x
    episodes with 95 % intervals and P(``reference`` better)), or a line saying why not.

    ``results``: the :func:`measure_attention` results behind ``records`` (the mask's share of
    the image is reported from them). ``source``: where the frames came from (one phrase)."""
    from ltc_controller.training.stats import comparison_tables
    from ltc_controller.training.stats import markdown as stats_markdown

    head = "## Attention (saliency SSIM under camera noise, saliency mass on the task)"
    if not records:
        return f"{head}\n\nNot measured: {source}.\n"
    mask = results[0]["mask"]
    frames = sorted({int(r["frames"]) for r in results})
    shares = [s for r in results for s in r["share"] if np.isfinite(s)]
    share = float(np.mean(shares)) if shares else float("nan")
    ssim_recs = [r for r in records if r.condition.startswith("noise_")]
    mass_recs = [r for r in records if r.condition == "clean"]
    # A policy whose maps have no mass in some episode has no mass number there: it is left
    # out of the mass table rather than scored 0 (stated below when it happens).
    bad = sorted({r.policy for r in mass_recs if not np.isfinite(r.task_mass)})
    mass_recs = [r for r in mass_recs if r.policy not in bad]
    parts = [
        head,
        "",
        f"The same {'/'.join(map(str, frames))} frames for every policy: {source}. "
        "SSIM: VisualBackProp map of each frame against the same frame with zero-mean Gaussian "
        "noise of variance σ² (images in [0, 1], clipped; the same draws for every policy), "
        "Lechner et al. 2020 Fig. 4b; 1 = the map does not move under noise. Task mass: the "
        f"fraction of each clean map's mass on {mask.replace('_', '-')} pixels (a colour mask, "
        f"approximate), which cover {share:.1%} of the image on average: a map with no "
        "preference scores about that. Tasks of the statistics: the episodes; runs: the seeds.",
        "",
        stats_markdown(
            comparison_tables(ssim_recs, metric=SSIM, reference=reference, reps=reps), "{:.3f}"
        ),
        "",
    ]
    if mass_recs:
        parts += [
            stats_markdown(
                comparison_tables(mass_recs, metric=MASS, reference=reference, reps=reps),
                "{:.3f}",
            ),
            "",
        ]
    if bad:
        parts += [
            "No task-mass number (a map without mass in some episode): "
            + ", ".join(f"`{Path(b).name}`" for b in bad),
            "",
        ]
    return "\n".join(parts)
