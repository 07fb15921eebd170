"""``explain``: run policies open loop over a bag's camera frames and write what they attend to.

Output folder (``out``):

=========================  ===============================================================
``report.md``              ties everything together: input, per-policy numbers, figures
``saliency.mp4`` (.gif)    every frame: the input and each policy's VisualBackProp overlay,
                           under it a trace per output (name, value, unit)
``contact_sheet.png``      a few frames: input, VisualBackProp and integrated gradients per
                           policy, captioned with every output the policy gave
``neurons_<label>.png``    every neuron's activity over time, grouped (sensory / inter /
                           command / motor for an NCP; hidden units for baselines)
``wiring_<label>.png``     the NCP wiring, synapse polarity and strength (wired policies only)
``commands.png``           each policy's commands over time (and the recorded one, if named)
``summary.json``           the numbers of the report
=========================  ===============================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.explain.frames import ExplainError, crop_problem, read_commands, read_frames
from ltc_controller.explain.metrics import attention_stats
from ltc_controller.explain.openloop import OpenLoopRun, neuron_activity, run_open_loop
from ltc_controller.explain.plots import (
    OutputTraces,
    contact_sheet,
    output_caption,
    plot_commands,
    plot_neurons,
    plot_wiring,
    video_frame,
)
from ltc_controller.explain.saliency import attribution_map, overlay
from ltc_controller.explain.video import write_video
from ltc_controller.models.policy import Crop, Policy

__all__ = ["ExplainResult", "explain", "slug"]


@dataclass
class ExplainResult:
    """Paths written by :func:`explain` and the numbers in the report."""

    out: Path
    report: Path
    files: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    runs: list[OpenLoopRun] = field(default_factory=list)


def slug(label: str) -> str:
    """A file-name-safe version of ``label``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "policy"


def _labels(policies: Sequence[tuple[str | None, Policy, str]]) -> list[str]:
    labels, seen = [], set()
    for label, policy, source in policies:
        base = label or f"{policy.config.architecture} ({Path(source).stem})"
        name, k = base, 2
        while name in seen:
            name, k = f"{base} #{k}", k + 1
        seen.add(name)
        labels.append(name)
    return labels


def _command_stats(run: OpenLoopRun) -> dict[str, dict[str, float]]:
    t = run.times_s
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(run.policy.config.output_names):
        v = run.outputs[:, k]
        ok = np.isfinite(v)
        if not ok.any():
            out[name] = {"frames_with_output": 0}
            continue
        rate = np.diff(v[ok]) / np.maximum(np.diff(t[ok]), 1e-9) if ok.sum() > 1 else np.zeros(1)
        out[name] = {
            "frames_with_output": int(ok.sum()),
            "mean": float(v[ok].mean()),
            "sd": float(v[ok].std()),
            "min": float(v[ok].min()),
            "max": float(v[ok].max()),
            "rms_rate_per_s": float(np.sqrt(np.mean(rate**2))),
        }
    return out


def _pick_frames(run: OpenLoopRun, count: int) -> list[int]:
    """``count`` frames spread evenly over those where the frame reached the output."""
    good = np.nonzero(run.taken & (run.steps > 0))[0]
    if good.size == 0:
        good = np.arange(len(run.stamps_ns))
    if good.size <= count:
        return [int(i) for i in good]
    idx = np.linspace(0, good.size - 1, count).round().astype(int)
    return [int(good[i]) for i in idx]


def _fmt(x: float, spec: str = "+.3f") -> str:
    return "–" if not math.isfinite(x) else format(x, spec)


