"""Publisher process for the two-process DDS tests (not a test module).

Usage: python dds_pub_helper.py TOPIC RELIABILITY COUNT [--ros-args ...]

Publishes test images (``make_image(i)``) on TOPIC. Reliable: waits for a subscription, then sends
COUNT images once. Best effort: sends one image every 20 ms until stopped. Spins until SIGTERM or
SIGINT and exits 0.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ltc_controller.transport import create_node
from ltc_controller.transport.port import QoS

WIDTH, HEIGHT = 640, 480


def make_image(node: Any, i: int) -> Any:
    """The i-th test image: 640x480 rgb8, a per-frame byte pattern, stamp and frame id from i."""
    data = ((np.arange(WIDTH * HEIGHT * 3, dtype=np.uint32) * 7 + i) % 256).astype(np.uint8)
    img = node.msg(
        "sensor_msgs/msg/Image",
        height=HEIGHT,
        width=WIDTH,
        encoding="rgb8",
        is_bigendian=0,
        step=WIDTH * 3,
        data=data.tobytes(),
    )
    img.header.stamp.sec = 1_700_000_000 + i
    img.header.stamp.nanosec = 123_456_789
    img.header.frame_id = f"camera_optical_{i}"
    return img


def main(argv: list[str]) -> int:
    topic, reliability, count = argv[0], argv[1], int(argv[2])
    node, _ = create_node("helper_pub", argv[3:])
    qos = QoS(reliability, "volatile", max(count, 10))  # type: ignore[arg-type]
    pub = node.create_publisher("sensor_msgs/msg/Image", topic, qos)
    state = {"sent": 0}

    def tick() -> None:
        if reliability == "reliable":
            if state["sent"] or pub.get_subscription_count() == 0:
                return
            for i in range(count):
                pub.publish(make_image(node, i))
            state["sent"] = count
        else:
            pub.publish(make_image(node, state["sent"] % 256))
            state["sent"] += 1

    node.create_timer(0.02, tick)
    print(f"helper_pub publishing on {node.resolve(topic)}", flush=True)
    node.spin()
    print(f"helper_pub sent {state['sent']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
