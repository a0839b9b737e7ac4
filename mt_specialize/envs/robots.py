"""Robots: URDF files -> MuJoCo models (planar root, floor, motors).

Convention for any robot URDF (built-in or user): the root link is the torso and gets the planar
root joints (slide x ``rootx``, slide z ``rootz``, hinge y ``rooty``); every other joint is
``revolute`` (or ``fixed``) and gets a motor in URDF joint order (depth-first). A capsule or
ellipsoid collision is a ``<mesh>`` plus an ``<mt_primitive type=... size=.../>`` child (MuJoCo
sizes); the loader swaps in the exact primitive and drops the mesh (see ``urdf/README.md``).

Physics choices (MuJoCo side, not in the URDF): timestep 0.002 s, Euler integrator (first order,
like DART's semi-implicit Euler; docs/method.md#robots-and-tasks), joint armature 1.0 kg*m^2 on the actuated hinges
and 0 on the root joints (Gymnasium's hopper.xml), sliding friction 0.9 on every geom (Gymnasium's
body geoms; its feet use 2.0/1.9, we keep 0.9), robot geoms collide with the floor only (Walker2d's
``conaffinity=0``). Joint damping comes from the URDF ``<dynamics damping>`` (1.0 for all built-ins).
These are the defaults of the physics settings (``mt_specialize.envs.physics``), which change them per task.

``gymnasium:hopper`` is Gymnasium's own MJCF Hopper (the installed package's ``assets/hopper.xml``),
loaded as it is (RK4 integrator, its frictions and contacts) unless a setting says otherwise; the
calibration benchmark's reference robot. ``gymnasium:walker2d`` is Gymnasium's Walker2d-v5 model
(``assets/walker2d_v5.xml``: armature 0.01, damping 0.1, ankle gear 100, RK4, foot friction 1.9), a
biped-family robot with our biped's joints and motors in the same order (thigh, leg, foot, then the
left leg's), so its actions and observations mean what the biped's do.
An MJCF robot's motors must drive its hinges one each in joint order (``build_model`` refuses
another layout): ``gears`` and a policy's actions are in that order.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium
import mujoco
import numpy as np

from mt_specialize.envs import physics as physics_settings
from mt_specialize.envs import planar, urdf_gen
from mt_specialize.paths import URDF_DIR

TIMESTEP = 0.002  # s
FRICTION = 0.9  # sliding friction coefficient, all geoms
FLOOR_HALF_SIZE = 40.0  # m
LINK_MASS_RANGE = (1e-3, 1e4)  # kg: a robot link's mass outside it is a typing error, not a robot
FOOT_CLEARANCE = urdf_gen.FOOT_CLEARANCE  # m, lowest robot point above the floor at the start pose
ROOT_JOINTS = planar.ROOT_JOINTS  # x, torso height, pitch: first in qpos and qvel (planar.X, HEIGHT, PITCH)
GYMNASIUM_ASSETS = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"  # Gymnasium's MJCF files

_PRIMITIVES = {"capsule": (mujoco.mjtGeom.mjGEOM_CAPSULE, 2), "ellipsoid": (mujoco.mjtGeom.mjGEOM_ELLIPSOID, 3),
               "box": (mujoco.mjtGeom.mjGEOM_BOX, 3), "sphere": (mujoco.mjtGeom.mjGEOM_SPHERE, 1),
               "cylinder": (mujoco.mjtGeom.mjGEOM_CYLINDER, 2)}


@dataclass(frozen=True)
class RobotSpec:
    """A robot: its URDF, motor torque scales (N*m per unit action), torso start height (m).

    ``start_height=None`` means: put the lowest collision point FOOT_CLEARANCE above the floor.
    ``torso_link=None`` means the URDF's root link. ``mjcf``: a complete MuJoCo model file used
    instead of a URDF (its own root joints, floor and motors; ``urdf`` is then None).
    ``default_physics``: physics settings whose default for this robot differs from its kind's
    (``physics.default_physics``): the file's own values, so that the defaults build the file as it is.
    """

    name: str
    urdf: Path | None
    gears: tuple[float, ...] | None = None
    start_height: float | None = None
    torso_link: str | None = None
    family: str | None = None
    mjcf: Path | None = None
    default_physics: dict | None = field(default=None, hash=False)


def _builtin(name: str, family: str) -> RobotSpec:
    desc = urdf_gen.all_robots()[name]
    gears = tuple(link.gear for link in desc.links if link.parent is not None)
    return RobotSpec(name, URDF_DIR / f"{name}.urdf", gears, desc.start_height, "torso", family)


ROBOTS: dict[str, RobotSpec] = {
    "hopper_capsule": _builtin("hopper_capsule", "hopper"),
    "hopper_box": _builtin("hopper_box", "hopper"),
    "hopper_ellipsoid": _builtin("hopper_ellipsoid", "hopper"),
    "biped": _builtin("biped", "biped"),
}
# robots from complete MJCF files (no URDF, so not shown by the ROS nodes' robot_description)
MJCF_ROBOTS: dict[str, RobotSpec] = {
    "gymnasium:hopper": RobotSpec("gymnasium:hopper", None, None, None, "torso", "hopper",
                                  GYMNASIUM_ASSETS / "hopper.xml"),
    "gymnasium:walker2d": RobotSpec("gymnasium:walker2d", None, None, None, "torso", "biped",
                                    GYMNASIUM_ASSETS / "walker2d_v5.xml", {"armature": 0.01}),
}


def _check_positive(name: str, value) -> float:
    """``value`` as a float if finite and > 0, else ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def get_robot(robot: str | Path | RobotSpec) -> RobotSpec:
    """Resolve a built-in name, a URDF path or a RobotSpec to a RobotSpec."""
    if isinstance(robot, RobotSpec):
        return robot
    if isinstance(robot, str) and robot in ROBOTS:
        return ROBOTS[robot]
    if isinstance(robot, str) and robot in MJCF_ROBOTS:
        return MJCF_ROBOTS[robot]
    if isinstance(robot, Path) or (isinstance(robot, str) and robot.lower().endswith(".urdf")):
        path = Path(robot).expanduser().resolve()
        return RobotSpec(path.stem, path)
    raise ValueError(f"unknown robot {robot!r}: allowed are {sorted(ROBOTS) + sorted(MJCF_ROBOTS)} or a path "
                     "to a .urdf file")


