"""Fast batch-1 inference steps for LTC and CfC cores, compiled with numba.

A control step of the 19-neuron NCP is a few hundred sigmoids: at batch 1 the cost of a torch
step is almost all per-operator dispatch. These kernels do the same arithmetic in one compiled
call, in float64, visiting only the wiring's synapses (masked synapses are never touched):

* :class:`FastLTC`: the fused semi-implicit Euler step of
  :class:`~ltc_controller.models.ltc.LTCCell` (Lechner et al. 2020, Eq. 3; see ``ltc.py``),
  ``ode_unfolds`` sub-steps, sensory drive once per call, outputs ``output_w v[:M] + output_b``.
* :class:`FastCfC`: :class:`~ltc_controller.models.cfc.CfC` (Hasani et al. 2022, Eq. 10), fully
  connected (backbone + heads + projection) or wired (one layer per wiring layer).
* :class:`FastStepModel`: a policy whose ``step`` runs on these kernels and whose ``features``
  still run the torch head; it has the ``features``/``step``/``initial_state`` methods the
  runtime's ``StepModel`` protocol asks for, plus ``config``, ``state_size`` and ``eval``.

The kernels take a snapshot of the weights (effective values: softplus applied in implicit
mode, masks applied); call ``refresh()`` after changing the torch module's weights. They are
equal to the torch modules to float rounding (tests hold them within 1e-6 in float32 and 1e-10
in float64). Compilation happens on first use per input dtype and is cached on disk by numba.

Raises ``ImportError`` on import when numba is not installed.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from .cfc import CfC, CfCCell, WiredCfCCell
from .cores import as_compute_dtype
from .ltc import LTCCell
from .policy import Policy, PolicyConfig

__all__ = ["FastCfC", "FastLTC", "FastStepModel", "numba_step_model"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _ltc_step(u, v0, elapsed, ip, fp):
    """Fused LTC step. ``u (B, I)``, ``v0 (B, H)``, ``elapsed (1,) or (B,)`` seconds.

    ``ip`` = [I, H, M, L, S, R, s_src(S), s_dst(S), r_src(R), r_dst(R)] and ``fp`` = [in_w(I),
    in_b(I), s_sigma(S), s_nsm(S), s_we(S), s_w(S), r_sigma(R), r_nsm(R), r_we(R), r_w(R),
    gleak*vleak(H), gleak+eps(H), cm(H), out_w(M), out_b(M)] with nsm = -sigma*mu, we = w*erev.
    """
    n_in, h, m, unfolds, n_s, n_r = ip[0], ip[1], ip[2], ip[3], ip[4], ip[5]
    o = 6
    s_src = ip[o : o + n_s]
    s_dst = ip[o + n_s : o + 2 * n_s]
    o += 2 * n_s
    r_src = ip[o : o + n_r]
    r_dst = ip[o + n_r : o + 2 * n_r]
    f = 0
    in_w = fp[f : f + n_in]
    in_b = fp[f + n_in : f + 2 * n_in]
    f += 2 * n_in
    s_sig = fp[f : f + n_s]
    s_nsm = fp[f + n_s : f + 2 * n_s]
    s_we = fp[f + 2 * n_s : f + 3 * n_s]
    s_w = fp[f + 3 * n_s : f + 4 * n_s]
    f += 4 * n_s
    r_sig = fp[f : f + n_r]
    r_nsm = fp[f + n_r : f + 2 * n_r]
    r_we = fp[f + 2 * n_r : f + 3 * n_r]
    r_w = fp[f + 3 * n_r : f + 4 * n_r]
    f += 4 * n_r
    leak_num = fp[f : f + h]
    leak_den = fp[f + h : f + 2 * h]
    cm = fp[f + 2 * h : f + 3 * h]
    f += 3 * h
    out_w = fp[f : f + m]
    out_b = fp[f + m : f + 2 * m]

    batch = u.shape[0]
    v_out = np.empty((batch, h), dtype=v0.dtype)
    y_out = np.empty((batch, m), dtype=v0.dtype)
    x = np.empty(n_in)
    num = np.empty(h)
    den = np.empty(h)
    cm_t = np.empty(h)
    v = np.empty(h)
    n2 = np.empty(h)
    d2 = np.empty(h)
    for b in range(batch):
        dt = elapsed[b if elapsed.shape[0] > 1 else 0] / unfolds
        for k in range(n_in):
            x[k] = u[b, k] * in_w[k] + in_b[k]
        for j in range(h):
            num[j] = leak_num[j]
            den[j] = leak_den[j]
            cm_t[j] = cm[j] / dt
            v[j] = v0[b, j]
        for s in range(n_s):  # sensory drive, held over the sub-steps
            g = 1.0 / (1.0 + math.exp(-(s_sig[s] * x[s_src[s]] + s_nsm[s])))
            num[s_dst[s]] += s_we[s] * g
            den[s_dst[s]] += s_w[s] * g
        for _ in range(unfolds):
            for j in range(h):
                n2[j] = num[j] + cm_t[j] * v[j]
                d2[j] = den[j] + cm_t[j]
            for s in range(n_r):
                g = 1.0 / (1.0 + math.exp(-(r_sig[s] * v[r_src[s]] + r_nsm[s])))
                n2[r_dst[s]] += r_we[s] * g
                d2[r_dst[s]] += r_w[s] * g
            for j in range(h):
                v[j] = n2[j] / d2[j]
        for j in range(h):
            v_out[b, j] = v[j]
        for j in range(m):
            y_out[b, j] = v[j] * out_w[j] + out_b[j]
    return y_out, v_out


def _prepare(
    inputs: npt.NDArray[Any],
    state: npt.NDArray[Any],
    elapsed: float | npt.ArrayLike,
    scratch: FloatArray,
) -> tuple[npt.NDArray[Any], FloatArray, FloatArray]:
    """Kernel arguments: C-contiguous inputs (float32 kept, else float64), float64 state and
    elapsed (``(1,)`` or ``(B,)``).

    Raises:
        TypeError: inputs or state that are not real numbers (complex, object, strings).
    """
    for name, a in (("inputs", inputs), ("state", state)):
        if np.asarray(a).dtype.kind not in "biuf":
            raise TypeError(
                f"{name} has dtype {np.asarray(a).dtype}; expected real numbers (float32 or "
                "float64; integer, bool and float16 are cast to float64)"
            )
    if isinstance(elapsed, float | int):
        scratch[0] = elapsed
        e = scratch
    else:
        e = np.ascontiguousarray(elapsed, dtype=np.float64).reshape(-1)
    u = np.ascontiguousarray(inputs, dtype=np.float32 if inputs.dtype == np.float32 else np.float64)
    v = np.ascontiguousarray(state, dtype=np.float64)
    return u, v, e


class FastLTC:
    """Numba fused step of an :class:`LTCCell` (weights snapshotted at construction).

    Args:
        cell: the torch cell.
        output_scale: per-output factor folded into the output map (``(M,)`` or None).
    """

    def __init__(self, cell: LTCCell, output_scale: npt.ArrayLike | None = None) -> None:
        self.cell = cell
        self._scale = None if output_scale is None else np.asarray(output_scale, np.float64)
        self._elapsed = np.empty(1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the cell's weights (after training or loading)."""
        cell = self.cell

        def np64(t: Tensor) -> FloatArray:
            return t.detach().to("cpu", torch.float64).numpy().copy()

        with torch.no_grad():
            pos = cell._positive
            h, n_in, m = cell.state_size, cell.sensory_size, cell.motor_size
            blocks = []
            index = [np.array([n_in, h, m, cell.ode_unfolds], np.int64)]
            counts = []
            for prefix, mask in (
                ("sensory_", cell.sensory_sparsity_mask),
                ("", cell.sparsity_mask),
            ):
                src, dst = np.nonzero(mask.detach().cpu().numpy())
                order = np.lexsort((src, dst))  # by destination: accumulation stays local
                src, dst = src[order], dst[order]
                w = np64(pos(getattr(cell, prefix + "w")))[src, dst]
                sigma = np64(getattr(cell, prefix + "sigma"))[src, dst]
                mu = np64(getattr(cell, prefix + "mu"))[src, dst]
                erev = np64(getattr(cell, prefix + "erev"))[src, dst]
                blocks.append((src, dst, [sigma, -sigma * mu, w * erev, w]))
                counts.append(len(src))
            index.append(np.array(counts, np.int64))
            for src, dst, _ in blocks:
                index += [src.astype(np.int64), dst.astype(np.int64)]
            in_w = np.ones(n_in) if cell.input_w is None else np64(cell.input_w)
            in_b = np.zeros(n_in) if cell.input_b is None else np64(cell.input_b)
            out_w = np.ones(m) if cell.output_w is None else np64(cell.output_w)
            out_b = np.zeros(m) if cell.output_b is None else np64(cell.output_b)
            if self._scale is not None:
                out_w, out_b = out_w * self._scale, out_b * self._scale
            gleak = np64(pos(cell.gleak))
            floats = [in_w, in_b, *blocks[0][2], *blocks[1][2]]
            floats += [gleak * np64(cell.vleak), gleak + cell.epsilon, np64(pos(cell.cm))]
            floats += [out_w, out_b]
        self._ip: IntArray = np.ascontiguousarray(np.concatenate(index))
        self._fp: FloatArray = np.ascontiguousarray(np.concatenate(floats))

    @property
    def state_size(self) -> int:
        return self.cell.state_size

    def step(
        self, inputs: npt.NDArray[Any], state: npt.NDArray[Any], elapsed: float | npt.ArrayLike
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """``(inputs (B, I), state (B, H), elapsed s) -> (outputs (B, M), new_state (B, H))``.

        ``elapsed`` is a float or ``(B,)`` seconds. Computes in float64 and returns float64
        arrays (float32 or float64 inputs: one compiled variant each; integer, bool and float16
        inputs are cast to float64, as is the state; strided arrays are copied contiguous).

        Raises:
            TypeError: complex or non-numeric inputs or state.
        """
        y, v = _ltc_step(*_prepare(inputs, state, elapsed, self._elapsed), self._ip, self._fp)
        return y, v


# Activation codes of the CfC backbone.
_ACT = {"lecun_tanh": 0, "silu": 1, "relu": 2, "tanh": 3, "gelu": 4}
_MODE = {"default": 0, "no_gate": 1, "pure": 2}


# Reassociation lets LLVM vectorise the dot products (results differ from torch's by rounding).
@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _dense(w, b, z, n_out, n_in):
    out = np.empty(n_out)
    for r in range(n_out):
        acc = b[r]
        row = r * n_in
        for c in range(n_in):
            acc += w[row + c] * z[c]
        out[r] = acc
    return out


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _cfc_step(u, v0, elapsed, ip, fp):
    """CfC step. ``ip`` = [n_layers, M_out, has_fc, S] then per layer [in, hid, backbone layers,
    backbone units, mode, activation, state offset]; ``fp`` holds, per layer, the backbone
    (W, b) pairs, ff1 (W, b), then ff2, time_a, time_b (W, b) or w_tau, A (pure); then fc
    (W, b) and the output scale (M_out)."""
    n_layers, m_out, has_fc = ip[0], ip[1], ip[2]
    batch = u.shape[0]
    h_total = v0.shape[1]
    v_out = np.empty((batch, h_total), dtype=v0.dtype)
    y_out = np.empty((batch, m_out), dtype=v0.dtype)
    for b in range(batch):
        ts = elapsed[b if elapsed.shape[0] > 1 else 0]
        x = np.empty(u.shape[1])
        for k in range(u.shape[1]):
            x[k] = u[b, k]
        f = 0
        last = x
        for layer in range(n_layers):
            meta = 4 + 7 * layer
            n_in, hid, n_bb, bb_units = ip[meta], ip[meta + 1], ip[meta + 2], ip[meta + 3]
            mode, act, offset = ip[meta + 4], ip[meta + 5], ip[meta + 6]
            z = np.empty(n_in + hid)
            for k in range(n_in):
                z[k] = x[k]
            for k in range(hid):
                z[n_in + k] = v0[b, offset + k]
            width = n_in + hid
            for _ in range(n_bb):
                w = fp[f : f + bb_units * width]
                f += bb_units * width
                zz = _dense(w, fp[f : f + bb_units], z, bb_units, width)
                f += bb_units
                for k in range(bb_units):
                    a = zz[k]
                    if act == 0:
                        zz[k] = 1.7159 * math.tanh(0.666 * a)
                    elif act == 1:
                        zz[k] = a / (1.0 + math.exp(-a))
                    elif act == 2:
                        zz[k] = a if a > 0.0 else 0.0
                    elif act == 3:
                        zz[k] = math.tanh(a)
                    else:
                        zz[k] = 0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0)))
                z = zz
                width = bb_units
            f1 = _dense(
                fp[f : f + hid * width], fp[f + hid * width : f + hid * width + hid], z, hid, width
            )
            f += hid * width + hid
            new = np.empty(hid)
            if mode == 2:
                w_tau = fp[f : f + hid]
                a_par = fp[f + hid : f + 2 * hid]
                f += 2 * hid
                for k in range(hid):
                    decay = math.exp(-ts * (abs(w_tau[k]) + abs(f1[k])))
                    new[k] = -a_par[k] * decay * f1[k] + a_par[k]
            else:
                heads = []
                for _ in range(3):
                    heads.append(
                        _dense(
                            fp[f : f + hid * width],
                            fp[f + hid * width : f + hid * width + hid],
                            z,
                            hid,
                            width,
                        )
                    )
                    f += hid * width + hid
                f2, t_a, t_b = heads[0], heads[1], heads[2]
                for k in range(hid):
                    g = 1.0 / (1.0 + math.exp(-(t_a[k] * ts + t_b[k])))
                    if mode == 1:
                        new[k] = math.tanh(f1[k]) + g * math.tanh(f2[k])
                    else:
                        new[k] = math.tanh(f1[k]) * (1.0 - g) + g * math.tanh(f2[k])
            for k in range(hid):
                v_out[b, offset + k] = new[k]
            x = new
            last = new
        if has_fc == 1:
            n_last = last.shape[0]
            y = _dense(
                fp[f : f + m_out * n_last],
                fp[f + m_out * n_last : f + m_out * n_last + m_out],
                last,
                m_out,
                n_last,
            )
            f += m_out * n_last + m_out
        else:
            y = last
        scale = fp[f : f + m_out]
        for k in range(m_out):
            y_out[b, k] = y[k] * scale[k]
    return y_out, v_out


