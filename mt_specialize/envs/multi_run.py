"""K independent runs' multi-task envs stepped by one ``mujoco.rollout`` call per control step.

A run is what one ``MultiTaskVecEnv(tasks, envs_per_task, seed=seed_k)`` holds: T tasks x E envs,
one reset generator per task (``SeedSequence(seed_k).spawn(T)``), one task-switch generator
(``SeedSequence([seed_k, 0x5717C4])``). ``MultiRunVecEnv`` holds K such runs as the K*T task rows of
one engine (the ``MultiTaskVecEnv`` code, rows ordered run-major: row k*T + i is run k's task i), so
one native rollout call and one NumPy pass serve every run. Each run keeps its own generators, its
own task-switch probability and grace, and switches only among its own tasks.

Run k's observations, rewards, terminations, resets, switches and state are bit-identical to those of
a single ``MultiTaskVecEnv(seed=seed_k)`` given the same actions: the physics is per env (zero
warm-start, ``vec_env``), the rules are elementwise per row, and each run draws from its own
generators in the single-run order. ``get_state(k)`` / ``set_state(k, saved)`` take and give exactly
the single-run env's state, so a run's checkpoint is a single-run checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .tasks import TaskSpec
from .vec_env import MultiTaskVecEnv, StepResult


def _check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def _check_grace(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < np.inf:
        raise ValueError(f"{name} must be a non-negative finite number of seconds, got {value!r}")
    return float(value)


def _per_run(name: str, value, n_runs: int) -> list:
    """``value`` as a list of one entry per run: a scalar is every run's, a sequence must have K entries."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n_runs:
            raise ValueError(f"{name} needs one value per run ({n_runs}), got {len(value)}")
        return list(value)
    return [value] * n_runs


