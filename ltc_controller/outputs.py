"""Whether an output path can be written, checked before a command or a node starts working.

Commands that write files (``explain --out``, ``monitor fit -o``, ``record OUTPUT``, ...) and the
simulator node (``--log``) ask :func:`output_problem` first, so an unwritable path is a one-line
error at the start (exit 2) instead of a traceback after minutes of work, and a running node never
dies on it. Nothing is created by the check: the folders are made when the output is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["output_problem"]


def output_problem(path: str | os.PathLike[str], *, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (one line naming the path and the cause), or ``None``.

    ``folder=False``: ``path`` is a file, created or replaced, and its missing parent folders are
    created when it is written; ``folder=True``: ``path`` is a folder that is created (with its
    parents) or written into. The nearest existing ancestor must be a folder in which a file can
    be created: that is tried with a temporary file, removed at once (``os.access`` answers yes
    for root in read-only places such as ``/proc``).
    """
    p = Path(path)
    if str(path) == "":
        return "an empty path"
    if p.exists():
        if folder and not p.is_dir():
            return f"{p} exists and is not a folder"
        if not folder and p.is_dir():
            return f"{p} is a folder, not a file"
    base = p if folder else p.parent
    base = base if str(base) else Path(".")
    existing = base
    while not existing.exists():
        if existing.parent == existing:  # a root that does not exist: nothing to walk up to
            return f"cannot create {p}: {existing} does not exist"
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {p}: {existing} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        return f"cannot write {p}: no file can be created in {existing} ({e.strerror or e})"
    return None
