"""Step one of our tasks and one of Gymnasium's MuJoCo envs in lockstep from the same state."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import pytest

from mt_specialize.envs.tasks import get_task
from mt_specialize.envs.vec_env import MultiTaskVecEnv


def assert_steps_like_gymnasium(env_id: str, task: str, *, seed: int, steps_per_episode: int,
                                as_reference_reward: Callable[[float, np.ndarray, bool], float]) -> None:
    """Three episodes of random actions: each step's observation (atol 1e-9) and termination equal
    the Gymnasium env's, and ``as_reference_reward(our_reward, action, terminated)`` its reward."""
    reference = gym.make(env_id).unwrapped
    venv = MultiTaskVecEnv([get_task(task)], envs_per_task=1, seed=seed, nthread=1)
    act_dim = reference.action_space.shape[0]
    rng = np.random.default_rng(0)
    steps = 0
    for episode in range(3):
        reference.reset(seed=episode)
        venv.reset()
        reference.set_state(venv.qpos()[0, 0], venv.qvel()[0, 0])
        for _ in range(steps_per_episode):
            action = rng.uniform(-1, 1, act_dim)
            obs, reward, terminated, _, _ = reference.step(action)
            result = venv.step(action[None, None])
            steps += 1
            np.testing.assert_allclose(result.final_obs[0, 0], obs, atol=1e-9)
            assert result.terminated[0, 0] == terminated
            assert as_reference_reward(result.reward[0, 0], action, terminated) == pytest.approx(reward, abs=1e-9)
            if terminated:
                break
    assert steps >= 20