def explain(
    policies: Sequence[tuple[str | None, str | Path]],
    bag: str | Path,
    out: str | Path,
    image_topic: str | None = None,
    command_topic: str | None = None,
    crop: Crop | None = None,
    max_frames: int | None = None,
    skip: int = 0,
    sheet_frames: int = 8,
    ig: bool = True,
    ig_steps: int = 32,
    video: str = "mp4",
    title: str = "",
    notes: str = "",
) -> ExplainResult:
    """Run each policy open loop over the bag's frames and write the report folder.

    Args:
        policies: ``(label or None, policy file)`` pairs; labels default to the architecture
            and file name.
        bag: rosbag2 directory (sqlite3 or MCAP).
        out: output folder (created; files in it are overwritten).
        image_topic: ``Image``/``CompressedImage`` topic; default the bag's only one.
        command_topic: a recorded command topic to plot beside the policies' (optional).
        crop: crop before resizing, for every policy (default: each policy file's).
        max_frames, skip: frames to use.
        sheet_frames: rows of the contact sheet.
        ig: add integrated gradients (of the first output, named in the column title) to the
            contact sheet.
        ig_steps: Riemann nodes of integrated gradients.
        video: ``"mp4"``, ``"gif"`` or ``""`` (none).
        title: report title; notes: a paragraph placed under it.

    Raises:
        ExplainError: unusable bag or topic, or a crop that leaves nothing of its images.
        PolicyFileError: a policy file that does not load.
        VideoError: the video cannot be written.
    """
    from ltc_controller.models.policy_file import load_policy
    from ltc_controller.models.summary import model_size

    out_dir = Path(out)
    frames = read_frames(bag, image_topic, max_frames=max_frames, skip=skip)
    loaded = [(label, load_policy(Path(path)), str(path)) for label, path in policies]
    image_size = frames.image_size()
    for _, policy, source in loaded:
        # A crop that leaves nothing has every frame rejected: an empty report, not an answer.
        used = crop if crop is not None else policy.config.crop
        sides = f"{used.top},{used.bottom},{used.left},{used.right}"
        what = f"--crop {sides}" if crop is not None else f"the crop {sides} of {source}"
        problem = crop_problem(used, image_size, what, f" on {frames.topic}")
        if problem:
            raise ExplainError(problem)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = _labels(loaded)
    result = ExplainResult(out_dir, out_dir / "report.md")
    recorded = _recorded_commands(bag, command_topic, loaded) if command_topic else None

    saliency: list[NDArray[np.float32]] = []
    overlays: list[NDArray[np.uint8]] = []
    per_policy: dict[str, Any] = {}
    for label, (_, policy, source) in zip(labels, loaded, strict=True):
        run = run_open_loop(policy, frames.frames, label=label, crop=crop)
        result.runs.append(run)
        sal = run.visual_backprop()
        rgb = run.rgb()
        saliency.append(sal)
        overlays.append(np.stack([overlay(rgb[i], sal[i]) for i in range(len(sal))]))
        name = slug(label)
        result.files[f"neurons_{name}"] = plot_neurons(
            run, neuron_activity(run), out_dir / f"neurons_{name}.png"
        )
        if policy.config.is_wired:
            result.files[f"wiring_{name}"] = plot_wiring(policy, out_dir / f"wiring_{name}.png")
        size = model_size(policy)
        c = run.counters
        per_policy[label] = {
            "file": source,
            "architecture": policy.config.architecture,
            "neurons": size.neurons,
            "synapses": size.synapses,
            "recurrent_parameters": size.recurrent_parameters,
            "head_parameters": size.head_parameters,
            "frames_used": c["frames_used"],
            "frames_rejected": c["frames_rejected"],
            "rejections": c["rejections"],
            "state_resets": c["state_resets"],
            "steps": c["steps"],
            "commands": _command_stats(run),
            "attention": attention_stats(sal, rgb),
        }

    result.files["commands"] = plot_commands(result.runs, out_dir / "commands.png", recorded)

    first = result.runs[0]
    rows = _pick_frames(first, sheet_frames)
    columns: list[tuple[str, NDArray[np.uint8], Sequence[str]]] = []
    sheet_captions: dict[str, list[str]] = {}
    for run, ov in zip(result.runs, overlays, strict=True):
        names, units = run.policy.config.output_names, run.policy.config.output_units
        captions = [
            output_caption(names, units, run.outputs[i]) if i in rows else ""
            for i in range(len(run.stamps_ns))
        ]
        sheet_captions[run.label] = [captions[i] for i in rows]
        columns.append((f"{run.label}\nVisualBackProp", ov, captions))
        if ig:
            ig_img = np.zeros_like(ov)
            rgb = run.rgb()
            for i in rows:
                attr = run.integrated_gradients(i, n_steps=ig_steps)
                if attr is not None:
                    amap = attribution_map(torch.from_numpy(attr)).numpy()
                    ig_img[i] = overlay(rgb[i], amap)
                else:
                    ig_img[i] = rgb[i]
            columns.append(
                (f"{run.label}\nintegrated gradients ({names[0]})", ig_img, [""] * len(captions))
            )
    sheet_title = title or f"{Path(bag).name}: {frames.topic}"
    result.files["contact_sheet"] = contact_sheet(
        out_dir / "contact_sheet.png", rows, first.rgb(), columns, sheet_title
    )

    stamps = frames.stamps_ns
    dt = np.diff(stamps) * 1e-9
    fps = float(1.0 / np.median(dt)) if dt.size and np.median(dt) > 0 else 10.0
    if video:
        inputs = first.rgb()
        scale = 2  # video_frame's default
        traces = [
            OutputTraces(
                run.outputs,
                run.policy.config.output_names,
                run.policy.config.output_units,
                ov.shape[2] * scale,
            )
            for run, ov in zip(result.runs, overlays, strict=True)
        ]
        vframes = []
        for i in range(len(stamps)):
            panels = [(f"input {i}", inputs[i])]
            panels += [(run.label, ov[i]) for run, ov in zip(result.runs, overlays, strict=True)]
            below = [None, *(tr.render(i) for tr in traces)]
            vframes.append(video_frame(panels, scale, below))
        result.files["video"] = write_video(
            out_dir / f"saliency.{video}", vframes, min(max(fps, 1.0), 60.0)
        )

    summary = {
        "bag": str(bag),
        "topic": frames.topic,
        "msgtype": frames.msgtype,
        "frames": len(frames.frames),
        "duration_s": float((stamps[-1] - stamps[0]) * 1e-9) if len(stamps) > 1 else 0.0,
        "fps": fps,
        "crop": None if crop is None else vars(crop),
        "integrated_gradients": ig,
        "ig_steps": ig_steps,
        "contact_sheet": {"frames": rows, "captions": sheet_captions},
        "policies": per_policy,
    }
    result.summary = summary
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    result.report.write_text(_markdown(result, labels, title, notes, recorded is not None))
    return result


