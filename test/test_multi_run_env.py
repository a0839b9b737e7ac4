"""K runs' envs in one engine against the single-run envs each run must reproduce bit for bit."""
import numpy as np
import pytest

from mt_specialize.envs.multi_run import MultiRunVecEnv
from mt_specialize.envs.tasks import get_task
from mt_specialize.envs.vec_env import MultiTaskVecEnv
from mt_specialize.experiments import get_experiment

SEEDS = [3, 11, 40]


def _tasks(experiment):
    return [get_task(name) for name in get_experiment(experiment).tasks]


def _assert_same_step(batched, single):
    """Run k's StepResult of the batched env against its single-run env's, exactly."""
    for name in ("obs", "reward", "terminated", "truncated", "final_obs"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(single, name), err_msg=name)
    assert batched.finished == single.finished
    assert (batched.switched is None) == (single.switched is None)
    if single.switched is not None:
        np.testing.assert_array_equal(batched.switched, single.switched)
        np.testing.assert_array_equal(batched.switched_to, single.switched_to)


def _assert_same_state(saved, expected):
    assert saved.keys() == expected.keys()
    for key in ("physics", "episode_return", "episode_length", "grace_left"):
        np.testing.assert_array_equal(saved[key], expected[key], err_msg=key)
    assert saved["rng"] == expected["rng"]
    assert saved["switch_rng"] == expected["switch_rng"]


def _drive(tasks, E, steps, switch_prob=0.0, switch_grace=0.0, change_prob_at=None):
    """Step a batched env and its K single-run envs with the same random actions, comparing every step;
    returns how many episodes ended and how many envs were switched over all runs."""
    K = len(SEEDS)
    probs = switch_prob if isinstance(switch_prob, list) else [switch_prob] * K
    graces = switch_grace if isinstance(switch_grace, list) else [switch_grace] * K
    batched = MultiRunVecEnv(tasks, E, SEEDS, nthread=2, switch_prob=switch_prob, switch_grace=switch_grace)
    singles = [MultiTaskVecEnv(tasks, E, seed=s, nthread=1, switch_prob=p, switch_grace=g)
               for s, p, g in zip(SEEDS, probs, graces)]
    obs = batched.reset()
    for k, env in enumerate(singles):
        np.testing.assert_array_equal(obs[k], env.reset())
    rng = np.random.default_rng(0)
    ended = switches = 0
    for step in range(steps):
        if change_prob_at is not None and step == change_prob_at:
            for k, env in enumerate(singles):  # as train.py's switch start: a run's probability changes
                env.switch_prob = 0.0 if probs[k] > 0 else 0.3
                batched.set_switch_prob(k, env.switch_prob)
        actions = rng.uniform(-1.5, 1.5, size=(len(SEEDS), len(tasks), E, batched.act_dim))
        result = batched.step(actions)
        for k, env in enumerate(singles):
            _assert_same_step(result.run(k), env.step(actions[k]))
        ended += sum(len(f) for run in result.finished for f in run)
        switches += 0 if result.switched is None else int(result.switched.sum())
    for k, env in enumerate(singles):
        _assert_same_state(batched.get_state(k), env.get_state())
    return ended, switches


@pytest.mark.parametrize("experiment, E", [("three_hoppers", 3), ("biped_fwd_bwd", 4)])
def test_each_run_is_its_single_run_env_bit_for_bit(experiment, E):
    ended, _ = _drive(_tasks(experiment), E, steps=300)
    assert ended > 3 * len(SEEDS), f"random actions should reset envs several times, got {ended} episode ends"


def test_each_run_switches_tasks_as_its_single_run_env():
    """Per-run switch probabilities and graces, one changed mid-way (a run without switches at build
    time never switches, as a single-run env): every run still equals its own env."""
    ended, switches = _drive(_tasks("biped_fwd_bwd"), 4, steps=250, switch_prob=[0.0, 0.05, 0.2],
                             switch_grace=[0.0, 0.5, 0.3], change_prob_at=150)
    assert switches > 10 and ended > 3


def test_run_state_round_trips_in_the_single_run_format():
    tasks, E = _tasks("biped_fwd_bwd"), 3
    rng = np.random.default_rng(5)
    batched = MultiRunVecEnv(tasks, E, SEEDS, switch_prob=0.1, switch_grace=0.4)
    batched.reset()
    for _ in range(40):
        batched.step(rng.uniform(-1.5, 1.5, size=(3, 2, E, 6)))
    saved = batched.get_state(1)
    later = rng.uniform(-1.5, 1.5, size=(60, 3, 2, E, 6))
    reference = [batched.step(a).run(1) for a in later]

    single = MultiTaskVecEnv(tasks, E, seed=999, switch_prob=0.1, switch_grace=0.4)
    single.reset()
    single.set_state(saved)  # a batched run's state continues in a single-run env
    other = MultiRunVecEnv(tasks, E, [7, 8, 9], switch_prob=0.1, switch_grace=0.4)
    other.reset()
    untouched = other.get_state(0)
    other.set_state(1, saved)  # and in another batch's slot
    for a, expected in zip(later, reference):
        _assert_same_step(single.step(a[1]), expected)
        _assert_same_step(other.step(a).run(1), expected)
    _assert_same_state(other.get_state(1), batched.get_state(1))

    fresh = MultiRunVecEnv(tasks, E, [7, 8, 9], switch_prob=0.1, switch_grace=0.4)
    fresh.reset()
    _assert_same_state(fresh.get_state(0), untouched)  # setting run 1 left run 0 as it was built


def test_bad_input_is_a_clear_error():
    tasks = _tasks("three_hoppers")
    env = MultiRunVecEnv(tasks, 2, [1, 2])
    env.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 3, 2, 3\)"):
        env.step(np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match=r"run index must be an integer in \[0, 2\), got 2"):
        env.get_state(2)
    with pytest.raises(ValueError, match=r"a run of this env needs \(6, "):
        env.set_state(0, {**env.get_state(0), "physics": np.zeros((4, env._engine.nstate))})
    with pytest.raises(ValueError, match="needs at least one run seed"):
        MultiRunVecEnv(tasks, 2, [])
    with pytest.raises(ValueError, match="run seeds must be non-negative integers, got -1"):
        MultiRunVecEnv(tasks, 2, [1, -1])
    with pytest.raises(ValueError, match=r"switch_prob needs one value per run \(2\), got 3"):
        MultiRunVecEnv(tasks, 2, [1, 2], switch_prob=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"switch_prob must be a probability in \[0, 1\), got 1.5"):
        env.set_switch_prob(0, 1.5)
    with pytest.raises(ValueError, match="drive different robots"):
        MultiRunVecEnv(tasks, 2, [1, 2], switch_prob=[0.0, 0.1])
