"""Column logs streamed to .npy files: valid after every flush, continued after a reopen."""

from __future__ import annotations

import numpy as np
import pytest

from ltc_controller.nodes.run_log import ColumnLog, read_columns

COLS = {"stamp_ns": np.int64, "value": np.float64}


def test_rows_are_on_disk_after_each_flush_and_exact(tmp_path):
    log = ColumnLog(tmp_path, COLS, chunk_rows=8)
    big = 1_765_000_000_123_456_789  # ns stamps need int64: a float64 would round them
    for i in range(20):  # two forced flushes (8, 16 rows), 4 rows buffered
        log.append((big + i, i * 0.5))
    assert log.rows == 20 and log.flushed == 16
    on_disk = np.load(tmp_path / "stamp_ns.npy")
    assert on_disk.dtype == np.int64 and np.array_equal(on_disk, big + np.arange(16))
    log.flush()
    cols = read_columns(tmp_path, list(COLS))
    assert np.array_equal(cols["value"], np.arange(20) * 0.5)
    log.close()


def test_extend_spans_chunks_and_a_reopened_log_continues(tmp_path):
    log = ColumnLog(tmp_path, COLS, chunk_rows=5)
    block = np.stack([np.arange(13), np.arange(13) * 2.0], axis=1)
    log.extend(block)
    log.close()
    again = ColumnLog(tmp_path, COLS, chunk_rows=5)
    assert again.rows == 13
    again.append((99, -1.0))
    cols = again.read()
    assert np.array_equal(cols["stamp_ns"], np.r_[np.arange(13), 99])
    assert cols["value"][-1] == -1.0
    again.close()


def test_a_torn_tail_is_dropped_and_columns_stay_aligned(tmp_path):
    log = ColumnLog(tmp_path, COLS, chunk_rows=4)
    for i in range(8):
        log.append((i, float(i)))
    log.close()
    with open(tmp_path / "value.npy", "ab") as f:  # a write cut short after the header update
        f.write(b"\x01\x02\x03")
    assert np.load(tmp_path / "value.npy").size == 8  # the header's count rules
    with open(tmp_path / "stamp_ns.npy", "r+b") as f:  # one column two rows short
        f.truncate(128 + 6 * 8)
    cols = read_columns(tmp_path, list(COLS))
    assert cols["stamp_ns"].size == cols["value"].size == 6


def test_a_reopen_with_another_dtype_is_refused(tmp_path):
    ColumnLog(tmp_path, COLS).close()
    with pytest.raises(ValueError, match="dtype"):
        ColumnLog(tmp_path, {"stamp_ns": np.float64})


def test_a_column_without_rows_reads_as_empty(tmp_path):
    log = ColumnLog(tmp_path, {"a": np.float64, "b": np.int64})
    cols = read_columns(tmp_path, ["a", "b"])  # before any flush: headers are on disk
    assert cols["a"].size == 0 and cols["b"].dtype == np.int64
    log.close()
