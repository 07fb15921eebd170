"""ltc_controller: liquid time-constant (LTC) neural policies as real-time ROS 2 controllers."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# In a sourced colcon workspace the generated message modules (ltc_controller.msg, .srv) live in
# the install tree; a source checkout first on sys.path (pytest from the repository root) would
# hide them. Modules this directory lacks are looked up in the other ltc_controller directories
# on sys.path; this directory stays first. By hand, not with pkgutil.extend_path: pkgutil
# imports typing and re (70 ms measured with Jazzy sourced), and a node process can install its
# SIGINT/SIGTERM handlers (ltc_controller.stop) only after this file has run.
_seen = {_os.path.realpath(p) for p in __path__}
for _entry in _sys.path:
    _dir = _os.path.join(_entry, __name__) if isinstance(_entry, str) else ""
    if _dir and _os.path.isdir(_dir) and _os.path.realpath(_dir) not in _seen:
        _seen.add(_os.path.realpath(_dir))
        __path__.append(_dir)
del _os, _sys, _seen
