"""The data of one PPO iteration: the ``Rollout`` as collected and the ``Batch`` the update consumes.

Shapes: S control steps per iteration, T tasks, E envs per task, N = S * E samples per task,
B samples per task in a minibatch. ``Rollout`` is time-major NumPy (as the envs step);
``Batch`` is task-major torch (as the per-task networks compute).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class Rollout:
    """``S`` control steps on every env, as ``Trainer.collect`` returns them."""

    obs: np.ndarray  #: (S+1, T, E, obs_dim) float64 raw observations; [S] is the state reached after the last step
    actions: np.ndarray  #: (S, T, E, act_dim) float32 sampled actions, before any clipping to [-1, 1]
    rewards: np.ndarray  #: (S, T, E) float64 rewards (scaled when ``ppo.reward_norm``)
    terminated: np.ndarray  #: (S, T, E) bool: the episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray  #: (S, T, E) bool: the episode was cut (time limit, task switch): bootstrap
    #: (step, task, env, final observation) of every cut episode: the state reached, to bootstrap
    #: from; raw (obs_dim,) float64, or (policy_in,) float32 normalised when seen if ``obs_norm`` is set
    truncated_obs: list[tuple[int, int, int, np.ndarray]]
    #: (S+1, T, E, policy_in) float32 policy inputs as normalised when seen
    #: (``ppo.obs_norm_update == 'per_step'``), else None (normalised after the rollout)
    obs_norm: np.ndarray | None = None
    #: per entry of ``truncated_obs``, the task whose value bootstraps it (a task switch can hand the
    #: robot to another task, ``task_switch_bootstrap``); None = each entry's own task
    truncated_value_task: list[int] | None = None


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
