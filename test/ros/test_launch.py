"""launch/training.launch.py cannot run here (no launch / launch_ros wheels): load it against minimal
stand-ins of those modules and check the nodes it would start, so typos and wrong paths are caught."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config(_Recorder):
    values: dict = {}

    def perform(self, context):
        return self.values[self.args[0]]


@pytest.fixture
def launch_module(monkeypatch, tmp_path):
    fakes = {
        "launch": {"LaunchDescription": _Recorder},
        "launch.actions": {"DeclareLaunchArgument": _Recorder, "OpaqueFunction": _Recorder},
        "launch.conditions": {"IfCondition": _Recorder},
        "launch.substitutions": {"LaunchConfiguration": _Config},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorder},
        "ament_index_python.packages": {"get_package_share_directory": lambda pkg: str(REPO)},
    }
    for name, attrs in fakes.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("training_launch", REPO / "launch" / "training.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_description(launch_module, tmp_path):
    ld = launch_module.generate_launch_description()
    args = {a.args[0]: a.kwargs["default_value"] for a in ld.args[0] if a.args}
    assert args["rviz"] == "false" and args["learner"] == "true"
    assert Path(args["config_dir"]) == REPO / "config"
    opaque = ld.args[0][-1]

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    for node in ("policy_server", "learner"):
        (cfg / f"{node}.yaml").write_text((REPO / "config" / f"{node}.yaml").read_text())
    (cfg / "simulator.yaml").write_text(yaml.safe_dump({"simulator": {"ros__parameters": {
        "tasks": ["hopper_box", "biped_forward"], "namespaces": ["hb", "bp"], "robot_spacing": 2.0}}}))
    _Config.values = {"config_dir": str(cfg), "checkpoint": "/tmp/x.safetensors"}
    actions = opaque.kwargs["function"](context=None)
    nodes = [(a.kwargs["package"], a.kwargs["executable"], a.kwargs.get("namespace")) for a in actions]
    assert ("mt_specialize", "simulator", None) in nodes
    assert ("mt_specialize", "policy_server", None) in nodes
    assert ("mt_specialize", "learner", None) in nodes
    assert ("robot_state_publisher", "robot_state_publisher", "hb") in nodes
    assert ("robot_state_publisher", "robot_state_publisher", "bp") in nodes
    assert ("rviz2", "rviz2", None) in nodes
    server = next(a for a in actions if a.kwargs["executable"] == "policy_server")
    assert server.kwargs["parameters"] == [str(cfg / "policy_server.yaml"), {"checkpoint": "/tmp/x.safetensors"}]
    rsp = next(a for a in actions if a.kwargs.get("namespace") == "bp")
    params = rsp.kwargs["parameters"][0]
    assert params["frame_prefix"] == "bp/" and '<robot name="biped"' in params["robot_description"]
    assert '<joint name="rooty" type="continuous">' in params["robot_description"]
    tf = [a for a in actions if a.kwargs["executable"] == "static_transform_publisher"]
    assert [a.kwargs["arguments"][3] for a in tf] == ["0.0", "2.0"]
    rviz = next(a for a in actions if a.kwargs["executable"] == "rviz2")
    assert Path(rviz.kwargs["arguments"][1]).is_file()
    for node in ("simulator", "policy_server", "learner"):  # the shipped configs parse, right node keys
        data = yaml.safe_load((REPO / "config" / f"{node}.yaml").read_text())
        assert "ros__parameters" in data[node]
