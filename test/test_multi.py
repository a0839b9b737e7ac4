"""K runs in one batched update (learning/multi.py) against K single-run updates (ppo_update).

Every comparison is exact (``torch.equal``): a run in a batch computes the very numbers it computes
alone. The batch mixes runs in different states (joint phase recording per-task gradients, a partial
split, everything split) so the paths where runs' own computations differ are all exercised.
"""
import copy

import numpy as np
import pytest
import torch

from mt_specialize.learning import multi
from mt_specialize.learning.batch import Batch
from mt_specialize.learning.optim import FastAdam, TaskAlternatingAdam
from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue
from mt_specialize.learning.ppo import PPOConfig
from mt_specialize.learning.ppo_update import ppo_update
from mt_specialize.learning.specialize import random_split_masks

T, OBS, ACT = 3, 11, 3  # three_hoppers' tasks, observation and action sizes
BIPED = (2, 17, 6)  # biped_fwd_bwd's
HIDDEN = [64, 64]
N = 200  # samples per task: minibatches of 67, 67 and 66 rows

SETTINGS = {
    "ours": {},
    # SB3's: gradient clipping, per-minibatch advantage normalisation, plus an entropy bonus
    "clipped": {"max_grad_norm": 0.5, "advantage_norm": "per_minibatch", "entropy_coef": 0.01},
}
KINDS = ("joint", "split", "separate")  # the joint phase of ours (scored), after its split, separate


def _ppo(optimizer: str, settings: str, **extra) -> PPOConfig:
    return PPOConfig(optimizer=optimizer, epochs=2, minibatch_per_task=64, policy_hidden=HIDDEN,
                     value_hidden=HIDDEN, **SETTINGS[settings], **extra)


def _batch(policy: SplitGaussianPolicy, seed: int, n: int = N) -> Batch:
    g = torch.Generator().manual_seed(seed)
    tasks = policy.n_tasks
    obs, act = torch.randn(tasks, n, policy.obs_dim, generator=g), torch.randn(tasks, n, policy.act_dim, generator=g)
    old = policy.log_prob(obs, act).detach() + 0.2 * torch.randn(tasks, n, generator=g)
    return Batch(obs, act, old, torch.randn(tasks, n, generator=g), torch.randn(tasks, n, generator=g))


class Run:
    """One single-run learner as the trainer holds it, after one update (so Adam has state) and,
    for ``split``, a scored split that copies moments into the newly split entries."""

    def __init__(self, seed: int, kind: str, ppo: PPOConfig, dims: tuple[int, int, int] = (T, OBS, ACT)):
        torch.manual_seed(seed)
        self.kind, self.ppo = kind, ppo
        tasks, obs, act = dims
        self.policy = SplitGaussianPolicy(tasks, obs, act, ppo.policy_hidden)
        self.value = SplitValue(tasks, obs, ppo.value_hidden)
        self.value.set_track_per_task_grads(False)
        adam = TaskAlternatingAdam if ppo.optimizer == "per_task" else FastAdam
        self.optimizer = adam(self.params(), lr=3e-4 * (1 + seed / 10), eps=ppo.adam_eps)
        self.rng = np.random.default_rng(seed)
        if kind == "separate":  # split before any step, value net too
            for net in (self.policy, self.value):
                net.set_split_masks({n: torch.ones(s, dtype=torch.bool) for n, s in net.param_shapes().items()},
                                    optimizer=self.optimizer)
        self.policy.set_track_per_task_grads(kind == "joint")
        self.update(_batch(self.policy, 100 + seed), clip=0.2)
        if kind == "split":
            gen = torch.Generator().manual_seed(seed + 7919)
            self.policy.set_split_masks(random_split_masks(self.policy.param_shapes(), 0.25, gen),
                                        optimizer=self.optimizer)
            self.policy.set_track_per_task_grads(False)

    def params(self) -> list:
        return list(self.policy.parameters()) + list(self.value.parameters())

    def update(self, batch: Batch, clip: float):
        self.policy.zero_per_task_grads()
        return ppo_update(self.policy, self.value, self.optimizer, batch, self.ppo, clip=clip, rng=self.rng)

    def copy(self) -> "Run":
        return copy.deepcopy(self)


def _stack(runs):
    policy, value, optimizer = multi.runs_from_single([r.policy for r in runs], [r.value for r in runs],
                                                      [r.optimizer for r in runs])
    return policy, value, optimizer


def _batched_update(runs, batches, clips, active=None):
    """Update copies of ``runs`` in one batch; returns the copies (written back) and the stats."""
    out = [r.copy() for r in runs]
    policy, value, optimizer = _stack(out)
    policy.zero_per_task_grads()
    rngs = [r.rng if active is None or active[k] else None for k, r in enumerate(out)]
    stats = multi.multi_ppo_update(policy, value, optimizer, multi.RunsBatch.stack(batches), runs[0].ppo,
                                   clips=clips, rngs=rngs)
    for k, r in enumerate(out):
        if r.kind == "joint" and (active is None or active[k]):
            r.per_task = policy.per_task_grads(k)
        multi.runs_to_single(k, policy, value, optimizer, r.policy, r.value, r.optimizer)
    return out, stats, policy


