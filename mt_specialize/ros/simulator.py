"""Simulator node: MuJoCo robots -> ROS 2 robot state, commands -> MuJoCo.

One robot per task (parameter ``tasks``), each in its own namespace (the task name unless
``namespaces`` is given). Per robot it publishes ``joint_states`` (sensor_msgs/JointState, every
hinge and slide joint including the planar root ``rootx``/``rootz``/``rooty``),
``robot_description`` (std_msgs/String, transient local), ``markers`` (visualization_msgs/MarkerArray
of the real MuJoCo geoms in frame ``world``, robots side by side along y) and ``observation``
(std_msgs/Float64MultiArray, the task's observation), and subscribes ``commands``
(Float64MultiArray, one value in [-1, 1] per actuator).

Each robot is a ``tasks.TaskRobot``, stepped as ``tasks.TaskEnv`` and the batched training env step
it: ``ctrl = action``, zero warm-start, ``frame_skip`` MuJoCo steps (4 x 2 ms -> 125 Hz control),
then the task's reward and termination. A robot whose task's termination rule fires, or that
reaches the horizon, is reset with the task's reset noise.

``mode``:
  ``realtime``  a wall-clock timer steps every robot at 1/dt (125 Hz) with its latest command
                (zeros until the first one arrives);
  ``lockstep``  a robot is stepped when a command answers its pending observation, as fast as the
                policy answers. An observation left unanswered for ``resend_after`` seconds (no
                subscriber yet, policy server without a checkpoint, ...) is published again.
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: take over SIGINT/SIGTERM before the heavy imports (signals.py)
    from mt_specialize.ros.signals import STOP

    STOP.install()

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from rclpy.node import Node

from mt_specialize.envs.tasks import TaskRobot, TaskSpec, Transition
from mt_specialize.config import TrainConfig
from mt_specialize.experiments import PROFILE_NAMES, profiled_task

DEFAULT_PROFILE = TrainConfig.profile  # the robots the learner and `mt-specialize train` use by default
from mt_specialize.ros.common import (
    CONTROL_QOS,
    LATCHED_QOS,
    STATE_QOS,
    WARN_THROTTLE_S,
    array_from_msg,
    array_msg,
    check_vector,
    clean_ns,
    run_node,
    string_list_param,
)

MODES = ("realtime", "lockstep")


# ---------------------------------------------------------------------------------------------
# ROS-free robot simulation (one robot of one task)
# ---------------------------------------------------------------------------------------------
def urdf_text(task) -> str:
    """The URDF text of a task's robot (``robots.get_robot(task.robot).urdf``), '' if none."""
    try:
        from mt_specialize.envs.robots import get_robot

        path = Path(get_robot(task.robot).urdf)
    except Exception:
        path = Path(str(task.robot))
        if not path.is_absolute():
            from mt_specialize.paths import URDF_DIR

            path = URDF_DIR / f"{path}.urdf"
    try:
        return path.read_text()
    except OSError:
        return ""


_ROOT_CHAIN = """  <!-- Planar root added by the mt_specialize simulator: the MuJoCo joints rootx, rootz, rooty, so
       robot_state_publisher places the robot from joint_states (rootz = absolute torso height). -->
  <link name="{world}"/>
  <link name="rootx_link"/>
  <link name="rootz_link"/>
  <joint name="rootx" type="prismatic">
    <parent link="{world}"/><child link="rootx_link"/><axis xyz="1 0 0"/>
    <limit lower="-10000" upper="10000" effort="0" velocity="1000"/>
  </joint>
  <joint name="rootz" type="prismatic">
    <parent link="rootx_link"/><child link="rootz_link"/><axis xyz="0 0 1"/>
    <limit lower="-10000" upper="10000" effort="0" velocity="1000"/>
  </joint>
  <joint name="rooty" type="continuous">
    <parent link="rootz_link"/><child link="{root}"/><axis xyz="0 1 0"/>
  </joint>
"""


def with_planar_root(urdf: str, world: str = "world") -> str:
    """The URDF with the simulator's planar root chain ``world -> rootx -> rootz -> rooty -> root
    link`` added (unchanged if it has no root link or already has a ``rootx`` joint)."""
    import xml.etree.ElementTree as ET

    try:
        tree = ET.fromstring(urdf)
    except ET.ParseError:
        return urdf
    links = [e.get("name") for e in tree.findall("link")]
    joints = tree.findall("joint")
    if any(j.get("name") == "rootx" for j in joints) or world in links:
        return urdf
    children = {c.get("link") for j in joints for c in j.findall("child")}
    roots = [name for name in links if name not in children]
    end = urdf.rfind("</robot>")
    if len(roots) != 1 or end < 0:
        return urdf
    return urdf[:end] + _ROOT_CHAIN.format(world=world, root=roots[0]) + urdf[end:]


