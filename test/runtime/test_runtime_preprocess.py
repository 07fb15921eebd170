"""Decoding and preprocessing against independent implementations (Pillow, OpenCV, struct).

Our decoder is NumPy (strided views, fixed-point BT.601); the references parse the same message
bytes their own way: Pillow's raw unpackers (with row stride), OpenCV's ``cvtColor`` and
``imdecode``, and ``struct`` for 16-bit colour.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ltc_controller.runtime.preprocess import (
    ENCODINGS,
    FrameRejected,
    PreprocessConfig,
    Preprocessor,
    compressed_format,
    decode_image,
    frame_from_compressed,
    frame_from_image,
)

# encoding -> (bytes per pixel, Pillow mode, Pillow raw mode)
PILLOW_8BIT = {
    "rgb8": (3, "RGB", "RGB"),
    "bgr8": (3, "RGB", "BGR"),
    "rgba8": (4, "RGBA", "RGBA"),
    "bgra8": (4, "RGBA", "BGRA"),
    "mono8": (1, "L", "L"),
    "8UC1": (1, "L", "L"),
    "8UC3": (3, "RGB", "BGR"),
    "8UC4": (4, "RGBA", "BGRA"),
}
#: encoding -> byte offsets of (Y0, U, Y1, V) in a two-pixel macropixel
YUV = {
    "yuv422": (1, 0, 3, 2),
    "uyvy": (1, 0, 3, 2),
    "yuv422_yuy2": (0, 1, 2, 3),
    "yuyv": (0, 1, 2, 3),
}
RGB16 = {"rgb16": (3, (0, 1, 2)), "bgr16": (3, (2, 1, 0)), "rgba16": (4, (0, 1, 2))}
RGB16["bgra16"] = (4, (2, 1, 0))

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def message(draw, bytes_per_pixel: int, even_width: bool = False):
    """(height, width, step, data): random pixels, rows padded by 0-13 random bytes."""
    height = draw(st.integers(1, 24))
    width = draw(st.integers(1, 24))
    if even_width:
        width += width % 2
    step = width * bytes_per_pixel + draw(st.integers(0, 13))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, step * height, dtype=np.uint8).tobytes()
    return height, width, step, data


@SETTINGS
@given(enc=st.sampled_from(sorted(PILLOW_8BIT)), data=st.data())
def test_8bit_encodings_decode_like_pillow_raw_unpackers(enc, data):
    bpp, mode, raw = PILLOW_8BIT[enc]
    h, w, step, buf = data.draw(message(bpp))
    ours = decode_image(enc, h, w, step, buf)
    ref = np.asarray(Image.frombuffer(mode, (w, h), buf, "raw", raw, step, 1))
    ref = np.repeat(ref[:, :, None], 3, axis=2) if mode == "L" else ref[:, :, :3]
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)


@SETTINGS
@given(enc=st.sampled_from(["mono16", "16UC1"]), big=st.booleans(), data=st.data())
def test_mono16_in_either_byte_order_decodes_like_pillow(enc, big, data):
    h, w, step, buf = data.draw(message(2))
    ours = decode_image(enc, h, w, step, buf, is_bigendian=big)
    raw = "I;16B" if big else "I;16"
    ref = np.asarray(Image.frombuffer("I;16", (w, h), buf, "raw", raw, step, 1)).astype(np.int64)
    assert ours.shape == (h, w, 3) and ours.dtype.itemsize == 2
    for ch in range(3):
        np.testing.assert_array_equal(ours[:, :, ch].astype(np.int64), ref)


@SETTINGS
@given(enc=st.sampled_from(sorted(RGB16)), big=st.booleans(), data=st.data())
def test_16bit_colour_decodes_like_struct_unpacking(enc, big, data):
    channels, order = RGB16[enc]
    h, w, step, buf = data.draw(message(2 * channels))
    ours = decode_image(enc, h, w, step, buf, is_bigendian=big)
    fmt = (">" if big else "<") + "H" * channels
    ref = np.array(
        [
            [struct.unpack_from(fmt, buf, r * step + c * 2 * channels) for c in range(w)]
            for r in range(h)
        ]
    )[:, :, list(order)]
    np.testing.assert_array_equal(ours.astype(np.int64), ref)


def bt601_limited(packed: np.ndarray, offsets: tuple[int, int, int, int]) -> np.ndarray:
    """ITU-R BT.601 limited range in float64 from the standard's coefficients (Kr = 0.299,
    Kb = 0.114; luma 255/219 above 16, chroma 255/224 around 128), rounded: a reference
    independent of OpenCV's fixed-point tables."""
    h, w = packed.shape[:2]
    macro = packed.reshape(h, w // 2, 4).astype(np.float64)
    y0, u, y1, v = (macro[:, :, k] for k in offsets)
    y = np.empty((h, w))
    y[:, 0::2], y[:, 1::2] = y0, y1
    y = np.maximum(y - 16.0, 0.0) * (255.0 / 219.0)
    u = np.repeat(u - 128.0, 2, axis=1) * (255.0 / 224.0)
    v = np.repeat(v - 128.0, 2, axis=1) * (255.0 / 224.0)
    kr, kb = 0.299, 0.114
    kg = 1.0 - kr - kb
    r = y + 2.0 * (1.0 - kr) * v
    g = y - 2.0 * (1.0 - kb) * kb / kg * u - 2.0 * (1.0 - kr) * kr / kg * v
    b = y + 2.0 * (1.0 - kb) * u
    return np.clip(np.rint(np.stack([r, g, b], axis=2)), 0, 255)


@SETTINGS
@given(enc=st.sampled_from(sorted(YUV)), data=st.data())
def test_yuv422_decodes_like_the_bt601_equations_within_one_level(enc, data):
    h, w, step, buf = data.draw(message(2, even_width=True))
    ours = decode_image(enc, h, w, step, buf)
    packed = np.frombuffer(buf, np.uint8).reshape(h, step)[:, : 2 * w].reshape(h, w, 2)
    ref = bt601_limited(packed, YUV[enc])
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_yuv422_grey_and_saturated_colours_are_exact():
    # Black (Y=16), white (Y=235) and neutral chroma map exactly; UYVY byte order.
    uyvy = bytes([128, 16, 128, 235])
    np.testing.assert_array_equal(
        decode_image("yuv422", 1, 2, 4, uyvy), [[[0, 0, 0], [255, 255, 255]]]
    )
    yuyv = bytes([16, 128, 235, 128])
    np.testing.assert_array_equal(decode_image("yuyv", 1, 2, 4, yuyv), [[[0, 0, 0], [255] * 3]])


def area_pipeline(rgb: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """The documented resize, step by step on a contiguous copy: 2 x 2 means while the result
    keeps four times the policy size (even sides), then one area pass."""
    img = np.ascontiguousarray(rgb)
    while img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0:
        if img.shape[0] < 8 * oh or img.shape[1] < 8 * ow:
            break
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if img.shape[:2] != (oh, ow):
        img = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
    return img


def exact_area(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Area-weighted mean of the source pixels under each output pixel, in float64 (NumPy, an
    implementation independent of OpenCV); shrinking only."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        edges = np.arange(n_out + 1) * (n_in / n_out)
        lo, hi = edges[:-1, None], edges[1:, None]
        px = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)

    wy, wx = weights(img.shape[0], oh), weights(img.shape[1], ow)
    rows = np.tensordot(wy, img.astype(np.float64), axes=(1, 0))  # (oh, W, C)
    return np.tensordot(rows, wx, axes=(1, 1)).transpose(0, 2, 1)  # (oh, ow, C)


def smooth_noise(h: int, w: int, seed: int) -> np.ndarray:
    """A camera-like image: blurred noise (edges and gradients, not white noise)."""
    noise = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


@SETTINGS
@given(
    enc=st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]),
    order=st.sampled_from(["rgb", "bgr"]),
    crop=st.tuples(*[st.integers(0, 3)] * 4),
    out_size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    data=st.data(),
)
def test_crop_resize_colour_order_and_scale_equal_the_documented_area_pipeline(
    enc, order, crop, out_size, data
):
    # Decoded independently (Pillow's raw unpackers), cropped, copied, then resized as the
    # module docstring says: checks our strided/flipped/4-channel in-place paths.
    bpp, mode, raw = PILLOW_8BIT[enc]
    h, w, step, buf = data.draw(message(bpp))
    top, bottom, left, right = crop
    oh, ow = out_size
    pre = Preprocessor(PreprocessConfig(oh, ow, top, bottom, left, right, order))
    if top + bottom >= h or left + right >= w:
        with pytest.raises(FrameRejected, match="crop"):
            pre(decode_image(enc, h, w, step, buf))
        return
    ours = pre(decode_image(enc, h, w, step, buf)).copy()
    im = Image.frombuffer(mode, (w, h), buf, "raw", raw, step, 1).convert("RGB")
    ref = area_pipeline(np.asarray(im)[top : h - bottom, left : w - right], oh, ow)
    ref = ref.astype(np.float32) / np.float32(255.0)
    if order == "bgr":
        ref = ref[:, :, ::-1]
    assert ours.shape == (3, oh, ow) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.transpose(2, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "size,out",
    [
        ((540, 960), (78, 200)),
        ((1080, 1920), (78, 200)),
        ((300, 500), (78, 200)),
        ((64, 64), (9, 7)),
    ],
)
def test_resize_is_within_two_levels_of_the_exact_area_mean(size, out):
    h, w = size
    oh, ow = out
    img = smooth_noise(h, w, seed=h)
    pre = Preprocessor(PreprocessConfig(oh, ow))
    ours = pre(decode_image("rgb8", h, w, w * 3, img.tobytes())).transpose(1, 2, 0) * 255.0
    err = np.abs(ours - exact_area(img, oh, ow))
    assert err.max() <= 2.0 and err.mean() <= 0.5, (err.max(), err.mean())


