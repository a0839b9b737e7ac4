"""Replay a biped grid run from a checkpoint to an iteration whose approx_kl spiked, then run that
iteration's PPO update twice from the same state: with the hand-written update (Trainer.update) and
with a plain autograd update of the same loss. Prints approx_kl per epoch for both.

    python replay.py RUN_DIR ITERATION [--work /tmp/kl_replay]

RUN_DIR is copied (config, metrics, checkpoints) to --work; the original is not touched.
"""
import argparse
import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.ppo import clipped_surrogate, value_loss
from mt_specialize.train import Trainer, _gather_rows

parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("iteration", type=int, help="the iteration (1-based, as metrics.csv) to replay")
parser.add_argument("--work", default="/tmp/kl_replay")
args = parser.parse_args()

work = Path(args.work)
shutil.rmtree(work, ignore_errors=True)
shutil.copytree(args.run_dir, work, ignore=shutil.ignore_patterns("tb", "*.png", "summary.json"))
config = TrainConfig.from_yaml(work / "config.yaml")
for path in (work / "checkpoints").glob("ckpt_*.safetensors"):  # resume from the last one before ITERATION
    if int(path.stem.split("_")[1]) >= (args.iteration - 1) * config.batch_size:
        path.unlink()
trainer = Trainer(config, work, resume=True)
print(f"resumed at iteration {trainer.iteration}; replaying to {args.iteration}")
recorded = {int(r.split(",")[0]): r for r in (Path(args.run_dir) / "metrics.csv").read_text().splitlines()[1:]}


def autograd_update(trainer, batch):
    """Trainer.update's loss and minibatches, with autograd; returns approx_kl per epoch."""
    ppo = trainer.config.ppo
    T, N = batch["advantages"].shape
    n_mb = max(1, N // ppo.minibatch_per_task)
    keys = ("obs", "actions", "old_logp", "advantages", "returns")
    kls = []
    for _ in range(ppo.epochs):
        order = torch.from_numpy(np.argsort(trainer.rng.random((T, N)), axis=1))
        shuffled = [_gather_rows(batch[k], order) for k in keys]
        epoch = []
        for chunk in np.array_split(np.arange(N), n_mb):
            obs, act, old, adv, ret = (x[:, chunk[0]:chunk[-1] + 1] for x in shuffled)
            trainer.optimizer.zero_grad()
            logp = trainer.policy.log_prob(obs, act)
            loss = clipped_surrogate(logp, old, adv, ppo.clip).mean() \
                + ppo.value_coef * value_loss(trainer.value(obs), ret).mean()
            loss.backward()
            trainer.optimizer.step()
            lr = (logp - old).detach().numpy()
            epoch.append((np.exp(lr) - 1 - lr).mean())
        kls.append(float(np.mean(epoch)))
    return kls


def full_kl(trainer, batch):
    with torch.no_grad():
        lr = (trainer.policy.log_prob(batch["obs"], batch["actions"]) - batch["old_logp"]).numpy()
    return float((np.exp(lr) - 1 - lr).mean()), float(np.abs(lr).max())


while trainer.iteration < args.iteration - 1:
    rollout = trainer.collect()
    batch = trainer.prepare_batch(rollout)
    stats = trainer.update(batch, track_gradients=False)
    trainer.iteration += 1
    trainer.samples += trainer.batch
    rec = recorded.get(trainer.iteration, "").split(",")
    print(f"iteration {trainer.iteration}: approx_kl {stats.approx_kl:.4f} (recorded {rec[10] if len(rec) > 10 else '?'})")

rollout = trainer.collect()
batch = trainer.prepare_batch(rollout)
state = copy.deepcopy((trainer.policy.state_dict(), trainer.value.state_dict(), trainer.optimizer.state_dict(),
                       trainer.rng.bit_generator.state))
stats = trainer.update(batch, track_gradients=False)
print(f"iteration {args.iteration} hand-written: approx_kl {stats.approx_kl:.4f} "
      f"(recorded {recorded[args.iteration].split(',')[10]}); after update: KL, max |log ratio| = {full_kl(trainer, batch)}")
trainer.policy.load_state_dict(state[0]); trainer.value.load_state_dict(state[1])
trainer.optimizer.load_state_dict(state[2]); trainer.rng.bit_generator.state = state[3]
for group in trainer.optimizer.param_groups:
    group["foreach"], group["fused"] = False, False
kls = autograd_update(trainer, batch)
print(f"iteration {args.iteration} autograd: approx_kl per epoch {np.round(kls, 4)}, mean {np.mean(kls):.4f}; "
      f"after update: KL, max |log ratio| = {full_kl(trainer, batch)}")
adv = batch["advantages"].numpy()
print("advantages: max |A| per task", np.abs(adv).max(axis=1), "returns range", batch["returns"].min().item(), batch["returns"].max().item())
trainer.close()
