"""The DART engine (physics setting ``engine: dart``, profile ``paper_dart``): its robots are the MuJoCo
models' and the authors', its physics meets the closed forms, a step depends on (state, action) alone,
batched equals single and a resumed run the uninterrupted one, and the rules read both engines alike."""
import csv
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mt_specialize.config import TrainConfig
from mt_specialize.envs import dart_engine, physics, robots
from mt_specialize.envs.tasks import TaskRobot, TaskSpec
from mt_specialize.envs.vec_env import MultiTaskVecEnv
from mt_specialize.experiments import apply_profile, get_experiment, profiled_task

needs_dart = pytest.mark.skipif(not dart_engine.available(), reason="dartpy is not installed (pip install .[dart])")
ROBOT_TASKS = ("hopper_capsule", "hopper_box", "hopper_ellipsoid", "biped_forward")
G = 9.81  # m/s^2, MuJoCo's default gravity, which the DART world takes from the model
DT = 0.002  # s


def dart_task(name: str) -> TaskSpec:
    return profiled_task(name, "paper_dart")


def lowest_point(model, qpos) -> float:
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    return robots._lowest_point(model, data)


# -- the optional dependency --------------------------------------------------------------------------
def test_without_dartpy_choosing_the_engine_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dartpy", None)  # `import dartpy` raises ImportError
    with pytest.raises(ValueError, match=r"task 'hopper_capsule': the physics engine 'dart' needs dartpy.*"
                                         r"pip install 'mt_specialize\[dart\]'"):
        dart_task("hopper_capsule")
    assert profiled_task("hopper_capsule", "paper").resolved_physics["engine"] == "mujoco"  # MuJoCo needs none
    # the command line: exit 2, the extra named, nothing written
    script = textwrap.dedent(f"""
        import sys
        sys.modules["dartpy"] = None
        from mt_specialize.cli import main
        sys.exit(main(["train", "biped_fwd_bwd", "--profile", "paper_dart", "--samples", "24k", "--jt", "8k",
                       "--out", {str(tmp_path / "run")!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "needs dartpy" in result.stderr and ".[dart]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@needs_dart
def test_engine_settings_are_validated_and_dart_needs_its_counterparts():
    with pytest.raises(ValueError, match=r"engine is 'bullet'; allowed \['mujoco', 'dart'\]"):
        TaskSpec("t", "hopper_capsule", physics={"engine": "bullet"})
    with pytest.raises(ValueError, match=r"collision_detector is 'gjk'; allowed \['auto', 'ode', 'dart', 'fcl', "
                                         r"'bullet'\]"):
        TaskSpec("t", "hopper_capsule", physics={"collision_detector": "gjk"})
    # the URDF defaults have armature 1 and soft limits, which DART cannot do
    with pytest.raises(ValueError, match=r"task 't': physics: engine 'dart' has no counterpart for armature 1.0 "
                                         r"\(DART: 0.0\), joint_limits 'soft' \(DART: 'hard'\); set those"):
        TaskSpec("t", "hopper_capsule", physics={"engine": "dart"})
    # FCL has no capsule, ODE no ellipsoid: refused, naming the detectors that fit
    with pytest.raises(ValueError, match=r"DART's 'fcl' collision detector has no capsule .*detectors that handle "
                                         r"\['capsule'\]: \['ode', 'dart', 'bullet'\]"):
        profiled_task("hopper_capsule", "paper_dart", {"collision_detector": "fcl"})
    with pytest.raises(ValueError, match=r"'ode' collision detector has no ellipsoid"):
        profiled_task("hopper_ellipsoid", "paper_dart", {"collision_detector": "ode"})
    assert dart_engine.description(profiled_task("hopper_capsule", "paper_dart", {"collision_detector": "dart"})).detector \
        == "dart"


def test_paper_dart_is_the_paper_profile_on_dart():
    from mt_specialize.config import PROFILE_SETTINGS

    assert physics.PROFILES["paper_dart"]["settings"] == {**physics.PROFILES["paper"]["settings"], "engine": "dart"}
    assert physics.PROFILES["paper_dart"]["family"] == physics.PROFILES["paper"]["family"]
    assert physics.PROFILES["paper_dart"]["tasks"] == physics.PROFILES["paper"]["tasks"]
    assert PROFILE_SETTINGS["paper_dart"] == PROFILE_SETTINGS["paper"]
    # a config.yaml without the new settings means today's robots: MuJoCo
    assert robots.default_physics("hopper_capsule")["engine"] == "mujoco"


# -- the robot: the MuJoCo model's, the authors' numbers ------------------------------------------------
@needs_dart
@pytest.mark.parametrize("name", ROBOT_TASKS)
def test_skeleton_has_the_mujoco_models_masses_inertias_limits_gears_and_kinematics(name):
    task = dart_task(name)
    model = task.build_model()
    world = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
    skel = world.skeleton
    assert skel.getNumDofs() == model.nv and [skel.getDof(i).getName() for i in range(model.nv)] == \
        [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)]
    for b in range(1, model.nbody):
        node = skel.getBodyNode(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b))
        assert node.getMass() == model.body_mass[b]
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.body_iquat[b])
        rot = rot.reshape(3, 3)
        np.testing.assert_allclose(node.getInertia().getMoment(), rot @ np.diag(model.body_inertia[b]) @ rot.T,
                                   rtol=0, atol=1e-15)
        np.testing.assert_array_equal(node.getInertia().getLocalCOM(), model.body_ipos[b])
    for j in range(3, model.njnt):  # the hinges: hard limits, damping 1.0 (the root joints: neither)
        dof = skel.getDof(j)
        assert (dof.getPositionLowerLimit(), dof.getPositionUpperLimit()) == tuple(model.jnt_range[j])
        assert skel.getJoint(dof.getName()).areLimitsEnforced() and dof.getDampingCoefficient() == 1.0
    assert all(skel.getDof(j).getDampingCoefficient() == 0.0 for j in range(3))
    # torque = gear * clip(action, -1, 1) on the hinges, nothing on the root
    gears = model.actuator_gear[:, 0]
    np.testing.assert_array_equal(world.torques(np.full(model.nu, 0.5)), np.r_[0, 0, 0, 0.5 * gears])
    np.testing.assert_array_equal(world.torques(np.full(model.nu, -3.0)), np.r_[0, 0, 0, -gears])
    # the generalised coordinates are MuJoCo's: every body at the same pose for the same qpos
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0 + np.random.default_rng(0).uniform(-0.4, 0.4, model.nq)
    mujoco.mj_kinematics(model, data)
    skel.setPositions(data.qpos)
    for b in range(1, model.nbody):
        pose = skel.getBodyNode(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)).getWorldTransform()
        np.testing.assert_allclose(pose.translation(), data.xpos[b], rtol=0, atol=1e-15)
        np.testing.assert_allclose(pose.rotation(), data.xmat[b].reshape(3, 3), rtol=0, atol=1e-15)


@needs_dart
def test_capsule_links_carry_the_authors_inertia():
    """DART's .skel parser gave each capsule link its capsule's axial moment about the hinge axis
    (physics.dart_inertia): hopper torso / thigh / shin / foot 0.00429 / 0.00478 / 0.00213 / 0.00885 kg m^2."""
    skel = dart_engine.DartWorld(dart_engine.description(dart_task("hopper_capsule")), 4).skeleton
    about_hinge = [skel.getBodyNode(n).getInertia().getMoment()[1, 1] for n in ("torso", "thigh", "leg", "foot")]
    np.testing.assert_allclose(about_hinge, [0.00429, 0.00478, 0.00213, 0.00885], atol=5e-6)


# -- the authors' collision detectors and what they do with a foot on the floor ------------------------
def floor_contacts(name: str, detector: str, depth: float = 0.001):
    """(shape name, point (3,), penetration) of every contact of ``name``'s robot at its start pose with
    its lowest point ``depth`` m in the floor, under ``detector`` (the world's own collision filter)."""
    import dartpy

    task = dart_task(name)
    model = task.build_model()
    desc = dataclasses.replace(dart_engine.description(task), detector=detector)
    world = dart_engine.DartWorld(desc, task.frame_skip)
    qpos = model.qpos0.copy()
    qpos[1] -= lowest_point(model, qpos) + depth
    world.skeleton.setPositions(qpos)
    solver = world.world.getConstraintSolver()
    result = dartpy.collision.CollisionResult()
    solver.getCollisionGroup().collide(solver.getCollisionOption(), result)
    contacts = []
    for c in result.getContacts():
        names = {c.collisionObject1.getShapeFrame().getName(), c.collisionObject2.getShapeFrame().getName()}
        assert "ground" in names  # robot shapes touch only the floor
        contacts.append(((names - {"ground"}).pop(), np.asarray(c.point), c.penetrationDepth))
    return sorted(contacts, key=lambda c: (c[0], *np.round(c[1], 6)))


@needs_dart
def test_each_robot_has_the_authors_detector():
    """dart-env b15a4ed2: hopper.py sets detectors 3, 0, 1 on the capsule, box, ellipsoid worlds,
    walker2d.py 3 on walker2d.skel; pydart2's pydart2_world_api.cpp maps 0 DART, 1 FCL, 2 Bullet, 3 ODE."""
    found = {}
    for name in ROBOT_TASKS:
        world = dart_engine.DartWorld(dart_engine.description(dart_task(name)), 4)
        found[name] = world.world.getConstraintSolver().getCollisionDetector().getType()
    assert found == {"hopper_capsule": "ode", "hopper_box": "dart", "hopper_ellipsoid": "fcl", "biped_forward": "ode"}


@needs_dart
def test_a_foot_resting_in_the_floor_gets_its_detectors_contacts():
    """Each robot at its start pose, lowered until its lowest point is 1 mm in the floor."""
    # capsule foot (centre 0.065 m ahead of the ankle, cylinder 0.39 m) on ODE: ODE's capsule-box
    # collider returns one point, the front cap's (x = 0.065 + 0.195 = 0.26), halfway into the floor
    (shape, point, depth), = floor_contacts("hopper_capsule", "ode")
    assert shape == "foot_shape0" and depth == pytest.approx(0.001, abs=1e-12)
    np.testing.assert_allclose(point, [0.26, 0.0, -0.0005], atol=1e-9)
    # box foot (0.429 x 0.132 x 0.132 m, centre x 0.0715) on DART's detector: the four bottom corners
    contacts = floor_contacts("hopper_box", "dart")
    assert [c[0] for c in contacts] == ["foot_shape0"] * 4
    np.testing.assert_allclose([c[2] for c in contacts], 0.001, atol=1e-12)
    np.testing.assert_allclose(np.array([c[1] for c in contacts]),
                               [[-0.143, -0.066, -0.0005], [-0.143, 0.066, -0.0005],
                                [0.286, -0.066, -0.0005], [0.286, 0.066, -0.0005]], atol=1e-9)
    # ellipsoid foot (centre x 0.078) on FCL: one point under its centre
    (shape, point, depth), = floor_contacts("hopper_ellipsoid", "fcl")
    assert shape == "foot_shape0" and depth == pytest.approx(0.001, abs=1e-8)  # FCL: GJK/EPA, to 2e-9 m
    np.testing.assert_allclose(point[:2], [0.078, 0.0], atol=1e-4)
    # the biped's two capsule feet (centre 0.1 m ahead, cylinder 0.2 m) on ODE: each its front cap, x 0.2
    contacts = floor_contacts("biped_forward", "ode")
    assert [c[0] for c in contacts] == ["foot_left_shape0", "foot_shape0"]
    np.testing.assert_allclose([c[1] for c in contacts], [[0.2, 0.0, -0.0005]] * 2, atol=1e-9)
    np.testing.assert_allclose([c[2] for c in contacts], 0.001, atol=1e-12)
    # why the pairings are refused: FCL puts a sphere (r 0.1 m) in place of a capsule and ODE one (r 0.01
    # m) in place of an ellipsoid, so a foot 1 mm in the floor touches nothing
    assert floor_contacts("hopper_capsule", "fcl") == []
    assert floor_contacts("hopper_ellipsoid", "ode") == []


# -- the physics against the closed forms -----------------------------------------------------------
@needs_dart
def test_free_fall_is_semi_implicit_euler_of_gravity():
    """A hopper released 5 m up falls as z_n = z_0 - g dt^2 n (n + 1) / 2 after n substeps (semi-implicit
    Euler: v += g dt, then z += v dt), within g dt t / 2 of the continuous z_0 - g t^2 / 2; no joint moves."""
    task = dart_task("hopper_capsule")
    model = task.build_model()
    world = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
    time, qpos, qvel = 0.0, model.qpos0 + np.r_[0.0, 5.0, np.zeros(model.nq - 2)], np.zeros(model.nv)
    z0 = qpos[1]
    for step in range(1, 101):  # 0.8 s, 3.1 m: still in the air
        time, qpos, qvel = world.control_step(time, qpos, qvel, np.zeros(model.nu))
        n = 4 * step
        assert time == pytest.approx(n * DT, abs=1e-12)
        assert qpos[1] == pytest.approx(z0 - G * DT ** 2 * n * (n + 1) / 2, abs=1e-12)
        assert qvel[1] == pytest.approx(-G * DT * n, abs=1e-12)
        assert abs(qpos[1] - (z0 - G * time ** 2 / 2)) <= G * DT * time / 2 + 1e-12
        np.testing.assert_allclose(np.r_[qpos[[0, 2]], qpos[3:], qvel[[0, 2]], qvel[3:]], 0.0, atol=1e-12)


PENDULUM = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="5 5 0.1"/>
    <body name="bob" pos="0 0 2">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="{damping}"/>
      <inertial pos="0 0 -1" mass="1" diaginertia="0.01 0.01 0.01"/>
      <geom type="box" size="0.05 0.05 0.05" pos="0 0 -1" mass="0"/>
    </body>
  </worldbody>
</mujoco>
"""


@needs_dart
@pytest.mark.parametrize("damping", [0.0, 1.0])
def test_single_pendulum_follows_the_linearised_closed_form(damping):
    """A 1 kg bob 1 m below a hinge (I = 1.01 kg m^2 about it), released at 0.05 rad: theta'' = -(m g l / I)
    theta - (c / I) theta'; the closed form theta_0 e^(-zeta w t) (cos w_d t + zeta / sqrt(1 - zeta^2)
    sin w_d t), with the authors' joint damping c = 1 N m s/rad and without. Within 1 % of theta_0 over 3 s."""
    model = mujoco.MjModel.from_xml_string(PENDULUM.format(damping=damping))
    world = dart_engine.DartWorld(dart_engine.describe(model, name="pendulum"), frame_skip=1)
    inertia = 1.0 + 0.01
    omega = np.sqrt(G * 1.0 / inertia)
    zeta = damping / (2 * inertia * omega)
    omega_d = omega * np.sqrt(1 - zeta ** 2)
    theta0 = 0.05
    time, qpos, qvel = 0.0, np.array([theta0]), np.zeros(1)
    worst = 0.0
    for _ in range(1500):
        time, qpos, qvel = world.control_step(time, qpos, qvel, np.zeros(0))
        exact = theta0 * np.exp(-zeta * omega * time) * (np.cos(omega_d * time)
                                                         + zeta / np.sqrt(1 - zeta ** 2) * np.sin(omega_d * time))
        worst = max(worst, abs(qpos[0] - exact))
    assert worst < 0.01 * theta0
    # and MuJoCo's Euler on the same model agrees with both
    data = mujoco.MjData(model)
    data.qpos[0] = theta0
    mujoco.mj_step(model, data, nstep=1500)
    assert abs(data.qpos[0] - qpos[0]) < 0.01 * theta0


# -- a step depends on (state, action) alone ---------------------------------------------------------
def trajectory(task: TaskSpec, steps: int, amplitude: float, seed: int = 1):
    """[(time, qpos, qvel)] of ``steps`` control steps of random actions (x amplitude) from qpos0, and the
    actions, stepped in one world."""
    model = task.build_model()
    actions = amplitude * np.random.default_rng(seed).uniform(-1, 1, (steps, model.nu))
    world = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
    states = [(0.0, model.qpos0.copy(), np.zeros(model.nv))]
    for action in actions:
        states.append(world.control_step(*states[-1], action))
    return states, actions


@needs_dart
@pytest.mark.parametrize("name, amplitude", [("hopper_capsule", 0.3), ("hopper_box", 0.3), ("hopper_ellipsoid", 0.3),
                                             ("biped_forward", 0.0)])
def test_a_world_that_stepped_other_states_steps_as_a_fresh_one(name, amplitude):
    """From every state of a trajectory (hops, falls; the biped collapses and lies still, where ODE's
    contact history would act), a world that has just stepped an unrelated state gives bit for bit what a
    fresh world gives: no contact, solver or sleep state outlives a step."""
    task = dart_task(name)
    states, actions = trajectory(task, 250, amplitude)
    reused = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip)
    for k, action in enumerate(actions):
        reused.control_step(*states[(7 * k + 3) % len(states)], -action)  # something else in between
        time, qpos, qvel = reused.control_step(*states[k], action)
        assert time == states[k + 1][0]
        np.testing.assert_array_equal(qpos, states[k + 1][1])
        np.testing.assert_array_equal(qvel, states[k + 1][2])
        if k % 50 == 0:
            fresh = dart_engine.DartWorld(dart_engine.description(task), task.frame_skip).control_step(*states[k], action)
            np.testing.assert_array_equal(fresh[2], states[k + 1][2])
    assert np.ptp([s[1][1] for s in states]) > 0.5  # it did move: fell from 1.25 m


