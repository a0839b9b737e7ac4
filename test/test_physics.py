"""Physics settings: DART's inertia, validation, profiles, and today's robots under profile none."""
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from mt_specialize.envs import physics, robots
from mt_specialize.experiments import Experiment, apply_profile, get_experiment, resolved_physics
from mt_specialize.envs.tasks import TASKS, TaskSpec
from mt_specialize.envs.vec_env import MultiTaskVecEnv

REPO = Path(__file__).resolve().parent.parent
# the last commit whose robots.py had no physics settings: its models are "today's robots"
BEFORE_SETTINGS = "b5cec52"
HINGE_Y = 1  # the planar robots' hinges turn about y


def _inertia_about(model, body: str) -> np.ndarray:
    """(3, 3) inertia of ``body`` about its centre of mass in the body frame (kg*m^2)."""
    b = model.body(body).id
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[b])
    rot = rot.reshape(3, 3)
    return rot @ np.diag(model.body_inertia[b]) @ rot.T


def _hand_dart_capsule_axial(radius, cylinder_length, mass):
    """DART's capsule: a cylinder and a sphere of one density; axial moment = m_c r^2/2 + 2/5 m_s r^2."""
    v_c, v_s = math.pi * radius ** 2 * cylinder_length, 4 / 3 * math.pi * radius ** 3
    m_c, m_s = mass * v_c / (v_c + v_s), mass * v_s / (v_c + v_s)
    return m_c * radius ** 2 / 2 + 0.4 * m_s * radius ** 2


def test_dart_inertia_of_a_capsule_and_a_box_link_equals_a_hand_computation():
    # capsule hopper's torso: r 0.05, cylinder 0.4 m (docs/method.md#robots-and-tasks), 3.534 kg
    hand_axial = _hand_dart_capsule_axial(0.05, 0.4, 3.534)
    assert hand_axial == pytest.approx(0.0043, abs=5e-5)  # authors-setup.md
    got = physics.dart_inertia("capsule", (0.05, 0.2, 0.0), 3.534)
    assert got[HINGE_Y] == pytest.approx(hand_axial, rel=1e-12)
    # box hopper's thigh: full extents .11 x .11 x .495 (link along z), 4.320 kg: I_y = m/12 (x^2 + z^2)
    got = physics.dart_inertia("box", (0.055, 0.055, 0.2475), 4.320)
    np.testing.assert_allclose(got, 4.320 / 12 * np.array([0.11 ** 2 + 0.495 ** 2, 0.11 ** 2 + 0.495 ** 2,
                                                           2 * 0.11 ** 2]), rtol=1e-12)


def test_paper_physics_model_carries_dart_inertia_and_no_armature():
    capsule = apply_profile(get_experiment("three_hoppers"), "paper").tasks[0]
    model = capsule.build_model()
    hinges = [model.joint(n).dofadr[0] for n in ("thigh_joint", "leg_joint", "foot_joint")]
    np.testing.assert_array_equal(model.dof_armature[hinges], 0.0)
    expected = {"torso": (0.05, 0.4, 3.534), "thigh": (0.05, 0.45, 3.927), "leg": (0.04, 0.5, 2.714),
                "foot": (0.06, 0.39, 5.089)}
    authors = {"torso": 0.0043, "thigh": 0.0048, "leg": 0.0021, "foot": 0.0088}  # authors-setup.md
    true_model = TASKS["hopper_capsule"].build_model()
    for link, (r, length, mass) in expected.items():
        about_hinge = _inertia_about(model, link)[HINGE_Y, HINGE_Y]
        assert about_hinge == pytest.approx(_hand_dart_capsule_axial(r, length, mass), rel=1e-6), link
        assert about_hinge == pytest.approx(authors[link], abs=5e-5), link
        assert _inertia_about(true_model, link)[HINGE_Y, HINGE_Y] > 10 * about_hinge  # true: 0.067-0.099
        assert model.body(link).mass[0] == pytest.approx(mass)
    # the box hopper's links are not rotated in DART: dart inertia == true inertia
    box_paper = apply_profile(get_experiment("three_hoppers"), "paper").tasks[1].build_model()
    box_true = TASKS["hopper_box"].build_model()
    for link in ("torso", "thigh", "leg", "foot"):
        np.testing.assert_allclose(_inertia_about(box_paper, link), _inertia_about(box_true, link), rtol=1e-9)


