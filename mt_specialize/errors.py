"""Errors a training run can end with, importable without the heavy modules (the CLI's error path)."""
from __future__ import annotations


class RevertLoop(RuntimeError):
    """The revert rule rejected ``revert_max_streak`` iterations in a row: the run stops."""
