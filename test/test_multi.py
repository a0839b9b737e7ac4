"""The PPO update of K runs in one batch (learning/multi.py, optim.py, ppo_update.py).

Two kinds of check. Against the reference: the update's gradients are autograd's of ``task_losses``
(float32 rounding apart) and its Adam step is ``torch.optim.Adam(fused=True)``'s (bit for bit).
Between batches: a run computes the very numbers (``torch.equal``) in a batch of any runs, in any slot,
as alone (a batch of one). The batches mix runs in different states (joint phase recording per-task
gradients, a partial split, everything split) so the paths where runs' computations differ are all
exercised.
"""
import copy

import numpy as np
import pytest
import torch

from mt_specialize.learning import multi
from mt_specialize.learning.batch import Batch
from mt_specialize.learning.multi import BatchedRuns
from mt_specialize.learning.optim import RunAdam
from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue
from mt_specialize.learning.ppo import PPOConfig
from mt_specialize.learning.ppo_update import RunsBatch, UpdateStats, ppo_update, task_losses
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
                     value_hidden=HIDDEN, **{**SETTINGS[settings], **extra})


def _batch(policy: SplitGaussianPolicy, seed: int, n: int = N) -> Batch:
    g = torch.Generator().manual_seed(seed)
    tasks = policy.n_tasks
    obs, act = torch.randn(tasks, n, policy.obs_dim, generator=g), torch.randn(tasks, n, policy.act_dim, generator=g)
    with torch.no_grad():
        old = policy.log_prob(obs, act) + 0.2 * torch.randn(tasks, n, generator=g)
    return Batch(obs, act, old, torch.randn(tasks, n, generator=g), torch.randn(tasks, n, generator=g))


class Run:
    """One run as the trainer holds it: its modules and ``RunAdam`` bound to a batch (``batched``,
    ``slot``), alone at first. Built with one update behind it (so Adam has state) and, for
    ``split``, a split that copies moments into the newly split entries."""

    def __init__(self, seed: int, kind: str, ppo: PPOConfig, dims: tuple[int, int, int] = (T, OBS, ACT),
                 lr: float | None = None, update: bool = True):
        torch.manual_seed(seed)
        self.kind, self.ppo, self.dims = kind, ppo, dims
        tasks, obs, act = dims
        self.policy = SplitGaussianPolicy(tasks, obs, act, ppo.policy_hidden)
        self.value = SplitValue(tasks, obs, ppo.value_hidden)
        self.adam = RunAdam(self.params(), lr=3e-4 * (1 + seed / 10) if lr is None else lr, eps=ppo.adam_eps)
        self.rng = np.random.default_rng(seed)
        self.batched, self.slot = BatchedRuns([(self.policy, self.value, self.adam)]), 0
        if kind == "separate":  # split before any step, value net too
            for net in (self.policy, self.value):
                self.split(net, {n: torch.ones(s, dtype=torch.bool) for n, s in net.param_shapes().items()})
        if update:
            self.update(_batch(self.policy, 100 + seed), clip=0.2)
        if kind == "split":
            gen = torch.Generator().manual_seed(seed + 7919)
            self.split(self.policy, random_split_masks(self.policy.param_shapes(), 0.25, gen))

    @property
    def track(self) -> bool:
        return self.kind == "joint"

    def params(self) -> list:
        return list(self.policy.parameters()) + list(self.value.parameters())

    def split(self, net, masks) -> None:
        self.batched.optimizer.copy_state_to_split(self.slot, net.set_split_masks(masks))

    def update(self, batch: Batch, clip: float) -> UpdateStats:
        """The run's update alone (a batch of one); its per-task gradients in ``self.per_task``."""
        stats = ppo_update(self.batched, RunsBatch.stack([batch]), self.ppo, clips=[clip], rngs=[self.rng],
                           track=[self.track])[0]
        self.per_task = self.batched.policy.per_task_grads(0) if self.track else None
        return stats

    def copy(self) -> "Run":
        """The run through its checkpoint state (modules' and Adam's state dicts), alone in a batch of its own."""
        out = Run.__new__(Run)
        out.kind, out.ppo, out.dims = self.kind, self.ppo, self.dims
        tasks, obs, act = self.dims
        out.policy = SplitGaussianPolicy(tasks, obs, act, self.ppo.policy_hidden)
        out.value = SplitValue(tasks, obs, self.ppo.value_hidden)
        out.policy.load_state_dict(self.policy.state_dict())
        out.value.load_state_dict(self.value.state_dict())
        out.adam = RunAdam(out.params(), lr=1.0, eps=self.ppo.adam_eps)
        out.adam.load_state_dict(self.adam.state_dict())
        out.rng = copy.deepcopy(self.rng)
        out.batched, out.slot = BatchedRuns([(out.policy, out.value, out.adam)]), 0
        return out


