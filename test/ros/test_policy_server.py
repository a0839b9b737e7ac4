"""Policy server as a real process; this test process plays the simulator (observation in,
commands out) so every answer can be checked against the checkpoint's own InferencePolicy."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from conftest import Params

from mt_specialize.envs.tasks import get_task
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.ros import topics
from mt_specialize.ros.common import array_msg

pytestmark = pytest.mark.timeout(90)

TASKS = ["hopper_capsule", "hopper_box"]
OBS_DIM, ACT_DIM = 11, 3


class FakeRobot:
    """Publishes observations for one robot namespace and collects the commands."""

    def __init__(self, probe, robot: str):
        self.probe = probe
        self.commands: list[np.ndarray] = []
        self.labels: list[str] = []
        self.pub = probe.node.create_publisher(Float64MultiArray, f"/{robot}/observation", topics.OBSERVATION.qos)
        self.sub = probe.node.create_subscription(
            Float64MultiArray, f"/{robot}/commands", self._on_command, topics.COMMANDS.qos)

    def _on_command(self, msg) -> None:
        self.commands.append(np.array(msg.data))
        self.labels.append(msg.layout.dim[0].label if msg.layout.dim else "")

    def warm_up(self, obs: np.ndarray, timeout: float = 20.0) -> None:
        """Publish until the server answers (discovery done, weights loaded), then drain."""
        self.probe.spin_until(lambda: self.pub.get_subscription_count() > 0 and self.sub.get_publisher_count() > 0,
                              timeout, "the policy server's observation/commands endpoints")
        for _ in range(int(timeout / 0.25)):
            self.pub.publish(array_msg(obs))
            self.probe.spin_for(0.25)
            if self.commands:
                break
        assert self.commands, "the policy server never answered an observation"
        self.probe.spin_for(0.3)
        self.commands.clear()

    def ask(self, obs: np.ndarray, timeout: float = 10.0) -> np.ndarray:
        n = len(self.commands)
        self.pub.publish(array_msg(obs))
        self.probe.spin_until(lambda: len(self.commands) > n, timeout, "a command")
        assert len(self.commands) == n + 1
        return self.commands[-1]


def _param_msg(name: str, value: str) -> ParameterMsg:
    return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def _set_param(probe, name: str, value: str, timeout: float = 10.0):
    client = probe.node.create_client(SetParameters, "/policy_server/set_parameters")
    assert client.wait_for_service(timeout_sec=timeout)
    return probe.call(client, SetParameters.Request(parameters=[_param_msg(name, value)])).results[0]


def _get_param(probe, name: str):
    client = probe.node.create_client(GetParameters, "/policy_server/get_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    return probe.call(client, GetParameters.Request(names=[name])).values[0].string_value


def _expected(policy: InferencePolicy, obs: np.ndarray, task: str) -> np.ndarray:
    return policy.act(obs[None], np.array([policy.task_names.index(task)]))[0]


def test_switch_service_and_task_parameter(probe, start_node, checkpoint_factory):
    # hopper_torso3 is a task of r1's robot model (hopper_capsule, another torso mass); hopper_box is
    # in the checkpoint but is another robot, biped_forward is not in it at all
    names = ["hopper_capsule", "hopper_torso3", "hopper_box"]
    ckpt = checkpoint_factory("a.safetensors", names, OBS_DIM, ACT_DIM, seed=0)
    policy = InferencePolicy.from_checkpoint(ckpt)
    server = start_node("policy_server", {"checkpoint": str(ckpt), "robots": ["r1"], "tasks": ["hopper_capsule"]})
    robot = FakeRobot(probe, "r1")
    rng = np.random.default_rng(0)
    obs = rng.normal(size=OBS_DIM)
    robot.warm_up(obs)

    np.testing.assert_allclose(robot.ask(obs), _expected(policy, obs, "hopper_capsule"), atol=1e-9)
    assert not np.allclose(_expected(policy, obs, "hopper_capsule"), _expected(policy, obs, "hopper_torso3"))

    # Trigger service: the very next observation is served by the other task's weights.
    switch = probe.node.create_client(Trigger, "/r1/switch_to_hopper_torso3")
    assert switch.wait_for_service(timeout_sec=10.0)
    response = probe.call(switch, Trigger.Request())
    assert response.success, response.message
    obs = rng.normal(size=OBS_DIM)
    np.testing.assert_allclose(robot.ask(obs), _expected(policy, obs, "hopper_torso3"), atol=1e-9)
    assert _get_param(probe, "task.r1") == "hopper_torso3"

    # Not a task of this robot: no such service; the parameter path refuses with the allowed tasks.
    for task in ("biped_forward", "hopper_box"):
        assert not probe.node.create_client(Trigger, f"/r1/switch_to_{task}").wait_for_service(timeout_sec=1.0)
        result = _set_param(probe, "task.r1", task)
        assert not result.successful
        assert f"unknown task '{task}'" in result.reason
        assert "['hopper_capsule', 'hopper_torso3']" in result.reason
    obs = rng.normal(size=OBS_DIM)
    np.testing.assert_allclose(robot.ask(obs), _expected(policy, obs, "hopper_torso3"), atol=1e-9)
    assert _get_param(probe, "task.r1") == "hopper_torso3"

    # The parameter path switches too.
    assert _set_param(probe, "task.r1", "hopper_capsule").successful
    obs = rng.normal(size=OBS_DIM)
    np.testing.assert_allclose(robot.ask(obs), _expected(policy, obs, "hopper_capsule"), atol=1e-9)
    assert server.alive()


def test_tasks_of_a_robot_before_a_checkpoint_and_a_checkpoint_that_cannot_be_served(
        probe, start_node, checkpoint_factory):
    # no checkpoint yet: a task of another robot model is refused, one of the biped's is kept for later
    start_node("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"]})
    result = _set_param(probe, "task.biped", "hopper_box", timeout=30.0)
    assert not result.successful
    assert "unknown task 'hopper_box' for robot 'biped'" in result.reason and "biped_backward" in result.reason
    assert _set_param(probe, "task.biped", "biped_backward").successful
    assert _get_param(probe, "task.biped") == "biped_backward"

    # an explicit checkpoint whose tasks do not include the robot's: the node does not start
    hoppers = checkpoint_factory("hoppers.safetensors", TASKS, OBS_DIM, ACT_DIM)
    bad = start_node("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"], "checkpoint": str(hoppers)},
                     node="policy_server")
    assert bad.proc.wait(60) == 1
    log = bad.log()
    assert f"checkpoint '{hoppers}' cannot be served" in log
    assert "none of its tasks ['hopper_capsule', 'hopper_box'] is for the robot model 'biped' of robot 'biped'" in log
    assert "Traceback" not in log


def test_bad_observations_get_the_safe_command(probe, start_node, checkpoint_factory):
    ckpt = checkpoint_factory("a.safetensors", TASKS, OBS_DIM, ACT_DIM)
    policy = InferencePolicy.from_checkpoint(ckpt)
    server = start_node("policy_server", {"checkpoint": str(ckpt), "robots": ["r1"], "tasks": ["hopper_box"]})
    robot = FakeRobot(probe, "r1")
    good = np.linspace(-1, 1, OBS_DIM)
    robot.warm_up(good)

    np.testing.assert_array_equal(robot.ask(np.ones(5)), np.zeros(ACT_DIM))            # too short
    np.testing.assert_array_equal(robot.ask(np.ones(OBS_DIM + 3)), np.zeros(ACT_DIM))  # too long
    bad = good.copy()
    bad[3] = np.nan
    np.testing.assert_array_equal(robot.ask(bad), np.zeros(ACT_DIM))                   # NaN
    bad[3] = np.inf
    np.testing.assert_array_equal(robot.ask(bad), np.zeros(ACT_DIM))                   # inf
    np.testing.assert_array_equal(robot.ask(np.zeros(0)), np.zeros(ACT_DIM))           # empty
    np.testing.assert_allclose(robot.ask(good), _expected(policy, good, "hopper_box"), atol=1e-9)
    assert server.alive()
    log = server.log()
    assert "rejected" in log and "expected 11 values" in log


def test_checkpoint_topic_hot_reload(probe, start_node, checkpoint_factory, tmp_path):
    a = checkpoint_factory("a.safetensors", TASKS, OBS_DIM, ACT_DIM, seed=1)
    b = checkpoint_factory("b.safetensors", TASKS, OBS_DIM, ACT_DIM, seed=2)
    pa, pb = InferencePolicy.from_checkpoint(a), InferencePolicy.from_checkpoint(b)
    topic = probe.node.create_publisher(String, "/checkpoint", topics.CHECKPOINT.qos)
    topic.publish(String(data=str(a)))  # latched: the server, started later, still gets it
    server = start_node("policy_server", {"checkpoint": "", "robots": ["r1"]})
    robot = FakeRobot(probe, "r1")
    obs = np.linspace(-0.5, 0.5, OBS_DIM)
    robot.warm_up(obs)
    # default task: the first of the checkpoint (the robot's name is no task)
    np.testing.assert_allclose(robot.ask(obs), _expected(pa, obs, "hopper_capsule"), atol=1e-9)

    topic.publish(String(data=str(b)))
    want = _expected(pb, obs, "hopper_capsule")
    probe.spin_until(lambda: np.allclose(robot.ask(obs), want, atol=1e-9), 10.0, "the server to serve b")

    # a corrupt file and a missing one are refused; b keeps serving
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b.read_bytes()[:-100] + b"\0" * 100)
    for path in (corrupt, tmp_path / "missing.safetensors"):
        topic.publish(String(data=str(path)))
        probe.spin_until(lambda p=path: f"refused checkpoint '{p}'" in server.log(), 10.0, "the refusal")
        np.testing.assert_allclose(robot.ask(obs), want, atol=1e-9)
    # and through the parameter: refused with the reason
    result = _set_param(probe, "checkpoint", str(corrupt))
    assert not result.successful and "not loaded" in result.reason
    np.testing.assert_allclose(robot.ask(obs), want, atol=1e-9)
    assert server.alive()


def test_batched_serving_of_several_robots(probe, start_node, checkpoint_factory):
    """Three robots, each on its own task, answered by one batched call per tick."""
    names = ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]
    ckpt = checkpoint_factory("a.safetensors", names, OBS_DIM, ACT_DIM)
    policy = InferencePolicy.from_checkpoint(ckpt)
    robots = ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]
    start_node("policy_server", {"checkpoint": str(ckpt), "robots": robots, "rate_mode": "batched"})
    fakes = [FakeRobot(probe, r) for r in robots]
    rng = np.random.default_rng(3)
    for f in fakes:
        f.warm_up(rng.normal(size=OBS_DIM))
    for _ in range(20):
        obs = [rng.normal(size=OBS_DIM) for _ in fakes]
        counts = [len(f.commands) for f in fakes]
        for f, o in zip(fakes, obs):
            f.pub.publish(array_msg(o))
        probe.spin_until(lambda: all(len(f.commands) > c for f, c in zip(fakes, counts)), 10.0, "3 commands")
        for f, o, task in zip(fakes, obs, names):  # robot named after a task runs that task
            np.testing.assert_allclose(f.commands[-1], _expected(policy, o, task), atol=1e-9)


def test_an_onnx_export_is_served_and_commands_come_in_effort_units(probe, start_node, checkpoint_factory, tmp_path):
    """The policy server serves the ONNX export of a checkpoint (onnxruntime) as it serves the
    checkpoint; with command_units effort each command is the gear times the clipped action (N*m)."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    from mt_specialize.learning.onnx_export import export_onnx

    ckpt = checkpoint_factory("a.safetensors", TASKS, OBS_DIM, ACT_DIM, seed=5)
    policy = InferencePolicy.from_checkpoint(ckpt)
    onnx_path, _ = export_onnx(policy, tmp_path / "a.onnx")
    start_node("policy_server", {"checkpoint": str(onnx_path), "robots": ["r1"], "tasks": ["hopper_box"],
                                 "command_units": "effort"})
    robot = FakeRobot(probe, "r1")
    rng = np.random.default_rng(2)
    robot.warm_up(rng.normal(size=OBS_DIM))
    gear = get_task("hopper_box").build_model().actuator_gear[:, 0]
    for scale in (0.1, 3.0):  # actions inside [-1, 1], and beyond it (clipped)
        obs = scale * rng.normal(size=OBS_DIM)
        want = gear * np.clip(_expected(policy, obs, "hopper_box"), -1.0, 1.0)
        np.testing.assert_allclose(robot.ask(obs), want, rtol=0, atol=1e-9)
    assert robot.labels[-1] == "effort"


