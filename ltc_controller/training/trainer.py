"""Behaviour cloning of a policy from demonstrations: sequences, augmentation, checkpoints,
early stopping, and PyTorch distributed data parallel (torchrun).

Sequences. Windows of ``seq_len`` consecutive paired frames are cut from each segment (never
across one). Frame t is held over the interval from the previous frame's stamp to its own (the
segment's median period for a segment's first frame, :func:`frame_periods_ns`), and
:meth:`Policy.forward` integrates it in fixed steps of ``step_s`` holding frame t's features. The
number of steps per frame comes from the runtime's stepping rule on integer-ns stamps
(:func:`window_steps`, by :func:`~ltc_controller.runtime.schedule.step_counts`; the grid starts
one period before a window's first frame) - the runtime's semantics, so the dynamics trained are
the ones deployed. The state starts at zero in every window (Lechner et al. 2020
train on 16-step subsequences from a zero state); the first ``burn_in`` frames of a window are
left out of the loss while the state settles.

Loss. Squared error of ``(prediction - target) / output_scale`` weighted by
``w(y) = exp(alpha |y| / output_scale)`` (Lechner et al. 2020 weight turns, where the error
matters most); ``alpha = 0`` is plain MSE.

Augmentation (training windows only, one draw per window so lighting does not flicker within a
sequence): brightness and contrast gains, a random shadow (a darkened quadrilateral), and additive
Gaussian noise of a random standard deviation per window.

Checkpoints (``checkpoint_dir``): ``model.safetensors``, ``optimizer.safetensors`` and
``state.json`` (epoch, step, best validation loss, RNG states, the config) - tensors and JSON
only, never pickle. ``resume`` continues from one exactly where it stopped.

Distributed: when started by ``torchrun`` (``WORLD_SIZE`` > 1) each process joins the default
process group (``gloo`` on CPU, ``nccl`` on CUDA), wraps the policy in
``DistributedDataParallel`` and takes every ``world``-th window of the same seeded shuffle; the
validation loss is averaged over ranks, so every rank makes the same early-stopping decision.
Rank 0 writes the checkpoint and the policy file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ltc_controller.extras import needs_extra
from ltc_controller.runtime.schedule import seconds_to_ns, step_counts
from ltc_controller.training.bag import Demonstrations, Frames

__all__ = [
    "AugmentConfig",
    "TrainConfig",
    "TrainResult",
    "build_policy_config",
    "frame_periods_ns",
    "init_output_bias",
    "make_windows",
    "train",
    "window_steps",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges (images in [0, 1]).

    Attributes:
        brightness: gain drawn from ``[1 - b, 1 + b]``.
        contrast: contrast gain drawn from ``[1 - c, 1 + c]`` around the image mean.
        shadow_prob: probability of a shadow per window.
        shadow_strength: range of the shadow's darkening factor.
        noise_std: largest standard deviation of additive Gaussian noise (drawn per window from
            ``[0, noise_std]``).
    """

    brightness: float = 0.3
    contrast: float = 0.2
    shadow_prob: float = 0.4
    shadow_strength: tuple[float, float] = (0.4, 0.8)
    noise_std: float = 0.05

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, (1.0, 1.0), 0.0)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes:
        arch: ``PolicyConfig.architecture`` (``"ncp_ltc"``, and whatever else the models
            package offers: ``"lstm"``, ``"gru"``, ``"ctrnn"``, ``"cnn"``, ``"cfc"``...).
        units: hidden units for architectures that take them (None = the architecture's default).
        seq_len: frames per training window (T).
        stride: window stride within a segment (frames; default ``seq_len``: each frame once per
            epoch, with a random phase per epoch).
        batch_size: windows per optimiser step (per process).
        epochs: epoch limit.
        max_steps: optimiser step limit (None = no limit).
        lr: Adam learning rate of the conv head.
        lr_rnn: learning rate of everything else (the recurrent part); None = ``lr``.
        weight_decay: AdamW weight decay.
        grad_clip: gradient norm clip (0 = off).
        loss_alpha: turn weighting ``alpha`` (see module docstring).
        per_step_time_constants: initialise the LTC capacitance ``cm`` multiplied by
            ``step_s`` (see :func:`scale_ltc_capacitance`), so that one step of ``step_s`` seconds
            has the dynamics of one ncps step of ``elapsed = 1`` (what the NCP paper trained);
            without it the ncps initialisation gives time constants of about a second.
        burn_in: leading frames of each window left out of the loss while the state settles
            from zero (None = ``seq_len // 4``).
        val_fraction: fraction of frames (whole segments) held out for validation.
        patience: epochs without validation improvement before stopping.
        seed: seed of weights, shuffling, augmentation.
        step_s: integration step of the policy (s).
        output_scale: scale of every output (one float for all, a tuple with one per output,
            or None = per output, twice the root mean square of its targets, at least 1e-3).
        ncp: ``(inter, command, sensory_fanout, inter_fanout, recurrent_command_synapses,
            motor_fanin)`` of the NCP wiring of ``ncp_*`` architectures (motor neurons = outputs,
            seed 22222); None = ``(12, 6, 6, 4, 6, 6)`` for several outputs, the NCP-19 for one.
        output_bias: ``"zero"`` keeps the core's initial output bias; ``"label_mean"`` shifts
            it (before training, on a fresh initialisation only) so that the untrained policy's
            mean output over training windows equals each label's mean: an output that sits
            far from zero (a cruise ``linear_x``) then needs no saturated motor neuron to hold
            it, and its scale can follow the label's spread instead of its size.
        feature_norm: ``PolicyConfig.feature_norm``: ``"layer"`` standardises the head's
            features per frame before the core (keeps an LTC's sigmoid sensory synapses out of
            saturation as the head's gain grows in training; see
            :func:`~ltc_controller.models.heads.normalize_features`), ``"none"`` feeds them
            as they are.
        augment: augmentation ranges.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        threads: CPU threads for torch (0 = leave torch's default).
    """

    arch: str = "ncp_ltc"
    units: int | None = None
    seq_len: int = 16
    stride: int | None = None
    batch_size: int = 16
    epochs: int = 10
    max_steps: int | None = None
    lr: float = 1e-3
    lr_rnn: float | None = 5e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss_alpha: float = 0.5
    burn_in: int | None = None
    per_step_time_constants: bool = True
    val_fraction: float = 0.1
    patience: int = 3
    seed: int = 0
    step_s: float = 0.05
    output_scale: float | tuple[float, ...] | None = None
    ncp: tuple[int, ...] | None = None
    output_bias: str = "zero"
    feature_norm: str = "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("TrainConfig: seq_len, batch_size and epochs must be >= 1")
        if not 0.0 <= self.val_fraction < 0.9:
            raise ValueError(f"TrainConfig.val_fraction={self.val_fraction}: expected [0, 0.9)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"TrainConfig.device={self.device!r}: expected auto, cpu or cuda")
        if self.output_bias not in ("zero", "label_mean"):
            raise ValueError(
                f"TrainConfig.output_bias={self.output_bias!r}: expected 'zero' or 'label_mean'"
            )
        if self.ncp is not None and len(self.ncp) != 6:
            raise ValueError(f"TrainConfig.ncp={self.ncp}: expected 6 sizes (see the docstring)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"]["shadow_strength"] = list(self.augment.shadow_strength)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = dict(d)
        aug = dict(d.pop("augment", {}))
        if "shadow_strength" in aug:
            aug["shadow_strength"] = tuple(aug["shadow_strength"])
        for k in ("output_scale", "ncp"):  # JSON lists back to tuples
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return cls(**d, augment=AugmentConfig(**aug))


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        policy: the trained policy (best validation weights), on the CPU, eval mode.
        best_val_loss: best validation loss (normalised, weighted), NaN without validation.
        val_corr: at the best epoch, the Pearson correlation of the policy's outputs with the
            labels on the held-out frames (after burn-in; mean over outputs; NaN without
            validation or with a constant output): a sanity check that the policy follows
            the image (a collapsed policy scores about 0).
        history: one dict per epoch (epoch, train_loss, val_loss, val_mse, val_corr, steps,
            wall_s).
        steps: optimiser steps taken in total.
        stopped_early: True when patience ran out.
        wall_s: wall time of this call (s).
    """

    policy: Any
    best_val_loss: float
    val_corr: float
    history: list[dict[str, float]]
    steps: int
    stopped_early: bool
    wall_s: float


def build_policy_config(
    arch: str,
    units: int | None,
    output_names: tuple[str, ...],
    output_units: tuple[str, ...],
    output_scale: tuple[float, ...],
    step_s: float,
    per_step_time_constants: bool = True,
    ncp: tuple[int, ...] | None = None,
    feature_norm: str = "none",
) -> Any:
    """A ``PolicyConfig`` for ``arch`` with the given outputs and head feature normalisation
    (``ncp``: see :attr:`TrainConfig.ncp`).

    With ``per_step_time_constants`` the CT-RNN's fixed time constant is ``step_s`` (one step of
    ``step_s`` seconds then has the dynamics of a unit step, as for the LTC's capacitance, see
    :func:`scale_ltc_capacitance`).

    Raises:
        ValueError: the architecture is not available in this version of
            :mod:`ltc_controller.models` (the message lists the ones that are), or a field the
            architecture does not take.
    """
    from ltc_controller.models import policy as policy_mod
    from ltc_controller.models.policy import PolicyConfig

    known = tuple(getattr(policy_mod, "ARCHITECTURES", ("ncp_ltc",)))
    if arch not in known:
        raise ValueError(f"architecture {arch!r} is not available; this version offers {known}")
    kwargs: dict[str, Any] = {
        "architecture": arch,
        "output_names": output_names,
        "output_units": output_units,
        "output_scale": output_scale,
        "step_s": step_s,
        "feature_norm": feature_norm,
    }
    if units is not None:
        kwargs["units"] = units
    if arch == "ctrnn" and per_step_time_constants:
        kwargs["core_options"] = {"tau_s": step_s}
    m = len(output_names)
    if (m != 1 or ncp is not None) and arch.startswith("ncp"):
        from ltc_controller.models.wiring import NCP

        inter, command, s_fan, i_fan, rec, m_fan = ncp or (12, 6, 6, 4, 6, 6)
        kwargs["wiring"] = NCP(
            inter, command, m, s_fan, i_fan, rec, m_fan, seed=22222, input_dim=32
        ).get_config()
    try:
        return PolicyConfig(**kwargs)
    except TypeError as exc:
        raise ValueError(f"architecture {arch!r}: {exc}") from exc


# -- data ----------------------------------------------------------------------------------------


def scale_ltc_capacitance(policy: nn.Module, factor: float) -> int:
    """Multiply the effective membrane capacitance ``cm`` of every LTC cell in ``policy`` by
    ``factor`` (in place, through the softplus when the cell uses implicit constraints).

    The fused solver uses ``cm_t = cm / (elapsed / L)``; ncps steps with ``elapsed = 1``, our
    runtime with ``elapsed = step_s`` seconds, so ``cm * step_s`` keeps ncps's per-step dynamics.

    Returns:
        The number of cells changed (0 for architectures without an LTC).
    """
    n = 0
    with torch.no_grad():
        for mod in policy.modules():
            cm = getattr(mod, "cm", None)
            if not isinstance(cm, nn.Parameter) or not hasattr(mod, "implicit_param_constraints"):
                continue
            if mod.implicit_param_constraints:
                eff = nn.functional.softplus(cm) * factor
                cm.copy_(eff + torch.log(-torch.expm1(-eff)))  # softplus^-1
            else:
                cm.mul_(factor)
            n += 1
    return n


def frame_periods_ns(demos: Demonstrations) -> NDArray[np.int64]:
    """ns since the previous frame of the same segment, per frame ``(N,)`` int64; a segment's
    first frame gets the median period of the data (rounded to ns; 50 ms when no segment has
    two frames)."""
    st, seg = demos.stamps_ns, demos.segment
    dt = np.diff(st, prepend=st[:1])
    same = np.concatenate([[False], seg[1:] == seg[:-1]])
    inner = dt[same]
    median = round(float(np.median(inner))) if inner.size else 50_000_000
    periods: NDArray[np.int64] = np.where(same, dt, median).astype(np.int64)
    return periods


def window_steps(
    stamps_ns: NDArray[np.int64],
    periods_ns: NDArray[np.int64],
    idx: NDArray[np.int64],
    step_ns: int,
) -> NDArray[np.int64]:
    """Integration steps each frame of each window takes, by the runtime's stepping rule.

    The window's grid starts one period before its first frame (``stamps_ns[idx[:, 0]] -
    periods_ns[idx[:, 0]]``), so the first frame is held over the interval before it, as the
    others are; then :func:`~ltc_controller.runtime.schedule.step_counts`.

    Args:
        stamps_ns: ``(N,)`` int64 frame stamps (``Demonstrations.stamps_ns``).
        periods_ns: ``(N,)`` int64, :func:`frame_periods_ns`.
        idx: ``(B, T)`` frame indices of the windows (consecutive frames of one segment).
        step_ns: integration step in ns.

    Returns:
        ``(B, T)`` int64 step counts for :meth:`Policy.forward`.
    """
    first = idx[:, 0]
    return step_counts(stamps_ns[idx], step_ns, stamps_ns[first] - periods_ns[first])


def make_windows(
    segment: NDArray[np.int64], seq_len: int, stride: int, phase: int = 0
) -> NDArray[np.int64]:
    """Start indices of windows of ``seq_len`` frames inside segments, ``stride`` apart, starting
    ``phase`` frames into each segment (``phase`` is reduced modulo the room left)."""
    starts: list[NDArray[np.int64]] = []
    bounds = np.flatnonzero(np.diff(segment)) + 1
    begin = np.concatenate([[0], bounds])
    end = np.concatenate([bounds, [segment.size]])
    for a, b in zip(begin, end, strict=True):
        room = int(b - a - seq_len)
        if room < 0:
            continue
        p = phase % (min(stride, room) + 1) if room > 0 else 0
        starts.append(np.arange(a + p, b - seq_len + 1, stride, dtype=np.int64))
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def split_segments(
    demos: Demonstrations | Frames, val_fraction: float, seed: int
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Validation mask ``(N,)`` (whole segments, about ``val_fraction`` of frames) and the
    segment ids to use (a lone segment is cut in two at 1 - val_fraction)."""
    seg = demos.segment.copy()
    if val_fraction <= 0.0:
        return np.zeros(seg.size, dtype=bool), seg
    ids = np.unique(seg)
    if ids.size < 2:
        cut = int(seg.size * (1.0 - val_fraction))
        seg = np.where(np.arange(seg.size) >= cut, seg + 1, seg)
        return np.arange(seg.size) >= cut, seg
    rng = np.random.default_rng(seed)
    order = rng.permutation(ids)
    counts = {int(i): int((seg == i).sum()) for i in ids}
    val: list[int] = []
    total = 0
    for i in order[:-1]:  # keep at least one segment for training
        if total >= val_fraction * seg.size:
            break
        val.append(int(i))
        total += counts[int(i)]
    return np.isin(seg, val), seg


def _augment(x: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """``x (B, T, 3, H, W)`` in [0, 1] -> augmented, one draw per window."""
    b, _, _, h, w = x.shape
    dev = x.device

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return (torch.rand(*shape, generator=gen) * (hi - lo) + lo).to(dev)

    if cfg.brightness > 0.0:
        x = x * u(1 - cfg.brightness, 1 + cfg.brightness, b, 1, 1, 1, 1)
    if cfg.contrast > 0.0:
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        x = (x - mean) * u(1 - cfg.contrast, 1 + cfg.contrast, b, 1, 1, 1, 1) + mean
    if cfg.shadow_prob > 0.0:
        # A shadow band between two lines from the top edge to the bottom edge.
        cols = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, w)
        rows = torch.linspace(0.0, 1.0, h, device=dev, dtype=x.dtype).view(1, h, 1)
        top = u(-0.3 * w, 1.3 * w, b, 2).sort(dim=1).values
        bot = u(-0.3 * w, 1.3 * w, b, 2).sort(dim=1).values
        left = top[:, :1, None] + (bot[:, :1, None] - top[:, :1, None]) * rows
        right = top[:, 1:, None] + (bot[:, 1:, None] - top[:, 1:, None]) * rows
        inside = (cols >= left) & (cols <= right)  # (B, H, W)
        on = (torch.rand(b, generator=gen) < cfg.shadow_prob).to(dev).view(b, 1, 1)
        lo, hi = cfg.shadow_strength
        factor = torch.where(inside & on, u(lo, hi, b, 1, 1), torch.ones((), device=dev))
        x = x * factor.view(b, 1, 1, h, w)
    if cfg.noise_std > 0.0:
        std = u(0.0, cfg.noise_std, b, 1, 1, 1, 1)
        noise = torch.randn(x.shape, generator=gen).to(dev)
        x = x + noise * std
    return x.clamp(0.0, 1.0)


def _batches(starts: NDArray[np.int64], batch: int) -> Iterator[NDArray[np.int64]]:
    for i in range(0, starts.size - batch + 1, batch):
        yield starts[i : i + batch]


def _gather(
    demos: Demonstrations,
    periods: NDArray[np.int64],
    starts: NDArray[np.int64],
    seq_len: int,
    step_ns: int,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor]:
    """Images ``(B, T, 3, H, W)`` in [0, 1], targets ``(B, T, M)`` and step counts ``(B, T)``
    of the windows starting at ``starts``."""
    idx = starts[:, None] + np.arange(seq_len)[None, :]
    imgs = torch.from_numpy(demos.images[idx])  # (B, T, H, W, 3) uint8
    x = imgs.to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)
    y = torch.from_numpy(demos.targets[idx]).to(device)
    n = torch.from_numpy(window_steps(demos.stamps_ns, periods, idx, step_ns)).to(device)
    return x, y, n


# -- checkpoints ---------------------------------------------------------------------------------


def _save_checkpoint(
    ckpt: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    gen: torch.Generator,
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(ckpt / "model.safetensors.tmp"))
    os.replace(ckpt / "model.safetensors.tmp", ckpt / "model.safetensors")
    osd = opt.state_dict()
    otensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                otensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    otensors["__torch_rng__"] = torch.get_rng_state()
    otensors["__gen_rng__"] = gen.get_state()
    save_file(otensors, str(ckpt / "optimizer.safetensors.tmp"))
    os.replace(ckpt / "optimizer.safetensors.tmp", ckpt / "optimizer.safetensors")
    full = dict(state, param_groups=osd["param_groups"], optimizer_scalars=scalars)
    (ckpt / "state.json.tmp").write_text(json.dumps(full, indent=1))
    os.replace(ckpt / "state.json.tmp", ckpt / "state.json")


def _load_checkpoint(
    ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> dict[str, Any]:
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"{ckpt}: not a checkpoint (no {name})")
    state: dict[str, Any] = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=True)
    ot = load_file(str(ckpt / "optimizer.safetensors"))
    torch.set_rng_state(ot.pop("__torch_rng__"))
    gen.set_state(ot.pop("__gen_rng__"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in ot.items():
        pid, k = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[k] = v
    for pid, sc in state.pop("optimizer_scalars", {}).items():
        opt_state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    return state


# -- training ------------------------------------------------------------------------------------


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _all_mean(values: list[float], world: int, device: torch.device) -> list[float]:
    if world <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world).tolist()


def _loss(pred: Tensor, y: Tensor, scale: Tensor, alpha: float, burn_in: int = 0) -> Tensor:
    """Weighted normalised squared error over frames ``burn_in:`` of ``(B, T, M)``."""
    pred, y = pred[:, burn_in:], y[:, burn_in:]
    z = (pred - y) / scale
    w = torch.exp(alpha * (y / scale).abs()) if alpha else torch.ones_like(y)
    return (w * z * z).sum() / w.sum()


def train(
    demos: Demonstrations,
    cfg: TrainConfig,
    *,
    output: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    output_units: tuple[str, ...] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    rank_weights_dir: str | Path | None = None,
    init_state: Mapping[str, Tensor] | None = None,
) -> TrainResult:
    """Train a policy on ``demos`` and (rank 0) write it to ``output`` with ``save_policy``.

    Args:
        demos: paired demonstrations (one or several bags joined).
        cfg: settings.
        output: policy file to write (``.safetensors``); None = do not write.
        checkpoint_dir: where to save a checkpoint after each epoch (None = none).
        resume: a checkpoint directory to continue from (its config must match in ``arch``).
        output_units: units of the outputs (default ``demos.output_units``: the SI units of the
            command axes).
        show_progress: tqdm bar (rank 0 only).
        log: line logger.
        rank_weights_dir: (tests) every rank writes its final weights there as
            ``rank<r>.safetensors``.
        init_state: start from these weights (a ``Policy.state_dict()`` of the same config, e.g.
            to fine-tune after a DAgger round) instead of the seeded initialisation.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: too little data for one window / batch, an unavailable architecture.
        FileNotFoundError: ``resume`` is not a checkpoint.
    """
    with needs_extra("train", "training"):
        from tqdm import tqdm

    from ltc_controller.models.policy import Policy
    from ltc_controller.models.policy_file import save_policy

    wall0 = time.perf_counter()
    rank, world = _dist()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
    else:
        device = torch.device("cpu")

    names = demos.output_names
    units = output_units or demos.output_units
    # Root mean square, not standard deviation: an output that is nearly constant but not
    # zero (a cruise speed, linear_x of a Twist) needs a scale of its size.
    rms = np.sqrt(np.mean(np.square(demos.targets, dtype=np.float64), axis=0))
    if isinstance(cfg.output_scale, tuple):
        if len(cfg.output_scale) != len(names):
            raise ValueError(
                f"TrainConfig.output_scale has {len(cfg.output_scale)} values for the "
                f"{len(names)} outputs {list(names)}"
            )
        scale = tuple(float(s) for s in cfg.output_scale)
    elif cfg.output_scale:
        scale = tuple(float(cfg.output_scale) for _ in names)
    else:
        scale = tuple(float(max(1e-3, round(2.0 * s, 4))) for s in rms)
    pcfg = build_policy_config(
        cfg.arch,
        cfg.units,
        names,
        units,
        scale,
        cfg.step_s,
        cfg.per_step_time_constants,
        cfg.ncp,
        cfg.feature_norm,
    )
    policy = Policy.from_config(pcfg, seed=cfg.seed)
    if init_state is not None:
        policy.load_state_dict(dict(init_state), strict=True)
    elif cfg.per_step_time_constants:
        scale_ltc_capacitance(policy, cfg.step_s)
    policy = policy.to(device)

    val_mask, segment = split_segments(demos, cfg.val_fraction, cfg.seed)
    periods = frame_periods_ns(dataclasses.replace(demos, segment=segment))
    step_ns = seconds_to_ns(pcfg.step_s)
    stride = cfg.stride or cfg.seq_len
    train_seg = np.where(val_mask, -1, segment)
    val_seg = np.where(val_mask, segment, -1)
    val_starts = _windows_in(val_seg, cfg.seq_len, cfg.seq_len, 0)
    if _windows_in(train_seg, cfg.seq_len, stride, 0).size < cfg.batch_size * world:
        raise ValueError(
            f"{len(demos)} frames give fewer than batch_size x processes = "
            f"{cfg.batch_size * world} training windows of {cfg.seq_len} frames; record more data "
            "or lower --seq-len / --batch-size"
        )

    if cfg.output_bias == "label_mean" and init_state is None and resume is None:
        shift = init_output_bias(
            policy,
            demos,
            periods,
            _windows_in(train_seg, cfg.seq_len, cfg.seq_len, 0),
            demos.targets[train_seg >= 0].mean(0),
            cfg.seq_len,
            step_ns,
            _burn_in(cfg),
            device,
        )
        if rank == 0:
            log(
                "output bias shifted to the label means: "
                + ", ".join(f"{n} {d:+.3g}" for n, d in zip(names, shift, strict=True))
            )

    head = [p for n, p in policy.named_parameters() if n.startswith("head.")]
    rest = [p for n, p in policy.named_parameters() if not n.startswith("head.")]
    groups = [{"params": head, "lr": cfg.lr}]
    if rest:
        groups.append({"params": rest, "lr": cfg.lr_rnn or cfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    model: nn.Module = policy
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None
        )
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    shuffle = np.random.default_rng(cfg.seed)
    scale_t = torch.tensor(scale, dtype=torch.float32, device=device)

    start_epoch, step, best, bad_epochs = 0, 0, math.inf, 0
    best_corr = math.nan
    history: list[dict[str, float]] = []
    best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    if resume is not None:
        meta = Path(resume) / "state.json"
        if meta.is_file():
            ck_cfg = json.loads(meta.read_text()).get("config", {})
            if (ck_cfg.get("arch"), ck_cfg.get("units")) != (cfg.arch, cfg.units):
                raise ValueError(
                    f"{resume}: checkpoint is for arch {ck_cfg.get('arch')!r} "
                    f"(units {ck_cfg.get('units')}), not {cfg.arch!r} (units {cfg.units})"
                )
        st = _load_checkpoint(Path(resume), policy, opt, gen)
        start_epoch, step, best, bad_epochs = st["epoch"], st["step"], st["best"], st["bad_epochs"]
        best_corr = float(st.get("best_corr", math.nan))
        history = st["history"]
        shuffle.bit_generator.state = st["shuffle_rng"]
        best_file = Path(resume) / "best.safetensors"
        if best_file.is_file():
            best_state = load_file(str(best_file))
        log(f"resumed from {resume}: epoch {start_epoch}, step {step}, best val {best:.4g}")

    n_params = sum(p.numel() for p in policy.parameters())
    if rank == 0:
        log(
            f"training {cfg.arch}: {n_params:,} parameters, {_neurons(policy)} neurons; "
            f"{int((~val_mask).sum())} train / {int(val_mask.sum())} val frames, T={cfg.seq_len}, "
            f"batch {cfg.batch_size} x {world} process(es), device {device}"
        )
    burn_in = _burn_in(cfg)
    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        if val_starts.size and bad_epochs >= cfg.patience:  # resumed after an early stop
            stopped = True
            break
        phase = int(shuffle.integers(0, stride))
        starts = _windows_in(train_seg, cfg.seq_len, stride, phase)
        starts = starts[shuffle.permutation(starts.size)]
        per_rank = starts.size // world
        mine = starts[rank * per_rank : (rank + 1) * per_rank]
        n_batches = per_rank // cfg.batch_size
        model.train()
        total, count = 0.0, 0
        bar = tqdm(
            _batches(mine, cfg.batch_size),
            total=n_batches,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (show_progress and rank == 0),
            mininterval=2.0,
            leave=False,
        )
        for batch in bar:
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
            x, y, steps = _gather(demos, periods, batch, cfg.seq_len, step_ns, device)
            x = _augment(x, cfg.augment, gen)
            pred = model(x, steps)
            loss = _loss(pred, y, scale_t, cfg.loss_alpha, burn_in)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0.0:
                nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            total += float(loss.detach())
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        bar.close()
        val_loss, val_mse, val_corr, val_rs = _validate(
            policy, demos, periods, val_starts, step_ns, cfg, scale_t, device
        )
        train_loss, val_loss, val_mse, val_corr = _all_mean(
            [total / max(1, count), val_loss, val_mse, val_corr], world, device
        )
        rec = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_mse": val_mse,
            "val_corr": val_corr,
            "steps": step,
            "wall_s": time.perf_counter() - wall0,
        }
        # Per output (this rank's validation windows): the mean hides an axis that is not learnt.
        rec.update({f"val_corr_{n}": r for n, r in zip(names, val_rs, strict=False)})
        history.append(rec)
        improved = not math.isfinite(val_loss) or val_loss < best - 1e-6
        if improved:
            best = val_loss if math.isfinite(val_loss) else best
            best_corr = val_corr
            bad_epochs = 0
            best_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        else:
            bad_epochs += 1
        if rank == 0:
            log(
                f"epoch {epoch + 1}: train {train_loss:.4f}  val {val_loss:.4f} "
                f"(mse {val_mse:.3g})  steps {step}  {rec['wall_s']:.0f} s"
                + ("  *" if improved else "")
                + (
                    "  r " + " ".join(f"{n} {r:.2f}" for n, r in zip(names, val_rs, strict=True))
                    if len(names) > 1 and val_rs
                    else ""
                )
            )
            if checkpoint_dir is not None:
                ck = Path(checkpoint_dir)
                _save_checkpoint(
                    ck,
                    policy,
                    opt,
                    {
                        "epoch": epoch + 1,
                        "step": step,
                        "best": best,
                        "best_corr": best_corr,
                        "bad_epochs": bad_epochs,
                        "history": history,
                        "shuffle_rng": shuffle.bit_generator.state,
                        "config": cfg.to_dict(),
                    },
                    gen,
                )
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in best_state.items()},
                    str(ck / "best.safetensors"),
                )
        if val_starts.size and bad_epochs >= cfg.patience:
            stopped = True
            if rank == 0:
                log(f"early stop: no validation improvement in {cfg.patience} epochs")
            break

    policy.load_state_dict({k: v.to(device) for k, v in best_state.items()})
    policy = policy.cpu().eval()
    if rank_weights_dir is not None:
        Path(rank_weights_dir).mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in policy.state_dict().items()},
            str(Path(rank_weights_dir) / f"rank{rank}.safetensors"),
        )
    if output is not None and rank == 0:
        save_policy(policy, output)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(
        policy=policy,
        best_val_loss=best if math.isfinite(best) else math.nan,
        val_corr=best_corr,
        history=history,
        steps=step,
        stopped_early=stopped,
        wall_s=time.perf_counter() - wall0,
    )


def _neurons(policy: Any) -> int:
    """Neurons of the core (the models package's count; LSTM state holds 2 per neuron)."""
    try:
        from ltc_controller.models.summary import model_size

        return int(model_size(policy).neurons)
    except (ImportError, AttributeError):
        return int(policy.state_size)


def _output_bias(policy: Any) -> nn.Parameter:
    """The core's additive output bias ``(M,)``, added before ``output_scale``: ``output_b`` of
    an LTC/CfC output map, ``readout_layer.bias`` of the dense cores.

    Raises:
        ValueError: the core has none (e.g. ``output_mapping`` ``"linear"`` or ``"none"``).
    """
    params = dict(policy.core.named_parameters())
    for name in ("output_b", "readout_layer.bias"):
        if name in params:
            return params[name]
    raise ValueError(
        f"TrainConfig.output_bias='label_mean': the {type(policy.core).__name__} core has no "
        "output bias (output_b or readout_layer.bias); use output_bias='zero'"
    )


def init_output_bias(
    policy: Any,
    demos: Demonstrations,
    periods: NDArray[np.int64],
    starts: NDArray[np.int64],
    label_mean: NDArray[np.floating[Any]],
    seq_len: int,
    step_ns: int,
    burn_in: int,
    device: torch.device,
    windows: int = 32,
) -> list[float]:
    """Shift the output bias so that the policy's mean output equals ``label_mean`` ``(M,)``
    (the training frames' mean label, in the outputs' units).

    The mean output is measured on up to ``windows`` training windows spread evenly over
    ``starts`` (no augmentation, frames after ``burn_in``). Deterministic, so every
    distributed rank makes the same shift.

    Returns:
        The shift of each output in its own unit (label mean - policy mean).

    Raises:
        ValueError: the core has no output bias (:func:`_output_bias`), or no windows.
    """
    bias = _output_bias(policy)
    if starts.size == 0:
        raise ValueError("init_output_bias: no training windows")
    pick = starts[np.unique(np.linspace(0, starts.size - 1, min(windows, starts.size)).astype(int))]
    x, _, steps = _gather(demos, periods, pick, seq_len, step_ns, device)
    policy.eval()
    with torch.no_grad():
        pred = policy(x, steps)[:, burn_in:]
        target = torch.as_tensor(label_mean, dtype=pred.dtype, device=pred.device)
        delta = target - pred.mean((0, 1))
        bias.add_(delta / policy.output_scale)
    return [float(d) for d in delta.cpu()]


def _burn_in(cfg: TrainConfig) -> int:
    b = cfg.seq_len // 4 if cfg.burn_in is None else cfg.burn_in
    return max(0, min(b, cfg.seq_len - 1))


def _windows_in(seg: NDArray[np.int64], seq_len: int, stride: int, phase: int) -> NDArray[np.int64]:
    """Windows inside segments ``>= 0`` of ``seg`` (``-1`` marks excluded frames)."""
    starts = make_windows(seg, seq_len, stride, phase)
    if starts.size == 0:
        return starts
    idx = starts[:, None] + np.arange(seq_len)[None, :]
    return starts[(seg[idx] >= 0).all(axis=1)]


def _validate(
    policy: Any,
    demos: Demonstrations,
    periods: NDArray[np.int64],
    starts: NDArray[np.int64],
    step_ns: int,
    cfg: TrainConfig,
    scale: Tensor,
    device: torch.device,
) -> tuple[float, float, float, list[float]]:
    """(loss, mse, correlation, correlation per output) on the validation windows; see
    TrainResult.val_corr."""
    if starts.size == 0:
        return math.nan, math.nan, math.nan, []
    policy.eval()
    loss_sum, mse_sum, n = 0.0, 0.0, 0
    preds: list[Tensor] = []
    labels: list[Tensor] = []
    with torch.no_grad():
        for i in range(0, starts.size, cfg.batch_size):
            batch = starts[i : i + cfg.batch_size]
            x, y, steps = _gather(demos, periods, batch, cfg.seq_len, step_ns, device)
            pred = policy(x, steps)
            k = x.shape[0]
            b = _burn_in(cfg)
            loss_sum += float(_loss(pred, y, scale, cfg.loss_alpha, b)) * k
            mse_sum += float(((pred[:, b:] - y[:, b:]) ** 2).mean()) * k
            n += k
            preds.append(pred[:, b:].reshape(-1, pred.shape[-1]).cpu())
            labels.append(y[:, b:].reshape(-1, y.shape[-1]).cpu())
    rs = _correlations(torch.cat(preds), torch.cat(labels))
    finite = [r for r in rs if not math.isnan(r)]
    return loss_sum / n, mse_sum / n, float(np.mean(finite)) if finite else math.nan, rs


def _correlations(pred: Tensor, y: Tensor) -> list[float]:
    """Pearson correlation of ``pred`` and ``y`` (``(N, outputs)``) per output; NaN where either
    side is constant."""
    rs = []
    for j in range(pred.shape[1]):
        a, b = pred[:, j].double(), y[:, j].double()
        a, b = a - a.mean(), b - b.mean()
        den = float(torch.sqrt((a * a).sum() * (b * b).sum()))
        rs.append(float((a * b).sum()) / den if den > 1e-12 else math.nan)
    return rs


def _correlation(pred: Tensor, y: Tensor) -> float:
    """Mean over outputs of the Pearson correlation of ``pred`` and ``y`` (``(N, outputs)``);
    outputs where either side is constant are left out (NaN when all are)."""
    rs = [r for r in _correlations(pred, y) if not math.isnan(r)]
    return float(np.mean(rs)) if rs else math.nan
