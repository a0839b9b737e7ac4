"""Experiments: built-in task sets and user YAML files."""
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mt_specialize.experiments import EXPERIMENTS, Experiment, get_experiment
from mt_specialize.paths import CONFIG_DIR
from mt_specialize.envs.tasks import TASKS, TaskEnv

DATA = Path(__file__).resolve().parent.parent / "config" / "experiments"
EXAMPLE = CONFIG_DIR / "experiments" / "example_user_experiment.yaml"


def test_builtin_experiments():
    expected = {
        "three_hoppers": (("hopper_capsule", "hopper_box", "hopper_ellipsoid"), 4000),
        "biped_fwd_bwd": (("biped_forward", "biped_backward"), 8000),
        "torso_mass_3": (("hopper_torso15", "hopper_torso3"), 4000),
        "torso_mass_8": (("hopper_torso15", "hopper_torso8"), 4000),
        "torso_mass_14": (("hopper_torso15", "hopper_torso14"), 4000),
        "biped_fwd_bwd_ankle100": (("biped_forward_ankle100", "biped_backward_ankle100"), 8000),
        "walker2d_fwd_bwd": (("walker2d_forward", "walker2d_backward"), 8000),
    }
    assert set(EXPERIMENTS) == set(expected)
    for name, (tasks, batch) in expected.items():
        exp = get_experiment(name)
        assert exp.name == name and exp.task_names == tasks
        assert exp.batch_size == batch and exp.budget == 3_000_000
        assert exp.samples_per_task == batch // len(tasks)
    torso = get_experiment("torso_mass_3").tasks
    assert [t.torso_mass for t in torso] == [15.0, 3.0]


def test_example_user_experiment_loads_and_steps():
    exp = get_experiment(str(EXAMPLE))
    assert exp.name == "heavy_capsule_vs_user_hopper" and exp.batch_size == 4000
    heavy, user = exp.tasks
    assert heavy.torso_mass == 6.0 and heavy.robot == "hopper_capsule" and heavy.physics == {"foot_friction": 2.0}
    assert Path(user.robot) == (DATA / "user_hopper.urdf").resolve()
    for task in exp.tasks:
        env = TaskEnv(task)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (11,)
        for _ in range(5):
            obs, reward, term, trunc, _ = env.step(np.full(3, 0.1))
        assert np.isfinite(obs).all() and np.isfinite(reward)
    assert get_experiment(EXAMPLE).tasks == exp.tasks  # Path accepted too