def test_rgba8_and_padded_rows_are_resized_in_place_like_packed_rgb8():
    h, w = 324, 804  # cropped to 320 x 802: even, 8x the policy size: one 2 x 2 halving
    rgb = smooth_noise(h, w, seed=3)
    alpha = np.full((h, w, 1), 7, np.uint8)
    rows = np.zeros((h, w * 4 + 12), np.uint8)  # bgra8 with 12 padding bytes per row
    rows[:, : w * 4] = np.dstack([rgb[:, :, ::-1], alpha]).reshape(h, -1)
    pre = Preprocessor(PreprocessConfig(40, 100, 2, 2, 0, 2))
    ref = pre(decode_image("rgb8", h, w, w * 3, rgb.tobytes())).copy()
    np.testing.assert_array_equal(pre(decode_image("bgra8", h, w, w * 4 + 12, rows.tobytes())), ref)
    # A 3-of-4-channel view whose 4th byte would run past the buffer is copied, not overread.
    rgbx = np.dstack([alpha, rgb])
    np.testing.assert_array_equal(pre(rgbx[:, :, 1:4]), ref)


def test_a_camera_frame_reuses_the_resize_buffers():
    import tracemalloc

    h, w = 1080, 1920
    data = smooth_noise(h, w, seed=1)[:, :, ::-1].tobytes()
    pre = Preprocessor(PreprocessConfig())
    frame = frame_from_image(1.0, 0, "bgr8", h, w, w * 3, data)
    pre.frame(frame)
    tracemalloc.start()
    try:
        pre.frame(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # a copy of the frame would be 6 MB, of its half 1.5 MB


def jpeg_frame(rgb: np.ndarray, quality: int = 95):
    ok, jpg = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return frame_from_compressed(2.0, 2_000_000_000, "rgb8; jpeg compressed bgr8", jpg.tobytes())


@pytest.mark.parametrize(
    "size,crop,factor",
    [
        ((2592, 6400), (0, 0, 0, 0), 8),  # 2592/8 = 324 >= 4 x 78, 6400/8 = 800 >= 4 x 200
        ((1296, 3200), (0, 0, 0, 0), 4),
        ((1296, 3200), (4, 0, 0, 0), 4),
        ((1296, 3200), (2, 0, 0, 0), 2),  # a crop of 2 maps exactly only at 1/2
        ((1296, 3200), (3, 0, 0, 0), 1),  # an odd crop keeps the full scale
        ((652, 1604), (2, 2, 2, 2), 2),
        ((600, 1600), (0, 0, 0, 0), 1),  # 600 / 2 < 4 x 78
    ],
)
def test_jpeg_factor_keeps_twice_the_policy_size_and_an_exact_crop(size, crop, factor):
    pre = Preprocessor(PreprocessConfig(78, 200, *crop))
    assert pre.jpeg_factor(*size) == factor


@pytest.mark.parametrize("crop", [(0, 0, 0, 0), (48, 16, 32, 64)])
def test_jpeg_decoded_at_reduced_scale_is_close_to_a_full_decode(crop):
    h, w = 1296, 3200
    rgb = smooth_noise(h, w, seed=5)
    frame = jpeg_frame(rgb)
    pre = Preprocessor(PreprocessConfig(78, 200, *crop))
    assert pre.jpeg_factor(h, w) == (4 if crop == (0, 0, 0, 0) else 2)
    ours = pre.frame(frame).transpose(1, 2, 0) * 255.0
    full = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    top, bottom, left, right = crop
    ref = exact_area(full[top : h - bottom, left : w - right], 78, 200)
    err = np.abs(ours - ref)
    assert err.max() <= 4.0 and err.mean() <= 1.0, (err.max(), err.mean())
    # The training path (resized) is the same routine.
    np.testing.assert_array_equal(pre.resized(frame), np.round(ours).astype(np.uint8))


def test_grey_jpeg_at_reduced_scale_stays_grey():
    grey = smooth_noise(648, 1600, seed=2)[:, :, 0]
    ok, jpg = cv2.imencode(".jpg", grey)
    frame = frame_from_compressed(0.0, 0, "jpeg", jpg.tobytes())
    out = Preprocessor(PreprocessConfig()).frame(frame)
    np.testing.assert_array_equal(out[0], out[1])
    assert np.abs(out[0] * 255.0 - exact_area(grey[:, :, None], 78, 200)[:, :, 0]).max() <= 4.0


@pytest.mark.parametrize("cut", [0, 10, 200, 2000, -1])
def test_truncated_or_empty_large_jpeg_is_rejected_or_decoded_never_crashes(cut):
    data = jpeg_frame(smooth_noise(1296, 3200, seed=4)).data
    frame = frame_from_compressed(
        0.0, 0, "jpeg", bytes(data)[:cut] if cut >= 0 else bytes(data)[:-1000]
    )
    pre = Preprocessor(PreprocessConfig())
    try:
        out = pre.frame(frame)
    except FrameRejected as e:
        assert e.reason == "decode"
        return
    assert cut == -1 and np.isfinite(out).all()  # Pillow pads a stream cut near its end


def test_jpeg_larger_than_max_pixels_is_rejected_from_its_header():
    # A tiny JPEG whose header claims 9000 x 9000 pixels: rejected before decoding.
    ok, jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(jpg.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") * 2  # 81 M > MAX_PIXELS
    with pytest.raises(FrameRejected) as info:
        Preprocessor(PreprocessConfig()).frame(frame_from_compressed(0.0, 0, "jpeg", bytes(data)))
    assert info.value.reason == "size"


def test_mono16_is_scaled_to_unit_range_with_resize():
    grey = np.array([[0, 65535], [65535, 0]], dtype=">u2")
    pre = Preprocessor(PreprocessConfig(height=2, width=2))
    out = pre(decode_image("mono16", 2, 2, 4, grey.tobytes(), is_bigendian=True))
    np.testing.assert_allclose(out, np.broadcast_to([[0.0, 1.0], [1.0, 0.0]], (3, 2, 2)))
    pre = Preprocessor(PreprocessConfig(height=1, width=1))
    out = pre(decode_image("mono16", 2, 2, 4, grey.tobytes(), is_bigendian=True))
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_policy_sized_rgb8_is_read_in_place_without_a_copy():
    img = np.arange(78 * 200 * 3, dtype=np.uint32).astype(np.uint8).reshape(78, 200, 3)
    data = bytearray(img.tobytes())
    view = decode_image("rgb8", 78, 200, 600, data)
    assert np.shares_memory(view, np.frombuffer(data, np.uint8))
    pre = Preprocessor(PreprocessConfig())
    assert pre(view) is pre.out


def smooth_image(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], 2).astype(np.uint8)


@pytest.mark.parametrize(
    "fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"]
)
def test_jpeg_compressed_image_decodes_like_opencv(fmt):
    rgb = smooth_image(60, 90)
    ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    frame = frame_from_compressed(1.5, 1_500_000_000, fmt, jpg.tobytes())
    assert frame.encoding == "jpeg"
    ours = decode_image(frame.encoding, 0, 0, 0, frame.data)
    ref = cv2.imdecode(jpg, cv2.IMREAD_COLOR)[:, :, ::-1]
    assert ours.shape == (60, 90, 3)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 2
    assert np.abs(ours.astype(int) - rgb.astype(int)).mean() < 3  # colours not swapped


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_compressed_image_decodes_exactly_like_opencv(channels):
    rgb = smooth_image(17, 23)
    img = {1: rgb[:, :, 0], 3: rgb[:, :, ::-1], 4: np.dstack([rgb[:, :, ::-1], rgb[:, :, :1]])}
    ok, png = cv2.imencode(".png", np.ascontiguousarray(img[channels]))
    assert ok
    frame = frame_from_compressed(0.0, 0, "bgr8; png compressed bgr8", png.tobytes())
    ours = decode_image(frame.encoding, 0, 0, 0, frame.data)
    ref = cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(ours, ref)


