"""The package as a ROS 2 user runs it: ``colcon build``, ``ros2 launch mt_specialize
training.launch.py``, ``ros2 service call``, ``ros2 param set``, ``ros2 topic echo``, Ctrl-C.

The real launch system and ``ros2`` command line come from the ros2-harness (``shared/ros2-harness``
next to the repository; ``MT_ROS2_HARNESS=DIR`` points elsewhere): it is installed into this test
run's virtual environment once per session, the package is built once into a temporary colcon
workspace, and every test drives it with the real commands. Without the harness these tests skip.
A Ctrl-C is a SIGINT to the launch's process group, as a terminal sends it; launch then forwards
SIGINT to every node again (``timeout -s INT N ros2 launch ...`` does the same).
"""
from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import DOMAIN_ID, REPO, corrupt_tensors, node_env

pytestmark = pytest.mark.timeout(240)

HARNESS_ENV = "MT_ROS2_HARNESS"
#: Lines that must not appear in a launch log (a node killed by a KeyboardInterrupt, a crash).
UNCLEAN = ("Traceback", "KeyboardInterrupt", "[FATAL]", "process has died", "escalating to", "exit code -")
OUR_NODES = ("simulator", "policy_server", "learner")
#: The harness's stand-in executables (not this package's code).
STANDINS = ("robot_state_publisher", "static_transform_publisher", "rviz2")


def harness_dir() -> Path:
    """``$MT_ROS2_HARNESS``, else ``shared/ros2-harness`` beside the repository or beside one of its
    parent directories (a git worktree in a folder of worktrees)."""
    if os.environ.get(HARNESS_ENV):
        return Path(os.environ[HARNESS_ENV])
    for parent in REPO.parents:
        if (parent / "shared" / "ros2-harness" / "install.sh").is_file():
            return parent / "shared" / "ros2-harness"
    return REPO.parent / "shared" / "ros2-harness"


