"""Gradient-spread score and split-mask selection."""

import pytest
import torch

from mt_specialize.learning.policy import SplitGaussianPolicy
from mt_specialize.learning.specialize import (GradientSpread, count_split, n_split_entries, random_split_masks,
                                      select_split_masks)


def hand_grads():
    # T = 3 tasks; "w" (2, 2), "b" (2,)
    w = torch.tensor([[[1.0, 0.0], [5.0, 2.0]],
                      [[1.0, 0.0], [-5.0, 2.0]],
                      [[1.0, 3.0], [0.0, 2.0]]])
    b = torch.tensor([[0.0, 10.0], [1.0, -10.0], [2.0, 0.0]])
    return {"w": w, "b": b}


def test_spread_matches_hand_variance():
    gs = GradientSpread()
    gs.add(hand_grads())
    s = gs.score()
    # population variance over tasks
    exp_w = torch.tensor([[0.0, 2.0], [50.0 / 3.0, 0.0]], dtype=torch.float64)
    exp_b = torch.tensor([2.0 / 3.0, 200.0 / 3.0], dtype=torch.float64)
    torch.testing.assert_close(s["w"], exp_w)
    torch.testing.assert_close(s["b"], exp_b)
    gs_std = GradientSpread(statistic="std")
    gs_std.add(hand_grads())
    torch.testing.assert_close(gs_std.score()["b"], exp_b.sqrt())


def test_select_expected_entries_pooled():
    gs = GradientSpread()
    gs.add(hand_grads())
    # scores: w=[[0,2],[16.7,0]], b=[0.67,66.7]; 6 entries; sp=0.5 -> k=3: b[1], w[1,0], w[0,1]
    m = select_split_masks(gs.score(), 0.5)
    assert torch.equal(m["w"], torch.tensor([[False, True], [True, False]]))
    assert torch.equal(m["b"], torch.tensor([False, True]))
    assert m["w"].dtype == torch.bool
    m1 = select_split_masks(gs.score(), 1 / 6)
    assert count_split(m1) == 1 and m1["b"][1] and not m1["w"].any()
    assert count_split(select_split_masks(gs.score(), 0.0)) == 0
    assert count_split(select_split_masks(gs.score(), 1.0)) == 6


def test_ties_deterministic_and_sp_validation():
    score = {"a": torch.ones(2, 2), "c": torch.ones(3)}
    m = select_split_masks(score, 3 / 7)
    assert torch.equal(m["a"], torch.tensor([[True, True], [True, False]]))
    assert not m["c"].any()
    for sp in (-0.1, 1.01, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="sp"):
            select_split_masks(score, sp)
        with pytest.raises(ValueError, match="sp"):
            random_split_masks({"a": torch.Size([3])}, sp)
    with pytest.raises(ValueError, match="non-finite"):
        select_split_masks({"a": torch.tensor([1.0, float("nan")])}, 0.5)


def test_sp_counts_all_policy_entries():
    pol = SplitGaussianPolicy(3, 11, 3)
    n = pol.n_params()
    assert n == sum(s.numel() for s in pol.split_masks().values())
    g = torch.Generator().manual_seed(0)
    score = {k: torch.rand(s, generator=g, dtype=torch.float64) for k, s in pol.param_shapes().items()}
    masks = select_split_masks(score, 0.25)
    assert count_split(masks) == round(0.25 * n) == n_split_entries(n, 0.25)
    # the split entries are exactly the globally largest scores (not per-layer quotas)
    flat = torch.cat([v.reshape(-1) for v in score.values()])
    chosen = torch.cat([m.reshape(-1) for m in masks.values()])
    assert flat[chosen].min() > flat[~chosen].max()
    pol.set_split_masks(masks)  # compatible with the policy