def _together(runs: list[Run], batches, clips, sitting_out=()):
    """Copies of ``runs`` bound to one batch and updated in it: (the copies, their stats)."""
    out = [r.copy() for r in runs]
    batched = BatchedRuns([(r.policy, r.value, r.adam) for r in out])
    for k, r in enumerate(out):
        r.batched, r.slot = batched, k
    rngs = [None if k in sitting_out else r.rng for k, r in enumerate(out)]
    stats = ppo_update(batched, RunsBatch.stack(batches), runs[0].ppo, clips=clips, rngs=rngs,
                       track=[r.track for r in out])
    for k, r in enumerate(out):
        r.per_task = batched.policy.per_task_grads(k) if r.track and k not in sitting_out else None
    return out, stats


def _assert_same_run(a: Run, b: Run) -> None:
    for net_a, net_b in ((a.policy, b.policy), (a.value, b.value)):
        sa, sb = net_a.state_dict(), net_b.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    oa, ob = a.adam.state_dict(), b.adam.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    assert list(oa["state"]) == list(ob["state"])  # same states, created in the same order
    for pid, state in oa["state"].items():
        assert list(state) == list(ob["state"][pid])
        for key, tensor in state.items():
            assert torch.equal(tensor, ob["state"][pid][key]), (pid, key)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


# -- against the reference -------------------------------------------------------------------------------
@pytest.mark.parametrize("split,track,entropy,split_value", [
    (None, True, 0.0, False), (None, False, 0.0, False), (0.3, True, 0.0, False),
    (0.3, False, 0.01, False), (1.0, False, 0.0, True), (0.5, True, 0.0, True)])
def test_mixed_update_gradients_are_autograds_of_the_mean_task_loss(split, track, entropy, split_value):
    """One minibatch of the update (``mixed``): the gradient it steps on is autograd's of ``mean_T loss_t``
    (``task_losses``) on the run's modules, the per-task gradients it records the hooks', its figures
    the loss terms."""
    ppo = PPOConfig(epochs=1, minibatch_per_task=N, policy_hidden=HIDDEN, value_hidden=HIDDEN, entropy_coef=entropy)
    run = Run(1, "joint", ppo, update=False)
    g = torch.Generator().manual_seed(5)
    if split is not None:
        with torch.no_grad():
            for p in run.params():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        run.split(run.policy, {n: torch.rand(s, generator=g) < split for n, s in run.policy.param_shapes().items()})
        if split_value:
            run.split(run.value, {n: torch.ones(s, dtype=torch.bool) for n, s in run.value.param_shapes().items()})
    batch = _batch(run.policy, 6)
    reference = run.copy()
    reference.policy.set_track_per_task_grads(track)
    loss = task_losses(reference.policy, reference.value, batch, 0.2, ppo.value_coef, entropy)
    loss.mean().backward()
    stats = ppo_update(run.batched, RunsBatch.stack([batch]), ppo, clips=[0.2], rngs=[run.rng], track=[track])[0]
    for s in run.batched.optimizer.slots:  # the gradient buffers of the one step
        param = reference.params()[s.index]
        if param.grad is None:  # not in the graph: the per-task half of an entry nothing of is split
            assert not s.per_task or not s.entry.split[0]
        else:
            torch.testing.assert_close(s.grad[0], param.grad, rtol=1e-5, atol=1e-6)
    if track:
        ours = run.batched.policy.per_task_grads(0)
        for name, grad in reference.policy.per_task_grads().items():
            torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        from mt_specialize.learning.ppo import clipped_surrogate, value_loss
        policy_loss = clipped_surrogate(reference.policy.log_prob(batch.obs, batch.actions), batch.old_logp,
                                        batch.advantages, 0.2)
        v_loss = value_loss(reference.value(batch.obs), batch.returns)
    assert stats.policy_loss == pytest.approx(float(policy_loss.mean()), rel=1e-5, abs=1e-6)
    assert stats.value_loss == pytest.approx(float(v_loss.mean()), rel=1e-5)


