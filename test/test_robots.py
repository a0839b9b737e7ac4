"""URDF files and the URDF -> MuJoCo loader (docs/method.md#robots-and-tasks)."""
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mt_specialize.envs import robots, urdf_gen
from mt_specialize.paths import URDF_DIR
from mt_specialize.envs.robots import ROBOTS, RobotSpec, build_model

DATA = Path(__file__).resolve().parent.parent / "config" / "experiments"
HOPPERS = ("hopper_capsule", "hopper_box", "hopper_ellipsoid")
START_HEIGHTS = {"hopper_capsule": 1.25, "hopper_box": 1.371, "hopper_ellipsoid": 1.492, "biped": 1.25}
MASSES = {  # docs/method.md#robots-and-tasks, kg
    "hopper_capsule": {"torso": 3.534, "thigh": 3.927, "leg": 2.714, "foot": 5.089},
    "hopper_box": {"torso": 3.888, "thigh": 4.320, "leg": 2.986, "foot": 5.598},
    "hopper_ellipsoid": {"torso": 4.241, "thigh": 4.712, "leg": 3.257, "foot": 6.107},
    "biped": {"torso": 3.534, "thigh": 3.927, "leg": 2.714, "foot": 2.941,
              "thigh_left": 3.927, "leg_left": 2.714, "foot_left": 2.941},
}
GEARS = {**{h: (200.0,) * 3 for h in HOPPERS}, "biped": (100.0, 100.0, 20.0, 100.0, 100.0, 20.0)}
# docs/method.md#robots-and-tasks, DART sizes (full extents / diameters; capsule: diameter, cylinder length) per link
DART_SIZES = {
    "hopper_capsule": {"torso": (0.1, 0.4), "thigh": (0.1, 0.45), "leg": (0.08, 0.5), "foot": (0.12, 0.39)},
    "hopper_box": {"torso": (0.11, 0.44, 0.11), "thigh": (0.11, 0.495, 0.11), "leg": (0.088, 0.55, 0.088),
                   "foot": (0.429, 0.132, 0.132)},
    "hopper_ellipsoid": {"torso": (0.12, 0.48, 0.12), "thigh": (0.12, 0.54, 0.12),
                         "leg": (0.096, 0.6, 0.096), "foot": (0.468, 0.144, 0.144)},
}


def _urdf(name):
    return ET.parse(URDF_DIR / f"{name}.urdf").getroot()


def _lowest_z(model, data):
    mujoco.mj_kinematics(model, data)
    return robots._lowest_point(model, data)


def test_committed_files_equal_generated():
    for rel, content in urdf_gen.generated_files().items():
        path = URDF_DIR / rel
        assert path.is_file(), f"{path} missing: run python -m mt_specialize.envs.urdf_gen"
        if rel.endswith(".stl"):  # compare vertices numerically (float round-off across machines)
            a = np.frombuffer(path.read_bytes()[84:], dtype=np.dtype([("r", "<f4", 12), ("a", "<u2")]))
            b = np.frombuffer(content[84:], dtype=a.dtype)
            assert a.shape == b.shape and np.allclose(a["r"], b["r"], atol=1e-6), rel
        else:
            assert path.read_text() == content.decode(), f"{rel} differs from urdf_gen output"


