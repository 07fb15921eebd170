"""Which frame's features each fixed integration step holds: the runtime's stepping, offline.

:class:`~ltc_controller.runtime.loop.PolicyRuntime` advances the hidden state in steps of exactly
``step_ns`` on an integer-nanosecond grid that starts at the stamp of the first frame it takes
(``origin``): step ``j`` covers ``[origin + j step, origin + (j + 1) step)`` and is taken by the
first control tick at or after its end. At each tick the runtime first takes the newest frame
that has arrived (older undelivered ones are dropped: newest wins), then takes the due steps with
that frame's features (zero-order hold). So a frame's features are held over the interval that
*ends* at the tick that took it, which is what training does with ``timespans[:, t] =
stamp_t - stamp_{t-1}`` (``models.policy.substep_counts``) when the ticks are the frame stamps.

:func:`hold_schedule` replays that rule on recorded stamps, as a pure function, so an offline
pass (training, evaluation, tests) can apply exactly the hold the runtime applies::

    s = hold_schedule(frame_stamps_ns, tick_ns, step_ns)
    step_out, _ = policy.run_sequence(features[:, s.step_frame], None)  # one step per entry
    tick_out = step_out[:, s.tick_last_step]                             # where >= 0

It assumes every frame is accepted (fresh, in order, decodable) and every due step fits in its
tick's deadline, i.e. the runtime's deterministic regime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["HoldSchedule", "hold_schedule", "seconds_to_ns"]


def seconds_to_ns(seconds: float) -> int:
    """Seconds → integer nanoseconds, rounded to nearest (the runtime's time base)."""
    return round(seconds * 1e9)


@dataclass(frozen=True)
class HoldSchedule:
    """The runtime's stepping for one recorded sequence of frames and ticks.

    Attributes:
        step_frame: ``(S,)`` int64, index of the frame whose features step ``j`` holds.
        tick_steps: ``(K,)`` int64, steps taken at tick ``k``.
        tick_frame: ``(K,)`` int64, frame in use after tick ``k`` (``-1``: none yet).
        tick_last_step: ``(K,)`` int64, index of the last step done by tick ``k`` (``-1``:
            none yet, the runtime has no output).
        origin_ns: stamp of the first frame taken (the state's time zero), or ``None``.
    """

    step_frame: NDArray[np.int64]
    tick_steps: NDArray[np.int64]
    tick_frame: NDArray[np.int64]
    tick_last_step: NDArray[np.int64]
    origin_ns: int | None


def hold_schedule(
    frame_stamps_ns: Sequence[int] | NDArray[np.int64],
    tick_ns: Sequence[int] | NDArray[np.int64],
    step_ns: int,
    arrivals_ns: Sequence[int] | NDArray[np.int64] | None = None,
) -> HoldSchedule:
    """Replay the runtime's frame-taking and fixed stepping on recorded times.

    Args:
        frame_stamps_ns: ``(T,)`` frame ``header.stamp`` in ns, strictly increasing.
        tick_ns: ``(K,)`` control tick times in ns, non-decreasing.
        step_ns: integration step in ns (> 0).
        arrivals_ns: ``(T,)`` when each frame reaches the runtime (non-decreasing; default: its
            stamp). A frame is taken by the first tick at or after its arrival unless a newer
            frame has arrived by then.

    Returns:
        A :class:`HoldSchedule`. With ``tick_ns == frame_stamps_ns`` its ``tick_steps`` equal
        ``substep_counts(timespans, step_s)`` for ``timespans = [0, diff(stamps)]`` (seconds).

    Raises:
        ValueError: unsorted stamps, ticks or arrivals, mismatched lengths, ``step_ns <= 0``.
    """
    stamps = np.asarray(frame_stamps_ns, dtype=np.int64)
    ticks = np.asarray(tick_ns, dtype=np.int64)
    arrivals = stamps if arrivals_ns is None else np.asarray(arrivals_ns, dtype=np.int64)
    if step_ns <= 0:
        raise ValueError(f"step_ns must be positive, got {step_ns}")
    if stamps.ndim != 1 or ticks.ndim != 1 or arrivals.shape != stamps.shape:
        raise ValueError(
            f"frame_stamps_ns {stamps.shape}, arrivals_ns {arrivals.shape} and tick_ns "
            f"{ticks.shape} must be 1-D, stamps and arrivals of equal length"
        )
    if np.any(np.diff(stamps) <= 0):
        raise ValueError("frame_stamps_ns must be strictly increasing (the runtime drops others)")
    if np.any(np.diff(ticks) < 0) or np.any(np.diff(arrivals) < 0):
        raise ValueError("tick_ns and arrivals_ns must be non-decreasing")
    # Newest frame arrived by each tick (-1: none).
    newest = np.searchsorted(arrivals, ticks, side="right") - 1
    step_frame: list[int] = []
    tick_steps = np.zeros(len(ticks), dtype=np.int64)
    tick_frame = np.full(len(ticks), -1, dtype=np.int64)
    tick_last = np.full(len(ticks), -1, dtype=np.int64)
    origin: int | None = None
    current = -1
    done = 0
    for k, (now, latest) in enumerate(zip(ticks.tolist(), newest.tolist(), strict=True)):
        if latest > current:
            current = latest
            if origin is None:
                origin = int(stamps[current])
        if origin is not None:
            due = max(0, (now - origin) // step_ns - done)
            step_frame.extend([current] * due)
            done += due
            tick_steps[k] = due
        tick_frame[k] = current
        tick_last[k] = done - 1
    return HoldSchedule(
        step_frame=np.asarray(step_frame, dtype=np.int64),
        tick_steps=tick_steps,
        tick_frame=tick_frame,
        tick_last_step=tick_last,
        origin_ns=origin,
    )