class Ros2:
    """The colcon workspace and the environment of a shell that sourced its setup.bash and the
    harness's env.sh; ``run`` one ``ros2`` command, ``launch`` the package's launch file."""

    def __init__(self, env: dict, workspace: Path):
        self.env = env
        self.workspace = workspace

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(["ros2", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def echo_once(self, topic: str, msg_type: str, timeout: float = 30.0) -> str:
        """``ros2 topic echo --once TOPIC TYPE``: the first message as YAML text."""
        out = self.run("topic", "echo", "--no-daemon", "--once", "--timeout", str(timeout), topic, msg_type,
                       timeout=timeout + 30)
        assert out.returncode == 0 and out.stdout.strip(), f"no message on {topic}:\n{out.stdout}{out.stderr}"
        return out.stdout

    def progress_after(self, iteration: int, timeout: float = 120.0) -> str:
        """``ros2 topic echo --once /learner/progress`` until a message reports an iteration past
        ``iteration``; that message."""
        end = time.monotonic() + timeout
        while True:
            progress = self.echo_once("/learner/progress", "diagnostic_msgs/msg/DiagnosticArray", timeout=60)
            match = re.search(r"key: iteration\s+value: '(\d+)'", progress)
            if match and int(match.group(1)) > iteration:
                return progress
            assert time.monotonic() < end, f"no progress past iteration {iteration}:\n{progress}"

    def launch(self, cwd: Path, *arguments: str) -> "Launch":
        return Launch(self.env, cwd, arguments)


class Launch:
    """``ros2 launch mt_specialize training.launch.py ARGS`` in its own process group, logged to a file."""

    def __init__(self, env: dict, cwd: Path, arguments):
        self.log_path = Path(cwd) / f"launch_{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["ros2", "launch", "mt_specialize", "training.launch.py", *arguments],
                                     env=env, cwd=str(cwd), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        end = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match:
                return match
            assert self.proc.poll() is None, f"ros2 launch exited ({self.proc.returncode}):\n{self.log()}"
            assert time.monotonic() < end, f"timed out waiting for {pattern!r}:\n{self.log()}"
            time.sleep(0.2)

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """SIGINT to the process group (as a terminal's Ctrl-C); launch's exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def close(self) -> None:
        """End whatever is left of the process group (nothing, if the test passed)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()


def assert_clean_stop(launch: Launch, code: int, nodes=OUR_NODES) -> str:
    """launch exited 0, every one of ``nodes`` "finished cleanly", nothing in UNCLEAN was logged.

    The harness's stand-ins (robot_state_publisher, static_transform_publisher, rviz2) are not this
    package's code: one that finishes uncleanly (a stand-in once hung in rclpy's shutdown until launch
    killed it) is a warning, not a failure of ours."""
    log = launch.log()
    assert code == 0, f"ros2 launch exited {code}:\n{log}"
    for node in nodes:
        finished = re.search(rf"\[INFO\] \[{node}-\d+\]: process has finished cleanly", log)
        if node in STANDINS and not finished:
            warnings.warn(f"harness stand-in {node} did not finish cleanly:\n{log}")
            continue
        assert finished, f"{node}:\n{log}"
    for line in log.splitlines():
        bad = [text for text in UNCLEAN if text in line]
        if not bad:
            continue
        process = re.search(r"\[(\w+)-\d+\]", line)
        if process and process.group(1) in STANDINS:
            warnings.warn(f"harness stand-in {process.group(1)}: {line}")
            continue
        raise AssertionError(f"{bad[0]!r} in the launch log:\n{log}")
    return log


def _kill_our_ros2_daemon() -> None:
    """A ``ros2`` command may have spawned the ros2cli daemon for this test run's domain: end it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ros2cli.daemon.daemonize" in b" ".join(cmdline) and str(DOMAIN_ID).encode() in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGTERM)
            except ProcessLookupError:
                pass


def assert_rviz_shows_every_robot(ros2: Ros2, launch: Launch, robots: list[str]) -> str:
    """rviz2 (the harness's stand-in) got a display config with the markers and the RobotModel
    (robot_description) of every robot in ``robots``, and every topic it names has a publisher:
    those the stand-in reports (``Topic``) from its log, the RobotModel's ``Description Topic``
    (which the stand-in does not read) from ``ros2 topic info``. The config's text."""
    from mt_specialize.ros.rviz_config import config_topics

    match = launch.wait_for(r"rviz2 display config (\S+) \(robots ([^)]*)\)")
    text = Path(match.group(1)).read_text()
    assert match.group(2).split(", ") == robots, match.group(0)
    topics = config_topics(text)
    assert {t for _, t in topics} == {f"/{ns}/{name}" for ns in robots for name in ("markers", "robot_description")}
    listed = ast.literal_eval(launch.wait_for(r"stand-in rviz2: fixed frame 'world', displays (\[.*\])").group(1))
    assert {t for _, t in listed} == {f"/{ns}/markers" for ns in robots}, listed
    for cls, topic in listed:
        launch.wait_for(rf"stand-in rviz2: {re.escape(cls)} on {re.escape(topic)}: [1-9]\d* publisher", timeout=30)
    for cls, topic in topics:
        if (cls, topic) not in listed:
            for _ in range(3):  # discovery in a new process may miss the topic under load: ask again
                info = ros2.run("topic", "info", "--no-daemon", "--spin-time", "5", topic)
                count = re.search(r"Publisher count: (\d+)", info.stdout)
                if info.returncode == 0 and count and int(count.group(1)) >= 1:
                    break
            else:
                raise AssertionError(f"{cls} on {topic}: no publisher\n{info.stdout}{info.stderr}")
    return text


def publishers(ros2: Ros2, topic: str) -> list[str]:
    """The nodes publishing ``topic`` (``ros2 topic info --verbose``; asked again if discovery in the
    new process is not complete yet)."""
    for _ in range(3):
        info = ros2.run("topic", "info", "--no-daemon", "--spin-time", "5", "--verbose", topic)
        nodes = re.findall(r"Node name: (\S+)\s+Node namespace: (\S+)\s+Topic type: \S+\s+Topic type hash: \S+\s+"
                           r"Endpoint type: PUBLISHER", info.stdout)
        if nodes:
            return sorted(f"{namespace.rstrip('/')}/{name}" for name, namespace in nodes)
    return []


@pytest.fixture(scope="session")
def ros2(tmp_path_factory) -> Ros2:
    harness = harness_dir()
    if not (harness / "install.sh").is_file():
        pytest.skip(f"ros2-harness not found at {harness} (expected ../shared/ros2-harness next to the "
                    f"repository, or set {HARNESS_ENV}); the ros2 launch / service / param / topic tests need it")
    if sys.prefix == sys.base_prefix:
        pytest.skip("the ros2-harness installs into a virtual environment; this Python is not in one")
    venv = Path(sys.prefix)
    env = node_env()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # the launch file's generated .rviz
    install = subprocess.run([str(harness / "install.sh"), str(venv)], env=env, capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, f"{harness}/install.sh {venv} failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}"

    workspace = tmp_path_factory.mktemp("colcon_ws")
    (workspace / "src").mkdir()
    (workspace / "src" / "mt_specialize").symlink_to(REPO, target_is_directory=True)
    build = subprocess.run(["colcon", "build", "--packages-select", "mt_specialize"], cwd=workspace, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"colcon build failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}"

    shell = subprocess.run(
        ["bash", "-c", f'source "{workspace}/install/setup.bash" && source "{harness}/env.sh" && env -0'],
        env=env, capture_output=True, timeout=60, check=True)
    sourced = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    yield Ros2(sourced, workspace)
    _kill_our_ros2_daemon()


@pytest.fixture
def launches():
    started: list[Launch] = []
    yield started
    for launch in started:
        launch.close()


def test_colcon_install_has_the_package(ros2):
    out = ros2.run("pkg", "executables", "mt_specialize")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) >= {"mt_specialize", "simulator", "policy_server", "learner"}
    prefix = ros2.run("pkg", "prefix", "mt_specialize").stdout.strip()
    assert Path(prefix) == ros2.workspace / "install" / "mt_specialize"
    share = Path(prefix) / "share" / "mt_specialize"
    assert (share / "launch" / "training.launch.py").is_file() and (share / "config" / "mt_specialize.rviz").is_file()


def test_default_launch_trains_stops_cleanly_and_resumes(ros2, launches, tmp_path):
    """Default arguments: simulator, policy server, learner (biped_fwd_bwd into ./runs), a
    robot_state_publisher and a static transform per robot. Ctrl-C: every process finishes cleanly,
    the learner writes the checkpoint of its last iteration; the next launch resumes from it."""
    run = tmp_path / "runs" / "biped_fwd_bwd_ours_seed1"
    launch = ros2.launch(tmp_path)
    launches.append(launch)
    launch.wait_for(r"\[simulator\]: simulating biped \(biped_forward\)")
    launch.wait_for(r"\[policy_server\]: serving robots \['biped'\]")
    launch.wait_for(rf"\[learner\]: training biped_fwd_bwd \(gradient_guided, seed 1\) into {re.escape(str(run))}")
    launch.wait_for(r"stand-in robot_state_publisher: joint_states names every movable joint")
    progress = ros2.progress_after(0)
    assert "name: 'learner: training'" in progress and "key: return/biped_backward" in progress
    log = assert_clean_stop(launch, launch.ctrl_c(), OUR_NODES + ("robot_state_publisher", "static_transform_publisher"))
    stopped = re.search(r"training stopped after iteration (\d+); last checkpoint \S+ckpt_(\d+)\.safetensors", log)
    assert stopped, log
    iteration, samples = int(stopped.group(1)), int(stopped.group(2))
    assert iteration >= 1 and samples == 8000 * iteration  # biped_fwd_bwd: 8000 samples per iteration
    assert (run / "checkpoints" / f"ckpt_{samples:012d}.safetensors").is_file()

    again = ros2.launch(tmp_path)
    launches.append(again)
    again.wait_for(rf"\[learner\]: training biped_fwd_bwd .* resuming from ckpt_{samples:012d}\.safetensors")
    # after its first iteration the learner re-publishes the newest checkpoint (for the policy server)
    again.wait_for(rf"\[learner\]: new checkpoint \S+ckpt_{samples:012d}\.safetensors")
    log = assert_clean_stop(again, again.ctrl_c())
    # it trained on from there: its stop checkpoint is a later iteration's
    stopped = re.search(r"training stopped after iteration (\d+); last checkpoint \S+ckpt_(\d+)\.safetensors", log)
    assert stopped and int(stopped.group(1)) > iteration and int(stopped.group(2)) > samples, log


def test_serve_a_checkpoint_switch_set_parameters_echo_topics_rviz(ros2, launches, tmp_path, checkpoint_factory):
    """``learner:=false checkpoint:=...  rviz:=true``: commands flow, a service call switches the
    task, ``ros2 param set`` refuses a task of another robot and accepts one of the biped's.
    ``config_dir:=`` adds a second simulated robot: it gets its own robot_state_publisher and
    static transform."""
    config = tmp_path / "config"
    config.mkdir()
    for node in ("policy_server", "learner"):
        (config / f"{node}.yaml").write_text((REPO / "config" / f"{node}.yaml").read_text())
    sim = yaml.safe_load((REPO / "config" / "simulator.yaml").read_text())
    sim["simulator"]["ros__parameters"].update(tasks=["biped_forward", "hopper_box"], namespaces=["biped", "hb"],
                                                robot_spacing=2.0)
    (config / "simulator.yaml").write_text(yaml.safe_dump(sim))
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    launch = ros2.launch(tmp_path, "learner:=false", f"checkpoint:={ckpt}", "rviz:=true", f"config_dir:={config}")
    launches.append(launch)
    launch.wait_for(r"\[hb\.robot_state_publisher\]: stand-in robot_state_publisher: URDF 'hopper_box'")
    launch.wait_for(r"\[hb\.robot_state_publisher\]: stand-in robot_state_publisher: joint_states names every movable")
    launch.wait_for(r"\[world_to_hb\]: stand-in static_transform_publisher: world -> hb/world at \(0, 2(\.0)?, 0\)")
    launch.wait_for(rf"\[policy_server\]: serving robots \['biped'\] \(batched, commands in normalized units\); "
                    rf"checkpoint {re.escape(str(ckpt))}")

    commands = ros2.echo_once("/biped/commands", "std_msgs/msg/Float64MultiArray")
    assert re.search(r"label: normalized\s+size: 6", commands), commands
    joints = ros2.echo_once("/biped/joint_states", "sensor_msgs/msg/JointState")
    assert re.search(r"name:\s+- rootx\s+- rootz\s+- rooty", joints), joints

    call = ros2.run("service", "call", "/biped/switch_to_biped_backward", "std_srvs/srv/Trigger")
    assert call.returncode == 0, call.stdout + call.stderr
    assert "success=True, message='robot biped now runs task biped_backward'" in call.stdout
    launch.wait_for(r"\[policy_server\]: robot biped now runs task biped_backward")

    param = ("param", "set", "--no-daemon", "--timeout", "20", "/policy_server", "task.biped")
    refused = ros2.run(*param, "hopper_box")
    assert "Setting parameter failed: unknown task 'hopper_box' for robot 'biped'; allowed tasks: " \
           "['biped_forward', 'biped_backward']" in refused.stderr, refused.stdout + refused.stderr
    accepted = ros2.run(*param, "biped_forward")
    assert "Set parameter successful" in accepted.stdout, accepted.stdout + accepted.stderr
    got = ros2.run("param", "get", "--no-daemon", "--timeout", "20", "/policy_server", "task.biped")
    assert "String value is: biped_forward" in got.stdout, got.stdout + got.stderr

    # rviz2 (the harness's stand-in) shows both robots and finds a publisher for every topic
    assert_rviz_shows_every_robot(ros2, launch, ["biped", "hb"])
    # robot_state_publisher owns each robot_description, as on every ROS robot: one publisher
    for ns in ("biped", "hb"):
        assert publishers(ros2, f"/{ns}/robot_description") == [f"/{ns}/robot_state_publisher"]
    assert_clean_stop(launch, launch.ctrl_c(), ("simulator", "policy_server", "rviz2"))
    assert "[learner" not in launch.log()


def test_rviz_with_the_default_config_uses_the_committed_display_config(ros2, launches, tmp_path):
    """``rviz:=true`` with the default simulator.yaml: the generated display config is the committed
    config/mt_specialize.rviz, and rviz2 finds a publisher for every topic it names."""
    launch = ros2.launch(tmp_path, "learner:=false", "rviz:=true")
    launches.append(launch)
    text = assert_rviz_shows_every_robot(ros2, launch, ["biped"])
    assert text == (REPO / "config" / "mt_specialize.rviz").read_text()
    assert_clean_stop(launch, launch.ctrl_c(), ("simulator", "policy_server", "rviz2"))


def test_rviz_config_argument_must_name_a_file(ros2, launches, tmp_path):
    launch = ros2.launch(tmp_path, "learner:=false", "rviz:=true", f"rviz_config:={tmp_path / 'none.rviz'}")
    launches.append(launch)
    code = launch.proc.wait(60)
    assert code != 0 and f"rviz_config:={tmp_path / 'none.rviz'}: no such file" in launch.log(), launch.log()


def _started_processes(log: str) -> list[str]:
    return re.findall(r"\[INFO\] \[([\w.]+)-\d+\]: process started with pid", log)


@pytest.mark.parametrize("case", ["missing checkpoint", "misspelt profile", "checkpoint of another profile"])
def test_a_launch_that_cannot_work_is_refused_before_any_node_starts(ros2, launches, tmp_path, checkpoint_factory,
                                                                     case):
    paper = checkpoint_factory("paper.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="paper")
    arguments, reason = {
        "missing checkpoint": ([f"checkpoint:={tmp_path / 'none.safetensors'}"],
                               f"not starting: checkpoint {tmp_path / 'none.safetensors'} cannot be loaded: "
                               f"checkpoint '{tmp_path / 'none.safetensors'}': file not found"),
        "misspelt profile": (["profile:=papr"],
                             "not starting: profile='papr': allowed values: ['paper', 'paper_dart', 'mujoco', 'none']"),
        "checkpoint of another profile": ([f"checkpoint:={paper}"],
                                          f"not starting: checkpoint {paper} was trained on profile 'paper' robots, "
                                          f"the simulator would step profile 'mujoco' ones"),
    }[case]
    launch = ros2.launch(tmp_path, "learner:=false", *arguments)
    launches.append(launch)
    code = launch.proc.wait(60)
    log = launch.log()
    assert code != 0 and reason in log, log
    assert _started_processes(log) == [], log


def test_a_required_node_that_exits_ends_the_launch(ros2, launches, tmp_path, checkpoint_factory):
    """A checkpoint whose header is sound and whose weights are damaged passes the checks before the
    start; the policy server exits 1 when it loads it, and the launch stops everything with exit 1."""
    ckpt = corrupt_tensors(checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6))
    launch = ros2.launch(tmp_path, "learner:=false", f"checkpoint:={ckpt}")
    launches.append(launch)
    code = launch.proc.wait(90)
    log = launch.log()
    assert code != 0, log
    assert "digest mismatch" in log and "required node policy_server exited with code 1" in log, log
    pids = [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", log)]
    assert {"simulator", "policy_server", "robot_state_publisher"} <= set(_started_processes(log)), log
    for pid in pids:  # every process the launch started is gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), pid
    assert re.search(r"\[simulator-\d+\]: process has finished cleanly", log), log


def test_lockstep_on_simulation_time_reset_and_parameters_from_the_command_line(ros2, launches, tmp_path,
                                                                                 checkpoint_factory):
    """mode:=lockstep: every node on /clock (use_sim_time auto), the loop runs, the reset service and
    the parameters answer as docs/ros.md says."""
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    launch = ros2.launch(tmp_path, "learner:=false", "mode:=lockstep", f"checkpoint:={ckpt}")
    launches.append(launch)
    launch.wait_for(r"\[simulator\]: simulating biped \(biped_forward\) in lockstep mode.*stamps on simulation time")
    launch.wait_for(r"\[policy_server\]: serving robots \['biped'\]")
    for node in ("/policy_server", "/biped/robot_state_publisher"):  # (the simulator's says so above)
        got = ros2.run("param", "get", "--no-daemon", "--timeout", "20", node, "use_sim_time")
        assert "Boolean value is: True" in got.stdout, (node, got.stdout + got.stderr)
    assert re.search(r"clock:\s+sec: \d+\s+nanosec: \d+", ros2.echo_once("/clock", "rosgraph_msgs/msg/Clock"))
    commands = ros2.echo_once("/biped/commands", "std_msgs/msg/Float64MultiArray")
    assert re.search(r"label: normalized\s+size: 6", commands), commands

    reset = ros2.run("service", "call", "/biped/reset", "std_srvs/srv/Trigger")
    assert re.search(r"success=True, message='biped: episode \d+ from the start pose'", reset.stdout), reset.stdout
    param = ("param", "set", "--no-daemon", "--timeout", "20", "/simulator")
    refused = ros2.run(*param, "mode", "fast")
    assert "Setting parameter failed: Trying to set a read-only parameter: mode." in refused.stderr + refused.stdout
    refused = ros2.run(*param, "markers_rate_hz", "-5.0")
    assert "Setting parameter failed: markers_rate_hz=-5.0: must be a finite number >= 0 Hz" in refused.stderr, \
        refused.stdout + refused.stderr
    accepted = ros2.run(*param, "horizon", "0")
    assert "Set parameter successful" in accepted.stdout, accepted.stdout + accepted.stderr
    unknown = ros2.run("param", "set", "--no-daemon", "--timeout", "20", "/policy_server", "task.robot2",
                       "biped_forward")
    assert "Setting parameter failed: no robot 'robot2'; robots: ['biped']" in unknown.stderr, unknown.stderr
    assert_clean_stop(launch, launch.ctrl_c(), ("simulator", "policy_server", "robot_state_publisher"))


def test_the_launch_file_imports_no_torch(ros2, tmp_path, checkpoint_factory):
    """Everything the launch file runs before the nodes start (its checks of the files and the
    checkpoint, the robot descriptions, the rviz config), in the launch's own process: no torch."""
    ckpt = checkpoint_factory("biped.safetensors", ["biped_forward", "biped_backward"], 17, 6)
    code = f"""
import importlib.util, os, sys
from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, OpaqueFunction
path = os.path.join(get_package_share_directory("mt_specialize"), "launch", "training.launch.py")
spec = importlib.util.spec_from_file_location("training_launch", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
context = LaunchContext()
context.launch_configurations.update(checkpoint={str(ckpt)!r}, rviz="true")
actions = []
for entity in module.generate_launch_description().entities:
    if isinstance(entity, DeclareLaunchArgument):
        entity.visit(context)
    elif isinstance(entity, OpaqueFunction):
        actions = entity.visit(context)
print(len(actions), sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    out = subprocess.run([sys.executable, "-c", code], env=ros2.env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    count, modules = out.stdout.split(" ", 1)
    assert int(count) > 5 and modules.strip() == "[]", out.stdout
