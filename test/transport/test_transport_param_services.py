"""ROS 2 parameter services in DDS mode: a real node process serves get/set/list/describe (and
get_parameter_types, set_parameters_atomically) on rmw_cyclonedds_cpp's topics and wire format;
the client here and the ``ltc-controller param`` CLI call them over loopback.

Run as a script (``python test_ros_params.py``) this file is the node under test: a DdsNode with
the parameters below and a validator, spinning until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ltc_controller.params import COMMON, ParamSpec
from ltc_controller.transport import param_values as pv
from ltc_controller.transport import types as T
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.param_client import ParameterClient, ParameterServiceError
from ltc_controller.transport.param_services import SERVICES, reply_topic, request_topic

pytestmark = pytest.mark.usefixtures("dds_loopback")


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

#: The parameters of the node process (ranges, read-only, choices, units).
SPECS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec("rate_hz", float, 20.0, "Control rate", unit="Hz", min=1.0, max=100.0),
    ParamSpec("retries", int, 3, "Attempts before giving up", min=0, max=10),
    ParamSpec("mode", str, "hold", "Steering in fallback", choices=("hold", "center")),
    ParamSpec("frame_id", str, "base_link", "Frame of the commands", read_only=True),
    ParamSpec("limits.speed_max", float, 8.0, "Speed limit", unit="m/s", min=0.0),
    ParamSpec("limits.accel_max", float, 2.0, "Acceleration limit", unit="m/s^2", min=0.0),
)
#: The node's own validator refuses this value (a reason the specs cannot give).
VETOED_RATE = 33.0


def serve(argv: list[str]) -> int:
    """The node process: declare SPECS, veto VETOED_RATE, spin until SIGTERM."""
    from ltc_controller.transport import create_node

    node, _ = create_node("param_target", argv, backend="dds")
    values = node.declare_parameters(SPECS)

    def validate(changes: dict[str, Any]) -> str:
        if changes.get("rate_hz") == VETOED_RATE:
            return f"rate_hz {VETOED_RATE} Hz beats with the camera"
        return ""

    node.on_parameters_set(validate)
    print(f"serving {sorted(values)}", flush=True)
    node.spin()
    return 0


@pytest.fixture(scope="module")
def env(dds_loopback: int) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    e["LTC_CONTROLLER_TRANSPORT"] = "dds"
    return e


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


@pytest.fixture(scope="module")
def target(env: dict[str, str]) -> Iterator[str]:
    """A node process ``/<ns>/param_target``; yields its fully qualified name."""
    ns = "/" + "t" + uuid.uuid4().hex[:8]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--ros-args", "-r", f"__ns:={ns}", "-p", "retries:=4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield f"{ns}/param_target"
    rc, out = _stop(proc)
    assert rc == 0, out


@pytest.fixture(scope="module")
def client(target: str) -> Iterator[ParameterClient]:
    with ParameterClient(target, timeout_s=20.0) as c:
        assert c.wait_for_services(), "the node's six parameter services never appeared"
        yield c


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ltc_controller", "param", *args, "--timeout", "20"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


# -- wire format ---------------------------------------------------------------------------------


def test_service_topics_and_types_follow_rmw_cyclonedds() -> None:
    assert request_topic("/car/pilot/get_parameters") == "rq/car/pilot/get_parametersRequest"
    assert reply_topic("/car/pilot/get_parameters") == "rr/car/pilot/get_parametersReply"
    cls = T.service_wire_class("rcl_interfaces/srv/SetParameters_Request")
    assert cls.__idl_typename__ == "rcl_interfaces::srv::dds_::SetParameters_Request_"
    assert sorted(SERVICES) == [
        "describe_parameters",
        "get_parameter_types",
        "get_parameters",
        "list_parameters",
        "set_parameters",
        "set_parameters_atomically",
    ]


def test_request_is_16_byte_header_then_the_payload_cdr_of_rosbags() -> None:
    """uint64 guid + int64 seq (little endian), then exactly rosbags' CDR of the payload."""
    store = T.typestore()
    value = store.types["rcl_interfaces/msg/ParameterValue"](
        type=3, double_value=2.5, **_empty_value_fields(store, exclude="double_value")
    )
    theirs = store.types["rcl_interfaces/srv/SetParameters_Request"](
        parameters=[store.types["rcl_interfaces/msg/Parameter"](name="rate_hz", value=value)]
    )
    payload = store.serialize_cdr(theirs, "rcl_interfaces/srv/SetParameters_Request")
    cls = T.service_wire_class("rcl_interfaces/srv/SetParameters_Request")
    ours = cls(
        request_header_guid=0x1122334455667788,
        request_header_seq=-2,
        parameters=[
            T.new_msg(
                "rcl_interfaces/msg/Parameter",
                name="rate_hz",
                value=T.new_msg("rcl_interfaces/msg/ParameterValue", type=3, double_value=2.5),
            )
        ],
    )
    wire = T.serialize(ours)
    assert wire[:4] == bytes(payload[:4])  # same encapsulation (CDR little endian)
    assert wire[4:12] == (0x1122334455667788).to_bytes(8, "little")
    assert wire[12:20] == (-2).to_bytes(8, "little", signed=True)
    assert wire[20:] == bytes(payload[4:])
    back = cls.deserialize(wire)
    assert back.parameters[0].value.double_value == 2.5 and back.request_header_seq == -2


