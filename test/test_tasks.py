"""Tasks: observation, reward, termination, resets, Gymnasium envs (docs/method.md#robots-and-tasks)."""
import dataclasses
import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mt_specialize.envs.tasks import ENV_IDS, TASKS, TaskEnv, TaskSpec, get_task

HOPPER_TASKS = [n for n, t in TASKS.items() if t.family == "hopper"]


@pytest.mark.parametrize("name", list(TASKS))
def test_check_env_and_shapes(name):
    env = gym.make(ENV_IDS[name])
    expected = (11, 3) if TASKS[name].family == "hopper" else (17, 6)
    assert (env.observation_space.shape[0], env.action_space.shape[0]) == expected
    assert env.observation_space.dtype == np.float64
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    with pytest.warns(UserWarning, match="infinity"):  # unbounded observation Box (qpos) is intended
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_registered_ids_and_torso_masses():
    assert set(ENV_IDS) == set(TASKS)
    for m in (3, 8, 14, 15):
        task = get_task(f"hopper_torso{m}")
        assert task.robot == "hopper_capsule" and task.torso_mass == m
        assert gym.make(f"mt_specialize/HopperTorso{m}-v0").unwrapped.model.body("torso").mass[0] == m


def test_dt_and_defaults():
    for task in TASKS.values():
        assert task.dt == pytest.approx(0.008)
        assert (task.frame_skip, task.horizon, task.reset_noise) == (4, 1000, 0.005)
    assert TASKS["hopper_box"].ctrl_cost == 1e-3 and TASKS["biped_forward"].ctrl_cost == 0.1


def test_observation_layout():
    task = get_task("hopper_capsule")
    qpos = np.arange(6.0)[None] + 0.5
    qvel = np.array([[-20.0, -5, 0, 5, 10.5, 3]])
    obs = task.observation(qpos, qvel)
    np.testing.assert_array_equal(obs, [[1.5, 2.5, 3.5, 4.5, 5.5, -10, -5, 0, 5, 10, 3]])


def test_reward_of_one_transition_by_hand():
    env = TaskEnv("hopper_box")
    env.reset(seed=3)
    action = np.array([0.5, -2.0, 1.5])  # outside [-1, 1]: the cost uses it unclipped
    x0 = env.data.qpos[0]
    _, reward, _, _, info = env.step(action)
    x1 = env.data.qpos[0]
    by_hand = (x1 - x0) / 0.008 + 1.0 - 1e-3 * (0.25 + 4.0 + 2.25)
    assert reward == pytest.approx(by_hand, rel=1e-12)
    assert x1 != x0 and info["x_velocity"] == pytest.approx((x1 - x0) / 0.008)
    np.testing.assert_array_equal(env.data.ctrl, action)  # MuJoCo clamps at use, ctrl keeps the action


def test_biped_forward_backward_opposite_velocity_terms():
    fwd, bwd = get_task("biped_forward"), get_task("biped_backward")
    x0, x1 = np.array([0.0, 1.0]), np.array([0.08, 0.9])
    a = np.ones((2, 6)) * 0.5
    r_f, r_b = fwd.reward(x0, x1, a), bwd.reward(x0, x1, a)
    alive_minus_ctrl = 1.0 - 0.1 * 6 * 0.25
    np.testing.assert_allclose(r_f - alive_minus_ctrl, [10.0, -12.5])
    np.testing.assert_allclose(r_b - alive_minus_ctrl, -(r_f - alive_minus_ctrl))


def _steps_above_cap_where_both_envs_agree(task) -> int:
    """Random actions on ``task`` in the batched env and in the single env (the ROS simulator's) from
    one state: every reward equal (asserted); the number of steps faster than the task's cap."""
    from mt_specialize.envs.vec_env import MultiTaskVecEnv

    env = MultiTaskVecEnv([task, get_task("biped_forward")], 1, seed=1, nthread=1)
    env.reset()
    robot = TaskEnv(task)
    robot.reset(seed=0)
    robot.data.qpos[:], robot.data.qvel[:] = env.qpos()[0, 0], env.qvel()[0, 0]
    rng = np.random.default_rng(0)
    above = 0
    for _ in range(30):
        actions = rng.uniform(-1, 1, (2, 1, 6))
        result = env.step(actions)
        _, reward, terminated, _, info = robot.step(actions[0, 0])
        assert reward == result.reward[0, 0]
        above += info["x_velocity"] > task.speed_cap
        if terminated:
            break
    return above


