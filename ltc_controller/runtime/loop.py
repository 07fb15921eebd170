"""Deadline-aware fixed-step integration of a continuous-time policy (DESIGN.md §5).

The hidden state lives in continuous time. A tick at ROS time ``t`` advances it from the time it
has reached (``state_time``) towards ``t`` in sub-steps of exactly ``step_s``, holding the newest
perception features constant between frames (zero-order hold). Timing jitter changes how many
steps a tick takes, never their size. The part of ``t - state_time`` shorter than one step is
carried to the next tick; so is anything the deadline did not leave room for (that is *lag*).

Each tick has a budget (``deadline_s`` from the tick's start, on ``clock``, a monotonic clock).
The per-step and per-frame (decode + preprocess + conv head) costs are measured online; no step
or frame is started that the measured cost says cannot finish in time. A frame that does not fit
is held for the next tick (counted as skipped); steps that do not fit become lag (counted as an
overrun). Lag above ``max_lag_s`` is a fault: the backlog is dropped and reported.

Nothing here imports ROS or DDS; the node passes frames and times in, the tests inject clocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.runtime.preprocess import FrameRejected, Preprocessor, decode_image


class StepModel(Protocol):
    """What the runtime needs of a policy (``models.policy.Policy`` provides it)."""

    def features(self, images: torch.Tensor) -> torch.Tensor: ...
    def step(
        self, features: torch.Tensor, state: torch.Tensor, elapsed_s: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def initial_state(self, batch: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Times in seconds."""

    step_s: float = 0.05
    deadline_s: float = 0.02
    max_frame_age_s: float = 0.3
    max_lag_s: float = 0.2
    #: A frame stamped further than this in the future (clock skew allowance) is rejected.
    max_future_s: float = 0.05
    #: A frame or tick this far behind the newest seen means the clock jumped back (reset).
    clock_jump_s: float = 1.0
    #: A frame that does not fit in the time left waits at most this many ticks; then it is
    #: taken anyway (and the miss counted), so a slow head never starves the policy of frames.
    max_frame_skips: int = 2


@dataclass(frozen=True)
class RawFrame:
    """The fields of a ``sensor_msgs/Image`` the runtime needs. ``stamp`` is ``header.stamp`` in
    seconds (for arithmetic), ``stamp_ns`` the same in integer nanoseconds (carried unchanged
    into commands, so downstream nodes can match them to the frame exactly)."""

    stamp: float
    encoding: str
    height: int
    width: int
    step: int
    data: bytes | bytearray | memoryview
    stamp_ns: int = 0


@dataclass
class Counters:
    ticks: int = 0
    deadline_misses: int = 0
    frames_received: int = 0
    frames_used: int = 0
    frames_rejected: int = 0
    frames_skipped: int = 0
    frames_dropped: int = 0
    lag_faults: int = 0
    state_resets: int = 0
    rejections: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.frames_rejected += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1


@dataclass(frozen=True)
class TickResult:
    """What one tick produced. ``outputs`` is ``None`` until the first frame was processed."""

    outputs: NDArray[np.float64] | None
    frame_stamp: float
    frame_stamp_ns: int
    frame_age_s: float
    fresh: bool
    deadline_met: bool
    steps: int
    lag_s: float
    duration_s: float
    events: tuple[str, ...]


class _Cost:
    """Online cost estimate (s): smoothed mean plus four smoothed absolute deviations, as TCP
    estimates its retransmission timeout (Jacobson/Karels). Allocation-free; a single outlier
    raises it for a few samples, not for good."""

    def __init__(self, initial: float) -> None:
        self.mean = initial
        self.dev = initial / 2

    def add(self, sample: float) -> None:
        err = sample - self.mean
        self.mean += 0.125 * err
        self.dev += 0.25 * (abs(err) - self.dev)

    @property
    def peak(self) -> float:
        return self.mean + 4.0 * self.dev

    def seed(self, sample: float) -> None:
        self.mean, self.dev = sample, sample / 2