class FastCfC:
    """Numba step of a :class:`CfC` (fully connected or wired; weights snapshotted).

    Args:
        cfc: the torch module.
        output_scale: per-output factor applied to the outputs (``(M,)`` or None).

    Raises:
        ValueError: ``backbone_dropout`` layers are fine (inference), an unknown activation is not.
    """

    def __init__(self, cfc: CfC, output_scale: npt.ArrayLike | None = None) -> None:
        self.cfc = cfc
        self._scale = np.ones(cfc.output_size) if output_scale is None else output_scale
        self._elapsed = np.empty(1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the module's weights (after training or loading)."""
        cfc = self.cfc
        rnn = cfc.rnn_cell
        cells: list[CfCCell] = rnn.layers if isinstance(rnn, WiredCfCCell) else [rnn]
        has_fc = isinstance(cfc.fc, torch.nn.Linear)

        def flat(t: Tensor | None) -> FloatArray:
            assert t is not None
            return t.detach().to("cpu", torch.float64).numpy().reshape(-1).copy()

        ints = [len(cells), cfc.output_size, int(has_fc), cfc.state_size]
        floats: list[FloatArray] = []
        offset = 0
        with torch.no_grad():
            for cell in cells:
                linears = [] if cell.backbone is None else list(cell.backbone)
                dense = [mod for mod in linears if isinstance(mod, torch.nn.Linear)]
                ints += [
                    cell.input_size,
                    cell.hidden_size,
                    len(dense),
                    cell.backbone_units,
                    _MODE[cell.mode],
                    _ACT[cell.backbone_activation],
                    offset,
                ]
                offset += cell.hidden_size
                for lin in dense:
                    floats += [flat(lin.weight), flat(lin.bias)]
                mask = cell.sparsity_mask

                def masked(w: Tensor, mask: Tensor | None = mask) -> FloatArray:
                    return flat(w if mask is None else torch.where(mask != 0, w, 0.0))

                floats += [masked(cell.ff1.weight), flat(cell.ff1.bias)]
                if cell.mode == "pure":
                    floats += [flat(cell.w_tau), flat(cell.A)]
                else:
                    assert cell.ff2 is not None and cell.time_a is not None
                    assert cell.time_b is not None
                    floats += [masked(cell.ff2.weight), flat(cell.ff2.bias)]
                    floats += [flat(cell.time_a.weight), flat(cell.time_a.bias)]
                    floats += [flat(cell.time_b.weight), flat(cell.time_b.bias)]
            if has_fc:
                assert isinstance(cfc.fc, torch.nn.Linear)
                floats += [flat(cfc.fc.weight), flat(cfc.fc.bias)]
        floats.append(np.asarray(self._scale, np.float64).reshape(-1))
        self._ip: IntArray = np.asarray(ints, np.int64)
        self._fp: FloatArray = np.ascontiguousarray(np.concatenate(floats))

    @property
    def state_size(self) -> int:
        return self.cfc.state_size

    def step(
        self, inputs: npt.NDArray[Any], state: npt.NDArray[Any], elapsed: float | npt.ArrayLike
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """``(inputs (B, I), state (B, H), elapsed s) -> (outputs (B, M), new_state (B, H))``,
        float64 (see :meth:`FastLTC.step`, dtypes included).

        Raises:
            TypeError: complex or non-numeric inputs or state.
        """
        y, v = _cfc_step(*_prepare(inputs, state, elapsed, self._elapsed), self._ip, self._fp)
        return y, v


class FastStepModel:
    """A policy stepped by numba kernels: ``features`` on the torch head, ``step`` compiled.

    Same methods as :class:`~ltc_controller.models.policy.Policy` for the runtime
    (``features``, ``step``, ``initial_state``, ``config``, ``state_size``, ``eval``); tensors in,
    tensors out (CPU). The kernels compute in float64; the state and outputs are float64 tensors
    (a float32 state is accepted). Supported architectures: ``ncp_ltc``, ``ltc_fc``, ``cfc``,
    ``ncp_cfc``. Not thread-safe: one caller at a time (the runtime's control loop).

    Raises:
        ValueError: another architecture.
    """

    def __init__(self, policy: Policy) -> None:
        arch = policy.config.architecture
        self.policy = policy
        scale = policy.output_scale.detach().cpu().double().numpy()
        core = policy.core
        self.kernel: FastLTC | FastCfC
        if isinstance(core, LTCCell):
            self.kernel = FastLTC(core, scale)
        elif isinstance(core, CfC):
            self.kernel = FastCfC(core, scale)
        else:
            raise ValueError(
                f"no fast step for architecture {arch!r}; supported: ncp_ltc, ltc_fc, cfc, ncp_cfc"
            )
        self._kernel_fn = _ltc_step if isinstance(self.kernel, FastLTC) else _cfc_step
        # Plain attributes: step() runs at the control rate and avoids property lookups.
        self._features_size = core.sensory_size
        self._layer_norm = policy.config.feature_norm == "layer"
        self._state_size = core.state_size
        self._step_s = policy.config.step_s
        self._elapsed = np.empty(1)
        self._last_state: Tensor | None = None
        self._last_ptr = 0
        self._last_s = np.empty((0, 0))

    @property
    def config(self) -> PolicyConfig:
        return self.policy.config

    @property
    def state_size(self) -> int:
        return self.policy.state_size

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.policy.config.output_names

    def eval(self) -> FastStepModel:
        self.policy.eval()
        return self

    def refresh(self) -> None:
        """Re-read the policy's weights."""
        self.kernel.refresh()

    def initial_state(self, batch: int = 1) -> Tensor:
        """Zero state ``(batch, S)`` float64."""
        return torch.zeros(batch, self.state_size, dtype=torch.float64)

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images in [0, 1] -> ``(B, F)`` (torch head)."""
        return self.policy.features(images)

    def step(
        self, features: Tensor, state: Tensor, elapsed_s: float | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Same as :meth:`Policy.step` (CPU tensors; no autograd).

        float32 and float64 features go in as they are (one compiled variant each); other real
        dtypes (integer, bool, float16, bfloat16) are cast to float64, as is the state; strided
        tensors are copied contiguous.

        Raises:
            ValueError: wrong features/state shapes or a non-positive elapsed time.
            TypeError: complex or quantized features or state.
        """
        shape = features.shape
        if len(shape) != 2 or shape[1] != self._features_size:
            raise ValueError(f"features must be (B, {self._features_size}), got {tuple(shape)}")
        if features.dtype != torch.float32 and features.dtype != torch.float64:
            features = as_compute_dtype(features, torch.float64, "features")
        u = (features.detach() if features.requires_grad else features).numpy()  # CPU tensors
        if u.dtype != np.float32:
            u = np.ascontiguousarray(u, dtype=np.float64)
        elif not u.flags.c_contiguous:
            u = np.ascontiguousarray(u)
        if self._layer_norm:  # Policy.step's feature_norm, in the features' dtype
            mean = u.mean(axis=1, keepdims=True)
            u = (u - mean) / np.sqrt(((u - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
        batch = u.shape[0]
        # The runtime passes back the state this method returned: its array (the same memory)
        # is reused, saving the conversion on most calls.
        last = self._last_state
        if state is last and state.data_ptr() == self._last_ptr:
            s = self._last_s
        else:
            state = as_compute_dtype(state, torch.float64, "state")
            s = np.ascontiguousarray(state.detach().numpy())
        if s.ndim != 2 or s.shape[0] != batch or s.shape[1] != self._state_size:
            raise ValueError(f"state must be ({batch}, {self._state_size}), got {s.shape}")
        e = self._elapsed
        if elapsed_s is None:
            e[0] = self._step_s
        elif isinstance(elapsed_s, Tensor):
            e = elapsed_s.detach().cpu().double().numpy().reshape(-1)
            if e.shape[0] not in (1, batch):
                raise ValueError(f"elapsed must be a scalar, (B,) or (B, 1) with B={batch}")
        else:
            seconds = float(elapsed_s)
            if not (seconds > 0.0 and math.isfinite(seconds)):
                raise ValueError(
                    f"elapsed must be a positive finite time in seconds, got {elapsed_s}"
                )
            e[0] = seconds
        kernel = self.kernel
        y, v = self._kernel_fn(u, s, e, kernel._ip, kernel._fp)
        new_state = torch.from_numpy(v)
        self._last_state, self._last_ptr, self._last_s = new_state, new_state.data_ptr(), v
        return torch.from_numpy(y), new_state


def numba_step_model(policy: Policy, device: torch.device) -> FastStepModel:
    """``factory(policy, device)`` of the runtime's ``"numba"`` backend (CPU only; named in
    ``ltc_controller.runtime.backend.BACKENDS``, extra ``numba``).

    Raises:
        ValueError: a device other than the CPU, or an architecture without a fast step.
    """
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend 'numba' runs on the CPU, not {device}")
    return FastStepModel(policy).eval()
