"""Frame → ``policy_cmd`` latency over DDS between real processes, against the bare conv head.

Three processes on one DDS domain on loopback: a camera process publishes 78×200 rgb8 frames
(``sensor_msgs/Image``, stamped ``time.time_ns()`` just before publishing) at ``--camera-hz``;
an ``ltc_policy`` process (``python -m ltc_controller node ltc_policy``, the bundled policy, one
thread, ``--backend``) turns them into commands; this process receives ``policy_cmd`` and
``policy_status``. Run once per trigger: ``tick_on_frame`` true (a frame's arrival ticks the
policy) and false (frames wait for the ``control_rate_hz`` timer). Reported per run:

- receive: ROS time at which this process received the first ``policy_cmd`` carrying a
  frame's stamp, minus that stamp (camera → DDS → policy → DDS → here) — p50 / p99 / max;
- policy: the node's own ``PolicyStatus.frame_to_command_s`` (stamp → publish, the policy's
  clock) — p50 / p99;
- frames sent, taken by the policy (``frames_used``) and with a command of their own
  (``frames_commanded``), and ticks;
- reference: the bare conv head forward pass (``features`` of the same backend on a ready
  tensor, one thread, paced at the camera rate) measured in this process, in the same run,
  before the nodes start; ratio p99 / head p99 and the target p99 <= 2 × head p99 + 2 ms.

All clocks are this machine's system clock (stamps and receive times), so no clock offset
enters. Run: ``python bench/bench_dds_latency.py [--seconds S] [--backend torch|onnx]
[--camera-hz HZ] [--control-hz HZ]`` (default 20 s per run, about a minute and a half in all).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

H, W = 78, 200


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def camera_images(n: int = 30) -> list[bytes]:
    """Road-like frames with a moving lane line and noise, a different one per frame."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:H, 0:W]
    out = []
    for k in range(n):
        lane = (np.abs(x - (100 + 30 * np.sin(k / 5) + (y - H) * 0.8)) < 4) * 180
        img = np.stack([60 + lane + y, 70 + lane + y // 2, 80 + lane], 2)
        img = img + rng.integers(0, 20, (H, W, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8).tobytes())
    return out


def camera_process(rate_hz: float, seconds: float, start: Any, sent: Any) -> None:
    """The camera: waits for ``start``, publishes ``seconds`` of frames at ``rate_hz`` (paced
    on the steady clock), puts the number sent in ``sent``."""
    from ltc_controller.transport.dds import DdsNode
    from ltc_controller.transport.port import SENSOR_DATA

    node = DdsNode("bench_camera", parameter_services=False)
    pub = node.create_publisher("sensor_msgs/msg/Image", "camera/image_raw", SENSOR_DATA)
    imgs = camera_images()
    start.wait()
    n = int(seconds * rate_hz)
    t0 = time.monotonic() + 0.05
    for k in range(n):
        while (d := t0 + k / rate_hz - time.monotonic()) > 0:
            node.spin_once(min(d, 0.01))
        msg = node.msg(
            "sensor_msgs/msg/Image",
            height=H,
            width=W,
            encoding="rgb8",
            step=3 * W,
            data=imgs[k % len(imgs)],
        )
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        pub.publish(msg)
    sent.value = n
    node.shutdown()


def head_p99(backend: str, rate_hz: float, seconds: float) -> tuple[float, float]:
    """Bare conv head (the backend's ``features`` on a ready tensor, one thread) paced at
    ``rate_hz``: (p50, p99) in s."""
    import torch

    from ltc_controller.models.policy_file import BUNDLED_POLICY, load_policy
    from ltc_controller.runtime.backend import make_step_model

    torch.set_num_threads(1)
    model = make_step_model(load_policy(BUNDLED_POLICY), backend=backend)
    img = torch.rand(1, 3, H, W)
    n = int(seconds * rate_hz)
    lat = np.zeros(n)
    with torch.inference_mode():
        for _ in range(20):
            model.features(img)
        t0 = time.monotonic() + 0.05
        for k in range(n):
            while (d := t0 + k / rate_hz - time.monotonic()) > 0:
                time.sleep(d)
            a = time.perf_counter()
            model.features(img)
            lat[k] = time.perf_counter() - a
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def run_once(args: argparse.Namespace, on_frame: bool, log_dir: Path) -> dict[str, Any]:
    """One run: the policy process with ``tick_on_frame`` = ``on_frame``, the camera process,
    and this process as receiver."""
    from ltc_controller.supervisor import Launcher
    from ltc_controller.transport.dds import DdsNode
    from ltc_controller.transport.port import RELIABLE

    ctx = mp.get_context("spawn")
    start, sent = ctx.Event(), ctx.Value("i", 0)
    cam = ctx.Process(
        target=camera_process, args=(args.camera_hz, args.seconds, start, sent), daemon=True
    )
    cam.start()
    launcher = Launcher(dict(os.environ), log_dir)
    key = f"ltc_policy_{'frame' if on_frame else 'timer'}"
    launcher.start(
        "ltc_policy",
        [
            "-p",
            f"tick_on_frame:={'true' if on_frame else 'false'}",
            "-p",
            f"backend:={args.backend}",
            "-p",
            f"control_rate_hz:={args.control_hz}",
        ],
        key=key,
    )
    node = DdsNode("bench_receiver", parameter_services=False)
    first: dict[int, int] = {}  # frame stamp -> receive time (ns) of its first command
    own: list[float] = []
    status: list[Any] = []

    def on_cmd(msg: Any) -> None:
        t = time.time_ns()
        s = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        first.setdefault(s, t)

    def on_status(msg: Any) -> None:
        status[:] = [msg]
        if msg.frame_to_command_s >= 0.0:
            own.append(float(msg.frame_to_command_s))

    node.create_subscription(
        "ackermann_msgs/msg/AckermannDriveStamped", "policy_cmd", on_cmd, RELIABLE
    )
    node.create_subscription("ltc_controller/msg/PolicyStatus", "policy_status", on_status)
    try:
        end = time.monotonic() + 120.0
        while not status and time.monotonic() < end:
            if launcher.exited():
                raise RuntimeError(f"ltc_policy exited; see {log_dir / (key + '.log')}")
            node.spin_once(0.05)
        if not status:
            raise RuntimeError(f"no PolicyStatus within 120 s; see {log_dir / (key + '.log')}")
        first.clear()
        own.clear()
        start.set()
        end = time.monotonic() + args.seconds + 60.0
        while cam.is_alive() and time.monotonic() < end:  # receive while the camera runs
            node.spin_once(0.01)
        t = time.monotonic()
        while time.monotonic() - t < 1.0:  # the last commands and statuses
            node.spin_once(0.01)
    finally:
        node.shutdown()
        codes = launcher.stop()
        if cam.is_alive():
            cam.terminate()
    if codes.get(key) != 0:
        raise RuntimeError(f"ltc_policy ended with {codes}; see {log_dir / (key + '.log')}")
    recv = np.array([t - s for s, t in first.items()], dtype=np.float64) * 1e-9
    s = status[-1]
    return {
        "on_frame": on_frame,
        "sent": int(sent.value),
        "used": int(s.frames_used),
        "commanded": int(s.frames_commanded),
        "ticks": int(s.ticks),
        "frame_ticks": int(s.frame_ticks),
        "recv": recv,
        "own": np.asarray(own),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="camera time per run")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--camera-hz", type=float, default=20.0)
    parser.add_argument("--control-hz", type=float, default=20.0)
    args = parser.parse_args()

    from ltc_controller.supervisor import claim_domain
    from ltc_controller.transport.dds import loopback_env

    domain, _lock = claim_domain()  # held until this process ends
    os.environ.update(loopback_env(domain))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    cores = os.cpu_count() or 1
    print(
        f"machine: {cpu_name()}, {cores} cores, load {os.getloadavg()[0]:.2f}, python "
        f"{platform.python_version()}"
    )
    print(
        f"ltc_policy (bundled NCP-19, backend {args.backend}, 1 thread) at control "
        f"{args.control_hz:g} Hz; camera process {H}x{W} rgb8 at {args.camera_hz:g} Hz, "
        f"{args.seconds:g} s per run; receiver = this process"
    )
    h50, h99 = head_p99(args.backend, args.camera_hz, min(args.seconds, 10.0))
    target = 2.0 * h99 + 2e-3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for on_frame in (True, False):
            rows.append(run_once(args, on_frame, Path(tmp)))

    def ms(x: float) -> str:
        return f"{1e3 * x:.1f}"

    print(f"\nbare conv head ({args.backend}): p50 {ms(h50)} ms, p99 {ms(h99)} ms")
    print(f"target: frame -> policy_cmd p99 <= 2 x head p99 + 2 ms = {ms(target)} ms\n")
    hdr = (
        f"{'tick_on_frame':<14}{'sent':>6}{'used':>6}{'cmd':>6}{'ticks':>7}"
        f"{'recv p50':>10}{'p99':>8}{'max':>8}{'own p50':>9}{'p99':>8}{'p99/head':>10}  target"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        recv, own = r["recv"], r["own"]
        if recv.size == 0:
            print(f"{str(r['on_frame']).lower():<14} no commands received")
            continue
        p99 = float(np.percentile(recv, 99))
        o50 = float(np.percentile(own, 50)) if own.size else float("nan")
        o99 = float(np.percentile(own, 99)) if own.size else float("nan")
        print(
            f"{str(r['on_frame']).lower():<14}{r['sent']:>6}{r['used']:>6}{r['commanded']:>6}"
            f"{r['ticks']:>7}{ms(float(np.percentile(recv, 50))):>10}{ms(p99):>8}"
            f"{ms(float(recv.max())):>8}{ms(o50):>9}{ms(o99):>8}{p99 / h99:>10.2f}  "
            f"{'met' if p99 <= target else 'MISSED'}"
        )
    print(
        "\nrecv: stamp -> first policy_cmd with that stamp received here (two DDS hops); own: "
        "the node's PolicyStatus.frame_to_command_s (stamp -> publish). Times in ms."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
