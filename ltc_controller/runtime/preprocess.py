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
``jpeg`` ``png``                       ``CompressedImage`` data, decoded with Pillow (libjpeg,
                                       zlib); JPEG at reduced scale when the policy size allows
=====================================  ============================================================

4:2:2 is converted with ITU-R BT.601 limited-range coefficients (Y in [16, 235], chroma centred
on 128; Y below 16 counts as black) by OpenCV's ``cvtColor``, the conversion cv_bridge applies to
these encodings (a new array: the one decoding that always copies).
16-bit images are scaled by 1/65535 (8-bit by 1/255), so both end in [0, 1].

Rows may be padded (``step`` > width × bytes per pixel); a raw image is read in place (a strided
view of the message bytes, no copy) whenever no conversion is needed.

Resizing is area averaging (OpenCV ``cv2.resize`` with ``INTER_AREA``; bilinear when enlarging).
A large image is first halved by exact 2 × 2 means (OpenCV's integer-factor area path, several
times faster than one general area pass) while it has even sides and the halved image keeps at
least four times the policy size in both dimensions, then area-resized to the policy size (on a
smooth 4K test image: within 1.5 levels of 255 of the exact area mean, 0.4 on average). A JPEG is
decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, :meth:`Preprocessor.frame`) by the same
rule, when the image size and the crop are multiples of the factor, so a 4K JPEG is never
expanded to full size. Training (:func:`ltc_controller.training.bag.read_demonstrations`) and the
runtime both go through :meth:`Preprocessor.frame`: the same frame gives the same network input.

Anything this cannot read raises :class:`FrameRejected` with a short ``reason`` code, which the
runtime counts: ``encoding`` (unsupported encoding or compression format), ``size`` (dimensions,
``step`` or data length inconsistent, or too large), ``decode`` (corrupt compressed data),
``data`` (the data field is not a byte buffer).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
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
#: Packed 4:2:2 encodings -> OpenCV conversion code (byte order U Y0 V Y1 or Y0 U Y1 V).
_YUV422: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
#: ``RawFrame.encoding`` of compressed frames -> the Pillow format allowed to decode it.
_COMPRESSED: dict[str, str] = {"jpeg": "JPEG", "png": "PNG"}

ENCODINGS: tuple[str, ...] = tuple(_RAW) + tuple(_YUV422) + tuple(_COMPRESSED)
COMPRESSED_FORMATS: tuple[str, ...] = tuple(_COMPRESSED)


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
    mv = _byte_view(data)
    codec = _COMPRESSED.get(enc)
    if codec is not None:
        return _decode_compressed(codec, mv)[0]
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


def _byte_view(data: Any) -> memoryview:
    try:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")  # TypeError when not C-contiguous
    except TypeError as exc:
        raise FrameRejected("data", f"data is {type(data).__name__}, not a byte buffer") from exc
    return mv


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
    mv: memoryview, height: int, width: int, step: int, codes: int
) -> NDArray[np.uint8]:
    """OpenCV's BT.601 4:2:2 conversion of the rows in place (padded rows read with their
    step): 4K in a few ms where a NumPy fixed-point version took over 100 ms."""
    buf = np.frombuffer(mv, dtype=np.uint8, count=step * (height - 1) + width * 2)
    packed = np.lib.stride_tricks.as_strided(
        buf, shape=(height, width, 2), strides=(step, 2, 1), writeable=False
    )
    out: NDArray[Any] = cv2.cvtColor(packed, codes)
    return out


