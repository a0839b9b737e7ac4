"""One PPO update: ``epochs`` passes over a ``Batch`` in minibatches, one optimiser step each.

The loss, stated once (T tasks, B samples per task in a minibatch, A action dimensions)::

    loss_t = policy_loss_t + value_coef * value_loss_t - entropy_coef * mean_B sum_A entropy_t
    policy_loss_t = -mean_B min(r A, clip(r, 1-ε, 1+ε) A),   r = exp(log π(a|s) - old_logp)
    value_loss_t  =  mean_B (V(s) - R)^2

A minibatch of every task takes one step on ``mean_T loss_t``; with the authors' optimiser
(``ppo.optimizer == 'per_task'``) task t takes its own step on ``loss_t``, the tasks in turn.

``task_losses`` computes ``loss_t`` with autograd: the reference. ``ppo_loss_backward`` (mean over
tasks) and ``task_loss_backward`` (one task) compute the same gradients (up to float32 rounding) by
hand with no autograd graph (``policy.train_*``, ``value.train_*``): the path training takes;
test_policy.py and test_paper_optimizer.py compare them with the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .batch import Batch
from .ppo import (PPOConfig, clipped_surrogate, clipped_surrogate_with_grad, standardize_minibatch, value_loss,
                  value_loss_with_grad)


@dataclass
class UpdateStats:
    """Figures of one PPO update, means over its minibatches (and tasks)."""

    policy_loss: float
    value_loss: float
    approx_kl: float  #: mean of (r - 1) - log r, the low-variance KL(old || new) estimate
    clip_fraction: float  #: fraction of samples with |r - 1| > clip


@dataclass
class MinibatchLoss:
    """The loss terms of one minibatch as the fast path computed them."""

    policy_loss: torch.Tensor  #: (T,) per-task policy loss
    value_loss: torch.Tensor  #: (T,) per-task value loss
    log_prob: torch.Tensor  #: (T, B) log π(a|s) under the current weights


def task_losses(policy, value, minibatch: Batch, clip: float, value_coef: float,
                entropy_coef: float) -> torch.Tensor:
    """``loss_t`` of every task (module docstring), (T,), with an autograd graph: the reference."""
    policy_loss = clipped_surrogate(policy.log_prob(minibatch.obs, minibatch.actions), minibatch.old_logp,
                                    minibatch.advantages, clip)
    v_loss = value_loss(value(minibatch.obs), minibatch.returns)
    entropy = policy.distribution(minibatch.obs).entropy().sum(-1).mean(-1)  # (T,)
    return policy_loss + value_coef * v_loss - entropy_coef * entropy


def ppo_loss(policy, value, minibatch: Batch, clip: float, value_coef: float, entropy_coef: float) -> torch.Tensor:
    """``mean_T loss_t``, a scalar with an autograd graph: the reference for ``ppo_loss_backward``."""
    return task_losses(policy, value, minibatch, clip, value_coef, entropy_coef).mean()


def ppo_loss_backward(policy, value, minibatch: Batch, clip: float, value_coef: float,
                      entropy_coef: float) -> MinibatchLoss:
    """The gradient of ``ppo_loss`` without autograd: SETS ``.grad`` of every parameter (as
    ``zero_grad`` + ``backward`` would) and accumulates per-task gradients when the policy tracks them."""
    T = minibatch.advantages.shape[0]
    log_prob, policy_cache = policy.train_log_prob(minibatch.obs, minibatch.actions)
    policy_loss, grad_log_prob = clipped_surrogate_with_grad(log_prob, minibatch.old_logp, minibatch.advantages,
                                                             clip, 1.0 / T)
    values, value_cache = value.train_forward(minibatch.obs)
    v_loss, grad_values = value_loss_with_grad(values, minibatch.returns, value_coef / T)
    # d(-entropy_coef * mean_(T,B) sum_A entropy)/d log_std = -entropy_coef / T for every task's entries
    policy.train_backward(policy_cache, grad_log_prob, -entropy_coef / T)
    value.train_backward(value_cache, grad_values)
    return MinibatchLoss(policy_loss, v_loss, log_prob)


def task_loss_backward(policy, value, own: Batch, task: int, clip: float, value_coef: float,
                       entropy_coef: float) -> tuple[MinibatchLoss, list]:
    """The gradient of ``loss_t`` for t = ``task`` on its samples ``own`` (fields (B, ...)). Returns its terms (shapes (1,), (1,), (1, B)) and the gradient
    of every entry it uses (``EntryGrad``; ``.grad`` is not touched)."""
    log_prob, policy_cache = policy.train_log_prob_task(own.obs, own.actions, task)
    policy_loss, grad_log_prob = clipped_surrogate_with_grad(log_prob[None], own.old_logp[None],
                                                             own.advantages[None], clip)
    values, value_cache = value.train_forward_task(own.obs, task)
    v_loss, grad_values = value_loss_with_grad(values[None], own.returns[None], value_coef)
    grads = (policy.train_backward_task(policy_cache, grad_log_prob[0], -entropy_coef)
             + value.train_backward_task(value_cache, grad_values[0]))
    return MinibatchLoss(policy_loss, v_loss, log_prob[None]), grads


def ppo_update(policy, value, optimizer, batch: Batch, ppo: PPOConfig, *, clip: float,
               rng: np.random.Generator) -> UpdateStats:
    """``ppo.epochs`` passes over ``batch`` (fields (T, N, ...)), each in a fresh per-task order
    drawn from ``rng``, split into ``N // ppo.minibatch_per_task`` minibatches of every task; one
    step of ``optimizer`` per minibatch (``FastAdam``), or per task and minibatch
    (``TaskAlternatingAdam``, ``ppo.optimizer == 'per_task'``). The learning rate is the
    optimiser's; ``clip`` is ε of this update."""
    T, N = batch.advantages.shape
    n_minibatches = max(1, N // ppo.minibatch_per_task)
    sums = np.zeros(4)
    count = 0
    for _ in range(ppo.epochs):
        order = torch.from_numpy(np.argsort(rng.random((T, N)), axis=1))
        shuffled = batch.gather_rows(order)  # one gather per epoch, not per minibatch
        for chunk in np.array_split(np.arange(N), n_minibatches):
            minibatch = shuffled.rows(chunk[0], chunk[-1] + 1)
            if ppo.optimizer == "per_task":
                sums += _step_tasks_in_turn(policy, value, optimizer, minibatch, ppo, clip)
                count += 1
                continue
            if ppo.advantage_norm == "per_minibatch":
                minibatch = replace(minibatch, advantages=standardize_minibatch(minibatch.advantages))
            loss = ppo_loss_backward(policy, value, minibatch, clip, ppo.value_coef, ppo.entropy_coef)
            if ppo.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], ppo.max_grad_norm)
            optimizer.step()
            log_ratio = (loss.log_prob - minibatch.old_logp).numpy()  # figures in NumPy: a fraction of torch's per-op cost
            ratio_m1 = np.exp(log_ratio) - 1
            sums += [loss.policy_loss.numpy().mean(), loss.value_loss.numpy().mean(), (ratio_m1 - log_ratio).mean(),
                     (np.abs(ratio_m1) > clip).mean()]
            count += 1
    return UpdateStats(*(sums / max(count, 1)))


