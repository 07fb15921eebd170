"""Message types of the DDS backend: XCDR1 bytes equal rosbags' CDR, round trips, defaults."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg

from ltc_controller.transport import types as T

ts = T.typestore()
R = ts.types  # rosbags classes, built independently of our IdlStruct classes


def _stamp(sec: int, nanosec: int) -> tuple[Any, Any]:
    return (
        T.new_msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
        R["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
    )


def _header(frame: str = "camera_optical") -> tuple[Any, Any]:
    ours_t, theirs_t = _stamp(-1_700_000_000, 999_999_999)
    return (
        T.new_msg("std_msgs/msg/Header", stamp=ours_t, frame_id=frame),
        R["std_msgs/msg/Header"](stamp=theirs_t, frame_id=frame),
    )


def _vec(name: str, x: float, y: float, z: float) -> tuple[Any, Any]:
    return (
        T.new_msg(f"geometry_msgs/msg/{name}", x=x, y=y, z=z),
        R[f"geometry_msgs/msg/{name}"](x=x, y=y, z=z),
    )


def _twist(a: float) -> tuple[Any, Any]:
    lo, lt = _vec("Vector3", a, -2.5, 1e-9)
    ao, at = _vec("Vector3", -a, 0.0, 3.25)
    return (
        T.new_msg("geometry_msgs/msg/Twist", linear=lo, angular=ao),
        R["geometry_msgs/msg/Twist"](linear=lt, angular=at),
    )


def case_image() -> tuple[Any, Any]:
    ho, ht = _header()
    data = (np.arange(6 * 5 * 3) % 251).astype(np.uint8)
    kw: dict[str, Any] = dict(height=6, width=5, encoding="rgb8", is_bigendian=0, step=15)
    return (
        T.new_msg("sensor_msgs/msg/Image", header=ho, data=data.tobytes(), **kw),
        R["sensor_msgs/msg/Image"](header=ht, data=data, **kw),
    )


def case_compressed_image() -> tuple[Any, Any]:
    ho, ht = _header("cam")
    data = np.frombuffer(b"\xff\xd8\xff\xe0 jpeg bytes \x00\x01", dtype=np.uint8)
    return (
        T.new_msg("sensor_msgs/msg/CompressedImage", header=ho, format="jpeg", data=data.tobytes()),
        R["sensor_msgs/msg/CompressedImage"](header=ht, format="jpeg", data=data.copy()),
    )


def case_ackermann() -> tuple[Any, Any]:
    ho, ht = _header("base_link")
    vals: dict[str, Any] = dict(
        steering_angle=-0.25,
        steering_angle_velocity=0.5,
        speed=-1.5,
        acceleration=2.0,
        jerk=0.125,
    )
    return (
        T.new_msg(
            "ackermann_msgs/msg/AckermannDriveStamped",
            header=ho,
            drive=T.new_msg("ackermann_msgs/msg/AckermannDrive", **vals),
        ),
        R["ackermann_msgs/msg/AckermannDriveStamped"](
            header=ht, drive=R["ackermann_msgs/msg/AckermannDrive"](**vals)
        ),
    )


def case_twist() -> tuple[Any, Any]:
    return _twist(1.75)


def case_twist_stamped() -> tuple[Any, Any]:
    ho, ht = _header("odom")
    to, tt = _twist(-0.5)
    return (
        T.new_msg("geometry_msgs/msg/TwistStamped", header=ho, twist=to),
        R["geometry_msgs/msg/TwistStamped"](header=ht, twist=tt),
    )


def case_header() -> tuple[Any, Any]:
    return _header("a/frame with spaces ü")


def case_bool() -> tuple[Any, Any]:
    return T.new_msg("std_msgs/msg/Bool", data=True), R["std_msgs/msg/Bool"](data=True)


def case_odometry() -> tuple[Any, Any]:
    ho, ht = _header("odom")
    po, pt = _vec("Point", 1.0, -2.0, 3.5)
    q = dict(x=0.0, y=0.0, z=-0.7071067811865476, w=0.7071067811865476)
    cov = [float(i) - 17.5 for i in range(36)]
    to, tt = _twist(0.3)
    ours = T.new_msg(
        "nav_msgs/msg/Odometry",
        header=ho,
        child_frame_id="base_link",
        pose=T.new_msg(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=T.new_msg(
                "geometry_msgs/msg/Pose",
                position=po,
                orientation=T.new_msg("geometry_msgs/msg/Quaternion", **q),
            ),
            covariance=cov,
        ),
        twist=T.new_msg("geometry_msgs/msg/TwistWithCovariance", twist=to, covariance=cov[::-1]),
    )
    theirs = R["nav_msgs/msg/Odometry"](
        header=ht,
        child_frame_id="base_link",
        pose=R["geometry_msgs/msg/PoseWithCovariance"](
            pose=R["geometry_msgs/msg/Pose"](
                position=pt, orientation=R["geometry_msgs/msg/Quaternion"](**q)
            ),
            covariance=np.array(cov, dtype=np.float64),
        ),
        twist=R["geometry_msgs/msg/TwistWithCovariance"](
            twist=tt, covariance=np.array(cov[::-1], dtype=np.float64)
        ),
    )
    return ours, theirs


def case_diagnostics() -> tuple[Any, Any]:
    ho, ht = _header("")
    statuses = [
        (2, "ltc_policy: deadline", "lag 0.3 s", "jetson0", [("lag_s", "0.3"), ("misses", "17")]),
        (0, "safety_fallback", "", "", []),
    ]
    ours = T.new_msg(
        "diagnostic_msgs/msg/DiagnosticArray",
        header=ho,
        status=[
            T.new_msg(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=lvl,
                name=n,
                message=m,
                hardware_id=hw,
                values=[T.new_msg("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in kv],
            )
            for lvl, n, m, hw, kv in statuses
        ],
    )
    theirs = R["diagnostic_msgs/msg/DiagnosticArray"](
        header=ht,
        status=[
            R["diagnostic_msgs/msg/DiagnosticStatus"](
                level=lvl,
                name=n,
                message=m,
                hardware_id=hw,
                values=[R["diagnostic_msgs/msg/KeyValue"](key=k, value=v) for k, v in kv],
            )
            for lvl, n, m, hw, kv in statuses
        ],
    )
    return ours, theirs


# Values per ROS primitive for the own messages, whose fields change as the nodes grow: every
# field gets a value (none left at its default), built separately for each library.
_SAMPLE = {
    "bool": True,
    "uint8": 2,
    "uint32": 2**31 + 5,
    "int32": -(2**30),
    "uint64": 2**40 + 3,
    "int64": -(2**40),
    "float32": -0.25,
    "float64": 0.0123,
    "string": "stale_frame ü",
}


def _own_case(type_name: str) -> tuple[Any, Any]:
    """Ours and rosbags' message of ``type_name`` with every field set, from rosbags' field
    definitions (nested: std_msgs/Header only)."""
    _, fields = ts.fielddefs[type_name]
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for i, (name, (kind, arg)) in enumerate(fields):
        if kind == 2:  # nested
            assert arg == "std_msgs/msg/Header", arg
            ours[name], theirs[name] = _header(f"frame_{i}")
        elif kind == 1:  # base
            ours[name] = theirs[name] = _SAMPLE[arg[0]]
        else:  # sequence / array of base types
            prim = arg[0][1][0]
            values = [_SAMPLE[prim], _SAMPLE[prim]] if prim != "string" else [name, ""]
            ours[name] = bytes(values) if prim in ("uint8", "byte", "char") else values
            theirs[name] = values if prim == "string" else np.array(values, dtype=prim)
    return T.new_msg(type_name, **ours), R[type_name](**theirs)


def case_policy_status() -> tuple[Any, Any]:
    return _own_case("ltc_controller/msg/PolicyStatus")


def case_safety_status() -> tuple[Any, Any]:
    return _own_case("ltc_controller/msg/SafetyStatus")


CASES = {
    "sensor_msgs/msg/Image": case_image,
    "sensor_msgs/msg/CompressedImage": case_compressed_image,
    "ackermann_msgs/msg/AckermannDriveStamped": case_ackermann,
    "geometry_msgs/msg/Twist": case_twist,
    "geometry_msgs/msg/TwistStamped": case_twist_stamped,
    "std_msgs/msg/Header": case_header,
    "std_msgs/msg/Bool": case_bool,
    "nav_msgs/msg/Odometry": case_odometry,
    "diagnostic_msgs/msg/DiagnosticArray": case_diagnostics,
    "ltc_controller/msg/PolicyStatus": case_policy_status,
    "ltc_controller/msg/SafetyStatus": case_safety_status,
}


@pytest.mark.parametrize("type_name", list(CASES))
def test_xcdr1_bytes_equal_rosbags_cdr(type_name: str) -> None:
    ours, theirs = CASES[type_name]()
    data = ours.serialize()
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR_LE encapsulation, XCDR1
    assert data == bytes(ts.serialize_cdr(theirs, type_name))
    assert T.serialize(ours) == data


@pytest.mark.parametrize("type_name", list(CASES))
def test_deserialization_round_trips_through_both_libraries(type_name: str) -> None:
    ours, _ = CASES[type_name]()
    data = T.serialize(ours)
    assert T.deserialize(type_name, data) == ours
    # rosbags decodes our bytes into the same message, and its conversion maps back.
    assert T.from_rosbags(ts.deserialize_cdr(data, type_name)) == ours
    assert bytes(ts.serialize_cdr(T.to_rosbags(ours), type_name)) == data


def test_dds_type_names_follow_rmw_convention() -> None:
    cls = T.idl_class("sensor_msgs/msg/Image")
    assert cls.__idl__.idl_transformed_typename == "sensor_msgs::msg::dds_::Image_"
    assert T.dds_type_name("ltc_controller/msg/PolicyStatus") == (
        "ltc_controller::msg::dds_::PolicyStatus_"
    )


def test_classes_are_cached() -> None:
    assert T.idl_class("std_msgs/msg/Header") is T.idl_class("std_msgs/msg/Header")


def test_new_msg_fills_ros_defaults_for_unset_fields() -> None:
    m = T.new_msg("nav_msgs/msg/Odometry")
    assert m.header.stamp.sec == 0 and m.header.frame_id == ""
    assert m.pose.covariance == [0.0] * 36
    assert m.pose.pose.orientation.w == 0.0  # ROS 2 Jazzy .msg has no default for w
    img = T.new_msg("sensor_msgs/msg/Image")
    assert img.data == b"" and img.encoding == ""
    # Mutable defaults are per instance.
    a, b = T.new_msg("std_msgs/msg/Header"), T.new_msg("std_msgs/msg/Header")
    a.stamp.sec = 5
    assert b.stamp.sec == 0


def test_unknown_type_and_field_raise_clear_errors() -> None:
    with pytest.raises(T.UnknownTypeError, match="nope_msgs/msg/Nope"):
        T.new_msg("nope_msgs/msg/Nope")
    with pytest.raises(TypeError):
        T.new_msg("std_msgs/msg/Bool", dta=True)


def test_constants_are_reachable_as_dict_and_class_attributes() -> None:
    assert T.constants("ltc_controller/msg/PolicyStatus") == {
        "HEALTH_OK": 0,
        "HEALTH_DEGRADED": 1,
        "HEALTH_FAULT": 2,
    }
    assert T.constants("ltc_controller/msg/SafetyStatus")["STATE_ESTOP"] == 3
    msg = T.new_msg("ltc_controller/msg/PolicyStatus")
    assert msg.HEALTH_FAULT == 2
    assert T.idl_class("diagnostic_msgs/msg/DiagnosticStatus").ERROR == 2


def test_image_data_maps_to_bytes_not_a_list_of_ints() -> None:
    img = T.new_msg("sensor_msgs/msg/Image", height=480, width=640, encoding="rgb8", step=1920)
    img.data = bytes(range(256)) * (640 * 480 * 3 // 256)
    back = T.deserialize("sensor_msgs/msg/Image", T.serialize(img))
    assert isinstance(back.data, bytes) and back.data == img.data


def test_image_data_accepts_a_numpy_frame() -> None:
    frame = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    img = T.new_msg("sensor_msgs/msg/Image", height=4, width=3, encoding="rgb8", step=9)
    img.data = frame
    back = T.deserialize("sensor_msgs/msg/Image", T.serialize(img))
    assert back.data == frame.tobytes()


def test_type_hash_is_rihs01() -> None:
    h = T.type_hash("sensor_msgs/msg/Image")
    assert h.startswith("RIHS01_") and len(h) == 7 + 64


ALL_TYPES_MSG = """
bool b
byte o
char c
int8 i8
uint8 u8
int16 i16
uint16 u16
int32 i32
uint32 u32
int64 i64
uint64 u64
float32 f32
float64 f64
string s
string<=8 bs
float64[3] fixed
uint8[4] raw4
string[2] names
int32[] ints
int16[<=4] bounded_ints
uint8[<=6] bounded_bytes
byte[] octets
bool[] flags
string<=5[<=3] bounded_strings
builtin_interfaces/Time[2] times
std_msgs/Header[] headers
int32 ANSWER=42
string GREETING="hi"
"""


def test_every_ros_field_kind_serializes_like_rosbags() -> None:
    name = "ltc_test_msgs/msg/AllTypes"
    if name not in ts.fielddefs:
        ts.register(get_types_from_msg(ALL_TYPES_MSG, name))
    vals: dict[str, Any] = dict(
        b=True,
        o=127,  # rosbags packs byte as signed, ROS 2 as octet: agree on 0..127
        c=65,
        i8=-128,
        u8=200,
        i16=-30000,
        u16=65000,
        i32=-(2**31),
        u32=2**32 - 1,
        i64=-(2**63),
        u64=2**64 - 1,
        f32=-1.5,
        f64=3.141592653589793,
        s="ünïcode",
        bs="bounded",
        names=["a", "bc"],
        bounded_strings=["x", "yz"],
    )
    ho, ht = _header("h")
    t1o, t1t = _stamp(1, 2)
    t2o, t2t = _stamp(-3, 4)
    ours = T.new_msg(
        name,
        fixed=[1.0, -2.0, 3.5],
        raw4=bytearray(b"\x01\x02\x03\x04"),
        ints=[-1, 2, -3],
        bounded_ints=[7, -8],
        bounded_bytes=b"\x00\xff\x10",
        octets=b"\x09\x08",
        flags=[True, False, True],
        times=[t1o, t2o],
        headers=[ho],
        **vals,
    )
    theirs = R[name](
        fixed=np.array([1.0, -2.0, 3.5]),
        raw4=np.array([1, 2, 3, 4], dtype=np.uint8),
        ints=np.array([-1, 2, -3], dtype=np.int32),
        bounded_ints=np.array([7, -8], dtype=np.int16),
        bounded_bytes=np.array([0, 255, 16], dtype=np.uint8),
        octets=np.array([9, 8], dtype=np.uint8),
        flags=np.array([True, False, True]),
        times=[t1t, t2t],
        headers=[ht],
        **vals,
    )
    data = T.serialize(ours)
    assert data == bytes(ts.serialize_cdr(theirs, name))
    assert T.deserialize(name, data) == ours
    assert T.constants(name) == {"ANSWER": 42, "GREETING": "hi"}
