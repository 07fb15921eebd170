"""The e-stop latch on disk: what ``safety_fallback`` remembers across a restart.

A latched e-stop must survive the node: a crash, a kill or a reboot of the safety process while
the e-stop is latched must not bring the vehicle back to ACTIVE by itself. ``safety_fallback``
writes one small JSON file on every latch and every accepted reset, and reads it at start:

- the file says ``"estop_latched": true`` → the node starts in ESTOP, latched, and needs the
  same explicit reset as before the restart (``estop_reset``, refused while the e-stop is
  asserted);
- the file cannot be read or parsed (truncated, wrong content, no permission) → the node starts
  latched too, and logs why (failing safe);
- no file → first start: nothing was latched.

Writes are atomic (a temporary file in the same folder, ``fsync``, ``os.replace``, ``fsync`` of
the folder), so a node killed mid-write leaves either the old or the new content, never half.

Where: the parameter ``estop_state_file``; empty = :func:`default_path`, i.e.
``$ROS_HOME/ltc_controller/estop/<namespace>.<node>.json`` (``ROS_HOME`` defaults to ``~/.ros``,
as in ROS 2), one file per fully qualified node name, so nodes in different namespaces do not
share a latch.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EstopRecord", "default_path", "read_record", "write_record"]

#: Version of the file's content (``"format"`` key).
FORMAT = 1


@dataclass(frozen=True)
class EstopRecord:
    """What the state file says. ``latched``: the e-stop was latched when the file was written;
    ``since``: wall-clock time of that write (s since the epoch); ``reason``: why (for the log);
    ``problem``: ``""``, or why the file could not be used (then ``latched`` is True)."""

    latched: bool
    since: float = 0.0
    reason: str = ""
    problem: str = ""


def ros_home() -> Path:
    """``$ROS_HOME``, else ``~/.ros`` (ROS 2's rule for its log and state folder)."""
    env = os.environ.get("ROS_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".ros"


def default_path(namespace: str, name: str) -> Path:
    """The state file of node ``name`` in ``namespace``:
    ``$ROS_HOME/ltc_controller/estop/<ns parts joined by '.'>.<name>.json`` (``/car1`` +
    ``safety_fallback`` → ``car1.safety_fallback.json``; ROS names contain no '.')."""
    parts = [p for p in namespace.split("/") if p] + [name]
    return ros_home() / "ltc_controller" / "estop" / (".".join(parts) + ".json")


def read_record(path: Path) -> EstopRecord:
    """Read ``path``. Never raises: a missing file is "not latched"; any other problem (OS
    error, not JSON, wrong fields) is "latched" with ``problem`` saying what was wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return EstopRecord(False, reason="no state file (first start)")
    except OSError as e:
        return EstopRecord(True, problem=f"cannot read {path}: {e.strerror or e}")
    try:
        data = json.loads(text)
        latched = data["estop_latched"]
        if not isinstance(latched, bool):
            raise TypeError(f"'estop_latched' is {latched!r}, not true or false")
        since = float(data.get("since", 0.0))
        reason = str(data.get("reason", ""))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return EstopRecord(True, problem=f"{path} is not a valid e-stop state file ({e!r})")
    return EstopRecord(latched, since, reason)


def write_record(path: Path, latched: bool, reason: str, node: str = "") -> None:
    """Atomically replace ``path`` with the latch state (creating its folder).

    Raises:
        OSError: the folder or the file cannot be written (the old file, if any, is intact).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {
            "format": FORMAT,
            "estop_latched": bool(latched),
            "since": time.time(),
            "reason": reason,
            "node": node,
        },
        indent=1,
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # The rename itself is durable only once the folder is synced.
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
