"""The e-stop latch file: missing = not latched, anything unreadable = latched, atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from ltc_controller.nodes.estop_state import default_path, read_record, write_record


def test_missing_file_is_not_latched_and_a_written_latch_reads_back(tmp_path):
    f = tmp_path / "sub" / "estop.json"
    assert not read_record(f).latched and not read_record(f).problem
    write_record(f, True, "e-stop asserted", "safety_fallback")
    r = read_record(f)
    assert r.latched and r.reason == "e-stop asserted" and not r.problem and r.since > 0
    write_record(f, False, "reset accepted")
    assert not read_record(f).latched
    assert [p.name for p in f.parent.iterdir()] == ["estop.json"]  # no temporary left behind


@pytest.mark.parametrize(
    "text",
    ['{"estop_latched": tru', "", "[]", '{"estop_latched": "no"}', '{"other": 1}', "\x00\x01"],
)
def test_unparsable_or_wrong_content_reads_as_latched_with_the_reason(tmp_path, text):
    f = tmp_path / "estop.json"
    f.write_text(text)
    r = read_record(f)
    assert r.latched and str(f) in r.problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_file_reads_as_latched(tmp_path):
    f = tmp_path / "estop.json"
    f.write_text(json.dumps({"estop_latched": False}))
    f.chmod(0)
    r = read_record(f)
    assert r.latched and "cannot read" in r.problem


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    f = tmp_path / "estop.json"
    write_record(f, True, "e-stop asserted")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_record(f, False, "reset accepted")
    assert read_record(f).latched
    assert [p.name for p in tmp_path.iterdir()] == ["estop.json"]


def test_default_path_is_one_file_per_fully_qualified_node_name(monkeypatch, tmp_path):
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    base = tmp_path / "ltc_controller" / "estop"
    assert default_path("/", "safety_fallback") == base / "safety_fallback.json"
    assert (
        default_path("/fleet/car1", "safety_fallback") == base / "fleet.car1.safety_fallback.json"
    )
    monkeypatch.delenv("ROS_HOME")
    assert str(default_path("/", "s")).startswith(os.path.expanduser("~/.ros/"))
