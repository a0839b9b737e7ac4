#!/usr/bin/env bash
# Set up, then run the whole test suite (core + ROS 2 integration tests on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export HOME=${HOME:-$PWD}
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec .venv/bin/python -m pytest -q "$@"
