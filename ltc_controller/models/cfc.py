"""Closed-form continuous-time (CfC) cells, numerically equal to ``ncps`` 1.0.1.

The model (Hasani et al. 2022, *Closed-form continuous-time neural networks*, Nat. Mach. Intell.
4:992-1003, Eq. 10 and "Cf-S" Eq. 7). With z = backbone([u, h]) (u the input ``(B, I)``, h the
state ``(B, H)``), ts the elapsed time and sigma the logistic function::

    f1 = ff1(z), f2 = ff2(z), g = sigma(time_a(z) * ts + time_b(z))
    default: h' = tanh(f1) * (1 - g) + g * tanh(f2)           (CfC, gated interpolation)
    no_gate: h' = tanh(f1) + g * tanh(f2)                     (CfC without the second gate)
    pure:    h' = A - A * exp(-ts * (|w_tau| + |f1|)) * f1    (Cf-S, direct solution)

The output of a cell is its new state. ``backbone`` is ``backbone_layers`` x [Linear, activation]
(``Dropout`` after layers 2..n when ``backbone_dropout > 0``, as in ncps); with 0 layers z = [u, h].

Parameters (state_dict names and shapes equal ncps's ``CfCCell``; P = backbone_units, or I + H
without a backbone):

=======================================  ============  ==========================================
name                                     shape         init
=======================================  ============  ==========================================
``backbone.{0,2,..}.weight`` / ``.bias``  (P, I+H)...   Xavier-uniform weight, torch default bias
``ff1.weight``, ``ff1.bias``             (H, P), (H,)  Xavier-uniform, torch default bias
``ff2``, ``time_a``, ``time_b``          (H, P), (H,)  same (not in ``pure`` mode)
``w_tau``, ``A``                         (1, H)        Xavier-uniform (``pure`` only; ncps's init
                                                       loop re-draws them from 0 and 1)
``sparsity_mask``                        (H, I+H)      buffer, wired cells only, ``abs(mask.T)``
=======================================  ============  ==========================================

:class:`WiredCfCCell` runs one backbone-free cell per wiring layer (NCP: inter -> command ->
motor) on a state laid out in *layer order* ``[inter | command | motor]`` (ncps's layout, not the
LTC neuron-ID order); layer l reads layer l-1's new state (the sensory input for l = 0) through
the wiring's synapses between the two layers (polarity ignored) and its own previous state
densely; only ``ff1``/``ff2`` are masked, ``time_a``/``time_b`` stay dense (as in ncps). Its output
is the motor layer.

Deliberate differences from ncps: ``ts`` may be a float, ``(B,)`` or ``(B, 1)`` for any batch size
(ncps's ``CfC`` wrapper mis-broadcasts a ``(B, T)`` timespans tensor); wirings are not mutated;
masks are buffers (same state_dict keys) and masked weights are never read (an ``inf`` there has
no effect); ncps's ``mixed_memory`` LSTM is not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from .cores import Core, CoreSize, as_compute_dtype, sequence_inputs, sequence_outputs
from .wiring import WiredSizes, Wiring

__all__ = ["CfC", "CfCCell", "LeCunTanh", "WiredCfCCell", "as_time_column"]

MODES = ("default", "pure", "no_gate")
ACTIVATIONS = ("lecun_tanh", "silu", "relu", "tanh", "gelu")

Elapsed = float | Tensor


class LeCunTanh(nn.Module):
    """``1.7159 * tanh(0.666 * x)`` (LeCun et al. 1998, *Efficient BackProp*; ncps's constants)."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


def _activation(name: str) -> nn.Module:
    modules: dict[str, type[nn.Module]] = {
        "lecun_tanh": LeCunTanh,
        "silu": nn.SiLU,
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
    }
    if name not in modules:
        raise ValueError(f"unknown backbone_activation {name!r}; known: {ACTIVATIONS}")
    return modules[name]()


def as_time_column(ts: Elapsed, batch: int, ref: Tensor) -> Elapsed:
    """Elapsed time as a float or a ``(B, 1)`` tensor that broadcasts against ``(B, H)``.

    Raises:
        ValueError: a tensor that is not a scalar, ``(B,)`` or ``(B, 1)``.
    """
    if not isinstance(ts, Tensor):
        return float(ts)
    t = ts.to(device=ref.device, dtype=ref.dtype)
    if t.dim() == 0:
        return t
    if t.shape not in ((batch,), (batch, 1)):
        raise ValueError(
            f"ts must be a scalar, (B,) or (B, 1) with B={batch}, got {tuple(t.shape)}"
        )
    return t.reshape(batch, 1)


class CfCCell(nn.Module):
    """One CfC step: ``(input (B, I), hx (B, H), ts) -> (output (B, H), new_state (B, H))``.

    Args:
        input_size: I.
        hidden_size: H.
        mode: ``"default"``, ``"pure"`` or ``"no_gate"`` (see the module docstring).
        backbone_activation: ``"lecun_tanh"``, ``"silu"``, ``"relu"``, ``"tanh"``, ``"gelu"``.
        backbone_units: P, width of the backbone layers.
        backbone_layers: number of backbone layers (0: heads read [input, state] directly).
        backbone_dropout: dropout after backbone layers 2.. (ncps quirk: none after layer 1).
        sparsity_mask: ``(I + H, H)`` ``[source, destination]`` matrix; nonzero = synapse. Only
            ``ff1``/``ff2`` are masked.

    Raises:
        ValueError: unknown mode or activation, or a mask of the wrong shape.
    """

    sparsity_mask: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mode: str = "default",
        backbone_activation: str = "lecun_tanh",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_dropout: float = 0.0,
        sparsity_mask: npt.ArrayLike | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown CfC mode {mode!r}; known: {MODES}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.mode = mode
        self.backbone_activation = backbone_activation
        self.backbone_units = int(backbone_units)
        self.backbone_layers = int(backbone_layers)
        self.backbone_dropout = float(backbone_dropout)
        self._mask_cache: dict[int, tuple[tuple[object, ...], Tensor]] = {}
        if sparsity_mask is None:
            self.sparsity_mask = None
        else:
            mask = np.abs(np.asarray(sparsity_mask, dtype=np.float64))
            expected = (self.input_size + self.hidden_size, self.hidden_size)
            if mask.shape != expected:
                raise ValueError(f"sparsity_mask must be {expected}, got {mask.shape}")
            self.register_buffer(
                "sparsity_mask", torch.tensor(mask.T, dtype=torch.get_default_dtype())
            )
        # Module creation order (and so the RNG stream) follows ncps.
        self.backbone: nn.Sequential | None = None
        width = self.input_size + self.hidden_size
        if self.backbone_layers > 0:
            layers: list[nn.Module] = [
                nn.Linear(width, self.backbone_units),
                _activation(backbone_activation),
            ]
            for _ in range(1, self.backbone_layers):
                layers += [
                    nn.Linear(self.backbone_units, self.backbone_units),
                    _activation(backbone_activation),
                ]
                if self.backbone_dropout > 0.0:
                    layers.append(nn.Dropout(self.backbone_dropout))
            self.backbone = nn.Sequential(*layers)
            width = self.backbone_units
        else:
            _activation(backbone_activation)  # validate the name even when unused
        self.ff1 = nn.Linear(width, self.hidden_size)
        self.ff2: nn.Linear | None = None
        self.time_a: nn.Linear | None = None
        self.time_b: nn.Linear | None = None
        self.w_tau: nn.Parameter | None = None
        self.A: nn.Parameter | None = None
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, self.hidden_size))
            self.A = nn.Parameter(torch.ones(1, self.hidden_size))
        else:
            self.ff2 = nn.Linear(width, self.hidden_size)
            self.time_a = nn.Linear(width, self.hidden_size)
            self.time_b = nn.Linear(width, self.hidden_size)
        for param in self.parameters():
            if param.dim() == 2 and param.requires_grad:
                nn.init.xavier_uniform_(param)

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def _masked_weight(self, layer: nn.Linear) -> Tensor:
        """``layer.weight`` with the masked entries set to 0 (never read: an inf there stays
        harmless). Cached while autograd is off, until the weight changes."""
        mask = self.sparsity_mask
        assert mask is not None
        w = layer.weight
        if torch.is_grad_enabled():
            return torch.where(mask != 0, w, 0.0)
        key = (torch.is_inference_mode_enabled(), w.data_ptr(), w._version, mask._version)
        cached = self._mask_cache.get(id(layer))
        if cached is None or cached[0] != key:
            cached = (key, torch.where(mask != 0, w, 0.0))
            self._mask_cache[id(layer)] = cached
        return cached[1]

    def masked_weights(self) -> tuple[Tensor, Tensor | None] | None:
        """Masked ``(ff1, ff2)`` weights for :meth:`step` (None without a mask); computing them
        once per sequence saves a masking per step, also under autograd."""
        if self.sparsity_mask is None:
            return None
        return (
            self._masked_weight(self.ff1),
            None if self.ff2 is None else self._masked_weight(self.ff2),
        )

    def _linear(self, layer: nn.Linear, z: Tensor, weight: Tensor | None) -> Tensor:
        if weight is None:
            if self.sparsity_mask is None:
                result: Tensor = layer(z)
                return result
            weight = self._masked_weight(layer)
        return nn.functional.linear(z, weight, layer.bias)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self._mask_cache.clear()
        return super()._apply(fn, recurse)  # type: ignore[no-untyped-call, unused-ignore]

    def step(
        self,
        inputs: Tensor,
        hx: Tensor,
        ts: Elapsed,
        weights: tuple[Tensor, Tensor | None] | None = None,
    ) -> Tensor:
        """New state ``(B, H)``; ``ts`` already a float or broadcastable tensor; ``weights``
        from :meth:`masked_weights` (or None to mask here). ``inputs`` and ``hx`` of another
        real dtype are cast to the weights' (:func:`~.cores.as_compute_dtype`).

        Raises:
            TypeError: a complex or quantized ``inputs`` or ``hx``.
        """
        w1, w2 = (None, None) if weights is None else weights
        dtype = self.ff1.weight.dtype
        inputs = as_compute_dtype(inputs, dtype, "input")
        hx = as_compute_dtype(hx, dtype, "hx")
        z = torch.cat([inputs, hx], 1)
        if self.backbone is not None:
            z = self.backbone(z)
        f1 = self._linear(self.ff1, z, w1)
        if self.mode == "pure":
            assert self.A is not None and self.w_tau is not None
            return -self.A * torch.exp(-ts * (torch.abs(self.w_tau) + torch.abs(f1))) * f1 + self.A
        assert self.ff2 is not None and self.time_a is not None and self.time_b is not None
        f1 = torch.tanh(f1)
        f2 = torch.tanh(self._linear(self.ff2, z, w2))
        gate = torch.sigmoid(self.time_a(z) * ts + self.time_b(z))
        if self.mode == "no_gate":
            return f1 + gate * f2
        return f1 * (1.0 - gate) + gate * f2

    def forward(self, input: Tensor, hx: Tensor, ts: Elapsed = 1.0) -> tuple[Tensor, Tensor]:
        """Advance ``hx (B, H)`` by ``ts`` (float, 0-d, ``(B,)`` or ``(B, 1)``) with ``input
        (B, I)``; returns ``(output, new_state)``, both the new state ``(B, H)``.

        ``input`` and ``hx`` of any real dtype are cast to the weights' dtype (integers as ncps
        computes them; float16/bfloat16/float64 to the cell's precision); strided views are fine.

        Raises:
            ValueError: wrong input, state or ts shape.
            TypeError: a complex or quantized ``input`` or ``hx``.
        """
        batch = input.shape[0]
        if input.dim() != 2 or input.shape[1] != self.input_size:
            raise ValueError(f"input must be (B, {self.input_size}), got {tuple(input.shape)}")
        if hx.shape != (batch, self.hidden_size):
            raise ValueError(f"hx must be ({batch}, {self.hidden_size}), got {tuple(hx.shape)}")
        input = as_compute_dtype(input, self.ff1.weight.dtype, "input")  # ts follows its dtype
        new = self.step(input, hx, as_time_column(ts, batch, input))
        return new, new

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        self._mask_cache.clear()
        incoming = state_dict.get(prefix + "sparsity_mask")
        if self.sparsity_mask is not None and incoming is not None:
            ours = self.sparsity_mask
            if incoming.shape == ours.shape and not torch.equal(
                incoming.detach().to(ours.device, ours.dtype), ours
            ):
                error_msgs.append(
                    f"{prefix}sparsity_mask disagrees with the wiring: build the cell with the "
                    "wiring the weights were trained with"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, mode={self.mode!r}, "
            f"backbone={self.backbone_layers}x{self.backbone_units} {self.backbone_activation}"
        )


