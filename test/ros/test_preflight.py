"""The checks before any node starts (``ros.preflight``), read without torch: a checkpoint's header
says what its weights would; the simulator's default profile is the trainer's; a checkpoint of
another physics engine is refused."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from mt_specialize.learning.checkpoint import FORMAT, CheckpointError, load_checkpoint
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.learning.policy_file import CHECKPOINT_FORMAT, PolicyFileError, policy_file_info
from mt_specialize.ros.preflight import DEFAULT_PROFILE, checkpoint_misfit, startup_problem, trained_engine


def _config(tmp_path, **sim) -> str:
    d = tmp_path / "config"
    d.mkdir(exist_ok=True)
    params = {"tasks": ["biped_forward"], "namespaces": ["biped"], **sim}
    (d / "simulator.yaml").write_text(yaml.safe_dump({"simulator": {"ros__parameters": params}}))
    (d / "policy_server.yaml").write_text(yaml.safe_dump({"policy_server": {"ros__parameters": {
        "robots": ["biped"], "tasks": ["biped_forward"]}}}))
    return str(d)


def test_defaults_agree_with_the_trainer_and_the_checkpoint_module():
    from mt_specialize.config import TrainConfig

    assert DEFAULT_PROFILE == TrainConfig.profile and CHECKPOINT_FORMAT == FORMAT


def test_the_header_says_what_loading_the_weights_says(checkpoint_factory, tmp_path):
    path = checkpoint_factory("b.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="paper")
    info, policy = policy_file_info(path), InferencePolicy.from_checkpoint(path)
    assert (info.kind, info.task_names, info.obs_dim, info.act_dim) == \
        ("checkpoint", policy.task_names, policy.obs_dim, policy.act_dim)
    assert info.run_config == policy.run_config == load_checkpoint(path)[1]["config"] and info.profile == "paper"
    for bad, what in ((tmp_path / "none.safetensors", "file not found"), (tmp_path, "is a directory")):
        with pytest.raises(PolicyFileError, match=what):
            policy_file_info(bad)
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04\x95" + bytes(range(256)) * 4)
    with pytest.raises(PolicyFileError, match="not a safetensors file"):
        policy_file_info(pickle)
    with pytest.raises(CheckpointError):  # the same file, loaded: refused as well
        InferencePolicy.from_checkpoint(pickle)


def test_a_checkpoint_of_another_physics_engine_is_refused(checkpoint_factory, tmp_path):
    config = _config(tmp_path)
    dart = checkpoint_factory("dart.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="mujoco",
                              config={"physics": {"engine": "dart"}})
    assert trained_engine(policy_file_info(dart).run_config) == {"dart"}
    assert "was trained on the dart physics engine, the simulator would step its robots with mujoco (profile " \
           "'mujoco'" in checkpoint_misfit(dart, config)
    per_task = checkpoint_factory("t.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="mujoco",
                                  config={"task_physics": {"biped_forward": {"engine": "dart"},
                                                           "biped_backward": {"engine": "dart"}}})
    assert "dart physics engine" in checkpoint_misfit(per_task, config)
    plain = checkpoint_factory("m.safetensors", ["biped_forward", "biped_backward"], 17, 6, profile="mujoco")
    assert checkpoint_misfit(plain, config) is None and startup_problem(config, checkpoint=plain) is None
    assert np.isfinite(policy_file_info(plain).obs_dim)
