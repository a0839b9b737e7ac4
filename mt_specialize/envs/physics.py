"""Physics as settings: per-task robot physics, reward and termination switches, and named profiles.

A task carries the settings it sets explicitly (``TaskSpec.physics``, a mapping); every setting left
out takes the robot's default (``default_physics``), which for the URDF robots is exactly the model
the loader built before these settings existed. ``apply_profile`` fills in a named bundle:
profile < the task's own settings < run-wide overrides.

Settings (units, allowed values):

====================  ============================================================================
armature              kg*m^2 >= 0, added to every actuated hinge (root joints keep 0)
friction              > 0, sliding friction of every geom, floor included (MuJoCo takes the larger
                      of two touching geoms' values)
foot_friction         None (= friction) | > 0 | a list with one value per foot. Feet are the leaf
                      links of the kinematic tree (links without children), in URDF/MJCF order:
                      ``foot`` on the hoppers; ``foot`` (right), ``foot_left`` on the biped
contact               ``default`` (MuJoCo's solref 0.02 1, solimp 0.9 0.95 0.001 0.5 2) | ``stiff``
                      (see STIFF_SOLREF) | {solref: [timeconst s, dampratio], solimp: [dmin, dmax,
                      width m, midpoint, power]}; set on every geom and the floor
joint_limits          ``soft`` (MuJoCo's default limit softness) | ``hard`` (STIFF_SOLREF/IMP)
inertia               ``true`` (the URDF's, i.e. the solid shape's) | ``dart`` (``dart_inertia``)
torso_inertia         ``scaled`` (a torso_mass scales the torso's inertia with it) | ``unchanged``
                      (only the mass changes, as DART's ``setMass``)
knee_limit_penalty    >= 0 reward subtracted per step while the knee (joint ``leg_joint``) is within
                      KNEE_LIMIT_MARGIN rad of either limit; hopper family only
state_limit           None | > 0: terminate when any |concat(qpos, state_velocity_scale * qvel)[2:]|
                      >= it (pitch, joint angles, every velocity: ``planar.without_x_and_height``;
                      the authors' ``(np.abs(s[2:]) < 100).all()``)
state_velocity_scale  > 0, the factor on qvel in the state vector that ``state_limit`` bounds: 1 = raw
                      qvel (Gymnasium's ``state_vector()``; the authors' hopper.py, which also tests
                      its raw ``dq`` against 100); 0.1 = dart-env's ``state_vector()`` ``[q, dq / 10]``
                      (the authors' walker2d.py, whose only velocity rule is ``np.abs(s[2:]) < 100``
                      on it: joint velocities up to 1000 rad/s)
integrator            ``euler`` | ``implicitfast`` | ``implicit`` | ``rk4``
damping               None (the robot file's: URDF ``<dynamics damping>``, MJCF joint damping) | >= 0
                      N*m*s/rad on every actuated hinge (root joints keep 0)
engine                ``mujoco`` | ``dart``: the simulator that steps the robot (``dart_engine``: DART
                      6.20 through dartpy, the paper's authors' simulator; ``pip install .[dart]``)
collision_detector    ``auto`` (the authors' per robot: ODE for capsule robots, DART's own for box
                      robots, FCL for ellipsoid robots) | ``ode`` | ``dart`` | ``fcl`` | ``bullet``;
                      the DART engine's collision detector (MuJoCo has one of its own and ignores it)
====================  ============================================================================

On the DART engine the robot is the MuJoCo model of these settings (``dart_engine.describe``), stepped by
DART's hard LCP contacts, hard joint limits and semi-implicit Euler. Settings DART has no counterpart for
must say so: ``armature`` 0 (DART's joints have none), ``joint_limits`` ``hard`` and ``integrator``
``euler`` (DART has only these); ``contact`` (MuJoCo's constraint softness) is not used by DART.

A robot loaded from an MJCF file (``gymnasium:hopper``, ``gymnasium:walker2d``) also accepts ``model``
for friction, foot_friction and contact: keep what the file has (its default). Such a robot's
defaults are the file's values (``robots.default_physics``: e.g. Walker2d's armature 0.01).

Hard constraints ("as stiff as MuJoCo stays stable at timestep 0.002"): MuJoCo's documentation
(Modeling > Solver parameters; XML reference, option/flag ``refsafe``) says the solref time constant
should be at least twice the timestep, and with ``refsafe`` on (the default) smaller values are
clamped to 2 * timestep anyway; damping ratio 1 is critical damping (no bounce). The impedance
solimp's dmin/dmax lie in (0, 1) (clamped to [0.0001, 0.9999]), values near 1 making the constraint
hard. So: solref (0.004, 1) and solimp (0.99, 0.99, 0.001, 0.5, 2): the stiffest time constant, and
99 % impedance at any penetration. test/test_physics.py checks that 2000 steps of random actions on
the paper profile's robots stay finite.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .. import profiles
from .engine import ENGINES as ENGINE_MODULES
from .families import FAMILIES

SETTINGS = ("armature", "friction", "foot_friction", "contact", "joint_limits", "inertia",
            "torso_inertia", "knee_limit_penalty", "state_limit", "state_velocity_scale", "integrator", "damping",
            "engine", "collision_detector")
DEFAULT_SOLREF = (0.02, 1.0)  # s, damping ratio: MuJoCo's default for contacts and joint limits
DEFAULT_SOLIMP = (0.9, 0.95, 0.001, 0.5, 2.0)  # MuJoCo's default impedance
STIFF_SOLREF = (0.004, 1.0)  # 2 * timestep 0.002 s (MuJoCo's stability floor), critically damped
STIFF_SOLIMP = (0.99, 0.99, 0.001, 0.5, 2.0)
CONTACT_NAMES = {"default": (DEFAULT_SOLREF, DEFAULT_SOLIMP), "stiff": (STIFF_SOLREF, STIFF_SOLIMP)}
JOINT_LIMITS = {"soft": (DEFAULT_SOLREF, DEFAULT_SOLIMP), "hard": (STIFF_SOLREF, STIFF_SOLIMP)}
INERTIA_MODES = ("true", "dart")
TORSO_INERTIA_MODES = ("scaled", "unchanged")
INTEGRATORS = ("euler", "implicitfast", "implicit", "rk4")
ENGINES = tuple(ENGINE_MODULES)  # the physics engines (envs.engine's registry)
# the DART engine's collision detectors (dart_engine.detector_for): auto = the authors' per robot
COLLISION_DETECTORS = ("auto", "ode", "dart", "fcl", "bullet")
MODEL = "model"  # keep the MJCF file's own value
KNEE_JOINT = "leg_joint"
KNEE_LIMIT_MARGIN = 0.05  # rad, the authors' hopper.py
# the authors' numbers the paper profile uses (mt_specialize.profiles)
PAPER_KNEE_PENALTY = profiles.PAPER_KNEE_PENALTY
PAPER_STATE_LIMIT = profiles.PAPER_STATE_LIMIT
DART_ENV_STATE_VELOCITY_SCALE = profiles.DART_ENV_STATE_VELOCITY_SCALE

# today's loader for URDF robots (docs/method.md#robots-and-tasks; every setting's default)
URDF_DEFAULTS = {"armature": 1.0, "friction": 0.9, "foot_friction": None, "contact": "default",
                 "joint_limits": "soft", "inertia": "true", "torso_inertia": "scaled",
                 "knee_limit_penalty": 0.0, "state_velocity_scale": 1.0, "integrator": "euler", "damping": None,
                 "engine": "mujoco", "collision_detector": "auto"}
# Gymnasium's hopper.xml as it is (armature 1, RK4, its own frictions and contacts)
MJCF_DEFAULTS = {**URDF_DEFAULTS, "friction": MODEL, "foot_friction": MODEL, "contact": MODEL,
                 "integrator": "rk4"}

# -- profiles: bundles of settings, per family, plus per built-in task changes (mt_specialize.profiles)
PROFILE_NAMES = profiles.NAMES
PROFILES: dict[str, dict] = profiles.PHYSICS


def _number(where: str, value, *, positive: bool = False) -> float:
    """``value`` as a finite float (>= 0, or > 0 if positive), else ValueError naming ``where``."""
    what = "a positive" if positive else "a non-negative"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{where} must be {what} finite number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{where} must be {what} finite number, got {value!r}")
    return v


def _choice(where: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{where} is {value!r}; allowed {list(allowed)}")
    return value


def _contact(where: str, value):
    allowed = f"allowed {list(CONTACT_NAMES)} or {{solref: [timeconst, dampratio], solimp: [dmin, dmax, width, " \
              "midpoint, power]}}"
    if isinstance(value, str):
        if value not in CONTACT_NAMES:
            raise ValueError(f"{where} is {value!r}; {allowed}")
        return value
    if not isinstance(value, Mapping) or set(value) != {"solref", "solimp"}:
        raise ValueError(f"{where} is {value!r}; {allowed}")
    solref, solimp = value["solref"], value["solimp"]
    if isinstance(solref, (str, bytes)) or not hasattr(solref, "__len__") or len(solref) != 2:
        raise ValueError(f"{where}: solref must be 2 numbers [timeconst s, dampratio], got {solref!r}")
    if isinstance(solimp, (str, bytes)) or not hasattr(solimp, "__len__") or len(solimp) not in (3, 5):
        raise ValueError(f"{where}: solimp must be 3 or 5 numbers [dmin, dmax, width, midpoint, power], "
                         f"got {solimp!r}")
    ref = [_number(f"{where}: solref[{i}]", x, positive=True) for i, x in enumerate(solref)]
    imp = [_number(f"{where}: solimp[{i}]", x) for i, x in enumerate(solimp)] + list(DEFAULT_SOLIMP[len(solimp):])
    if not (0 < imp[0] < 1 and 0 < imp[1] < 1):
        raise ValueError(f"{where}: solimp dmin and dmax must lie in (0, 1), got {list(solimp)}")
    return {"solref": ref, "solimp": imp}


def validate(settings: Mapping | None, where: str, family: str | None = None, mjcf: bool = False) -> dict:
    """Checked copy of ``settings`` (setting -> value) in plain YAML types; ValueError names
    ``where``, the setting and what is allowed. ``family`` checks family-only settings; ``mjcf``
    allows ``model``."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"{where} must be a mapping setting -> value with settings {list(SETTINGS)}, "
                         f"got {settings!r}")
    unknown = sorted(set(settings) - set(SETTINGS), key=str)  # a YAML key may be a number
    if unknown:
        raise ValueError(f"{where}: unknown physics setting(s) {unknown}; allowed {list(SETTINGS)}")
    out = {}
    for key, value in settings.items():
        w = f"{where}: {key}"
        if mjcf and value == MODEL and key in ("friction", "foot_friction", "contact"):
            out[key] = MODEL
        elif key == "armature":
            out[key] = _number(w, value)
        elif key == "friction":
            out[key] = _number(w, value, positive=True)
        elif key == "foot_friction":
            if value is None:
                out[key] = None
            elif isinstance(value, (list, tuple)):
                if not value:
                    raise ValueError(f"{w} must be None, one positive number or one per foot, got {value!r}")
                out[key] = [_number(f"{w}[{i}]", v, positive=True) for i, v in enumerate(value)]
            else:
                out[key] = _number(w + " (None, one number, or a list with one per foot)", value, positive=True)
        elif key == "contact":
            out[key] = _contact(w, value)
        elif key == "joint_limits":
            out[key] = _choice(w, value, JOINT_LIMITS)
        elif key == "inertia":
            out[key] = _choice(w, value, INERTIA_MODES)
        elif key == "torso_inertia":
            out[key] = _choice(w, value, TORSO_INERTIA_MODES)
        elif key == "knee_limit_penalty":
            out[key] = _number(w, value)
            if out[key] > 0 and family in FAMILIES and not FAMILIES[family].has_knee_penalty:
                raise ValueError(f"{w} is {value!r} but the task's family is {family!r}; the knee-limit "
                                 "penalty is for the hopper family only (allowed: 0 for other families)")
        elif key == "state_limit":
            out[key] = None if value is None else _number(w + " (None or a positive number)", value, positive=True)
        elif key == "state_velocity_scale":
            out[key] = _number(w + " (a positive factor on qvel in the state vector state_limit bounds)", value,
                               positive=True)
        elif key == "integrator":
            out[key] = _choice(w, value, INTEGRATORS)
        elif key == "damping":
            out[key] = None if value is None else _number(
                w + " (None = the robot file's, or N*m*s/rad)", value)
        elif key == "engine":
            out[key] = _choice(w, value, ENGINES)
        elif key == "collision_detector":
            out[key] = _choice(w, value, COLLISION_DETECTORS)
    return out


