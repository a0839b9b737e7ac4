"""The trainer's network, normaliser and update settings (Stable-Baselines3's or ours) act as specified."""
import csv
import dataclasses

import numpy as np
import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.learning import ppo_update as ppo_update_module
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.learning.normalize import RewardNormalizer, RunningMeanStd
from mt_specialize.learning.ppo import PPOConfig
from mt_specialize.train import Trainer, latest_checkpoint

S, E = 32, 2  # steps per iteration, envs per task


@pytest.fixture
def two_tasks(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(f"name: two\nbatch_size: {2 * E * S}\nbudget: {4 * 2 * E * S}\n"
                    "tasks: [hopper_capsule, hopper_box]\n")
    return str(path)


def _config(experiment, **ppo) -> TrainConfig:
    base = dict(minibatch_per_task=16, epochs=1)
    base.update(ppo)
    return TrainConfig(experiment=experiment, method="joint", seed=4, envs_per_task=E, checkpoint_every=1,
                       keep_checkpoints=10, ppo=PPOConfig(**base))


def _record_env(trainer):
    """Wrap env.step to record the actions it receives and its raw rewards / episode ends."""
    record = {"actions": [], "rewards": [], "ends": []}
    step = trainer.env.step

    def recording(actions):
        result = step(actions)
        record["actions"].append(np.array(actions))
        record["rewards"].append(result.reward.copy())
        record["ends"].append(result.terminated | result.truncated)
        return result

    trainer.env.step = recording
    return record


def test_defaults_keep_todays_iteration(two_tasks, tmp_path):
    """Default settings: normc 3x64 nets, statistics updated once per iteration with the rollout's
    observations, then every observation normalised as clip((x - mean) / sqrt(max(var, 0.01)), ±5),
    advantages standardised per task over the batch, raw rewards, unclipped actions to the env."""
    trainer = Trainer(_config(two_tasks), tmp_path / "run")
    assert [layer.out_dim for layer in trainer.policy.mean.layers] == [64, 64, 64, trainer.env.act_dim]
    count0 = trainer.obs_rms.count.clone()
    record = _record_env(trainer)
    rollout = trainer.collect()
    assert torch.equal(trainer.obs_rms.count, count0) and rollout.obs_norm is None
    assert np.array_equal(np.stack(record["actions"]), rollout.actions)
    assert np.abs(rollout.actions).max() > 1.0  # unclipped (std 1 at the start)
    assert np.array_equal(rollout.rewards, np.stack(record["rewards"]))
    batch = trainer.prepare_batch(rollout)
    raw = np.moveaxis(rollout.obs[:S], 1, 0).reshape(2, S * E, -1)
    assert np.allclose(trainer.obs_rms.count.numpy(), count0.numpy() + S * E)
    assert np.allclose(trainer.obs_rms.mean.numpy(), raw.mean(axis=1), atol=1e-6)
    assert np.allclose(trainer.obs_rms.var.numpy(), raw.var(axis=1), rtol=1e-3, atol=1e-5)
    std = np.sqrt(np.maximum(trainer.obs_rms.var.numpy(), 1e-2))[:, None]
    expected = np.clip((raw - trainer.obs_rms.mean.numpy()[:, None]) / std, -5, 5)
    assert np.allclose(batch.obs.numpy(), expected, atol=1e-5)
    adv = batch.advantages
    assert torch.allclose(adv.mean(dim=1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(adv.std(dim=1, unbiased=False), torch.ones(2), atol=1e-4)
    trainer.close()


def test_per_minibatch_advantages_are_standardised_in_each_minibatch(two_tasks, tmp_path, monkeypatch):
    trainer = Trainer(_config(two_tasks, advantage_norm="per_minibatch"), tmp_path / "run")
    batch = trainer.prepare_batch(trainer.collect())
    assert batch.advantages.std(dim=1).min() > 1.5  # raw GAE advantages, not standardised per batch
    seen = []
    real = ppo_update_module.clipped_surrogate_with_grad

    def spy(logp, old_logp, advantages, *args):
        seen.append(advantages.clone())
        return real(logp, old_logp, advantages, *args)

    monkeypatch.setattr(ppo_update_module, "clipped_surrogate_with_grad", spy)
    trainer.update(batch, track_gradients=False)
    assert len(seen) == S * E // 16
    for adv in seen:
        assert adv.shape == (1, 2, 16)  # a run (a batch of one) x tasks x samples
        assert torch.allclose(adv.mean(dim=-1), torch.zeros(1, 2), atol=1e-5)
        assert torch.allclose(adv.std(dim=-1), torch.ones(1, 2), atol=1e-5)
    trainer.close()


def test_none_leaves_advantages_raw(two_tasks, tmp_path):
    trainer = Trainer(_config(two_tasks, advantage_norm="none"), tmp_path / "run")
    reference = Trainer(_config(two_tasks), tmp_path / "reference")
    raw, standardised = (t.prepare_batch(t.collect()).advantages for t in (trainer, reference))
    mean, std = raw.mean(dim=1, keepdim=True), raw.std(dim=1, unbiased=False, keepdim=True)
    assert torch.allclose((raw - mean) / (std + 1e-8), standardised, atol=1e-5)
    trainer.close(), reference.close()


def test_per_step_normaliser_stores_observations_as_the_policy_saw_them(two_tasks, tmp_path):
    """obs_norm_update='per_step' (SB3's VecNormalize): the statistics take the reset observations,
    then every step's new observations; each stored policy input is the observation normalised with
    the statistics of that moment (clip 10, sqrt(var + 1e-8)); the batch is not renormalised."""
    config = _config(two_tasks, obs_norm_update="per_step", obs_clip=10.0, obs_var_floor=0.0, obs_norm_epsilon=1e-8)
    trainer = Trainer(config, tmp_path / "run")
    rollout = trainer.collect()
    mirror = RunningMeanStd(2, (trainer.obs_dim,), clip=10.0, var_floor=0.0, norm_epsilon=1e-8)
    for t in range(S + 1):
        obs = rollout.obs[t]  # (T, E, obs_dim): the reset observations, then each step's new ones
        mirror.update(obs)
        assert np.array_equal(rollout.obs_norm[t], mirror.normalize(obs))
    assert torch.equal(trainer.obs_rms.count, mirror.count)
    batch = trainer.prepare_batch(rollout)
    assert torch.equal(trainer.obs_rms.count, mirror.count)  # no second update
    stored = np.moveaxis(rollout.obs_norm[:S], 1, 0).reshape(2, S * E, -1)
    assert np.array_equal(batch.obs.numpy(), stored)
    trainer.close()


def test_per_step_normaliser_with_the_authors_append(two_tasks, tmp_path):
    """append_mode normalized puts the one-hot task id into the normaliser's input, also at the reset
    observations a per-step normaliser starts from; a normalised constant is 0."""
    config = dataclasses.replace(_config(two_tasks, obs_norm_update="per_step"), method="append",
                                 append_mode="normalized")
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.obs_rms.count.tolist() == pytest.approx([E + 1e-4] * 2)  # the reset observations
    rollout = trainer.collect()
    assert rollout.obs_norm.shape[-1] == trainer.policy_in == trainer.obs_dim + 2
    assert np.abs(rollout.obs_norm[1:, ..., trainer.obs_dim:]).max() < 1e-3  # the one-hot, normalised
    trainer.close()


def test_reward_normalisation_and_clipped_env_actions(two_tasks, tmp_path):
    trainer = Trainer(_config(two_tasks, reward_norm=True, reward_clip=10.0, clip_env_actions=True, gamma=0.98),
                      tmp_path / "run")
    record = _record_env(trainer)
    rollout = trainer.collect()
    sent = np.stack(record["actions"])
    assert np.array_equal(sent, np.clip(rollout.actions, -1, 1)) and np.abs(rollout.actions).max() > 1
    mirror = RewardNormalizer(2, E, 0.98, clip=10.0)
    expected = np.stack([mirror(r, end) for r, end in zip(record["rewards"], record["ends"])])
    assert np.array_equal(rollout.rewards, expected)
    assert not np.allclose(expected, np.stack(record["rewards"]))
    trainer.close()


def test_sb3_settings_resume_exactly(two_tasks, tmp_path):
    """With every new setting on (reward normaliser state in the checkpoint), a run resumed from a
    middle checkpoint repeats the uninterrupted run's metrics."""
    config = dataclasses.replace(_config(two_tasks), ppo=PPOConfig.stable_baselines3(minibatch_per_task=16, epochs=1,
                                                                                      policy_hidden=[16, 16]))
    Trainer(config, tmp_path / "full").run()
    Trainer(config, tmp_path / "cut").run()
    for path in sorted((tmp_path / "cut" / "checkpoints").glob("*.safetensors"))[2:]:
        path.unlink()
    Trainer(config, tmp_path / "cut", resume=True).run()

    def rows(run):
        with open(tmp_path / run / "metrics.csv", newline="") as f:
            return [{k: v for k, v in r.items() if "per_s" not in k} for r in csv.DictReader(f)]

    assert len(rows("full")) == 4 and rows("cut") == rows("full")
    served = InferencePolicy.from_checkpoint(latest_checkpoint(tmp_path / "full"))  # 2x16 nets, clip 10
    assert served._clip == 10.0 and [w.shape[-1] for w, _ in served._layers] == [16, 16, served.act_dim]


def test_network_settings_from_yaml_and_bad_values(two_tasks, tmp_path):
    config = TrainConfig.from_dict({"experiment": two_tasks, "method": "joint", "envs_per_task": E,
                                    "ppo": {"policy_hidden": [32], "value_hidden": [8, 8], "init": "orthogonal"}})
    trainer = Trainer(config, tmp_path / "run")
    assert [layer.out_dim for layer in trainer.policy.mean.layers] == [32, trainer.env.act_dim]
    assert [layer.out_dim for layer in trainer.value.net.layers] == [8, 8, 1]
    w = trainer.value.net.layers[1].weight_shared.detach()
    assert torch.allclose(w.t() @ w, 2.0 * torch.eye(8), atol=1e-5)  # orthogonal, gain sqrt(2)
    trainer.close()
    with pytest.raises(ValueError, match=r"PPOConfig.advantage_norm='batch'.*allowed|must be one of"):
        TrainConfig.from_dict({"ppo": {"advantage_norm": "batch"}})