@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_the_adam_step_is_fused_torch_adams(optimizer):
    """A run's Adam step from the update's gradients is ``torch.optim.Adam(fused=True)``'s on the
    same gradients, loaded from the run's ``state_dict``: the same parameters and state, bit for bit
    (``per_task``: each task's step is Adam's over its effective entries' halves; with one task the
    halves are the tensors)."""
    tasks = 1 if optimizer == "per_task" else T
    ppo = PPOConfig(optimizer=optimizer, epochs=1, minibatch_per_task=N, policy_hidden=HIDDEN, value_hidden=HIDDEN)
    run = Run(1, "split", ppo, dims=(tasks, OBS, ACT))
    before = run.copy()
    torch_adam = torch.optim.Adam(before.params(), lr=1.0, eps=ppo.adam_eps, fused=True)
    torch_adam.load_state_dict(copy.deepcopy(run.adam.state_dict()))  # not views of the run's slot
    run.update(_batch(run.policy, 7), clip=0.2)
    for s in run.batched.optimizer.slots:
        param = before.params()[s.index]
        if s.per_task and not s.entry.split[0]:
            continue  # not in the loss: Adam leaves it alone
        if optimizer == "per_task" and s.entry.split[0]:  # one task: the split entries' row 0, the shared rest
            grad = torch.where(s.entry.mask[0], s.entry.grad_row[0], 0.0) if s.per_task else \
                torch.where(s.entry.mask[0], 0.0, s.entry.grad_shared[0])
            param.grad = grad.expand_as(param).clone() if s.per_task else grad.clone()
        else:
            param.grad = s.grad[0].clone()
    torch_adam.step()
    for a, b in zip(run.params(), before.params()):
        assert torch.equal(a, b)
    for key, tensor in torch_adam.state_dict()["state"].items():
        for name, value in tensor.items():
            assert torch.equal(run.adam.state_dict()["state"][key][name], value), (key, name)


def test_a_runs_adam_is_torch_adams_format_and_holds_its_slot():
    """``RunAdam``'s ``state_dict`` loads into a plain ``torch.optim.Adam`` and back; its state is the
    batch's (views: an update moves it); loading a state dict loads the slot; it does not step itself."""
    run = Run(1, "split", _ppo("mixed", "ours"))
    plain = torch.optim.Adam(run.params(), lr=1e-2, eps=1e-5)
    plain.load_state_dict(copy.deepcopy(run.adam.state_dict()))
    first = next(iter(run.adam.state.values()))
    step = float(first["step"])
    run.update(_batch(run.policy, 8), clip=0.2)
    assert float(first["step"]) == step + 3 * 2  # 2 epochs x 3 minibatches, counted in the batch's slot
    state = copy.deepcopy(plain.state_dict())
    run.adam.load_state_dict(state)
    assert float(first["step"]) == step  # the slot took the loaded state
    assert float(next(iter(run.adam.state.values()))["step"]) == step
    with pytest.raises(RuntimeError, match="ppo_update"):
        run.adam.step()


def test_a_runs_modules_are_views_of_its_slot():
    """What the run's modules hold is what the update reads and writes: an update moves the modules'
    parameters, a value written through a module (the revert rule's restore) is the update's."""
    run = Run(1, "split", _ppo("mixed", "ours"))
    snapshot = run.policy.snapshot_values()
    run.update(_batch(run.policy, 9), clip=0.2)
    assert not torch.equal(run.policy.snapshot_values()["mean.0.weight/shared"], snapshot["mean.0.weight/shared"])
    run.policy.restore_values(snapshot)
    assert torch.equal(run.batched.policy.mean.layers[0][0].shared[0], snapshot["mean.0.weight/shared"])
    reference = run.copy()  # the restored state, through state dicts
    batch = _batch(run.policy, 10)
    assert run.update(batch, clip=0.2) == reference.update(batch, clip=0.2)
    _assert_same_run(run, reference)


