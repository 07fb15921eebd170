"""When the ``ltc_policy`` node ticks, and when a tick's command is new (pure: times come in).

The node calls :meth:`TickRule.frame_arrived` from its camera callback and
:meth:`TickRule.timer_fired` from its ``control_rate_hz`` timer; each says whether to tick now.
Times are steady-clock seconds (``node.steady()``). The rule (``tick_on_frame: true``):

- **Frame ticks.** A frame's arrival triggers a tick at once, so its command is published as
  soon as it is computed instead of waiting up to a control period ``P`` for the timer.
- **Rate limit.** Frame ticks are at least ``P / 2`` apart: a frame arriving sooner after the
  last frame tick is *deferred*: it waits in the runtime (a newer one replaces it) for the next
  tick, at most ``2 P`` later. Together with the timer rule below, the node ticks, and
  publishes, at most ``2 / P`` times a second (twice ``control_rate_hz``) however fast the
  camera is: between two frame ticks ``g`` apart there are at most ``ceil(g / P) - 1`` timer
  ticks.
- **Timer ticks between frames.** A timer tick is skipped while the last frame tick is less than
  ``P`` old: that frame tick did the period's work. With a camera as fast as the control rate
  the ticks are then the frame arrivals (one tick per frame, as in training); with a faster
  control rate the timer keeps integrating between frames; when the camera stops the timer
  keeps the node ticking (stale frames, watchdog).
- **No double publish** (:meth:`TickRule.new_command`): a command goes out only when it is new,
  i.e. the state reached another grid step or holds another frame than at the last command. A
  timer tick that coincides with a frame tick integrates nothing (the runtime never takes a grid
  step twice) and holds the same frame, so it publishes no command.

With ``tick_on_frame: false`` every timer tick runs and publishes, and frames never tick.
"""

from __future__ import annotations

import math

__all__ = ["TickRule"]


class TickRule:
    """The tick trigger and command de-duplication of one node (see the module docstring).

    Args:
        period_s: control period ``P = 1 / control_rate_hz`` (s, > 0).
        on_frame: ``tick_on_frame``.

    Attributes:
        frame_ticks: ticks triggered by a frame.
        frame_ticks_deferred: frames that arrived within ``P / 2`` of the last frame tick (taken
            by a later tick, or replaced by a newer frame).
        timer_ticks_skipped: timer firings that did not tick.

    Raises:
        ValueError: ``period_s`` not positive and finite.
    """

    def __init__(self, period_s: float, on_frame: bool) -> None:
        if not (period_s > 0 and math.isfinite(period_s)):
            raise ValueError(f"period_s must be positive and finite, got {period_s}")
        self.period_s = period_s
        self.on_frame = on_frame
        self._min_gap_s = 0.5 * period_s
        self._last_frame_tick = -math.inf
        self._last_key: tuple[int | None, int] | None = None
        self.frame_ticks = 0
        self.frame_ticks_deferred = 0
        self.timer_ticks_skipped = 0

    def frame_arrived(self, now: float) -> bool:
        """A frame was offered to the runtime at steady time ``now``: tick now? (Counts the
        tick or the deferral; a tick it allows is recorded as a frame tick at ``now``.)"""
        if not self.on_frame:
            return False
        if now - self._last_frame_tick < self._min_gap_s:
            self.frame_ticks_deferred += 1
            return False
        self._last_frame_tick = now
        self.frame_ticks += 1
        return True

    def timer_fired(self, now: float) -> bool:
        """The control timer fired at steady time ``now``: tick now?"""
        if self.on_frame and now - self._last_frame_tick < self.period_s:
            self.timer_ticks_skipped += 1
            return False
        return True

    def new_command(self, state_time_ns: int | None, frame_stamp_ns: int) -> bool:
        """Whether a tick's command (the state reached ``state_time_ns``, holding the frame
        stamped ``frame_stamp_ns``) differs from the last one sent; records it if so. Always
        True without ``on_frame`` (every timer tick publishes)."""
        if not self.on_frame:
            return True
        key = (state_time_ns, frame_stamp_ns)
        if key == self._last_key:
            return False
        self._last_key = key
        return True
