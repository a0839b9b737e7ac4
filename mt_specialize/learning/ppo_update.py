"""The PPO update of K runs at once (a single run is a batch of one): ``epochs`` passes over each run's
batch in minibatches, one optimiser step each.

The loss, stated once (T tasks, B samples per task in a minibatch, A action dimensions)::

    loss_t = policy_loss_t + value_coef * value_loss_t - entropy_coef * mean_B sum_A entropy_t
    policy_loss_t = -mean_B min(r A, clip(r, 1-ε, 1+ε) A),   r = exp(log π(a|s) - old_logp)
    value_loss_t  =  mean_B (V(s) - R)^2

A minibatch of every task takes one step on ``mean_T loss_t``; with the authors' optimiser
(``ppo.optimizer == 'per_task'``) task t takes its own step on ``loss_t``, the tasks in turn.

``task_losses`` computes ``loss_t`` with autograd on one run's ``SplitGaussianPolicy`` / ``SplitValue``:
the reference. :func:`ppo_update` computes the same gradients (up to float32 rounding) by hand with
no autograd graph, for K runs' batched networks (:class:`mt_specialize.learning.multi.BatchedRuns`):
the path training takes; ``test/test_multi.py`` and ``test/test_paper_optimizer.py`` compare the two.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch

from .batch import Batch, gather_rows
from .multi import BatchedRuns, MultiEntry
from .ppo import PPOConfig, clipped_surrogate, clipped_surrogate_with_grad, standardize_minibatch, value_loss, \
    value_loss_with_grad

__all__ = ["UpdateStats", "RunsBatch", "task_losses", "ppo_update"]


@dataclass
class UpdateStats:
    """Figures of one PPO update, means over its minibatches (and tasks)."""

    policy_loss: float
    value_loss: float
    approx_kl: float  #: mean of (r - 1) - log r, the low-variance KL(old || new) estimate
    clip_fraction: float  #: fraction of samples with |r - 1| > clip


def task_losses(policy, value, minibatch: Batch, clip: float, value_coef: float,
                entropy_coef: float) -> torch.Tensor:
    """``loss_t`` of every task (module docstring), (T,), with an autograd graph: the reference."""
    policy_loss = clipped_surrogate(policy.log_prob(minibatch.obs, minibatch.actions), minibatch.old_logp,
                                    minibatch.advantages, clip)
    v_loss = value_loss(value(minibatch.obs), minibatch.returns)
    entropy = policy.distribution(minibatch.obs).entropy().sum(-1).mean(-1)  # (T,)
    return policy_loss + value_coef * v_loss - entropy_coef * entropy


@dataclass
class RunsBatch:
    """K runs' ``Batch``es stacked: every field with a leading run axis (K, T, N, ...)."""

    obs: torch.Tensor  #: (K, T, N, policy_in) float32
    actions: torch.Tensor  #: (K, T, N, A) float32
    old_logp: torch.Tensor  #: (K, T, N) float32
    advantages: torch.Tensor  #: (K, T, N) float32
    returns: torch.Tensor  #: (K, T, N) float32

    @classmethod
    def stack(cls, batches: Sequence[Batch | None]) -> "RunsBatch":
        """Stack the runs' batches (all of one shape); None (a run that does not update this
        iteration) becomes zeros."""
        present = [b for b in batches if b is not None]
        if not present:
            raise ValueError("RunsBatch.stack needs at least one batch")
        out = {}
        for f in fields(Batch):
            ref = getattr(present[0], f.name)
            for b in present:
                if getattr(b, f.name).shape != ref.shape:
                    raise ValueError(f"batches of runs differ in {f.name}: {tuple(getattr(b, f.name).shape)} vs "
                                     f"{tuple(ref.shape)}; runs batched together need one shape")
            out[f.name] = torch.stack([getattr(b, f.name) if b is not None else torch.zeros_like(ref) for b in batches])
        return cls(**out)

    def _map(self, fn) -> "RunsBatch":
        return RunsBatch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def gather_rows(self, order: torch.Tensor) -> "RunsBatch":
        """Run k's task i rows in the order ``order[k, i]`` (``order (K, T, N)`` int64)."""
        K, T, N = order.shape
        return self._map(lambda x: gather_rows(x.reshape(K * T, *x.shape[2:]), order.reshape(K * T, N)).view(x.shape))

    def rows(self, start: int, stop: int) -> "RunsBatch":
        """Rows ``start:stop`` of every run's tasks (views): a minibatch (K, T, B, ...)."""
        return self._map(lambda x: x[:, :, start:stop])

    def task(self, i: int) -> "RunsBatch":
        """Task ``i``'s rows of every run, the task axis dropped: fields (K, N, ...) (views)."""
        return self._map(lambda x: x[:, i])


