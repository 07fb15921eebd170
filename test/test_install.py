"""The base install (no extras) runs both nodes on a robot, and a feature that needs an extra
names it.

Two checks of the same claim:

- *Blocked*: in this environment, a ``sitecustomize`` makes every extra's modules unimportable
  (and records any attempt of ``ltc_controller`` code to import one); ``ltc_policy`` and
  ``safety_fallback`` start from ``python -m ltc_controller node ...``, run inference on camera
  frames sent from here, talk to each other, and stop with status 0 on SIGINT; no
  ``ltc_controller`` module tried to import an extra. The commands that need an extra exit 2
  naming it.
- *Fresh venv*: a new virtual environment gets the pinned CPU torch and ``pip install`` of a copy
  of this checkout (base only, as on a robot; about 35 s with pip's cache warm); ``pip list`` has
  none of the extras, and the installed ``ltc_policy`` and ``safety_fallback`` scripts pass the
  same check. Skipped, with the reason, when no package index is reachable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltc_controller.extras import EXTRAS
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("dds_loopback")]
ROOT = Path(__file__).resolve().parents[1]

#: Modules that must not be importable, or imported, for the two nodes: every extra's, and the
#: test-only references.
BLOCKED = sorted({m for mods in EXTRAS.values() for m in mods} | {"skimage", "ncps"})
#: Distributions of the extras (setup.cfg [options.extras_require]); none may be in the base.
EXTRA_DISTS = {
    "mujoco",
    "drone-models",
    "matplotlib",
    "tqdm",
    "imageio-ffmpeg",
    "onnx",
    "onnxruntime",
    "numba",
    "ray",
    "optuna",
    "rliable",
    "arch",
    "pandas",
    "scikit-image",
}
BASE_DISTS = {
    "torch",
    "numpy",
    "safetensors",
    "cyclonedds",
    "rosbags",
    "pyyaml",
    "pillow",
    "opencv-python-headless",
}

SITECUSTOMIZE = """\
import importlib.abc
import os
import sys

_BLOCKED = frozenset({blocked!r})


class _NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in _BLOCKED:
            return None
        frame = sys._getframe(1)  # the importing frame: past importlib's own
        while frame is not None and (
            frame.f_code.co_filename.startswith("<frozen")
            or frame.f_globals.get("__name__", "").startswith("importlib")
        ):
            frame = frame.f_back
        importer = frame.f_globals.get("__name__", "") if frame is not None else ""
        if importer.partition(".")[0] == "ltc_controller":
            with open(os.environ["LTC_TEST_BLOCKED_LOG"], "a") as f:
                f.write(f"{{importer}} imports {{name}}\\n")
        raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)


sys.meta_path.insert(0, _NoExtras())
"""


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    """This environment with the extras unimportable; attempts land in ``blocked.log``."""
    site = tmp_path / "no_extras"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=BLOCKED))
    env = dict(os.environ)  # the dds_loopback fixture set the domain and loopback
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["LTC_TEST_BLOCKED_LOG"] = str(tmp_path / "blocked.log")
    return env


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    """SIGINT to each node (as Ctrl-C), then their exit statuses (killed after 30 s)."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    codes = {}
    for kind, p in procs.items():
        try:
            codes[kind] = p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            codes[kind] = p.wait()
    return codes


def run_both_nodes(commands: dict[str, list[str]], env: dict[str, str], cwd: Path) -> None:
    """Start ``ltc_policy`` and ``safety_fallback`` with ``commands``; send camera frames until
    the policy has run inference on some and the safety node has received the policy's
    commands and sent its own output; SIGINT both; both must exit 0 without a traceback."""
    logs = {kind: cwd / f"{kind}.log" for kind in commands}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for kind, argv in commands.items():
        with open(logs[kind], "wb") as out:
            procs[kind] = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def tails() -> str:
        return "\n".join(f"--- {k}:\n{p.read_text()[-2500:]}" for k, p in logs.items())

    node = DdsNode("install_probe", parameter_services=False)
    seen: dict[str, Any] = {}
    node.create_subscription(
        "ltc_controller/msg/PolicyStatus",
        "policy_status",
        lambda m: seen.update(policy=m),
        RELIABLE,
    )
    node.create_subscription(
        "ltc_controller/msg/SafetyStatus",
        "safety_status",
        lambda m: seen.update(safety=m),
        RELIABLE,
    )
    node.create_subscription(
        "ackermann_msgs/msg/AckermannDriveStamped",
        "ackermann_cmd",
        lambda m: seen.update(output=m),
        RELIABLE,
    )
    camera = node.create_publisher("sensor_msgs/msg/Image", "camera/image_raw", SENSOR_DATA)
    h, w = 78, 200
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, h * w * 3, dtype=np.uint8).tobytes() for _ in range(4)]

    def up() -> bool:
        return (
            "output" in seen
            and "policy" in seen
            and int(seen["policy"].frames_used) > 0
            and "safety" in seen
            and int(seen["safety"].commands_received) > 0
        )

    try:
        sent = 0
        end = time.monotonic() + 120  # a bound for a stuck run, not a timing claim
        while time.monotonic() < end and not up():
            exited = {k: p.returncode for k, p in procs.items() if p.poll() is not None}
            assert not exited, f"exited early: {exited}\n{tails()}"
            img = node.msg(
                "sensor_msgs/msg/Image",
                height=h,
                width=w,
                encoding="rgb8",
                step=w * 3,
                data=images[sent % len(images)],
            )
            img.header.stamp.sec, img.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            camera.publish(img)
            sent += 1
            node.spin_once(0.05)
        assert up(), f"seen {sorted(seen)}\n{tails()}"
    finally:
        node.shutdown()
        codes = _stop(procs)
    assert codes == {kind: 0 for kind in commands}, tails()
    for log in logs.values():
        assert "Traceback" not in log.read_text(), tails()


