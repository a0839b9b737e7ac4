"""Deterministic NumPy forward of a multi-task policy: serving, gaits, and the training rollout.

The effective weights of every task (``where(mask, W_task, W_shared)``) and the normaliser statistics
are materialised once (per loaded checkpoint, or per training iteration), so a request is a handful
of float32 NumPy matmuls with no torch dispatch:
``act(obs (R, obs_dim), task_index (R,))`` for R robots each with its own task (the policy server;
float64), ``mean_actions(obs (T, N, obs_dim))`` for N envs of every task (the trainer's rollout;
float32, as the networks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import checkpoint as ckpt
from .policy_file import checked_act_inputs
from .normalize import RunningMeanStd
from .policy import SplitGaussianPolicy
from .ppo import PPOConfig


POLICY_FORMAT = "mt_specialize/policy/1"


def _check_finite(path, tensors: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming ``path`` and the first tensors holding NaN or infinite values: a policy
    of a run that diverged is never served, exported or played."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ckpt.CheckpointError(f"{path}: the policy holds non-finite values (NaN or infinite, in "
                                   f"{', '.join(bad[:3])}): the run that wrote it diverged; use an earlier "
                                   f"checkpoint of it")


class InferencePolicy:
    """Per-task mean actions of a split Gaussian policy, with per-task observation normalisation."""

    def __init__(self, policy: SplitGaussianPolicy, obs_rms: RunningMeanStd, task_names: Sequence[str],
                 obs_dim: int, append_task_id: bool = False, experiment: str = "", source: str = "",
                 normalize_task_id: bool = False, run_config: dict | None = None):
        self.task_names = list(task_names)
        # the settings of the run that trained it (a checkpoint's ``config``): which robots it trained on
        self.run_config = dict(run_config or {})
        self.obs_dim = int(obs_dim)
        self.act_dim = int(policy.act_dim)
        self.experiment = experiment
        self.source = source
        # append_task_id: the one-hot task id follows the normalised observation; normalize_task_id:
        # it is appended to the raw observation and normalised with it (obs_rms over obs_dim + T)
        self.append_task_id = append_task_id and not normalize_task_id
        self.normalize_task_id = normalize_task_id
        with torch.no_grad():  # (T, in, out) and (T, 1, out) float32
            self._layers = [(layer.effective_weight().numpy().copy(), layer.effective_bias().numpy()[:, None, :].copy())
                            for layer in policy.mean.layers]
        # act() serves robots in float64: results do not depend on how many robots share a call
        self._layers64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in self._layers]
        n_tasks = len(self.task_names)
        width = self.obs_dim + (n_tasks if normalize_task_id else 0)
        self._mean = obs_rms.mean.numpy().reshape(n_tasks, 1, width)  # float64
        self._std = obs_rms.std.numpy().reshape(n_tasks, 1, width)
        self._clip = float(obs_rms.clip)
        self._task_ids = np.eye(n_tasks, dtype=np.float32)

    def _forward(self, x: np.ndarray, weights) -> np.ndarray:
        """Hidden tanh layers and a linear output over float32 inputs x (..., 1 or N, in)."""
        last = len(weights) - 1
        for k, (w, b) in enumerate(weights):
            x = x @ w + b
            if k != last:
                x = np.tanh(x)
        return x

    def mean_actions(self, obs: np.ndarray) -> np.ndarray:
        """obs (T, N, obs_dim) raw, row t of task t -> mean actions (T, N, act_dim) float32."""
        if self.normalize_task_id:
            ids = np.broadcast_to(self._task_ids[:, None, :], (obs.shape[0], obs.shape[1], len(self.task_names)))
            obs = np.concatenate([obs, ids], axis=-1)
        x = np.clip((obs - self._mean) / self._std, -self._clip, self._clip).astype(np.float32)
        if self.append_task_id:
            ids = np.broadcast_to(self._task_ids[:, None, :], (x.shape[0], x.shape[1], len(self.task_names)))
            x = np.concatenate([x, ids], axis=-1)
        return self._forward(x, self._layers)

    def mean_actions_normalized(self, x: np.ndarray) -> np.ndarray:
        """Policy inputs already normalised (T, N, policy_in) float32 -> mean actions (T, N, act_dim)."""
        return self._forward(x, self._layers)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "InferencePolicy":
        """Load a training checkpoint (verified; no pickle). Raises CheckpointError on a bad file."""
        tensors, meta = ckpt.load_checkpoint(path)
        try:
            names, obs_dim, act_dim = meta["task_names"], int(meta["obs_dim"]), int(meta["act_dim"])
            policy_in = int(meta.get("policy_in", obs_dim))
            saved = (meta.get("config") or {}).get("ppo") or {}  # settings absent from older runs: defaults
            ppo = PPOConfig(**{k: v for k, v in saved.items() if k in PPOConfig.__dataclass_fields__})
            policy = SplitGaussianPolicy(len(names), policy_in, act_dim, ppo.policy_hidden)
            policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy/")})
            rms_state = {k[8:]: v for k, v in tensors.items() if k.startswith("obs_rms/")}
            width = int(rms_state["mean"].shape[-1]) if "mean" in rms_state else obs_dim
            normalize_task_id = width == policy_in != obs_dim
            obs_rms = RunningMeanStd(len(names), (obs_dim + (len(names) if normalize_task_id else 0),),
                                     clip=ppo.obs_clip, var_floor=ppo.obs_var_floor, norm_epsilon=ppo.obs_norm_epsilon)
            obs_rms.load_state_dict(rms_state)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{path}: not a usable policy checkpoint ({exc})") from exc
        _check_finite(path, {k: v for k, v in tensors.items() if k.startswith(("policy/", "obs_rms/"))})
        return cls(policy, obs_rms, names, obs_dim, append_task_id=policy_in != obs_dim,
                   experiment=meta.get("experiment", ""), source=str(path), normalize_task_id=normalize_task_id,
                   run_config=meta.get("config") or {})

    @staticmethod
    def export(checkpoint: str | Path, out: str | Path) -> Path:
        """Write the serving part of a training checkpoint (policy weights and masks, observation
        normaliser, task names) to ``out``: a small file for deployment, loadable by
        ``from_checkpoint``. Optimiser, value net and env state are left out."""
        tensors, meta = ckpt.load_checkpoint(checkpoint)
        kept = {k: v for k, v in tensors.items() if k.startswith(("policy/", "obs_rms/"))}
        if not any(k.startswith("policy/") for k in kept):
            raise ckpt.CheckpointError(f"{checkpoint}: holds no policy weights")
        _check_finite(checkpoint, kept)
        keys = ("experiment", "task_names", "obs_dim", "act_dim", "policy_in", "samples", "iteration")
        metadata = {k: meta[k] for k in keys if k in meta}
        metadata.update(format=POLICY_FORMAT, source=str(checkpoint), config=meta.get("config", {}))
        return ckpt.save_checkpoint(out, kept, metadata)

    @classmethod
    def random_init(cls, task_names: Sequence[str], obs_dim: int, act_dim: int, seed: int = 0) -> "InferencePolicy":
        """An untrained policy (identity normalisation): for tests and demos."""
        torch.manual_seed(seed)
        policy = SplitGaussianPolicy(len(task_names), obs_dim, act_dim)
        return cls(policy, RunningMeanStd(len(task_names), (obs_dim,)), task_names, obs_dim, source="random")

    def forward_arrays(self) -> dict:
        """What :meth:`act` computes with, as float64 arrays (for exporters, ``onnx_export``):
        ``mean``, ``std`` (T, width) and ``clip`` of the observation normaliser; ``layers``, a list of
        (W (T, in, out), b (T, out)) with tanh between them; ``task_id``, where the one-hot task id
        enters: ``"append"`` (after normalising), ``"normalize"`` (before, normalised with the
        observation) or None."""
        return {"mean": self._mean[:, 0, :].copy(), "std": self._std[:, 0, :].copy(), "clip": self._clip,
                "layers": [(w.copy(), b[:, 0, :].copy()) for w, b in self._layers64],
                "task_id": "normalize" if self.normalize_task_id else "append" if self.append_task_id else None}

    def task_index(self, name: str) -> int:
        try:
            return self.task_names.index(name)
        except ValueError:
            raise ValueError(f"unknown task {name!r}; this policy serves {self.task_names}") from None

    def act(self, obs: np.ndarray, task_index: np.ndarray) -> np.ndarray:
        """obs (R, obs_dim), task_index (R,) ints -> mean actions (R, act_dim), float64."""
        obs, task_index = checked_act_inputs(obs, task_index, self.obs_dim, len(self.task_names))
        x = obs[:, None, :]
        if self.normalize_task_id:
            x = np.concatenate([x, self._task_ids[task_index][:, None, :].astype(np.float64)], axis=-1)
        x = np.clip((x - self._mean[task_index]) / self._std[task_index], -self._clip, self._clip)
        if self.append_task_id:  # x: (R, 1, obs_dim) float64
            x = np.concatenate([x, self._task_ids[task_index][:, None, :].astype(np.float64)], axis=-1)
        weights = [(w[task_index], b[task_index]) for w, b in self._layers64]  # (R, in, out), (R, 1, out)
        return self._forward(x, weights)[:, 0, :]

