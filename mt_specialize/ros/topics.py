"""Every topic and service of the nodes: its name, message type and QoS, in one place.

Per robot (``per_robot``), a name is relative to the robot's namespace: ``OBSERVATION.of("biped")``
is ``biped/observation`` (relative to the node's namespace, ``/biped/observation`` for the nodes of
the launch file). The QoS is described by plain fields; :attr:`Topic.qos` builds the rclpy profile
(rclpy is imported only then, so ``rviz_config`` and the launch file can read names without it).

================================  =====================================  ===========================
topic                             type                                   QoS
================================  =====================================  ===========================
``<robot>/joint_states``          sensor_msgs/msg/JointState             reliable, volatile, 10
``<robot>/robot_description``     std_msgs/msg/String                    reliable, transient local, 1
``<robot>/markers``               visualization_msgs/msg/MarkerArray     reliable, volatile, 10
``<robot>/observation``           std_msgs/msg/Float64MultiArray         reliable, volatile, 10
``<robot>/commands``              std_msgs/msg/Float64MultiArray         reliable, volatile, 10
``checkpoint``                    std_msgs/msg/String                    reliable, transient local, 1
``~/progress`` (learner)          diagnostic_msgs/msg/DiagnosticArray    reliable, volatile, 10
``/diagnostics`` (simulator)      diagnostic_msgs/msg/DiagnosticArray    reliable, volatile, 10
``/clock`` (simulator)            rosgraph_msgs/msg/Clock                reliable, volatile, 10
================================  =====================================  ===========================

Reliable publishers match reliable and best-effort subscribers (rviz, robot_state_publisher,
``ros2 topic echo``, rclpy's ``/clock`` subscription); the control loop is reliable so that lockstep
never loses a step. A late subscriber of a transient-local topic gets its last message
(``ros2 topic pub --qos-durability transient_local /checkpoint ...`` to publish a checkpoint path).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Topic:
    """A topic: ``name`` (relative to the robot namespace if ``per_robot``), ``type``
    (``pkg/msg/Name``), and its QoS: reliable, ``durability`` (``volatile`` | ``transient_local``),
    KEEP_LAST ``depth``."""

    name: str
    type: str
    durability: str = "volatile"
    depth: int = 10
    per_robot: bool = True

    def of(self, robot: str) -> str:
        """The topic name of robot namespace ``robot``: ``<robot>/<name>``."""
        if not self.per_robot:
            raise ValueError(f"topic {self.name} is not per robot")
        return f"{robot.strip().strip('/')}/{self.name}"

    def absolute(self, robot: str = "") -> str:
        """``/<robot>/<name>`` (``/<name>`` for a topic that is not per robot)."""
        return "/" + (self.of(robot) if self.per_robot else self.name.lstrip("/"))

    @cached_property
    def msg_class(self):
        """The message class (``std_msgs.msg.String`` for ``std_msgs/msg/String``)."""
        package, kind, name = self.type.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)

    @cached_property
    def qos(self):
        """The rclpy ``QoSProfile``: reliable, this durability, KEEP_LAST ``depth``."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if self.durability == "transient_local"
                          else DurabilityPolicy.VOLATILE)


# -- per robot ------------------------------------------------------------------------------------
#: sensor_msgs/JointState of every hinge and slide joint (root ``rootx``, ``rootz``, ``rooty`` too);
#: position rad or m, velocity rad/s or m/s, effort N*m or N (the actuator force on the joint).
JOINT_STATES = Topic("joint_states", "sensor_msgs/msg/JointState")
#: The URDF (with the planar root joints); published by robot_state_publisher on a ROS install.
ROBOT_DESCRIPTION = Topic("robot_description", "std_msgs/msg/String", "transient_local", 1)
#: The MuJoCo geoms as markers in frame ``world``.
MARKERS = Topic("markers", "visualization_msgs/msg/MarkerArray")
#: The policy input; ``layout.dim[0].label`` names the fields (``simulator.observation_label``).
OBSERVATION = Topic("observation", "std_msgs/msg/Float64MultiArray")
#: One value per actuator, in the simulator's ``command_units``; ``layout.dim[0].label`` may say which.
COMMANDS = Topic("commands", "std_msgs/msg/Float64MultiArray")

# -- not per robot --------------------------------------------------------------------------------
#: The path of each new checkpoint (learner -> policy server; the server's ``checkpoint_topic``).
CHECKPOINT = Topic("checkpoint", "std_msgs/msg/String", "transient_local", 1, per_robot=False)
#: The learner's training progress (``/learner/progress``).
PROGRESS = Topic("~/progress", "diagnostic_msgs/msg/DiagnosticArray", per_robot=False)
#: The simulator's per-robot episode status (the standard diagnostics topic).
DIAGNOSTICS = Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", per_robot=False)
#: The simulation time, one message per simulation step (``use_sim_time``).
CLOCK = Topic("/clock", "rosgraph_msgs/msg/Clock", per_robot=False)

# -- services (std_srvs/srv/Trigger) --------------------------------------------------------------
TRIGGER = "std_srvs/srv/Trigger"


def switch_service(robot: str, task: str) -> str:
    """``/<robot>/switch_to_<task>`` (policy server), the task name made safe for a ROS name."""
    import re

    return f"/{robot.strip('/')}/switch_to_{re.sub(r'[^A-Za-z0-9_]', '_', task)}"


def reset_service(robot: str = "") -> str:
    """``/<robot>/reset`` (simulator: that robot), or ``/simulator/reset`` (every robot) without one."""
    return f"/{robot.strip('/')}/reset" if robot else "/simulator/reset"


def msg_class(type_name: str):
    """``pkg/msg/Name`` or ``pkg/srv/Name`` -> the Python class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)
