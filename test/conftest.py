"""Fixtures shared by the test rooms.

``dds_loopback``: every test module that talks DDS gets a ROS domain of its own on loopback
(Cyclone DDS bound to 127.0.0.1, see :func:`ltc_controller.transport.dds.loopback_env`), so two
modules, or two test runs on one machine, never see each other's participants (the domain is
locked while the module runs: :func:`ltc_controller.supervisor.claim_domain`). It sets
``CYCLONEDDS_URI`` and ``ROS_DOMAIN_ID`` in ``os.environ`` for the module (subprocesses inherit
them) and restores both afterwards. Opt in with ``pytestmark = pytest.mark.usefixtures(
"dds_loopback")`` or by taking the fixture (its value is the domain id).
"""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import Iterator

import pytest

_ENV_KEYS = ("CYCLONEDDS_URI", "ROS_DOMAIN_ID", "LTC_CONTROLLER_DOMAIN_HELD")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def module_domain(module: str, pid: int | None = None) -> int:
    """A domain id in 100..199 that depends on the test module and the test process (where the
    fixture starts looking for a free one)."""
    key = f"{os.getpid() if pid is None else pid}:{module}".encode()
    return 100 + zlib.crc32(key) % 100


@pytest.fixture(scope="module")
def dds_loopback(request: pytest.FixtureRequest) -> Iterator[int]:
    """This module's DDS domain id, with the loopback environment set while the module runs."""
    cyclonedds = pytest.importorskip("cyclonedds", reason="cyclonedds is not installed")
    del cyclonedds
    from ltc_controller.supervisor import DOMAIN_HELD_ENV, claim_domain
    from ltc_controller.transport.dds import loopback_env

    # Locked while the module runs, so two test runs (or a demo) on this machine never meet.
    domain, lock = claim_domain(prefer=module_domain(request.module.__name__))
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ.update(loopback_env(domain))
    os.environ[DOMAIN_HELD_ENV] = str(domain)  # the module's stacks and demos share it
    yield domain
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    lock.close()


@pytest.fixture(scope="session", autouse=True)
def ros_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ROS_HOME`` in a fresh folder for the whole run: ``safety_fallback`` keeps its e-stop
    latch under it (``nodes/estop_state.py``), and a test run must neither read a latch that a
    user's run left in ``~/.ros`` nor leave one there."""
    saved = os.environ.get("ROS_HOME")
    home = str(tmp_path_factory.mktemp("ros_home"))
    os.environ["ROS_HOME"] = home
    yield home
    if saved is None:
        os.environ.pop("ROS_HOME", None)
    else:
        os.environ["ROS_HOME"] = saved


@pytest.fixture(autouse=True)
def process_stop_state() -> Iterator[None]:
    """A test that runs a node in this process (``run_node``, the CLI's ``main``) installs
    :mod:`ltc_controller.stop`'s SIGINT/SIGTERM handlers here, and the node's exit path then
    ignores both signals. A later SIGINT to this process (a test of a spin that returns on it)
    would leave a stop request that every later spin obeys at once: under rclpy, the nodes and
    the DDS-mode nodes of the rclpy tests stopped spinning before their first callback. Each test
    gets the handlers it started with and no stop request."""
    from ltc_controller import stop

    handlers = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    yield
    if stop.installed() or stop.requested():
        for s, h in handlers.items():
            if h is not None:  # None: set outside Python, left alone
                signal.signal(s, h)
        # The module keeps its state for the life of a one-node process; reset it by hand.
        stop._installed = False
        stop._event.clear()
        stop._received.name = ""
        stop._received.count = 0
