"""One iteration's PPO update of K runs: one batch of K (``learning/multi.py``) against K batches of one.

For each experiment's batch shape (tasks, observation and action sizes, samples per task per
iteration, minibatches of 256 per task, 10 epochs), each optimiser (``mixed``: the mujoco profile's;
``per_task``: the paper profile's) and each phase of ``ours`` (``joint``: nothing split, per-task
gradients recorded for the score; ``specialized``: 25 % of the policy split, no recording), it times
one iteration's update of K runs (seeds 1..K) two ways, in one process, interleaved:

- sequential: K calls of ``ppo_update`` over a batch of one run each (what K runs trained alone do);
- batched: one ``ppo_update`` over a batch of the K runs (the runs' numbers are the same, bit for bit);
- kernel bound: the update's arithmetic alone for the K runs, the same kernels on tensors of the same
  shapes back to back with nothing else (every layer's batched product, NumPy's tanh, tanh's backward,
  one fused Adam step of every run's tensors per optimiser step); no batched update can beat it
  without computing less or computing it differently (other kernels round differently).

Prints seconds per iteration (the minimum over ``--repeats``; median in ``--json``), the speed-up
sequential / batched, and the bytes of tensors the learning core holds per run (weights, gradient
buffers, Adam moments, per-task gradients, the iteration's batch). The data are random tensors of
the training shapes: the update's cost does not depend on the values.

Usage: ``python bench/multirun_update.py [--experiments three_hoppers biped_fwd_bwd] [--runs 1 2 5]
[--optimizers mixed per_task] [--phases joint specialized] [--repeats 3] [--torch-threads 1] [--groups 1]
[--inexact] [--json]``. ``--inexact``: every product batched, also those whose batched form rounds
differently (the runs' numbers then differ from their own in the last bits): what exactness costs.
``--groups 2``: the K runs in two batches updated at once on two Python threads (each
torch operation single-threaded, so the numbers stay the runs' own), which uses the second core.
Run it with the machine otherwise idle: ``bench/paused.sh .venv/bin/python bench/multirun_update.py``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mt_specialize.experiments import get_experiment  # noqa: E402
from mt_specialize.learning import multi  # noqa: E402
from mt_specialize.learning.batch import Batch  # noqa: E402
from mt_specialize.learning.multi import BatchedRuns  # noqa: E402
from mt_specialize.learning.optim import RunAdam  # noqa: E402
from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue  # noqa: E402
from mt_specialize.learning.ppo import PPOConfig  # noqa: E402
from mt_specialize.learning.ppo_update import RunsBatch, ppo_update  # noqa: E402
from mt_specialize.learning.specialize import random_split_masks  # noqa: E402

ENVS_PER_TASK = 16  # TrainConfig's default
SPLIT_FRACTION = 0.25


def shape_of(experiment: str) -> dict:
    """Tasks, observation and action sizes and samples per task of one iteration, as the trainer has them."""
    exp = get_experiment(experiment)
    n_tasks = len(exp.tasks)
    steps = max(1, round(exp.batch_size / (n_tasks * ENVS_PER_TASK)))
    return {"tasks": n_tasks, "obs": exp.tasks[0].obs_dim, "act": exp.tasks[0].act_dim,
            "samples_per_task": steps * ENVS_PER_TASK}


class SingleRun:
    """One run's learner as ``Trainer`` holds it (a batch of one), after one update (Adam has state)
    and, in the specialized phase, the split."""

    def __init__(self, seed: int, shape: dict, ppo: PPOConfig, phase: str):
        T, obs, act, n = shape["tasks"], shape["obs"], shape["act"], shape["samples_per_task"]
        torch.manual_seed(seed)
        self.ppo = ppo
        self.policy = SplitGaussianPolicy(T, obs, act, ppo.policy_hidden, ppo.init)
        self.value = SplitValue(T, obs, ppo.value_hidden, ppo.init)
        self.optimizer = RunAdam(list(self.policy.parameters()) + list(self.value.parameters()), lr=ppo.lr,
                                 eps=ppo.adam_eps)
        self.batched = BatchedRuns([(self.policy, self.value, self.optimizer)])
        self.rng = np.random.default_rng(seed)
        g = torch.Generator().manual_seed(seed)
        obs_t, act_t = torch.randn(T, n, obs, generator=g), torch.randn(T, n, act, generator=g)
        with torch.no_grad():
            old = self.policy.log_prob(obs_t, act_t) + 0.05 * torch.randn(T, n, generator=g)
        self.batch = Batch(obs_t, act_t, old, torch.randn(T, n, generator=g), torch.randn(T, n, generator=g))
        self.track = phase == "joint"
        self.update()
        if phase == "specialized":
            masks = random_split_masks(self.policy.param_shapes(), SPLIT_FRACTION, torch.Generator().manual_seed(seed))
            self.batched.optimizer.copy_state_to_split(0, self.policy.set_split_masks(masks))

    def update(self) -> None:
        """What ``Trainer.update`` does around ``ppo_update``."""
        ppo_update(self.batched, RunsBatch.stack([self.batch]), self.ppo, clips=[self.ppo.clip], rngs=[self.rng],
                   track=[self.track])
        if self.track:
            self.batched.policy.per_task_grads(0)

    def copy(self) -> tuple[SplitGaussianPolicy, SplitValue, RunAdam]:
        """New modules and Adam holding this run's state (as a checkpoint carries it)."""
        policy = SplitGaussianPolicy(self.policy.n_tasks, self.policy.obs_dim, self.policy.act_dim,
                                     self.ppo.policy_hidden, self.ppo.init)
        value = SplitValue(self.value.n_tasks, self.value.obs_dim, self.ppo.value_hidden, self.ppo.init)
        policy.load_state_dict(self.policy.state_dict())
        value.load_state_dict(self.value.state_dict())
        adam = RunAdam(list(policy.parameters()) + list(value.parameters()), eps=self.ppo.adam_eps)
        adam.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        return policy, value, adam


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def core_bytes_per_run(runs: BatchedRuns, batch: RunsBatch) -> dict:
    """Bytes of the learning core's tensors per run (its share of the batched tensors)."""
    policy, value, optimizer = runs.policy, runs.value, runs.optimizer
    entries = policy.entries() + value.entries()
    weights = tensor_bytes(t for e in entries for t in (e.shared, e.task, e.mask))
    grads = tensor_bytes(t for e in entries for t in (e.grad_shared, e.grad_task, e.grad_row, e.task_grads))
    adam = tensor_bytes(t for s in optimizer.slots for t in (s.exp_avg, s.exp_avg_sq, s.step))
    data = tensor_bytes([batch.obs, batch.actions, batch.old_logp, batch.advantages, batch.returns])
    k = policy.n_runs
    return {"weights": weights // k, "gradients": grads // k, "adam": adam // k, "batch": data // k,
            "total": (weights + grads + adam + data) // k}


class Group:
    """Some of the runs, copied into one batch (their own objects keep training alone)."""

    def __init__(self, runs: list[SingleRun], ppo: PPOConfig, first_seed: int):
        self.runs, self.ppo = runs, ppo
        self.batched = BatchedRuns([r.copy() for r in runs])
        self.policy, self.value = self.batched.policy, self.batched.value
        self.batches = [r.batch for r in runs]
        self.rngs = [np.random.default_rng(first_seed + k) for k in range(len(runs))]

    def update(self) -> None:
        """What ``RunGroup.update`` does around ``ppo_update``."""
        ppo_update(self.batched, RunsBatch.stack(self.batches), self.ppo, clips=[self.ppo.clip] * len(self.runs),
                   rngs=self.rngs, track=[r.track for r in self.runs])
        for k, run in enumerate(self.runs):
            if run.track:
                self.policy.per_task_grads(k)


def _bound_step(K: int, rows: int, dims: list[list[int]], params: list[torch.Tensor], adam: tuple) -> None:
    """One optimiser step's arithmetic: forward and backward of each net in ``dims`` over ``rows``
    samples of each of K runs (``baddbmm``/``bmm``, NumPy tanh in place, ``tanh_backward``), then one
    fused Adam step over ``params``."""
    for sizes in dims:
        h = _BOUND_INPUTS[(K, rows, sizes[0])]
        hs, ws = [h], []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = _BOUND_WEIGHTS[(K, a, b)]
            z = torch.baddbmm(_BOUND_WEIGHTS[(K, 1, b)], h, w)
            ws.append(w)
            if i < len(sizes) - 2:
                zn = z.numpy()
                np.tanh(zn, out=zn)
                hs.append(z)
            h = z
        g = torch.ones_like(h)
        for i in range(len(ws) - 1, -1, -1):
            torch.bmm(hs[i].transpose(1, 2), g)
            g.sum(1)
            if i > 0:
                g = torch.ops.aten.tanh_backward(torch.bmm(g, ws[i].transpose(1, 2)), hs[i])
    grads, avg, avg_sq, steps = adam
    torch._fused_adam_(params, grads, avg, avg_sq, [], steps, lr=1e-4, beta1=0.9, beta2=0.999, weight_decay=0.0,
                       eps=1e-5, amsgrad=False, maximize=False)


_BOUND_INPUTS: dict = {}
_BOUND_WEIGHTS: dict = {}


def kernel_bound(shape: dict, ppo: PPOConfig, n_runs: int, repeats: int) -> float:
    """Seconds of one iteration's update arithmetic for ``n_runs`` runs (see the module docstring):
    ``epochs`` x minibatches optimiser steps, each over 256 samples per task (``per_task``: T steps of
    one task's samples; ``mixed``: one step over all T tasks' samples), policy and value net."""
    T, obs, act, N = shape["tasks"], shape["obs"], shape["act"], shape["samples_per_task"]
    K, B = n_runs, ppo.minibatch_per_task
    n_minibatches = max(1, N // B)
    rows = B if ppo.optimizer == "per_task" else T * B
    steps = ppo.epochs * n_minibatches * (T if ppo.optimizer == "per_task" else 1)
    dims = [[obs, *ppo.policy_hidden, act], [obs, *ppo.value_hidden, 1]]
    for sizes in dims:
        _BOUND_INPUTS.setdefault((K, rows, sizes[0]), torch.randn(K, rows, sizes[0]))
        for a, b in zip(sizes[:-1], sizes[1:]):
            _BOUND_WEIGHTS.setdefault((K, a, b), 0.1 * torch.randn(K, a, b))
            _BOUND_WEIGHTS.setdefault((K, 1, b), torch.zeros(K, 1, b))
    params = [torch.zeros(a, b) for sizes in dims for a, b in zip(sizes[:-1], sizes[1:]) for _ in range(K)]
    params += [torch.zeros(b) for sizes in dims for b in sizes[1:] for _ in range(K)]
    adam = ([torch.full_like(p, 1e-3) for p in params], [torch.zeros_like(p) for p in params],
            [torch.zeros_like(p) for p in params], [torch.zeros(()) for _ in params])
    _bound_step(K, rows, dims, params, adam)  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            _bound_step(K, rows, dims, params, adam)
        best = min(best, time.perf_counter() - start)
    return best


def measure(experiment: str, optimizer: str, phase: str, n_runs: int, repeats: int, groups: int,
            pool: ThreadPoolExecutor | None) -> dict:
    shape = shape_of(experiment)
    ppo = PPOConfig(optimizer=optimizer)
    runs = [SingleRun(seed, shape, ppo, phase) for seed in range(1, n_runs + 1)]
    n_groups = min(groups, n_runs)
    bounds = np.linspace(0, n_runs, n_groups + 1).round().astype(int)
    batches = [Group(runs[a:b], ppo, 1000 + a) for a, b in zip(bounds[:-1], bounds[1:])]

    def batched() -> None:
        if len(batches) == 1:
            batches[0].update()
        else:  # each group on its own Python thread; torch and NumPy release the GIL in their kernels
            for future in [pool.submit(g.update) for g in batches]:
                future.result()

    def sequential() -> None:
        for r in runs:
            r.update()

    batched()  # the first batched update compares products with the runs' own (VerifiedProducts)
    times = {"sequential": [], "batched": []}
    for _ in range(repeats):
        for name, fn in (("sequential", sequential), ("batched", batched)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {name: min(v) for name, v in times.items()}
    bound = kernel_bound(shape, ppo, n_runs, repeats)
    first = batches[0]
    return {"experiment": experiment, "optimizer": optimizer, "phase": phase, "runs": n_runs, "groups": n_groups,
            "sequential_s": best["sequential"], "batched_s": best["batched"],
            "sequential_median_s": statistics.median(times["sequential"]),
            "batched_median_s": statistics.median(times["batched"]),
            "speedup": best["sequential"] / best["batched"],
            "kernel_bound_s": bound, "batched_over_bound": best["batched"] / bound,
            "per_run_sites": sorted({tuple(str(part) for part in site[:3]) for g in batches
                                     for site in g.policy.products.per_run_sites + g.value.net.products.per_run_sites}),
            "bytes_per_run": core_bytes_per_run(first.batched, RunsBatch.stack(first.batches)), **shape}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["three_hoppers", "biped_fwd_bwd"])
    parser.add_argument("--runs", nargs="+", type=int, default=[1, 2, 5], help="K values")
    parser.add_argument("--optimizers", nargs="+", default=["mixed", "per_task"], choices=["mixed", "per_task"])
    parser.add_argument("--phases", nargs="+", default=["joint", "specialized"], choices=["joint", "specialized"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--groups", type=int, default=1,
                        help="split the K runs into this many batches, updated at once on as many Python threads")
    parser.add_argument("--inexact", action="store_true",
                        help="batch every product, also those that round differently (not bit-exact)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.runs) or min(args.repeats, args.torch_threads, args.groups) < 1:
        parser.error("--runs, --repeats, --torch-threads and --groups must be >= 1")
    torch.set_num_threads(args.torch_threads)
    if args.inexact:
        multi.VerifiedProducts.__call__ = lambda self, key, batched, per_run: batched()
    load_before = os.getloadavg()[0]
    rows = []
    pool = ThreadPoolExecutor(max_workers=args.groups) if args.groups > 1 else None
    for experiment in args.experiments:
        for optimizer in args.optimizers:
            for phase in args.phases:
                for n_runs in args.runs:
                    rows.append(measure(experiment, optimizer, phase, n_runs, args.repeats, args.groups, pool))
                    if not args.json:
                        r = rows[-1]
                        print(f"{experiment:14s} {optimizer:8s} {phase:11s} K={n_runs}: sequential "
                              f"{r['sequential_s']:.3f} s, batched {r['batched_s']:.3f} s, speed-up "
                              f"{r['speedup']:.2f}x; kernel bound {r['kernel_bound_s']:.3f} s (batched / bound "
                              f"{r['batched_over_bound']:.2f})", flush=True)
    load_after = os.getloadavg()[0]
    if pool is not None:
        pool.shutdown()
    if args.json:
        print(json.dumps({"rows": rows, "load_before": load_before, "load_after": load_after,
                          "torch_threads": args.torch_threads, "groups": args.groups, "torch": torch.__version__},
                         indent=2, default=str))
        return 0
    print(f"\nload average (1 min) before {load_before:.2f}, after {load_after:.2f}; torch {torch.__version__}, "
          f"{args.torch_threads} torch thread(s), {args.groups} batch(es) of runs at once")
    sites = sorted({site for r in rows for site in r["per_run_sites"]})
    print(f"products computed run by run (their batched form rounds differently): {sites or 'none'}")
    for experiment in args.experiments:
        mem = next(r for r in rows if r["experiment"] == experiment)
        b = mem["bytes_per_run"]
        print(f"{experiment}: T={mem['tasks']}, obs {mem['obs']}, act {mem['act']}, {mem['samples_per_task']} "
              f"samples per task; learning-core tensors per run {b['total'] / 2**20:.2f} MiB (weights "
              f"{b['weights'] / 2**20:.2f}, gradient buffers {b['gradients'] / 2**20:.2f}, Adam "
              f"{b['adam'] / 2**20:.2f}, batch {b['batch'] / 2**20:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
