"""Policy files: one ``.safetensors`` file, weights plus the JSON config in its metadata.

Format (version 2): a standard safetensors file whose header metadata holds

* ``"format"``: ``"ltc_controller.policy"``;
* ``"format_version"``: ``"2"``;
* ``"config"``: :meth:`PolicyConfig.to_json` text (every field present);

and one float32 tensor per entry of ``Policy.state_dict()`` (``head.*`` and the core's, e.g.
``ltc.*``, an ncps ``LTCCell`` state_dict, masks included; ``cfc.*``, an ncps ``CfC`` state_dict).
Optional: the out-of-distribution monitor's statistics (``Policy.feature_stats``,
:class:`~ltc_controller.models.ood.FeatureStats`) as tensors ``ood.mean`` ``(F,)`` and
``ood.precision`` ``(F, F)`` (float64) plus metadata ``"ood"`` (JSON: window, thresholds,
calibration); a file without them loads with ``feature_stats = None``. Likewise the attention
monitor's calibration (``Policy.attention_stats``, :class:`~ltc_controller.models.ood.
AttentionStats`) as metadata ``"attention"`` (JSON; no tensors); without it
``attention_stats = None``.
Version 1 files (NCP-LTC only, before ``units``, ``core_options`` and ``head`` existed) still load:
those keys take their defaults. A single file keeps weights and config from drifting
apart. Loading parses the header itself (8-byte little-endian length + JSON) and the tensors with
``safetensors`` only: no pickle, no ``torch.load``, no code from the file is ever run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from .heads import head_feature_dim
from .policy import Policy, PolicyConfig

__all__ = [
    "BUNDLED_POLICY",
    "FORMAT",
    "FORMAT_VERSION",
    "PolicyFileError",
    "load_policy",
    "save_policy",
]

FORMAT = "ltc_controller.policy"
FORMAT_VERSION = "2"
# Config keys added in version 2, and what a version 1 file means by their absence.
_V1_DEFAULTS: dict[str, Any] = {"units": None, "core_options": {}, "head": "ncp_conv"}
_MAX_HEADER = 100 * 1024 * 1024
_OOD_MEAN, _OOD_PRECISION = "ood.mean", "ood.precision"
#: The NCP-19 lane-keeping policy shipped with the package (``policies/README.md`` says how it
#: was trained and what it scored); the policy node runs it when no file is given.
BUNDLED_POLICY = (
    Path(__file__).resolve().parent.parent / "policies" / "ncp19_lane_keeping.safetensors"
)


class PolicyFileError(Exception):
    """A policy file that cannot be read or does not match its config; the message names the
    file and the field (e.g. ``"policy.safetensors: tensor 'ltc.w' has shape (20, 20); config
    says units=19 ..."``)."""


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Write ``policy`` to ``path`` (a ``.safetensors`` file) atomically.

    The file is written next to ``path`` and renamed over it, so an existing file is never left
    half-written.

    Returns:
        The path written.

    Raises:
        PolicyFileError: a weight is not finite (nothing is written).
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in policy.state_dict().items():
        tensor = value.detach().to("cpu", torch.float32).contiguous()
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise PolicyFileError(
                f"{path}: refusing to save, tensor '{name}' has {bad} non-finite values"
            )
        tensors[name] = tensor.clone()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": policy.config.to_json(),
    }
    stats = getattr(policy, "feature_stats", None)
    if stats is not None:
        tensors[_OOD_MEAN] = torch.from_numpy(stats.mean.astype("float64"))
        tensors[_OOD_PRECISION] = torch.from_numpy(stats.precision.astype("float64"))
        metadata["ood"] = json.dumps(stats.to_metadata())
    attention = getattr(policy, "attention_stats", None)
    if attention is not None:
        metadata["attention"] = json.dumps(attention.to_metadata())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        # mkstemp creates 0600; a policy file is shared like any other file (umask decides).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _header(path: Path, data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise PolicyFileError(
            f"{path}: truncated or not a safetensors file ({len(data)} bytes; a safetensors file "
            "starts with an 8-byte header length)"
        )
    size = int.from_bytes(data[:8], "little")
    if size > _MAX_HEADER:
        raise PolicyFileError(
            f"{path}: not a safetensors file (header length {size} is implausible)"
        )
    if 8 + size > len(data):
        raise PolicyFileError(
            f"{path}: truncated: the header needs {8 + size} bytes, the file has {len(data)}"
        )
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFileError(
            f"{path}: not a safetensors file (header is not JSON: {exc})"
        ) from exc
    if not isinstance(header, dict):
        raise PolicyFileError(f"{path}: not a safetensors file (header is not a JSON object)")
    body = len(data) - 8 - size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise PolicyFileError(
                f"{path}: not a safetensors file (tensor '{name}' has no data_offsets)"
            )
        if offsets[1] > body:
            raise PolicyFileError(
                f"{path}: truncated: tensor '{name}' ends at byte {offsets[1]} of the data "
                f"section, which has {body} bytes"
            )
    return header