def test_both_nodes_run_with_every_extra_blocked(blocked_env, tmp_path):
    py = sys.executable
    run_both_nodes(
        {
            "ltc_policy": [py, "-m", "ltc_controller", "node", "ltc_policy"],
            "safety_fallback": [py, "-m", "ltc_controller", "node", "safety_fallback"],
        },
        blocked_env,
        tmp_path,
    )
    log = tmp_path / "blocked.log"
    assert not log.exists(), "the nodes tried to import an extra:\n" + log.read_text()


@pytest.mark.parametrize(
    "argv,extras",
    [
        (["demo"], "[sim] extra: pip install 'ltc_controller[sim]'"),
        (["record", "out_bag"], "[sim] extra: pip install 'ltc_controller[sim]'"),
        (["evaluate", "--expert"], "[sim] extra: pip install 'ltc_controller[sim]'"),
        (["train", "--bag", "b"], "[train] extra: pip install 'ltc_controller[train]'"),
        (
            ["train", "--preset", "bundled"],
            "[train] and [sim] extras: pip install 'ltc_controller[train,sim]'",
        ),
        (
            ["compare", "--reduced"],
            "[sim] and [train] and [compare] extras: "
            "pip install 'ltc_controller[sim,train,compare]'",
        ),
        (
            ["explain", "--policy", "p", "--bag", "b"],
            "[explain] extra: pip install 'ltc_controller[explain]'",
        ),
        (["video-to-bag", "v.mp4", "b"], "[explain] extra: pip install 'ltc_controller[explain]'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_command_without_its_extra_names_it(argv, extras, blocked_env, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "ltc_controller", *argv],
        env=blocked_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"ltc-controller {argv[0]} needs the {extras}"


def test_the_simulator_node_without_sim_names_it(blocked_env, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "ltc_controller", "node", "simulator"],
        env=blocked_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "needs the [sim] extra: pip install 'ltc_controller[sim]'" in r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------------
# A fresh virtual environment with the base install


def _run(argv: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _source_copy(dest: Path) -> Path:
    """This checkout without what .gitignore and git keep out of it (venvs, builds, outputs),
    so that building the wheel writes nothing into the checkout."""
    ignored = [".git"] + [
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*ignored))
    return dest


@pytest.fixture(scope="module")
def base_venv() -> Iterator[Path]:
    """A new venv with ``torch==2.13.0`` (the CPU build, first, as tools/setup.sh does) and
    ``pip install`` of this checkout without extras. Removed afterwards (about 1 GB)."""
    work = Path(tempfile.mkdtemp(prefix="ltc-base-install-"))
    try:
        venv = work / "venv"
        r = _run([sys.executable, "-m", "venv", str(venv)], 120)
        assert r.returncode == 0, r.stderr
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        probe = _run(
            [*pip, "download", "-q", "--no-deps", "-d", str(work / "probe"), "PyYAML==6.0.4"],
            180,
            env=env,
        )
        if probe.returncode != 0:
            pytest.skip(f"no package index reachable: {probe.stderr.strip()[-500:]}")
        r = _run([*pip, "install", "-q", "torch==2.13.0"], 600, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        src = _source_copy(work / "src")
        r = _run([*pip, "install", "-q", str(src)], 600, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        shutil.rmtree(src)
        yield venv
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _venv_env() -> dict[str, str]:
    """This environment (DDS domain and loopback) without what points at the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.timeout(900)
def test_the_base_install_has_no_extra(base_venv):
    r = _run(
        [str(base_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        120,
        env=_venv_env(),
    )
    assert r.returncode == 0, r.stderr
    installed = {_dist_name(d["name"]) for d in json.loads(r.stdout)}
    assert BASE_DISTS | {"ltc-controller"} <= installed
    assert not installed & EXTRA_DISTS, sorted(installed & EXTRA_DISTS)


@pytest.mark.timeout(900)
def test_the_base_install_runs_both_nodes(base_venv, tmp_path):
    env = _venv_env()
    where = "import ltc_controller; print(ltc_controller.__file__)"
    r = _run([str(base_venv / "bin" / "python"), "-c", where], 120, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(str(base_venv)), (r.stdout, r.stderr)
    run_both_nodes(
        {kind: [str(base_venv / "bin" / kind)] for kind in ("ltc_policy", "safety_fallback")},
        env,
        tmp_path,
    )


@pytest.mark.timeout(900)
def test_the_base_install_names_the_sim_extra(base_venv, tmp_path):
    r = _run(
        [str(base_venv / "bin" / "ltc-controller"), "demo"], 120, env=_venv_env(), cwd=tmp_path
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "ltc-controller demo needs the [sim] extra: pip install 'ltc_controller[sim]'"
    )
