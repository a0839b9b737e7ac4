"""Simulator node: MuJoCo robots -> ROS 2 robot state, commands -> MuJoCo.

One robot per task (parameter ``tasks``), each in its own namespace (the task name unless
``namespaces`` is given). Per robot it publishes ``joint_states`` (sensor_msgs/JointState, every
hinge and slide joint including the planar root ``rootx``/``rootz``/``rooty``; effort = the
actuator's force on the joint, N*m), ``markers`` (visualization_msgs/MarkerArray of the real MuJoCo
geoms in frame ``world``, robots side by side along y), ``observation`` (std_msgs/Float64MultiArray,
the task's observation; ``layout.dim[0].label`` names its fields, comma-separated, see
:func:`observation_label`) and, unless robot_state_publisher does (``publish_robot_description``),
``robot_description``; it subscribes ``commands`` (Float64MultiArray, one value per actuator in
``command_units``). Topic names, types and QoS: ``topics``.

Each robot is a ``tasks.TaskRobot``, stepped as ``tasks.TaskEnv`` and the batched training env step
it: ``ctrl = action``, zero warm-start, ``frame_skip`` MuJoCo steps (4 x 2 ms -> 125 Hz control),
then the task's reward and termination. A robot whose task's termination rule fires
(``reset_on_fall``) or that reaches ``horizon`` is reset to the task's start pose with its reset
noise; services ``/<robot>/reset`` and ``/simulator/reset`` (std_srvs/Trigger) reset one robot or
all. ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, 1 Hz and after each reset) gives each
robot's episode number, steps, return, and how many episodes ended by a fall, the horizon or a reset.

``mode``:
  ``realtime``  a steady-clock timer steps every robot at 1/dt (125 Hz) with its latest command
                (zeros until the first one arrives);
  ``lockstep``  the world steps when every robot with a commands publisher has answered its
                observation, as fast as the policy answers (a robot nobody commands is stepped
                with zeros). An observation left unanswered for ``resend_after`` seconds (no
                subscriber yet, policy server without a checkpoint, ...) is published again.
Simulation time (steps x control period) is published on ``/clock`` after every step. Stamps
(joint_states, markers, diagnostics) are simulation time in lockstep mode or with ``use_sim_time``,
else the wall clock.

``command_units``:
  ``normalized``  one value in [-1, 1] per actuator (MuJoCo's ctrl; outside it is clipped);
  ``effort``      N*m (N for a slide) per actuator: the command divided by the actuator's gear is the
                  ctrl, clipped to [-1, 1], so the joint_states effort after the step equals the
                  command up to that limit (ros2_control's effort interface, as a
                  forward_command_controller with ``interface_name: effort`` sends it).
A command whose ``layout.dim[0].label`` names the other units is refused (zeros, a warning).

Parameters read at start-up are read-only; ``markers_rate_hz``, ``resend_after``, ``horizon`` and
``reset_on_fall`` can be set while running and are checked when set (``common.ParameterRules``).
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: take over SIGINT/SIGTERM before the heavy imports (signals.py)
    from mt_specialize.ros.signals import STOP

    STOP.install()

import time
from dataclasses import dataclass, field

import mujoco
import numpy as np
from rclpy.node import Node

from mt_specialize.envs import planar
from mt_specialize.envs.tasks import TaskRobot, TaskSpec, Transition
from mt_specialize.experiments import PROFILE_NAMES, profiled_task
from mt_specialize.ros import topics
from mt_specialize.ros.common import (
    WARN_THROTTLE_S,
    ParameterRules,
    array_from_msg,
    array_msg,
    check_vector,
    clean_ns,
    number_at_least,
    one_of,
    run_node,
    steady_timer,
)
from mt_specialize.ros.description import description
from mt_specialize.ros.preflight import COMMAND_UNITS, DEFAULT_PROFILE, DEFAULT_TASKS, MODES

#: Seconds between two /diagnostics messages (one is also sent after every reset).
DIAGNOSTICS_PERIOD = 1.0


def observation_label(names) -> str:
    """``layout.dim[0].label`` of an observation message: its field names, comma-separated
    (``planar.observation_names``: ``rootz/position,rooty/position,<joint>/position,...,
    rootx/velocity,...``)."""
    return ",".join(names)


# ---------------------------------------------------------------------------------------------
# ROS-free robot simulation (one robot of one task)
# ---------------------------------------------------------------------------------------------
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
    like ``tasks.TaskEnv``) with its episode counters, the joints it publishes and the geoms it draws.

    ``horizon``: control steps after which an episode is cut (the task's by default; 0 = never).
    ``episode``: the number of the current episode (1 at start, +1 at every reset); ``ended``: how
    many episodes ended by each cause (``fall``: the task's termination rule; ``horizon``; ``reset``:
    a reset request). ``gears`` (act_dim,): N*m (or N) of a unit command per actuator."""

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
        self.gears = np.array([a["gear"] for a in planar.actuators(m)], dtype=np.float64)
        self.observation_names = planar.observation_names(m)
        kinds = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        self.joint_ids = [j for j in range(m.njnt) if int(m.jnt_type[j]) in kinds]
        self.joint_names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
                            for j in self.joint_ids]
        self.qpos_adr = np.array([m.jnt_qposadr[j] for j in self.joint_ids], dtype=int)
        self.dof_adr = np.array([m.jnt_dofadr[j] for j in self.joint_ids], dtype=int)
        self.visuals = self._visuals()
        self.episode_steps = 0
        self.episode_return = 0.0
        self.episode = 0
        self.ended = {"fall": 0, "horizon": 0, "reset": 0}
        self.fallen = False  # the termination rule fired in this episode (kept on with reset_on_fall false)
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

    def reset(self, cause: str | None = None) -> None:
        """A new episode from the task's start pose with its reset noise (drawn from ``rng``);
        ``cause`` (``fall`` | ``horizon`` | ``reset``) of the one that ends, counted in ``ended``."""
        if cause is not None:
            self.ended[cause] += 1
        self.robot.reset(self.rng)
        self.episode += 1
        self.episode_steps = 0
        self.episode_return = 0.0
        self.fallen = False

    def observation(self) -> np.ndarray:
        """(obs_dim,) float64, the task's observation of the current state."""
        return self.robot.observation()

    def step(self, action: np.ndarray) -> tuple[Transition, bool]:
        """One control step with action (act_dim,) in [-1, 1] (``TaskRobot.step``); returns its
        transition and whether the horizon cut the episode (truncated: reached without termination).
        The caller decides whether to reset."""
        step = self.robot.step(action)
        self.episode_steps += 1
        self.total_steps += 1
        self.episode_return += step.reward
        truncated = not step.terminated and 0 < self.horizon <= self.episode_steps
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
def _horizon_check(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= -1
    return None if ok else "must be an integer: -1 (each task's own, 1000 control steps for the built-in " \
                           "tasks), 0 (never cut) or a number of control steps"


def _not_empty(names: list[str]) -> str | None:
    return None if names else "is empty: give at least one task name"


class SimulatorNode(Node):
    """ROS 2 shell over ``RobotSim``: see the module docstring."""

    def __init__(self, **kwargs):
        # undeclared names are refused by ParameterRules with the list of parameters
        super().__init__("simulator", allow_undeclared_parameters=True, **kwargs)
        rules = ParameterRules(self)
        task_names = rules.declare_strings(
            "tasks", DEFAULT_TASKS, "one robot per task; the task picks the robot model and its rules",
            check=_not_empty)
        namespaces = rules.declare_strings("namespaces", task_names, "robot namespaces, one per task (default: the "
                                           "task names)")
        self.mode = rules.declare("mode", MODES[0], f"{' | '.join(MODES)}", read_only=True, check=one_of(MODES))
        seed = rules.declare("seed", 0, "seed of the reset noise", read_only=True)
        profile = rules.declare(
            "profile", DEFAULT_PROFILE, f"robot physics: {' | '.join(PROFILE_NAMES)}, as the served policy's run "
            "trained (mt-specialize train --profile; the learner's default mujoco)", read_only=True,
            check=one_of(PROFILE_NAMES))
        self.units = rules.declare(
            "command_units", COMMAND_UNITS[0], "normalized: [-1, 1] per actuator; effort: N*m (gear x normalized)",
            read_only=True, check=one_of(COMMAND_UNITS))
        self.y_spacing = rules.declare("robot_spacing", 1.5, "robots side by side along y in the markers (m)",
                                       read_only=True, check=number_at_least(0.0, unit=" m"))
        planar_root = rules.declare("description_planar_root", True,
                                    "add world -> rootx -> rootz -> rooty to robot_description", read_only=True)
        publish_description = rules.declare(
            "publish_robot_description", True,
            "publish /<robot>/robot_description (false where robot_state_publisher does, as in the launch file)",
            read_only=True)
        self.markers_rate = rules.declare("markers_rate_hz", 30.0, "MarkerArray rate (Hz; 0 = off)",
                                          check=number_at_least(0.0, unit=" Hz (0 = off)"))
        self.resend_after = rules.declare("resend_after", 0.5,
                                          "lockstep: publish an unanswered observation again after this (s)",
                                          check=number_at_least(0.0, strict=True, unit=" s"))
        horizon = rules.declare("horizon", -1, "control steps after which an episode is cut and the robot reset "
                                "(-1: each task's own, 1000 for the built-in tasks; 0: never)", check=_horizon_check)
        self.reset_on_fall = rules.declare("reset_on_fall", True,
                                           "reset a robot when its task's termination rule fires (it fell)")

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
        self._task_horizons = [r.horizon for r in self.robots]
        self._set_horizon(horizon)
        self.dt = self.robots[0].dt
        self._dt_ns = int(round(self.dt * 1e9))
        self.sim_steps = 0  # world steps since start: simulation time = sim_steps * dt
        self._sim_stamps = self.mode == "lockstep" or bool(self.get_parameter("use_sim_time").value)

        from builtin_interfaces.msg import Time
        from diagnostic_msgs.msg import DiagnosticArray
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String
        from std_srvs.srv import Trigger
        from visualization_msgs.msg import MarkerArray

        self._JointState, self._Clock, self._Time = JointState, Clock, Time
        n = len(self.robots)
        self._last_cmd = [np.zeros(r.act_dim) for r in self.robots]
        self._waiting = [False] * n       # lockstep: robot i's observation awaits its command
        self._stale = [False] * n         # lockstep: reset while waiting: its next command answers the old state
        self._waiting_since = 0.0
        self._last_obs = [r.observation() for r in self.robots]
        self._last_markers = [-1e9] * n
        self.commands_received = [0] * n
        self.bad_commands = [0] * n
        self.unsolicited_commands = [0] * n
        self._obs_labels = [observation_label(r.observation_names) for r in self.robots]

        self._obs_pubs, self._js_pubs, self._mk_pubs, self._desc_pubs, self._cmd_subs = [], [], [], [], []
        self._reset_services = []
        for i, (ns, robot) in enumerate(zip(self.ns, self.robots)):
            self._obs_pubs.append(self.create_publisher(Float64MultiArray, topics.OBSERVATION.of(ns),
                                                        topics.OBSERVATION.qos))
            self._js_pubs.append(self.create_publisher(JointState, topics.JOINT_STATES.of(ns), topics.JOINT_STATES.qos))
            self._mk_pubs.append(self.create_publisher(MarkerArray, topics.MARKERS.of(ns), topics.MARKERS.qos))
            if publish_description:
                pub = self.create_publisher(String, topics.ROBOT_DESCRIPTION.of(ns), topics.ROBOT_DESCRIPTION.qos)
                pub.publish(String(data=description(robot.task, planar_root)))
                self._desc_pubs.append(pub)
            self._cmd_subs.append(self.create_subscription(
                Float64MultiArray, topics.COMMANDS.of(ns), lambda msg, i=i: self._on_command(i, msg),
                topics.COMMANDS.qos))
            self._reset_services.append(self.create_service(
                Trigger, topics.reset_service(ns), lambda req, resp, i=i: self._on_reset([i], resp)))
        self._reset_services.append(self.create_service(
            Trigger, "~/reset", lambda req, resp: self._on_reset(list(range(n)), resp)))
        self._clock_pub = self.create_publisher(Clock, topics.CLOCK.name, topics.CLOCK.qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS.name, topics.DIAGNOSTICS.qos)
        self.add_post_set_parameters_callback(self._on_parameters_set)

        self._publish_clock()
        if self.mode == "realtime":
            self._timer = steady_timer(self, self.dt, self._on_tick)
        else:
            for i in range(n):
                self._publish_state(i, force_markers=True)
            self._waiting_since = time.monotonic()
            self._timer = steady_timer(self, 0.05, self._on_watchdog)
        self._diag_timer = steady_timer(self, DIAGNOSTICS_PERIOD, self._publish_diagnostics)
        self.get_logger().info(
            f"simulating {', '.join(f'{ns} ({r.task.name})' for ns, r in zip(self.ns, self.robots))} "
            f"in {self.mode} mode, control period {self.dt * 1e3:.1f} ms, commands in {self.units} units, "
            f"profile {profile}; stamps on {'simulation' if self._sim_stamps else 'wall-clock'} time, /clock")

    # -- parameters -----------------------------------------------------------------------------
    def _set_horizon(self, horizon: int) -> None:
        for robot, own in zip(self.robots, self._task_horizons):
            robot.horizon = own if horizon == -1 else horizon

    def _on_parameters_set(self, params) -> None:
        """Apply the values the set-parameters callbacks accepted."""
        for p in params:
            if p.name == "markers_rate_hz":
                self.markers_rate = float(p.value)
            elif p.name == "resend_after":
                self.resend_after = float(p.value)
            elif p.name == "horizon":
                self._set_horizon(int(p.value))
            elif p.name == "reset_on_fall":
                self.reset_on_fall = bool(p.value)
            elif p.name == "use_sim_time":
                self._sim_stamps = self.mode == "lockstep" or bool(p.value)

    # -- helpers --------------------------------------------------------------------------------
    def _stamp(self):
        """Simulation time (lockstep or use_sim_time), else the wall clock, as builtin_interfaces/Time."""
        if self._sim_stamps:
            ns = self.sim_steps * self._dt_ns
            return self._Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        return self.get_clock().now().to_msg()

    def _publish_clock(self) -> None:
        ns = self.sim_steps * self._dt_ns
        self._clock_pub.publish(self._Clock(clock=self._Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)))

    def _command(self, i: int, msg) -> np.ndarray:
        """The ctrl (act_dim,) in [-1, 1] of a command message in ``command_units``; zeros, with a
        throttled warning, for a malformed one."""
        robot = self.robots[i]
        label = msg.layout.dim[0].label if msg.layout.dim else ""
        if label in COMMAND_UNITS and label != self.units:
            self.bad_commands[i] += 1
            self.get_logger().warning(
                f"{self.ns[i]}/commands: in {label} units, this simulator's command_units is {self.units}: "
                f"applying zeros", throttle_duration_sec=WARN_THROTTLE_S)
            return np.zeros(robot.act_dim)
        a = array_from_msg(msg)
        reason = check_vector(a, robot.act_dim)
        if reason is not None:
            self.bad_commands[i] += 1
            self.get_logger().warning(
                f"{self.ns[i]}/commands: {reason} (robot has {robot.act_dim} actuators): applying zeros",
                throttle_duration_sec=WARN_THROTTLE_S)
            return np.zeros(robot.act_dim)
        if self.units == "effort":
            a = a / robot.gears
        return np.clip(a, -1.0, 1.0)

    def _advance(self, i: int, action: np.ndarray) -> None:
        robot = self.robots[i]
        step, _ = robot.step(action)
        if step.terminated and not robot.fallen:
            robot.fallen = True
            if not self.reset_on_fall:
                self.get_logger().info(f"{self.ns[i]}: fell after {robot.episode_steps} steps (reset_on_fall is "
                                       f"false: not reset)", throttle_duration_sec=WARN_THROTTLE_S)
        # the horizon also cuts an episode whose robot lies fallen (reset_on_fall false)
        at_horizon = 0 < robot.horizon <= robot.episode_steps
        cause = "fall" if step.terminated and self.reset_on_fall else "horizon" if at_horizon else None
        if cause is not None:
            self.get_logger().debug(f"{self.ns[i]}: episode {robot.episode} ended after {robot.episode_steps} "
                                    f"steps ({cause}), return {robot.episode_return:.1f}")
            robot.reset(cause)

    def _publish_state(self, i: int, force_markers: bool = False, observation: bool = True) -> None:
        robot = self.robots[i]
        stamp = self._stamp()
        if observation:
            obs = robot.observation()
            self._last_obs[i] = obs
            if self.mode == "lockstep":
                self._waiting[i] = True
            self._obs_pubs[i].publish(array_msg(obs, self._obs_labels[i]))
        js = self._JointState()
        js.header.stamp = stamp
        js.name = list(robot.joint_names)
        js.position = robot.joint_positions().tolist()
        js.velocity = robot.joint_velocities().tolist()
        js.effort = robot.joint_efforts().tolist()
        self._js_pubs[i].publish(js)
        now = time.monotonic()
        if self.markers_rate > 0 and (force_markers or now - self._last_markers[i] >= 1.0 / self.markers_rate - 1e-6):
            self._last_markers[i] = now
            self._mk_pubs[i].publish(geom_markers(robot.geom_poses(), self.ns[i], stamp,
                                                  y_offset=i * self.y_spacing))

    def _step_world(self) -> None:
        """Step every robot with its command (lockstep: a robot that did not answer, having no
        commander, with zeros), advance the simulation clock, publish every robot's state."""
        for i in range(len(self.robots)):
            answered = not (self.mode == "lockstep" and self._waiting[i])
            self._advance(i, self._last_cmd[i] if answered else np.zeros(self.robots[i].act_dim))
        self.sim_steps += 1
        self._publish_clock()
        for i in range(len(self.robots)):
            self._publish_state(i)
        self._waiting_since = time.monotonic()

    def _commanded(self, i: int) -> bool:
        """Robot i has a commands publisher (its answer is awaited in lockstep)."""
        return self._cmd_subs[i].get_publisher_count() > 0

    def _maybe_step(self) -> None:
        """Lockstep: step once no robot with a commander still owes its command."""
        if not any(self._waiting[i] and self._commanded(i) for i in range(len(self.robots))):
            self._step_world()

    # -- callbacks ------------------------------------------------------------------------------
    def _on_command(self, i: int, msg) -> None:
        self.commands_received[i] += 1
        action = self._command(i, msg)
        if self.mode == "realtime":
            self._last_cmd[i] = action
            return
        if not self._waiting[i]:
            self.unsolicited_commands[i] += 1
            self.get_logger().warning(
                f"{self.ns[i]}/commands: command without a pending observation (duplicate?), ignored",
                throttle_duration_sec=WARN_THROTTLE_S)
            return
        if self._stale[i]:  # it answers the state before a reset: ask again for the reset state
            self._stale[i] = False
            self._publish_state(i, force_markers=True)
            return
        self._last_cmd[i] = action
        self._waiting[i] = False
        self._maybe_step()

    def _on_tick(self) -> None:
        self._step_world()

    def _on_watchdog(self) -> None:
        if not any(self._waiting):
            return
        if not all(self._waiting):  # someone answered; the others may have lost their commander
            self._maybe_step()
        now = time.monotonic()
        if now - self._waiting_since >= self.resend_after:
            for i in range(len(self.robots)):
                if self._waiting[i] and self._obs_pubs[i].get_subscription_count() > 0:
                    self.get_logger().debug(f"{self.ns[i]}: observation unanswered, publishing it again")
                    self._obs_pubs[i].publish(array_msg(self._last_obs[i], self._obs_labels[i]))
            self._waiting_since = now

    def _on_reset(self, robots: list[int], response):
        """Reset ``robots`` to their start pose (with the reset noise): a new episode each."""
        for i in robots:
            robot = self.robots[i]
            robot.reset("reset")
            self._last_cmd[i] = np.zeros(robot.act_dim)
            if self.mode == "lockstep" and self._waiting[i] and self._commanded(i):
                self._stale[i] = True  # its commander answers the old observation first
                self._publish_state(i, force_markers=True, observation=False)
            else:
                self._publish_state(i, force_markers=True)
            self.get_logger().info(f"{self.ns[i]}: reset to the start pose, episode {robot.episode}")
        self._publish_diagnostics()
        response.success = True
        response.message = "; ".join(f"{self.ns[i]}: episode {self.robots[i].episode} from the start pose"
                                     for i in robots)
        return response

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        sim_time = self.sim_steps * self.dt
        array = DiagnosticArray()
        array.header.stamp = self._stamp()
        for ns, robot in zip(self.ns, self.robots):
            values = {"task": robot.task.name, "episode": robot.episode, "episode_steps": robot.episode_steps,
                      "episode_return": f"{robot.episode_return:.6g}", "fallen": robot.fallen,
                      "ended_by_fall": robot.ended["fall"], "ended_by_horizon": robot.ended["horizon"],
                      "ended_by_reset": robot.ended["reset"], "horizon": robot.horizon,
                      "sim_time_s": f"{sim_time:.3f}", "mode": self.mode, "command_units": self.units}
            array.status.append(DiagnosticStatus(
                level=DiagnosticStatus.OK, name=f"simulator: {ns}", hardware_id=ns,
                message=f"episode {robot.episode}, step {robot.episode_steps}" + (" (fallen)" if robot.fallen else ""),
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        self._diag_pub.publish(array)


def main(args=None) -> int:
    return run_node(SimulatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