def _config_from_metadata(path: Path, metadata: Any) -> PolicyConfig:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise PolicyFileError(
            f"{path}: not a policy file: metadata field 'format' must be {FORMAT!r}, got "
            f"{metadata.get('format') if isinstance(metadata, dict) else None!r}"
        )
    version = metadata.get("format_version")
    if version not in ("1", FORMAT_VERSION):
        raise PolicyFileError(
            f"{path}: metadata field 'format_version' is {version!r}; this reader supports "
            f"'1' and {FORMAT_VERSION!r}"
        )
    text = metadata.get("config")
    if not isinstance(text, str):
        raise PolicyFileError(f"{path}: metadata field 'config' is missing")
    try:
        data = json.loads(text)
        if version == "1" and isinstance(data, dict):
            extra = sorted(set(_V1_DEFAULTS) & set(data))
            if extra:
                raise PolicyFileError(f"{path}: config key(s) {extra} are not part of format 1")
            data = {**data, **_V1_DEFAULTS}
        if not isinstance(data, dict):
            raise ValueError("config JSON must be an object")
        return PolicyConfig.from_dict(data, strict=True)
    except json.JSONDecodeError as exc:
        raise PolicyFileError(f"{path}: metadata field 'config' is not valid JSON: {exc}") from exc
    except ValueError as exc:
        raise PolicyFileError(f"{path}: config: {exc}") from exc


def _shape_reason(config: PolicyConfig, name: str) -> str:
    if name.startswith("head."):
        return f"config says {config.head} head, image {config.image_height}x{config.image_width}"
    if config.wiring is not None:
        wiring = config.build_wiring()
        return (
            f"config says units={wiring.units}, input_dim={wiring.input_dim}, "
            f"motor={wiring.output_dim} ({config.architecture})"
        )
    return (
        f"config says units={config.units}, input_dim={config.feature_dim}, "
        f"outputs={len(config.output_names)} ({config.architecture})"
    )


def load_policy(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Policy:
    """Read a policy file written by :func:`save_policy`; returns the policy in eval mode.

    Never executes code from the file (safetensors + JSON only).

    Raises:
        PolicyFileError: missing file, truncated file, not a safetensors file, not a policy file,
            unsupported format version, missing/unknown/invalid config keys, missing or extra
            tensors, a shape that disagrees with the config, a non-float or non-finite tensor,
            or sparsity masks that disagree with the config's wiring. Every architecture of
            :data:`~ltc_controller.models.policy.ARCHITECTURES` round-trips.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise PolicyFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    header = _header(path, data)
    config = _config_from_metadata(path, header.get("__metadata__"))
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise PolicyFileError(f"{path}: not a valid safetensors file: {exc}") from exc

    stats = _feature_stats(path, header.get("__metadata__"), tensors)
    with torch.random.fork_rng(devices=[]):
        policy = Policy(config)
    if stats is not None and stats.features != head_feature_dim(config.head):
        raise PolicyFileError(
            f"{path}: out-of-distribution statistics have {stats.features} features; the "
            f"{config.head} head gives {head_feature_dim(config.head)}"
        )
    policy.feature_stats = stats
    policy.attention_stats = _attention_stats(path, header.get("__metadata__"))
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise PolicyFileError(f"{path}: missing tensor(s) {missing} required by the config")
    if extra:
        raise PolicyFileError(f"{path}: unexpected tensor(s) {extra} not in the config's model")
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise PolicyFileError(
                f"{path}: tensor '{name}' has shape {tuple(got.shape)}; "
                f"{_shape_reason(config, name)} (expected {tuple(want.shape)})"
            )
        if not got.is_floating_point():
            raise PolicyFileError(f"{path}: tensor '{name}' has dtype {got.dtype}; expected float")
        bad = int((~torch.isfinite(got)).sum())
        if bad:
            raise PolicyFileError(f"{path}: tensor '{name}' has {bad} non-finite values")
    for name in expected:
        if not name.endswith("sparsity_mask"):
            continue
        if not torch.equal(tensors[name].to(torch.float32), expected[name].to(torch.float32)):
            wiring = config.wiring or {}
            seed = wiring.get("seed", wiring.get("random_seed", wiring.get("erev_init_seed")))
            raise PolicyFileError(
                f"{path}: tensor '{name}' disagrees with the wiring in the config "
                f"({wiring.get('type')}, seed={seed})"
            )
    policy.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
    return policy.to(device).eval()


def _feature_stats(path: Path, metadata: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Pop the monitor's tensors from ``tensors`` and build its FeatureStats (or None)."""
    from ltc_controller.models.ood import FeatureStats

    mean, precision = tensors.pop(_OOD_MEAN, None), tensors.pop(_OOD_PRECISION, None)
    text = metadata.get("ood") if isinstance(metadata, dict) else None
    if mean is None and precision is None and text is None:
        return None
    if mean is None or precision is None or text is None:
        raise PolicyFileError(
            f"{path}: incomplete out-of-distribution statistics (need tensors {_OOD_MEAN}, "
            f"{_OOD_PRECISION} and metadata 'ood')"
        )
    try:
        return FeatureStats.from_parts(mean.numpy(), precision.numpy(), json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyFileError(f"{path}: invalid out-of-distribution statistics: {exc}") from exc


def _attention_stats(path: Path, metadata: Any) -> Any:
    """The attention monitor's AttentionStats from the metadata (or None)."""
    from ltc_controller.models.ood import AttentionStats

    text = metadata.get("attention") if isinstance(metadata, dict) else None
    if text is None:
        return None
    try:
        return AttentionStats.from_metadata(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyFileError(f"{path}: invalid attention monitor calibration: {exc}") from exc
