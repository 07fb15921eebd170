"""The ``ltc-controller`` entry point itself (sub-commands are tested in their own files)."""

from __future__ import annotations

import subprocess
import sys

# A sub-command whose output outlives its reader, as in `ltc-controller param list NODE | head -1`.
_WRITER = """
import sys
from ltc_controller import cli
from ltc_controller.commands import discover

def run(args, ros_tail):
    for k in range(200_000):
        print(f"line {k}")
    return 0

next(m for m in discover() if m.NAME == "param").run = run
sys.exit(cli.main(["param", "list", "some_node"]))
"""


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == b"line 0\n"
    writer.stdout.close()  # the reader goes away
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_the_simulator_executable_takes_log_before_ros_args_and_stops_after_its_duration(
    tmp_path, dds_loopback
):
    # `ros2 run ltc_controller simulator --log F --ros-args ...` runs scripts/simulator.
    import json
    from pathlib import Path

    import pytest

    pytest.importorskip("mujoco")
    script = Path(__file__).resolve().parents[2] / "scripts" / "simulator"
    log = tmp_path / "sim" / "run.npz"
    done = subprocess.run(
        [sys.executable, str(script), "--log", str(log), "--ros-args", "-p", "duration_s:=0.5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(log.with_suffix(".json").read_text())
    assert summary["duration_s"] >= 0.5  # stopped by itself, once its sim time was reached
    assert log.is_file() and "Traceback" not in done.stderr


def test_the_simulator_executable_refuses_an_unknown_option_before_ros_args():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ltc_controller.cli import simulator_main; "
            "sys.exit(simulator_main(['--lgo', 'x']))",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--lgo" in done.stderr


def _command_paths() -> list[tuple[list[str], list[str]]]:
    """Every leaf sub-command (``["monitor", "check"]``) with arguments that satisfy its required
    positionals and options (a choice where there are choices, else ``"1"``)."""
    import argparse

    from ltc_controller.cli import build_parser

    out = []

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for s in subs:
            for name, child in s.choices.items():
                walk(child, [*path, name])
        if subs:
            return
        given: list[str] = []
        for a in p._actions:
            value = str(next(iter(a.choices))) if a.choices else "1"
            if not a.option_strings:
                given.append(value)
            elif a.required:
                given += [a.option_strings[0], value]
        out.append((path, given))

    walk(build_parser()[0], [])
    return out


def test_every_subcommand_has_its_own_parse_errors_on_an_unknown_option(capsys):
    import pytest

    from ltc_controller import cli

    paths = _command_paths()
    assert ["demo"] in [p for p, _ in paths] and ["monitor", "check"] in [p for p, _ in paths]
    for path, given in paths:
        with pytest.raises(SystemExit) as stop:
            cli.main([*path, *given, "--trak-seed", "3"])
        err = capsys.readouterr().err
        assert stop.value.code == 2, (path, err)
        # Its own usage, not the top-level one; the error names the mistyped option.
        assert err.startswith(f"usage: ltc-controller {' '.join(path)} "), (path, err)
        assert f"ltc-controller {' '.join(path)}: error: unrecognized arguments: --trak-seed 3" in (
            err
        ), (path, err)


def test_an_unknown_option_before_a_nested_subcommand_is_its_parents_error(capsys):
    import pytest

    from ltc_controller import cli

    with pytest.raises(SystemExit):
        cli.main(["monitor", "--trak-seed", "check"])
    err = capsys.readouterr().err
    assert err.startswith("usage: ltc-controller monitor ")
    assert "ltc-controller monitor: error: unrecognized arguments: --trak-seed" in err


def test_evaluate_refuses_a_drone_policy_on_the_car(capsys):
    from ltc_controller import cli
    from ltc_controller.commands.demo import DRONE_POLICY

    args = ["evaluate", "--policy", str(DRONE_POLICY), "--conditions", "clean", "--episodes", "1"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "for --scenario car" in err and "linear_x" in err and "twist_mapping direct" in err


def test_learning_rates_speeds_and_distances_must_be_finite_and_positive(capsys):
    import pytest

    from ltc_controller import cli

    for args, why in (
        (["train", "--lr", "nan"], "must be a finite number > 0"),
        (["train", "--lr", "-1"], "must be a finite number > 0"),
        (["train", "--max-gap", "-1"], "must be a finite number > 0"),
        (["evaluate", "--distance", "-5"], "must be in (0, 1e+06]"),
        (["evaluate", "--distance", "1e300"], "must be in (0, 1e+06]"),
        (["evaluate", "--speed", "-3"], "must be in (0, 50]"),
        (["evaluate", "--speed", "1e6"], "must be in (0, 50]"),
        (["evaluate", "--threads", "0"], "must be an integer >= 1"),
        (["evaluate", "--track-length", "-1"], "must be a finite number > 0"),
        (["record", "bag", "--speed", "nan"], "must be in (0, 50]"),
        (["record", "bag", "--jpeg-quality", "500"], "must be in [1, 100]"),
        (["monitor", "evaluate", "--distance", "0"], "must be a finite number > 0"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        assert e.value.code == 2, args
        assert why in capsys.readouterr().err, args


def test_topic_names_are_checked_as_ros_names(capsys):
    import pytest

    from ltc_controller import cli

    for args in (
        ["record", "bag", "--image-topic", ""],
        ["record", "bag", "--odom-topic", "/odom/"],
        ["train", "--bag", "b", "-o", "p.safetensors", "--command-topic", "/a//b"],
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "topic" in err and "argument --" in err, (args, err)


def test_evaluate_refuses_the_car_speed_for_the_drone(capsys):
    from ltc_controller import cli

    assert cli.main(["evaluate", "--scenario", "drone", "--speed", "3", "--expert"]) == 2
    assert "--speed apply to the car only" in capsys.readouterr().err


# Each command that writes files, with its output option pointing under BLOCKED (a plain file,
# so nothing can be created below it, as root too).
_OUTPUT_ARGS = (
    ["explain", "--policy", "p.safetensors", "--bag", "bag", "--out", "{blocked}/out"],
    ["monitor", "fit", "--bag", "bag", "-o", "{blocked}/p.safetensors"],
    ["monitor", "evaluate", "--output", "{blocked}/table.md"],
    ["record", "{blocked}/bag"],
    ["train", "--bag", "bag", "-o", "{blocked}/p.safetensors"],
    ["train", "--preset", "drone", "--work", "{blocked}/work"],
    ["evaluate", "--expert", "-o", "{blocked}/eval"],
    ["compare", "--reduced", "--work", "{blocked}/work"],
    ["demo", "--output", "{blocked}/demo"],
    ["video-to-bag", "video.mp4", "{blocked}/bag"],
    ["launch", "config/vehicle.yaml", "--log-dir", "{blocked}/logs"],
)


def test_an_unwritable_output_is_a_usage_error_before_any_work(tmp_path, capsys):
    import pytest

    from ltc_controller import cli

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    for args in _OUTPUT_ARGS:
        args = [a.format(blocked=blocked) for a in args]
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2, (args, err)
        assert f"cannot create {blocked}/" in err and f"{blocked} is not a folder" in err, err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing was made


def test_the_simulator_node_refuses_an_unwritable_log_before_starting(tmp_path, capsys):
    from ltc_controller import cli

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    log = blocked / "run.npz"
    assert cli.simulator_main(["--log", str(log)]) == 2
    assert cli.main(["node", "simulator", "--log", str(log)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"simulator: --log: cannot create {log}: {blocked} is not a folder"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_output_problem_names_the_cause_and_creates_nothing(tmp_path):
    from ltc_controller.outputs import output_problem

    (tmp_path / "f").write_text("")
    assert output_problem(tmp_path / "new" / "deeper" / "p.safetensors") is None
    assert output_problem(tmp_path / "new" / "folder", folder=True) is None
    assert output_problem(tmp_path, folder=True) is None
    assert output_problem(tmp_path) == f"{tmp_path} is a folder, not a file"
    assert (
        output_problem(tmp_path / "f", folder=True)
        == f"{tmp_path / 'f'} exists and is not a folder"
    )
    assert output_problem("") == "an empty path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no folder, no probe left


def test_monitor_fit_refuses_a_negative_attention_every_n(tmp_path, capsys):
    import pytest

    from ltc_controller import cli

    args = ["monitor", "fit", "--bag", "b", "-o", str(tmp_path / "p.safetensors")]
    for bad, why in (("-3", "must be an integer >= 0"), ("x", "is not an integer")):
        with pytest.raises(SystemExit) as e:
            cli.main([*args, "--attention-every-n", bad])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "argument --attention-every-n" in err and why in err, err
    # 0 stays the documented "fit no attention monitor": parsed, then the missing bag refused.
    assert cli.main([*args, "--attention-every-n", "0"]) == 2
    assert "argument --attention-every-n" not in capsys.readouterr().err


def test_the_simulator_node_refuses_the_other_scenarios_parameters_as_the_demo_does(
    dds_loopback, capsys
):
    import pytest

    pytest.importorskip("mujoco")
    from ltc_controller import cli

    for scenario, param, owner in (
        ("drone", "track_seed:=3", "car"),
        ("drone", "lane_width_m:=3.0", "car"),
        ("car", "world_seed:=3", "drone"),
        ("car", "drone_condition:=fog", "drone"),
    ):
        args = ["node", "simulator", "--ros-args", "-p", f"scenario:={scenario}", "-p", param]
        assert cli.main(args) == 2, param
        err = capsys.readouterr().err
        name = param.split(":=")[0]
        assert (
            f"simulator: {name} applies to scenario:={owner} only (" in err
            and f"with scenario:={scenario} it would be ignored" in err
        ), err
        assert "Traceback" not in err


def test_counts_and_monitor_factors_are_refused_by_their_option_not_a_config_class(capsys):
    # These reached RecordConfig / EvalConfig / the monitor's fit, whose errors named the class
    # or another field (`--false-alarms-per-10min -1` said "window_s must be > 0 and ...").
    import pytest

    from ltc_controller import cli

    fit = ["monitor", "fit", "--bag", "b", "-o", "p.safetensors"]
    for args, option, why in (
        (["record", "bag", "--episodes", "0"], "--episodes", "must be an integer >= 1"),
        (["record", "bag", "--episode-s", "-1"], "--episode-s", "must be in (0, 86400]"),
        (["evaluate", "--episodes", "0"], "--episodes", "must be an integer >= 1"),
        (["monitor", "evaluate", "--episodes", "0"], "--episodes", "must be an integer >= 1"),
        (["compare", "--seeds", "0"], "--seeds", "must be an integer >= 1"),
        (["compare", "--episodes", "-2"], "--episodes", "must be an integer >= 1"),
        ([*fit, "--false-alarms-per-10min", "-1"], "--false-alarms-per-10min", ">= 0"),
        ([*fit, "--window-s", "0"], "--window-s", "must be a finite number > 0"),
        ([*fit, "--margin", "0.5"], "--margin", "must be a finite number >= 1"),
        ([*fit, "--fault-factor", "nan"], "--fault-factor", "must be a finite number >= 1"),
        # Seeds: NumPy refuses negative ones; beyond int64 the node failed ~37 s into a demo.
        (["demo", "--track-seed", str(2**63)], "--track-seed", "in [0, 9223372036854775807]"),
        (["demo", "--world-seed", "-3"], "--world-seed", "must be an integer in [0,"),
        (["evaluate", "--first-track-seed", "-1"], "--first-track-seed", "an integer in [0,"),
        (["record", "bag", "--seed", "x"], "--seed", "'x' is not an integer"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"argument {option}" in err and why in err, (args, err)
        assert "Config" not in err and "window_s" not in err, err


def test_train_refuses_an_unknown_architecture_before_reading_the_bags(tmp_path, capsys):
    from ltc_controller import cli

    missing = tmp_path / "no_bag"  # never read: the architecture is refused first
    rc = cli.main(["train", "--arch", "transformer", "--check-data", "--bag", str(missing)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("train: --arch 'transformer' is not an architecture")
    assert "ncp_ltc" in err and "lstm" in err and str(missing) not in err


def test_compare_refuses_a_bad_ray_address_before_any_work(tmp_path, capsys, monkeypatch):
    import socket

    import pytest

    from ltc_controller import cli

    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    work = tmp_path / "work"
    for address, says in (
        ("bad", "expected HOST:PORT, ray://HOST:PORT or auto"),
        ("ray://host:99999", "expected HOST:PORT"),
        (f"127.0.0.1:{closed}", f"cannot connect to 127.0.0.1:{closed}"),
    ):
        rc = cli.main(["compare", "--reduced", "--work", str(work), "--address", address])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"compare: Ray address {address!r}: ") and says in err
    monkeypatch.setenv("RAY_ADDRESS", "bad")  # the environment's address is checked the same way
    assert cli.main(["compare", "--reduced", "--work", str(work)]) == 2
    assert "Ray address 'bad'" in capsys.readouterr().err
    assert not work.exists()  # nothing recorded


def test_car_commands_refuse_the_drone_policy_and_empty_condition_lists(tmp_path, capsys):
    from ltc_controller import cli
    from ltc_controller.commands.demo import DRONE_POLICY

    drone = ["--policy", str(DRONE_POLICY)]
    assert cli.main(["monitor", "evaluate", *drone, "--episodes", "1", "--distance", "5"]) == 2
    assert "for --scenario car" in capsys.readouterr().err
    bag = tmp_path / "bag"
    assert cli.main(["record", str(bag), "--dagger", str(DRONE_POLICY), "--episodes", "1"]) == 2
    assert "for --scenario car" in capsys.readouterr().err and not bag.exists()
    for cmd in (["evaluate", "--expert"], ["monitor", "evaluate"]):
        assert cli.main([*cmd, "--conditions", ",,", "--episodes", "1"]) == 2
        assert "no condition named in ',,'" in capsys.readouterr().err


def test_a_recording_refused_before_its_first_episode_leaves_no_bag(tmp_path, capsys):
    from ltc_controller import cli

    bag = tmp_path / "bag"
    args = ["record", str(bag), "--episodes", "1", "--episode-s", "1"]
    assert cli.main([*args, "--condition", "no_such_condition"]) == 2
    assert "record:" in capsys.readouterr().err and not bag.exists()
    assert cli.main(args) == 0  # the corrected rerun to the same path
    assert (bag / "metadata.yaml").exists()


def test_time_options_out_of_range_and_missing_bags_are_refused_up_front(tmp_path, capsys):
    import pytest

    from ltc_controller import cli

    for args in (
        ["train", "--bag", str(tmp_path), "--check-data", "--label-offset-s", "inf"],
        ["compare", "--reduced", "--max-pair-dt", "nan", "--work", str(tmp_path / "w")],
        ["record", str(tmp_path / "b"), "--episode-s", "1e308"],
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        assert e.value.code == 2
        assert "must be in" in capsys.readouterr().err
    assert cli.main(["compare", "--reduced", "--bag", str(tmp_path / "nope")]) == 2
    assert "--bag not found" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_misspelt_lifecycle_transition_is_a_usage_error_and_explain_takes_output(capsys):
    import pytest

    from ltc_controller import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["lifecycle", "set", "/car/ltc_policy", "activte"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'activte'" in err and "activate" in err
    # explain writes to --output like every other command (--out still works).
    parser, _ = cli.build_parser()
    for flag in ("--output", "--out"):
        args = parser.parse_args(["explain", "--policy", "p", "--bag", "b", flag, "x"])
        assert str(args.out) == "x"


def test_the_new_users_bad_inputs_are_one_line_refusals(tmp_path, capsys):
    """From a new user's trial: a bad estop namespace and an empty param node were tracebacks,
    an empty --policy ran the bundled one, --duration 100000 gave the wrong reason, and an empty
    condition list printed its message in quotes."""
    import pytest

    from ltc_controller import cli

    assert cli.main(["estop", "status", "--namespace", "bad name!"]) == 2
    assert capsys.readouterr().err.startswith("estop: --namespace: invalid namespace")
    assert cli.main(["param", "list", ""]) == 2
    assert "a node name is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--policy", ""])
    assert e.value.code == 2 and "--policy: an empty path" in capsys.readouterr().err
    assert cli.main(["demo", "--duration", "100000", "--output", str(tmp_path / "d")]) == 2
    assert "--duration must be in (0, 86400) s, got 100000" in capsys.readouterr().err
    assert cli.main(["evaluate", "--expert", "--conditions", ""]) == 2
    assert capsys.readouterr().err.startswith("evaluate: no condition named in ''")


def test_ctrl_c_before_a_command_takes_over_is_one_line(monkeypatch, capsys):
    # A Ctrl-C while the commands import (the first seconds of `demo`) was a 50-line traceback.
    from ltc_controller import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["demo"]) == 130
    assert capsys.readouterr().err == "ltc-controller demo: interrupted\n"
