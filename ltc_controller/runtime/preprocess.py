"""From a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` to the policy's input tensor.

Decode (encoding, byte order, row padding, compression) → crop → resize → colour order → float32
in [0, 1], ``(3, height, width)``, as the policy file describes (``PolicyConfig.crop``,
``image_height``/``image_width``, ``color_order``). The network's own normalisation (per-image
standardisation) lives in the conv head.

Encodings (names as in ROS 2 ``sensor_msgs/image_encodings.hpp``, case-insensitive):

=====================================  ============================================================
``rgb8`` ``bgr8`` ``rgba8`` ``bgra8``  8 bits per channel; alpha is dropped (not composited)
``rgb16`` ``bgr16`` ``rgba16``         16 bits per channel, byte order from ``is_bigendian``
``bgra16``
``mono8`` ``8UC1``                     grey, replicated to three channels
``mono16`` ``16UC1``                   16-bit grey, byte order from ``is_bigendian``
``8UC3`` ``8UC4``                      OpenCV's default channel order (BGR, BGRA)
``yuv422`` ``uyvy``                    packed 4:2:2, bytes U Y0 V Y1 per two pixels
``yuv422_yuy2`` ``yuyv``               packed 4:2:2, bytes Y0 U Y1 V per two pixels
``jpeg`` ``png``                       ``CompressedImage`` data, decoded with Pillow
=====================================  ============================================================

4:2:2 is converted with ITU-R BT.601 limited-range coefficients (Y in [16, 235], chroma centred
on 128; Y below 16 counts as black), the conversion cv_bridge/OpenCV apply to these encodings.
16-bit images are scaled by 1/65535 (8-bit by 1/255), so both end in [0, 1].

Rows may be padded (``step`` > width × bytes per pixel); a raw image is read in place (a strided
view of the message bytes, no copy) whenever no conversion is needed.

Anything this cannot read raises :class:`FrameRejected` with a short ``reason`` code, which the
runtime counts: ``encoding`` (unsupported encoding or compression format), ``size`` (dimensions,
``step`` or data length inconsistent, or too large), ``decode`` (corrupt compressed data),
``data`` (the data field is not a byte buffer).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage

__all__ = [
    "COMPRESSED_FORMATS",
    "ENCODINGS",
    "MAX_PIXELS",
    "FrameRejected",
    "PreprocessConfig",
    "Preprocessor",
    "RawFrame",
    "compressed_format",
    "decode_image",
    "frame_from_compressed",
    "frame_from_image",
]

#: Largest image accepted (pixels); a bigger one is rejected (``size``) before it is decoded.
MAX_PIXELS = 8192 * 8192


class FrameRejected(ValueError):
    """A frame that cannot be used. ``reason`` is a short code for counters and status."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class _Raw:
    channels: int
    itemsize: int  # bytes per channel
    rgb: tuple[int, int, int] | None  # source channel of R, G, B; None = grey


#: Raw (uncompressed) encodings: name (lower case) -> layout.
_RAW: dict[str, _Raw] = {
    "rgb8": _Raw(3, 1, (0, 1, 2)),
    "bgr8": _Raw(3, 1, (2, 1, 0)),
    "rgba8": _Raw(4, 1, (0, 1, 2)),
    "bgra8": _Raw(4, 1, (2, 1, 0)),
    "rgb16": _Raw(3, 2, (0, 1, 2)),
    "bgr16": _Raw(3, 2, (2, 1, 0)),
    "rgba16": _Raw(4, 2, (0, 1, 2)),
    "bgra16": _Raw(4, 2, (2, 1, 0)),
    "mono8": _Raw(1, 1, None),
    "mono16": _Raw(1, 2, None),
    "8uc1": _Raw(1, 1, None),
    "16uc1": _Raw(1, 2, None),
    "8uc3": _Raw(3, 1, (2, 1, 0)),
    "8uc4": _Raw(4, 1, (2, 1, 0)),
}
#: Packed 4:2:2 encodings -> byte offsets of (Y0, U, Y1, V) within a two-pixel macropixel.
_YUV422: dict[str, tuple[int, int, int, int]] = {
    "yuv422": (1, 0, 3, 2),
    "uyvy": (1, 0, 3, 2),
    "yuv422_yuy2": (0, 1, 2, 3),
    "yuyv": (0, 1, 2, 3),
}
#: ``RawFrame.encoding`` of compressed frames -> the Pillow format allowed to decode it.
_COMPRESSED: dict[str, str] = {"jpeg": "JPEG", "png": "PNG"}

ENCODINGS: tuple[str, ...] = tuple(_RAW) + tuple(_YUV422) + tuple(_COMPRESSED)
COMPRESSED_FORMATS: tuple[str, ...] = tuple(_COMPRESSED)