def test_speed_cap_rewards_speed_up_to_the_cap_only(tmp_path):
    capped = dataclasses.replace(get_task("biped_backward"), name="walk_backward", speed_cap=1.0)
    x0 = np.zeros(4)
    x1 = np.array([-0.004, -0.008, -0.016, 0.016])  # backward at 0.5, 1, 2 m/s; forward at 2 m/s
    a = np.zeros((4, 6))
    np.testing.assert_allclose(capped.reward(x0, x1, a) - 1.0, [0.5, 1.0, 1.0, -2.0])  # a loss stays whole
    np.testing.assert_array_equal(get_task("biped_backward").reward(x0, x1, a) - 1.0, [0.5, 1.0, 2.0, -2.0])
    # the batched env and the single env agree under the cap (the ROS simulator steps the latter)
    fast = dataclasses.replace(get_task("biped_forward"), name="walk_forward", speed_cap=0.05)
    assert _steps_above_cap_where_both_envs_agree(fast) > 0
    for bad in (0.0, -1.0, float("inf"), "fast"):
        with pytest.raises(ValueError, match="speed_cap"):
            dataclasses.replace(fast, speed_cap=bad)
    from mt_specialize.experiments import get_experiment

    path = tmp_path / "walk.yaml"
    path.write_text("batch_size: 800\ntasks:\n  - {name: w, robot: biped, direction: -1, speed_cap: 1.0}\n")
    assert get_experiment(str(path)).tasks[0].speed_cap == 1.0
    path.write_text("batch_size: 800\ntasks:\n  - {name: w, robot: biped, speed_cap: -1}\n")
    with pytest.raises(ValueError, match="speed_cap"):
        get_experiment(str(path))


def test_overspeed_penalty_makes_the_speed_term_peak_at_the_cap(tmp_path):
    tent = dataclasses.replace(get_task("biped_backward"), name="walk_backward", speed_cap=1.0, overspeed_penalty=1.0)
    x0 = np.zeros(5)
    x1 = np.array([-0.004, -0.008, -0.012, -0.016, 0.016])  # backward at 0.5, 1, 1.5, 2 m/s; forward at 2 m/s
    a = np.zeros((5, 6))
    np.testing.assert_allclose(tent.reward(x0, x1, a) - 1.0, [0.5, 1.0, 0.5, 0.0, -2.0])
    # the batched env and the single env agree
    fast = dataclasses.replace(get_task("biped_forward"), name="walk_forward", speed_cap=0.05, overspeed_penalty=2.0)
    assert _steps_above_cap_where_both_envs_agree(fast) > 0
    for bad in (-0.5, float("nan"), "much"):
        with pytest.raises(ValueError, match="overspeed_penalty"):
            dataclasses.replace(tent, overspeed_penalty=bad)
    with pytest.raises(ValueError, match="needs a speed_cap"):
        dataclasses.replace(tent, speed_cap=None)
    from mt_specialize.experiments import get_experiment

    path = tmp_path / "walk.yaml"
    path.write_text("batch_size: 800\ntasks:\n  - {name: w, robot: biped, speed_cap: 1.0, overspeed_penalty: 1.0}\n")
    assert get_experiment(str(path)).tasks[0].overspeed_penalty == 1.0


def _healthy(task):
    model = task.build_model()
    return model.qpos0[None].copy(), np.zeros((1, model.nv))


@pytest.mark.parametrize("name", ["hopper_capsule", "hopper_ellipsoid"])
def test_hopper_termination_rules(name):
    task = get_task(name)
    h = task.start_height
    qpos, qvel = _healthy(task)
    assert not task.terminated(qpos, qvel, h)[0]
    cases = []
    for index, value in ((1, 0.56 * h), (2, 0.2), (2, -0.2), (3, 100.0), (4, -100.0), (0, math.nan)):
        q = qpos.copy()
        q[0, index] = value
        cases.append((q, qvel))
    v = qvel.copy()
    v[0, 5] = 100.0
    cases.append((qpos, v))
    v = qvel.copy()
    v[0, 0] = math.inf
    cases.append((qpos, v))
    for q, v in cases:
        assert task.terminated(q, v, h)[0], (q, v)
    # just inside the limits: healthy; x and z are not bounded by 100 (state[2:] = angles, qvel)
    q = qpos.copy()
    q[0, :4] = [1e6, 0.56 * h + 1e-9, 0.199, 99.9]
    v = qvel.copy()
    v[0, 0] = 99.9
    assert not task.terminated(q, v, h)[0]
    v[0, 0] = 100.0  # vx is part of state[2:]
    assert task.terminated(q, v, h)[0]
    # vectorised, and the height limit follows the start height passed in
    q = np.repeat(qpos, 3, axis=0)
    q[:, 1] = [0.6 * h, 0.5 * h, 0.9]
    np.testing.assert_array_equal(task.terminated(q, np.zeros((3, 6)), h), [False, True, 0.9 <= 0.56 * h])
    assert task.terminated(q[2:], np.zeros((1, 6)), 0.9 / 0.56)[0]


def test_biped_termination_rules():
    task = get_task("biped_backward")
    qpos, qvel = _healthy(task)
    assert not task.terminated(qpos, qvel, 1.25)[0]
    for index, value in ((1, 0.8), (1, 2.0), (2, 1.0), (2, -1.0), (3, math.nan)):
        q = qpos.copy()
        q[0, index] = value
        assert task.terminated(q, qvel, 1.25)[0], (index, value)
    q = qpos.copy()
    q[0, 1:4] = [0.81, 0.99, 2.0]  # hinge angle 2.0 is fine for the biped, 150 is fine too
    v = qvel.copy()
    v[0, 4] = 150.0
    assert not task.terminated(q, v, 1.25)[0]


