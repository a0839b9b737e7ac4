"""Single source of truth for the built-in robots' URDF files and meshes (docs/method.md#robots-and-tasks).

``python -m mt_specialize.envs.urdf_gen [outdir]`` rewrites ``urdf/`` (default: the package's urdf dir).
The committed files must equal freshly generated ones (checked by test/test_robots.py).

Layout: Gymnasium's Hopper / Walker2d (``gymnasium/envs/mujoco/assets/hopper.xml``, ``walker2d.xml``)
scaled by the variant's factor. Link frames sit at the joints (URDF convention): the torso frame at
the torso centre, the thigh frame at the hip, the leg frame at the knee, the foot frame at the ankle.
Sizes are MuJoCo's (half-sizes, radii, capsule half-length of the cylinder); units m, kg, rad, N*m.

URDF has no capsule or ellipsoid primitive, and rviz/urdfdom reject unknown geometry types, so those
shapes are binary STL meshes (``urdf/meshes/``) and each such ``<collision>`` carries the extension
child ``<mt_primitive type="capsule|ellipsoid" size="..."/>`` (MuJoCo sizes) that
``mt_specialize.envs.robots`` turns back into the exact MuJoCo primitive. See ``urdf/README.md``.
"""
from __future__ import annotations

import math
import struct
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

MESH_PACKAGE_PREFIX = "package://mt_specialize/urdf/meshes/"
FOOT_CLEARANCE = 0.04  # m, height of the foot's lowest point at the start pose (docs/method.md#robots-and-tasks: start heights)
JOINT_DAMPING = 1.0  # N*m*s/rad, docs/method.md#robots-and-tasks (hopper); used for the biped as well
JOINT_VELOCITY_LIMIT = 100.0  # rad/s, required by urdfdom; MuJoCo ignores it
THIGH_RANGE = (-2.618, 0.0)  # rad (-150 deg), thigh and leg joints
FOOT_RANGE = (-0.785, 0.785)  # rad (+-45 deg)
HINGE_AXIS = (0.0, -1.0, 0.0)  # as Gymnasium's hopper: positive angle bends the knee backwards

# Gymnasium hopper, scale 1 (capsule hopper): radii and cylinder half-lengths of the four capsules (m)
TORSO_RADIUS, TORSO_HALF = 0.05, 0.2
THIGH_RADIUS, THIGH_HALF = 0.05, 0.225
LEG_RADIUS, LEG_HALF = 0.04, 0.25
FOOT_RADIUS = 0.06
HOPPER_FOOT_HALF, HOPPER_FOOT_OFFSET = 0.195, 0.065  # foot centre is 0.065 m ahead of the ankle
BIPED_FOOT_HALF, BIPED_FOOT_OFFSET = 0.1, 0.1  # Walker2d foot

# the tables of docs/method.md#robots-and-tasks
HOPPER_VARIANTS = {  # name: (shape, scale, masses torso/thigh/leg/foot kg, torso start height m)
    "hopper_capsule": ("capsule", 1.0, (3.534, 3.927, 2.714, 5.089), 1.25),
    "hopper_box": ("box", 1.1, (3.888, 4.320, 2.986, 5.598), 1.371),
    "hopper_ellipsoid": ("ellipsoid", 1.2, (4.241, 4.712, 3.257, 6.107), 1.492),
}
HOPPER_GEAR = 200.0  # N*m per unit action
BIPED_MASSES = {"torso": 3.534, "thigh": 3.927, "leg": 2.714, "foot": 2.941}  # kg
BIPED_GEARS = (100.0, 100.0, 20.0)  # N*m per unit action: thigh, leg, foot (each side)
BIPED_START_HEIGHT = 1.25  # m

COLORS = {"tan": (0.8, 0.6, 0.4, 1.0), "purple": (0.7, 0.3, 0.6, 1.0)}


@dataclass(frozen=True)
class Link:
    """One rigid link: a single primitive shape with a mass.

    ``size`` are MuJoCo sizes (capsule: radius, half-length; box: half-sizes; ellipsoid: radii) in the
    link frame of the primitive, ``pos`` is its centre in the link frame (m); ``along_x`` rotates a
    capsule's axis from z to x (feet). ``joint*`` describe the joint to the parent (None for the root).
    """

    name: str
    shape: str
    size: tuple[float, ...]
    pos: tuple[float, float, float]
    mass: float
    parent: str | None = None
    joint_name: str | None = None
    joint_origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    joint_range: tuple[float, float] = (0.0, 0.0)
    gear: float = 0.0
    along_x: bool = False
    color: str = "tan"


