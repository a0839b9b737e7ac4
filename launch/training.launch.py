"""Launch the mt_specialize nodes on a ROS 2 install.

    ros2 launch mt_specialize training.launch.py                      # train + serve + simulate
    ros2 launch mt_specialize training.launch.py learner:=false checkpoint:=/abs/ckpt.safetensors
    ros2 launch mt_specialize training.launch.py rviz:=true

Starts the simulator, policy_server and learner nodes with config/<node>.yaml (override the directory
with config_dir:=...), and for every robot of config/simulator.yaml a robot_state_publisher (in the
robot's namespace, TF frames prefixed with "<robot>/") plus a static transform world -> <robot>/world
that puts the robots side by side like the markers. With rviz:=true, rviz2 with a display config
generated for those robots (markers and RobotModel per robot; written to
~/.cache/mt_specialize/rviz/, or $XDG_CACHE_HOME/mt_specialize/rviz/), or rviz_config:=FILE.

Ctrl-C stops every node cleanly (exit code 0; the learner writes a checkpoint first, and with
`resume: true` in learner.yaml the next launch continues from it).

pip-only users (no launch/rviz2): `mt-specialize up` starts the same three nodes.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "mt_specialize"


def _params(config_dir, node):
    path = os.path.join(config_dir, f"{node}.yaml")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    for key in (node, f"/{node}", "/**"):
        if key in data:
            return path, data[key].get("ros__parameters", {})
    return path, {}


def _robot_description(task_name):
    """The URDF the simulator publishes (planar root joints added), for robot_state_publisher."""
    from mt_specialize.envs.tasks import get_task
    from mt_specialize.ros.simulator import urdf_text, with_planar_root

    return with_planar_root(urdf_text(get_task(task_name)))


def _nodes(context):
    from mt_specialize.ros.rviz_config import robot_namespaces

    config_dir = LaunchConfiguration("config_dir").perform(context)
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    profile = LaunchConfiguration("profile").perform(context)
    profile_param = [{"profile": profile}] if profile else []  # the simulator's robots = the learner's
    sim_file, sim = _params(config_dir, "simulator")
    server_file, _ = _params(config_dir, "policy_server")
    learner_file, _ = _params(config_dir, "learner")

    actions = [
        Node(package=PACKAGE, executable="simulator", name="simulator", output="screen",
             parameters=[sim_file] + profile_param),
        Node(package=PACKAGE, executable="policy_server", name="policy_server", output="screen",
             parameters=[server_file] + ([{"checkpoint": checkpoint}] if checkpoint else [])),
        # On Ctrl-C the learner finishes its iteration and writes a checkpoint: give it 30 s before
        # launch escalates to SIGTERM (launch's default is 5 s).
        Node(package=PACKAGE, executable="learner", name="learner", output="screen",
             parameters=[learner_file] + profile_param, condition=IfCondition(LaunchConfiguration("learner")),
             sigterm_timeout="30"),
    ]

    tasks = list(sim.get("tasks", ["hopper_capsule"]))
    namespaces = robot_namespaces(sim)
    spacing = float(sim.get("robot_spacing", 1.5))
    for i, (task, ns) in enumerate(zip(tasks, namespaces)):
        actions.append(Node(
            package="robot_state_publisher", executable="robot_state_publisher", namespace=ns,
            name="robot_state_publisher", output="screen",
            parameters=[{"robot_description": _robot_description(task), "frame_prefix": f"{ns}/"}]))
        actions.append(Node(
            package="tf2_ros", executable="static_transform_publisher", name=f"world_to_{ns}",
            arguments=["--x", "0", "--y", str(i * spacing), "--z", "0",
                       "--frame-id", "world", "--child-frame-id", f"{ns}/world"]))

    if IfCondition(LaunchConfiguration("rviz")).evaluate(context):
        rviz_file = LaunchConfiguration("rviz_config").perform(context)
        if not rviz_file:
            from mt_specialize.ros.rviz_config import rviz_config, write_cached

            rviz_file = str(write_cached(rviz_config(namespaces, spacing)))
        elif not os.path.isfile(rviz_file):
            raise FileNotFoundError(f"rviz_config:={rviz_file}: no such file (leave it empty to generate one "
                                    f"for the robots of {sim_file})")
        actions.append(LogInfo(msg=f"rviz2 display config {rviz_file} (robots {', '.join(namespaces)})"))
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", rviz_file]))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("config_dir", default_value=os.path.join(share, "config"),
                              description="directory with simulator.yaml, policy_server.yaml, learner.yaml"),
        DeclareLaunchArgument("learner", default_value="true", description="start the learner node"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint for the policy server (default: the learner's)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("profile", default_value="",
                              description="paper | mujoco | none: robot physics of the simulator and the "
                                          "learner's runs (empty = their config files'; a served checkpoint's "
                                          "run must have trained on it)"),
        DeclareLaunchArgument("rviz_config", default_value="",
                              description="rviz2 display config (default: generated for the simulated robots)"),
        OpaqueFunction(function=_nodes),
    ])
