"""The ``Batch`` one PPO update consumes (``rollout_buffer.RolloutBuffer.to_batch`` builds it).

Shapes: T tasks, N samples per task (S steps x E envs), B samples per task in a minibatch.
``Batch`` is task-major torch (as the per-task networks compute).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """The task-major tensors of one update (or, sliced, of one minibatch: N -> B)."""

    obs: torch.Tensor  #: (T, N, policy_in) float32 normalised policy inputs
    actions: torch.Tensor  #: (T, N, act_dim) float32 the actions taken
    old_logp: torch.Tensor  #: (T, N) float32 their log-probability under the rollout's policy
    advantages: torch.Tensor  #: (T, N) float32 GAE advantages (standardised per task if so set)
    returns: torch.Tensor  #: (T, N) float32 value targets (advantages + values)

    @property
    def samples_per_task(self) -> int:
        """N."""
        return self.advantages.shape[1]

    def _map(self, fn) -> Batch:
        return Batch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def gather_rows(self, order: torch.Tensor) -> Batch:
        """Every field with task i's rows in the order ``order[i]`` (``order`` (T, N) int64):
        ``x[arange(T)[:, None], order]``, one gather per field."""
        return self._map(lambda x: gather_rows(x, order))

    def rows(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` of every task (views): a minibatch (T, B, ...)."""
        return self._map(lambda x: x[:, start:stop])

    def task(self, i: int) -> Batch:
        """Task ``i``'s rows, the task axis dropped: fields (N, ...) (views)."""
        return self._map(lambda x: x[i])


def gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x (T, N, ...)`` with task i's rows in the order ``order[i]`` (``x[arange(T)[:, None], order]``)."""
    index = order.reshape(*order.shape, *(1,) * (x.dim() - 2)).expand(*order.shape, *x.shape[2:])
    return torch.gather(x, 1, index)
