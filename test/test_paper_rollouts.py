"""The paper profile's rollouts as the authors' PPO ran them: 4 envs per task with the segment length
that gives the batch, advantages standardised per env and task, the time limit terminal; and the
per-iteration count of why episodes ended."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.envs.tasks import END_CAUSES
from mt_specialize.learning.rollout_buffer import standardize_per_task_env
from mt_specialize.train import Trainer


@pytest.mark.parametrize("experiment, steps, batch", [("three_hoppers", 333, 3996), ("biped_fwd_bwd", 1000, 8000),
                                                      ("torso_mass_8", 500, 4000)])
def test_the_paper_profile_steps_4_envs_per_task_for_the_authors_segments(experiment, steps, batch, tmp_path):
    trainer = Trainer(TrainConfig(experiment=experiment, profile="paper"), tmp_path / "run")
    try:
        assert trainer.config.envs_per_task == 4
        assert (trainer.steps, trainer.batch) == (steps, batch)
        assert (trainer.config.time_limit, trainer.config.ppo.advantage_norm) == ("terminal", "per_task_env")
    finally:
        trainer.close()
    other = Trainer(TrainConfig(experiment=experiment, profile="mujoco"), tmp_path / "other")
    try:
        assert other.config.envs_per_task == 16
        assert (other.config.time_limit, other.config.ppo.advantage_norm) == ("bootstrap", "per_task_iteration")
    finally:
        other.close()


def test_per_env_standardisation_is_each_segments_own():
    rng = np.random.default_rng(0)
    adv = rng.normal(3.0, 5.0, (2, 7, 3))  # (T, S, E)
    expected = np.empty_like(adv)
    for t in range(2):
        for e in range(3):
            segment = adv[t, :, e]
            expected[t, :, e] = (segment - segment.mean()) / (segment.std() + 1e-8)  # numpy std: ddof 0
    got = standardize_per_task_env(torch.from_numpy(adv)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(T, S, E\)"):
        standardize_per_task_env(torch.zeros(2, 7))


@pytest.fixture
def tiny_biped(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny_biped\nbatch_size: 160\nbudget: 1600\ntasks: [biped_forward, biped_backward]\n")
    return str(path)


def _trainer(experiment, out, **kw):
    config = TrainConfig(experiment=experiment, method="joint", profile="paper", seed=2, revert_drop_bound="off", **kw)
    config.ppo.epochs = 1
    return Trainer(config, out)


def _batch_with_time_limits(trainer):
    """One rollout in which env 0 of each task reaches the time limit on the first step; its batch."""
    trainer.env.episode_length[:, 0] = trainer.tasks[0].horizon - 1
    rollout = trainer.collect()
    assert rollout.truncated[0, :, 0].all() or rollout.terminated[0, :, 0].all()
    return rollout, trainer.prepare_batch(rollout)


def test_a_terminal_time_limit_has_no_bootstrap_and_bootstrap_adds_the_value(tiny_biped, tmp_path):
    """Step 0 of env 0 ends at the time limit. 'terminal': its value target is the reward alone;
    'bootstrap': the reward plus gamma times the value of the state it reached."""
    terminal = _trainer(tiny_biped, tmp_path / "terminal")
    bootstrap = _trainer(tiny_biped, tmp_path / "bootstrap", time_limit="bootstrap")
    try:
        r_term, b_term = _batch_with_time_limits(terminal)
        r_boot, b_boot = _batch_with_time_limits(bootstrap)
        np.testing.assert_array_equal(r_term.rewards, r_boot.rewards)  # same seed: the same rollout
        assert r_term.terminated[0, :, 0].all() and not r_term.truncated[0, :, 0].any()
        assert r_boot.truncated[0, :, 0].all() and not r_boot.terminated[0, :, 0].any()
        E = terminal.config.envs_per_task
        gamma = terminal.config.ppo.gamma
        for task in range(2):
            # returns (T, S*E) are (T, S, E) flattened: env 0 of step 0 is column 0
            assert b_term.returns[task, 0].item() == pytest.approx(r_term.rewards[0, task, 0], abs=1e-5)
            (step, i, e, final), = [x for x in r_boot.truncated_obs if x[1] == task and x[0] == 0 and x[2] == 0]
            with torch.no_grad():
                final_value = bootstrap.value(torch.from_numpy(
                    bootstrap.policy_input(final[None, None].repeat(2, axis=0))))[task, 0].item()
            assert b_boot.returns[task, 0].item() == pytest.approx(r_boot.rewards[0, task, 0] + gamma * final_value,
                                                                   abs=1e-4)
            assert abs(final_value) > 1e-3  # the two differ by a real amount
        assert E == 4
    finally:
        terminal.close()
        bootstrap.close()


def test_per_env_advantages_are_standardised_in_the_batch(tiny_biped, tmp_path):
    trainer = _trainer(tiny_biped, tmp_path / "run")
    try:
        batch = trainer.prepare_batch(trainer.collect())
        S, E = trainer.steps, trainer.config.envs_per_task
        adv = batch.advantages.reshape(2, S, E).double()
        np.testing.assert_allclose(adv.mean(dim=1).numpy(), 0.0, atol=1e-5)
        np.testing.assert_allclose(adv.std(dim=1, unbiased=False).numpy(), 1.0, atol=1e-4)
    finally:
        trainer.close()


def test_the_iterations_end_counts_are_the_episodes_that_ended(tiny_biped, tmp_path):
    """Every episode that finished in an iteration is counted once, under a termination rule or the time
    limit; the metrics row carries the counts per task and cause."""
    trainer = _trainer(tiny_biped, tmp_path / "run")
    finished = np.zeros(2, dtype=np.int64)
    step = trainer.env.step

    def counting_step(actions):
        result = step(actions)
        finished[:] += [len(f) for f in result.finished]
        return result

    trainer.env.step = counting_step
    try:
        trainer.env.episode_length[:, :2] = trainer.tasks[0].horizon - 3  # some time limits too
        trainer.collect()
        counts = trainer.episodes.end_counts.copy()
        assert np.array_equal(counts.sum(axis=1), finished) and finished.sum() > 4
        assert counts[:, END_CAUSES.index("time_limit")].sum() >= 1
        assert counts[:, END_CAUSES.index("switch")].sum() == 0
        row = trainer._row(trainer.update(trainer.prepare_batch(trainer.collect()), False), 1.0, 1.0)
        for i, name in enumerate(trainer.task_names):
            assert [row[f"ended/{name}/{cause}"] for cause in END_CAUSES] == list(trainer.episodes.end_counts[i])
    finally:
        trainer.close()