# ITU-R BT.601, limited range: Kr = 0.299, Kb = 0.114, luma scale 255/219, chroma scale 255/224,
# as fixed-point integers with 16 fractional bits.
_FIX = 16
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_CY = round(255.0 / 219.0 * (1 << _FIX))
_CVR = round(255.0 / 224.0 * 2.0 * (1.0 - _KR) * (1 << _FIX))
_CUB = round(255.0 / 224.0 * 2.0 * (1.0 - _KB) * (1 << _FIX))
_CUG = round(255.0 / 224.0 * 2.0 * (1.0 - _KB) * _KB / _KG * (1 << _FIX))
_CVG = round(255.0 / 224.0 * 2.0 * (1.0 - _KR) * _KR / _KG * (1 << _FIX))


@dataclass(frozen=True)
class RawFrame:
    """One camera frame as the runtime needs it (the fields of ``sensor_msgs/Image``).

    ``stamp`` is ``header.stamp`` in seconds (for arithmetic), ``stamp_ns`` the same in integer
    nanoseconds: it is carried unchanged into commands and is the time base of the integration
    (exact); when it is 0 and ``stamp`` is not, it is derived from ``stamp``. Compressed frames
    have ``encoding`` ``"jpeg"``/``"png"``, ``height = width = step = 0`` and the compressed bytes
    in ``data`` (see :func:`frame_from_compressed`).
    """

    stamp: float
    encoding: str
    height: int
    width: int
    step: int
    data: bytes | bytearray | memoryview
    stamp_ns: int = 0
    is_bigendian: bool = False

    def __post_init__(self) -> None:
        if self.stamp_ns == 0 and self.stamp != 0.0 and np.isfinite(self.stamp):
            object.__setattr__(self, "stamp_ns", round(self.stamp * 1e9))


def frame_from_image(
    stamp: float,
    stamp_ns: int,
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: bool | int = False,
) -> RawFrame:
    """A :class:`RawFrame` from the fields of a ``sensor_msgs/Image``.

    Never raises on bad content: a frame that cannot be decoded is rejected (and counted) when
    the runtime takes it. ``data`` that is a list of ints is turned into ``bytes`` here.
    """
    return RawFrame(
        stamp=float(stamp),
        stamp_ns=int(stamp_ns),
        encoding=str(encoding),
        height=int(height),
        width=int(width),
        step=int(step),
        data=_as_buffer(data),
        is_bigendian=bool(is_bigendian),
    )


def compressed_format(fmt: str) -> str:
    """``CompressedImage.format`` → ``"jpeg"``, ``"png"`` or ``""`` (not supported).

    The field reads e.g. ``"jpeg"``, ``"png"``, ``"rgb8; jpeg compressed bgr8"`` (image_transport:
    original encoding; codec and the order the encoder was fed, which the codec undoes on
    decoding) or ``"16UC1; compressedDepth png"`` (a depth codec with its own header: not
    supported).
    """
    text = fmt.lower()
    if "compresseddepth" in text:
        return ""
    codec = text.split(";", 1)[-1].split()
    for word in codec:
        if word in ("jpeg", "jpg"):
            return "jpeg"
        if word == "png":
            return "png"
    return ""


def frame_from_compressed(stamp: float, stamp_ns: int, format: str, data: Any) -> RawFrame:
    """A :class:`RawFrame` from the fields of a ``sensor_msgs/CompressedImage``.

    ``format`` is parsed with :func:`compressed_format`; an unsupported one gives a frame whose
    ``encoding`` is ``"compressed:<format>"``, rejected (``encoding``) when taken. Never raises.
    """
    codec = compressed_format(str(format))
    return RawFrame(
        stamp=float(stamp),
        stamp_ns=int(stamp_ns),
        encoding=codec or f"compressed:{format}",
        height=0,
        width=0,
        step=0,
        data=_as_buffer(data),
    )


