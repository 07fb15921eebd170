"""ROS 2 command-line arguments (``--ros-args …``) without a ROS install.

Supported inside ``--ros-args`` blocks (several blocks allowed, each ends at ``--`` or the next
``--ros-args``):

- ``-p``/``--param [node:]name:=value``: value parsed as YAML, as ROS does (``1`` int, ``1.0``
  float, ``true`` bool, ``[1, 2]`` list, anything else a string).
- ``--params-file FILE``: YAML ``<node key>: {ros__parameters: {...}}``; keys ``/**``, ``/*``,
  ``node``, ``/ns/node``, ``/**/node`` (a key without a leading ``/`` is taken from the root, as
  in ROS) or namespaces nested as YAML levels; nested parameter dicts flatten with dots.
- ``-r``/``--remap [node:]from:=to``, including ``__ns:=/ns`` and ``__node:=name``
  (``__name`` too).
- ``--log-level LEVEL`` or ``--log-level [logger:=]LEVEL``.
- Accepted and ignored: ``-e``/``--enclave X``, ``--log-config-file X``, ``--log-file-name X``,
  ``--[enable|disable]-{rosout,stdout,external-lib}-logs``.

Overrides apply in command-line order (later wins); within one params file, wildcard keys apply
before the node's own key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = ["RosArgs", "RosArgsError", "parse_ros_args", "load_params_file", "parse_param_value"]

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_IGNORED_WITH_VALUE = {"-e", "--enclave", "--log-config-file", "--log-file-name"}
_IGNORED_FLAGS = {
    f"--{onoff}-{what}-logs"
    for onoff in ("enable", "disable")
    for what in ("stdout", "external-lib")
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2 / ROS), not as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class RosArgsError(ValueError):
    """A malformed ROS argument or parameters file; the message names the argument or file."""


@dataclass(frozen=True)
class RosArgs:
    """The result of :func:`parse_ros_args` for one node.

    node_name: after ``__node`` remap; namespace: ``"/"`` or ``"/a/b"`` after ``__ns`` remap;
    params: parameter overrides (read-only), dotted names -> values; remaps: topic remap rules
    that apply to this node, ``from -> to`` (unresolved; the node resolves both sides);
    log_level: lower-case ROS level or ``None``; rosout_logs: publish the log on ``/rosout``
    (``--enable-rosout-logs``, the default, or ``--disable-rosout-logs``; the last one wins);
    user_args: the arguments outside ``--ros-args`` blocks, in order.
    """

    node_name: str
    namespace: str = "/"
    params: Mapping[str, Any] = field(default_factory=dict)
    remaps: Mapping[str, str] = field(default_factory=dict)
    log_level: str | None = None
    rosout_logs: bool = True
    user_args: tuple[str, ...] = ()

    @property
    def fully_qualified_name(self) -> str:
        """``<namespace>/<node_name>``."""
        return self.namespace.rstrip("/") + "/" + self.node_name


def parse_param_value(text: str, where: str = "") -> Any:
    """Parse a ``-p`` value as YAML, like ROS: scalars and lists of scalars.

    Raises :class:`RosArgsError` (naming ``where``) for invalid YAML or a mapping value.
    """
    if text == "":
        return ""
    try:
        value = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise RosArgsError(f"{where or text!r}: invalid YAML value: {exc}") from None
    if isinstance(value, dict):
        raise RosArgsError(f"{where or text!r}: a parameter value cannot be a mapping")
    if value is None:
        return text  # "null"/"~": ROS has no null parameter; keep the text
    return value


def _split_assignment(text: str, option: str) -> tuple[str | None, str, str]:
    """``[node:]name:=value`` -> (node or None, name, value)."""
    if ":=" not in text:
        raise RosArgsError(f"{option} {text!r}: expected name:=value")
    lhs, value = text.split(":=", 1)
    node: str | None = None
    if ":" in lhs:
        node, lhs = lhs.split(":", 1)
        if not _TOKEN.match(node):
            raise RosArgsError(f"{option} {text!r}: invalid node name {node!r}")
    if not lhs:
        raise RosArgsError(f"{option} {text!r}: empty name")
    return node, lhs, value


def _normalize_ns(ns: str, where: str) -> str:
    ns = "/" + ns.strip("/") if ns.strip("/") else "/"
    for tok in ns.strip("/").split("/"):
        if tok and not _TOKEN.match(tok):
            raise RosArgsError(f"{where}: invalid namespace {ns!r}")
    if "//" in ns:
        raise RosArgsError(f"{where}: invalid namespace {ns!r}")
    return ns


def _flatten(prefix: str, value: Any, out: dict[str, Any], where: str) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out, where)
        return
    if value is None:
        raise RosArgsError(f"{where}: parameter {prefix!r} has no value")
    out[prefix] = value


def _pattern_matches(pattern: str, fqn: str) -> bool:
    """ROS node-key matching: ``/**`` any number of tokens, ``/*`` or ``*`` one token."""
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    if pattern == fqn:
        return True
    if "*" not in pattern:
        return False
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i):
            regex += "(?:/[^/]+)*"
            i += 3
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, fqn) is not None


def _node_sections(data: Any, path: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(node key path, ros__parameters dict) for every section, in file order."""
    if not isinstance(data, dict):
        raise RosArgsError(f"{where}: expected a mapping under {path or 'the top level'!r}")
    sections: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if key == "ros__parameters":
            if not path:
                raise RosArgsError(f"{where}: ros__parameters needs a node name above it")
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise RosArgsError(f"{where}: ros__parameters of {path!r} must be a mapping")
            sections.append((path, value))
            continue
        if not isinstance(key, str):
            raise RosArgsError(f"{where}: invalid node key {key!r}")
        sub = (path.rstrip("/") + "/" + key.strip("/")) if path else key
        sections += _node_sections(value, sub, where)
    return sections


def load_params_file(path: str | Path, node_fqn: str) -> dict[str, Any]:
    """The parameters a ROS params file gives the node ``node_fqn`` (e.g. ``"/ns/ltc_policy"``).

    Wildcard keys (``/**``, ``*``) apply first, then keys that name the node exactly. Returns dotted
    names -> values. Raises :class:`RosArgsError` naming the file when it cannot be read, is not
    YAML, or is not in the ``node: ros__parameters:`` format.
    """
    where = f"params file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RosArgsError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise RosArgsError(f"{where}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    sections = _node_sections(data, "", where)
    wildcard: dict[str, Any] = {}
    exact: dict[str, Any] = {}
    for key, params in sections:
        if _pattern_matches(key, node_fqn):
            _flatten("", params, wildcard if "*" in key else exact, where)
    return {**wildcard, **exact}


def _node_fqn(ns: str, name: str) -> str:
    return ns.rstrip("/") + "/" + name


def parse_ros_args(argv: Sequence[str], node_name: str, namespace: str = "/") -> RosArgs:
    """Parse the ROS arguments in ``argv`` (e.g. ``sys.argv[1:]``) for a node.

    ``node_name``/``namespace`` are the defaults that ``__node``/``__ns`` remaps override. Node-
    prefixed rules (``other:name:=v``) apply only when the prefix equals the (final) node name.
    Raises :class:`RosArgsError` for an unknown option inside ``--ros-args``, a missing value, a
    malformed rule, a bad log level or an unusable params file.
    """
    user_args: list[str] = []
    # Ordered list of (kind, payload) so files and -p apply in command-line order once the final
    # node name and namespace are known.
    param_ops: list[tuple[str, Any]] = []
    remap_rules: list[tuple[str | None, str, str]] = []
    log_level: str | None = None
    rosout_logs = True

    args = list(argv)
    i = 0
    in_block = False
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":
            in_block = True
            i += 1
            continue
        if not in_block:
            user_args.append(arg)
            i += 1
            continue
        if arg == "--":
            in_block = False
            i += 1
            continue

        def value(opt: str, idx: int = i) -> str:
            if idx + 1 >= len(args) or args[idx + 1] in ("--", "--ros-args"):
                raise RosArgsError(f"{opt}: missing value")
            return args[idx + 1]

        if arg in ("-p", "--param"):
            text = value(arg)
            node, name, raw = _split_assignment(text, arg)
            param_ops.append(("param", (node, name, parse_param_value(raw, f"{arg} {text}"))))
            i += 2
        elif arg == "--params-file":
            param_ops.append(("file", value(arg)))
            i += 2
        elif arg in ("-r", "--remap"):
            text = value(arg)
            remap_rules.append(_split_assignment(text, arg))
            i += 2
        elif arg == "--log-level":
            text = value(arg)
            logger_name: str | None = None
            level = text
            if ":=" in text:
                logger_name, level = text.split(":=", 1)
            if level.lower() not in _LOG_LEVELS:
                raise RosArgsError(
                    f"--log-level {text!r}: unknown level (use one of {', '.join(_LOG_LEVELS)})"
                )
            if logger_name is None or logger_name == node_name:
                log_level = level.lower()
            i += 2
        elif arg in ("--enable-rosout-logs", "--disable-rosout-logs"):
            rosout_logs = arg == "--enable-rosout-logs"
            i += 1
        elif arg in _IGNORED_WITH_VALUE:
            value(arg)
            i += 2
        elif arg in _IGNORED_FLAGS:
            i += 1
        else:
            raise RosArgsError(f"unknown ROS argument {arg!r}")

    # Node name and namespace first: every other rule depends on them.
    name, ns = node_name, namespace
    for node, src, dst in remap_rules:
        if node is not None and node != node_name:
            continue
        if src in ("__node", "__name"):
            if not _TOKEN.match(dst):
                raise RosArgsError(f"-r {src}:={dst}: invalid node name")
            name = dst
        elif src == "__ns":
            ns = dst
    ns = _normalize_ns(ns, f"-r __ns:={ns}")
    if not _TOKEN.match(name):
        raise RosArgsError(f"invalid node name {name!r}")

    remaps: dict[str, str] = {}
    for node, src, dst in remap_rules:
        if src.startswith("__") or (node is not None and node not in (node_name, name)):
            continue
        if not dst:
            raise RosArgsError(f"-r {src}:=: empty target")
        remaps[src] = dst

    fqn = _node_fqn(ns, name)
    params: dict[str, Any] = {}
    for kind, payload in param_ops:
        if kind == "file":
            params.update(load_params_file(payload, fqn))
        else:
            node, pname, pvalue = payload
            if node is None or node in (node_name, name):
                params[pname] = pvalue
    return RosArgs(
        node_name=name,
        namespace=ns,
        params=MappingProxyType(params),
        remaps=MappingProxyType(remaps),
        log_level=log_level,
        rosout_logs=rosout_logs,
        user_args=tuple(user_args),
    )
