"""The whole loop as real processes over Cyclone DDS on loopback: simulator → ltc_policy →
safety_fallback → simulator."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ltc_controller.supervisor import Stack
from ltc_controller.transport.port import QoS

pytestmark = pytest.mark.timeout(300)

COMMAND_TIMEOUT_S = 0.25
SAFETY_RATE_HZ = 50.0
DEEP = QoS("reliable", "volatile", 1000)


def _stamp(msg) -> float:
    return int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9


def test_commands_reach_simulator_and_policy_sigkill_triggers_stop_within_timeout(tmp_path):
    stack = Stack(
        tmp_path,
        node_args={
            "safety_fallback": [
                "-p",
                f"command_timeout_s:={COMMAND_TIMEOUT_S}",
                "-p",
                f"rate_hz:={SAFETY_RATE_HZ}",
            ],
            "ltc_policy": ["-p", "speed_mps:=3.0"],
        },
    )
    stack.start()
    # Every safety status, kept (a late spin here takes them late, does not lose them).
    statuses: list = []
    stack._mon_node.create_subscription(
        "ltc_controller/msg/SafetyStatus", "safety_status", statuses.append, DEEP
    )
    try:
        assert stack.spin_for(
            150, lambda m: m.safety_status is not None and m.safety_status.state_name == "ACTIVE"
        ), "safety node never went ACTIVE"
        stack.spin_for(3.0)
        m = stack.monitor
        assert m.safety_status.state_name == "ACTIVE"
        assert m.last_cmd is not None and m.last_cmd[2] > 0.5  # moving under policy control

        n0 = len(statuses) - 1
        t_kill = time.time()
        stack.kill("ltc_policy")
        assert stack.spin_for(5.0, lambda m: m.safety_status.state_name == "FALLBACK")
        # ... and the final command ramps to a stop and keeps coming while the policy is gone.
        assert stack.spin_for(5.0, lambda m: m.last_cmd[2] == 0.0)
        stack.spin_for(1.0)
        assert m.last_cmd[2] == 0.0
        after = statuses[n0:]
        fb = next(s for s in after if s.state_name == "FALLBACK")
        assert fb.active_fault == "command_timeout"
        # Detection bound on the safety node's clock: no ACTIVE tick command_timeout_s after the
        # tick that counted the last command (callbacks run before the tick that counts them).
        k = max(
            (
                b
                for a, b in zip(after, after[1:], strict=False)
                if b.commands_received > a.commands_received
            ),
            key=_stamp,
            default=after[0],
        )
        late = [
            _stamp(s) - _stamp(k)
            for s in after
            if s.state_name == "ACTIVE" and _stamp(s) - _stamp(k) >= COMMAND_TIMEOUT_S + 0.05
        ]
        assert not late, late
        # Timer-driven: a status per tick, on its own stamps, for the last second.
        t_end = _stamp(after[-1])
        last_s = [s for s in after if _stamp(s) > t_end - 1.0]
        assert len(last_s) >= 0.8 * SAFETY_RATE_HZ * (t_end - _stamp(last_s[0]))
        print(f"kill -> FALLBACK tick {(_stamp(fb) - t_kill) * 1e3:.0f} ms (measured)")
    finally:
        codes = stack.stop()
    assert codes == {"simulator": 0, "safety_fallback": 0}
    assert stack.killed == {"ltc_policy": -9}
    sim = json.loads((tmp_path / "sim_log.json").read_text())
    assert sim["commands_received"] > 100
    assert sim["frames_published"] > 30
    assert sim["distance_m"] > 1.0


def test_demo_cli_prints_summary_and_writes_plot(tmp_path):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ltc_controller",
            "demo",
            "--duration",
            "4",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ltc-controller demo summary" in r.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["frames_published"] > 0 and s["commands_received_by_sim"] > 0
    assert s["latency_p50_ms"] > 0
    assert (tmp_path / "demo_run.png").stat().st_size > 10_000
    # How another shell joins the nodes: their domain and the loopback configuration file.
    xml = tmp_path.resolve() / "cyclonedds.xml"
    assert f"CYCLONEDDS_URI=file://{xml}" in r.stdout and "127.0.0.1" in xml.read_text()
    assert time.monotonic() - t0 < 280


def test_demo_rejects_a_missing_policy_file_before_starting_nodes(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ltc_controller",
            "demo",
            "--duration",
            "3",
            "--output",
            str(tmp_path),
            "--policy",
            str(tmp_path / "missing.safetensors"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "missing.safetensors" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ltc_policy.log").exists()


@pytest.mark.parametrize(
    "bad", [["--duration", "-5"], ["--domain-id", "500"], ["--kill-policy-at", "-1"]]
)
def test_demo_rejects_invalid_arguments_with_one_line(tmp_path, bad):
    r = subprocess.run(
        [sys.executable, "-m", "ltc_controller", "demo", "--output", str(tmp_path / "out"), *bad],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("demo: ")
    assert not (tmp_path / "out").exists()  # refused before its output folder was made


@pytest.mark.parametrize(
    ("given", "option", "owner"),
    [
        (["--world-seed", "3"], "--world-seed", "drone"),
        (["--condition", "fog"], "--condition", "drone"),
        (["--stamped"], "--stamped", "drone"),
        (["--scenario", "drone", "--track-seed", "3"], "--track-seed", "car"),
    ],
)
def test_demo_refuses_an_option_of_the_other_scenario_naming_both(
    tmp_path, capsys, given, option, owner
):
    from ltc_controller import cli

    rc = cli.main(["demo", "--output", str(tmp_path / "out"), *given])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("demo: "), err
    assert f"{option} applies to --scenario {owner} only" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was started or written


def _children(pid: int) -> dict[int, str]:
    """Child pid -> command line, from /proc."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for c in f.read().split():
                try:
                    with open(f"/proc/{c}/cmdline", "rb") as g:
                        out[int(c)] = g.read().replace(b"\0", b" ").decode()
                except OSError:
                    pass
    return out


