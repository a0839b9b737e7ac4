"""Split-network mechanics: init, where-trick, gradients, masks, Adam behaviour."""

import math

import pytest
import torch

from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue, normc_

T, OBS, ACT = 3, 5, 2
HID = (8, 8)


def plain_mlp(ws, bs, x):
    """Reference: ordinary MLP on (B, in) with weights (in,out), tanh hidden."""
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if i < len(ws) - 1:
            h = torch.tanh(h)
    return h


def random_masks(model, p, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) < p for n, s in model.param_shapes().items()}


def make_policy(seed=0):
    torch.manual_seed(seed)
    return SplitGaussianPolicy(T, OBS, ACT, hidden=HID)


def batch(seed=1, b=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, b, OBS, generator=g), torch.randn(T, b, ACT, generator=g)


def test_init_normc_zero_bias_copies_equal():
    torch.manual_seed(0)
    pol = SplitGaussianPolicy(T, 11, 3)  # default 3x64
    layers = pol.mean.layers
    assert len(layers) == 4
    for i, layer in enumerate(layers):
        gain = 0.01 if i == 3 else 1.0
        norms = layer.weight_shared.detach().norm(dim=0)
        torch.testing.assert_close(norms, torch.full_like(norms, gain), rtol=1e-5, atol=0)
        assert torch.all(layer.bias_shared == 0)
        assert torch.equal(layer.weight_task, layer.weight_shared.detach().expand_as(layer.weight_task))
        assert torch.equal(layer.bias_task, layer.bias_shared.detach().expand_as(layer.bias_task))
        assert layer.weight_shared.dtype == torch.float32
    assert torch.all(pol.log_std.log_std_shared == 0) and torch.all(pol.log_std.log_std_task == 0)
    val = SplitValue(T, 11)
    out_norm = val.net.layers[-1].weight_shared.detach().norm(dim=0)
    torch.testing.assert_close(out_norm, torch.ones_like(out_norm))
    assert all(not m.any() for m in pol.split_masks().values())


def test_normc_columns():
    w = normc_(torch.empty(20, 7), 2.5)
    torch.testing.assert_close(w.norm(dim=0), torch.full((7,), 2.5), rtol=1e-5, atol=0)


def test_n_params_and_names():
    pol = SplitGaussianPolicy(T, 11, 3)
    expected = (11 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 3 + 3) + 3
    assert pol.n_params() == expected
    assert list(pol.split_masks()) == [
        "mean.0.weight", "mean.0.bias", "mean.1.weight", "mean.1.bias", "mean.2.weight",
        "mean.2.bias", "mean.3.weight", "mean.3.bias", "log_std"]
    val = SplitValue(T, 11)
    assert val.n_params() == (11 * 64 + 64) + 2 * (64 * 64 + 64) + 65
    assert list(val.split_masks())[0] == "value.0.weight"