class WiredCfCCell(WiredSizes, nn.Module):
    """CfC with a wiring: one backbone-free :class:`CfCCell` per wiring layer (``layer_{l}``).

    ``(input (B, I), hx (B, H), ts) -> (motor output (B, M), new_state (B, H))``; the state is in
    layer order (for an NCP: ``[inter | command | motor]``), see the module docstring.

    Args:
        input_size: I; the wiring is built (purely) for it. ``None``: the wiring must be built.
        wiring: any :class:`~ltc_controller.models.wiring.Wiring` (NCP: 3 layers, others: 1).
        mode: CfC mode of every layer.

    Raises:
        ValueError: unbuilt wiring without ``input_size``, unknown mode.
    """

    def __init__(self, input_size: int | None, wiring: Wiring, mode: str = "default") -> None:
        super().__init__()
        if input_size is not None:
            wiring = wiring.build(int(input_size))
        if not wiring.is_built():
            raise ValueError(
                f"{type(wiring).__name__} wiring has no input size: pass input_size or use "
                "wiring.build(input_dim)"
            )
        self.wiring = wiring
        self.mode = mode
        sensory = np.asarray(wiring.sensory_adjacency_matrix)
        adjacency = np.asarray(wiring.adjacency_matrix)
        self._layers: list[CfCCell] = []
        in_features = wiring._require_built()
        for layer in range(wiring.num_layers):
            neurons = wiring.get_neurons_of_layer(layer)
            if layer == 0:
                feed = sensory[:, neurons]
            else:
                feed = adjacency[np.ix_(wiring.get_neurons_of_layer(layer - 1), neurons)]
            mask = np.concatenate([feed, np.ones((len(neurons), len(neurons)))], axis=0)
            cell = CfCCell(
                in_features,
                len(neurons),
                mode,
                backbone_activation="lecun_tanh",
                backbone_units=0,
                backbone_layers=0,
                sparsity_mask=mask,
            )
            self.add_module(f"layer_{layer}", cell)
            self._layers.append(cell)
            in_features = len(neurons)

    @property
    def layers(self) -> list[CfCCell]:
        return self._layers

    @property
    def layer_sizes(self) -> list[int]:
        return [cell.hidden_size for cell in self._layers]

    def prepare(self) -> list[tuple[Tensor, Tensor | None] | None]:
        """Masked weights of every layer, for :meth:`step` over a sequence."""
        return [cell.masked_weights() for cell in self._layers]

    def step(
        self,
        inputs: Tensor,
        hx: Tensor,
        ts: Elapsed,
        weights: list[tuple[Tensor, Tensor | None] | None] | None = None,
    ) -> Tensor:
        """New state ``(B, H)`` in layer order; ``ts`` a float or broadcastable tensor;
        ``weights`` from :meth:`prepare` (or None)."""
        states = torch.split(hx, self.layer_sizes, dim=1)
        new_states = []
        x = inputs
        for index, (cell, h) in enumerate(zip(self._layers, states, strict=True)):
            x = cell.step(x, h, ts, None if weights is None else weights[index])
            new_states.append(x)
        return torch.cat(new_states, 1)

    def map_outputs(self, state: Tensor) -> Tensor:
        """Motor output ``(B, M)``: the last layer's part of ``state (B, H)``."""
        return state[:, self.state_size - self._layers[-1].hidden_size :]

    def forward(self, input: Tensor, hx: Tensor, timespans: Elapsed = 1.0) -> tuple[Tensor, Tensor]:
        """``(motor output (B, M), new_state (B, H))``; ``timespans`` as in :meth:`CfCCell.forward`;
        ``input`` and ``hx`` of another real dtype are cast (see :meth:`CfCCell.forward`).

        Raises:
            ValueError: wrong input, state or timespans shape.
            TypeError: a complex or quantized ``input`` or ``hx``.
        """
        batch = input.shape[0]
        if input.dim() != 2 or input.shape[1] != self.sensory_size:
            raise ValueError(f"input must be (B, {self.sensory_size}), got {tuple(input.shape)}")
        if hx.shape != (batch, self.state_size):
            raise ValueError(f"hx must be ({batch}, {self.state_size}), got {tuple(hx.shape)}")
        input = as_compute_dtype(input, self._layers[0].ff1.weight.dtype, "input")
        new = self.step(input, hx, as_time_column(timespans, batch, input))
        return self.map_outputs(new), new


