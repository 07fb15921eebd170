"""ROS 2 parameter conventions shared by both backends (no DDS or rclpy import here).

- ``rcl_interfaces/msg/ParameterType`` numbers and names, and the mapping of a
  :class:`~ltc_controller.params.ParamSpec` type to them;
- the ``rcl_interfaces/msg/ParameterDescriptor`` fields of a ParamSpec (ranges, read-only,
  description, constraints), as plain values that each backend puts into its own message class;
- ``list_parameters``' prefix/depth selection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ltc_controller.params import ParamSpec

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "PARAMETER_TYPES",
    "TYPE_NAMES",
    "descriptor_fields",
    "parameter_type",
    "select_parameters",
    "type_mismatch",
    "type_of_value",
]

# rcl_interfaces/msg/ParameterType
NOT_SET, BOOL, INTEGER, DOUBLE, STRING = 0, 1, 2, 3, 4
BYTE_ARRAY, BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY = 5, 6, 7, 8, 9
#: ParameterType number -> the name ``ros2 param`` prints.
TYPE_NAMES = {
    NOT_SET: "not set",
    BOOL: "boolean",
    INTEGER: "integer",
    DOUBLE: "double",
    STRING: "string",
    BYTE_ARRAY: "byte array",
    BOOL_ARRAY: "boolean array",
    INTEGER_ARRAY: "integer array",
    DOUBLE_ARRAY: "double array",
    STRING_ARRAY: "string array",
}
#: ParamSpec.type -> ParameterType number.
PARAMETER_TYPES: dict[type, int] = {bool: BOOL, int: INTEGER, float: DOUBLE, str: STRING}
#: The field of ``rcl_interfaces/msg/ParameterValue`` that holds each type's value.
VALUE_FIELDS = {
    BOOL: "bool_value",
    INTEGER: "integer_value",
    DOUBLE: "double_value",
    STRING: "string_value",
    BYTE_ARRAY: "byte_array_value",
    BOOL_ARRAY: "bool_array_value",
    INTEGER_ARRAY: "integer_array_value",
    DOUBLE_ARRAY: "double_array_value",
    STRING_ARRAY: "string_array_value",
}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parameter_type(spec: ParamSpec) -> int:
    """The ``ParameterType`` number of a declared parameter. Raises ``ValueError`` for a
    ParamSpec type with no ROS counterpart."""
    try:
        return PARAMETER_TYPES[spec.type]
    except KeyError:
        raise ValueError(f"parameter '{spec.name}': no ROS type for {spec.type!r}") from None


def type_of_value(value: Any) -> int:
    """The ``ParameterType`` of a Python value (bool before int: ``True`` is a boolean).

    Lists map to the array types by their first element (empty: string array). Raises
    ``TypeError`` for a value no ROS parameter can hold (``None``, a dict, a mixed list).
    """
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if isinstance(value, bytes | bytearray):
        return BYTE_ARRAY
    if isinstance(value, list | tuple):
        kinds = {type_of_value(v) for v in value}
        if not kinds:
            return STRING_ARRAY
        if len(kinds) == 1 and (k := kinds.pop()) in (BOOL, INTEGER, DOUBLE, STRING):
            return {BOOL: BOOL_ARRAY, INTEGER: INTEGER_ARRAY, DOUBLE: DOUBLE_ARRAY}.get(
                k, STRING_ARRAY
            )
    raise TypeError(f"{value!r} cannot be a ROS parameter value")


def type_mismatch(spec: ParamSpec, ros_type: int) -> str:
    """``""`` if a value of ``ros_type`` may be set on ``spec``, else the reason.

    As in rclpy, a declared parameter keeps its type: an integer is not accepted for a double
    (``ros2 param set node rate 20`` must be written ``20.0``).
    """
    expected = parameter_type(spec)
    if ros_type == expected:
        return ""
    return (
        f"parameter '{spec.name}' is of type {TYPE_NAMES[expected]}, setting it to "
        f"{TYPE_NAMES.get(ros_type, str(ros_type))} is not allowed"
    )


def descriptor_fields(spec: ParamSpec) -> dict[str, Any]:
    """``rcl_interfaces/msg/ParameterDescriptor`` fields for ``spec`` as plain values.

    Keys: ``name``, ``type``, ``description``, ``additional_constraints`` (unit and choices, e.g.
    ``"unit: s"``, ``"one of: hold, center"``), ``read_only``, ``dynamic_typing`` (False),
    ``floating_point_range`` and ``integer_range``: a list of zero or one
    ``(from_value, to_value, step)`` tuple, step 0 (a continuous range). A one-sided bound is
    closed with +-inf (doubles) or the int64 limits (integers), because ROS ranges have two ends.
    """
    constraints = []
    if spec.unit:
        constraints.append(f"unit: {spec.unit}")
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    fp_range: list[tuple[float, float, float]] = []
    int_range: list[tuple[int, int, int]] = []
    if spec.min is not None or spec.max is not None:
        if spec.type is float:
            lo = -math.inf if spec.min is None else float(spec.min)
            hi = math.inf if spec.max is None else float(spec.max)
            fp_range.append((lo, hi, 0.0))
        elif spec.type is int:
            ilo = INT64_MIN if spec.min is None else math.ceil(spec.min)
            ihi = INT64_MAX if spec.max is None else math.floor(spec.max)
            int_range.append((ilo, ihi, 0))
    return {
        "name": spec.name,
        "type": parameter_type(spec),
        "description": spec.description,
        "additional_constraints": "; ".join(constraints),
        "read_only": spec.read_only,
        "dynamic_typing": False,
        "floating_point_range": fp_range,
        "integer_range": int_range,
    }


def select_parameters(
    names: Iterable[str], prefixes: Sequence[str] = (), depth: int = 0, separator: str = "."
) -> tuple[list[str], list[str]]:
    """``list_parameters``: the names under any of ``prefixes`` (all names when none), at most
    ``depth`` levels below the prefix (0: any depth), and the sorted prefixes of the returned names
    that have one (``"limits.max"`` -> ``"limits"``). Names come back sorted.
    """
    selected = []
    for name in sorted(set(names)):
        if prefixes:
            matches = [
                p for p in prefixes if name == p or name.startswith(p.rstrip(separator) + separator)
            ]
            if not matches:
                continue
            rest = name[len(max(matches, key=len)) :].lstrip(separator)
        else:
            rest = name
        if depth and rest.count(separator) >= depth:
            continue
        selected.append(name)
    found = sorted({n.rsplit(separator, 1)[0] for n in selected if separator in n})
    return selected, found