def _recorded_commands(
    bag: str | Path, topic: str, loaded: Sequence[tuple[str | None, Policy, str]]
) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64], str]]:
    """The recorded command of ``topic`` per policy output it carries (a drone's Twist: each of
    ``linear_x`` … ``angular_z`` on its own panel), keyed by output name; when it carries none
    of them, its default field (the steering-like one) on the first output's panel.

    Raises:
        ExplainError: unreadable bag, missing topic or field.
    """
    from ltc_controller.explain.frames import bag_topics
    from ltc_controller.interfaces.command_axes import FIELDS

    msgtype = bag_topics(bag).get(topic, "")
    fields = FIELDS.get(msgtype, {})
    names = list(dict.fromkeys(n for _, p, _ in loaded for n in p.config.output_names))
    out = {}
    for name in names:
        if name in fields:
            stamps, values, fname = read_commands(bag, topic, fields[name])
            out[name] = (stamps, values, f"recorded {topic} ({fname})")
    if not out:
        stamps, values, fname = read_commands(bag, topic)
        out[names[0]] = (stamps, values, f"recorded {topic} ({fname})")
    return out


def _markdown(result: ExplainResult, labels: list[str], title: str, notes: str, rec: bool) -> str:
    s = result.summary
    crop = s["crop"]
    crop_text = (
        "each policy file's crop"
        if crop is None
        else f"top {crop['top']}, bottom {crop['bottom']}, left {crop['left']}, "
        f"right {crop['right']} px"
    )
    lines = [
        f"# {title or 'What the policies attend to'}",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += [
        f"Input: `{s['bag']}`, topic `{s['topic']}` ({s['msgtype']}), {s['frames']} frames over "
        f"{s['duration_s']:.2f} s ({s['fps']:.1f} frames/s). Crop before resizing: {crop_text}.",
        "",
        "Each policy ran open loop through the runtime (`PolicyRuntime`): the node's decoding and "
        "preprocessing, fixed integration steps of `step_s` on the frames' stamp grid, features "
        "held between frames, one tick per frame stamp; no deadline ever postponed a step. "
        "Saliency: VisualBackProp (Bojarski et al. 2018) of the conv head — channel means of "
        "each conv layer, from the deepest, upsampled by transposed convolution with ones "
        "kernels of each layer's kernel and stride, multiplied point-wise, normalised to [0, 1] "
        "per frame. Integrated gradients (Sundararajan et al. 2017) of the first output at that "
        "frame w.r.t. its image, through head and core from the recorded state; baseline = the "
        f"frame blurred (Gaussian, 5 px), {s['ig_steps']} midpoint nodes; |attribution| summed "
        "over colour, clipped at its 99th percentile.",
        "",
        "## Per policy",
        "",
        "| policy | architecture | neurons | synapses | RNN params | frames used | resets | "
        "steps |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        p = s["policies"][label]
        lines.append(
            f"| {label} | {p['architecture']} | {p['neurons']} | {p['synapses']:,} | "
            f"{p['recurrent_parameters']:,} | {p['frames_used']} | {p['state_resets']} | "
            f"{p['steps']} |"
        )
    lines += [
        "",
        "**Commands** (open loop; mean ± sd, range, RMS rate of change):",
        "",
        "| policy | output | frames | mean ± sd | min … max | RMS rate (/s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label in labels:
        for name, c in s["policies"][label]["commands"].items():
            if not c.get("frames_with_output"):
                lines.append(f"| {label} | {name} | 0 | – | – | – |")
                continue
            lines.append(
                f"| {label} | {name} | {c['frames_with_output']} | "
                f"{c['mean']:+.4f} ± {c['sd']:.4f} | {c['min']:+.4f} … {c['max']:+.4f} | "
                f"{c['rms_rate_per_s']:.3f} |"
            )
    lines += [
        "",
        "**Where the saliency lies** (VisualBackProp, mean over frames): mass in the top third "
        "of the image (sky, horizon), mass centroid (x: −1 left … +1 right; y: 0 top … 1 "
        "bottom), the smallest share of pixels holding half the mass (small = focused), and the "
        "mass on marking-like pixels (bright-unsaturated or yellow below the top third: lane "
        "paint) and on target-like pixels (saturated red, grown by a pixel: the drone's red "
        "chair) against their share of the image (enrichment: mass / share, 1 = no "
        "preference). Both are colour thresholds, approximate.",
        "",
        "| policy | top third | centroid x | centroid y | area of half the mass | "
        "marking-like: share / mass / enrichment | target-like: share / mass / enrichment |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        a = s["policies"][label]["attention"]
        cells = [
            f"{a[f'{m}_share']:.3f} / {a[f'{m}_mass']:.3f} / {_fmt(a[f'{m}_enrichment'], '.2f')}×"
            for m in ("marking_like", "target_like")
        ]
        lines.append(
            f"| {label} | {a['top_third']:.2f} | {a['centroid_x']:+.2f} | "
            f"{a['centroid_y']:.2f} | {a['area_half_mass']:.2f} | {cells[0]} | {cells[1]} |"
        )
    f = result.files
    lines += ["", "## Figures", ""]
    if "video" in f:
        lines += [
            f"Video, every frame, under each policy a trace per output (name, value, unit): "
            f"[{f['video'].name}]({f['video'].name})",
            "",
        ]
    lines += [
        "Contact sheet (input, then per policy VisualBackProp"
        + (" and integrated gradients" if s["integrated_gradients"] else "")
        + "; captioned with every output):",
        "",
        f"![contact sheet]({f['contact_sheet'].name})",
        "",
        "Commands over time" + (" (dashed: recorded)" if rec else "") + ":",
        "",
        f"![commands]({f['commands'].name})",
        "",
    ]
    for label in labels:
        name = slug(label)
        lines += [f"### {label}", "", f"![neurons]({f[f'neurons_{name}'].name})", ""]
        if f"wiring_{name}" in f:
            lines += [f"![wiring]({f[f'wiring_{name}'].name})", ""]
    return "\n".join(lines)
