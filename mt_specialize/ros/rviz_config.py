"""rviz2 display configuration for the robots a simulator config lists (no ROS import).

Per robot namespace ``<ns>`` one display group ``<ns>`` with
  - a MarkerArray display of ``/<ns>/markers`` (the MuJoCo geoms, frame ``world``), and
  - a RobotModel display of ``/<ns>/robot_description`` with TF prefix ``<ns>`` (the frames
    ``<ns>/<link>`` that the launch file's robot_state_publisher publishes from ``joint_states``,
    under the static transform ``world -> <ns>/world``).
``launch/training.launch.py`` writes this for the simulator.yaml it starts; ``config/mt_specialize.rviz``
is the one for the default simulator.yaml (``mt-specialize rviz-config`` prints it).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mt_specialize.ros import topics

HEADER = ("# rviz2 display config generated from simulator.yaml ({robots}) by `mt-specialize rviz-config`.\n"
          "# ros2 launch mt_specialize training.launch.py rviz:=true writes its own for the simulator.yaml\n"
          "# it starts; regenerate this one after changing the robots.\n")


def robot_namespaces(sim_params: Mapping[str, Any]) -> list[str]:
    """The robot namespaces of the simulator's ``ros__parameters`` (``namespaces``, else ``tasks``),
    without slashes, as the simulator node reads them (``preflight.simulated_robots``). ValueError
    naming the problem otherwise."""
    from mt_specialize.ros.preflight import simulated_robots

    return [ns for ns, _ in simulated_robots(dict(sim_params))]


def simulator_params(path: str | Path) -> dict:
    """The simulator node's ``ros__parameters`` in a ROS 2 parameter file ({} if it has none)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key in ("simulator", "/simulator", "/**"):
        if isinstance(data.get(key), dict):
            return dict(data[key].get("ros__parameters") or {})
    return {}


def _topic(name: str, durability: str = "Volatile") -> dict:
    return {"Value": name, "Depth": 5, "Durability Policy": durability, "History Policy": "Keep Last",
            "Reliability Policy": "Reliable"}


def _robot_group(ns: str) -> dict:
    return {
        "Class": "rviz_common/Group",
        "Name": ns,
        "Enabled": True,
        "Value": True,
        "Displays": [
            {"Class": "rviz_default_plugins/MarkerArray", "Name": f"{ns} geoms (markers)", "Enabled": True,
             "Topic": _topic(topics.MARKERS.absolute(ns)), "Namespaces": {}, "Value": True},
            {"Class": "rviz_default_plugins/RobotModel", "Name": f"{ns} URDF (robot_state_publisher TF)",
             "Enabled": True, "Description Source": "Topic",
             "Description Topic": _topic(topics.ROBOT_DESCRIPTION.absolute(ns), "Transient Local"),
             "TF Prefix": ns, "Visual Enabled": True, "Collision Enabled": False, "Alpha": 0.5, "Value": True},
        ],
    }


def rviz_config(namespaces: Sequence[str], spacing: float = 1.5, fixed_frame: str = "world") -> str:
    """The .rviz text (YAML) showing every robot in ``namespaces``: markers and RobotModel per robot,
    a grid and TF, fixed frame ``fixed_frame``; the camera looks at the middle of the row of robots
    (``spacing`` m apart along y, the simulator's ``robot_spacing``)."""
    if not namespaces:
        raise ValueError("no robot namespaces: rviz would show nothing")
    width = float(spacing) * (len(namespaces) - 1)
    displays = [{"Class": "rviz_default_plugins/Grid", "Name": "Grid", "Enabled": True, "Cell Size": 1,
                 "Plane": "XY", "Plane Cell Count": 40, "Reference Frame": "<Fixed Frame>",
                 "Color": "160; 160; 164", "Alpha": 0.5, "Value": True}]
    displays += [_robot_group(ns) for ns in namespaces]
    displays.append({"Class": "rviz_default_plugins/TF", "Name": "TF", "Enabled": False, "Show Names": False,
                     "Value": False})
    config = {
        "Panels": [{"Class": "rviz_common/Displays", "Name": "Displays"},
                   {"Class": "rviz_common/Views", "Name": "Views"}],
        "Visualization Manager": {
            "Class": "",
            "Displays": displays,
            "Enabled": True,
            "Global Options": {"Background Color": "48; 48; 48", "Fixed Frame": fixed_frame, "Frame Rate": 30},
            "Name": "root",
            "Tools": [{"Class": "rviz_default_plugins/MoveCamera"}, {"Class": "rviz_default_plugins/Select"}],
            "Value": True,
            "Views": {
                "Current": {"Class": "rviz_default_plugins/Orbit", "Name": "Current View",
                            "Target Frame": "<Fixed Frame>",
                            "Focal Point": {"X": 0, "Y": round(width / 2, 3), "Z": 0.8},
                            "Distance": round(6 + width, 3), "Pitch": 0.15, "Yaw": 4.71,
                            "Near Clip Distance": 0.01, "Value": "Orbit (rviz_default_plugins)"},
                "Saved": None,
            },
        },
        "Window Geometry": {"Height": 800, "Width": 1200, "Hide Left Dock": False},
    }
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=120)
    return HEADER.format(robots=", ".join(namespaces)) + body


def rviz_config_for(simulator_yaml: str | Path) -> str:
    """:func:`rviz_config` for the robots of a simulator parameter file."""
    params = simulator_params(simulator_yaml)
    return rviz_config(robot_namespaces(params), float(params.get("robot_spacing", 1.5)))


def config_topics(text: str) -> list[tuple[str, str]]:
    """(display class, topic) of every display in an .rviz text, groups included: its ``Topic`` and
    ``Description Topic`` values."""
    found = []

    def walk(displays):
        for d in displays or []:
            for key in ("Topic", "Description Topic"):
                value = d.get(key)
                name = value.get("Value") if isinstance(value, dict) else value
                if name:
                    found.append((d.get("Class", "?"), name))
            walk(d.get("Displays"))

    walk((yaml.safe_load(text) or {}).get("Visualization Manager", {}).get("Displays"))
    return found


def write_cached(text: str, cache_dir: str | Path | None = None) -> Path:
    """Write ``text`` to ``<cache>/rviz/<sha256[:16]>.rviz`` (atomically; kept if already there) and
    return the path. ``cache_dir`` default: ``$XDG_CACHE_HOME/mt_specialize``, else
    ``~/.cache/mt_specialize``."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache_dir = Path(base) / "mt_specialize"
    directory = Path(cache_dir) / "rviz"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.rviz"
    if not (path.is_file() and path.read_text() == text):
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path