def _yaml(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_defaults_and_relative_urdf(tmp_path):
    (tmp_path / "robots").mkdir()
    (tmp_path / "robots" / "mine.urdf").write_text((DATA / "user_hopper.urdf").read_text())
    path = _yaml(tmp_path, """
batch_size: 2000
tasks:
  - hopper_box
  - {name: mine, robot: robots/mine.urdf, family: hopper, mass_scale: 1.5}
  - {name: back, robot: hopper_ellipsoid, direction: -1, gears: [150, 150, 50.5]}
""")
    exp = get_experiment(path)
    assert exp.name == "exp" and exp.budget == 3_000_000
    assert exp.tasks[0] == TASKS["hopper_box"]
    mine, back = exp.tasks[1:]
    assert mine.mass_scale == 1.5 and mine.ctrl_cost == 1e-3 and mine.alive_bonus == 1.0
    assert Path(mine.robot) == (tmp_path / "robots" / "mine.urdf").resolve()
    assert back.family == "hopper" and back.direction == -1
    assert back.gears == (150.0, 150.0, 50.5)
    np.testing.assert_array_equal(back.build_model().actuator_gear[:, 0], [150, 150, 50.5])


@pytest.mark.parametrize("text, match", [
    ("batch_size: 10\ntasks: [hopper_box]\nseed: 3\n", r"unknown key\(s\) \['seed'\]; allowed \['name', 'batch_size', 'budget', 'tasks'\]"),
    ("tasks: [hopper_box]\n", r"missing required key 'batch_size'"),
    ("batch_size: 10\ntasks: [hopper_cylinder]\n", r"tasks\[0\]: unknown task 'hopper_cylinder': allowed are \["),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, torso_kg: 3}]\n",
     r"tasks\[0\]: unknown key\(s\) \['torso_kg'\]; allowed \['name', 'robot', 'family'"),
    ("batch_size: 10\ntasks: [{name: a, robot: tripod}]\n", r"unknown robot 'tripod'; allowed \['biped', 'hopper_box'"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, torso_mass: -2}]\n", r"torso_mass must be a positive finite number, got -2"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, mass_scale: .nan}]\n", r"mass_scale must be a positive finite number, got nan"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, torso_mass: heavy}]\n", r"torso_mass must be a number, got 'heavy'"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, direction: 0}]\n", r"direction 0, allowed \+1 or -1"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, gears: [200, 200]}]\n",
     r"tasks\[0\]: gears has 2 values but robot 'hopper_box' has 3 actuated joints"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, gears: [200, 0, 200]}]\n",
     r"gears\[1\] must be a positive finite number, got 0"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, gears: 200}]\n", r"gears must be a list of torques"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, family: snake}]\n", r"family 'snake'; allowed \['hopper', 'biped'\]"),
    ("batch_size: 10\ntasks: [{name: a, robot: nothere.urdf, family: hopper}]\n", r"URDF file not found: .*nothere.urdf"),
    ("batch_size: 10\ntasks: [{name: a, robot: ../data/user_hopper.urdf}]\n", r"family None; allowed \['hopper', 'biped'\] \(required for a URDF robot\)"),
    ("batch_size: 0\ntasks: [hopper_box]\n", r"batch_size must be a positive integer, got 0"),
    ("batch_size: 10\nbudget: 1.5\ntasks: [hopper_box]\n", r"budget must be a positive integer, got 1.5"),
    ("batch_size: 10\ntasks: [hopper_box, biped_forward]\n", r"same observation/action dims.*\('biped_forward', 17, 6\).*\('hopper_box', 11, 3\)"),
    ("batch_size: 10\ntasks: [hopper_box, hopper_box]\n", r"task names must be unique"),
    ("batch_size: 10\ntasks: []\n", r"tasks must be a non-empty list"),
    ("batch_size: 10\ntasks: [hopper_box\n", r"malformed experiment YAML"),
    ("- just a list\n", r"expected a mapping"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, physics: {armature: -1}}]\n",
     r"tasks\[0\]: task 'a': physics: armature must be a non-negative finite number, got -1"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, physics: {inertia: skel}}]\n",
     r"task 'a': physics: inertia is 'skel'; allowed \['true', 'dart'\]"),
    ("batch_size: 10\ntasks: [{name: a, robot: hopper_box, physics: [armature]}]\n",
     r"task 'a': physics must be a mapping setting -> value"),
])
def test_yaml_errors(tmp_path, text, match):
    sub = tmp_path / "exp"
    sub.mkdir()
    path = _yaml(sub, text)
    if "../data/" in text:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "user_hopper.urdf").write_text((DATA / "user_hopper.urdf").read_text())
    with pytest.raises(ValueError, match=match):
        get_experiment(path)


def test_bad_urdf_in_yaml_names_the_task(tmp_path):
    (tmp_path / "bad.urdf").write_text("<robot><link name='a'>")
    path = _yaml(tmp_path, "batch_size: 10\ntasks: [{name: broken, robot: bad.urdf, family: hopper}]\n")
    with pytest.raises(ValueError, match=r"tasks\[0\]: .*malformed URDF .*bad.urdf"):
        get_experiment(path)


def test_unknown_experiment_name():
    with pytest.raises(ValueError, match=r"unknown experiment 'four_hoppers': allowed are \['biped_fwd_bwd', .*'three_hoppers'"):
        get_experiment("four_hoppers")
    with pytest.raises(ValueError, match=r"experiment file not found: .*nope.yaml"):
        get_experiment("nope.yaml")


