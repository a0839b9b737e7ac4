"""The DART physics engine (dartpy 6.20): the paper's authors' simulator behind the MuJoCo engine's contract.

A task whose physics setting ``engine`` is ``dart`` is stepped by DART instead of MuJoCo. The robot is
still described once: the URDF gives the MuJoCo model (``robots.build_model``, every physics setting
applied), and the DART skeleton is built from that compiled model (``describe``), so geometry, masses,
inertias, joint limits, damping and torque scales are the MuJoCo model's by construction. The
generalised coordinates map one to one: DART's positions and velocities are MuJoCo's qpos and qvel
(planar root: prismatic x, prismatic z, revolute y, as the authors' ``.skel`` files; then the hinges in
MuJoCo's order), so the named quantities (``planar``), the rules (``tasks``), the batched engine's state
rows ([time, qpos, qvel], ``vec_env``) and MuJoCo's renderer all serve a DART run.

What DART does as the authors' dart-env did (``gym/envs/dart/dart_env.py`` and the ``.skel`` files):
hard LCP contacts (``BoxedLcpConstraintSolver``: Dantzig, PGS where Dantzig fails), Coulomb friction,
joint limits enforced as constraints, joint damping, semi-implicit Euler at the MuJoCo model's timestep
(0.002 s); each substep sets the torques ``gear * clip(action, ctrlrange)`` on the actuated dofs and
calls ``World.step``, ``frame_skip`` substeps per control step. The floor is the authors' ground: a
500 x 5 x 0.05 m box whose top is z = 0. The collision detector is the authors' per robot
(``detector_for``).

A control step is a pure function of (qpos, qvel, action), as the MuJoCo engine's. DART 6.20 keeps state
outside (q, dq) that the authors' DART (2017) did not have; before every substep it is removed:
- body deactivation (sleeping bodies, on by default in 6.20) is switched off per world;
- the ODE detector's per-pair contact history (DART 6.18+: contacts of earlier queries fill up a pair
  that reports fewer than three) is emptied by a collision query that filters out every pair (the
  detector then clears the history of every pair without contacts, i.e. of all);
- the DART and FCL detectors (and Bullet's) keep state of their own, which a fresh detector per substep
  removes.
Without this, a world that has stepped a trajectory and a fresh world given the same state and action
part ways (``python bench/dart_memory.py``). ``test/test_dart_engine.py`` checks that a world reused for
other states steps bit-identically to a fresh one, for every built-in robot.

Friction: DART combines two shapes' coefficients by their minimum, MuJoCo by their maximum. Robot
shapes touch only the floor, so each robot shape gets max(its friction, the floor's) and the floor the
largest of all: every contact then has MuJoCo's coefficient.

dartpy holds the GIL while it steps, so the batched stepper (``DartBatch``) uses processes: the calling
process steps one contiguous chunk of the envs and ``nworkers - 1`` worker processes the others.
"""
from __future__ import annotations

import os
import subprocess
import traceback
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .physics import COLLISION_DETECTORS

EXTRA_HINT = "pip install 'mt_specialize[dart]' (from a source checkout: pip install -e '.[dart]')"
DETECTORS = COLLISION_DETECTORS[1:]  # ode, dart, fcl, bullet (``auto`` picks the authors')
# The authors' detector per robot (dart-env b15a4ed2, gym/envs/dart/hopper.py and walker2d.py:
# ``set_collision_detector(n)``, n mapped in pydart2's pydart2_world_api.cpp: 0 DART, 1 FCL, 2 Bullet,
# 3 ODE): capsule hopper 3, box hopper 0, ellipsoid hopper 1, walker2d (the biped) 3. By shape: a robot of
# capsules takes ODE, of boxes DART's own, of ellipsoids FCL.
AUTHORS_DETECTOR = {"capsule": "ode", "box": "dart", "ellipsoid": "fcl"}
# The shapes each detector of DART 6.20 was checked to collide as themselves (a shape resting 1 mm deep in
# the floor: the contacts and depth test/test_dart_engine.py names). FCL has no capsule and ODE no
# ellipsoid: DART logs an error and collides a small sphere instead (FCL r 0.1 m, ODE r 0.01 m), so
# a foot resting on the floor has no contact at all; Bullet collides an ellipsoid as a cluster of
# spheres (11 mm deep at 1 mm). Such pairings are refused.
DETECTOR_SHAPES = {"ode": ("capsule", "box"), "dart": ("capsule", "box"), "fcl": ("box", "ellipsoid"),
                   "bullet": ("capsule", "box")}
