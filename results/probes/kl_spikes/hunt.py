"""Hunt an approx_kl spike and check the hand-written update against autograd on it.

From RUN_DIR's checkpoint before START (a copy in --work), train on with Trainer.update; before each
update the state is saved. When an iteration's approx_kl exceeds --threshold, the same update is
redone from the saved state with plain autograd (same loss, minibatches and Adam), and both are
printed with what moved: the largest |log ratio|, per-epoch KL, and the change of log-std and of
the policy weights. Stops after --iterations or --spikes spikes. ``--compare-at N`` also compares
the two updates at iteration N, spike or not, and stops there.

    python hunt.py RUN_DIR START [--iterations 60] [--threshold 0.1] [--spikes 2] [--compare-at N]
                   [--work /tmp/kl_hunt]
"""
import argparse
import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.learning.ppo import clipped_surrogate, value_loss
from mt_specialize.train import Trainer


def gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x (T, N, ...)`` with task i's rows in the order ``order[i]`` (``x[arange(T)[:, None], order]``)."""
    index = order.reshape(*order.shape, *(1,) * (x.dim() - 2)).expand(*order.shape, *x.shape[2:])
    return torch.gather(x, 1, index)


parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("start", type=int, help="sample count to start from (the newest checkpoint at or before it)")
parser.add_argument("--iterations", type=int, default=60)
parser.add_argument("--threshold", type=float, default=0.1)
parser.add_argument("--spikes", type=int, default=2)
parser.add_argument("--compare-at", type=int, default=None, help="iteration to compare at, spike or not")
parser.add_argument("--work", default="/tmp/kl_hunt")
args = parser.parse_args()

work = Path(args.work)
shutil.rmtree(work, ignore_errors=True)
shutil.copytree(args.run_dir, work, ignore=shutil.ignore_patterns("tb", "*.png", "summary.json"))
config = TrainConfig.from_yaml(work / "config.yaml")
for path in (work / "checkpoints").glob("ckpt_*.safetensors"):
    if int(path.stem.split("_")[1]) > args.start:
        path.unlink()
trainer = Trainer(config, work, resume=True)
print(f"resumed at {trainer.samples} samples (iteration {trainer.iteration})", flush=True)


def full_log_ratio(trainer, batch):
    with torch.no_grad():
        return (trainer.policy.log_prob(batch["obs"], batch["actions"]) - batch["old_logp"]).numpy()


def kl(lr):
    return float((np.exp(lr) - 1 - lr).mean())


def autograd_update(trainer, batch):
    """Trainer.update's loss, minibatches and Adam step, by autograd; approx_kl per epoch."""
    ppo = trainer.config.ppo
    T, N = batch["advantages"].shape
    keys = ("obs", "actions", "old_logp", "advantages", "returns")
    kls = []
    for _ in range(ppo.epochs):
        order = torch.from_numpy(np.argsort(trainer.rng.random((T, N)), axis=1))
        shuffled = [gather_rows(batch[k], order) for k in keys]
        epoch = []
        for chunk in np.array_split(np.arange(N), max(1, N // ppo.minibatch_per_task)):
            obs, act, old, adv, ret = (x[:, chunk[0]:chunk[-1] + 1] for x in shuffled)
            trainer.optimizer.zero_grad()
            logp = trainer.policy.log_prob(obs, act)
            loss = clipped_surrogate(logp, old, adv, ppo.clip).mean() \
                + ppo.value_coef * value_loss(trainer.value(obs), ret).mean()
            loss.backward()
            trainer.optimizer.step()
            epoch.append(kl((logp - old).detach().numpy()))
        kls.append(float(np.mean(epoch)))
    return kls


def describe(name, trainer, batch, before, kls=None):
    lr = full_log_ratio(trainer, batch)
    after = {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}
    moved = {k: float((after[k].float() - before[k].float()).abs().max()) for k in after if after[k].is_floating_point()}
    top = sorted(moved.items(), key=lambda kv: -kv[1])[:4]
    ls = trainer.policy.log_std().detach().numpy()
    print(f"  {name}: KL after update {kl(lr):.4f}, max |log ratio| {np.abs(lr).max():.2f} "
          f"(task of max {np.unravel_index(np.abs(lr).argmax(), lr.shape)[0]}), "
          f"log-std now {np.round(ls, 2).tolist()}", flush=True)
    if kls is not None:
        print(f"    per-epoch approx_kl {np.round(kls, 4).tolist()}")
    print(f"    largest parameter changes: {[(k, round(v, 4)) for k, v in top]}", flush=True)


found = 0
for _ in range(args.iterations):
    rollout = trainer.collect()
    batch = trainer.prepare_batch(rollout)
    saved = copy.deepcopy((trainer.policy.state_dict(), trainer.value.state_dict(),
                           trainer.optimizer.state_dict(), trainer.rng.bit_generator.state))
    stats = trainer.update(batch, track_gradients=False)
    trainer.iteration += 1
    trainer.samples += trainer.batch
    print(f"iteration {trainer.iteration} ({trainer.samples:,}): approx_kl {stats.approx_kl:.4f}, "
          f"clip fraction {stats.clip_fraction:.3f}", flush=True)
    compare_here = trainer.iteration == args.compare_at
    if stats.approx_kl <= args.threshold and not compare_here:
        continue
    found += stats.approx_kl > args.threshold
    adv = batch["advantages"].numpy()
    print(f"  {'SPIKE' if stats.approx_kl > args.threshold else 'COMPARE'}. advantages max |A| per task {np.abs(adv).max(axis=1).round(1).tolist()}; "
          f"returns {batch['returns'].min().item():.1f}..{batch['returns'].max().item():.1f}", flush=True)
    hand = copy.deepcopy((trainer.policy.state_dict(), trainer.value.state_dict(),
                          trainer.optimizer.state_dict(), trainer.rng.bit_generator.state))
    describe("hand-written", trainer, batch, saved[0])
    trainer.policy.load_state_dict(saved[0]); trainer.value.load_state_dict(saved[1])
    trainer.optimizer.load_state_dict(saved[2]); trainer.rng.bit_generator.state = saved[3]
    for group in trainer.optimizer.param_groups:
        group["foreach"], group["fused"] = False, False
    kls = autograd_update(trainer, batch)
    describe("autograd", trainer, batch, saved[0], kls)
    trainer.policy.load_state_dict(hand[0]); trainer.value.load_state_dict(hand[1])  # go on as training did
    trainer.optimizer.load_state_dict(hand[2]); trainer.rng.bit_generator.state = hand[3]
    if found >= args.spikes or compare_here:
        break
trainer.close()