def ppo_update(runs: BatchedRuns, batch: RunsBatch, ppo: PPOConfig, *, clips: Sequence[float],
               rngs: Sequence[np.random.Generator | None], track: Sequence[bool]) -> list[UpdateStats | None]:
    """One PPO update of every run of ``runs`` whose generator ``rngs[k]`` is not None: ``ppo.epochs``
    passes over its rows of ``batch`` (``(K, T, N, ...)``), each in a fresh per-task order drawn from
    ``rngs[k]``, split into ``N // ppo.minibatch_per_task`` minibatches of every task; one Adam step
    per minibatch (``ppo.optimizer == 'mixed'``) or per task and minibatch (``'per_task'``). Run k's
    learning rate is its ``RunAdam``'s, its clip range ε ``clips[k]``; with ``track[k]`` its per-task
    policy gradients are summed over the minibatches (``runs.policy.per_task_grads(k)`` after).
    A run whose generator is None sits out (networks, moments and generator untouched, its rows of
    ``batch`` ignored) and gets None instead of its ``UpdateStats``. ``ppo``: every run's (one shape)."""
    policy, value, optimizer = runs.policy, runs.value, runs.optimizer
    K, T, N = batch.advantages.shape
    if len(clips) != K or len(rngs) != K or len(track) != K or runs.n_runs != K:
        raise ValueError(f"ppo_update: batch has {K} runs, clips {len(clips)}, rngs {len(rngs)}, track {len(track)}, "
                         f"the batched networks {runs.n_runs}")
    active = [r is not None for r in rngs]
    runs.refresh()
    policy.zero_per_task_grads()
    policy.track = [bool(t) and a for t, a in zip(track, active)]
    value.track = [False] * K
    per_task = ppo.optimizer == "per_task"
    optimizer.prepare(active, per_task)
    n_minibatches = max(1, N // ppo.minibatch_per_task)
    sums = np.zeros((K, 4))
    count = 0
    unused = np.broadcast_to(np.arange(N), (T, N))  # order of a run that does not update
    step = _step_tasks_in_turn if per_task else _mixed_step
    for _ in range(ppo.epochs):
        order = np.stack([np.argsort(r.random((T, N)), axis=1) if r is not None else unused for r in rngs])
        shuffled = batch.gather_rows(torch.from_numpy(order))  # one gather per epoch, not per minibatch
        for chunk in np.array_split(np.arange(N), n_minibatches):
            minibatch = shuffled.rows(chunk[0], chunk[-1] + 1)
            sums += step(runs, minibatch, ppo, clips, active)
            count += 1
    means = sums / max(count, 1)
    return [UpdateStats(*means[k]) if active[k] else None for k in range(K)]


def _mixed_step(runs: BatchedRuns, minibatch: RunsBatch, ppo: PPOConfig, clips, active) -> np.ndarray:
    """One mixed-task minibatch of every run (the gradient of ``mean_T loss_t``, one Adam step);
    the figures (K, 4): policy loss, value loss, approx KL, clip fraction."""
    K, T = minibatch.advantages.shape[:2]
    policy, value = runs.policy, runs.value
    if ppo.advantage_norm == "per_minibatch":
        minibatch = replace(minibatch, advantages=standardize_minibatch(minibatch.advantages))
    log_prob, policy_cache = policy.train_log_prob(minibatch.obs, minibatch.actions)
    policy_loss, grad_log_prob = clipped_surrogate_with_grad(log_prob, minibatch.old_logp, minibatch.advantages,
                                                             clips, 1.0 / T)
    values, value_cache = value.train_forward(minibatch.obs)
    v_loss, grad_values = value_loss_with_grad(values, minibatch.returns, ppo.value_coef / T)
    # d(-entropy_coef * mean_(T,B) sum_A entropy)/d log_std = -entropy_coef / T for every task's entries
    policy.train_backward(policy_cache, grad_log_prob, -ppo.entropy_coef / T)
    value.train_backward(value_cache, grad_values)
    runs.optimizer.step(ppo.max_grad_norm)
    log_ratio = (log_prob - minibatch.old_logp).numpy().reshape(K, -1)  # figures in NumPy: less per-op cost
    ratio_m1 = np.exp(log_ratio) - 1
    clip32 = np.asarray(clips, dtype=np.float32)[:, None]  # a Python float compares as float32 (NEP 50)
    out = np.empty((K, 4))
    out[:, 0] = policy_loss.numpy().mean(axis=1)
    out[:, 1] = v_loss.numpy().mean(axis=1)
    out[:, 2] = (ratio_m1 - log_ratio).mean(axis=1)
    out[:, 3] = (np.abs(ratio_m1) > clip32).mean(axis=1)
    return out


def _step_tasks_in_turn(runs: BatchedRuns, minibatch: RunsBatch, ppo: PPOConfig, clips, active) -> np.ndarray:
    """The authors' optimiser on one minibatch of every run: task 0, ..., T-1 in turn, each one Adam
    step of every active run on that task's samples (the gradient of ``loss_t``), a task seeing the
    shared entries as the tasks before it left them. The figures (K, 4), summed over tasks / T."""
    K, T = minibatch.advantages.shape[:2]
    policy, value, optimizer = runs.policy, runs.value, runs.optimizer
    sums = np.zeros((K, 4))
    clip32 = np.asarray(clips, dtype=np.float32)[:, None]
    optimizer.begin_round()
    for i in range(T):
        own = minibatch.task(i)
        if ppo.advantage_norm == "per_minibatch":
            own = replace(own, advantages=standardize_minibatch(own.advantages))
        log_prob, policy_cache = policy.train_log_prob_task(own.obs, own.actions, i)
        policy_loss, grad_log_prob = clipped_surrogate_with_grad(log_prob, own.old_logp, own.advantages, clips)
        values, value_cache = value.train_forward_task(own.obs, i)
        v_loss, grad_values = value_loss_with_grad(values, own.returns, ppo.value_coef)
        grads = (policy.train_backward_task(policy_cache, grad_log_prob, -ppo.entropy_coef)
                 + value.train_backward_task(value_cache, grad_values))
        if ppo.max_grad_norm:
            _clip_task_grads(grads, ppo.max_grad_norm, active)
        optimizer.step_task(i, grads)
        log_ratio = (log_prob - own.old_logp).numpy()
        ratio_m1 = np.exp(log_ratio) - 1
        sums[:, 0] += policy_loss.numpy().astype(np.float64)
        sums[:, 1] += v_loss.numpy().astype(np.float64)
        sums[:, 2] += (ratio_m1 - log_ratio).mean(axis=1)
        sums[:, 3] += (np.abs(ratio_m1) > clip32).mean(axis=1)
    return sums / T


def _clip_task_grads(grads: list[tuple[MultiEntry, torch.Tensor]], max_norm: float, active) -> None:
    """The per-task optimiser's clipping, per run: its task gradients scaled by
    ``max_norm / (norm + 1e-6)`` when their global norm exceeds ``max_norm``."""
    K = len(active)
    norms = torch._foreach_norm([g[k] for k in range(K) for _, g in grads], 2.0)
    n = len(grads)
    for k in range(K):
        if not active[k]:
            continue
        norm = float(torch.linalg.vector_norm(torch.stack(norms[k * n:(k + 1) * n])))
        if norm > max_norm:
            torch._foreach_mul_([g[k] for _, g in grads], max_norm / (norm + 1e-6))
