"""Live saliency: the worker off the control path, and ``~/saliency`` from the ltc_policy node
over real Cyclone DDS (loopback, in this process)."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from ltc_controller.models.attention import overlay, visual_backprop
from ltc_controller.models.policy import Policy
from ltc_controller.nodes.policy_node import PolicyNode
from ltc_controller.nodes.saliency import SaliencyWorker
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("dds_loopback")]
H, W = 78, 200
PERIOD = 0.05


def _wait(cond: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_worker_publishes_the_visual_backprop_overlay_of_the_offered_frame():
    head = copy.deepcopy(Policy.from_config(seed=0).head)
    got: list[tuple[int, np.ndarray]] = []
    worker = SaliencyWorker(head, "rgb", 5.0, lambda s, img: got.append((s, img)))
    try:
        frame = np.random.default_rng(0).random((3, H, W), dtype=np.float32)
        assert worker.offer(frame, 123, now=10.0)
        assert _wait(lambda: len(got) == 1)
        stamp, img = got[0]
        with torch.inference_mode():
            sal = visual_backprop(head, torch.from_numpy(frame)[None])[0].numpy()
        rgb = np.rint(frame * 255).astype(np.uint8).transpose(1, 2, 0)
        assert stamp == 123 and img.shape == (H, W, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, overlay(np.ascontiguousarray(rgb), sal))
    finally:
        worker.close()
    assert not worker.alive


def test_worker_is_rate_limited_and_newest_frame_wins():
    release, entered = threading.Event(), threading.Event()
    got: list[int] = []

    def slow_publish(stamp: int, img: np.ndarray) -> None:
        entered.set()
        release.wait(10.0)  # a consumer that blocks: the offers must not
        got.append(stamp)

    worker = SaliencyWorker(Policy.from_config(seed=0).head, "bgr", 4.0, slow_publish)
    try:
        frame = np.zeros((3, H, W), dtype=np.float32)
        taken = [worker.offer(frame, 0, now=0.0)]
        assert entered.wait(10.0)  # the worker is now stuck in publish
        taken += [worker.offer(frame, k, now=k * 0.05) for k in range(1, 40)]  # 2 s at 20 Hz
        # 4 Hz over 2 s: every 5th tick (0.25 s), the first at once.
        assert [k for k, t in enumerate(taken) if t] == [0, 5, 10, 15, 20, 25, 30, 35]
        assert worker.replaced >= 6  # the worker was stuck in publish: newer frames replaced
        release.set()
        assert _wait(lambda: len(got) == 2)
        assert got == [0, 35]  # the one in progress, then the newest
        assert worker.offered == 8 and worker.published == 2
    finally:
        release.set()
        worker.close()


def test_worker_survives_a_failing_publish():
    calls: list[int] = []
    errors: list[str] = []

    def flaky(stamp: int, img: np.ndarray) -> None:
        calls.append(stamp)
        if stamp == 1:
            raise RuntimeError("transport gone")

    worker = SaliencyWorker(Policy.from_config(seed=0).head, "rgb", 100.0, flaky, errors.append)
    try:
        frame = np.zeros((3, H, W), dtype=np.float32)
        worker.offer(frame, 1, now=0.0)
        assert _wait(lambda: worker.errors == 1)
        worker.offer(frame, 2, now=1.0)
        assert _wait(lambda: worker.published == 1)
        assert worker.alive and calls == [1, 2]
        assert errors == ["RuntimeError: transport gone"]
    finally:
        worker.close()
    with pytest.raises(ValueError, match="rate_hz"):
        SaliencyWorker(Policy.from_config(seed=0).head, "rgb", 0.0, flaky)


class Rig:
    """The node under test, and a peer with a camera and listeners."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.ns = "/s" + uuid.uuid4().hex[:8]
        self.dut_node = DdsNode("ltc_policy", self.ns, parameters=params)
        self.policy = PolicyNode(self.dut_node)
        self.peer = DdsNode("peer", self.ns, parameter_services=False)
        self.saliency: list[Any] = []
        self.status: list[Any] = []
        self.hbs: list[Any] = []
        self.frames_sent: list[int] = []
        self.peer.create_subscription(
            "sensor_msgs/msg/Image", f"{self.ns}/ltc_policy/saliency", self.saliency.append
        )
        self.peer.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", self.status.append, RELIABLE
        )
        self.peer.create_subscription("std_msgs/msg/Header", "policy_heartbeat", self.hbs.append)
        self.cam = self.peer.create_publisher(
            "sensor_msgs/msg/Image", "camera/image_raw", SENSOR_DATA
        )
        self.rng = np.random.default_rng(0)
        self._next = 0.0

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.dut_node.spin_once(0.002)
            self.peer.spin_once(0.0)
            now = time.monotonic()
            if now >= self._next:
                self._next = now + PERIOD
                stamp = time.time_ns()
                img = self.peer.msg(
                    "sensor_msgs/msg/Image",
                    height=H,
                    width=W,
                    encoding="rgb8",
                    step=3 * W,
                    data=self.rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes(),
                )
                img.header.stamp.sec, img.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                self.cam.publish(img)
                self.frames_sent.append(stamp)
            if until is not None and until():
                return True
        return False

    def close(self) -> None:
        self.policy.close()
        self.peer.shutdown()
        self.dut_node.shutdown()


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**params: Any) -> Rig:
        rigs.append(Rig(params))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def _stamp(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def test_saliency_topic_publishes_overlays_and_ticks_keep_their_deadlines(rig_factory):
    """At 10 Hz (every other camera frame) the overlays arrive, stamped with real camera frames,
    and the control ticks keep the flood test's bars: >= 80 % of the control rate, heartbeats
    >= 50 %, at most 5 % of ticks missing their deadline."""
    rig = rig_factory(**{"saliency.enabled": True, "saliency.rate_hz": 10.0})
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3), "the policy never became healthy"
    s0, h0, st0, t0 = len(rig.saliency), len(rig.hbs), rig.status[-1], time.monotonic()
    rig.spin(4.0)
    dt = time.monotonic() - t0
    st1 = rig.status[-1]
    n_sal = len(rig.saliency) - s0
    ticks = st1.ticks - st0.ticks
    misses = st1.deadline_misses - st0.deadline_misses
    assert n_sal >= 0.5 * 10.0 * dt and n_sal <= 10.0 * dt + 2
    for msg in rig.saliency[s0:]:
        assert (msg.height, msg.width, msg.encoding, msg.step) == (H, W, "rgb8", 3 * W)
        assert len(msg.data) == H * W * 3
        assert _stamp(msg) in set(rig.frames_sent)
    assert ticks >= 0.8 * dt / PERIOD
    assert len(rig.hbs) - h0 >= 0.5 * dt / PERIOD
    assert misses <= 0.05 * ticks
    worker = rig.policy.saliency_worker
    assert worker.errors == 0 and worker.published >= n_sal
    print(f"saliency {n_sal / dt:.1f}/s, ticks {ticks / dt:.1f}/s, misses {misses}/{ticks}")


def test_saliency_can_be_switched_on_at_run_time_and_is_off_by_default(rig_factory):
    rig = rig_factory()
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    assert rig.policy.saliency_worker is None and rig.saliency == []
    n = rig.dut_node
    assert "above the maximum" in n.set_parameters({"saliency.rate_hz": 100.0})
    assert n.set_parameters({"saliency.enabled": True, "saliency.rate_hz": 5.0}) == ""
    assert rig.spin(10.0, lambda: len(rig.saliency) >= 3)
    assert n.set_parameters({"saliency.enabled": False}) == ""
    rig.spin(0.3)
    count = len(rig.saliency)
    rig.spin(1.0)
    assert len(rig.saliency) <= count + 1  # at most one already in flight