def default_physics(family: str, mjcf: bool = False) -> dict:
    """Every setting's default for a task of ``family``: today's URDF loader, or an MJCF file as it is."""
    return {**(MJCF_DEFAULTS if mjcf else URDF_DEFAULTS), "state_limit": (FAMILIES[family].state_limit if family in FAMILIES else None)}


def profile_settings(profile: str | None, family: str) -> dict:
    """The settings profile ``profile`` gives a task of ``family`` (unset ones absent)."""
    bundle = get_profile(profile)
    return {**bundle["settings"], **bundle["family"].get(family, {})}


def get_profile(profile: str | None) -> dict:
    """The bundle of ``profile`` (None means ``none``); ValueError lists the allowed names."""
    name = "none" if profile is None else profile
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown physics profile {profile!r}; allowed {list(PROFILE_NAMES)} (or None)")
    return PROFILES[name]


def contact_params(value) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(solref (2,), solimp (5,)) of a validated ``contact`` value."""
    if isinstance(value, str):
        return CONTACT_NAMES[value]
    return tuple(value["solref"]), tuple(value["solimp"])


# -- DART's inertia --------------------------------------------------------------------------------
def dart_capsule_inertia(radius: float, height: float, mass: float) -> tuple[float, float]:
    """(transverse, axial) moments (kg*m^2) about the centre of a capsule: DART's
    ``CapsuleShape::computeInertia(radius, height, mass)`` (dartsim/dart dart/dynamics/CapsuleShape.cpp;
    height = the cylinder's length), a cylinder plus a sphere of one density:
    Ixx = m_cyl (h^2/12 + r^2/4) + m_sph (h^2/4 + 3 h r / 8 + 2 r^2 / 5), Izz = m_cyl r^2/2 + 2 m_sph r^2/5.
    """
    v_cyl, v_sph = math.pi * radius ** 2 * height, 4.0 / 3.0 * math.pi * radius ** 3
    m_cyl, m_sph = mass * v_cyl / (v_cyl + v_sph), mass * v_sph / (v_cyl + v_sph)
    r2, h2 = radius ** 2, height ** 2
    transverse = m_cyl * (h2 / 12 + r2 / 4) + m_sph * (h2 / 4 + 3 * height * radius / 8 + 2 * r2 / 5)
    axial = m_cyl * r2 / 2 + m_sph * 2 * r2 / 5
    return transverse, axial


def dart_box_inertia(size, mass: float) -> np.ndarray:
    """(3,) moments about x, y, z of a box of full extents ``size`` (m): DART's
    ``BoxShape::computeInertia`` (dart/dynamics/BoxShape.cpp): Ixx = m/12 (y^2 + z^2), ..."""
    x, y, z = np.square(np.asarray(size, dtype=np.float64))
    return mass / 12.0 * np.array([y + z, x + z, x + y])


def dart_ellipsoid_inertia(size, mass: float) -> np.ndarray:
    """(3,) moments of an ellipsoid of diameters ``size`` (m): DART's ``EllipsoidShape::computeInertia``
    (dart/dynamics/EllipsoidShape.cpp): Ixx = m/20 (y^2 + z^2), ... (= m/5 (b^2 + c^2) in radii)."""
    x, y, z = np.square(np.asarray(size, dtype=np.float64))
    return mass / 20.0 * np.array([y + z, x + z, x + y])


def dart_inertia(shape: str, mujoco_size, mass: float) -> np.ndarray:
    """(3,) diagonal inertia (kg*m^2, about the centre of mass, link frame x, y, z) that DART 6's .skel
    parser gave a link of one ``shape`` with MuJoCo size ``mujoco_size`` and ``mass`` (kg).

    The parser computed the shape's inertia in the shape's own frame and dropped the shape's rotation
    (dartsim/dart issue #348). Our robots are planar with every hinge about y. A capsule lies along its
    link (rotated in the .skel file into the link's direction), so the link gets the capsule's axial
    moment about the hinge axis y and the transverse moment about x and z. Boxes and ellipsoids are not
    rotated in the .skel files (their sizes are given along the link), so DART's formulas give the
    true inertia. Spheres have no orientation.
    """
    size = np.asarray(mujoco_size, dtype=np.float64)
    if shape == "capsule":
        transverse, axial = dart_capsule_inertia(size[0], 2 * size[1], mass)
        return np.array([transverse, axial, transverse])
    if shape == "box":
        return dart_box_inertia(2 * size[:3], mass)
    if shape == "ellipsoid":
        return dart_ellipsoid_inertia(2 * size[:3], mass)
    if shape == "sphere":
        return np.full(3, 0.4 * mass * size[0] ** 2)
    raise ValueError(f"inertia 'dart' needs a capsule, box, ellipsoid or sphere link, got a {shape}")
