#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv/ and install mt_specialize with its test, ROS 2
# (PyPI wheels), DART (dartpy, the second physics engine) and ONNX (export and onnxruntime) extras. torch is
# pinned to 2.13.0 (CPU build) in setup.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,ros,dart,onnx]"