GROUND_SIZE = (500.0, 5.0, 0.05)  # m, the authors' ground box (x, lateral, thickness); its top is z = 0


def require_dartpy():
    """The ``dartpy`` module; ValueError naming the extra to install when it is missing."""
    try:
        import dartpy
    except ImportError as exc:
        raise ValueError(f"the physics engine 'dart' needs dartpy, which is not installed ({exc}): {EXTRA_HINT}") \
            from None
    return dartpy


def available() -> bool:
    """Whether dartpy imports."""
    try:
        require_dartpy()
    except ValueError:
        return False
    return True


# -- the robot, read from a compiled MuJoCo model ---------------------------------------------------
@dataclass(frozen=True)
class ShapeDesc:
    """One collision shape in its body's frame: ``kind`` capsule | box | ellipsoid | sphere | cylinder,
    ``size`` MuJoCo's (radius, half-length; half-sizes; radii; ...), ``pos`` (3,) m, ``quat`` (4,) wxyz,
    ``friction`` the coefficient DART gets (see the module docstring)."""

    kind: str
    size: tuple[float, ...]
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    friction: float


@dataclass(frozen=True)
class JointDesc:
    """One dof: ``kind`` slide | hinge, ``axis`` and ``pos`` in its body's frame, ``ref`` the value at
    which a slide adds no offset (MuJoCo's qpos0), ``limits`` (lower, upper) or None, ``damping``
    N*s/m or N*m*s/rad; ``actuator`` the index of the action entry driving it (-1: none), ``gear`` N or
    N*m per unit action, ``ctrlrange`` the action's clip range."""

    name: str
    kind: str
    axis: tuple[float, float, float]
    pos: tuple[float, float, float]
    ref: float
    limits: tuple[float, float] | None
    damping: float
    actuator: int
    gear: float
    ctrlrange: tuple[float, float]


@dataclass(frozen=True)
class BodyDesc:
    """A link: its parent (index into ``RobotDesc.bodies``, -1 = the world), pose in the parent's frame
    (``pos``, ``quat`` wxyz), its joints (applied in order, MuJoCo's convention), mass kg, centre of
    mass ``com`` in its frame, ``inertia`` (3, 3) kg*m^2 about the centre of mass, and shapes."""

    name: str
    parent: int
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    joints: tuple[JointDesc, ...]
    mass: float
    com: tuple[float, float, float]
    inertia: tuple[tuple[float, float, float], ...]
    shapes: tuple[ShapeDesc, ...]


@dataclass(frozen=True)
class RobotDesc:
    """What a DART world of one robot needs (picklable: worker processes build their worlds from it)."""

    name: str
    bodies: tuple[BodyDesc, ...]
    timestep: float
    gravity: tuple[float, float, float]
    floor_friction: float
    detector: str

    @property
    def dofs(self) -> list[JointDesc]:
        """Every dof in order: the skeleton's, which is MuJoCo's qpos/qvel order."""
        return [j for b in self.bodies for j in b.joints]


_SHAPE_NAMES = {"capsule": "mjGEOM_CAPSULE", "box": "mjGEOM_BOX", "ellipsoid": "mjGEOM_ELLIPSOID",
                "sphere": "mjGEOM_SPHERE", "cylinder": "mjGEOM_CYLINDER"}


def robot_shapes(model) -> set[str]:
    """The kinds of the robot's collision shapes (every geom but the world's)."""
    import mujoco

    kinds = {int(getattr(mujoco.mjtGeom, v)): k for k, v in _SHAPE_NAMES.items()}
    return {kinds.get(int(model.geom_type[g]), f"type {int(model.geom_type[g])}")
            for g in range(model.ngeom) if model.geom_bodyid[g] != 0}


