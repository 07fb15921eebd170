"""The ltc_policy node class over real Cyclone DDS (loopback, in this process): topics, command
mapping, heartbeat contract, runtime parameter sets and policy reloads, diagnostics."""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from ltc_controller.models.policy import Policy
from ltc_controller.models.policy_file import save_policy
from ltc_controller.nodes.commands import TWIST, TWIST_STAMPED
from ltc_controller.nodes.policy_node import PolicyNode
from ltc_controller.params import ParameterError
from ltc_controller.transport.dds import DdsNode
from ltc_controller.transport.port import RELIABLE, SENSOR_DATA

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("dds_loopback")]
H, W = 78, 200
PERIOD = 0.05  # control_rate_hz 20 (default)


class Rig:
    """A PolicyNode under test and a peer participant (camera, listener) in one namespace."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.ns = "/" + "t" + uuid.uuid4().hex[:8]
        self.dut_node = DdsNode("ltc_policy", self.ns, parameters=params or {})
        self.policy = PolicyNode(self.dut_node)
        self.peer = DdsNode("peer", self.ns, parameter_services=False)
        p = self.policy.p
        self.cmd_type = p["command_type"]
        self.cmds: list[Any] = []
        self.hbs: list[Any] = []
        self.status: list[Any] = []
        self.diag: list[Any] = []
        self.frames_sent: list[int] = []
        peer = self.peer
        peer.create_subscription(self.cmd_type, "policy_cmd", self.cmds.append, RELIABLE)
        peer.create_subscription("std_msgs/msg/Header", "policy_heartbeat", self.hbs.append)
        peer.create_subscription(
            "ltc_controller/msg/PolicyStatus", "policy_status", self.status.append
        )
        peer.create_subscription(
            "diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", self.diag.append
        )
        cam = p["camera_type"]
        topic = "camera/image_raw" if cam.endswith("/Image") else "camera/image_raw/compressed"
        self.cam = peer.create_publisher(cam, topic, SENSOR_DATA)
        self.safety = peer.create_publisher(
            "ltc_controller/msg/SafetyStatus", "safety_status", RELIABLE
        )
        self.rng = np.random.default_rng(0)
        self._next_frame = 0.0
        self.camera_on = True
        self.frame_maker: Callable[[int], Any] = self.image

    def image(self, stamp_ns: int) -> Any:
        img = self.peer.msg(
            "sensor_msgs/msg/Image",
            height=H,
            width=W,
            encoding="rgb8",
            step=W * 3,
            data=self.rng.integers(0, 256, H * W * 3, dtype=np.uint8).tobytes(),
        )
        img.header.stamp.sec, img.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return img

    def spin(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.dut_node.spin_once(0.002)
            self.peer.spin_once(0.0)
            now = time.monotonic()
            if self.camera_on and now >= self._next_frame:
                self._next_frame = now + PERIOD
                stamp = time.time_ns()
                self.cam.publish(self.frame_maker(stamp))
                self.frames_sent.append(stamp)
            if until is not None and until():
                return True
        return False

    def close(self) -> None:
        self.peer.shutdown()
        self.dut_node.shutdown()


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**params: Any) -> Rig:
        rigs.append(Rig(params))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def test_heartbeat_only_on_fresh_frames_and_commands_carry_the_frame_stamp(rig_factory):
    rig = rig_factory()
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 10), "no heartbeats"
    sent = set(rig.frames_sent)
    cmd_stamps = [stamp_ns(c.header) for c in rig.cmds]
    assert set(cmd_stamps) <= sent  # every command names a real camera frame
    assert {stamp_ns(h) for h in rig.hbs} <= set(cmd_stamps)
    assert all(c.drive.speed == 5.0 and abs(c.drive.steering_angle) <= 0.5 for c in rig.cmds)
    # Camera off: heartbeats stop within max_frame_age_s (+ a tick), the status says why.
    rig.camera_on = False
    rig.spin(0.1)
    n_hb, t_off = len(rig.hbs), time.monotonic()
    rig.spin(1.0)
    assert len(rig.hbs) - n_hb <= math.ceil(0.3 / PERIOD) + 1
    last = rig.status[-1]
    assert last.health == 2 and set(last.reasons) & {"stale_frame", "no_frame"}
    assert not last.heartbeat_sent
    assert time.monotonic() - t_off >= 1.0


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_health_transition_is_logged_with_its_reasons(rig_factory):
    # The rig's noise frames are out of distribution for the bundled policy's monitor, which
    # would hold FAULT (ood_features) from the start; this test is about the camera-off FAULT.
    rig = rig_factory(**{"ood.enabled": False, "attention.enabled": False})
    lines = _Lines()
    rig.dut_node.logger.addHandler(lines)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 5), "no heartbeats"
    health = [m.health for m in rig.status]
    # Camera off: the health goes to FAULT; the line says so, at ERROR, with the reason.
    rig.camera_on = False
    assert rig.spin(3.0, lambda: rig.status[-1].health == 2)
    rig.spin(0.2)
    text = [(r.levelno, r.getMessage()) for r in lines.records if "health" in r.getMessage()]
    faults = [m for lvl, m in text if lvl == logging.ERROR and "-> FAULT" in m]
    assert faults, text
    reasons = set(rig.status[-1].reasons)
    assert any(r in faults[-1] for r in reasons), (faults, reasons)
    # As many transitions logged or counted as the status stream showed (none unexplained).
    health = [m.health for m in rig.status]
    changes = sum(1 for a, b in zip(health, health[1:], strict=False) if a != b)
    log = rig.policy.health_log
    assert log.faults >= 1 and log.transitions >= changes
    assert len(text) + log.suppressed >= log.transitions


def test_runtime_sets_are_validated_and_rejected_with_a_reason(rig_factory):
    rig = rig_factory()
    n = rig.dut_node
    assert "exceeds the control period" in n.set_parameters({"deadline_s": 0.08})
    assert "read-only" in n.set_parameters({"control_rate_hz": 10.0})
    assert "above the maximum" in n.set_parameters({"max_steering_angle": 3.0})
    assert "unknown parameter" in n.set_parameters({"steering_gain": 1.0})
    assert n.set_parameters({"deadline_s": 0.04, "max_steering_angle": 0.1}) == ""
    assert rig.spin(10.0, lambda: len(rig.cmds) >= 5)
    assert rig.status[-1].deadline_s == pytest.approx(0.04)
    assert all(abs(c.drive.steering_angle) <= 0.1 + 1e-6 for c in rig.cmds[-3:])
    assert n.get_parameters()["deadline_s"] == 0.04


def test_policy_file_change_reloads_without_a_heartbeat_before_a_fresh_frame(rig_factory, tmp_path):
    rig = rig_factory()
    n = rig.dut_node
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 5)
    # A file that does not load: rejected with the loader's message, the old policy runs on.
    missing = tmp_path / "missing.safetensors"
    reason = n.set_parameters({"policy_file": str(missing)})
    assert "missing.safetensors" in reason
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    assert "truncated" in n.set_parameters({"policy_file": str(bad)})
    hb = len(rig.hbs)
    assert rig.spin(5.0, lambda: len(rig.hbs) >= hb + 3)
    assert rig.status[-1].policy_reloads == 0
    # A good file: loaded in the callback, swapped in between ticks; no heartbeat until the
    # new policy has acted on a fresh frame.
    other = save_policy(Policy.from_config(seed=5), tmp_path / "seed5.safetensors")
    rig.camera_on = False
    rig.spin(0.3)  # frames and heartbeats already in flight are delivered before the swap
    hb = len(rig.hbs)
    assert n.set_parameters({"policy_file": str(other)}) == ""
    st = len(rig.status)
    rig.spin(0.5)
    swapped = [s for s in rig.status[st:] if s.policy_reloads == 1]
    assert swapped, "the new policy was not swapped in"
    assert len(rig.hbs) == hb  # nothing from a half-swapped state
    assert all(not s.heartbeat_sent for s in swapped)
    assert swapped[0].policy_file == str(other)
    assert swapped[0].health == 1 and "reset" in swapped[0].reasons  # waiting, not a fault
    rig.camera_on = True
    assert rig.spin(10.0, lambda: len(rig.hbs) >= hb + 3)
    assert rig.status[-1].policy_file == str(other)


def test_runtime_settings_apply_in_place_without_a_reload_or_a_state_reset(rig_factory):
    rig = rig_factory()
    n = rig.dut_node
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 5)
    resets = rig.status[-1].state_resets
    assert n.set_parameters({"max_frame_age_s": 0.5, "max_lag_s": 0.3, "deadline_s": 0.02}) == ""
    hb = len(rig.hbs)
    assert rig.spin(5.0, lambda: len(rig.hbs) >= hb + 3)
    last = rig.status[-1]
    assert (last.policy_reloads, last.state_resets) == (0, resets)
    assert last.deadline_s == pytest.approx(0.02)
    # The new frame age applies: with the camera off, the status goes to a stale-frame FAULT
    # (not the DEGRADED "reset" of a freshly swapped policy).
    rig.camera_on = False
    assert rig.spin(5.0, lambda: rig.status[-1].health == 2)
    assert "reset" not in rig.status[-1].reasons


def test_a_crop_change_rebuilds_the_runtime_from_the_loaded_policy_not_the_file(
    rig_factory, tmp_path
):
    path = save_policy(Policy.from_config(seed=5), tmp_path / "seed5.safetensors")
    rig = rig_factory(policy_file=str(path))
    n = rig.dut_node
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    resets = rig.status[-1].state_resets
    path.unlink()  # the file is gone: a crop change must not need it
    assert n.set_parameters({"preprocess.crop_top": 4}) == ""
    hb = len(rig.hbs)
    assert rig.spin(10.0, lambda: len(rig.hbs) >= hb + 3)
    last = rig.status[-1]
    assert last.policy_reloads == 0 and last.state_resets >= resets + 1
    assert last.policy_file == str(path)
    assert rig.policy.engine.runtime.pre.cfg.crop_top == 4


def test_twist_bicycle_mapping_turns_steering_into_yaw_rate(rig_factory):
    rig = rig_factory(command_type=TWIST, wheelbase_m=2.0, speed_mps=3.0, steering_scale=-2.0)
    assert rig.spin(15.0, lambda: len(rig.cmds) >= 5 and len(rig.status) >= 5)
    # Each command and the status of the same tick: compare the last pair published together.
    rig.camera_on = False
    rig.spin(0.05)
    s = rig.status[-1]
    cmd = rig.cmds[-1]
    steer = max(-0.5, min(0.5, -2.0 * s.outputs[0]))
    assert cmd.linear.x == pytest.approx(3.0)
    assert cmd.angular.z == pytest.approx(3.0 * math.tan(steer) / 2.0, rel=1e-5, abs=1e-7)
    assert cmd.linear.y == 0.0 and cmd.linear.z == 0.0


def test_direct_twist_mapping_for_a_drone_policy(rig_factory):
    rig = rig_factory(command_type=TWIST_STAMPED, twist_mapping="direct", velocity_scale=2.0)
    assert rig.spin(15.0, lambda: len(rig.cmds) >= 5)
    rig.camera_on = False
    rig.spin(0.05)
    s, cmd = rig.status[-1], rig.cmds[-1]
    assert list(s.output_names) == ["linear_x", "linear_y", "linear_z", "angular_z"]
    out = dict(zip(s.output_names, s.outputs, strict=True))
    tw = cmd.twist
    assert (tw.linear.x, tw.linear.y, tw.linear.z) == pytest.approx(
        (2.0 * out["linear_x"], 2.0 * out["linear_y"], 2.0 * out["linear_z"]), rel=1e-5
    )
    assert tw.angular.z == pytest.approx(out["angular_z"], rel=1e-5)
    assert stamp_ns(cmd.header) in set(rig.frames_sent)


def test_compressed_frames_are_decoded_and_garbage_is_counted(rig_factory):
    rig = rig_factory(camera_type="sensor_msgs/msg/CompressedImage")
    good = io.BytesIO()
    PILImage.fromarray(np.full((H, W, 3), 120, np.uint8)).save(good, format="JPEG")
    payload = {"data": good.getvalue()}

    def compressed(stamp: int) -> Any:
        msg = rig.peer.msg(
            "sensor_msgs/msg/CompressedImage", format="rgb8; jpeg compressed bgr8", **payload
        )
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        return msg

    rig.frame_maker = compressed
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    payload["data"] = b"\xff\xd8\xff\xe0 not really a jpeg"
    rig.spin(0.5)
    s = rig.status[-1]
    assert s.frames_used >= 2 and s.frames_rejected >= 3
    assert dict(zip(s.rejected_reasons, s.rejected_counts, strict=True)).get("decode", 0) >= 3
    assert rig.dut_node.callback_errors == 0  # counted, not raised


@pytest.mark.parametrize("when", ["handback", "leave"])
def test_state_is_reset_around_a_fallback(rig_factory, when):
    rig = rig_factory(state_reset_on=when)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)

    def safety(state: str) -> int:
        rig.safety.publish(rig.peer.msg("ltc_controller/msg/SafetyStatus", state_name=state))
        rig.spin(0.1)
        return int(rig.status[-1].state_resets)

    r0 = safety("ACTIVE")
    st = len(rig.status)
    r1 = safety("FALLBACK")  # the safety node leaves policy control
    r2 = safety("ACTIVE")  # ... and hands it back
    if when == "handback":
        assert (r1, r2) == (r0, r0 + 1)
    else:
        assert (r1, r2) == (r0 + 1, r0 + 1)
    # The wait for the re-warm after a reset is DEGRADED ("reset"), never a FAULT that would
    # send the safety node straight back to FALLBACK. (A FAULT with another cause, e.g.
    # overruns on a starved machine, is the watchdog doing its job, not this wait.)
    waiting = {"no_frame", "warming"}
    assert not [s.reasons for s in rig.status[st:] if s.health == 2 and set(s.reasons) <= waiting]
    assert rig.spin(5.0, lambda: rig.status[-1].heartbeat_sent)


def test_diagnostics_report_the_runtime(rig_factory):
    rig = rig_factory(diagnostics_period_s=0.2)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 5 and len(rig.diag) >= 2)
    rig.spin(0.3)
    st = rig.diag[-1].status[0]
    assert st.name == f"{rig.ns[1:]}/ltc_policy: runtime"
    kv = {v.key: v.value for v in st.values}
    assert int(kv["ticks"]) > 0 and int(kv["frames_used"]) > 0
    assert float(kv["tick_rate_hz"]) > 0 and kv["policy_file"] == "(default)"
    assert int(kv["health_transitions"]) >= 1  # at least FAULT (no_frame) -> OK at start


@pytest.mark.parametrize(
    "params,match",
    [
        ({"deadline_s": 0.2}, "deadline_s"),
        ({"control_rate_hz": 0.0}, "control_rate_hz"),
        ({"command_type": "geometry_msgs/msg/Pose"}, "command_type"),
        ({"camera_qos": "fast"}, "camera_qos"),
        ({"policy_file": "/nonexistent/p.safetensors"}, "/nonexistent/p.safetensors"),
        ({"twist_mapping": "direct", "command_type": TWIST, "policy_file": "__NCP19__"}, "outputs"),
        pytest.param(
            {"device": "cuda"},
            "device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present here"),
        ),
        ({"device": "tpu"}, "device"),
    ],
)
def test_start_errors_name_the_parameter(params, match, tmp_path):
    from ltc_controller.models.policy_file import PolicyFileError

    if params.get("policy_file") == "__NCP19__":
        params["policy_file"] = str(save_policy(Policy.from_config(seed=1), tmp_path / "p.st"))
    node = DdsNode("ltc_policy", "/t" + uuid.uuid4().hex[:8], parameters=params)
    try:
        with pytest.raises((ParameterError, PolicyFileError), match=match):
            PolicyNode(node)
    finally:
        node.shutdown()


def test_frames_tick_the_node_and_the_timer_takes_over_when_the_camera_stops(rig_factory):
    rig = rig_factory()
    # Heartbeats also come from timer ticks on a held frame: wait on the node's own counters.
    assert rig.spin(15.0, lambda: bool(rig.status) and rig.status[-1].frames_commanded >= 5)
    s = rig.status[-1]
    assert s.frame_ticks >= 5 and s.frames_commanded >= 5
    # Each frame's stamp is the stamp of at most one run of commands (no command repeats an
    # older frame after a newer one went out).
    stamps = [stamp_ns(c.header) for c in rig.cmds]
    firsts = list(dict.fromkeys(stamps))
    assert firsts == sorted(firsts) and set(firsts) <= set(rig.frames_sent)
    rig.camera_on = False
    rig.spin(0.2)  # frames in flight arrive
    n = len(rig.status)
    rig.spin(1.0)
    after = rig.status[n:]
    # The timer keeps ticking without frames (staleness is detected, as before).
    assert len(after) >= 3 and not any(m.frame_tick for m in after)
    assert after[-1].frame_ticks == rig.status[n - 1].frame_ticks
    assert after[-1].health == 2


def test_without_tick_on_frame_only_the_timer_ticks(rig_factory):
    rig = rig_factory(tick_on_frame=False)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 5)
    s = rig.status[-1]
    assert s.frame_ticks == 0 and s.frames_used >= 4
    assert not any(m.frame_tick for m in rig.status)
    assert s.commands_sent >= s.frames_commanded >= 4


class CommandSpy:
    """Stands in for the node's ``policy_cmd`` publisher: records, for every command the node
    sends, the runtime's tick result at that moment (the node's own decision), then sends it."""

    def __init__(self, policy: PolicyNode) -> None:
        self.policy, self.pub = policy, policy.pub_cmd
        self.sent: list[Any] = []  # TickResult copies
        policy.pub_cmd = self

    def publish(self, msg: Any) -> None:
        self.sent.append(self.policy._last.copy())
        self.pub.publish(msg)


def diag_values(rig: Rig) -> dict[str, str]:
    return {v.key: v.value for v in rig.diag[-1].status[0].values}


def test_stopped_ros_time_stops_the_commands_until_it_moves_again(rig_factory):
    rig = rig_factory(clock_stop_s=0.2, diagnostics_period_s=0.2)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    spy = CommandSpy(rig.policy)
    frozen = rig.dut_node.now()
    rig.dut_node.now = lambda: frozen  # a paused simulator: ROS time stands still
    assert rig.spin(10.0, lambda: "clock_stopped" in rig.status[-1].reasons)
    rig.spin(0.5)
    stopped = [s for s in rig.status if "clock_stopped" in s.reasons]
    assert all(s.health == 2 and not s.heartbeat_sent for s in stopped)
    assert not [r for r in spy.sent if r.clock_stopped]  # no command from the frozen state
    del rig.dut_node.now  # ROS time moves again
    assert rig.spin(10.0, lambda: rig.status[-1].heartbeat_sent)
    assert rig.spin(5.0, lambda: len(rig.diag) >= 2 and diag_values(rig)["clock_stops"] == "1")
    assert rig.policy.runtime.counters.resets["clock_stopped"] == 1
    assert spy.sent[-1].frame_stamp_ns > int(frozen * 1e9)  # acting on frames after the stop


def test_a_stalled_node_does_not_command_from_the_state_before_the_gap(rig_factory):
    rig = rig_factory(diagnostics_period_s=0.2)
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    spy = CommandSpy(rig.policy)
    # The node is not spun for 0.6 s (> max_frame_age_s) while the camera keeps publishing.
    gap_start = time.time_ns()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        stamp = time.time_ns()
        rig.cam.publish(rig.image(stamp))
        rig.frames_sent.append(stamp)
        time.sleep(PERIOD)
    n = len(spy.sent)
    assert rig.spin(10.0, lambda: any("stall" in s.reasons for s in rig.status))
    assert rig.spin(10.0, lambda: len(spy.sent) > n)
    c = rig.policy.runtime.counters
    assert c.stalls >= 1 and c.resets["stall"] == c.stalls
    first = spy.sent[n]  # the first command after the gap: built only from frames after it
    assert first.frame_stamp_ns >= gap_start
    assert rig.spin(5.0, lambda: int(diag_values(rig)["stalls"]) >= 1)


def test_zero_stamps_are_named_and_receive_stamps_replace_them(rig_factory):
    def unstamped(stamp: int) -> Any:
        img = rig.image(stamp)
        img.header.stamp.sec = img.header.stamp.nanosec = 0  # a driver that never sets it
        return img

    rig = rig_factory()
    rig.frame_maker = unstamped
    assert rig.spin(10.0, lambda: bool(rig.status) and rig.status[-1].frames_rejected >= 5)
    s = rig.status[-1]
    assert dict(zip(s.rejected_reasons, s.rejected_counts, strict=True)) == {
        "zero_stamp": s.frames_rejected
    }
    assert s.frames_used == 0 and not rig.cmds and not rig.hbs

    rig = rig_factory(stamp_source="receive")
    rig.frame_maker = unstamped
    t0 = time.time_ns()
    assert rig.spin(15.0, lambda: len(rig.hbs) >= 3)
    assert rig.status[-1].frames_rejected == 0
    assert all(stamp_ns(c.header) >= t0 for c in rig.cmds)  # stamped on arrival


def test_ood_monitor_reports_and_hands_over_only_with_statistics_in_the_file(rig_factory, tmp_path):
    """Without statistics the monitor is ``unavailable`` and health stays OK; with them (and a
    threshold no frame can stay under) it is ``active`` and health is FAULT ``ood_features``;
    ``ood.hand_over`` false caps it at DEGRADED; ``ood.enabled`` false detaches it."""
    from ltc_controller.models.ood import fit_feature_stats

    bare = save_policy(Policy.from_config(seed=0), tmp_path / "bare.safetensors")
    plain = rig_factory(policy_file=str(bare))
    assert plain.spin(15.0, lambda: len(plain.hbs) >= 3)
    assert plain.status[-1].ood_monitor == "unavailable" and plain.status[-1].ood_score == -1.0
    assert "ood_features" not in plain.status[-1].reasons
    assert plain.status[-1].attention_monitor == "unavailable"
    assert plain.status[-1].attention_score == -1.0 and plain.status[-1].attention_alarms == 0

    policy = Policy.from_config(seed=0)
    rng = np.random.default_rng(0)
    policy.feature_stats = fit_feature_stats(
        rng.normal(size=(100, 32)), [(rng.normal(size=(60, 32)), np.arange(60) * PERIOD)]
    )
    path = save_policy(policy, tmp_path / "ood.safetensors")
    rig = rig_factory(
        policy_file=str(path), **{"ood.degraded_threshold": 1e-9, "ood.fault_threshold": 2e-9}
    )
    assert rig.spin(15.0, lambda: bool(rig.status) and rig.status[-1].ood_alarms >= 1)
    last = rig.status[-1]
    assert last.ood_monitor == "active" and last.ood_score > 2e-9
    assert last.health == 2 and "ood_features" in last.reasons
    n = rig.dut_node
    assert n.set_parameters({"ood.hand_over": False}) == ""
    k = len(rig.status)
    assert rig.spin(5.0, lambda: len(rig.status) > k + 3)
    assert rig.status[-1].health == 1 and "ood_features" in rig.status[-1].reasons
    assert n.set_parameters({"ood.enabled": False}) == ""
    k = len(rig.status)
    assert rig.spin(5.0, lambda: len(rig.status) > k + 3)
    assert rig.status[-1].ood_monitor == "disabled"
    assert "ood_features" not in rig.status[-1].reasons


def test_attention_monitor_reports_and_hands_over_on_unstable_saliency(rig_factory, tmp_path):
    """With an attention calibration in the file the monitor is ``active``; the rig's camera
    sends independent random images, whose saliency maps do not correlate from frame to frame,
    so above a low threshold health is FAULT ``attention_off_task``; ``attention.hand_over``
    false caps it at DEGRADED; ``attention.enabled`` false detaches it. The node's own counters
    say it: scored pairs in /diagnostics, alarm onsets in the status."""
    from ltc_controller.models.ood import AttentionStats

    policy = Policy.from_config(seed=0)
    policy.attention_stats = AttentionStats(1.0, 0.2, 1, 0.05, 0.1)
    path = save_policy(policy, tmp_path / "attention.safetensors")
    rig = rig_factory(policy_file=str(path))
    assert rig.spin(20.0, lambda: bool(rig.status) and rig.status[-1].attention_alarms >= 1)
    assert rig.spin(10.0, lambda: rig.status[-1].health == 2)
    last = rig.status[-1]
    assert last.attention_monitor == "active" and last.attention_score > 0.1
    assert "attention_off_task" in last.reasons and last.ood_monitor == "unavailable"
    assert rig.spin(10.0, lambda: any(_diag_value(d, "attention_pairs") for d in rig.diag))
    n = rig.dut_node
    assert n.set_parameters({"attention.hand_over": False}) == ""
    k = len(rig.status)
    assert rig.spin(5.0, lambda: len(rig.status) > k + 3)
    assert rig.status[-1].health == 1 and "attention_off_task" in rig.status[-1].reasons
    reason = n.set_parameters(
        {"attention.degraded_threshold": 0.5, "attention.fault_threshold": 0.2}
    )
    assert "below attention.degraded_threshold" in reason
    assert n.set_parameters({"attention.enabled": False}) == ""
    k = len(rig.status)
    assert rig.spin(5.0, lambda: len(rig.status) > k + 3)
    assert rig.status[-1].attention_monitor == "disabled"
    assert "attention_off_task" not in rig.status[-1].reasons


def _diag_value(array: Any, key: str) -> int:
    """The integer value of ``key`` in the policy's entry of a DiagnosticArray (0 if absent)."""
    for st in array.status:
        for kv in st.values:
            if kv.key == key:
                return int(kv.value)
    return 0
