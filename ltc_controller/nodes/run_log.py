"""Column logs streamed to disk: a node's run log in flat memory (issue 12 §3).

A :class:`ColumnLog` is a group of columns that get one value each per row (e.g. one row per
camera frame). Each column is one ``.npy`` file in a folder, named after the column; rows are
buffered in preallocated arrays and appended to the files on :meth:`ColumnLog.flush` (the owner
calls it about once a second) or when the buffer is full. After every append the ``.npy`` header
is rewritten with the new row count, so at any moment every file is a valid ``.npy`` holding the
rows flushed so far: a process killed with SIGKILL loses at most the rows since the last flush,
and ``np.load(folder / "name.npy")`` (or :func:`read_columns`) reads the rest.

Memory stays flat however long the run: the buffers are all the log holds. :class:`RunLog` is a
node's whole run log (the car's and the drone's simulator): several such groups in one folder.
"""

from __future__ import annotations

import ast
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LOG_FLUSH_S", "ColumnLog", "RunLog", "frame_latencies", "read_columns"]

_MAGIC = b"\x93NUMPY\x01\x00"
#: How often a :class:`RunLog`'s buffered rows go to disk (s, steady clock): what a SIGKILL of
#: its node can lose.
LOG_FLUSH_S = 1.0
#: Fixed header size (magic + length + dict, padded), so it can be rewritten in place.
_HEADER_BYTES = 128


def _header(dtype: np.dtype[Any], rows: int) -> bytes:
    """A version 1.0 ``.npy`` header of exactly :data:`_HEADER_BYTES` bytes for ``(rows,)``."""
    d = (
        f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
        f"'shape': ({rows},), }}"
    )
    room = _HEADER_BYTES - len(_MAGIC) - 2
    if len(d) + 1 > room:
        raise ValueError(f"npy header too long for dtype {dtype}")
    body = d.ljust(room - 1) + "\n"
    return _MAGIC + struct.pack("<H", room) + body.encode("latin1")