@pytest.mark.parametrize("setting, value, allowed", [
    ("armature", -1.0, "non-negative finite number"),
    ("armature", "1", "non-negative finite number"),
    ("friction", 0.0, "positive finite number"),
    ("foot_friction", [1.0, -2.0], r"\[1\] must be a positive"),
    ("foot_friction", "grippy", "one per foot"),
    ("contact", "hard", r"allowed \['default', 'stiff'\]"),
    ("contact", {"solref": [0.02], "solimp": [0.9, 0.95, 0.001]}, "solref must be 2 numbers"),
    ("contact", {"solref": [0.02, 1], "solimp": [0.9, 1.5, 0.001]}, r"dmin and dmax must lie in \(0, 1\)"),
    ("joint_limits", "rigid", r"allowed \['soft', 'hard'\]"),
    ("inertia", "skel", r"allowed \['true', 'dart'\]"),
    ("torso_inertia", "fixed", r"allowed \['scaled', 'unchanged'\]"),
    ("knee_limit_penalty", float("nan"), "non-negative finite number"),
    ("state_limit", 0, "positive finite number"),
    ("integrator", "rk45", r"allowed \['euler', 'implicitfast', 'implicit', 'rk4'\]"),
    ("friction", "model", "positive finite number"),  # 'model' only for an MJCF robot
])
def test_each_setting_rejects_a_bad_value_naming_task_setting_and_allowed(setting, value, allowed):
    with pytest.raises(ValueError, match=rf"task 'bad': physics: {setting}.*{allowed}"):
        TaskSpec("bad", "hopper_capsule", physics={setting: value})