@needs_dart
@pytest.mark.parametrize("name, amplitude", [("biped_forward", 0.0), ("hopper_box", 0.3)])
def test_without_its_memory_removed_dart_620_steps_a_state_two_ways(monkeypatch, name, amplitude):
    """What ``DartWorld.memoryless`` removes (module docstring): kept, a world that has stepped a trajectory
    and a fresh world given one of its states part ways (the biped lying still: ODE's contact history; the
    box hopper: the DART detector's state), so a resumed run could not equal the uninterrupted one."""
    monkeypatch.setattr(dart_engine.DartWorld, "memoryless", False)
    task = dart_task(name)
    states, actions = trajectory(task, 250, amplitude)
    differences = [np.abs(dart_engine.DartWorld(dart_engine.description(task), task.frame_skip).control_step(
        *states[k], actions[k])[2] - states[k + 1][2]).max() for k in range(50, 250)]
    assert max(differences) > 1e-3


# -- the batched engine: single == batched, the rules the same for both engines ---------------------------
@needs_dart
@pytest.mark.parametrize("experiment, nthread", [("three_hoppers", 2), ("biped_fwd_bwd", 1)])
def test_batched_dart_equals_one_robot_stepped_alone(experiment, nthread):
    """Every env of the batched env (the caller and a worker process when nthread is 2) equals a
    ``TaskRobot`` (the simulator's and TaskEnv's step) given the same actions, bit for bit, resets included."""
    tasks = apply_profile(get_experiment(experiment), "paper_dart").tasks
    E = 2
    env = MultiTaskVecEnv(tasks, E, seed=5, nthread=nthread)
    env.reset()
    alone = [[TaskRobot(t) for _ in range(E)] for t in tasks]

    def sync(i, e):
        robot = alone[i][e]
        robot.data.time = env.state[i * E + e, 0]
        robot.data.qpos[:], robot.data.qvel[:] = env.qpos()[i, e], env.qvel()[i, e]

    for i in range(len(tasks)):
        for e in range(E):
            sync(i, e)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(150):
        actions = rng.uniform(-1, 1, (len(tasks), E, env.act_dim))
        result = env.step(actions)
        for i in range(len(tasks)):
            for e in range(E):
                step = alone[i][e].step(actions[i, e])
                assert result.reward[i, e] == step.reward and result.terminated[i, e] == step.terminated
                np.testing.assert_array_equal(result.final_obs[i, e], alone[i][e].observation())
                if result.terminated[i, e] or result.truncated[i, e]:
                    ended += 1
                    sync(i, e)
    assert ended > 0


