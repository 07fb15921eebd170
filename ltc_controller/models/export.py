"""Export a policy's control step to TorchScript and ONNX; run it with ONNX Runtime.

Three graphs, each a plain function of tensors (batch dimension B dynamic in ONNX):

* ``"step"``: ``(features (B, F), state (B, S), elapsed (B, 1) seconds) -> (outputs (B, M),
  new_state (B, S))``, outputs already multiplied by ``config.output_scale``;
* ``"head"``: ``images (B, 3, H, W) float [0, 1] -> features (B, F)`` (normalisation inside);
* ``"image_step"``: ``(images, state, elapsed) -> (outputs, new_state, features)``;
* ``"head_maps"``: ``images -> (features (B, F), channel_mean_0 (B, H_0, W_0), ...)``: the head
  and, per conv layer, the channel mean of its activations (after ReLU), which is what
  VisualBackProp needs (Bojarski et al. 2018, Alg. 1), so the attention monitor gets features and
  saliency from one ONNX pass (heads with ``features_and_maps`` only).

The LTC step is exported fused: the effective weights (softplus applied in implicit mode, only
the wiring's synapses gathered) are computed once at export and stored as constants, and the
``ode_unfolds`` loop is unrolled (Lechner et al. 2020, Eq. 3; see ``ltc.py``). Other cores export
their :meth:`~ltc_controller.models.cores.Core.advance` / ``readout`` as they are. Discrete-time
cores (LSTM, GRU) do not read ``elapsed``; the ONNX exporter then drops that input, and
:class:`OnnxStepModel` feeds only the inputs a graph has.

ONNX files carry the policy config in their metadata (``ltc_controller.config``, JSON), so an
exported pair is self-describing: :class:`OnnxStepModel` offers ``features``, ``step``,
``initial_state``, ``config``, ``state_size`` and ``eval`` like :class:`Policy` (the runtime's
``StepModel`` protocol). ONNX export uses torch's TorchScript-based exporter (``dynamo=False``),
which needs no extra package; ONNX Runtime (``onnxruntime``) and ``onnx`` are needed to run and
inspect the files.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from .cores import as_compute_dtype
from .heads import normalize_features
from .ltc import LTCCell
from .policy import Policy, PolicyConfig

__all__ = [
    "GRAPHS",
    "HeadGraph",
    "HeadMapsGraph",
    "ImageStepGraph",
    "OnnxStepModel",
    "StepGraph",
    "export_onnx",
    "export_onnx_pair",
    "export_torchscript",
]

GRAPHS = ("step", "head", "image_step", "head_maps")
CONFIG_KEY = "ltc_controller.config"
GRAPH_KEY = "ltc_controller.graph"
STATE_SIZE_KEY = "ltc_controller.state_size"
OPSET = 17


class StepGraph(nn.Module):
    """Export form of :meth:`Policy.step`: ``(features, state, elapsed (B, 1)) -> (outputs,
    new_state)``. Built from a policy in eval mode; LTC effective weights are frozen buffers
    (rebuild after changing the policy's weights)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy.eval()
        self.core = policy.core
        self._eff_names: list[str] = []
        self._eff_layout: Any = None
        if isinstance(self.core, LTCCell):
            with torch.no_grad():
                eff = self.core._compute_effective()
            flat, layout = [], []
            for block in (eff.sensory, eff.recurrent):
                fields = []
                for name in ("src", "sigma", "neg_sigma_mu", "matrix"):
                    value = getattr(block, name)
                    if value is not None:
                        flat.append(value.detach().clone())
                    fields.append(value is not None)
                layout.append(fields)
            flat += [eff.leak_bias.detach().clone(), eff.cm.detach().clone()]
            for i, value in enumerate(flat):
                self.register_buffer(f"eff_{i}", value)
                self._eff_names.append(f"eff_{i}")
            self._eff_layout = layout

    def _effective(self) -> Any:
        from .ltc import _Effective, _Synapses

        values = [getattr(self, name) for name in self._eff_names]
        blocks = []
        for fields in self._eff_layout:
            parts = [values.pop(0) if present else None for present in fields]
            blocks.append(_Synapses(parts[0], *cast(list[Tensor], parts[1:])))
        return _Effective(blocks[0], blocks[1], values[0], values[1])

    def forward(self, features: Tensor, state: Tensor, elapsed: Tensor) -> tuple[Tensor, Tensor]:
        core = self.core
        features = normalize_features(features, self.policy.config.feature_norm)
        if isinstance(core, LTCCell):
            eff = self._effective()
            cm_t = eff.cm / (elapsed / core.ode_unfolds)
            new_state = core.fused_step(features, state, cm_t, eff)
        else:
            new_state = core.advance(features, state, elapsed, core.prepare())
        outputs = core.readout(new_state, features) * self.policy.output_scale
        return outputs, new_state


class HeadGraph(nn.Module):
    """Export form of :meth:`Policy.features`: ``images (B, 3, H, W) -> features (B, F)``."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.head = policy.eval().head

    def forward(self, images: Tensor) -> Tensor:
        features: Tensor = self.head(images)
        return features


class HeadMapsGraph(nn.Module):
    """Export form of the head's ``features_and_maps``: ``images (B, 3, H, W) -> (features
    (B, F), channel_mean_l (B, H_l, W_l) for each conv layer l, shallow to deep)``."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.head = policy.eval().head

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features, maps = self.head.features_and_maps(images)
        return (features, *(m.mean(dim=1) for m in maps))