def _empty_value_fields(store: Any, exclude: str) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {
        "bool_value": False,
        "integer_value": 0,
        "double_value": 0.0,
        "string_value": "",
        "byte_array_value": np.zeros(0, np.uint8),
        "bool_array_value": np.zeros(0, bool),
        "integer_array_value": np.zeros(0, np.int64),
        "double_array_value": np.zeros(0, np.float64),
        "string_array_value": [],
    }
    out.pop(exclude)
    return out


def test_descriptor_fields_carry_ranges_read_only_and_constraints() -> None:
    by = {s.name: s for s in SPECS}
    d = pv.descriptor_fields(by["rate_hz"])
    assert d["type"] == pv.DOUBLE and d["floating_point_range"] == [(1.0, 100.0, 0.0)]
    assert d["additional_constraints"] == "unit: Hz" and not d["read_only"]
    assert pv.descriptor_fields(by["retries"])["integer_range"] == [(0, 10, 0)]
    assert pv.descriptor_fields(by["limits.speed_max"])["floating_point_range"][0][1] == float(
        "inf"
    )
    assert pv.descriptor_fields(by["mode"])["additional_constraints"] == "one of: hold, center"
    assert pv.descriptor_fields(by["frame_id"])["read_only"] is True


def test_list_selection_by_prefix_and_depth() -> None:
    names = ["a", "b.c", "b.d.e", "f"]
    assert pv.select_parameters(names) == (names, ["b", "b.d"])
    assert pv.select_parameters(names, ["b"]) == (["b.c", "b.d.e"], ["b", "b.d"])
    assert pv.select_parameters(names, ["b"], depth=1) == (["b.c"], ["b"])
    assert pv.select_parameters(names, [], depth=1) == (["a", "f"], [])


# -- against a node process -------------------------------------------------------------------


def test_list_get_and_types_reflect_the_declarations_and_overrides(client: ParameterClient) -> None:
    names, prefixes = client.list_parameters()
    assert names == sorted(s.name for s in SPECS)
    assert prefixes == ["limits"]
    assert client.list_parameters(["limits"]) == (
        ["limits.accel_max", "limits.speed_max"],
        ["limits"],
    )
    assert client.get(["rate_hz", "retries", "mode", "use_sim_time", "nope"]) == [
        20.0,
        4,  # -p retries:=4 on the command line
        "hold",
        False,
        None,
    ]
    assert client.types(["rate_hz", "retries", "mode", "use_sim_time", "nope"]) == [3, 2, 4, 1, 0]


def test_describe_gives_type_range_read_only_and_description(client: ParameterClient) -> None:
    rate, retries, frame, unknown = client.describe(["rate_hz", "retries", "frame_id", "nope"])
    assert rate["type"] == pv.DOUBLE and rate["description"] == "Control rate"
    assert rate["floating_point_range"] == [(1.0, 100.0, 0.0)] and rate["integer_range"] == []
    assert rate["additional_constraints"] == "unit: Hz" and rate["read_only"] is False
    assert retries["integer_range"] == [(0, 10, 0)]
    assert frame["read_only"] is True and frame["type"] == pv.STRING
    assert unknown["name"] == "nope" and unknown["type"] == pv.NOT_SET


