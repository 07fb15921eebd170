"""Deadline-aware fixed-step runtime, the stepping rule, backends, preprocessing and watchdog
(ROS-free).

- :mod:`.loop`: :class:`PolicyRuntime` (DESIGN.md §5), :class:`RuntimeConfig`, :class:`TickResult`.
- :mod:`.factory`: :func:`build_runtime`, the one way a runtime is assembled from a policy and
  :class:`RuntimeOverrides` (the node, closed-loop evaluation, explain).
- :mod:`.schedule`: the stepping rule on the integer-ns grid (:func:`steps_reached`, its one
  definition), :func:`step_counts` for offline passes, :func:`hold_schedule`.
- :mod:`.preprocess`: ``sensor_msgs/Image``/``CompressedImage`` decoding, crop/resize.
- :mod:`.watchdog`: health level and reason codes.
- :mod:`.backend`: the table of step-model backends (torch, ONNX Runtime, numba) and devices.

Names are loaded on first use (PEP 562): importing :mod:`.watchdog` for ``Health`` (the safety
node does) must not load torch through :mod:`.loop`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ltc_controller.runtime.backend import (
        BACKENDS,
        StepModel,
        available_backends,
        load_step_model,
        make_step_model,
        resolve_device,
    )
    from ltc_controller.runtime.factory import (
        RuntimeOverrides,
        build_runtime,
        preprocess_config,
        runtime_config,
    )
    from ltc_controller.runtime.loop import (
        Counters,
        PolicyRuntime,
        RuntimeConfig,
        TickResult,
    )
    from ltc_controller.runtime.preprocess import (
        FrameRejected,
        PreprocessConfig,
        Preprocessor,
        RawFrame,
        decode_image,
        frame_from_compressed,
        frame_from_image,
    )
    from ltc_controller.runtime.schedule import (
        HoldSchedule,
        hold_schedule,
        seconds_to_ns,
        step_counts,
        steps_reached,
    )
    from ltc_controller.runtime.watchdog import Health, Watchdog, WatchdogConfig

_SUBMODULE = {
    "BACKENDS": "backend",
    "Counters": "loop",
    "FrameRejected": "preprocess",
    "Health": "watchdog",
    "HoldSchedule": "schedule",
    "PolicyRuntime": "loop",
    "PreprocessConfig": "preprocess",
    "Preprocessor": "preprocess",
    "RawFrame": "preprocess",
    "RuntimeConfig": "loop",
    "RuntimeOverrides": "factory",
    "StepModel": "backend",
    "TickResult": "loop",
    "Watchdog": "watchdog",
    "WatchdogConfig": "watchdog",
    "available_backends": "backend",
    "build_runtime": "factory",
    "decode_image": "preprocess",
    "frame_from_compressed": "preprocess",
    "frame_from_image": "preprocess",
    "hold_schedule": "schedule",
    "load_step_model": "backend",
    "make_step_model": "backend",
    "preprocess_config": "factory",
    "resolve_device": "backend",
    "runtime_config": "factory",
    "seconds_to_ns": "schedule",
    "step_counts": "schedule",
    "steps_reached": "schedule",
}


def __getattr__(name: str) -> Any:
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BACKENDS",
    "Counters",
    "FrameRejected",
    "Health",
    "HoldSchedule",
    "PolicyRuntime",
    "PreprocessConfig",
    "Preprocessor",
    "RawFrame",
    "RuntimeConfig",
    "RuntimeOverrides",
    "StepModel",
    "TickResult",
    "Watchdog",
    "WatchdogConfig",
    "available_backends",
    "build_runtime",
    "decode_image",
    "frame_from_compressed",
    "frame_from_image",
    "hold_schedule",
    "load_step_model",
    "make_step_model",
    "preprocess_config",
    "resolve_device",
    "runtime_config",
    "seconds_to_ns",
    "step_counts",
    "steps_reached",
]
