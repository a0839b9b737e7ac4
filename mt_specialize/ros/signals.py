"""SIGINT / SIGTERM as a stop request for the node processes (standard library only).

A Ctrl-C in a terminal reaches a node twice (the terminal signals the process group and
``ros2 launch`` forwards SIGINT), and ``ros2 launch`` escalates to SIGTERM. Python's default SIGINT
handler raises KeyboardInterrupt wherever the main thread happens to be, clean-up included, and
rclpy's handlers chain to it. The node processes instead install :data:`STOP`'s handlers before
their heavy imports: every SIGINT / SIGTERM, however many and however spaced, only records the
request; ``common.run_node`` stops spinning, lets the node finish (the learner writes its checkpoint)
and exits 0.

This module imports nothing heavy, so the console-script entry points (``entry.py``) and the
``python -m mt_specialize.ros.<node>`` path install the handlers within milliseconds of start.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Records SIGINT / SIGTERM instead of raising; ``signum`` is the first one received (or None)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()
        self.installed = False

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only; idempotent)."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handler)
        self.installed = True

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def ignore_from_now(self) -> None:
        """Ignore SIGINT / SIGTERM for the rest of the process: its clean-up is done. (At exit Python
        resets signals that have a Python handler to the default action, so a second Ctrl-C during
        interpreter finalisation would otherwise kill the process with -2; ignored ones stay ignored.)"""
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


#: The process-wide stop request of a node process.
STOP = StopRequest()
