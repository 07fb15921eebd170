"""Jobs as Ray tasks on a real local Ray cluster (``ray start --head`` on loopback), cached on
disk by their inputs: a rerun runs nothing, a failure leaves the other results cached."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltc_controller.training.jobs import (
    Job,
    JobCache,
    JobsFailed,
    RunStats,
    ray_session,
    run_jobs,
)

pytest.importorskip("ray", reason="needs the [compare] extra (ray)")
pytestmark = pytest.mark.timeout(600)

# The `ray` console script's module, run with this interpreter: a venv that gets ray through a
# .pth (a ROS 2 venv borrowing the project's packages) has no `ray` script next to its python.
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(pgid: int, grace_s: float = 20.0) -> None:
    """SIGTERM the process group ``pgid``, then SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head on loopback with 2 CPUs, as `ray start --head` makes one; its address.

    Token authentication off for the head and this process's client: Ray 2.60 turns it on for
    a head when ``~/.ray/auth_token`` exists (a local ``ray.init`` writes one), and then the
    client here was refused (``InvalidAuthToken``) though it reads the same file.
    """
    port = _free_port()
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    tmp = tmp_path_factory.mktemp("ray")
    # Its own session, so that teardown stops this head's processes (they stay in the process
    # group of `ray start`) and no other Ray instance of this user (`ray stop` stops them all).
    head = subprocess.Popen(
        [
            *RAY,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={tmp}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = head.communicate(timeout=180)
    if head.returncode != 0:
        _stop_group(head.pid)
        raise RuntimeError(f"ray start --head failed:\n{out.decode(errors='replace')}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(head.pid)
        shutil.rmtree(tmp, ignore_errors=True)
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode


def _job(payload: dict, label: str) -> Job:
    # json.loads is a real module-level function that returns a dict: a job with no side effects.
    return Job("probe", "json:loads", {"s": json.dumps(payload)}, label=label)


def test_jobs_run_once_then_come_from_the_cache(ray_cluster: str, tmp_path: Path) -> None:
    cache = JobCache(tmp_path / "cache")
    jobs = [_job({"i": 1}, "one"), _job({"i": 2}, "two"), _job({"i": 1}, "one again")]
    first = RunStats()
    out = run_jobs(
        jobs, cache, address=ray_cluster, progress=False, log=lambda s: None, stats=first
    )
    assert out == [{"i": 1}, {"i": 2}, {"i": 1}]
    assert (first.ran, first.cached, first.address) == (2, 0, ray_cluster)  # the duplicate ran once
    assert len(list((tmp_path / "cache" / "probe").glob("*.json"))) == 2
    again = RunStats()
    jobs.append(_job({"i": 3}, "three"))  # e.g. a seed added: only it runs
    out = run_jobs(
        jobs, cache, address=ray_cluster, progress=False, log=lambda s: None, stats=again
    )
    assert out[-1] == {"i": 3} and (again.ran, again.cached) == (1, 2)


def test_a_failing_job_leaves_the_others_cached_and_a_rerun_resumes(
    ray_cluster: str, tmp_path: Path
) -> None:
    cache = JobCache(tmp_path / "cache")
    bad = Job("probe", "json:loads", {"s": "{not json"}, label="broken")
    jobs = [_job({"k": 1}, "fine"), bad]
    with pytest.raises(JobsFailed, match="broken") as e:
        run_jobs(jobs, cache, address=ray_cluster, progress=False, log=lambda s: None)
    assert [label for label, _ in e.value.failures] == ["broken"]
    assert cache.get(jobs[0]) == {"k": 1} and cache.get(bad) is None
    # A corrupt cache file counts as missing: the job runs again.
    cache.path(jobs[0]).write_text("{trunc")
    st = RunStats()
    out = run_jobs(
        jobs[:1], cache, address=ray_cluster, progress=False, log=lambda s: None, stats=st
    )
    assert out == [{"k": 1}] and st.ran == 1


def test_a_ray_session_starts_ray_once_for_several_batches(tmp_path: Path) -> None:
    import ray

    cache = JobCache(tmp_path / "cache")
    quiet = {"num_cpus": 1, "progress": False, "log": lambda s: None}  # a local instance
    with ray_session():
        assert run_jobs([_job({"b": 1}, "batch 1")], cache, **quiet) == [{"b": 1}]
        assert ray.is_initialized()  # kept for the next batch
        node = ray.get_runtime_context().get_node_id()
        assert run_jobs([_job({"b": 2}, "batch 2")], cache, **quiet) == [{"b": 2}]
        assert ray.get_runtime_context().get_node_id() == node  # the same instance
    assert not ray.is_initialized()  # closed with the session
    with ray_session():  # all cached: Ray is never started
        st = RunStats()
        run_jobs([_job({"b": 1}, "1"), _job({"b": 2}, "2")], cache, stats=st, **quiet)
        assert (st.cached, st.ran) == (2, 0) and not ray.is_initialized()


def test_the_key_is_the_inputs() -> None:
    a, b = _job({"i": 1}, "x"), _job({"i": 1}, "another label")
    assert a.key == b.key  # the label is not an input
    assert a.key != _job({"i": 2}, "x").key
    assert a.key != Job("probe", "json:dumps", a.kwargs).key


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_cancels_a_running_job_without_waiting_for_it(
    ray_cluster: str, tmp_path: Path, sig: signal.Signals
):
    # A driver process runs one 600 s job; SIGINT (or SIGTERM: Ray's own handler exited at once
    # with a stack dump) once the job has started must end the driver (KeyboardInterrupt, the
    # job cancelled) long before the job would have finished.
    mark = tmp_path / "started"
    script = f"""
import sys
from pathlib import Path
from ltc_controller.training.jobs import Job, JobCache, run_jobs
job = Job("probe", "subprocess:run", {{"args": ["sh", "-c", "touch {mark}; sleep 600"]}})
try:
    run_jobs([job], JobCache(Path({str(tmp_path / "cache")!r})), address={ray_cluster!r},
             progress=False, log=lambda s: print(s, file=sys.stderr, flush=True))
except KeyboardInterrupt:
    sys.exit(130)
"""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    # SIGINT's default action in the driver, whatever this process inherited (pytest run as a
    # shell's background job ignores it, and Python then installs no KeyboardInterrupt handler).
    driver = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300
        while not mark.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mark.exists(), "the job never started"
        t_int = time.monotonic()
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=300)
        ended_after_s = time.monotonic() - t_int
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "interrupted: 1 job(s) cancelled, 0 finished and cached" in err
    assert "SIGTERM received" not in err and "*** " not in err, err  # no C++ stack dump
    assert ended_after_s < 300  # the job alone runs 600 s
