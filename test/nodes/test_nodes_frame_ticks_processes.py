"""Frame-triggered ticks between real processes: this test's camera publishes over DDS to an
``ltc_policy`` process, which answers each frame with a command of its own from the tick the
frame's arrival triggered. Asserted from the node's own stamps and counters (the command's
``header.stamp``, ``PolicyStatus``), never from how fast this process was scheduled; the
latencies the node measured are printed as measurements."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ltc_controller.supervisor import Launcher
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("dds_loopback")]
H, W = 78, 200
FRAMES = 20
RATE_HZ = 2.0  # control period 0.5 s, deadline 0.5 s: room for a loaded machine
# Frames are stale only after 10 s and never wait for room in the deadline: under any load the
# node takes each frame on arrival, which is what this test is about.
POLICY_ARGS = [
    "-p",
    f"control_rate_hz:={RATE_HZ}",
    "-p",
    f"deadline_s:={1 / RATE_HZ}",
    "-p",
    "max_frame_age_s:=10.0",
    "-p",
    "max_lag_s:=10.0",
    "-p",
    "camera_qos:=reliable",
]


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def spin(node: DdsNode, seconds: float, until: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        node.spin_once(0.005)
        if until():
            return True
    return False


def test_every_frame_gets_its_own_command_from_the_tick_its_arrival_triggered(tmp_path):
    launcher = Launcher(dict(os.environ), tmp_path)
    launcher.start("ltc_policy", POLICY_ARGS)
    node = DdsNode("frame_tick_rig", parameter_services=False)
    cmds: list[Any] = []
    status: list[Any] = []
    node.create_subscription(
        "ackermann_msgs/msg/AckermannDriveStamped", "policy_cmd", cmds.append, RELIABLE
    )
    node.create_subscription("ltc_controller/msg/PolicyStatus", "policy_status", status.append)
    cam = node.create_publisher("sensor_msgs/msg/Image", "camera/image_raw", RELIABLE)
    rng = np.random.default_rng(0)
    sent: list[int] = []
    try:
        assert spin(node, 120.0, lambda: bool(status) and cam.get_subscription_count() > 0), (
            f"ltc_policy did not come up; log: {tmp_path / 'ltc_policy.log'}"
        )
        for _ in range(FRAMES + 1):
            img = node.msg(
                "sensor_msgs/msg/Image",
                height=H,
                width=W,
                encoding="rgb8",
                step=W * 3,
                data=rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes(),
            )
            stamp = time.time_ns()
            img.header.stamp.sec, img.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            cam.publish(img)
            sent.append(stamp)
            # Lock-step: the next frame only after this one's command, and more than half a
            # control period later (the frame-tick rate limit), so every frame may tick.
            assert spin(node, 30.0, lambda s=stamp: any(stamp_ns(c.header) == s for c in cmds))
            spin(node, 0.6 / RATE_HZ, lambda: False)
        # The statuses of the last ticks (published after their commands).
        spin(node, 10.0, lambda: bool(status) and status[-1].frames_commanded > FRAMES)
    finally:
        node.shutdown()
        codes = launcher.stop()
    assert codes == {"ltc_policy": 0}, f"see {tmp_path / 'ltc_policy.log'}"

    # Each frame's stamp went out on a command of its own, in order.
    first_cmd_stamps = list(dict.fromkeys(stamp_ns(c.header) for c in cmds))
    assert first_cmd_stamps == sent
    n = FRAMES + 1
    s = status[-1]
    assert (s.frames_received, s.frames_used, s.frames_dropped) == (n, n, 0)
    assert (s.frame_ticks, s.frame_ticks_deferred, s.frames_commanded) == (n, 0, n)
    assert s.frames_rejected == 0 and s.frames_skipped == 0
    # The node's own per-tick record: the first frame only starts the state's time (no step,
    # no output), so its command comes from the next tick with a step due (a timer tick); every
    # later frame's first command came from the tick its own arrival triggered, with steps.
    firsts = [m for m in status if m.frame_to_command_s >= 0.0]
    assert len(firsts) == n
    assert not firsts[0].frame_tick and all(m.frame_tick for m in firsts[1:])
    assert s.frame_ticks_stepped == FRAMES
    lat_ms = 1e3 * np.array([m.frame_to_command_s for m in firsts[1:]])
    print(
        f"\nframe -> policy_cmd (ltc_policy's clock, {FRAMES} frames): "
        f"p50 {np.percentile(lat_ms, 50):.1f} ms, max {lat_ms.max():.1f} ms; "
        f"frame ticks that took a grid step: {s.frame_ticks_stepped}/{s.frame_ticks}"
    )