@needs_dart
def test_the_rules_read_both_engines_state_rows_alike():
    """Both engines' envs given the same state rows before and after a step (each physics call replaced by
    one returning those rows) give the same rewards (knee penalty included), terminations, truncations and
    observations: the DART rows are MuJoCo's [time, qpos, qvel] layout."""
    experiment = get_experiment("three_hoppers")
    envs = {profile: MultiTaskVecEnv(apply_profile(experiment, profile).tasks, 3, seed=2, nthread=1)
            for profile in ("paper", "paper_dart")}
    mujoco_env, dart_env = envs["paper"], envs["paper_dart"]
    assert isinstance(dart_env.stepper, dart_engine.DartBatch) and not isinstance(mujoco_env.stepper, dart_engine.DartBatch)
    rng = np.random.default_rng(4)
    before = mujoco_env.state.copy()
    before[:, 1:] = np.concatenate([mujoco_env.models[0].qpos0, np.zeros(6)]) + rng.uniform(-0.1, 0.1, (9, 12))
    after = before + rng.uniform(-0.05, 0.05, before.shape)
    after[:, 0] = before[:, 0] + 0.008
    after[0, 5] = -2.6  # a knee at its limit: the paper profile's penalty
    after[1, 3] = 0.5  # pitch past 0.2 rad: terminated
    after[2, 2] = 0.3  # fallen below 0.56 x the start height: terminated
    results = {}
    for profile, env in envs.items():
        env.reset()
        env.state[:] = before
        env.episode_length[1, 1] = 999  # the time limit: truncated
        env.stepper.step = lambda state, actions: after.copy()  # either engine's physics call
        results[profile] = env.step(np.full((3, 3, 3), 0.3))
    a, b = results["paper"], results["paper_dart"]
    for field in ("reward", "terminated", "truncated", "final_obs", "obs"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.terminated[0, 1] and a.terminated[0, 2] and a.truncated[1, 1] and not a.terminated[1, 1]
    # forward speed + alive bonus - control cost - the knee-limit penalty
    expected = (after[0, 1] - before[0, 1]) / 0.008 + 1.0 - 1e-3 * 3 * 0.3 ** 2 - physics.PAPER_KNEE_PENALTY
    assert a.reward[0, 0] == pytest.approx(expected, rel=1e-12)


# -- training runs: resume after SIGINT, run groups ---------------------------------------------------
TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}