@dataclass
class GeomVisual:
    """A geom drawn as markers: MuJoCo type, size, colour."""

    geom_id: int
    gtype: int
    size: np.ndarray
    rgba: np.ndarray


@dataclass
class RobotSim:
    """One simulated robot: a ``tasks.TaskRobot`` (its physics and its task's rules, stepped exactly
    like ``tasks.TaskEnv``) with its episode counters, the joints it publishes and the geoms it draws."""

    task: TaskSpec
    rng: np.random.Generator
    robot: TaskRobot = field(init=False)
    model: mujoco.MjModel = field(init=False)
    data: mujoco.MjData = field(init=False)

    def __post_init__(self):
        self.robot = TaskRobot(self.task)
        self.model, self.data = self.robot.model, self.robot.data
        self.horizon = self.robot.task.horizon
        self.dt = self.robot.dt
        self.act_dim = int(self.model.nu)
        m = self.model
        kinds = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        self.joint_ids = [j for j in range(m.njnt) if int(m.jnt_type[j]) in kinds]
        self.joint_names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
                            for j in self.joint_ids]
        self.qpos_adr = np.array([m.jnt_qposadr[j] for j in self.joint_ids], dtype=int)
        self.dof_adr = np.array([m.jnt_dofadr[j] for j in self.joint_ids], dtype=int)
        self.visuals = self._visuals()
        self.episode_steps = 0
        self.episode_return = 0.0
        self.episodes = 0
        self.total_steps = 0
        self.reset()
        self.obs_dim = int(self.observation().size)

    def _visuals(self) -> list[GeomVisual]:
        m = self.model
        out = []
        for g in range(m.ngeom):
            if m.geom_bodyid[g] == 0 or int(m.geom_type[g]) in (int(mujoco.mjtGeom.mjGEOM_PLANE),
                                                                int(mujoco.mjtGeom.mjGEOM_HFIELD)):
                continue
            rgba = np.array(m.geom_rgba[g], dtype=float)
            mat = m.geom_matid[g]
            if mat >= 0:
                rgba = np.array(m.mat_rgba[mat], dtype=float)
            out.append(GeomVisual(g, int(m.geom_type[g]), np.array(m.geom_size[g], dtype=float), rgba))
        return out

    def reset(self) -> None:
        """A new episode from the task's reset noise (drawn from ``rng``)."""
        self.robot.reset(self.rng)
        self.episode_steps = 0
        self.episode_return = 0.0

    def observation(self) -> np.ndarray:
        """(obs_dim,) float64, the task's observation of the current state."""
        return self.robot.observation()

    def step(self, action: np.ndarray) -> tuple[Transition, bool]:
        """One control step with action (act_dim,) (``TaskRobot.step``); returns its transition and
        whether the horizon cut the episode (truncated: reached without termination). The caller
        resets on either."""
        step = self.robot.step(action)
        self.episode_steps += 1
        self.total_steps += 1
        self.episode_return += step.reward
        truncated = not step.terminated and self.episode_steps >= self.horizon
        return step, truncated

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr].copy()

    def joint_efforts(self) -> np.ndarray:
        return self.data.qfrc_actuator[self.dof_adr].copy()

    def geom_poses(self) -> list[tuple[GeomVisual, np.ndarray, np.ndarray]]:
        """(visual, position (3,), rotation matrix (3,3)) of every drawn geom, current qpos."""
        mujoco.mj_kinematics(self.model, self.data)
        return [(v, self.data.geom_xpos[v.geom_id].copy(), self.data.geom_xmat[v.geom_id].reshape(3, 3).copy())
                for v in self.visuals]