def _assert_same_run(a: Run, b: Run) -> None:
    for net_a, net_b in ((a.policy, b.policy), (a.value, b.value)):
        sa, sb = net_a.state_dict(), net_b.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    assert list(oa["state"]) == list(ob["state"])  # same states, created in the same order
    for pid, state in oa["state"].items():
        assert list(state) == list(ob["state"][pid])
        for key, tensor in state.items():
            assert torch.equal(tensor, ob["state"][pid][key]), (pid, key)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


@pytest.mark.parametrize("dims", [(T, OBS, ACT), BIPED], ids=["three_hoppers", "biped"])
@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
@pytest.mark.parametrize("settings", sorted(SETTINGS))
def test_one_batched_update_equals_each_runs_own_update(optimizer, settings, dims):
    ppo = _ppo(optimizer, settings)
    runs = [Run(seed, kind, ppo, dims) for seed, kind in zip((1, 2, 3), KINDS)]
    batches = [_batch(r.policy, 200 + k) for k, r in enumerate(runs)]
    batched, stats, _ = _batched_update(runs, batches, clips=[0.2] * 3)
    for k, run in enumerate(runs):
        before = run.copy()
        single_stats = run.update(batches[k], clip=0.2)
        assert stats[k] == single_stats
        _assert_same_run(batched[k], run)
        moved = sum(float((a.detach() - b.detach()).abs().sum()) for a, b in zip(run.params(), before.params()))
        assert moved > 0
        if run.kind == "joint":
            ref = run.policy.per_task_grads()
            assert sorted(ref) == sorted(batched[k].per_task)
            for name in ref:
                assert torch.equal(ref[name], batched[k].per_task[name]), name


