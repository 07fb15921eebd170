"""The project's message definitions and its one rosbags typestore.

:func:`typestore` is ROS 2 Jazzy (``rosbags``' store) plus the definitions that store lacks:

- this package's ``msg/*.msg`` (``ltc_controller/msg/PolicyStatus``, ...), found by
  :func:`msg_dir` (``rosidl`` builds them from the repository's ``msg/`` on the ROS 2 route);
- ``ackermann_msgs`` messages and the ``rcl_interfaces`` parameter services (``.srv``), shipped
  here as data files in ``<pkg>/msg`` and ``<pkg>/srv``.

Everything that reads or writes ROS 2 messages uses this store: the DDS backend builds its wire
classes from it (:mod:`ltc_controller.transport.types`), and the offline rooms read and write
rosbag2 files with it (:mod:`ltc_controller.training.bag`, :mod:`ltc_controller.explain`). It
imports ``rosbags`` only: no DDS, no transport.
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = ["PACKAGE", "msg_dir", "share_dir", "typestore"]

#: This package's name, the ROS package of the messages in ``msg/``.
PACKAGE = "ltc_controller"

#: The shipped definitions: ``<this folder>/<pkg>/{msg,srv}/<Name>.{msg,srv}``.
_SHIPPED = Path(__file__).resolve().parent


def share_dir(name: str) -> Path | None:
    """The installed data folder ``name`` of this package (``msg``, ``config``, ``launch``), or
    ``None`` when there is none.

    ``<prefix>/share/ltc_controller/<name>`` for ``sys.prefix`` (pip data files) and each prefix
    of ``AMENT_PREFIX_PATH`` (colcon install), else the repository's ``<name>/`` next to the
    package directory (editable install / source tree).
    """
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    for prefix in filter(None, prefixes):
        installed = Path(prefix) / "share" / PACKAGE / name
        if installed.is_dir():
            return installed
    source = Path(__file__).resolve().parents[2] / name
    return source if source.is_dir() else None


def msg_dir() -> Path | None:
    """The directory holding this package's ``.msg`` files (:func:`share_dir`), or ``None``."""
    return share_dir("msg")


def _msg_files() -> list[tuple[str, Path]]:
    """(ROS type name, path) of every extra ``.msg`` and ``.srv`` to register.

    A service ``pkg/srv/Name`` is listed once under its service name; :func:`typestore` registers
    its two halves as ``pkg/srv/Name_Request`` and ``pkg/srv/Name_Response``.
    """
    files: list[tuple[str, Path]] = []
    own = msg_dir()
    if own is not None:
        files += [(f"{PACKAGE}/msg/{p.stem}", p) for p in sorted(own.glob("*.msg"))]
    packages = (p for p in _SHIPPED.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    for pkg_dir in sorted(packages):
        for kind in ("msg", "srv"):
            for p in sorted((pkg_dir / kind).glob(f"*.{kind}")):
                files.append((f"{pkg_dir.name}/{kind}/{p.stem}", p))
    return files


def _parse_definition(text: str, name: str) -> dict[str, Any]:
    """rosbags field definitions of one ``.msg`` (or one half of a ``.srv``) named ``name``.

    rosbags files a name ``pkg/srv/X`` under ``pkg/srv/msg/X``; the single definition is re-keyed.
    """
    parsed = get_types_from_msg(text, name)
    if len(parsed) != 1:
        raise ValueError(f"expected one definition for {name}, got {sorted(parsed)}")
    return {name: next(iter(parsed.values()))}


@cache
def typestore() -> Typestore:
    """The shared rosbags typestore: ROS 2 Jazzy plus ``ltc_controller``, ackermann_msgs and the
    rcl_interfaces parameter services (``…/srv/Name_Request``, ``…/srv/Name_Response``).

    Built once per process and shared by all its users. Raises ``ValueError`` naming the file
    when a shipped ``.msg``/``.srv`` file does not parse.
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    extra: dict[str, Any] = {}
    for name, path in _msg_files():
        text = path.read_text(encoding="utf-8")
        try:
            if "/srv/" in name:
                halves = re.split(r"^---[ \t]*$", text, flags=re.MULTILINE)
                if len(halves) != 2:
                    raise ValueError("a service definition has exactly one '---' line")
                extra.update(_parse_definition(halves[0], f"{name}_Request"))
                extra.update(_parse_definition(halves[1], f"{name}_Response"))
            else:
                extra.update(get_types_from_msg(text, name))
        except Exception as exc:  # rosbags raises its own parse errors; name the file
            raise ValueError(f"cannot parse interface definition {path}: {exc}") from exc
    store.register(extra)
    return store
