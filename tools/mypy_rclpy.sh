#!/usr/bin/env bash
# Type-checks the rclpy backend against rclpy's Python API without a ROS install.
# PyPI `rclpy-intellisense` carries rclpy's Python sources; it lives in a venv of its own because
# installed next to the package, `import rclpy` fails (no rcl_interfaces), which would break the
# tests' "rclpy missing -> skip" detection. rcl_interfaces and the C extension stay untyped (Any).
# Usage: tools/mypy_rclpy.sh [VENV_DIR]   (default /tmp/mypy-rclpy-venv; created on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/mypy-rclpy-venv}"
if [ ! -x "$VENV/bin/mypy" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q rclpy-intellisense==1.2.0 mypy==2.4.1
fi
# The package has no py.typed marker, so mypy would treat rclpy as untyped (Any) and check nothing.
RCLPY_DIR="$("$VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("rclpy").submodule_search_locations[0])')"
touch "$RCLPY_DIR/py.typed"
# The backend imports only ltc_controller.params and .port/.param_values from this package;
# --follow-imports=silent checks those for the types they give without reporting on them.
"$VENV/bin/mypy" --ignore-missing-imports --follow-imports=silent --check-untyped-defs \
  --warn-unused-ignores --python-version 3.11 \
  ltc_controller/transport/rclpy_backend.py
