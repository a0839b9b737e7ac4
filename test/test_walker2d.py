"""Robot ``gymnasium:walker2d`` (Gymnasium's Walker2d-v5 model) under the biped's rules, and the
physics setting ``damping``."""
import os
import tempfile

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mt_specialize.envs import physics, robots
from mt_specialize.envs.robots import RobotSpec
from mt_specialize.envs.tasks import TASKS, TaskEnv, TaskSpec
from gymnasium_lockstep import assert_steps_like_gymnasium
from mt_specialize.experiments import Experiment, apply_profile, complete_physics_record, load_experiment_yaml

WALKER2D_XML = robots.GYMNASIUM_ASSETS / "walker2d_v5.xml"
HINGES = ["thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint", "leg_left_joint", "foot_left_joint"]


def _mjb(model: mujoco.MjModel) -> bytes:
    path = tempfile.mktemp(suffix=".mjb")
    try:
        mujoco.mj_saveModel(model, path, None)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.remove(path)


def _motor_joints(model: mujoco.MjModel) -> list[str]:
    return [model.joint(model.actuator_trnid[a, 0]).name for a in range(model.nu)]


def test_walker2d_tasks_build_gymnasiums_file_as_it_is_under_every_profile():
    reference = _mjb(mujoco.MjModel.from_xml_path(str(WALKER2D_XML)))
    assert _mjb(robots.build_model("gymnasium:walker2d")) == reference
    for profile in ("none", "mujoco", "paper"):
        for name in ("walker2d_forward", "walker2d_backward"):
            task = apply_profile(Experiment("w", (TASKS[name],), 10), profile).tasks[0]
            assert _mjb(task.build_model()) == reference, (profile, name)
    defaults = robots.default_physics("gymnasium:walker2d")
    assert (defaults["armature"], defaults["integrator"], defaults["damping"]) == (0.01, "rk4", None)


def test_walker2d_has_the_bipeds_joints_and_motors_in_the_same_order():
    walker, biped = TASKS["walker2d_forward"].build_model(), TASKS["biped_forward"].build_model()
    names = lambda m: [m.joint(j).name for j in range(m.njnt)]  # noqa: E731
    assert names(walker) == names(biped) == ["rootx", "rootz", "rooty", *HINGES]
    assert _motor_joints(walker) == _motor_joints(biped) == HINGES
    assert (TASKS["walker2d_forward"].obs_dim, TASKS["walker2d_forward"].act_dim) == (17, 6)
    # its own values, where they differ from our biped's
    np.testing.assert_array_equal(walker.actuator_gear[:, 0], 100.0)
    np.testing.assert_allclose(walker.dof_damping, [0, 0, 0] + [0.1] * 6)
    np.testing.assert_allclose(walker.dof_armature, [0, 0, 0] + [0.01] * 6)


def test_mjcf_robot_with_motors_in_another_order_is_refused(tmp_path):
    text = WALKER2D_XML.read_text()
    swapped = text.replace('joint="thigh_joint"', 'joint="TMP"').replace('joint="foot_joint"', 'joint="thigh_joint"') \
        .replace('joint="TMP"', 'joint="foot_joint"')
    path = tmp_path / "walker2d_swapped.xml"
    path.write_text(swapped)
    spec = RobotSpec("swapped", None, None, None, "torso", "biped", path)
    with pytest.raises(ValueError, match=r"motors must drive its hinges one each in joint order.*"
                                         r"got motors on \['foot_joint', 'leg_joint', 'thigh_joint'"):
        robots.build_model(spec)


def test_walker2d_task_env_passes_gymnasiums_checker_and_steps():
    env = gym.make("mt_specialize/Walker2dForward-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,)
    rng = np.random.default_rng(0)
    x0 = env.unwrapped.robot.x()
    for _ in range(50):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 6))
        assert np.isfinite(obs).all() and np.isfinite(reward)
        if terminated:
            break
    assert env.unwrapped.robot.x() != x0
    env.close()