def _rows_in(path: Path) -> tuple[np.dtype[Any], int]:
    """dtype and row count of a 1-D ``.npy`` file written here.

    Raises:
        OSError: unreadable. ValueError: not a header this module wrote.
    """
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES or not head.startswith(_MAGIC):
        raise ValueError(f"{path}: not a column file of a run log")
    try:
        d = ast.literal_eval(head[len(_MAGIC) + 2 :].decode("latin1").strip())
        return np.dtype(d["descr"]), int(d["shape"][0])
    except (SyntaxError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: unreadable run-log header ({e})") from None


class ColumnLog:
    """Columns of equal length appended row by row and streamed to ``folder/<name>.npy``.

    Args:
        folder: where the files go (created; existing files of these columns are continued).
        columns: column name → dtype (``np.int64`` for ns stamps, ``np.float64`` ...).
        chunk_rows: rows buffered in memory before a flush is forced.

    Raises:
        OSError: the folder or a file cannot be created.
    """

    def __init__(self, folder: Path, columns: Mapping[str, Any], chunk_rows: int = 4096) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names = tuple(columns)
        self._dtypes = [np.dtype(t) for t in columns.values()]
        self._buf = [np.zeros(chunk_rows, dtype=t) for t in self._dtypes]
        self._n = 0  # rows in the buffers
        self._files = []
        self.flushed = 0  # rows on disk
        for name, dt in zip(self.names, self._dtypes, strict=True):
            path = self.folder / f"{name}.npy"
            if path.exists():
                old_dt, rows = _rows_in(path)
                if old_dt != dt:
                    raise ValueError(f"{path}: dtype {old_dt}, expected {dt}")
                f = open(path, "r+b")  # noqa: SIM115 - closed in close()
                f.truncate(_HEADER_BYTES + rows * dt.itemsize)  # drop an unfinished tail
                self.flushed = rows
            else:
                f = open(path, "w+b")  # noqa: SIM115 - closed in close()
                f.write(_header(dt, 0))
                f.flush()  # a column that never gets a row is still a valid, empty .npy
            self._files.append(f)
        self._closed = False

    @property
    def rows(self) -> int:
        """Rows appended so far (on disk and buffered)."""
        return self.flushed + self._n

    def append(self, values: Sequence[Any]) -> None:
        """Add one row (one value per column, in column order)."""
        n = self._n
        for buf, v in zip(self._buf, values, strict=True):
            buf[n] = v
        self._n = n + 1
        if self._n == len(self._buf[0]):
            self.flush()

    def extend(self, block: np.ndarray) -> None:
        """Add rows from a 2-D array ``(K, len(columns))`` (cast to each column's dtype)."""
        start = 0
        while start < block.shape[0]:
            take = min(block.shape[0] - start, len(self._buf[0]) - self._n)
            for i, buf in enumerate(self._buf):
                buf[self._n : self._n + take] = block[start : start + take, i]
            self._n += take
            start += take
            if self._n == len(self._buf[0]):
                self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the files and rewrite their headers (no fsync: a killed
        process loses nothing the kernel already has)."""
        if self._closed or self._n == 0:
            return
        rows = self.flushed + self._n
        for f, buf, dt in zip(self._files, self._buf, self._dtypes, strict=True):
            f.seek(_HEADER_BYTES + self.flushed * dt.itemsize)
            f.write(buf[: self._n].tobytes())
            f.seek(0)
            f.write(_header(dt, rows))
            f.flush()
        self.flushed = rows
        self._n = 0

    def read(self) -> dict[str, np.ndarray]:
        """Every column as a read-only memory map of its file (flushes first)."""
        self.flush()
        return read_columns(self.folder, self.names)

    def close(self) -> None:
        """Flush and close the files (idempotent)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        for f in self._files:
            f.close()


def read_columns(folder: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: array}`` from ``folder/<name>.npy`` (memory-mapped, read-only). Rows are those
    the header counts and the file holds (a writer killed mid-append, or a file cut short,
    loses only its tail), and the columns are cut to the shortest so rows stay aligned.

    Raises:
        OSError: a file is missing or unreadable. ValueError: not a file this module wrote.
    """
    sizes: dict[str, tuple[np.dtype[Any], int]] = {}
    for name in names:
        path = Path(folder) / f"{name}.npy"
        dt, rows = _rows_in(path)
        sizes[name] = (dt, min(rows, (os.path.getsize(path) - _HEADER_BYTES) // dt.itemsize))
    n = max(0, min((r for _, r in sizes.values()), default=0))
    out: dict[str, np.ndarray] = {}
    for name, (dt, _) in sizes.items():
        path = Path(folder) / f"{name}.npy"
        out[name] = (
            np.memmap(path, dtype=dt, mode="r", offset=_HEADER_BYTES, shape=(n,))
            if n
            else np.zeros(0, dtype=dt)
        )
    return out


class RunLog:
    """A node's run log: groups of :class:`ColumnLog` (one per row kind, e.g. frames, commands,
    physics rows) streamed to one folder, a temporary one until :meth:`move_to` names it.

    Args:
        groups: group name → its columns (name → dtype), as :class:`ColumnLog` takes them.

    Raises:
        OSError: the temporary folder or a file cannot be created.
    """

    def __init__(self, groups: Mapping[str, Mapping[str, Any]]) -> None:
        self._groups = {g: dict(cols) for g, cols in groups.items()}
        self.folder = Path(tempfile.mkdtemp(prefix="ltc_sim_log_"))
        self.is_temp = True
        #: flushes that failed (a full disk must not stop the node: the owner logs the first)
        self.errors = 0
        self._last_flush: float | None = None
        self._open()

    def _open(self) -> None:
        self.logs = {g: ColumnLog(self.folder, cols) for g, cols in self._groups.items()}

    def __getitem__(self, group: str) -> ColumnLog:
        return self.logs[group]

    def flush(self) -> OSError | None:
        """Flush every group; returns the error (counted in :attr:`errors`) instead of raising."""
        try:
            for log in self.logs.values():
                log.flush()
        except OSError as e:
            self.errors += 1
            return e
        return None

    def flush_every(self, now: float, report: Callable[[str], None]) -> None:
        """Flush when :data:`LOG_FLUSH_S` has passed since the last flush (``now``: steady
        clock, s; the first call only starts the count). A failed write (full disk) is counted
        and the first one passed to ``report``: it must never stop the node."""
        if self._last_flush is None:
            self._last_flush = now
        if now - self._last_flush < LOG_FLUSH_S:
            return
        self._last_flush = now
        e = self.flush()
        if e is not None and self.errors == 1:
            report(f"run log write failed: {e}")

    def read(self, group: str) -> dict[str, np.ndarray]:
        """The columns of ``group`` (memory maps, see :meth:`ColumnLog.read`)."""
        return self.logs[group].read()

    def move_to(self, folder: Path) -> None:
        """Stream to ``folder`` from now on (rows already recorded move with it; an earlier
        run's leftovers there are removed first).

        Raises:
            OSError: the folder cannot be created.
        """
        folder = Path(folder)
        if folder == self.folder:
            return
        if folder.exists():
            shutil.rmtree(folder)
        old = self.folder
        for log in self.logs.values():
            log.close()
        shutil.copytree(old, folder)
        if self.is_temp:
            shutil.rmtree(old, ignore_errors=True)
        self.folder, self.is_temp = folder, False
        self._open()

    def restart(self) -> None:
        """Drop the folder and go on in a new temporary one (after its rows went elsewhere,
        e.g. into the ``.npz``)."""
        for log in self.logs.values():
            log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = Path(tempfile.mkdtemp(prefix="ltc_sim_log_"))
        self.is_temp = True
        self._open()

    def close(self) -> None:
        """Flush and close every group; a temporary folder is removed, a named one stays."""
        for log in self.logs.values():
            log.close()
        if self.is_temp:
            shutil.rmtree(self.folder, ignore_errors=True)


def frame_latencies(frame_ns: np.ndarray, cmd_ns: np.ndarray, cmd_recv: np.ndarray) -> np.ndarray:
    """Per frame: receive time of the first command carrying its stamp minus the stamp (s),
    NaN where none did. Shapes ``(F,)``, ``(C,)``, ``(C,)`` → ``(F,)``."""
    out = np.full(frame_ns.shape[0], np.nan)
    if cmd_ns.size == 0 or frame_ns.size == 0:
        return out
    stamps, first = np.unique(cmd_ns, return_index=True)  # index of each stamp's first command
    pos = np.minimum(np.searchsorted(stamps, frame_ns), stamps.size - 1)
    hit = stamps[pos] == frame_ns
    out[hit] = cmd_recv[first[pos[hit]]] - frame_ns[hit] * 1e-9
    return out
