"""The rclpy backend, and DDS-mode nodes seen from rclpy (ROS graph, parameter services, topics).

The backend tests need a ROS 2 install (``source /opt/ros/<distro>/setup.bash``) and are skipped,
with the reason shown, where rclpy does not import. The cross tests with a DDS-mode node also need
rclpy on ``rmw_cyclonedds_cpp`` (set by ``RMW_IMPLEMENTATION``, or the install's only RMW; ROS 2
services do not cross DDS vendors). Backend selection is tested everywhere.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ltc_controller.params import COMMON, ParamSpec
from ltc_controller.transport import BACKEND_ENV, rclpy_available, select_backend
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE

needs_rclpy = pytest.mark.skipif(
    not rclpy_available(), reason="rclpy does not import here (no sourced ROS 2 install)"
)


def _rmw() -> str:
    """The RMW rclpy loads here (``RMW_IMPLEMENTATION``, else the install's default: with
    Cyclone as the only RMW built, it is Cyclone without the variable being set)."""
    if not rclpy_available():
        return ""
    try:
        from rclpy.utilities import get_rmw_implementation_identifier

        return str(get_rmw_implementation_identifier())
    except Exception:  # noqa: BLE001 - an RMW that does not load is not Cyclone
        return os.environ.get("RMW_IMPLEMENTATION", "")


needs_cyclone_rmw = pytest.mark.skipif(
    _rmw() != "rmw_cyclonedds_cpp",
    reason="needs rclpy on rmw_cyclonedds_cpp (DDS-mode services are rmw_cyclonedds_cpp's wire "
    "format; ROS 2 services do not cross DDS vendors)",
)

SPECS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec("rate_hz", float, 20.0, "Control rate", unit="Hz", min=1.0, max=100.0),
    ParamSpec("retries", int, 3, "Attempts", min=0, max=10),
    ParamSpec("mode", str, "hold", "Fallback steering", choices=("hold", "center")),
    ParamSpec("frame_id", str, "base_link", "Frame", read_only=True),
)


# -- backend selection (runs everywhere) ---------------------------------------------------------


pytestmark = pytest.mark.usefixtures("dds_loopback")


def test_backend_selection_follows_option_then_env_then_availability() -> None:
    auto = "rclpy" if rclpy_available() else "dds"
    assert select_backend(None, {}) == auto
    assert select_backend(None, {BACKEND_ENV: "auto"}) == auto
    assert select_backend(None, {BACKEND_ENV: "DDS"}) == "dds"
    assert select_backend("dds", {BACKEND_ENV: "rclpy"}) == "dds"
    with pytest.raises(ValueError, match=BACKEND_ENV):
        select_backend("zenoh", {})


@pytest.mark.skipif(rclpy_available(), reason="rclpy imports here")
def test_asking_for_rclpy_without_ros_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="source a ROS 2 setup"):
        select_backend("rclpy", {})


def test_create_node_with_dds_backend_gives_a_dds_node() -> None:
    from ltc_controller.transport import create_node

    node, args = create_node("picked", ["--ros-args", "-r", "__ns:=/sel"], backend="dds")
    try:
        assert isinstance(node, DdsNode) and node.namespace == "/sel" == args.namespace
    finally:
        node.shutdown()


@pytest.mark.parametrize("backend", ["dds", pytest.param("rclpy", marks=needs_rclpy)])
@pytest.mark.parametrize("how", ["-p", "params-file"])
def test_a_misspelled_parameter_stops_the_node_naming_it_on_both_backends(
    backend: str, how: str, tmp_path: Any
) -> None:
    from ltc_controller.params import ParameterError
    from ltc_controller.transport import create_node

    if how == "-p":
        ros_args = ["-p", "rate_hzz:=3.0"]
    else:
        f = tmp_path / "p.yaml"
        f.write_text("/**:\n  ros__parameters:\n    rate_hzz: 3.0\n    retries: 2\n")
        ros_args = ["--params-file", str(f)]
    ns = "/" + "m" + uuid.uuid4().hex[:6]
    node, _ = create_node(
        "misspelled", ["--ros-args", "-r", f"__ns:={ns}", *ros_args], backend=backend
    )
    try:
        with pytest.raises(ParameterError, match=r"unknown parameter\(s\): rate_hzz \(declared: "):
            node.declare_parameters(SPECS)
    finally:
        node.shutdown()


@pytest.mark.parametrize("backend", ["dds", pytest.param("rclpy", marks=needs_rclpy)])
def test_overrides_apply_in_command_line_order_on_both_backends(
    backend: str, tmp_path: Any
) -> None:
    # The shape of config/vehicle.yaml: a wildcard block first, then the node's own key. rcl
    # alone lets the node key win over the later wildcard -p (rate_hz would stay 7.0).
    from ltc_controller.transport import create_node

    f = tmp_path / "p.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: false\n"
        "/**/ordered:\n  ros__parameters:\n    rate_hz: 7.0\n    retries: 2\n    mode: center\n"
    )
    ns = "/" + "o" + uuid.uuid4().hex[:6]
    argv = ["--ros-args", "-r", f"__ns:={ns}", "-p", "retries:=9", "--params-file", str(f)]
    argv += ["-p", "rate_hz:=40.0", "-p", "ordered:mode:=hold", "-p", "other:retries:=5"]
    node, _ = create_node("ordered", argv, backend=backend)
    try:
        values = node.declare_parameters(SPECS)
    finally:
        node.shutdown()
    # -p after the file wins (also node-prefixed); the file wins over the -p before it; a rule
    # for another node does not apply.
    assert (values["rate_hz"], values["retries"], values["mode"]) == (40.0, 2, "hold")


# -- rclpy backend -------------------------------------------------------------------------------


def _rclpy_node(*ros_args: str, name: str = "backend_test") -> Any:
    from ltc_controller.transport.rclpy_backend import RclpyNode

    argv = ["--ros-args", *ros_args] if ros_args else []
    return RclpyNode(name, argv, "/" + "r" + uuid.uuid4().hex[:6])


def _spin_until(node: Any, cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=node._context)
    ex.add_node(node.ros_node)
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end and not cond():
            ex.spin_once(timeout_sec=0.02)
    finally:
        ex.remove_node(node.ros_node)
    return cond()


@needs_rclpy
def test_rclpy_parameters_have_descriptors_with_ranges_and_read_only() -> None:
    node = _rclpy_node("-p", "retries:=4")
    try:
        values = node.declare_parameters(SPECS)
        assert values == {
            "use_sim_time": False,
            "rate_hz": 20.0,
            "retries": 4,
            "mode": "hold",
            "frame_id": "base_link",
        }
        rate, retries, frame = node.ros_node.describe_parameters(["rate_hz", "retries", "frame_id"])
        fr = rate.floating_point_range[0]
        assert (fr.from_value, fr.to_value, fr.step) == (1.0, 100.0, 0.0)
        assert rate.description == "Control rate" and rate.additional_constraints == "unit: Hz"
        ir = retries.integer_range[0]
        assert (ir.from_value, ir.to_value) == (0, 10)
        assert frame.read_only
    finally:
        node.shutdown()


@needs_rclpy
def test_rclpy_sets_go_through_range_read_only_and_the_node_validator() -> None:
    node = _rclpy_node()
    try:
        node.declare_parameters(SPECS)
        node.on_parameters_set(lambda ch: "vetoed" if ch.get("rate_hz") == 33.0 else "")
        assert node.set_parameters({"rate_hz": 50.0}) == ""
        assert node.get_parameters()["rate_hz"] == 50.0
        assert "read-only" in node.set_parameters({"frame_id": "odom"})
        assert node.set_parameters({"rate_hz": 33.0}) == "vetoed"
        # Through rclpy itself (as `ros2 param set` does): rclpy's range check, then ours.
        from rclpy.parameter import Parameter

        result = node.ros_node.set_parameters([Parameter("rate_hz", value=250.0)])[0]
        assert not result.successful and "out of range" in result.reason.lower()
        result = node.ros_node.set_parameters([Parameter("mode", value="spin")])[0]
        assert not result.successful and "not one of hold, center" in result.reason
        assert node.get_parameters()["rate_hz"] == 50.0
    finally:
        node.shutdown()


@needs_rclpy
def test_rclpy_applies_a_set_only_after_it_was_accepted_and_stored() -> None:
    node = _rclpy_node()
    try:
        node.declare_parameters(SPECS)
        applied: list[tuple[dict, float]] = []
        node.on_parameters_set(
            lambda ch: "vetoed" if ch.get("rate_hz") == 33.0 else "",
            lambda ch: applied.append((ch, node.get_parameters()["rate_hz"])),
        )
        assert node.set_parameters({"rate_hz": 33.0}) == "vetoed"
        assert "read-only" in node.set_parameters({"frame_id": "odom"})
        assert applied == []
        assert node.set_parameters({"rate_hz": 50.0}) == ""
        assert applied == [({"rate_hz": 50.0}, 50.0)]  # the value was stored when apply ran
    finally:
        node.shutdown()


@needs_rclpy
def test_rclpy_out_of_range_override_is_a_parameter_error() -> None:
    from ltc_controller.params import ParameterError

    node = _rclpy_node("-p", "rate_hz:=500.0")
    try:
        with pytest.raises(ParameterError, match="rate_hz"):
            node.declare_parameters(SPECS)
    finally:
        node.shutdown()


@needs_rclpy
def test_rclpy_timers_use_the_steady_clock_and_stamps_follow_sim_time() -> None:
    from rclpy.clock import ClockType

    node = _rclpy_node("-p", "use_sim_time:=true")
    clock_node = _rclpy_node(name="clock_source")
    try:
        node.declare_parameters(SPECS)
        timer = node.create_timer(0.01, lambda: None)
        assert timer.clock.clock_type == ClockType.STEADY_TIME
        assert node.now() == 0.0  # no /clock yet
        pub = clock_node.create_publisher("rosgraph_msgs/msg/Clock", "/clock", RELIABLE)
        msg = clock_node.msg("rosgraph_msgs/msg/Clock")
        msg.clock.sec, msg.clock.nanosec = 1234, 500_000_000

        def stamped() -> bool:
            pub.publish(msg)
            return node.now() == pytest.approx(1234.5)

        assert _spin_until(node, stamped)
        fired: list[float] = []
        node.create_timer(0.02, lambda: fired.append(node.steady()))
        assert _spin_until(node, lambda: len(fired) >= 3, 5.0)  # /clock frozen, timer fires
    finally:
        node.shutdown()
        clock_node.shutdown()


@needs_rclpy
def test_rclpy_msg_maps_type_names_to_generated_classes() -> None:
    node = _rclpy_node()
    try:
        img = node.msg("sensor_msgs/msg/Image", height=2, width=3, encoding="rgb8")
        from sensor_msgs.msg import Image

        assert isinstance(img, Image) and (img.height, img.width) == (2, 3)
    finally:
        node.shutdown()


# -- DDS-mode nodes seen from rclpy (rmw_cyclonedds_cpp) -----------------------------------------


@needs_cyclone_rmw
def test_rclpy_lists_a_dds_node_and_reads_its_topic() -> None:
    ns = "/x" + uuid.uuid4().hex[:6]
    observer = _rclpy_node(name="observer")
    got: list[Any] = []
    try:
        with DdsNode("dds_talker", ns) as talker:
            pub = talker.create_publisher("std_msgs/msg/String", "chatter", RELIABLE)
            observer.create_subscription("std_msgs/msg/String", f"{ns}/chatter", got.append)

            def seen() -> bool:
                talker.spin_once(0.0)
                pub.publish(talker.msg("std_msgs/msg/String", data="hello"))
                names = observer.ros_node.get_node_names_and_namespaces()
                return ("dds_talker", ns) in names and bool(got)

            assert _spin_until(observer, seen, 15.0)
            assert got[0].data == "hello"
    finally:
        observer.shutdown()


@needs_cyclone_rmw
def test_rclpy_parameter_client_sets_a_dds_node_parameter() -> None:
    import threading

    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    ns = "/p" + uuid.uuid4().hex[:6]
    caller = _rclpy_node(name="caller")
    target = DdsNode("dds_target", ns)
    target.declare_parameters(SPECS)
    spinner = threading.Thread(target=target.spin)
    spinner.start()
    try:
        cli = caller.ros_node.create_client(SetParameters, f"{ns}/dds_target/set_parameters")
        assert _spin_until(caller, cli.service_is_ready, 15.0)
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=42.0)
        future = cli.call_async(
            SetParameters.Request(parameters=[ParameterMsg(name="rate_hz", value=value)])
        )
        assert _spin_until(caller, future.done, 10.0)
        assert future.result().results[0].successful
        assert target.get_parameters()["rate_hz"] == 42.0
    finally:
        target.shutdown()
        spinner.join(5)
        caller.shutdown()


# -- lifecycle: rclpy's own (rcl_lifecycle) and a DDS-mode node driven from rclpy ---------------


def _lifecycle_callbacks(calls: list[str], fail: str = "") -> dict[Any, Any]:
    from ltc_controller.transport.lifecycle import State

    def make(state: State) -> Callable[[], str]:
        def cb() -> str:
            calls.append(state.name.lower())
            return "refused" if state.name.lower() == fail else ""

        return cb

    states = (State.CONFIGURING, State.ACTIVATING, State.DEACTIVATING, State.CLEANINGUP)
    return {s: make(s) for s in (*states, State.SHUTTINGDOWN, State.ERRORPROCESSING)}


@needs_rclpy
def test_rclpy_managed_node_runs_the_callbacks_through_rcl_lifecycle() -> None:
    import threading

    from lifecycle_msgs.srv import GetState

    from ltc_controller.transport.rclpy_backend import RclpyNode

    ns = "/l" + uuid.uuid4().hex[:6]
    node = RclpyNode("managed", [], ns, managed=True)
    caller = _rclpy_node(name="lc_caller")
    calls: list[str] = []
    spinner: threading.Thread | None = None
    try:
        lc = node.manage_lifecycle(_lifecycle_callbacks(calls, fail="cleaningup"))
        assert lc.state == "unconfigured"
        assert "no transition 'activate'" in lc.trigger("activate")
        assert lc.trigger("configure") == "" and lc.trigger("activate") == ""
        assert lc.state == "active"
        assert lc.trigger("deactivate") == "" and lc.trigger("cleanup") != ""
        assert lc.state == "inactive"  # a failed cleanup stays inactive
        assert calls == ["configuring", "activating", "deactivating", "cleaningup"]
        # rclpy serves ~/get_state itself (the node spinning as in its process).
        spinner = threading.Thread(target=node.spin)
        spinner.start()
        cli = caller.ros_node.create_client(GetState, f"{ns}/managed/get_state")
        assert _spin_until(caller, cli.service_is_ready, 15.0)
        future = cli.call_async(GetState.Request())
        assert _spin_until(caller, future.done, 10.0)
        assert future.result().current_state.label == "inactive"
    finally:
        node.shutdown()
        if spinner is not None:
            spinner.join(5)
        caller.shutdown()


@needs_cyclone_rmw
def test_rclpy_lifecycle_client_drives_a_dds_mode_managed_node() -> None:
    import threading

    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState

    ns = "/m" + uuid.uuid4().hex[:6]
    caller = _rclpy_node(name="lc_manager")
    target = DdsNode("dds_managed", ns)
    calls: list[str] = []
    lc = target.manage_lifecycle(_lifecycle_callbacks(calls))
    spinner = threading.Thread(target=target.spin)
    spinner.start()

    def call(srv: Any, name: str, request: Any) -> Any:
        cli = caller.ros_node.create_client(srv, f"{ns}/dds_managed/{name}")
        assert _spin_until(caller, cli.service_is_ready, 15.0), name
        future = cli.call_async(request)
        assert _spin_until(caller, future.done, 10.0), name
        return future.result()

    try:
        assert call(GetState, "get_state", GetState.Request()).current_state.label == (
            "unconfigured"
        )
        for label in ("configure", "activate"):
            req = ChangeState.Request(transition=Transition(label=label))
            assert call(ChangeState, "change_state", req).success, label
        assert lc.state == "active" and calls == ["configuring", "activating"]
        avail = call(
            GetAvailableTransitions, "get_available_transitions", GetAvailableTransitions.Request()
        )
        assert [t.transition.label for t in avail.available_transitions] == [
            "deactivate",
            "shutdown",
        ]
    finally:
        target.shutdown()
        spinner.join(5)
        caller.shutdown()


@needs_rclpy
def test_rclpy_node_stays_usable_after_a_stop_from_a_callback_until_shutdown() -> None:
    # run_node's order: spin until a stop, then the node class's close() still publishes (the
    # safety node's brake ramp, the simulator's timers), then shutdown() destroys the node.
    node = _rclpy_node()
    pub = node.create_publisher("std_msgs/msg/String", "after_stop", RELIABLE)
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        node.shutdown()  # from the spinning thread: stops the spin only

    timer = node.create_timer(0.01, tick)
    node.spin()
    assert ticks
    pub.publish(node.msg("std_msgs/msg/String", data="still here"))  # no InvalidHandle
    timer.cancel()
    node.shutdown()
    assert not node._context.ok()
