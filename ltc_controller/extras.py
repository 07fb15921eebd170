"""Optional dependencies: which extra installs which modules, and the error that names the extra.

The base install (``pip install ltc_controller``) runs the two nodes on a robot: torch, numpy,
safetensors, cyclonedds, rosbags, PyYAML, Pillow. Everything else comes with an extra
(``pip install 'ltc_controller[sim]'``), pinned in ``setup.cfg`` ``[options.extras_require]``;
:data:`EXTRAS` names the top-level modules each one installs (``test/test_package.py`` holds the
two equal). A feature used without its extra raises :class:`MissingExtra`, whose message names
the extra and the pip command, e.g.::

    ltc-controller demo needs the [sim] extra: pip install 'ltc_controller[sim]'

Two ways to ask:

- :func:`require` before the work starts (the ``ltc-controller`` commands): checks that the
  modules can be found, without importing them.
- :func:`needs_extra` around a deferred import in library code, so the message names the extra
  the caller asked for (``matplotlib`` belongs to both ``[sim]`` and ``[explain]``; the call site
  knows which)::

      with needs_extra("sim", "the MuJoCo simulator"):
          import mujoco
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["EXTRAS", "MissingExtra", "install_hint", "installed", "needs_extra", "require"]

#: extra -> the top-level modules it installs (their distributions are pinned in setup.cfg).
EXTRAS: dict[str, tuple[str, ...]] = {
    # the simulators and the demo's plot; the drone's airframe files come from drone_models,
    # installed on Python >= 3.11 only (its scipy needs it; setup.cfg's marker)
    "sim": ("mujoco", "matplotlib") + (("drone_models",) if sys.version_info >= (3, 11) else ()),
    "train": ("tqdm",),  # training progress bars
    "explain": ("matplotlib", "imageio_ffmpeg"),  # saliency plots, MP4 in and out
    "onnx": ("onnx", "onnxruntime"),  # ONNX export and the "onnx" runtime backend
    "numba": ("numba",),  # the compiled "numba" runtime backend
    # compare: Ray runs its jobs, Optuna its learning-rate search, rliable its statistics
    # (arch and pandas: rliable's bootstrap, pinned to versions that import together)
    "compare": ("ray", "optuna", "rliable", "arch", "pandas"),
}


class MissingExtra(ImportError):
    """A feature was used without the extra that installs its dependencies; the message says
    which extra and how to install it."""


def install_hint(extras: Sequence[str]) -> str:
    """``pip install 'ltc_controller[a,b]'``."""
    return f"pip install 'ltc_controller[{','.join(extras)}]'"


def _message(what: str, extras: Sequence[str]) -> str:
    names = " and ".join(f"[{x}]" for x in extras)
    noun = "extra" if len(extras) == 1 else "extras"
    return f"{what} needs the {names} {noun}: {install_hint(extras)}"


def installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be found (nothing is imported).

    Raises:
        KeyError: ``extra`` is not in :data:`EXTRAS`.
    """
    for module in EXTRAS[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def require(what: str, *extras: str) -> None:
    """Raise :class:`MissingExtra` naming those of ``extras`` that are not installed.

    ``what`` is the feature, as the user called it (``"ltc-controller demo"``).
    """
    missing = [x for x in extras if not installed(x)]
    if missing:
        raise MissingExtra(_message(what, missing))


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Turn a missing module of ``extra`` imported inside the block into :class:`MissingExtra`
    naming ``extra``; any other import error passes unchanged."""
    modules = EXTRAS[extra]
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in modules:
            raise
        raise MissingExtra(_message(what, [extra]), name=e.name) from e
