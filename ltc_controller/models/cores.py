"""The recurrent part of a policy ("core") and the baseline cores that share the conv head.

Every core maps perception features ``(B, F)`` and a state ``(B, S)`` to a new state, and a state
to motor outputs ``(B, M)``; :class:`~ltc_controller.models.policy.Policy` drives all of them the
same way (fixed steps of ``step_s`` seconds, features held between frames). The interface:

* ``state_size`` S, ``sensory_size`` F, ``output_size`` M;
* ``prepare()`` -> a cache reused by every ``advance`` of one sequence (LTC: effective weights);
* ``advance(features, state, elapsed, cache)`` -> new state ``(B, S)``; ``elapsed`` is a float or a
  ``(B, 1)`` tensor of seconds (already validated);
* ``readout(state, features)`` -> outputs ``(B, M)`` (only the feed-forward core reads features);
* ``size()`` -> :class:`CoreSize` (neurons, synapses, parameters as Lechner et al. 2020, Table 2
  counts them).

Baselines (Lechner et al. 2020, *Neural circuit policies enabling auditable autonomy*, Table 1-2):

* :class:`LSTMCore`: LSTM (Hochreiter & Schmidhuber 1997) with one bias per gate (Keras
  convention, forget-gate bias initialised to 1) and a linear readout; state ``[h | c]``, S = 2H.
  LSTM(64) on 32 features with 1 output has 24,897 parameters and 24,640 weights, as in Table 2.
* :class:`GRUCore`: ``torch.nn.GRUCell`` (two bias vectors) and a linear readout; S = H.
* :class:`CTRNNCore`: continuous-time RNN (Funahashi & Nakamura 1993, in the form of Lechner et
  al. 2020 / Hasani et al. 2021's baseline) ``dx/dt = -x / tau + tanh(W [u, x] + b)``, tau fixed,
  integrated with explicit Euler in ``ode_unfolds`` sub-steps of ``elapsed / ode_unfolds``, linear
  readout. CT-RNN(64) on 32 features with 1 output has 6,273 parameters, as in Table 2.
* :class:`MLPCore`: feed-forward ``Linear(F, U) -> ReLU -> Linear(U, M)`` on the current features;
  stateless, S = 0 (its state is an empty ``(B, 0)`` tensor).

LSTM and GRU are discrete-time: one update per fixed step, whatever ``elapsed`` is.

Input dtypes: every entry point (``advance``/``readout`` here, the cells' ``step``/``forward``,
``Policy.step``/``run_sequence``) computes in the dtype of the module's parameters and casts
features and states of another real dtype to it with :func:`as_compute_dtype` (integers and
bool as ncps does by type promotion; float16/bfloat16 widened exactly; float64 rounded to a
float32 model's precision); a complex or quantized tensor raises ``TypeError``. Casting, not
refusing: a feature vector has no unit or range convention an integer could break, and ncps
users pass what ncps accepts. Strided (non-contiguous) tensors are used as they are. The check
is one dtype comparison per call; a cast allocates only when the dtype differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CTRNNCore", "Core", "CoreSize", "GRUCore", "LSTMCore", "MLPCore", "as_compute_dtype"]

Elapsed = float | Tensor


def as_compute_dtype(x: Tensor, dtype: torch.dtype, name: str) -> Tensor:
    """``x`` in ``dtype``, the dtype a module computes in (its parameters').

    Returned unchanged when the dtype matches (no copy, strides kept); otherwise cast: integer
    and bool tensors (exact up to 2**24 in float32), float16/bfloat16 (exact), float64 (rounded
    to float32 when the module is float32).

    Raises:
        TypeError: a complex or quantized tensor, naming ``name``, its dtype and what is accepted.
    """
    if x.dtype == dtype:
        return x
    if x.is_complex() or x.is_quantized:
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected a real tensor: {dtype}, or an integer, bool or "
            f"floating dtype (cast to {dtype})"
        )
    return x.to(dtype)


@dataclass(frozen=True)
class CoreSize:
    """Size of a core in the terms of Lechner et al. 2020, Table 2.

    Attributes:
        neurons: recurrent units (LSTM: H, not the 2H state entries; MLP: hidden units).
        synapses: connections. LTC: wiring synapses, sensory included; others: live weight
            entries, readout included (Table 2 counts LSTM(64) this way: 24,640).
        parameters: Table 2's "RNN parameters". LTC: ``3 N + 4 synapses`` (gleak, vleak, cm per
            neuron; w, sigma, mu, erev per synapse; input/output maps not counted); others: every
            live trainable number including the readout.
        trainable: every live trainable number of the core (LTC: plus its input/output maps).
    """

    neurons: int
    synapses: int
    parameters: int
    trainable: int


class Core(nn.Module):
    """Base class of policy cores; see the module docstring for the interface."""

    @property
    def state_size(self) -> int:
        raise NotImplementedError

    @property
    def sensory_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def prepare(self) -> Any:
        """Per-sequence cache passed to :meth:`advance` (None unless overridden)."""
        return None

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        """New state ``(B, S)`` after ``elapsed`` seconds with ``features (B, F)`` held."""
        raise NotImplementedError

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        """Motor outputs ``(B, M)`` of ``state (B, S)``."""
        raise NotImplementedError

    def size(self) -> CoreSize:
        raise NotImplementedError


def sequence_inputs(
    x: Tensor, hx: Tensor | None, timespans: Any, batch_first: bool, name: str = "x"
) -> tuple[Tensor, Tensor | None, Any, bool]:
    """Normalise a sequence wrapper's arguments (ncps conventions) to batch-first ``(B, T, I)``.

    Accepts ``(B, T, I)`` (``(T, B, I)`` if not ``batch_first``) or unbatched ``(T, I)``;
    ``hx`` ``(B, H)`` or ``(H,)``; ``timespans`` a tensor shaped like the first two input dims,
    a float or ``None``. Returns ``(x, hx, timespans, batched)``.

    Raises:
        ValueError: ``x`` is not 2-D or 3-D, or ``timespans`` does not match ``(B, T)``.
    """
    batched = x.dim() == 3
    if not batched:
        if x.dim() != 2:
            raise ValueError(f"{name} must be (B, T, I) or (T, I), got {tuple(x.shape)}")
        x = x.unsqueeze(0 if batch_first else 1)
        if hx is not None:
            hx = hx.unsqueeze(0)
        if isinstance(timespans, Tensor):
            timespans = timespans.unsqueeze(0 if batch_first else 1)
    if not batch_first:
        x = x.transpose(0, 1)
        if isinstance(timespans, Tensor):
            timespans = timespans.transpose(0, 1)
    batch, steps = x.shape[0], x.shape[1]
    if isinstance(timespans, Tensor) and timespans.shape[:2] != (batch, steps):
        raise ValueError(
            f"timespans must match (B, T)=({batch}, {steps}), got {tuple(timespans.shape)}"
        )
    return x, hx, timespans, batched


def sequence_outputs(
    outputs: list[Tensor], state: Tensor, return_sequences: bool, batch_first: bool, batched: bool
) -> tuple[Tensor, Tensor]:
    """Stack per-step outputs back into the caller's layout (inverse of :func:`sequence_inputs`)."""
    out = torch.stack(outputs, 1) if return_sequences else outputs[-1]
    if return_sequences and not batch_first:
        out = out.transpose(0, 1)
    if not batched:
        out = out.squeeze(0 if (batch_first or not return_sequences) else 1)
        state = state.squeeze(0)
    return out, state


