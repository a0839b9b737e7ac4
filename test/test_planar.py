"""The planar robot's named quantities and its control step (envs/planar.py, tasks.TaskRobot)."""
import mujoco
import numpy as np
import pytest

from mt_specialize.envs import planar
from mt_specialize.envs.tasks import TASKS, TaskEnv, TaskRobot, TaskSpec, get_task

ROBOT_TASKS = ["hopper_capsule", "hopper_box", "biped_forward", "hopper_gymnasium"]


def _pose(model, x, height, pitch, speed):
    """(qpos, qvel) at the start pose moved to x, height, pitch and moving forward at speed."""
    qpos, qvel = model.qpos0.copy(), np.zeros(model.nv)
    qpos[planar.X], qpos[planar.HEIGHT], qpos[planar.PITCH] = x, height, pitch
    qvel[planar.X] = speed
    return qpos, qvel


@pytest.mark.parametrize("name", ROBOT_TASKS)
def test_named_quantities_are_the_torso_pose_mujoco_computes(name):
    """Set a pose by name, then read the torso's frame from MuJoCo's kinematics: its origin is at
    (x, height), it is turned by pitch about +y, and its origin moves forward at speed."""
    robot = TaskRobot(get_task(name))
    x, height, pitch, speed = 0.7, 1.05, 0.3, -1.25
    qpos, qvel = _pose(robot.model, x, height, pitch, speed)
    robot.data.qpos[:], robot.data.qvel[:] = qpos, qvel
    mujoco.mj_forward(robot.model, robot.data)

    assert (planar.x_position(qpos), planar.height(qpos), planar.pitch(qpos)) == (x, height, pitch)
    assert planar.speed(qvel) == speed
    assert (robot.x(), robot.height(), robot.pitch(), robot.speed()) == (x, height, pitch, speed)
    torso = 1  # the first body after the world carries the planar root
    assert mujoco.mj_id2name(robot.model, mujoco.mjtObj.mjOBJ_JOINT, robot.model.body_jntadr[torso]) == "rootx"
    position = robot.data.xpos[torso]
    np.testing.assert_allclose([position[0], position[2]], [x, height], atol=1e-12)
    rotation = robot.data.xmat[torso].reshape(3, 3)
    assert np.arctan2(rotation[0, 2], rotation[0, 0]) == pytest.approx(pitch, abs=1e-12)
    velocity = np.zeros(6)  # [angular, linear] at the torso origin, world axes
    mujoco.mj_objectVelocity(robot.model, robot.data, mujoco.mjtObj.mjOBJ_BODY, torso, velocity, 0)
    assert velocity[3] == pytest.approx(speed, abs=1e-12)


def test_named_quantities_keep_any_leading_shape():
    """(T, E, nq) states give (T, E) quantities, each the one of its own row."""
    rng = np.random.default_rng(0)
    qpos, qvel = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    for name, value in (("x_position", planar.x_position(qpos)), ("height", planar.height(qpos)),
                        ("pitch", planar.pitch(qpos)), ("speed", planar.speed(qvel))):
        assert value.shape == (3, 4), name
    np.testing.assert_array_equal(planar.height(qpos)[2, 1], planar.height(qpos[2, 1]))
    np.testing.assert_array_equal(planar.without_x(qpos), qpos[..., 1:])
    state = planar.state_vector(qpos, qvel)
    assert state.shape == (3, 4, 12)
    np.testing.assert_array_equal(planar.without_x_and_height(state)[..., 0], planar.pitch(qpos))
    np.testing.assert_array_equal(planar.without_x_and_height(state)[..., 4:], qvel)
    np.testing.assert_allclose(planar.mean_speed([0.0, 1.0], [0.016, 0.9], 0.008), [2.0, -12.5], rtol=1e-12)


def test_every_task_has_the_planar_root_and_a_model_without_one_is_refused():
    for task in TASKS.values():
        planar.check_planar_root(task.build_model(), task.name)
    free = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint name="free"/><geom size="0.1"/></body></worldbody></mujoco>')
    with pytest.raises(ValueError, match=r"first joints must be \['rootx', 'rootz', 'rooty'\].*got \['free'\]"):
        planar.check_planar_root(free, "ball")


@pytest.mark.parametrize("name", ["hopper_capsule", "biped_backward"])
def test_one_control_step_is_frame_skip_substeps_from_a_zero_warm_start(name):
    """TaskRobot.step = ctrl, zero warm-start, frame_skip x mj_step (written out here), then the
    task's reward on x before/after and its termination rule."""
    task = get_task(name)
    robot = TaskRobot(task)
    robot.reset(np.random.default_rng(4))
    model = task.build_model()
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = robot.data.qpos, robot.data.qvel
    rng = np.random.default_rng(5)
    contacts = 0
    for _ in range(30):
        action = rng.uniform(-1.2, 1.2, task.act_dim)
        robot.data.qacc_warmstart[:] = rng.normal(size=model.nv)  # the control step starts from zero
        x_before = data.qpos[planar.X]
        data.ctrl[:] = action
        data.qacc_warmstart[:] = 0.0
        for _ in range(task.frame_skip):
            mujoco.mj_step(model, data)
        step = robot.step(action)
        np.testing.assert_array_equal(robot.data.qpos, data.qpos)
        np.testing.assert_array_equal(robot.data.qvel, data.qvel)
        assert (step.x_before, step.x_after) == (x_before, data.qpos[planar.X])
        assert step.mean_speed == (data.qpos[planar.X] - x_before) / task.dt
        assert step.reward == task.reward(np.array([x_before]), data.qpos[None, planar.X], action[None])[0]
        assert step.terminated == task.terminated(data.qpos[None], data.qvel[None])[0]
        contacts += data.ncon
        if step.terminated:
            break
    assert contacts > 0, "the steps compared should include contacts, where the warm-start matters"


def test_control_period_is_the_tasks_timestep_times_frame_skip():
    slow = TaskSpec("slow", "hopper_capsule", frame_skip=10)
    robot = TaskRobot(slow)
    assert robot.dt == slow.dt == pytest.approx(0.02)
    assert TaskEnv(slow).metadata["render_fps"] == 50