def _live_weights(cell: CfCCell) -> tuple[int, int]:
    """(live weight entries, live bias/other entries) of one cell; masked entries excluded."""
    weights = others = 0
    for name, param in cell.named_parameters():
        if not param.requires_grad:
            continue
        if name in ("ff1.weight", "ff2.weight") and cell.sparsity_mask is not None:
            weights += int((cell.sparsity_mask != 0).sum())
        elif name.endswith("weight"):
            weights += int(param.numel())
        else:
            others += int(param.numel())
    return weights, others


class CfC(Core):
    """A CfC cell run over a sequence (state_dict keys ``rnn_cell.*``, ``fc.*``, as ncps's ``CfC``).

    Args:
        input_size: I.
        units: an int H (fully connected :class:`CfCCell` with a backbone) or a wiring
            (:class:`WiredCfCCell`; backbone arguments must then be ``None``).
        proj_size: add ``fc = Linear(output_size, proj_size)`` applied to every output.
        return_sequences: every step's output ``(B, T, O)`` or only the last ``(B, O)``.
        batch_first: ``(B, T, I)`` if True, else ``(T, B, I)``.
        mode: CfC mode.
        activation, backbone_units, backbone_layers, backbone_dropout: backbone of the fully
            connected cell (defaults lecun_tanh, 128, 1, 0.0).

    Raises:
        ValueError: backbone arguments with a wiring, unknown mode or activation.
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        proj_size: int | None = None,
        return_sequences: bool = True,
        batch_first: bool = True,
        mode: str = "default",
        activation: str = "lecun_tanh",
        backbone_units: int | None = None,
        backbone_layers: int | None = None,
        backbone_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.return_sequences = return_sequences
        self.batch_first = batch_first
        self.proj_size = proj_size
        self.rnn_cell: CfCCell | WiredCfCCell
        if isinstance(units, Wiring):
            for name, value in (
                ("backbone_units", backbone_units),
                ("backbone_layers", backbone_layers),
                ("backbone_dropout", backbone_dropout),
            ):
                if value is not None:
                    raise ValueError(f"CfC with a wiring takes no {name}")
            self.rnn_cell = WiredCfCCell(self.input_size, units, mode)
            self._state_size = self.rnn_cell.state_size
            self._cell_outputs = self.rnn_cell.motor_size
        else:
            self.rnn_cell = CfCCell(
                self.input_size,
                int(units),
                mode,
                activation,
                128 if backbone_units is None else backbone_units,
                1 if backbone_layers is None else backbone_layers,
                0.0 if backbone_dropout is None else backbone_dropout,
            )
            self._state_size = int(units)
            self._cell_outputs = int(units)
        self.fc: nn.Module = (
            nn.Identity() if proj_size is None else nn.Linear(self._cell_outputs, int(proj_size))
        )

    @property
    def state_size(self) -> int:
        """H (wired: in layer order)."""
        return self._state_size

    @property
    def sensory_size(self) -> int:
        return self.input_size

    @property
    def output_size(self) -> int:
        """Outputs after ``fc``: ``proj_size`` if set (ncps reports the cell's outputs here)."""
        return self._cell_outputs if self.proj_size is None else int(self.proj_size)

    # --- policy core interface (see cores.Core) -------------------------------------------
    def prepare(self) -> Any:
        """Per-sequence cache: the masked weights of a wired cell (None otherwise)."""
        cell = self.rnn_cell
        return cell.prepare() if isinstance(cell, WiredCfCCell) else cell.masked_weights()

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        return self.rnn_cell.step(features, state, elapsed, cache)

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        return self.map_outputs(as_compute_dtype(state, self._dtype(), "state"))

    def _dtype(self) -> torch.dtype:
        cell = self.rnn_cell
        first = cell.layers[0] if isinstance(cell, WiredCfCCell) else cell
        return first.ff1.weight.dtype

    def size(self) -> CoreSize:
        """Synapses = live weight entries (masked ones excluded), ``fc`` included."""
        cell = self.rnn_cell
        cells = cell.layers if isinstance(cell, WiredCfCCell) else [cell]
        weights = others = 0
        for c in cells:
            w, o = _live_weights(c)
            weights, others = weights + w, others + o
        if isinstance(self.fc, nn.Linear):
            weights += int(self.fc.weight.numel())
            others += int(self.fc.bias.numel())
        return CoreSize(self.state_size, weights, weights + others, weights + others)

    @property
    def wiring(self) -> Wiring | None:
        return self.rnn_cell.wiring if isinstance(self.rnn_cell, WiredCfCCell) else None

    def map_outputs(self, state: Tensor) -> Tensor:
        """Readout of a state ``(B, H)``: the motor (wired) or whole state, through ``fc``."""
        cell = self.rnn_cell
        out = cell.map_outputs(state) if isinstance(cell, WiredCfCCell) else state
        result: Tensor = self.fc(out)
        return result

    def forward(
        self, input: Tensor, hx: Tensor | None = None, timespans: Tensor | float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run the cell over the sequence.

        Args:
            input: ``(B, T, I)`` (``(T, B, I)`` if not batch_first) or unbatched ``(T, I)``.
            hx: initial state ``(B, H)`` (``(H,)`` unbatched); ``None`` means zeros.
            timespans: elapsed time per element, ``(B, T)`` (``(T, B)`` if not batch_first,
                ``(T,)`` unbatched, a trailing 1 allowed), a float, or ``None`` for 1.0.

        Returns:
            ``(outputs, h)``: outputs ``(B, T, O)`` (``(B, O)`` if not return_sequences) and the
            final state ``(B, H)``; running the elements one by one gives the same. ``input``
            and ``hx`` of another real dtype are cast (see :meth:`CfCCell.forward`).

        Raises:
            ValueError: inconsistent shapes.
            TypeError: a complex or quantized ``input`` or ``hx``.
        """
        input, hx, timespans, batched = sequence_inputs(
            input, hx, timespans, self.batch_first, "input"
        )
        batch, steps = input.shape[0], input.shape[1]
        input = as_compute_dtype(input, self._dtype(), "input")  # once, not per element
        state = input.new_zeros(batch, self.state_size) if hx is None else hx
        cache = self.prepare()  # once per sequence, also with autograd on
        outputs = []
        for t in range(steps):
            ts: Elapsed = 1.0
            if isinstance(timespans, Tensor):
                ts = as_time_column(timespans[:, t].reshape(batch), batch, input)
            elif timespans is not None:
                ts = float(timespans)
            state = self.advance(input[:, t], state, ts, cache)
            if self.return_sequences or t == steps - 1:
                outputs.append(self.map_outputs(state))
        return sequence_outputs(outputs, state, self.return_sequences, self.batch_first, batched)
