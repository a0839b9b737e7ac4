"""One iteration's experience as collected, and the update's ``Batch`` built from it: values, GAE, advantages.

After Stable-Baselines3's ``RolloutBuffer``: the trainer fills a ``RolloutBuffer`` step by step while the
envs run (``add``, ``add_cut``, ``finish``); ``to_batch`` values every state reached with the value net,
computes GAE advantages and returns, standardises the advantages as ``ppo.advantage_norm`` says and
hands the update a task-major ``Batch``. ``PolicyInput`` turns raw observations into the networks' input.

Shapes: S control steps per iteration, T tasks, E envs per task, N = S * E samples per task. The buffer
is time-major NumPy (as the envs step); the ``Batch`` is task-major torch (as the per-task networks compute).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .batch import Batch
from .normalize import RunningMeanStd
from .ppo import PPOConfig

__all__ = ["PolicyInput", "RolloutBuffer", "compute_gae", "standardize_per_task", "standardize_per_task_env"]


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


def standardize_per_task_env(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(T, S, E) -> same shape, zero mean / unit (population) std within each task's env, over its
    S steps: the authors' ``pposgd_split.py``, where each MPI worker steps one env per task and
    standardises that segment, ``atarg = (atarg - atarg.mean()) / atarg.std()`` (numpy, ddof=0);
    ``eps`` guards a constant segment."""
    if adv.dim() != 3:
        raise ValueError(f"standardize_per_task_env expects (T, S, E), got {tuple(adv.shape)}")
    mean = adv.mean(dim=1, keepdim=True)
    std = adv.std(dim=1, unbiased=False, keepdim=True)
    return (adv - mean) / (std + eps)


class PolicyInput:
    """Raw observations (T, N, obs_dim) -> the networks' input (T, N, policy_in) float32: each task's
    observations normalised by ``obs_rms`` (clipped to ±``obs_rms.clip``), with the one-hot task id

    * ``task_id='append'``: appended after normalising (``append_mode: raw``);
    * ``task_id='normalize'``: appended before, and normalised with the observation (the authors'
      append, ``append_mode: normalized``; ``obs_rms`` then covers obs_dim + T);
    * ``task_id=None``: not given (policy_in == obs_dim).
    """

    def __init__(self, obs_rms: RunningMeanStd, n_tasks: int, task_id: str | None = None):
        if task_id not in (None, "append", "normalize"):
            raise ValueError(f"task_id must be None, 'append' or 'normalize', got {task_id!r}")
        self.obs_rms, self.n_tasks, self.task_id = obs_rms, n_tasks, task_id

    def _with_task_id(self, x: np.ndarray) -> np.ndarray:
        """(T, N, d) -> (T, N, d + T): task i's rows followed by the one-hot of i."""
        T = self.n_tasks
        one_hot = np.broadcast_to(np.eye(T, dtype=np.float32)[:, None, :], (T, x.shape[1], T))
        return np.concatenate([x, one_hot], axis=-1)

    def normalizer_input(self, obs: np.ndarray) -> np.ndarray:
        """(T, N, obs_dim) raw -> what the normaliser sees: the same, or with the task id (``'normalize'``)."""
        return self._with_task_id(obs) if self.task_id == "normalize" else obs

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """(T, N, obs_dim) raw float64 -> (T, N, policy_in) float32 policy inputs."""
        x = self.obs_rms.normalize(self.normalizer_input(obs))
        return self._with_task_id(x) if self.task_id == "append" else x

    def update(self, obs: np.ndarray, *, with_torch: bool = False) -> None:
        """Fold raw observations (T, N, obs_dim) into the normaliser's statistics. ``with_torch``: with
        torch's reductions (a whole iteration's observations, as every run so far: NumPy's sums round
        differently in the last bits), else NumPy's (each step's few, ``obs_norm_update: per_step``)."""
        x = self.normalizer_input(obs)
        self.obs_rms.update(torch.from_numpy(x) if with_torch else x)


