"""Training with task switches: envs of tasks that drive the same robot swap robot states."""
import csv

import numpy as np
import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.envs import planar
from mt_specialize.envs.tasks import get_task
from mt_specialize.envs.vec_env import MultiTaskVecEnv
from mt_specialize.train import Interrupted, Trainer

BIPED = [get_task("biped_forward"), get_task("biped_backward")]


def _step_both(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(steps):
        results.append(env.step(0.3 * rng.standard_normal((env.n_tasks, env.envs_per_task, env.act_dim))))
    return results


def test_switch_swaps_robot_states_between_tasks_of_one_robot():
    env = MultiTaskVecEnv(BIPED, 8, seed=1, nthread=1, switch_prob=0.3)
    env.reset()
    switched_any = False
    for result in _step_both(env, 30):
        s = result.switched
        assert s is not None and (s[0] == s[1]).all()  # a switch is a swap: both envs of the pair
        done = result.terminated | result.truncated
        assert not (s & done).any()
        np.testing.assert_array_equal(result.switched_to[~s], -1)
        for e in np.flatnonzero(s[0]):
            switched_any = True
            # each robot is now driven by the other task of the pair
            assert (result.switched_to[0, e], result.switched_to[1, e]) == (1, 0)
            # each env now holds the robot the other task's env had reached
            np.testing.assert_array_equal(result.obs[0, e], result.final_obs[1, e])
            np.testing.assert_array_equal(result.obs[1, e], result.final_obs[0, e])
        keep = ~s & ~done
        np.testing.assert_array_equal(result.obs[keep], result.final_obs[keep])
    assert switched_any


def test_no_switch_prob_no_switch_and_switches_are_seeded_and_checkpointed():
    plain = MultiTaskVecEnv(BIPED, 4, seed=1, nthread=1)
    plain.reset()
    assert all(r.switched is None for r in _step_both(plain, 5))
    a = MultiTaskVecEnv(BIPED, 4, seed=2, nthread=1, switch_prob=0.2)
    a.reset()
    _step_both(a, 10)
    saved = a.get_state()
    b = MultiTaskVecEnv(BIPED, 4, seed=99, nthread=1, switch_prob=0.2)
    b.set_state(saved)
    ra, rb = _step_both(a, 10, seed=5), _step_both(b, 10, seed=5)
    for x, y in zip(ra, rb):
        np.testing.assert_array_equal(x.switched, y.switched)
        np.testing.assert_array_equal(x.obs, y.obs)


def test_switch_needs_tasks_of_one_robot_and_a_probability():
    hoppers = [get_task("hopper_capsule"), get_task("hopper_box")]
    with pytest.raises(ValueError, match="same robot"):
        MultiTaskVecEnv(hoppers, 2, switch_prob=0.1)
    with pytest.raises(ValueError, match="switch_prob"):
        MultiTaskVecEnv(BIPED, 2, switch_prob=1.0)
    with pytest.raises(ValueError, match="task_switch_prob"):
        TrainConfig(task_switch_prob=-0.1).resolved(3_000_000, 4000)


def test_trainer_cuts_the_trajectory_at_a_switch(tmp_path):
    path = tmp_path / "biped.yaml"
    path.write_text("name: tiny_biped\nbatch_size: 256\nbudget: 512\ntasks: [biped_forward, biped_backward]\n")
    trainer = Trainer(TrainConfig(experiment=str(path), method="separate", envs_per_task=4, profile="none",
                                  task_switch_prob=0.2), tmp_path / "run")
    rollout = trainer.collect()
    cut_at = {(t, i, e) for t, i, e, _ in rollout.truncated_obs}
    assert rollout.truncated.sum() == len(cut_at) > 0  # every switch bootstraps from the state reached
    for t, i, e, final in rollout.truncated_obs:
        # the next observation of a switched env is the other task's robot, not this one's
        assert not np.array_equal(final, rollout.obs[t + 1, i, e]) or rollout.terminated[t, i, e]
    trainer.close()


def test_switches_begin_at_task_switch_start(tmp_path):
    path = tmp_path / "biped.yaml"
    path.write_text("name: tiny_biped\nbatch_size: 256\nbudget: 768\ntasks: [biped_forward, biped_backward]\n")
    trainer = Trainer(TrainConfig(experiment=str(path), method="separate", envs_per_task=4, profile="none",
                                  task_switch_prob=0.3, task_switch_start=512), tmp_path / "run")
    cuts = []
    collect = trainer.collect

    def counting_collect():
        rollout = collect()
        cuts.append(len(rollout.truncated_obs))
        return rollout
    trainer.collect = counting_collect
    trainer.run()
    assert cuts[:2] == [0, 0] and cuts[2] > 0  # 2 x 256 samples without switches, then with


def test_switch_grace_floors_the_new_tasks_velocity_term_for_its_duration():
    """The same switches with and without a grace: the rewards differ exactly by the negative part of
    direction * velocity, on switched envs, for round(grace / dt) steps after each switch."""
    grace = 0.04  # s: 5 control steps of 0.008 s
    plain = MultiTaskVecEnv(BIPED, 8, seed=3, nthread=1, switch_prob=0.2)
    graced = MultiTaskVecEnv(BIPED, 8, seed=3, nthread=1, switch_prob=0.2, switch_grace=grace)
    plain.reset(), graced.reset()
    direction = np.array([1.0, -1.0])[:, None]
    steps_left = np.zeros((2, 8), dtype=int)
    floored = 0
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = 0.3 * rng.standard_normal((2, 8, plain.act_dim))
        x_before = planar.x_position(plain.qpos()).copy()
        a, b = plain.step(actions), graced.step(actions)
        np.testing.assert_array_equal(a.obs, b.obs)  # the grace changes rewards, never the physics
        moving = direction * planar.mean_speed(x_before, planar.x_position(plain.qpos()), BIPED[0].dt)
        done = a.terminated | a.truncated
        # x after the step is only still in the state where the env was neither reset nor swapped
        kept = ~done & ~a.switched
        expected = np.where((steps_left > 0) & (moving < 0), -moving, 0.0)
        np.testing.assert_allclose((b.reward - a.reward)[kept], expected[kept], rtol=0, atol=1e-9)
        floored += int(((steps_left > 0) & (moving < 0) & kept).sum())
        steps_left = np.where(steps_left > 0, steps_left - 1, 0)
        steps_left[done] = 0
        steps_left[a.switched] = round(grace / BIPED[0].dt)
    assert floored > 0
    saved = graced.get_state()
    assert "grace_left" in saved
    copy = MultiTaskVecEnv(BIPED, 8, seed=9, nthread=1, switch_prob=0.2, switch_grace=grace)
    copy.set_state(saved)
    np.testing.assert_array_equal(copy.grace_left, graced.grace_left)


def test_switch_grace_must_be_a_duration():
    with pytest.raises(ValueError, match="switch_grace"):
        MultiTaskVecEnv(BIPED, 2, switch_prob=0.1, switch_grace=-1.0)
    with pytest.raises(ValueError, match="task_switch_grace must be a non-negative finite number of seconds"):
        TrainConfig(task_switch_grace=float("nan")).resolved(3_000_000, 4000)


def test_a_run_with_switches_and_a_grace_resumes_exactly(tmp_path):
    path = tmp_path / "biped.yaml"
    path.write_text("name: tiny_biped\nbatch_size: 256\nbudget: 768\ntasks: [biped_forward, biped_backward]\n")
    config = dict(experiment=str(path), method="separate", envs_per_task=4, profile="none", checkpoint_every=1,
                  task_switch_prob=0.05, task_switch_grace=0.5)
    whole = Trainer(TrainConfig(**config), tmp_path / "whole")
    whole.run()
    part = Trainer(TrainConfig(**config), tmp_path / "part")
    with pytest.raises(Interrupted):
        part.run(should_stop=lambda: part.iteration == 2)
    assert part.env.grace_left.any()  # the stop falls inside a grace: the checkpoint must carry it
    resumed = Trainer(TrainConfig(**config), tmp_path / "part", resume=True)
    np.testing.assert_array_equal(resumed.env.grace_left, part.env.grace_left)
    resumed.run()
    rows = lambda d: [{k: v for k, v in r.items() if "per_s" not in k}  # noqa: E731
                      for r in csv.DictReader(open(d / "metrics.csv"))]
    assert rows(tmp_path / "whole") == rows(tmp_path / "part")


@pytest.mark.parametrize("bootstrap", ["old_task", "new_task"])
def test_a_switched_trajectory_is_valued_by_the_task_that_takes_the_robot_over(tmp_path, bootstrap):
    """The value target at a switch: r + gamma * V(state reached), V of the task that now drives that
    robot (``new_task``) or of the task whose trajectory it was (``old_task``, as a time limit)."""
    path = tmp_path / "biped.yaml"
    path.write_text("name: tiny_biped\nbatch_size: 256\nbudget: 512\ntasks: [biped_forward, biped_backward]\n")
    trainer = Trainer(TrainConfig(experiment=str(path), method="separate", envs_per_task=4, profile="none",
                                  task_switch_prob=0.2, task_switch_bootstrap=bootstrap), tmp_path / "run")
    switches = []
    step = trainer.env.step

    def recording_step(actions):
        result = step(actions)
        switches.append(result.switched_to.copy())
        return result
    trainer.env.step = recording_step
    # the two tasks' value nets start equal: offset one so that whose value bootstraps shows
    net = trainer.value
    trainer.value = lambda x: net(x) + torch.tensor([[0.0], [50.0]])
    rollout = trainer.collect()
    batch = trainer.prepare_batch(rollout)
    T, E, gamma = trainer.n_tasks, trainer.config.envs_per_task, trainer.config.ppo.gamma
    checked = 0
    with torch.no_grad():
        for (t, i, e, final), k in zip(rollout.truncated_obs, rollout.truncated_value_task):
            taken_over_by = switches[t][i, e]
            if taken_over_by < 0 or rollout.terminated[t, i, e]:
                continue
            assert k == (taken_over_by if bootstrap == "new_task" else i)
            value = trainer.value(torch.from_numpy(trainer.policy_input(final[None, None].repeat(T, axis=0))))
            target = rollout.rewards[t, i, e] + gamma * float(value[k, 0])
            assert float(batch.returns[i, t * E + e]) == pytest.approx(target, rel=1e-5, abs=1e-4)
            checked += 1
    assert checked > 0
    trainer.close()


def test_switch_bootstrap_must_be_a_known_rule():
    with pytest.raises(ValueError, match=r"task_switch_bootstrap must be one of \['old_task', 'new_task'\]"):
        TrainConfig(task_switch_bootstrap="new").resolved(3_000_000, 4000)
