"""The image-to-command policy: conv head + LTC/NCP cell + output scaling, and its config.

``Policy`` = :class:`~ltc_controller.models.heads.ConvHead` (Lechner et al. 2020, 79,420
parameters) feeding 32 features to an :class:`~ltc_controller.models.ltc.LTCCell` wired as an NCP;
the motor outputs are multiplied by ``config.output_scale``. The default config is the 19-neuron
lane-keeping network ``NCP(inter=12, command=6, motor=1, sensory_fanout=6, inter_fanout=4,
recurrent_command_synapses=6, motor_fanin=6, seed=22222)`` on 78x200 RGB images.

Time: the network is stepped in fixed steps of ``config.step_s`` seconds (``elapsed = step_s`` per
cell call), both online (the runtime) and in training (:meth:`Policy.forward`, see
:func:`substep_counts`), so the dynamics seen in deployment are the ones trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__ as _package_version
from .heads import ConvHead
from .ltc import LTCCell
from .wiring import NCP, Wiring

__all__ = ["Crop", "Policy", "PolicyConfig", "default_wiring_config", "substep_counts"]

ARCHITECTURES = ("ncp_ltc",)
COLOR_ORDERS = ("rgb", "bgr")
NORMALIZATIONS = ("per_image_standardization",)
FEATURE_DIM = 32  # ConvHead output: 8 channels x 4 units


def default_wiring_config() -> dict[str, Any]:
    """The 19-neuron lane-keeping NCP on 32 features (Lechner et al. 2020, Fig. 6)."""
    return NCP(12, 6, 1, 6, 4, 6, 6, seed=22222, input_dim=FEATURE_DIM).get_config()


@dataclass(frozen=True)
class Crop:
    """Pixels removed from each side of the camera image before resizing to the policy size."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


def _package() -> str:
    return _package_version


def _torch() -> str:
    return str(torch.__version__)