@dataclass(frozen=True)
class RobotDesc:
    """A built-in robot: links in tree (depth-first) order and the torso start height (m)."""

    name: str
    links: tuple[Link, ...]
    start_height: float


def _elongated(shape: str, radius: float, half: float, along_x: bool) -> tuple[float, ...]:
    """MuJoCo size of a shape of cross-section ``radius`` and half-length ``half``."""
    if shape == "capsule":
        return (radius, half)
    if along_x:
        return (half, radius, radius)
    return (radius, radius, half)


def _leg(shape: str, s: float, masses: tuple[float, float, float], foot_half: float,
         foot_offset: float, gears: tuple[float, float, float], suffix: str = "",
         color: str = "tan") -> list[Link]:
    """Thigh, leg and foot links of one Gymnasium leg scaled by ``s``, attached to the torso."""
    m_thigh, m_leg, m_foot = masses
    g_thigh, g_leg, g_foot = gears
    thigh, leg, foot = f"thigh{suffix}", f"leg{suffix}", f"foot{suffix}"
    return [
        Link(thigh, shape, _elongated(shape, THIGH_RADIUS * s, THIGH_HALF * s, False),
             (0.0, 0.0, -THIGH_HALF * s), m_thigh, "torso", f"{thigh}_joint",
             (0.0, 0.0, -TORSO_HALF * s), THIGH_RANGE, g_thigh, color=color),
        Link(leg, shape, _elongated(shape, LEG_RADIUS * s, LEG_HALF * s, False),
             (0.0, 0.0, -LEG_HALF * s), m_leg, thigh, f"{leg}_joint",
             (0.0, 0.0, -2 * THIGH_HALF * s), THIGH_RANGE, g_leg, color=color),
        Link(foot, shape, _elongated(shape, FOOT_RADIUS * s, foot_half * s, True),
             (foot_offset * s, 0.0, 0.0), m_foot, leg, f"{foot}_joint",
             (0.0, 0.0, -2 * LEG_HALF * s), FOOT_RANGE, g_foot, along_x=True, color=color),
    ]


def _start_height(s: float) -> float:
    """Torso centre height (m) that puts the foot's lowest point at FOOT_CLEARANCE, scale ``s``."""
    hip_to_ankle = 2 * (THIGH_HALF + LEG_HALF)
    return round(FOOT_CLEARANCE + s * (FOOT_RADIUS + TORSO_HALF + hip_to_ankle), 9)


def hopper(name: str) -> RobotDesc:
    """The hopper variant ``name`` (a key of HOPPER_VARIANTS)."""
    shape, s, (m_torso, m_thigh, m_leg, m_foot), _ = HOPPER_VARIANTS[name]
    torso = Link("torso", shape, _elongated(shape, TORSO_RADIUS * s, TORSO_HALF * s, False),
                 (0.0, 0.0, 0.0), m_torso)
    legs = _leg(shape, s, (m_thigh, m_leg, m_foot), HOPPER_FOOT_HALF, HOPPER_FOOT_OFFSET,
                (HOPPER_GEAR,) * 3)
    return RobotDesc(name, (torso, *legs), _start_height(s))


def biped() -> RobotDesc:
    """Gymnasium Walker2d layout with the masses of docs/method.md#robots-and-tasks: torso, right leg, left leg."""
    m = BIPED_MASSES
    torso = Link("torso", "capsule", (TORSO_RADIUS, TORSO_HALF), (0.0, 0.0, 0.0), m["torso"])
    masses = (m["thigh"], m["leg"], m["foot"])
    right = _leg("capsule", 1.0, masses, BIPED_FOOT_HALF, BIPED_FOOT_OFFSET, BIPED_GEARS)
    left = _leg("capsule", 1.0, masses, BIPED_FOOT_HALF, BIPED_FOOT_OFFSET, BIPED_GEARS,
                suffix="_left", color="purple")
    return RobotDesc("biped", (torso, *right, *left), _start_height(1.0))


def all_robots() -> dict[str, RobotDesc]:
    """Every built-in robot description by name."""
    robots = {name: hopper(name) for name in HOPPER_VARIANTS}
    robots["biped"] = biped()
    return robots


# ---------------------------------------------------------------------------------------------
# geometry helpers