def test_set_is_applied_and_read_back(client: ParameterClient) -> None:
    assert client.set({"rate_hz": 50.0}) == [""]
    assert client.get(["rate_hz"]) == [50.0]


def test_rejected_sets_answer_with_their_reason_and_change_nothing(client: ParameterClient) -> None:
    assert client.set({"rate_hz": 40.0}) == [""]
    reasons = client.set(
        {
            "frame_id": "odom",  # read-only
            "rate_hz": 250.0,  # above the range
            "mode": "spin",  # not a choice
            "retries": 2.0,  # a double for an integer parameter (ROS keeps declared types)
            "nope": 1,  # not declared
        }
    )
    assert reasons == [
        "parameter 'frame_id' is read-only",
        "parameter 'rate_hz': 250.0 is above the maximum 100.0 Hz",
        "parameter 'mode': 'spin' is not one of hold, center",
        "parameter 'retries' is of type integer, setting it to double is not allowed",
        "parameter 'nope' is not declared",
    ]
    assert client.set({"rate_hz": VETOED_RATE}) == [
        f"rate_hz {VETOED_RATE} Hz beats with the camera"
    ]
    assert client.get(["frame_id", "rate_hz", "mode", "retries"]) == ["base_link", 40.0, "hold", 4]


def test_set_atomically_applies_all_or_none(client: ParameterClient) -> None:
    assert client.set_atomically({"limits.speed_max": 6.0, "limits.accel_max": 1.5}) == ""
    reason = client.set_atomically({"limits.speed_max": 5.0, "limits.accel_max": -1.0})
    assert reason == "parameter 'limits.accel_max': -1.0 is below the minimum 0.0 m/s^2"
    assert client.get(["limits.speed_max", "limits.accel_max"]) == [6.0, 1.5]


def test_replies_go_only_to_the_client_that_asked(client: ParameterClient, target: str) -> None:
    """Two clients share the reply topic; each keeps only replies with its own guid."""
    with ParameterClient(target, timeout_s=20.0) as other:
        assert other.get(["mode"]) == ["hold"]
        assert client.get(["mode"]) == ["hold"]
        for c in (other, client):
            for sc in c._clients.values():
                assert not sc.replies  # nothing left over from the other client's calls


def test_cli_set_get_describe_and_refusal(env: dict[str, str], target: str, client: Any) -> None:
    ok = _cli(env, "set", target, "rate_hz", "25")  # an integer is sent as the declared double
    assert ok.returncode == 0 and "Set parameter successful" in ok.stdout, ok.stderr
    got = _cli(env, "get", target, "rate_hz", "mode")
    assert got.returncode == 0 and got.stdout.splitlines() == ["rate_hz: 25.0", "mode: hold"]
    refused = _cli(env, "set", target, "frame_id", "odom")
    assert refused.returncode == 2  # a refused value is bad input, as elsewhere in the CLI
    assert "Setting parameter failed: parameter 'frame_id' is read-only" in refused.stderr
    desc = _cli(env, "describe", target, "rate_hz")
    assert desc.returncode == 0
    assert desc.stdout.splitlines() == [
        "Parameter name: rate_hz",
        "  Type: double",
        "  Description: Control rate",
        "  Constraints:",
        "    Min value: 1.0",
        "    Max value: 100.0",
        "    unit: Hz",
    ]


def test_cli_reports_a_missing_node_with_exit_status_2(env: dict[str, str]) -> None:
    t0 = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "ltc_controller",
        "param",
        "list",
        "/nobody_here",
        "--timeout",
        "1",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no service /nobody_here/list_parameters" in res.stderr
    assert "do not cross DDS vendors" in res.stderr
    assert time.monotonic() - t0 < 30


def test_cli_rejects_an_invalid_node_name_with_exit_status_2(env: dict[str, str]) -> None:
    res = _cli(env, "get", "/bad name", "x")
    assert res.returncode == 2, res.stderr
    assert "invalid" in res.stderr and "'bad name'" in res.stderr
    assert "Traceback" not in res.stderr


