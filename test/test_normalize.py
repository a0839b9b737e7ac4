"""Per-task running normaliser against numpy over the concatenated data."""

import numpy as np
import pytest
import torch

from mt_specialize.learning.normalize import RewardNormalizer, RunningMeanStd


def test_matches_numpy_per_task():
    rng = np.random.default_rng(0)
    T, D = 3, 4
    rms = RunningMeanStd(T, (D,), epsilon=1e-20)  # negligible prior
    chunks = []
    for n in (5, 1, 17, 3):
        # tasks with very different scales / offsets
        x = rng.normal(size=(T, n, D)) * np.array([1.0, 10.0, 0.1])[:, None, None] + np.arange(T)[:, None, None] * 100
        chunks.append(x)
        rms.update(torch.as_tensor(x, dtype=torch.float32))
    data = np.concatenate([c.astype(np.float32).astype(np.float64) for c in chunks], axis=1)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), data.var(axis=1), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(rms.count.numpy(), np.full(T, 26.0), rtol=1e-9)
    assert rms.mean.dtype == torch.float64


def test_baselines_epsilon_prior():
    # with the default epsilon the initial (mean 0, var 1) pseudo-sample has weight 1e-4
    rms = RunningMeanStd(1, 2)
    x = torch.tensor([[[1.0, 3.0], [3.0, 5.0]]])
    rms.update(x)
    tot = 2 + 1e-4
    mean = np.array([2.0, 4.0]) * 2 / tot
    np.testing.assert_allclose(rms.mean[0].numpy(), mean, rtol=1e-12)


def test_normalize_clip_dtype_and_floor():
    rms = RunningMeanStd(2, (2,), clip=5.0)
    g = torch.Generator().manual_seed(0)
    rms.update(torch.randn(2, 1000, 2, generator=g) * 3 + 1)
    x = torch.tensor([[[1.0, 100.0]], [[1.0, -100.0]]])
    z = rms.normalize(x)
    assert z.dtype == torch.float32 and z.shape == (2, 1, 2)
    expected = ((x.double() - rms.mean[:, None]) / rms.var.sqrt()[:, None]).clamp(-5, 5).float()
    torch.testing.assert_close(z, expected)
    assert z[0, 0, 1] == 5.0 and z[1, 0, 1] == -5.0
    # constant component: std floored at 0.1 (ppo1), no blow-up
    c = RunningMeanStd(1, 1)
    c.update(torch.full((1, 50, 1), 2.0))
    assert abs(float(c.normalize(torch.tensor([[[2.01]]])))) < 0.2


def test_state_dict_and_errors():
    rms = RunningMeanStd(2, 3)
    rms.update(torch.randn(2, 10, 3))
    other = RunningMeanStd(2, 3)
    other.load_state_dict(rms.state_dict())
    x = torch.randn(2, 4, 3)
    assert torch.equal(other.normalize(x), rms.normalize(x))
    with pytest.raises(ValueError, match="expected"):
        rms.update(torch.randn(3, 10, 3))
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(2, 4).load_state_dict(rms.state_dict())


def test_sb3_clip_and_epsilon():
    """clip=10, var_floor=0, norm_epsilon=1e-8: VecNormalize's clip((x - mean) / sqrt(var + 1e-8), ±10)."""
    rms = RunningMeanStd(1, (3,), clip=10.0, var_floor=0.0, norm_epsilon=1e-8)
    rms.update(torch.tensor([[[0.0, 1.0, 5.0], [0.02, 1.0, 7.0]]], dtype=torch.float64))
    x = np.array([[[0.5, 1.0, 13.0]]])
    mean, var = rms.mean.numpy()[0], rms.var.numpy()[0]
    expected = np.clip((x[0, 0] - mean) / np.sqrt(var + 1e-8), -10, 10)
    assert abs(expected[0]) == 10 and 5 < abs(expected[2]) < 10  # one clipped at 10, one beyond 5 kept
    assert np.allclose(rms.normalize(torch.from_numpy(x)).numpy()[0, 0], expected, rtol=1e-6)
    default = RunningMeanStd(1, (3,))  # ours: floor 1e-2 on the variance, clip 5
    default.load_state_dict(rms.state_dict())
    assert np.allclose(default.normalize(torch.from_numpy(x)).numpy()[0, 0],
                       np.clip((x[0, 0] - mean) / np.sqrt(np.maximum(var, 1e-2)), -5, 5), rtol=1e-6)


def test_reward_normalizer_matches_vecnormalize_by_hand():
    """Per task, every step: R = gamma R + r; scaled r = clip(r / sqrt(var(all R so far) + eps), ±clip);
    R reset where the episode ended. A negligible count prior makes var the plain variance."""
    gamma, eps = 0.9, 1e-8
    rewards = np.array([[[1.0, 2.0]], [[0.5, -1.0]], [[3.0, 0.0]], [[1.0, 1.0]]])  # (S, T=1, E=2)
    ends = np.array([[[False, False]], [[True, False]], [[False, False]], [[False, True]]])
    norm = RewardNormalizer(1, 2, gamma, clip=10.0, epsilon=eps, count_epsilon=1e-12)
    returns, seen = np.zeros(2), []
    for r, end in zip(rewards, ends):
        returns = gamma * returns + r[0]
        seen.extend(returns)
        expected = np.clip(r[0] / np.sqrt(np.var(seen) + eps), -10, 10)
        assert np.allclose(norm(r, end)[0], expected, rtol=1e-9)
        returns[end[0]] = 0.0
    assert np.allclose(norm.returns[0], returns)
    # per task: a second task's statistics are its own; the clip applies
    two = RewardNormalizer(2, 1, gamma, clip=2.1, count_epsilon=1e-12)
    two(np.array([[1.0], [100.0]]), np.zeros((2, 1), bool))
    out = two(np.array([[1.0], [400.0]]), np.zeros((2, 1), bool))
    assert 1.0 / np.std([1.0, 1.9]) > 2.1 and out[0, 0] == 2.1
    assert np.isclose(out[1, 0], 400.0 / np.std([100.0, 490.0]))
    with pytest.raises(ValueError, match="shape"):
        two(np.zeros((1, 2)), np.zeros((1, 2), bool))


def test_numpy_update_and_normalize_match_torch():
    rng = np.random.default_rng(3)
    a, b = RunningMeanStd(2, (3,)), RunningMeanStd(2, (3,))
    for n in (1, 4, 9):
        x = rng.normal(2.0, 3.0, (2, n, 3))
        a.update(torch.from_numpy(x))
        b.update(x)
    assert np.allclose(a.mean.numpy(), b.mean.numpy(), rtol=1e-12) and np.allclose(a.var.numpy(), b.var.numpy(), rtol=1e-12)
    assert torch.equal(a.count, b.count)
    x = rng.normal(2.0, 30.0, (2, 5, 3))
    assert np.array_equal(a.normalize(torch.from_numpy(x)).numpy(), a.normalize(x))
    with pytest.raises(ValueError, match="expected"):
        b.update(np.zeros((3, 1, 3)))