def test_same_seed_same_trajectory_different_seed_different_reset():
    def rollout(seed):
        env = TaskEnv("biped_forward")
        obs, _ = env.reset(seed=seed)
        actions = np.random.default_rng(0).uniform(-1, 1, (50, 6))
        out = [obs]
        for a in actions:
            obs, r, term, trunc, _ = env.step(a)
            out.append(np.append(obs, r))
            if term:
                break
        return out

    a, b = rollout(7), rollout(7)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    c = rollout(8)
    assert not np.array_equal(a[0], c[0])


def test_sample_reset_noise():
    task = get_task("hopper_capsule")
    model = task.build_model()
    qpos, qvel = task.sample_reset(model, np.random.default_rng(0), 500)
    assert qpos.shape == (500, 6) and qvel.shape == (500, 6)
    assert np.all(np.abs(qpos - model.qpos0) <= 0.005) and np.all(np.abs(qvel) <= 0.005)
    assert np.abs(qpos - model.qpos0).max() > 0.004
    q2, v2 = task.sample_reset(model, np.random.default_rng(0), 500)
    assert np.array_equal(qpos, q2) and np.array_equal(qvel, v2)


def test_step_is_zero_warmstart_mj_step():
    env = TaskEnv("hopper_capsule")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(100):  # land: contacts make the constraint solver (and its warm-start) matter
        env.step(np.zeros(3))
        if env.data.ncon > 0:
            break
    assert env.data.ncon > 0
    model, data = env.model, mujoco.MjData(env.model)
    for _ in range(5):
        data.qpos[:], data.qvel[:] = env.data.qpos, env.data.qvel
        data.qacc_warmstart[:] = 0
        action = rng.uniform(-1, 1, 3)
        env.step(action)
        data.ctrl[:] = action
        mujoco.mj_step(model, data, nstep=4)
        np.testing.assert_array_equal(env.data.qpos, data.qpos)
        np.testing.assert_array_equal(env.data.qvel, data.qvel)


def test_truncation_at_horizon():
    env = TaskEnv(dataclasses.replace(get_task("hopper_capsule"), horizon=3))
    env.reset(seed=0)
    flags = [env.step(np.zeros(3))[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_bad_task_values():
    with pytest.raises(ValueError, match=r"unknown task 'hopper_cylinder': allowed are \[.*'hopper_box'"):
        get_task("hopper_cylinder")
    with pytest.raises(ValueError, match=r"family 'quadruped', allowed \['hopper', 'biped'\]"):
        TaskSpec("t", "hopper_capsule", family="quadruped")
    with pytest.raises(ValueError, match=r"direction 2, allowed \+1 or -1"):
        TaskSpec("t", "hopper_capsule", direction=2)
    with pytest.raises(ValueError, match=r"torso_mass must be a positive finite number, got -3"):
        TaskSpec("t", "hopper_capsule", torso_mass=-3)
    with pytest.raises(ValueError, match=r"mass_scale must be a positive finite number, got nan"):
        TaskSpec("t", "hopper_capsule", mass_scale=math.nan)
    with pytest.raises(ValueError, match=r"unknown robot 'tripod'"):
        TaskSpec("t", "tripod")


def test_render_rgb_array():
    pytest.importorskip("imageio")
    env = TaskEnv("hopper_capsule", render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    env.close()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0


def test_render_frames_and_png(tmp_path):
    pytest.importorskip("imageio")
    from mt_specialize.envs.render import render_frames, render_task_png

    task = get_task("biped_forward")
    qpos = np.tile(task.build_model().qpos0, (2, 1))
    qpos[1, 0] += 0.5  # camera tracks the torso: moving it changes only the floor pattern
    qpos[1, 3] = -1.0  # bent right hip
    frames = render_frames(task, qpos, width=64, height=64)
    assert len(frames) == 2 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    path = render_task_png(get_task("hopper_box"), tmp_path / "box.png", width=32, height=32)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TypeError, match="get_task"):
        render_frames("hopper_box", qpos)


def test_cli_snapshot_renders_a_task_by_name(tmp_path):
    pytest.importorskip("imageio")
    from mt_specialize.cli import main

    assert main(["snapshot", "hopper_box", str(tmp_path / "box.png"), "--width", "32", "--height", "32"]) == 0
    assert (tmp_path / "box.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ankle100_variant_is_specs_biped_with_walker2d_ankles():
    spec_biped, variant = get_task("biped_forward").build_model(), get_task("biped_forward_ankle100").build_model()
    np.testing.assert_array_equal(spec_biped.actuator_gear[:, 0], [100, 100, 20, 100, 100, 20])
    np.testing.assert_array_equal(variant.actuator_gear[:, 0], [100] * 6)
    np.testing.assert_array_equal(spec_biped.body_mass, variant.body_mass)  # only the ankles differ
    np.testing.assert_array_equal(spec_biped.jnt_range, variant.jnt_range)
    back = get_task("biped_backward_ankle100")
    assert back.direction == -1 and back.gears == get_task("biped_forward_ankle100").gears
