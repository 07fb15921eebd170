"""From a ``sensor_msgs/Image`` to the policy's input tensor, as the policy file describes.

Decode (encoding, row padding) → crop → resize → colour order → float32 in [0, 1], CHW.
The network's own normalisation (per-image standardisation) lives in the conv head.
Anything this cannot read is a :class:`FrameRejected` with a reason; the caller counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage

#: encoding -> (channels, byte order of the channels as RGB indices, or None for mono)
_ENCODINGS: dict[str, tuple[int, tuple[int, ...] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
    "8uc1": (1, None),
    "8uc3": (3, (2, 1, 0)),  # OpenCV's default channel order is BGR
}


class FrameRejected(ValueError):
    """A frame that cannot be used. ``reason`` is a short code for counters and status."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class PreprocessConfig:
    """Crop (pixels removed from each side of the source image), then resize to
    ``height × width``; ``color_order`` is the channel order the network was trained on."""

    height: int = 78
    width: int = 200
    crop_top: int = 0
    crop_bottom: int = 0
    crop_left: int = 0
    crop_right: int = 0
    color_order: str = "rgb"


def decode_image(
    encoding: str, height: int, width: int, step: int, data: bytes | bytearray | memoryview
) -> NDArray[np.uint8]:
    """Decode the fields of a ``sensor_msgs/Image`` into an ``(height, width, 3)`` RGB uint8 view.

    Rows may be padded (``step`` > ``width`` × bytes per pixel).

    Raises:
        FrameRejected: unsupported encoding (``"encoding"``), inconsistent size (``"size"``).
    """
    spec = _ENCODINGS.get(encoding.lower())
    if spec is None:
        raise FrameRejected("encoding", f"unsupported encoding {encoding!r}")
    channels, order = spec
    if height <= 0 or width <= 0:
        raise FrameRejected("size", f"empty image {width}x{height}")
    row = width * channels
    if step < row:
        raise FrameRejected("size", f"step {step} < width*channels {row}")
    if len(data) < step * (height - 1) + row:
        raise FrameRejected("size", f"data has {len(data)} bytes, {step}x{height} expected")
    buf = np.frombuffer(data, dtype=np.uint8, count=step * (height - 1) + row)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    pix = rows.reshape(height, width, channels)
    if order is None:
        return np.repeat(pix, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return pix
    return pix[:, :, list(order)]


class Preprocessor:
    """Turns decoded frames into the network input, reusing one output buffer.

    ``__call__`` returns a ``(3, height, width)`` float32 array in [0, 1] that is overwritten by
    the next call (copy it if you keep it).
    """

    def __init__(self, cfg: PreprocessConfig) -> None:
        if cfg.color_order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {cfg.color_order!r}")
        self.cfg = cfg
        self._out = np.empty((3, cfg.height, cfg.width), dtype=np.float32)

    def __call__(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        c = self.cfg
        h, w = rgb.shape[:2]
        bottom, right = h - c.crop_bottom, w - c.crop_right
        if c.crop_top >= bottom or c.crop_left >= right:
            raise FrameRejected("size", f"crop leaves nothing of a {w}x{h} image")
        img = rgb[c.crop_top : bottom, c.crop_left : right]
        if img.shape[0] != c.height or img.shape[1] != c.width:
            img = np.asarray(
                PILImage.fromarray(np.ascontiguousarray(img)).resize(
                    (c.width, c.height), PILImage.Resampling.BILINEAR
                )
            )
        if c.color_order == "bgr":
            img = img[:, :, ::-1]
        np.multiply(img.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=self._out)
        return self._out
