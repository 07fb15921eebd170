"""A video file as a rosbag2 camera stream; saliency videos out."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from ltc_controller.explain.frames import read_frames
from ltc_controller.explain.video import VideoError, read_video, video_to_bag, write_video

UDACITY = Path(__file__).resolve().parents[3] / "shared" / "data" / "udacity-lanelines"


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames with a moving bright bar (so each differs)."""
    out = []
    for k in range(n):
        f = np.full((h, w, 3), 60, dtype=np.uint8)
        f[:, (4 * k) % w : (4 * k) % w + 6] = (240, 200, 40)
        out.append(f)
    return out


def _decode(frame) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(bytes(frame.data))).convert("RGB"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_video_becomes_compressed_images_stamped_from_its_frame_rate(tmp_path, storage):
    src = _frames(12)
    video = write_video(tmp_path / "clip.mp4", src, fps=10.0)
    meta, it = read_video(video)
    assert meta["fps"] == pytest.approx(10.0)
    decoded = list(it)
    assert len(decoded) == 12
    s = video_to_bag(video, tmp_path / "bag", storage=storage, start_s=100.0)
    assert (s.frames, s.fps, s.width, s.height) == (12, 10.0, 64, 48)
    assert s.duration_s == pytest.approx(1.1)
    bag = read_frames(tmp_path / "bag")
    assert bag.topic == "/camera/image_raw/compressed"
    assert bag.msgtype == "sensor_msgs/msg/CompressedImage"
    assert list(bag.stamps_ns) == [100_000_000_000 + k * 100_000_000 for k in range(12)]
    for k in (0, 5, 11):
        img = _decode(bag.frames[k])
        assert img.shape == (48, 64, 3)
        # H.264 then JPEG: close to the source, and the bar is where it was.
        assert np.abs(img.astype(int) - src[k]).mean() < 8.0
        yellow = (img[:, :, 0].astype(int) - img[:, :, 2]).sum(0)
        assert (4 * k) % 64 <= int(np.argmax(yellow)) < (4 * k) % 64 + 6


def test_fps_override_resize_and_frame_limit(tmp_path):
    video = write_video(tmp_path / "clip.mp4", _frames(10), fps=25.0)
    s = video_to_bag(video, tmp_path / "bag", fps=30.0, resize=(32, 24), max_frames=4)
    assert (s.frames, s.width, s.height, s.source_width) == (4, 32, 24, 64)
    bag = read_frames(tmp_path / "bag")
    assert np.diff(bag.stamps_ns).tolist() == [33_333_333, 33_333_334, 33_333_333]
    assert _decode(bag.frames[0]).shape == (24, 32, 3)


def test_bad_videos_and_existing_bags_are_clear_errors(tmp_path):
    with pytest.raises(VideoError, match="no such video file"):
        video_to_bag(tmp_path / "missing.mp4", tmp_path / "bag")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="junk.mp4") as e:
        video_to_bag(junk, tmp_path / "bag")
    # One line with FFmpeg's cause, not its banner of build options.
    assert "\n" not in str(e.value) and "configuration:" not in str(e.value)
    assert "Invalid data found" in str(e.value)
    assert not (tmp_path / "bag").exists()
    video = write_video(tmp_path / "clip.mp4", _frames(3), fps=5.0)
    (tmp_path / "exists").mkdir()
    with pytest.raises(VideoError, match="already exists"):
        video_to_bag(video, tmp_path / "exists")
    with pytest.raises(VideoError, match="storage"):
        video_to_bag(video, tmp_path / "b2", storage="rosbag1")


def test_gif_and_mp4_outputs(tmp_path):
    frames = _frames(5, 30, 50)
    gif = write_video(tmp_path / "a.gif", frames, fps=5.0)
    with PILImage.open(gif) as im:
        assert im.n_frames == 5 and im.size == (50, 30)
    mp4 = write_video(tmp_path / "a.mp4", frames, fps=5.0)
    meta, it = read_video(mp4)
    assert meta["size"] == (64, 32)  # padded to the H.264 macro block
    assert sum(1 for _ in it) == 5
    with pytest.raises(VideoError, match="unknown video type"):
        write_video(tmp_path / "a.avi", frames, fps=5.0)


@pytest.mark.skipif(not UDACITY.is_dir(), reason="shared/data/udacity-lanelines not present")
def test_udacity_highway_clip_converts_at_25_fps(tmp_path):
    s = video_to_bag(UDACITY / "solidWhiteRight.mp4", tmp_path / "road", max_frames=6)
    assert (s.frames, s.fps, s.width, s.height) == (6, 25.0, 960, 540)
    bag = read_frames(tmp_path / "road")
    assert np.diff(bag.stamps_ns).tolist() == [40_000_000] * 5
    img = _decode(bag.frames[5])
    assert img.shape == (540, 960, 3)
    # Daylight: sky at the top brighter and bluer than the asphalt at the bottom.
    assert img[:100, :, 2].mean() > img[-100:, :, 2].mean() + 40


def test_video_to_bag_command_and_the_record_from_video_hook(tmp_path, capsys):
    import argparse
    import json

    from ltc_controller.cli import main
    from ltc_controller.explain.video import record_from_video

    video = write_video(tmp_path / "clip.mp4", _frames(6), fps=10.0)
    assert main(["video-to-bag", str(video), str(tmp_path / "b1"), "--resize", "32x24"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["frames"], out["fps"], out["width"], out["height"]) == (6, 10.0, 32, 24)
    assert main(["video-to-bag", str(tmp_path / "nope.mp4"), str(tmp_path / "b0")]) == 2
    assert "no such video file" in capsys.readouterr().err
    # What `ltc-controller record OUTPUT --from-video VIDEO` runs (record's own arguments).
    args = argparse.Namespace(
        from_video=video,
        output=tmp_path / "b2",
        storage="sqlite3",
        image_topic="/front/image_raw",
        jpeg_quality=80,
    )
    assert record_from_video(args) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 6
    bag = read_frames(tmp_path / "b2")
    assert bag.topic == "/front/image_raw/compressed" and len(bag.frames) == 6
    assert record_from_video(args) == 2  # the bag exists now
    assert "already exists" in capsys.readouterr().err
