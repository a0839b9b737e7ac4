"""PPO math (pure torch, no state): clipped surrogate, value loss, minibatch standardisation; ``PPOConfig``.

Shapes: ``T`` = tasks, ``B`` = samples per task in a minibatch. Values are in return units. GAE and
the per-iteration advantage standardisation are built with the batch (``rollout_buffer``).
Hyper-parameters follow OpenAI baselines ``ppo1`` (what the paper's authors used).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

__all__ = [
    "PPOConfig",
    "clipped_surrogate",
    "clipped_surrogate_with_grad",
    "value_loss_with_grad",
    "value_loss",
    "standardize_minibatch",
    "ADVANTAGE_NORMS",
    "INITS",
    "OBS_NORM_UPDATES",
]

ADVANTAGE_NORMS = ("per_task_iteration", "per_task_env", "per_minibatch", "none")
INITS = ("normc", "orthogonal")
OBS_NORM_UPDATES = ("per_iteration", "per_step")


def _clip_bounds(clip: float | Sequence[float], ndim: int):
    """(1 - ε, 1 + ε): Python floats for one ε (or K equal ones), else float32 tensors (K, 1, ...)
    broadcasting over a (K, ...) tensor of ``ndim`` dims (each ``float32(1 -/+ ε_k)``, the value a
    Python float bound takes in a float32 clamp)."""
    if isinstance(clip, (int, float)):
        return 1.0 - clip, 1.0 + clip
    clips = [float(c) for c in clip]
    if len(set(clips)) == 1:
        return 1.0 - clips[0], 1.0 + clips[0]
    shape = (len(clips),) + (1,) * (ndim - 1)
    lower = torch.tensor([1.0 - c for c in clips], dtype=torch.float64).to(torch.float32).view(shape)
    upper = torch.tensor([1.0 + c for c in clips], dtype=torch.float64).to(torch.float32).view(shape)
    return lower, upper


def _surrogate_terms(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor,
                     clip: float | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r A, clip(r, 1-ε, 1+ε) A), each of the inputs' shape, with ``r = exp(new - old)``; shapes checked.
    ``clip``: ε, or one ε per index of the leading (run) axis."""
    if not (log_prob_new.shape == log_prob_old.shape == advantages.shape):
        raise ValueError(f"clipped_surrogate: shapes differ {tuple(log_prob_new.shape)}, "
                         f"{tuple(log_prob_old.shape)}, {tuple(advantages.shape)}")
    ratio = torch.exp(log_prob_new - log_prob_old)
    lower, upper = _clip_bounds(clip, ratio.dim())
    return ratio * advantages, torch.clamp(ratio, lower, upper) * advantages


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
                                advantages: torch.Tensor, clip: float | Sequence[float] = 0.2,
                                weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`clipped_surrogate` and its gradient, without autograd (the training hot path).

    Inputs ``(..., B)`` (the update's ``(K, T, B)`` or ``(K, B)``); ``clip``: ε, or one per run (the
    leading axis). Returns ``(loss (...), d/d log_prob_new of weight * loss.sum() (..., B))``. The
    gradient is the one autograd gives: ``-weight/B * A * r`` where the unclipped term is the minimum
    (ties, i.e. ``r`` inside the clip range, pass it fully), else 0.
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


OPTIMIZERS = ("mixed", "per_task")

