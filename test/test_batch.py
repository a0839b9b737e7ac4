"""Batch: the task-major tensors of an update, reordered and sliced field by field."""
import torch

from mt_specialize.learning.batch import Batch


def _batch(T=3, N=5, obs_dim=4, act_dim=2):
    g = torch.Generator().manual_seed(0)
    return Batch(obs=torch.randn(T, N, obs_dim, generator=g), actions=torch.randn(T, N, act_dim, generator=g),
                 old_logp=torch.randn(T, N, generator=g), advantages=torch.randn(T, N, generator=g),
                 returns=torch.randn(T, N, generator=g))


def test_gather_rows_reorders_each_task_by_its_own_order():
    batch = _batch()
    order = torch.stack([torch.randperm(5, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    shuffled = batch.gather_rows(order)
    tasks = torch.arange(3)[:, None]
    for name in ("obs", "actions", "old_logp", "advantages", "returns"):
        assert torch.equal(getattr(shuffled, name), getattr(batch, name)[tasks, order])
    assert not torch.equal(shuffled.obs, batch.obs)


def test_rows_and_task_slice_every_field():
    batch = _batch()
    minibatch = batch.rows(1, 4)
    assert minibatch.obs.shape == (3, 3, 4) and minibatch.actions.shape == (3, 3, 2)
    assert minibatch.returns.shape == (3, 3) and minibatch.samples_per_task == 3
    assert torch.equal(minibatch.advantages, batch.advantages[:, 1:4])
    own = minibatch.task(2)
    assert own.obs.shape == (3, 4) and own.old_logp.shape == (3,)
    assert torch.equal(own.actions, batch.actions[2, 1:4])
