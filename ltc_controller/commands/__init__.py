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


def positive_float(text: str) -> float:
    """argparse ``type`` for a finite number > 0 (learning rates, speeds, distances).

    Raises:
        argparse.ArgumentTypeError: not a number, not finite, or not positive.
    """
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0.0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def float_in(low: float, high: float, *, open_low: bool = False) -> Callable[[str], float]:
    """argparse ``type`` for a finite number in ``[low, high]`` (``(low, high]`` with
    ``open_low``): time offsets, tolerances and durations whose huge values overflow the
    integer-ns stamps (``--label-offset-s inf``, ``--episode-s 1e308``).

    Raises:
        argparse.ArgumentTypeError: not a number, or outside the range.
    """
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value > low if open_low else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bracket = "(" if open_low else "["
            raise argparse.ArgumentTypeError(f"{text} must be in {bracket}{low:g}, {high:g}]")
        return value

    return parse


def positive_int(text: str) -> int:
    """argparse ``type`` for a count >= 1 (episodes, seeds).

    Raises:
        argparse.ArgumentTypeError: not an integer, or < 1.
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be an integer >= 1")
    return value


def at_least(minimum: float) -> Callable[[str], float]:
    """argparse ``type`` for a finite number >= ``minimum`` (a rate >= 0, a factor >= 1).

    The returned function raises ``argparse.ArgumentTypeError`` for anything else.
    """

    def parse(text: str) -> float:
        import argparse
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number >= {minimum:g}")
        return value

    parse.__name__ = f"number >= {minimum:g}"  # argparse names the type in some errors
    return parse


def non_negative_int(text: str) -> int:
    """argparse ``type`` for a count where 0 means "none" (``--attention-every-n``).

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be an integer >= 0")
    return value


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
