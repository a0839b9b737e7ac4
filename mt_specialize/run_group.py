"""Several runs trained in one process: one physics call and one PPO update per iteration for all of them.

A ``RunGroup`` holds K ordinary ``Trainer``s (each with its own run directory, config, masks, split
time, normalisers, generators, revert decisions and checkpoints) and trains them in lockstep:

* the rollout steps every run's envs in one ``mujoco.rollout`` call per control step
  (``envs.multi_run.MultiRunVecEnv``; each trainer sees its own run through a ``RunEnvView``);
* the update is one ``learning.ppo_update.ppo_update`` over the runs whose iteration was accepted
  (``Trainer.update_runs``): one batched forward/backward and one fused Adam call serve all K
  parameter sets, which live in one ``learning.multi.BatchedRuns`` (each run's modules are views of its slot).

Exactness: a run trained in a group writes the same checkpoints and metrics as the same config
trained alone, bit for bit (the speed columns aside): the env and the update are bit-identical per
run (``test/test_multi_run_env.py``, ``test/test_multi.py``), and the group gives each run its own
torch generator state (only network initialisation draws from it). ``test/test_run_group.py``
checks whole runs. The batched products need ``torch_threads: 1`` (the default), as a single run's.

Which runs batch (``batch_key``): runs of one experiment, profile, physics and PPO settings (the
learning-rate and clip values and schedules aside: they are per run), with the same batch size,
envs per task and network input (``append`` adds the task id to the input, so append runs batch
only with append runs of the same ``append_mode``). Seeds, methods, joint samples, split fractions,
split-score settings, ``split_value``, revert bounds, task-switch settings and budgets may differ.
A run that reaches its budget leaves the group (its envs are dropped, the others' states carried
over); a stop request checkpoints every run, and each resumes alone or in any group.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import TrainConfig, iteration_shape
from .errors import StoppedForGood
from .envs.multi_run import MultiRunVecEnv
from .envs.vec_env import StepResult
from .learning.checkpoint import CheckpointError
from .learning.multi import BatchedRuns
from .learning.ppo_update import UpdateStats
from .run_dir import RunFailedError
from .train import Interrupted, Trainer

__all__ = ["RunGroup", "RunEnvView", "batch_key", "group_configs", "run_groups"]

_BOOKKEEPING = threading.Lock()  # one run's bookkeeping at a time in the process (RunGroup._as_run)
MAX_RUNS = 100  # runs in one group (each holds its envs, networks and Adam: ~120 MB at 16 envs per task)
# errors of one run's own files: a group goes on without that run (any other error stops the group)
RUN_ERRORS = (CheckpointError, RunFailedError)

# PPO settings applied per run by the batched update (Trainer.schedule); every other PPO setting is shared
PER_RUN_PPO = {"lr", "lr_schedule", "clip", "clip_schedule"}
# run settings that may differ within a group (each run applies its own)
PER_RUN_SETTINGS = {"seed", "method", "joint_samples", "split_fraction", "split_value", "split_count", "score_window",
                    "score_statistic", "samples", "checkpoint_every", "keep_checkpoints", "physics_threads",
                    "revert_drop_bound", "revert_max_streak", "task_switch_prob", "task_switch_start",
                    "task_switch_grace", "task_switch_bootstrap", "start_from", "ppo"}


def batch_key(config: TrainConfig) -> tuple:
    """What runs trained in one group must share: two configs with equal keys batch (as resolved).

    The experiment, profile, physics (every task's resolved physics), batch size, envs per task,
    torch threads, append mode and whether the method appends the task id to the network input,
    and every PPO setting but the learning rate and clip range and their schedules."""
    from .experiments import get_experiment
    from .methods import get_method

    experiment = get_experiment(config.experiment)
    config = config.resolved(experiment.budget, experiment.batch_size)
    data = config.to_dict()
    # task_physics follows from experiment, profile and physics (and is only recorded by a trainer)
    shared = {k: v for k, v in data.items() if k not in PER_RUN_SETTINGS and k != "task_physics"}
    shared["ppo"] = {k: v for k, v in asdict(config.ppo).items() if k not in PER_RUN_PPO}
    shared["task_id_input"] = get_method(config.method).task_id_input
    return tuple(sorted((k, repr(v)) for k, v in shared.items()))


def group_configs(configs: Sequence[TrainConfig], max_runs: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` grouped by ``batch_key``, in first-seen order, each group at most
    ``max_runs`` long (None: no bound). A config that does not resolve is a group of its own."""
    if max_runs is not None and max_runs < 1:
        raise ValueError(f"max_runs must be >= 1 or None, got {max_runs!r}")
    groups: dict[tuple, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, config in enumerate(configs):
        try:
            key = batch_key(config)
        except ValueError:  # a config that does not resolve goes alone (and fails with its reason when trained)
            key = ("unresolved", i)
        chunks = groups.setdefault(key, [])
        if not chunks or (max_runs is not None and len(chunks[-1]) >= max_runs):
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(i)
    return order


class RunEnvView:
    """Run ``k`` of a ``MultiRunVecEnv`` as a ``Trainer`` uses its own env: sizes, the initial reset,
    the switch probability, ``get_state``/``set_state`` (single-run format). The group steps it."""

    def __init__(self, env: MultiRunVecEnv, k: int, initial_obs: np.ndarray):
        self.env, self.k = env, k
        self.obs_dim, self.act_dim = env.obs_dim, env.act_dim
        self._initial_obs = initial_obs

    def reset(self) -> np.ndarray:
        """(T, E, obs_dim) the run's observations after the group's reset (only at the start)."""
        if self._initial_obs is None:
            raise RuntimeError("a grouped run's envs are reset by its group, once")
        obs, self._initial_obs = self._initial_obs, None
        return obs

    @property
    def switch_prob(self) -> float:
        return self.env.switch_prob[self.k]

    @switch_prob.setter
    def switch_prob(self, value: float) -> None:
        self.env.set_switch_prob(self.k, value)

    def get_state(self) -> dict:
        return self.env.get_state(self.k)

    def set_state(self, saved: dict) -> None:
        self.env.set_state(self.k, saved)

    def step(self, actions: np.ndarray) -> StepResult:
        raise RuntimeError("a grouped run's envs are stepped by its RunGroup")


class RunGroup:
    """Trains K runs in lockstep (module docstring). ``RunGroup(configs, out_dirs).run()``.

    configs: the runs' ``TrainConfig``s (one ``batch_key``); out_dirs: their run directories;
    resume: continue each run from its newest checkpoint (as ``Trainer``), one flag for all or one per
    run; progress: called after each run's iteration with (its position in ``configs``, metrics row).
    """

    def __init__(self, configs: Sequence[TrainConfig], out_dirs: Sequence[str | Path], *,
                 resume: bool | Sequence[bool] = False, progress: Callable[[int, dict], None] | None = None):
        configs, out_dirs = list(configs), [Path(d) for d in out_dirs]
        if not configs or len(configs) != len(out_dirs):
            raise ValueError(f"a run group needs one run directory per config, got {len(configs)} configs and "
                             f"{len(out_dirs)} directories")
        resume = [bool(resume)] * len(configs) if isinstance(resume, bool) else [bool(r) for r in resume]
        if len(resume) != len(configs):
            raise ValueError(f"resume needs one flag per run ({len(configs)}), got {len(resume)}")
        if len(set(map(str, out_dirs))) != len(out_dirs):
            raise ValueError(f"the runs of a group need distinct run directories, got {[str(d) for d in out_dirs]}")
        if len(configs) > MAX_RUNS:
            raise ValueError(f"a run group trains at most {MAX_RUNS} runs in one process, got {len(configs)}: "
                             f"train them in several processes")
        self.progress = progress
        self.trainers: list[Trainer] = []  # the unfinished runs
        self.indices: list[int] = []  # their positions in the configs given
        self.torch_rng: list[torch.Tensor] = []  # each run's own torch generator state
        # position given -> the run's summary, or {'failed': reason, 'run': directory} (``run``'s answer)
        self.summaries: dict[int, dict] = {}
        try:
            self._build(configs, out_dirs, resume)
        except BaseException:
            self.close()
            raise

    def _build(self, configs, out_dirs, resume) -> None:
        from .experiments import apply_profile, get_experiment

        experiment = get_experiment(configs[0].experiment)
        resolved = [c.resolved(experiment.budget, experiment.batch_size) for c in configs]
        keys = [dict(batch_key(c)) for c in resolved]
        differ = sorted({name for key in keys[1:] for name in key if key[name] != keys[0].get(name)})
        if differ:
            raise ValueError(f"runs batched in one group must share the experiment, profile, physics, batch shape and "
                             f"PPO settings (lr and clip aside); these differ: {differ}")
        first = resolved[0]
        iteration_shape(first, len(experiment.tasks))  # before the envs are made: an iteration must fit
        tasks = list(apply_profile(experiment, first.profile, first.physics).tasks)
        self.env = MultiRunVecEnv(tasks, first.envs_per_task, [c.seed for c in configs], nthread=first.physics_threads,
                                  switch_prob=[c.task_switch_prob for c in configs],
                                  switch_grace=[c.task_switch_grace for c in configs])
        initial = self.env.reset()
        slots = []  # env slot of each trainer
        for k, (config, out_dir) in enumerate(zip(configs, out_dirs)):
            view = RunEnvView(self.env, k, initial[k].copy())
            try:
                trainer = Trainer(config, out_dir, resume=resume[k], env=view)
            except RUN_ERRORS as exc:  # e.g. no checkpoint of its own: that run stops, the others go on
                self.summaries[k] = _failed(exc, out_dir)
                continue
            self.trainers.append(trainer)
            self.indices.append(k)
            slots.append(k)
            self.torch_rng.append(torch.get_rng_state())
        if self.summaries and self.trainers:  # the others' envs as they are now, in an env of their own
            self._rebuild_env(slots)
        if self.trainers:
            self._build_networks()

    def _build_networks(self) -> None:
        """Bind the group's runs to one batch (slot k = run k): their networks and Adam state move into it."""
        runs = BatchedRuns([(t.policy, t.value, t.optimizer) for t in self.trainers])
        for k, t in enumerate(self.trainers):
            t.batched, t.slot = runs, k

    def close(self) -> None:
        for trainer in self.trainers:
            trainer.close()

    @property
    def failed(self) -> dict[int, dict]:
        """The runs that stopped (could not resume, or stopped for good): position given -> record."""
        return {i: s for i, s in self.summaries.items() if "failed" in s}

    def _as_run(self, k: int, fn, *args):
        """Call ``fn`` with run k's torch generator state in place (checkpoints record it). Held under
        one process-wide lock: groups on several threads (``run_groups``) take turns for a run's
        bookkeeping (metrics, split, checkpoints, pyplot figures), not for physics or updates."""
        with _BOOKKEEPING:
            torch.set_rng_state(self.torch_rng[k])
            try:
                return fn(*args)
            finally:
                self.torch_rng[k] = torch.get_rng_state()

    # -- one iteration ----------------------------------------------------------------------------------
    def collect(self) -> list:
        """Every run's rollout, their envs stepped together (``Trainer.collect_steps``)."""
        steps = [t.collect_steps() for t in self.trainers]
        actions = np.stack([next(s) for s in steps])
        rollouts = [None] * len(steps)
        while any(r is None for r in rollouts):
            result = self.env.step(actions)
            for k, s in enumerate(steps):
                try:
                    actions[k] = s.send(result.run(k))
                except StopIteration as done:
                    rollouts[k] = done.value
        return rollouts

    def update(self, batches: list) -> list[UpdateStats | None]:
        """``Trainer.update`` of every run with a batch (None: rejected iteration, no update), batched."""
        return Trainer.update_runs(self.trainers, batches,
                                   [b is not None and t.tracks_gradients() for t, b in zip(self.trainers, batches)])

    def _each(self, method: str, per_run: Sequence | None = None, *args) -> list:
        """``trainer.<method>(per_run[k], *args)`` (``(*args)`` without ``per_run``) of every run k, with
        its torch generator state in place (``_as_run``). A run that stops for good
        (``errors.StoppedForGood``: the revert rule's loop, a divergence; its failure.json is written)
        leaves the group and the others go on. Returns the remaining runs' results, in their order."""
        results, leaving = [], []
        for k, trainer in enumerate(self.trainers):
            try:
                own = () if per_run is None else (per_run[k],)
                results.append(self._as_run(k, getattr(trainer, method), *own, *args))
            except StoppedForGood as exc:
                self.summaries[self.indices[k]] = _failed(exc, trainer.out_dir)
                leaving.append(k)
        self._drop(leaving)
        return results

    def _finish_done(self) -> None:
        """Finish the runs that reached their budget (their summaries) and go on without them."""
        done = [k for k, t in enumerate(self.trainers) if t.done]
        for k in done:
            self.summaries[self.indices[k]] = self._as_run(k, self.trainers[k].finish)
        self._drop(done)

    def _drop(self, leaving: list[int]) -> None:
        """Close the runs at positions ``leaving`` and go on without them (the others' envs carried over)."""
        for k in leaving:
            self.trainers[k].close()
        if not leaving:
            return
        keep = [k for k in range(len(self.trainers)) if k not in leaving]
        self.trainers = [self.trainers[k] for k in keep]
        self.indices = [self.indices[k] for k in keep]
        self.torch_rng = [self.torch_rng[k] for k in keep]
        if self.trainers:  # the others' envs carried over into an env of their own
            self._rebuild_env(keep)
            self._build_networks()

    def _rebuild_env(self, slots: list[int]) -> None:
        """A new env for ``self.trainers``, trainer k's envs in the state of slot ``slots[k]`` of the
        current env (the same runs, stepping on as they would have)."""
        old = self.env
        states = [old.get_state(k) for k in slots]
        self.env = MultiRunVecEnv(old.tasks, old.envs_per_task, [t.config.seed for t in self.trainers],
                                  nthread=old.nthread,
                                  switch_prob=[t.config.task_switch_prob for t in self.trainers],
                                  switch_grace=[t.config.task_switch_grace for t in self.trainers])
        for k, (t, state) in enumerate(zip(self.trainers, states)):
            self.env.set_state(k, state)
            self.env.set_switch_prob(k, old.switch_prob[slots[k]])
            t.env = RunEnvView(self.env, k, None)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> list[dict]:
        """Train every run to its budget; returns their summaries in the order given (a run that stopped
        for good, ``errors.StoppedForGood``, or could not resume from a checkpoint of its own:
        ``{'failed': reason, 'run': directory}``, the others go on). ``should_stop()``
        is asked after every iteration: when true, every unfinished run writes a checkpoint, summary
        and curve, and ``Interrupted`` is raised (each resumes with ``resume=True``, alone or grouped).
        The loop of ``Trainer.run``, over the runs together."""
        try:
            self._each("begin")
            self._finish_done()
            while self.trainers:
                start = time.perf_counter()
                rollouts = self.collect()
                rollout_time = time.perf_counter() - start
                batches = self._each("accept_rollout", rollouts)
                if not self.trainers:
                    break
                stats = self.update(batches)
                rows = self._each("end_iteration", stats, time.perf_counter() - start, rollout_time)
                if self.progress:
                    for i, row in zip(self.indices, rows):
                        self.progress(i, row)
                self._finish_done()
                if self.trainers and should_stop():
                    self._each("save")
                    self._each("finish")
                    raise Interrupted(f"stopped the group's {len(self.trainers)} unfinished runs at "
                                      f"{[t.samples for t in self.trainers]} samples; continue with --resume")
            return [self.summaries[i] for i in sorted(self.summaries)]
        finally:
            self.close()


def _failed(error: Exception, run_dir) -> dict:
    """A run's answer when it stopped (a run group goes on without it)."""
    return {"failed": f"{type(error).__name__}: {error}", "run": str(run_dir)}


def run_groups(groups: Sequence[RunGroup], should_stop: Callable[[], bool] = lambda: False) -> list[list[dict]]:
    """Train several groups at once, one Python thread each: MuJoCo's rollout and torch's and NumPy's
    kernels release the GIL, so two groups keep two cores busy where one group's update uses one
    (build each group's env with ``physics_threads: 1``). Each run's results are those it gets alone.
    Returns each group's summaries. When one group stops (a stop request, or an error) the others
    are asked to stop too; then ``Interrupted`` or the first error is raised."""
    if len(groups) == 1:
        return [groups[0].run(should_stop)]
    stop_all = threading.Event()

    def stop() -> bool:
        return stop_all.is_set() or should_stop()

    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="run-group") as pool:
        futures = [pool.submit(g.run, stop) for g in groups]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            stop_all.set()
        wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    failures = [e for e in errors if not isinstance(e, Interrupted)]
    if failures:
        raise failures[0]
    if errors:
        raise Interrupted("; ".join(str(e) for e in errors))
    return [f.result() for f in futures]
