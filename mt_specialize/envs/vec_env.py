"""Batched multi-task physics: T tasks x E envs stepped by one engine call per control step.

This is the hot path of training. Every env's whole physics state lives in one array
``state (T*E, nstate)`` (MuJoCo's ``mjSTATE_FULLPHYSICS`` layout: time, qpos, qvel, whatever the
engine); a control step hands all of them, with the actions, to the tasks' physics engine
(``engine.batch_stepper``: MuJoCo's native multi-threaded rollout by default, ``mujoco_engine``; DART in
worker processes for ``engine: dart``, ``dart_engine``). Rewards, terminations and observations are
then computed with NumPy on whole task slices.

A control step is a pure function of (qpos, qvel, action) on every engine. The rewards and
terminations are ``tasks``' rules reading the same named quantities (``planar``), so a batched env and
a single ``tasks.TaskRobot`` (``TaskEnv``, the simulator node) given the same actions produce
bit-identical trajectories, whatever the thread count and scheduling.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import mujoco
import numpy as np

from . import engine, planar
from . import tasks as task_rules
from .tasks import TaskSpec

_FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS

@dataclass
class StepResult:
    """What one control step of ``MultiTaskVecEnv`` returns. T tasks, E envs per task.

    obs:          (T, E, obs_dim) observation to act on next (after auto-reset of finished envs)
    reward:       (T, E) reward of the step just taken
    terminated:   (T, E) the task's termination rule fired (no bootstrap)
    truncated:    (T, E) the horizon was reached without termination (bootstrap from final_obs)
    final_obs:    (T, E, obs_dim) observation reached by the step, before any reset or switch
    finished:     per task, list of (return, length) of the episodes that ended this step
    switched:     (T, E) the env's robot state was handed to another task after the step (a task
                  switch, ``switch_prob``): its trajectory is cut there like a truncation (bootstrap
                  from final_obs), and obs is the state it takes over; the episode goes on
    switched_to:  (T, E) int, for a switched env the task that now drives the robot it had reached
                  (the other task of the swap, whose env holds final_obs now); -1 elsewhere
    end_cause:    (T, E) int8, why the env's trajectory ended this step (``tasks.END_CAUSES``: the
                  termination rule that fired, the time limit, or a switch); 0 where it goes on
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    finished: list[list[tuple[float, int]]] = field(default_factory=list)
    switched: np.ndarray | None = None
    switched_to: np.ndarray | None = None
    end_cause: np.ndarray | None = None


