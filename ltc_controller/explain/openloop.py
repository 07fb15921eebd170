"""A policy run open loop over recorded frames with the runtime's own stepping, and its neurons.

:func:`run_open_loop` feeds the frames to a :class:`~ltc_controller.runtime.loop.PolicyRuntime`
(assembled by :func:`~ltc_controller.runtime.factory.build_runtime`, as for the node) exactly as
the ``ltc_policy`` node does (decode, crop, resize, conv head; fixed steps of ``step_s`` on the
stamp grid, features held between frames), with one tick at each frame's stamp and a frozen work
clock, so no deadline ever postpones a step: the run is the runtime's deterministic regime, the
one training reproduces (``Policy.run_sequence`` with the counts
``runtime.schedule.step_counts(stamps_ns, step_ns)``). Stale frames, gaps and clock jumps are
handled (and counted) as the node would handle them: a gap between frame stamps longer than
``max_frame_age_s`` resets the state (event ``clock_jump_fwd``: ROS time jumped between two
ticks), as a training segment ends there.

:func:`neuron_activity` names the recorded state: the NCP's neurons by group (sensory = the 32
input features, inter, command, motor; Lechner et al. 2020, Fig. 1), the baselines' hidden units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.explain.saliency import integrated_gradients, visual_backprop
from ltc_controller.models.policy import Crop, Policy
from ltc_controller.runtime.factory import RuntimeOverrides, build_runtime
from ltc_controller.runtime.loop import RawFrame

__all__ = ["NeuronGroup", "OpenLoopRun", "neuron_activity", "run_open_loop"]


@dataclass
class OpenLoopRun:
    """What a policy did on a sequence of frames (one entry per frame = per tick).

    Attributes:
        label: a name for reports.
        policy: the policy (eval mode).
        stamps_ns: ``(N,)`` int64 frame stamps, also the tick times.
        outputs: ``(N, M)`` float64 commands in ``config.output_units``; NaN before the first
            output and after resets until re-warmed.
        states: ``(N, S)`` float32 hidden state after each tick.
        images: ``(N, 3, H, W)`` float32 network input held after each tick, in the policy's
            ``color_order`` (the frame's own when it was taken, else the previous one).
        taken: ``(N,)`` the tick took its frame (False: rejected; see ``counters``).
        steps: ``(N,)`` integration steps each tick took.
        events: ``(frame index, event)`` for every runtime event (resets, rejections).
        counters: the runtime's :class:`~ltc_controller.runtime.loop.Counters` as a dict.
        crop: the crop applied before resizing.
    """

    label: str
    policy: Policy
    stamps_ns: NDArray[np.int64]
    outputs: NDArray[np.float64]
    states: NDArray[np.float32]
    images: NDArray[np.float32]
    taken: NDArray[np.bool_]
    steps: NDArray[np.int64]
    events: list[tuple[int, str]] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    crop: Crop = field(default_factory=Crop)

    @property
    def times_s(self) -> NDArray[np.float64]:
        """``(N,)`` seconds since the first frame."""
        if self.stamps_ns.size == 0:
            return np.zeros(0)
        return (self.stamps_ns - self.stamps_ns[0]).astype(np.float64) * 1e-9

    def rgb(self) -> NDArray[np.uint8]:
        """``(N, H, W, 3)`` uint8 RGB of :attr:`images` (for overlays)."""
        img = np.rint(np.clip(self.images, 0.0, 1.0) * 255.0).astype(np.uint8)
        img = img.transpose(0, 2, 3, 1)
        return img[..., ::-1].copy() if self.policy.config.color_order == "bgr" else img

    def visual_backprop(self, batch_size: int = 32) -> NDArray[np.float32]:
        """``(N, H, W)`` VisualBackProp saliency of every frame (see
        :func:`~ltc_controller.explain.saliency.visual_backprop`)."""
        out = []
        with torch.inference_mode():
            for k in range(0, len(self.images), batch_size):
                x = torch.from_numpy(self.images[k : k + batch_size])
                out.append(visual_backprop(self.policy.head, x).numpy())
        if not out:
            h, w = self.images.shape[2:]
            return np.zeros((0, h, w), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def integrated_gradients(
        self, frame: int, output: int | str = 0, n_steps: int = 32
    ) -> NDArray[np.float32] | None:
        """``(3, H, W)`` integrated gradients of ``output`` at ``frame`` w.r.t. that frame's
        input, from the recorded state before it and the steps the runtime took there; ``None``
        when the tick took no step or did not take the frame (the image did not reach the
        output)."""
        if not (self.taken[frame] and self.steps[frame] > 0):
            return None
        state = None if frame == 0 else torch.from_numpy(self.states[frame - 1 : frame])
        if frame > 0 and any(i == frame for i, e in self.events if not e.startswith("rejected")):
            state = None  # the state was reset at this tick
        attr = integrated_gradients(
            self.policy,
            torch.from_numpy(self.images[frame : frame + 1]),
            step=0,
            frame_steps=torch.from_numpy(self.steps[frame : frame + 1]),
            output=output,
            n_steps=n_steps,
            state=state,
        )
        return attr.numpy()


def run_open_loop(
    policy: Policy,
    frames: Sequence[RawFrame],
    label: str | None = None,
    crop: Crop | None = None,
    max_frame_age_s: float = 0.3,
) -> OpenLoopRun:
    """Run ``policy`` over ``frames`` with the runtime (one tick at each frame's stamp).

    Args:
        policy: the policy (put in eval mode).
        frames: camera frames in arrival order.
        label: name for reports (default: the architecture).
        crop: pixels cropped before resizing; default the policy file's.
        max_frame_age_s: the runtime's staleness bound (a gap longer than this resets the state,
            as on the robot).

    Returns:
        :class:`OpenLoopRun`.
    """
    policy.eval()
    cfg = policy.config
    use_crop = cfg.crop if crop is None else crop
    # The crop goes to the runtime's preprocessor, as on the robot: every frame (a JPEG decoded
    # at reduced scale included) takes the deployment path.
    # A frozen work clock: every due step fits its deadline (deterministic regime).
    runtime = build_runtime(
        policy,
        RuntimeOverrides(
            deadline_s=1.0,
            max_frame_age_s=max_frame_age_s,
            max_lag_s=max(1.0, 2 * max_frame_age_s),
            crop_top=use_crop.top,
            crop_bottom=use_crop.bottom,
            crop_left=use_crop.left,
            crop_right=use_crop.right,
        ),
        clock=lambda: 0.0,
    )
    n = len(frames)
    m = len(cfg.output_names)
    outputs = np.full((n, m), math.nan)
    states = np.zeros((n, policy.state_size), dtype=np.float32)
    images = np.zeros((n, 3, cfg.image_height, cfg.image_width), dtype=np.float32)
    taken = np.zeros(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    events: list[tuple[int, str]] = []
    c = runtime.counters
    for k, frame in enumerate(frames):
        runtime.offer_frame(frame)
        used = c.frames_used
        r = runtime.tick(frame.stamp, frame.stamp_ns)
        taken[k] = c.frames_used != used
        steps[k] = r.steps
        if r.outputs is not None:
            outputs[k] = r.outputs
        states[k] = runtime.state.detach().cpu().numpy()[0]
        images[k] = runtime.pre.out if (taken[k] or k == 0) else images[k - 1]
        events.extend((k, e) for e in r.events)
    counters = {key: (dict(v) if isinstance(v, dict) else v) for key, v in vars(c).items()}
    return OpenLoopRun(
        label=label or cfg.architecture,
        policy=policy,
        stamps_ns=np.asarray([f.stamp_ns for f in frames], dtype=np.int64),
        outputs=outputs,
        states=states,
        images=images,
        taken=taken,
        steps=steps,
        events=events,
        counters=counters,
        crop=use_crop,
    )


@dataclass(frozen=True)
class NeuronGroup:
    """Activity of one group of neurons over a run.

    Attributes:
        name: ``sensory``, ``inter``, ``command``, ``motor`` (NCP), or ``hidden``, ``hidden h``,
            ``cell c``, ``features`` (baselines).
        labels: one per neuron (e.g. ``"c3"``; for NCP the LTC neuron ID in brackets).
        values: ``(N, n)`` float32 activity (LTC: membrane potential; LSTM: h and c; CNN:
            ReLU outputs of the hidden layer; sensory: the conv head's features).
    """

    name: str
    labels: tuple[str, ...]
    values: NDArray[np.float32]


def _features(run: OpenLoopRun, batch_size: int = 64) -> NDArray[np.float32]:
    out = []
    with torch.inference_mode():
        for k in range(0, len(run.images), batch_size):
            out.append(run.policy.features(torch.from_numpy(run.images[k : k + batch_size])))
    if not out:
        return np.zeros((0, run.policy.config.feature_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def _label(group: str, j: int, outputs: Sequence[str]) -> str:
    """``i3``, ``c0``; a motor neuron with the output it drives: ``m1 linear_y``."""
    if group == "motor" and j < len(outputs):
        return f"m{j} {outputs[j]}"
    return f"{group[0]}{j}"


def neuron_activity(run: OpenLoopRun) -> list[NeuronGroup]:
    """Every neuron's activity over the run, grouped.

    NCP (``ncp_ltc``; also ``ltc_fc``, ``ncp_cfc``): ``sensory`` (the head's features, which the
    wiring's sensory synapses read), ``inter``, ``command``, ``motor`` (state entries by the
    wiring's groups; ``ncp_cfc`` keeps its state in layer order ``[inter | command | motor]``);
    motor neuron ``j`` is labelled with the output it drives (``m0 linear_x``, as the wiring).
    LSTM: ``features``, ``hidden h``, ``cell c``. GRU, CT-RNN, CfC: ``features``, ``hidden``.
    CNN (no state): ``features``, ``hidden`` (ReLU of its hidden layer).
    """
    policy, cfg = run.policy, run.policy.config
    feats = _features(run)
    arch = cfg.architecture
    groups: list[NeuronGroup] = []
    sensory_name = "sensory" if cfg.is_wired else "features"
    groups.append(NeuronGroup(sensory_name, tuple(f"s{i}" for i in range(feats.shape[1])), feats))
    states = run.states
    if cfg.is_wired:
        wiring = cfg.build_wiring()
        named = wiring.neuron_groups
        if arch == "ncp_cfc":
            offset = 0
            for name in ("inter", "command", "motor"):
                size = len(named[name])
                if size:
                    idx = list(range(offset, offset + size))
                    labels = tuple(_label(name, j, cfg.output_names) for j in range(size))
                    groups.append(NeuronGroup(name, labels, states[:, idx]))
                offset += size
            return groups
        for name in ("inter", "command", "motor"):
            ids = list(named[name])
            if ids:
                labels = tuple(
                    f"{_label(name, j, cfg.output_names)} [{i}]" for j, i in enumerate(ids)
                )
                groups.append(NeuronGroup(name, labels, states[:, ids]))
        return groups
    if arch == "lstm":
        h = states.shape[1] // 2
        groups.append(NeuronGroup("hidden h", tuple(f"h{i}" for i in range(h)), states[:, :h]))
        groups.append(NeuronGroup("cell c", tuple(f"c{i}" for i in range(h)), states[:, h:]))
        return groups
    if arch == "cnn":
        core: Any = policy.core
        with torch.inference_mode():
            hidden = torch.relu(core.hidden(torch.from_numpy(feats))).numpy()
        groups.append(NeuronGroup("hidden", tuple(f"u{i}" for i in range(hidden.shape[1])), hidden))
        return groups
    groups.append(NeuronGroup("hidden", tuple(f"h{i}" for i in range(states.shape[1])), states))
    return groups