class _RunRows(MultiTaskVecEnv):
    """The engine: a ``MultiTaskVecEnv`` over K copies of the tasks (K*T rows) whose reset
    generators are the runs' own and whose task switches are per run (``MultiRunVecEnv``)."""

    def __init__(self, tasks: Sequence[TaskSpec], envs_per_task: int, seeds: Sequence[int],
                 nthread: int | None, switch_prob: list[float], switch_grace: list[float]):
        n_runs, n_tasks = len(seeds), len(tasks)
        super().__init__(list(tasks) * n_runs, envs_per_task, seed=0, nthread=nthread)
        self.n_runs, self.run_tasks = n_runs, n_tasks
        self._rngs = [np.random.default_rng(s) for seed in seeds for s in np.random.SeedSequence(seed).spawn(n_tasks)]
        self._switch_rngs = [np.random.default_rng(np.random.SeedSequence([seed, 0x5717C4])) for seed in seeds]
        # a run switches among its own tasks' robot groups (local task indices), when built with switches
        # (robot_groups over K*T rows groups the K copies of a task together; its rows of run 0 are the
        # groups a single-run env of these tasks finds, in its order)
        own_groups = [g[g < n_tasks] for g in self.robot_groups() if (g < n_tasks).sum() > 1]
        self.run_switch_groups = [own_groups if p > 0 else [] for p in switch_prob]
        for seed, p, groups in zip(seeds, switch_prob, self.run_switch_groups):
            if p > 0 and not groups:
                raise ValueError(f"task switches (run of seed {seed}) need two tasks that drive the same robot; "
                                 f"tasks {[t.name for t in tasks]} all drive different robots")
        self.run_switch_prob = list(switch_prob)
        self.run_switch_grace = list(switch_grace)
        self.switch_active = [False] * n_runs  # per run: did its switch rule run in the last step

    def _switch(self, done: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each run's switches as ``MultiTaskVecEnv._switch`` makes them, from its own generator and among
        its own tasks. Returns (K*T, E) masks with run-local task indices in switched_to, or None."""
        T, E = self.run_tasks, self.envs_per_task
        self.switch_active = [bool(groups) and p != 0
                              for groups, p in zip(self.run_switch_groups, self.run_switch_prob)]
        if not any(self.switch_active):
            return None
        switched = np.zeros((self.n_tasks, E), dtype=bool)
        switched_to = np.full((self.n_tasks, E), -1, dtype=np.int64)
        for k in np.flatnonzero(self.switch_active):
            rng, p, first = self._switch_rngs[k], self.run_switch_prob[k], k * T
            for group in self.run_switch_groups[k]:
                for e in np.flatnonzero(rng.random(E) < p):
                    i, j = rng.choice(group, size=2, replace=False)
                    if done[first + i, e] or done[first + j, e]:
                        continue
                    a, b = (first + i) * E + e, (first + j) * E + e
                    self.state[[a, b]] = self.state[[b, a]]
                    switched[first + i, e] = switched[first + j, e] = True
                    switched_to[first + i, e], switched_to[first + j, e] = j, i
            grace = self.run_switch_grace[k]
            if grace > 0:
                rows = slice(first, first + T)
                run_switched = switched[rows]
                self.grace_left[rows][run_switched] = np.rint(grace / self._dt[rows].repeat(E, 1))[run_switched]
        return switched, switched_to


@dataclass
class MultiRunStepResult:
    """One control step of K runs (``MultiRunVecEnv.step``); K runs, T tasks, E envs per task.

    obs, final_obs: (K, T, E, obs_dim); reward: (K, T, E) float; terminated, truncated: (K, T, E) bool
    finished:       per run, per task, list of (return, length) of the episodes that ended this step
    switched:       (K, T, E) bool, or None when no run's switch rule ran this step
    switched_to:    (K, T, E) int, run-local task index now driving a switched env's robot, -1 elsewhere
    switch_active:  per run, whether its switch rule ran (a single-run env reports None otherwise)
    end_cause:      (K, T, E) int8, why each env's trajectory ended (``tasks.END_CAUSES``; 0 none)
    Each field means what ``StepResult``'s does; ``run(k)`` is run k's single-run ``StepResult``.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    finished: list[list[list[tuple[float, int]]]]
    switched: np.ndarray | None
    switched_to: np.ndarray | None
    switch_active: list[bool]
    end_cause: np.ndarray | None = None

    def run(self, k: int) -> StepResult:
        """Run k's step as its own ``MultiTaskVecEnv`` reports it (arrays are views)."""
        active = self.switch_active[k]
        return StepResult(obs=self.obs[k], reward=self.reward[k], terminated=self.terminated[k],
                          truncated=self.truncated[k], final_obs=self.final_obs[k], finished=self.finished[k],
                          switched=self.switched[k] if active else None,
                          switched_to=self.switched_to[k] if active else None,
                          end_cause=None if self.end_cause is None else self.end_cause[k])


class MultiRunVecEnv:
    """K runs x T tasks x E envs, auto-resetting, every run's envs stepped in one native call.

    Args:
        tasks: the T tasks every run trains (as ``MultiTaskVecEnv``).
        envs_per_task: E, envs per task in each run.
        seeds: the K runs' seeds; run k is ``MultiTaskVecEnv(tasks, envs_per_task, seed=seeds[k])``.
        nthread: MuJoCo rollout threads (default as ``MultiTaskVecEnv``).
        switch_prob: task-switch probability per control step and env (``MultiTaskVecEnv``): one value for
            every run or one per run. A run built with 0 never switches (as a single-run env);
            ``set_switch_prob`` changes a run's value later.
        switch_grace: s of switch grace (``MultiTaskVecEnv``): one value for every run or one per run.
    """

    def __init__(self, tasks: Sequence[TaskSpec], envs_per_task: int, seeds: Sequence[int],
                 nthread: int | None = None, switch_prob: float | Sequence[float] = 0.0,
                 switch_grace: float | Sequence[float] = 0.0):
        seeds = list(seeds)
        if not seeds:
            raise ValueError("MultiRunVecEnv needs at least one run seed")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"run seeds must be non-negative integers, got {seed!r}")
        if not tasks:
            raise ValueError("MultiRunVecEnv needs at least one task")
        probs = [_check_probability("switch_prob", p) for p in _per_run("switch_prob", switch_prob, len(seeds))]
        graces = [_check_grace("switch_grace", g) for g in _per_run("switch_grace", switch_grace, len(seeds))]
        self.seeds = [int(s) for s in seeds]
        self._engine = _RunRows(tasks, envs_per_task, self.seeds, nthread, probs, graces)
        engine = self._engine
        self.tasks = list(tasks)
        self.n_runs, self.n_tasks, self.envs_per_task = len(seeds), len(self.tasks), engine.envs_per_task
        self.obs_dim, self.act_dim, self.nthread = engine.obs_dim, engine.act_dim, engine.nthread
        self.models = engine.models[:self.n_tasks]

    @property
    def switch_prob(self) -> tuple[float, ...]:
        """Each run's current task-switch probability."""
        return tuple(self._engine.run_switch_prob)

    def set_switch_prob(self, k: int, switch_prob: float) -> None:
        """Set run k's task-switch probability (as assigning a single-run env's ``switch_prob``)."""
        self._engine.run_switch_prob[self._run_index(k)] = _check_probability("switch_prob", switch_prob)

    def _run_index(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.n_runs:
            raise ValueError(f"run index must be an integer in [0, {self.n_runs}), got {k!r}")
        return int(k)

    def _rows(self, k: int) -> slice:
        return slice(k * self.n_tasks, (k + 1) * self.n_tasks)

    def _split(self, array: np.ndarray) -> np.ndarray:
        """(K*T, E, ...) -> (K, T, E, ...) view."""
        return array.reshape(self.n_runs, self.n_tasks, *array.shape[1:])

    # -- state views ------------------------------------------------------------------------------
    def qpos(self) -> np.ndarray:
        """(K, T, E, nq) current qpos."""
        return self._split(self._engine.qpos())

    def qvel(self) -> np.ndarray:
        """(K, T, E, nv) current qvel."""
        return self._split(self._engine.qvel())

    def observe(self) -> np.ndarray:
        """(K, T, E, obs_dim) observations of the current state."""
        return self._split(self._engine.observe())

    @property
    def episode_return(self) -> np.ndarray:
        """(K, T, E) return so far of each env's episode (a view)."""
        return self._split(self._engine.episode_return)

    @property
    def episode_length(self) -> np.ndarray:
        """(K, T, E) control steps so far of each env's episode (a view)."""
        return self._split(self._engine.episode_length)

    # -- stepping ---------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every env of every run; returns obs (K, T, E, obs_dim)."""
        return self._split(self._engine.reset())

    def step(self, actions: np.ndarray) -> MultiRunStepResult:
        """Advance every env of every run by one control step.

        actions: (K, T, E, act_dim), unclipped (as ``MultiTaskVecEnv.step``).
        """
        actions = np.asarray(actions, dtype=np.float64)
        shape = (self.n_runs, self.n_tasks, self.envs_per_task, self.act_dim)
        if actions.shape != shape:
            raise ValueError(f"actions must have shape {shape} (runs, tasks, envs per task, action size), "
                             f"got {actions.shape}")
        result = self._engine.step(actions.reshape(-1, self.envs_per_task, self.act_dim))
        T = self.n_tasks
        return MultiRunStepResult(
            obs=self._split(result.obs), reward=self._split(result.reward),
            terminated=self._split(result.terminated), truncated=self._split(result.truncated),
            final_obs=self._split(result.final_obs),
            finished=[result.finished[k * T:(k + 1) * T] for k in range(self.n_runs)],
            switched=None if result.switched is None else self._split(result.switched),
            switched_to=None if result.switched_to is None else self._split(result.switched_to),
            switch_active=list(self._engine.switch_active),
            end_cause=None if result.end_cause is None else self._split(result.end_cause))

    # -- checkpointing ----------------------------------------------------------------------------
    def get_state(self, k: int) -> dict:
        """Run k's state, exactly as its single-run ``MultiTaskVecEnv.get_state`` returns it."""
        k, engine = self._run_index(k), self._engine
        rows, T, E = self._rows(k), self.n_tasks, self.envs_per_task
        return {
            "physics": engine.state[k * T * E:(k + 1) * T * E].copy(),
            "episode_return": engine.episode_return[rows].copy(),
            "episode_length": engine.episode_length[rows].copy(),
            "rng": [rng.bit_generator.state for rng in engine._rngs[rows]],
            "switch_rng": engine._switch_rngs[k].bit_generator.state,
            "grace_left": engine.grace_left[rows].copy(),
        }

    def set_state(self, k: int, saved: dict) -> None:
        """Give run k a state of the single-run format (``MultiTaskVecEnv.set_state``); other runs keep theirs."""
        k, engine = self._run_index(k), self._engine
        rows, T, E = self._rows(k), self.n_tasks, self.envs_per_task
        physics = np.asarray(saved["physics"], dtype=np.float64)
        if physics.shape != (T * E, engine.nstate):
            raise ValueError(f"saved env state has shape {physics.shape}, a run of this env needs "
                             f"{(T * E, engine.nstate)} (different tasks or envs_per_task?)")
        if len(saved["rng"]) != T:
            raise ValueError(f"saved env state has {len(saved['rng'])} reset generators, a run of this env has {T}")
        engine.state[k * T * E:(k + 1) * T * E] = physics
        engine.episode_return[rows] = np.asarray(saved["episode_return"])
        engine.episode_length[rows] = np.asarray(saved["episode_length"])
        for rng, rng_state in zip(engine._rngs[rows], saved["rng"]):
            rng.bit_generator.state = rng_state
        if "switch_rng" in saved:  # absent from checkpoints of runs without task switches
            engine._switch_rngs[k].bit_generator.state = saved["switch_rng"]
        if "grace_left" in saved:  # absent from checkpoints written without a switch grace
            engine.grace_left[rows] = np.asarray(saved["grace_left"])
