"""K runs' env steps: one ``MultiRunVecEnv`` against K single-run ``MultiTaskVecEnv``s (issue 15).

For each experiment (its tasks, 16 envs per task as the trainer's default), it times ``--steps``
control steps of K runs (seeds 1..K) two ways, in one process, interleaved:

- sequential: K ``MultiTaskVecEnv.step`` calls per control step (what K single runs do);
- batched: one ``MultiRunVecEnv.step`` (one ``mujoco.rollout`` call over K*T*E envs; each run's
  numbers are its single-run env's, bit for bit: test/test_multi_run_env.py).

Actions are random, uniform in [-1.5, 1.5] (episodes end and reset as in early training); no policy
runs. Prints microseconds per control step of all K runs (minimum over ``--repeats``), env steps per
second, and the speed-up sequential / batched.

Usage: ``python bench/multirun_env.py [--experiments three_hoppers biped_fwd_bwd] [--runs 5]
[--steps 200] [--repeats 3] [--nthread 2]``. Run it with the machine otherwise idle:
``bench/paused.sh .venv/bin/python bench/multirun_env.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mt_specialize.envs.multi_run import MultiRunVecEnv  # noqa: E402
from mt_specialize.envs.vec_env import MultiTaskVecEnv  # noqa: E402
from mt_specialize.experiments import get_experiment  # noqa: E402

ENVS_PER_TASK = 16  # TrainConfig's default


def time_sequential(envs: list[MultiTaskVecEnv], actions: np.ndarray) -> float:
    """s for actions (S, K, T, E, act) stepped through K single-run envs."""
    start = time.perf_counter()
    for step_actions in actions:
        for env, a in zip(envs, step_actions):
            env.step(a)
    return time.perf_counter() - start


def time_batched(env: MultiRunVecEnv, actions: np.ndarray) -> float:
    """s for actions (S, K, T, E, act) stepped through one K-run env."""
    start = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["three_hoppers", "biped_fwd_bwd"])
    parser.add_argument("--runs", type=int, default=5, help="K, runs stepped together")
    parser.add_argument("--steps", type=int, default=200, help="control steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nthread", type=int, default=None, help="MuJoCo rollout threads (default: the env's)")
    args = parser.parse_args()
    if args.runs < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--runs, --steps and --repeats must be >= 1")
    seeds = list(range(1, args.runs + 1))
    print(f"K = {args.runs} runs, {ENVS_PER_TASK} envs per task, {args.steps} control steps, "
          f"minimum of {args.repeats} repeats")
    for name in args.experiments:
        tasks = list(get_experiment(name).tasks)
        singles = [MultiTaskVecEnv(tasks, ENVS_PER_TASK, seed=s, nthread=args.nthread) for s in seeds]
        batched = MultiRunVecEnv(tasks, ENVS_PER_TASK, seeds, nthread=args.nthread)
        for env in singles:
            env.reset()
        batched.reset()
        rng = np.random.default_rng(0)
        shape = (args.steps, args.runs, len(tasks), ENVS_PER_TASK, batched.act_dim)
        sequential, together = [], []
        for _ in range(args.repeats):
            actions = rng.uniform(-1.5, 1.5, size=shape)
            sequential.append(time_sequential(singles, actions))
            together.append(time_batched(batched, actions))
        env_steps = args.runs * len(tasks) * ENVS_PER_TASK * args.steps
        seq, bat = min(sequential), min(together)
        print(f"{name:14s} ({args.runs * len(tasks) * ENVS_PER_TASK} envs): "
              f"sequential {1e6 * seq / args.steps:7.0f} us/step ({env_steps / seq:8.0f} env steps/s), "
              f"batched {1e6 * bat / args.steps:7.0f} us/step ({env_steps / bat:8.0f} env steps/s), "
              f"speed-up {seq / bat:.2f}x")


if __name__ == "__main__":
    main()