def _as_buffer(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1).data
    try:
        return bytes(data)  # a list/array of ints (some transports deliver uint8[] so)
    except (TypeError, ValueError):
        return b""  # rejected as "size" when taken


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview,
    is_bigendian: bool = False,
) -> NDArray[Any]:
    """Decode an image into ``(H, W, 3)`` RGB, 8-bit or 16-bit unsigned.

    Args:
        encoding: one of :data:`ENCODINGS` (case-insensitive).
        height, width: pixels (ignored for ``jpeg``/``png``: taken from the stream).
        step: bytes per row, >= width × bytes per pixel (rows may be padded).
        data: the message bytes (not copied when no conversion is needed).
        is_bigendian: byte order of 16-bit data.

    Returns:
        ``(H, W, 3)`` array in R, G, B order: ``uint8``, or 16-bit unsigned in the data's byte
        order (``>u2``/``<u2``); grey images are a read-only broadcast view (stride 0 on the
        channel axis). Usually a view of ``data``: copy it to keep it.

    Raises:
        FrameRejected: ``encoding``, ``size``, ``decode`` or ``data`` (see the module docstring).
    """
    enc = encoding.lower()
    try:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")  # TypeError when not C-contiguous
    except TypeError as exc:
        raise FrameRejected("data", f"data is {type(data).__name__}, not a byte buffer") from exc
    codec = _COMPRESSED.get(enc)
    if codec is not None:
        return _decode_compressed(codec, mv)
    raw = _RAW.get(enc)
    yuv = _YUV422.get(enc)
    if raw is None and yuv is None:
        raise FrameRejected("encoding", f"unsupported encoding {encoding!r}")
    if height <= 0 or width <= 0 or height * width > MAX_PIXELS:
        raise FrameRejected("size", f"image {width}x{height} is empty or too large")
    pixel = raw.channels * raw.itemsize if raw is not None else 2
    row = width * pixel
    if step < row:
        raise FrameRejected("size", f"step {step} < width*bytes_per_pixel = {row}")
    need = step * (height - 1) + row
    if len(mv) < need:
        raise FrameRejected("size", f"data has {len(mv)} bytes, {step}x{height} expected")
    if raw is None:
        assert yuv is not None
        if width % 2:
            raise FrameRejected("size", f"4:2:2 needs an even width, got {width}")
        return _decode_yuv422(mv, height, width, step, yuv)
    if raw.itemsize == 1:
        buf = np.frombuffer(mv, dtype=np.uint8, count=need)
        pix = np.lib.stride_tricks.as_strided(
            buf, shape=(height, width, raw.channels), strides=(step, pixel, 1), writeable=False
        )
    else:
        pix = _strided16(mv, is_bigendian, height, width, step, raw.channels)
    if raw.rgb is None:
        return np.broadcast_to(pix, (height, width, 3))
    r, g, b = raw.rgb
    if (r, g, b) == (0, 1, 2):
        return pix[:, :, :3]
    if (r, g, b) == (2, 1, 0):
        return pix[:, :, 2::-1]
    return pix[:, :, [r, g, b]]


def _strided16(
    mv: memoryview, big: bool, height: int, width: int, step: int, channels: int
) -> NDArray[Any]:
    """16-bit pixels as ``(H, W, C)``: a view in the data's byte order (``>u2``/``<u2``), or a
    copy of the rows when an odd ``step`` leaves them off the 2-byte grid."""
    dtype = np.dtype(">u2" if big else "<u2")
    row = width * channels * 2
    if step % 2 == 0:
        words = np.frombuffer(mv, dtype=dtype, count=(step * (height - 1) + row) // 2)
        return np.lib.stride_tricks.as_strided(
            words,
            shape=(height, width, channels),
            strides=(step, 2 * channels, 2),
            writeable=False,
        )
    buf = np.frombuffer(mv, dtype=np.uint8, count=step * (height - 1) + row)
    rows = np.lib.stride_tricks.as_strided(
        buf, shape=(height, row), strides=(step, 1), writeable=False
    )
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)


def _decode_yuv422(
    mv: memoryview, height: int, width: int, step: int, offsets: tuple[int, int, int, int]
) -> NDArray[np.uint8]:
    buf = np.frombuffer(mv, dtype=np.uint8, count=step * (height - 1) + width * 2)
    macro = np.lib.stride_tricks.as_strided(
        buf, shape=(height, width // 2, 4), strides=(step, 4, 1), writeable=False
    )
    y0, u, y1, v = (macro[:, :, k].astype(np.int32) for k in offsets)
    y = np.empty((height, width), dtype=np.int32)
    y[:, 0::2] = y0
    y[:, 1::2] = y1
    np.maximum(y - 16, 0, out=y)
    y *= _CY
    y += 1 << (_FIX - 1)  # round half up on the final shift
    u -= 128
    v -= 128
    ruv = np.repeat(_CVR * v, 2, axis=1)
    guv = np.repeat(-_CUG * u - _CVG * v, 2, axis=1)
    buv = np.repeat(_CUB * u, 2, axis=1)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for ch, chroma in enumerate((ruv, guv, buv)):
        np.clip((y + chroma) >> _FIX, 0, 255, out=chroma)
        out[:, :, ch] = chroma
    return out


def _decode_compressed(codec: str, mv: memoryview) -> NDArray[Any]:
    try:
        with PILImage.open(io.BytesIO(mv), formats=(codec,)) as im:
            w, h = im.size
            if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
                raise FrameRejected("size", f"{codec} image {w}x{h} is empty or too large")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                grey = np.asarray(im)
                if grey.dtype != np.uint16:
                    grey = np.clip(grey, 0, 65535).astype(np.uint16)
                return np.broadcast_to(grey[:, :, None], (h, w, 3))
            if mode == "L":
                return np.broadcast_to(np.asarray(im)[:, :, None], (h, w, 3))
            rgb = im if mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb)
    except FrameRejected:
        raise
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        # UnidentifiedImageError is an OSError; truncated streams raise OSError or SyntaxError.
        raise FrameRejected("decode", f"{codec} data cannot be decoded: {exc}") from exc


