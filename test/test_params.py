"""Parameter declarations validate start-up values and runtime sets, naming the parameter."""

import pytest
import yaml

from ltc_controller.nodes import policy_node, safety_node
from ltc_controller.params import ParameterError, resolve, validate_set

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


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
        resolve(safety_node.PARAMS, {"max_speed": float("nan")})


def test_integer_is_accepted_for_a_float_parameter():
    assert resolve(safety_node.PARAMS, {"max_speed": 3})["max_speed"] == 3.0


def test_runtime_set_of_read_only_parameter_is_rejected_with_reason():
    coerced, reason = validate_set(policy_node.PARAMS, {"control_rate_hz": 10.0})
    assert coerced == {} and "read-only" in reason
    coerced, reason = validate_set(policy_node.PARAMS, {"speed_mps": 3.0})
    assert coerced == {"speed_mps": 3.0} and reason == ""


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")))
def test_config_files_hold_only_declared_valid_parameters(path):
    specs = {"ltc_policy": policy_node.PARAMS, "safety_fallback": safety_node.PARAMS}
    doc = yaml.safe_load(path.read_text())
    assert set(doc) <= set(specs), f"{path.name}: unknown node sections"
    for node_name, section in doc.items():
        params = section["ros__parameters"]
        resolved = resolve(specs[node_name], params)  # raises on anything invalid
        assert set(params) <= set(resolved)
