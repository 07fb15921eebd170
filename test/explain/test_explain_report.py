"""``ltc-controller explain`` end to end on a real rosbag2, and the open-loop run under it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from ltc_controller.cli import main
from ltc_controller.explain.frames import read_frames
from ltc_controller.explain.openloop import neuron_activity, run_open_loop
from ltc_controller.models.policy import Crop, Policy, PolicyConfig
from ltc_controller.models.policy_file import save_policy
from ltc_controller.runtime.preprocess import RawFrame
from ltc_controller.runtime.schedule import seconds_to_ns, step_counts

H, W = 78, 200


def road_image(k: int, h: int = H, w: int = W) -> np.ndarray:
    """A grey road with a white marking that drifts sideways, green below the horizon edges."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:] = (150, 190, 230)
    ground = y > h * 0.3
    img[ground] = (80, 120, 60)
    centre = w / 2 + 10 * np.sin(k / 3)
    road = ground & (np.abs(x - centre) < (y - h * 0.3) * 1.6 + 4)
    img[road] = (80, 80, 84)
    edge = ground & (np.abs(np.abs(x - centre) - (y - h * 0.3) * 1.3 - 3) < 1.5)
    img[edge] = (240, 240, 240)
    return img


def write_bag(path: Path, stamps_ns: list[int], storage: str = "sqlite3") -> None:
    """Raw rgb8 frames on /camera/image_raw and an Ackermann /expert_cmd at each stamp."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ltc_controller.interfaces import typestore

    store = typestore()
    T = store.types
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as w:
        cam = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        cmd = w.add_connection(
            "/expert_cmd", "ackermann_msgs/msg/AckermannDriveStamped", typestore=store
        )
        for k, ns in enumerate(stamps_ns):
            hdr = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](
                    sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000
                ),
                frame_id="camera",
            )
            img = road_image(k)
            msg = T["sensor_msgs/msg/Image"](
                header=hdr,
                height=H,
                width=W,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * W,
                data=img.reshape(-1),
            )
            w.write(cam, ns, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            drive = T["ackermann_msgs/msg/AckermannDrive"](
                steering_angle=0.01 * np.sin(k / 3),
                steering_angle_velocity=0.0,
                speed=5.0,
                acceleration=0.0,
                jerk=0.0,
            )
            c = T["ackermann_msgs/msg/AckermannDriveStamped"](header=hdr, drive=drive)
            w.write(cmd, ns, store.serialize_cdr(c, "ackermann_msgs/msg/AckermannDriveStamped"))


def policy_files(tmp_path: Path) -> dict[str, Path]:
    return {
        arch: save_policy(
            Policy.from_config(PolicyConfig(architecture=arch), seed=3), tmp_path / f"{arch}.st"
        )
        for arch in ("ncp_ltc", "lstm", "cnn")
    }


STAMPS = [1_000_000_000 + k * 50_000_000 for k in range(12)]


def test_explain_writes_video_sheet_traces_wiring_commands_and_report(tmp_path, capsys):
    torch.manual_seed(0)
    bag = tmp_path / "bag"
    write_bag(bag, STAMPS)
    files = policy_files(tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            "--policy",
            f"NCP-19={files['ncp_ltc']}",
            "--policy",
            f"LSTM={files['lstm']}",
            "--policy",
            str(files["cnn"]),
            "--bag",
            str(bag),
            "--command-topic",
            "/expert_cmd",
            "--out",
            str(out),
            "--video",
            "gif",
            "--sheet-frames",
            "3",
        ]
    )
    assert rc == 0
    listed = json.loads(capsys.readouterr().out)
    cnn = "cnn (cnn)"
    expected = {
        "report.md",
        "saliency.gif",
        "contact_sheet.png",
        "commands.png",
        "summary.json",
        "neurons_NCP-19.png",
        "neurons_LSTM.png",
        "neurons_cnn_cnn.png",
        "wiring_NCP-19.png",  # the baselines have no wiring
    }
    assert {p.name for p in out.iterdir()} == expected
    assert Path(listed["report"]) == out / "report.md"
    with PILImage.open(out / "saliency.gif") as gif:
        assert gif.n_frames == 12
    with PILImage.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] > sheet.size[1] * 0.8  # 1 + 3 x 2 columns, 3 rows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 12 and summary["fps"] == pytest.approx(20.0)
    for label in ("NCP-19", "LSTM", cnn):
        p = summary["policies"][label]
        assert p["frames_used"] == 12 and p["state_resets"] == 0
        # The first frame only starts the clock; every later one takes one 50 ms step.
        assert p["steps"] == 11
        assert p["commands"]["steering_angle"]["frames_with_output"] == 11
        assert 0.0 <= p["attention"]["top_third"] <= 1.0
    assert summary["policies"]["NCP-19"]["neurons"] == 19
    report = (out / "report.md").read_text()
    for label in ("NCP-19", "LSTM", cnn):
        assert f"| {label} |" in report
    assert "![wiring](wiring_NCP-19.png)" in report and "saliency.gif" in report


def test_explain_names_the_topics_when_the_image_topic_is_missing(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, STAMPS[:3], storage="mcap")
    files = policy_files(tmp_path)
    args = ["explain", "--policy", str(files["cnn"]), "--bag", str(bag), "--out", str(tmp_path)]
    assert main([*args, "--image-topic", "/front/image"]) == 2
    err = capsys.readouterr().err
    assert "no topic '/front/image'" in err and "/camera/image_raw" in err
    assert main([*args, "--image-topic", "/expert_cmd"]) == 2
    assert "expected sensor_msgs/msg/Image" in capsys.readouterr().err


def test_explain_refuses_a_crop_that_leaves_nothing_naming_the_sizes(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, STAMPS[:3])
    files = policy_files(tmp_path)
    out = tmp_path / "out"
    args = ["explain", "--policy", str(files["cnn"]), "--bag", str(bag), "--out", str(out)]
    assert main([*args, "--crop", "50,50,0,0"]) == 2  # 100 px of a 78 px high image
    err = capsys.readouterr().err
    assert err == (
        "explain: --crop 50,50,0,0 leaves nothing of the 200x78 images on /camera/image_raw: "
        "top + bottom (100 px) must be < 78 px and left + right (0 px) < 200 px\n"
    )
    assert main([*args, "--crop", "0,0,100,100"]) == 2  # the width: 200 px of 200
    assert "left + right (200 px) < 200 px" in capsys.readouterr().err
    assert not out.exists()  # refused before the report folder was made
    assert main([*args, "--crop", "38,39,0,0", "--video", "none"]) == 0  # 1 px row left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policies"]["cnn (cnn)"]["frames_used"] == 3


def test_the_image_size_of_a_compressed_frame_comes_from_its_header():
    import io

    from ltc_controller.explain.frames import BagFrames
    from ltc_controller.runtime.preprocess import frame_from_compressed

    buf = io.BytesIO()
    PILImage.fromarray(road_image(0, h=30, w=64)).save(buf, format="PNG")
    frame = frame_from_compressed(1.0, 0, "png", buf.getvalue())
    assert BagFrames(Path("b"), "/c", "sensor_msgs/msg/CompressedImage", [frame]).image_size() == (
        64,
        30,
    )
    assert BagFrames(Path("b"), "/c", "sensor_msgs/msg/Image").image_size() is None


@pytest.mark.parametrize("arch", ["ncp_ltc", "lstm"])
def test_open_loop_run_equals_the_training_pass_on_jittered_stamps(tmp_path, arch):
    """The runtime's stepping (one tick per frame stamp) and Policy.forward with the step counts
    of the stamps (the one rule, ``step_counts``) give the same commands: explain shows what the
    trained model computes."""
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.integers(20_000_000, 90_000_000, 15)) + 5_000_000_000
    bag = tmp_path / "bag"
    write_bag(bag, [int(s) for s in stamps])
    frames = read_frames(bag).frames
    policy = Policy.from_config(PolicyConfig(architecture=arch), seed=1)
    run = run_open_loop(policy, frames)
    assert run.taken.all() and run.counters["frames_rejected"] == 0
    images = torch.from_numpy(run.images)[None]
    counts = step_counts(stamps, seconds_to_ns(policy.config.step_s))
    np.testing.assert_array_equal(run.steps, counts)
    with torch.no_grad():
        ref = policy(images, torch.from_numpy(counts)[None])[0].numpy()
    ok = np.isfinite(run.outputs[:, 0])
    assert not ok[0] and ok[1:].all()
    np.testing.assert_allclose(run.outputs[ok], ref[ok], rtol=1e-5, atol=1e-6)


def test_open_loop_does_not_carry_the_state_across_a_gap_in_the_recording(tmp_path):
    """A bag gap longer than max_frame_age_s resets the runtime's state there (clock_jump_fwd),
    as on the robot and as training starts a new segment: what follows the gap is what a run
    starting after it computes."""
    stamps = [5_000_000_000 + k * 50_000_000 for k in range(6)]
    stamps += [stamps[-1] + 1_000_000_000 + k * 50_000_000 for k in range(6)]  # a 1 s gap
    bag = tmp_path / "bag"
    write_bag(bag, stamps)
    frames = read_frames(bag).frames
    policy = Policy.from_config(PolicyConfig(), seed=1)
    run = run_open_loop(policy, frames)
    assert run.events == [(6, "clock_jump_fwd")] and run.counters["clock_jumps_fwd"] == 1
    after = run_open_loop(policy, frames[6:])
    np.testing.assert_array_equal(run.outputs[6:], after.outputs)
    assert np.isnan(run.outputs[6]).all() and np.isfinite(run.outputs[7:]).all()


def test_neuron_groups_are_the_ncp_layers_and_the_baselines_units(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, STAMPS[:4])
    frames = read_frames(bag).frames
    sizes = {}
    for arch in ("ncp_ltc", "lstm", "cnn", "gru"):
        run = run_open_loop(Policy.from_config(PolicyConfig(architecture=arch)), frames)
        sizes[arch] = [(g.name, g.values.shape) for g in neuron_activity(run)]
    assert sizes["ncp_ltc"] == [
        ("sensory", (4, 32)),
        ("inter", (4, 12)),
        ("command", (4, 6)),
        ("motor", (4, 1)),
    ]
    assert sizes["lstm"] == [("features", (4, 32)), ("hidden h", (4, 64)), ("cell c", (4, 64))]
    assert sizes["cnn"] == [("features", (4, 32)), ("hidden", (4, 64))]
    assert sizes["gru"] == [("features", (4, 32)), ("hidden", (4, 64))]


def test_crop_is_applied_before_the_resize():
    big = np.zeros((300, 500, 3), dtype=np.uint8)
    inner = road_image(0, 156, 400)
    big[100:256, 50:450] = inner  # crop 100 top, 44 bottom, 50 left/right leaves `inner`
    frames = [
        RawFrame(
            1.0 + 0.05 * k, "rgb8", 300, 500, 1500, big.tobytes(), 1_000_000_000 + k * 50_000_000
        )
        for k in range(2)
    ]
    policy = Policy.from_config(PolicyConfig(), seed=0)
    run = run_open_loop(policy, frames, crop=Crop(100, 44, 50, 50))
    # 156 x 400 -> 78 x 200: one area pass of exact 2 x 2 means (the runtime's resize).
    expected = cv2.resize(inner, (W, H), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(run.rgb()[1], expected)
