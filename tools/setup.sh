#!/usr/bin/env bash
# Installs ltc_controller on a fresh Debian 12 machine into ./.venv:
# Mesa for offscreen MuJoCo rendering, the pinned CPU build of PyTorch first (an open-ended torch
# requirement would pull a multi-GB CUDA build), then the package with every extra and the test
# tools (.[all,test]: simulator, training, explain, ONNX, numba). A robot needs only the base
# install: pip install torch==2.13.0 && pip install . (README "Install").
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p | grep -q libOSMesa.so; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libosmesa6 libegl-mesa0 libgl1 >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[all,test]'
echo "setup: done (.venv)"
