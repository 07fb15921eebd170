"""Deadline-aware fixed-step runtime, preprocessing, stepping schedule and watchdog (ROS-free).

- :mod:`.loop`: :class:`PolicyRuntime` (DESIGN.md §5), :class:`RuntimeConfig`, :class:`TickResult`.
- :mod:`.preprocess`: ``sensor_msgs/Image``/``CompressedImage`` decoding, crop/resize.
- :mod:`.schedule`: the runtime's feature hold and stepping as a pure function, for offline use.
- :mod:`.watchdog`: health level and reason codes.
- :mod:`.backend`: step-model backends (torch, ONNX Runtime) and devices.
"""

from ltc_controller.runtime.backend import (
    StepModel,
    available_backends,
    make_step_model,
    register_backend,
    resolve_device,
)
from ltc_controller.runtime.loop import (
    Counters,
    PolicyRuntime,
    RuntimeConfig,
    TickResult,
    make_runtime,
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
from ltc_controller.runtime.schedule import HoldSchedule, hold_schedule
from ltc_controller.runtime.watchdog import Health, Watchdog, WatchdogConfig

__all__ = [
    "Counters",
    "FrameRejected",
    "Health",
    "HoldSchedule",
    "PolicyRuntime",
    "PreprocessConfig",
    "Preprocessor",
    "RawFrame",
    "RuntimeConfig",
    "StepModel",
    "TickResult",
    "Watchdog",
    "WatchdogConfig",
    "available_backends",
    "decode_image",
    "frame_from_compressed",
    "frame_from_image",
    "hold_schedule",
    "make_runtime",
    "make_step_model",
    "register_backend",
    "resolve_device",
]