@pytest.mark.parametrize("name", list(ROBOTS))
def test_urdf_and_model_agree(name):
    root, model = _urdf(name), build_model(name)
    links = [link.get("name") for link in root.findall("link")]
    assert [model.body(i).name for i in range(1, model.nbody)] == links
    revolute = [j for j in root.findall("joint") if j.get("type") == "revolute"]
    assert [model.joint(i).name for i in range(model.njnt)] == list(robots.ROOT_JOINTS) + [j.get("name") for j in revolute]
    for link in root.findall("link"):  # masses: URDF == docs == model
        urdf_mass = float(link.find("inertial/mass").get("value"))
        assert urdf_mass == pytest.approx(MASSES[name][link.get("name")], rel=1e-6)
        assert model.body(link.get("name")).mass[0] == pytest.approx(urdf_mass, rel=0.01)
    for joint in revolute:
        limit = joint.find("limit")
        jid = model.joint(joint.get("name")).id
        np.testing.assert_allclose(model.jnt_range[jid], [float(limit.get("lower")), float(limit.get("upper"))])
        assert model.jnt_limited[jid]
        assert model.dof_damping[model.jnt_dofadr[jid]] == float(joint.find("dynamics").get("damping")) == 1.0
        assert joint.find("axis").get("xyz") == "0 -1 0"
    assert model.nu == len(revolute)
    np.testing.assert_allclose(model.actuator_gear[:, 0], GEARS[name])
    np.testing.assert_allclose(model.actuator_ctrlrange, [[-1.0, 1.0]] * model.nu)
    assert model.actuator_ctrllimited.all()
    assert model.opt.timestep == 0.002 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert model.nmesh == 0


@pytest.mark.parametrize("name", list(ROBOTS))
def test_standing_height_and_foot_clearance(name):
    model = build_model(name)
    assert model.qpos0[1] == pytest.approx(START_HEIGHTS[name], abs=1e-9)
    data = mujoco.MjData(model)
    assert _lowest_z(model, data) == pytest.approx(0.04, abs=1e-6)
    assert data.xpos[model.body("torso").id][2] == pytest.approx(START_HEIGHTS[name])
    data.qpos[1] = 2.0  # qpos[1] is the absolute torso height
    mujoco.mj_kinematics(model, data)
    assert data.xpos[model.body("torso").id][2] == pytest.approx(2.0)


@pytest.mark.parametrize("name", HOPPERS)
def test_hopper_geometry_matches_spec_sizes(name):
    model = build_model(name)
    for link, dart in DART_SIZES[name].items():
        size = model.geom_size[model.body(link).geomadr[0]]
        if name == "hopper_capsule":  # radius = diameter / 2, half-length = cylinder length / 2
            np.testing.assert_allclose(size[:2], [dart[0] / 2, dart[1] / 2])
        else:  # DART (x, y-up, z) full extents -> MuJoCo (x, y, z-up) half-sizes
            np.testing.assert_allclose(sorted(size), sorted(np.asarray(dart) / 2))
            np.testing.assert_allclose(size[0], dart[0] / 2)


def test_hopper_size_signatures_identical():
    sigs = set()
    for name in HOPPERS:
        m = build_model(name)
        sigs.add((m.nq, m.nv, m.nu, m.na, m.ngeom, m.nbody, m.njnt, m.nmesh, m.nmeshvert))
    assert len(sigs) == 1, sigs


def test_primitive_replaced_and_mesh_shows_same_shape():
    model = build_model("hopper_ellipsoid")
    assert set(model.geom_type[1:].tolist()) == {int(mujoco.mjtGeom.mjGEOM_ELLIPSOID)}
    root = _urdf("hopper_capsule")
    for collision in root.iter("collision"):
        prim = collision.find("mt_primitive")
        mesh = collision.find("geometry/mesh").get("filename")
        assert mesh.startswith("package://mt_specialize/urdf/meshes/")
        stl = URDF_DIR / "meshes" / Path(mesh).name
        tri = np.frombuffer(stl.read_bytes()[84:], dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]))
        r, half = (float(x) for x in prim.get("size").split())
        vmax = tri["v"].reshape(-1, 3).max(axis=0)
        np.testing.assert_allclose(vmax, [r, r, r + half], atol=1e-6)


