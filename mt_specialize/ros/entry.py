"""Console-script entry points of the nodes (``simulator``, ``policy_server``, ``learner``,
``foxglove_view``).

The stop-signal handlers (``signals.STOP``) are installed before the node module and its heavy
dependencies (rclpy, numpy, MuJoCo, torch) are imported, so a Ctrl-C during start-up also ends the
process cleanly with exit code 0.
"""
from __future__ import annotations

import importlib

from mt_specialize.ros.signals import STOP


def _main(module: str) -> int:
    STOP.install()
    return importlib.import_module(f"mt_specialize.ros.{module}").main()


def simulator() -> int:
    return _main("simulator")


def policy_server() -> int:
    return _main("policy_server")


def learner() -> int:
    return _main("learner")


def foxglove_view() -> int:
    return _main("foxglove_view")