def detector_for(shapes: set[str], setting: str = "auto", robot: str = "robot") -> str:
    """The collision detector for a robot with collision shapes ``shapes``: ``setting`` (a name in
    DETECTORS) or ``auto`` = the authors' choice (AUTHORS_DETECTOR: the shape the robot is built of).
    ValueError when the detector does not handle one of the shapes, or auto finds no single choice."""
    if setting == "auto":
        found = {AUTHORS_DETECTOR.get(s) for s in shapes}
        if len(found) != 1 or None in found:
            raise ValueError(f"{robot}: collision_detector 'auto' picks the authors' detector for a robot built of one "
                             f"of {sorted(AUTHORS_DETECTOR)} ({AUTHORS_DETECTOR}); this one has {sorted(shapes)}: set "
                             f"collision_detector to one of {list(DETECTORS)}")
        setting = found.pop()
    unsupported = sorted(shapes - set(DETECTOR_SHAPES[setting]))
    if unsupported:
        able = [d for d in DETECTORS if shapes <= set(DETECTOR_SHAPES[d])]
        raise ValueError(f"{robot}: DART's {setting!r} collision detector has no {', '.join(unsupported)} (it would "
                         f"collide a small sphere instead); detectors that handle {sorted(shapes)}: {able}")
    return setting


def describe(model, detector: str = "auto", name: str | None = None) -> RobotDesc:
    """The DART description of a compiled MuJoCo robot ``model`` (``robots.build_model``: the planar root's
    slides and hinge, then the URDF's revolute joints), named ``name``.

    Every body's joints are hinges or slides, the world holds one geom (the floor plane), every
    actuator a joint motor, joint armature 0 (DART's joints have none). ``detector``: see
    ``detector_for``. ValueError naming what does not fit."""
    import mujoco

    name = name or "robot"
    label = f"robot {name!r} on the dart engine"
    if model.nq != model.nv:
        raise ValueError(f"{label}: only hinge and slide joints are supported (nq {model.nq} != nv {model.nv})")
    if np.any(model.dof_armature != 0):
        raise ValueError(f"{label}: DART's joints have no armature; set the physics setting armature to 0 "
                         f"(the model has {model.dof_armature.tolist()})")
    gear = np.zeros(model.nv)
    actuator = np.full(model.nv, -1)
    ctrlrange = np.tile([-np.inf, np.inf], (model.nv, 1))
    for a in range(model.nu):
        if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT or model.actuator_dyntype[a] != 0 \
                or model.actuator_gaintype[a] != 0 or model.actuator_biastype[a] != 0:
            raise ValueError(f"{label}: actuator {a} is not a plain joint motor")
        dof = int(model.jnt_dofadr[model.actuator_trnid[a, 0]])
        if actuator[dof] >= 0:
            raise ValueError(f"{label}: two actuators drive dof {dof}")
        actuator[dof] = a
        gear[dof] = float(model.actuator_gear[a, 0])
        if model.actuator_ctrllimited[a]:
            ctrlrange[dof] = model.actuator_ctrlrange[a]
    floor = [g for g in range(model.ngeom) if model.geom_bodyid[g] == 0]
    if len(floor) != 1 or model.geom_type[floor[0]] != mujoco.mjtGeom.mjGEOM_PLANE:
        raise ValueError(f"{label}: the world must hold one geom, the floor plane")
    floor_friction = float(model.geom_friction[floor[0], 0])
    shapes_found = robot_shapes(model)
    chosen = detector_for(shapes_found, detector, label)
    kinds = {int(getattr(mujoco.mjtGeom, v)): k for k, v in _SHAPE_NAMES.items()}

    bodies = []
    for b in range(1, model.nbody):
        joints = []
        for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
            jtype = int(model.jnt_type[j])
            if jtype not in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
                raise ValueError(f"{label}: joint {j} is neither a hinge nor a slide")
            q0 = float(model.qpos0[model.jnt_qposadr[j]])
            if jtype == mujoco.mjtJoint.mjJNT_HINGE and q0 != 0.0:
                raise ValueError(f"{label}: hinge {j} has a reference angle {q0} (only 0 is supported)")
            dof = int(model.jnt_dofadr[j])
            joints.append(JointDesc(
                name=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}",
                kind="hinge" if jtype == mujoco.mjtJoint.mjJNT_HINGE else "slide",
                axis=tuple(float(x) for x in model.jnt_axis[j]), pos=tuple(float(x) for x in model.jnt_pos[j]),
                ref=q0, limits=tuple(float(x) for x in model.jnt_range[j]) if model.jnt_limited[j] else None,
                damping=float(model.dof_damping[dof]), actuator=int(actuator[dof]), gear=float(gear[dof]),
                ctrlrange=tuple(float(x) for x in ctrlrange[dof])))
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.body_iquat[b])
        rot = rot.reshape(3, 3)
        inertia = rot @ np.diag(model.body_inertia[b]) @ rot.T
        shapes = []
        for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b]):
            kind = kinds.get(int(model.geom_type[g]))
            if kind is None:
                raise ValueError(f"{label}: geom {g} of body {b} has a shape DART is not given here "
                                 f"(allowed {sorted(_SHAPE_NAMES)})")
            size = {"capsule": 2, "cylinder": 2, "sphere": 1}.get(kind, 3)
            shapes.append(ShapeDesc(kind, tuple(float(x) for x in model.geom_size[g, :size]),
                                    tuple(float(x) for x in model.geom_pos[g]),
                                    tuple(float(x) for x in model.geom_quat[g]),
                                    max(float(model.geom_friction[g, 0]), floor_friction)))
        bodies.append(BodyDesc(
            name=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"body{b}",
            parent=int(model.body_parentid[b]) - 1, pos=tuple(float(x) for x in model.body_pos[b]),
            quat=tuple(float(x) for x in model.body_quat[b]), joints=tuple(joints), mass=float(model.body_mass[b]),
            com=tuple(float(x) for x in model.body_ipos[b]), inertia=tuple(tuple(float(x) for x in r) for r in inertia),
            shapes=tuple(shapes)))
    return RobotDesc(name, tuple(bodies), float(model.opt.timestep), tuple(float(x) for x in model.opt.gravity),
                     floor_friction, chosen)


