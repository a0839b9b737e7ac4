"""A short seeded PPO run on the capsule hopper must learn: fails if learning breaks."""
import numpy as np
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.envs.tasks import get_task
from mt_specialize.train import Trainer
from mt_specialize.envs.vec_env import MultiTaskVecEnv


def _random_policy_return(n_envs=16, seed=0):
    """Mean episode return of uniformly random actions in [-1, 1] (the untrained baseline)."""
    env = MultiTaskVecEnv([get_task("hopper_capsule")], envs_per_task=n_envs, seed=seed)
    env.reset()
    rng = np.random.default_rng(seed)
    returns = []
    while len(returns) < 100:
        result = env.step(rng.uniform(-1, 1, size=(1, n_envs, 3)))
        returns += [r for r, _ in result.finished[0]]
    return float(np.mean(returns))


def test_ppo_learns_to_hop_within_80k_samples(tmp_path):
    experiment = tmp_path / "capsule_only.yaml"
    experiment.write_text("name: capsule_only\nbatch_size: 2048\nbudget: 81920\ntasks: [hopper_capsule]\n")
    torch.manual_seed(0)
    trainer = Trainer(TrainConfig(experiment=str(experiment), method="joint", seed=1, envs_per_task=16,
                                  checkpoint_every=100), tmp_path / "run")
    summary = trainer.run()
    random_return = _random_policy_return()
    learned = summary["returns"]["hopper_capsule"]
    print(f"random policy {random_return:.1f}, after {summary['samples']} samples {learned:.1f}")
    assert learned > 5 * random_return and learned > 150