@dataclass(frozen=True)
class UrdfInfo:
    """What the loader needs from the URDF text (parsed with xml.etree)."""

    root_link: str
    masses: dict[str, float]  # kg per link
    primitives: dict[str, list[tuple[str, tuple[float, ...]] | None]]  # per link, per collision
    joints: list[tuple[str, str, float]]  # (name, type, effort) in document order


def read_urdf(path: Path) -> UrdfInfo:
    """Parse and validate a URDF for the planar convention; ValueError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"URDF file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"malformed URDF {path}: {exc}") from None
    if root.tag != "robot":
        raise ValueError(f"malformed URDF {path}: root element is <{root.tag}>, expected <robot>")
    masses, primitives = {}, {}
    for link in root.findall("link"):
        name = link.get("name")
        mass = link.find("inertial/mass")
        if mass is None:
            raise ValueError(f"URDF {path}: link {name!r} has no <inertial> with a <mass> "
                             "(every link needs one: mass in kg and inertia)")
        masses[name] = _check_positive(f"URDF {path}: mass of link {name!r}", mass.get("value"))
        prims = []
        for collision in link.findall("collision"):
            prim = collision.find("mt_primitive")
            if prim is None:
                if collision.find("geometry/mesh") is not None:
                    raise ValueError(f"URDF {path}: link {name!r} has a mesh collision without "
                                     "<mt_primitive>; allowed collisions: box, cylinder, sphere, or "
                                     "mesh + <mt_primitive type=capsule|ellipsoid|...>")
                prims.append(None)
                continue
            ptype = prim.get("type")
            if ptype not in _PRIMITIVES:
                raise ValueError(f"URDF {path}: link {name!r}: mt_primitive type {ptype!r}, "
                                 f"allowed {sorted(_PRIMITIVES)}")
            try:
                size = tuple(float(x) for x in prim.get("size", "").split())
            except ValueError:
                size = ()
            if len(size) != _PRIMITIVES[ptype][1] or not all(math.isfinite(s) and s > 0 for s in size):
                raise ValueError(f"URDF {path}: link {name!r}: mt_primitive size {prim.get('size')!r} "
                                 f"must be {_PRIMITIVES[ptype][1]} positive numbers for a {ptype}")
            prims.append((ptype, size))
        primitives[name] = prims
    if not masses:
        raise ValueError(f"URDF {path}: no <link> elements")
    joints, children = [], set()
    for joint in root.findall("joint"):
        jtype = joint.get("type")
        if jtype not in ("revolute", "fixed"):
            raise ValueError(f"URDF {path}: joint {joint.get('name')!r} has type {jtype!r}; allowed "
                             "'revolute' and 'fixed' (the planar root joints are added by the loader)")
        child = joint.find("child")
        if child is not None:
            children.add(child.get("link"))
        limit = joint.find("limit")
        effort = float(limit.get("effort", "nan")) if limit is not None else float("nan")
        joints.append((joint.get("name"), jtype, effort))
    roots = [name for name in masses if name not in children]
    if len(roots) != 1:
        raise ValueError(f"URDF {path}: expected exactly one root link, found {roots}")
    return UrdfInfo(roots[0], masses, primitives, joints)


def _replace_primitives(spec: mujoco.MjSpec, info: UrdfInfo) -> None:
    """Swap each <mt_primitive> mesh geom for the exact MuJoCo primitive; delete the meshes."""
    for body in spec.bodies:
        prims = info.primitives.get(body.name)
        if not prims:
            continue
        geoms = list(body.geoms)
        if len(geoms) != len(prims):
            raise ValueError(f"link {body.name!r}: {len(prims)} <collision> elements but MuJoCo made "
                             f"{len(geoms)} geoms")
        for geom, prim in zip(geoms, prims):
            if prim is None:
                continue
            gtype, _ = _PRIMITIVES[prim[0]]
            geom.type = gtype
            geom.size = list(prim[1]) + [0.0] * (3 - len(prim[1]))
            geom.meshname = ""
    for mesh in list(spec.meshes):
        spec.delete(mesh)


def _lowest_point(model: mujoco.MjModel, data: mujoco.MjData) -> float:
    """Lowest z (m) of all non-plane geoms at the current pose (primitives and meshes)."""
    low = math.inf
    for g in range(model.ngeom):
        gtype, size = model.geom_type[g], model.geom_size[g]
        z, rot = data.geom_xpos[g][2], data.geom_xmat[g].reshape(3, 3)
        if gtype == mujoco.mjtGeom.mjGEOM_PLANE:
            continue
        if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
            extent = size[0]
        elif gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
            extent = size[0] + abs(rot[2, 2]) * size[1]
        elif gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
            extent = abs(rot[2, 2]) * size[1] + size[0] * math.sqrt(max(0.0, 1 - rot[2, 2] ** 2))
        elif gtype == mujoco.mjtGeom.mjGEOM_BOX:
            extent = float(np.abs(rot[2]) @ size)
        elif gtype == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            extent = float(np.linalg.norm(rot[2] * size))
        else:  # mesh: fall back to the bounding sphere
            extent = model.geom_rbound[g]
        low = min(low, z - extent)
    return low


_GEOM_SHAPES = {int(gtype): name for name, (gtype, _) in _PRIMITIVES.items()}
_INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
                "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT, "rk4": mujoco.mjtIntegrator.mjINT_RK4}


def default_physics(robot: str | Path | RobotSpec, family: str | None = None) -> dict:
    """Every physics setting's default for ``robot`` under ``family`` (default: the robot's, else
    hopper): its kind's (``physics.default_physics``: URDF loader or MJCF file) updated by the robot's
    own ``RobotSpec.default_physics``."""
    spec_r = get_robot(robot)
    defaults = physics_settings.default_physics(family or spec_r.family or "hopper", mjcf=spec_r.mjcf is not None)
    return {**defaults, **(spec_r.default_physics or {})}


def resolve_physics(robot: str | Path | RobotSpec, physics: dict | None = None) -> dict:
    """Every physics setting of ``robot``: its defaults (``default_physics``) updated by the
    validated ``physics`` (setting -> value)."""
    spec_r = get_robot(robot)
    given = physics_settings.validate(physics, f"robot {spec_r.name!r}", spec_r.family, mjcf=spec_r.mjcf is not None)
    return {**default_physics(spec_r), **given}


def feet(spec: mujoco.MjSpec) -> list:
    """The foot bodies of ``spec``: bodies without child bodies (the tree's leaves), in tree order."""
    return [body for body in spec.bodies if body.name != "world" and not list(body.bodies)]


def _set_dart_inertia(body) -> None:
    """Give ``body`` (one geom) the inertia DART's .skel parser computed (``physics.dart_inertia``)."""
    geoms = list(body.geoms)
    shape = _GEOM_SHAPES.get(int(geoms[0].type)) if len(geoms) == 1 else None
    if shape is None or shape == "cylinder":
        raise ValueError(f"inertia 'dart': link {body.name!r} must have exactly one capsule, box, ellipsoid or "
                         f"sphere collision, got {[str(g.type) for g in geoms]}")
    body.fullinertia = list(physics_settings.dart_inertia(shape, geoms[0].size, body.mass)) + [0.0, 0.0, 0.0]
    body.inertia = [0.0, 0.0, 0.0]


def _explicit_inertials(spec: mujoco.MjSpec) -> None:
    """Write the compiled mass, centre of mass and principal inertia into every body of ``spec`` (for
    an MJCF file that computes them from its geoms) so they can be edited like a URDF's."""
    probe = spec.copy().compile()
    for body in spec.bodies:
        if body.name == "world":
            continue
        b = probe.body(body.name).id
        body.mass = float(probe.body_mass[b])
        body.ipos, body.iquat = list(probe.body_ipos[b]), list(probe.body_iquat[b])
        body.inertia = list(probe.body_inertia[b])
        body.fullinertia = [math.nan] * 6
        body.explicitinertial = True
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE


def _apply_physics(spec: mujoco.MjSpec, settings: dict, hinges: list, torso_name: str, robot_name: str, *,
                   torso_mass: float | None, mass_scale: float) -> None:
    """Apply resolved physics ``settings`` and the mass changes to ``spec`` (bodies, geoms, hinges)."""
    spec.option.integrator = _INTEGRATORS[settings["integrator"]]
    for body in spec.bodies:
        if body.name == "world":
            continue
        if settings["inertia"] == "dart":
            _set_dart_inertia(body)
        if torso_mass is not None and body.name == torso_name:
            ratio = torso_mass / body.mass
            body.mass = torso_mass
            if settings["torso_inertia"] == "scaled":
                body.fullinertia = list(np.asarray(body.fullinertia) * ratio)
                body.inertia = list(np.asarray(body.inertia) * ratio)
        body.mass *= mass_scale
        body.fullinertia = list(np.asarray(body.fullinertia) * mass_scale)
        body.inertia = list(np.asarray(body.inertia) * mass_scale)
    friction = settings["friction"]
    solref, solimp = (None, None) if settings["contact"] == physics_settings.MODEL else \
        physics_settings.contact_params(settings["contact"])
    for geom in spec.geoms:
        if friction != physics_settings.MODEL:
            geom.friction = [friction, geom.friction[1], geom.friction[2]]
        if solref is not None:
            geom.solref, geom.solimp = list(solref), list(solimp)
    foot_friction = settings["foot_friction"]
    if foot_friction not in (None, physics_settings.MODEL):
        foot_bodies = feet(spec)
        values = foot_friction if isinstance(foot_friction, list) else [foot_friction] * len(foot_bodies)
        if len(values) != len(foot_bodies):
            raise ValueError(f"foot_friction has {len(values)} values but robot {robot_name!r} has "
                             f"{len(foot_bodies)} feet (leaf links) {[b.name for b in foot_bodies]}: give one "
                             "value, or one per foot in this order")
        for body, value in zip(foot_bodies, values):
            for geom in body.geoms:
                geom.friction = [value, geom.friction[1], geom.friction[2]]
    limit_ref, limit_imp = physics_settings.JOINT_LIMITS[settings["joint_limits"]]
    for joint in hinges:
        joint.armature = settings["armature"]
        if settings["damping"] is not None:
            joint.damping = [settings["damping"], *list(joint.damping)[1:]]  # the linear coefficient
        joint.solref_limit, joint.solimp_limit = list(limit_ref), list(limit_imp)


def build_model(robot: str | Path | RobotSpec, *, torso_mass: float | None = None,
                mass_scale: float = 1.0, gears: tuple[float, ...] | None = None,
                start_height: float | None = None, physics: dict | None = None) -> mujoco.MjModel:
    """Compile a planar MuJoCo model of ``robot`` (built-in name, URDF path or RobotSpec).

    torso_mass: replaces the torso link's mass (kg), inertia scaled with it unless the physics
    setting torso_inertia is ``unchanged``; applied before mass_scale, which multiplies every link's
    mass and inertia. gears: torque scale per actuated joint (N*m per unit action; default
    RobotSpec.gears, else the URDF ``<limit effort>``). start_height: torso height (m) at qpos0;
    ``planar.height(qpos)`` is the absolute torso height. physics: setting -> value (``mt_specialize.envs.physics``),
    unset settings at their defaults (which reproduce the models built before these settings).
    """
    spec_r = get_robot(robot)
    settings = resolve_physics(spec_r, physics)
    mass_scale = _check_positive("mass_scale", mass_scale)
    if torso_mass is not None:
        torso_mass = _check_positive("torso_mass", torso_mass)
    if spec_r.mjcf is not None:
        return _build_mjcf(spec_r, settings, torso_mass, mass_scale, gears, start_height)
    info = read_urdf(spec_r.urdf)
    torso_name = spec_r.torso_link or info.root_link
    if torso_name != info.root_link:
        raise ValueError(f"torso_link {torso_name!r} must be the URDF root link {info.root_link!r}")

    spec = mujoco.MjSpec.from_file(str(spec_r.urdf))
    _replace_primitives(spec, info)
    spec.modelname = spec_r.name
    spec.compiler.discardvisual = False  # URDF visuals are already dropped at parse; keep the floor material
    spec.compiler.fusestatic = False  # keep every URDF link a body (the torso has no joint until below)
    spec.option.timestep = TIMESTEP

    torso = spec.body(torso_name)
    hinges = [j for j in spec.joints]
    for geom in spec.geoms:
        geom.contype, geom.conaffinity, geom.condim = 1, 0, 3
    for joint in hinges:
        joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_FALSE  # the motor's ctrlrange * gear limits
        joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE
    floor_friction = settings["friction"]
    _apply_physics(spec, settings, hinges, torso_name, spec_r.name, torso_mass=torso_mass,
                   mass_scale=mass_scale)

    # motors, in URDF joint order
    efforts = {name: effort for name, jtype, effort in info.joints if jtype == "revolute"}
    names = [j.name for j in hinges]
    if gears is None:
        gears = spec_r.gears if spec_r.gears is not None else tuple(efforts[n] for n in names)
    gears = tuple(gears)
    if len(gears) != len(names):
        raise ValueError(f"gears has {len(gears)} values but robot {spec_r.name!r} has "
                         f"{len(names)} actuated joints {names}")
    for name, gear in zip(names, gears):
        gear = _check_positive(f"gear of joint {name!r} (URDF <limit effort> or gears)", gear)
        spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          gear=[gear, 0, 0, 0, 0, 0], ctrlrange=[-1.0, 1.0],
                          ctrllimited=mujoco.mjtLimited.mjLIMITED_TRUE)

    # planar root; planar.height(qpos) is the absolute torso height through rootz's ref
    if start_height is None:
        start_height = spec_r.start_height
    if start_height is None:  # user robot: lowest point FOOT_CLEARANCE above the floor
        probe = spec.copy().compile()
        pdata = mujoco.MjData(probe)
        mujoco.mj_kinematics(probe, pdata)
        start_height = FOOT_CLEARANCE - _lowest_point(probe, pdata)
    start_height = _check_positive("start_height", start_height)
    torso.pos = [0.0, 0.0, start_height]
    root_kw = dict(armature=0.0, damping=0.0, limited=mujoco.mjtLimited.mjLIMITED_FALSE)
    rootx = torso.add_joint(name="rootx", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0],
                            pos=[0, 0, -start_height], **root_kw)
    rootz = torso.add_joint(name="rootz", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 0, 1],
                            pos=[0, 0, -start_height], ref=start_height, **root_kw)
    rooty = torso.add_joint(name="rooty", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 1, 0],
                            pos=[0, 0, 0], **root_kw)
    del rootx, rootz, rooty  # the torso (URDF root) has no other joints: these come first in qpos

    # floor and a light (visual only)
    tex = spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                           builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=64, height=64,
                           rgb1=[0.25, 0.3, 0.35], rgb2=[0.45, 0.5, 0.55])
    mat = spec.add_material(name="floor")
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    mat.texrepeat = [FLOOR_HALF_SIZE, FLOOR_HALF_SIZE]  # 1 m checker squares
    solref, solimp = physics_settings.contact_params(settings["contact"])
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE,
                            size=[FLOOR_HALF_SIZE, FLOOR_HALF_SIZE, 0.125], material="floor",
                            friction=[floor_friction, 0.005, 0.0001], contype=1, conaffinity=1, condim=3,
                            solref=list(solref), solimp=list(solimp))
    spec.worldbody.add_light(name="sun", pos=[0, 0, 5], dir=[0, 0, -1],
                             type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             castshadow=0)
    return _check_planar_model(spec.compile(), spec_r.name)


