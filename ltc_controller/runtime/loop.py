"""Deadline-aware fixed-step integration of a continuous-time policy (DESIGN.md §5).

Time. The hidden state lives in continuous time on an integer-nanosecond grid: it starts at the
stamp of the first frame taken (``origin``) and advances in steps of exactly ``step_s``; step
``j`` covers ``[origin + j h, origin + (j + 1) h)``. A tick at ROS time ``now`` first takes the
newest frame (its features replace the held ones), then takes every step that ends at or before
``now`` with those features (zero-order hold). The part of a step not yet reached is carried to
the next tick. That stepping rule is defined once, in
:func:`~ltc_controller.runtime.schedule.steps_reached` (the schedule module explains it); the
tick applies it, and so do the offline passes: a recorded sequence replayed with one tick per
frame stamp gives exactly what ``Policy.run_sequence`` gives with the counts
``schedule.step_counts(stamps_ns, step_ns)`` (the first frame takes no step, so the first tick
has no output yet), and :func:`~ltc_controller.runtime.schedule.hold_schedule` gives the same
stepping for any tick times. Frame jitter therefore changes the number of steps, never their
size.

Deadline. Each tick has a budget, ``deadline_s`` from its start on ``clock`` (monotonic). The
cost of a step and of a frame (decode + preprocess + conv head) are measured online
(:class:`_Cost`); no step or frame is started that the estimate says cannot finish in time. A
frame that does not fit waits for the next tick (``frame_skipped``, at most ``max_frame_skips``
times); steps that do not fit are carried as backlog (an *overrun*, counted; the tick still
returns the last command on time). Nothing overruns → the outputs are a deterministic function
of the frames and tick times (bit-identical on replay).

Lag. ``lag_s = now - state time`` after the tick's work. Lag above ``max_lag_s`` (the process
stalled and cannot catch up within one deadline, ROS time jumped forward, overruns piled up) is
a fault: the backlog is dropped (the state keeps its value and skips to the current step),
counted and reported as event ``lag``. A long gap between ticks is not lag in itself: the tick
catches up if the deadline leaves room.

Frames. Time comes from ``header.stamp``. Rejected and counted by reason: ``bad_stamp``
(not finite), ``zero_stamp`` (exactly 0, ROS's "unset", when ``reject_zero_stamps``; the node's
``stamp_source: receive`` stamps frames on arrival instead), ``future`` (> ``max_future_s``
ahead of ``now``), ``stale`` (older than ``max_frame_age_s``), ``duplicate`` (same stamp as the
newest taken), ``out_of_order`` (older than it), and decoding failures (``encoding``, ``size``,
``decode``, ``data``). A frame offered before the previous one was taken replaces it
(``frames_dropped``): no queue builds up.

Time faults. Each tick compares itself with the previous one on both clocks, before it takes
a frame, with the gap bound ``gap_s = max(max_frame_age_s, 2 * tick_period_s)``:

- ``stall``: more than ``gap_s`` of steady time (``clock``) since the last tick — the process
  stalled or was not ticked while frames kept arriving. The state is reset *before* the newest
  frame is taken, so the first command after the gap comes from a state built after it
  (counter ``stalls``).
- ``clock_jump_fwd``: not stalled, but more than ``gap_s`` of ROS time since the last tick (a
  bag gap, an NTP step; replayed at frame stamps: a gap between frames). The state is reset the
  same way (counter ``clock_jumps_fwd``); the work of a jump is bounded anyway
  (``max_steps_per_tick``, ``max_lag_s``).
- ``clock_stopped``: ROS time has not advanced for ``clock_stop_s`` (default
  ``max_frame_age_s``) of steady time (a paused simulator, a dead ``/clock``, ``use_sim_time``
  with nobody publishing). Chosen behaviour: the state is reset once (counter ``clock_stops``)
  and, while the clock stays stopped, no frame is taken, no step is integrated and no output is
  given (health FAULT ``clock_stopped``, so the safety node falls back on its policy fault
  instead of trusting commands from a frozen state). When ROS time moves again (event
  ``clock_resumed``) the state rebuilds from fresh frames, as after any reset.

Steady time comes from ``clock``: a frozen clock (offline passes) never stalls or stops; their
gaps in frame stamps are ``clock_jump_fwd``, as on the robot.

Resets. The state is reset (zero state, no features, no output until a new frame has been taken
and stepped) on: ``reset()`` (event ``reset``), ROS time going backwards by more than
``clock_jump_s`` at a tick or in a frame stamp (``clock_jump_back``: simulation reset, bag loop),
the time faults above (``stall``, ``clock_jump_fwd``, ``clock_stopped``), held features older
than ``max_frame_age_s`` after a tick's frame-taking, or older than ``gap_s`` before it (so a
frame arriving at the end of a camera gap does not hide the gap) (``stale_state``: the camera
stopped), a non-finite state or output (``non_finite``), and a state norm above the
watchdog bound (``state_norm``).

Re-engagement rule. A command is only ever computed from a state that has been integrated,
since its last reset, on frames no older than ``max_frame_age_s``: any gap in fresh frames
resets the state itself. After a reset, outputs stay ``None`` until the state has been
integrated ``rewarm_s`` (at least one step) on fresh frames (``TickResult.warm``). So when the
safety node hands control back after a fallback, the policy acts either on a state that kept
tracking fresh frames throughout (the fallback had another cause) or on one rebuilt from frames
taken after the gap. A node that wants a cold start at hand-back calls :meth:`reset` when the
safety node *leaves* policy control (fallback, e-stop, teleop), not when it hands control back:
the state then re-warms while the fallback drives, and heartbeats (sent only with an output)
resume only once it is warm.

Who ticks, and when (frame-triggered ticks). The rule above holds for any tick times, so the
caller may tick whenever it likes; the ``ltc_policy`` node ticks (a) when a frame arrives
(``tick_on_frame``), at ``now`` = its arrival, so the frame is taken at once and its command
published as soon as the tick returns, and (b) on its ``control_rate_hz`` timer between frames.
A frame tick is an ordinary tick: it takes the frame, then every step due by ``now`` with that
frame's features, exactly as a timer tick would. Two ticks at the same time never integrate
twice (the second finds no step due: ``steps_reached`` is absolute, ``steps_done`` counts what
was taken), so a timer tick that coincides with a frame tick only re-reports the same state.
With one tick per frame arrival and arrivals close to the stamps, the steps a frame holds are
``step_counts`` of the stamps, as in training; extra ticks between frames follow
:func:`~ltc_controller.runtime.schedule.hold_schedule` (tick and arrival times replayed).

Nothing here imports ROS or DDS; the node passes frames and times in, tests inject clocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from numpy.typing import NDArray

from ltc_controller.runtime.backend import StepModel
from ltc_controller.runtime.ood import AttentionMonitor, FeatureMonitor
from ltc_controller.runtime.preprocess import (
    FrameRejected,
    Preprocessor,
    RawFrame,
    decode_image,
)
from ltc_controller.runtime.schedule import seconds_to_ns, steps_reached
from ltc_controller.runtime.watchdog import (
    Health,
    TickObservation,
    Watchdog,
    WatchdogConfig,
    state_fault,
)

__all__ = [
    "Counters",
    "PolicyRuntime",
    "RawFrame",
    "RuntimeConfig",
    "StepModel",
    "TickResult",
]


@dataclass(frozen=True)
class RuntimeConfig:
    """Runtime settings; times in seconds.

    Attributes:
        step_s: fixed integration step h (use the policy file's ``step_s``).
        deadline_s: work budget of a tick, from its start.
        max_frame_age_s: frames older than this are rejected; held features older than this
            reset the state.
        max_lag_s: lag beyond this is a fault (backlog dropped).
        max_future_s: clock-skew allowance for frames stamped ahead of ``now``.
        clock_jump_s: ROS time this far behind the last tick (or a frame this far behind the
            newest frame) means the clock went back: reset.
        max_frame_skips: a frame that does not fit waits at most this many ticks, then is taken
            anyway (a slow head never starves the policy of frames).
        rewarm_s: after a reset, integrate this long on fresh frames before giving outputs
            (0: after the first step).
        max_steps_per_tick: guard against a clock that does not advance (a jump of ROS time
            far forward): more steps than this are postponed like those past the deadline.
        tick_period_s: nominal time between ticks (the node's control period; 0: unknown).
            Only sets the gap bound :attr:`gap_s`.
        clock_stop_s: ROS time not advancing for this long on ``clock`` (steady) is a stopped
            clock (0: ``max_frame_age_s``).
        reject_zero_stamps: reject frames stamped exactly 0 (``zero_stamp``): in ROS a zero
            ``header.stamp`` means "unset". Off for offline passes whose time starts at 0.
        watchdog: health thresholds; its ``max_frame_age_s`` is replaced by this one's.
    """

    step_s: float = 0.05
    deadline_s: float = 0.02
    max_frame_age_s: float = 0.3
    max_lag_s: float = 0.2
    max_future_s: float = 0.05
    clock_jump_s: float = 0.5
    max_frame_skips: int = 2
    rewarm_s: float = 0.0
    max_steps_per_tick: int = 10_000
    tick_period_s: float = 0.0
    clock_stop_s: float = 0.0
    reject_zero_stamps: bool = False
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)

    def __post_init__(self) -> None:
        positive = ("step_s", "deadline_s", "max_frame_age_s", "max_lag_s", "clock_jump_s")
        for name in positive:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"RuntimeConfig.{name} must be positive and finite, got {value}")
        if round(self.step_s * 1e9) < 1:
            raise ValueError(f"RuntimeConfig.step_s {self.step_s} is below 1 ns")
        if self.max_future_s < 0 or self.rewarm_s < 0 or self.max_frame_skips < 0:
            raise ValueError("max_future_s, rewarm_s and max_frame_skips must be >= 0")
        if self.max_steps_per_tick < 1:
            raise ValueError(f"max_steps_per_tick must be >= 1, got {self.max_steps_per_tick}")
        for name in ("tick_period_s", "clock_stop_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"RuntimeConfig.{name} must be >= 0 and finite, got {value}")

    @property
    def gap_s(self) -> float:
        """The gap bound (s): ``max(max_frame_age_s, 2 * tick_period_s)``. Two ticks further
        apart than this on ``clock`` are a ``stall``, in ROS time a ``clock_jump_fwd``; the
        state is not carried across either. At least two periods, so a control period longer
        than ``max_frame_age_s`` (a slow loop) is not a stall at every tick."""
        return max(self.max_frame_age_s, 2.0 * self.tick_period_s)

    @property
    def clock_stop_threshold_s(self) -> float:
        """``clock_stop_s``, or ``max_frame_age_s`` when it is 0."""
        return self.clock_stop_s or self.max_frame_age_s


@dataclass
class Counters:
    """Totals since construction (never reset). ``rejections`` and ``resets`` count by reason."""

    ticks: int = 0
    #: ticks that did not do everything due before the deadline (late, or work postponed)
    deadline_misses: int = 0
    #: ticks that finished after the deadline (the command itself was late)
    late_ticks: int = 0
    #: ticks that postponed steps (backlog carried as lag)
    overruns: int = 0
    frames_received: int = 0
    frames_used: int = 0
    frames_rejected: int = 0
    frames_skipped: int = 0
    frames_dropped: int = 0
    lag_faults: int = 0
    #: ticks more than ``gap_s`` after the previous one on the steady clock (state reset)
    stalls: int = 0
    #: ticks more than ``gap_s`` after the previous one in ROS time, not stalled (state reset)
    clock_jumps_fwd: int = 0
    #: times ROS time was found stopped for ``clock_stop_s`` of steady time (state reset)
    clock_stops: int = 0
    state_resets: int = 0
    steps: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.frames_rejected += 1
        self.rejections[reason] = self.rejections.get(reason, 0) + 1


@dataclass(slots=True)
class TickResult:
    """What one tick produced. The runtime reuses one instance (and one ``outputs`` array):
    it is overwritten by the next tick; :meth:`copy` it to keep it.

    Attributes:
        outputs: ``(M,)`` float64 commands in the policy's output units, or ``None`` (no frame
            taken yet, state reset and not re-warmed).
        frame_stamp, frame_stamp_ns: stamp of the frame whose features are held (``-inf``/0:
            none).
        frame_age_s: ``now - frame_stamp`` (``inf``: none).
        fresh: ``outputs`` is not None and ``frame_age_s <= max_frame_age_s``.
        deadline_met: everything due was done, before the deadline (the heartbeat condition).
        on_time: the tick finished before its deadline.
        overrun: steps were postponed (carried as lag).
        steps: fixed steps taken in this tick.
        lag_s: ``now`` minus the state's time (includes the part of a step not reached yet).
        backlog_steps: whole steps due but postponed.
        duration_s: the tick's work on ``clock``.
        warm: the state has been integrated ``rewarm_s`` since its last reset.
        events: event codes (``clock_jump_back``, ``clock_jump_fwd``, ``stall``,
            ``clock_stopped``, ``clock_resumed``, ``stale_state``, ``lag``, ``non_finite``,
            ``state_norm``, ``reset``, ``frame_skipped``, ``rejected:<reason>`` for frames
            that failed to decode).
        clock_stopped: ROS time has not advanced for ``clock_stop_s`` of steady time: no
            frame is taken, no step, no output, until it moves again.
        health, reasons: the :class:`~ltc_controller.runtime.watchdog.Watchdog` verdict
            (``PolicyStatus.health``/``reasons``).
    """

    outputs: NDArray[np.float64] | None = None
    frame_stamp: float = -math.inf
    frame_stamp_ns: int = 0
    frame_age_s: float = math.inf
    fresh: bool = False
    deadline_met: bool = True
    on_time: bool = True
    overrun: bool = False
    steps: int = 0
    lag_s: float = 0.0
    backlog_steps: int = 0
    duration_s: float = 0.0
    warm: bool = False
    events: tuple[str, ...] = ()
    clock_stopped: bool = False
    health: Health = Health.FAULT
    reasons: tuple[str, ...] = ()

    def copy(self) -> TickResult:
        """An independent copy (``outputs`` copied)."""
        out = replace(self)
        out.outputs = None if self.outputs is None else self.outputs.copy()
        return out


class _Cost:
    """Online cost estimate (s) of a step or a frame; allocation-free.

    ``peak`` = smoothed mean + 4 smoothed absolute deviations, as TCP estimates its
    retransmission timeout (Jacobson/Karels, RFC 6298). Two additions for a shared CPU, where a
    sample can include a preemption:

    - a sample counts at most twice the current ``peak``: a real slowdown still doubles the
      estimate per sample, one preempted sample does not make it huge;
    - :meth:`relax` is called when the estimate stopped all work (so no new sample can arrive):
      it halves the deviation, ``low`` (the cost of recent uninterrupted runs) and the distance
      of the mean to ``low``, so an estimate inflated by preemptions cannot block the runtime
      for good - not even one whose ``low`` is itself inflated (a warm-up preempted on a loaded
      machine seeded ``low`` above the deadline, and no step ever ran again); the next real
      sample corrects it either way.
    """

    def __init__(self, initial: float) -> None:
        self.mean: float = initial
        self.dev: float = initial / 2
        self.low: float = initial

    def add(self, sample: float) -> None:
        cap = 2.0 * self.peak
        if cap > 0.0 and sample > cap:
            sample = cap
        err = sample - self.mean
        self.mean += 0.125 * err
        self.dev += 0.25 * (abs(err) - self.dev)
        # low drops at once to a faster run and creeps up towards the typical one.
        self.low = sample if sample < self.low else self.low + 0.0625 * (sample - self.low)

    def relax(self) -> None:
        self.dev *= 0.5
        self.low *= 0.5
        self.mean = self.low + 0.5 * (self.mean - self.low)

    @property
    def peak(self) -> float:
        return self.mean + 4.0 * self.dev

    def seed(self, sample: float) -> None:
        self.mean, self.dev, self.low = sample, sample / 2, sample


class PolicyRuntime:
    """Runs a :class:`~ltc_controller.runtime.backend.StepModel` under the contract above,
    batch 1.

    Args:
        model: e.g. ``models.policy.Policy`` or ``backend.make_step_model(...)``; inputs are put
            on the device of ``model.initial_state(1)``.
        preprocessor: decoded image → network input (``Preprocessor(PreprocessConfig
            .from_policy(policy.config))``).

    :func:`~ltc_controller.runtime.factory.build_runtime` assembles one from a policy and
    overrides (backend, preprocessing and settings from the policy file); construct it directly
    only to inject a model or settings the factory does not cover (tests).
        cfg: :class:`RuntimeConfig`.
        clock: monotonic clock that deadlines are measured on (default
            ``time.perf_counter``). ROS times (frame stamps, ``now``) are passed in.

    Construction runs the model a few times (warm-up) to seed the cost estimates.
    ``tick`` never raises on bad input: frames that cannot be used are counted rejections.
    Ticks may come at any times, e.g. at each frame's arrival and from a timer between frames
    (module docstring, "Who ticks, and when"): the grid and the hold are the same for all.
    """

    def __init__(
        self,
        model: StepModel,
        preprocessor: Preprocessor,
        cfg: RuntimeConfig,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self.pre = preprocessor
        self.clock = clock
        self.counters = Counters()
        self._origin_ns: int | None = None
        self._steps_done = 0
        self._cfg = cfg
        self.watchdog = Watchdog()
        self.cfg = cfg
        self._pending: RawFrame | None = None
        self._features: torch.Tensor | None = None
        self._state: torch.Tensor = model.initial_state(1)
        self._device = self._state.device
        self._cuda = self._device.type == "cuda"
        # Network input: the preprocessor's buffer, seen as a (1, 3, H, W) tensor (no copy on
        # CPU; one preallocated device tensor otherwise).
        self._img_host = torch.from_numpy(preprocessor.out).unsqueeze(0)
        self._img = (
            self._img_host
            if not self._cuda
            else torch.empty_like(self._img_host, device=self._device)
        )
        self._warm_steps = 0
        self._has_output = False
        self._frame_stamp = -math.inf
        self._frame_stamp_ns = 0
        self._newest_stamp = -math.inf
        self._last_tick_time = -math.inf
        self._last_tick_mono = -math.inf
        self._advance_mono = -math.inf  # steady time of the last tick that saw ROS time advance
        self._clock_stopped = False
        self._skips = 0
        self._events: list[str] = []
        self._request_events: list[str] = []
        self._obs = TickObservation()
        self._step_cost = _Cost(0.0)
        self._frame_cost = _Cost(0.0)
        out = self._warm_up()
        # One output buffer for the whole run: outputs are copied into it (float64).
        self._out_np = np.zeros(out.shape[-1], dtype=np.float64)
        self._out_t = torch.from_numpy(self._out_np).view(1, -1)
        self._finite = np.zeros(out.shape[-1], dtype=bool)
        self._result = TickResult()
        #: Out-of-distribution monitor (:class:`~ltc_controller.runtime.ood.FeatureMonitor`):
        #: observes each taken frame's features, inside the frame's work and deadline.
        self.feature_monitor: FeatureMonitor | None = None
        #: Attention monitor (:class:`~ltc_controller.runtime.ood.AttentionMonitor`): computes
        #: the saliency of each frame it says is due, in the same head pass as the features.
        self.attention_monitor: AttentionMonitor | None = None

    @property
    def cfg(self) -> RuntimeConfig:
        """The settings; assigning new ones takes effect at the next tick (the state, its
        time and the watchdog's history are kept; a new ``step_s`` re-anchors the step grid at
        the time the state has reached)."""
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: RuntimeConfig) -> None:
        reached = self.state_time_ns
        self._cfg = cfg
        self._step_ns = seconds_to_ns(cfg.step_s)
        self._max_lag_ns = seconds_to_ns(cfg.max_lag_s)
        self._gap_s = cfg.gap_s
        self._stop_s = cfg.clock_stop_threshold_s
        # Whole steps that cover rewarm_s (on the ns grid, like the steps themselves).
        self._rewarm_steps = max(1, -(-seconds_to_ns(cfg.rewarm_s) // self._step_ns))
        if reached is not None:
            self._origin_ns, self._steps_done = reached, 0
        wd = replace(cfg.watchdog, max_frame_age_s=cfg.max_frame_age_s)
        if wd.overruns_fault == self.watchdog.cfg.overruns_fault:
            self.watchdog.cfg = wd
        else:  # the miss ring is sized by overruns_fault
            self.watchdog = Watchdog(wd)

    # -- inputs ---------------------------------------------------------------------------
    def offer_frame(self, frame: RawFrame) -> None:
        """Store the newest frame (cheap, never raises; called from the subscription
        callback). A frame that arrives before the previous one was taken replaces it."""
        self.counters.frames_received += 1
        if self._pending is not None:
            self.counters.frames_dropped += 1
        self._pending = frame

    def reset(self, reason: str = "request") -> None:
        """Forget the hidden state, the held features and the state's time; outputs stay
        ``None`` until a frame is taken and the state re-warmed (see the module docstring).
        Reported on the next tick as event ``reset`` (``reason`` when another is given)."""
        self._reset(reason, report=False)
        self._request_events.append("reset" if reason == "request" else reason)

    @property
    def warm(self) -> bool:
        """The state has been integrated ``rewarm_s`` (>= 1 step) since its last reset."""
        return self._has_output and self._warm_steps >= self._rewarm_steps

    @property
    def state(self) -> torch.Tensor:
        """The hidden state ``(1, N)`` (read-only use)."""
        return self._state

    @property
    def state_time_ns(self) -> int | None:
        """ROS time (ns) the state has reached, ``None`` before the first frame."""
        if self._origin_ns is None:
            return None
        return self._origin_ns + self._steps_done * self._step_ns

    # -- the tick -------------------------------------------------------------------------
    def tick(self, now: float, now_ns: int | None = None) -> TickResult:
        """Advance to ROS time ``now`` (s) within ``deadline_s`` of this call.

        ``now_ns`` (integer ns) is used for the integration grid when given, else
        ``round(now * 1e9)``. Returns the runtime's reused :class:`TickResult`.
        """
        start = self.clock()
        cfg = self.cfg
        deadline = start + cfg.deadline_s
        c = self.counters
        c.ticks += 1
        ev = self._events
        ev.clear()
        if self._request_events:
            ev.extend(self._request_events)
            self._request_events.clear()
        t_ns = seconds_to_ns(now) if now_ns is None else int(now_ns)

        # Time faults since the last tick (module docstring, "Time faults"), before any frame
        # is taken: a fresh frame taken at the resuming tick must not hide the gap.
        last_now, last_mono, gap = self._last_tick_time, self._last_tick_mono, self._gap_s
        self._last_tick_time = now
        self._last_tick_mono = start
        # One comparison chain on the common path; the first tick (-inf) goes through it too.
        if start - last_mono > gap or now - last_now > gap or now < last_now - cfg.clock_jump_s:
            self._time_fault(now, last_now, start, last_mono)
        if now > last_now:
            self._advance_mono = start
            stopped = False
            if self._clock_stopped:
                ev.append("clock_resumed")  # for the log; the state was reset at the stop
        else:
            stopped = start - self._advance_mono > self._stop_s
            if stopped and not self._clock_stopped:
                c.clock_stops += 1
                self._reset("clock_stopped")  # no command from the frozen state
        self._clock_stopped = stopped
        # Held features that a new frame would hide: a camera gap longer than the gap bound.
        if self._features is not None and now - self._frame_stamp > gap:
            self._reset("stale_state")

        frame = None if stopped else self._pending  # kept while the clock is stopped
        if frame is not None:
            reason = self._check_stamp(frame, now)
            if reason == "clock_jump_back":
                self._clock_jumped()
                reason = ""
            if reason:
                c.reject(reason)
                self._pending = None
            elif (
                self.clock() + self._frame_cost.peak > deadline
                and self._skips < cfg.max_frame_skips
            ):
                self._skips += 1  # keep it: the next tick with room takes it
                self._frame_cost.relax()
                c.frames_skipped += 1
                ev.append("frame_skipped")
            else:
                self._pending = None
                self._skips = 0
                self._take_frame(frame)

        if self._features is not None and now - self._frame_stamp > cfg.max_frame_age_s:
            self._reset("stale_state")

        steps = 0
        backlog = 0
        overrun = False
        origin = self._origin_ns
        if self._features is not None and origin is not None:
            step_ns = self._step_ns
            due = steps_reached(t_ns, origin, step_ns) - self._steps_done
            if due > 0:
                steps = self._integrate(min(due, cfg.max_steps_per_tick), deadline)
                backlog = due - steps
                overrun = backlog > 0
                if backlog * step_ns > self._max_lag_ns:
                    self._drop_backlog(backlog)
                    backlog = 0

        r = self._result
        r.steps = steps
        r.backlog_steps = backlog
        r.overrun = overrun
        state_ns = self.state_time_ns
        r.lag_s = 0.0 if state_ns is None else max(0, t_ns - state_ns) * 1e-9
        r.warm = warm = self.warm
        r.outputs = self._out_np if warm else None
        r.frame_stamp = self._frame_stamp
        r.frame_stamp_ns = self._frame_stamp_ns
        r.frame_age_s = age = now - self._frame_stamp
        r.fresh = warm and age <= cfg.max_frame_age_s
        r.events = tuple(ev) if ev else ()
        r.clock_stopped = stopped
        obs = self._obs
        obs.clock_stopped = stopped
        obs.mono = start
        obs.has_output = warm
        obs.warming = self._has_output and not warm
        obs.frame_age_s = age
        obs.deadline_met = self.clock() <= deadline and not overrun
        obs.lag_s = backlog * cfg.step_s
        obs.events = r.events
        r.health, r.reasons = self.watchdog.update(obs)
        # The last clock read: the runtime counts every miss it can see.
        end = self.clock()
        r.on_time = end <= deadline
        r.deadline_met = r.on_time and not overrun
        r.duration_s = end - start
        if overrun:
            c.overruns += 1
        if not r.on_time:
            c.late_ticks += 1
        if not r.deadline_met:
            c.deadline_misses += 1
        return r

    # -- helpers --------------------------------------------------------------------------
    def _integrate(self, due: int, deadline: float) -> int:
        """Take up to ``due`` steps with the held features; stop before a step the cost
        estimate says would end after ``deadline``. Returns the steps taken."""
        clock, cost, h = self.clock, self._step_cost, self.cfg.step_s
        model, feats, state = self.model, self._features, self._state
        assert feats is not None
        steps = 0
        out: torch.Tensor | None = None
        with torch.inference_mode():
            for _ in range(due):
                t0 = clock()
                if t0 + cost.peak > deadline:
                    break
                out, state = model.step(feats, state, h)
                if self._cuda:
                    torch.cuda.synchronize(self._device)
                cost.add(clock() - t0)
                steps += 1
            if out is None:
                cost.relax()  # the estimate stopped all work: let it come down
                return 0
            self._state = state
            self._steps_done += steps
            self.counters.steps += steps
            self._out_t.copy_(out)
            norm = float(torch.linalg.vector_norm(state))
        finite = bool(np.isfinite(self._out_np, out=self._finite).all())
        reason = state_fault(norm, finite, self.watchdog.cfg.max_state_norm)
        if reason:
            self._reset(reason)
            return steps
        self._has_output = True
        self._warm_steps += steps
        return steps

    def _drop_backlog(self, steps: int) -> None:
        """Lag fault: skip ``steps`` whole steps (the state keeps its value)."""
        self._steps_done += steps
        self.counters.lag_faults += 1
        self._events.append("lag")

    def _time_fault(self, now: float, last_now: float, start: float, last_mono: float) -> None:
        """ROS time went back, the process stalled, or ROS time jumped forward since the last
        tick (checked in that order; nothing at the first tick)."""
        if now < last_now - self.cfg.clock_jump_s:
            self._clock_jumped()
        elif last_mono == -math.inf:
            return
        elif start - last_mono > self._gap_s:
            self.counters.stalls += 1
            self._reset("stall")
        elif now - last_now > self._gap_s:
            self.counters.clock_jumps_fwd += 1
            self._reset("clock_jump_fwd")

    def _clock_jumped(self) -> None:
        self._reset("clock_jump_back")
        self._newest_stamp = -math.inf

    def _reset(self, reason: str, report: bool = True) -> None:
        self._state = self.model.initial_state(1)
        self._features = None
        self._origin_ns = None
        self._steps_done = 0
        self._warm_steps = 0
        self._has_output = False
        self._frame_stamp = -math.inf
        self._frame_stamp_ns = 0
        c = self.counters
        c.state_resets += 1
        c.resets[reason] = c.resets.get(reason, 0) + 1
        if report:
            self._events.append(reason)

    def _warm_up(self, rounds: int = 3) -> torch.Tensor:
        """Run preprocessing and the model a few times so the first real frame does not pay
        for lazy initialisation; seed the cost estimates with the fastest warm round (a round
        preempted on a loaded machine would seed an estimate far above the real cost).
        Returns the model's ``(1, M)`` output."""
        cfg = self.pre.cfg
        # A camera-sized frame: the crop is taken from it before resizing to the policy size.
        h = cfg.height + cfg.crop_top + cfg.crop_bottom
        w = cfg.width + cfg.crop_left + cfg.crop_right
        blank = bytes(h * w * 3)
        state = self.model.initial_state(1)
        frame_s = step_s = math.inf
        with torch.inference_mode():
            for k in range(rounds):
                t0 = self.clock()
                self.pre(decode_image("rgb8", h, w, w * 3, blank))
                feats = self.model.features(self._to_device())
                t1 = self.clock()
                out, _ = self.model.step(feats, state, self.cfg.step_s)
                if self._cuda:
                    torch.cuda.synchronize(self._device)
                t2 = self.clock()
                if k:  # the first round pays for lazy initialisation
                    frame_s, step_s = min(frame_s, t1 - t0), min(step_s, t2 - t1)
        self._frame_cost.seed(frame_s if rounds > 1 else t1 - t0)
        self._step_cost.seed(step_s if rounds > 1 else t2 - t1)
        return out

    def _to_device(self) -> torch.Tensor:
        if self._cuda:
            self._img.copy_(self._img_host)
        return self._img

    def _check_stamp(self, frame: RawFrame, now: float) -> str:
        cfg = self.cfg
        stamp = frame.stamp
        if not math.isfinite(stamp):
            return "bad_stamp"
        if stamp == 0.0 and frame.stamp_ns == 0 and cfg.reject_zero_stamps:
            return "zero_stamp"
        if stamp > now + cfg.max_future_s:
            return "future"
        if now - stamp > cfg.max_frame_age_s:
            return "stale"
        # Fresh by the tick clock yet far behind the newest stamp: the clock went back.
        if stamp < self._newest_stamp - cfg.clock_jump_s:
            return "clock_jump_back"
        if stamp == self._newest_stamp:
            return "duplicate"
        if stamp < self._newest_stamp:
            return "out_of_order"
        return ""

    def _take_frame(self, frame: RawFrame) -> None:
        t0 = self.clock()
        try:
            self.pre.frame(frame)  # decode (JPEG at reduced scale), crop, resize, scale
        except FrameRejected as e:
            self._rejected(e.reason)
            return
        except Exception:  # noqa: BLE001 - a library error on bad bytes must not end the tick
            self._rejected("decode")
            return
        att = self.attention_monitor
        with torch.inference_mode():
            if att is not None and att.due():
                self._features = att.take(self._to_device(), frame.stamp, self.model)
            else:
                self._features = self.model.features(self._to_device())
                if att is not None:
                    att.skip()
        if self.feature_monitor is not None:
            feats = self._features if not self._cuda else self._features.cpu()
            self.feature_monitor.observe(feats.numpy(), frame.stamp)
        self._frame_cost.add(self.clock() - t0)
        self._newest_stamp = frame.stamp
        self._frame_stamp = frame.stamp
        self._frame_stamp_ns = frame.stamp_ns
        self.counters.frames_used += 1
        if self._origin_ns is None:
            # The continuous-time state starts at the first frame's stamp.
            self._origin_ns = frame.stamp_ns
            self._steps_done = 0

    def _rejected(self, reason: str) -> None:
        self.counters.reject(reason)
        self._events.append(f"rejected:{reason}")