def has_maps(policy: Policy) -> bool:
    """Whether ``policy``'s head can export the ``"head_maps"`` graph."""
    return callable(getattr(policy.head, "features_and_maps", None))


class ImageStepGraph(nn.Module):
    """``(images, state, elapsed) -> (outputs, new_state, features)``: head and step in one."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.head = HeadGraph(policy)
        self.step = StepGraph(policy)

    def forward(
        self, images: Tensor, state: Tensor, elapsed: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        features = self.head(images)
        outputs, new_state = self.step(features, state, elapsed)
        return outputs, new_state, features


def _graph(
    policy: Policy, graph: str
) -> tuple[nn.Module, tuple[Tensor, ...], list[str], list[str]]:
    """Module, example inputs, input names and output names of one graph.

    The module is in eval mode: the exporters put a module back into its own mode afterwards,
    recursively, so a wrapper left in train mode would switch the policy's dropout on."""
    module, example, inputs, outputs = _graph_parts(policy, graph)
    return module.eval(), example, inputs, outputs


def _graph_parts(
    policy: Policy, graph: str
) -> tuple[nn.Module, tuple[Tensor, ...], list[str], list[str]]:
    cfg = policy.config
    ref = policy.output_scale
    features = torch.zeros(1, cfg.feature_dim, dtype=ref.dtype)
    state = torch.zeros(1, policy.state_size, dtype=ref.dtype)
    elapsed = torch.full((1, 1), cfg.step_s, dtype=ref.dtype)
    images = torch.rand(1, 3, cfg.image_height, cfg.image_width, dtype=ref.dtype)
    if graph == "step":
        return (
            StepGraph(policy),
            (features, state, elapsed),
            ["features", "state", "elapsed"],
            [
                "outputs",
                "new_state",
            ],
        )
    if graph == "head":
        return HeadGraph(policy), (images,), ["images"], ["features"]
    if graph == "head_maps":
        if not has_maps(policy):
            raise ValueError(f"{type(policy.head).__name__} has no conv activations to export")
        with torch.no_grad():
            layers = len(policy.head.features_and_maps(images)[1])
        means = [f"channel_mean_{i}" for i in range(layers)]
        return HeadMapsGraph(policy), (images,), ["images"], ["features", *means]
    if graph == "image_step":
        return (
            ImageStepGraph(policy),
            (images, state, elapsed),
            ["images", "state", "elapsed"],
            [
                "outputs",
                "new_state",
                "features",
            ],
        )
    raise ValueError(f"unknown graph {graph!r}; known: {GRAPHS}")


def export_torchscript(
    policy: Policy, path: str | os.PathLike[str], graph: str = "step"
) -> torch.jit.ScriptModule:
    """Trace one graph (see the module docstring) to TorchScript and save it to ``path``.

    The ODE loop is unrolled by tracing; the trace is for the traced batch size's shapes only
    where a core indexes by size (use batch 1, the runtime's). Returns the traced module.

    Raises:
        ValueError: unknown graph.
    """
    module, example, _, _ = _graph(policy, graph)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation notes about torch.jit
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path))
    result: torch.jit.ScriptModule = traced
    return result