def test_setting_errors_name_unknown_settings_feet_and_knee():
    with pytest.raises(ValueError, match=r"unknown physics setting\(s\) \['armatures'\]; allowed \['armature'"):
        TaskSpec("bad", "hopper_capsule", physics={"armatures": 0.0})
    with pytest.raises(ValueError, match=r"task 'bad': foot_friction has 3 values but robot 'biped' has 2 feet "
                                         r"\(leaf links\) \['foot', 'foot_left'\]"):
        TaskSpec("bad", "biped", "biped", physics={"foot_friction": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="family is 'biped'; the knee-limit penalty is for the hopper family"):
        TaskSpec("bad", "biped", "biped", physics={"knee_limit_penalty": 0.75})
    with pytest.raises(ValueError, match=r"unknown physics profile 'dart'; allowed \['paper', 'paper_dart', 'mujoco', 'none'\]"):
        apply_profile(get_experiment("three_hoppers"), "dart")
    with pytest.raises(ValueError, match=r"physics_overrides: unknown physics setting\(s\) \['frction'\]; allowed"):
        apply_profile(get_experiment("three_hoppers"), "paper", {"frction": 1.0})


def _mjb(model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.mjb")
        mujoco.mj_saveModel(model, path, None)
        return Path(path).read_bytes()


def _robots_before_settings():
    """robots.py as it was before physics settings existed (from git), or skip."""
    try:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{BEFORE_SETTINGS}:mt_specialize/robots.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs git and commit {BEFORE_SETTINGS}")
    src = src.replace("from mt_specialize import urdf_gen", "from mt_specialize.envs import urdf_gen")  # its home now
    module = types.ModuleType("robots_before_settings")
    sys.modules[module.__name__] = module
    try:
        exec(compile(src, "robots_before_settings.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def test_profile_none_builds_todays_models_bit_for_bit():
    """Old run directories resume unchanged: every built-in task under profile none (and with no
    profile applied) compiles to the same MJB bytes as the loader before physics settings."""
    old = _robots_before_settings()
    for name, task in TASKS.items():
        if task.robot not in robots.ROBOTS:
            continue
        before = _mjb(old.build_model(task.robot, torso_mass=task.torso_mass, mass_scale=task.mass_scale,
                                      gears=task.gears))
        assert _mjb(task.build_model()) == before, name
        for profile in ("none", None):
            (resolved,) = apply_profile(Experiment(name, (task,), 10), profile).tasks
            assert resolved.torso_mass == task.torso_mass
            assert _mjb(resolved.build_model()) == before, (name, profile)


def test_profiles_resolve_with_precedence_and_keep_task_names():
    exp = get_experiment("torso_mass_3")
    paper = apply_profile(exp, "paper")
    assert paper.task_names == exp.task_names
    assert [t.torso_mass for t in paper.tasks] == [15.0, 3.3]
    physics_record = resolved_physics(paper)
    assert yaml.safe_load(yaml.safe_dump(physics_record)) == physics_record  # plain YAML types
    assert set(physics_record["hopper_torso3"]) == set(physics.SETTINGS) | {"torso_mass"}
    torso3 = physics_record["hopper_torso3"]
    assert (torso3["armature"], torso3["inertia"], torso3["friction"], torso3["contact"], torso3["joint_limits"],
            torso3["knee_limit_penalty"], torso3["state_limit"], torso3["torso_inertia"]) == \
        (0.0, "dart", 1.0, "stiff", "hard", 0.75, 100.0, "unchanged")
    # torso inertia unchanged by the 3.3 kg torso: equal to the 3.534 kg torso's dart inertia
    m15, m3 = (t.build_model() for t in paper.tasks)
    np.testing.assert_allclose(_inertia_about(m3, "torso"), _inertia_about(m15, "torso"))
    assert m3.body("torso").mass[0] == pytest.approx(3.3)
    # the task's own setting beats the profile; a run-wide override beats both
    own = TaskSpec("own", "hopper_capsule", physics={"friction": 0.5, "armature": 0.1})
    exp2 = Experiment("e", (own, TASKS["hopper_box"]), 100)
    resolved = resolved_physics(apply_profile(exp2, "paper", {"armature": 0.2}))
    assert (resolved["own"]["friction"], resolved["own"]["armature"]) == (0.5, 0.2)
    assert (resolved["hopper_box"]["friction"], resolved["hopper_box"]["armature"]) == (1.0, 0.2)
    # re-applying a profile to a resolved experiment changes nothing
    assert apply_profile(paper, "paper") == paper


def test_mujoco_profile_has_gymnasium_foot_frictions():
    hop = apply_profile(get_experiment("three_hoppers"), "mujoco").tasks[0].build_model()
    foot = hop.body("foot").geomadr[0]
    assert hop.geom_friction[foot, 0] == 2.0  # Hopper-v5's hopper.xml
    assert set(np.delete(hop.geom_friction[:, 0], foot)) == {1.0}  # its bodies' 0.9 on a 1.0 floor
    np.testing.assert_array_equal(hop.dof_armature[3:], 1.0)
    biped = apply_profile(get_experiment("biped_fwd_bwd"), "mujoco").tasks[0].build_model()
    feet = [biped.geom_friction[biped.body(b).geomadr[0], 0] for b in ("foot", "foot_left")]
    assert feet == [0.9, 1.9]  # Walker2d-v5's walker2d.xml: the two feet differ


def test_stiff_contacts_and_hard_limits_reach_the_model():
    model = TaskSpec("s", "hopper_capsule", physics={"contact": "stiff", "joint_limits": "hard"}).build_model()
    np.testing.assert_array_equal(model.geom_solref, np.tile(physics.STIFF_SOLREF, (model.ngeom, 1)))
    np.testing.assert_array_equal(model.geom_solimp, np.tile(physics.STIFF_SOLIMP, (model.ngeom, 1)))
    np.testing.assert_array_equal(model.jnt_solref[3:], np.tile(physics.STIFF_SOLREF, (model.njnt - 3, 1)))


@pytest.mark.parametrize("experiment", ["three_hoppers", "biped_fwd_bwd"])
def test_paper_profile_stays_finite_under_random_actions(experiment):
    """2000 control steps of random actions: stiff contacts and hard limits do not blow up."""
    exp = apply_profile(get_experiment(experiment), "paper")
    env = MultiTaskVecEnv(exp.tasks, 2, seed=0, nthread=1)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        env.step(rng.uniform(-1, 1, (env.n_tasks, 2, env.act_dim)))
        assert np.isfinite(env.state).all()


def test_gymnasium_hopper_is_gymnasiums_model_file_as_it_is_unless_a_setting_says_otherwise():
    xml = robots.GYMNASIUM_ASSETS / "hopper.xml"
    assert _mjb(TASKS["hopper_gymnasium"].build_model()) == _mjb(mujoco.MjModel.from_xml_path(str(xml)))
    # the built-in task is Gymnasium's under every profile; run-wide overrides still apply
    paper = apply_profile(Experiment("g", (TASKS["hopper_gymnasium"],), 10), "paper").tasks[0]
    assert _mjb(paper.build_model()) == _mjb(mujoco.MjModel.from_xml_path(str(xml)))
    dart = apply_profile(Experiment("g", (TASKS["hopper_gymnasium"],), 10), "paper",
                         {"inertia": "dart", "armature": 0.0, "integrator": "euler"}).tasks[0].build_model()
    assert dart.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    np.testing.assert_array_equal(dart.dof_armature, 0.0)
    # Gymnasium's torso capsule: r 0.05, cylinder 0.4 m, mass from its density 1000
    mass = dart.body("torso").mass[0]
    assert _inertia_about(dart, "torso")[HINGE_Y, HINGE_Y] == pytest.approx(
        _hand_dart_capsule_axial(0.05, 0.4, mass), rel=1e-6)
