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
