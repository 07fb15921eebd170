"""Liquid time-constant (LTC) cell and sequence wrapper, numerically equal to ``ncps`` 1.0.1.

The model (Hasani et al. 2021, *Liquid Time-constant Networks*, AAAI, Eq. 1; Lechner et al. 2020,
*Neural circuit policies enabling auditable autonomy*, Nat. Mach. Intell., Eq. 1-3). Neuron j has
potential v_j; a synapse i -> j has weight w_ij >= 0, reversal potential erev_ij and a sigmoid
gate with slope sigma_ij and centre mu_ij::

    cm_j dv_j/dt = gleak_j (vleak_j - v_j)
                   + sum_i w_ij sigmoid(sigma_ij (v_i - mu_ij)) (erev_ij - v_j)      (internal)
                   + sum_k sw_kj sigmoid(ssigma_kj (x_k - smu_kj)) (serev_kj - v_j)  (sensory)

where x = input_w * u + input_b is the mapped input u. One call advances the state by ``elapsed``
seconds in L = ``ode_unfolds`` sub-steps of Delta = elapsed / L with the fused semi-implicit Euler
step (Lechner et al. 2020, Eq. 3; Hasani et al. 2021, Alg. 1): the synaptic gates are evaluated at
v(t), every term linear in v is taken at v(t + Delta)::

    v_j <- ( (cm_j/Delta) v_j + gleak_j vleak_j + sum_i A_ij erev_ij + N_j )
           / ( cm_j/Delta + gleak_j + sum_i A_ij + D_j + epsilon )

with A_ij = w_ij sigmoid(sigma_ij (v_i - mu_ij)) over the wiring's synapses, and the sensory drive
N_j = sum_k S_kj serev_kj, D_j = sum_k S_kj, S_kj = sw_kj sigmoid(ssigma_kj (x_k - smu_kj)), held
constant across the L sub-steps (computed once per call, as in ncps). The outputs are the first M
(motor) neurons through the output map: y = output_w * v[:M] + output_b.

Parameters (state_dict names and shapes equal ncps's ``LTCCell``; under :class:`LTC` the keys get
the prefix ``rnn_cell.``). H = units, I = inputs, M = motor neurons, init is ``torch.rand`` uniform
in [lo, hi), drawn in this order so a seeded ncps cell and ours start identical:

=========================  ======  =================  =========================================
name                       shape   init               constraint
=========================  ======  =================  =========================================
``gleak``                  (H,)    U(0.001, 1.0)      positive (*)
``vleak``                  (H,)    U(-0.2, 0.2)       none
``cm``                     (H,)    U(0.4, 0.6)        positive (*)
``sigma``                  (H,H)   U(3, 8)            none
``mu``                     (H,H)   U(0.3, 0.8)        none
``w``                      (H,H)   U(0.001, 1.0)      positive (*)
``erev``                   (H,H)   wiring polarity    none (trainable, unbounded)
``sensory_sigma``          (I,H)   U(3, 8)            none
``sensory_mu``             (I,H)   U(0.3, 0.8)        none
``sensory_w``              (I,H)   U(0.001, 1.0)      positive (*)
``sensory_erev``           (I,H)   sensory polarity   none
``input_w``, ``input_b``   (I,)    1, 0               ``"affine"``; ``"linear"`` has only ``_w``
``output_w``, ``output_b`` (M,)    1, 0               same rule for ``output_mapping``
``sparsity_mask``          (H,H)   abs(adjacency)     buffer, fixed by the wiring
``sensory_sparsity_mask``  (I,H)   abs(sensory adj.)  buffer, fixed by the wiring
=========================  ======  =================  =========================================

(*) ``implicit_param_constraints=True``: softplus of the stored value is used in the forward pass.
``False`` (the cell's default, as in ncps): the raw value is used and the caller must call
:meth:`LTCCell.apply_weight_constraints` (clamp at 0) after each optimizer step.
:class:`LTC` defaults to ``True``, like ncps; pass the mode explicitly.

Deliberate differences from ncps: the masks are buffers, not ``Parameter`` objects (same state_dict
keys, but they no longer appear in ``parameters()``); masked entries of ``w``, ``sigma``, ``mu`` and
``erev`` are never read (ncps multiplies them by 0, so an ``inf`` there gives NaN); ``elapsed`` may
be a scalar, ``(B,)`` or ``(B, 1)`` for any batch size (ncps's wrapper fails for B > 1); a
state_dict whose masks disagree with the wiring is rejected.

Cost: only the wiring's synapses are evaluated (gather, one fused multiply-add, sigmoid, one matrix
product per sub-step). Without autograd (``torch.no_grad()`` / ``torch.inference_mode()``) the
effective (softplus-ed, masked, gathered) weights are computed once and cached until a parameter
changes (detected through the tensors' version counters and storage); call
:meth:`LTCCell.invalidate_cache` after changing parameter storage in some other way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cores import Core, CoreSize, as_compute_dtype, sequence_inputs, sequence_outputs
from .wiring import FullyConnected, WiredSizes, Wiring

__all__ = ["LTC", "LTCCell"]

Elapsed = float | Tensor

_MAPPINGS = ("affine", "linear", "none")
# Above this many entries in the gathered (synapses, 2H) matrix, use the dense (H, H) path instead.
_MAX_GATHER_ELEMENTS = 1 << 22

_INIT_RANGES: dict[str, tuple[float, float]] = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
    "w": (0.001, 1.0),
    "sensory_sigma": (3.0, 8.0),
    "sensory_mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
}
_POSITIVE = ("gleak", "cm", "w", "sensory_w")


class _Synapses(NamedTuple):
    """Effective weights of one synapse block (sensory -> neurons or neurons -> neurons).

    Gather mode (``src`` set): S live synapses, ``sigma``/``neg_sigma_mu`` are ``(S,)`` and
    ``matrix`` is ``(S, 2H)`` with ``[w*erev | w]`` in the destination's column. Dense mode
    (``src`` None): ``sigma``/``neg_sigma_mu`` are ``(N, H)`` (0 where masked) and ``matrix`` is
    ``(2, N, H)`` = ``[w*erev*mask, w*mask]``.
    """

    src: Tensor | None
    sigma: Tensor
    neg_sigma_mu: Tensor
    matrix: Tensor


class _Effective(NamedTuple):
    sensory: _Synapses
    recurrent: _Synapses
    leak_bias: Tensor  # (2H,) = [gleak*vleak | gleak + epsilon]
    cm: Tensor  # (H,) positive capacitance


def _drive(block: _Synapses, pre: Tensor, bias: Tensor) -> Tensor:
    """``bias + [sum_i g_ij erev_ij | sum_i g_ij]`` for one synapse block.

    g_ij = w_ij sigmoid(sigma_ij (pre_i - mu_ij)); ``pre`` is ``(B, N)``; returns ``(B, 2H)``.
    """
    if block.src is not None:
        gate = torch.sigmoid(
            torch.addcmul(block.neg_sigma_mu, pre.index_select(1, block.src), block.sigma)
        )
        return torch.addmm(bias, gate, block.matrix)
    gate = torch.sigmoid(torch.addcmul(block.neg_sigma_mu, pre.unsqueeze(-1), block.sigma))
    return bias + torch.cat([(gate * block.matrix[0]).sum(1), (gate * block.matrix[1]).sum(1)], 1)


def _synapses(
    w: Tensor, erev: Tensor, sigma: Tensor, mu: Tensor, src: Tensor, dst: Tensor, mask: Tensor
) -> _Synapses:
    """Gather (or mask, for large dense blocks) the effective weights of one block."""
    n, h = w.shape
    count = int(src.numel())
    if count * 2 * h <= _MAX_GATHER_ELEMENTS:
        w_live = w[src, dst]
        rows = torch.arange(count, device=w.device)
        matrix = w.new_zeros(count, 2 * h)
        matrix = matrix.index_put((rows, dst), w_live * erev[src, dst])
        matrix = matrix.index_put((rows, dst + h), w_live)
        s = sigma[src, dst]
        return _Synapses(src, s, -(s * mu[src, dst]), matrix)
    live = mask != 0
    zero = w.new_zeros(())
    w_m = torch.where(live, w, zero)
    s = torch.where(live, sigma, zero)
    return _Synapses(
        None,
        s,
        torch.where(live, -(sigma * mu), zero),
        torch.stack([torch.where(live, w_m * erev, zero), w_m]),
    )


class LTCCell(WiredSizes, Core):
    """One LTC step: ``(inputs (B, I), state (B, H), elapsed) -> (outputs (B, M), state (B, H))``.

    See the module docstring for the ODE, the fused semi-implicit Euler step and the parameter
    table.

    Args:
        wiring: a :class:`~ltc_controller.models.wiring.Wiring`; built (purely) for
            ``in_features`` if given, else it must already be built.
        in_features: I, number of inputs.
        input_mapping, output_mapping: ``"affine"`` (w*x + b), ``"linear"`` (w*x) or ``"none"``.
        ode_unfolds: L, sub-steps per call (6 in the NCP paper).
        epsilon: denominator guard (1e-8 as in ncps).
        implicit_param_constraints: softplus the positive parameters in the forward pass (True) or
            use them raw and rely on :meth:`apply_weight_constraints` (False, ncps cell default).

    Raises:
        ValueError: unbuilt wiring without ``in_features``, unknown mapping, ``ode_unfolds < 1``.
    """

    sparsity_mask: Tensor
    sensory_sparsity_mask: Tensor
    _syn_src: Tensor
    _syn_dst: Tensor
    _sen_src: Tensor
    _sen_dst: Tensor

    def __init__(
        self,
        wiring: Wiring,
        in_features: int | None = None,
        input_mapping: str = "affine",
        output_mapping: str = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = False,
    ) -> None:
        super().__init__()
        if in_features is not None:
            wiring = wiring.build(in_features)
        if not wiring.is_built():
            raise ValueError(
                f"{type(wiring).__name__} wiring has no input size: pass in_features or use "
                "wiring.build(input_dim)"
            )
        for name, mapping in (("input_mapping", input_mapping), ("output_mapping", output_mapping)):
            if mapping not in _MAPPINGS:
                raise ValueError(f"{name} must be one of {_MAPPINGS}, got {mapping!r}")
        if int(ode_unfolds) < 1:
            raise ValueError(f"ode_unfolds must be >= 1, got {ode_unfolds}")
        self.wiring = wiring
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping
        self.ode_unfolds = int(ode_unfolds)
        self.epsilon = float(epsilon)
        self.implicit_param_constraints = bool(implicit_param_constraints)
        self._cache: tuple[tuple[object, ...], _Effective] | None = None

        h, i, m = self.state_size, self.sensory_size, self.motor_size
        dtype = torch.get_default_dtype()

        def uniform(name: str, *shape: int) -> nn.Parameter:
            lo, hi = _INIT_RANGES[name]
            return nn.Parameter(torch.rand(*shape) * (hi - lo) + lo)

        # Registration (and RNG draw) order follows ncps.
        self.gleak = uniform("gleak", h)
        self.vleak = uniform("vleak", h)
        self.cm = uniform("cm", h)
        self.sigma = uniform("sigma", h, h)
        self.mu = uniform("mu", h, h)
        self.w = uniform("w", h, h)
        self.erev = nn.Parameter(torch.tensor(wiring.erev_initializer(), dtype=dtype))
        self.sensory_sigma = uniform("sensory_sigma", i, h)
        self.sensory_mu = uniform("sensory_mu", i, h)
        self.sensory_w = uniform("sensory_w", i, h)
        self.sensory_erev = nn.Parameter(
            torch.tensor(wiring.sensory_erev_initializer(), dtype=dtype)
        )
        adjacency = np.abs(wiring.adjacency_matrix)
        sensory_adjacency = np.abs(wiring.sensory_erev_initializer())
        self.register_buffer("sparsity_mask", torch.tensor(adjacency, dtype=dtype))
        self.register_buffer("sensory_sparsity_mask", torch.tensor(sensory_adjacency, dtype=dtype))
        self.input_w = (
            nn.Parameter(torch.ones(i)) if input_mapping in ("affine", "linear") else None
        )
        self.input_b = nn.Parameter(torch.zeros(i)) if input_mapping == "affine" else None
        self.output_w = (
            nn.Parameter(torch.ones(m)) if output_mapping in ("affine", "linear") else None
        )
        self.output_b = nn.Parameter(torch.zeros(m)) if output_mapping == "affine" else None
        # Synapse lists (row-major), fixed by the wiring.
        for prefix, matrix in (("_syn", adjacency), ("_sen", sensory_adjacency)):
            src, dst = np.nonzero(matrix)
            self.register_buffer(
                f"{prefix}_src", torch.as_tensor(src, dtype=torch.long), persistent=False
            )
            self.register_buffer(
                f"{prefix}_dst", torch.as_tensor(dst, dtype=torch.long), persistent=False
            )

    # --- sizes ------------------------------------------------------------------------------------
    # --- constraints and effective weights ----------------------------------------------------
    def _positive(self, x: Tensor) -> Tensor:
        return F.softplus(x) if self.implicit_param_constraints else x

    @torch.no_grad()
    def apply_weight_constraints(self) -> None:
        """Clamp ``w``, ``sensory_w``, ``cm`` and ``gleak`` at 0 in place (explicit mode only).

        Call after every optimizer step when ``implicit_param_constraints=False``; a no-op in
        implicit (softplus) mode.
        """
        if not self.implicit_param_constraints:
            for name in _POSITIVE:
                getattr(self, name).clamp_(min=0.0)

    def invalidate_cache(self) -> None:
        """Drop the cached effective weights (automatic for in-place updates and ``.to()``)."""
        self._cache = None

    def _compute_effective(self) -> _Effective:
        gleak = self._positive(self.gleak)
        return _Effective(
            sensory=_synapses(
                self._positive(self.sensory_w),
                self.sensory_erev,
                self.sensory_sigma,
                self.sensory_mu,
                self._sen_src,
                self._sen_dst,
                self.sensory_sparsity_mask,
            ),
            recurrent=_synapses(
                self._positive(self.w),
                self.erev,
                self.sigma,
                self.mu,
                self._syn_src,
                self._syn_dst,
                self.sparsity_mask,
            ),
            leak_bias=torch.cat([gleak * self.vleak, gleak + self.epsilon]),
            cm=self._positive(self.cm),
        )

    def effective(self) -> _Effective:
        """Effective weights; cached while autograd is off and no parameter changed."""
        if torch.is_grad_enabled():
            return self._compute_effective()
        key = (torch.is_inference_mode_enabled(),) + tuple(
            (p.data_ptr(), p._version) for p in self._parameters.values() if p is not None
        )
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._compute_effective())
        return self._cache[1]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self._cache = None
        return super()._apply(fn, recurse)  # type: ignore[no-untyped-call, unused-ignore]

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
        for name in ("sparsity_mask", "sensory_sparsity_mask"):
            incoming = state_dict.get(prefix + name)
            ours: Tensor = getattr(self, name)
            if incoming is None or incoming.shape != ours.shape:
                continue  # missing / shape errors are reported by torch
            if not torch.equal(incoming.detach().to(ours.device, ours.dtype), ours):
                error_msgs.append(
                    f"{prefix}{name} disagrees with the wiring {self.wiring!r}: the wiring fixes "
                    "the synapses, build the cell with the wiring the weights were trained with"
                )
        self._cache = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # --- forward ------------------------------------------------------------------------------
    def _cm_over_dt(self, cm: Tensor, elapsed: Elapsed, batch: int, ref: Tensor) -> Tensor:
        """cm / Delta with Delta = elapsed / L; ``(H,)`` for a scalar, ``(B, H)`` per sample."""
        if not isinstance(elapsed, Tensor):
            seconds = float(elapsed)
            if not (seconds > 0.0 and math.isfinite(seconds)):
                raise ValueError(
                    f"elapsed must be a positive finite time in seconds, got {elapsed}"
                )
            return cm / (seconds / self.ode_unfolds)
        e = elapsed.to(device=ref.device, dtype=ref.dtype)
        if e.dim() != 0:
            if e.shape not in ((batch,), (batch, 1)):
                raise ValueError(
                    f"elapsed must be a scalar, (B,) or (B, 1) with B={batch}, got {tuple(e.shape)}"
                )
            e = e.reshape(batch, 1)
        return cm / (e / self.ode_unfolds)

    def step(self, inputs: Tensor, state: Tensor, elapsed: Elapsed, eff: _Effective) -> Tensor:
        """Advance ``state (B, H)`` by ``elapsed`` seconds with given effective weights.

        ``inputs`` and ``state`` of another real dtype are cast to the weights' dtype
        (:func:`~ltc_controller.models.cores.as_compute_dtype`, as ncps computes them).
        Returns the new state ``(B, H)``; see :meth:`forward` for the public call.

        Raises:
            TypeError: a complex or quantized ``inputs`` or ``state``.
        """
        dtype = eff.cm.dtype
        inputs = as_compute_dtype(inputs, dtype, "inputs")
        state = as_compute_dtype(state, dtype, "state")
        return self.fused_step(
            inputs, state, self._cm_over_dt(eff.cm, elapsed, inputs.shape[0], inputs), eff
        )

    def fused_step(self, inputs: Tensor, state: Tensor, cm_t: Tensor, eff: _Effective) -> Tensor:
        """The fused solver step given ``cm_t = cm / (elapsed / L)`` (``(H,)`` or ``(B, H)``).

        Only tensor operations (no shape checks), so it traces to TorchScript/ONNX with the
        ``ode_unfolds`` loop unrolled.
        """
        h = self.state_size
        x = inputs
        if self.input_w is not None:
            x = x * self.input_w
        if self.input_b is not None:
            x = x + self.input_b
        # Sensory drive, constant over the sub-steps: [gleak vleak + N | gleak + eps + D].
        sensory = _drive(eff.sensory, x, eff.leak_bias)
        bias = torch.cat([sensory[:, :h], sensory[:, h:] + cm_t], 1)
        v = state
        for _ in range(self.ode_unfolds):
            total = _drive(eff.recurrent, v, bias)
            v = torch.addcmul(total[:, :h], cm_t, v) / total[:, h:]
        return v

    def map_outputs(self, state: Tensor) -> Tensor:
        """Motor outputs ``(B, M)`` = output map of the first M neurons of ``state (B, H)``."""
        out = state[:, : self.motor_size] if self.motor_size < self.state_size else state
        if self.output_w is not None:
            out = out * self.output_w
        if self.output_b is not None:
            out = out + self.output_b
        return out

    # --- policy core interface (see cores.Core) -------------------------------------------
    def prepare(self) -> _Effective:
        return self.effective()

    def advance(self, features: Tensor, state: Tensor, elapsed: Elapsed, cache: Any) -> Tensor:
        return self.step(features, state, elapsed, cache)

    def readout(self, state: Tensor, features: Tensor) -> Tensor:
        return self.map_outputs(as_compute_dtype(state, self.cm.dtype, "state"))

    def size(self) -> CoreSize:
        """Table 2 of Lechner et al. 2020: parameters = 3 N + 4 synapses (sensory included)."""
        synapses = self.synapse_count + self.sensory_synapse_count
        ode = 3 * self.state_size + 4 * synapses
        maps = sum(
            int(p.numel())
            for p in (self.input_w, self.input_b, self.output_w, self.output_b)
            if p is not None
        )
        return CoreSize(self.state_size, synapses, ode, ode + maps)

    def forward(
        self, inputs: Tensor, state: Tensor | None = None, elapsed: Elapsed = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Advance the state by ``elapsed`` seconds (ncps default 1.0) with inputs held constant.

        Args:
            inputs: ``(B, I)``; any real dtype, cast to the weights' dtype (integers as ncps
                computes them; float16/bfloat16/float64 to the cell's precision); strided
                views are fine.
            state: ``(B, H)``; ``None`` means zeros; cast like ``inputs``.
            elapsed: seconds, > 0: a float, a 0-d tensor, or ``(B,)`` / ``(B, 1)`` per sample.

        Returns:
            ``(outputs (B, M), new_state (B, H))`` in the weights' dtype.

        Raises:
            ValueError: wrong input/state/elapsed shape, or a non-positive float ``elapsed``
                (tensor values are not checked, to avoid a device sync).
            TypeError: a complex or quantized ``inputs`` or ``state``.
        """
        if inputs.dim() != 2 or inputs.shape[1] != self.sensory_size:
            raise ValueError(f"inputs must be (B, {self.sensory_size}), got {tuple(inputs.shape)}")
        batch = inputs.shape[0]
        if state is None:
            state = inputs.new_zeros(batch, self.state_size, dtype=self.cm.dtype)
        elif state.shape != (batch, self.state_size):
            raise ValueError(
                f"state must be ({batch}, {self.state_size}), got {tuple(state.shape)}"
            )
        new_state = self.step(inputs, state, elapsed, self.effective())
        return self.map_outputs(new_state), new_state

    def extra_repr(self) -> str:
        return (
            f"wiring={self.wiring!r}, ode_unfolds={self.ode_unfolds}, epsilon={self.epsilon}, "
            f"implicit_param_constraints={self.implicit_param_constraints}, "
            f"input_mapping={self.input_mapping!r}, output_mapping={self.output_mapping!r}"
        )