def _start_demo(tmp_path, sigint=signal.SIG_DFL, new_group=False):
    p = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "ltc_controller",
            "demo",
            "--duration",
            "60",
            "--output",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python's own SIGINT handling, as in a terminal (a CI background job ignores SIGINT).
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        start_new_session=new_group,
    )
    for line in p.stdout:
        if "driving for" in line:
            return p
    raise AssertionError(f"demo never started driving: {p.stderr.read()[-2000:]}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_demo_exits_nonzero_and_shows_the_log_when_a_node_dies(tmp_path):
    p = _start_demo(tmp_path)
    kids = _children(p.pid)
    policy = next(pid for pid, cmd in kids.items() if "ltc_policy" in cmd)
    os.kill(policy, signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "ltc_policy exited with status -9" in err
    assert not any(_alive(pid) for pid in kids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_demo_alone_stops_every_node(tmp_path, sig):
    """SIGTERM, or a SIGINT sent to the demo's pid only (``kill -INT PID``, not a terminal's
    Ctrl-C to the whole group): the nodes never got it, and the demo stops them itself."""
    p = _start_demo(tmp_path)
    kids = _children(p.pid)
    assert len(kids) == 3
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and f"interrupted ({sig.name})" in err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in kids)


def test_a_demo_started_with_sigint_ignored_still_stops_on_a_group_sigint(tmp_path):
    """A background job of a shell without job control starts with SIGINT ignored; the nodes
    take SIGINT all the same, so the demo must too: a group SIGINT is an interruption (130),
    not "simulator exited with status 0" and exit 1."""
    p = _start_demo(tmp_path, sigint=signal.SIG_IGN, new_group=True)
    kids = _children(p.pid)
    assert len(kids) == 3
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted (SIGINT)" in err, err[-2000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in kids)


def test_demo_kill_policy_at_measures_the_car_stopping_on_the_safety_stamps(tmp_path):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    r = subprocess.run(
        [sys.executable, "-m", "ltc_controller", "demo", "--duration", "6"]
        + ["--kill-policy-at", "1.5", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    f = json.loads((tmp_path / "summary.json").read_text())["fault"]
    assert f["fallback"] and f["fault_name"] in ("command_timeout", "heartbeat_timeout")
    # From the safety node's stamps: no ACTIVE tick command_timeout_s after the last command;
    # the speed ramp (steering holds) at zero by the bound of limits.speed.decel and after it.
    assert f["last_active_after_last_command_ms"] < 1e3 * (f["command_timeout_s"] + 0.05)
    assert f["last_nonzero_after_fallback_ms"] <= f["zero_bound_ms"] + 50.0
    assert f["commands_after_zero_all_zero"] and "land_after_s" not in f


def test_the_kills_fallback_is_the_first_one_after_the_kill():
    # A load-induced FALLBACK that recovered before the kill is not the kill's answer (a fresh
    # user saw "kill -> FALLBACK tick -6658 ms" pass the check).
    from ltc_controller.commands.demo import fault_summary
    from ltc_controller.supervisor import Monitor, SafetyTick

    def tick(t: float, state: str, n: int, v: float = 1.0) -> SafetyTick:
        fault = "command_timeout" if state == "FALLBACK" else ""
        return SafetyTick(t, state, fault, False, ("steering_angle", "speed"), (0.0, v), n)

    m = Monitor()
    m.safety_ticks.extend(tick(0.02 * k, "ACTIVE", k) for k in range(50))  # 0 .. 0.98 s
    m.safety_ticks.extend(tick(1.0 + 0.02 * k, "FALLBACK", 50, 0.0) for k in range(10))
    m.safety_ticks.extend(tick(1.2 + 0.02 * k, "ACTIVE", 51 + k) for k in range(40))  # to 1.98
    m.safety_ticks.extend(tick(2.0 + 0.02 * k, "FALLBACK", 90, 0.0) for k in range(20))
    f = fault_summary(m, t_kill=1.95, kill_at_s=1.95, sim={}, profile=None)
    assert f["fallback"] and f["fallback_stamp_s"] == pytest.approx(2.0)
    assert f["kill_to_fallback_ms"] == pytest.approx(50.0)