def _decode_compressed(
    codec: str, mv: memoryview, reduce: Callable[[int, int], int] | None = None
) -> tuple[NDArray[Any], int]:
    """Decode ``mv``; ``reduce(height, width) -> factor`` (1, 2, 4 or 8) picks a JPEG's reduced
    decoding scale from its header. Returns the image and the factor it was decoded at."""
    try:
        with PILImage.open(io.BytesIO(mv), formats=(codec,)) as im:
            w, h = im.size
            if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
                raise FrameRejected("size", f"{codec} image {w}x{h} is empty or too large")
            factor = 1
            if reduce is not None and codec == "JPEG":
                factor = reduce(h, w)
                if factor > 1:
                    # draft() picks the largest DCT scale whose output is >= the size asked.
                    im.draft(None, (w // factor, h // factor))
                    if im.size != (w // factor, h // factor):
                        raise FrameRejected("decode", f"JPEG {w}x{h} did not reduce by {factor}")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                grey = np.asarray(im)
                if grey.dtype != np.uint16:
                    grey = np.clip(grey, 0, 65535).astype(np.uint16)
                return np.broadcast_to(grey[:, :, None], (*grey.shape, 3)), factor
            if mode == "L":
                grey = np.asarray(im)
                return np.broadcast_to(grey[:, :, None], (*grey.shape, 3)), factor
            rgb = im if mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb), factor
    except FrameRejected:
        raise
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        # UnidentifiedImageError is an OSError; truncated streams raise OSError or SyntaxError.
        raise FrameRejected("decode", f"{codec} data cannot be decoded: {exc}") from exc


@dataclass(frozen=True)
class PreprocessConfig:
    """Crop (pixels removed from each side of the source image), then resize to
    ``height × width`` (area averaging, see the module docstring); ``color_order`` is the
    channel order the network was trained on (``"rgb"`` or ``"bgr"``)."""

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
    """Turns frames into the network input, reusing its buffers.

    :meth:`frame` takes a :class:`RawFrame` (decoding a JPEG at reduced scale where it can);
    ``__call__`` takes :func:`decode_image` output. Both return ``out``, a ``(3, height, width)``
    float32 array in [0, 1] in ``color_order``, overwritten by the next call (copy it to keep
    it). The resize buffers are kept per image size, so a camera of fixed size allocates
    nothing per frame after the first (a 16-bit image is converted to float32 in a kept buffer);
    when the cropped image already has the policy size nothing is resized.

    Raises:
        ValueError: (construction) a bad ``color_order`` or a non-positive size.
    """

    def __init__(self, cfg: PreprocessConfig) -> None:
        if cfg.color_order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {cfg.color_order!r}")
        if cfg.height <= 0 or cfg.width <= 0:
            raise ValueError(f"policy image size must be positive, got {cfg.width}x{cfg.height}")
        crop = (cfg.crop_top, cfg.crop_bottom, cfg.crop_left, cfg.crop_right)
        if min(crop) < 0:
            raise ValueError(f"crop must be >= 0 on every side, got {crop}")
        self.cfg = cfg
        self.out = np.empty((3, cfg.height, cfg.width), dtype=np.float32)
        self._scale8 = np.float32(1.0 / 255.0)
        self._scale16 = np.float32(1.0 / 65535.0)
        self._bufs: dict[tuple[tuple[int, ...], str], NDArray[Any]] = {}

    def frame(self, frame: RawFrame) -> NDArray[np.float32]:
        """Decode, crop and resize ``frame`` into ``self.out`` (see the class docstring).

        A JPEG is decoded at 1/2, 1/4 or 1/8 scale (:meth:`jpeg_factor`) and cropped by the crop
        divided by that factor; everything else as :func:`decode_image` then ``__call__``.

        Raises:
            FrameRejected: ``encoding``, ``size``, ``decode`` or ``data`` (module docstring).
        """
        rgb, factor = self._decode(frame)
        return self._to_out(*self._shrink(rgb, factor))

    def __call__(self, rgb: NDArray[Any]) -> NDArray[np.float32]:
        """``(H, W, 3)`` RGB uint8/uint16 (any strides) → ``(3, height, width)`` float32
        (``self.out``).

        Raises:
            FrameRejected: ``size`` when the crop leaves nothing; ``encoding`` for another dtype.
        """
        return self._to_out(*self._shrink(rgb, 1))

    def resized(self, frame: RawFrame) -> NDArray[Any]:
        """``frame`` decoded, cropped and resized as :meth:`frame` does, before the scaling to
        [0, 1]: ``(height, width, 3)`` RGB, ``uint8`` for 8-bit sources, float32 in [0, 65535]
        for 16-bit ones. A new array (training keeps it).

        Raises:
            FrameRejected: as :meth:`frame`.
        """
        rgb, factor = self._decode(frame)
        small, flip = self._shrink(rgb, factor)
        if small.ndim == 2:
            return np.repeat(small[:, :, None], 3, axis=2)
        return np.array(small[:, :, 2::-1] if flip else small[:, :, :3])

    def jpeg_factor(self, height: int, width: int) -> int:
        """The reduced decoding scale (1, 2, 4 or 8) for a ``height × width`` JPEG: the largest
        factor that divides the image size and every crop, and leaves the cropped image at least
        four times the policy size in both dimensions (the rule of the 2 × 2 halvings)."""
        c = self.cfg
        ch = height - c.crop_top - c.crop_bottom
        cw = width - c.crop_left - c.crop_right
        for k in (8, 4, 2):
            if (
                all(v % k == 0 for v in (height, width, c.crop_top, c.crop_bottom))
                and c.crop_left % k == 0
                and c.crop_right % k == 0
                and ch // k >= 4 * c.height
                and cw // k >= 4 * c.width
            ):
                return k
        return 1

    def _decode(self, frame: RawFrame) -> tuple[NDArray[Any], int]:
        codec = _COMPRESSED.get(frame.encoding.lower())
        if codec == "JPEG":
            return _decode_compressed(codec, _byte_view(frame.data), self.jpeg_factor)
        img = decode_image(
            frame.encoding,
            frame.height,
            frame.width,
            frame.step,
            frame.data,
            frame.is_bigendian,
        )
        return img, 1

    def _shrink(self, rgb: NDArray[Any], factor: int) -> tuple[NDArray[Any], bool]:
        """Crop (divided by ``factor``, the scale ``rgb`` was decoded at) and resize.

        Returns ``(small, flip)``: ``small`` is ``(height, width)`` grey, or
        ``(height, width, C)`` with ``C`` 3 or 4 whose channels 0..2 are R, G, B (``flip``
        False) or B, G, R (``flip`` True); a view of ``rgb`` when no resize is needed.
        """
        c = self.cfg
        h, w = rgb.shape[:2]
        bottom, right = h - c.crop_bottom // factor, w - c.crop_right // factor
        top, left = c.crop_top // factor, c.crop_left // factor
        if top >= bottom or left >= right:
            raise FrameRejected("size", f"crop leaves nothing of a {w}x{h} image")
        img = rgb[top:bottom, left:right]
        dtype = img.dtype
        if dtype != np.uint8 and not (dtype.kind == "u" and dtype.itemsize == 2):
            raise FrameRejected("encoding", f"decoded image has dtype {dtype}")
        if img.shape[0] == c.height and img.shape[1] == c.width:
            return img, False
        src, flip = self._cv_source(img)
        ih, iw = src.shape[:2]
        try:
            # Exact 2 x 2 means while the result keeps 4x the policy size: OpenCV's fast
            # integer-factor path; the last, general area pass then works on a small image.
            while ih % 2 == 0 and iw % 2 == 0 and ih >= 8 * c.height and iw >= 8 * c.width:
                ih //= 2
                iw //= 2
                src = self._resize(src, ih, iw)
            return self._resize(src, c.height, c.width), flip
        except cv2.error as exc:  # a shape OpenCV refuses: a counted rejection, not a crash
            raise FrameRejected("size", f"cannot resize a {w}x{h} image: {exc}") from exc

    def _resize(self, src: NDArray[Any], height: int, width: int) -> NDArray[Any]:
        dst = self._buf((height, width, *src.shape[2:]), src.dtype)
        return cv2.resize(src, (width, height), dst=dst, interpolation=cv2.INTER_AREA)

    def _buf(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[Any]:
        key = (shape, dtype.str)
        buf = self._bufs.get(key)
        if buf is None:
            if len(self._bufs) >= 16:  # the camera changed size: keep the buffers bounded
                self._bufs.clear()
            buf = self._bufs[key] = np.empty(shape, dtype=dtype)
        return buf

    def _cv_source(self, img: NDArray[Any]) -> tuple[NDArray[Any], bool]:
        """``img`` as an array OpenCV reads in place (rows may be padded; pixels packed), with
        the flag of :meth:`_shrink`. 16-bit images become float32 (in a kept buffer); other
        layouts OpenCV cannot read are copied."""
        if img.dtype != np.uint8:
            shape = img.shape[:2] if img.strides[2] == 0 else img.shape
            f32 = self._buf(shape, np.dtype(np.float32))
            np.copyto(f32, img[:, :, 0] if len(shape) == 2 else img)
            return f32, False
        if img.strides[2] == 0:  # grey, broadcast to three channels
            plane = img[:, :, 0]
            return (plane if plane.strides[1] == 1 else np.ascontiguousarray(plane)), False
        flip = img.strides[2] == -1
        if flip:
            img = img[:, :, ::-1]
        if img.strides[2] == 1:
            if img.strides[1] == 3:
                return img, flip
            if img.strides[1] == 4 and _has_fourth_channel(img):
                rgba = np.lib.stride_tricks.as_strided(
                    img, shape=(*img.shape[:2], 4), strides=img.strides, writeable=False
                )
                return rgba, flip
        return np.ascontiguousarray(img), flip

    def _to_out(self, small: NDArray[Any], flip: bool) -> NDArray[np.float32]:
        scale = self._scale8 if small.dtype == np.uint8 else self._scale16
        if small.ndim == 2:
            chw = np.broadcast_to(small, (3, *small.shape))
        else:
            # Channels 0..2 of `small` in the order the network wants, as a view.
            want_bgr = self.cfg.color_order == "bgr"
            src = small[:, :, 2::-1] if flip != want_bgr else small[:, :, :3]
            chw = src.transpose(2, 0, 1)
        # Cast-copy into the CHW buffer, then scale in place: no temporary (a mixed-type
        # multiply would allocate NumPy's cast buffer on every frame).
        np.copyto(self.out, chw, casting="unsafe")
        np.multiply(self.out, scale, out=self.out)
        return self.out


def _has_fourth_channel(img: NDArray[Any]) -> bool:
    """Whether the byte after each pixel of a 3-of-4-channel uint8 view (pixel stride 4) lies in
    the memory ``img`` views, so a 4-channel view of it reads nothing outside (the alpha of
    ``rgba8``/``bgra8`` rows)."""
    root: Any = img
    while True:  # the array owning (or wrapping) the memory; as_strided wraps its base
        base = getattr(root, "base", None)
        if isinstance(base, np.ndarray):
            root = base
        elif base is not None and isinstance(getattr(base, "base", None), np.ndarray):
            root = base.base
        else:
            break
    lo, hi = np.lib.array_utils.byte_bounds(root)
    ilo, ihi = np.lib.array_utils.byte_bounds(img)
    return bool(lo <= ilo and ihi + 1 <= hi)
