"""Reading demonstrations from any rosbag2: topic choice, pairing by stamp, segments, windows,
timespans, and clear errors for missing topics."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from ltc_controller.interfaces import typestore
from ltc_controller.interfaces.command_axes import AXES, TWIST_STAMPED
from ltc_controller.training.bag import (
    TopicNotFoundError,
    bag_topics,
    command_fields_of,
    output_name,
    output_unit,
    read_demonstrations,
)
from ltc_controller.training.trainer import frame_periods_ns, make_windows, window_steps


def _hdr(store, ns):
    T = store.types
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id="x"
    )


def _write_bag(path, image_stamps_ns, cmd_stamps_ns, storage=StoragePlugin.SQLITE3, bgr=False):
    """Images whose pixel value encodes the frame index; commands whose steering is stamp_s."""
    store = typestore()
    T = store.types
    with Writer(path, version=9, storage_plugin=storage) as w:
        ci = w.add_connection("/cam/front", "sensor_msgs/msg/Image", typestore=store)
        cc = w.add_connection("/drive", "ackermann_msgs/msg/AckermannDriveStamped", typestore=store)
        co = w.add_connection("/other", "std_msgs/msg/Header", typestore=store)
        events = [(t, "i", k) for k, t in enumerate(image_stamps_ns)]
        events += [(t, "c", k) for k, t in enumerate(cmd_stamps_ns)]
        for t, kind, k in sorted(events):
            if kind == "i":
                px = np.zeros((6, 10, 3), np.uint8)
                px[..., 0] = k  # red channel = frame index
                if bgr:
                    px = px[..., ::-1]
                msg = T["sensor_msgs/msg/Image"](
                    header=_hdr(store, t),
                    height=6,
                    width=10,
                    encoding="bgr8" if bgr else "rgb8",
                    is_bigendian=0,
                    step=30,
                    data=px.reshape(-1),
                )
                w.write(ci, t + 7_000_000, store.serialize_cdr(msg, msg.__msgtype__))
            else:
                drive = T["ackermann_msgs/msg/AckermannDrive"](
                    steering_angle=t * 1e-9,
                    steering_angle_velocity=0.0,
                    speed=5.0,
                    acceleration=0.0,
                    jerk=0.0,
                )
                msg = T["ackermann_msgs/msg/AckermannDriveStamped"](
                    header=_hdr(store, t), drive=drive
                )
                w.write(cc, t + 3_000_000, store.serialize_cdr(msg, msg.__msgtype__))
        w.write(co, 1, store.serialize_cdr(_hdr(store, 1), "std_msgs/msg/Header"))


def test_images_pair_with_the_nearest_command_stamp_not_the_bag_time(tmp_path):
    # Images at 20 Hz from 1 s; commands at 50 Hz offset by 4 ms.
    img = [10**9 + k * 50_000_000 for k in range(20)]
    cmd = [10**9 + 4_000_000 + k * 20_000_000 for k in range(50)]
    _write_bag(tmp_path / "b", img, cmd)
    d = read_demonstrations(tmp_path / "b", "/cam/front", "/drive", height=6, width=10)
    assert len(d) == 20 and d.output_names == ("steering_angle",)
    want = [min(cmd, key=lambda c, i=i: abs(c - i)) * 1e-9 for i in img]
    np.testing.assert_allclose(d.targets[:, 0], want, rtol=1e-6)
    np.testing.assert_array_equal(d.stamps_ns, img)  # integer ns, as recorded
    np.testing.assert_allclose(d.stamps, np.array(img) * 1e-9)
    assert list(d.images[:, 0, 0, 0]) == list(range(20))
    assert d.stats["paired"] == 20 and d.stats["unpaired"] == 0


def test_images_without_a_command_in_tolerance_are_dropped_and_gaps_start_segments(tmp_path):
    img = [k * 50_000_000 + 10**9 for k in range(10)] + [
        5 * 10**9 + k * 50_000_000 for k in range(10)
    ]
    cmd = [t for t in img if t != img[3]]  # frame 3 has no command
    _write_bag(tmp_path / "b", img, cmd, storage=StoragePlugin.MCAP, bgr=True)
    d = read_demonstrations(
        tmp_path / "b", "/cam/front", "/drive", height=6, width=10, max_pair_dt_s=0.02
    )
    assert len(d) == 19 and d.stats["unpaired"] == 1
    assert 3 not in set(d.images[:, 0, 0, 0].tolist())  # bgr8 decoded: red = index
    # Segments: the 100 ms hole at frame 3 is inside max_gap (0.3 s); the 3.55 s jump is not.
    assert list(np.unique(d.segment)) == [0, 1]
    assert (d.segment == 0).sum() == 9
    periods = frame_periods_ns(d)
    assert periods.dtype == np.int64 and d.stamps_ns.dtype == np.int64
    assert periods[0] == 50_000_000 and periods[3] == 100_000_000
    assert periods[9] == 50_000_000  # first frame of segment 1: the median period
    # A window's grid starts one period before its first frame: every frame is held over the
    # interval before it, in whole 50 ms steps (the runtime's rule on integer ns).
    idx = np.array([[0, 1, 2, 3], [9, 10, 11, 12]])
    assert window_steps(d.stamps_ns, periods, idx, 50_000_000).tolist() == [
        [1, 1, 1, 2],
        [1, 1, 1, 1],
    ]


def test_missing_topic_error_names_it_and_lists_the_bag_topics(tmp_path):
    _write_bag(tmp_path / "b", [10**9], [10**9])
    with pytest.raises(TopicNotFoundError) as e:
        read_demonstrations(tmp_path / "b", "/camera/image_raw", "/drive")
    msg = str(e.value)
    assert "'/camera/image_raw'" in msg
    assert "/cam/front (sensor_msgs/msg/Image)" in msg and "/other (std_msgs/msg/Header)" in msg
    assert bag_topics(tmp_path / "b")["/drive"] == "ackermann_msgs/msg/AckermannDriveStamped"


def test_train_command_reports_a_missing_topic_cleanly(tmp_path, capsys):
    from ltc_controller.cli import main

    _write_bag(tmp_path / "b", [10**9], [10**9])
    rc = main(
        [
            "train",
            "--bag",
            str(tmp_path / "b"),
            "--image-topic",
            "/cam/front",
            "--command-topic",
            "/cmd_vel",
            "--output",
            str(tmp_path / "p.safetensors"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "no command topic '/cmd_vel'" in err and "/drive (ackermann_msgs" in err
    assert not (tmp_path / "p.safetensors").exists()


def test_windows_stay_inside_segments():
    seg = np.array([0] * 10 + [1] * 3 + [2] * 7)
    starts = make_windows(seg, 4, 4)
    assert list(starts) == [0, 4, 13]
    for s in make_windows(seg, 4, 2, phase=1):
        assert len(set(seg[s : s + 4])) == 1


@pytest.mark.parametrize(
    ("msgtype", "field", "name"),
    [
        ("ackermann_msgs/msg/AckermannDriveStamped", "drive.steering_angle", "steering_angle"),
        ("ackermann_msgs/msg/AckermannDriveStamped", "drive.speed", "speed"),
        ("ackermann_msgs/msg/AckermannDrive", "steering_angle", "steering_angle"),
        ("geometry_msgs/msg/Twist", "angular.z", "angular_z"),
        ("geometry_msgs/msg/Twist", "linear.y", "linear_y"),
        ("geometry_msgs/msg/TwistStamped", "twist.linear.x", "linear_x"),
        ("geometry_msgs/msg/TwistStamped", "twist.angular.x", "twist_angular_x"),
        ("ackermann_msgs/msg/AckermannDriveStamped", "drive.jerk", "drive_jerk"),
    ],
)
def test_outputs_are_named_after_the_command_axis_their_field_carries(msgtype, field, name):
    # The names ltc_policy maps (nodes.commands.AXES); a Twist's angular.z was once named "z".
    assert output_name(msgtype, field) == name


def test_all_fields_of_a_twist_are_its_four_command_axes_in_node_order():
    fields = command_fields_of("geometry_msgs/msg/TwistStamped", ["all"])
    assert fields == ["twist.linear.x", "twist.linear.y", "twist.linear.z", "twist.angular.z"]
    names = [output_name("geometry_msgs/msg/TwistStamped", f) for f in fields]
    assert tuple(names) == AXES[TWIST_STAMPED]
    assert [output_unit(n) for n in names] == ["m/s", "m/s", "m/s", "rad/s"]
    assert command_fields_of("geometry_msgs/msg/Twist", None) == ["angular.z"]


def test_large_raw_and_jpeg_frames_train_on_what_the_runtime_feeds_the_network(tmp_path):
    # 648 x 1600 frames (the runtime halves a raw one, decodes a JPEG at 1/2), cropped: the
    # stored training image is the runtime's network input before its scaling to [0, 1].
    import cv2

    from ltc_controller.runtime.preprocess import (
        PreprocessConfig,
        Preprocessor,
        frame_from_compressed,
        frame_from_image,
    )

    store = typestore()
    T = store.types
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (648, 1600, 3), dtype=np.uint8), (0, 0), 2.0)
    ok, jpg = cv2.imencode(".jpg", img[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    crop = (8, 0, 0, 0)
    pre = Preprocessor(PreprocessConfig(78, 200, *crop))
    assert pre.jpeg_factor(648, 1600) == 2
    frames = {
        "raw": frame_from_image(1.0, 0, "rgb8", 648, 1600, 4800, img.tobytes()),
        "jpeg": frame_from_compressed(1.0, 0, "jpeg", jpg.tobytes()),
    }
    for kind, frame in frames.items():
        path = tmp_path / kind
        msgtype = "sensor_msgs/msg/CompressedImage" if kind == "jpeg" else "sensor_msgs/msg/Image"
        with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
            ci = w.add_connection("/cam", msgtype, typestore=store)
            cc = w.add_connection(
                "/drive", "ackermann_msgs/msg/AckermannDriveStamped", typestore=store
            )
            t = 1_000_000_000
            if kind == "jpeg":
                msg = T[msgtype](header=_hdr(store, t), format="jpeg", data=jpg.reshape(-1))
            else:
                msg = T[msgtype](
                    header=_hdr(store, t),
                    height=648,
                    width=1600,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=4800,
                    data=img.reshape(-1),
                )
            w.write(ci, t, store.serialize_cdr(msg, msgtype))
            drive = T["ackermann_msgs/msg/AckermannDrive"](
                steering_angle=0.1,
                steering_angle_velocity=0.0,
                speed=5.0,
                acceleration=0.0,
                jerk=0.0,
            )
            cmd = T["ackermann_msgs/msg/AckermannDriveStamped"](header=_hdr(store, t), drive=drive)
            w.write(cc, t, store.serialize_cdr(cmd, cmd.__msgtype__))
        d = read_demonstrations(path, "/cam", "/drive", height=78, width=200, crop=crop)
        network_input = pre.frame(frame)
        np.testing.assert_array_equal(
            d.images[0].transpose(2, 0, 1), np.rint(network_input * 255.0).astype(np.uint8)
        )