def _metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


@pytest.fixture
def tiny_dart(tmp_path):
    """Three hoppers on DART, 3 x 4 envs x 32 steps = 384 samples per iteration."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nbatch_size: 384\nbudget: 3840\n"
                    "tasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n")
    return str(path)


def _config(experiment, **kw):
    base = dict(experiment=experiment, profile="paper_dart", envs_per_task=4, seed=3, checkpoint_every=2,
                method="ours", jt=768, sp=0.25, samples=2304)
    base.update(kw)
    config = TrainConfig(**base)
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 2
    return config


@needs_dart
def test_sigint_then_resume_on_dart_matches_the_uninterrupted_run(tiny_dart, tmp_path):
    """Interrupted after iteration 3 (stepping with a worker process), resumed (without one): the same
    metrics and split as the run never interrupted; config.yaml records the engine."""
    from mt_specialize.stop_signals import StopOnSignals
    from mt_specialize.train import Interrupted, Trainer

    Trainer(_config(tiny_dart, physics_threads=1), tmp_path / "full").run()

    def interrupt_at_iteration_3(row):
        if row["iteration"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(_config(tiny_dart, physics_threads=2), tmp_path / "cut", progress=interrupt_at_iteration_3)
    with pytest.raises(Interrupted, match="--resume"), StopOnSignals() as stop:
        trainer.run(should_stop=stop)
    assert len(_metrics(tmp_path / "cut")) == 3
    Trainer(_config(tiny_dart, physics_threads=1), tmp_path / "cut", resume=True).run()
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    from mt_specialize.learning.checkpoint import load_checkpoint
    from mt_specialize.train import latest_checkpoint

    for name in ("split.safetensors", latest_checkpoint(tmp_path / "full").name):
        where = "" if name.startswith("split") else "checkpoints/"
        (cut, _), (full, _) = (load_checkpoint(tmp_path / run / f"{where}{name}") for run in ("cut", "full"))
        assert sorted(cut) == sorted(full) and all(np.array_equal(cut[k], full[k]) for k in cut), name
    import yaml

    recorded = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert recorded["profile"] == "paper_dart"
    assert {t: p["engine"] for t, p in recorded["task_physics"].items()} == dict.fromkeys(
        ["hopper_capsule", "hopper_box", "hopper_ellipsoid"], "dart")


@needs_dart
def test_a_run_group_on_dart_equals_each_run_alone(tiny_dart, tmp_path):
    from mt_specialize.run_group import RunGroup
    from mt_specialize.train import Trainer

    configs = [_config(tiny_dart, seed=seed, samples=1152, physics_threads=2) for seed in (1, 2)]
    for config in configs:
        Trainer(config, tmp_path / f"alone{config.seed}").run()
    RunGroup(configs, [tmp_path / f"group{c.seed}" for c in configs]).run()
    for config in configs:
        assert _metrics(tmp_path / f"group{config.seed}") == _metrics(tmp_path / f"alone{config.seed}")
    assert _metrics(tmp_path / "group1") != _metrics(tmp_path / "group2")


# -- everything else follows: gait, the simulator's robots, the policy server's check ------------------
@pytest.fixture(scope="module")
def biped_dart_run(tmp_path_factory):
    """A tiny trained run of biped_fwd_bwd on paper_dart (2 iterations of 2 x 4 envs x 32 steps)."""
    from mt_specialize.train import Trainer

    root = tmp_path_factory.mktemp("biped_dart")
    (root / "tiny.yaml").write_text("name: tiny_biped\nbatch_size: 256\nbudget: 512\n"
                                    "tasks: [biped_forward, biped_backward]\n")
    config = TrainConfig(experiment=str(root / "tiny.yaml"), profile="paper_dart", method="joint", envs_per_task=4,
                         seed=1, physics_threads=1)
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 1
    Trainer(config, root / "run").run()
    return root / "run"


@needs_dart
def test_gait_renders_a_dart_run_stepped_by_dart(biped_dart_run, tmp_path):
    """``mt-specialize gait`` plays a DART run's policy on DART (the robot as the run trained it) and draws
    the poses with MuJoCo's renderer (the coordinates are MuJoCo's)."""
    import imageio.v3 as iio

    from mt_specialize.cli import main
    from mt_specialize.envs.gait import play
    from mt_specialize.experiments import task_as_trained
    from mt_specialize.learning.inference import InferencePolicy
    from mt_specialize.train import latest_checkpoint

    assert main(["gait", str(biped_dart_run), "biped_forward", str(tmp_path / "g.gif"), "--steps", "20",
                 "--width", "64", "--height", "48"]) == 0
    frames = iio.imread(tmp_path / "g.gif", index=None)
    assert frames.shape[1:3] == (48, 64) and np.ptp(frames) > 0
    policy = InferencePolicy.from_checkpoint(latest_checkpoint(biped_dart_run))
    task = task_as_trained("biped_forward", policy.run_config)
    assert task.resolved_physics["engine"] == "dart"
    on_dart = play(policy, task, [(0, "biped_forward")], steps=20)
    on_mujoco = play(policy, task_as_trained("biped_forward", {**policy.run_config, "profile": "paper",
                                                               "task_physics": None}), [(0, "biped_forward")], 20)
    np.testing.assert_array_equal(on_dart.qpos[0], on_mujoco.qpos[0])  # the same start, another simulator
    assert not np.array_equal(on_dart.qpos[1], on_mujoco.qpos[1])


@needs_dart
def test_the_simulators_robots_step_on_dart_with_profile_paper_dart():
    """The simulator node's robot (``RobotSim``: a TaskRobot of ``profiled_task(name, profile)``) steps
    with DART under profile paper_dart; its state and motor torques come out in MuJoCo's data."""
    from mt_specialize.ros.simulator import RobotSim

    sim = RobotSim(profiled_task("hopper_capsule", "paper_dart"), np.random.default_rng(0))
    mujoco_sim = RobotSim(profiled_task("hopper_capsule", "paper"), np.random.default_rng(0))
    assert isinstance(sim.robot.stepper, dart_engine.DartRobot)
    assert not isinstance(mujoco_sim.robot.stepper, dart_engine.DartRobot)
    sim.reset()
    state = (sim.data.time, sim.data.qpos.copy(), sim.data.qvel.copy())
    action = np.array([0.5, -2.0, 0.1])
    sim.step(action)
    world = dart_engine.DartWorld(dart_engine.description(sim.robot.task), 4)
    time, qpos, qvel = world.control_step(*state, action)
    assert sim.data.time == time
    np.testing.assert_array_equal(sim.data.qpos, qpos)
    np.testing.assert_array_equal(sim.data.qvel, qvel)
    np.testing.assert_array_equal(sim.joint_efforts()[-3:], [100.0, -200.0, 20.0])  # gear 200 x clip(action)