# -- a DART world of one robot ----------------------------------------------------------------------
def _isometry(dart, pos, quat=(1.0, 0.0, 0.0, 0.0)):
    """A dartpy Isometry3 of translation ``pos`` (m) and rotation ``quat`` (w, x, y, z)."""
    w, x, y, z = quat
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    iso = dart.math.Isometry3()
    iso.set_rotation(rot)
    iso.set_translation(np.asarray(pos, dtype=np.float64))
    return iso


def _shape(dart, shape: ShapeDesc):
    """The DART shape of ``shape`` (MuJoCo sizes: DART's capsule and cylinder take the full height, its
    box full extents, its ellipsoid diameters)."""
    size = np.asarray(shape.size, dtype=np.float64)
    if shape.kind == "capsule":
        return dart.dynamics.CapsuleShape(size[0], 2 * size[1])
    if shape.kind == "cylinder":
        return dart.dynamics.CylinderShape(size[0], 2 * size[1])
    if shape.kind == "box":
        return dart.dynamics.BoxShape(2 * size)
    if shape.kind == "ellipsoid":
        return dart.dynamics.EllipsoidShape(2 * size)
    return dart.dynamics.SphereShape(size[0])


@contextmanager
def _native_stderr_silenced():
    """Drop what native code writes to stderr (file descriptor 2) inside the block."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DartWorld:
    """One robot with the authors' ground in a DART world of its own. ``control_step`` steps it from any
    given state, so one world serves any number of envs in turn (a step depends on its inputs alone)."""

    memoryless = True  # the collision detector forgets earlier substeps (module docstring)

    def __init__(self, desc: RobotDesc, frame_skip: int):
        dart = require_dartpy()
        self.desc, self.frame_skip = desc, int(frame_skip)
        self.world = world = dart.simulation.World()
        world.setTimeStep(desc.timestep)
        world.setGravity(np.asarray(desc.gravity, dtype=np.float64))
        options = world.getDeactivationOptions()
        options.mEnabled = False  # no sleeping bodies
        world.setDeactivationOptions(options)
        self._new_detector = {"ode": dart.collision.OdeCollisionDetector,
                              "dart": dart.collision.DARTCollisionDetector,
                              "fcl": dart.collision.FCLCollisionDetector,
                              "bullet": dart.collision.BulletCollisionDetector}[desc.detector]
        world.setCollisionDetector(self._new_detector())  # before the skeletons: FCL (the default) lacks capsules
        self.ground = self._ground(dart)
        self.skeleton = self._skeleton(dart)
        world.addSkeleton(self.ground)
        world.addSkeleton(self.skeleton)
        dofs = desc.dofs
        self.ndof = len(dofs)
        if self.skeleton.getNumDofs() != self.ndof:
            raise RuntimeError(f"DART skeleton has {self.skeleton.getNumDofs()} dofs, its description {self.ndof}")
        driven = sorted((j.actuator, i) for i, j in enumerate(dofs) if j.actuator >= 0)
        self.nu = len(driven)
        if [a for a, _ in driven] != list(range(self.nu)):
            raise ValueError(f"robot {desc.name!r}: actuators {[a for a, _ in driven]} must be 0..nu-1, one dof each")
        self._actuated = np.array([i for _, i in driven], dtype=np.int64)  # dof of each action entry
        self._gear = np.array([dofs[i].gear for i in self._actuated])
        self._low = np.array([dofs[i].ctrlrange[0] for i in self._actuated])
        self._high = np.array([dofs[i].ctrlrange[1] for i in self._actuated])
        self._tau = np.zeros(self.ndof)
        self._history_query = None  # ODE: (collision group, option filtering out every pair, result, filter)
        if desc.detector == "ode":
            ignore_all = dart.collision.BodyNodeCollisionFilter()
            nodes = [self.ground.getBodyNode(0)] + [self.skeleton.getBodyNode(i)
                                                    for i in range(self.skeleton.getNumBodyNodes())]
            for i, first in enumerate(nodes):
                for second in nodes[i + 1:]:
                    ignore_all.addBodyNodePairToBlackList(first, second)
            self._history_query = (world.getConstraintSolver().getCollisionGroup(),
                                   dart.collision.CollisionOption(True, 1000, ignore_all),
                                   dart.collision.CollisionResult(), ignore_all)

    def _ground(self, dart):
        ground = dart.dynamics.Skeleton("ground")
        _, body = ground.createWeldJointAndBodyNodePair()
        body.setName("ground")
        body.getParentJoint().setTransformFromParentBodyNode(_isometry(dart, (0.0, 0.0, -GROUND_SIZE[2] / 2)))
        node = body.createShapeNode(dart.dynamics.BoxShape(np.array(GROUND_SIZE)), "ground")
        node.createCollisionAspect()
        node.createDynamicsAspect().setFrictionCoeff(max(
            [self.desc.floor_friction] + [s.friction for b in self.desc.bodies for s in b.shapes]))
        ground.setMobile(False)
        return ground

    def _skeleton(self, dart):
        """The robot: per body one DART joint per MuJoCo joint, in order, with massless links between them
        (the authors' ``h_pelvis_aux`` bodies); the body's inertia and shapes sit on the last link."""
        skel = dart.dynamics.Skeleton(self.desc.name)
        carrier = []  # per description body: the DART body node that carries it
        for body in self.desc.bodies:
            parent = None if body.parent < 0 else carrier[body.parent]
            offset = _isometry(dart, body.pos, body.quat)  # the body's frame in its parent's
            joints = body.joints or (None,)
            for i, joint in enumerate(joints):
                last = i == len(joints) - 1
                if joint is None:
                    _, node = skel.createWeldJointAndBodyNodePair(*([parent] if parent is not None else []))
                    node.getParentJoint().setTransformFromParentBodyNode(offset)
                else:
                    make = skel.createRevoluteJointAndBodyNodePair if joint.kind == "hinge" else \
                        skel.createPrismaticJointAndBodyNodePair
                    dart_joint, node = make(*([parent] if parent is not None else []))
                    dart_joint.setName(joint.name)
                    axis = np.asarray(joint.axis, dtype=np.float64)
                    dart_joint.setAxis(axis)
                    # MuJoCo's joint: translate by axis * (q - ref) (slide) or rotate by q about the axis
                    # through pos (hinge), in the frame the previous joints left
                    anchor = np.asarray(joint.pos, dtype=np.float64)
                    to_joint = _isometry(dart, anchor - (joint.ref * axis if joint.kind == "slide" else 0.0))
                    dart_joint.setTransformFromParentBodyNode(offset.multiply(to_joint) if i == 0 else to_joint)
                    dart_joint.setTransformFromChildBodyNode(_isometry(dart, anchor))
                    dart_joint.setDampingCoefficient(0, joint.damping)
                    if joint.limits is not None:
                        dart_joint.setPositionLowerLimit(0, joint.limits[0])
                        dart_joint.setPositionUpperLimit(0, joint.limits[1])
                        dart_joint.setLimitEnforcement(True)
                node.setName(body.name if last else f"{body.name}_{joint.name}")
                if last:
                    node.setInertia(dart.dynamics.Inertia(body.mass, np.asarray(body.com, dtype=np.float64),
                                                          np.asarray(body.inertia, dtype=np.float64)))
                    for k, shape in enumerate(body.shapes):
                        shape_node = node.createShapeNode(_shape(dart, shape), f"{body.name}_shape{k}")
                        shape_node.setRelativeTransform(_isometry(dart, shape.pos, shape.quat))
                        shape_node.createCollisionAspect()
                        shape_node.createDynamicsAspect().setFrictionCoeff(shape.friction)
                else:  # the authors' aux links: mass 0 (DART warns of a zero mass; they only translate)
                    with _native_stderr_silenced():
                        node.setInertia(dart.dynamics.Inertia(0.0, np.zeros(3), np.eye(3)))
                parent = node
            carrier.append(parent)
        return skel

    def torques(self, action: np.ndarray) -> np.ndarray:
        """(ndof,) generalised forces of ``action`` (nu,): gear * clip(action, ctrlrange) on the actuated dofs."""
        self._tau[self._actuated] = self._gear * np.clip(action, self._low, self._high)
        return self._tau

    def control_step(self, time: float, qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray):
        """One control step from ``time`` (s), ``qpos`` (ndof,), ``qvel`` (ndof,) with ``action`` (nu,) held
        for frame_skip substeps; returns (time, qpos, qvel) after it (new arrays)."""
        skel, world = self.skeleton, self.world
        skel.setPositions(qpos)
        skel.setVelocities(qvel)
        world.setTime(time)
        tau = self.torques(action)
        for _ in range(self.frame_skip):
            if self.memoryless:
                self._forget_contacts()
            skel.setForces(tau)
            world.step()
        return world.getTime(), skel.getPositions(), skel.getVelocities()

    def _forget_contacts(self) -> None:
        """Remove the collision detector's memory of earlier substeps (module docstring)."""
        if self._history_query is not None:  # ODE: empty its contact history (cheaper than a new detector)
            self._history_query[0].collide(self._history_query[1], self._history_query[2])
        else:
            self.world.setCollisionDetector(self._new_detector())


def step_rows(worlds: list[DartWorld], row_world: np.ndarray, state: np.ndarray, actions: np.ndarray,
              out: np.ndarray) -> None:
    """One control step of every row: state (N, 1 + 2 * ndof) rows [time, qpos, qvel] and actions (N, nu)
    in, ``out`` (N, 1 + 2 * ndof) the states after; row i is stepped by ``worlds[row_world[i]]``."""
    for i, w in enumerate(row_world):
        world = worlds[w]
        n = world.ndof
        row = state[i]
        time, qpos, qvel = world.control_step(row[0], row[1:1 + n], row[1 + n:1 + 2 * n], actions[i])
        out[i, 0] = time
        out[i, 1:1 + n] = qpos
        out[i, 1 + n:1 + 2 * n] = qvel


# -- the batched stepper ----------------------------------------------------------------------------
_OK, _FAILED = b"\x00", b"\x01"


def _read_exact(stream, view: memoryview) -> bool:
    """Fill ``view`` from ``stream``; False at end of file (the other side is gone)."""
    done = 0
    while done < len(view):
        got = stream.readinto(view[done:])
        if not got:
            return False
        done += got
    return True


def _worker_main() -> None:
    """A worker process (``python -m mt_specialize.envs.dart_engine``): reads its setup (a pickled
    (robot descriptions, each row's robot index, frame_skip, nstate, nu), length-prefixed) from stdin,
    then steps its rows whenever [state rows, action rows] (float64) arrive, answering status byte 0 and
    the new state rows, or status 1, a length and the error. End of input ends it."""
    import pickle
    import struct
    import sys

    # the protocol runs on private copies of stdin and stdout; whatever else writes to stdout goes to stderr
    inp = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    outp = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def fail(text: str) -> None:
        message = text.encode(errors="replace")
        outp.write(_FAILED + struct.pack("<I", len(message)) + message)

    header = bytearray(4)
    if not _read_exact(inp, memoryview(header)):
        return
    setup = bytearray(struct.unpack("<I", header)[0])
    if not _read_exact(inp, memoryview(setup)):
        return
    try:
        descs, row_world, frame_skip, nstate, nu = pickle.loads(setup)
        worlds = [DartWorld(d, frame_skip) for d in descs]
    except BaseException:
        fail(traceback.format_exc())
        return
    n = len(row_world)
    inbox = np.empty(n * (nstate + nu))
    out = np.empty((n, nstate))
    outp.write(_OK)
    while _read_exact(inp, memoryview(inbox).cast("B")):
        try:
            step_rows(worlds, row_world, inbox[:n * nstate].reshape(n, nstate), inbox[n * nstate:].reshape(n, nu), out)
        except BaseException:
            fail(traceback.format_exc())
            return
        outp.write(_OK)
        _write_all(outp, memoryview(out).cast("B"))


def _write_all(stream, view: memoryview) -> None:
    done = 0
    while done < len(view):
        done += stream.write(view[done:])


def _stop_workers(processes) -> None:
    for process in processes:
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
    for process in processes:
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class DartBatch:
    """N envs stepped by DART: ``step(state, actions)`` advances every row one control step.

    descs: the distinct robots; row_robot (N,) the robot of each row. The rows are split into ``nworkers``
    contiguous chunks (as MuJoCo's rollout splits them among threads): the calling process steps the
    first, a worker process each of the others (``python -m mt_specialize.envs.dart_engine``, in a session
    of its own, so a Ctrl-C to the terminal reaches only the trainer, which decides when to stop). The
    workers end with the batch (``close``, garbage collection, or the parent's exit closing their input).
    Results do not depend on nworkers.
    """

    def __init__(self, descs: list[RobotDesc], row_robot, frame_skip: int, nworkers: int = 1):
        require_dartpy()
        self.descs = list(descs)
        self.row_robot = np.asarray(row_robot, dtype=np.int64)
        n = len(self.row_robot)
        ndofs = {len(d.dofs) for d in self.descs}
        if len(ndofs) != 1:
            raise ValueError(f"robots stepped together need one number of dofs, got {sorted(ndofs)}")
        self.ndof = ndofs.pop()
        self.nstate = 1 + 2 * self.ndof
        nus = {sum(j.actuator >= 0 for j in d.dofs) for d in self.descs}
        if len(nus) != 1:
            raise ValueError(f"robots stepped together need one number of actuators, got {sorted(nus)}")
        self.nu = nus.pop()
        self.frame_skip = int(frame_skip)
        self.nworkers = max(1, min(int(nworkers), n))
        size = -(-n // self.nworkers)
        self.chunks = [slice(k, min(k + size, n)) for k in range(0, n, size)]
        self.out = np.empty((n, self.nstate))
        self._processes: list[subprocess.Popen] = []
        self._finalizer = weakref.finalize(self, _stop_workers, self._processes)
        try:
            for rows in self.chunks[1:]:
                self._start_worker(rows)
            used, index = self._robots_of(self.chunks[0])
            self._own_worlds, self._own_rows = [DartWorld(self.descs[r], self.frame_skip) for r in used], index
            for process in self._processes:
                self._check_reply(process, 0)
        except BaseException:
            self.close()
            raise

    def _robots_of(self, rows: slice) -> tuple[list[int], np.ndarray]:
        """(the robots ``rows`` use, each row's index into that list)."""
        used = sorted(set(self.row_robot[rows].tolist()))
        position = {r: i for i, r in enumerate(used)}
        return used, np.array([position[r] for r in self.row_robot[rows]], dtype=np.int64)

    def _start_worker(self, rows: slice) -> None:
        import pickle
        import struct
        import sys

        used, index = self._robots_of(rows)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen([sys.executable, "-m", "mt_specialize.envs.dart_engine"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, bufsize=0, env=env, start_new_session=True)
        self._processes.append(process)
        setup = pickle.dumps(([self.descs[r] for r in used], index, self.frame_skip, self.nstate, self.nu))
        process.stdin.write(struct.pack("<I", len(setup)) + setup)

    @staticmethod
    def _check_reply(process, payload: int, into: memoryview | None = None) -> None:
        """Read a worker's status byte and ``payload`` bytes into ``into``; RuntimeError when it failed."""
        import struct

        status = process.stdout.read(1)
        if status == _OK:
            if into is not None and not _read_exact(process.stdout, into):
                raise RuntimeError("a DART worker process exited unexpectedly")
            return
        if status == _FAILED:
            length = bytearray(4)
            _read_exact(process.stdout, memoryview(length))
            text = bytearray(struct.unpack("<I", length)[0])
            _read_exact(process.stdout, memoryview(text))
            raise RuntimeError(f"a DART worker process failed:\n{text.decode(errors='replace')}")
        raise RuntimeError(f"a DART worker process exited unexpectedly (exit code {process.poll()})")

    def step(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (N, nstate) rows [time, qpos, qvel], actions (N, nu) -> (N, nstate) states one control step
        later (an array this batch owns and overwrites at the next step)."""
        state = np.asarray(state, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        for process, rows in zip(self._processes, self.chunks[1:]):
            message = np.concatenate([state[rows].ravel(), actions[rows].ravel()])
            try:
                _write_all(process.stdin, memoryview(message).cast("B"))
            except (BrokenPipeError, OSError):
                raise RuntimeError(f"a DART worker process exited unexpectedly (exit code {process.poll()})") \
                    from None
        own = self.chunks[0]
        step_rows(self._own_worlds, self._own_rows, state[own], actions[own], self.out[own])
        for process, rows in zip(self._processes, self.chunks[1:]):
            self._check_reply(process, self.out[rows].nbytes, memoryview(self.out[rows]).cast("B"))
        return self.out

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        self._finalizer()


# -- the engine interface (``envs.engine``) ---------------------------------------------------------------
def check(task) -> None:
    """ValueError (naming the task) unless ``task`` (a ``tasks.TaskSpec``) can run on DART: dartpy is
    installed (``pip install .[dart]``), its armature is 0, joint limits hard and the integrator Euler
    (what DART does), and its robot's shapes suit the collision detector (``description``)."""
    settings = task.resolved_physics
    wrong = {key: (settings[key], want) for key, want in (("armature", 0.0), ("joint_limits", "hard"),
                                                          ("integrator", "euler")) if settings[key] != want}
    try:
        if wrong:
            details = ", ".join(f"{key} {have!r} (DART: {want!r})" for key, (have, want) in wrong.items())
            raise ValueError(f"physics: engine 'dart' has no counterpart for {details}; set those settings "
                             f"(profile paper_dart does) or use engine 'mujoco'")
        require_dartpy()
        description(task)
    except ValueError as exc:
        raise ValueError(f"task {task.name!r}: {exc}") from None


def description(task) -> RobotDesc:
    """The robot of ``task`` as DART builds it (``describe`` of the task's MuJoCo model, its collision
    detector resolved), kept with the task."""
    cache = task._cache
    if "dart" not in cache:
        cache["dart"] = describe(task.build_model(), task.resolved_physics["collision_detector"], task.robot)
    return cache["dart"]


def batch(tasks, models, envs_per_task: int, frame_skip: int, nthread: int) -> DartBatch:
    """The rows of ``tasks`` (``envs_per_task`` each, task-major) stepped by DART in ``nthread`` processes."""
    robots: dict[RobotDesc, int] = {}
    rows = [robots.setdefault(description(t), len(robots)) for t in tasks for _ in range(envs_per_task)]
    return DartBatch(list(robots), rows, frame_skip, nthread)


class DartRobot:
    """One robot stepped by a ``DartWorld``; MuJoCo's data holds the state (and gives poses and motor
    torques for drawing and for the ROS nodes)."""

    def __init__(self, task, model, frame_skip: int):
        import mujoco

        self._mujoco = mujoco
        self.model = model
        self.world = DartWorld(description(task), frame_skip)

    def step(self, data, action: np.ndarray) -> None:
        data.time, data.qpos[:], data.qvel[:] = self.world.control_step(data.time, data.qpos, data.qvel, action)
        data.ctrl[:] = action
        self._mujoco.mj_forward(self.model, data)


def robot(task, model, frame_skip: int) -> DartRobot:
    """One robot of ``task`` (its compiled ``model``) on DART."""
    return DartRobot(task, model, frame_skip)


if __name__ == "__main__":
    _worker_main()