class _DenseSizes:
    """Size properties of the dense baseline cores (``input_size``, ``units``, ``outputs``)."""

    input_size: int
    units: int
    outputs: int

    @property
    def state_size(self) -> int:
        return self.units

    @property
    def sensory_size(self) -> int:
        return self.input_size

    @property
    def output_size(self) -> int:
        return self.outputs


def _numel(*tensors: Tensor | None) -> int:
    return sum(int(t.numel()) for t in tensors if t is not None)


class LSTMCore(_DenseSizes, Core):
    """LSTM with a single fused gate layer and a linear readout.

    ``z = gates([u, h])`` split into (i, f, g, o); ``c' = sigma(f) c + sigma(i) tanh(g)``,
    ``h' = sigma(o) tanh(c')``, output ``readout(h')``. State ``(B, 2H) = [h | c]``.

    Parameters: ``gates.weight (4H, F+H)`` (input part Xavier-uniform, recurrent part orthogonal),
    ``gates.bias (4H,)`` (0, forget gate 1), ``readout.weight (M, H)``, ``readout.bias (M,)``.
    """

    def __init__(self, input_size: int, units: int, output_size: int) -> None:
        super().__init__()
        self.input_size, self.units, self.outputs = int(input_size), int(units), int(output_size)
        h = self.units
        self.gates = nn.Linear(self.input_size + h, 4 * h)
        self.readout_layer = nn.Linear(h, self.outputs)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.gates.weight[:, : self.input_size])
            recurrent = torch.empty(4 * h, h)
            nn.init.orthogonal_(recurrent)
            self.gates.weight[:, self.input_size :] = recurrent
            self.gates.bias.zero_()
            self.gates.bias[h : 2 * h] = 1.0

    @property
    def state_size(self) -> int:
        """``[h | c]``: 2 H."""
        return 2 * self.units

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        dtype = self.gates.weight.dtype
        features = as_compute_dtype(features, dtype, "features")
        state = as_compute_dtype(state, dtype, "state")
        h, c = state[:, : self.units], state[:, self.units :]
        i, f, g, o = self.gates(torch.cat([features, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], 1)

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        state = as_compute_dtype(state, self.readout_layer.weight.dtype, "state")
        result: Tensor = self.readout_layer(state[:, : self.units])
        return result

    def size(self) -> CoreSize:
        synapses = _numel(self.gates.weight, self.readout_layer.weight)
        total = synapses + _numel(self.gates.bias, self.readout_layer.bias)
        return CoreSize(self.units, synapses, total, total)


class GRUCore(_DenseSizes, Core):
    """``torch.nn.GRUCell`` (Cho et al. 2014; reset gate after the recurrent product) and a linear
    readout. Parameters ``cell.weight_ih (3H, F)``, ``cell.weight_hh (3H, H)``, ``cell.bias_ih``,
    ``cell.bias_hh (3H,)``, ``readout_layer.*``. State ``(B, H)``."""

    def __init__(self, input_size: int, units: int, output_size: int) -> None:
        super().__init__()
        self.input_size, self.units, self.outputs = int(input_size), int(units), int(output_size)
        self.cell = nn.GRUCell(self.input_size, self.units)
        self.readout_layer = nn.Linear(self.units, self.outputs)

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        dtype = self.cell.weight_ih.dtype
        features = as_compute_dtype(features, dtype, "features")
        result: Tensor = self.cell(features, as_compute_dtype(state, dtype, "state"))
        return result

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        state = as_compute_dtype(state, self.readout_layer.weight.dtype, "state")
        result: Tensor = self.readout_layer(state)
        return result

    def size(self) -> CoreSize:
        c = self.cell
        synapses = _numel(c.weight_ih, c.weight_hh, self.readout_layer.weight)
        total = synapses + _numel(c.bias_ih, c.bias_hh, self.readout_layer.bias)
        return CoreSize(self.units, synapses, total, total)


class CTRNNCore(_DenseSizes, Core):
    """Continuous-time RNN ``dx/dt = -x / tau + tanh(W [u, x] + b)``, explicit Euler.

    One :meth:`advance` of ``elapsed`` seconds takes ``ode_unfolds`` Euler sub-steps of
    ``Delta = elapsed / ode_unfolds``: ``x <- x + Delta (-x / tau + tanh(dense([u, x])))``.
    Output ``readout(x)``. Parameters ``dense.weight (H, F+H)``, ``dense.bias (H,)``,
    ``readout_layer.*``; tau (seconds) is a fixed buffer, not trained (as Table 2 counts it).

    Raises:
        ValueError: ``ode_unfolds < 1`` or ``tau_s <= 0``.
    """

    tau: Tensor

    def __init__(
        self,
        input_size: int,
        units: int,
        output_size: int,
        ode_unfolds: int = 6,
        tau_s: float = 1.0,
    ) -> None:
        super().__init__()
        if int(ode_unfolds) < 1:
            raise ValueError(f"ode_unfolds must be >= 1, got {ode_unfolds}")
        if not float(tau_s) > 0.0:
            raise ValueError(f"tau_s must be > 0 seconds, got {tau_s}")
        self.input_size, self.units, self.outputs = int(input_size), int(units), int(output_size)
        self.ode_unfolds = int(ode_unfolds)
        self.tau_s = float(tau_s)
        self.dense = nn.Linear(self.input_size + self.units, self.units)
        self.readout_layer = nn.Linear(self.units, self.outputs)
        self.register_buffer("tau", torch.tensor(self.tau_s), persistent=False)

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        dtype = self.dense.weight.dtype
        features = as_compute_dtype(features, dtype, "features")
        delta = elapsed / self.ode_unfolds
        x = as_compute_dtype(state, dtype, "state")
        for _ in range(self.ode_unfolds):
            x = x + delta * (torch.tanh(self.dense(torch.cat([features, x], 1))) - x / self.tau)
        return x

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        state = as_compute_dtype(state, self.readout_layer.weight.dtype, "state")
        result: Tensor = self.readout_layer(state)
        return result

    def size(self) -> CoreSize:
        synapses = _numel(self.dense.weight, self.readout_layer.weight)
        total = synapses + _numel(self.dense.bias, self.readout_layer.bias)
        return CoreSize(self.units, synapses, total, total)


class MLPCore(Core):
    """Feed-forward readout of the current features: ``Linear(F, U) -> ReLU -> Linear(U, M)``.

    Stateless: the state is ``(B, 0)``, :meth:`advance` returns it unchanged and
    :meth:`readout` ignores it.
    """

    def __init__(self, input_size: int, units: int, output_size: int) -> None:
        super().__init__()
        self.input_size, self.units, self.outputs = int(input_size), int(units), int(output_size)
        self.hidden = nn.Linear(self.input_size, self.units)
        self.readout_layer = nn.Linear(self.units, self.outputs)

    @property
    def state_size(self) -> int:
        return 0

    @property
    def sensory_size(self) -> int:
        return self.input_size

    @property
    def output_size(self) -> int:
        return self.outputs

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        return as_compute_dtype(state, self.hidden.weight.dtype, "state")

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        features = as_compute_dtype(features, self.hidden.weight.dtype, "features")
        result: Tensor = self.readout_layer(torch.relu(self.hidden(features)))
        return result

    def size(self) -> CoreSize:
        synapses = _numel(self.hidden.weight, self.readout_layer.weight)
        total = synapses + _numel(self.hidden.bias, self.readout_layer.bias)
        return CoreSize(self.units, synapses, total, total)
