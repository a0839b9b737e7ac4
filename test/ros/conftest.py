"""Fixtures for the ROS 2 integration tests: real rclpy processes, DDS kept on loopback.

Every test run uses its own ``ROS_DOMAIN_ID`` (the one in the environment, else one derived from
the pid) and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; this is set before rclpy is initialised in
this process and passed to every node process the tests start.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

# --- keep DDS on this machine, one domain per test run (before any rclpy.init) ----------------
DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID") or 1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
os.environ.setdefault("HOME", tempfile.gettempdir())
os.environ.pop("ROS_LOCALHOST_ONLY", None)

REPO = Path(__file__).resolve().parents[2]


def node_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


def write_params(path: Path, node: str, params: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({node: {"ros__parameters": params}}))
    return path


class NodeProcess:
    """A node started as ``python -m mt_specialize.ros.<module>`` with a params file."""

    def __init__(self, module: str, params: dict, tmp: Path, node: str | None = None):
        self.name = module
        pfile = write_params(tmp / f"{module}_{time.monotonic_ns()}.yaml", f"/{node or module}", params)
        self.log_path = tmp / f"{module}_{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"mt_specialize.ros.{module}", "--ros-args", "--params-file", str(pfile)],
            stdout=self._log, stderr=subprocess.STDOUT, env=node_env(), cwd=str(tmp), start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path):
    """start_node(module, params, node=None) -> NodeProcess; all are stopped after the test."""
    procs: list[NodeProcess] = []

    def _start(module: str, params: dict, node: str | None = None) -> NodeProcess:
        p = NodeProcess(module, params, tmp_path, node)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.stop()


class Probe:
    """An rclpy node in the test process, spun by hand (EventsExecutor)."""

    def __init__(self, name: str = "test_probe"):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = make_executor_for(self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, predicate, timeout: float = 10.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, client, request, timeout: float = 10.0):
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"a response from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


class Params:
    """A node's parameters through its services, as ``ros2 param set/get`` uses them."""

    def __init__(self, probe: Probe, node: str, timeout: float = 20.0):
        from rcl_interfaces.srv import GetParameters, SetParameters

        self.probe, self._Get, self._Set = probe, GetParameters, SetParameters
        self.setter = probe.node.create_client(SetParameters, f"/{node}/set_parameters")
        self.getter = probe.node.create_client(GetParameters, f"/{node}/get_parameters")
        ready = self.setter.wait_for_service(timeout_sec=timeout) and self.getter.wait_for_service(timeout_sec=timeout)
        assert ready, f"no parameter services of /{node}"

    def set(self, name: str, value):
        """SetParametersResult of setting ``name`` to ``value`` (a Python value, typed as rclpy types it)."""
        from rclpy.parameter import Parameter

        msg = Parameter(name, value=value).to_parameter_msg()
        return self.probe.call(self.setter, self._Set.Request(parameters=[msg])).results[0]

    def get(self, name: str):
        """The value of ``name`` as a Python value (a list for arrays), None if it has none."""
        from rclpy.parameter import parameter_value_to_python

        values = self.probe.call(self.getter, self._Get.Request(names=[name])).values
        if not values:  # declared without a value
            return None
        result = parameter_value_to_python(values[0])
        return list(result) if isinstance(result, (list, tuple)) or hasattr(result, "tolist") else result


def make_executor_for(context):
    try:
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    except Exception:  # pragma: no cover
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)


@pytest.fixture
def probe():
    node = Probe(f"test_probe_{os.getpid()}")
    yield node
    node.close()


def make_checkpoint(path: Path, task_names, obs_dim: int, act_dim: int, seed: int = 0,
                    profile: str | None = None, config: dict | None = None) -> Path:
    """A policy checkpoint in the trainer's format whose tasks all differ (every weight split,
    per-task weights random), for the policy-server tests; ``profile``: its run's, ``config``: more
    of its run's recorded settings (neither: no run config)."""
    import torch

    from mt_specialize.learning.checkpoint import save_checkpoint
    from mt_specialize.learning.normalize import RunningMeanStd
    from mt_specialize.learning.policy import SplitGaussianPolicy

    gen = torch.Generator().manual_seed(seed)
    policy = SplitGaussianPolicy(len(task_names), obs_dim, act_dim)
    state = policy.state_dict()
    for key, value in state.items():
        if key.endswith("_mask"):
            state[key] = torch.ones_like(value)
        elif key.endswith("weight_task"):
            state[key] = torch.randn(value.shape, generator=gen) / value.shape[-2] ** 0.5
        elif key.endswith("bias_task"):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
    policy.load_state_dict(state)
    rms = RunningMeanStd(len(task_names), (obs_dim,))
    tensors = {f"policy/{k}": v.detach().clone() for k, v in policy.state_dict().items()}
    tensors.update({f"obs_rms/{k}": v.detach().clone() for k, v in rms.state_dict().items()})
    save_checkpoint(path, tensors, {"task_names": list(task_names), "obs_dim": obs_dim, "act_dim": act_dim,
                                    "policy_in": obs_dim, "experiment": "test",
                                    **({"config": {**({"profile": profile} if profile else {}), **(config or {})}}
                                       if profile or config else {})})
    return path


def corrupt_tensors(path: Path) -> Path:
    """Flip one byte of a checkpoint's tensor data (its header, and so everything a start-up check
    reads without loading the weights, stays valid; loading fails on the digest)."""
    import struct

    data = bytearray(path.read_bytes())
    header = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
    data[header + (len(data) - header) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


#: Samples per iteration of :func:`tiny_experiment` (a fraction of a second per iteration).
TINY_BATCH = 1024


def tiny_experiment(directory: Path) -> Path:
    """An experiment YAML with one hopper task and a small batch (``TINY_BATCH`` samples per
    iteration), for learner runs that must iterate quickly."""
    path = Path(directory) / "tiny_experiment.yaml"
    path.write_text(f"name: tiny\nbatch_size: {TINY_BATCH}\nbudget: 400000\ntasks: [hopper_capsule]\n")
    return path


@pytest.fixture
def checkpoint_factory(tmp_path):
    """checkpoint_factory(name, task_names, obs_dim, act_dim, seed=0, profile=None, config=None) -> Path of a
    new checkpoint (``make_checkpoint``)."""

    def _make(name: str, task_names, obs_dim: int, act_dim: int, seed: int = 0, profile: str | None = None,
              config: dict | None = None) -> Path:
        return make_checkpoint(tmp_path / name, task_names, obs_dim, act_dim, seed, profile, config)

    return _make
