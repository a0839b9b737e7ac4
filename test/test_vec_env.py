"""The batched multi-task engine against the single Gymnasium env it must reproduce."""
import numpy as np
import pytest

from mt_specialize.envs import planar
from mt_specialize.envs.tasks import TaskEnv, TaskSpec, get_task
from gymnasium_lockstep import assert_steps_like_gymnasium
from mt_specialize.envs.vec_env import MultiTaskVecEnv

HOPPERS = ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]


def _random_actions(rng, n_steps, shape):
    return rng.uniform(-1.5, 1.5, size=(n_steps, *shape))


@pytest.mark.parametrize("names, steps", [(HOPPERS, 40), (["biped_forward", "biped_backward"], 150)],
                         ids=["hoppers", "bipeds"])
def test_batched_step_is_bit_identical_to_gymnasium_env(names, steps):
    """Same start state and actions: every batched env follows its TaskEnv exactly (state, rewards,
    obs, termination) until its episode ends."""
    tasks = [get_task(n) for n in names]
    T, E = len(tasks), 2
    venv = MultiTaskVecEnv(tasks, envs_per_task=E, seed=3, nthread=2)
    venv.reset()
    singles = {}
    for i, task in enumerate(tasks):
        for e in range(E):
            env = TaskEnv(task)
            env.reset(seed=0)
            env.data.qpos[:], env.data.qvel[:] = venv.qpos()[i, e], venv.qvel()[i, e]
            singles[i, e] = env
    actions = _random_actions(np.random.default_rng(0), steps, (T, E, venv.act_dim))
    alive = np.ones((T, E), dtype=bool)
    for a in actions:
        result = venv.step(a)
        for (i, e), env in singles.items():
            if not alive[i, e]:
                continue
            obs, reward, terminated, truncated, info = env.step(a[i, e])
            np.testing.assert_array_equal(result.final_obs[i, e], obs)
            assert result.reward[i, e] == reward
            assert result.terminated[i, e] == terminated
            if terminated or truncated:
                alive[i, e] = False
            else:  # not reset: the batched state is still the one the step reached
                np.testing.assert_array_equal(venv.qpos()[i, e], env.data.qpos)
                np.testing.assert_array_equal(venv.qvel()[i, e], env.data.qvel)
                assert planar.x_position(venv.qpos()[i, e]) == info["x_position"]
    assert not alive.all(), f"random actions should end some episodes within {steps} steps"


def test_thread_count_does_not_change_trajectories():
    tasks = [get_task(n) for n in HOPPERS]
    actions = _random_actions(np.random.default_rng(1), 60, (3, 4, 3))
    runs = []
    for nthread in (1, 2):
        venv = MultiTaskVecEnv(tasks, envs_per_task=4, seed=5, nthread=nthread)
        obs = [venv.reset()]
        for a in actions:
            obs.append(venv.step(a).obs)
        runs.append(np.stack(obs))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_auto_reset_reports_finished_episodes_and_restarts():
    venv = MultiTaskVecEnv([get_task("hopper_capsule")], envs_per_task=3, seed=0)
    venv.reset()
    start_height = venv.start_heights[0]
    total_finished = 0
    for _ in range(200):
        result = venv.step(np.full((1, 3, 3), 1.0))  # full torque: falls quickly
        ended = np.flatnonzero(result.terminated[0] | result.truncated[0])
        assert len(ended) == len(result.finished[0])
        for (_, length), e in zip(result.finished[0], ended):
            assert length >= 1
            # the env restarted near its initial height with a fresh counter
            assert abs(result.obs[0, e, 0] - start_height) < 0.01
            assert venv.episode_length[0, e] == 0
        total_finished += len(result.finished[0])
        np.testing.assert_array_equal(result.terminated | result.truncated,
                                      venv.episode_length == 0)
    assert total_finished > 3


def test_episode_return_is_sum_of_step_rewards():
    venv = MultiTaskVecEnv([get_task("hopper_capsule")], envs_per_task=1, seed=0)
    venv.reset()
    running = 0.0
    for _ in range(300):
        result = venv.step(np.full((1, 1, 3), 0.8))
        running += result.reward[0, 0]
        if result.finished[0]:
            ep_return, length = result.finished[0][0]
            assert ep_return == pytest.approx(running)
            return
    pytest.fail("episode never ended under constant full torque")


def test_env_state_round_trip_continues_identically():
    tasks = [get_task("biped_forward"), get_task("biped_backward")]
    venv = MultiTaskVecEnv(tasks, envs_per_task=2, seed=9)
    venv.reset()
    rng = np.random.default_rng(2)
    for a in _random_actions(rng, 20, (2, 2, 6)):
        venv.step(a)
    saved = venv.get_state()
    later = _random_actions(rng, 30, (2, 2, 6))
    first = [venv.step(a).obs for a in later]
    other = MultiTaskVecEnv(tasks, envs_per_task=2, seed=123)
    other.reset()
    other.set_state(saved)
    second = [other.step(a).obs for a in later]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_bad_action_shape_is_a_clear_error():
    venv = MultiTaskVecEnv([get_task("hopper_capsule")], envs_per_task=2)
    venv.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(1, 2, 3\)"):
        venv.step(np.zeros((2, 3)))


