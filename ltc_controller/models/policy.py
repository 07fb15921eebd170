"""The image-to-command policy: perception head + recurrent core + output scaling, and its config.

``Policy`` = a head (:class:`~ltc_controller.models.heads.ConvHead`, Lechner et al. 2020, 79,420
parameters, 32 features; or :class:`~ltc_controller.models.heads.DroneTrunk`, Chahine et al.
2023, 128 features) feeding a core chosen by ``config.architecture``; the core's motor outputs
are multiplied by ``config.output_scale``. Architectures (all behind the same interface:
:meth:`Policy.features`, :meth:`Policy.step`, :meth:`Policy.initial_state`,
:meth:`Policy.run_sequence`, :meth:`Policy.forward`, ``state_size``, ``config.output_names``):

=============  ==========================================  ==============  ========================
architecture   core (submodule, state_dict prefix)         state (B, S)    size from
=============  ==========================================  ==============  ========================
``ncp_ltc``    :class:`LTCCell` on a wiring (``ltc``)       S = H neurons   ``wiring`` (NCP-19)
``ltc_fc``     :class:`LTCCell`, FullyConnected (``ltc``)   S = H           ``units`` (19)
``cfc``        :class:`CfC` + projection to M (``cfc``)     S = H           ``units`` (19)
``ncp_cfc``    :class:`CfC` on a wiring (``cfc``)           S = H, layers   ``wiring`` (NCP-19)
``lstm``       :class:`LSTMCore` (``lstm``)                 S = 2H [h | c]  ``units`` (64)
``gru``        :class:`GRUCore` (``gru``)                   S = H           ``units`` (64)
``ctrnn``      :class:`CTRNNCore` (``ctrnn``)               S = H           ``units`` (64)
``cnn``        :class:`MLPCore`, feed-forward (``mlp``)     S = 0 (empty)   ``units`` (64 hidden)
=============  ==========================================  ==============  ========================

The default config is the 19-neuron lane-keeping network ``NCP(inter=12, command=6, motor=1,
sensory_fanout=6, inter_fanout=4, recurrent_command_synapses=6, motor_fanin=6, seed=22222)`` on
78x200 RGB images.

Time: the core is stepped in fixed steps of ``config.step_s`` seconds (``elapsed = step_s`` per
call), both online (the runtime) and in training (:meth:`Policy.forward`), so the dynamics seen
in deployment are the ones trained. How many steps each frame takes is not decided here: the
offline passes take integer counts ``(B, T)`` computed by the caller with the runtime's stepping
rule (``ltc_controller.runtime.schedule.step_counts`` on integer-ns stamps), the one rule the
runtime's own tick applies. Continuous-time cores (LTC, CfC, CT-RNN) integrate over ``elapsed``;
LSTM and GRU make one update per step; the feed-forward ``cnn`` maps the held features to outputs
at every step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from .. import __version__ as _package_version
from .cfc import ACTIVATIONS, MODES, CfC
from .cores import Core, CTRNNCore, GRUCore, LSTMCore, MLPCore, as_compute_dtype
from .heads import (
    FEATURE_NORMS,
    HEADS,
    NORMALIZATIONS,
    ConvHead,
    DroneTrunk,
    build_head,
    head_feature_dim,
    normalize_features,
)
from .ltc import LTCCell
from .wiring import NCP, FullyConnected, Wiring

if TYPE_CHECKING:
    from ltc_controller.models.ood import AttentionStats, FeatureStats

__all__ = [
    "ARCHITECTURES",
    "Crop",
    "Policy",
    "PolicyConfig",
    "build_core",
    "default_wiring_config",
]

ARCHITECTURES = ("ncp_ltc", "ltc_fc", "cfc", "ncp_cfc", "lstm", "gru", "ctrnn", "cnn")
WIRED_ARCHITECTURES = ("ncp_ltc", "ltc_fc", "ncp_cfc")
CORE_MODULES = {
    "ncp_ltc": "ltc",
    "ltc_fc": "ltc",
    "cfc": "cfc",
    "ncp_cfc": "cfc",
    "lstm": "lstm",
    "gru": "gru",
    "ctrnn": "ctrnn",
    "cnn": "mlp",
}
DEFAULT_UNITS = {"ltc_fc": 19, "cfc": 19, "lstm": 64, "gru": 64, "ctrnn": 64, "cnn": 64}
# core_options per architecture, with defaults (a config always holds the full set).
CORE_OPTIONS: dict[str, dict[str, Any]] = {
    "ncp_ltc": {},
    "ltc_fc": {},
    "cfc": {
        "mode": "default",
        "backbone_activation": "lecun_tanh",
        "backbone_units": 128,
        "backbone_layers": 1,
        "backbone_dropout": 0.0,
    },
    "ncp_cfc": {"mode": "default"},
    "lstm": {},
    "gru": {},
    "ctrnn": {"tau_s": 1.0},
    "cnn": {},
}
COLOR_ORDERS = ("rgb", "bgr")
FEATURE_DIM = 32  # ConvHead output: 8 channels x 4 units


def default_wiring_config(input_dim: int = FEATURE_DIM) -> dict[str, Any]:
    """The 19-neuron lane-keeping NCP (Lechner et al. 2020, Fig. 6) on ``input_dim`` features."""
    return NCP(12, 6, 1, 6, 4, 6, 6, seed=22222, input_dim=input_dim).get_config()


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


#: Config fields added after policy files were first written: a strict load fills them with their
#: defaults (which give the older behaviour) when a file lacks them.
_ADDED_LATER = frozenset({"feature_norm"})


@dataclass(frozen=True)
class PolicyConfig:
    """Self-describing policy configuration; JSON round trip via :meth:`to_json`/:meth:`from_json`.

    Fields:
        architecture: one of :data:`ARCHITECTURES` (see the module docstring).
        wiring: wiring config (``Wiring.get_config()``) of the wired architectures (``ncp_ltc``,
            ``ltc_fc``, ``ncp_cfc``), ``None`` for the others. ``None`` there means the default:
            the NCP-19 (``ncp_ltc``, ``ncp_cfc``) or ``FullyConnected(units, M)`` (``ltc_fc``).
            An unbuilt wiring is built for the head's feature count.
        units: neurons of the core (hidden width for ``cnn``); ``None`` = the architecture's
            default. Wired architectures take it from the wiring.
        core_options: architecture-specific options, completed with defaults: ``cfc``: mode,
            backbone_activation, backbone_units, backbone_layers, backbone_dropout; ``ncp_cfc``:
            mode; ``ctrnn``: tau_s (fixed time constant, seconds); others: none.
        ode_unfolds: solver sub-steps per step (LTC and CT-RNN).
        epsilon, implicit_param_constraints, input_mapping, output_mapping:
            :class:`~ltc_controller.models.ltc.LTCCell` arguments (LTC architectures only).
        head: perception head, ``"ncp_conv"`` (32 features) or ``"drone_trunk"`` (128).
        image_height, image_width: network input size in pixels (NCP paper 78 x 200; drone paper
            144 x 256).
        color_order: channel order of the network input, ``"rgb"`` or ``"bgr"``.
        crop: pixels cropped from the camera image before resizing (runtime preprocessing).
        normalization: inside the head, on float inputs in [0, 1]:
            ``"per_image_standardization"`` or ``"drone_channel_standardization"``.
        feature_norm: normalisation of the head's feature vector at the core's input
            (:meth:`Policy.step`, :meth:`Policy.run_sequence`), ``"none"`` (the papers) or
            ``"layer"`` (per-sample standardisation,
            :func:`~ltc_controller.models.heads.normalize_features`); :meth:`Policy.features`
            returns the head's features before it. Policy files written before this field
            existed load as ``"none"``.
        output_names, output_units: one per output (motor neuron), e.g. ``("steering_angle",)``,
            ``("rad",)``.
        output_scale: output = core output x scale, one per output.
        step_s: fixed integration step in seconds (each core call uses ``elapsed = step_s``).
        package_version, torch_version: versions that created the config.

    Raises:
        ValueError: (at construction) a field out of range or inconsistent with another, naming
            the field.
    """

    architecture: str = "ncp_ltc"
    wiring: Mapping[str, Any] | None = None
    units: int | None = None
    core_options: Mapping[str, Any] = field(default_factory=dict)
    ode_unfolds: int = 6
    epsilon: float = 1e-8
    implicit_param_constraints: bool = True
    input_mapping: str = "affine"
    output_mapping: str = "affine"
    head: str = "ncp_conv"
    image_height: int = 78
    image_width: int = 200
    color_order: str = "rgb"
    crop: Crop = field(default_factory=Crop)
    normalization: str = "per_image_standardization"
    feature_norm: str = "none"
    output_names: tuple[str, ...] = ("steering_angle",)
    output_units: tuple[str, ...] = ("rad",)
    output_scale: tuple[float, ...] = (1.0,)
    step_s: float = 0.05
    package_version: str = field(default_factory=_package)
    torch_version: str = field(default_factory=_torch)

    def __post_init__(self) -> None:
        def bad(name: str, message: str) -> ValueError:
            return ValueError(f"config field '{name}': {message}")

        arch = self.architecture
        if arch not in ARCHITECTURES:
            raise bad("architecture", f"{arch!r} is not one of {ARCHITECTURES}")
        if self.head not in HEADS:
            raise bad("head", f"{self.head!r} is not one of {HEADS}")
        if self.normalization not in NORMALIZATIONS:
            raise bad("normalization", f"{self.normalization!r} is not one of {NORMALIZATIONS}")
        if self.feature_norm not in FEATURE_NORMS:
            raise bad("feature_norm", f"{self.feature_norm!r} is not one of {FEATURE_NORMS}")
        features = head_feature_dim(self.head)
        object.__setattr__(self, "output_names", tuple(self.output_names))
        object.__setattr__(self, "output_units", tuple(self.output_units))
        object.__setattr__(self, "output_scale", tuple(float(s) for s in self.output_scale))
        outputs = len(self.output_names)
        if self.units is not None and (
            isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1
        ):
            raise bad("units", f"must be an int >= 1 or null, got {self.units!r}")

        if arch in WIRED_ARCHITECTURES:
            if self.wiring is None:
                if arch == "ltc_fc":
                    units = self.units or DEFAULT_UNITS[arch]
                    wiring: Wiring = FullyConnected(units, min(outputs, units))
                else:
                    wiring = Wiring.from_config(default_wiring_config(features))
            else:
                try:
                    wiring = Wiring.from_config(self.wiring)
                except (ValueError, TypeError) as exc:
                    raise bad("wiring", str(exc)) from exc
            if arch == "ltc_fc" and type(wiring) is not FullyConnected:
                raise bad("wiring", f"ltc_fc needs a FullyConnected wiring, got {wiring!r}")
            if wiring.input_dim is None:
                wiring = wiring.build(features)
            if wiring.input_dim != features:
                raise bad(
                    "wiring",
                    f"input_dim={wiring.input_dim}, but the {self.head} head gives {features} "
                    "features",
                )
            if self.units is not None and self.units != wiring.units:
                raise bad("units", f"{self.units} disagrees with the wiring's {wiring.units}")
            object.__setattr__(self, "wiring", wiring.get_config())  # canonical, private copy
            object.__setattr__(self, "units", wiring.units)
            outputs = wiring.output_dim
            outputs_from = f"the wiring has {outputs} motor neurons"
        else:
            if self.wiring is not None:
                raise bad("wiring", f"architecture {arch!r} takes no wiring (set 'units')")
            object.__setattr__(self, "units", self.units or DEFAULT_UNITS[arch])
            outputs_from = f"output_names has {outputs}"

        if not isinstance(self.core_options, Mapping):
            raise bad("core_options", f"expected an object, got {self.core_options!r}")
        defaults = CORE_OPTIONS[arch]
        unknown = sorted(set(self.core_options) - set(defaults))
        if unknown:
            raise bad(
                "core_options",
                f"unknown key(s) {unknown} for {arch!r}; known: {sorted(defaults)}",
            )
        options = {**defaults, **dict(self.core_options)}
        self._check_core_options(options, bad)
        object.__setattr__(self, "core_options", options)

        if self.ode_unfolds < 1:
            raise bad("ode_unfolds", f"must be >= 1, got {self.ode_unfolds}")
        if not (self.epsilon >= 0.0 and math.isfinite(self.epsilon)):
            raise bad("epsilon", f"must be finite and >= 0, got {self.epsilon}")
        for name in ("image_height", "image_width"):
            if int(getattr(self, name)) < 1:
                raise bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.head == "drone_trunk" and min(self.image_height, self.image_width) < 61:
            raise bad("image_height", "the drone trunk needs images of at least 61x61")
        if self.color_order not in COLOR_ORDERS:
            raise bad("color_order", f"{self.color_order!r} is not one of {COLOR_ORDERS}")
        if not isinstance(self.crop, Crop):
            raise bad("crop", f"must be a Crop, got {type(self.crop).__name__}")
        for side, value in dataclasses.asdict(self.crop).items():
            if not isinstance(value, int) or value < 0:
                raise bad("crop", f"{side}={value!r} must be an int >= 0")
        for name in ("output_names", "output_units", "output_scale"):
            if len(getattr(self, name)) != outputs or outputs < 1:
                raise bad(name, f"has {len(getattr(self, name))} entries; {outputs_from}")
        if not all(math.isfinite(s) for s in self.output_scale):
            raise bad("output_scale", f"must be finite, got {self.output_scale}")
        if not (self.step_s > 0.0 and math.isfinite(self.step_s)):
            raise bad("step_s", f"must be a positive number of seconds, got {self.step_s}")

    @staticmethod
    def _check_core_options(options: dict[str, Any], bad: Any) -> None:
        checks: dict[str, tuple[Any, str]] = {
            "mode": (lambda v: v in MODES, f"one of {MODES}"),
            "backbone_activation": (lambda v: v in ACTIVATIONS, f"one of {ACTIVATIONS}"),
            "backbone_units": (lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
            "backbone_layers": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
            "backbone_dropout": (
                lambda v: isinstance(v, int | float) and 0.0 <= v < 1.0,
                "a number in [0, 1)",
            ),
            "tau_s": (
                lambda v: isinstance(v, int | float) and v > 0 and math.isfinite(v),
                "a positive number of seconds",
            ),
        }
        for key, value in options.items():
            ok, expected = checks[key]
            if isinstance(value, bool) or not ok(value):
                raise bad("core_options", f"{key}={value!r} must be {expected}")

    @property
    def is_wired(self) -> bool:
        """Whether the architecture has a wiring (``ncp_ltc``, ``ltc_fc``, ``ncp_cfc``)."""
        return self.architecture in WIRED_ARCHITECTURES

    @property
    def feature_dim(self) -> int:
        """Features the head gives (32 or 128)."""
        return head_feature_dim(self.head)

    def build_wiring(self) -> Wiring:
        """The built wiring this config describes.

        Raises:
            ValueError: the architecture has no wiring.
        """
        if self.wiring is None:
            raise ValueError(f"architecture {self.architecture!r} has no wiring")
        return Wiring.from_config(self.wiring)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["wiring"] = None if self.wiring is None else dict(self.wiring)
        out["core_options"] = dict(self.core_options)
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
        missing = sorted(names - set(data) - _ADDED_LATER)
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


def build_core(config: PolicyConfig) -> Core:
    """The core ``config`` describes, with fresh random weights (torch's global RNG)."""
    arch, options, features = config.architecture, config.core_options, config.feature_dim
    outputs = len(config.output_names)
    units = int(config.units or 0)
    if arch in ("ncp_ltc", "ltc_fc"):
        return LTCCell(
            config.build_wiring(),
            in_features=features,
            input_mapping=config.input_mapping,
            output_mapping=config.output_mapping,
            ode_unfolds=config.ode_unfolds,
            epsilon=config.epsilon,
            implicit_param_constraints=config.implicit_param_constraints,
        )
    if arch == "ncp_cfc":
        return CfC(features, config.build_wiring(), mode=options["mode"])
    if arch == "cfc":
        return CfC(
            features,
            units,
            proj_size=outputs,
            mode=options["mode"],
            activation=options["backbone_activation"],
            backbone_units=options["backbone_units"],
            backbone_layers=options["backbone_layers"],
            backbone_dropout=options["backbone_dropout"],
        )
    if arch == "lstm":
        return LSTMCore(features, units, outputs)
    if arch == "gru":
        return GRUCore(features, units, outputs)
    if arch == "ctrnn":
        return CTRNNCore(features, units, outputs, config.ode_unfolds, options["tau_s"])
    return MLPCore(features, units, outputs)


def check_elapsed(elapsed: float | Tensor, batch: int, ref: Tensor) -> float | Tensor:
    """``elapsed`` seconds as a validated float or a ``(B, 1)`` tensor on ``ref``'s device/dtype.

    Raises:
        ValueError: a float that is not positive and finite, or a tensor that is not a scalar,
            ``(B,)`` or ``(B, 1)`` (tensor values are not checked, to avoid a device sync).
    """
    if not isinstance(elapsed, Tensor):
        seconds = float(elapsed)
        if not (seconds > 0.0 and math.isfinite(seconds)):
            raise ValueError(f"elapsed must be a positive finite time in seconds, got {elapsed}")
        return seconds
    e = elapsed.to(device=ref.device, dtype=ref.dtype)
    if e.dim() == 0:
        return e
    if e.shape not in ((batch,), (batch, 1)):
        raise ValueError(
            f"elapsed must be a scalar, (B,) or (B, 1) with B={batch}, got {tuple(e.shape)}"
        )
    return e.reshape(batch, 1)


class Policy(nn.Module):
    """Perception head + recurrent core + output scaling (see the module docstring).

    Submodules: ``head`` (:class:`ConvHead` or :class:`DroneTrunk`) and the core, registered under
    the name in the module table (``ltc``, ``cfc``, ``lstm``, ``gru``, ``ctrnn``, ``mlp``) and also
    reachable as :attr:`core`. state_dict keys are ``head.*`` and ``<core name>.*``: ``ltc.*``
    equals an ncps ``LTCCell`` state_dict, ``cfc.*`` an ncps ``CfC`` state_dict.

    Args:
        config: the :class:`PolicyConfig`. Weights are random (torch's global RNG); use
            :meth:`from_config` for a seeded, deterministic untrained policy.
    """

    output_scale: Tensor
    ltc: LTCCell  # present for the LTC architectures (ncp_ltc, ltc_fc)

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__()
        self.config = PolicyConfig() if config is None else config
        cfg = self.config
        self.head: ConvHead | DroneTrunk = build_head(
            cfg.head, cfg.image_height, cfg.image_width, cfg.normalization
        )
        self.core_name = CORE_MODULES[cfg.architecture]
        self.add_module(self.core_name, build_core(cfg))
        self.register_buffer(
            "output_scale", torch.tensor(cfg.output_scale, dtype=torch.float32), persistent=False
        )
        #: Training-feature statistics of the out-of-distribution monitor
        #: (:class:`~ltc_controller.models.ood.FeatureStats`), None when the file has none.
        self.feature_stats: FeatureStats | None = None
        #: Calibration of the attention monitor (:class:`~ltc_controller.models.ood.
        #: AttentionStats`), None when the file has none.
        self.attention_stats: AttentionStats | None = None

    @classmethod
    def from_config(cls, config: PolicyConfig | None = None, seed: int = 0) -> Policy:
        """Untrained policy with weights drawn from ``seed`` (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config)

    @property
    def core(self) -> Core:
        """The recurrent core (:class:`~ltc_controller.models.cores.Core`)."""
        return cast(Core, self._modules[self.core_name])

    @property
    def state_size(self) -> int:
        """S, entries of the state (neurons; LSTM 2H; ``cnn`` 0)."""
        return self.core.state_size

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.config.output_names

    def apply_weight_constraints(self) -> None:
        """Call after each optimizer step: clamps the LTC's positive parameters when
        ``implicit_param_constraints`` is False (ncps's explicit mode); a no-op otherwise."""
        if isinstance(self.core, LTCCell):
            self.core.apply_weight_constraints()

    def initial_state(
        self,
        batch: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Zero state ``(batch, S)`` (the paper resets to zero at every episode start)."""
        ref = self.output_scale
        return torch.zeros(
            batch, self.state_size, device=device or ref.device, dtype=dtype or ref.dtype
        )

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images in [0, 1], ``config.color_order`` -> ``(B, F)``.

        The head's own features, before ``config.feature_norm`` (which :meth:`step` applies):
        what the out-of-distribution monitor reads. Float16/bfloat16/float64 images are cast to
        the head's dtype; integer images raise ``TypeError`` (values not in [0, 1]: scale them
        first). See :class:`ConvHead`.
        """
        features: Tensor = self.head(images)
        return features

    def step(
        self, features: Tensor, state: Tensor, elapsed_s: float | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Advance the state by ``elapsed_s`` seconds (default ``config.step_s``).

        Args:
            features: ``(B, F)`` from :meth:`features`, held constant over the step.
            state: ``(B, S)``.
            elapsed_s: seconds (float, or ``(B,)``/``(B, 1)`` tensor). The runtime passes
                ``config.step_s`` on every call.

        ``features`` and ``state`` of another real dtype (integer, bool, float16, bfloat16,
        float64) are cast to the policy's dtype, as ncps computes them (see
        :func:`~ltc_controller.models.cores.as_compute_dtype`); strided views are fine. The
        check is a dtype comparison; nothing is allocated when the dtypes match.

        Returns:
            ``(outputs (B, M) in config.output_units, new_state (B, S))``, the policy's dtype.

        Raises:
            ValueError: wrong features, state or elapsed shape, or a non-positive float elapsed.
            TypeError: complex or quantized features or state.
        """
        core = self.core
        dtype = self.output_scale.dtype
        features = as_compute_dtype(features, dtype, "features")
        features = normalize_features(features, self.config.feature_norm)
        state = as_compute_dtype(state, dtype, "state")
        batch = features.shape[0]
        if features.dim() != 2 or features.shape[1] != core.sensory_size:
            raise ValueError(
                f"features must be (B, {core.sensory_size}), got {tuple(features.shape)}"
            )
        if state.shape != (batch, core.state_size):
            raise ValueError(
                f"state must be ({batch}, {core.state_size}), got {tuple(state.shape)}"
            )
        elapsed = check_elapsed(
            self.config.step_s if elapsed_s is None else elapsed_s, batch, features
        )
        new_state = core.advance(features, state, elapsed, core.prepare())
        return core.readout(new_state, features) * self.output_scale, new_state

    def run_sequence(
        self, features: Tensor, steps: Tensor | None = None, state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Roll the core over a feature sequence with fixed steps of ``config.step_s``.

        Frame t's features are held over ``steps[:, t]`` steps (``None``: exactly one step per
        frame). The counts come from the runtime's stepping rule
        (``ltc_controller.runtime.schedule.step_counts`` of the frame stamps), so this pass
        steps as the runtime does. A sample that takes 0 steps in a frame keeps its state and
        its previous output (what the runtime publishes).

        Args:
            features: ``(B, T, F)``.
            steps: ``(B, T)`` integer step counts (>= 0), or ``None``.
            state: ``(B, S)`` initial state, ``None`` for zeros.

        ``features`` and ``state`` of another real dtype are cast as in :meth:`step`.

        Returns:
            ``(outputs (B, T, M), final_state (B, S))``.

        Raises:
            ValueError: ``steps`` not ``(B, T)``, not integers, or negative.
            TypeError: complex or quantized features or state.
        """
        dtype = self.output_scale.dtype
        features = as_compute_dtype(features, dtype, "features")
        features = normalize_features(features, self.config.feature_norm)
        if state is not None:
            state = as_compute_dtype(state, dtype, "state")
        batch, frames = features.shape[0], features.shape[1]
        if state is None:
            state = self.initial_state(batch, features.device, features.dtype)
        core, step_s = self.core, self.config.step_s
        cache = core.prepare()
        outputs = []
        if steps is None:
            for t in range(frames):
                f_t = features[:, t]
                state = core.advance(f_t, state, step_s, cache)
                outputs.append(core.readout(state, f_t) * self.output_scale)
            return torch.stack(outputs, 1), state
        if steps.shape != (batch, frames) or steps.dtype.is_floating_point or steps.is_complex():
            raise ValueError(
                f"steps must be ({batch}, {frames}) integer step counts, got "
                f"{tuple(steps.shape)} {steps.dtype}"
            )
        counts_cpu = steps.detach().to("cpu", torch.int64)
        if bool((counts_cpu < 0).any()):
            raise ValueError("steps must be >= 0")
        active = counts_cpu.to(features.device)
        previous = core.readout(state, features[:, 0])
        for t in range(frames):
            f_t = features[:, t]
            n_t = counts_cpu[:, t]
            n_max = int(n_t.max()) if batch else 0
            uniform = bool((n_t == n_max).all())
            for k in range(n_max):
                new = core.advance(f_t, state, step_s, cache)
                state = new if uniform else torch.where((active[:, t] > k).unsqueeze(1), new, state)
            out = core.readout(state, f_t)
            if not (uniform and n_max > 0):
                out = torch.where((active[:, t] > 0).unsqueeze(1), out, previous)
            previous = out
            outputs.append(out * self.output_scale)
        return torch.stack(outputs, 1), state

    def forward(
        self, images: Tensor, steps: Tensor | None = None, state: Tensor | None = None
    ) -> Tensor:
        """Offline pass: ``images (B, T, 3, H, W)`` in [0, 1], ``steps (B, T)`` integer step
        counts (see :meth:`run_sequence`; ``None``: one step per frame) -> ``(B, T, M)``.

        All frames go through the head as one batch, then :meth:`run_sequence`. Image dtypes as
        in :meth:`features` (floating point cast, integers refused).

        Raises:
            ValueError: ``images`` not 5-D; ``steps`` as in :meth:`run_sequence`.
            TypeError: integer, bool or complex images.
        """
        if images.dim() != 5:
            raise ValueError(f"images must be (B, T, 3, H, W), got {tuple(images.shape)}")
        batch, frames = images.shape[:2]
        feats = self.head(images.flatten(0, 1)).view(batch, frames, -1)
        return self.run_sequence(feats, steps, state)[0]
