"""Sub-commands of ``ltc-controller``: one module each, found at run time.

A command module defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args, ros_args) -> int`` (the exit status; ``ros_args`` are
the ``--ros-args ...`` items that followed on the command line, for commands that start nodes).
Adding a command is adding a module; nothing else has to change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


def discover() -> list[ModuleType]:
    """The command modules in this package, sorted by ``NAME``."""
    mods = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return sorted((m for m in mods if hasattr(m, "NAME")), key=lambda m: m.NAME)


def _parse(
    text: str, kind: type[float] | type[int], ok: Callable[[float], bool], why: str
) -> float:
    """``kind(text)`` if it is a finite number for which ``ok`` holds, else the argparse error
    ``"<text> must be <why>"`` (the one parse of every numeric option type below)."""
    import argparse
    import math

    try:
        value = kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"{text} must be {why}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type`` for a finite number > 0 (learning rates, speeds, distances).

    Raises:
        argparse.ArgumentTypeError: not a number, not finite, or not positive.
    """
    return float(_parse(text, float, lambda v: v > 0.0, "a finite number > 0"))


def float_in(low: float, high: float, *, open_low: bool = False) -> Callable[[str], float]:
    """argparse ``type`` for a finite number in ``[low, high]`` (``(low, high]`` with
    ``open_low``): time offsets, tolerances and durations whose huge values overflow the
    integer-ns stamps (``--label-offset-s inf``, ``--episode-s 1e308``).

    Raises:
        argparse.ArgumentTypeError: not a number, or outside the range.
    """
    why = f"in {'(' if open_low else '['}{low:g}, {high:g}]"

    def ok(v: float) -> bool:
        return (v > low if open_low else v >= low) and v <= high

    return lambda text: float(_parse(text, float, ok, why))


def positive_int(text: str) -> int:
    """argparse ``type`` for a count >= 1 (episodes, seeds).

    Raises:
        argparse.ArgumentTypeError: not an integer, or < 1.
    """
    return int(_parse(text, int, lambda v: v >= 1, "an integer >= 1"))


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse ``type`` for an integer in ``[low, high]`` (a JPEG quality).

    The returned function raises ``argparse.ArgumentTypeError`` for anything else.
    """
    return lambda text: int(_parse(text, int, lambda v: low <= v <= high, f"in [{low}, {high}]"))


def topic_name(text: str) -> str:
    """argparse ``type`` for a ROS 2 topic name (``/camera/image_raw``, ``camera/image_raw``).

    Raises:
        argparse.ArgumentTypeError: empty, or not a valid ROS 2 name (the message says why).
    """
    import argparse

    from ltc_controller.transport.dds import NameError_, resolve_topic_name

    try:
        resolve_topic_name(text, "node", "/")
    except NameError_ as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


#: The largest seed: seeds reach the nodes as ROS 2 integer parameters (int64).
MAX_SEED = 2**63 - 1


def seed(text: str) -> int:
    """argparse ``type`` for a seed (tracks, worlds, training): an integer in
    ``[0, 2**63 - 1]`` (NumPy refuses negative seeds; a ROS 2 integer parameter is int64).

    Raises:
        argparse.ArgumentTypeError: not an integer, or outside the range.
    """
    return int(_parse(text, int, lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"))


def at_least(minimum: float) -> Callable[[str], float]:
    """argparse ``type`` for a finite number >= ``minimum`` (a rate >= 0, a factor >= 1).

    The returned function raises ``argparse.ArgumentTypeError`` for anything else.
    """

    def parse(text: str) -> float:
        return float(_parse(text, float, lambda v: v >= minimum, f"a finite number >= {minimum:g}"))

    parse.__name__ = f"number >= {minimum:g}"  # argparse names the type in some errors
    return parse


def non_negative_int(text: str) -> int:
    """argparse ``type`` for a count where 0 means "none" (``--attention-every-n``).

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    return int(_parse(text, int, lambda v: v >= 0, "an integer >= 0"))


def output_file(text: str) -> Path:
    """argparse ``type`` for a file the command writes (a policy, a run log, a table): it must
    be creatable (:func:`ltc_controller.outputs.output_problem`), so an unwritable path is a
    usage error (exit 2) before any work, not a traceback after it.

    Raises:
        argparse.ArgumentTypeError: the file cannot be written (the message says why).
    """
    return _output(text, folder=False)


def output_folder(text: str) -> Path:
    """argparse ``type`` for a folder the command creates or writes into (reports, bags, work
    folders); as :func:`output_file`. Nothing is created by the check.

    Raises:
        argparse.ArgumentTypeError: the folder cannot be created or written into.
    """
    return _output(text, folder=True)


def _output(text: str, folder: bool) -> Path:
    import argparse

    from ltc_controller.outputs import output_problem

    problem = output_problem(text, folder=folder)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)
