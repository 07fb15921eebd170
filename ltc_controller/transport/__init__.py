"""Transports behind one small port: a Cyclone DDS backend that speaks ROS 2's wire conventions
(no ROS install needed) and, where rclpy imports, an rclpy backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .ros_args import RosArgs, RosArgsError, parse_ros_args

if TYPE_CHECKING:
    from .dds import DdsNode

__all__ = ["RosArgs", "RosArgsError", "create_node", "parse_ros_args"]


def create_node(
    name: str, argv: Sequence[str] = (), namespace: str = "/"
) -> tuple[DdsNode, RosArgs]:
    """A :class:`~.dds.DdsNode` configured from ROS command-line arguments.

    ``argv`` are the process arguments without the program name (``sys.argv[1:]``); everything in
    ``--ros-args`` blocks is applied (node name, namespace, remaps, log level), parameter
    overrides land in ``node.parameter_overrides`` and in the returned :class:`RosArgs`.
    Raises :class:`RosArgsError` for bad arguments and what :class:`~.dds.DdsNode` raises.
    """
    # Imported here so that parsing arguments does not load DDS.
    from .dds import DdsNode

    args = parse_ros_args(argv, name, namespace)
    node = DdsNode(
        args.node_name,
        args.namespace,
        remaps=args.remaps,
        parameters=args.params,
        log_level=args.log_level or "info",
    )
    return node, args
