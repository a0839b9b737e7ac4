"""What switch training sees: real ``Trainer.collect`` rollouts (switches on) from a checkpoint.

Copies RUN's config.yaml, split and the checkpoint at SAMPLES into a scratch run directory, resumes a
Trainer there and collects ITERATIONS rollouts (with the per-iteration normaliser update, no policy
update). Reports: switches, how the post-switch segments end (steps to the fall), the share of
samples within the grace (2 s) after a switch, rewards per step inside and outside it, the share of
terminations that are post-switch falls, the value the run's value net gives the state reached at a
switch when presented as its own task's vs as the new task's (the bootstrap of ``old_task`` vs
``new_task``), and the normaliser's x-speed mean per task before and after.

Usage: ``python training_view.py RUN SAMPLES [ITERATIONS]`` (default 4), ``PYTHONPATH=.``.
"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from mt_specialize.config import TrainConfig
from mt_specialize.train import Trainer


def main() -> None:
    run, samples = Path(sys.argv[1]), int(sys.argv[2])
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    scratch = Path(tempfile.mkdtemp(prefix="switch_view_"))
    (scratch / "checkpoints").mkdir()
    shutil.copy(run / "config.yaml", scratch / "config.yaml")
    shutil.copy(run / "split.safetensors", scratch / "split.safetensors")
    shutil.copy(run / f"checkpoints/ckpt_{samples:012d}.safetensors", scratch / "checkpoints")
    config = TrainConfig.from_run_config(yaml.safe_load((scratch / "config.yaml").read_text()))
    trainer = Trainer(config, scratch, resume=True)
    env = trainer.env
    steps = []
    plain_step = env.step

    def recording_step(actions):
        grace_before = env.grace_left.copy()
        result = plain_step(actions)
        steps.append({"switched": result.switched.copy(), "to": result.switched_to.copy(),
                      "terminated": result.terminated.copy(), "reward": result.reward.copy(),
                      "graced": grace_before > 0, "final": result.final_obs.copy()})
        return result
    env.step = recording_step
    x_speed = env.nq - 1  # the observation is [qpos without x, qvel]
    mean_before = trainer.obs_rms.state_dict()["mean"][:, x_speed].tolist()
    for _ in range(iterations):
        trainer.prepare_batch(trainer.collect())
    mean_after = trainer.obs_rms.state_dict()["mean"][:, x_speed].tolist()
    switched = np.array([s["switched"] for s in steps])
    terminated = np.array([s["terminated"] for s in steps])
    reward = np.array([s["reward"] for s in steps])
    graced = np.array([s["graced"] for s in steps])
    S, T, E = switched.shape
    grace_steps = round(config.task_switch_grace / env.tasks[0].dt) if config.task_switch_grace else 250
    post = np.zeros_like(switched)
    falls, segments = [], 0
    for i in range(T):
        for e in range(E):
            for start in np.flatnonzero(switched[:, i, e]):
                segments += 1
                t = start + 1
                while t < S and not switched[t, i, e]:
                    post[t, i, e] = t - start <= grace_steps
                    if terminated[t, i, e]:
                        falls.append(t - start)
                        break
                    t += 1
    print(f"{run} at {samples:,} samples: {S} control steps x {T * E} envs, switch_prob {config.task_switch_prob}, "
          f"grace {config.task_switch_grace} s, bootstrap {config.task_switch_bootstrap}")
    print(f"switched envs {int(switched.sum())}; post-switch segments that end in a fall {len(falls)} of {segments}, "
          f"steps to the fall p10/p50/p90 {np.percentile(falls, [10, 50, 90]).round(0).tolist() if falls else '-'}")
    print(f"samples within {grace_steps} steps after a switch: {post.mean():.1%} (graced steps {graced.mean():.1%}); "
          f"reward per step there {reward[post].mean():.2f}, elsewhere {reward[~post].mean():.2f}")
    print(f"terminations {int(terminated.sum())}, of them within {grace_steps} steps after a switch "
          f"{int((terminated & post).sum())}")
    own, new = [], []
    with torch.no_grad():
        for s in steps:
            for i, e in zip(*np.nonzero(s["switched"])):
                values = trainer.value(torch.from_numpy(trainer._normalize(np.repeat(s["final"][i, e][None, None], T, 0))))
                own.append(float(values[i, 0])), new.append(float(values[s["to"][i, e], 0]))
    print(f"value of the state reached at a switch: as its own task's p10/p50/p90 "
          f"{np.percentile(own, [10, 50, 90]).round(0).tolist()}, as the new task's {np.percentile(new, [10, 50, 90]).round(0).tolist()}")
    print(f"episode length, last 100 per task: {[round(float(np.mean(d))) for d in trainer.task_lengths]}")
    print(f"normaliser x-speed mean per task: before {np.round(mean_before, 3).tolist()}, after {np.round(mean_after, 3).tolist()}")
    trainer.close()
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