def test_tasks_with_different_sizes_are_refused():
    with pytest.raises(ValueError, match="one size signature"):
        MultiTaskVecEnv([get_task("hopper_capsule"), get_task("biped_forward")], envs_per_task=1)


def _set_state(venv, qpos, qvel):
    """Put every env of every task in the state (qpos, qvel)."""
    venv.state[:] = 0.0
    venv.qpos()[:] = qpos
    venv.qvel()[:] = qvel


@pytest.mark.parametrize("knee, penalised", [(-0.01, True), (-2.60, True), (-1.0, False), (-0.2, False)])
def test_knee_limit_penalty_fires_in_the_batched_env_near_a_limit_only(knee, penalised):
    """Two copies of the capsule hopper, one with the authors' 0.75 penalty: rewards differ by 0.75
    exactly when the knee (leg_joint, range [-2.618, 0]) ends the step within 0.05 rad of a limit."""
    plain = get_task("hopper_capsule")
    penalised_task = TaskSpec("knee", "hopper_capsule", physics={"knee_limit_penalty": 0.75})
    venv = MultiTaskVecEnv([plain, penalised_task], envs_per_task=1, seed=0, nthread=1)
    qpos = venv.models[0].qpos0.copy()
    qpos[4] = knee  # qpos = rootx, rootz, rooty, thigh, leg (knee), foot
    _set_state(venv, qpos, np.zeros(venv.nv))
    result = venv.step(np.zeros((2, 1, 3)))
    knee_after = result.final_obs[0, 0, 3]  # obs = qpos[1:], so the knee is obs[3]
    assert (knee_after > -0.05 or knee_after < -2.618 + 0.05) == penalised
    assert result.reward[0, 0] - result.reward[1, 0] == pytest.approx(0.75 if penalised else 0.0, abs=1e-12)
    # the one-env Gymnasium wrapper agrees
    env = TaskEnv(penalised_task)
    env.reset(seed=0)
    env.data.qpos[:], env.data.qvel[:] = qpos, 0.0
    assert env.step(np.zeros(3))[1] == pytest.approx(result.reward[1, 0], abs=1e-12)


@pytest.mark.parametrize("task_name", ["hopper_capsule", "biped_forward"])
def test_state_limit_terminates_when_a_velocity_reaches_it_and_not_otherwise(task_name):
    """A robot thrown sideways at 150 m/s in the air: terminated with state_limit 100 (the authors'
    |s[2:]| < 100), not without it; at 50 m/s neither terminates."""
    base = get_task(task_name)
    limited = TaskSpec("limited", base.robot, base.family, physics={"state_limit": 100.0})
    free = TaskSpec("free", base.robot, base.family, physics={"state_limit": None})
    venv = MultiTaskVecEnv([limited, free], envs_per_task=1, seed=0, nthread=1)
    qpos = venv.models[0].qpos0.copy()
    qpos[planar.HEIGHT] += 0.2  # in the air: no contact slows it
    for speed, expected in ((150.0, [True, False]), (50.0, [False, False])):
        qvel = np.zeros(venv.nv)
        qvel[planar.X] = speed
        _set_state(venv, qpos, qvel)
        result = venv.step(np.zeros((2, 1, venv.act_dim)))
        assert list(result.terminated[:, 0]) == expected, speed


def test_hopper_gymnasium_reproduces_gymnasiums_hopper_v5_step():
    """The calibration anchor: from the same state, the same actions give Hopper-v5's observation,
    reward and termination (float tolerance). Hopper-v5 pays no alive bonus on the step that ends
    unhealthy (``is_healthy * healthy_reward``); ours, like the authors' code, pays it on every step."""
    assert_steps_like_gymnasium("Hopper-v5", "hopper_gymnasium", seed=5, steps_per_episode=60,
                                as_reference_reward=lambda reward, action, terminated: reward - float(terminated))


def test_a_forked_process_frees_an_inherited_env_without_hanging():
    """A grid worker forked while an env waits for the garbage collector (left in a reference cycle)
    inherits its MuJoCo thread pool but not the threads; freeing it there must not join them (which
    hangs or aborts the child, "thread::join failed")."""
    import gc
    import multiprocessing

    from mt_specialize.experiments import get_experiment

    gc.disable()  # keep the cycle uncollected in this process until the fork
    try:
        env = MultiTaskVecEnv(list(get_experiment("three_hoppers").tasks), 2, seed=0, nthread=2)
        env.reset()
        cycle = [env]
        cycle.append(cycle)
        del env, cycle
        child = multiprocessing.get_context("fork").Process(target=gc.collect)
        child.start()
    finally:
        gc.enable()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0, f"the child hung or died (exit code {child.exitcode})"