def test_walker2d_forward_steps_as_gymnasiums_walker2d_v5():
    """From the same state, the same actions give Walker2d-v5's observation and termination; the
    reward differs only by the biped's control cost (0.1 against Walker2d-v5's 1e-3) and the alive
    bonus, which Walker2d-v5 does not pay on the step that ends unhealthy."""
    def as_v5(reward, action, terminated):
        ctrl = float(np.sum(action ** 2))
        return reward + 0.1 * ctrl - 1e-3 * ctrl - (1.0 if terminated else 0.0)

    assert_steps_like_gymnasium("Walker2d-v5", "walker2d_forward", seed=3, steps_per_episode=80,
                                as_reference_reward=as_v5)


@pytest.mark.parametrize("robot", ["biped", "gymnasium:walker2d"])
def test_damping_setting_sets_every_actuated_hinge_and_none_keeps_the_files(robot):
    base = robots.build_model(robot)
    damped = robots.build_model(robot, physics={"damping": 2.5})
    np.testing.assert_array_equal(damped.dof_damping[:3], 0.0)  # the planar root
    np.testing.assert_array_equal(damped.dof_damping[3:], 2.5)
    assert _mjb(robots.build_model(robot, physics={"damping": None})) == _mjb(base)


def test_ankle_gears_and_run_wide_settings_reach_the_walker2d():
    task = TaskSpec("w", "gymnasium:walker2d", "biped", gears=(100, 100, 20, 100, 100, 20))
    overrides = {"damping": 1.0, "integrator": "euler", "friction": 0.9}
    model = apply_profile(Experiment("w", (task,), 10), "none", overrides).tasks[0].build_model()
    np.testing.assert_array_equal(model.actuator_gear[:, 0], [100, 100, 20, 100, 100, 20])
    np.testing.assert_array_equal(model.dof_damping[3:], 1.0)
    np.testing.assert_array_equal(model.geom_friction[:, 0], 0.9)  # floor and feet too
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    np.testing.assert_allclose(model.dof_armature[3:], 0.01)  # unset: the file's


@pytest.mark.parametrize("value", [-1.0, "high", float("nan"), True])
def test_bad_damping_is_refused_naming_what_is_allowed(value):
    with pytest.raises(ValueError, match=r"damping \(None = the robot file's, or N\*m\*s/rad\) must be a non-negative finite number"):
        TaskSpec("w", "gymnasium:walker2d", "biped", physics={"damping": value})


def test_unknown_robot_error_lists_walker2d():
    with pytest.raises(ValueError, match=r"unknown robot 'walker3d'.*'gymnasium:walker2d'"):
        robots.get_robot("walker3d")


def test_experiment_yaml_names_the_walker2d_robot(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("batch_size: 8000\ntasks:\n"
                    "  - {name: biped_forward, robot: 'gymnasium:walker2d', direction: 1}\n"
                    "  - {name: biped_backward, robot: 'gymnasium:walker2d', direction: -1, physics: {damping: 1.0}}\n")
    experiment = load_experiment_yaml(path)
    forward, backward = experiment.tasks
    assert (forward.family, forward.ctrl_cost, backward.direction) == ("biped", 0.1, -1)
    resolved = apply_profile(experiment, "none").tasks
    assert _mjb(resolved[0].build_model()) == _mjb(mujoco.MjModel.from_xml_path(str(WALKER2D_XML)))
    np.testing.assert_array_equal(resolved[1].build_model().dof_damping[3:], 1.0)


def test_a_physics_record_without_a_setting_reads_as_that_settings_default():
    experiment = apply_profile(Experiment("b", (TASKS["biped_forward"], TASKS["walker2d_forward"]), 10), "none")
    record = {"biped_forward": {"armature": 1.0, "torso_mass": None}, "walker2d_forward": {"damping": 0.5}}
    completed = complete_physics_record(experiment, record)
    assert completed["biped_forward"] == {**physics.default_physics("biped"), "torso_mass": None}
    assert completed["walker2d_forward"]["armature"] == 0.01 and completed["walker2d_forward"]["damping"] == 0.5
