"""The project's one typestore (``ltc_controller/interfaces``): what it holds, that the shipped
definition files are all in it, and that the offline rooms use it without the transport."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ltc_controller import interfaces
from ltc_controller.interfaces import msg_dir, typestore

SHIPPED = Path(interfaces.__file__).resolve().parent


def test_own_messages_found_in_repo_msg_dir() -> None:
    d = msg_dir()
    assert d is not None and (d / "PolicyStatus.msg").is_file()


def test_typestore_holds_jazzy_our_messages_and_both_halves_of_each_service() -> None:
    store = typestore()
    for name in (
        "sensor_msgs/msg/Image",
        "ltc_controller/msg/PolicyStatus",
        "ltc_controller/msg/SafetyStatus",
        "ackermann_msgs/msg/AckermannDriveStamped",
        "rcl_interfaces/srv/GetParameters_Request",
        "rcl_interfaces/srv/GetParameters_Response",
    ):
        assert name in store.fielddefs, name


def test_every_shipped_definition_file_is_registered() -> None:
    store = typestore()
    msgs = sorted(SHIPPED.glob("*/msg/*.msg"))
    srvs = sorted(SHIPPED.glob("*/srv/*.srv"))
    assert msgs and srvs
    for f in msgs:
        assert f"{f.parts[-3]}/msg/{f.stem}" in store.fielddefs, f
    for f in srvs:
        for half in ("_Request", "_Response"):
            assert f"{f.parts[-3]}/srv/{f.stem}{half}" in store.fielddefs, f


def test_typestore_is_built_once_and_is_the_one_the_transport_uses() -> None:
    from ltc_controller.transport import types as T

    assert typestore() is typestore()
    assert T.typestore() is typestore()


def test_a_service_file_that_does_not_parse_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad_msgs" / "srv" / "Broken.srv"
    bad.parent.mkdir(parents=True)
    bad.write_text("int32 a\n")  # no '---' line
    monkeypatch.setattr(interfaces, "_SHIPPED", tmp_path)
    with pytest.raises(ValueError, match="Broken.srv"):
        typestore.__wrapped__()  # uncached: the shared store stays as it is


def test_offline_rooms_read_and_write_bags_without_importing_the_transport() -> None:
    code = (
        "import sys\n"
        "import ltc_controller.training.bag, ltc_controller.explain.frames\n"
        "import ltc_controller.explain.video\n"
        "from ltc_controller.interfaces import typestore\n"
        "typestore()\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.startswith(('ltc_controller.transport', 'cyclonedds')))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


@pytest.mark.parametrize("room", ["training", "explain"])
def test_no_offline_module_imports_the_transport_even_inside_a_function(room: str) -> None:
    for f in sorted((SHIPPED.parent / room).rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.startswith("ltc_controller.transport") for n in names), (
                f"{f.name}:{node.lineno}"
            )