def test_16bit_png_decodes_to_16bit_grey():
    depth = (np.arange(12 * 10, dtype=np.uint32) * 541 % 65536).astype(np.uint16).reshape(12, 10)
    ok, png = cv2.imencode(".png", depth)
    assert ok
    ours = decode_image("png", 0, 0, 0, png.tobytes())
    np.testing.assert_array_equal(ours[:, :, 1].astype(np.int64), depth.astype(np.int64))


@pytest.mark.parametrize(
    "fmt,codec",
    [
        ("jpeg", "jpeg"),
        ("JPEG", "jpeg"),
        ("png", "png"),
        ("rgb8; jpeg compressed bgr8", "jpeg"),
        ("mono8; png compressed mono8", "png"),
        ("16UC1; compressedDepth png", ""),
        ("tiff", ""),
        ("", ""),
    ],
)
def test_compressed_format_field_is_parsed_like_image_transport_writes_it(fmt, codec):
    assert compressed_format(fmt) == codec


@pytest.mark.parametrize(
    "encoding,h,w,step,data,reason",
    [
        ("bayer_rggb8", 2, 2, 2, bytes(4), "encoding"),
        ("32FC1", 2, 2, 8, bytes(16), "encoding"),
        ("nv12", 2, 2, 2, bytes(6), "encoding"),
        ("rgb8", 2, 2, 5, bytes(12), "size"),  # step < width * 3
        ("rgb8", 2, 2, 6, bytes(11), "size"),  # data too short
        ("rgb8", 0, 2, 6, b"", "size"),
        ("rgb8", 100_000, 100_000, 300_000, b"", "size"),
        ("yuv422", 2, 3, 6, bytes(12), "size"),  # odd width for 4:2:2
        ("jpeg", 0, 0, 0, b"\xff\xd8 not really a jpeg", "decode"),
        ("png", 0, 0, 0, b"", "decode"),
        ("compressed:tiff", 0, 0, 0, b"II*\x00", "encoding"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(encoding, h, w, step, data, reason):
    with pytest.raises(FrameRejected) as info:
        decode_image(encoding, h, w, step, data)
    assert info.value.reason == reason


def test_png_bytes_labelled_jpeg_are_rejected_not_guessed():
    ok, png = cv2.imencode(".png", smooth_image(4, 4))
    with pytest.raises(FrameRejected) as info:
        decode_image("jpeg", 0, 0, 0, png.tobytes())
    assert info.value.reason == "decode"


def test_non_buffer_data_is_rejected_and_int_lists_are_accepted():
    with pytest.raises(FrameRejected) as info:
        decode_image("mono8", 1, 1, 1, 5)  # type: ignore[arg-type]
    assert info.value.reason == "data"
    frame = frame_from_image(0.5, 500_000_000, "mono8", 1, 3, 3, [1, 2, 3])
    np.testing.assert_array_equal(
        decode_image(frame.encoding, 1, 3, 3, frame.data)[0, :, 0], [1, 2, 3]
    )


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from([*ENCODINGS, "bayer_grbg8", "RGB8", "", "64FC1"]),
    h=st.integers(-2, 9),
    w=st.integers(-2, 9),
    step=st.integers(-4, 40),
    data=st.binary(max_size=300),
    big=st.booleans(),
)
def test_any_garbage_gives_an_image_or_a_frame_rejected_never_another_error(
    encoding, h, w, step, data, big
):
    try:
        img = decode_image(encoding, h, w, step, data, big)
    except FrameRejected as e:
        assert e.reason in ("encoding", "size", "decode", "data")
        return
    assert img.ndim == 3 and img.shape[2] == 3
    out = Preprocessor(PreprocessConfig(height=4, width=4))(img)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    encoding=st.sampled_from(["jpeg", "png", "rgb8", "bgra8", "mono16", "yuyv", "tiff"]),
    h=st.integers(-1, 9),
    w=st.integers(-1, 9),
    step=st.integers(-1, 40),
    data=st.binary(max_size=300),
    prefix=st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n"]),
    crop=st.tuples(*[st.integers(0, 2)] * 4),
)
def test_any_garbage_frame_gives_an_input_or_a_frame_rejected_never_another_error(
    encoding, h, w, step, data, prefix, crop
):
    frame = frame_from_image(1.0, 0, encoding, h, w, step, prefix + data)
    pre = Preprocessor(PreprocessConfig(2, 2, *crop))
    try:
        out = pre.frame(frame)
    except FrameRejected as e:
        assert e.reason in ("encoding", "size", "decode", "data")
        return
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_encoded_png_round_trip_through_pillow_too():
    buf = io.BytesIO()
    Image.fromarray(smooth_image(5, 6)).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image("png", 0, 0, 0, buf.getvalue()), smooth_image(5, 6))
