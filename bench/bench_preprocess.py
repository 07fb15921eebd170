"""Preprocessing cost of large camera frames: the runtime's routine against the previous one.

Per frame: decode (a view for raw encodings; JPEG decoded), crop, resize to the policy's 78×200,
scale to float32 [0, 1] — :meth:`Preprocessor.frame`, what the runtime does for every frame it
takes. The reference is the routine this replaced, measured in the same run, alternating frame by
frame with ours so both see the same machine load: Pillow's bilinear (antialiased) resize of a
contiguous copy of the image, a JPEG decoded at full size by Pillow, 4:2:2 decoded in NumPy.

Cases: 3840×2160 bgr8 (4K), 1920×1080 bgr8, 3840×2160 JPEG (quality 90) and yuyv of the same
camera-like image (blurred noise on a gradient: fine detail, so the JPEG is not trivially small).
One thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``). Prints, per frame, the
median and p99 of the thread's CPU time (``time.thread_time``: the cost on one core, which a
loaded machine does not inflate as it does the wall time) and of the wall time, the ratio
old / new of the CPU medians, and whether the CPU p99 fits a 30 Hz camera period (33.3 ms).

``--closed-loop`` also drives the bundled policy 150 m on evaluation track 5007 (clean) with the
simulator's camera at 200×78 (no resize), 800×312, 1600×624 (rgb8) and 1600×624 JPEG q90, through
the runtime as ``evaluate`` runs it, and prints departures and mean |lateral error| (needs the
``[sim]`` extra; a few minutes with software rendering).

Run: ``python bench/bench_preprocess.py [--frames N] [--closed-loop]`` (default 60 frames per case
and routine).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image as PILImage

from ltc_controller.runtime.preprocess import (
    PreprocessConfig,
    Preprocessor,
    RawFrame,
    decode_image,
    frame_from_compressed,
    frame_from_image,
)

H, W = 78, 200
PERIOD_30HZ_MS = 1000.0 / 30.0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# The previous 4:2:2 decoder: NumPy, BT.601 limited range in 16-bit fixed point.
_FIX = 16
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_CY = round(255.0 / 219.0 * (1 << _FIX))
_CVR = round(255.0 / 224.0 * 2.0 * (1.0 - _KR) * (1 << _FIX))
_CUB = round(255.0 / 224.0 * 2.0 * (1.0 - _KB) * (1 << _FIX))
_CUG = round(255.0 / 224.0 * 2.0 * (1.0 - _KB) * _KB / _KG * (1 << _FIX))
_CVG = round(255.0 / 224.0 * 2.0 * (1.0 - _KR) * _KR / _KG * (1 << _FIX))


def old_yuyv(data: bytes, height: int, width: int) -> NDArray[np.uint8]:
    macro = np.frombuffer(data, np.uint8).reshape(height, width // 2, 4)
    y0, u, y1, v = (macro[:, :, k].astype(np.int32) for k in (0, 1, 2, 3))
    y = np.empty((height, width), dtype=np.int32)
    y[:, 0::2] = y0
    y[:, 1::2] = y1
    np.maximum(y - 16, 0, out=y)
    y *= _CY
    y += 1 << (_FIX - 1)
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


class OldPreprocessor:
    """The previous routine: Pillow bilinear resize of a contiguous copy, full JPEG decode,
    NumPy 4:2:2 decode."""

    def __init__(self) -> None:
        self.out = np.empty((3, H, W), dtype=np.float32)

    def frame(self, frame: RawFrame) -> NDArray[np.float32]:
        if frame.encoding == "jpeg":
            with PILImage.open(io.BytesIO(frame.data), formats=("JPEG",)) as im:
                im.load()
                rgb = np.asarray(im.convert("RGB"))
        elif frame.encoding == "yuyv":
            rgb = old_yuyv(bytes(frame.data), frame.height, frame.width)
        else:
            rgb = decode_image(frame.encoding, frame.height, frame.width, frame.step, frame.data)
        small = PILImage.fromarray(np.ascontiguousarray(rgb)).resize(
            (W, H), PILImage.Resampling.BILINEAR
        )
        np.copyto(self.out, np.asarray(small).transpose(2, 0, 1), casting="unsafe")
        np.multiply(self.out, np.float32(1.0 / 255.0), out=self.out)
        return self.out


def camera_image(h: int, w: int, seed: int = 0) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], 2)
    noise = rng.integers(-60, 61, (h, w, 3))
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    blurred: NDArray[Any] = cv2.GaussianBlur(img, (0, 0), 1.2)
    return blurred


def cases() -> list[tuple[str, RawFrame]]:
    k4 = camera_image(2160, 3840)
    hd = camera_image(1080, 1920, seed=1)
    bgr4k = np.ascontiguousarray(k4[:, :, ::-1])
    ok, jpg = cv2.imencode(".jpg", bgr4k, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    # yuyv of the same image: Y0 U Y1 V per two pixels (OpenCV's BT.601 forward conversion).
    yuyv: NDArray[np.uint8] = np.ascontiguousarray(cv2.cvtColor(bgr4k, cv2.COLOR_BGR2YUV_YUYV))
    return [
        ("4K bgr8", frame_from_image(1.0, 0, "bgr8", 2160, 3840, 3840 * 3, bgr4k.tobytes())),
        (
            "1080p bgr8",
            frame_from_image(1.0, 0, "bgr8", 1080, 1920, 1920 * 3, hd[:, :, ::-1].copy().tobytes()),
        ),
        (f"4K JPEG q90 ({len(jpg) / 1e6:.1f} MB)", frame_from_compressed(1.0, 0, "jpeg", jpg)),
        ("4K yuyv", frame_from_image(1.0, 0, "yuyv", 2160, 3840, 3840 * 2, yuyv.tobytes())),
    ]


def measure(
    frame: RawFrame, routines: list[Callable[[RawFrame], object]], n: int
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Per-frame (CPU, wall) milliseconds of each routine, alternating routines frame by
    frame."""
    for f in routines:  # warm: buffers, lazy imports
        f(frame)
    times = [(np.empty(n), np.empty(n)) for _ in routines]
    for i in range(n):
        for k, f in enumerate(routines):
            c0, t0 = time.thread_time(), time.perf_counter()
            f(frame)
            times[k][1][i] = (time.perf_counter() - t0) * 1e3
            times[k][0][i] = (time.thread_time() - c0) * 1e3
    return times