def test_experiment_dataclass_checks():
    with pytest.raises(ValueError, match="tasks must not be empty"):
        Experiment("e", (), 10, 10)
    with pytest.raises(ValueError, match="batch_size 1 is smaller than the number of tasks 2"):
        Experiment("e", (TASKS["hopper_box"], TASKS["hopper_capsule"]), 1, 10)


def test_yaml_per_task_physics_settings_load_and_reach_the_model(tmp_path):
    path = _yaml(tmp_path, """
batch_size: 20
tasks:
  - name: dart_capsule
    robot: hopper_capsule
    physics: {armature: 0.0, inertia: dart, foot_friction: 2.0, contact: {solref: [0.01, 1], solimp: [0.95, 0.99, 0.001]}}
  - name: gym
    robot: gymnasium:hopper
""")
    dart, gym = get_experiment(path).tasks
    assert dart.physics == {"armature": 0.0, "inertia": "dart", "foot_friction": 2.0,
                            "contact": {"solref": [0.01, 1.0], "solimp": [0.95, 0.99, 0.001, 0.5, 2.0]}}
    model = dart.build_model()
    np.testing.assert_array_equal(model.dof_armature, 0.0)
    assert model.geom_friction[model.body("foot").geomadr[0], 0] == 2.0
    np.testing.assert_array_equal(model.geom_solref[0], [0.01, 1.0])
    assert gym.family == "hopper" and gym.obs_dim == 11 and gym.act_dim == 3
    assert gym.build_model().opt.integrator == mujoco.mjtIntegrator.mjINT_RK4  # Gymnasium's file as it is


def test_a_task_as_its_run_trained_it_has_the_runs_robot(tmp_path):
    """The simulator and `mt-specialize gait` must step the robot a policy was trained on: its run's
    profile and recorded physics, not the built-in task's defaults."""
    import dataclasses as dc

    from mt_specialize.config import TrainConfig
    from mt_specialize.envs.tasks import get_task
    from mt_specialize.experiments import apply_profile, get_experiment, profiled_task, resolved_physics, task_as_trained

    paper = apply_profile(get_experiment("biped_fwd_bwd"), "paper")
    assert profiled_task("biped_forward", "paper") == paper.tasks[0]
    assert profiled_task("biped_forward", "paper").resolved_physics != get_task("biped_forward").resolved_physics
    config = TrainConfig(experiment="torso_mass_3", profile="paper").to_run_config()
    config["task_physics"] = resolved_physics(apply_profile(get_experiment("torso_mass_3"), "paper"))
    trained = task_as_trained("hopper_torso3", config)
    assert trained.torso_mass == 3.3 and get_task("hopper_torso3").torso_mass != 3.3
    assert trained.build_model().body_mass.sum() == pytest.approx(
        apply_profile(get_experiment("torso_mass_3"), "paper").tasks[1].build_model().body_mass.sum())
    # no recorded physics: the run's profile; no profile key (a run older than profiles): none
    del config["task_physics"]
    assert task_as_trained("biped_backward", {**config, "experiment": "biped_fwd_bwd"}) == paper.tasks[1]
    assert task_as_trained("biped_backward", {"experiment": "biped_fwd_bwd"}).resolved_physics == \
        get_task("biped_backward").resolved_physics
    assert task_as_trained("biped_backward", {}) == get_task("biped_backward")
    # an experiment file that is gone: the built-in task with the recorded physics
    gone = {"experiment": str(tmp_path / "gone.yaml"), "profile": "paper",
            "task_physics": resolved_physics(paper)}
    assert task_as_trained("biped_forward", gone).resolved_physics == paper.tasks[0].resolved_physics
    with pytest.raises(ValueError, match="not a built-in task"):
        task_as_trained("my_walker", gone)
    assert dc.replace(trained, name="x").torso_mass == 3.3
