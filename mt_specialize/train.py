"""Experiment runner: joint phase -> gradient score -> split -> specialization, baselines, resumable runs.

A run writes its directory through ``run_dir.RunDir`` (the layout is listed there); its checkpoints
hold weights, masks, normalisers, Adam, RNGs and env state (``Trainer._state_tensors``).

One iteration: a batched rollout of ``steps`` control steps on T tasks x E envs, (with a revert
bound) the check that the pooled return did not drop, the observation normaliser update, GAE, then
``epochs`` passes over the batch: mixed-task minibatches (``minibatch_per_task`` samples of every
task in each, one Adam step each) or, with the authors' optimiser, single-task minibatches stepped
task after task (``ppo.optimizer``); ``learning.ppo_update`` states the loss.

Sample counts: ``samples`` counts the samples of accepted iterations (it rewinds when the revert
rule rejects an iteration, as the authors counted); ``samples_real`` every env step taken. The
budget, the joint phase ``joint_samples`` and Table I read ``samples``; without a revert bound they are equal.
"""
from __future__ import annotations

import collections
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Generator

import numpy as np
import torch

from .config import TrainConfig, iteration_shape
from .errors import Diverged, RevertLoop, short_repr
from .envs.vec_env import MultiTaskVecEnv, StepResult
from .experiments import (Experiment, apply_profile, complete_physics_record, get_experiment, resolved_physics,
                          with_unrecorded_defaults)
from .learning import checkpoint as ckpt
from .learning.batch import Batch, Rollout
from .learning.inference import InferencePolicy
from .learning.normalize import RewardNormalizer, RunningMeanStd
from .learning.multi import BatchedRuns
from .learning.optim import RunAdam
from .learning.policy import SplitGaussianPolicy, SplitValue
from .envs.tasks import END_CAUSES
from .learning.ppo import compute_gae, standardize_per_task, standardize_per_task_env
from .learning.ppo_update import RunsBatch, UpdateStats, ppo_update
from .learning.specialize import GradientSpread, random_split_masks, select_split_masks
from .methods import get_method
from .run_dir import (RunBusyError, RunDir, RunExistsError, RunFailedError, checkpoint_name,  # noqa: F401
                      checkpoint_paths, latest_checkpoint)

RETURN_WINDOW = 100  # episodes, as baselines' EpRewMean and the paper's Table I
CHECKPOINT_FORMAT = "mt_specialize/run-checkpoint/1"
# Settings a resumed run may change: they do not change any result (the physics is bit-identical
# for any thread count, tests/test_vec_env.py), only speed and bookkeeping.
RESULT_NEUTRAL_SETTINGS = {"physics_threads", "checkpoint_every", "keep_checkpoints"}


class Interrupted(Exception):
    """Training stopped on request (``run``'s ``should_stop``) after writing a checkpoint."""


def _one_hot(n_tasks: int, count: int) -> np.ndarray:
    """(T, count, T) one-hot task ids, for the ``append`` baseline."""
    return np.broadcast_to(np.eye(n_tasks, dtype=np.float32)[:, None, :], (n_tasks, count, n_tasks))