def _build_mjcf(spec_r: RobotSpec, settings: dict, torso_mass: float | None, mass_scale: float,
                gears: tuple[float, ...] | None, start_height: float | None) -> mujoco.MjModel:
    """Compile an MJCF robot (root joints rootx/rootz/rooty, floor and motors in the file) with
    ``settings`` applied; settings at ``model`` keep the file's values."""
    if start_height is not None:
        raise ValueError(f"robot {spec_r.name!r} is an MJCF file: start_height is set by the file, "
                         f"got start_height={start_height!r}")
    spec = mujoco.MjSpec.from_file(str(spec_r.mjcf))
    names = [j.name for j in spec.joints]
    if tuple(names[:3]) != ROOT_JOINTS:
        raise ValueError(f"MJCF robot {spec_r.name!r}: its first joints must be {list(ROOT_JOINTS)}, got {names[:3]}")
    hinges = [j for j in spec.joints if j.name not in ROOT_JOINTS]
    _check_motor_layout(spec, hinges, spec_r.name)
    if settings["inertia"] == "dart" or torso_mass is not None or mass_scale != 1.0:
        _explicit_inertials(spec)
    _apply_physics(spec, settings, hinges, spec_r.torso_link or "torso", spec_r.name, torso_mass=torso_mass,
                   mass_scale=mass_scale)  # spec.geoms includes the file's floor
    if gears is not None:
        actuators = list(spec.actuators)
        if len(gears) != len(actuators):
            raise ValueError(f"gears has {len(gears)} values but robot {spec_r.name!r} has {len(actuators)} motors")
        for actuator, gear in zip(actuators, gears):
            actuator.gear = [_check_positive(f"gear of motor {actuator.name!r}", gear), 0, 0, 0, 0, 0]
    return _check_planar_model(spec.compile(), spec_r.name)


