"""``mt-specialize up`` / ``switch`` / ``record`` as real processes on loopback."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import corrupt_tensors, tiny_experiment

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "mt_specialize.cli"]


def _config_dir(tmp: Path, *, sim=None, server=None, learner=None) -> Path:
    """A config dir like config/ with some parameters replaced."""
    d = tmp / "config"
    d.mkdir(parents=True, exist_ok=True)
    base = {
        "simulator": {"tasks": ["biped_forward"], "namespaces": ["biped"], "mode": "realtime"},
        "policy_server": {"checkpoint": "", "robots": ["biped"], "tasks": ["biped_forward"]},
        # an unknown experiment: the learner idles with an ERROR diagnostic (no CPU-heavy training)
        "learner": {"experiment": "no_such_experiment", "out_dir": str(tmp / "run")},
    }
    for name, extra in (("simulator", sim), ("policy_server", server), ("learner", learner)):
        base[name].update(extra or {})
        (d / f"{name}.yaml").write_text(yaml.safe_dump({name: {"ros__parameters": base[name]}}))
    return d


class Up:
    def __init__(self, tmp: Path, *args: str):
        self.log_path = tmp / f"up_{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(CLI + ["up", *args], stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(tmp), start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None or text in self.log(), f"up exited early:\n{self.log()}"
            assert time.monotonic() < end, f"timed out waiting for {text!r}:\n{self.log()}"
            time.sleep(0.1)

    def children(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"started (\w+) \(pid (\d+)\)", self.log())}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in self.children().values():  # never leave a node behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


@pytest.fixture
def up(tmp_path):
    started = []

    def _up(*args):
        u = Up(tmp_path, *args)
        started.append(u)
        return u

    yield _up
    for u in started:
        u.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_up_stops_every_child_on_sigterm(up, tmp_path):
    u = up("--config-dir", str(_config_dir(tmp_path)))
    u.wait_for("Ctrl-C stops all nodes")
    u.wait_for("[simulator]: simulating")  # the nodes are up
    u.wait_for("[policy_server]: serving")
    children = u.children()
    assert set(children) == {"simulator", "policy_server", "learner"}
    u.proc.send_signal(signal.SIGTERM)
    assert u.proc.wait(60) == 128 + signal.SIGTERM
    assert all(_gone(pid) for pid in children.values()), u.log()
    assert "SIGTERM received" in u.log() and "all nodes stopped cleanly" in u.log()
    for text in ("Traceback", "[FATAL]", "did not stop cleanly"):
        assert text not in u.log(), u.log()


def test_up_ctrl_c_twice_exits_130_after_the_learners_checkpoint(up, tmp_path):
    """A terminal's Ctrl-C reaches only `up` (the nodes run in their own sessions); pressed twice it
    still lets the learner finish its iteration and write its checkpoint. (Two signals to the nodes
    themselves, at several spacings: test_shutdown.py.)"""
    run = tmp_path / "run"
    u = up("--config-dir", str(_config_dir(tmp_path, learner={"experiment": str(tiny_experiment(tmp_path)),
                                                               "method": "joint", "resume": True})))
    u.wait_for("[policy_server]: serving")
    u.wait_for("[learner]: training tiny")
    end = time.monotonic() + 60
    while not (run / "metrics.csv").is_file():  # an iteration is done
        assert time.monotonic() < end and u.proc.poll() is None, u.log()
        time.sleep(0.1)
    u.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    u.proc.send_signal(signal.SIGINT)
    assert u.proc.wait(60) == 130, u.log()
    log = u.log()
    assert "all nodes stopped cleanly" in log
    for text in ("Traceback", "[FATAL]", "KeyboardInterrupt", "did not stop cleanly"):
        assert text not in log, log
    assert "[learner]: training stopped after iteration" in log
    assert list((run / "checkpoints").glob("ckpt_*.safetensors")), log


def test_up_reports_a_dead_node_and_stops_the_others(up, tmp_path):
    u = up("--config-dir", str(_config_dir(tmp_path)), "--no-learner")
    u.wait_for("[simulator]: simulating")
    u.wait_for("[policy_server]: serving")
    children = u.children()
    assert set(children) == {"simulator", "policy_server"}
    os.kill(children["simulator"], signal.SIGKILL)
    assert u.proc.wait(30) != 0
    assert "node simulator exited (killed by signal SIGKILL)" in u.log()
    assert _gone(children["policy_server"])


def test_up_reports_a_node_that_fails_at_start(up, tmp_path, checkpoint_factory):
    # the header of a checkpoint whose weights are corrupted passes the checks before the start; the
    # policy server finds the damage when it loads the weights, and up stops the simulator
    ckpt = corrupt_tensors(checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6))
    u = up("--config-dir", str(_config_dir(tmp_path)), "--no-learner", "--checkpoint", str(ckpt))
    assert u.proc.wait(60) == 1
    log = u.log()
    assert "node policy_server exited (exit code 1)" in log and "digest mismatch" in log
    assert all(_gone(pid) for pid in u.children().values())


def test_up_checks_the_parameter_files_before_starting(up, tmp_path):
    from mt_specialize.ros.preflight import startup_problem

    cases = [({"sim": {"tasks": ["no_such_task"], "namespaces": []}}, "simulator: no task 'no_such_task'; tasks: "),
             ({"sim": {"profile": "papr"}}, "profile='papr': allowed values: ['paper', 'paper_dart', 'mujoco', 'none']"),
             ({"sim": {"mode": "fast"}}, "simulator mode='fast': allowed values: ['realtime', 'lockstep']"),
             ({"server": {"command_units": "effort"}}, "policy_server.yaml command_units='effort' but simulator.yaml "
                                                       "command_units='normalized'"),
             ({"learner": {"profile": "paper"}}, "learner.yaml profile 'paper' but simulator.yaml profile 'mujoco'")]
    dirs = [_config_dir(tmp_path / str(k), **files) for k, (files, _) in enumerate(cases)]
    for config_dir, (_, reason) in zip(dirs, cases):
        assert reason in startup_problem(config_dir), reason
    assert startup_problem(_config_dir(tmp_path / "ok"), learner=False, profile="paper") is None
    # what up does with such a problem: nothing starts, exit 2 with the reason
    u = up("--config-dir", str(dirs[1]))
    assert u.proc.wait(60) == 2, u.log()
    assert f"mt-specialize up: not starting: {cases[1][1]}" in u.log() and "started" not in u.log(), u.log()


def test_up_refuses_a_checkpoint_for_other_robots(up, tmp_path, checkpoint_factory):
    hoppers = checkpoint_factory("hoppers.safetensors", ["hopper_capsule", "hopper_box"], 11, 3)
    u = up("--config-dir", str(_config_dir(tmp_path)), "--no-learner", "--checkpoint", str(hoppers))
    assert u.proc.wait(60) == 2
    log = u.log()
    assert f"not starting: checkpoint {hoppers} has tasks ['hopper_capsule', 'hopper_box'], not 'biped_forward', " \
           "the task policy_server.yaml gives robot 'biped' (simulated as task 'biped_forward'" in log
    assert "started" not in log

    # the check itself: without a task in policy_server.yaml the robot model decides; a biped
    # checkpoint fits; one with the biped's tasks but another observation size does not
    from mt_specialize.ros.preflight import checkpoint_misfit

    no_tasks = _config_dir(tmp_path / "no_tasks", server={"tasks": []})
    assert "none of them for robot 'biped' (simulated as task 'biped_forward', robot model 'biped')" \
        in checkpoint_misfit(hoppers, no_tasks)
    biped = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    assert checkpoint_misfit(biped, no_tasks) is None
    assert checkpoint_misfit(biped, _config_dir(tmp_path)) is None
    wrong_size = checkpoint_factory("wide.safetensors", ["biped_forward", "biped_backward"], 20, 6)
    assert "expects 20 observation values, robot 'biped'" in checkpoint_misfit(wrong_size, no_tasks)
    assert "cannot be loaded" in checkpoint_misfit(tmp_path / "no_such.safetensors", no_tasks)
    # the robot physics its run trained on must be the simulator's (simulator.yaml's profile, or --profile)
    paper = checkpoint_factory("paper.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="paper")
    assert "was trained on profile 'paper' robots, the simulator would step profile 'mujoco' ones (pass " \
           "--profile paper" in checkpoint_misfit(paper, no_tasks)
    assert checkpoint_misfit(paper, no_tasks, "paper") is None
    assert "trained on profile 'mujoco'" in checkpoint_misfit(
        checkpoint_factory("m.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="mujoco"),
        no_tasks, "paper")


def test_switch_before_a_checkpoint(start_node):
    start_node("policy_server", {"robots": ["biped"], "tasks": ["biped_forward"]})
    bad = subprocess.run(CLI + ["switch", "biped", "hopper_box", "--timeout", "30"], capture_output=True,
                         text=True, timeout=90)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "refused: unknown task 'hopper_box' for robot 'biped'" in bad.stderr and "biped_backward" in bad.stderr
    ok = subprocess.run(CLI + ["switch", "biped", "biped_backward", "--timeout", "30"], capture_output=True,
                        text=True, timeout=90)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "robot biped will run task biped_backward (no checkpoint loaded yet)" in ok.stdout


def test_switch_and_record_against_up(up, tmp_path, checkpoint_factory):
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    u = up("--config-dir", str(_config_dir(tmp_path)), "--no-learner", "--checkpoint", str(ckpt))
    u.wait_for("[policy_server]: serving")

    ok = subprocess.run(CLI + ["switch", "biped", "biped_backward"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "now runs task biped_backward" in ok.stdout
    u.wait_for("robot biped now runs task biped_backward")

    bad = subprocess.run(CLI + ["switch", "biped", "moonwalk"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "moonwalk" in bad.stderr and "biped_forward" in bad.stderr and "biped_backward" in bad.stderr

    out = tmp_path / "rec.mcap"
    rec = subprocess.run(CLI + ["record", str(out), "--duration", "2"], capture_output=True, text=True,
                         timeout=60)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    _check_mcap(out)


def _check_mcap(path: Path) -> None:
    """Read the file twice: with rclpy's CDR deserializer, and as Foxglove does, decoding each message
    from the schema text stored in the file alone (mcap-ros2-support's decoder)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState
    from visualization_msgs.msg import MarkerArray

    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        header = reader.get_header()
        assert header.profile == "ros2"
        counts: dict[str, int] = {}
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/biped/joint_states":
                assert schema.name == "sensor_msgs/msg/JointState"
                assert b"MSG: std_msgs/msg/Header" in schema.data
                js = deserialize_message(message.data, JointState)
                assert js.name[:3] == ["rootx", "rootz", "rooty"] and len(js.position) == 9
                assert list(decoded.name) == list(js.name) and list(decoded.position) == list(js.position)
            elif channel.topic == "/biped/markers":
                assert schema.name == "visualization_msgs/msg/MarkerArray"
                ma = deserialize_message(message.data, MarkerArray)
                assert ma.markers and ma.markers[0].header.frame_id == "world"
                assert len(decoded.markers) == len(ma.markers)
                assert decoded.markers[0].header.frame_id == "world"
                assert decoded.markers[0].pose.position.z == ma.markers[0].pose.position.z
    assert counts.get("/biped/joint_states", 0) > 100  # 125 Hz for 2 s
    assert counts.get("/biped/markers", 0) > 20        # 30 Hz