def test_newly_split_entries_inherit_the_shared_entrys_adam_moments():
    run = Run(1, "joint", _ppo("mixed", "ours"))
    layer = run.policy.mean.layers[0]
    assert layer.weight_task not in run.adam.state  # nothing split yet: the per-task half had no gradient
    masks = random_split_masks(run.policy.param_shapes(), 0.5, torch.Generator().manual_seed(6))
    before = list(run.adam.state)
    run.split(run.policy, masks)
    entries = run.policy._named_entries()
    created = [run.policy._entry_tensors(*entries[n])[1] for n, m in masks.items() if bool(m.any())]
    after = list(run.adam.state)
    assert after[:len(before)] == before and after[len(before):] == created  # states in creation order
    split = masks["mean.0.weight"]
    shared, task = run.adam.state[layer.weight_shared], run.adam.state[layer.weight_task]
    for moment in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(task[moment][:, split], shared[moment].expand_as(layer.weight_task)[:, split])
        assert not bool(task[moment][:, ~split].any())
    assert torch.equal(task["step"], shared["step"])


# -- a run in a batch is the run alone ----------------------------------------------------------------------
@pytest.mark.parametrize("dims", [(T, OBS, ACT), BIPED], ids=["three_hoppers", "biped"])
@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
@pytest.mark.parametrize("settings", sorted(SETTINGS))
def test_runs_in_one_batch_compute_what_each_computes_alone(optimizer, settings, dims):
    ppo = _ppo(optimizer, settings)
    runs = [Run(seed, kind, ppo, dims) for seed, kind in zip((1, 2, 3), KINDS)]
    batches = [_batch(r.policy, 200 + k) for k, r in enumerate(runs)]
    together, stats = _together(runs, batches, clips=[0.2] * 3)
    for k, run in enumerate(runs):
        before = run.copy()
        assert run.update(batches[k], clip=0.2) == stats[k]
        _assert_same_run(together[k], run)
        moved = sum(float((a.detach() - b.detach()).abs().sum()) for a, b in zip(run.params(), before.params()))
        assert moved > 0
        if run.track:
            assert sorted(run.per_task) == sorted(together[k].per_task)
            for name in run.per_task:
                assert torch.equal(run.per_task[name], together[k].per_task[name]), name


