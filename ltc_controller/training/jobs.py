"""Long jobs (train a model x seed, evaluate a policy x condition x episode) as Ray tasks, each
cached on disk by its inputs.

A :class:`Job` names a module-level function and its JSON-able keyword arguments; its key is a
hash of both and of the package version. :func:`run_jobs` returns the cached result of every job
that already finished (in this run or an interrupted earlier one) and runs the rest as Ray tasks:
on a local Ray instance that uses this machine's cores by default, or on a cluster given by
``address`` (or ``RAY_ADDRESS``). Each result is written to the cache as soon as its task
finishes (atomically: a temp file renamed into place), so Ctrl-C, a crash or a lost worker loses
at most the jobs still running; the next run resumes, and adding a seed runs only that seed.

On a cluster, paths in the arguments (bags, policy files, the work folder) must be on a file
system every node sees (e.g. NFS), as Ray does not move files.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ltc_controller

__all__ = [
    "Job",
    "JobCache",
    "JobsFailed",
    "RunStats",
    "address_problem",
    "ray_session",
    "run_jobs",
]


def address_problem(address: str | None, timeout_s: float = 5.0) -> str | None:
    """Why the Ray cluster ``address`` cannot be used (one line), or ``None``; checked before any
    work, so a typo is not found after the first minutes of a run. ``None``/``""``: a local
    instance (nothing to check); ``auto``: a cluster started on this machine must be found (as
    ``ray.init`` looks for it; not checked if this Ray version lacks that lookup);
    ``HOST:PORT`` (the head's GCS) or ``ray://HOST:PORT`` (Ray Client): the port must be a
    number in 1..65535 and accept a TCP connection within ``timeout_s``."""
    if not address:
        return None
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # a private API: without it, ray.init's own error comes later
            return None
        try:
            canonicalize_bootstrap_address("auto")
        except ConnectionError:
            return (
                "Ray address 'auto': no Ray cluster is running on this machine (`ray start --head`)"
            )
        return None
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return (
            f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto "
            "(e.g. 10.0.0.5:6379)"
        )
    import socket

    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        return f"Ray address {address!r}: cannot connect to {host}:{port} ({e.strerror or e})"
    return None


#: Inside :func:`ray_session`: a Ray instance started by a run_jobs call stays up for the next.
_session: dict[str, bool] = {"open": False, "started": False}


@dataclass(frozen=True)
class Job:
    """One unit of work.

    Attributes:
        kind: a folder of the cache (``"train"``, ``"evaluate"``).
        fn: ``"module:function"``; the function takes ``**kwargs`` and returns a JSON-able dict.
        kwargs: JSON-able inputs; together with ``fn`` and the package version, the cache key.
        label: for progress lines and errors.
        num_cpus: Ray CPUs the task reserves (its torch threads).
    """

    kind: str
    fn: str
    kwargs: Mapping[str, Any]
    label: str = ""
    num_cpus: float = 1.0

    @property
    def key(self) -> str:
        """Hex digest of (fn, kwargs, package version)."""
        blob = json.dumps(
            {"fn": self.fn, "kwargs": self.kwargs, "version": ltc_controller.__version__},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


class JobCache:
    """Results on disk: ``root/<kind>/<key>.json`` holding the job and its result."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, job: Job) -> Path:
        return self.root / job.kind / f"{job.key}.json"

    def get(self, job: Job) -> dict[str, Any] | None:
        """The cached result, or None (also for an unreadable file: the job then runs again)."""
        p = self.path(job)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        result = data.get("result") if isinstance(data, dict) else None
        return result if isinstance(result, dict) else None

    def put(self, job: Job, result: Mapping[str, Any], wall_s: float) -> None:
        p = self.path(job)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        record = {
            "job": {"fn": job.fn, "kwargs": job.kwargs, "label": job.label},
            "version": ltc_controller.__version__,
            "wall_s": round(wall_s, 3),
            "result": result,
        }
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, p)


