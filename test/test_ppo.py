"""PPO math against hand computations on tiny batches."""

import math

import pytest
import torch

from mt_specialize.learning.ppo import PPOConfig, clipped_surrogate, standardize_minibatch, value_loss
from mt_specialize.learning.rollout_buffer import compute_gae, standardize_per_task

G, L = 0.9, 0.5


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_gae_no_done_hand():
    r = t([[1.0], [2.0], [3.0]])
    v = t([[0.5], [1.0], [1.5]])
    nv = t([[1.0], [1.5], [2.0]])  # V(s1), V(s2), V(s3 = next obs)
    f = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = compute_gae(r, v, nv, f, f, gamma=G, lam=L)
    d2 = 3 + G * 2.0 - 1.5
    d1 = 2 + G * 1.5 - 1.0
    d0 = 1 + G * 1.0 - 0.5
    a2 = d2
    a1 = d1 + G * L * a2
    a0 = d0 + G * L * a1
    torch.testing.assert_close(adv[:, 0], t([a0, a1, a2]))
    torch.testing.assert_close(ret[:, 0], t([a0 + 0.5, a1 + 1.0, a2 + 1.5]))


def test_gae_termination_vs_truncation():
    # env 0: episode terminates at step 1; env 1: truncated at step 1 (V(final obs) = 7).
    r = t([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    v = t([[0.5, 0.5], [1.0, 1.0], [4.0, 4.0]])
    nv = t([[1.0, 1.0], [99.0, 7.0], [5.0, 5.0]])  # 99 must be ignored (terminated)
    term = torch.tensor([[False, False], [True, False], [False, False]])
    end = torch.tensor([[False, False], [True, True], [False, False]])
    adv, ret = compute_gae(r, v, nv, term, end, gamma=G, lam=L)
    a2 = 3 + G * 5 - 4
    # terminated: no bootstrap, trace cut
    a1_term = 2 - 1.0
    a0_term = (1 + G * 1.0 - 0.5) + G * L * a1_term
    # truncated: bootstrap from V(final obs) but trace cut
    a1_trunc = 2 + G * 7.0 - 1.0
    a0_trunc = (1 + G * 1.0 - 0.5) + G * L * a1_trunc
    torch.testing.assert_close(adv[:, 0], t([a0_term, a1_term, a2]))
    torch.testing.assert_close(adv[:, 1], t([a0_trunc, a1_trunc, a2]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_shape_errors():
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="next_values"):
        compute_gae(z, z, torch.zeros(3, 3), z.bool(), z.bool())


def test_surrogate_clipped_and_unclipped():
    # task 0: ratio inside the clip range; task 1: ratios outside (clipped for one sign only)
    lp_old = t([[0.0, 0.0], [0.0, 0.0]])
    lp_new = t([[math.log(1.1), math.log(0.9)], [math.log(1.5), math.log(1.5)]])
    adv = t([[2.0, -1.0], [2.0, -1.0]])
    loss = clipped_surrogate(lp_new, lp_old, adv, clip=0.2)
    assert loss.shape == (2,)
    task0 = -(1.1 * 2.0 + 0.9 * -1.0) / 2
    # A>0, r=1.5 -> min(3.0, 1.2*2=2.4)=2.4 ; A<0, r=1.5 -> min(-1.5, -1.2) = -1.5 (unclipped)
    task1 = -(2.4 + -1.5) / 2
    torch.testing.assert_close(loss, t([task0, task1]))
    # gradient is zero through the clipped sample
    lp = lp_new.clone().requires_grad_()
    clipped_surrogate(lp, lp_old, adv).sum().backward()
    assert lp.grad[1, 0] == 0 and lp.grad[1, 1] != 0 and lp.grad[0, 0] != 0


def test_value_loss():
    v = t([[1.0, 2.0], [0.0, 0.0]])
    r = t([[0.0, 4.0], [3.0, -1.0]])
    torch.testing.assert_close(value_loss(v, r), t([(1 + 4) / 2, (9 + 1) / 2]))


def test_standardize_per_task():
    a = t([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 30.0, 30.0]])
    s = standardize_per_task(a)
    m0, s0 = 2.5, math.sqrt(1.25)
    torch.testing.assert_close(s[0], t([(x - m0) / s0 for x in (1, 2, 3, 4)]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s[1], t([-1.0, -1.0, 1.0, 1.0]), rtol=1e-5, atol=1e-6)
    assert standardize_per_task(torch.ones(2, 3)).abs().max() == 0  # constant batch: no NaN
    assert standardize_per_task(torch.randn(2, 3, 4)).shape == (2, 3, 4)


def test_config_defaults_and_validation():
    c = PPOConfig()
    assert (c.clip, c.epochs, c.minibatch_per_task, c.lr, c.adam_eps) == (0.2, 10, 256, 3e-4, 1e-5)
    assert (c.gamma, c.lam, c.entropy_coef, c.value_coef, c.max_grad_norm) == (0.99, 0.95, 0.0, 1.0, None)
    assert c.lr_at(0.7) == 3e-4
    lin = PPOConfig(lr_schedule="linear")
    assert lin.lr_at(0.25) == pytest.approx(2.25e-4) and lin.lr_at(1.5) == 0.0
    assert lin.clip_at(0.5) == 0.2 and c.clip_at(0.5) == 0.2  # the clip anneals only when asked
    ppo1 = PPOConfig(lr_schedule="linear", clip_schedule="linear")  # baselines ppo1 schedule='linear'
    assert ppo1.clip_at(0.25) == pytest.approx(0.15) and ppo1.clip_at(1.0) == 0.0
    for kw, field in [({"clip": 0}, "clip"), ({"clip": 1.5}, "clip"), ({"epochs": 0}, "epochs"),
                      ({"epochs": 2.5}, "epochs"), ({"lr": -1}, "lr"), ({"gamma": 1.1}, "gamma"),
                      ({"lam": float("nan")}, "lam"), ({"max_grad_norm": 0}, "max_grad_norm"),
                      ({"lr_schedule": "cosine"}, "lr_schedule"),
                      ({"clip_schedule": "step"}, "clip_schedule"), ({"minibatch_per_task": 0}, "minibatch_per_task"),
                      ({"entropy_coef": -0.1}, "entropy_coef")]:
        with pytest.raises(ValueError, match=f"PPOConfig.{field}"):
            PPOConfig(**kw)


def test_surrogate_and_value_loss_with_grad_match_autograd():
    from mt_specialize.learning.ppo import clipped_surrogate_with_grad, value_loss_with_grad

    g = torch.Generator().manual_seed(0)
    new = torch.randn(3, 40, generator=g) * 0.3
    new[0, :5] = 0.0  # ratio exactly 1: ties between the clipped and unclipped terms
    old, adv = torch.zeros(3, 40), torch.randn(3, 40, generator=g)
    x = new.clone().requires_grad_()
    (0.5 * clipped_surrogate(x, old, adv, 0.2).sum()).backward()
    loss, grad = clipped_surrogate_with_grad(new, old, adv, 0.2, 0.5)
    torch.testing.assert_close(loss, clipped_surrogate(new, old, adv, 0.2))
    torch.testing.assert_close(grad, x.grad)
    v, r = torch.randn(3, 40, generator=g), torch.randn(3, 40, generator=g)
    y = v.clone().requires_grad_()
    (0.3 * value_loss(y, r).sum()).backward()
    loss, grad = value_loss_with_grad(v, r, 0.3)
    torch.testing.assert_close(loss, value_loss(v, r))
    torch.testing.assert_close(grad, y.grad)


def test_standardize_minibatch_is_per_row_with_sample_std():
    adv = torch.tensor([[1.0, 2.0, 6.0, -3.0], [10.0, 10.5, 9.0, 12.0]])
    out = standardize_minibatch(adv)
    assert torch.allclose(out.mean(dim=1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(out.std(dim=1), torch.ones(2), atol=1e-6)  # ddof=1, as SB3's advantages.std()
    first = (adv[0] - adv[0].mean()) / (torch.tensor([1.0, 2.0, 6.0, -3.0]).std() + 1e-8)
    assert torch.allclose(out[0], first)
    single = torch.tensor([[3.0], [-2.0]])
    assert torch.equal(standardize_minibatch(single), single)  # SB3 skips a batch of one


@pytest.mark.parametrize("kw, message", [
    (dict(policy_hidden=[]), "policy_hidden.*non-empty list of layer widths"),
    (dict(value_hidden=[64, 0]), "value_hidden.*non-empty list"),
    (dict(value_hidden="64"), "value_hidden.*non-empty list"),
    (dict(init="xavier"), r"init='xavier'.*\['normc', 'orthogonal'\]"),
    (dict(obs_norm_update="per_episode"), r"obs_norm_update.*\['per_iteration', 'per_step'\]"),
    (dict(advantage_norm="batch"), r"advantage_norm.*\['per_task_iteration', 'per_task_env', 'per_minibatch', "
                                   r"'none'\] \(or null: the profile's\)"),
    (dict(obs_clip=0), "obs_clip.*> 0"),
    (dict(reward_clip=float("inf")), "reward_clip.*finite"),
    (dict(obs_var_floor=-1.0), "obs_var_floor.*>= 0"),
    (dict(obs_var_floor=0.0), "obs_norm_epsilon.*when obs_var_floor is 0"),
    (dict(reward_norm="yes"), "reward_norm.*true or false"),
    (dict(clip_env_actions=1), "clip_env_actions.*true or false"),
])
def test_bad_network_and_normaliser_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**kw)


def test_stable_baselines3_settings_and_defaults():
    sb3 = PPOConfig.stable_baselines3()
    assert (sb3.policy_hidden, sb3.init, sb3.obs_clip, sb3.obs_var_floor, sb3.obs_norm_epsilon) == (
        [64, 64], "orthogonal", 10.0, 0.0, 1e-8)
    assert (sb3.reward_norm, sb3.advantage_norm, sb3.obs_norm_update, sb3.max_grad_norm, sb3.value_coef,
            sb3.minibatch_per_task, sb3.clip_env_actions) == (True, "per_minibatch", "per_step", 0.5, 0.5, 64, True)
    assert PPOConfig.stable_baselines3(max_grad_norm=None).max_grad_norm is None
    ours = PPOConfig()
    assert (ours.policy_hidden, ours.value_hidden, ours.init, ours.obs_clip, ours.obs_var_floor,
            ours.obs_norm_epsilon, ours.obs_norm_update, ours.reward_norm, ours.advantage_norm,
            ours.clip_env_actions) == ([64, 64, 64], [64, 64, 64], "normc", 5.0, 1e-2, 0.0, "per_iteration",
                                       False, None, False)  # advantage_norm None: the profile's
