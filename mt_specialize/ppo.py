"""PPO math (pure torch, no state): GAE, clipped surrogate, value loss, per-task standardisation.

Shapes: ``S`` = rollout steps, ``N`` = parallel envs (any flattening of tasks × envs), ``T`` =
tasks, ``B`` = samples per task in a minibatch. Rewards and values are in return units.
Hyper-parameters follow OpenAI baselines ``ppo1`` (what the paper's authors used).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

__all__ = [
    "PPOConfig",
    "compute_gae",
    "clipped_surrogate",
    "clipped_surrogate_with_grad",
    "value_loss_with_grad",
    "value_loss",
    "standardize_per_task",
]


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                terminated: torch.Tensor, episode_end: torch.Tensor,
                gamma: float = 0.99, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout of ``S`` steps and ``N`` envs.

    Args:
        rewards: (S, N) reward r_t received after acting at step t.
        values: (S, N) V(s_t).
        next_values: (S, N) V(s_{t+1}) of the observation that followed step t. For a step that
            ended a *truncated* episode this is V of the final (pre-reset) observation; for the
            rollout's last step it is V of the next observation. Ignored where ``terminated``.
        terminated: (S, N) bool, true terminal state at t+1: no bootstrap (V(s_{t+1}) := 0).
        episode_end: (S, N) bool, terminated OR truncated at step t: the λ-trace is cut here
            (the next row belongs to a new episode).
        gamma, lam: discount and GAE λ.

    Returns:
        advantages (S, N) and returns (S, N) = advantages + values (the value targets).

    ``delta_t = r_t + γ (1 - term_t) V(s_{t+1}) - V(s_t)``,
    ``A_t = delta_t + γ λ (1 - end_t) A_{t+1}``.
    """
    shape = rewards.shape
    for name, x in (("values", values), ("next_values", next_values), ("terminated", terminated),
                    ("episode_end", episode_end)):
        if x.shape != shape:
            raise ValueError(f"compute_gae: {name} has shape {tuple(x.shape)}, rewards {tuple(shape)}")
    if rewards.dim() != 2:
        raise ValueError(f"compute_gae expects (S, N) tensors, got {tuple(shape)}")
    not_term = 1.0 - terminated.to(values.dtype)
    not_end = 1.0 - episode_end.to(values.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[0])
    for t in range(shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * not_end[t] * last
        adv[t] = last
    return adv, adv + values


def _surrogate_terms(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor,
                     clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(r A, clip(r, 1-ε, 1+ε) A), each (T, B), with ``r = exp(new - old)``; shapes checked."""
    if not (log_prob_new.shape == log_prob_old.shape == advantages.shape):
        raise ValueError(f"clipped_surrogate: shapes differ {tuple(log_prob_new.shape)}, "
                         f"{tuple(log_prob_old.shape)}, {tuple(advantages.shape)}")
    ratio = torch.exp(log_prob_new - log_prob_old)
    return ratio * advantages, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages


def clipped_surrogate(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor,
                      clip: float = 0.2) -> torch.Tensor:
    """Per-task PPO policy loss (negative clipped objective, eq. 4 of the paper).

    Args: ``log_prob_new``, ``log_prob_old``, ``advantages``: (T, B). Returns (T,):
    ``-mean_B min(r A, clip(r, 1-ε, 1+ε) A)`` with ``r = exp(new - old)``. Sum over tasks to get
    a loss whose gradient w.r.t. task i's effective weights is task i's own gradient.
    """
    surr1, surr2 = _surrogate_terms(log_prob_new, log_prob_old, advantages, clip)
    return -torch.minimum(surr1, surr2).mean(dim=-1)


@torch.no_grad()
def clipped_surrogate_with_grad(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor,
                                advantages: torch.Tensor, clip: float = 0.2,
                                weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`clipped_surrogate` and its gradient, without autograd (the training hot path).

    Returns ``(loss (T,), d/d log_prob_new of weight * loss.sum() (T, B))``. The gradient is the
    one autograd gives: ``-weight/B * A * r`` where the unclipped term is the minimum (ties, i.e.
    ``r`` inside the clip range, pass it fully), else 0.
    """
    surr1, surr2 = _surrogate_terms(log_prob_new, log_prob_old, advantages, clip)
    loss = -torch.minimum(surr1, surr2).mean(dim=-1)
    grad = surr1.masked_fill_(surr1 > surr2, 0.0).mul_(-weight / advantages.shape[-1])  # A r, or 0 if clipped
    return loss, grad


@torch.no_grad()
def value_loss_with_grad(values: torch.Tensor, returns: torch.Tensor,
                         weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`value_loss` and d(weight * loss.sum())/d values = ``2 weight (v - R) / B`` (T, B)."""
    if values.shape != returns.shape:
        raise ValueError(f"value_loss: shapes differ {tuple(values.shape)} vs {tuple(returns.shape)}")
    diff = values - returns
    return (diff**2).mean(dim=-1), diff.mul_(2.0 * weight / values.shape[-1])


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Per-task value loss: mean squared error over B, unclipped (baselines ppo1).
    ``values``, ``returns``: (T, B) -> (T,)."""
    if values.shape != returns.shape:
        raise ValueError(f"value_loss: shapes differ {tuple(values.shape)} vs {tuple(returns.shape)}")
    return ((values - returns) ** 2).mean(dim=-1)


def standardize_per_task(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(T, N, ...) -> same shape, zero mean / unit (population) std within each task.

    ppo1 uses ``(a - a.mean()) / a.std()`` (numpy, ddof=0); ``eps`` guards a constant batch.
    """
    if adv.dim() < 2:
        raise ValueError(f"standardize_per_task expects (T, N, ...), got {tuple(adv.shape)}")
    flat = adv.reshape(adv.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / (std + eps)).reshape(adv.shape)


OPTIMIZERS = ("mixed", "per_task")


@dataclass
class PPOConfig:
    """PPO hyper-parameters (SPEC §5; baselines ppo1 defaults for MuJoCo).

    ``minibatch_per_task``: samples of EACH task in one mixed minibatch (one Adam step).
    ``max_grad_norm=None``: no gradient clipping (as ppo1).
    ``lr_schedule``: 'constant' or 'linear' (lr × max(1 - progress, 0), progress in [0, 1]).
    ``clip_schedule``: the same for the clip range. Baselines ppo1's ``schedule='linear'``
    (``run_mujoco.py``) anneals both; SPEC §5 keeps both constant.
    ``optimizer``: ``mixed`` = every Adam step on a minibatch holding ``minibatch_per_task`` samples
    of EVERY task, loss = mean over tasks (SPEC §5); ``per_task`` = the paper's authors' optimiser
    (``pposgd_split.py``): one Adam per task, the tasks stepping in turn on single-task minibatches
    of ``minibatch_per_task`` samples, shared entries' values and moments in sync
    (:class:`mt_specialize.optim.TaskAlternatingAdam`): T times the Adam steps of ``mixed``.
    ``None`` = the profile's choice (``TrainConfig.profile``).
    """

    clip: float = 0.2
    epochs: int = 10
    minibatch_per_task: int = 256
    lr: float = 3e-4
    adam_eps: float = 1e-5
    gamma: float = 0.99
    lam: float = 0.95
    entropy_coef: float = 0.0
    value_coef: float = 1.0
    max_grad_norm: float | None = None
    lr_schedule: str = "constant"
    clip_schedule: str = "constant"
    optimizer: str | None = None

    def __post_init__(self):
        def bad(field, msg):
            raise ValueError(f"PPOConfig.{field}={getattr(self, field)!r}: {msg}")

        def finite(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        for f in ("clip", "lr", "adam_eps"):
            if not finite(getattr(self, f)) or getattr(self, f) <= 0:
                bad(f, "must be a finite number > 0")
        if self.clip >= 1:
            bad("clip", "must be < 1")
        for f in ("epochs", "minibatch_per_task"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f, "must be an integer >= 1")
        for f in ("gamma", "lam"):
            v = getattr(self, f)
            if not finite(v) or not 0.0 <= v <= 1.0:
                bad(f, "must be in [0, 1]")
        for f in ("entropy_coef", "value_coef"):
            if not finite(getattr(self, f)) or getattr(self, f) < 0:
                bad(f, "must be a finite number >= 0")
        if self.max_grad_norm is not None and (not finite(self.max_grad_norm) or self.max_grad_norm <= 0):
            bad("max_grad_norm", "must be None (no clipping) or a finite number > 0")
        for f in ("lr_schedule", "clip_schedule"):
            if getattr(self, f) not in ("constant", "linear"):
                bad(f, "must be 'constant' or 'linear'")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"must be one of {list(OPTIMIZERS)} (or null: the profile's)")

    def lr_at(self, progress: float) -> float:
        """Learning rate at training progress in [0, 1] (fraction of the sample budget used)."""
        if self.lr_schedule == "linear":
            return self.lr * max(1.0 - float(progress), 0.0)
        return self.lr

    def clip_at(self, progress: float) -> float:
        """Clip range at training progress in [0, 1] (fraction of the sample budget used)."""
        if self.clip_schedule == "linear":
            return self.clip * max(1.0 - float(progress), 0.0)
        return self.clip

    def to_dict(self) -> dict:
        return asdict(self)