class JobsFailed(RuntimeError):
    """Some jobs raised; the others' results are cached. ``failures``: (label, error text)."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        lines = [f"{len(failures)} job(s) failed (the others are cached; rerun to retry):"]
        lines += [
            f"  {label}: {err.strip().splitlines()[-1] if err else ''}" for label, err in failures
        ]
        super().__init__("\n".join(lines))


@dataclass
class RunStats:
    """What :func:`run_jobs` did: jobs found in the cache, run now, and the wall time (s)."""

    cached: int = 0
    ran: int = 0
    wall_s: float = 0.0
    address: str = ""
    task_wall_s: list[float] = field(default_factory=list)


def call(fn: str, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """Run ``fn`` (``"module:function"``) with ``kwargs``; returns (result, wall seconds).
    This is what a Ray task executes (and what runs in-process for tests of a job function)."""
    module, name = fn.split(":")
    t0 = time.perf_counter()
    result = getattr(importlib.import_module(module), name)(**kwargs)
    if not isinstance(result, dict):
        raise TypeError(f"{fn} returned {type(result).__name__}, not a dict")
    return result, time.perf_counter() - t0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


_sigterm: dict[str, Any] = {"saved": None}


def _interrupt_on_sigterm(before: Any) -> None:
    """After ``ray.init``: SIGTERM ends the run as Ctrl-C does (running tasks cancelled,
    finished ones cached, Ray shut down). Ray's own driver handler exits at once, leaving a
    stack dump from Ray's C++ core and idle workers behind. :func:`_shutdown_ray` puts back
    ``before``, the handler from before ``ray.init``."""
    if threading.current_thread() is threading.main_thread():
        _sigterm["saved"] = before
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()
    saved = _sigterm["saved"]
    if saved is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, saved)
        _sigterm["saved"] = None


@contextmanager
def ray_session() -> Iterator[None]:
    """Keep the Ray instance that the first :func:`run_jobs` inside the block starts (if any
    job needs one) for the later calls, and shut it down at the end of the block: a flow of
    dependent batches (search, train, DAgger rounds, evaluate) starts Ray once, not per batch.
    A fully cached run starts none."""
    if _session["open"]:
        yield
        return
    _session.update(open=True, started=False)
    try:
        yield
    finally:
        started = _session["started"]
        _session.update(open=False, started=False)
        if started:
            _shutdown_ray()


def run_jobs(
    jobs: Sequence[Job],
    cache: JobCache,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stats: RunStats | None = None,
) -> list[dict[str, Any]]:
    """Results of ``jobs`` in order: from the cache where present, else computed as Ray tasks.

    Args:
        jobs: the work; duplicates (same key) run once.
        cache: where results are read and written.
        address: a Ray cluster (``"host:port"``, ``"ray://..."`` or ``"auto"``); None:
            ``$RAY_ADDRESS`` if set, else a local instance started here (and stopped at the end).
        num_cpus: CPUs of a local instance (None: all of this machine's).
        progress: a tqdm bar over the jobs (``[train]`` extra) when True.
        log: line logger (one line per finished job).
        stats: filled with counts and times when given.

    Raises:
        JobsFailed: after every other job finished and was cached.
        KeyboardInterrupt: the running tasks are cancelled; finished ones are cached.
    """
    st = stats if stats is not None else RunStats()
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, Job] = {}
    for job in jobs:
        if job.key in results or job.key in todo:
            continue
        hit = cache.get(job)
        if hit is not None:
            results[job.key] = hit
        else:
            todo[job.key] = job
    st.cached = len(results)
    if todo:
        _run_on_ray(list(todo.values()), cache, results, address, num_cpus, progress, log, st)
    st.wall_s = time.perf_counter() - t0
    return [results[job.key] for job in jobs]


def _run_on_ray(
    todo: list[Job],
    cache: JobCache,
    results: dict[str, dict[str, Any]],
    address: str | None,
    num_cpus: int | None,
    progress: bool,
    log: Callable[[str], None],
    st: RunStats,
) -> None:
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        before = signal.getsignal(signal.SIGTERM)
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        _interrupt_on_sigterm(before)
        if _session["open"]:
            _session["started"], started_here = True, False  # ray_session shuts it down
    st.address = address or "local"
    remote = ray.remote(call)
    pending = {
        remote.options(num_cpus=job.num_cpus, name=job.label or job.kind).remote(
            job.fn, dict(job.kwargs)
        ): job
        for job in todo
    }
    bar = _bar(len(todo) + len(results), len(results), progress)
    failures: list[tuple[str, str]] = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result, wall = ray.get(ref)
                except ray.exceptions.RayError as e:
                    failures.append((job.label or job.key, str(e)))
                    log(f"job failed: {job.label or job.key}: {str(e).strip().splitlines()[-1]}")
                    continue
                cache.put(job, result, wall)
                results[job.key] = result
                st.ran += 1
                st.task_wall_s.append(wall)
                if bar is not None:
                    bar.update(1)
                log(f"done: {job.label or job.key} ({wall:.1f} s)")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        log(f"interrupted: {len(pending)} job(s) cancelled, {st.ran} finished and cached")
        raise
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            _shutdown_ray()
    if failures:
        raise JobsFailed(failures)


def _bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="job", desc="jobs")