class LTC(nn.Module):
    """An :class:`LTCCell` run over a sequence (state_dict keys ``rnn_cell.*``, as ncps's ``LTC``).

    Args:
        input_size: I.
        units: a wiring, or an int H for ``FullyConnected(H)`` (all neurons are outputs).
        return_sequences: return every step's outputs ``(B, T, M)`` or only the last ``(B, M)``.
        batch_first: ``(B, T, I)`` if True, else ``(T, B, I)``.
        input_mapping, output_mapping, ode_unfolds, epsilon: see :class:`LTCCell`.
        implicit_param_constraints: softplus constraints; True by default here, as in ncps's
            ``LTC`` (the cell defaults to False).

    Not supported: ncps's ``mixed_memory`` (LSTM-augmented) variant.
    """

    def __init__(
        self,
        input_size: int,
        units: Wiring | int,
        return_sequences: bool = True,
        batch_first: bool = True,
        input_mapping: str = "affine",
        output_mapping: str = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
    ) -> None:
        super().__init__()
        wiring = units if isinstance(units, Wiring) else FullyConnected(int(units))
        self.input_size = int(input_size)
        self.return_sequences = return_sequences
        self.batch_first = batch_first
        self.rnn_cell = LTCCell(
            wiring,
            in_features=self.input_size,
            input_mapping=input_mapping,
            output_mapping=output_mapping,
            ode_unfolds=ode_unfolds,
            epsilon=epsilon,
            implicit_param_constraints=implicit_param_constraints,
        )

    @property
    def wiring(self) -> Wiring:
        return self.rnn_cell.wiring

    @property
    def state_size(self) -> int:
        return self.rnn_cell.state_size

    @property
    def output_size(self) -> int:
        return self.rnn_cell.motor_size

    def forward(
        self, x: Tensor, hx: Tensor | None = None, timespans: Tensor | float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run the cell over the sequence, one call per element.

        Args:
            x: ``(B, T, I)`` (``(T, B, I)`` if not batch_first) or unbatched ``(T, I)``.
            hx: initial state ``(B, H)`` (``(H,)`` unbatched); ``None`` means zeros.
            timespans: elapsed seconds per element, ``(B, T)`` (``(T, B)`` if not batch_first,
                ``(T,)`` unbatched, a trailing 1 allowed), a float, or ``None`` for 1.0.

        Returns:
            ``(outputs, h)``: outputs ``(B, T, M)`` (or ``(B, M)`` if not return_sequences;
            time-major if not batch_first; no batch dim if unbatched) and the final full state
            ``(B, H)``. Running the elements one by one with the carried state gives the same.
            ``x`` and ``hx`` of another real dtype are cast as in :meth:`LTCCell.forward`.

        Raises:
            ValueError: inconsistent shapes.
            TypeError: a complex or quantized ``x`` or ``hx``.
        """
        x, hx, timespans, batched = sequence_inputs(x, hx, timespans, self.batch_first, "x")
        batch, steps = x.shape[0], x.shape[1]
        cell = self.rnn_cell
        x = as_compute_dtype(x, cell.cm.dtype, "x")  # once for the sequence, not per element
        state = x.new_zeros(batch, self.state_size) if hx is None else hx
        eff = cell.effective()  # once per sequence, also with autograd on
        outputs = []
        for t in range(steps):
            elapsed: Elapsed = 1.0 if timespans is None else timespans
            if isinstance(timespans, Tensor):
                elapsed = timespans[:, t]
            state = cell.step(x[:, t], state, elapsed, eff)
            if self.return_sequences or t == steps - 1:
                outputs.append(cell.map_outputs(state))
        return sequence_outputs(outputs, state, self.return_sequences, self.batch_first, batched)
