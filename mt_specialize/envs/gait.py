"""Gaits of a trained policy, rendered headless to GIF or MP4 (no ROS needed).

``play`` runs the deterministic policy in a task's Gymnasium env and may switch which task's
weights drive the robot mid-episode (what the policy server's switch service does on a robot);
``write_animation`` renders the poses and writes the file.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .tasks import TaskEnv, TaskSpec, get_task


class PerTaskPolicy(Protocol):
    """What ``play`` needs of a policy (``InferencePolicy`` is one)."""

    def task_index(self, name: str) -> int:
        """Index of task ``name`` among the policy's tasks."""

    def act(self, obs: np.ndarray, task_index: np.ndarray) -> np.ndarray:
        """(R, act_dim) actions for observations (R, obs_dim), row r driven by task ``task_index[r]``."""


@dataclass
class Episode:
    """qpos (S+1, nq) of every control step, the task index driving each step (S,), total reward."""

    qpos: np.ndarray
    task_index: np.ndarray
    episode_return: float
    ended_by: str  # 'steps' | 'terminated' | 'truncated'


def play(policy: PerTaskPolicy, env_task: str | TaskSpec, schedule: list[tuple[int, str]], steps: int,
         seed: int = 0) -> Episode:
    """Run ``steps`` control steps of ``env_task`` (its robot, termination and reward): a task name
    (the built-in task) or a ``TaskSpec`` (e.g. ``experiments.task_as_trained``: the robot as the
    policy's run trained it).

    schedule: [(step, task name), ...] sorted by step, the first at step 0: from that step on the
    named task's weights drive the robot, e.g. ``[(0, 'biped_forward'), (300, 'biped_backward')]``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of control steps >= 1, got {steps!r}")
    if not schedule or schedule[0][0] != 0:
        raise ValueError("the schedule must start at step 0, e.g. [(0, 'biped_forward')]")
    if any(b[0] <= a[0] for a, b in zip(schedule, schedule[1:])):
        raise ValueError(f"schedule steps must increase: {schedule}")
    indices = [(start, policy.task_index(name)) for start, name in schedule]
    env = TaskEnv(get_task(env_task))
    obs, _ = env.reset(seed=seed)
    qpos = [env.data.qpos.copy()]
    used, total, ended_by = [], 0.0, "steps"
    for step in range(steps):
        index = [i for start, i in indices if start <= step][-1]  # the latest entry that has started
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs[None], np.array([index]))[0])
        qpos.append(env.data.qpos.copy())
        used.append(index)
        total += reward
        if terminated or truncated:
            ended_by = "terminated" if terminated else "truncated"
            break
    return Episode(np.array(qpos), np.array(used), total, ended_by)


GIF_MIN_DELAY = 0.02  # s: browsers play a GIF frame delay under 2 centiseconds as 10 cs (slow motion)


def gif_frame_step(dt: float) -> int:
    """Control steps per GIF frame for a control period ``dt`` (s): the smallest k whose frame period
    k * dt is a whole number of centiseconds (a GIF's delay unit) of at least ``GIF_MIN_DELAY``, so the
    GIF plays at real time in browsers (dt 0.008 s -> 5, 40 ms); else the smallest k reaching the minimum."""
    first = max(1, math.ceil(GIF_MIN_DELAY / dt - 1e-9))
    for k in range(first, first + 50):
        centiseconds = k * dt * 100
        if abs(centiseconds - round(centiseconds)) < 1e-6:
            return k
    return first


def write_animation(task: str | TaskSpec, qpos: np.ndarray, path: str | Path, *, every: int | None = None,
                    width: int = 320, height: int = 240) -> Path:
    """Render every ``every``-th pose qpos (S, nq), one per control step of ``task``, to a GIF or MP4
    (by suffix) playing at real time (the task's control period, ``TaskSpec.dt``). ``every`` None: a
    GIF takes :func:`gif_frame_step` (its delays are whole centiseconds), an MP4 every second pose."""
    import imageio.v3 as iio

    from .render import render_frames

    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"{path}: choose a .gif or .mp4 file name")
    task = get_task(task)
    if every is None:
        every = gif_frame_step(task.dt) if path.suffix.lower() == ".gif" else 2
    frames = np.stack(render_frames(task, qpos[::every], width=width, height=height))
    frame_period = task.dt * every  # s of robot time between two frames
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, duration=1000 * frame_period, loop=0)
    else:
        iio.imwrite(path, frames, fps=round(1 / frame_period))
    return path
