"""Experiment runner: joint phase -> gradient score -> split -> specialization, baselines, resumable runs.

``Trainer.run`` is the loop; the pieces it runs are elsewhere: the run directory (``run_dir.RunDir``;
the layout is listed there), the checkpoint state and the checks of where a run begins
(``train_state``), the rollout's buffer, GAE and batch (``learning.rollout_buffer``), the update
(``learning.ppo_update``), the revert rule (``revert_rule``), the episode returns (``episodes``).

One iteration: a batched rollout of ``steps`` control steps on T tasks x E envs, (with a revert
bound) the check that the pooled return did not drop, the observation normaliser update, GAE, then
``epochs`` passes over the batch: mixed-task minibatches (``minibatch_per_task`` samples of every
task in each, one Adam step each) or, with the authors' optimiser, single-task minibatches stepped
task after task (``ppo.optimizer``); ``learning.ppo_update`` states the loss. The split comes when
``split_due`` says.

Sample counts: ``samples`` counts the samples of accepted iterations (it rewinds when the revert
rule rejects an iteration, as the authors counted); ``samples_real`` every env step taken. The
budget, the joint phase ``joint_samples`` and Table I read ``samples``; without a revert bound they are equal.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Generator

import numpy as np
import torch

from .config import TrainConfig, iteration_shape
from .episodes import EpisodeLog
from .errors import Diverged
from .envs.vec_env import MultiTaskVecEnv, StepResult
from .experiments import Experiment, apply_profile, get_experiment, resolved_physics, with_unrecorded_defaults
from .learning import checkpoint as ckpt
from .learning.batch import Batch
from .learning.inference import InferencePolicy
from .learning.normalize import RewardNormalizer, RunningMeanStd
from .learning.multi import BatchedRuns
from .learning.optim import RunAdam
from .learning.policy import SplitGaussianPolicy, SplitValue
from .learning.ppo_update import RunsBatch, UpdateStats, ppo_update
from .learning.rollout_buffer import PolicyInput, RolloutBuffer
from .learning.specialize import GradientSpread, random_split_masks, select_split_masks
from .methods import get_method
from .revert_rule import RevertRule
from .run_dir import (RunBusyError, RunDir, RunExistsError, RunFailedError, checkpoint_name,  # noqa: F401
                      checkpoint_paths, latest_checkpoint)
from .train_state import TrainState, json_float, open_run


class Interrupted(Exception):
    """Training stopped on request (``run``'s ``should_stop``) after writing a checkpoint."""


def split_due(config: TrainConfig, split_done: bool, samples: int) -> bool:
    """The split schedule: a run with ``split_fraction > 0`` splits once, when its counted ``samples``
    reach ``joint_samples`` (before the first iteration when that is 0; ``joint`` never splits: its
    fraction is 0)."""
    return config.split_fraction > 0 and not split_done and samples >= config.joint_samples


def _episode_ends(result: StepResult, time_limit: str) -> tuple[np.ndarray, np.ndarray]:
    """(terminal, cut), each (T, E) bool, of one step's trajectories: the time limit ends an episode
    bootstrapped from the state reached (``time_limit: bootstrap``: cut) or terminal as a fall
    (``'terminal'``); a task switch cuts the trajectory and always bootstraps."""
    if time_limit == "terminal":
        terminal = result.terminated | result.truncated
        return terminal, np.zeros_like(terminal) if result.switched is None else result.switched
    cut = result.truncated if result.switched is None else result.truncated | result.switched
    return result.terminated, cut


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
            start = open_run(self.run_dir, c, self.experiment, resume=resume)  # every check, before any write
            self._build(env)
            if start.state is not None:
                self._load(start.state)
            start.settle(self.run_dir, self.task_names, list(self._row(REVERTED_STATS, 1.0, 1.0)))  # its columns
            columns = self.run_dir.metrics_columns()  # a metrics.csv older than the end-cause columns keeps them out
            self.log_end_causes = columns is None or any(name.startswith("ended/") for name in columns)
        except BaseException:
            self.run_dir.discard_failed_start()  # nothing left that blocks the next start
            raise

    def _build(self, env=None) -> None:
        """Env, networks, optimiser, normaliser, generators and counters as a new run starts."""
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
        self.policy_input = PolicyInput(self.obs_rms, T, "normalize" if self.normalize_task_id
                                        else "append" if self.append_task_id else None)
        self.revert = RevertRule(None if c.revert_drop_bound == "off" else c.revert_drop_bound, c.revert_max_streak)
        self.episodes = EpisodeLog(T)
        self.iteration = 0
        self.samples = 0  # of accepted iterations
        self.samples_real = 0  # every env step
        self.split_done = False
        self.log_end_causes = True  # metrics.csv has the end-cause columns
        self.obs = self.env.reset()
        if c.ppo.obs_norm_update == "per_step":  # as VecNormalize.reset (a resume loads the saved statistics)
            self.policy_input.update(self.obs)

    def close(self) -> None:
        """Release the run directory (``run`` does it when it returns or raises)."""
        self.run_dir.close()

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict:
        """Train to the budget and return the summary. ``should_stop()`` is asked after every
        iteration (and its ``progress`` call); when it is true the trainer writes a checkpoint, the
        summary and curve of the run so far, and raises ``Interrupted``. The caller owns process
        signals (``stop_signals.StopOnSignals`` for a command, an event for the learner node).
        ``run_group.RunGroup.run`` is the same loop over several runs."""
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
                    self.save()
                    self.finish()
                    raise Interrupted(f"stopped after iteration {self.iteration} at {self.samples} samples; "
                                      f"continue with --resume")
            return self.finish()
        finally:
            self.close()

    @property
    def done(self) -> bool:
        """The run has reached its budget (counted samples)."""
        return self.samples >= self.config.samples

    def begin(self) -> None:
        """Before the first iteration: a run whose joint phase is over (none at all: jt 0) splits now."""
        if split_due(self.config, self.split_done, self.samples):
            self._split()

    def collect(self) -> RolloutBuffer:
        """Run ``steps`` control steps on every env (``RolloutBuffer`` lists the shapes). With
        ``ppo.obs_norm_update == 'per_step'`` the normaliser is updated with every step's new
        observations and the rollout carries the policy inputs as normalised when seen."""
        steps = self.collect_steps()
        action = next(steps)
        while True:
            try:
                action = steps.send(self.env.step(action))
            except StopIteration as done:
                return done.value

    def collect_steps(self) -> Generator[np.ndarray, StepResult, RolloutBuffer]:
        """``collect`` as a generator, for runs stepped together (``run_group``): yields each control
        step's actions (T, E, A) float32, is sent the env's ``StepResult`` for them, and returns the
        ``RolloutBuffer`` after ``steps`` steps."""
        c, ppo, T = self.config, self.config.ppo, self.n_tasks
        per_step = ppo.obs_norm_update == "per_step"
        rollout = RolloutBuffer.empty(self.steps, T, c.envs_per_task, self.obs_dim, self.env.act_dim,
                                      self.policy_in if per_step else None)
        self.episodes.new_iteration()
        with torch.no_grad():
            std = torch.exp(self.policy.log_std()).numpy()[:, None, :]  # (T, 1, A)
        # weights and normaliser are fixed during a rollout: materialise them once (NumPy float32 forward)
        inference = InferencePolicy(self.policy, self.obs_rms, self.task_names, self.obs_dim,
                                    append_task_id=self.append_task_id, normalize_task_id=self.normalize_task_id)
        noise = self.rng.standard_normal(rollout.actions.shape).astype(np.float32)
        self.env.switch_prob = c.task_switch_prob if self.samples >= c.task_switch_start else 0.0
        for t in range(self.steps):
            seen = self.policy_input(self.obs) if per_step else None  # (T, E, policy_in)
            mean = inference.mean_actions(self.obs) if seen is None else inference.mean_actions_normalized(seen)
            action = mean + std * noise[t]
            result = yield (np.clip(action, -1.0, 1.0) if ppo.clip_env_actions else action)
            if per_step:
                self.policy_input.update(result.obs)
            reward = result.reward
            if self.reward_normalizer is not None:
                reward = self.reward_normalizer(reward, result.terminated | result.truncated)
            terminal, cut = _episode_ends(result, c.time_limit)
            rollout.add(self.obs, action, reward, terminal, cut, obs_norm=seen)
            for i, e in zip(*np.nonzero(cut)):
                # a switch hands the robot to another task: with task_switch_bootstrap new_task its
                # trajectory so far is valued as that task will go on with it
                handed_over = (c.task_switch_bootstrap == "new_task" and result.switched is not None
                               and result.switched[i, e])
                k = int(result.switched_to[i, e]) if handed_over else int(i)
                final = result.final_obs[i, e].copy()
                if per_step:
                    final = self.policy_input(np.repeat(final[None, None], T, axis=0))[k, 0]
                rollout.add_cut(int(i), int(e), final, k)
            self.episodes.record(result)
            self.obs = result.obs
        rollout.finish(self.obs, self.policy_input(self.obs) if per_step else None)
        return rollout

    def accept_rollout(self, rollout: RolloutBuffer) -> Batch | None:
        """Count the rollout's samples and judge it by the revert rule; the update's batch, or None when
        the iteration is rejected (the networks and normaliser are back at the revert point, the counted
        samples rewound; no update)."""
        self.samples_real += self.batch
        bad = [name for name, x in (("observations", rollout.obs), ("rewards", rollout.rewards))
               if not np.isfinite(x).all()]
        if bad:
            self._diverged(f"the rollout's {' and '.join(bad)}", "the robots' physics (the experiment's masses, gears "
                           "and physics settings), or a policy whose actions grew without bound")
        pooled = self.episodes.pooled_return
        if not self.revert.judge(pooled, self.samples, self.policy, self.value, self.obs_rms):
            self.samples = self.revert.accepted_samples
            if self.revert.stuck:
                self._fail(self.revert.loop_error(pooled, self.samples_real))
            return None
        return self.prepare_batch(rollout)

    def prepare_batch(self, rollout: RolloutBuffer) -> Batch:
        """The update's batch (``RolloutBuffer.to_batch``). Per iteration (``ppo.obs_norm_update``) the
        normaliser first takes in the rollout's observations, and the whole batch is normalised with it."""
        if rollout.obs_norm is None:
            self.policy_input.update(np.moveaxis(rollout.obs[:-1], 1, 0).reshape(self.n_tasks, -1, self.obs_dim),
                                     with_torch=True)
        return rollout.to_batch(self.policy, self.value, self.policy_input, self.config.ppo)

    # -- update -----------------------------------------------------------------------------------------
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
        """Whether the next update records per-task gradients for the split score: a scoring method's
        joint phase, with its split still to come."""
        return self.method.scores_gradients and split_due(self.config, self.split_done, math.inf)

    def end_iteration(self, stats: UpdateStats | None, elapsed: float, rollout_time: float) -> dict:
        """Count the iteration (``stats`` None: rejected, no update), write its metrics row, split when
        due, checkpoint when due; returns the row. ``elapsed``/``rollout_time``: s."""
        if stats is not None:
            self._check_update(stats)
            self.samples += self.batch
        self.iteration += 1
        row = self._row(stats or REVERTED_STATS, elapsed, rollout_time, reverted=stats is None)
        self.run_dir.append_metrics(row, step=self.samples_real)
        if split_due(self.config, self.split_done, self.samples):  # a rejected iteration is below joint_samples
            self._split()
            self.save()
        elif self.iteration % self.config.checkpoint_every == 0 or self.done:
            self.save()
        return row

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
    def state(self) -> TrainState:
        """Everything a resume needs, as the checkpoint holds it."""
        env = self.env.get_state()
        if not self.config.task_switch_grace > 0:  # runs without a switch grace keep their checkpoint layout
            env.pop("grace_left", None)
        return TrainState(
            config=self.config.to_run_config(), experiment=self.experiment.name, task_names=self.task_names,
            obs_dim=self.obs_dim, act_dim=self.env.act_dim, policy_in=self.policy_in, iteration=self.iteration,
            samples=self.samples, samples_real=self.samples_real, split_done=self.split_done,
            policy=self.policy.state_dict(), value=self.value.state_dict(), optimizer=self.optimizer.state_dict(),
            obs_rms=self.obs_rms.state_dict(),
            reward_norm=None if self.reward_normalizer is None else self.reward_normalizer.state_dict(),
            spread=self.spread.state_dict(), **self.revert.state(), env=env, obs=self.obs,
            rng=self.rng.bit_generator.state, torch_rng=torch.get_rng_state(), **self.episodes.state())

    def _load(self, state: TrainState) -> None:
        """Go on from ``state`` (this run's own checkpoint, or another run's: ``train_state.open_run``)."""
        self.policy.load_state_dict(state.policy)
        self.value.load_state_dict(state.value)
        self.obs_rms.load_state_dict(state.obs_rms)
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state.reward_norm or {})
        self.optimizer.load_state_dict(state.optimizer)
        self.spread.load_state_dict(state.spread)
        self.revert.load(state.reverts, state.revert_streak, state.accepted_return, state.accepted_samples,
                         state.accepted_values)
        self.env.set_state(state.env)
        self.obs = state.obs
        torch.set_rng_state(state.torch_rng)
        self.rng.bit_generator.state = state.rng
        self.iteration, self.samples, self.split_done = state.iteration, state.samples, state.split_done
        self.samples_real = state.samples_real
        self.episodes.load(state.task_returns, state.task_lengths, state.pooled_returns)

    def save(self) -> Path:
        """Write a checkpoint of everything a resume needs; keep the newest ``keep_checkpoints``. Never
        one of non-finite weights or normaliser (``_diverged``): rotation keeps the last finite one."""
        tensors, metadata = self.state().to_checkpoint()
        bad = [name for name, t in tensors.items() if name.startswith(("policy/", "value/", "obs_rms/"))
               and t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            self._diverged(f"the state to checkpoint ({', '.join(bad[:3])})", "too large a learning rate "
                           "(ppo.lr) or the robots' physics")
        # named by the real sample count: it only grows (the counted one rewinds on a revert), so the
        # newest checkpoint sorts last; without the revert rule the two counts are the same
        return self.run_dir.save_checkpoint(self.samples_real, tensors, metadata, keep=self.config.keep_checkpoints)

    # -- metrics, summary, failures -------------------------------------------------------------------
    def _row(self, stats: UpdateStats, elapsed: float, rollout_time: float, reverted: bool = False) -> dict:
        """The iteration's metrics row: its columns are metrics.csv's."""
        row: dict = {"iteration": self.iteration, "samples": self.samples,
                     "phase": "specialized" if self.split_done else "joint",
                     "return_pooled": self.episodes.pooled_return}
        if self.revert.bound is not None:
            row.update({"samples_real": self.samples_real, "reverted": int(reverted), "reverts": self.revert.reverts})
        row.update(self.episodes.columns(self.task_names, end_causes=self.log_end_causes))
        row.update({"policy_loss": stats.policy_loss, "value_loss": stats.value_loss,
                    "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction,
                    "action_std": float(torch.exp(self.policy.log_std().detach()).mean()),
                    "samples_per_s": self.batch / elapsed, "rollout_samples_per_s": self.batch / rollout_time})
        return row

    def finish(self) -> dict:
        """Write summary.json and learning_curve.png; return the summary (the paper's names, as the run's
        config.yaml: ``method`` ``ours`` for gradient_guided, ``jt``, ``sp``)."""
        summary = {
            "experiment": self.experiment.name, "method": self.method.file_name, "jt": self.config.joint_samples,
            "sp": self.config.split_fraction, "seed": self.config.seed, "samples": self.samples,
            "iterations": self.iteration, "samples_real": self.samples_real, "reverts": self.revert.reverts,
            "profile": self.config.profile, "return_pooled": self.episodes.pooled_return,
            "returns": dict(zip(self.task_names, self.episodes.task_means())),
        }
        tmp = self.run_dir.summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_finite_or_null(summary), indent=2, allow_nan=False))  # JSON has no NaN
        os.replace(tmp, self.run_dir.summary_path)
        from .plots import plot_run

        plot_run(self.out_dir)
        return summary

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
                                    "return_pooled": json_float(self.episodes.pooled_return),
                                    "accepted_return": json_float(self.revert.accepted_return)})
        raise error


REVERTED_STATS = UpdateStats(*(float("nan"),) * 4)  # a rejected iteration has no update


def _finite_or_null(value):
    """``value`` (nested dicts and lists) with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_training(config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 progress_callback: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Train one run to its budget (``Trainer(...).run(should_stop)``), for scripts; returns the summary."""
    return Trainer(config, out_dir, resume=resume, progress=progress_callback).run(should_stop=should_stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the CLI: mt-specialize train ...")
