"""The simulator as a ROS user drives it: parameters that refuse what they would ignore, the reset
services and the episode counter, /clock in lockstep, commands in effort units, the observation's
field names; and no torch on the way to the first joint_states."""
from __future__ import annotations

import subprocess
import sys
import time

import mujoco
import numpy as np
import pytest
from conftest import Params
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mt_specialize.envs.tasks import get_task
from mt_specialize.ros import topics
from mt_specialize.ros.simulator import observation_label

pytestmark = pytest.mark.timeout(150)

#: a deep queue: the probe records whole streams
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

RECORD_QOS = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
DT_NS = 8_000_000  # the built-in tasks' control period: 4 x 2 ms


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _diagnostics(probe, robot: str) -> list[dict]:
    """Every /diagnostics status of the simulator's robot ``robot``, as dicts, as they come."""
    got: list[dict] = []

    def on_array(msg):
        for status in msg.status:
            if status.name == f"simulator: {robot}":
                got.append({kv.key: kv.value for kv in status.values})

    probe.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS.name, on_array, RECORD_QOS)
    return got


def test_the_launch_path_and_the_simulator_import_no_torch(tmp_path, checkpoint_factory):
    """What the launch file runs before any node starts (the checks, the robot descriptions, the
    rviz config) and the simulator node's module load without torch (5 s of imports on this machine)."""
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    code = f"""
import sys
from mt_specialize.paths import CONFIG_DIR
from mt_specialize.ros.preflight import startup_problem
from mt_specialize.ros.description import description
from mt_specialize.ros.rviz_config import rviz_config_for
import mt_specialize.ros.simulator
assert startup_problem(CONFIG_DIR, checkpoint={str(ckpt)!r}) is None
assert '<joint name="rootx"' in description("biped_forward")
rviz_config_for(CONFIG_DIR / "simulator.yaml")
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_parameters_refuse_what_they_would_ignore_and_the_node_does_what_param_get_says(probe, start_node):
    markers: list[float] = []
    probe.node.create_subscription(MarkerArray, "/hopper_capsule/markers", lambda m: markers.append(time.monotonic()),
                                   RECORD_QOS)
    status = _diagnostics(probe, "hopper_capsule")
    sim = start_node("simulator", {"tasks": ["hopper_capsule"], "mode": "realtime", "markers_rate_hz": 30.0})
    params = Params(probe, "simulator")

    # read at start-up: read-only, refused, unchanged
    for name, value in {"tasks": ["hopper_box"], "namespaces": ["x"], "mode": "lockstep", "seed": 5,
                        "profile": "paper", "command_units": "effort", "robot_spacing": 3.0,
                        "description_planar_root": False, "publish_robot_description": False}.items():
        before = params.get(name)
        result = params.set(name, value)
        assert not result.successful and "read-only" in result.reason, (name, result.reason)
        assert params.get(name) == before, name
    # validated when set: a bad value is refused with what is allowed, and the old one stays
    for name, value, reason in (("markers_rate_hz", -5.0, "markers_rate_hz=-5.0: must be a finite number >= 0 Hz"),
                                ("markers_rate_hz", float("nan"), "must be a finite number"),
                                ("resend_after", 0.0, "resend_after=0.0: must be a finite number > 0 s"),
                                ("horizon", -2, "horizon=-2: must be an integer: -1 (each task's own"),
                                ("mode", "fast", "read-only")):
        before = params.get(name)
        result = params.set(name, value)
        assert not result.successful and reason in result.reason, (name, result.reason)
        assert params.get(name) == before
    assert "Wrong parameter type" in params.set("markers_rate_hz", "fast").reason
    unknown = params.set("markers_rate", 5.0)
    assert not unknown.successful and "no parameter 'markers_rate'; parameters: [" in unknown.reason
    assert "'markers_rate_hz'" in unknown.reason

    def rate(seconds: float = 2.0) -> float:
        probe.spin_for(0.3)
        markers.clear()
        probe.spin_for(seconds)
        return len(markers) / seconds

    assert rate() > 15  # 30 Hz, less on a loaded machine
    assert params.set("markers_rate_hz", 5.0).successful and params.get("markers_rate_hz") == 5.0
    assert 3 <= rate() <= 6
    assert params.set("markers_rate_hz", 0.0).successful
    assert rate(1.0) == 0

    # horizon and reset_on_fall: without torques the hopper falls, and is reset, over and over
    probe.spin_until(lambda: status and int(status[-1]["ended_by_fall"]) > 0, 30.0, "a fall and its reset")
    assert params.set("reset_on_fall", False).successful and params.set("horizon", 40).successful
    probe.spin_for(1.2)
    seen = len(status)
    probe.spin_until(lambda: len(status) >= seen + 2, 10.0, "two more diagnostics")
    a, b = status[-2], status[-1]
    assert int(b["ended_by_horizon"]) > int(a["ended_by_horizon"]) and b["ended_by_fall"] == a["ended_by_fall"]
    assert int(b["episode_steps"]) <= 40 and b["horizon"] == "40"
    # never cut, never reset: the episode goes on, lying on the floor
    assert params.set("horizon", 0).successful
    probe.spin_for(1.2)
    seen = len(status)
    probe.spin_until(lambda: len(status) >= seen + 2, 10.0, "two more diagnostics")
    a, b = status[-2], status[-1]
    assert a["episode"] == b["episode"] and int(b["episode_steps"]) > int(a["episode_steps"]) + 50
    assert b["fallen"] == "True"
    assert sim.alive()


def test_lockstep_clock_stamps_reset_service_and_episode_counter(probe, start_node):
    task = get_task("biped_forward")
    model = task.build_model()
    node = probe.node
    clock, states, observations = [], [], []
    answering = [True]
    commands = node.create_publisher(Float64MultiArray, "/biped/commands", topics.COMMANDS.qos)

    def on_observation(msg):
        observations.append(msg)
        if answering[0]:
            commands.publish(Float64MultiArray(data=[0.1] * 6))

    node.create_subscription(Clock, "/clock", lambda m: clock.append(_ns(m.clock)), RECORD_QOS)
    node.create_subscription(JointState, "/biped/joint_states", states.append, RECORD_QOS)
    node.create_subscription(Float64MultiArray, "/biped/observation", on_observation, RECORD_QOS)
    status = _diagnostics(probe, "biped")
    sim = start_node("simulator", {"tasks": ["biped_forward"], "namespaces": ["biped"], "mode": "lockstep",
                                   "markers_rate_hz": 0.0, "resend_after": 0.3})
    probe.spin_until(lambda: len(clock) > 60, 60.0, "60 lockstep steps")
    answering[0] = False
    probe.spin_for(0.5)

    # /clock: one message per step, the control period apart (the probe may have missed the first
    # ones, at time 0, published before it was discovered); every state is stamped on it
    assert clock[0] % DT_NS == 0 and np.all(np.diff(clock) == DT_NS), clock[:10]
    stamps = [_ns(js.header.stamp) for js in states]
    assert np.all(np.diff(stamps) == DT_NS) and set(stamps) - {0} == set(clock) - {0}, (stamps[:5], clock[:5])
    assert len(observations) >= len(clock)  # one per step (and the re-sent ones)
    names = observation_label_names(observations[-1])
    assert names == observation_label(_obs_names(model)).split(",")

    # the reset service: the start pose with the reset noise, a new episode, and the diagnostics say so
    reset = node.create_client(Trigger, "/biped/reset")
    assert reset.wait_for_service(timeout_sec=10.0)
    episode_before = int(status[-1]["episode"]) if status else 1
    n_states = len(states)
    response = probe.call(reset, Trigger.Request())
    assert response.success and response.message == f"biped: episode {episode_before + 1} from the start pose"
    probe.spin_until(lambda: len(states) > n_states, 10.0, "the state after the reset")
    js = states[n_states]
    qpos, qvel = np.zeros(model.nq), np.zeros(model.nv)
    for name, p, v in zip(js.name, js.position, js.velocity):
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        qpos[model.jnt_qposadr[j]], qvel[model.jnt_dofadr[j]] = p, v
    noise = task.reset_noise
    assert np.all(np.abs(qpos - model.qpos0) <= noise) and np.all(np.abs(qvel) <= noise)
    assert not np.allclose(qpos, model.qpos0)  # the noise is there
    probe.spin_until(lambda: status and status[-1]["episode"] == str(episode_before + 1), 10.0, "the diagnostics")
    assert status[-1]["ended_by_reset"] == "1" and status[-1]["episode_steps"] == "0"

    # the commander's answer to the observation before the reset is not applied to the new state:
    # it gets the reset state's observation, and the loop goes on from there
    n_obs, n_clock = len(observations), len(clock)
    commands.publish(Float64MultiArray(data=[0.1] * 6))
    probe.spin_until(lambda: len(observations) > n_obs, 10.0, "the reset state's observation")
    fresh = np.array(observations[n_obs].data)
    np.testing.assert_array_equal(fresh, task.observation(qpos[None], qvel[None])[0])
    assert len(clock) == n_clock  # no step with the old answer
    answering[0] = True
    commands.publish(Float64MultiArray(data=[0.1] * 6))
    probe.spin_until(lambda: len(clock) > n_clock + 20, 30.0, "the loop to go on")
    answering[0] = False

    everyone = node.create_client(Trigger, "/simulator/reset")
    assert everyone.wait_for_service(timeout_sec=10.0)
    assert probe.call(everyone, Trigger.Request()).message == f"biped: episode {episode_before + 2} from the start pose"
    assert "command without a pending observation" not in sim.log()
    assert sim.alive()


def observation_label_names(msg) -> list[str]:
    assert len(msg.layout.dim) == 1 and msg.layout.dim[0].size == len(msg.data)
    return msg.layout.dim[0].label.split(",")


def _obs_names(model) -> list[str]:
    from mt_specialize.envs import planar

    return planar.observation_names(model)


def test_effort_commands_and_the_labelled_observation(probe, start_node):
    """command_units effort: a command of N*m is the joint's effort after the step (up to the gear's
    limit); a command labelled normalized is refused. The observation's fields are named."""
    gear = get_task("hopper_capsule").build_model().actuator_gear[:, 0]
    node = probe.node
    states, observations = [], []
    node.create_subscription(JointState, "/hopper_capsule/joint_states", states.append, RECORD_QOS)
    node.create_subscription(Float64MultiArray, "/hopper_capsule/observation", observations.append, RECORD_QOS)
    commands = node.create_publisher(Float64MultiArray, "/hopper_capsule/commands", topics.COMMANDS.qos)
    sim = start_node("simulator", {"tasks": ["hopper_capsule"], "mode": "lockstep", "command_units": "effort",
                                   "markers_rate_hz": 0.0})
    probe.spin_until(lambda: observations and commands.get_subscription_count(), 30.0, "the simulator")

    steps = [0]

    def step(values, label="") -> JointState:
        """Send one command; the joint_states of the step it makes (stamped on the simulation time)."""
        steps[0] += 1
        stamp = steps[0] * DT_NS
        msg = Float64MultiArray(data=list(values))
        if label:
            msg.layout.dim = [MultiArrayDimension(label=label, size=len(values), stride=len(values))]
        commands.publish(msg)
        probe.spin_until(lambda: any(_ns(js.header.stamp) == stamp for js in states), 10.0, f"step {steps[0]}")
        return next(js for js in states if _ns(js.header.stamp) == stamp)

    def effort(js) -> np.ndarray:
        return np.array([js.effort[list(js.name).index(j)] for j in ("thigh_joint", "leg_joint", "foot_joint")])

    np.testing.assert_allclose(effort(step([30.0, -10.0, 5.5])), [30.0, -10.0, 5.5], rtol=0, atol=1e-9)
    np.testing.assert_allclose(effort(step([1e4, -1e4, 0.0], "effort")), [gear[0], -gear[1], 0.0], atol=1e-9)
    np.testing.assert_allclose(effort(step([0.5, 0.5, 0.5], "normalized")), 0.0, atol=1e-12)
    assert "in normalized units, this simulator's command_units is effort" in sim.log()

    # the observation names its fields: by those names, its values are the last state's joint_states
    js = next(js for js in states if _ns(js.header.stamp) == steps[0] * DT_NS)
    expected = {f"{name}/velocity": float(np.clip(v, -10, 10)) for name, v in zip(js.name, js.velocity)}
    expected.update({f"{name}/position": p for name, p in zip(js.name, js.position) if name != "rootx"})

    def named(msg) -> dict:
        return dict(zip(observation_label_names(msg), msg.data))

    probe.spin_until(lambda: any(named(m) == expected for m in observations), 10.0, "the last state's observation")
    names = observation_label_names(observations[-1])
    assert names[:2] == ["rootz/position", "rooty/position"] and names[5] == "rootx/velocity" and len(names) == 11
