"""The Cyclone DDS backend: name resolution, executor, timers, signals and real pub/sub over
loopback between processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.params import ParamSpec
from ltc_controller.transport import create_node
from ltc_controller.transport import types as msg_types
from ltc_controller.transport.dds import (
    DdsNode,
    NameError_,
    domain_from_env,
    loopback_env,
    resolve_topic_name,
)
from ltc_controller.transport.port import LATCHED, RELIABLE, SENSOR_DATA, QoS

pytestmark = pytest.mark.usefixtures("dds_loopback")


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from dds_pub_helper import make_image  # noqa: E402

# A domain of its own per run, so concurrent test runs on this machine do not meet.


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _spin_until(node: DdsNode, cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        node.spin_once(0.05)
        if cond():
            return True
    return cond()


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ns", "expected"),
    [
        ("/abs/topic", "/robot", "/abs/topic"),
        ("image_raw", "/", "/image_raw"),
        ("camera/image_raw", "/robot", "/robot/camera/image_raw"),
        ("~/status", "/robot", "/robot/ltc_policy/status"),
        ("~/status", "/", "/ltc_policy/status"),
        ("~", "/a/b", "/a/b/ltc_policy"),
        ("{node}/x", "/ns", "/ns/ltc_policy/x"),
    ],
)
def test_topic_names_resolve_like_ros2(name: str, ns: str, expected: str) -> None:
    assert resolve_topic_name(name, "ltc_policy", ns) == expected


def test_remaps_match_on_resolved_names_and_resolve_their_target() -> None:
    remaps = {"image_raw": "/camera/color/image_raw", "/robot/cmd": "drive", "~/status": "st"}
    node, ns = "ltc_policy", "/robot"
    assert resolve_topic_name("image_raw", node, ns, remaps) == "/camera/color/image_raw"
    assert resolve_topic_name("/robot/image_raw", node, ns, remaps) == "/camera/color/image_raw"
    assert resolve_topic_name("cmd", node, ns, remaps) == "/robot/drive"
    assert resolve_topic_name("~/status", node, ns, remaps) == "/robot/st"
    assert resolve_topic_name("other", node, ns, remaps) == "/robot/other"


@pytest.mark.parametrize("bad", ["", "a//b", "trailing/", "1abc", "sp ace", "~x", "a/-b"])
def test_invalid_topic_names_raise(bad: str) -> None:
    with pytest.raises(NameError_):
        resolve_topic_name(bad, "n", "/")


def test_ros_domain_id_parsing() -> None:
    assert domain_from_env({}) == 0
    assert domain_from_env({"ROS_DOMAIN_ID": " 42 "}) == 42
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
        domain_from_env({"ROS_DOMAIN_ID": "x"})
    with pytest.raises(ValueError, match="0..232"):
        domain_from_env({"ROS_DOMAIN_ID": "300"})


def test_create_node_applies_namespace_name_and_remaps_from_ros_args() -> None:
    argv = ["--ros-args", "-r", "__ns:=/car", "-r", "__node:=pilot", "-r", "in:=/cam/image"]
    argv += ["-p", "rate_hz:=20.0"]
    node, args = create_node("ltc_policy", argv, backend="dds")
    assert isinstance(node, DdsNode)
    try:
        assert (node.name, node.namespace) == ("pilot", "/car")
        assert node.resolve("in") == "/cam/image"
        assert node.resolve("~/status") == "/car/pilot/status"
        assert node.parameter_overrides == {"rate_hz": 20.0} == dict(args.params)
        assert node.domain_id == domain_from_env()
    finally:
        node.shutdown()


# -- executor, in one process ---------------------------------------------------------------


def test_in_process_pub_sub_delivers_and_a_raising_callback_never_kills_spin() -> None:
    topic = "/" + _unique("flags")
    with DdsNode("talker") as talker, DdsNode("listener", "/ns") as listener:
        got: list[Any] = []
        listener.create_subscription("std_msgs/msg/Bool", topic, got.append, RELIABLE)
        listener.create_subscription("std_msgs/msg/Bool", topic, lambda m: [][0], RELIABLE)
        pub = talker.create_publisher("std_msgs/msg/Bool", topic, RELIABLE)
        assert _spin_until(listener, lambda: pub.get_subscription_count() >= 2, 5)
        for i in range(5):
            pub.publish(talker.msg("std_msgs/msg/Bool", data=bool(i % 2)))
        assert _spin_until(listener, lambda: len(got) == 5, 5)
        assert [m.data for m in got] == [False, True, False, True, False]
        assert listener.callback_errors == 5
        assert listener.stats()["messages_received"] == 10


def test_latched_topic_reaches_a_late_subscriber() -> None:
    topic = "/" + _unique("estop")
    with DdsNode("pub") as a, DdsNode("late_sub") as b:
        pub = a.create_publisher("std_msgs/msg/Bool", topic, LATCHED)
        pub.publish(a.msg("std_msgs/msg/Bool", data=True))
        got: list[Any] = []
        b.create_subscription("std_msgs/msg/Bool", topic, got.append, LATCHED)
        assert _spin_until(b, lambda: len(got) == 1, 5)
        assert got[0].data is True


def test_writer_leaving_delivers_no_message_and_no_error() -> None:
    topic = "/" + _unique("bye")
    with DdsNode("sub") as b:
        got: list[Any] = []
        b.create_subscription("std_msgs/msg/Bool", topic, got.append, RELIABLE)
        a = DdsNode("pub")
        pub = a.create_publisher("std_msgs/msg/Bool", topic, RELIABLE)
        assert _spin_until(b, lambda: pub.get_subscription_count() == 1, 5)
        pub.publish(a.msg("std_msgs/msg/Bool", data=True))
        assert _spin_until(b, lambda: len(got) == 1, 5)
        a.shutdown()  # unregisters the writer: the reader gets an invalid sample
        pub.publish(a.msg("std_msgs/msg/Bool", data=False))  # no-op after shutdown
        for _ in range(5):
            b.spin_once(0.02)
        assert len(got) == 1 and b.callback_errors == 0


def test_count_publishers_follows_writers_that_match_and_leave() -> None:
    topic = "/" + _unique("estop")
    with DdsNode("sub") as b:
        b.create_subscription("std_msgs/msg/Bool", topic, lambda m: None, LATCHED)
        assert b.count_publishers(topic) == 0
        a, c = DdsNode("pub_a"), DdsNode("pub_c")
        a.create_publisher("std_msgs/msg/Bool", topic, LATCHED)
        c.create_publisher("std_msgs/msg/Bool", topic, LATCHED)
        assert _spin_until(b, lambda: b.count_publishers(topic) == 2, 5)
        a.shutdown()  # a participant that leaves takes its writer with it
        assert _spin_until(b, lambda: b.count_publishers(topic) == 1, 5)
        c.shutdown()
        assert _spin_until(b, lambda: b.count_publishers(topic) == 0, 5)
        with pytest.raises(ValueError, match="no subscription"):
            b.count_publishers("/" + _unique("other"))


def test_timer_keeps_firing_at_its_period_while_no_messages_arrive() -> None:
    with DdsNode("timer_node") as node:
        node.create_subscription("std_msgs/msg/Bool", "/" + _unique("silent"), lambda m: None)
        stamps: list[float] = []
        node.create_timer(0.02, lambda: stamps.append(time.monotonic()))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            node.spin_once(0.1)
        assert 12 <= len(stamps) <= 16
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert sum(gaps) / len(gaps) == pytest.approx(0.02, abs=0.004)


def test_timer_skips_missed_periods_instead_of_bursting() -> None:
    with DdsNode("slow_timer") as node:
        deadlines: list[float] = []  # the next deadline the timer set when it fired

        def slow() -> None:
            deadlines.append(timer.next_s)
            if len(deadlines) == 1:
                time.sleep(0.1)  # five periods late

        timer = node.create_timer(0.02, slow)
        end = time.monotonic() + 0.25
        while time.monotonic() < end:
            node.spin_once(0.1)
        # The timer's own decisions, not this process's scheduling: each firing took one slot
        # of the 20 ms grid and jumped over the missed ones, so no two firings share a slot (a
        # catch-up burst would) and the first one after the stall is at least 5 slots on.
        slots = [round((d - deadlines[0]) / 0.02, 6) for d in deadlines]
        assert all(s == int(s) for s in slots), slots
        assert all(b > a for a, b in zip(slots, slots[1:], strict=False)), slots
        assert len(slots) >= 2 and slots[1] >= 5, slots
        assert timer.skipped >= 4 and len(deadlines) <= 9


def test_cancelled_timer_stops_and_bad_period_raises() -> None:
    with DdsNode("cancel") as node:
        n = [0]
        t = node.create_timer(0.01, lambda: n.__setitem__(0, n[0] + 1))
        _spin_until(node, lambda: n[0] >= 2, 2)
        t.cancel()
        fired = n[0]
        for _ in range(5):
            node.spin_once(0.02)
        assert n[0] == fired
        with pytest.raises(ValueError):
            node.create_timer(0, lambda: None)


def test_spin_returns_on_shutdown_from_a_callback() -> None:
    node = DdsNode("stopper")
    ticks = [0]

    def tick() -> None:
        ticks[0] += 1
        if ticks[0] == 3:
            node.shutdown()

    node.create_timer(0.01, tick)
    t0 = time.monotonic()
    node.spin()
    assert ticks[0] == 3 and time.monotonic() - t0 < 1.0
    assert not node.ok
    with pytest.raises(RuntimeError):
        node.create_publisher("std_msgs/msg/Bool", "x")


def test_spin_in_a_thread_returns_on_shutdown_from_another_thread() -> None:
    import threading

    node = DdsNode("threaded")
    node.create_subscription("std_msgs/msg/Bool", "/" + _unique("idle"), lambda m: None)
    worker = threading.Thread(target=node.spin)
    worker.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    node.shutdown()
    worker.join(2.0)
    assert not worker.is_alive() and time.monotonic() - t0 < 0.5


def test_spin_returns_cleanly_on_sigint_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGINT)
    node = DdsNode("interrupted")
    node.create_timer(0.02, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    node.spin()  # would raise KeyboardInterrupt without the node's handler
    assert time.monotonic() - t0 < 1.0
    assert signal.getsignal(signal.SIGINT) is before


def test_topic_reused_with_another_type_raises() -> None:
    with DdsNode("typed") as node:
        topic = "/" + _unique("t")
        node.create_publisher("std_msgs/msg/Bool", topic)
        with pytest.raises(ValueError, match="already has type"):
            node.create_publisher("geometry_msgs/msg/Twist", topic)


def test_logger_prints_ros_style_lines(capfd: pytest.CaptureFixture[str]) -> None:
    with DdsNode("chatty", "/ns", log_level="debug") as node:
        node.logger.warning("careful")
        node.logger.debug("details")
    err = capfd.readouterr().err
    assert "[WARN] [" in err and "] [chatty]: careful" in err
    assert "[DEBUG]" in err and "details" in err


# -- two processes over loopback --------------------------------------------------------------


def _start_helper(topic: str, reliability: str, count: int, *ros_args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(loopback_env(domain_from_env()))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["LTC_CONTROLLER_TRANSPORT"] = "dds"  # the helper uses DdsNode.resolve
    cmd = [sys.executable, str(HERE / "dds_pub_helper.py"), topic, reliability, str(count)]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_helper(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


def _assert_same_image(got: Any, expected: Any) -> None:
    for field in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(got, field) == getattr(expected, field), field
    assert got.header.stamp.sec == expected.header.stamp.sec
    assert got.header.stamp.nanosec == expected.header.stamp.nanosec
    assert got.header.frame_id == expected.header.frame_id
    assert isinstance(got.data, bytes) and got.data == expected.data


def test_reliable_images_arrive_field_for_field_from_another_process() -> None:
    base = _unique("cam")
    count = 5
    # The helper publishes on a relative name under its namespace, remapped to our topic.
    proc = _start_helper("image", "reliable", count, "-r", "__ns:=/" + base, "-r", "image:=raw")
    with DdsNode("viewer") as node:
        got: list[Any] = []
        node.create_subscription("sensor_msgs/msg/Image", f"/{base}/raw", got.append, RELIABLE)
        try:
            ok = _spin_until(node, lambda: len(got) >= count, 15)
        finally:
            rc, output = _stop_helper(proc)
        assert ok, f"received {len(got)} of {count}; helper said:\n{output}"
        assert [m.header.frame_id for m in got] == [f"camera_optical_{i}" for i in range(count)]
        for i, m in enumerate(got):
            _assert_same_image(m, make_image(node, i))
        assert rc == 0, output  # SIGTERM made the helper's spin() return cleanly
        assert node.callback_errors == 0


def test_best_effort_images_arrive_field_for_field_from_another_process() -> None:
    topic = "/" + _unique("camera") + "/image_raw"
    proc = _start_helper(topic, "best_effort", 0)
    with DdsNode("viewer_be") as node:
        got: list[Any] = []
        node.create_subscription("sensor_msgs/msg/Image", topic, got.append, SENSOR_DATA)
        try:
            ok = _spin_until(node, lambda: len(got) >= 3, 15)
        finally:
            rc, output = _stop_helper(proc)
        assert ok, f"received {len(got)}; helper said:\n{output}"
        for m in got:
            i = m.header.stamp.sec - 1_700_000_000
            _assert_same_image(m, make_image(node, i))
        assert rc == 0, output


def test_three_processes_discover_each_other_over_loopback() -> None:
    topics = ["/" + _unique("p") for _ in range(2)]
    procs = [_start_helper(t, "best_effort", 0) for t in topics]
    with DdsNode("third") as node:
        seen: dict[str, int] = {t: 0 for t in topics}
        for t in topics:

            def cb(m: Any, t: str = t) -> None:
                seen[t] += 1

            node.create_subscription("sensor_msgs/msg/Image", t, cb, QoS("best_effort", depth=2))
        try:
            ok = _spin_until(node, lambda: all(seen.values()), 15)
        finally:
            results = [_stop_helper(p) for p in procs]
        assert ok, f"seen {seen}; helpers said: {results}"
        assert all(rc == 0 for rc, _ in results), results


# -- /rosout ----------------------------------------------------------------------------------


def test_log_records_reach_rosout_as_rcl_interfaces_log_also_for_a_late_subscriber() -> None:
    from rosbags.typesys import Stores, get_typestore

    from ltc_controller.transport.dds import ROSOUT_QOS

    name = _unique("talker")
    with DdsNode(name, "/ns", log_level="debug") as node, DdsNode("rosout_reader") as reader:
        node.logger.info("before anyone listened")
        got: list[Any] = []
        reader.create_subscription("rcl_interfaces/msg/Log", "/rosout", got.append, ROSOUT_QOS)
        mine = lambda: [m for m in got if m.name == f"ns.{name}"]  # noqa: E731
        assert _spin_until(reader, lambda: len(mine()) == 1, 5)  # transient local, as in rcl
        node.logger.warning("careful: %d", 3)
        node.logger.debug("details")
        assert _spin_until(reader, lambda: len(mine()) == 3, 5)
        first, warn, debug = mine()
        assert (first.level, first.msg) == (20, "before anyone listened")
        assert (warn.level, warn.msg) == (30, "careful: 3")
        assert warn.function.startswith("test_log_records_reach_rosout")
        assert warn.file == __file__ and warn.line > 0
        assert abs(warn.stamp.sec + warn.stamp.nanosec * 1e-9 - time.time()) < 5.0
        assert debug.level == 10
        # The bytes are ROS 2's: an independent decoder reads them back.
        back = get_typestore(Stores.ROS2_JAZZY).deserialize_cdr(
            msg_types.serialize(warn), "rcl_interfaces/msg/Log"
        )
        assert (back.level, back.name, back.msg, back.line) == (
            30,
            f"ns.{name}",
            "careful: 3",
            warn.line,
        )
    assert node.rosout is not None and node.rosout.dropped == 0


def test_disable_rosout_logs_publishes_nothing_on_rosout() -> None:
    from ltc_controller.transport.dds import ROSOUT_QOS

    name = _unique("quiet")
    node, args = create_node(name, ["--ros-args", "--disable-rosout-logs"], backend="dds")
    assert args.rosout_logs is False
    with node, DdsNode("rosout_reader2") as reader:
        assert node.rosout is None  # type: ignore[attr-defined]
        got: list[Any] = []
        reader.create_subscription("rcl_interfaces/msg/Log", "/rosout", got.append, ROSOUT_QOS)
        node.logger.warning("not on rosout")
        _spin_until(reader, lambda: False, 1.0)
        assert not [m for m in got if m.name == name]


def test_a_set_is_applied_only_after_it_was_accepted_and_stored() -> None:
    specs = (
        ParamSpec("rate_hz", float, 20.0, "Control rate", unit="Hz", min=1.0, max=100.0),
        ParamSpec("frame_id", str, "base_link", "Frame", read_only=True),
    )
    node = DdsNode("applier", parameter_services=False)
    try:
        node.declare_parameters(specs)
        applied: list[tuple[dict, float]] = []
        node.on_parameters_set(
            lambda ch: "vetoed" if ch.get("rate_hz") == 33.0 else "",
            lambda ch: applied.append((ch, node.get_parameters()["rate_hz"])),
        )
        assert node.set_parameters({"rate_hz": 33.0}) == "vetoed"
        assert "read-only" in node.set_parameters({"frame_id": "odom"})
        assert node.set_parameters({"rate_hz": 500.0}) != ""
        assert applied == []
        assert node.set_parameters({"rate_hz": 50.0}) == ""
        assert applied == [({"rate_hz": 50.0}, 50.0)]
    finally:
        node.shutdown()