@needs_dart
def test_up_refuses_a_checkpoint_from_another_engine(biped_dart_run, tmp_path):
    """As for another profile: a DART run's checkpoint is not served to MuJoCo robots, nor a MuJoCo run's
    (here a run of profile paper with physics engine: dart) to the robots of profile paper."""
    import yaml

    from mt_specialize.ros.preflight import checkpoint_misfit, trained_engine
    from mt_specialize.train import latest_checkpoint

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for node, params in (("simulator", {"tasks": ["biped_forward"], "namespaces": ["biped"]}),
                         ("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"]})):
        (config_dir / f"{node}.yaml").write_text(yaml.safe_dump({node: {"ros__parameters": params}}))
    checkpoint = latest_checkpoint(biped_dart_run)
    assert checkpoint_misfit(checkpoint, config_dir, "paper_dart") is None
    assert "trained on profile 'paper_dart' robots, the simulator would step profile 'paper' ones" in \
        checkpoint_misfit(checkpoint, config_dir, "paper")
    # a run of profile paper with the run-wide physics setting engine: dart
    from mt_specialize.learning.checkpoint import load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(checkpoint)
    meta["config"] = {**meta["config"], "profile": "paper"}
    save_checkpoint(tmp_path / "paper_on_dart.safetensors", tensors, meta)
    assert "was trained on the dart physics engine, the simulator would step its robots with mujoco (profile " \
           "'paper'" in checkpoint_misfit(tmp_path / "paper_on_dart.safetensors", config_dir, "paper")
    run_config = yaml.safe_load((biped_dart_run / "config.yaml").read_text())
    assert trained_engine(run_config) == {"dart"}
    assert trained_engine({"profile": "paper", "physics": {"engine": "dart"}}) == {"dart"}
    assert trained_engine({"profile": "paper"}) == {"mujoco"} and trained_engine({"profile": "paper_dart"}) == {"dart"}
