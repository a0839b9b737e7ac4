"""The robot description (URDF) of a simulated robot, as robot_state_publisher gets it (no torch).

The simulator builds each robot's MuJoCo model from its task's URDF (``envs.robots``); the launch file
gives robot_state_publisher the same URDF with the simulator's planar root joints added
(:func:`description`), and robot_state_publisher publishes it on ``/<robot>/robot_description`` as on
every ROS robot. Without robot_state_publisher (``mt-specialize up``), the simulator publishes it
itself (its ``publish_robot_description`` parameter).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def description(task, planar_root: bool = True) -> str:
    """The URDF of ``task``'s robot (a TaskSpec or a task name), with the planar root chain unless
    ``planar_root`` is False: the robot_description of a simulated robot."""
    text = urdf_text(task)
    return with_planar_root(text) if planar_root else text


def urdf_text(task) -> str:
    """The URDF text of a task's robot (``robots.get_robot(task.robot).urdf``; ``task``: a TaskSpec
    or a task name), '' if none."""
    if isinstance(task, str):
        from mt_specialize.envs.tasks import get_task

        task = get_task(task)
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
