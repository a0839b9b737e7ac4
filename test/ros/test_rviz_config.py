"""The rviz2 display config: one markers + RobotModel display per simulated robot, the committed
config/mt_specialize.rviz is the one generated for config/simulator.yaml, ``mt-specialize rviz-config``."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from mt_specialize.ros.rviz_config import config_topics, robot_namespaces, rviz_config, rviz_config_for, write_cached


def test_committed_rviz_file_is_the_generated_one_for_the_default_simulator_config():
    committed = (REPO / "config" / "mt_specialize.rviz").read_text()
    assert committed == rviz_config_for(REPO / "config" / "simulator.yaml"), \
        "config/mt_specialize.rviz is stale: run `mt-specialize rviz-config -o config/mt_specialize.rviz`"


def test_every_robot_gets_markers_and_a_robot_model_with_its_tf_prefix():
    text = rviz_config(["biped", "hb", "hopper_capsule"], spacing=2.0)
    assert config_topics(text) == [
        (cls, f"/{ns}/{topic}") for ns in ("biped", "hb", "hopper_capsule")
        for cls, topic in (("rviz_default_plugins/MarkerArray", "markers"),
                           ("rviz_default_plugins/RobotModel", "robot_description"))]
    config = yaml.safe_load(text)["Visualization Manager"]
    groups = [d for d in config["Displays"] if d["Class"] == "rviz_common/Group"]
    models = [m for g in groups for m in g["Displays"] if m["Class"].endswith("RobotModel")]
    assert [m["TF Prefix"] for m in models] == ["biped", "hb", "hopper_capsule"]
    assert all(m["Enabled"] and m["Description Topic"]["Durability Policy"] == "Transient Local" for m in models)
    assert config["Global Options"]["Fixed Frame"] == "world"
    assert config["Views"]["Current"]["Focal Point"]["Y"] == 2.0  # middle of robots at y = 0, 2, 4


def test_namespaces_as_the_simulator_reads_them():
    assert robot_namespaces({"tasks": ["biped_forward", "hopper_box"]}) == ["biped_forward", "hopper_box"]
    assert robot_namespaces({"tasks": ["biped_forward"], "namespaces": ["/biped/"]}) == ["biped"]
    assert robot_namespaces({}) == ["hopper_capsule"]  # the simulator's default task
    with pytest.raises(ValueError, match="namespaces has 1 entries for 2 tasks"):
        robot_namespaces({"tasks": ["biped_forward", "hopper_box"], "namespaces": ["biped"]})
    with pytest.raises(ValueError, match=r"distinct and non-empty, got \['a', 'a'\]"):
        robot_namespaces({"tasks": ["hopper_box", "hopper_box"], "namespaces": ["a", "/a"]})
    with pytest.raises(ValueError, match="must be lists of names"):
        robot_namespaces({"tasks": "hopper_box"})


def test_write_cached_is_content_addressed(tmp_path):
    a = write_cached(rviz_config(["biped"]), tmp_path)
    b = write_cached(rviz_config(["biped"]), tmp_path)
    c = write_cached(rviz_config(["biped", "hb"]), tmp_path)
    assert a == b != c and a.parent == tmp_path / "rviz"
    assert config_topics(c.read_text())[-1] == ("rviz_default_plugins/RobotModel", "/hb/robot_description")


def test_cli_rviz_config(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "simulator.yaml").write_text(yaml.safe_dump(
        {"simulator": {"ros__parameters": {"tasks": ["hopper_box", "hopper_capsule"], "namespaces": ["hb", "hc"]}}}))
    cli = [sys.executable, "-m", "mt_specialize.cli", "rviz-config"]
    out = subprocess.run(cli + ["--config-dir", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [t for _, t in config_topics(out.stdout)] == ["/hb/markers", "/hb/robot_description",
                                                         "/hc/markers", "/hc/robot_description"]
    (config / "simulator.yaml").write_text(yaml.safe_dump(
        {"simulator": {"ros__parameters": {"tasks": ["hopper_box", "hopper_capsule"], "namespaces": ["hb"]}}}))
    bad = subprocess.run(cli + ["--config-dir", str(config)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "namespaces has 1 entries for 2 tasks" in bad.stderr, bad.stderr
    missing = subprocess.run(cli + ["--config-dir", str(tmp_path / "nowhere")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "simulator.yaml does not exist" in missing.stderr, missing.stderr
