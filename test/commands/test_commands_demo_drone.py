"""``ltc-controller demo --scenario drone``: simulator (drone), ltc_policy (Twist, direct mapping)
and safety_fallback (drone profile) as real processes over Cyclone DDS on loopback, and the
policy's SIGKILL mid-flight: FALLBACK, hover, landing, no collision.

What is asserted of the fault is what the nodes decided, from their own stamps and counters (the
safety node stamps each status with its tick's time and counts the commands it received; the
simulator logs the landing request, the touchdown and the collisions), never how fast this
process or the demo's was scheduled. The one slack left, ``CLOCK_READ_S``, is the gap between
the two clock reads of one safety tick (steady time for the decision, ROS time for the stamp).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ltc_controller.commands import demo
from ltc_controller.models.policy_file import BUNDLED_POLICY, save_policy
from ltc_controller.nodes.policy_engine import DRONE_OUTPUTS, load_model

pytestmark = pytest.mark.timeout(300)

CLOCK_READ_S = 0.05
LAND_AFTER_S = 5.0  # config/drone.yaml
COMMAND_TIMEOUT_S = 0.25  # config/drone.yaml


@pytest.fixture(scope="module")
def drone_policy(tmp_path_factory) -> Path:
    """An untrained drone NCP (four motor neurons named after the Twist axes): the loop and the
    fault path do not depend on how well it flies."""
    path = tmp_path_factory.mktemp("policy") / "drone.safetensors"
    save_policy(load_model("", 0, DRONE_OUTPUTS), path)
    return path


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    return subprocess.run(
        [sys.executable, "-m", "ltc_controller", "demo", "--scenario", "drone"]
        + ["--output", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )


def test_drone_demo_flies_through_both_nodes_and_prints_the_task_summary(tmp_path, drone_policy):
    # --stamped: TwistStamped end to end, so the simulator matches setpoints to frames.
    r = _demo(tmp_path, "--policy", str(drone_policy), "--duration", "5", "--stamped")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ltc-controller demo summary" in r.stdout and "time to target" in r.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["scenario"] == "drone" and s["world_seed"] == demo.DRONE_DEMO_WORLD_SEED
    assert s["frames_used_by_policy"] > 0 and s["commands_received_by_sim"] > 50
    assert s["policy_latency_p50_ms"] > 0.0
    # Camera stamp -> safety output at the simulator: after the policy's own frame -> command.
    assert s["latency_p50_ms"] > 0.0 and s["latency_p99_ms"] >= s["latency_p50_ms"], s
    # The flight is timed from the safety node's first ACTIVE tick.
    assert [x["state"] for x in s["safety_states"]][:2] == ["STARTUP", "ACTIVE"], s
    assert s["drive_time_s"] >= 5.0
    assert s["final_distance_m"] > 0.0 and s["distance_flown_m"] > 0.0
    sim = json.loads((tmp_path / "sim_log.json").read_text())
    assert sim["scenario"] == "drone" and sim["bad_commands"] == 0
    assert sim["twist_type"] == "geometry_msgs/msg/TwistStamped"
    assert sim["latency_matched_frames"] > 0
    assert not (tmp_path / "sim_log.parts").exists()  # streamed, then turned into the .npz
    assert (tmp_path / "demo_run.png").stat().st_size > 10_000


def test_drone_demo_policy_sigkill_hovers_then_lands_without_collision(tmp_path, drone_policy):
    r = _demo(tmp_path, "--policy", str(drone_policy), "--kill-policy-at", "1.0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "policy SIGKILL -> FALLBACK" in r.stdout and "hover, landing" in r.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    f = s["fault"]
    print(json.dumps(f, indent=1))
    assert f["fallback"] and f["fault_name"] in ("command_timeout", "heartbeat_timeout")
    assert f["command_timeout_s"] == COMMAND_TIMEOUT_S
    # No ACTIVE tick command_timeout_s after the tick that counted the last command.
    assert f["last_active_after_last_command_ms"] < 1e3 * (COMMAND_TIMEOUT_S + CLOCK_READ_S)
    # Hover: no FALLBACK tick later than the ramps' bound sent a non-zero velocity, and once at
    # zero the setpoint stayed there.
    assert f["last_nonzero_after_fallback_ms"] <= f["zero_bound_ms"] + 1e3 * CLOCK_READ_S
    assert f["zero_after_fallback_ms"] is not None and f["commands_after_zero_all_zero"]
    # Landing requested on the first tick at or after land_after_s in FALLBACK, not before.
    assert f["land_after_s"] == LAND_AFTER_S
    assert f["land_request_after_fallback_s"] >= LAND_AFTER_S - CLOCK_READ_S
    assert f["no_land_request_until_s"] < LAND_AFTER_S + CLOCK_READ_S
    # The simulator: it got the request while hovering, landed, and nothing collided.
    assert f["land_received_after_fallback_s"] is not None
    assert f["hover_speed_mps"] < 0.15
    assert f["touchdown_after_fallback_s"] > f["land_received_after_fallback_s"]
    assert f["mode"] == "landed" and f["collisions"] == 0
    assert f["touchdown_on"] == "ground" and f["collisions_after_fallback"] == 0
    assert [c for c in s["checks"] if not c["passed"]] == [] and len(s["checks"]) == 6
    assert "6 / 6 passed" in r.stdout and "touched down on the ground" in r.stdout
    assert s["final_altitude_m"] < 0.15 and s["collisions"] == 0
    assert [x["state"] for x in s["safety_states"]][-1] == "FALLBACK"
    assert s["land_requests"] >= 1
    # One time base for the summary and the plot: the simulator's clock (the plot's phys_t).
    assert s["time_base"] == demo.TIME_BASE and "(simulator time)" in r.stdout
    with np.load(tmp_path / "sim_log.npz") as z:
        frame_sim_t, phys_t = z["frame_sim_t"], z["phys_t"]
    states = {x["state"]: x["t_s"] for x in s["safety_states"]}
    # The safety node started before the simulator and went ACTIVE on commands computed from
    # its frames; the FALLBACK change is the fault's FALLBACK tick.
    assert states["STARTUP"] < frame_sim_t[0] <= states["ACTIVE"] < states["FALLBACK"], states
    assert states["FALLBACK"] == pytest.approx(f["fallback_sim_s"], abs=1e-3)
    assert f["kill_sim_s"] < f["fallback_sim_s"] < f["land_request_sim_s"]
    # The simulator's own times of the landing: the request arrived after the safety node sent
    # it (up to the mapping's resolution: the largest sim-time step between two frames), and
    # the touchdown is on the plot.
    step = float(np.diff(frame_sim_t).max())
    assert f["land_request_sim_s"] <= f["land_received_sim_s"] + step
    assert f["land_received_sim_s"] < f["touchdown_sim_s"] <= phys_t[-1]


def test_simulator_clock_maps_ros_time_through_the_frame_log():
    # Frames at 20 Hz; the second interval lost 30 ms of sim time to a capped physics tick.
    log = {
        "frame_stamp": np.array([100.0, 100.05, 100.10]),
        "frame_sim_t": np.array([0.0, 0.05, 0.07]),
    }
    to_sim = demo.simulator_clock(log)
    assert to_sim(99.0) == pytest.approx(-1.0)  # before the simulator started: negative
    assert to_sim(100.05) == pytest.approx(0.05)
    assert to_sim(100.075) == pytest.approx(0.06)
    assert to_sim(100.30) == pytest.approx(0.27)  # after the last frame at ROS time's rate
    # A log without frames: since the simulator's start.
    assert demo.simulator_clock({"start_wall": np.asarray(50.0)})(52.5) == pytest.approx(2.5)


def test_drone_demo_runs_its_bundled_policy_file_by_default(tmp_path, monkeypatch, drone_policy):
    # The bundled file's place, filled with the test's policy: the node must load that file (not
    # its untrained placeholder for a direct Twist mapping).
    monkeypatch.setattr(demo, "DRONE_POLICY", drone_policy)
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "osmesa"))
    rc = demo.run_demo(output=tmp_path, scenario="drone", duration_s=2.0)
    assert rc == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["policy"] == f"bundled {drone_policy.name}"
    assert s["policy_file_loaded"] == str(drone_policy)


def test_drone_demo_without_its_policy_names_the_file_and_the_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DRONE_POLICY", tmp_path / "ncp_drone_fly_to_target.safetensors")
    rc = demo.run_demo(output=tmp_path / "out", scenario="drone")
    err = capsys.readouterr().err
    assert rc == 2 and "ncp_drone_fly_to_target.safetensors" in err
    assert "train --preset drone" in err
    assert not (tmp_path / "out" / "ltc_policy.log").exists()


@pytest.mark.skipif(not BUNDLED_POLICY.exists(), reason="no bundled car policy in this checkout")
def test_drone_demo_rejects_a_car_policy_naming_its_outputs(tmp_path, capsys):
    rc = demo.run_demo(output=tmp_path, scenario="drone", policy=str(BUNDLED_POLICY))
    err = capsys.readouterr().err
    assert rc == 2 and "unknown: ['steering_angle']" in err and "--scenario drone" in err
    assert not (tmp_path / "ltc_policy.log").exists()


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"scenario": "car", "stamped": True}, "--stamped applies to --scenario drone"),
        ({"scenario": "drone", "world_seed": -1}, "--world-seed must be >= 0"),
        ({"scenario": "drone", "kill_policy_at_s": -2.0}, "--kill-policy-at must be >= 0"),
        ({"scenario": "drone", "duration_s": 3.0, "kill_policy_at_s": 5.0}, "not within the drive"),
        ({"scenario": "drone", "kill_policy_at_s": 30.0}, "past the flight's time limit (25 s"),
        (
            {"scenario": "drone", "condition": "range", "kill_policy_at_s": 50.0},
            "(45 s under range)",
        ),
    ],
)
def test_demo_rejects_drone_arguments_that_cannot_work_in_one_line(
    tmp_path, capsys, drone_policy, kwargs, says
):
    policy = str(drone_policy) if kwargs["scenario"] == "drone" else ""
    rc = demo.run_demo(output=tmp_path, policy=policy, **kwargs)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("demo: ") and says in err, err
    assert not (tmp_path / "ltc_policy.log").exists()


def _fault(**over):
    """A drone fault summary (fault_summary's keys) of a good run, with ``over`` changed."""
    f = {
        "kill_at_s": 20.0,
        "fallback": True,
        "fault_name": "command_timeout",
        "kill_to_fallback_ms": 250.0,
        "command_timeout_s": 0.25,
        "zero_bound_ms": 355.0,
        "zero_after_fallback_ms": 320.0,
        "last_nonzero_after_fallback_ms": 300.0,
        "zero_within_bound": True,
        "commands_after_zero_all_zero": True,
        "land_after_s": 5.0,
        "land_request_after_fallback_s": 5.01,
        "no_land_request_until_s": 4.99,
        "touchdown_after_fallback_s": 8.31,
        "land_received_after_fallback_s": 5.02,
        "hover_speed_mps": 0.001,
        "collisions": 0,
        "mode": "landed",
        "touchdown_on": "ground",
        "final_altitude_m": 0.06,
        "collisions_after_fallback": 0,
    }
    return {**f, **over}


def test_demo_checks_pass_a_landed_drone_and_fail_one_left_landing_on_the_chair():
    ok = demo.demo_checks({"fault": _fault()})
    assert [c["check"] for c in ok] == [
        "FALLBACK after the kill",
        "setpoint at zero within the ramps' bound",
        "setpoint zero from then on",
        "landing requested",
        "touched down",
        "no collision after FALLBACK",
    ]
    assert all(c["passed"] for c in ok)
    assert ok[4]["seen"] == "touched down on the ground at 0.06 m, 8.31 s after FALLBACK"
    # On the seat, at rest: landed, and said where.
    seat = demo.demo_checks({"fault": _fault(touchdown_on="target_seat", final_altitude_m=0.57)})[4]
    assert (
        seat["passed"]
        and "target_seat (an obstacle's top, not the ground) at 0.57 m" in (seat["seen"])
    )
    # The reported run: still `landing` on the chair at the demo's cap, one collision.
    bad = demo.demo_checks(
        {
            "fault": _fault(
                touchdown_after_fallback_s=None,
                mode="landing",
                touchdown_on=None,
                final_altitude_m=0.57,
                collisions_after_fallback=1,
            )
        }
    )
    failed = {c["check"]: c["seen"] for c in bad if not c["passed"]}
    assert failed == {
        "touched down": "NOT landed when the demo ended (mode landing at 0.57 m)",
        "no collision after FALLBACK": "1 collision(s)",
    }
    over = demo.demo_checks({"fault": _fault(last_nonzero_after_fallback_ms=500.0)})
    assert [c["check"] for c in over if not c["passed"]] == [
        "setpoint at zero within the ramps' bound"
    ]
    assert demo.demo_checks({"fault": _fault(fallback=False)}) == [
        {"check": "FALLBACK after the kill", "passed": False, "seen": "command_timeout"}
    ]
    assert demo.demo_checks({}) == []  # no fault injected: nothing claimed
