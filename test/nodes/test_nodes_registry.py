"""The node-kind table (``nodes/registry.py``): every row names a real class, an unknown kind and
a missing optional dependency are refused with exit status 2 and a message that says what to do,
and only the kind being run is imported."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

from ltc_controller import extras
from ltc_controller.cli import main
from ltc_controller.nodes import registry
from ltc_controller.nodes.registry import (
    NODE_KINDS,
    START_FAILED,
    load_node_class,
    missing_extra,
    node_kind,
    run_node,
)

pytestmark = pytest.mark.usefixtures("dds_loopback")


@pytest.mark.parametrize("kind", sorted(NODE_KINDS))
def test_every_kind_names_an_importable_module_and_its_node_class(kind: str) -> None:
    cls = load_node_class(kind)
    assert inspect.isclass(cls) and cls.__name__ == NODE_KINDS[kind].cls
    assert cls.__module__ == NODE_KINDS[kind].module
    assert "node" in inspect.signature(cls).parameters  # constructed as cls(node)


def test_only_the_simulator_needs_an_extra_and_it_is_sim() -> None:
    extras = {k: e.extra for k, e in NODE_KINDS.items()}
    assert extras == {"ltc_policy": "", "safety_fallback": "", "simulator": "sim"}


def test_an_unknown_kind_is_refused_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="unknown node kind 'camera'.*ltc_policy"):
        node_kind("camera")
    assert run_node("camera", []) == START_FAILED
    err = capsys.readouterr().err
    assert err.startswith("camera: unknown node kind") and "safety_fallback" in err


def test_a_missing_extra_is_named_with_the_pip_command_before_any_node_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mujoco", None)  # import mujoco fails: not installed
    created: list[str] = []
    monkeypatch.setattr("ltc_controller.transport.create_node", lambda *a: created.append("x"))
    assert missing_extra("simulator").startswith("simulator needs the [sim] extra")
    assert missing_extra("safety_fallback") == ""
    assert main(["node", "simulator", "--ros-args", "-p", "track_seed:=1"]) == START_FAILED
    err = capsys.readouterr().err
    assert err.startswith("simulator needs the [sim] extra")
    assert "pip install 'ltc_controller[sim]'" in err
    assert not created


def test_a_missing_module_of_any_extra_is_reported_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(extras.EXTRAS, "x", ("no_such_mod",))
    row = dataclasses.replace(NODE_KINDS["safety_fallback"], extra="x")
    monkeypatch.setitem(registry.NODE_KINDS, "safety_fallback", row)
    assert run_node("safety_fallback", []) == START_FAILED
    assert "pip install 'ltc_controller[x]'" in capsys.readouterr().err


def test_running_one_kind_imports_no_other_node_module() -> None:
    code = (
        "import sys\n"
        "from ltc_controller.nodes.registry import run_node\n"
        "rc = run_node('safety_fallback', ['--ros-args', '-p', 'rate_hz:=-1.0'])\n"
        "others = [m for m in ('ltc_controller.nodes.policy_node',\n"
        "          'ltc_controller.nodes.simulator', 'torch') if m in sys.modules]\n"
        "print(rc, others)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # The safety node never reads a policy: torch is not loaded either.
    assert r.stdout.strip() == "2 []", r.stdout + r.stderr[-2000:]
    assert r.stderr.startswith("safety_fallback: ") and "rate_hz" in r.stderr


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"ROS_DOMAIN_ID": "999"}, "ROS_DOMAIN_ID=999 is outside 0..232"),
        ({"ROS_DOMAIN_ID": "abc"}, "is not an integer"),
        ({"CYCLONEDDS_URI": "<bad"}, "the transport could not start"),
    ],
)
def test_a_bad_dds_environment_is_a_start_failure_naming_it(env, match) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ltc_controller", "node", "safety_fallback"],
        # DDS mode: these are the DDS backend's messages (rcl words its own under rclpy).
        env={**os.environ, "LTC_CONTROLLER_TRANSPORT": "dds", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == START_FAILED, r.stderr[-2000:]
    assert match in r.stderr and "Traceback" not in r.stderr
