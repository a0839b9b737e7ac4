"""SIGINT / SIGTERM as a stop request for a training process (standard library only).

The trainer knows no signals: ``Trainer.run(should_stop)`` asks a predicate after every iteration.
A program that trains in its main thread (``mt-specialize train``, a grid worker) turns signals
into that predicate::

    with StopOnSignals() as stop:
        trainer.run(should_stop=stop)

The first signal makes ``stop()`` true (the trainer finishes its iteration, writes a checkpoint and
raises ``Interrupted``); a second one raises ``StopNow`` (a KeyboardInterrupt: stop now; the run
resumes from its last checkpoint, the command exits 128 + the signal's number without a traceback).
The ROS nodes have their own handlers (``ros/signals.py``) and pass a ``threading.Event``'s ``is_set``.
"""
from __future__ import annotations

import signal
import threading


class StopNow(KeyboardInterrupt):
    """A second stop signal: stop at once. ``signum``: the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignals:
    """Within ``with``: the first of ``signals`` makes the instance (a ``() -> bool``) return True, a
    second raises ``StopNow`` (a KeyboardInterrupt); the previous handlers come back at exit. Off the main thread
    Python cannot install handlers: there it never asks to stop."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.signals = tuple(signals)
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: stop now
            raise StopNow(signum)
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """``SIGINT`` / ``SIGTERM`` once one arrived, else ''."""
        return signal.Signals(self.signum).name if self.signum is not None else ""