def test_parameters_of_the_policy_server(probe, start_node, checkpoint_factory):
    ckpt = checkpoint_factory("a.safetensors", TASKS, OBS_DIM, ACT_DIM)
    server = start_node("policy_server", {"checkpoint": str(ckpt), "robots": ["r1"], "tasks": ["hopper_box"]})
    params = Params(probe, "policy_server")
    for name, value in {"robots": ["r2"], "tasks": ["hopper_capsule"], "rate_mode": "immediate",
                        "checkpoint_topic": "other", "batch_timeout_ms": 5.0, "command_units": "effort"}.items():
        before = params.get(name)
        result = params.set(name, value)
        assert not result.successful and "read-only" in result.reason, (name, result.reason)
        assert params.get(name) == before
    # a robot it does not serve, from the parameter and from the command line
    result = params.set("task.robot2", "hopper_box")
    assert not result.successful and result.reason == "no robot 'robot2'; robots: ['r1']"
    switch = subprocess.run([sys.executable, "-m", "mt_specialize.cli", "switch", "robot2", "hopper_box"],
                            capture_output=True, text=True, timeout=90)
    assert switch.returncode == 1 and switch.stderr.strip() == "no robot 'robot2'; robots: ['r1']", switch.stderr
    assert params.get("task.r1") == "hopper_box" and server.alive()
