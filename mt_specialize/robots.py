"""Robots: URDF files -> MuJoCo models (planar root, floor, motors).

Convention for any robot URDF (built-in or user): the root link is the torso and gets the planar
root joints (slide x ``rootx``, slide z ``rootz``, hinge y ``rooty``); every other joint is
``revolute`` (or ``fixed``) and gets a motor in URDF joint order (depth-first). A capsule or
ellipsoid collision is a ``<mesh>`` plus an ``<mt_primitive type=... size=.../>`` child (MuJoCo
sizes); the loader swaps in the exact primitive and drops the mesh (see ``urdf/README.md``).

Physics choices (MuJoCo side, not in the URDF): timestep 0.002 s, Euler integrator (first order,
like DART's semi-implicit Euler; SPEC section 4), joint armature 1.0 kg*m^2 on the actuated hinges
and 0 on the root joints (Gymnasium's hopper.xml), sliding friction 0.9 on every geom (Gymnasium's
body geoms; its feet use 2.0/1.9, we keep 0.9), robot geoms collide with the floor only (Walker2d's
``conaffinity=0``). Joint damping comes from the URDF ``<dynamics damping>`` (1.0 for all built-ins).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from mt_specialize import urdf_gen
from mt_specialize.paths import URDF_DIR

TIMESTEP = 0.002  # s
ARMATURE = 1.0  # kg*m^2, actuated hinges (Gymnasium hopper default)
FRICTION = 0.9  # sliding friction coefficient, all geoms
FLOOR_HALF_SIZE = 40.0  # m
FOOT_CLEARANCE = urdf_gen.FOOT_CLEARANCE  # m, lowest robot point above the floor at the start pose
ROOT_JOINTS = ("rootx", "rootz", "rooty")

_PRIMITIVES = {"capsule": (mujoco.mjtGeom.mjGEOM_CAPSULE, 2), "ellipsoid": (mujoco.mjtGeom.mjGEOM_ELLIPSOID, 3),
               "box": (mujoco.mjtGeom.mjGEOM_BOX, 3), "sphere": (mujoco.mjtGeom.mjGEOM_SPHERE, 1),
               "cylinder": (mujoco.mjtGeom.mjGEOM_CYLINDER, 2)}


@dataclass(frozen=True)
class RobotSpec:
    """A robot: its URDF, motor torque scales (N*m per unit action), torso start height (m).

    ``start_height=None`` means: put the lowest collision point FOOT_CLEARANCE above the floor.
    ``torso_link=None`` means the URDF's root link.
    """

    name: str
    urdf: Path
    gears: tuple[float, ...] | None = None
    start_height: float | None = None
    torso_link: str | None = None
    family: str | None = None


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
    if isinstance(robot, Path) or (isinstance(robot, str) and robot.lower().endswith(".urdf")):
        path = Path(robot).expanduser().resolve()
        return RobotSpec(path.stem, path)
    raise ValueError(f"unknown robot {robot!r}: allowed are {sorted(ROBOTS)} or a path to a .urdf file")


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


def build_model(robot: str | Path | RobotSpec, *, torso_mass: float | None = None,
                mass_scale: float = 1.0, gears: tuple[float, ...] | None = None,
                start_height: float | None = None) -> mujoco.MjModel:
    """Compile a planar MuJoCo model of ``robot`` (built-in name, URDF path or RobotSpec).

    torso_mass: replaces the torso link's mass (kg), inertia scaled with it; applied before
    mass_scale, which multiplies every link's mass and inertia. gears: torque scale per actuated
    joint (N*m per unit action; default RobotSpec.gears, else the URDF ``<limit effort>``).
    start_height: torso height (m) at qpos0; ``qpos[1]`` is the absolute torso height.
    """
    spec_r = get_robot(robot)
    info = read_urdf(spec_r.urdf)
    mass_scale = _check_positive("mass_scale", mass_scale)
    if torso_mass is not None:
        torso_mass = _check_positive("torso_mass", torso_mass)
    torso_name = spec_r.torso_link or info.root_link
    if torso_name != info.root_link:
        raise ValueError(f"torso_link {torso_name!r} must be the URDF root link {info.root_link!r}")

    spec = mujoco.MjSpec.from_file(str(spec_r.urdf))
    _replace_primitives(spec, info)
    spec.modelname = spec_r.name
    spec.compiler.discardvisual = False  # URDF visuals are already dropped at parse; keep the floor material
    spec.compiler.fusestatic = False  # keep every URDF link a body (the torso has no joint until below)
    spec.option.timestep = TIMESTEP
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_EULER

    torso = spec.body(torso_name)
    hinges = [j for j in spec.joints]
    for body in spec.bodies:
        if body.name == "world":
            continue
        if torso_mass is not None and body.name == torso_name:
            ratio = torso_mass / body.mass
            body.mass, body.fullinertia = torso_mass, list(np.asarray(body.fullinertia) * ratio)
            body.inertia = list(np.asarray(body.inertia) * ratio)
        body.mass *= mass_scale
        body.fullinertia = list(np.asarray(body.fullinertia) * mass_scale)
        body.inertia = list(np.asarray(body.inertia) * mass_scale)
    for geom in spec.geoms:
        geom.friction = [FRICTION, geom.friction[1], geom.friction[2]]
        geom.contype, geom.conaffinity, geom.condim = 1, 0, 3
    for joint in hinges:
        joint.armature = ARMATURE
        joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_FALSE  # the motor's ctrlrange * gear limits
        joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE

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

    # planar root; qpos[1] is the absolute torso height through rootz's ref
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
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE,
                            size=[FLOOR_HALF_SIZE, FLOOR_HALF_SIZE, 0.125], material="floor",
                            friction=[FRICTION, 0.005, 0.0001], contype=1, conaffinity=1, condim=3)
    spec.worldbody.add_light(name="sun", pos=[0, 0, 5], dir=[0, 0, -1],
                             type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             castshadow=0)
    return spec.compile()