def test_window_average_pushes_out_oldest():
    gs = GradientSpread(window=10)
    grads = []
    for it in range(11):
        g = torch.Generator().manual_seed(it)
        scale = 1000.0 if it == 0 else 1.0  # the first iteration would dominate if kept
        grads.append({"w": scale * torch.randn(4, 3, 2, generator=g)})
    for it in range(10):
        gs.add(grads[it])
    assert gs.n_recorded == 10
    first10 = torch.stack([grads[i]["w"].double().var(0, unbiased=False) for i in range(10)]).mean(0)
    torch.testing.assert_close(gs.score()["w"], first10)
    gs.add(grads[10])
    assert gs.n_recorded == 10
    last10 = torch.stack([grads[i]["w"].double().var(0, unbiased=False) for i in range(1, 11)]).mean(0)
    torch.testing.assert_close(gs.score()["w"], last10)
    assert not torch.allclose(last10, first10)


def test_spread_errors():
    gs = GradientSpread()
    with pytest.raises(RuntimeError):
        gs.score()
    gs.add({"w": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="changed"):
        gs.add({"w": torch.zeros(2, 4)})
    with pytest.raises(ValueError):
        GradientSpread(window=0)
    with pytest.raises(ValueError):
        GradientSpread(statistic="mad")


def test_random_masks_count_and_seeds():
    shapes = {"a": torch.Size([10, 7]), "b": torch.Size([7]), "log_std": torch.Size([3])}
    total = 70 + 7 + 3
    m0 = random_split_masks(shapes, 0.25, torch.Generator().manual_seed(0))
    m0b = random_split_masks(shapes, 0.25, torch.Generator().manual_seed(0))
    m1 = random_split_masks(shapes, 0.25, torch.Generator().manual_seed(1))
    assert count_split(m0) == count_split(m1) == round(0.25 * total) == 20
    assert all(m0[k].shape == s and m0[k].dtype == torch.bool for k, s in shapes.items())
    assert all(torch.equal(m0[k], m0b[k]) for k in shapes)
    assert any(not torch.equal(m0[k], m1[k]) for k in shapes)


def test_state_dict_round_trip():
    gs = GradientSpread(window=3)
    for it in range(5):
        g = torch.Generator().manual_seed(it)
        gs.add({"mean.0.weight": torch.randn(2, 4, 3, generator=g), "log_std": torch.randn(2, 3, generator=g)})
    sd = gs.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    gs2 = GradientSpread(window=3)
    gs2.load_state_dict(sd)
    assert gs2.n_recorded == 3
    for k, v in gs.score().items():
        assert torch.equal(gs2.score()[k], v)
    extra = {"mean.0.weight": torch.randn(2, 4, 3), "log_std": torch.randn(2, 3)}
    gs.add(extra)
    gs2.add(extra)
    for k, v in gs.score().items():
        assert torch.equal(gs2.score()[k], v)
    with pytest.raises(ValueError, match="window"):
        GradientSpread(window=4).load_state_dict(sd)


def test_end_to_end_with_policy_grads():
    torch.manual_seed(0)
    pol = SplitGaussianPolicy(2, 4, 2, hidden=(8,))
    gs = GradientSpread()
    obs = torch.randn(2, 16, 4)
    act = torch.randn(2, 16, 2)
    for _ in range(3):
        pol.zero_grad()
        w = torch.tensor([[1.0], [-1.0]])  # opposite objectives -> disagreement
        (-(pol.log_prob(obs, act) * w).mean(1).sum()).backward()
        gs.add(pol.per_task_grads())
    masks = select_split_masks(gs.score(), 0.25)
    assert count_split(masks) == round(0.25 * pol.n_params())
    pol.set_split_masks(masks)


def test_gradient_spread_does_not_depend_on_the_order_gradients_come_in():
    """Backward passes may list parameters in another order (e.g. a run resumed by other code)."""
    g = {"b": torch.randn(2, 3), "a": torch.randn(2, 4, 3), "log_std": torch.randn(2, 3)}
    reversed_order = dict(reversed(list(g.items())))
    one, other = GradientSpread(window=3), GradientSpread(window=3)
    one.add(g)
    other.add(reversed_order)
    one.add(reversed_order)  # mixed orders in one accumulator: no error
    other.add(g)
    assert list(one.score()) == list(other.score()) == sorted(g)
    for name in g:
        assert torch.equal(one.score()[name], other.score()[name])
    resumed = GradientSpread(window=3)
    resumed.load_state_dict(one.state_dict())
    resumed.add(g)
    one.add(reversed_order)
    assert all(torch.equal(resumed.score()[n], one.score()[n]) for n in g)
