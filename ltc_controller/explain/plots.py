"""Figures of ``explain``: neuron traces, the NCP wiring with synapse polarity, commands over
time, a contact sheet of saliency overlays captioned with every output, and the frames of a
saliency video with a trace per output under each policy (matplotlib, Agg; Pillow for video
frames)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image as PILImage
from PIL import ImageDraw

from ltc_controller.explain.openloop import NeuronGroup, OpenLoopRun
from ltc_controller.extras import needs_extra
from ltc_controller.models.policy import Policy

__all__ = [
    "EXCITATORY_COLOUR",
    "INHIBITORY_COLOUR",
    "OutputTraces",
    "contact_sheet",
    "output_caption",
    "plot_commands",
    "plot_neurons",
    "plot_wiring",
    "synapse_polarity",
    "video_frame",
]

EXCITATORY_COLOUR = "#1f77b4"
INHIBITORY_COLOUR = "#d62728"
_GROUP_COLOURS = {
    "sensory": "#7f7f7f",
    "features": "#7f7f7f",
    "inter": "#2ca02c",
    "command": "#ff7f0e",
    "motor": "#9467bd",
}
#: Groups with at most this many neurons are drawn as lines, larger ones as a heat map.
_MAX_LINES = 12


def _pyplot() -> Any:
    with needs_extra("explain", "explain's plots"):
        import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_neurons(run: OpenLoopRun, groups: Sequence[NeuronGroup], path: str | Path) -> Path:
    """Every neuron's activity over time, one panel per group (sensory / inter / command /
    motor for an NCP; features / hidden units for baselines): groups of up to 12 neurons as
    labelled lines, larger ones as a heat map (neuron x time)."""
    plt = _pyplot()
    t = run.times_s
    heights = [1.0 if len(g.labels) <= _MAX_LINES else 1.6 for g in groups]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(11, 1.9 * sum(heights) + 0.8),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, g in zip(axes[:, 0], groups, strict=True):
        n = len(g.labels)
        if n <= _MAX_LINES:
            cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
            for j in range(n):
                ax.plot(t, g.values[:, j], lw=1.0, color=cmap(j % cmap.N), label=g.labels[j])
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6, ncol=1 + n // 7)
            ax.set_ylabel("activity")
        else:
            span = float(np.abs(g.values).max()) if g.values.size else 1.0
            im = ax.imshow(
                g.values.T,
                aspect="auto",
                interpolation="nearest",
                origin="lower",
                cmap="RdBu_r" if g.values.min() < 0 else "viridis",
                vmin=-span if g.values.min() < 0 else 0.0,
                vmax=span if span > 0 else 1.0,
                extent=(t[0] if t.size else 0.0, t[-1] if t.size else 1.0, -0.5, n - 0.5),
            )
            fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03)
            ax.set_ylabel("neuron")
        ax.set_title(
            f"{g.name} ({n})",
            loc="left",
            fontsize=9,
            color=_GROUP_COLOURS.get(g.name, "black"),
        )
    axes[-1, 0].set_xlabel("time (s)")
    cfg = run.policy.config
    fig.suptitle(f"{run.label}: neuron activity ({cfg.architecture})", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def synapse_polarity(policy: Policy) -> dict[str, Any]:
    """Synapses of a wired policy with their polarity and strength.

    LTC (``ncp_ltc``, ``ltc_fc``): polarity = sign of the *trained* reversal potential ``erev``
    (it is trainable and may have flipped from the wiring's initial sign; ``flipped`` counts
    those), strength = the effective ``w`` (softplus in implicit-constraint mode). Wired CfC: the
    wiring's polarity (the model does not use it), strength 1.

    Returns:
        ``{"sensory": (I, H) int8 in {-1, 0, 1}, "internal": (H, H) int8, "sensory_w": (I, H),
        "internal_w": (H, H) float, "flipped": int, "uses_polarity": bool}``.

    Raises:
        ValueError: the policy has no wiring.
    """
    cfg = policy.config
    wiring = cfg.build_wiring()
    s_adj = np.asarray(wiring.sensory_adjacency_matrix, dtype=np.int8)
    adj = np.asarray(wiring.adjacency_matrix, dtype=np.int8)
    if cfg.architecture in ("ncp_ltc", "ltc_fc"):
        cell: Any = policy.core
        with torch.no_grad():
            pos = F.softplus if cfg.implicit_param_constraints else torch.relu
            s_sign = np.sign(cell.sensory_erev.detach().cpu().numpy()).astype(np.int8)
            i_sign = np.sign(cell.erev.detach().cpu().numpy()).astype(np.int8)
            s_w = pos(cell.sensory_w).cpu().numpy()
            i_w = pos(cell.w).cpu().numpy()
        sensory = s_sign * (s_adj != 0)
        internal = i_sign * (adj != 0)
        flipped = int((sensory != s_adj).sum() + (internal != adj).sum())
        return {
            "sensory": sensory,
            "internal": internal,
            "sensory_w": s_w * (s_adj != 0),
            "internal_w": i_w * (adj != 0),
            "flipped": flipped,
            "uses_polarity": True,
        }
    return {
        "sensory": s_adj,
        "internal": adj,
        "sensory_w": (s_adj != 0).astype(np.float64),
        "internal_w": (adj != 0).astype(np.float64),
        "flipped": 0,
        "uses_polarity": False,
    }


def _column(n: int, x: float) -> NDArray[np.float64]:
    """``(n, 2)`` positions spread over y in [0, 1] at ``x``."""
    if n == 0:
        return np.zeros((0, 2))
    y = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    return np.stack([np.full(n, x), y], axis=1)


def plot_wiring(policy: Policy, path: str | Path) -> Path:
    """The wiring as a layered diagram, sensory -> inter -> command -> motor, left to right;
    synapses coloured by polarity (excitatory blue, inhibitory red), line width by strength;
    recurrent synapses as arcs, self-synapses as rings.

    Raises:
        ValueError: the policy has no wiring.
    """
    plt = _pyplot()
    from matplotlib.patches import Circle, FancyArrowPatch

    cfg = policy.config
    wiring = cfg.build_wiring()
    groups = wiring.neuron_groups
    pol = synapse_polarity(policy)
    n_in = len(groups["sensory"])
    cols = {"sensory": 0.0, "inter": 1.0, "command": 2.0, "motor": 3.0}
    sensory_pos = _column(n_in, cols["sensory"])
    pos = np.zeros((wiring.units, 2))
    for name in ("inter", "command", "motor"):
        ids = list(groups[name])
        # Short columns are centred (a funnel towards the motor neurons).
        span = min(1.0, 0.07 * (len(ids) - 1))
        if ids:
            pos[ids, 0] = cols[name]
            pos[ids, 1] = 0.5 + span * (np.linspace(0.0, 1.0, len(ids)) - 0.5)
    w_max = max(
        float(pol["sensory_w"].max(initial=0.0)), float(pol["internal_w"].max(initial=0.0)), 1e-9
    )
    fig, ax = plt.subplots(figsize=(11, 8))

    def edge(p0: NDArray[Any], p1: NDArray[Any], sign: int, w: float, rad: float = 0.0) -> None:
        colour = EXCITATORY_COLOUR if sign > 0 else INHIBITORY_COLOUR
        if not pol["uses_polarity"]:
            colour = "#555555"
        ax.add_patch(
            FancyArrowPatch(
                tuple(p0),
                tuple(p1),
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=6,
                lw=0.3 + 1.7 * w / w_max,
                color=colour,
                alpha=0.45,
                shrinkA=4,
                shrinkB=5,
            )
        )

    s_pol, i_pol = pol["sensory"], pol["internal"]
    for i, j in zip(*np.nonzero(s_pol), strict=True):
        edge(sensory_pos[i], pos[j], int(s_pol[i, j]), float(pol["sensory_w"][i, j]))
    for i, j in zip(*np.nonzero(i_pol), strict=True):
        sign, w = int(i_pol[i, j]), float(pol["internal_w"][i, j])
        if i == j:
            colour = EXCITATORY_COLOUR if sign > 0 else INHIBITORY_COLOUR
            ax.add_patch(
                Circle(
                    (pos[i, 0], pos[i, 1] + 0.035),
                    0.02,
                    fill=False,
                    lw=0.3 + 1.7 * w / w_max,
                    color=colour if pol["uses_polarity"] else "#555555",
                    alpha=0.6,
                )
            )
            continue
        same_layer = pos[i, 0] == pos[j, 0]
        edge(pos[i], pos[j], sign, w, rad=0.5 if same_layer else 0.0)
    ax.scatter(
        sensory_pos[:, 0], sensory_pos[:, 1], s=30, color=_GROUP_COLOURS["sensory"], zorder=3
    )
    for k, (x, y) in enumerate(sensory_pos):
        ax.text(x - 0.04, y, f"s{k}", ha="right", va="center", fontsize=6)
    names = cfg.output_names
    for name in ("inter", "command", "motor"):
        ids = list(groups[name])
        if not ids:
            continue
        ax.scatter(pos[ids, 0], pos[ids, 1], s=140, color=_GROUP_COLOURS[name], zorder=3)
        for j, nid in enumerate(ids):
            label = f"{name[0]}{j}"
            if name == "motor" and j < len(names):
                label += f"\n{names[j]}"
            ax.text(pos[nid, 0] + 0.06, pos[nid, 1], label, va="center", fontsize=7)
    for name, x in cols.items():
        count = n_in if name == "sensory" else len(groups[name])
        if count:
            ax.text(x, 1.06, f"{name} ({count})", ha="center", fontsize=10)
    exc = int((s_pol > 0).sum() + (i_pol > 0).sum())
    inh = int((s_pol < 0).sum() + (i_pol < 0).sum())
    polarity = (
        f"{exc} excitatory (blue), {inh} inhibitory (red) by the trained reversal potentials"
        f"; {pol['flipped']} flipped in training"
        if pol["uses_polarity"]
        else "polarity not used by this model (grey)"
    )
    ax.set_title(
        f"{cfg.architecture}: {wiring.units} neurons, {wiring.synapse_count} internal + "
        f"{wiring.sensory_synapse_count} sensory synapses\n{polarity}; width = synapse "
        "strength",
        fontsize=10,
    )
    ax.set_xlim(-0.3, 3.5)
    ax.set_ylim(-0.05, 1.12)
    ax.axis("off")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_commands(
    runs: Sequence[OpenLoopRun],
    path: str | Path,
    recorded: Mapping[str, tuple[NDArray[np.int64], NDArray[np.float64], str]] | None = None,
) -> Path:
    """Each output of each policy over time (open loop), one panel per output name; a recorded
    command (``{output name: (stamps_ns, values, label)}``) dashed on its output's panel."""
    plt = _pyplot()
    names: list[str] = []
    for r in runs:
        for n in r.policy.config.output_names:
            if n not in names:
                names.append(n)
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.6 * len(names) + 0.6), squeeze=False)
    t0 = min(int(r.stamps_ns[0]) for r in runs if r.stamps_ns.size)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for r in runs:
            cfg = r.policy.config
            if name not in cfg.output_names:
                continue
            k = cfg.output_names.index(name)
            t = (r.stamps_ns - t0) * 1e-9
            ax.step(t, r.outputs[:, k], where="post", lw=1.2, label=r.label)
            ax.set_ylabel(f"{name} ({cfg.output_units[k]})")
        if recorded is not None and name in recorded:
            rs, rv, label = recorded[name]
            t1 = max(int(r.stamps_ns[-1]) for r in runs if r.stamps_ns.size)
            keep = (rs >= t0) & (rs <= t1)  # the frames' time span only
            ax.plot((rs[keep] - t0) * 1e-9, rv[keep], "k--", lw=1.0, label=label)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("commands over time (open loop, the runtime's stepping)", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _value(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.3f}"


def output_caption(names: Sequence[str], units: Sequence[str], values: Sequence[float]) -> str:
    """Every output of one frame, one line each: ``name value unit`` (``n/a`` before the
    first output), e.g. ``"linear_x +0.512 m/s\nangular_z -0.031 rad/s"``."""
    return "\n".join(
        f"{n} {_value(float(v))} {u}".rstrip() for n, u, v in zip(names, units, values, strict=True)
    )


class OutputTraces:
    """A strip under a policy's video panel: one row per output with its name, the value at the
    current frame and its unit, and the output's trace over the whole run (each on its own
    scale, grey) with the current frame marked (a cursor and a dot).

    Args:
        values: ``(N, M)`` outputs per frame (NaN where there is none yet).
        names, units: ``(M,)`` output names and units.
        width: strip width in pixels (the panel's).

    Raises:
        ValueError: ``values`` is not ``(N, M)`` with ``M`` names and units, or the strip is
            too narrow for the traces.
    """

    ROW_PX = 16
    LABEL_PX = 150
    DOT = (255, 90, 90)

    def __init__(
        self, values: NDArray[np.float64], names: Sequence[str], units: Sequence[str], width: int
    ) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != len(names) or len(units) != len(names):
            raise ValueError(
                f"values {v.shape} need one column per output name {list(names)} and unit"
            )
        if width < self.LABEL_PX + 40:
            raise ValueError(f"width {width} px: traces need at least {self.LABEL_PX + 40}")
        self.values, self.names, self.units, self.width = v, list(names), list(units), width
        n, m = v.shape
        x0, x1 = self.LABEL_PX, width - 4
        self._x = x0 + np.arange(n) * ((x1 - x0) / max(n - 1, 1))
        self._y = np.full((n, m), math.nan)
        background = PILImage.new("RGB", (width, m * self.ROW_PX), (0, 0, 0))
        draw = ImageDraw.Draw(background)
        for k in range(m):
            col = v[:, k]
            ok = np.isfinite(col)
            if not ok.any():
                continue
            lo, hi = float(col[ok].min()), float(col[ok].max())
            span = hi - lo if hi > lo else 1.0
            top, usable = k * self.ROW_PX + 2, self.ROW_PX - 5
            # Larger values higher up; a constant output runs along the middle of its row.
            frac = (col - lo) / span if hi > lo else np.full(n, 0.5)
            self._y[:, k] = top + usable * (1.0 - frac)
            pts = [(float(x), float(y)) for x, y in zip(self._x[ok], self._y[ok, k], strict=True)]
            if len(pts) > 1:
                draw.line(pts, fill=(150, 150, 150), width=1)
        self._background = background

    def dot(self, k: int, i: int) -> tuple[int, int] | None:
        """Pixel ``(x, y)`` of output ``k``'s dot at frame ``i`` (``None``: no output yet)."""
        y = self._y[i, k]
        return None if not math.isfinite(y) else (round(self._x[i]), round(y))

    def render(self, i: int) -> NDArray[np.uint8]:
        """``(M * ROW_PX, width, 3)`` uint8 RGB: the strip at frame ``i``."""
        img = self._background.copy()
        draw = ImageDraw.Draw(img)
        x = round(self._x[i])
        draw.line([(x, 0), (x, img.height - 1)], fill=(90, 90, 90), width=1)
        for k, (name, unit) in enumerate(zip(self.names, self.units, strict=True)):
            top = k * self.ROW_PX
            text = f"{name} {_value(float(self.values[i, k]))} {unit}".rstrip()
            draw.text((3, top + 2), text, fill=(255, 255, 255))
            p = self.dot(k, i)
            if p is not None:
                draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=self.DOT)
        return np.asarray(img)