def _fmt(x: float) -> str:
    """Stable short decimal for URDF attributes (tiny round-off -> 0)."""
    x = float(x)
    if abs(x) < 1e-12:
        x = 0.0
    return f"{x:.10g}"


def _vec(v) -> str:
    return " ".join(_fmt(x) for x in v)


_MJ_TYPE = {"capsule": mujoco.mjtGeom.mjGEOM_CAPSULE, "box": mujoco.mjtGeom.mjGEOM_BOX,
            "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID}
_FOOT_QUAT = (math.sqrt(0.5), 0.0, math.sqrt(0.5), 0.0)  # +90 deg about y: capsule z-axis -> x
_FOOT_RPY = (0.0, math.pi / 2, 0.0)


def solid_inertia(link: Link) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (3,) and inertia matrix (3, 3) about it, in the link frame (kg*m^2).

    Computed by MuJoCo for the solid primitive with the link's mass (no hand-written formulas).
    """
    spec = mujoco.MjSpec()
    body = spec.worldbody.add_body(name="b")
    geom = body.add_geom(type=_MJ_TYPE[link.shape], size=list(link.size) + [0.0] * (3 - len(link.size)),
                         pos=list(link.pos), mass=link.mass)
    if link.along_x and link.shape == "capsule":
        geom.quat = list(_FOOT_QUAT)
    body.add_freejoint()  # a free body, so the compiler keeps its inertia
    model = spec.compile()
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[1])
    rot = rot.reshape(3, 3)
    inertia = rot @ np.diag(model.body_inertia[1]) @ rot.T
    return model.body_ipos[1].copy(), inertia


# ---------------------------------------------------------------------------------------------
# meshes (binary STL)


def _rings(lat: np.ndarray, n_lon: int = 24) -> np.ndarray:
    """Points (len(lat), n_lon, 3) on the unit sphere at polar angles ``lat`` (rad)."""
    lon = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    s, c = np.sin(lat)[:, None], np.cos(lat)[:, None]
    return np.stack([s * np.cos(lon), s * np.sin(lon), np.broadcast_to(c, (len(lat), n_lon))], axis=-1)


def _rings_to_triangles(rings: np.ndarray) -> np.ndarray:
    """Triangles (M, 3, 3) joining rings (R, n_lon, 3) from the +z pole to the -z pole, outward."""
    tris = []
    n_lon = rings.shape[1]
    for i in range(rings.shape[0] - 1):
        for j in range(n_lon):
            a, b = rings[i, j], rings[i, (j + 1) % n_lon]
            c, d = rings[i + 1, j], rings[i + 1, (j + 1) % n_lon]
            if i > 0:  # ring 0 is the +z pole: its quads are triangles
                tris.append((a, c, b))
            if i < rings.shape[0] - 2:  # the last ring is the -z pole
                tris.append((b, c, d))
    return np.asarray(tris)


N_LAT = 12  # latitude bands of a sphere (even)


def capsule_triangles(radius: float, half: float) -> np.ndarray:
    """Triangles (M, 3, 3) of a capsule along z: radius, cylinder half-length ``half`` (m)."""
    upper = _rings(np.linspace(0.0, np.pi / 2, N_LAT // 2 + 1)) * radius + np.array([0.0, 0.0, half])
    lower = _rings(np.linspace(np.pi / 2, np.pi, N_LAT // 2 + 1)) * radius - np.array([0.0, 0.0, half])
    return _rings_to_triangles(np.concatenate([upper, lower]))


def ellipsoid_triangles(radii: tuple[float, float, float]) -> np.ndarray:
    """Triangles (M, 3, 3) of an ellipsoid with semi-axes ``radii`` along x, y, z (m)."""
    return _rings_to_triangles(_rings(np.linspace(0.0, np.pi, N_LAT + 1)) * np.asarray(radii))


def stl_bytes(triangles: np.ndarray, header: str) -> bytes:
    """Binary STL of triangles (M, 3, 3) with outward normals computed from the winding."""
    tri = np.asarray(triangles, dtype=np.float64)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    record = np.zeros(len(tri), dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")]))
    record["n"], record["v"] = normals, tri
    return header.encode()[:80].ljust(80, b" ") + struct.pack("<I", len(tri)) + record.tobytes()


def mesh_name(link: Link) -> str:
    """File name of a capsule / ellipsoid link's mesh, named by shape and MuJoCo size."""
    return f"{link.shape}_" + "_".join(_fmt(x) for x in link.size) + ".stl"


def mesh_triangles(link: Link) -> np.ndarray:
    """Triangles (M, 3, 3) of a capsule or ellipsoid link in its primitive frame."""
    if link.shape == "capsule":
        return capsule_triangles(*link.size)
    return ellipsoid_triangles(link.size)


# ---------------------------------------------------------------------------------------------
# URDF


def _geometry(parent: ET.Element, link: Link) -> None:
    geometry = ET.SubElement(parent, "geometry")
    if link.shape == "box":
        ET.SubElement(geometry, "box", size=_vec(2 * np.asarray(link.size)))
    else:
        ET.SubElement(geometry, "mesh", filename=MESH_PACKAGE_PREFIX + mesh_name(link))


def _origin(parent: ET.Element, link: Link) -> None:
    rpy = _FOOT_RPY if (link.along_x and link.shape == "capsule") else (0.0, 0.0, 0.0)
    ET.SubElement(parent, "origin", xyz=_vec(link.pos), rpy=_vec(rpy))


def urdf_string(robot: RobotDesc) -> str:
    """URDF text of a built-in robot."""
    root = ET.Element("robot", name=robot.name)
    root.append(ET.Comment(
        f" Generated by `python -m mt_specialize.envs.urdf_gen` (docs/method.md#robots-and-tasks); do not edit. "
        f"Torso start height {_fmt(robot.start_height)} m. See urdf/README.md for <mt_primitive>. "))
    for color, rgba in COLORS.items():
        ET.SubElement(ET.SubElement(root, "material", name=color), "color", rgba=_vec(rgba))
    for link in robot.links:
        el = ET.SubElement(root, "link", name=link.name)
        com, inertia = solid_inertia(link)
        inertial = ET.SubElement(el, "inertial")
        ET.SubElement(inertial, "origin", xyz=_vec(com), rpy="0 0 0")
        ET.SubElement(inertial, "mass", value=_fmt(link.mass))
        ET.SubElement(inertial, "inertia", ixx=_fmt(inertia[0, 0]), ixy=_fmt(inertia[0, 1]),
                      ixz=_fmt(inertia[0, 2]), iyy=_fmt(inertia[1, 1]), iyz=_fmt(inertia[1, 2]),
                      izz=_fmt(inertia[2, 2]))
        visual = ET.SubElement(el, "visual", name=f"{link.name}_visual")
        _origin(visual, link)
        _geometry(visual, link)
        ET.SubElement(visual, "material", name=link.color)
        collision = ET.SubElement(el, "collision", name=f"{link.name}_geom")
        _origin(collision, link)
        _geometry(collision, link)
        if link.shape != "box":
            ET.SubElement(collision, "mt_primitive", type=link.shape, size=_vec(link.size))
    for link in robot.links:
        if link.parent is None:
            continue
        joint = ET.SubElement(root, "joint", name=link.joint_name, type="revolute")
        ET.SubElement(joint, "parent", link=link.parent)
        ET.SubElement(joint, "child", link=link.name)
        ET.SubElement(joint, "origin", xyz=_vec(link.joint_origin), rpy="0 0 0")
        ET.SubElement(joint, "axis", xyz=_vec(HINGE_AXIS))
        ET.SubElement(joint, "limit", lower=_fmt(link.joint_range[0]), upper=_fmt(link.joint_range[1]),
                      effort=_fmt(link.gear), velocity=_fmt(JOINT_VELOCITY_LIMIT))
        ET.SubElement(joint, "dynamics", damping=_fmt(JOINT_DAMPING), friction="0")
    ET.indent(root, space="  ")
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def generated_files() -> dict[str, bytes]:
    """Relative path (under urdf/) -> content of every generated file."""
    files: dict[str, bytes] = {}
    for name, robot in all_robots().items():
        files[f"{name}.urdf"] = urdf_string(robot).encode()
        for link in robot.links:
            if link.shape != "box":
                files[f"meshes/{mesh_name(link)}"] = stl_bytes(
                    mesh_triangles(link), f"mt_specialize {link.shape} {_vec(link.size)} (m)")
    return files


def write_all(outdir: Path) -> list[Path]:
    """Write every generated URDF and mesh under ``outdir``; returns the written paths."""
    written = []
    for rel, content in generated_files().items():
        path = Path(outdir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        outdir = Path(argv[0])
    else:
        from mt_specialize.paths import URDF_DIR  # the directory robots.py reads

        outdir = URDF_DIR
    for path in write_all(outdir):
        print(path)


if __name__ == "__main__":
    main()