def test_client_raises_when_no_node_answers(env: dict[str, str]) -> None:
    with DdsNode("_lonely", parameter_services=False) as node:
        c = ParameterClient("/absent_node", node=node, timeout_s=0.3)
        with pytest.raises(ParameterServiceError, match="absent_node/get_parameters"):
            c.get(["x"])


def test_the_real_safety_node_serves_its_declared_parameters(env: dict[str, str]) -> None:
    """``ltc-controller node safety_fallback`` in DDS mode answers like a ROS 2 node would."""
    from ltc_controller.nodes.safety_node import PARAMS

    ns = "/s" + uuid.uuid4().hex[:8]
    cmd = [sys.executable, "-m", "ltc_controller", "node", "safety_fallback", "--ros-args"]
    proc = subprocess.Popen(
        [*cmd, "-r", f"__ns:={ns}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with ParameterClient(f"{ns}/safety_fallback", timeout_s=30.0) as c:
            names, _ = c.list_parameters()
            assert names == sorted(s.name for s in PARAMS)
            assert c.get([s.name for s in PARAMS]) == [s.default for s in PARAMS]
            read_only = next(s for s in PARAMS if s.read_only)
            assert c.set({read_only.name: read_only.default}) == [
                f"parameter '{read_only.name}' is read-only"
            ]
            ranged = next(
                s for s in PARAMS if s.type is float and s.max is not None and not s.read_only
            )
            too_big = float(ranged.max) + 1.0
            (reason,) = c.set({ranged.name: too_big})
            limit = f"{ranged.max} {ranged.unit}"
            assert reason == f"parameter '{ranged.name}': {too_big} is above the maximum {limit}"
            (desc,) = c.describe([ranged.name])
            assert desc["floating_point_range"][0][1] == ranged.max
            assert c.get([ranged.name]) == [ranged.default]
    finally:
        rc, out = _stop(proc)
    assert rc == 0, out


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))


# -- /parameter_events ---------------------------------------------------------------------------


def test_declared_and_set_parameters_are_published_on_parameter_events(env: dict[str, str]) -> None:
    from ltc_controller.transport.param_services import PARAMETER_EVENTS_QOS

    ns = "/e" + uuid.uuid4().hex[:8]
    with DdsNode("events_reader") as reader:
        got: list[Any] = []
        reader.create_subscription(
            "rcl_interfaces/msg/ParameterEvent",
            "/parameter_events",
            got.append,
            PARAMETER_EVENTS_QOS,
        )
        with DdsNode("evented", ns) as node:
            mine = lambda: [m for m in got if m.node == f"{ns}/evented"]  # noqa: E731

            def wait(n: int) -> bool:
                end = time.monotonic() + 10.0
                while time.monotonic() < end and len(mine()) < n:
                    reader.spin_once(0.05)
                    node.spin_once(0.0)
                return len(mine()) >= n

            # The topic is volatile, as in ROS 2: wait until the reader matched the writer.
            events = node.parameter_server._events
            end = time.monotonic() + 10.0
            while events.get_subscription_count() < 1 and time.monotonic() < end:
                reader.spin_once(0.05)
            node.declare_parameters(SPECS)
            assert wait(1)
            declared = mine()[0]
            new = {p.name: p.value for p in declared.new_parameters}
            assert new["rate_hz"].type == pv.DOUBLE and new["rate_hz"].double_value == 20.0
            assert new["mode"].type == pv.STRING and new["mode"].string_value == "hold"
            assert not declared.changed_parameters and not declared.deleted_parameters
            assert node.set_parameters({"retries": 7}) == ""
            assert node.set_parameters({"retries": 99}) != ""  # above max: refused, no event
            assert wait(2)
            reader.spin_once(0.3)
            assert len(mine()) == 2
            (changed,) = mine()[1].changed_parameters
            assert (changed.name, changed.value.type, changed.value.integer_value) == (
                "retries",
                pv.INTEGER,
                7,
            )
            assert abs(mine()[1].stamp.sec - time.time()) < 5
