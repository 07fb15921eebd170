"""A process-wide stop request, set by SIGINT or SIGTERM, for processes that run one node.

Why: a node must stop the same way on both backends whenever the signal comes — during its
imports, while it starts, while it spins, or a second time while it is already shutting down
(a terminal's Ctrl-C and ``ros2 launch`` forwarding it both arrive). Python's default SIGINT
handler raises ``KeyboardInterrupt`` wherever the main thread happens to be (an import, rclpy's
``destroy_node``), which skips cleanup; the default SIGTERM action ends the process without any
(no log file written, no final safe output). :func:`install` replaces both with a handler that
only records the request; the backends' ``spin`` loops poll :func:`requested` and return, and
the caller closes the node in order.

A handler installed here also replaces ``SIG_IGN`` (a parent that ignores SIGINT, such as a
non-interactive shell starting a background job): the node can always be stopped.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

__all__ = ["finish", "install", "installed", "reason", "requested"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_event = threading.Event()
_installed = False


class _Received:
    name = ""  # the first signal
    count = 0


_received = _Received()


def install() -> None:
    """Route SIGINT and SIGTERM to the stop request (idempotent). Call it first thing in a
    process that runs a node; only the main thread can install handlers (elsewhere this does
    nothing and the backends keep their own handling)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)
    _installed = True


def finish() -> None:
    """The node is closed and the process is about to exit: ignore further SIGINT/SIGTERM.
    Python resets handlers to the default action while it finalises (which would end the
    process by the signal, status -2, mid-flush); an ignored signal it leaves alone."""
    if _installed:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def installed() -> bool:
    """Whether :func:`install` took effect in this process."""
    return _installed


def requested() -> bool:
    """Whether a stop was requested (a signal arrived since :func:`install`)."""
    return _event.is_set()


def reason() -> str:
    """The first signal's name (``"SIGINT"``, ``"SIGTERM"``), ``""`` before any."""
    return _received.name


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _received.count += 1
    if _received.count == 1:
        _received.name = name
    elif _received.count == 2:  # once: a repeated Ctrl-C must not flood the terminal
        os.write(2, f"{name} again: already stopping\n".encode())
    _event.set()
