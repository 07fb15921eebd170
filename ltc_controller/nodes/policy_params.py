"""``ltc_policy`` parameters: the declarations, and the checks and plan of a runtime set (pure).

One declaration per parameter (:data:`PARAMS`); from it come the ROS parameter descriptors,
the validation of start-up values and of runtime sets, and the README's table. A runtime set is
*validated* here as a whole (:func:`plan_set`, nothing applied) and says what applying it takes
(:class:`SetPlan`); the node applies it after the set is accepted (Nav2's velocity_smoother:
validate on set, apply after). Which sets reset the policy's state:

- ``policy_file``: the file is loaded and checked, a new runtime is built on it and swapped in
  between two ticks: state reset;
- ``preprocess.crop_*``: a new runtime is built on the policy already loaded (the file is not
  read again) and swapped in the same way: state reset;
- ``deadline_s``, ``max_frame_age_s``, ``max_lag_s``, ``clock_stop_s``: applied to the running
  runtime in place, state kept;
- the command mapping (``speed_mps``, ``steering_scale``, ...), ``saliency.*``, ``ood.*`` and
  ``attention.*``: applied at the next tick, state kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltc_controller.nodes.commands import ACKERMANN, COMMAND_TYPES
from ltc_controller.params import COMMON, DIAGNOSTICS_PERIOD, ParameterError, ParamSpec
from ltc_controller.runtime.factory import RuntimeOverrides

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_TOPIC = {IMAGE: "camera/image_raw", COMPRESSED: "camera/image_raw/compressed"}
_CROPS = ("top", "bottom", "left", "right")

PARAMS: tuple[ParamSpec, ...] = COMMON + (
    ParamSpec(
        "policy_file",
        str,
        "",
        "Policy file (.safetensors); empty = the bundled policy, or an untrained NCP-19 if none "
        "is bundled. Setting it at run time loads and checks the file, then swaps it in (state "
        "reset); a file that fails leaves the running policy and rejects the set",
    ),
    ParamSpec(
        "untrained_seed",
        int,
        0,
        "Seed of the untrained policy used when no file is given",
        min=0,
        read_only=True,
    ),
    ParamSpec(
        "autostart",
        bool,
        True,
        "Configure and activate at start (lifecycle); false: stay unconfigured until a "
        "lifecycle manager or `ros2 lifecycle set` configures and activates the node",
        read_only=True,
    ),
    ParamSpec(
        "num_threads",
        int,
        1,
        "CPU threads for inference and frame resizing (torch, OpenCV; 1 keeps latency "
        "predictable beside other processes)",
        "",
        1,
        64,
        read_only=True,
    ),
    ParamSpec("device", str, "cpu", "Inference device: cpu, cuda, cuda:N or auto", read_only=True),
    ParamSpec(
        "backend",
        str,
        "torch",
        "Inference backend: torch, onnx (the [onnx] extra) or numba (the [numba] extra)",
        read_only=True,
    ),
    ParamSpec(
        "control_rate_hz", float, 20.0, "Control tick rate", "Hz", 1.0, 1000.0, read_only=True
    ),
    ParamSpec(
        "tick_on_frame",
        bool,
        True,
        "A camera frame's arrival triggers a tick, so its command is published as soon as it is "
        "computed (at most one frame tick per half control period); the control_rate_hz timer "
        "ticks only between frames. false: only the timer ticks",
        read_only=True,
    ),
    ParamSpec(
        "integration.step_s",
        float,
        0.0,
        "Fixed integration step; 0 = the policy file's",
        "s",
        0.0,
        1.0,
        read_only=True,
    ),
    ParamSpec(
        "deadline_s",
        float,
        0.0,
        "Work budget per tick (at most the control period); 0 = half the control period. A "
        "runtime set applies in place (state kept)",
        "s",
        0.0,
        1.0,
    ),
    ParamSpec(
        "max_frame_age_s",
        float,
        0.3,
        "Frames older than this are stale; two ticks further apart than max(this, 2 / "
        "control_rate_hz), on the steady clock (stall) or in ROS time (clock_jump_fwd), reset "
        "the state. A runtime set applies in place (state kept)",
        "s",
        0.001,
        10.0,
    ),
    ParamSpec(
        "max_lag_s",
        float,
        0.25,
        "Integration lag beyond this is a fault. A runtime set applies in place (state kept)",
        "s",
        0.0,
        10.0,
    ),
    ParamSpec(
        "clock_stop_s",
        float,
        0.0,
        "ROS time not advancing for this long (steady clock) is a stopped clock: health FAULT "
        "clock_stopped, state reset, no commands until it moves again; 0 = max_frame_age_s. A "
        "runtime set applies in place",
        "s",
        0.0,
        60.0,
    ),
    ParamSpec(
        "stamp_source",
        str,
        "header",
        "Frame time: header (header.stamp; a zero stamp is rejected as zero_stamp) or receive "
        "(ROS time when the frame arrives, for camera drivers that leave the stamp unset)",
        choices=("header", "receive"),
        read_only=True,
    ),
    ParamSpec(
        "camera_type",
        str,
        IMAGE,
        "Camera message type (topic camera/image_raw or camera/image_raw/compressed)",
        choices=(IMAGE, COMPRESSED),
        read_only=True,
    ),
    ParamSpec(
        "camera_qos",
        str,
        "sensor_data",
        "Camera subscription QoS: sensor_data (best effort) or reliable",
        choices=("sensor_data", "reliable"),
        read_only=True,
    ),
    *(
        ParamSpec(
            f"preprocess.crop_{side}",
            int,
            -1,
            f"Pixels cropped from the {side} of the camera image; -1 = the policy file's. "
            "Setting it at run time rebuilds the runtime from the loaded policy (state reset)",
            "px",
            -1,
            100000,
        )
        for side in _CROPS
    ),
    ParamSpec(
        "command_type",
        str,
        ACKERMANN,
        "Type of policy_cmd",
        choices=COMMAND_TYPES,
        read_only=True,
    ),
    ParamSpec(
        "twist_mapping",
        str,
        "bicycle",
        "Twist commands: bicycle (car: yaw rate from steering) or direct (drone outputs)",
        choices=("bicycle", "direct"),
        read_only=True,
    ),
    ParamSpec("wheelbase_m", float, 2.7, "Wheelbase for the bicycle mapping", "m", 0.01, 100.0),
    ParamSpec(
        "speed_mps",
        float,
        5.0,
        "Commanded speed when the policy outputs steering only",
        "m/s",
        0.0,
        50.0,
    ),
    ParamSpec(
        "steering_scale",
        float,
        1.0,
        "Factor applied to the policy's steering output",
        "",
        -10.0,
        10.0,
    ),
    ParamSpec(
        "max_steering_angle", float, 0.5, "Steering output is clamped to ±this", "rad", 0.0, 1.6
    ),
    ParamSpec(
        "velocity_scale",
        float,
        1.0,
        "Factor on linear_* outputs (direct mapping)",
        "",
        -100.0,
        100.0,
    ),
    ParamSpec(
        "yaw_rate_scale",
        float,
        1.0,
        "Factor on the angular_z output (direct mapping)",
        "",
        -100.0,
        100.0,
    ),
    ParamSpec(
        "rewarm_s",
        float,
        0.0,
        "After a state reset, integrate this long on fresh frames before sending commands "
        "(0: after the first step)",
        "s",
        0.0,
        10.0,
        read_only=True,
    ),
    ParamSpec(
        "state_reset_on",
        str,
        "leave",
        "When the LTC state is reset around a fallback: handback (safety goes ACTIVE again) or "
        "leave (safety leaves ACTIVE, so the state re-warms while the fallback drives)",
        choices=("handback", "leave"),
        read_only=True,
    ),
    DIAGNOSTICS_PERIOD,
    ParamSpec(
        "saliency.enabled",
        bool,
        False,
        "Publish ~/saliency (sensor_msgs/Image rgb8: VisualBackProp overlay on the network "
        "input), computed in a worker thread off the control path",
    ),
    ParamSpec(
        "saliency.rate_hz",
        float,
        2.0,
        "At most this many ~/saliency images per second",
        "Hz",
        0.1,
        30.0,
    ),
    ParamSpec(
        "ood.enabled",
        bool,
        True,
        "Out-of-distribution monitor on the head's features (needs statistics in the policy "
        "file: `ltc-controller monitor fit`); health reason ood_features",
    ),
    ParamSpec(
        "ood.hand_over",
        bool,
        True,
        "Above the fault threshold the policy reports FAULT (the safety node falls back, "
        "policy_fault); false: never worse than DEGRADED",
    ),
    ParamSpec(
        "ood.degraded_threshold",
        float,
        0.0,
        "Score (EMA of the squared Mahalanobis distance per feature) above which health is "
        "DEGRADED; 0 = the file's calibrated value",
        "",
        0.0,
        1.0e6,
    ),
    ParamSpec(
        "ood.fault_threshold",
        float,
        0.0,
        "Score above which health is FAULT; 0 = the file's calibrated value",
        "",
        0.0,
        1.0e6,
    ),
    ParamSpec(
        "attention.enabled",
        bool,
        True,
        "Attention monitor: saliency instability between consecutive frames (needs its "
        "calibration in the policy file: `ltc-controller monitor fit`); health reason "
        "attention_off_task",
    ),
    ParamSpec(
        "attention.hand_over",
        bool,
        True,
        "Above the attention fault threshold the policy reports FAULT (the safety node falls "
        "back, policy_fault); false: never worse than DEGRADED",
    ),
    ParamSpec(
        "attention.degraded_threshold",
        float,
        0.0,
        "Attention score (EMA of 1 - correlation of consecutive saliency maps) above which "
        "health is DEGRADED; 0 = the file's calibrated value",
        "",
        0.0,
        2.0,
    ),
    ParamSpec(
        "attention.fault_threshold",
        float,
        0.0,
        "Attention score above which health is FAULT; 0 = the file's calibrated value",
        "",
        0.0,
        2.0,
    ),
    ParamSpec(
        "attention.every_n_frames",
        int,
        0,
        "Score one pair of consecutive frames every N taken frames (saliency on 2 of N); 0 = "
        "the file's (the N its thresholds were calibrated at)",
        "",
        0,
        1000,
    ),
    ParamSpec(
        "debug.step_delay_s",
        float,
        0.0,
        "Fault injection: sleep this long in every integration step (stalls inference while "
        "the node keeps running); 0 in production",
        "s",
        0.0,
        5.0,
    ),
)

#: Sets of these build a new runtime (state reset): ``policy_file`` from the new file (loaded and
#: checked first), crops from the policy already loaded.
REBUILD_PARAMS = frozenset({"policy_file"} | {f"preprocess.crop_{s}" for s in _CROPS})
#: Sets of these are applied to the running runtime's settings in place (state kept).
RUNTIME_PARAMS = frozenset({"deadline_s", "max_frame_age_s", "max_lag_s", "clock_stop_s"})


def check_deadline(p: Mapping[str, Any]) -> None:
    """Raise :class:`~ltc_controller.params.ParameterError` if ``deadline_s`` exceeds the
    control period ``1 / control_rate_hz``."""
    period = 1.0 / p["control_rate_hz"]
    if p["deadline_s"] > period:
        raise ParameterError(
            f"parameter 'deadline_s': {p['deadline_s']} s exceeds the control period "
            f"{period:.4g} s (1/control_rate_hz)"
        )


def check_ood_thresholds(p: Mapping[str, Any]) -> None:
    """Raise :class:`~ltc_controller.params.ParameterError` if both thresholds of a monitor
    (``ood.*``, ``attention.*``) are set and its fault threshold is below its degraded one.
    (With one of them left at 0, the file's value, a fault threshold below the degraded one is
    raised to it.)"""
    for m in ("ood", "attention"):
        d, f = p[f"{m}.degraded_threshold"], p[f"{m}.fault_threshold"]
        if d > 0.0 and f > 0.0 and f < d:
            raise ParameterError(
                f"parameter '{m}.fault_threshold': {f} is below {m}.degraded_threshold {d}"
            )


def runtime_overrides(p: Mapping[str, Any]) -> RuntimeOverrides:
    """The runtime settings the parameters set over the policy file's (``0``/``-1`` mean the
    file's; ``deadline_s`` 0 means half the control period). The tick period is the control
    period (the stall/jump gap bound is ``max(max_frame_age_s, 2 / control_rate_hz)``, so a
    control rate below ``1 / max_frame_age_s`` is not a stall at every tick), and zero stamps
    are rejected (in ROS a zero ``header.stamp`` is unset)."""
    crops = {f"crop_{s}": p[f"preprocess.crop_{s}"] for s in _CROPS}
    return RuntimeOverrides(
        step_s=p["integration.step_s"] or None,
        deadline_s=p["deadline_s"] or 0.5 / p["control_rate_hz"],
        max_frame_age_s=p["max_frame_age_s"],
        max_lag_s=p["max_lag_s"],
        rewarm_s=p["rewarm_s"],
        tick_period_s=1.0 / p["control_rate_hz"],
        clock_stop_s=p["clock_stop_s"],
        reject_zero_stamps=True,
        **{k: (v if v >= 0 else None) for k, v in crops.items()},
    )


@dataclass(frozen=True)
class SetPlan:
    """What applying an accepted runtime set takes.

    Attributes:
        params: every parameter's value after the set.
        rebuild: a new runtime must be built before it applies.
        reload: it is built from a newly loaded policy file (``policy_file`` changed); else
            from the policy already loaded.
        runtime: the running runtime's settings change in place.
        saliency: the saliency worker's settings change.
        ood: the out-of-distribution monitors' settings change (``ood.*``, ``attention.*``).
    """

    params: dict[str, Any]
    rebuild: bool
    reload: bool
    runtime: bool
    saliency: bool
    ood: bool = False


def plan_set(current: Mapping[str, Any], changes: Mapping[str, Any]) -> SetPlan:
    """Check a runtime set as a whole and say what applying it takes; applies nothing.

    ``changes`` hold values already checked one by one against :data:`PARAMS` (type, range,
    read-only). Checked here: what involves several parameters (``deadline_s`` against the
    control period). Whether the policy's outputs fit the command mapping is checked by the
    caller against the policy that will run (:func:`~ltc_controller.nodes.policy_logic
    .check_outputs`).

    Raises:
        ParameterError: the set as a whole is invalid (the message names the parameter).
    """
    merged = {**current, **changes}
    check_deadline(merged)
    check_ood_thresholds(merged)
    changed = {k for k, v in changes.items() if current.get(k) != v}
    return SetPlan(
        params=merged,
        rebuild=bool(changed & REBUILD_PARAMS),
        reload="policy_file" in changed,
        runtime=bool(changed & RUNTIME_PARAMS),
        saliency=any(k.startswith("saliency.") for k in changed),
        ood=any(k.startswith(("ood.", "attention.")) for k in changed),
    )