@dataclass
class RolloutBuffer:
    """``S`` control steps on every env, filled by ``add`` as the envs step (``empty`` allocates it)."""

    obs: np.ndarray  #: (S+1, T, E, obs_dim) float64 raw observations; [S] is the state reached after the last step
    actions: np.ndarray  #: (S, T, E, act_dim) float32 sampled actions, before any clipping to [-1, 1]
    rewards: np.ndarray  #: (S, T, E) float64 rewards (scaled when ``ppo.reward_norm``)
    terminated: np.ndarray  #: (S, T, E) bool: the episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray  #: (S, T, E) bool: the episode was cut (time limit, task switch): bootstrap
    #: (step, task, env, final observation) of every cut episode: the state reached, to bootstrap
    #: from; raw (obs_dim,) float64, or (policy_in,) float32 normalised when seen if ``obs_norm`` is set
    truncated_obs: list[tuple[int, int, int, np.ndarray]] = field(default_factory=list)
    #: (S+1, T, E, policy_in) float32 policy inputs as normalised when seen
    #: (``ppo.obs_norm_update == 'per_step'``), else None (normalised after the rollout)
    obs_norm: np.ndarray | None = None
    #: per entry of ``truncated_obs``, the task whose value bootstraps it (a task switch can hand the
    #: robot to another task, ``task_switch_bootstrap``)
    truncated_value_task: list[int] = field(default_factory=list)
    steps_added: int = 0  #: how many of the S steps ``add`` has filled

    @classmethod
    def empty(cls, steps: int, n_tasks: int, envs: int, obs_dim: int, act_dim: int,
              policy_in: int | None = None) -> RolloutBuffer:
        """A buffer for ``steps`` steps of T x E envs; ``policy_in``: also keep the policy inputs as
        normalised when seen (``obs_norm``)."""
        S, T, E = steps, n_tasks, envs
        return cls(obs=np.empty((S + 1, T, E, obs_dim)), actions=np.empty((S, T, E, act_dim), dtype=np.float32),
                   rewards=np.empty((S, T, E)), terminated=np.zeros((S, T, E), dtype=bool),
                   truncated=np.zeros((S, T, E), dtype=bool),
                   obs_norm=None if policy_in is None else np.empty((S + 1, T, E, policy_in), dtype=np.float32))

    @property
    def steps(self) -> int:
        """S."""
        return self.rewards.shape[0]

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, obs_norm: np.ndarray | None = None) -> None:
        """One control step: the observations acted on (T, E, obs_dim) (and, with ``obs_norm``, the
        policy inputs made of them), the actions (T, E, act_dim), and what the step gave (T, E)."""
        t = self.steps_added
        self.obs[t], self.actions[t], self.rewards[t] = obs, action, reward
        self.terminated[t], self.truncated[t] = terminated, truncated
        if self.obs_norm is not None:
            self.obs_norm[t] = obs_norm
        self.steps_added += 1

    def add_cut(self, task: int, env: int, final_obs: np.ndarray, value_task: int) -> None:
        """An episode cut in the step last added: the observation it reached (raw, or the policy input
        when ``obs_norm`` is kept), valued as task ``value_task``'s to bootstrap from."""
        self.truncated_obs.append((self.steps_added - 1, task, env, final_obs))
        self.truncated_value_task.append(value_task)

    def finish(self, last_obs: np.ndarray, last_obs_norm: np.ndarray | None = None) -> None:
        """The state reached after the last step (T, E, obs_dim) (and its policy inputs)."""
        if self.steps_added != self.steps:
            raise ValueError(f"the rollout has {self.steps_added} of its {self.steps} steps")
        self.obs[self.steps] = last_obs
        if self.obs_norm is not None:
            self.obs_norm[self.steps] = last_obs_norm

    def _task_major(self, x: np.ndarray) -> torch.Tensor:
        """(S, T, E, ...) -> (T, S*E, ...) tensor (float32 for floats)."""
        x = np.moveaxis(x, 1, 0)
        x = x.reshape(x.shape[0], -1, *x.shape[3:])
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        return tensor.float() if tensor.is_floating_point() else tensor

    def to_batch(self, policy, value, policy_input: PolicyInput, ppo: PPOConfig) -> Batch:
        """The update's batch: every state valued by ``value`` (a cut episode's final state as its
        ``truncated_value_task``'s), the actions' log-probabilities under ``policy``, GAE advantages and
        returns (``ppo.gamma``, ``ppo.lam``), the advantages standardised per task
        (``ppo.advantage_norm == 'per_task_iteration'``) or per task and env (``'per_task_env'``).
        Without ``obs_norm`` the observations are normalised by ``policy_input`` as it is now."""
        S, T, E = self.steps, self.obs.shape[1], self.obs.shape[2]
        per_step = self.obs_norm is not None
        if per_step:  # normalised during the rollout, as the policy saw them
            obs_all = torch.from_numpy(np.moveaxis(self.obs_norm, 1, 0).reshape(T, (S + 1) * E, -1))
        else:
            obs_all = torch.from_numpy(policy_input(np.moveaxis(self.obs, 1, 0).reshape(T, (S + 1) * E, -1)))
        actions = self._task_major(self.actions)
        with torch.no_grad():
            values_all = value(obs_all).reshape(T, S + 1, E)
            obs = obs_all.reshape(T, S + 1, E, -1)[:, :S].reshape(T, S * E, -1)
            old_logp = policy.log_prob(obs, actions)
            next_values = values_all[:, 1:].clone()  # (T, S, E)
            for (t, i, e, final), k in zip(self.truncated_obs, self.truncated_value_task):
                every_task = final[None, None].repeat(T, axis=0)  # (T, 1, ...): valued as each task's
                x = torch.from_numpy(every_task if per_step else policy_input(every_task))
                next_values[i, t, e] = value(x)[k, 0]
        values = values_all[:, :S].permute(1, 0, 2).reshape(S, T * E)
        terminated = torch.from_numpy(self.terminated.reshape(S, T * E))
        episode_end = terminated | torch.from_numpy(self.truncated.reshape(S, T * E))
        advantages, returns = compute_gae(
            torch.from_numpy(self.rewards.reshape(S, T * E)).float(), values,
            next_values.permute(1, 0, 2).reshape(S, T * E), terminated, episode_end, gamma=ppo.gamma, lam=ppo.lam)
        to_task_major = lambda x: x.reshape(S, T, E).permute(1, 0, 2).reshape(T, S * E)  # noqa: E731
        if ppo.advantage_norm == "per_task_env":  # each env's segment: (T, S, E)
            advantages = standardize_per_task_env(advantages.reshape(S, T, E).permute(1, 0, 2)).reshape(T, S * E)
        else:
            advantages = to_task_major(advantages)
        if ppo.advantage_norm == "per_task_iteration":
            advantages = standardize_per_task(advantages)
        return Batch(obs=obs, actions=actions, old_logp=old_logp, advantages=advantages,
                     returns=to_task_major(returns))