class Trainer:
    """Trains one run. ``Trainer(config, out_dir).run()``; ``resume=True`` continues an existing run.

    progress: called after every iteration with the metrics row (dict); the CLI draws a progress bar
    with it, the learner node publishes diagnostics.
    env: the run's envs, for a run trained in a group (``run_group.RunGroup`` gives each run its view
    of one shared ``MultiRunVecEnv``); default a ``MultiTaskVecEnv`` of its own.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 progress: Callable[[dict], None] | None = None, env=None):
        experiment = get_experiment(config.experiment)
        self.config = config.resolved(experiment.budget, experiment.batch_size)
        # the robots as the profile, the tasks' own settings and the run's physics settings make them
        self.experiment: Experiment = apply_profile(experiment, self.config.profile, self.config.physics)
        self.run_dir = RunDir(out_dir)
        if resume and self.run_dir.config_path.is_file():  # settings added since the run started: their defaults
            recorded = self.run_dir.read_config().get("task_physics")
            if isinstance(recorded, dict):
                self.experiment = with_unrecorded_defaults(self.experiment, recorded)
        self.config.task_physics = resolved_physics(self.experiment)
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.tasks = list(self.experiment.tasks)
        self.task_names = [t.name for t in self.tasks]
        c = self.config
        T = self.n_tasks = len(self.tasks)
        self.steps, self.batch = iteration_shape(c, T)
        torch.set_num_threads(c.torch_threads)
        self.run_dir.lock()
        try:
            self._start: tuple[Path, dict, dict] | None = None
            if c.start_from is not None and not (resume and self.run_dir.checkpoint_paths()):
                self._start = self._read_start(c.start_from)  # checked before anything is written
                c.start_from = str(self._start[0])
            self._prepare_out_dir(resume)
            self._build(resume, env)
        except BaseException:
            self.run_dir.discard_failed_start()  # nothing left that blocks the next start
            raise

    def _build(self, resume: bool, env=None) -> None:
        """Env, networks, optimiser, normaliser, RNGs; then the last checkpoint when resuming."""
        c, T, E = self.config, self.n_tasks, self.config.envs_per_task
        torch.manual_seed(c.seed)
        self.env = env if env is not None else MultiTaskVecEnv(
            self.tasks, E, seed=c.seed, nthread=c.physics_threads, switch_prob=c.task_switch_prob,
            switch_grace=c.task_switch_grace)
        self.obs_dim = self.env.obs_dim
        self.method = get_method(c.method)
        self.append_task_id = self.method.task_id_input
        self.normalize_task_id = self.append_task_id and c.append_mode == "normalized"
        self.policy_in = self.obs_dim + (T if self.append_task_id else 0)
        ppo = c.ppo
        self.policy = SplitGaussianPolicy(T, self.policy_in, self.env.act_dim, ppo.policy_hidden, ppo.init)
        self.value = SplitValue(T, self.policy_in, ppo.value_hidden, ppo.init)
        # the normaliser's input: the env observation (and the one-hot, for the authors' append)
        self.obs_rms = RunningMeanStd(T, (self.obs_dim + (T if self.normalize_task_id else 0),), clip=ppo.obs_clip,
                                      var_floor=ppo.obs_var_floor, norm_epsilon=ppo.obs_norm_epsilon)
        self.reward_normalizer = (RewardNormalizer(T, E, ppo.gamma, ppo.reward_clip, ppo.reward_norm_epsilon)
                                  if ppo.reward_norm else None)
        self.optimizer = RunAdam(list(self.policy.parameters()) + list(self.value.parameters()),
                                 lr=c.ppo.lr, eps=c.ppo.adam_eps)
        # the run's training state in batched form, a batch of one (a RunGroup binds it into its batch):
        # policy, value and Adam state are views of its slot
        self.batched, self.slot = BatchedRuns([(self.policy, self.value, self.optimizer)]), 0
        self.spread = GradientSpread(window=c.score_window, statistic=c.score_statistic)
        self.rng = np.random.default_rng(np.random.SeedSequence([c.seed, 1]))
        self.iteration = 0
        self.samples = 0  # of accepted iterations
        self.samples_real = 0  # every env step
        self.reverts = 0
        self.revert_streak = 0  # consecutive rejected iterations
        # the revert rule's last accepted point: pooled return, network values, normaliser, samples
        self.accepted_return: float | None = None
        self.accepted_state: dict[str, torch.Tensor] | None = None
        self.accepted_samples = 0
        self.split_done = False
        # (T, len(END_CAUSES)) trajectories of each task that ended by each cause this iteration
        self.end_counts = np.zeros((T, len(END_CAUSES)), dtype=np.int64)
        # a resumed run whose metrics.csv predates the end-cause columns keeps its layout
        self.log_end_causes = True
        self.task_returns = [collections.deque(maxlen=RETURN_WINDOW) for _ in range(T)]
        self.task_lengths = [collections.deque(maxlen=RETURN_WINDOW) for _ in range(T)]
        self.pooled_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.obs = self.env.reset()
        if c.ppo.obs_norm_update == "per_step":  # as VecNormalize.reset (a resume loads the saved statistics)
            self.obs_rms.update(self.obs)
        if resume:
            self._load_latest()
        elif self._start is not None:
            self._load_start()

    def close(self) -> None:
        """Release the run directory (``run`` does it when it returns or raises)."""
        self.run_dir.close()

    # -- run directory --------------------------------------------------------------------------------
    def _prepare_out_dir(self, resume: bool) -> None:
        """A new run writes config.yaml (``TrainConfig.to_run_config``: the paper's names); a resumed one
        must have been started with the same config (``RESULT_NEUTRAL_SETTINGS`` aside)."""
        if resume:
            failure = self.run_dir.read_failure()
            if failure is not None:
                raise RunFailedError(
                    f"cannot resume {str(self.out_dir)!r}: it stopped for good at {failure['samples_real']:,} real "
                    f"samples ({failure['error']}: {failure['message']}). Its last checkpoint is kept: start a new "
                    f"run from it with --start-from {str(self.out_dir)!r} and other settings")
            # the run has its own checkpoints: where it started no longer matters
            diff = self._differences(self.run_dir.read_config(), str(self.run_dir.config_path),
                                     ignore=("start_from",) if self._start is None else ())
            if diff:
                details = ", ".join(f"{k}: run has {a!r}, given {b!r}" for k, (a, b) in diff.items())
                raise ValueError(f"cannot resume {str(self.out_dir)!r} with a different config ({details})")
            return
        self.run_dir.create(self.config.to_run_config())

    def _differences(self, recorded: dict, source: str, ignore: tuple[str, ...] = ()) -> dict[str, tuple]:
        """{setting: (recorded value, this run's)} of the settings in which a recorded run config
        (config.yaml, a checkpoint's ``config``) differs from this run's, ``RESULT_NEUTRAL_SETTINGS`` and
        ``ignore`` aside. Read through TrainConfig, so a setting added since it was written compares as
        its default (ValueError naming ``source`` if it does not load)."""
        mine = self.config.to_dict()
        saved = TrainConfig.from_run_config(recorded, source=source)
        saved = saved.resolved(self.experiment.budget, self.experiment.batch_size).to_dict()
        if saved.get("task_physics") is None:  # written before the physics was recorded
            saved["task_physics"] = mine["task_physics"]
        else:  # a physics setting added since the run started compares as its default
            saved["task_physics"] = complete_physics_record(self.experiment, saved["task_physics"])
        neutral = set(RESULT_NEUTRAL_SETTINGS) | set(ignore)
        return {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v and k not in neutral}

    # -- rollout --------------------------------------------------------------------------------------
    def _normalizer_input(self, obs: np.ndarray) -> np.ndarray:
        """(T, N, obs_dim) raw obs -> what the normaliser sees: the same, or with the one-hot task id
        appended (authors' append, ``append_mode: normalized``)."""
        if not self.normalize_task_id:
            return obs
        return np.concatenate([obs, _one_hot(self.n_tasks, obs.shape[1])], axis=-1)

    def _normalize(self, obs: np.ndarray) -> np.ndarray:
        """(T, N, obs_dim) raw float64 -> (T, N, policy_in) float32 normalised (clipped ±obs_clip), the
        one-hot task id appended after normalisation for ``append`` with ``append_mode: raw``."""
        x = self.obs_rms.normalize(self._normalizer_input(obs))
        if not self.append_task_id or self.normalize_task_id:
            return x
        return np.concatenate([x, _one_hot(self.n_tasks, x.shape[1])], axis=-1)

    def collect(self) -> Rollout:
        """Run ``steps`` control steps on every env (``Rollout`` lists the shapes). With
        ``ppo.obs_norm_update == 'per_step'`` the normaliser is updated with every step's new
        observations and the rollout carries the policy inputs as normalised when seen."""
        steps = self.collect_steps()
        action = next(steps)
        while True:
            try:
                action = steps.send(self.env.step(action))
            except StopIteration as done:
                return done.value

    def collect_steps(self) -> Generator[np.ndarray, StepResult, Rollout]:
        """``collect`` as a generator, for runs stepped together (``run_group``): yields each control
        step's actions (T, E, A) float32, is sent the env's ``StepResult`` for them, and returns the
        ``Rollout`` after ``steps`` steps."""
        S, T, E, A = self.steps, self.n_tasks, self.config.envs_per_task, self.env.act_dim
        ppo = self.config.ppo
        per_step = ppo.obs_norm_update == "per_step"
        norm_buf = np.empty((S + 1, T, E, self.policy_in), dtype=np.float32) if per_step else None
        obs_buf = np.empty((S + 1, T, E, self.obs_dim))
        act_buf = np.empty((S, T, E, A), dtype=np.float32)
        rew_buf = np.empty((S, T, E))
        term_buf = np.zeros((S, T, E), dtype=bool)
        trunc_buf = np.zeros((S, T, E), dtype=bool)
        truncated_obs: list[tuple[int, int, int, np.ndarray]] = []
        value_task: list[int] = []  # per entry of truncated_obs, the task whose value bootstraps it
        new_task_value = self.config.task_switch_bootstrap == "new_task"
        time_limit_terminal = self.config.time_limit == "terminal"
        self.end_counts[:] = 0
        task_of_env = np.repeat(np.arange(T)[:, None], E, axis=1)  # (T, E)
        with torch.no_grad():
            std = torch.exp(self.policy.log_std()).numpy()[:, None, :]  # (T, 1, A)
        # weights and normaliser are fixed during a rollout: materialise them once (NumPy float32 forward)
        inference = InferencePolicy(self.policy, self.obs_rms, self.task_names, self.obs_dim,
                                    append_task_id=self.append_task_id, normalize_task_id=self.normalize_task_id)
        noise = self.rng.standard_normal((S, T, E, A)).astype(np.float32)
        c = self.config
        self.env.switch_prob = c.task_switch_prob if self.samples >= c.task_switch_start else 0.0
        for t in range(S):
            obs_buf[t] = self.obs
            if per_step:
                norm_buf[t] = self._normalize(self.obs)
                action = inference.mean_actions_normalized(norm_buf[t]) + std * noise[t]
            else:
                action = inference.mean_actions(self.obs) + std * noise[t]
            act_buf[t] = action
            result = yield (np.clip(action, -1.0, 1.0) if ppo.clip_env_actions else action)
            if per_step:
                self.obs_rms.update(self._normalizer_input(result.obs))
            reward = result.reward
            if self.reward_normalizer is not None:
                reward = self.reward_normalizer(reward, result.terminated | result.truncated)
            # the time limit ends an episode: bootstrapped from the state reached ('bootstrap'), or
            # terminal as a fall ('terminal'); a task switch cuts the trajectory and always bootstraps
            if time_limit_terminal:
                terminal = result.terminated | result.truncated
                cut = np.zeros_like(terminal) if result.switched is None else result.switched
            else:
                terminal = result.terminated
                cut = result.truncated if result.switched is None else result.truncated | result.switched
            rew_buf[t], term_buf[t], trunc_buf[t] = reward, terminal, cut
            if result.end_cause is not None:
                ended = result.end_cause > 0
                if ended.any():
                    np.add.at(self.end_counts, (task_of_env[ended], result.end_cause[ended].astype(np.int64) - 1), 1)
            if cut.any():
                for i, e in zip(*np.nonzero(cut)):
                    # a switch hands the robot to another task: with task_switch_bootstrap new_task
                    # its trajectory so far is valued as that task will go on with it
                    handed_over = new_task_value and result.switched is not None and result.switched[i, e]
                    k = int(result.switched_to[i, e]) if handed_over else int(i)
                    final = result.final_obs[i, e].copy()
                    if per_step:
                        final = self._normalize(np.repeat(final[None, None], T, axis=0))[k, 0]
                    truncated_obs.append((t, int(i), int(e), final))
                    value_task.append(k)
            for i, finished in enumerate(result.finished):
                for ep_return, ep_length in finished:
                    self.task_returns[i].append(ep_return)
                    self.task_lengths[i].append(ep_length)
                    self.pooled_returns.append(ep_return)
            self.obs = result.obs
        obs_buf[S] = self.obs
        if per_step:
            norm_buf[S] = self._normalize(self.obs)
        return Rollout(obs=obs_buf, actions=act_buf, rewards=rew_buf, terminated=term_buf, truncated=trunc_buf,
                       truncated_obs=truncated_obs, obs_norm=norm_buf, truncated_value_task=value_task)

    # -- update ---------------------------------------------------------------------------------------
    def _to_task_major(self, x: np.ndarray) -> torch.Tensor:
        """(S, T, E, ...) -> (T, S*E, ...) tensor (float32 for floats)."""
        x = np.moveaxis(x, 1, 0)
        x = x.reshape(x.shape[0], -1, *x.shape[3:])
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        return tensor.float() if tensor.is_floating_point() else tensor

    def prepare_batch(self, rollout: Rollout) -> Batch:
        """Normaliser update (per iteration), values, GAE, advantages (standardised per task when
        ``ppo.advantage_norm == 'per_task_iteration'``, per task and env when ``'per_task_env'``)."""
        S, T, E = self.steps, self.n_tasks, self.config.envs_per_task
        per_step = rollout.obs_norm is not None
        if per_step:  # normalised during the rollout, as the policy saw them
            obs_all = torch.from_numpy(np.moveaxis(rollout.obs_norm, 1, 0).reshape(T, (S + 1) * E, -1))
        else:
            raw = rollout.obs
            self.obs_rms.update(torch.from_numpy(
                self._normalizer_input(np.moveaxis(raw[:S], 1, 0).reshape(T, S * E, self.obs_dim))))
            obs_all = torch.from_numpy(self._normalize(np.moveaxis(raw, 1, 0).reshape(T, (S + 1) * E, self.obs_dim)))
        actions = self._to_task_major(rollout.actions)
        with torch.no_grad():
            values_all = self.value(obs_all).reshape(T, S + 1, E)
            obs = obs_all.reshape(T, S + 1, E, -1)[:, :S].reshape(T, S * E, -1)
            old_logp = self.policy.log_prob(obs, actions)
            next_values = values_all[:, 1:].clone()  # (T, S, E)
            value_task = rollout.truncated_value_task or [i for _, i, _, _ in rollout.truncated_obs]
            for (t, i, e, final), k in zip(rollout.truncated_obs, value_task):
                final_in = torch.from_numpy(final[None, None].repeat(T, axis=0) if per_step
                                            else self._normalize(final[None, None].repeat(T, axis=0)))
                next_values[i, t, e] = self.value(final_in)[k, 0]
        values = values_all[:, :S].permute(1, 0, 2).reshape(S, T * E)
        terminated = torch.from_numpy(rollout.terminated.reshape(S, T * E))
        episode_end = terminated | torch.from_numpy(rollout.truncated.reshape(S, T * E))
        advantages, returns = compute_gae(
            torch.from_numpy(rollout.rewards.reshape(S, T * E)).float(), values,
            next_values.permute(1, 0, 2).reshape(S, T * E), terminated, episode_end,
            gamma=self.config.ppo.gamma, lam=self.config.ppo.lam)
        to_tn = lambda x: x.reshape(S, T, E).permute(1, 0, 2).reshape(T, S * E)  # noqa: E731
        if self.config.ppo.advantage_norm == "per_task_env":  # each env's segment: (T, S, E)
            advantages = standardize_per_task_env(advantages.reshape(S, T, E).permute(1, 0, 2)).reshape(T, S * E)
        else:
            advantages = to_tn(advantages)
        if self.config.ppo.advantage_norm == "per_task_iteration":
            advantages = standardize_per_task(advantages)
        return Batch(obs=obs, actions=actions, old_logp=old_logp, advantages=advantages, returns=to_tn(returns))

    def update(self, batch: Batch, track_gradients: bool) -> UpdateStats:
        """One PPO update (``ppo_update``) with the learning rate and clip range of this point of
        the run. With ``track_gradients`` the per-task policy gradients are summed over the
        iteration's minibatches and recorded in ``self.spread`` (the specialization score)."""
        return Trainer.update_runs([self], [batch], [track_gradients])[0]

    @staticmethod
    def update_runs(trainers: list["Trainer"], batches: list[Batch | None],
                    track_gradients: list[bool]) -> list[UpdateStats | None]:
        """``update`` of runs bound to one batch (their ``batched``: a run alone, or a ``RunGroup``'s
        runs) in one ``ppo_update``; a run whose batch is None (a rejected iteration) sits out and
        gets None. Runs of the batch not in ``trainers`` sit out too."""
        runs = trainers[0].batched
        if any(t.batched is not runs for t in trainers):
            raise ValueError("runs updated together must be bound to one batch (one RunGroup)")
        K = runs.n_runs
        slot_batches, clips, rngs, track = [None] * K, [None] * K, [None] * K, [False] * K
        ppo = None
        for t, batch, tracked in zip(trainers, batches, track_gradients):
            lr, clips[t.slot] = t.schedule()
            if batch is None:
                continue
            for group in t.optimizer.param_groups:
                group["lr"] = lr
                # as fused Adam records them (a checkpoint of an older version restores foreach=True, fused=None)
                group["foreach"], group["fused"] = False, True
            slot_batches[t.slot], rngs[t.slot], track[t.slot] = batch, t.rng, bool(tracked)
            ppo = t.config.ppo
        if ppo is None:
            return [None] * len(trainers)
        any_clip = next(c for c in clips if c is not None)  # for the slots of runs not given (they sit out)
        clips = [any_clip if c is None else c for c in clips]
        stats = ppo_update(runs, RunsBatch.stack(slot_batches), ppo, clips=clips, rngs=rngs, track=track)
        for t in trainers:
            if track[t.slot]:  # per-task gradients summed over the iteration's minibatches
                t.spread.add(runs.policy.per_task_grads(t.slot))
        return [stats[t.slot] for t in trainers]

    def schedule(self) -> tuple[float, float]:
        """(learning rate, clip range) of the next update, at this point of the run (its counted samples)."""
        progress = self.samples / self.config.samples
        return self.config.ppo.lr_at(progress), self.config.ppo.clip_at(progress)

    def tracks_gradients(self) -> bool:
        """Whether the next update records per-task gradients for the split score."""
        return self.method.scores_gradients and not self.split_done and self.config.split_fraction > 0

    # -- specialization -------------------------------------------------------------------------------
    def _split(self) -> None:
        """Split the policy (and value net if asked) at the end of the joint phase; Adam state kept."""
        c = self.config
        shapes = {name: mask.shape for name, mask in self.policy.split_masks().items()}
        if self.method.random_mask:
            generator = torch.Generator().manual_seed(c.seed + 7919)
            masks = random_split_masks(shapes, c.split_fraction, generator)
            score = None
        elif c.split_fraction >= 1.0:
            masks = {name: torch.ones(shape, dtype=torch.bool) for name, shape in shapes.items()}
            score = None
        else:
            if self.spread.n_recorded == 0:
                raise RuntimeError("no gradient spread was recorded during the joint phase")
            raw_score = self.spread.score()
            score = {name: raw_score[name] for name in shapes}  # canonical order: ties break the same way
            masks = select_split_masks(score, c.split_fraction, count=c.split_count)
        self._apply_masks(self.policy, masks)
        if c.split_value:
            self._apply_masks(self.value, {n: torch.ones(m.shape, dtype=torch.bool)
                                           for n, m in self.value.split_masks().items()})
        self.split_done = True
        tensors = {f"mask/{k}": v.to(torch.uint8) for k, v in masks.items()}
        if score is not None:
            tensors.update({f"score/{k}": v.float() for k, v in score.items()})
        n_split = int(sum(int(m.sum()) for m in masks.values()))
        n_total = int(sum(m.numel() for m in masks.values()))
        ckpt.save_checkpoint(self.run_dir.split_path, tensors,
                             {"samples": self.samples, "iteration": self.iteration, "method": self.method.file_name,
                              "sp": c.split_fraction, "split_entries": n_split, "policy_entries": n_total})
        from .plots import plot_split

        plot_split(self.out_dir)

    def _apply_masks(self, net, masks: dict[str, torch.Tensor]) -> None:
        """Set masks; newly split per-task copies start from the joint values and Adam moments."""
        self.batched.optimizer.copy_state_to_split(self.slot, net.set_split_masks(masks))

    # -- checkpoints ----------------------------------------------------------------------------------
    def _state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("policy", self.policy), ("value", self.value)):
            for k, v in module.state_dict().items():
                tensors[f"{prefix}/{k}"] = v.detach().clone()
        for k, v in self.obs_rms.state_dict().items():
            tensors[f"obs_rms/{k}"] = v
        if self.reward_normalizer is not None:
            for k, v in self.reward_normalizer.state_dict().items():
                tensors[f"reward_norm/{k}"] = v
        opt_tensors, opt_meta = ckpt.optimizer_state_to_tensors(self.optimizer.state_dict(), prefix="optim/")
        tensors.update(opt_tensors)
        for k, v in self.spread.state_dict().items():
            tensors[f"spread/{k}"] = v
        if self.accepted_state is not None:
            for k, v in self.accepted_state.items():
                tensors[f"revert/{k}"] = v
        env_state = self.env.get_state()
        tensors["env/physics"] = torch.from_numpy(env_state["physics"])
        tensors["env/episode_return"] = torch.from_numpy(env_state["episode_return"])
        tensors["env/episode_length"] = torch.from_numpy(env_state["episode_length"])
        tensors["env/obs"] = torch.from_numpy(np.ascontiguousarray(self.obs))
        if self.config.task_switch_grace > 0:  # runs without a switch grace keep their checkpoint layout
            tensors["env/grace_left"] = torch.from_numpy(env_state["grace_left"])
        tensors["torch_rng"] = torch.get_rng_state()
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_run_config(),
            "experiment": self.experiment.name,
            "task_names": self.task_names,
            "obs_dim": self.obs_dim,
            "act_dim": self.env.act_dim,
            "policy_in": self.policy_in,
            "iteration": self.iteration,
            "samples": self.samples,
            "samples_real": self.samples_real,
            "reverts": self.reverts,
            "revert_streak": self.revert_streak,
            "accepted_return": _json_float(self.accepted_return),
            "accepted_samples": self.accepted_samples,
            "split_done": self.split_done,
            "optimizer": opt_meta,
            "rng": self.rng.bit_generator.state,
            "env_rng": env_state["rng"],
            "env_switch_rng": env_state["switch_rng"],
            "task_returns": [list(d) for d in self.task_returns],
            "task_lengths": [list(d) for d in self.task_lengths],
            "pooled_returns": list(self.pooled_returns),
        }
        return tensors, metadata

    def save(self) -> Path:
        """Write a checkpoint of everything a resume needs; keep the newest ``keep_checkpoints``. Never
        one of non-finite weights or normaliser (``_diverged``): rotation keeps the last finite one."""
        tensors, metadata = self._state_tensors()
        bad = [name for name, t in tensors.items() if name.startswith(("policy/", "value/", "obs_rms/"))
               and t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            self._diverged(f"the state to checkpoint ({', '.join(bad[:3])})", "too large a learning rate "
                           "(ppo.lr) or the robots' physics")
        # named by the real sample count: it only grows (the counted one rewinds on a revert), so the
        # newest checkpoint sorts last; without the revert rule the two counts are the same
        return self.run_dir.save_checkpoint(self.samples_real, tensors, metadata, keep=self.config.keep_checkpoints)

    def _load_latest(self) -> None:
        """Continue from the newest checkpoint that verifies (``RunDir.load_newest_checkpoint``)."""
        found = self.run_dir.load_newest_checkpoint(CHECKPOINT_FORMAT, foreign=self._foreign_reason)
        if found is None:  # interrupted before the first checkpoint: start over in the same directory
            self.run_dir.discard_after(0, split_done=False)
            if self._start is not None:
                self._load_start()
            return
        _, tensors, meta = found
        self._load_state(tensors, meta)
        self.run_dir.discard_after(self.iteration, self.split_done)
        columns = self.run_dir.metrics_columns()
        self.log_end_causes = columns is None or any(c.startswith("ended/") for c in columns)

    def _foreign_reason(self, meta: dict) -> str | None:
        """Why a training checkpoint's metadata is not of this run, or None when it is: its experiment,
        tasks and sizes, and every setting its recorded config resolves to (``_differences``; the budget
        aside, which a run may extend, and the result-neutral settings)."""
        differ = []
        if meta.get("experiment", self.experiment.name) != self.experiment.name:
            differ.append(f"experiment: it has {meta.get('experiment')!r}, this run {self.experiment.name!r}")
        if list(meta.get("task_names", self.task_names)) != self.task_names:
            differ.append(f"tasks: it has {meta.get('task_names')}, this run {self.task_names}")
        for name, here in (("obs_dim", self.obs_dim), ("act_dim", self.env.act_dim), ("policy_in", self.policy_in)):
            if meta.get(name, here) != here:
                differ.append(f"{name}: it has {meta.get(name)!r}, this run {here!r}")
        if isinstance(meta.get("config"), dict):
            try:
                diff = self._differences(meta["config"], "its recorded config",
                                         ignore=("start_from", "samples", "joint_samples"))
            except ValueError as exc:
                return f"its recorded config does not load here: {exc}"
            if isinstance(diff.get("ppo", (None,))[0], dict):  # name the PPO settings that differ
                a, b = diff.pop("ppo")
                diff.update({f"ppo.{k}": (a.get(k), v) for k, v in b.items() if a.get(k) != v})
            differ += [f"{name}: it has {short_repr(a)}, this run {short_repr(b)}" for name, (a, b) in diff.items()]
        return "; ".join(differ) or None

    # -- starting from another run's checkpoint (config.start_from) -----------------------------------
    # settings that shape the state a checkpoint carries: a run can start from it only if they agree
    START_SHAPE_SETTINGS = ("method", "envs_per_task", "split_value", "append_mode")
    START_SHAPE_PPO = ("optimizer", "policy_hidden", "value_hidden", "reward_norm", "obs_norm_update")

    def _read_start(self, source: str) -> tuple[Path, dict, dict]:
        """``(file, tensors, metadata)`` of ``config.start_from`` after checking that this run can
        start from it (ValueError naming what differs; nothing is written)."""
        path = Path(source).expanduser()
        if path.is_dir():
            newest = latest_checkpoint(path)
            if newest is None:
                raise ValueError(f"start_from {source!r}: the directory holds no checkpoint "
                                 f"(expected a run directory with checkpoints/ or a .safetensors file)")
            path = newest
        elif not path.is_file():
            raise ValueError(f"start_from {source!r} does not exist (give a training checkpoint file or a run directory)")
        try:
            tensors, meta = ckpt.load_checkpoint(path)
        except ckpt.CheckpointError as exc:
            raise ValueError(f"start_from {str(path)!r}: {exc}") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"start_from {str(path)!r} is not a training checkpoint (format "
                             f"{meta.get('format')!r}; an exported serving checkpoint cannot be trained on)")
        c, task = self.config, self.tasks[0]
        theirs, mine = meta.get("config") or {}, json.loads(json.dumps(c.to_run_config()))
        differ = []
        if len(meta["task_names"]) != self.n_tasks:
            differ.append(f"tasks: it has {meta['task_names']}, this run {self.task_names}")
        for name, here in (("obs_dim", task.obs_dim), ("act_dim", task.act_dim)):
            if meta.get(name) != here:
                differ.append(f"{name}: it has {meta.get(name)}, this run {here}")
        for name in self.START_SHAPE_SETTINGS:
            if theirs.get(name) != mine.get(name):
                differ.append(f"{name}: it has {theirs.get(name)!r}, this run {mine.get(name)!r}")
        for name in self.START_SHAPE_PPO:
            a, b = (theirs.get("ppo") or {}).get(name), mine["ppo"].get(name)
            if a != b:
                differ.append(f"ppo.{name}: it has {a!r}, this run {b!r}")
        if differ:
            raise ValueError(f"cannot start from {str(path)!r}: what shapes its state differs from this run's ("
                             + "; ".join(differ) + ")")
        if meta["samples"] >= c.samples:
            raise ValueError(f"cannot start from {str(path)!r}: it is at {meta['samples']:,} samples, this run's "
                             f"budget (samples) is {c.samples:,}; give a larger budget")
        return path, tensors, meta

    def _load_start(self) -> None:
        """This new run's state from ``config.start_from``; its metrics rows up to that checkpoint
        (when the task names agree) and its split file come along."""
        path, tensors, meta = self._start
        self._load_state(tensors, meta)
        source = path.parent.parent if path.parent.name == "checkpoints" else None
        if source is not None and list(meta["task_names"]) == self.task_names:
            columns = list(self._row(UpdateStats(0.0, 0.0, 0.0, 0.0), 1.0, 1.0))  # the rows this run writes
            self.run_dir.copy_metrics_from(RunDir(source), self.iteration, columns)
        if source is not None and self.split_done and RunDir(source).split_path.is_file():
            shutil.copyfile(RunDir(source).split_path, self.run_dir.split_path)

    def _load_state(self, tensors: dict, meta: dict) -> None:
        """Every piece of training state from a checkpoint's tensors and metadata."""
        group = lambda p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + "/")}  # noqa: E731
        self.policy.load_state_dict(group("policy"))
        self.value.load_state_dict(group("value"))
        self.obs_rms.load_state_dict(group("obs_rms"))
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(group("reward_norm"))
        self.optimizer.load_state_dict(ckpt.optimizer_state_from_tensors(tensors, meta["optimizer"], prefix="optim/"))
        self.spread.load_state_dict(group("spread"))
        self.env.set_state({"physics": tensors["env/physics"].numpy(),
                            "episode_return": tensors["env/episode_return"].numpy(),
                            "episode_length": tensors["env/episode_length"].numpy(), "rng": meta["env_rng"],
                            **({"switch_rng": meta["env_switch_rng"]} if "env_switch_rng" in meta else {}),
                            **({"grace_left": tensors["env/grace_left"].numpy()} if "env/grace_left" in tensors else {})})
        self.obs = tensors["env/obs"].numpy().copy()
        torch.set_rng_state(tensors["torch_rng"])
        self.rng.bit_generator.state = meta["rng"]
        self.iteration, self.samples, self.split_done = meta["iteration"], meta["samples"], meta["split_done"]
        # absent from checkpoints of runs without the revert rule: every sample was accepted
        self.samples_real = meta.get("samples_real", self.samples)
        self.reverts = meta.get("reverts", 0)
        self.revert_streak = meta.get("revert_streak", 0)
        self.accepted_samples = meta.get("accepted_samples", 0)
        accepted = meta.get("accepted_return", None)
        self.accepted_return = float("nan") if accepted == "nan" else accepted
        revert = group("revert")
        self.accepted_state = revert or None
        for d, values in zip(self.task_returns, meta["task_returns"]):
            d.extend(values)
        for d, values in zip(self.task_lengths, meta["task_lengths"]):
            d.extend(values)
        self.pooled_returns.extend(meta["pooled_returns"])

    # -- metrics --------------------------------------------------------------------------------------
    def _row(self, stats: UpdateStats, elapsed: float, rollout_time: float, reverted: bool = False) -> dict:
        row: dict = {"iteration": self.iteration, "samples": self.samples,
                     "phase": "specialized" if self.split_done else "joint",
                     "return_pooled": _mean(self.pooled_returns)}
        if self.config.revert_drop_bound != "off":
            row.update({"samples_real": self.samples_real, "reverted": int(reverted), "reverts": self.reverts})
        for name, returns, lengths in zip(self.task_names, self.task_returns, self.task_lengths):
            row[f"return/{name}"] = _mean(returns)
            row[f"length/{name}"] = _mean(lengths)
        if self.log_end_causes:  # this iteration's trajectories of each task ended by each cause
            for name, counts in zip(self.task_names, self.end_counts):
                row.update({f"ended/{name}/{cause}": int(n) for cause, n in zip(END_CAUSES, counts)})
        row.update({"policy_loss": stats.policy_loss, "value_loss": stats.value_loss,
                    "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction,
                    "action_std": float(torch.exp(self.policy.log_std().detach()).mean()),
                    "samples_per_s": self.batch / elapsed, "rollout_samples_per_s": self.batch / rollout_time})
        return row

    def _write_row(self, row: dict) -> None:
        self.run_dir.append_metrics(row, step=self.samples_real)

    # -- main loop ------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict:
        """Train to the budget and return the summary. ``should_stop()`` is asked after every
        iteration (and its ``progress`` call); when it is true the trainer writes a checkpoint, the
        summary and curve of the run so far, and raises ``Interrupted``. The caller owns process
        signals (``stop_signals.StopOnSignals`` for a command, an event for the learner node)."""
        try:
            self.begin()
            while not self.done:
                start = time.perf_counter()
                rollout = self.collect()
                rollout_time = time.perf_counter() - start
                batch = self.accept_rollout(rollout)
                stats = None if batch is None else self.update(batch, track_gradients=self.tracks_gradients())
                row = self.end_iteration(stats, time.perf_counter() - start, rollout_time)
                if self.progress:
                    self.progress(row)
                if should_stop():
                    self.stop()
            return self.finish()
        finally:
            self.close()

    # -- one iteration in steps (``run``; ``run_group.RunGroup`` interleaves several runs' steps) ---------
    @property
    def done(self) -> bool:
        """The run has reached its budget (counted samples)."""
        return self.samples >= self.config.samples

    def begin(self) -> None:
        """Before the first iteration: a run without a joint phase splits at once."""
        c = self.config
        if c.joint_samples == 0 and c.split_fraction > 0 and not self.split_done:
            self._split()

    def accept_rollout(self, rollout: Rollout) -> Batch | None:
        """Count the rollout's samples and apply the revert rule; the update's batch, or None when
        the iteration is rejected (no update)."""
        self.samples_real += self.batch
        bad = [name for name, x in (("observations", rollout.obs), ("rewards", rollout.rewards))
               if not np.isfinite(x).all()]
        if bad:
            self._diverged(f"the rollout's {' and '.join(bad)}", "the robots' physics (the experiment's masses, gears "
                           "and physics settings), or a policy whose actions grew without bound")
        if not self._accept_iteration():
            return None
        return self.prepare_batch(rollout)

    def end_iteration(self, stats: UpdateStats | None, elapsed: float, rollout_time: float) -> dict:
        """Count the iteration (``stats`` None: rejected), write its metrics row, split at the end of the
        joint phase, checkpoint when due; returns the row. ``elapsed``/``rollout_time``: s."""
        c = self.config
        if stats is not None:
            self._check_update(stats)
        self.iteration += 1
        if stats is None:
            row = self._row(REVERTED_STATS, elapsed, rollout_time, reverted=True)
            self._write_row(row)
            if self.iteration % c.checkpoint_every == 0:
                self.save()
            return row
        self.samples += self.batch
        row = self._row(stats, elapsed, rollout_time)
        self._write_row(row)
        if not self.split_done and c.split_fraction > 0 and self.samples >= c.joint_samples:
            self._split()
            self.save()
        elif self.iteration % c.checkpoint_every == 0 or self.samples >= c.samples:
            self.save()
        return row

    def stop(self) -> None:
        """Stop on request: checkpoint, summary and curve of the run so far, then ``Interrupted``."""
        self.save()
        self.finish()
        raise Interrupted(f"stopped after iteration {self.iteration} at {self.samples} samples; "
                          f"continue with --resume")

    def _accept_iteration(self) -> bool:
        """The revert rule (``revert_drop_bound``), checked after a rollout, before its update.

        The pooled return of the last 100 episodes (this rollout's included) is compared with the
        last accepted iteration's. A drop of more than the bound rejects the iteration: policy,
        value net and normaliser go back to their values at the last accepted rollout, the counted
        samples rewind to that point, and the update is skipped (the authors' ``reward_drop_bound``
        in ``pposgd_split.py``: Adam moments, the return buffer, the split masks and the score
        window are kept). Otherwise the iteration is accepted and becomes the new revert point."""
        bound = self.config.revert_drop_bound
        if bound == "off":
            return True
        pooled = _mean(self.pooled_returns)
        # comparisons with nan (no episode finished yet) are False: accepted, as the authors' np.mean
        if self.accepted_return is not None and pooled < self.accepted_return - bound:
            self.policy.restore_values({k[7:]: v for k, v in self.accepted_state.items() if k.startswith("policy/")})
            self.value.restore_values({k[6:]: v for k, v in self.accepted_state.items() if k.startswith("value/")})
            self.obs_rms.load_state_dict({k[8:]: v for k, v in self.accepted_state.items()
                                          if k.startswith("obs_rms/")})
            self.samples = self.accepted_samples
            self.reverts += 1
            self.revert_streak += 1
            if self.revert_streak >= self.config.revert_max_streak:
                self._fail(RevertLoop(
                    f"the revert rule rejected {self.revert_streak} iterations in a row (pooled return "
                    f"{pooled:.1f}, last accepted {self.accepted_return:.1f}, revert_drop_bound {bound:g}) at "
                    f"{self.samples_real:,} real samples: the restored policy does not get back within the "
                    f"bound. Stopped instead of looping (revert_max_streak {self.config.revert_max_streak}); "
                    f"the newest checkpoint is kept. A larger bound or revert_drop_bound: off lets such a run "
                    f"go on (as a new run)"))
            return False
        self.revert_streak = 0
        self.accepted_return = pooled
        self.accepted_samples = self.samples
        state = {f"policy/{k}": v for k, v in self.policy.snapshot_values().items()}
        state.update({f"value/{k}": v for k, v in self.value.snapshot_values().items()})
        state.update({f"obs_rms/{k}": v for k, v in self.obs_rms.state_dict().items()})
        self.accepted_state = state
        return True

    def _check_update(self, stats: UpdateStats) -> None:
        """``_diverged`` unless the update's losses and the networks' weights are finite."""
        losses = [name.replace("_", " ") for name in ("policy_loss", "value_loss")
                  if not math.isfinite(getattr(stats, name))]
        weights = [f"{prefix}/{name}" for prefix, net in (("policy", self.policy), ("value", self.value))
                   for name, p in net.named_parameters() if not torch.isfinite(p).all()]
        what = ([f"the {' and the '.join(losses)}"] if losses else []) + (
            [f"the weights {', '.join(weights[:3])}" + (" and more" if len(weights) > 3 else "")] if weights else [])
        if what:
            lr = self.config.ppo.lr
            self._diverged(" and ".join(what), f"too large a learning rate (ppo.lr {lr:g}; the default is "
                           f"{type(self.config.ppo)().lr:g}) or unscaled rewards (ppo.reward_norm)")

    def _diverged(self, what: str, likely: str) -> None:
        """Stop the run for good on non-finite numbers: failure.json, no checkpoint (the newest one,
        written before, is the last finite state), then ``errors.Diverged``."""
        newest = self.run_dir.checkpoint_paths()
        kept = (f"the last finite checkpoint {newest[-1].name} is kept: a new run can start from it "
                f"(--start-from {str(self.out_dir)!r}) with other settings") if newest else "no checkpoint was written"
        self._fail(Diverged(
            f"the run diverged in iteration {self.iteration + 1} ({self.samples_real:,} real samples): {what} "
            f"became non-finite (NaN or infinite). Likely cause: {likely}. Stopped; {kept}"), save=False)

    def _fail(self, error: Exception, save: bool = True) -> None:
        """Stop the run for good: a checkpoint of its state now (``save``: the policy the revert rule
        restored; a new run can start from it), failure.json naming the error (a resume is refused),
        then raise."""
        if save:
            self.save()
        self.run_dir.write_failure({"error": type(error).__name__, "message": str(error),
                                    "iteration": self.iteration, "samples": self.samples,
                                    "samples_real": self.samples_real,
                                    "return_pooled": _json_float(_mean(self.pooled_returns)),
                                    "accepted_return": _json_float(self.accepted_return)})
        raise error

    def finish(self) -> dict:
        """Write summary.json and learning_curve.png; return the summary (the paper's names, as the run's
        config.yaml: ``method`` ``ours`` for gradient_guided, ``jt``, ``sp``)."""
        summary = {
            "experiment": self.experiment.name, "method": self.method.file_name, "jt": self.config.joint_samples,
            "sp": self.config.split_fraction, "seed": self.config.seed, "samples": self.samples,
            "iterations": self.iteration, "samples_real": self.samples_real, "reverts": self.reverts,
            "profile": self.config.profile, "return_pooled": _mean(self.pooled_returns),
            "returns": {name: _mean(r) for name, r in zip(self.task_names, self.task_returns)},
        }
        tmp = self.run_dir.summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_finite_or_null(summary), indent=2, allow_nan=False))  # JSON has no NaN
        os.replace(tmp, self.run_dir.summary_path)
        from .plots import plot_run

        plot_run(self.out_dir)
        return summary


REVERTED_STATS = UpdateStats(*(float("nan"),) * 4)  # a rejected iteration has no update


def _finite_or_null(value):
    """``value`` (nested dicts and lists) with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_float(value: float | None) -> float | str | None:
    """A float for JSON metadata (nan as the string 'nan')."""
    return "nan" if value is not None and math.isnan(value) else value


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def run_training(config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 progress_callback: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Train one run to its budget (``Trainer(...).run(should_stop)``), for scripts; returns the summary."""
    return Trainer(config, out_dir, resume=resume, progress=progress_callback).run(should_stop=should_stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the CLI: mt-specialize train ...")
