"""``learning.rollout_buffer``: a rollout filled step by step becomes the update's batch (values, GAE with
cut episodes bootstrapped, standardised advantages), checked against a per-env loop written out here."""
import numpy as np
import pytest
import torch

from mt_specialize.learning.normalize import RunningMeanStd
from mt_specialize.learning.ppo import PPOConfig
from mt_specialize.learning.rollout_buffer import PolicyInput, RolloutBuffer, standardize_per_task

S, T, E, OBS, ACT = 4, 2, 3, 2, 1
GAMMA, LAM = 0.9, 0.8


def value(x):
    """(T, N, OBS) -> (T, N): each task values a state its own way."""
    return x.sum(-1) * torch.tensor([[1.0], [-2.0]])


class Policy:
    @staticmethod
    def log_prob(obs, actions):
        return obs[..., 0] + actions[..., 0]


def _filled(seed=0):
    """A rollout of random steps; task 0 env 1 is cut at step 1 and handed to task 1, task 1 env 2 cut at step 2."""
    rng = np.random.default_rng(seed)
    rollout = RolloutBuffer.empty(S, T, E, OBS, ACT)
    for t in range(S):
        terminated = rng.random((T, E)) < 0.2
        cut = np.zeros((T, E), dtype=bool)
        cut[0, 1], cut[1, 2] = t == 1, t == 2
        cut &= ~terminated
        rollout.add(rng.uniform(-1, 1, (T, E, OBS)), rng.standard_normal((T, E, ACT)).astype(np.float32),
                    rng.standard_normal((T, E)), terminated, cut)
        for i, e in zip(*np.nonzero(cut)):
            rollout.add_cut(int(i), int(e), rng.uniform(-1, 1, OBS), value_task=1 if (i, e) == (0, 1) else int(i))
    rollout.finish(rng.uniform(-1, 1, (T, E, OBS)))
    return rollout


def _expected_advantages(rollout):
    """(T, S*E) GAE advantages and returns, env by env, as the loop of baselines' add_vtarg_and_adv."""
    v = lambda obs, task: float(obs.sum()) * (1.0, -2.0)[task]  # noqa: E731
    cuts = {(t, i, e): (final, k) for (t, i, e, final), k in zip(rollout.truncated_obs, rollout.truncated_value_task)}
    adv, ret = np.zeros((T, S, E)), np.zeros((T, S, E))
    for i in range(T):
        for e in range(E):
            last = 0.0
            for t in reversed(range(S)):
                final, k = cuts.get((t, i, e), (rollout.obs[t + 1, i, e], i))
                next_value = 0.0 if rollout.terminated[t, i, e] else v(final, k)
                delta = rollout.rewards[t, i, e] + GAMMA * next_value - v(rollout.obs[t, i, e], i)
                ended = rollout.terminated[t, i, e] or rollout.truncated[t, i, e]
                last = delta + GAMMA * LAM * (0.0 if ended else last)
                adv[i, t, e], ret[i, t, e] = last, last + v(rollout.obs[t, i, e], i)
    return adv.reshape(T, S * E), ret.reshape(T, S * E)


@pytest.mark.parametrize("advantage_norm", ["none", "per_task_iteration"])
def test_the_batch_is_gae_over_each_env_with_cut_episodes_bootstrapped(advantage_norm):
    rollout = _filled()
    assert rollout.truncated.sum() == len(rollout.truncated_obs) > 0
    identity = PolicyInput(RunningMeanStd(T, (OBS,), var_floor=0.0, norm_epsilon=0.0), T)  # mean 0, std 1
    ppo = PPOConfig(gamma=GAMMA, lam=LAM, advantage_norm=advantage_norm)
    batch = rollout.to_batch(Policy(), value, identity, ppo)
    adv, ret = _expected_advantages(rollout)
    if advantage_norm == "per_task_iteration":
        adv = standardize_per_task(torch.from_numpy(adv)).numpy()
    np.testing.assert_allclose(batch.advantages.numpy(), adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch.returns.numpy(), ret, rtol=1e-5, atol=1e-5)
    # task-major rows: task i's samples step by step, env by env within a step
    obs = np.moveaxis(rollout.obs[:S], 1, 0).reshape(T, S * E, OBS)
    np.testing.assert_allclose(batch.obs.numpy(), obs, rtol=1e-6)
    np.testing.assert_allclose(batch.old_logp.numpy(), obs[..., 0] + np.moveaxis(rollout.actions, 1, 0).reshape(
        T, S * E, ACT)[..., 0], rtol=1e-6)


def test_a_rollout_is_finished_only_after_all_its_steps():
    rollout = RolloutBuffer.empty(S, T, E, OBS, ACT)
    rollout.add(np.zeros((T, E, OBS)), np.zeros((T, E, ACT)), np.zeros((T, E)), np.zeros((T, E), bool),
                np.zeros((T, E), bool))
    with pytest.raises(ValueError, match="1 of its 4 steps"):
        rollout.finish(np.zeros((T, E, OBS)))


@pytest.mark.parametrize("task_id, width", [(None, OBS), ("append", OBS + T), ("normalize", OBS + T)])
def test_policy_input_places_the_task_id(task_id, width):
    obs_rms = RunningMeanStd(T, (OBS + (T if task_id == "normalize" else 0),), clip=5.0)
    inputs = PolicyInput(obs_rms, T, task_id)
    obs = np.random.default_rng(1).normal(3.0, 2.0, (T, 50, OBS))
    inputs.update(obs)
    x = inputs(obs)
    assert x.shape == (T, 50, width) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., :OBS].mean(axis=1), 0.0, atol=0.1)  # normalised per task
    if task_id == "append":  # the one-hot as it is
        np.testing.assert_array_equal(x[0, :, OBS:], np.tile([1.0, 0.0], (50, 1)))
    if task_id == "normalize":  # the one-hot normalised with the observation: a constant column -> 0
        np.testing.assert_allclose(x[..., OBS:], 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="task_id"):
        PolicyInput(obs_rms, T, "prepend")