@dataclass(frozen=True)
class PolicyConfig:
    """Self-describing policy configuration; JSON round trip via :meth:`to_json`/:meth:`from_json`.

    Fields:
        architecture: ``"ncp_ltc"``.
        wiring: wiring config (``Wiring.get_config()``: type, arguments, seed, input_dim=32).
        ode_unfolds, epsilon, implicit_param_constraints, input_mapping, output_mapping:
            :class:`~ltc_controller.models.ltc.LTCCell` arguments.
        image_height, image_width: network input size in pixels (78 x 200).
        color_order: channel order of the network input, ``"rgb"`` or ``"bgr"``.
        crop: pixels cropped from the camera image before resizing (runtime preprocessing).
        normalization: ``"per_image_standardization"`` (inside the head; inputs are floats in
            [0, 1]).
        output_names, output_units: one per motor neuron, e.g. ``("steering_angle",)``,
            ``("rad",)``.
        output_scale: output = motor neuron output x scale, one per output.
        step_s: fixed integration step in seconds (each cell call uses ``elapsed = step_s``).
        package_version, torch_version: versions that created the config.

    Raises:
        ValueError: (at construction) a field out of range or inconsistent with another, naming
            the field.
    """

    architecture: str = "ncp_ltc"
    wiring: Mapping[str, Any] = field(default_factory=default_wiring_config)
    ode_unfolds: int = 6
    epsilon: float = 1e-8
    implicit_param_constraints: bool = True
    input_mapping: str = "affine"
    output_mapping: str = "affine"
    image_height: int = 78
    image_width: int = 200
    color_order: str = "rgb"
    crop: Crop = field(default_factory=Crop)
    normalization: str = "per_image_standardization"
    output_names: tuple[str, ...] = ("steering_angle",)
    output_units: tuple[str, ...] = ("rad",)
    output_scale: tuple[float, ...] = (1.0,)
    step_s: float = 0.05
    package_version: str = field(default_factory=_package)
    torch_version: str = field(default_factory=_torch)

    def __post_init__(self) -> None:
        def bad(name: str, message: str) -> ValueError:
            return ValueError(f"config field '{name}': {message}")

        if self.architecture not in ARCHITECTURES:
            raise bad("architecture", f"{self.architecture!r} is not one of {ARCHITECTURES}")
        try:
            wiring = Wiring.from_config(self.wiring)
        except (ValueError, TypeError) as exc:
            raise bad("wiring", str(exc)) from exc
        if wiring.input_dim != FEATURE_DIM:
            raise bad(
                "wiring",
                f"input_dim={wiring.input_dim}, but the conv head gives {FEATURE_DIM} features",
            )
        object.__setattr__(self, "wiring", wiring.get_config())  # canonical, private copy
        if self.ode_unfolds < 1:
            raise bad("ode_unfolds", f"must be >= 1, got {self.ode_unfolds}")
        if not (self.epsilon >= 0.0 and math.isfinite(self.epsilon)):
            raise bad("epsilon", f"must be finite and >= 0, got {self.epsilon}")
        for name in ("image_height", "image_width"):
            if int(getattr(self, name)) < 1:
                raise bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.color_order not in COLOR_ORDERS:
            raise bad("color_order", f"{self.color_order!r} is not one of {COLOR_ORDERS}")
        if not isinstance(self.crop, Crop):
            raise bad("crop", f"must be a Crop, got {type(self.crop).__name__}")
        for side, value in dataclasses.asdict(self.crop).items():
            if not isinstance(value, int) or value < 0:
                raise bad("crop", f"{side}={value!r} must be an int >= 0")
        if self.normalization not in NORMALIZATIONS:
            raise bad("normalization", f"{self.normalization!r} is not one of {NORMALIZATIONS}")
        object.__setattr__(self, "output_names", tuple(self.output_names))
        object.__setattr__(self, "output_units", tuple(self.output_units))
        object.__setattr__(self, "output_scale", tuple(float(s) for s in self.output_scale))
        for name in ("output_names", "output_units", "output_scale"):
            if len(getattr(self, name)) != wiring.output_dim:
                raise bad(
                    name,
                    f"has {len(getattr(self, name))} entries; the wiring has "
                    f"{wiring.output_dim} motor neurons",
                )
        if not all(math.isfinite(s) for s in self.output_scale):
            raise bad("output_scale", f"must be finite, got {self.output_scale}")
        if not (self.step_s > 0.0 and math.isfinite(self.step_s)):
            raise bad("step_s", f"must be a positive number of seconds, got {self.step_s}")

    def build_wiring(self) -> Wiring:
        """The built wiring this config describes."""
        return Wiring.from_config(self.wiring)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["wiring"] = dict(self.wiring)
        for name in ("output_names", "output_units", "output_scale"):
            out[name] = list(out[name])
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], strict: bool = True) -> PolicyConfig:
        """Inverse of :meth:`to_dict`.

        Args:
            data: the dict.
            strict: every field must be present (policy files); False fills missing fields with
                defaults (hand-written configs). Unknown keys are always an error.

        Raises:
            ValueError: unknown or (strict) missing keys, or an invalid value; the message names
                the key.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}")
        missing = sorted(names - set(data))
        if strict and missing:
            raise ValueError(f"missing config key(s) {missing}")
        kwargs = dict(data)
        if "crop" in kwargs:
            crop = kwargs["crop"]
            if not isinstance(crop, Mapping):
                raise ValueError(f"config field 'crop': expected an object, got {crop!r}")
            crop_names = {f.name for f in dataclasses.fields(Crop)}
            if set(crop) != crop_names:
                raise ValueError(
                    f"config field 'crop': keys {sorted(crop)}, expected {sorted(crop_names)}"
                )
            kwargs["crop"] = Crop(**crop)
        for name in ("output_names", "output_units", "output_scale"):
            if name in kwargs:
                if not isinstance(kwargs[name], list | tuple):
                    raise ValueError(
                        f"config field '{name}': expected a list, got {kwargs[name]!r}"
                    )
                kwargs[name] = tuple(kwargs[name])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad config: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, strict: bool = True) -> PolicyConfig:
        """Parse :meth:`to_json` output. Raises ``ValueError`` (also for malformed JSON)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("config JSON must be an object")
        return cls.from_dict(data, strict=strict)


def substep_counts(timespans: Tensor, step_s: float) -> Tensor:
    """Fixed steps taken for each frame when frames are ``timespans`` seconds apart.

    The clock accumulates real time and takes one step of ``step_s`` each time it crosses a
    multiple of ``step_s`` (the remainder carries to the next frame), so jitter changes the number
    of steps, never their size: with cumulative time c_t = sum_{u<=t} timespans[:, u],
    ``n_t = floor(c_t / step_s + 1e-9) - floor(c_{t-1} / step_s + 1e-9)``.

    Args:
        timespans: ``(B, T)`` seconds between consecutive frames (frame t's own interval).
        step_s: step in seconds.

    Returns:
        ``(B, T)`` int64 step counts (>= 0).
    """
    cumulative = torch.cumsum(timespans.detach().to(torch.float64), dim=1) / step_s
    ticks = torch.floor(cumulative + 1e-9).to(torch.int64)
    return torch.diff(ticks, dim=1, prepend=torch.zeros_like(ticks[:, :1]))


