"""Deadline-miss statistics of ``ltc_policy`` in the closed-loop demo stack, and its fallbacks.

Runs the demo's three processes (simulator, ``safety_fallback``, ``ltc_policy``; bundled policy)
for ``--seconds`` and records every ``PolicyStatus`` the policy publishes (one per tick). From the
node's own counters and stamps (``deadline_misses``, ``ticks``, ``header.stamp``) it reports:

- ticks, deadline misses, miss rate, the load average of the machine during the run;
- the most misses seen in any sliding window of 1, 2, 5 and 10 s of the node's clock, and the
  gaps between misses (min / p10 / median): what the watchdog's window and thresholds
  (``runtime/watchdog.py``) are calibrated from;
- the longest run of consecutive missed ticks;
- how often the watchdog's ``overruns`` FAULT fires on this miss sequence, replayed through
  :class:`~ltc_controller.runtime.watchdog.Watchdog` with today's thresholds and with the old
  ones (5 misses in 1 s) - a FAULT there is a ``policy_fault`` fallback;
- the policy's health transitions (counted by level and reason) and the safety node's state
  changes (fallbacks, with their cause from ``SafetyStatus.active_fault``).

Statuses lost by the monitor (best effort at 20 Hz) lose no miss: the miss counter is cumulative,
a gap in the ``ticks`` counter is reported. The numbers go to stdout and, as JSON, to
``<output>/health.json``.

Run: ``python bench/bench_health.py [--seconds S] [--output DIR]`` (default 300 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ltc_controller.commands.demo import DEMO_TRACK_SEED
from ltc_controller.nodes.stamps import to_seconds
from ltc_controller.runtime.watchdog import TickObservation, Watchdog, WatchdogConfig
from ltc_controller.supervisor import Stack
from ltc_controller.transport.port import RELIABLE

WINDOWS_S = (1.0, 2.0, 5.0, 10.0)


def max_in_window(times: np.ndarray, window_s: float) -> int:
    """Most entries of sorted ``times`` (s) within any half-open window of ``window_s``."""
    if times.size == 0:
        return 0
    ends = np.searchsorted(times, times + window_s, side="left")
    return int((ends - np.arange(times.size)).max())


def overrun_faults(t: np.ndarray, dm: np.ndarray, cfg: WatchdogConfig) -> int:
    """Entries into the ``overruns`` FAULT when ticks at times ``t`` (s) missed ``dm`` deadlines
    each are replayed through a :class:`Watchdog` with ``cfg``."""
    wd = Watchdog(cfg)
    obs = TickObservation(has_output=True, frame_age_s=0.0)
    entries, was = 0, False
    for ti, d in zip(t, dm, strict=True):
        for k in range(max(int(d), 1)):
            obs.mono = float(ti) + 1e-6 * k
            obs.deadline_met = d == 0
            now = "overruns" in wd.update(obs)[1]
            entries += now and not was
            was = now
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--output", type=Path, default=Path("bench_health_out"))
    args = ap.parse_args()

    stack = Stack(args.output, {"simulator": ["-p", f"track_seed:={DEMO_TRACK_SEED}"]})
    # (tick stamp s, ticks, deadline_misses, health, reasons)
    rows: list[tuple[float, int, int, int, str]] = []
    safety: list[tuple[float, str, str]] = []

    def on_policy(msg: Any) -> None:
        rows.append(
            (
                to_seconds(msg.header.stamp),
                int(msg.ticks),
                int(msg.deadline_misses),
                int(msg.health),
                ",".join(msg.reasons),
            )
        )

    def on_safety(msg: Any) -> None:
        if not safety or safety[-1][1] != msg.state_name:
            safety.append((to_seconds(msg.header.stamp), str(msg.state_name), msg.active_fault))

    load0 = os.getloadavg()
    try:
        stack.start()
        mon = stack._mon_node
        mon.create_subscription("ltc_controller/msg/PolicyStatus", "policy_status", on_policy)
        mon.create_subscription(
            "ltc_controller/msg/SafetyStatus", "safety_status", on_safety, RELIABLE
        )
        if not stack.spin_for(90.0, lambda m: bool(rows) and rows[-1][1] > 0 and m.final_cmds):
            raise SystemExit("the stack did not start within 90 s")
        start = len(rows)
        stack.spin_for(args.seconds)
        load1 = os.getloadavg()
    finally:
        codes = stack.stop()
    rows = rows[start:]
    if len(rows) < 2:
        raise SystemExit(f"too few policy statuses ({len(rows)}); exit codes {codes}")
    t = np.array([r[0] for r in rows])
    ticks = np.array([r[1] for r in rows])
    misses = np.array([r[2] for r in rows])
    # One time per miss: the stamp of the status whose counter went up (repeated per step).
    dm = np.diff(misses, prepend=misses[0])
    miss_t = np.repeat(t, dm)
    n_ticks = int(ticks[-1] - ticks[0])
    n_miss = int(misses[-1] - misses[0])
    # Consecutive missed ticks: statuses in a row whose counter rose by one per tick.
    run = longest = 0
    for d in dm[1:]:
        run = run + 1 if d > 0 else 0
        longest = max(longest, run)
    gaps = np.diff(miss_t)
    transitions: dict[str, int] = {}
    prev = (rows[0][3], rows[0][4])
    for r in rows[1:]:
        if (r[3], r[4]) != prev:
            key = f"{'OK DEGRADED FAULT'.split()[r[3]]}({r[4]})"
            transitions[key] = transitions.get(key, 0) + 1
            prev = (r[3], r[4])
    fallbacks = [s for s in safety if s[1] == "FALLBACK"]
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "seconds": float(t[-1] - t[0]),
        "loadavg_1min_start_end": [load0[0], load1[0]],
        "ticks": n_ticks,
        "statuses_lost": int(n_ticks + 1 - len(rows)),
        "deadline_misses": n_miss,
        "miss_rate": n_miss / max(n_ticks, 1),
        "max_misses_in_window": {f"{w:g}s": max_in_window(miss_t, w) for w in WINDOWS_S},
        "longest_consecutive_misses": longest,
        "miss_gap_s_min_p10_median": (
            [float(gaps.min()), float(np.percentile(gaps, 10)), float(np.median(gaps))]
            if gaps.size
            else []
        ),
        "overruns_faults_now_old": [
            overrun_faults(t, dm, WatchdogConfig()),
            overrun_faults(t, dm, WatchdogConfig(overrun_window_s=1.0, overruns_fault=5)),
        ],
        "policy_health_transitions": transitions,
        "safety_states": [(round(s[0] - t[0], 2), s[1], s[2]) for s in safety],
        "fallbacks": len(fallbacks),
        "exit_codes": codes,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "health.json").write_text(json.dumps(out, indent=2))
    for k, v in out.items():
        print(f"{k:32s} {v}")


if __name__ == "__main__":
    main()
