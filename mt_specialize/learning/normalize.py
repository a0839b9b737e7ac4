"""Per-task running mean / variance observation normaliser (clip ±5, docs/method.md) and the
discounted-return reward scaler of Stable-Baselines3's ``VecNormalize``.

Statistics are float64 and follow OpenAI baselines' ``RunningMeanStd`` (parallel-variance update
of Chan et al., initial mean 0, var 1, count ``epsilon``), kept separately for each task.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["RunningMeanStd", "RewardNormalizer"]


class RunningMeanStd:
    """Per-task running statistics of tensors shaped ``(T, N, *shape)``.

    Args:
        n_tasks: T.
        shape: per-sample shape, e.g. ``(obs_dim,)``.
        clip: normalised values are clipped to ``[-clip, clip]``.
        epsilon: initial count (pseudo-observation with mean 0, var 1), as baselines.
        var_floor: ``normalize`` divides by ``sqrt(max(var, var_floor))``. The default 1e-2 is the
            std floor 0.1 of baselines ppo1's ``MlpPolicy`` (the authors' code); it keeps an
            (almost) constant observation component from being blown up to ±clip.
        norm_epsilon: added to the floored variance: std = ``sqrt(max(var, var_floor) + norm_epsilon)``
            (Stable-Baselines3's ``VecNormalize``: floor 0, epsilon 1e-8).

    Attributes ``mean`` (T,*shape), ``var`` (T,*shape), ``count`` (T,): float64 tensors.
    """

    def __init__(self, n_tasks: int, shape: Sequence[int] | int, clip: float = 5.0, epsilon: float = 1e-4,
                 var_floor: float = 1e-2, norm_epsilon: float = 0.0):
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        if not clip > 0 or not epsilon > 0 or not var_floor >= 0 or not norm_epsilon >= 0:
            raise ValueError(f"need clip > 0, epsilon > 0, var_floor >= 0, norm_epsilon >= 0; "
                             f"got {clip}, {epsilon}, {var_floor}, {norm_epsilon}")
        self.n_tasks = int(n_tasks)
        self.shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        self.clip = float(clip)
        self.var_floor = float(var_floor)
        self.norm_epsilon = float(norm_epsilon)
        self.mean = torch.zeros((self.n_tasks, *self.shape), dtype=torch.float64)
        self.var = torch.ones((self.n_tasks, *self.shape), dtype=torch.float64)
        self.count = torch.full((self.n_tasks,), float(epsilon), dtype=torch.float64)

    def _check(self, x) -> torch.Tensor:
        x = x if isinstance(x, np.ndarray) else torch.as_tensor(x)
        if x.ndim != 2 + len(self.shape) or x.shape[0] != self.n_tasks or tuple(x.shape[2:]) != self.shape:
            raise ValueError(f"expected (T={self.n_tasks}, N, *{self.shape}), got {tuple(x.shape)}")
        return x

    def update(self, x) -> None:
        """Fold a batch ``x (T, N, *shape)`` into each task's statistics (N >= 1).

        A NumPy array is folded in with NumPy (the same formulas; several times faster for the
        small per-step batches of ``obs_norm_update='per_step'``), a tensor with torch."""
        if isinstance(x, np.ndarray):
            return self._update_numpy(self._check(x).astype(np.float64, copy=False))
        x = self._check(x).detach().to("cpu", torch.float64)
        n = x.shape[1]
        if n == 0:
            return
        b_mean = x.mean(dim=1)
        b_var = x.var(dim=1, unbiased=False)
        view = (self.n_tasks,) + (1,) * len(self.shape)
        cnt = self.count.view(view)
        tot = cnt + n
        delta = b_mean - self.mean
        new_mean = self.mean + delta * (n / tot)
        m2 = self.var * cnt + b_var * n + delta**2 * cnt * n / tot
        self.mean = new_mean
        self.var = m2 / tot
        self.count = self.count + n

    def _update_numpy(self, x: np.ndarray) -> None:
        n = x.shape[1]
        if n == 0:
            return
        b_mean, b_var = x.mean(axis=1), x.var(axis=1)
        view = (self.n_tasks,) + (1,) * len(self.shape)
        count = self.count.numpy()
        cnt = count.reshape(view)
        tot = cnt + n
        mean, var = self.mean.numpy(), self.var.numpy()
        delta = b_mean - mean
        m2 = var * cnt + b_var * n + delta**2 * cnt * n / tot
        self.mean = torch.from_numpy(mean + delta * (n / tot))
        self.var = torch.from_numpy(m2 / tot)
        self.count = torch.from_numpy(count + n)

    @property
    def std(self) -> torch.Tensor:
        """(T, *shape) float64 ``sqrt(max(var, var_floor) + norm_epsilon)`` used by :meth:`normalize`."""
        var = torch.clamp(self.var, min=self.var_floor)
        return torch.sqrt(var + self.norm_epsilon if self.norm_epsilon else var)

    def normalize(self, x) -> torch.Tensor | np.ndarray:
        """``x (T, N, *shape)`` -> float32 ``clip((x - mean) / std, ±clip)`` per task (same device as x;
        a NumPy array for a NumPy input, element for element the same numbers)."""
        x = self._check(x)
        if isinstance(x, np.ndarray):
            view = (self.n_tasks, 1, *self.shape)
            z = (x.astype(np.float64, copy=False) - self.mean.numpy().reshape(view)) / self.std.numpy().reshape(view)
            return np.clip(z, -self.clip, self.clip).astype(np.float32)
        dev = x.device
        view = (self.n_tasks, 1, *self.shape)
        z = (x.to(torch.float64) - self.mean.to(dev).view(view)) / self.std.to(dev).view(view)
        return z.clamp(-self.clip, self.clip).to(torch.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, ref in (("mean", self.mean), ("var", self.var), ("count", self.count)):
            if key not in state:
                raise ValueError(f"RunningMeanStd state is missing {key!r}")
            if tuple(state[key].shape) != tuple(ref.shape):
                raise ValueError(f"RunningMeanStd state {key!r} has shape {tuple(state[key].shape)}, "
                                 f"expected {tuple(ref.shape)}")
        self.mean = state["mean"].detach().to("cpu", torch.float64).clone()
        self.var = state["var"].detach().to("cpu", torch.float64).clone()
        self.count = state["count"].detach().to("cpu", torch.float64).clone()


class RewardNormalizer:
    """Stable-Baselines3 ``VecNormalize`` reward scaling, per task, for rewards shaped ``(T, E)``.

    Every step: ``R <- gamma R + r`` (R (T, E) each env's running discounted return), fold R into
    the task's running variance, return ``clip(r / sqrt(var + epsilon), ±clip)``, then ``R <- 0``
    where the episode ended. Rewards are scaled, not centred.

    Attributes: ``ret_rms`` (a :class:`RunningMeanStd` of shape ``()``, count starting at
    ``count_epsilon``), ``returns`` (T, E) float64.
    """

    def __init__(self, n_tasks: int, n_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8,
                 count_epsilon: float = 1e-4):
        if n_envs < 1 or not 0.0 <= gamma <= 1.0 or not clip > 0 or not epsilon >= 0:
            raise ValueError(f"need n_envs >= 1, gamma in [0, 1], clip > 0, epsilon >= 0; "
                             f"got {n_envs}, {gamma}, {clip}, {epsilon}")
        self.gamma, self.clip, self.epsilon = float(gamma), float(clip), float(epsilon)
        self.ret_rms = RunningMeanStd(n_tasks, (), epsilon=count_epsilon, var_floor=0.0)
        self.returns = np.zeros((int(n_tasks), int(n_envs)))

    def __call__(self, reward: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
        """reward (T, E), episode_end (T, E) bool (terminated or truncated) -> scaled reward (T, E) float64."""
        reward = np.asarray(reward, dtype=np.float64)
        if reward.shape != self.returns.shape or np.shape(episode_end) != self.returns.shape:
            raise ValueError(f"reward and episode_end must have shape {self.returns.shape}, got "
                             f"{reward.shape} and {np.shape(episode_end)}")
        self.returns = self.returns * self.gamma + reward
        self.ret_rms.update(self.returns)
        scaled = np.clip(reward / np.sqrt(self.ret_rms.var.numpy()[:, None] + self.epsilon), -self.clip, self.clip)
        self.returns[np.asarray(episode_end, dtype=bool)] = 0.0
        return scaled

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"ret_rms.{k}": v for k, v in self.ret_rms.state_dict().items()},
                "returns": torch.from_numpy(self.returns.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ret_rms.load_state_dict({k[len("ret_rms."):]: v for k, v in state.items() if k.startswith("ret_rms.")})
        if "returns" not in state or tuple(state["returns"].shape) != self.returns.shape:
            raise ValueError(f"RewardNormalizer state needs 'returns' of shape {self.returns.shape}")
        self.returns = state["returns"].detach().to("cpu", torch.float64).numpy().copy()