@dataclass(frozen=True)
class PreprocessConfig:
    """Crop (pixels removed from each side of the source image), then resize to
    ``height × width`` (bilinear, Pillow); ``color_order`` is the channel order the network was
    trained on (``"rgb"`` or ``"bgr"``)."""

    height: int = 78
    width: int = 200
    crop_top: int = 0
    crop_bottom: int = 0
    crop_left: int = 0
    crop_right: int = 0
    color_order: str = "rgb"

    @classmethod
    def from_policy(cls, config: Any) -> PreprocessConfig:
        """From a ``models.policy.PolicyConfig`` (``image_height``, ``image_width``, ``crop``,
        ``color_order``)."""
        crop = config.crop
        return cls(
            height=int(config.image_height),
            width=int(config.image_width),
            crop_top=int(crop.top),
            crop_bottom=int(crop.bottom),
            crop_left=int(crop.left),
            crop_right=int(crop.right),
            color_order=str(config.color_order),
        )


class Preprocessor:
    """Turns decoded frames into the network input, reusing one output buffer.

    ``__call__`` takes :func:`decode_image` output and returns ``out``, a ``(3, height, width)``
    float32 array in [0, 1] in ``color_order``, overwritten by the next call (copy it to keep
    it). When the cropped image already has the policy size nothing is allocated.

    Raises:
        ValueError: (construction) a bad ``color_order`` or a non-positive size.
    """

    def __init__(self, cfg: PreprocessConfig) -> None:
        if cfg.color_order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {cfg.color_order!r}")
        if cfg.height <= 0 or cfg.width <= 0:
            raise ValueError(f"policy image size must be positive, got {cfg.width}x{cfg.height}")
        self.cfg = cfg
        self.out = np.empty((3, cfg.height, cfg.width), dtype=np.float32)
        self._scale8 = np.float32(1.0 / 255.0)
        self._scale16 = np.float32(1.0 / 65535.0)

    def __call__(self, rgb: NDArray[Any]) -> NDArray[np.float32]:
        """``(H, W, 3)`` RGB uint8/uint16 → ``(3, height, width)`` float32 (``self.out``).

        Raises:
            FrameRejected: ``size`` when the crop leaves nothing; ``encoding`` for another dtype.
        """
        c = self.cfg
        h, w = rgb.shape[:2]
        bottom, right = h - c.crop_bottom, w - c.crop_right
        if c.crop_top >= bottom or c.crop_left >= right:
            raise FrameRejected("size", f"crop leaves nothing of a {w}x{h} image")
        img = rgb[c.crop_top : bottom, c.crop_left : right]
        if img.dtype == np.uint8:
            scale = self._scale8
        elif img.dtype.kind == "u" and img.dtype.itemsize == 2:
            scale = self._scale16
        else:
            raise FrameRejected("encoding", f"decoded image has dtype {img.dtype}")
        if img.shape[0] != c.height or img.shape[1] != c.width:
            img = self._resize(img)  # 8-bit stays uint8; 16-bit becomes float32 in [0, 65535]
        # Cast-copy into the CHW buffer, then scale in place: no temporary (a mixed-type
        # multiply would allocate NumPy's cast buffer on every frame).
        src = img if c.color_order == "rgb" else img[:, :, ::-1]
        np.copyto(self.out, src.transpose(2, 0, 1), casting="unsafe")
        np.multiply(self.out, scale, out=self.out)
        return self.out

    def _resize(self, img: NDArray[Any]) -> NDArray[Any]:
        """Bilinear resize to the policy size (Pillow's filter, antialiased when shrinking).

        8-bit RGB in one pass; grey (a broadcast view) as one channel; 16-bit per channel in
        float32 (Pillow mode ``F``), returned unscaled in [0, 65535].
        """
        c = self.cfg
        size = (c.width, c.height)
        grey = img.strides[2] == 0
        bilinear = PILImage.Resampling.BILINEAR
        if img.dtype == np.uint8:
            if grey:
                plane = PILImage.fromarray(np.ascontiguousarray(img[:, :, 0]))
                return np.asarray(plane.resize(size, bilinear))[:, :, None]
            return np.asarray(PILImage.fromarray(np.ascontiguousarray(img)).resize(size, bilinear))
        channels = 1 if grey else 3
        out = np.empty((c.height, c.width, channels), dtype=np.float32)
        for k in range(channels):
            plane = PILImage.fromarray(np.ascontiguousarray(img[:, :, k], dtype=np.float32))
            out[:, :, k] = np.asarray(plane.resize(size, bilinear))
        return out