class Policy(nn.Module):
    """Conv head + LTC cell + output scaling.

    Submodules: ``head`` (:class:`ConvHead`) and ``ltc`` (:class:`LTCCell`); state_dict keys are
    ``head.*`` and ``ltc.*`` (``ltc.*`` equals an ncps ``LTCCell`` state_dict).

    Args:
        config: the :class:`PolicyConfig`. Weights are random (torch's global RNG); use
            :meth:`from_config` for a seeded, deterministic untrained policy.
    """

    output_scale: Tensor

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__()
        self.config = PolicyConfig() if config is None else config
        cfg = self.config
        self.head = ConvHead(cfg.image_height, cfg.image_width)
        self.ltc = LTCCell(
            cfg.build_wiring(),
            in_features=self.head.feature_dim,
            input_mapping=cfg.input_mapping,
            output_mapping=cfg.output_mapping,
            ode_unfolds=cfg.ode_unfolds,
            epsilon=cfg.epsilon,
            implicit_param_constraints=cfg.implicit_param_constraints,
        )
        self.register_buffer(
            "output_scale", torch.tensor(cfg.output_scale, dtype=torch.float32), persistent=False
        )

    @classmethod
    def from_config(cls, config: PolicyConfig | None = None, seed: int = 0) -> Policy:
        """Untrained policy with weights drawn from ``seed`` (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config)

    @property
    def state_size(self) -> int:
        """H, neurons in the LTC state."""
        return self.ltc.state_size

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.config.output_names

    def initial_state(
        self,
        batch: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Zero state ``(batch, H)`` (the paper resets to zero at every episode start)."""
        ref = self.ltc.gleak
        return torch.zeros(
            batch, self.state_size, device=device or ref.device, dtype=dtype or ref.dtype
        )

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images in [0, 1], ``config.color_order`` -> ``(B, 32)``."""
        features: Tensor = self.head(images)
        return features

    def step(
        self, features: Tensor, state: Tensor, elapsed_s: float | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Advance the LTC state by ``elapsed_s`` seconds (default ``config.step_s``).

        Args:
            features: ``(B, 32)`` from :meth:`features`, held constant over the step.
            state: ``(B, H)``.
            elapsed_s: seconds (float, or ``(B,)``/``(B, 1)`` tensor). The runtime passes
                ``config.step_s`` on every call.

        Returns:
            ``(outputs (B, M) in config.output_units, new_state (B, H))``.
        """
        elapsed = self.config.step_s if elapsed_s is None else elapsed_s
        motor, new_state = self.ltc(features, state, elapsed)
        return motor * self.output_scale, new_state

    def run_sequence(
        self, features: Tensor, timespans: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Roll the LTC over a feature sequence with fixed steps of ``config.step_s``.

        Frame t's features are held over its interval ``timespans[:, t]``, which is advanced in
        :func:`substep_counts` steps (``None``: exactly one step per frame). A sample that takes
        0 steps keeps its state; its output is recomputed from that state.

        Args:
            features: ``(B, T, 32)``.
            timespans: ``(B, T)`` seconds, or ``None``.
            state: ``(B, H)`` initial state, ``None`` for zeros.

        Returns:
            ``(outputs (B, T, M), final_state (B, H))``.
        """
        batch, steps = features.shape[0], features.shape[1]
        if state is None:
            state = self.initial_state(batch, features.device, features.dtype)
        counts = None if timespans is None else substep_counts(timespans, self.config.step_s)
        cell, step_s = self.ltc, self.config.step_s
        eff = cell.effective()
        outputs = []
        for t in range(steps):
            f_t = features[:, t]
            if counts is None:
                state = cell.step(f_t, state, step_s, eff)
            else:
                n_t = counts[:, t]
                n_max = int(n_t.max())
                uniform = bool((n_t == n_max).all())
                for k in range(n_max):
                    new = cell.step(f_t, state, step_s, eff)
                    if uniform:
                        state = new
                    else:
                        state = torch.where((n_t > k).to(state.device).unsqueeze(1), new, state)
            outputs.append(cell.map_outputs(state) * self.output_scale)
        return torch.stack(outputs, 1), state

    def forward(
        self, images: Tensor, timespans: Tensor | None = None, state: Tensor | None = None
    ) -> Tensor:
        """Offline pass: ``images (B, T, 3, H, W)``, ``timespans (B, T)`` seconds -> ``(B, T, M)``.

        All frames go through the head as one batch, then :meth:`run_sequence`.
        """
        if images.dim() != 5:
            raise ValueError(f"images must be (B, T, 3, H, W), got {tuple(images.shape)}")
        batch, steps = images.shape[:2]
        feats = self.head(images.flatten(0, 1)).view(batch, steps, -1)
        return self.run_sequence(feats, timespans, state)[0]