def test_torso_mass_and_mass_scale():
    base = build_model("hopper_capsule")
    heavy = build_model("hopper_capsule", torso_mass=15.0)
    t = base.body("torso").id
    assert heavy.body_mass[t] == pytest.approx(15.0)
    np.testing.assert_allclose(heavy.body_inertia[t], base.body_inertia[t] * 15.0 / base.body_mass[t])
    np.testing.assert_allclose(heavy.body_mass[t + 1:], base.body_mass[t + 1:])
    scaled = build_model("hopper_capsule", mass_scale=2.0)
    np.testing.assert_allclose(scaled.body_mass, 2 * base.body_mass)
    np.testing.assert_allclose(scaled.body_inertia, 2 * base.body_inertia)


def test_gears_and_start_height_overrides():
    model = build_model("biped", gears=(1, 2, 3, 4, 5, 6), start_height=1.5)
    np.testing.assert_allclose(model.actuator_gear[:, 0], [1, 2, 3, 4, 5, 6])
    assert model.qpos0[1] == 1.5


def test_user_urdf_robot():
    model = build_model(DATA / "user_hopper.urdf")
    assert (model.nq, model.nv, model.nu) == (6, 6, 3)
    np.testing.assert_allclose(model.actuator_gear[:, 0], [200, 200, 150])  # from <limit effort>
    assert _lowest_z(model, mujoco.MjData(model)) == pytest.approx(0.04)
    assert model.qpos0[1] == pytest.approx(1.24)
    spec = RobotSpec("mine", DATA / "user_hopper.urdf", gears=(10, 10, 10), start_height=1.3)
    model = build_model(spec)
    assert model.qpos0[1] == 1.3 and list(model.actuator_gear[:, 0]) == [10, 10, 10]


def _write(tmp_path, text, name="bad.urdf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_errors_name_the_bad_value(tmp_path):
    with pytest.raises(ValueError, match=r"unknown robot 'hoper'.*hopper_capsule.*biped|unknown robot 'hoper'.*biped"):
        build_model("hoper")
    with pytest.raises(ValueError, match="URDF file not found: .*missing.urdf"):
        build_model(tmp_path / "missing.urdf")
    bad = _write(tmp_path, "<robot name='x'><link name='a'></robot>")
    with pytest.raises(ValueError, match=r"malformed URDF .*bad.urdf: mismatched tag"):
        build_model(bad)
    text = (URDF_DIR / "hopper_box.urdf").read_text()
    start = text.index("<inertial>", text.index('<link name="leg">'))
    no_inertial = _write(tmp_path, text[:start] + text[text.index("</inertial>", start) + 11:], "noin.urdf")
    with pytest.raises(ValueError, match=r"link 'leg' has no <inertial>"):
        build_model(no_inertial)
    neg = _write(tmp_path, text.replace('<mass value="2.986" />', '<mass value="-1" />'), "neg.urdf")
    with pytest.raises(ValueError, match=r"mass of link 'leg' must be a positive finite number, got '-1'"):
        build_model(neg)
    for kw, val in (("torso_mass", 0.0), ("torso_mass", math.nan), ("mass_scale", -2.0), ("mass_scale", math.inf),
                    ("start_height", 0.0)):
        with pytest.raises(ValueError, match=f"{kw} must be a positive finite number"):
            build_model("hopper_capsule", **{kw: val})
    with pytest.raises(ValueError, match=r"gears has 2 values .* 3 actuated joints"):
        build_model("hopper_capsule", gears=(1.0, 2.0))
    prism = _write(tmp_path, text.replace('name="leg_joint" type="revolute"', 'name="leg_joint" type="prismatic"'),
                   "prism.urdf")
    with pytest.raises(ValueError, match=r"joint 'leg_joint' has type 'prismatic'; allowed 'revolute' and 'fixed'"):
        build_model(prism)
    cap = (URDF_DIR / "hopper_capsule.urdf").read_text().replace('type="capsule" size="0.05 0.2"', 'type="cone" size="1"')
    with pytest.raises(ValueError, match=r"mt_primitive type 'cone', allowed"):
        build_model(_write(tmp_path, cap, "cone.urdf"))
