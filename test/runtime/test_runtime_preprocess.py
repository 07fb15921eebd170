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
YUV = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
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


@SETTINGS
@given(enc=st.sampled_from(sorted(YUV)), data=st.data())
def test_yuv422_decodes_like_opencv_within_one_level(enc, data):
    h, w, step, buf = data.draw(message(2, even_width=True))
    ours = decode_image(enc, h, w, step, buf)
    packed = np.frombuffer(buf, np.uint8).reshape(h, step)[:, : 2 * w].reshape(h, w, 2)
    ref = cv2.cvtColor(np.ascontiguousarray(packed), YUV[enc])
    assert ours.shape == (h, w, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_yuv422_grey_and_saturated_colours_are_exact():
    # Black (Y=16), white (Y=235) and neutral chroma map exactly; UYVY byte order.
    uyvy = bytes([128, 16, 128, 235])
    np.testing.assert_array_equal(
        decode_image("yuv422", 1, 2, 4, uyvy), [[[0, 0, 0], [255, 255, 255]]]
    )
    yuyv = bytes([16, 128, 235, 128])
    np.testing.assert_array_equal(decode_image("yuyv", 1, 2, 4, yuyv), [[[0, 0, 0], [255] * 3]])


@SETTINGS
@given(
    enc=st.sampled_from(["rgb8", "bgr8", "bgra8", "mono8"]),
    order=st.sampled_from(["rgb", "bgr"]),
    crop=st.tuples(*[st.integers(0, 3)] * 4),
    out_size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    data=st.data(),
)
def test_crop_resize_colour_order_and_scale_equal_a_pillow_pipeline(
    enc, order, crop, out_size, data
):
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
    im = im.crop((left, top, w - right, h - bottom))
    if im.size != (ow, oh):
        im = im.resize((ow, oh), Image.Resampling.BILINEAR)
    ref = np.asarray(im).astype(np.float32) / np.float32(255.0)
    if order == "bgr":
        ref = ref[:, :, ::-1]
    assert ours.shape == (3, oh, ow) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.transpose(2, 0, 1), rtol=0, atol=1e-6)


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


def test_encoded_png_round_trip_through_pillow_too():
    buf = io.BytesIO()
    Image.fromarray(smooth_image(5, 6)).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image("png", 0, 0, 0, buf.getvalue()), smooth_image(5, 6))
