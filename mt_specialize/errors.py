"""Errors a training run can end with, importable without the heavy modules (the CLI's error path),
and ``short_repr`` for messages that quote user input."""
from __future__ import annotations

import reprlib

MESSAGE_LIMIT = 2000  # characters of an error message the CLI prints at most


class StoppedForGood(RuntimeError):
    """The run stopped for good: its failure.json says why, the newest checkpoint is kept, a resume
    is refused (a new run can start from the checkpoint with other settings)."""


class RevertLoop(StoppedForGood):
    """The revert rule rejected ``revert_max_streak`` iterations in a row: the run stops."""


class Diverged(StoppedForGood):
    """A loss, the network weights, the rollout's observations or rewards became non-finite (NaN or
    infinite): the run stops before anything non-finite is written to a checkpoint."""


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxlevel = 80, 80, 8, 8, 8, 3


def short_repr(value) -> str:
    """``repr(value)`` cut to a sane length without building the whole text (a nested YAML value can
    expand to millions of items): strings to 80 characters, containers to 8 items, 3 levels deep."""
    return _REPR.repr(value)


def cut_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` if at most ``limit`` characters, else its start and a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters not shown)"
