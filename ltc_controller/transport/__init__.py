"""Transports behind one small port: a Cyclone DDS backend that speaks ROS 2's wire conventions
(no ROS install needed) and, where rclpy imports, an rclpy backend.

:func:`create_node` picks the backend: ``backend=`` if given, else the environment variable
``LTC_CONTROLLER_TRANSPORT`` (``auto``, ``rclpy`` or ``dds``), else ``auto``: rclpy when it imports
(a sourced ROS 2 install), DDS otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

from .ros_args import RosArgs, RosArgsError, parse_ros_args

if TYPE_CHECKING:
    from .port import Node

__all__ = [
    "BACKEND_ENV",
    "RosArgs",
    "RosArgsError",
    "create_node",
    "parse_ros_args",
    "rclpy_available",
    "select_backend",
]

#: Environment variable that selects the backend: ``auto`` (default), ``rclpy`` or ``dds``.
BACKEND_ENV = "LTC_CONTROLLER_TRANSPORT"
_BACKENDS = ("auto", "rclpy", "dds")


@cache
def rclpy_available() -> bool:
    """Whether ``import rclpy`` works here (a sourced ROS 2 install)."""
    try:
        import rclpy  # noqa: F401
    except Exception:  # ImportError, or a half-installed rclpy failing on its own imports
        return False
    return True


def select_backend(backend: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``"rclpy"`` or ``"dds"``: ``backend``, else ``$LTC_CONTROLLER_TRANSPORT``, else ``auto``.

    Raises ``ValueError`` for an unknown choice and ``RuntimeError`` when rclpy is asked for but
    does not import.
    """
    env = os.environ if environ is None else environ
    choice = (backend or env.get(BACKEND_ENV, "") or "auto").strip().lower()
    if choice not in _BACKENDS:
        raise ValueError(f"transport {choice!r}: use one of {', '.join(_BACKENDS)} ({BACKEND_ENV})")
    if choice == "auto":
        return "rclpy" if rclpy_available() else "dds"
    if choice == "rclpy" and not rclpy_available():
        raise RuntimeError(
            "transport 'rclpy' selected but rclpy does not import: source a ROS 2 setup "
            f"(e.g. /opt/ros/jazzy/setup.bash) or set {BACKEND_ENV}=dds"
        )
    return choice


def create_node(
    name: str,
    argv: Sequence[str] = (),
    namespace: str = "/",
    backend: str | None = None,
    managed: bool = False,
) -> tuple[Node, RosArgs]:
    """A node of the selected backend (:func:`select_backend`) configured from ROS arguments.

    ``argv`` are the process arguments without the program name (``sys.argv[1:]``); everything in
    ``--ros-args`` blocks is applied (node name, namespace, remaps, log level, parameter
    overrides). The returned :class:`RosArgs` is parsed here for both backends (a DDS node also
    keeps the overrides in ``node.parameter_overrides``). Raises :class:`RosArgsError` for bad
    arguments, ``ValueError``/``RuntimeError`` from :func:`select_backend`, and what the backend's
    node class raises.
    """
    args = parse_ros_args(argv, name, namespace)
    if select_backend(backend) == "rclpy":
        from .rclpy_backend import RclpyNode

        return RclpyNode(name, argv, namespace, managed=managed), args
    # Imported here so that parsing arguments does not load DDS.
    from .dds import DdsNode

    node = DdsNode(
        args.node_name,
        args.namespace,
        remaps=args.remaps,
        parameters=args.params,
        log_level=args.log_level or "info",
        rosout=args.rosout_logs,
    )
    return node, args
