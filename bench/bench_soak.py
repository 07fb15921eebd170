"""Soak: does any node of the closed loop grow while it drives? (issue 12 §3)

Runs the demo's stack — simulator, ``ltc_policy`` and ``safety_fallback`` as processes over
Cyclone DDS on loopback (:class:`ltc_controller.supervisor.Stack`) — for ``--duration-s``
(default 600 s), samples every node's resident set size (``VmRSS`` from ``/proc/<pid>/status``,
or psutil when installed) every ``--sample-s`` seconds, and prints, per node, the RSS at the end
of the warm-up and at the end, and the RSS slope after the warm-up (least-squares line, KB/min).
Target: ≤ 1 KB/min for ``safety_fallback`` and ``ltc_policy``. Also printed: the safety node's
fallbacks (``ACTIVE->FALLBACK`` transitions and fault counters from its last status), frames
published / used, and the simulator's log file size (streamed to disk while it runs).

What a slope measures: the whole process, native memory included. The nodes' Python objects are
bounded (``test_histories_stay_bounded_over_thousands_of_fallbacks``, tracemalloc); what is left
of ``safety_fallback``'s slope (about 18 KB/min here) is native and comes with Cyclone DDS
itself: a bare ``cyclonedds`` ``DomainParticipant`` with four peers on the domain grows at
20-40 KB/min with none of this package's code, with a flat heap (heaptrack, mallinfo2); the
pages come from a 1 MiB anonymous mapping the size of Cyclone's receive buffer
(``Sizing/ReceiveBufferSize``, default 1 MiB). ``--rbuf-kib N`` sets that size for every
process of the stack, to look further (192 KiB stopped the growth of a bare participant and of
a ``safety_fallback`` with one peer, not of the one in this stack: there, /proc/PID/smaps puts
the growth, about 25 KB/min, in a glibc per-thread malloc arena, i.e. memory allocated on one of
Cyclone's own threads; ``safety_fallback`` runs no other thread).

A faster equivalent of a 1 h run: ``--safety-rate-scale K`` runs the safety node at
``K × 50 Hz``, so 10 min at ``K = 6`` are as many safety ticks (and as many final commands into
the simulator's log) as an hour at 50 Hz. The default is ``K = 1`` (the demo's rates).

Run: ``python bench/bench_soak.py [--duration-s 600] [--sample-s 5] [--warmup-s 60]
[--safety-rate-scale 1] [--output soak_out]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ltc_controller.supervisor import Stack

SAFETY_RATE_HZ = 50.0
#: Target RSS slope after warm-up (issue 12), KB/min.
TARGET_KB_PER_MIN = 1.0


def rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, or None when the process is gone."""
    try:
        import psutil  # type: ignore[import-untyped]

        try:
            return int(psutil.Process(pid).memory_info().rss // 1024)
        except psutil.Error:
            return None
    except ImportError:
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_kb_per_min(t_s: np.ndarray, kb: np.ndarray) -> float:
    """Least-squares slope of ``kb`` over ``t_s`` (s), in KB/min; NaN with fewer than 3 points."""
    if t_s.size < 3:
        return float("nan")
    return float(np.polyfit(t_s / 60.0, kb.astype(np.float64), 1)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration-s", type=float, default=600.0, help="driving time (default 600)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sample period (default 5)")
    ap.add_argument(
        "--warmup-s", type=float, default=60.0, help="samples before this are not fitted"
    )
    ap.add_argument(
        "--safety-rate-scale",
        type=float,
        default=1.0,
        help=f"safety_fallback at this many times {SAFETY_RATE_HZ:g} Hz (default 1)",
    )
    ap.add_argument(
        "--rbuf-kib",
        type=int,
        default=0,
        help="Cyclone DDS Sizing/ReceiveBufferSize for every process (KiB; 0 = its 1 MiB "
        "default, whose pages are touched gradually: see the module docstring)",
    )
    ap.add_argument("--output", type=Path, default=None, help="logs and samples (default: tmp)")
    ap.add_argument("--domain-id", type=int, default=None)
    a = ap.parse_args()
    if not a.duration_s > a.warmup_s + 3 * a.sample_s:
        print("--duration-s must exceed --warmup-s by at least 3 samples", file=sys.stderr)
        return 2
    out = a.output or Path(tempfile.mkdtemp(prefix="soak_"))
    rate = SAFETY_RATE_HZ * a.safety_rate_scale
    # The e-stop state file (a new safety parameter) stays inside the output folder.
    os.environ.setdefault("ROS_HOME", str(out / "ros_home"))
    stack = Stack(out, {"safety_fallback": ["-p", f"rate_hz:={rate}"]}, domain_id=a.domain_id)
    if a.rbuf_kib:
        sizing = f"<Sizing><ReceiveBufferSize>{a.rbuf_kib}KiB</ReceiveBufferSize></Sizing>"
        uri = stack.env["CYCLONEDDS_URI"]
        stack.env["CYCLONEDDS_URI"] = uri.replace("</Domain>", sizing + "</Domain>")
    samples: dict[str, list[tuple[float, int]]] = {k: [] for k in stack.KINDS}
    print(
        f"soak: {a.duration_s:g} s, RSS every {a.sample_s:g} s, warm-up {a.warmup_s:g} s, "
        f"safety at {rate:g} Hz, DDS receive buffer "
        f"{f'{a.rbuf_kib} KiB' if a.rbuf_kib else '1 MiB (default)'}; logs in {out}"
    )
    try:
        stack.start()
        if not stack.spin_for(
            120.0, lambda m: m.policy_status is not None and m.policy_status.frames_used > 0
        ):
            print("soak: the policy processed no frame within 120 s", file=sys.stderr)
            return 1
        t0 = time.monotonic()
        next_sample = t0
        while (now := time.monotonic()) < t0 + a.duration_s:
            if now >= next_sample:
                next_sample += a.sample_s
                for k, p in stack.procs.items():
                    kb = rss_kb(p.pid)
                    if kb is not None:
                        samples[k].append((now - t0, kb))
            stack.spin_for(min(0.2, max(0.0, next_sample - time.monotonic())))
        m = stack.monitor
        ss, ps = m.safety_status, m.policy_status
    finally:
        codes = stack.stop()
    fallbacks = sum(
        1
        for (_, a_), (_, b_) in zip(m.safety_states, m.safety_states[1:], strict=False)
        if a_ == "ACTIVE" and b_ == "FALLBACK"
    )
    log = out / "sim_log.npz"
    machine = f"{platform.node()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    print(f"\nbench_soak  ({machine})")
    print(f"  {'node':<16} {'RSS@warm-up MB':>15} {'RSS@end MB':>11} {'slope KB/min':>13}  target")
    result: dict[str, object] = {
        "duration_s": a.duration_s,
        "safety_rate_hz": rate,
        "rbuf_kib": a.rbuf_kib,
    }
    for k, rows in samples.items():
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        fit = arr[arr[:, 0] >= a.warmup_s]
        slope = slope_kb_per_min(fit[:, 0], fit[:, 1]) if fit.size else float("nan")
        start = fit[0, 1] / 1024 if fit.size else float("nan")
        end = arr[-1, 1] / 1024 if arr.size else float("nan")
        ok = "ok" if slope <= TARGET_KB_PER_MIN else "OVER"
        target = f"<= {TARGET_KB_PER_MIN:g} {ok}" if k != "simulator" else "(reported)"
        print(f"  {k:<16} {start:>15.1f} {end:>11.1f} {slope:>13.2f}  {target}")
        result[k] = {"rss_warm_mb": start, "rss_end_mb": end, "slope_kb_per_min": slope}
    counts = dict(zip(ss.fault_names, ss.fault_counts, strict=True)) if ss is not None else {}
    print(f"  ACTIVE->FALLBACK transitions: {fallbacks}   safety states: {len(m.safety_states)}")
    print(f"  fault counters: {', '.join(f'{k}={v}' for k, v in counts.items() if v) or 'none'}")
    if ps is not None:
        print(
            f"  policy ticks {ps.ticks}, frames used {ps.frames_used}, "
            f"deadline misses {ps.deadline_misses}"
        )
    if log.exists():
        print(f"  simulator log {log.stat().st_size / 1e6:.1f} MB on disk")
    print(f"  exit statuses {codes}")
    result.update(fallbacks=fallbacks, fault_counts=counts, exit_codes=codes)
    (out / "soak.json").write_text(
        json.dumps({**result, "samples": samples}, indent=1, default=float)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