def test_all_false_equals_plain_shared_mlp():
    pol = make_policy()
    obs, act = batch()
    ws = [l.weight_shared.detach().clone().requires_grad_() for l in pol.mean.layers]
    bs = [l.bias_shared.detach().clone().requires_grad_() for l in pol.mean.layers]
    ref = plain_mlp(ws, bs, obs.reshape(-1, OBS)).reshape(T, -1, ACT)
    out = pol.mean_action(obs)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
    # gradients of a generic loss
    (ref ** 3).sum().backward()
    (out ** 3).sum().backward()
    for l, w, b in zip(pol.mean.layers, ws, bs):
        torch.testing.assert_close(l.weight_shared.grad, w.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(l.bias_shared.grad, b.grad, rtol=1e-5, atol=1e-7)
        assert l.weight_task.grad is None  # per-task copies are not in the graph when nothing is split


def test_log_prob_matches_manual():
    pol = make_policy()
    with torch.no_grad():
        pol.log_std.log_std_shared.copy_(torch.tensor([0.3, -0.7]))
    obs, act = batch()
    mu = pol.mean_action(obs)
    std = torch.tensor([0.3, -0.7]).exp()
    manual = (-((act - mu) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
    lp = pol.log_prob(obs, act)
    assert lp.shape == (T, 7)
    torch.testing.assert_close(lp, manual)
    d = pol.distribution(obs)
    assert d.mean.shape == (T, 7, ACT) and d.stddev.shape == (T, 7, ACT)


def per_task_reference(pol, obs, act):
    """Task-by-task gradients of task i's loss w.r.t. task i's effective params (plain nn)."""
    eff = pol.effective_params()
    names = list(eff)
    n_layers = len(pol.mean.layers)
    out = {n: torch.zeros_like(eff[n]) for n in names}
    for i in range(T):
        leaves = {n: eff[n][i].clone().requires_grad_() for n in names}
        ws = [leaves[f"mean.{k}.weight"] for k in range(n_layers)]
        bs = [leaves[f"mean.{k}.bias"] for k in range(n_layers)]
        mu = plain_mlp(ws, bs, obs[i])
        dist = torch.distributions.Normal(mu, leaves["log_std"].exp())
        loss_i = -(dist.log_prob(act[i]).sum(-1) * (i + 1.0)).mean()
        loss_i.backward()
        for n in names:
            out[n][i] = leaves[n].grad
    return out


def per_task_loss(pol, obs, act):
    w = torch.arange(1.0, T + 1).unsqueeze(1)  # different weighting per task, so tasks differ
    return -(pol.log_prob(obs, act) * w).mean(dim=1).sum()


@pytest.mark.parametrize("p_split", [0.0, 0.4, 1.0])
def test_per_task_grads_equal_task_by_task(p_split):
    pol = make_policy()
    # make per-task copies differ so split entries matter
    pol.set_split_masks(random_masks(pol, p_split, seed=3))
    with torch.no_grad():
        for l in pol.mean.layers:
            l.weight_task.add_(0.1 * torch.randn_like(l.weight_task))
        pol.log_std.log_std_task.add_(0.1 * torch.randn_like(pol.log_std.log_std_task))
    obs, act = batch()
    per_task_loss(pol, obs, act).backward()
    got = pol.per_task_grads()
    ref = per_task_reference(pol, obs, act)
    assert set(got) == set(ref)
    for n in ref:
        assert got[n].shape == ref[n].shape
        torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-6)
    # the tasks really disagree (the check above could not pass trivially)
    assert not torch.allclose(got["mean.0.weight"][0], got["mean.0.weight"][1])


def test_shared_grad_is_sum_split_grad_is_own():
    pol = make_policy()
    masks = random_masks(pol, 0.5, seed=4)
    pol.set_split_masks(masks)
    obs, act = batch()
    per_task_loss(pol, obs, act).backward()
    ref = per_task_reference(pol, obs, act)
    layer = pol.mean.layers[1]
    m = masks["mean.1.weight"]
    assert m.any() and (~m).any()
    g_sum = ref["mean.1.weight"].sum(0)
    torch.testing.assert_close(layer.weight_shared.grad[~m], g_sum[~m], rtol=1e-4, atol=1e-6)
    assert torch.all(layer.weight_shared.grad[m] == 0)
    for i in range(T):
        torch.testing.assert_close(layer.weight_task.grad[i][m], ref["mean.1.weight"][i][m], rtol=1e-4, atol=1e-6)
        assert torch.all(layer.weight_task.grad[i][~m] == 0)
    lm = masks["log_std"]
    ls = pol.log_std
    torch.testing.assert_close(ls.log_std_shared.grad[~lm], ref["log_std"].sum(0)[~lm], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ls.log_std_task.grad[:, lm], ref["log_std"][:, lm], rtol=1e-4, atol=1e-6)


def test_adam_updates_keep_shared_entries_identical():
    pol = make_policy()
    masks = random_masks(pol, 0.3, seed=5)
    pol.set_split_masks(masks)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2, eps=1e-5)
    for step in range(5):
        obs, act = batch(seed=10 + step)
        opt.zero_grad()
        per_task_loss(pol, obs, act).backward()
        opt.step()
    eff = pol.effective_params()
    for n, m in masks.items():
        e = eff[n]
        # shared entries: identical across tasks
        assert torch.equal(e[:, ~m], e[0:1, ~m].expand_as(e[:, ~m])), n
        if m.any():
            # split entries: differ across tasks
            assert not torch.allclose(e[0][m], e[1][m]), n
    # shared entries did move away from init
    torch.manual_seed(0)
    init = make_policy().effective_params()
    assert not torch.allclose(eff["mean.0.weight"], init["mean.0.weight"])


def test_all_true_shares_nothing():
    pol = make_policy()
    pol.set_split_masks({n: torch.ones(s, dtype=torch.bool) for n, s in pol.param_shapes().items()})
    before = pol.effective_params()
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2)
    obs, act = batch()
    opt.zero_grad()
    (-pol.log_prob(obs, act)[0].mean()).backward()  # loss from task 0 only
    opt.step()
    after = pol.effective_params()
    for n in before:
        assert not torch.equal(before[n][0], after[n][0]), n  # task 0 learned
        assert torch.equal(before[n][1:], after[n][1:]), n  # other tasks untouched
    for l in pol.mean.layers:
        assert torch.all(l.weight_shared.grad == 0)


