"""The node kinds, in one table, and the function that runs one node.

:data:`NODE_KINDS` maps a kind (``ltc-controller node KIND``, the ``ltc_policy`` and
``safety_fallback`` executables) to the module and class of its node and to the pip extra it
needs beyond the base install, with the modules of that extra it imports. A node class is
constructed as ``cls(node)`` on a transport node (:class:`~ltc_controller.transport.port.Node`).
Node modules are imported only when their kind runs: starting ``safety_fallback`` does not load
the simulator. Adding a kind is adding a row here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltc_controller.extras import MissingExtra, require

__all__ = [
    "NODE_KINDS",
    "NodeKind",
    "START_FAILED",
    "load_node_class",
    "missing_extra",
    "node_kind",
    "run_node",
]

#: Exit status of a node that could not start (bad argument or parameter, unreadable policy
#: file, missing optional dependency); the message on stderr names the cause.
START_FAILED = 2


@dataclass(frozen=True)
class NodeKind:
    """Where one node kind's class lives and what it needs beyond the base install."""

    #: module holding the node class (imported only when this kind runs)
    module: str
    #: the class in ``module``; ``cls(node)`` makes the node on a transport node
    cls: str
    #: the pip extra it needs (``pip install 'ltc_controller[<extra>]'``, its modules in
    #: :data:`ltc_controller.extras.EXTRAS`); ``""``: the base install
    extra: str = ""
    #: a managed (lifecycle) node: its class calls ``node.manage_lifecycle``
    managed: bool = False


#: Every node kind that ``ltc-controller node`` and the console scripts run.
NODE_KINDS: dict[str, NodeKind] = {
    "ltc_policy": NodeKind("ltc_controller.nodes.policy_node", "PolicyNode", managed=True),
    "safety_fallback": NodeKind("ltc_controller.nodes.safety_node", "SafetyNode"),
    "simulator": NodeKind("ltc_controller.nodes.simulator", "SimulatorNode", extra="sim"),
}


def node_kind(kind: str) -> NodeKind:
    """The table row of ``kind``. Raises ``ValueError`` naming the known kinds."""
    try:
        return NODE_KINDS[kind]
    except KeyError:
        known = ", ".join(NODE_KINDS)
        raise ValueError(f"unknown node kind {kind!r}; choose from {known}") from None


def missing_extra(kind: str) -> str:
    """Why ``kind`` cannot run in this environment because an optional dependency is not
    installed (one line naming the extra to install), or ``""``. Raises ``ValueError`` for an
    unknown kind."""
    entry = node_kind(kind)
    if not entry.extra:
        return ""
    try:
        require(kind, entry.extra)
    except MissingExtra as e:
        return str(e)
    return ""


def load_node_class(kind: str) -> Callable[..., Any]:
    """Import ``kind``'s module and return its node class. Raises ``ValueError`` for an unknown
    kind and what the import raises (``ImportError``)."""
    entry = node_kind(kind)
    cls: Callable[..., Any] = getattr(importlib.import_module(entry.module), entry.cls)
    return cls


def _policy_file_error() -> tuple[type[Exception], ...]:
    """``PolicyFileError`` if a node loaded the policy-file module, else nothing: importing it
    here would load torch into nodes that never read a policy (``safety_fallback``)."""
    module = sys.modules.get("ltc_controller.models.policy_file")
    return () if module is None else (module.PolicyFileError,)


def run_node(kind: str, argv: Sequence[str], log_path: str | None = None) -> int:
    """Run one node until SIGINT/SIGTERM. Returns the process exit status: 0 on a clean stop
    (1 when the run log could not be written then), :data:`START_FAILED` (2) when the node
    could not start (unknown kind, invalid argument or parameter, unreadable policy file,
    missing optional dependency, a ``log_path`` that cannot be written; the message on stderr
    names the cause). ``log_path``: where a node with ``write_log`` (the simulator) saves its
    run (``""``: none); a node with ``open_log`` is told it before spinning (the simulator
    streams its log beside it).

    SIGINT and SIGTERM request a stop (:mod:`ltc_controller.stop`) at any moment, a
    second one included: the node stops spinning, writes its log, closes (``close()``:
    workers joined) and shuts its transport down, and the status is 0. A signal that arrives
    while the node is still starting stops it as soon as it is built, without spinning."""
    from ltc_controller import stop
    from ltc_controller.outputs import output_problem

    stop.install()
    log_path = log_path or None  # "" (a launch file's default): no log
    try:
        problem = missing_extra(kind)
    except ValueError as e:
        problem = str(e)
    if not problem and log_path is not None:
        # Checked before the node starts: a log that cannot be written must not end a run.
        bad = output_problem(log_path)
        problem = f"--log: {bad}" if bad else ""
    if problem:
        print(problem if problem.startswith(kind) else f"{kind}: {problem}", file=sys.stderr)
        return START_FAILED

    from ltc_controller.params import ParameterError
    from ltc_controller.transport import create_node
    from ltc_controller.transport.ros_args import RosArgsError

    try:
        node, _ = create_node(kind, list(argv), managed=node_kind(kind).managed)
    except (RosArgsError, ValueError, RuntimeError) as e:
        # ValueError: a bad ROS_DOMAIN_ID; RuntimeError: the transport cannot start here.
        print(f"{kind}: {e}", file=sys.stderr)
        return START_FAILED
    except Exception as e:  # noqa: BLE001 - e.g. cyclonedds' DDSException for a bad CYCLONEDDS_URI
        print(f"{kind}: the transport could not start: {e}", file=sys.stderr)
        return START_FAILED
    start_errors: tuple[type[Exception], ...] = (ParameterError, ImportError)
    try:
        obj = load_node_class(kind)(node)
    except Exception as e:
        if not isinstance(e, start_errors + _policy_file_error()):
            raise
        # ImportError: under rclpy, a message package missing from the ROS 2 environment.
        print(f"{kind}: {e}", file=sys.stderr)
        node.shutdown()
        return START_FAILED
    status = 0
    try:
        if log_path is not None and hasattr(obj, "open_log"):
            obj.open_log(Path(log_path))  # stream the run log next to it while running
        if not stop.requested():
            node.spin()
        if stop.requested():
            node.logger.info(f"{stop.reason()} received, shutting down")
    finally:
        try:
            if log_path is not None and hasattr(obj, "write_log"):
                try:
                    obj.write_log(Path(log_path))
                except OSError as e:  # e.g. the disk filled up or the folder went away
                    print(f"{kind}: could not write the run log {log_path}: {e}", file=sys.stderr)
                    status = 1
            if hasattr(obj, "close"):
                obj.close()
        finally:
            node.shutdown()
            stop.finish()
    return status
