"""The stepping rule (the integer-nanosecond grid), and the runtime's stepping replayed offline.

**The rule** (:func:`steps_reached`, its one definition). The hidden state advances in steps of
exactly ``step_ns`` on an integer-nanosecond grid that starts at ``origin_ns`` (online: the stamp
of the first frame the runtime takes): step ``j`` covers ``[origin + j step, origin + (j + 1)
step)``, and by time ``t`` the steps that have *ended* are taken::

    steps_reached(t_ns, origin_ns, step_ns) = (t_ns - origin_ns) // step_ns      (floor)

A tick at ``t`` takes ``steps_reached(t) - steps_done`` steps; the part of a step not reached
yet carries to the next tick, so jitter changes the number of steps, never their size. Every
user applies this one function:

- :class:`~ltc_controller.runtime.loop.PolicyRuntime` ``.tick`` (online, one tick at a time);
- :func:`hold_schedule` (the runtime's frame-taking and stepping on recorded tick times);
- :func:`step_counts` (vectorised: the steps of ticks at frame stamps, ``(T,)`` or ``(B, T)``),
  which training (``training.trainer``), closed-loop evaluation and explain feed to
  :meth:`~ltc_controller.models.policy.Policy.run_sequence` as integer counts. The models
  package has no rule of its own: it takes the counts.

Times are integer ns end to end (ROS stamps are ``sec``/``nanosec``); seconds are converted
once, by :func:`seconds_to_ns`, never accumulated as floats.

**The hold.** At each tick the runtime first takes the newest frame that has arrived (older
undelivered ones are dropped: newest wins), then takes the due steps with that frame's features
(zero-order hold). So a frame's features are held over the interval that *ends* at the tick that
took it; with one tick per frame stamp, frame ``t`` is held over ``step_counts(stamps)[t]`` steps.
:func:`hold_schedule` replays that on recorded stamps, as a pure function, so an offline pass
(training, evaluation, tests) can apply exactly the hold the runtime applies::

    s = hold_schedule(frame_stamps_ns, tick_ns, step_ns)
    step_out, _ = policy.run_sequence(features[:, s.step_frame], None)  # one step per entry
    tick_out = step_out[:, s.tick_last_step]                             # where >= 0

It assumes every frame is accepted (fresh, in order, decodable) and every due step fits in its
tick's deadline, i.e. the runtime's deterministic regime, and no time fault: the runtime resets
its state where two ticks are further apart than its gap bound (``RuntimeConfig.gap_s``: a
stall, a forward jump, or a gap in frame stamps replayed at the stamps), as training starts a
new segment at a gap longer than ``max_gap_s`` (``training.bag``). Replay each side of such a
gap as its own sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

__all__ = ["HoldSchedule", "hold_schedule", "seconds_to_ns", "step_counts", "steps_reached"]


def seconds_to_ns(seconds: float) -> int:
    """Seconds → integer nanoseconds, rounded to nearest (the runtime's time base)."""
    return round(seconds * 1e9)


@overload
def steps_reached(t_ns: int, origin_ns: int, step_ns: int) -> int: ...
@overload
def steps_reached(
    t_ns: NDArray[np.int64], origin_ns: int | NDArray[np.int64], step_ns: int
) -> NDArray[np.int64]: ...


def steps_reached(t_ns: Any, origin_ns: Any, step_ns: int) -> Any:
    """The stepping rule: whole steps of the grid ``origin_ns + j step_ns`` that have ended by
    ``t_ns``, ``(t_ns - origin_ns) // step_ns`` (floor division; negative before the origin).

    Args:
        t_ns, origin_ns, step_ns: integer ns (``step_ns > 0``, not checked: hot path).
            NumPy int64 arrays broadcast and give the same result element-wise.
    """
    return (t_ns - origin_ns) // step_ns


def step_counts(
    stamps_ns: Sequence[int] | NDArray[np.int64],
    step_ns: int,
    origin_ns: int | Sequence[int] | NDArray[np.int64] | None = None,
) -> NDArray[np.int64]:
    """Steps the runtime takes at ticks at ``stamps_ns`` (one tick per frame stamp), by
    :func:`steps_reached`: ``counts[..., t] = steps_reached(stamps[..., t]) -
    steps_reached(stamps[..., t - 1])``, with ``steps_reached(origin) = 0`` before ``t = 0``.

    Args:
        stamps_ns: ``(T,)`` or ``(B, T)`` integer ns, non-decreasing along ``T``.
        step_ns: integration step in ns (> 0).
        origin_ns: the grid's origin (the state's time zero), a scalar or ``(B,)``, at or before
            each sequence's first stamp. Default ``stamps_ns[..., 0]``: the runtime's (its state
            starts at the first frame's stamp, so that frame takes no step). A window cut from a
            longer recording passes its first frame's stamp minus the frame's period, so the
            first frame is held over the interval before it, as later ones are.

    Returns:
        ``(T,)`` or ``(B, T)`` int64 step counts (>= 0), what ``Policy.run_sequence`` takes.

    Raises:
        ValueError: ``step_ns <= 0``, stamps not 1-D or 2-D or not integers, decreasing
            stamps, an origin after the first stamp, or an origin of the wrong shape.
    """
    stamps = np.asarray(stamps_ns)
    if step_ns <= 0:
        raise ValueError(f"step_ns must be positive, got {step_ns}")
    if stamps.ndim not in (1, 2) or not np.issubdtype(stamps.dtype, np.integer):
        raise ValueError(
            f"stamps_ns must be (T,) or (B, T) integer ns, got {stamps.shape} {stamps.dtype}"
        )
    stamps = stamps.astype(np.int64, copy=False)
    if stamps.shape[-1] == 0:
        return np.zeros(stamps.shape, dtype=np.int64)
    first = stamps[..., :1]
    origin = first if origin_ns is None else np.asarray(origin_ns, dtype=np.int64)
    if origin_ns is not None:
        if origin.shape not in ((), stamps.shape[:-1]):
            raise ValueError(
                f"origin_ns must be a scalar or {stamps.shape[:-1]}, got {origin.shape}"
            )
        origin = origin[..., None]
        if np.any(origin > first):
            raise ValueError("origin_ns must be at or before each sequence's first stamp")
    if np.any(np.diff(stamps, axis=-1) < 0):
        raise ValueError("stamps_ns must be non-decreasing along T")
    reached = steps_reached(stamps, origin, step_ns)
    counts: NDArray[np.int64] = np.diff(reached, axis=-1, prepend=0)
    return counts


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
        ``step_counts(frame_stamps_ns, step_ns)``.

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
            due = max(0, steps_reached(now, origin, step_ns) - done)
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
