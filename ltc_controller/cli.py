"""``ltc-controller``: the command-line entry point, and the node executables.

ltc-controller demo [--scenario {car,drone}] [--duration S] [--output DIR] [--policy FILE]
                    [--kill-policy-at S] [--stamped]
ltc-controller node {ltc_policy,safety_fallback,simulator} [--log FILE] [--ros-args ...]
ltc_policy [--ros-args ...]          # same as `ltc-controller node ltc_policy`
safety_fallback [--ros-args ...]
simulator [--log FILE] [--ros-args ...]   # `ros2 run ltc_controller simulator`

The node kinds and how one node runs live in :mod:`ltc_controller.nodes.registry`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ltc_controller import stop


def ltc_policy_main(argv: Sequence[str] | None = None) -> int:
    stop.install()  # before the imports: Ctrl-C while starting is a clean stop too
    from ltc_controller.nodes.registry import run_node

    return run_node("ltc_policy", sys.argv[1:] if argv is None else argv)


def safety_fallback_main(argv: Sequence[str] | None = None) -> int:
    stop.install()
    from ltc_controller.nodes.registry import run_node

    return run_node("safety_fallback", sys.argv[1:] if argv is None else argv)


def simulator_main(argv: Sequence[str] | None = None) -> int:
    """``simulator [--log FILE] [--ros-args ...]`` (``ros2 run ltc_controller simulator``): the
    same as ``ltc-controller node simulator``. ``--log FILE`` comes before ``--ros-args``; the
    run log (``.npz`` + ``.json``) is written there when the node stops; an empty FILE writes
    none (a launch file's default). Exit status as :func:`~ltc_controller.nodes.registry.run_node`.
    """
    stop.install()
    args = list(sys.argv[1:] if argv is None else argv)
    i = args.index("--ros-args") if "--ros-args" in args else len(args)
    ap = argparse.ArgumentParser(
        prog="simulator", description="The lane-keeping simulator node (needs the [sim] extra)."
    )
    ap.add_argument("--log", default="", help="write the run log (.npz, .json) here on exit")
    own = ap.parse_args(args[:i])
    from ltc_controller.nodes.registry import run_node

    return run_node("simulator", args[i:], own.log or None)


class SubcommandParser(argparse.ArgumentParser):
    """The parser of a sub-command (and of its own sub-commands): an unknown argument is its
    error, shown with its usage. Plain argparse hands a sub-parser's unrecognised arguments up
    to the top-level parser, whose error shows ``ltc-controller``'s usage instead."""

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """``ltc-controller``'s parser and its command modules by ``NAME``."""
    from ltc_controller.commands import discover

    ap = argparse.ArgumentParser(
        prog="ltc-controller", description="Liquid time-constant policies as ROS 2 controllers."
    )
    # Nested sub-parsers (monitor check, param get, ...) inherit the class.
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=SubcommandParser)
    commands = {}
    for mod in discover():
        mod.add_arguments(sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP))
        commands[mod.NAME] = mod
    return ap, commands


def main(argv: Sequence[str] | None = None) -> int:
    """``ltc-controller SUBCOMMAND ...``; sub-commands live in :mod:`ltc_controller.commands`."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] in (["node"], ["launch"]):
        # Node processes and their launcher: a signal requests a stop from the very start
        # (ltc_controller.stop), also while the imports below run.
        stop.install()
    # Everything from --ros-args on belongs to the node, not to argparse.
    ros_tail: list[str] = []
    if "--ros-args" in args_in:
        i = args_in.index("--ros-args")
        args_in, ros_tail = args_in[:i], args_in[i:]

    try:
        ap, commands = build_parser()
        a = ap.parse_args(args_in)
        rc = int(commands[a.cmd].run(a, ros_tail))
        sys.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C before a command installs its own handling (e.g. during its imports): one
        # line, the shell's status for SIGINT, not a traceback.
        print(" ".join(["ltc-controller", *args_in[:1]]) + ": interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error of ours; keep the interpreter's exit
        # flush from raising again by pointing stdout at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    return rc


if __name__ == "__main__":
    sys.exit(main())