def _step_tasks_in_turn(policy, value, optimizer, minibatch: Batch, ppo: PPOConfig, clip: float) -> np.ndarray:
    """The authors' optimiser on one minibatch (fields (T, B, ...)): task 0, 1, ..., T-1 each take
    one Adam step on its own samples, a task seeing the shared entries as the tasks before it left
    them. Returns the figures summed over tasks / T (policy loss, value loss, approx KL, clip fraction)."""
    T = minibatch.advantages.shape[0]
    sums = np.zeros(4)
    optimizer.begin_round()
    for i in range(T):
        own = minibatch.task(i)
        if ppo.advantage_norm == "per_minibatch":
            own = replace(own, advantages=standardize_minibatch(own.advantages[None])[0])
        loss, grads = task_loss_backward(policy, value, own, i, clip, ppo.value_coef, ppo.entropy_coef)
        if ppo.max_grad_norm:
            norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm([g.grad for g in grads]))))
            if norm > ppo.max_grad_norm:
                torch._foreach_mul_([g.grad for g in grads], ppo.max_grad_norm / (norm + 1e-6))
        optimizer.step_task(i, grads)
        log_ratio = (loss.log_prob[0] - own.old_logp).numpy()
        ratio_m1 = np.exp(log_ratio) - 1
        sums += [float(loss.policy_loss), float(loss.value_loss), (ratio_m1 - log_ratio).mean(),
                 (np.abs(ratio_m1) > clip).mean()]
    return sums / T