def contact_sheet(
    path: str | Path,
    frames: Sequence[int],
    inputs: NDArray[np.uint8],
    columns: Sequence[tuple[str, NDArray[np.uint8], Sequence[str]]],
    title: str = "",
) -> Path:
    """A grid of frames: the input, then one column per ``(title, overlays (N, H, W, 3),
    captions per frame)``; row ``i`` shows frame ``frames[i]``. Captions may have several
    lines (one per output: :func:`output_caption`); the rows grow to fit them."""
    plt = _pyplot()
    n_rows, n_cols = len(frames), 1 + len(columns)
    h, w = inputs.shape[1:3]
    cell_w = 2.6
    lines = max((c[f].count("\n") + 1 for _, _, c in columns for f in frames if c[f]), default=1)
    row_in = cell_w * h / w + 0.13 * lines + 0.12
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(cell_w * n_cols, row_in * n_rows + 0.8),
        squeeze=False,
    )
    for i, f in enumerate(frames):
        ax = axes[i, 0]
        ax.imshow(inputs[f])
        ax.set_ylabel(f"frame {f}", fontsize=7)
        for c, (_, images, captions) in enumerate(columns, start=1):
            axes[i, c].imshow(images[f])
            if captions[f]:
                axes[i, c].set_xlabel(captions[f], fontsize=7, labelpad=1)
    axes[0, 0].set_title("input", fontsize=8)
    for c, (name, _, _) in enumerate(columns, start=1):
        axes[0, c].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def video_frame(
    panels: Sequence[tuple[str, NDArray[np.uint8]]],
    scale: int = 2,
    below: Sequence[NDArray[np.uint8] | None] = (),
) -> NDArray[np.uint8]:
    """One video frame: the panels (``(label, (H, W, 3) uint8)``) side by side, each enlarged
    ``scale`` times (nearest) with its label in a strip above and ``below[k]`` (an image
    ``W * scale`` wide, e.g. :meth:`OutputTraces.render`) under panel ``k``; black fills the
    rest. Returns ``(rows, columns, 3)`` uint8."""
    strip = 14
    extra = list(below) + [None] * (len(panels) - len(below))
    height = max(
        img.shape[0] * scale + strip + (0 if b is None else b.shape[0])
        for (_, img), b in zip(panels, extra, strict=True)
    )
    tiles = []
    for (label, img), under in zip(panels, extra, strict=True):
        h, w = img.shape[:2]
        big = PILImage.fromarray(np.ascontiguousarray(img)).resize(
            (w * scale, h * scale), PILImage.Resampling.NEAREST
        )
        tile = PILImage.new("RGB", (w * scale, height), (0, 0, 0))
        tile.paste(big, (0, strip))
        if under is not None:
            tile.paste(PILImage.fromarray(np.ascontiguousarray(under)), (0, strip + h * scale))
        ImageDraw.Draw(tile).text((3, 1), label, fill=(255, 255, 255))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)