def _check_planar_model(model: mujoco.MjModel, robot_name: str) -> mujoco.MjModel:
    """``model`` if it is a planar robot of sane masses, else ValueError naming the joint or link: every
    hinge turns about the world's y axis at the start pose (the robot moves in the x-z plane), every
    link weighs ``LINK_MASS_RANGE`` kg (after torso_mass and mass_scale)."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    for j in range(model.njnt):
        axis = data.xaxis[j]
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE and not np.allclose(np.abs(axis), (0.0, 1.0, 0.0),
                                                                                 atol=1e-6):
            raise ValueError(f"robot {robot_name!r}: joint {model.joint(j).name!r} turns about {np.round(axis, 6).tolist()} "
                             f"(world frame, at the start pose); a planar robot's joints turn about the y axis "
                             f"(URDF <axis xyz=\"0 1 0\"/> or \"0 -1 0\" with no rotation out of the x-z plane)")
    low, high = LINK_MASS_RANGE
    for b in range(1, model.nbody):
        mass = float(model.body_mass[b])
        if not low <= mass <= high:
            raise ValueError(f"robot {robot_name!r}: link {model.body(b).name!r} would weigh {mass:.4g} kg (its file's "
                             f"mass times torso_mass / mass_scale); allowed {low:g} to {high:,g} kg per link")
    return model


def _check_motor_layout(spec: mujoco.MjSpec, hinges: list, robot_name: str) -> None:
    """ValueError unless the MJCF's motors are joint motors driving ``hinges`` one each, in joint order
    (the order ``gears``, the actions and the policies of every robot assume)."""
    hinge_names = [j.name for j in hinges]
    targets = [(a.target if a.trntype == mujoco.mjtTrn.mjTRN_JOINT else f"<{a.trntype.name} {a.target}>")
               for a in spec.actuators]
    if targets != hinge_names:
        raise ValueError(f"MJCF robot {robot_name!r}: its motors must drive its hinges one each in joint order "
                         f"{hinge_names}, got motors on {targets}")