def closed_loop() -> None:
    """The bundled policy in closed loop with camera images the runtime must resize."""
    from ltc_controller.models.policy_file import BUNDLED_POLICY, load_policy
    from ltc_controller.runtime.schedule import seconds_to_ns
    from ltc_controller.sim.conditions import get_condition
    from ltc_controller.sim.scenario import make_sim
    from ltc_controller.training.closed_loop import PolicyDriver, drive_episode

    policy = load_policy(BUNDLED_POLICY).eval()
    cond = get_condition("clean")
    print("bundled policy, track 5007 (clean), 150 m at 5 m/s, 20 Hz camera")
    for w, h, jpeg in ((200, 78, False), (800, 312, False), (1600, 624, False), (1600, 624, True)):
        driver = PolicyDriver(policy)

        def jpeg_act(image: NDArray[np.uint8], stamp: float, driver: PolicyDriver = driver) -> Any:
            bgr = np.ascontiguousarray(image[:, :, ::-1])
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            frame = frame_from_compressed(stamp, seconds_to_ns(stamp), "jpeg", buf.tobytes())
            driver.runtime.offer_frame(frame)
            r = driver.runtime.tick(stamp)
            if r.outputs is None:
                return None
            return max(-driver.max_steering, min(driver.max_steering, float(r.outputs[0])))

        sim = make_sim(cond, 5007, initial_speed=5.0, image_width=w, image_height=h)
        res = drive_episode(
            sim,
            jpeg_act if jpeg else driver.act,
            condition=cond,
            effects_seed=5007,
            distance_m=150.0,
            on_departure=driver.reset,
        )
        c = driver.runtime.counters
        print(
            f"  {w}x{h} {'JPEG' if jpeg else 'rgb8'}: {res.distance_m:.0f} m, departures "
            f"{res.departures}, mean |lateral error| {res.mean_abs_lateral_error_m:.3f} m, "
            f"frames used {c.frames_used}/{res.frames}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per case and routine")
    parser.add_argument(
        "--closed-loop", action="store_true", help="also drive the bundled policy (needs [sim])"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"{cpu_name()}, 1 thread, numpy {np.__version__}, OpenCV {cv2.__version__}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"preprocess to {W}x{H} float32, ms per frame over {args.frames} frames; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'case':<26} {'CPU old p50/p99':>16} {'CPU new p50/p99':>16} {'old/new':>8} "
        f"{'wall old p50/p99':>17} {'wall new p50/p99':>17}  fits 30 Hz"
    )
    new, old = Preprocessor(PreprocessConfig(H, W)), OldPreprocessor()
    for name, frame in cases():
        (c_old, w_old), (c_new, w_new) = measure(frame, [old.frame, new.frame], args.frames)
        o50, o99 = np.percentile(c_old, [50, 99])
        n50, n99 = np.percentile(c_new, [50, 99])
        wo50, wo99 = np.percentile(w_old, [50, 99])
        wn50, wn99 = np.percentile(w_new, [50, 99])
        fits = "yes" if n99 <= PERIOD_30HZ_MS else "NO"
        print(
            f"{name:<26} {o50:7.1f}/{o99:<8.1f} {n50:7.1f}/{n99:<8.1f} {o50 / n50:8.1f} "
            f"{wo50:8.1f}/{wo99:<8.1f} {wn50:8.1f}/{wn99:<8.1f}  {fits}"
        )
        diff = np.abs(new.frame(frame) - old.frame(frame)) * 255.0
        print(f"{'':<26} |new - old| max {diff.max():.1f}, mean {diff.mean():.2f} (of 255)")
    if args.closed_loop:
        closed_loop()


if __name__ == "__main__":
    main()