def test_set_split_masks_copies_shared_and_validates():
    pol = make_policy()
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2)
    obs, act = batch()
    for _ in range(3):  # joint training moves the shared weights away from the stale task copies
        opt.zero_grad()
        per_task_loss(pol, obs, act).backward()
        opt.step()
    joint = pol.effective_params()
    first = random_masks(pol, 0.3, seed=5)
    assert {n: m.tolist() for n, m in pol.set_split_masks(first).items()} == {n: m.tolist() for n, m in first.items()}
    masks = {n: m | first[n] for n, m in random_masks(pol, 0.5, seed=6).items()}
    newly = pol.set_split_masks(masks)  # what became split: the trainer's Adam copies moments there
    assert all(torch.equal(newly[n], masks[n] & ~first[n]) for n in masks)
    # effective weights unchanged by splitting: per-task copies start from the joint values
    for n, e in pol.effective_params().items():
        torch.testing.assert_close(e, joint[n], rtol=0, atol=0)
    assert all(torch.equal(pol.split_masks()[n], masks[n]) for n in masks)
    # validation
    bad = dict(masks)
    bad.pop("log_std")
    with pytest.raises(ValueError, match="missing"):
        pol.set_split_masks(bad)
    with pytest.raises(ValueError, match="unknown"):
        pol.set_split_masks({**masks, "nope": torch.zeros(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        pol.set_split_masks({**masks, "log_std": torch.zeros(ACT + 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="bool"):
        pol.set_split_masks({**masks, "log_std": torch.zeros(ACT)})


def test_per_task_grads_accumulate_and_reset():
    pol = make_policy()
    obs, act = batch()
    with pytest.raises(RuntimeError):
        pol.per_task_grads()
    per_task_loss(pol, obs, act).backward()
    g1 = pol.per_task_grads()
    per_task_loss(pol, obs, act).backward()
    g2 = pol.per_task_grads()
    torch.testing.assert_close(g2["mean.0.weight"], 2 * g1["mean.0.weight"])
    pol.zero_grad()
    with pytest.raises(RuntimeError):
        pol.per_task_grads()
    with torch.no_grad():  # rollouts do not record anything
        pol.log_prob(obs, act)
    pol.set_track_per_task_grads(False)
    per_task_loss(pol, obs, act).backward()
    with pytest.raises(RuntimeError):
        pol.per_task_grads()


def test_value_split_and_shape():
    torch.manual_seed(0)
    val = SplitValue(T, OBS, hidden=HID)
    obs, _ = batch()
    before = val(obs)
    assert before.shape == (T, 7)
    val.set_split_masks({n: torch.ones(s, dtype=torch.bool) for n, s in val.param_shapes().items()})
    with torch.no_grad():
        val.net.layers[-1].bias_task[1] += 1.0
    out = val(obs)
    torch.testing.assert_close(out[1], before[1] + 1.0)
    assert torch.equal(out[0], before[0]) and torch.equal(out[2], before[2])
    base = SplitValue(T, OBS, hidden=HID)
    base.load_state_dict(val.state_dict())
    assert torch.equal(base(obs), out)  # masks are part of the state dict


def test_bad_input_shape():
    pol = make_policy()
    with pytest.raises(ValueError, match="expected input"):
        pol.mean_action(torch.zeros(T + 1, 2, OBS))


@pytest.mark.parametrize("hidden", [(64, 32), (4,)])
def test_orthogonal_init_has_sb3_gains(hidden):
    """init='orthogonal': every weight (in, out) has orthogonal rows or columns (the shorter side) of
    norm gain: sqrt(2) hidden, 0.01 policy output, 1 value output (SB3); biases and log-std 0."""
    torch.manual_seed(0)
    policy = SplitGaussianPolicy(T, OBS, ACT, hidden, init="orthogonal")
    value = SplitValue(T, OBS, hidden, init="orthogonal")
    for net, out_gain in ((policy.mean, 0.01), (value.net, 1.0)):
        assert [(layer.in_dim, layer.out_dim) for layer in net.layers] == list(
            zip((OBS, *hidden), (*hidden, net.layers[-1].out_dim)))
        for i, layer in enumerate(net.layers):
            gain = out_gain if i == len(net.layers) - 1 else math.sqrt(2.0)
            w = layer.weight_shared.detach().double()
            gram = w.t() @ w if w.shape[0] >= w.shape[1] else w @ w.t()
            assert torch.allclose(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5 * gain**2)
            assert torch.equal(layer.bias_shared, torch.zeros(layer.out_dim))
            assert torch.equal(layer.weight_task[1], layer.weight_shared)
    assert torch.equal(policy.log_std.log_std_shared, torch.zeros(ACT))


def test_default_init_is_normc_in_draw_order():
    """The default init is unchanged: normc draws of torch's global RNG, layer by layer, gains 1 / 0.01."""
    torch.manual_seed(5)
    policy = SplitGaussianPolicy(T, OBS, ACT, HID)
    torch.manual_seed(5)
    dims = [OBS, *HID, ACT]
    for i, layer in enumerate(policy.mean.layers):
        expected = normc_(torch.empty(dims[i], dims[i + 1]), 0.01 if i == len(HID) else 1.0)
        assert torch.equal(layer.weight_shared.detach(), expected)


@pytest.mark.parametrize("kw, message", [
    (dict(init="xavier"), r"unknown init 'xavier'; allowed \['normc', 'orthogonal'\]"),
    (dict(hidden=()), "non-empty sequence of layer widths"),
    (dict(hidden=(64, 0)), "non-empty sequence of layer widths"),
])
def test_bad_network_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        SplitGaussianPolicy(T, OBS, ACT, **kw)