# ---------------------------------------------------------------------------------------------
# Markers (pure functions of geom poses; the test checks them against MuJoCo)
# ---------------------------------------------------------------------------------------------
def _quat_wxyz(rot: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return q


def geom_markers(poses, ns: str, stamp, frame_id: str = "world", y_offset: float = 0.0):
    """MarkerArray for the given geom poses: CUBE for boxes, SPHERE (per-axis scale) for spheres and
    ellipsoids, CYLINDER for cylinders, CYLINDER + 2 SPHEREs for capsules. Marker id = 3*geom id (+1,
    +2 for the capsule caps), namespace ``<ns>/geoms``."""
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    off = np.array([0.0, y_offset, 0.0])

    def marker(mid, mtype, pos, rot, scale, rgba):
        mk = Marker()
        mk.header.frame_id = frame_id
        mk.header.stamp = stamp
        mk.ns = f"{ns}/geoms"
        mk.id = int(mid)
        mk.type = mtype
        mk.action = Marker.ADD
        p = pos + off
        mk.pose.position.x, mk.pose.position.y, mk.pose.position.z = float(p[0]), float(p[1]), float(p[2])
        q = _quat_wxyz(rot)
        mk.pose.orientation.w, mk.pose.orientation.x = float(q[0]), float(q[1])
        mk.pose.orientation.y, mk.pose.orientation.z = float(q[2]), float(q[3])
        mk.scale.x, mk.scale.y, mk.scale.z = (float(s) for s in scale)
        mk.color.r, mk.color.g, mk.color.b, mk.color.a = (float(c) for c in rgba)
        if mk.color.a <= 0.0:
            mk.color.a = 1.0
        return mk

    G = mujoco.mjtGeom
    box, ell, sph, cyl, cap = (int(G.mjGEOM_BOX), int(G.mjGEOM_ELLIPSOID), int(G.mjGEOM_SPHERE),
                               int(G.mjGEOM_CYLINDER), int(G.mjGEOM_CAPSULE))
    for v, pos, rot in poses:
        s = v.size
        base = 3 * v.geom_id
        if v.gtype == box:
            out.markers.append(marker(base, Marker.CUBE, pos, rot, 2 * s[:3], v.rgba))
        elif v.gtype == ell:
            out.markers.append(marker(base, Marker.SPHERE, pos, rot, 2 * s[:3], v.rgba))
        elif v.gtype == sph:
            out.markers.append(marker(base, Marker.SPHERE, pos, rot, [2 * s[0]] * 3, v.rgba))
        elif v.gtype == cyl:
            out.markers.append(marker(base, Marker.CYLINDER, pos, rot, [2 * s[0], 2 * s[0], 2 * s[1]], v.rgba))
        elif v.gtype == cap:
            r, h = s[0], s[1]
            axis = rot[:, 2]
            out.markers.append(marker(base, Marker.CYLINDER, pos, rot, [2 * r, 2 * r, 2 * h], v.rgba))
            out.markers.append(marker(base + 1, Marker.SPHERE, pos + h * axis, rot, [2 * r] * 3, v.rgba))
            out.markers.append(marker(base + 2, Marker.SPHERE, pos - h * axis, rot, [2 * r] * 3, v.rgba))
        # meshes / other types are not drawn
    return out


# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------
class SimulatorNode(Node):
    """ROS 2 shell over ``RobotSim``: see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__("simulator", **kwargs)
        from rcl_interfaces.msg import ParameterDescriptor
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String
        from visualization_msgs.msg import MarkerArray

        task_names = string_list_param(self, "tasks", ["hopper_capsule"])
        namespaces = string_list_param(self, "namespaces", [])
        self.mode = str(self.declare_parameter(
            "mode", "realtime", ParameterDescriptor(description="realtime | lockstep")).value)
        seed = int(self.declare_parameter("seed", 0).value)
        self.markers_rate = float(self.declare_parameter("markers_rate_hz", 30.0).value)
        self.y_spacing = float(self.declare_parameter("robot_spacing", 1.5).value)
        self.resend_after = float(self.declare_parameter("resend_after", 0.5).value)
        planar_root = bool(self.declare_parameter("description_planar_root", True).value)
        profile = str(self.declare_parameter(
            "profile", DEFAULT_PROFILE, ParameterDescriptor(
                description="robot physics: paper | mujoco | none, as the served policy's run trained "
                            "(mt-specialize train --profile; the learner's default mujoco)")).value)

        if self.mode not in MODES:
            raise ValueError(f"parameter mode={self.mode!r}: must be one of {list(MODES)}")
        if profile not in PROFILE_NAMES:
            raise ValueError(f"parameter profile={profile!r}: must be one of {list(PROFILE_NAMES)}")
        if not task_names:
            raise ValueError("parameter tasks is empty: give at least one task name")
        if namespaces and len(namespaces) != len(task_names):
            raise ValueError(f"parameter namespaces has {len(namespaces)} entries for {len(task_names)} tasks")
        namespaces = [clean_ns(n) for n in (namespaces or task_names)]
        if len(set(namespaces)) != len(namespaces):
            raise ValueError(f"namespaces must be distinct, got {namespaces} (set 'namespaces' when a task "
                             "appears twice)")

        seq = np.random.SeedSequence(seed)
        self.robots: list[RobotSim] = []
        self.ns = namespaces
        for name, child in zip(task_names, seq.spawn(len(task_names))):
            self.robots.append(RobotSim(profiled_task(name, profile), np.random.default_rng(child)))
        self.dt = self.robots[0].dt

        self._JointState = JointState
        self._obs_pubs, self._js_pubs, self._mk_pubs, self._desc_pubs, self._subs = [], [], [], [], []
        n = len(self.robots)
        self._last_cmd = [np.zeros(r.act_dim) for r in self.robots]
        self._pending = [False] * n          # lockstep: an observation awaits its command
        self._pending_since = [0.0] * n
        self._last_obs = [r.observation() for r in self.robots]
        self._last_markers = [-1e9] * n
        self.commands_received = [0] * n
        self.bad_commands = [0] * n
        self.unsolicited_commands = [0] * n

        for i, (ns, robot) in enumerate(zip(self.ns, self.robots)):
            self._obs_pubs.append(self.create_publisher(Float64MultiArray, f"{ns}/observation", CONTROL_QOS))
            self._js_pubs.append(self.create_publisher(JointState, f"{ns}/joint_states", STATE_QOS))
            self._mk_pubs.append(self.create_publisher(MarkerArray, f"{ns}/markers", STATE_QOS))
            desc_pub = self.create_publisher(String, f"{ns}/robot_description", LATCHED_QOS)
            text = urdf_text(robot.task)
            desc_pub.publish(String(data=with_planar_root(text) if planar_root else text))
            self._desc_pubs.append(desc_pub)
            self._subs.append(self.create_subscription(
                Float64MultiArray, f"{ns}/commands", lambda msg, i=i: self._on_command(i, msg), CONTROL_QOS))

        if self.mode == "realtime":
            self._timer = self.create_timer(self.dt, self._on_tick)
        else:
            for i in range(n):
                self._publish_state(i, force_markers=True)
            self._timer = self.create_timer(min(0.1, self.resend_after / 2), self._on_watchdog)
        self.get_logger().info(
            f"simulating {', '.join(f'{ns} ({r.task.name})' for ns, r in zip(self.ns, self.robots))} "
            f"in {self.mode} mode, control period {self.dt * 1e3:.1f} ms")

    # -- helpers --------------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _valid_command(self, i: int, msg) -> np.ndarray:
        robot = self.robots[i]
        a = array_from_msg(msg)
        reason = check_vector(a, robot.act_dim)
        if reason is not None:
            self.bad_commands[i] += 1
            self.get_logger().warning(
                f"{self.ns[i]}/commands: {reason} (robot has {robot.act_dim} actuators): applying zeros",
                throttle_duration_sec=WARN_THROTTLE_S)
            return np.zeros(robot.act_dim)
        return np.clip(a, -1.0, 1.0)

    def _advance(self, i: int, action: np.ndarray) -> None:
        robot = self.robots[i]
        step, truncated = robot.step(action)
        if step.terminated or truncated:
            robot.episodes += 1
            self.get_logger().debug(
                f"{self.ns[i]}: episode {robot.episodes} ended after {robot.episode_steps} steps "
                f"({'terminated' if step.terminated else 'horizon'}), return {robot.episode_return:.1f}")
            robot.reset()

    def _publish_state(self, i: int, force_markers: bool = False) -> None:
        robot = self.robots[i]
        stamp = self.get_clock().now().to_msg()
        obs = robot.observation()
        self._last_obs[i] = obs
        if self.mode == "lockstep":
            self._pending[i] = True
            self._pending_since[i] = self._now_s()
        self._obs_pubs[i].publish(array_msg(obs, "observation"))
        js = self._JointState()
        js.header.stamp = stamp
        js.name = list(robot.joint_names)
        js.position = robot.joint_positions().tolist()
        js.velocity = robot.joint_velocities().tolist()
        js.effort = robot.joint_efforts().tolist()
        self._js_pubs[i].publish(js)
        now = self._now_s()
        if self.markers_rate > 0 and (force_markers or now - self._last_markers[i] >= 1.0 / self.markers_rate - 1e-6):
            self._last_markers[i] = now
            self._mk_pubs[i].publish(geom_markers(robot.geom_poses(), self.ns[i], stamp,
                                                  y_offset=i * self.y_spacing))

    # -- callbacks ------------------------------------------------------------------------------
    def _on_command(self, i: int, msg) -> None:
        self.commands_received[i] += 1
        action = self._valid_command(i, msg)
        if self.mode == "realtime":
            self._last_cmd[i] = action
            return
        if not self._pending[i]:
            self.unsolicited_commands[i] += 1
            self.get_logger().warning(
                f"{self.ns[i]}/commands: command without a pending observation (duplicate?), ignored",
                throttle_duration_sec=WARN_THROTTLE_S)
            return
        self._pending[i] = False
        self._advance(i, action)
        self._publish_state(i)

    def _on_tick(self) -> None:
        for i in range(len(self.robots)):
            self._advance(i, self._last_cmd[i])
            self._publish_state(i)

    def _on_watchdog(self) -> None:
        now = self._now_s()
        for i in range(len(self.robots)):
            if self._pending[i] and now - self._pending_since[i] >= self.resend_after:
                if self._obs_pubs[i].get_subscription_count() > 0:
                    self.get_logger().debug(f"{self.ns[i]}: observation unanswered, publishing it again")
                    self._obs_pubs[i].publish(array_msg(self._last_obs[i], "observation"))
                self._pending_since[i] = now


def main(args=None) -> int:
    return run_node(SimulatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