def export_onnx(
    policy: Policy, path: str | os.PathLike[str] | None = None, graph: str = "step"
) -> bytes:
    """Export one graph to ONNX (opset 17, dynamic batch) with the config in its metadata.

    Args:
        policy: the policy (put in eval mode).
        path: file to write, or None to only return the bytes.
        graph: ``"step"``, ``"head"``, ``"image_step"`` or ``"head_maps"``.

    Returns:
        The serialized ONNX model.

    Raises:
        ValueError: unknown graph; ``"head_maps"`` of a head without conv layers.
        ImportError: ``onnx`` is not installed.
    """
    import onnx

    module, example, inputs, outputs = _graph(policy, graph)
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory() as tmp,
    ):
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "graph.onnx"
        torch.onnx.export(
            module,
            example,
            raw,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(str(raw))
    meta = {
        CONFIG_KEY: policy.config.to_json(),
        GRAPH_KEY: graph,
        STATE_SIZE_KEY: str(policy.state_size),
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = model.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def export_onnx_pair(policy: Policy, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``head.onnx`` and ``step.onnx`` into ``directory`` (for :class:`OnnxStepModel`),
    and ``head_maps.onnx`` when the head has conv activations (for the attention monitor)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    head, step = out / "head.onnx", out / "step.onnx"
    export_onnx(policy, head, "head")
    export_onnx(policy, step, "step")
    if has_maps(policy):
        export_onnx(policy, out / "head_maps.onnx", "head_maps")
    return head, step


def _session(model: str | os.PathLike[str] | bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxStepModel:
    """A policy run by ONNX Runtime: ``features`` on the head graph, ``step`` on the step graph.

    Same methods as :class:`Policy` for the runtime (``features``, ``step``, ``initial_state``,
    ``config``, ``state_size``, ``output_names``, ``eval``); CPU tensors in and out, float32.

    Args:
        step: ``step.onnx`` path or bytes from :func:`export_onnx`.
        head: ``head.onnx`` path or bytes, or None (then :meth:`features` raises).
        threads: ONNX Runtime intra-op threads (1 suits batch-1 control).
        head_maps: ``head_maps.onnx`` path or bytes, or None (then
            :meth:`features_and_channel_means` raises and ``has_channel_means`` is false).

    Raises:
        ValueError: a file that is not a ltc_controller step/head graph (no config metadata).
    """

    def __init__(
        self,
        step: str | os.PathLike[str] | bytes,
        head: str | os.PathLike[str] | bytes | None = None,
        threads: int = 1,
        head_maps: str | os.PathLike[str] | bytes | None = None,
    ) -> None:
        self._step = _session(step, threads)
        meta = self._step.get_modelmeta().custom_metadata_map
        if meta.get(GRAPH_KEY) != "step" or CONFIG_KEY not in meta:
            raise ValueError(f"{_name(step)}: not a ltc_controller step graph (no config metadata)")
        self.config = PolicyConfig.from_json(meta[CONFIG_KEY], strict=True)
        self.state_size = int(meta[STATE_SIZE_KEY])
        self._inputs = {i.name for i in self._step.get_inputs()}
        self._head = self._companion(head, "head", meta[CONFIG_KEY], threads)
        self._maps = self._companion(head_maps, "head_maps", meta[CONFIG_KEY], threads)
        self._maps_names = [o.name for o in self._maps.get_outputs()] if self._maps else []

    @staticmethod
    def _companion(
        source: str | os.PathLike[str] | bytes | None, graph: str, config: str, threads: int
    ) -> Any:
        """The session of a head graph beside the step graph (None: not given).

        Raises:
            ValueError: not a ``graph`` graph, or made from another policy config.
        """
        if source is None:
            return None
        session = _session(source, threads)
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get(GRAPH_KEY) != graph:
            raise ValueError(f"{_name(source)}: not a ltc_controller {graph} graph")
        if meta.get(CONFIG_KEY) != config:
            raise ValueError(f"{graph} and step graphs come from different policy configs")
        return session

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str], threads: int = 1) -> OnnxStepModel:
        """Load ``head.onnx`` and ``step.onnx`` written by :func:`export_onnx_pair`, and
        ``head_maps.onnx`` when the directory has it."""
        d = Path(directory)
        maps = d / "head_maps.onnx"
        return cls(d / "step.onnx", d / "head.onnx", threads, maps if maps.is_file() else None)

    @classmethod
    def from_policy(cls, policy: Policy, threads: int = 1) -> OnnxStepModel:
        """Export ``policy`` in memory and load it (with the ``"head_maps"`` graph when its head
        has conv activations)."""
        maps = export_onnx(policy, None, "head_maps") if has_maps(policy) else None
        step, head = export_onnx(policy, None, "step"), export_onnx(policy, None, "head")
        return cls(step, head, threads, maps)

    @property
    def has_channel_means(self) -> bool:
        """Whether :meth:`features_and_channel_means` is available (a head_maps graph)."""
        return self._maps is not None

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.config.output_names

    def eval(self) -> OnnxStepModel:
        return self

    def initial_state(self, batch: int = 1) -> Tensor:
        """Zero state ``(batch, S)`` float32."""
        return torch.zeros(batch, self.state_size)

    def features(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images in [0, 1] -> ``(B, F)``.

        Dtypes as :meth:`Policy.features`: float16/bfloat16/float64 images are cast to the
        graph's float32; integer and bool images raise (their values are not in [0, 1]).

        Raises:
            RuntimeError: no head graph was loaded.
            TypeError: integer, bool or complex images.
        """
        if self._head is None:
            raise RuntimeError("OnnxStepModel was loaded without a head graph")
        if not images.is_floating_point():
            raise TypeError(
                f"images have dtype {images.dtype}; expected floating-point images in [0, 1] "
                "(float32; float16, bfloat16 and float64 are cast). Scale integer images "
                "first, e.g. images.float() / 255"
            )
        x = _np32(images, "images")
        (features,) = self._head.run(["features"], {"images": x})
        return torch.from_numpy(features)

    def features_and_channel_means(
        self, images: Tensor
    ) -> tuple[Tensor, list[npt.NDArray[np.float32]]]:
        """One pass of the head_maps graph: the features ``(B, F)`` (as :meth:`features`) and,
        per conv layer shallow to deep, the channel mean of its activations ``(B, H_l, W_l)``
        (float32), for the attention monitor's VisualBackProp.

        Raises:
            RuntimeError: no head_maps graph was loaded.
            TypeError: as :meth:`features`.
        """
        if self._maps is None:
            raise RuntimeError("OnnxStepModel was loaded without a head_maps graph")
        if not images.is_floating_point():
            raise TypeError(f"images have dtype {images.dtype}; expected floating-point images")
        features, *means = self._maps.run(self._maps_names, {"images": _np32(images, "images")})
        return torch.from_numpy(features), means

    def step(
        self, features: Tensor, state: Tensor, elapsed_s: float | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Same as :meth:`Policy.step`; features and state of another real dtype are cast to
        the graph's float32 (integers as ncps computes them); strided tensors are copied.

        Raises:
            ValueError: a non-positive elapsed time or a wrong elapsed shape.
            TypeError: complex or quantized features, state or elapsed.
        """
        batch = features.shape[0]
        elapsed: float | Tensor = self.config.step_s if elapsed_s is None else elapsed_s
        if isinstance(elapsed, Tensor):
            e = _np32(elapsed, "elapsed").reshape(-1, 1)
            if e.shape[0] == 1 and batch > 1:
                e = np.repeat(e, batch, axis=0)
            if e.shape[0] != batch:
                raise ValueError(f"elapsed must be a scalar, (B,) or (B, 1) with B={batch}")
        else:
            if not float(elapsed) > 0.0:
                raise ValueError(f"elapsed must be a positive time in seconds, got {elapsed}")
            e = np.full((batch, 1), float(elapsed), dtype=np.float32)
        feeds = {
            "features": _np32(features, "features"),
            "state": _np32(state, "state"),
            "elapsed": e,
        }
        outputs, new_state = self._step.run(
            ["outputs", "new_state"], {k: v for k, v in feeds.items() if k in self._inputs}
        )
        return torch.from_numpy(outputs), torch.from_numpy(new_state)


def _np32(t: Tensor, name: str) -> npt.NDArray[np.float32]:
    """``t`` as a C-contiguous float32 array (cast with :func:`.cores.as_compute_dtype`;
    bfloat16 has no NumPy dtype, so the cast happens in torch)."""
    t = as_compute_dtype(t.detach(), torch.float32, name)
    array: npt.NDArray[np.float32] = np.ascontiguousarray(t.cpu().numpy())
    return array


def _name(source: str | os.PathLike[str] | bytes) -> str:
    return "<bytes>" if isinstance(source, bytes) else str(source)


def graph_inputs(model: bytes | str | os.PathLike[str]) -> Sequence[str]:
    """Input names of an ONNX graph (for inspection and tests)."""
    return [i.name for i in _session(model, 1).get_inputs()]


def read_config(model: bytes | str | os.PathLike[str]) -> dict[str, Any]:
    """The policy config stored in an exported ONNX file, as a dict."""
    meta = _session(model, 1).get_modelmeta().custom_metadata_map
    result: dict[str, Any] = json.loads(meta[CONFIG_KEY])
    return result