@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_a_runs_result_does_not_depend_on_the_runs_beside_it(optimizer):
    ppo = _ppo(optimizer, "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "joint"), (2, "split"), (3, "separate"), (4, "joint"))]
    batches = [_batch(r.policy, 300 + k) for k, r in enumerate(runs)]
    alone, stats_alone = _together(runs[1:2], batches[1:2], clips=[0.2])
    for order in ([0, 1, 2], [2, 3, 1], [1, 3]):
        together, stats = _together([runs[i] for i in order], [batches[i] for i in order], [0.2] * len(order))
        slot = order.index(1)
        assert stats[slot] == stats_alone[0]
        _assert_same_run(together[slot], alone[0])


@pytest.mark.parametrize("dims,n", [((T, OBS, ACT), 1328), (BIPED, 1067)], ids=["three_hoppers", "biped"])
@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_seeds_of_one_variant_at_training_size_compute_what_each_computes_alone(dims, n, optimizer):
    """The usual batch: seeds of one variant after the split, the trainer's network and minibatches
    (three_hoppers' 1328 samples per task, minibatches of 266 and 265 rows; the biped's 267 and 266)."""
    ppo = PPOConfig(optimizer=optimizer, epochs=1)
    runs = []
    for seed in (1, 2, 3):
        run = Run(seed, "split", ppo, dims, lr=3e-4, update=False)
        gen = torch.Generator().manual_seed(seed)
        run.split(run.policy, random_split_masks(run.policy.param_shapes(), 0.25, gen))
        runs.append(run)
    batches = [_batch(r.policy, 400 + k, n=n) for k, r in enumerate(runs)]
    together, stats = _together(runs, batches, clips=[0.2] * 3)
    for k, run in enumerate(runs):
        assert run.update(batches[k], clip=0.2) == stats[k]
        _assert_same_run(together[k], run)


def test_runs_keep_their_own_masks_clip_and_learning_rate():
    ppo = _ppo("mixed", "ours")
    runs = [Run(seed, "split", ppo) for seed in (1, 2)]
    masks = [r.policy.split_masks() for r in runs]
    assert any(not torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    assert runs[0].adam.param_groups[0]["lr"] != runs[1].adam.param_groups[0]["lr"]
    batches = [_batch(r.policy, 500 + k) for k, r in enumerate(runs)]
    clips = [0.1, 0.3]
    together, stats = _together(runs, batches, clips)
    for k, run in enumerate(runs):
        for name, mask in together[k].policy.split_masks().items():
            assert torch.equal(mask, masks[k][name])
        effective = together[k].policy.effective_params()
        for name, mask in masks[k].items():  # shared entries: one value for every task
            values = effective[name]
            assert bool((values[0][~mask] == values[1][~mask]).all())
        assert run.update(batches[k], clip=clips[k]) == stats[k]
        _assert_same_run(together[k], run)


def test_a_run_without_a_batch_is_left_untouched():
    ppo = _ppo("per_task", "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "joint"), (2, "split"))]
    batches = [_batch(runs[0].policy, 600), None]
    together, stats = _together(runs, batches, clips=[0.2, 0.2], sitting_out=(1,))
    assert stats[1] is None
    _assert_same_run(together[1], runs[1])
    assert runs[0].update(batches[0], clip=0.2) == stats[0]
    _assert_same_run(together[0], runs[0])


@pytest.mark.parametrize("optimizer", ["mixed", "per_task"])
def test_splitting_one_run_in_the_batch_is_its_own_split(optimizer):
    ppo = _ppo(optimizer, "ours")
    runs = [Run(seed, "joint", ppo) for seed in (1, 2)]
    together = [r.copy() for r in runs]
    batched = BatchedRuns([(r.policy, r.value, r.adam) for r in together])
    for k, r in enumerate(together):
        r.batched, r.slot = batched, k
    masks = random_split_masks(runs[1].policy.param_shapes(), 0.3, torch.Generator().manual_seed(9))
    together[1].split(together[1].policy, masks)
    runs[1].split(runs[1].policy, masks)
    for k, run in enumerate(runs):
        _assert_same_run(together[k], run)
    assert not any(bool(m.any()) for m in together[0].policy.split_masks().values())
    batches = [_batch(r.policy, 650 + k) for k, r in enumerate(runs)]
    stats = ppo_update(batched, RunsBatch.stack(batches), ppo, clips=[0.2] * 2,
                       rngs=[r.rng for r in together], track=[False, False])
    for k, run in enumerate(runs):
        run.kind = "split"
        assert run.update(batches[k], clip=0.2) == stats[k]
        _assert_same_run(together[k], run)


def test_a_group_that_loses_a_run_goes_on_as_before():
    """Binding the runs again (a group that loses a run) moves their state into the new batch as it is."""
    ppo = _ppo("mixed", "ours")
    runs = [Run(seed, kind, ppo) for seed, kind in ((1, "joint"), (2, "split"), (3, "separate"))]
    batches = [_batch(r.policy, 700 + k) for k, r in enumerate(runs)]
    together, _ = _together(runs, batches, clips=[0.2] * 3)
    for run, batch in zip(runs, batches):
        run.update(batch, clip=0.2)
    rebound = BatchedRuns([(r.policy, r.value, r.adam) for r in together[1:]])
    for k, r in enumerate(together[1:]):
        r.batched, r.slot = rebound, k
    batches = [_batch(r.policy, 750 + k) for k, r in enumerate(runs)]
    stats = ppo_update(rebound, RunsBatch.stack(batches[1:]), ppo, clips=[0.2] * 2,
                       rngs=[r.rng for r in together[1:]], track=[False, False])
    for k, run in enumerate(runs[1:]):
        assert run.update(batches[k + 1], clip=0.2) == stats[k]
        _assert_same_run(together[k + 1], run)


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
    copies = [r.copy() for r in runs]
    batched = BatchedRuns([(r.policy, r.value, r.adam) for r in copies])
    batch = RunsBatch.stack([_batch(r.policy, 700 + k) for k, r in enumerate(runs)])
    with pytest.raises(ValueError, match="clips 1"):
        ppo_update(batched, batch, ppo, clips=[0.2], rngs=[r.rng for r in runs], track=[False] * 2)
    with pytest.raises(ValueError, match="one shape"):
        RunsBatch.stack([_batch(runs[0].policy, 1), _batch(runs[0].policy, 2, n=100)])
    other = SplitGaussianPolicy(T, OBS, ACT, [32, 32])
    with pytest.raises(ValueError, match="one shape"):
        batched.policy.bind(0, other)
    odd = Run(5, "joint", _ppo("mixed", "ours", adam_eps=1e-3))
    with pytest.raises(ValueError, match="one Adam"):
        BatchedRuns([(runs[0].policy, runs[0].value, runs[0].adam), (odd.policy, odd.value, odd.adam)])
    with pytest.raises(ValueError, match="expected input"):
        batched.policy.train_log_prob(torch.zeros(2, T + 1, 4, OBS), torch.zeros(2, T + 1, 4, ACT))
