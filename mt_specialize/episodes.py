"""The episodes a run has finished: the return windows its metrics, summary and revert rule read.

``EpisodeLog`` keeps, per task, the returns and lengths of the last ``RETURN_WINDOW`` episodes, the
last ``RETURN_WINDOW`` returns pooled over tasks (the paper's Table I figure, baselines' EpRewMean),
and how many trajectories of each task ended by each cause in the current iteration.
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from .envs.tasks import END_CAUSES
from .envs.vec_env import StepResult

RETURN_WINDOW = 100  # episodes, as baselines' EpRewMean and the paper's Table I


def mean_or_nan(values) -> float:
    """The mean of ``values``, NaN when there are none (no episode finished yet)."""
    return float(np.mean(values)) if len(values) else float("nan")


class EpisodeLog:
    """Episode returns and lengths (raw, never reward-scaled) of T tasks, and this iteration's end causes."""

    def __init__(self, n_tasks: int):
        self.task_returns = [collections.deque(maxlen=RETURN_WINDOW) for _ in range(n_tasks)]
        self.task_lengths = [collections.deque(maxlen=RETURN_WINDOW) for _ in range(n_tasks)]
        self.pooled_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        #: (T, len(END_CAUSES)) trajectories of each task that ended by each cause this iteration
        self.end_counts = np.zeros((n_tasks, len(END_CAUSES)), dtype=np.int64)

    def new_iteration(self) -> None:
        """Start counting end causes afresh."""
        self.end_counts[:] = 0

    def record(self, result: StepResult) -> None:
        """The episodes one step of the envs finished, and the causes its trajectories ended by."""
        if result.end_cause is not None:
            ended = result.end_cause > 0  # (T, E)
            if ended.any():
                np.add.at(self.end_counts, (np.nonzero(ended)[0], result.end_cause[ended].astype(np.int64) - 1), 1)
        for i, finished in enumerate(result.finished):
            for ep_return, ep_length in finished:
                self.task_returns[i].append(ep_return)
                self.task_lengths[i].append(ep_length)
                self.pooled_returns.append(ep_return)

    @property
    def pooled_return(self) -> float:
        """Mean return of the last ``RETURN_WINDOW`` episodes of any task (NaN before the first)."""
        return mean_or_nan(self.pooled_returns)

    def task_means(self) -> list[float]:
        """Each task's mean return over its window."""
        return [mean_or_nan(r) for r in self.task_returns]

    def state(self) -> dict[str, list]:
        """The windows as lists: ``task_returns``, ``task_lengths`` (per task), ``pooled_returns``."""
        return {"task_returns": [list(d) for d in self.task_returns],
                "task_lengths": [list(d) for d in self.task_lengths], "pooled_returns": list(self.pooled_returns)}

    def load(self, task_returns: list[list[float]], task_lengths: list[list[int]], pooled_returns: list[float]) -> None:
        """Windows as ``state`` gave them (appended to the current ones: empty at a run's start)."""
        for window, values in zip(self.task_returns, task_returns):
            window.extend(values)
        for window, values in zip(self.task_lengths, task_lengths):
            window.extend(values)
        self.pooled_returns.extend(pooled_returns)

    def columns(self, task_names: Sequence[str], end_causes: bool = True) -> dict:
        """The metrics row's per-task columns: ``return/<task>``, ``length/<task>`` (window means) and,
        with ``end_causes``, ``ended/<task>/<cause>`` (this iteration's counts)."""
        row = {}
        for name, returns, lengths in zip(task_names, self.task_returns, self.task_lengths):
            row[f"return/{name}"] = mean_or_nan(returns)
            row[f"length/{name}"] = mean_or_nan(lengths)
        if end_causes:
            for name, counts in zip(task_names, self.end_counts):
                row.update({f"ended/{name}/{cause}": int(n) for cause, n in zip(END_CAUSES, counts)})
        return row
