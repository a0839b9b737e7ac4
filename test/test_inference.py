"""Serving a trained policy without ROS: loading, export, batched per-robot tasks, bad input."""
import numpy as np
import pytest

from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.config import TrainConfig
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.train import Trainer, latest_checkpoint


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    (tmp / "exp.yaml").write_text("name: pair\nbatch_size: 384\nbudget: 1536\n"
                                  "tasks: [hopper_capsule, hopper_box]\n")
    config = TrainConfig(experiment=str(tmp / "exp.yaml"), method="ours", jt=768, sp=0.5, envs_per_task=4)
    config.ppo.epochs, config.ppo.minibatch_per_task = 2, 64
    trainer = Trainer(config, tmp / "run")
    trainer.run()
    return trainer, latest_checkpoint(tmp / "run")


def test_served_actions_equal_the_trained_policy_means(trained_run):
    trainer, path = trained_run
    policy = InferencePolicy.from_checkpoint(path)
    assert policy.task_names == ["hopper_capsule", "hopper_box"]
    obs = np.random.default_rng(0).normal(size=(5, 11))
    tasks = np.array([0, 1, 1, 0, 1])
    served = policy.act(obs, tasks)
    import torch

    with torch.no_grad():
        normed = trainer.obs_rms.normalize(torch.from_numpy(np.stack([obs, obs])))  # (T=2, 5, 11)
        means = trainer.policy.mean_action(normed).numpy()  # (2, 5, 3)
    np.testing.assert_allclose(served, means[tasks, np.arange(5)], atol=1e-5)
    assert not np.allclose(policy.act(obs, np.zeros(5, int)), policy.act(obs, np.ones(5, int)))  # split


def test_export_is_small_and_serves_identically(trained_run, tmp_path):
    _, path = trained_run
    out = InferencePolicy.export(path, tmp_path / "policy.safetensors")
    assert out.stat().st_size < path.stat().st_size / 2
    obs = np.random.default_rng(1).normal(size=(3, 11))
    tasks = np.array([1, 0, 1])
    np.testing.assert_array_equal(InferencePolicy.from_checkpoint(out).act(obs, tasks),
                                  InferencePolicy.from_checkpoint(path).act(obs, tasks))


def test_bad_requests_and_files_are_clear_errors(trained_run, tmp_path):
    _, path = trained_run
    policy = InferencePolicy.from_checkpoint(path)
    with pytest.raises(ValueError, match=r"obs must have shape \(R, 11\)"):
        policy.act(np.zeros((2, 10)), np.zeros(2, int))
    with pytest.raises(ValueError, match="out of range"):
        policy.act(np.zeros((1, 11)), np.array([2]))
    with pytest.raises(ValueError, match="unknown task 'moonwalk'"):
        policy.task_index("moonwalk")
    other = tmp_path / "not_a_policy.safetensors"
    ckpt.save_checkpoint(other, {"x": __import__("torch").zeros(2)}, {"hello": 1})
    with pytest.raises(ckpt.CheckpointError, match="not_a_policy"):
        InferencePolicy.from_checkpoint(other)
    with pytest.raises(ckpt.CheckpointError, match="no policy weights"):
        InferencePolicy.export(other, tmp_path / "out.safetensors")


def test_a_robots_action_does_not_depend_on_who_shares_the_call(trained_run):
    _, path = trained_run
    policy = InferencePolicy.from_checkpoint(path)
    obs = np.random.default_rng(5).normal(size=(400, 11))
    tasks = np.random.default_rng(6).integers(0, 2, size=400)
    together = policy.act(obs, tasks)
    alone = np.stack([policy.act(obs[i:i + 1], tasks[i:i + 1])[0] for i in range(400)])
    np.testing.assert_array_equal(together, alone)
