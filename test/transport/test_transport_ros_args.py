"""ROS 2 command-line argument parsing without a ROS install."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltc_controller.transport.ros_args import (
    RosArgsError,
    load_params_file,
    parse_param_value,
    parse_ros_args,
)


def test_no_ros_args_keeps_defaults_and_user_args() -> None:
    a = parse_ros_args(["--policy", "x.safetensors"], "ltc_policy")
    assert (a.node_name, a.namespace, dict(a.params), dict(a.remaps), a.log_level) == (
        "ltc_policy",
        "/",
        {},
        {},
        None,
    )
    assert a.user_args == ("--policy", "x.safetensors")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("hello", "hello"),
        ("'42'", "42"),
        ("[1, 2, 3]", [1, 2, 3]),
        ("[a, b]", ["a", "b"]),
        ("", ""),
    ],
)
def test_param_values_parse_as_yaml_like_ros(text: str, value: object) -> None:
    assert parse_param_value(text) == value
    assert type(parse_param_value(text)) is type(value)


def test_params_remaps_namespace_name_and_log_level() -> None:
    argv = [
        "--ros-args",
        "-p",
        "control.rate_hz:=50",
        "--param",
        "camera_topic:=/cam/image_raw",
        "-r",
        "__ns:=/robot1",
        "--remap",
        "__node:=pilot",
        "-r",
        "image:=/cam/image_raw",
        "--log-level",
        "DEBUG",
    ]
    a = parse_ros_args(argv, "ltc_policy")
    assert a.node_name == "pilot" and a.namespace == "/robot1"
    assert a.fully_qualified_name == "/robot1/pilot"
    assert dict(a.params) == {"control.rate_hz": 50, "camera_topic": "/cam/image_raw"}
    assert dict(a.remaps) == {"image": "/cam/image_raw"}
    assert a.log_level == "debug"


def test_multiple_blocks_terminator_and_user_args_between() -> None:
    argv = ["run", "--ros-args", "-p", "a:=1", "--", "--mine", "--ros-args", "-p", "a:=2", "-p"]
    argv += ["b:=x", "--", "tail"]
    a = parse_ros_args(argv, "n")
    assert dict(a.params) == {"a": 2, "b": "x"}
    assert a.user_args == ("run", "--mine", "tail")


def test_node_prefixed_rules_apply_only_to_that_node() -> None:
    argv = ["--ros-args", "-p", "other:rate:=1", "-p", "me:rate:=2", "-r", "other:x:=y"]
    argv += ["-r", "me:in:=/cam", "-r", "other:__ns:=/nope"]
    a = parse_ros_args(argv, "me")
    assert dict(a.params) == {"rate": 2}
    assert dict(a.remaps) == {"in": "/cam"}
    assert a.namespace == "/"


def test_logger_specific_log_level() -> None:
    assert parse_ros_args(["--ros-args", "--log-level", "me:=warn"], "me").log_level == "warn"
    assert parse_ros_args(["--ros-args", "--log-level", "you:=warn"], "me").log_level is None


def test_ignored_ros_options_are_accepted() -> None:
    argv = ["--ros-args", "--enclave", "/e", "--disable-rosout-logs", "-p", "a:=1"]
    assert dict(parse_ros_args(argv, "n").params) == {"a": 1}


PARAMS_YAML = """
/**:
  ros__parameters:
    use_sim_time: false
    shared: from_wildcard
ltc_policy:
  ros__parameters:
    rate_hz: 30.0
    shared: from_root_key
    integration:
      step_s: 0.005
      max_lag_s: 0.1
    outputs: [steering, speed]
/robot1/ltc_policy:
  ros__parameters:
    rate_hz: 20.0
/robot1:
  safety_fallback:
    ros__parameters:
      command_timeout_s: 0.2
/**/safety_fallback:
  ros__parameters:
    profile: vehicle
"""


@pytest.fixture()
def params_file(tmp_path: Path) -> Path:
    f = tmp_path / "params.yaml"
    f.write_text(PARAMS_YAML)
    return f


def test_params_file_wildcards_node_keys_and_nested_dicts_flatten(params_file: Path) -> None:
    a = parse_ros_args(["--ros-args", "--params-file", str(params_file)], "ltc_policy")
    assert dict(a.params) == {
        "use_sim_time": False,
        "shared": "from_root_key",  # the node's own key beats the wildcard
        "rate_hz": 30.0,
        "integration.step_s": 0.005,
        "integration.max_lag_s": 0.1,
        "outputs": ["steering", "speed"],
    }


def test_params_file_keys_match_the_fully_qualified_name(params_file: Path) -> None:
    argv = ["--ros-args", "-r", "__ns:=/robot1", "--params-file", str(params_file)]
    a = parse_ros_args(argv, "ltc_policy")
    # "ltc_policy" means /ltc_policy (as in ROS), so only /** and /robot1/ltc_policy apply.
    assert dict(a.params) == {"use_sim_time": False, "shared": "from_wildcard", "rate_hz": 20.0}
    s = load_params_file(params_file, "/robot1/safety_fallback")
    assert s == {
        "use_sim_time": False,
        "shared": "from_wildcard",
        "profile": "vehicle",
        "command_timeout_s": 0.2,
    }


def test_later_overrides_win_in_command_line_order(params_file: Path) -> None:
    argv = ["--ros-args", "-p", "rate_hz:=1.0", "--params-file", str(params_file)]
    assert parse_ros_args(argv, "ltc_policy").params["rate_hz"] == 30.0
    argv = ["--ros-args", "--params-file", str(params_file), "-p", "rate_hz:=1.0"]
    assert parse_ros_args(argv, "ltc_policy").params["rate_hz"] == 1.0


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--ros-args", "-p"], "-p: missing value"),
        (["--ros-args", "-p", "--"], "-p: missing value"),
        (["--ros-args", "-p", "rate"], "expected name:=value"),
        (["--ros-args", "-p", "x:=[1, 2"], "invalid YAML"),
        (["--ros-args", "-p", "x:={a: 1}"], "mapping"),
        (["--ros-args", "-r", ":=x"], "empty name"),
        (["--ros-args", "-r", "__ns:=/bad ns"], "invalid namespace"),
        (["--ros-args", "-r", "__node:=1bad"], "invalid node name"),
        (["--ros-args", "--log-level", "loud"], "unknown level"),
        (["--ros-args", "--frobnicate"], "unknown ROS argument '--frobnicate'"),
        (["--ros-args", "--params-file", "/nonexistent/p.yaml"], "/nonexistent/p.yaml"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(argv: list[str], match: str) -> None:
    with pytest.raises(RosArgsError, match=match.replace("[", r"\[").replace("{", r"\{")):
        parse_ros_args(argv, "n")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: [1, 2", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("n:\n  ros__parameters: 3\n", "must be a mapping"),
        ("ros__parameters:\n  a: 1\n", "needs a node name"),
    ],
)
def test_bad_params_files_raise_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(RosArgsError, match=match) as info:
        parse_ros_args(["--ros-args", "--params-file", str(f)], "n")
    assert str(f) in str(info.value)


def test_result_is_frozen() -> None:
    a = parse_ros_args([], "n")
    with pytest.raises(AttributeError):
        a.node_name = "m"  # type: ignore[misc]
