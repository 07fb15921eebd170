"""One declaration per parameter: name, type, default, unit, range, read-only flag, meaning.

From these declarations come the validation of command-line and YAML parameters at start-up, the
validation of runtime sets (answered with a reason), and the parameter tables in the README.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ParameterError(ValueError):
    """A parameter is unknown, missing, of the wrong type or out of range. The message names it."""


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one node parameter.

    ``type`` is one of ``bool``, ``int``, ``float``, ``str``. ``min``/``max`` bound numbers
    (inclusive); ``choices`` bounds strings; ``read_only`` parameters can be set at start-up only.
    """

    name: str
    type: type
    default: Any
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise :class:`ParameterError`."""
        t = self.type
        if t is bool:
            if isinstance(value, bool):
                return value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                value = int(value)
                if not INT64_MIN <= value <= INT64_MAX:  # rcl_interfaces integer_value is int64
                    raise ParameterError(
                        f"parameter '{self.name}': {value} does not fit a ROS 2 integer (int64)"
                    )
            else:
                raise ParameterError(f"parameter '{self.name}': expected an integer, got {value!r}")
        elif t is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
                if not math.isfinite(value):
                    raise ParameterError(f"parameter '{self.name}': {value!r} is not finite")
            else:
                raise ParameterError(f"parameter '{self.name}': expected a number, got {value!r}")
        elif t is str:
            if not isinstance(value, str):
                raise ParameterError(f"parameter '{self.name}': expected a string, got {value!r}")
        if t is bool and not isinstance(value, bool):
            raise ParameterError(f"parameter '{self.name}': expected true/false, got {value!r}")
        if t in (int, float):
            if self.min is not None and value < self.min:
                raise ParameterError(
                    f"parameter '{self.name}': {value} is below the minimum {self.min} {self.unit}"
                )
            if self.max is not None and value > self.max:
                raise ParameterError(
                    f"parameter '{self.name}': {value} is above the maximum {self.max} {self.unit}"
                )
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}': {value!r} is not one of {', '.join(self.choices)}"
            )
        return value


#: Parameters every ROS 2 node has; declared by both nodes so the same YAML works everywhere.
COMMON: tuple[ParamSpec, ...] = (
    ParamSpec(
        "use_sim_time",
        bool,
        False,
        "Stamp with /clock time (rclpy backend); the steady-clock timers are unaffected",
        read_only=True,
    ),
)


#: ``/diagnostics`` period: declared by both nodes, once here.
DIAGNOSTICS_PERIOD = ParamSpec(
    "diagnostics_period_s", float, 1.0, "Period of /diagnostics", "s", 0.05, 60.0, read_only=True
)


def resolve(specs: Sequence[ParamSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """Start-up parameters: the defaults overridden by ``given``, each validated.

    Raises:
        ParameterError: a name in ``given`` that no spec declares, or an invalid value.
    """
    by_name = {s.name: s for s in specs}
    check_known(specs, given)
    out = {s.name: s.default for s in specs}
    for name, value in given.items():
        out[name] = by_name[name].coerce(value)
    return out


def check_known(
    specs: Sequence[ParamSpec],
    names: Iterable[str],
    also: Iterable[str] = (),
    prefixes: tuple[str, ...] = (),
) -> None:
    """Raise :class:`ParameterError` naming every name in ``names`` (start-up overrides: ``-p``,
    params files) that no spec declares: a misspelled parameter stops the node on either backend
    instead of being ignored. ``also`` and ``prefixes``: names the middleware declares itself
    (rclpy: ``use_sim_time``, ``start_type_description_service``; ``qos_overrides.``)."""
    declared = {s.name for s in specs}
    known = declared | set(also)
    unknown = sorted(n for n in set(names) - known if not (prefixes and n.startswith(prefixes)))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s): {', '.join(unknown)} (declared: {', '.join(sorted(declared))})"
        )


def validate_set(
    specs: Sequence[ParamSpec], changes: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """Validate a runtime set of parameters (all or nothing, as rclpy's on-set callback).

    Returns ``(coerced, "")`` when every change is acceptable, ``({}, reason)`` otherwise.
    """
    by_name = {s.name: s for s in specs}
    coerced: dict[str, Any] = {}
    for name, value in changes.items():
        spec = by_name.get(name)
        if spec is None:
            return {}, f"unknown parameter '{name}'"
        if spec.read_only:
            return {}, f"parameter '{name}' is read-only"
        try:
            coerced[name] = spec.coerce(value)
        except ParameterError as e:
            return {}, str(e)
    return coerced, ""


def markdown_table(specs: Iterable[ParamSpec]) -> str:
    """The README's parameter table for ``specs``."""
    rows = [
        "| name | type | default | unit | range | read-only | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in specs:
        if s.choices:
            rng = " / ".join(s.choices)
        elif s.min is not None or s.max is not None:
            rng = f"[{'' if s.min is None else s.min}, {'' if s.max is None else s.max}]"
        else:
            rng = ""
        rows.append(
            f"| `{s.name}` | {s.type.__name__} | `{s.default!r}` | {s.unit} | {rng} | "
            f"{'yes' if s.read_only else ''} | {s.description} |"
        )
    return "\n".join(rows)


def scenario_mismatch(
    scenario: str,
    given: Iterable[str],
    owners: Mapping[str, tuple[str, str]],
    spelled: str = "--scenario {}",
) -> str | None:
    """Why options (or parameters) that only another scenario reads were given with
    ``scenario`` (one line naming the first such one, the scenario it belongs to and what it is
    for there), or ``None``. The demo's options and the simulator node's parameters are refused
    this way instead of being ignored.

    Args:
        scenario: the scenario chosen (``car``, ``drone``).
        given: the names the user set.
        owners: name -> (the scenario that reads it, what it is for there), e.g.
            ``{"--track-seed": ("car", "the seed of the car's generated track")}``.
        spelled: how a scenario is written in the message (``--scenario {}``,
            ``scenario:={}``).
    """
    chosen = set(given)
    for name, (owner, why) in owners.items():
        if name in chosen and owner != scenario:
            return (
                f"{name} applies to {spelled.format(owner)} only ({why}); with "
                f"{spelled.format(scenario)} it would be ignored"
            )
    return None
