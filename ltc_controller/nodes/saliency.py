"""Live saliency off the control path: a worker thread that turns the newest network input into a
VisualBackProp overlay and hands it to a publish callback.

The control tick calls :meth:`SaliencyWorker.offer` after it has published its command: when a
saliency image is due (``rate_hz``) it copies the preprocessed frame (``(3, H, W)`` float32, about
190 kB for 78 x 200) into a one-slot mailbox and signals the worker; nothing else happens on the
tick, nothing blocks, and a frame offered while the worker is still busy replaces the waiting one
(newest wins, counted in ``replaced``). The worker runs its *own copy* of the conv head (so the
runtime's model is never shared across threads), computes VisualBackProp
(:func:`~ltc_controller.models.attention.visual_backprop`), blends it over the frame
(:func:`~ltc_controller.models.attention.overlay`) and calls ``publish(stamp_ns, rgb)``. Any
exception in the worker is counted and logged, never raised into the node.

Nothing here imports ROS or DDS: the node passes a publish callback.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ltc_controller.models.attention import overlay, visual_backprop

__all__ = ["SaliencyWorker"]

Publish = Callable[[int, NDArray[np.uint8]], None]


class SaliencyWorker:
    """Rate-limited VisualBackProp overlays computed in a daemon thread.

    Args:
        head: the conv head to explain; the worker keeps it as given (pass a private copy,
            e.g. ``copy.deepcopy(policy.head)``, on the CPU).
        color_order: channel order of the offered frames (``"rgb"``/``"bgr"``); overlays are
            always RGB.
        rate_hz: at most this many overlays per second (> 0).
        publish: ``publish(stamp_ns, rgb (H, W, 3) uint8)``, called on the worker thread.
        on_error: ``on_error(message)`` for a failed overlay (default: ignore; counted either
            way).

    Attributes (counters, read from any thread): ``offered`` frames handed over, ``replaced``
    handed over while the previous one still waited, ``published`` overlays published,
    ``errors`` failures; ``last_error`` the latest failure's message.

    Raises:
        ValueError: a non-positive ``rate_hz`` or an unknown ``color_order``.
    """

    def __init__(
        self,
        head: nn.Module,
        color_order: str,
        rate_hz: float,
        publish: Publish,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._check(color_order, rate_hz)
        self._head = head.eval()
        self._bgr = color_order == "bgr"
        self.rate_hz = float(rate_hz)
        self._publish = publish
        self._on_error = on_error
        # One-slot mailbox: deque append/popleft are atomic, so neither side ever waits.
        self._box: deque[tuple[int, NDArray[np.float32]]] = deque(maxlen=1)
        self._wake = threading.Event()
        self._stop = False
        self._next_due = -np.inf
        self.offered = 0
        self.replaced = 0
        self.published = 0
        self.errors = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="saliency", daemon=True)
        self._thread.start()

    @staticmethod
    def _check(color_order: str, rate_hz: float) -> None:
        if color_order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")

    def set_head(self, head: nn.Module, color_order: str) -> None:
        """Explain another head from the next overlay on (after a policy reload)."""
        self._check(color_order, self.rate_hz)
        self._head, self._bgr = head.eval(), color_order == "bgr"

    def due(self, now: float) -> bool:
        """Whether an overlay is due at monotonic time ``now`` (s)."""
        return now >= self._next_due

    def offer(self, image: NDArray[np.float32], stamp_ns: int, now: float) -> bool:
        """Hand over the network input ``(3, H, W)`` float32 in [0, 1] if an overlay is due at
        monotonic time ``now`` (s); returns whether it was taken. Non-blocking: one copy."""
        if now < self._next_due or self._stop:
            return False
        self._next_due = now + 1.0 / self.rate_hz
        if self._box:
            self.replaced += 1
        self._box.append((int(stamp_ns), np.array(image, dtype=np.float32, copy=True)))
        self.offered += 1
        self._wake.set()
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (waits up to ``timeout_s`` for an overlay in progress)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def render(self, image: NDArray[np.float32]) -> NDArray[np.uint8]:
        """The overlay of one ``(3, H, W)`` frame: ``(H, W, 3)`` uint8 RGB."""
        with torch.inference_mode():
            sal = visual_backprop(self._head, torch.from_numpy(image).unsqueeze(0))[0].numpy()
        rgb = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
        if self._bgr:
            rgb = rgb[:, :, ::-1]
        return overlay(np.ascontiguousarray(rgb), sal)

    def _run(self) -> None:
        # One overlay of a blank frame first: the lazy initialisation of the kernels on this
        # thread happens before any frame is offered, not while a tick waits.
        h, w = getattr(self._head, "image_height", 0), getattr(self._head, "image_width", 0)
        if h and w:
            try:
                self.render(np.zeros((3, int(h), int(w)), dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - reported on the first real frame
                self.last_error = f"warm-up: {type(exc).__name__}: {exc}"
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                stamp_ns, image = self._box.popleft()
            except IndexError:
                continue
            try:
                self._publish(stamp_ns, self.render(image))
                self.published += 1
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any failure
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._on_error is not None:
                    try:
                        self._on_error(self.last_error)
                    except Exception:  # noqa: BLE001
                        pass

    def stats(self) -> dict[str, Any]:
        """Counters as a dict (for diagnostics)."""
        return {
            "offered": self.offered,
            "replaced": self.replaced,
            "published": self.published,
            "errors": self.errors,
        }