class MultiTaskVecEnv:
    """T tasks x E envs of each, auto-resetting, stepped in one batched native call.

    Args:
        tasks: the T tasks (same observation and action sizes; models of one size signature).
        envs_per_task: E, parallel envs per task.
        seed: seeds the reset noise (one independent generator per task) and the task switches.
        nthread: MuJoCo rollout threads (default: all cores, at most 2 per the machine here).
        switch_prob: task switches for tasks that drive the same robot (same robot, masses, gears and
            physics: e.g. biped forward and backward): after each control step, for each env index
            e and each such group, with this probability the states of env e of two of the group's
            tasks (drawn at random) are swapped, so each robot goes on under the other task, as
            when a policy server switches a walking robot's task. 0 = never.
        switch_grace: s after a switch during which the new task does not charge the robot for
            moving the wrong way: the direction * velocity term of the reward is floored at 0, so
            the momentum the robot was handed never makes falling (ending the episode) pay more
            than staying up while it turns round. 0 = the task's reward unchanged.
    """

    def __init__(self, tasks: Sequence[TaskSpec], envs_per_task: int, seed: int = 0,
                 nthread: int | None = None, switch_prob: float = 0.0, switch_grace: float = 0.0):
        if not tasks:
            raise ValueError("MultiTaskVecEnv needs at least one task")
        if envs_per_task < 1:
            raise ValueError(f"envs_per_task must be >= 1, got {envs_per_task}")
        self.tasks = list(tasks)
        self.n_tasks = len(self.tasks)
        self.envs_per_task = int(envs_per_task)
        self.models = [task.build_model() for task in self.tasks]
        first = self.models[0]
        for task, model in zip(self.tasks, self.models):
            sig = (model.nq, model.nv, model.nu, model.na)
            if sig != (first.nq, first.nv, first.nu, first.na):
                raise ValueError(
                    f"task {task.name!r} has (nq, nv, nu, na) = {sig}, but {self.tasks[0].name!r} has "
                    f"{(first.nq, first.nv, first.nu, first.na)}: tasks trained together need one size signature")
        self.nq, self.nv, self.nu = first.nq, first.nv, first.nu
        self.nstate = mujoco.mj_stateSize(first, _FULLPHYSICS)
        # a state row is [time, qpos (nq), qvel (nv)] (FULLPHYSICS without activations or plugins)
        time_size = mujoco.mj_stateSize(first, mujoco.mjtState.mjSTATE_TIME)
        if self.nstate != time_size + self.nq + self.nv:
            raise ValueError(f"models with activations or plugins are not supported (state size {self.nstate})")
        self._qpos_columns = slice(time_size, time_size + self.nq)
        self._qvel_columns = slice(time_size + self.nq, self.nstate)
        self.obs_dim = self.tasks[0].obs_dim
        self.act_dim = self.nu
        self.frame_skip = self.tasks[0].frame_skip
        if any(t.frame_skip != self.frame_skip for t in self.tasks):
            raise ValueError("all tasks of an experiment must share one frame_skip")
        self.start_heights = [float(planar.height(m.qpos0)) for m in self.models]
        # per-task parameters shaped (T, 1), so each rule runs once over all tasks' (T, E) arrays
        column = lambda values: np.array(values, dtype=np.float64)[:, None]  # noqa: E731
        self._direction = column([t.direction for t in self.tasks])
        self._alive_bonus = column([t.alive_bonus for t in self.tasks])
        self._ctrl_cost = column([t.ctrl_cost for t in self.tasks])
        self._dt = column([t.dt for t in self.tasks])
        caps = [t.speed_cap for t in self.tasks]
        self._speed_cap = None if all(c is None for c in caps) else column([np.inf if c is None else c for c in caps])
        self._overspeed_penalty = column([t.overspeed_penalty for t in self.tasks])
        self._start_height = column(self.start_heights)
        self._horizon = np.array([t.horizon for t in self.tasks])[:, None]
        physics = [t.resolved_physics for t in self.tasks]
        self._state_limit = column([np.inf if p["state_limit"] is None else p["state_limit"] for p in physics])
        self._state_velocity_scale = column([p["state_velocity_scale"] for p in physics])
        # tasks with a knee-limit penalty: (row, knee qpos index, lower, upper limit rad, penalty)
        self._knee_rows = []
        for i, (task, p) in enumerate(zip(self.tasks, physics)):
            if p["knee_limit_penalty"] > 0:
                info = task._model_info()
                self._knee_rows.append((i, info["knee_qpos"], *info["knee_range"], p["knee_limit_penalty"]))
        families = sorted({t.family for t in self.tasks})
        self._family_rows = {f: np.array([i for i, t in enumerate(self.tasks) if t.family == f]) for f in families}

        n = self.n_tasks * self.envs_per_task
        self.nthread = int(nthread or min(2, os.cpu_count() or 1))
        self.state = np.zeros((n, self.nstate))
        # the tasks' physics engine steps the rows (MuJoCo's rollout threads, DART's worker processes)
        self.stepper = engine.batch_stepper(self.tasks, self.models, self.envs_per_task, self.frame_skip,
                                            self.nthread)
        self.episode_return = np.zeros((self.n_tasks, self.envs_per_task))
        self.episode_length = np.zeros((self.n_tasks, self.envs_per_task), dtype=np.int64)
        self._rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.n_tasks)]
        if isinstance(switch_prob, bool) or not isinstance(switch_prob, (int, float)) or not 0 <= switch_prob < 1:
            raise ValueError(f"switch_prob must be a probability in [0, 1), got {switch_prob!r}")
        self.switch_prob = float(switch_prob)
        self.switch_groups = self.robot_groups() if self.switch_prob > 0 else []
        if self.switch_prob > 0 and not self.switch_groups:
            raise ValueError(f"task switches need two tasks that drive the same robot; tasks "
                             f"{[t.name for t in self.tasks]} all drive different robots")
        self._switch_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5717C4]))
        if isinstance(switch_grace, bool) or not isinstance(switch_grace, (int, float)) or not 0 <= switch_grace < np.inf:
            raise ValueError(f"switch_grace must be a non-negative finite number of seconds, got {switch_grace!r}")
        self.switch_grace = float(switch_grace)
        # (T, E) control steps each env still has of a switch's grace (0 = none)
        self.grace_left = np.zeros((self.n_tasks, self.envs_per_task), dtype=np.int64)

    def robot_groups(self) -> list[np.ndarray]:
        """Task indices grouped by the robot they drive (robot, masses, gears, physics), groups of >= 2."""
        keys: dict[str, list[int]] = {}
        for i, t in enumerate(self.tasks):
            key = repr((t.robot, t.torso_mass, t.mass_scale, t.gears, sorted(t.resolved_physics.items())))
            keys.setdefault(key, []).append(i)
        return [np.array(group) for group in keys.values() if len(group) > 1]

    def _switch(self, done: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Swap robot states between tasks of a group (see ``switch_prob``); envs that ended this
        step take no part. Returns the (T, E) bool mask of switched envs and the (T, E) int task now
        driving each switched env's robot (-1 elsewhere), or None."""
        if not self.switch_groups or self.switch_prob == 0:
            return None
        switched = np.zeros((self.n_tasks, self.envs_per_task), dtype=bool)
        switched_to = np.full((self.n_tasks, self.envs_per_task), -1, dtype=np.int64)
        rng = self._switch_rng
        for group in self.switch_groups:
            for e in np.flatnonzero(rng.random(self.envs_per_task) < self.switch_prob):
                i, j = rng.choice(group, size=2, replace=False)
                if done[i, e] or done[j, e]:
                    continue
                a, b = i * self.envs_per_task + e, j * self.envs_per_task + e
                self.state[[a, b]] = self.state[[b, a]]
                switched[i, e] = switched[j, e] = True
                switched_to[i, e], switched_to[j, e] = j, i
        if self.switch_grace > 0:
            self.grace_left[switched] = np.rint(self.switch_grace / self._dt.repeat(self.envs_per_task, 1))[switched]
        return switched, switched_to

    # -- state views ------------------------------------------------------------------------------
    def qpos(self, state: np.ndarray | None = None) -> np.ndarray:
        """(T, E, nq) view of qpos in a (T*E, nstate) state array (default: the current state); its
        named quantities: ``planar.x_position(venv.qpos())``, ``planar.height``, ``planar.pitch``."""
        state = self.state if state is None else state
        return state[:, self._qpos_columns].reshape(self.n_tasks, self.envs_per_task, self.nq)

    def qvel(self, state: np.ndarray | None = None) -> np.ndarray:
        """(T, E, nv) view of qvel in a (T*E, nstate) state array (default: the current state)."""
        state = self.state if state is None else state
        return state[:, self._qvel_columns].reshape(self.n_tasks, self.envs_per_task, self.nv)

    def observe(self, state: np.ndarray | None = None) -> np.ndarray:
        """(T, E, obs_dim) observations of ``state`` (default: the current state)."""
        state = self.state if state is None else state
        return task_rules.observation(self.qpos(state), self.qvel(state))

    def _termination_cause(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """int8 (T, E): the termination rule each env's state qpos (T, E, nq), qvel (T, E, nv) breaks
        under its task (``tasks.termination_cause``: 0 none)."""
        if len(self._family_rows) == 1:
            (family,) = self._family_rows
            return task_rules.termination_cause(family, qpos, qvel, self._start_height, self._state_limit,
                                                self._state_velocity_scale)
        out = np.empty(qpos.shape[:2], dtype=np.int8)
        for family, rows in self._family_rows.items():
            out[rows] = task_rules.termination_cause(family, qpos[rows], qvel[rows], self._start_height[rows],
                                                     self._state_limit[rows], self._state_velocity_scale[rows])
        return out

    def _reset_envs(self, task_index: int, env_index: np.ndarray) -> None:
        """Reset envs ``env_index`` of task ``task_index`` to a noisy initial state."""
        qpos, qvel = self.tasks[task_index].sample_reset(self.models[task_index], self._rngs[task_index],
                                                         len(env_index))
        rows = task_index * self.envs_per_task + env_index
        self.state[rows] = 0.0
        self.state[rows, self._qpos_columns] = qpos
        self.state[rows, self._qvel_columns] = qvel
        self.episode_return[task_index, env_index] = 0.0
        self.episode_length[task_index, env_index] = 0
        self.grace_left[task_index, env_index] = 0

    def reset(self) -> np.ndarray:
        """Reset every env; returns obs (T, E, obs_dim)."""
        every_env = np.arange(self.envs_per_task)
        for i in range(self.n_tasks):
            self._reset_envs(i, every_env)
        return self.observe()

    # -- stepping ---------------------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> StepResult:
        """Advance every env by one control step (frame_skip physics substeps).

        actions: (T, E, act_dim), unclipped (MuJoCo clamps controls to [-1, 1]; the control cost
        uses the unclipped value).
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.n_tasks, self.envs_per_task, self.act_dim):
            raise ValueError(f"actions must have shape {(self.n_tasks, self.envs_per_task, self.act_dim)}, "
                             f"got {actions.shape}")
        new_state = self.stepper.step(self.state, actions.reshape(-1, self.act_dim))
        qpos, qvel = self.qpos(new_state), self.qvel(new_state)
        x_before, x_after = planar.x_position(self.qpos()), planar.x_position(qpos)
        reward = task_rules.reward(x_before, x_after, actions, self._direction, self._alive_bonus,
                                   self._ctrl_cost, self._dt, self._speed_cap, self._overspeed_penalty)
        if self.grace_left.any():
            graced = self.grace_left > 0
            moving = self._direction * planar.mean_speed(x_before, x_after, self._dt)
            reward += np.where(graced & (moving < 0), -moving, 0.0)
            self.grace_left[graced] -= 1
        for row, knee, low, high, penalty in self._knee_rows:
            reward[row] -= task_rules.knee_penalty(qpos[row, :, knee], low, high, penalty)
        end_cause = self._termination_cause(qpos, qvel)
        terminated = end_cause > 0
        final_obs = task_rules.observation(qpos, qvel)
        self.state[:] = new_state
        self.episode_return += reward
        self.episode_length += 1
        truncated = (self.episode_length >= self._horizon) & ~terminated
        end_cause[truncated] = task_rules.TIME_LIMIT
        done = terminated | truncated
        finished: list[list[tuple[float, int]]] = [[] for _ in range(self.n_tasks)]
        obs = final_obs
        if done.any():
            obs = final_obs.copy()
            for i in np.flatnonzero(done.any(axis=1)):
                envs = np.flatnonzero(done[i])
                finished[i] = [(float(self.episode_return[i, e]), int(self.episode_length[i, e])) for e in envs]
                self._reset_envs(i, envs)
                qpos_i = self.qpos()[i, envs]
                qvel_i = self.qvel()[i, envs]
                obs[i, envs] = task_rules.observation(qpos_i, qvel_i)
        switched, switched_to = self._switch(done) or (None, None)
        if switched is not None and switched.any():
            obs = obs.copy() if obs is final_obs else obs
            obs[switched] = task_rules.observation(self.qpos()[switched], self.qvel()[switched])
            end_cause[switched] = task_rules.SWITCH
        return StepResult(obs=obs, reward=reward, terminated=terminated, truncated=truncated,
                          final_obs=final_obs, finished=finished, switched=switched, switched_to=switched_to,
                          end_cause=end_cause)

    # -- checkpointing ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to continue bit-identically: physics, episode counters, RNGs."""
        return {
            "physics": self.state.copy(),
            "episode_return": self.episode_return.copy(),
            "episode_length": self.episode_length.copy(),
            "rng": [rng.bit_generator.state for rng in self._rngs],
            "switch_rng": self._switch_rng.bit_generator.state,
            "grace_left": self.grace_left.copy(),
        }

    def set_state(self, saved: dict) -> None:
        physics = np.asarray(saved["physics"], dtype=np.float64)
        if physics.shape != self.state.shape:
            raise ValueError(f"saved env state has shape {physics.shape}, this env needs {self.state.shape} "
                             f"(different tasks or envs_per_task?)")
        self.state[:] = physics
        self.episode_return[:] = np.asarray(saved["episode_return"])
        self.episode_length[:] = np.asarray(saved["episode_length"])
        for rng, rng_state in zip(self._rngs, saved["rng"]):
            rng.bit_generator.state = rng_state
        if "switch_rng" in saved:  # absent from checkpoints of runs without task switches
            self._switch_rng.bit_generator.state = saved["switch_rng"]
        if "grace_left" in saved:  # absent from checkpoints written without a switch grace
            self.grace_left[:] = np.asarray(saved["grace_left"])
