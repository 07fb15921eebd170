"""Parameter declarations validate start-up values and runtime sets, naming the parameter; the
shipped profiles hold only declared parameters with valid values."""

from pathlib import Path

import pytest
import yaml

from ltc_controller.nodes import policy_node, safety_node
from ltc_controller.nodes.commands import ACKERMANN, TWIST
from ltc_controller.nodes.policy_params import check_deadline
from ltc_controller.nodes.safety_profile import gate_config_from_params
from ltc_controller.params import ParameterError, resolve, validate_set
from ltc_controller.transport.ros_args import load_params_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
NODES = {"ltc_policy": policy_node.PARAMS, "safety_fallback": safety_node.PARAMS}


def test_unknown_parameter_is_named():
    with pytest.raises(ParameterError, match="max_sped"):
        resolve(safety_node.PARAMS, {"max_sped": 3.0})


def test_out_of_range_value_is_named_with_its_limit():
    with pytest.raises(ParameterError, match=r"command_timeout_s.*below the minimum"):
        resolve(safety_node.PARAMS, {"command_timeout_s": -1.0})


def test_wrong_type_is_rejected():
    with pytest.raises(ParameterError, match="auto_recover"):
        resolve(safety_node.PARAMS, {"auto_recover": "yes"})
    with pytest.raises(ParameterError, match="not finite"):
        resolve(safety_node.PARAMS, {"limits.speed.max": float("nan")})


def test_an_integer_beyond_int64_is_named_not_a_crash():
    # rcl_interfaces carries integers as int64: a larger seed failed in the parameter services.
    with pytest.raises(ParameterError, match=r"untrained_seed.*int64"):
        resolve(policy_node.PARAMS, {"untrained_seed": 99999999999999999999})
    assert resolve(policy_node.PARAMS, {"untrained_seed": 2**63 - 1})["untrained_seed"] == 2**63 - 1


def test_integer_is_accepted_for_a_float_parameter():
    assert resolve(safety_node.PARAMS, {"limits.speed.max": 3})["limits.speed.max"] == 3.0


def test_runtime_set_of_read_only_parameter_is_rejected_with_reason():
    coerced, reason = validate_set(policy_node.PARAMS, {"control_rate_hz": 10.0})
    assert coerced == {} and "read-only" in reason
    coerced, reason = validate_set(policy_node.PARAMS, {"speed_mps": 3.0})
    assert coerced == {"speed_mps": 3.0} and reason == ""


def test_every_parameter_has_a_description_and_numbers_have_ranges():
    for specs in NODES.values():
        names = [s.name for s in specs]
        assert len(names) == len(set(names))
        for s in specs:
            assert s.description
            if s.type in (int, float) and s.name != "untrained_seed":
                assert s.min is not None and s.max is not None, s.name
            assert s.coerce(s.default) == s.default  # defaults are valid values


def test_safety_limits_that_contradict_each_other_are_rejected_naming_them():
    p = resolve(safety_node.PARAMS, {"limits.speed.min": -1.0, "limits.speed.max": 0.0})
    gate_config_from_params(p)  # reverse only: valid
    p = resolve(safety_node.PARAMS, {})
    p["limits.steering_angle.min"] = 0.2  # excludes centre
    with pytest.raises(ValueError, match=r"limits\.steering_angle: need min <= 0 <= max"):
        gate_config_from_params(p)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_files_hold_only_declared_valid_parameters(path):
    doc = yaml.safe_load(path.read_text())
    # Keys "/**/<node>" so that the values apply under any namespace (-r __ns:=/car1).
    assert set(doc) <= {f"/**/{n}" for n in NODES} | {"/**"}, f"{path.name}: unknown sections"
    for node_name, specs in NODES.items():
        params = load_params_file(path, f"/{node_name}")
        resolved = resolve(specs, params)  # raises on an undeclared name or an invalid value
        assert set(params) <= set(resolved)
        # The node-level checks too (limits against each other, deadline vs period).
        if node_name == "safety_fallback":
            gate_config_from_params(resolved)
        else:
            check_deadline(resolved)
    # Each file says something about both nodes (not only through defaults).
    for node_name in NODES:
        assert load_params_file(path, f"/{node_name}").keys() - {"use_sim_time"}


def test_a_typo_in_a_config_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "vehicle.yaml").read_text().replace("rate_hz:", "rate_hzz:"))
    with pytest.raises(ParameterError, match="rate_hzz"):
        resolve(safety_node.PARAMS, load_params_file(bad, "/safety_fallback"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_files_apply_under_a_namespace(path):
    for node_name in NODES:
        assert load_params_file(path, f"/car1/{node_name}") == load_params_file(
            path, f"/{node_name}"
        )


def test_vehicle_and_drone_profiles_differ_only_in_their_yaml():
    def cfg(name: str):
        p = load_params_file(ROOT / "config" / name, "/safety_fallback")
        return gate_config_from_params(resolve(safety_node.PARAMS, p)), p

    vehicle, pv = cfg("vehicle.yaml")
    drone, pd = cfg("drone.yaml")
    assert pv["command_type"] == ACKERMANN and pd["command_type"] == TWIST
    assert vehicle.axis_names == ("steering_angle", "speed")
    assert vehicle.fallback == ("hold", "zero") and vehicle.land_after_s == 0.0
    assert drone.axis_names == ("linear_x", "linear_y", "linear_z", "angular_z")
    assert drone.fallback == ("zero",) * 4 and drone.land_after_s > 0.0