def standardize_minibatch(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(..., B) -> (..., B), each task's row of one minibatch (the last axis) standardised as
    Stable-Baselines3's PPO does: ``(a - mean) / (std + eps)`` with the *sample* std (ddof=1);
    unchanged when B == 1."""
    if adv.dim() < 1:
        raise ValueError(f"standardize_minibatch expects (..., B), got {tuple(adv.shape)}")
    if adv.shape[-1] < 2:
        return adv
    return (adv - adv.mean(dim=-1, keepdim=True)) / (adv.std(dim=-1, keepdim=True) + eps)


def _hidden_sizes_ok(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) >= 1
            and all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in value))


@dataclass
class PPOConfig:
    """PPO hyper-parameters (docs/method.md#the-algorithm; baselines ppo1 defaults for MuJoCo).

    ``minibatch_per_task``: samples of EACH task in one mixed minibatch (one Adam step).
    ``max_grad_norm=None``: no gradient clipping (as ppo1).
    ``lr_schedule``: 'constant' or 'linear' (lr × max(1 - progress, 0), progress in [0, 1]).
    ``clip_schedule``: the same for the clip range. Baselines ppo1's ``schedule='linear'``
    (``run_mujoco.py``) anneals both; docs/method.md#the-algorithm keeps both constant.
    ``optimizer``: ``mixed`` = every Adam step on a minibatch holding ``minibatch_per_task`` samples
    of EVERY task, loss = mean over tasks (docs/method.md#the-algorithm); ``per_task`` = the paper's authors' optimiser
    (``pposgd_split.py``): one Adam per task, the tasks stepping in turn on single-task minibatches
    of ``minibatch_per_task`` samples, shared entries' values and moments in sync
    (:class:`mt_specialize.learning.optim.MultiAdam` with per_task): T times the Adam steps of ``mixed``.
    ``None`` = the profile's choice (``TrainConfig.profile``).

    Network, normalisers and update details (defaults: ours, after baselines ppo1; in brackets what
    Stable-Baselines3's ``PPO("MlpPolicy")`` + ``VecNormalize`` uses, ``bench/calibration.py``):

    ``policy_hidden`` / ``value_hidden``: hidden layer widths of the policy mean and value MLPs
    (tanh), e.g. ``[64, 64, 64]`` [``[64, 64]``].
    ``init``: ``'normc'`` (baselines' normc: gain 1 hidden, 0.01 policy output, 1 value output) or
    ``'orthogonal'`` [SB3: ``orthogonal_`` with gain sqrt(2) hidden, 0.01 policy output, 1 value
    output]; biases 0 and log-std 0 either way.
    ``obs_clip``: normalised observations are clipped to ±obs_clip [10].
    ``obs_var_floor``, ``obs_norm_epsilon``: the observation std is
    ``sqrt(max(var, obs_var_floor) + obs_norm_epsilon)`` [floor 0, epsilon 1e-8].
    ``obs_norm_update``: ``'per_iteration'`` (statistics updated once per iteration with the
    rollout's observations; the whole batch, the rollout's policy inputs included, is then
    normalised with the updated statistics) or ``'per_step'`` [SB3: updated with every step's new
    observations during the rollout; each observation is stored normalised as the policy saw it].
    ``reward_norm``: scale rewards by the running std of each env's discounted return (gamma as
    above, clip ±``reward_clip``, ``sqrt(var + reward_norm_epsilon)``), per task, updated every
    step, before GAE [True, clip 10, epsilon 1e-8]. Logged returns stay raw.
    ``advantage_norm``: ``'per_task_iteration'`` (each task's advantages over the whole batch,
    population std), ``'per_task_env'`` (each env of each task over its segment of the iteration,
    population std: the authors' per-worker standardisation when each worker steps one env per task),
    ``'per_minibatch'`` [SB3: each task's advantages within each minibatch, sample std + 1e-8] or
    ``'none'``; ``None`` = the profile's choice.
    ``clip_env_actions``: the env receives the action clipped to [-1, 1] (so the control cost sees
    the clipped action) [True: SB3 clips to the Box]; the update always uses the sampled action.
    SB3 further: ``value_coef`` 0.5, ``max_grad_norm`` 0.5, ``minibatch_per_task`` 64, 2048
    samples per iteration from one env (TrainConfig ``batch_size``, ``envs_per_task``).
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
    policy_hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    value_hidden: list[int] = field(default_factory=lambda: [64, 64, 64])
    init: str = "normc"
    obs_clip: float = 5.0
    obs_var_floor: float = 1e-2
    obs_norm_epsilon: float = 0.0
    obs_norm_update: str = "per_iteration"
    reward_norm: bool = False
    reward_clip: float = 10.0
    reward_norm_epsilon: float = 1e-8
    advantage_norm: str | None = None
    clip_env_actions: bool = False

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
        for f in ("policy_hidden", "value_hidden"):
            if not _hidden_sizes_ok(getattr(self, f)):
                bad(f, "must be a non-empty list of layer widths (integers >= 1), e.g. [64, 64]")
            setattr(self, f, [int(h) for h in getattr(self, f)])
        if self.advantage_norm is not None and self.advantage_norm not in ADVANTAGE_NORMS:
            bad("advantage_norm", f"must be one of {list(ADVANTAGE_NORMS)} (or null: the profile's)")
        for f, allowed in (("init", INITS), ("obs_norm_update", OBS_NORM_UPDATES)):
            if getattr(self, f) not in allowed:
                bad(f, f"must be one of {list(allowed)}")
        for f in ("obs_clip", "reward_clip"):
            if not finite(getattr(self, f)) or getattr(self, f) <= 0:
                bad(f, "must be a finite number > 0")
        for f in ("obs_var_floor", "obs_norm_epsilon", "reward_norm_epsilon"):
            if not finite(getattr(self, f)) or getattr(self, f) < 0:
                bad(f, "must be a finite number >= 0")
        if self.obs_var_floor == 0 and self.obs_norm_epsilon == 0:
            bad("obs_norm_epsilon", "must be > 0 when obs_var_floor is 0 (a constant observation "
                "component would divide by zero)")
        for f in ("reward_norm", "clip_env_actions"):
            if not isinstance(getattr(self, f), bool):
                bad(f, "must be true or false")

    @classmethod
    def stable_baselines3(cls, **overrides) -> "PPOConfig":
        """The settings of Stable-Baselines3's ``PPO("MlpPolicy", VecNormalize(env))`` defaults
        (2.x): the bracketed values of the class docstring; the batch (2048 samples from one env)
        is TrainConfig's ``batch_size=2048, envs_per_task=1``."""
        settings = dict(clip=0.2, epochs=10, minibatch_per_task=64, lr=3e-4, adam_eps=1e-5, gamma=0.99,
                        lam=0.95, entropy_coef=0.0, value_coef=0.5, max_grad_norm=0.5,
                        policy_hidden=[64, 64], value_hidden=[64, 64], init="orthogonal", obs_clip=10.0,
                        obs_var_floor=0.0, obs_norm_epsilon=1e-8, obs_norm_update="per_step",
                        reward_norm=True, reward_clip=10.0, reward_norm_epsilon=1e-8,
                        advantage_norm="per_minibatch", clip_env_actions=True)
        settings.update(overrides)
        return cls(**settings)

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
