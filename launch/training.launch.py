"""Launch the mt_specialize nodes on a ROS 2 install.

    ros2 launch mt_specialize training.launch.py                      # train + serve + simulate
    ros2 launch mt_specialize training.launch.py learner:=false checkpoint:=/abs/ckpt.safetensors
    ros2 launch mt_specialize training.launch.py learner:=false checkpoint:=policy.onnx mode:=lockstep
    ros2 launch mt_specialize training.launch.py rviz:=true

Starts the simulator, policy_server and learner nodes with config/<node>.yaml (override the directory
with config_dir:=...), and for every robot of config/simulator.yaml a robot_state_publisher (in the
robot's namespace, TF frames prefixed with "<robot>/"), which publishes the robot's
robot_description (the URDF the simulator builds its model from, with the planar root joints), plus a
static transform world -> <robot>/world that puts the robots side by side like the markers. With
rviz:=true, rviz2 with a display config generated for those robots (markers and RobotModel per robot;
written to ~/.cache/mt_specialize/rviz/, or $XDG_CACHE_HOME/mt_specialize/rviz/), or rviz_config:=FILE.

Before anything starts, the parameter files and arguments are checked as `mt-specialize up` checks
them (mt_specialize.ros.preflight: profile, mode, command_units, the learner's profile, and that the
checkpoint fits the simulated robots, trained on the same profile and physics engine); a problem ends
the launch with exit code 1 and the reason. Once running, the simulator, policy_server, learner and
robot_state_publisher are required: if one exits, the launch stops every other process and exits
non-zero (the node's own reason is in the log above). In lockstep mode every node runs on the
simulator's /clock (use_sim_time:=auto).

Ctrl-C stops every node cleanly (exit code 0; the learner writes a checkpoint first, and with
`resume: true` in learner.yaml the next launch continues from it).

No torch is imported here: the checks read the checkpoint's header only.
pip-only users (no launch/rviz2): `mt-specialize up` starts the same three nodes.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "mt_specialize"


class LaunchRefused(RuntimeError):
    """A reason not to start, or to stop: launch logs it and exits with code 1."""


def _on_required_exit(name, event, context):
    """A required node exited on its own (not because the launch is stopping): stop the launch,
    with exit code 1 unless the node exited 0."""
    if context.is_shutdown:
        return None
    code = event.returncode
    if code == 0:
        return [LogInfo(msg=f"required node {name} exited (exit code 0): stopping the launch"),
                Shutdown(reason=f"required node {name} exited")]
    raise LaunchRefused(f"required node {name} exited with code {code} (its reason is logged above): "
                        f"stopping the launch")


def _required(action, name):
    """``action`` (a required node: simulator, policy_server, learner, each robot_state_publisher; not
    the static transforms, not rviz2) and the handler that ends the launch when it exits."""
    return [action, RegisterEventHandler(OnProcessExit(
        target_action=action, on_exit=lambda event, context: _on_required_exit(name, event, context)))]


def _nodes(context):
    from mt_specialize.ros.description import description
    from mt_specialize.ros.preflight import node_params, simulated_robots, startup_problem

    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    config_dir, checkpoint, profile, mode = arg("config_dir"), arg("checkpoint"), arg("profile"), arg("mode")
    learner = IfCondition(LaunchConfiguration("learner")).evaluate(context)
    if checkpoint:
        checkpoint = os.path.abspath(os.path.expanduser(checkpoint))
    problem = startup_problem(config_dir, checkpoint=checkpoint or None, profile=profile or None,
                              mode=mode or None, learner=learner)
    if problem is not None:
        raise LaunchRefused(f"not starting: {problem}")
    sim = node_params(config_dir, "simulator")
    sim_mode = mode or sim.get("mode") or "realtime"
    sim_time = {"auto": sim_mode == "lockstep", "true": True, "false": False}.get(arg("use_sim_time").lower())
    if sim_time is None:
        raise LaunchRefused(f"use_sim_time:={arg('use_sim_time')}: allowed values: ['auto', 'true', 'false']")
    clock = {"use_sim_time": sim_time}
    files = {node: os.path.join(config_dir, f"{node}.yaml") for node in ("simulator", "policy_server", "learner")}
    params = {node: ([path] if os.path.isfile(path) else []) for node, path in files.items()}
    sim_overrides = {"publish_robot_description": False, **clock}  # robot_state_publisher publishes it
    if profile:
        sim_overrides["profile"] = profile
    if mode:
        sim_overrides["mode"] = mode

    actions = _required(Node(package=PACKAGE, executable="simulator", name="simulator", output="screen",
                             parameters=params["simulator"] + [sim_overrides]), "simulator")
    actions += _required(Node(package=PACKAGE, executable="policy_server", name="policy_server", output="screen",
                              parameters=params["policy_server"] + [{**clock, **({"checkpoint": checkpoint}
                                                                                 if checkpoint else {})}]),
                         "policy_server")
    if learner:
        # On Ctrl-C the learner finishes its iteration and writes a checkpoint: give it 30 s before
        # launch escalates to SIGTERM (launch's default is 5 s).
        actions += _required(Node(package=PACKAGE, executable="learner", name="learner", output="screen",
                                  parameters=params["learner"] + [{**clock,
                                                                   **({"profile": profile} if profile else {})}],
                                  sigterm_timeout="30"), "learner")

    robots = simulated_robots(sim)
    spacing = float(sim.get("robot_spacing", 1.5))
    planar_root = bool(sim.get("description_planar_root", True))
    for i, (ns, task) in enumerate(robots):
        actions += _required(Node(
            package="robot_state_publisher", executable="robot_state_publisher", namespace=ns,
            name="robot_state_publisher", output="screen",
            parameters=[{"robot_description": description(task, planar_root), "frame_prefix": f"{ns}/", **clock}]),
            f"{ns}/robot_state_publisher")
        actions.append(Node(
            package="tf2_ros", executable="static_transform_publisher", name=f"world_to_{ns}",
            arguments=["--x", "0", "--y", str(i * spacing), "--z", "0",
                       "--frame-id", "world", "--child-frame-id", f"{ns}/world"],
            parameters=[clock]))

    if IfCondition(LaunchConfiguration("rviz")).evaluate(context):
        namespaces = [ns for ns, _ in robots]
        rviz_file = arg("rviz_config")
        if not rviz_file:
            from mt_specialize.ros.rviz_config import rviz_config, write_cached

            rviz_file = str(write_cached(rviz_config(namespaces, spacing)))
        elif not os.path.isfile(rviz_file):
            raise LaunchRefused(f"rviz_config:={rviz_file}: no such file (leave it empty to generate one "
                                f"for the robots of {files['simulator']})")
        actions.append(LogInfo(msg=f"rviz2 display config {rviz_file} (robots {', '.join(namespaces)})"))
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", rviz_file], parameters=[clock]))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("config_dir", default_value=os.path.join(share, "config"),
                              description="directory with simulator.yaml, policy_server.yaml, learner.yaml"),
        DeclareLaunchArgument("learner", default_value="true", description="start the learner node"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint or ONNX export for the policy server (default: the "
                                          "learner's); refused before anything starts if it does not fit"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("profile", default_value="",
                              description="paper | paper_dart | mujoco | none: robot physics of the simulator and the "
                                          "learner's runs (empty = their config files'; a served checkpoint's "
                                          "run must have trained on it)"),
        DeclareLaunchArgument("mode", default_value="",
                              description="realtime | lockstep: the simulator's (empty = simulator.yaml's)"),
        DeclareLaunchArgument("use_sim_time", default_value="auto",
                              description="auto | true | false: every node on the simulator's /clock (auto: in "
                                          "lockstep mode)"),
        DeclareLaunchArgument("rviz_config", default_value="",
                              description="rviz2 display config (default: generated for the simulated robots)"),
        OpaqueFunction(function=_nodes),
    ])