class PolicyRuntime:
    """Runs a :class:`StepModel` under the contract above, batch 1.

    ``clock`` is the monotonic clock that deadlines are measured on (default
    ``time.perf_counter``); ROS times (frame stamps, tick times) are passed in by the caller.
    """

    def __init__(
        self,
        model: StepModel,
        preprocessor: Preprocessor,
        cfg: RuntimeConfig,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if cfg.step_s <= 0 or cfg.deadline_s <= 0:
            raise ValueError("step_s and deadline_s must be positive")
        self.model = model
        self.pre = preprocessor
        self.cfg = cfg
        self.clock = clock
        self.counters = Counters()
        self._pending: RawFrame | None = None
        self._features: torch.Tensor | None = None
        self._state: torch.Tensor = model.initial_state(1)
        self._state_time: float | None = None
        self._frame_stamp = -math.inf
        self._frame_stamp_ns = 0
        self._newest_stamp = -math.inf
        self._last_tick_time = -math.inf
        self._outputs: NDArray[np.float64] | None = None
        self._skips = 0
        self._step_cost = _Cost(0.0)
        self._frame_cost = _Cost(0.0)
        self._warm_up(preprocessor)

    # -- inputs ---------------------------------------------------------------------------
    def offer_frame(self, frame: RawFrame) -> None:
        """Store the newest frame (cheap; called from the subscription callback). A frame that
        arrives before the previous one was taken replaces it: bursts never build a queue."""
        self.counters.frames_received += 1
        if self._pending is not None:
            self.counters.frames_dropped += 1
        self._pending = frame

    def reset(self) -> None:
        """Forget the hidden state, the features and the time reached (e.g. after a fallback)."""
        self._state = self.model.initial_state(1)
        self._state_time = None
        self._features = None
        self._outputs = None
        self._frame_stamp = -math.inf
        self._frame_stamp_ns = 0
        self.counters.state_resets += 1

    # -- the tick -------------------------------------------------------------------------
    def tick(self, now: float) -> TickResult:
        """Advance to ROS time ``now`` (s) within ``deadline_s`` of this call."""
        start = self.clock()
        deadline = start + self.cfg.deadline_s
        c = self.counters
        c.ticks += 1
        events: list[str] = []
        overrun = False

        if now < self._last_tick_time - self.cfg.clock_jump_s:
            self.reset()
            self._newest_stamp = -math.inf
            events.append("clock_jump_back")
        self._last_tick_time = now

        frame = self._pending
        if frame is not None:
            reason = self._check_stamp(frame, now)
            if reason == "clock_jump_back":
                self.reset()
                self._newest_stamp = -math.inf
                events.append(reason)
                reason = ""
            if reason:
                c.reject(reason)
                self._pending = None
            elif (
                self.clock() + self._frame_cost.peak > deadline
                and self._skips < self.cfg.max_frame_skips
            ):
                self._skips += 1  # keep it: the next tick with room takes it
                c.frames_skipped += 1
                events.append("frame_skipped")
            else:
                self._pending = None
                self._skips = 0
                self._take_frame(frame, events)

        steps = 0
        if self._features is not None and self._state_time is not None:
            h = self.cfg.step_s
            n = int((now - self._state_time) / h + 1e-9)
            with torch.inference_mode():
                for _ in range(n):
                    t0 = self.clock()
                    if t0 + self._step_cost.peak > deadline:
                        overrun = True
                        break
                    out, self._state = self.model.step(self._features, self._state, h)
                    self._step_cost.add(self.clock() - t0)
                    steps += 1
                    self._state_time += h
                if steps:
                    outputs = out[0].double().numpy()
                    if not (np.isfinite(outputs).all() and torch.isfinite(self._state).all()):
                        self.reset()
                        events.append("non_finite")
                    else:
                        self._outputs = outputs
            if self._state_time is not None and now - self._state_time > self.cfg.max_lag_s:
                c.lag_faults += 1
                events.append("lag")
                self._state_time = now - (now - self._state_time) % h

        lag = 0.0 if self._state_time is None else max(0.0, now - self._state_time)
        end = self.clock()
        met = (not overrun) and end <= deadline
        if not met:
            c.deadline_misses += 1
        age = now - self._frame_stamp
        return TickResult(
            outputs=self._outputs,
            frame_stamp=self._frame_stamp,
            frame_stamp_ns=self._frame_stamp_ns,
            frame_age_s=age,
            fresh=age <= self.cfg.max_frame_age_s,
            deadline_met=met,
            steps=steps,
            lag_s=lag,
            duration_s=end - start,
            events=tuple(events),
        )

    # -- helpers --------------------------------------------------------------------------
    def _warm_up(self, pre: Preprocessor, rounds: int = 3) -> None:
        """Run the model a few times so the first real frame does not pay for lazy
        initialisation, and seed the cost estimates with the last (warm) measurement."""
        img = torch.zeros(1, 3, pre.cfg.height, pre.cfg.width)
        state = self.model.initial_state(1)
        with torch.inference_mode():
            for _ in range(rounds):
                t0 = self.clock()
                feats = self.model.features(img)
                t1 = self.clock()
                self.model.step(feats, state, self.cfg.step_s)
                t2 = self.clock()
        self._frame_cost.seed(t1 - t0)
        self._step_cost.seed(t2 - t1)

    def _check_stamp(self, frame: RawFrame, now: float) -> str:
        cfg = self.cfg
        if not math.isfinite(frame.stamp):
            return "bad_stamp"
        if frame.stamp > now + cfg.max_future_s:
            return "future"
        if now - frame.stamp > cfg.max_frame_age_s:
            return "stale"
        # Fresh by the tick clock yet far behind the newest stamp: the clock went back.
        if frame.stamp < self._newest_stamp - cfg.clock_jump_s:
            return "clock_jump_back"
        if frame.stamp == self._newest_stamp:
            return "duplicate"
        if frame.stamp < self._newest_stamp:
            return "out_of_order"
        return ""

    def _take_frame(self, frame: RawFrame, events: list[str]) -> None:
        t0 = self.clock()
        try:
            rgb = decode_image(frame.encoding, frame.height, frame.width, frame.step, frame.data)
            img = self.pre(rgb)
        except FrameRejected as e:
            self.counters.reject(e.reason)
            events.append(f"rejected:{e.reason}")
            return
        with torch.inference_mode():
            feats = self.model.features(torch.from_numpy(img).unsqueeze(0))
        self._frame_cost.add(self.clock() - t0)
        self._features = feats
        self._newest_stamp = frame.stamp
        self._frame_stamp = frame.stamp
        self._frame_stamp_ns = frame.stamp_ns
        self.counters.frames_used += 1
        if self._state_time is None:
            # The continuous-time state starts at the first frame.
            self._state_time = frame.stamp

    @property
    def state(self) -> Any:
        return self._state
