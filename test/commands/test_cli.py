"""The ``ltc-controller`` entry point itself (sub-commands are tested in their own files)."""

from __future__ import annotations

import subprocess
import sys

# A sub-command whose output outlives its reader, as in `ltc-controller param list NODE | head -1`.
_WRITER = """
import sys
from ltc_controller import cli
from ltc_controller.commands import discover

def run(args, ros_tail):
    for k in range(200_000):
        print(f"line {k}")
    return 0

next(m for m in discover() if m.NAME == "param").run = run
sys.exit(cli.main(["param", "list", "some_node"]))
"""


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == b"line 0\n"
    writer.stdout.close()  # the reader goes away
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_the_simulator_executable_takes_log_before_ros_args_and_stops_after_its_duration(
    tmp_path, dds_loopback
):
    # `ros2 run ltc_controller simulator --log F --ros-args ...` runs scripts/simulator.
    import json
    from pathlib import Path

    import pytest

    pytest.importorskip("mujoco")
    script = Path(__file__).resolve().parents[2] / "scripts" / "simulator"
    log = tmp_path / "sim" / "run.npz"
    done = subprocess.run(
        [sys.executable, str(script), "--log", str(log), "--ros-args", "-p", "duration_s:=0.5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(log.with_suffix(".json").read_text())
    assert summary["duration_s"] >= 0.5  # stopped by itself, once its sim time was reached
    assert log.is_file() and "Traceback" not in done.stderr


def test_the_simulator_executable_refuses_an_unknown_option_before_ros_args():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ltc_controller.cli import simulator_main; "
            "sys.exit(simulator_main(['--lgo', 'x']))",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--lgo" in done.stderr