@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_a_runs_result_does_not_depend_on_the_runs_beside_it(optimizer):
    ppo = _ppo(optimizer, "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "joint"), (2, "split"), (3, "separate"), (4, "joint"))]
    batches = [_batch(r.policy, 300 + k) for k, r in enumerate(runs)]
    alone, stats_alone, _ = _batched_update(runs[1:2], batches[1:2], clips=[0.2])
    for order in ([0, 1, 2], [2, 3, 1], [1, 3]):
        together, stats, _ = _batched_update([runs[i] for i in order], [batches[i] for i in order], [0.2] * len(order))
        slot = order.index(1)
        assert stats[slot] == stats_alone[0]
        _assert_same_run(together[slot], alone[0])


@pytest.mark.parametrize("dims,n", [((T, OBS, ACT), 1328), (BIPED, 1067)], ids=["three_hoppers", "biped"])
@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_seeds_of_one_variant_at_training_size_equal_their_own_updates(dims, n, optimizer):
    """The usual batch: seeds of one variant after the split, the trainer's network and minibatches
    (three_hoppers' 1328 samples per task, minibatches of 266 and 265 rows; the biped's 267 and 266)."""
    ppo = PPOConfig(optimizer=optimizer, epochs=1)
    runs = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        run = Run.__new__(Run)
        run.kind, run.ppo = "split", ppo
        run.policy, run.value = SplitGaussianPolicy(dims[0], dims[1], dims[2]), SplitValue(dims[0], dims[1])
        run.value.set_track_per_task_grads(False)
        run.policy.set_track_per_task_grads(False)
        run.optimizer = (TaskAlternatingAdam if optimizer == "per_task" else FastAdam)(run.params(), lr=3e-4, eps=1e-5)
        run.rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        run.policy.set_split_masks(random_split_masks(run.policy.param_shapes(), 0.25, gen), optimizer=run.optimizer)
        runs.append(run)
    batches = [_batch(r.policy, 400 + k, n=n) for k, r in enumerate(runs)]
    batched, stats, _ = _batched_update(runs, batches, clips=[0.2] * 3)
    for k, run in enumerate(runs):
        assert run.update(batches[k], clip=0.2) == stats[k]
        _assert_same_run(batched[k], run)


def test_runs_keep_their_own_masks_clip_and_learning_rate():
    ppo = _ppo("mixed", "ours")
    runs = [Run(seed, "split", ppo) for seed in (1, 2)]
    masks = [r.policy.split_masks() for r in runs]
    assert any(not torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    batches = [_batch(r.policy, 500 + k) for k, r in enumerate(runs)]
    clips = [0.1, 0.3]
    batched, stats, policy = _batched_update(runs, batches, clips)
    for k, run in enumerate(runs):
        for name, mask in policy.split_masks(k).items():
            assert torch.equal(mask, masks[k][name])
        effective = batched[k].policy.effective_params()
        for name, mask in masks[k].items():  # shared entries: one value for every task
            values = effective[name]
            assert bool((values[0][~mask] == values[1][~mask]).all())
        assert run.update(batches[k], clip=clips[k]) == stats[k]
        _assert_same_run(batched[k], run)


def test_a_run_without_a_batch_is_left_untouched():
    ppo = _ppo("per_task", "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "joint"), (2, "split"))]
    batches = [_batch(runs[0].policy, 600), None]
    batched, stats, _ = _batched_update(runs, batches, clips=[0.2, 0.2], active=[True, False])
    assert stats[1] is None
    _assert_same_run(batched[1], runs[1])
    assert runs[0].update(batches[0], clip=0.2) == stats[0]
    _assert_same_run(batched[0], runs[0])


@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_splitting_one_run_in_the_batch_is_its_own_split(optimizer):
    ppo = _ppo(optimizer, "ours")
    runs = [Run(seed, "joint", ppo) for seed in (1, 2)]
    policy, value, adam = _stack(runs)
    gen = torch.Generator().manual_seed(9)
    masks = random_split_masks(runs[1].policy.param_shapes(), 0.3, gen)
    policy.set_split_masks(1, masks, optimizer=adam)
    runs[1].policy.set_split_masks(masks, optimizer=runs[1].optimizer)
    for k, run in enumerate(runs):
        out = run.copy()
        multi.runs_to_single(k, policy, value, adam, out.policy, out.value, out.optimizer)
        _assert_same_run(out, run)
    assert not any(bool(m.any()) for m in policy.split_masks(0).values())


def test_snapshot_and_restore_of_one_run():
    """The revert rule's snapshot and restore of one run in the batch, as that run's own."""
    ppo = _ppo("mixed", "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "split"), (2, "split"))]
    policy, value, adam = _stack(runs)
    snapshot = policy.snapshot_values(0)
    own = runs[0].policy.snapshot_values()
    assert sorted(snapshot) == sorted(own)
    for key, tensor in own.items():
        assert torch.equal(snapshot[key], tensor), key
    other = policy.snapshot_values(1)
    policy.restore_values(0, other)
    runs[0].policy.restore_values(runs[1].policy.snapshot_values())
    assert torch.equal(policy.snapshot_values(0)["log_std/task"], other["log_std/task"])
    policy.restore_values(0, snapshot)
    runs[0].policy.restore_values(own)
    for k, run in enumerate(runs):
        out = run.copy()
        multi.runs_to_single(k, policy, value, adam, out.policy, out.value, out.optimizer)
        _assert_same_run(out, run)


def test_products_that_batch_differently_are_computed_run_by_run():
    products = multi.VerifiedProducts(min_values=30)
    x = torch.randn(2, 5)  # 10 values a call
    per_run = lambda: x * 2  # noqa: E731
    calls = []

    def sometimes_off():  # equal to the runs' own products twice, then not
        calls.append(1)
        return x * 2 if len(calls) <= 2 else x * 2 + 1e-3

    for _ in range(4):
        assert torch.equal(products(("site",), sometimes_off, per_run), x * 2)
    assert products.per_run_sites == [("site",)]
    assert len(calls) == 3  # not called again once found different
    for _ in range(3):  # 30 equal values: trusted, and the runs' own products no longer computed
        products(("other",), per_run, lambda: x * 2)
    assert products.exact[("other",)] is True
    assert torch.equal(products(("other",), lambda: x * 3, lambda: pytest.fail("per-run computed")), x * 3)
    assert products.per_run_sites == [("site",)]


def test_bad_batches_are_refused():
    ppo = _ppo("mixed", "ours")
    runs = [Run(seed, "joint", ppo) for seed in (1, 2)]
    policy, value, adam = _stack(runs)
    batch = multi.RunsBatch.stack([_batch(r.policy, 700 + k) for k, r in enumerate(runs)])
    with pytest.raises(ValueError, match="clips 1"):
        multi.multi_ppo_update(policy, value, adam, batch, ppo, clips=[0.2], rngs=[r.rng for r in runs])
    with pytest.raises(ValueError, match="needs MultiTaskAlternatingAdam"):
        multi.multi_ppo_update(policy, value, adam, batch, _ppo("per_task", "ours"), clips=[0.2] * 2,
                               rngs=[r.rng for r in runs])
    with pytest.raises(ValueError, match="one shape"):
        multi.RunsBatch.stack([_batch(runs[0].policy, 1), _batch(runs[0].policy, 2, n=100)])
    other = SplitGaussianPolicy(T, OBS, ACT, [32, 32])
    with pytest.raises(ValueError, match="one shape"):
        policy.load_run(0, other)
    with pytest.raises(ValueError, match="all FastAdam or all TaskAlternatingAdam"):
        multi.runs_from_single([r.policy for r in runs], [r.value for r in runs],
                               [runs[0].optimizer, TaskAlternatingAdam(runs[1].params())])
    with pytest.raises(ValueError, match="expected input"):
        policy.train_log_prob(torch.zeros(2, T + 1, 4, OBS), torch.zeros(2, T + 1, 4, ACT))
