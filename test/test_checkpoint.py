"""Checkpoints: round trip, corruption detection, atomicity, optimiser state continuation."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from mt_specialize.learning import checkpoint as ck
from mt_specialize.learning.checkpoint import (CheckpointError, add_prefix, load_checkpoint, optimizer_state_from_tensors,
                                      optimizer_state_to_tensors, save_checkpoint, strip_prefix)
from mt_specialize.learning.normalize import RunningMeanStd
from mt_specialize.learning.policy import SplitGaussianPolicy
from mt_specialize.learning.specialize import GradientSpread


def sample_tensors():
    return {
        "w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "d": torch.tensor([1.5, -2.25], dtype=torch.float64),
        "i": torch.tensor([3, -4], dtype=torch.int64),
        "mask": torch.tensor([[True, False]]),
        "scalar": torch.tensor(7.0),
    }


META = {"iteration": 12, "samples": 48000, "tasks": ["hopper_capsule", "hopper_box"], "sp": 0.25,
        "nested": {"a": [1, 2, None], "b": True}}


def test_round_trip(tmp_path):
    p = tmp_path / "sub" / "ckpt.safetensors"
    t = sample_tensors()
    save_checkpoint(p, t, META)
    got, meta = load_checkpoint(p)
    assert meta == META
    assert set(got) == set(t)
    for k in t:
        assert got[k].dtype == t[k].dtype and torch.equal(got[k], t[k])
    assert [f for f in os.listdir(p.parent) if f != p.name] == []  # no temp files left


def test_overwrite_replaces(tmp_path):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"x": torch.zeros(2)}, {"v": 1})
    save_checkpoint(p, {"x": torch.ones(3)}, {"v": 2})
    got, meta = load_checkpoint(p)
    assert meta == {"v": 2} and torch.equal(got["x"], torch.ones(3))


def test_missing_file(tmp_path):
    p = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors.*not found"):
        load_checkpoint(p)
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("keep", [0, 4, 8, 20, "half", -1])
def test_truncated(tmp_path, keep):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, sample_tensors(), META)
    data = p.read_bytes()
    n = {"half": len(data) // 2, -1: len(data) - 1}.get(keep, keep)
    p.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(p)


def test_every_flipped_bit_detected(tmp_path):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"w": torch.randn(3, 2), "m": torch.tensor([True, False])}, {"it": 3})
    data = p.read_bytes()
    q = tmp_path / "bad.safetensors"
    for pos in range(len(data)):
        for bit in (0x01, 0x10, 0x80):
            bad = bytearray(data)
            bad[pos] ^= bit
            q.write_bytes(bytes(bad))
            with pytest.raises(CheckpointError, match="bad.safetensors"):
                load_checkpoint(q)


def test_pickle_and_foreign_files(tmp_path):
    p1 = tmp_path / "model.pkl"
    with open(p1, "wb") as f:
        pickle.dump({"w": [1, 2, 3]}, f)
    p2 = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, p2)
    p3 = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(p3))  # valid safetensors, not ours
    p4 = tmp_path / "empty.safetensors"
    p4.write_bytes(b"")
    for p in (p1, p2, p3, p4):
        with pytest.raises(CheckpointError, match=p.name):
            load_checkpoint(p)
    with pytest.raises(CheckpointError, match="not an mt_specialize checkpoint"):
        load_checkpoint(p3)


def test_tampered_tensor_rewritten_with_valid_safetensors(tmp_path):
    # re-save with the same header metadata but different tensor values: digest catches it
    from safetensors import safe_open
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"w": torch.zeros(2)}, {"a": 1})
    with safe_open(str(p), "pt") as f:
        header = f.metadata()
    save_file({"w": torch.ones(2)}, str(p), metadata=header)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(p)


def test_failed_save_keeps_existing(tmp_path, monkeypatch):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"x": torch.zeros(2)}, {"v": 1})
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck.os, "fsync", boom)  # fails after the temp file was written
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(p, {"x": torch.ones(1000)}, {"v": 2})
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.safetensors"]  # temp file removed
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(p, {"x": torch.ones(2)}, {"bad": object()})
    assert p.read_bytes() == before
    _, meta = load_checkpoint(p)
    assert meta == {"v": 1}


def test_prefix_helpers():
    d = {"a": torch.zeros(1), "b": torch.ones(1)}
    merged = {**add_prefix("policy.", d), **add_prefix("value.", {"a": torch.ones(2)})}
    assert set(strip_prefix("policy.", merged)) == {"a", "b"}
    assert strip_prefix("value.", merged)["a"].shape == (2,)


def _train(policy, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        obs = torch.randn(2, 8, 4, generator=g)
        act = torch.randn(2, 8, 2, generator=g)
        opt.zero_grad()
        (-policy.log_prob(obs, act).mean(1).sum()).backward()
        opt.step()


def test_optimizer_round_trip_continues_identically(tmp_path):
    torch.manual_seed(0)
    pol = SplitGaussianPolicy(2, 4, 2, hidden=(8, 8))
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2, eps=1e-5)
    _train(pol, opt, 3, seed=1)
    g = torch.Generator().manual_seed(5)
    masks = {n: torch.rand(s, generator=g) < 0.3 for n, s in pol.param_shapes().items()}
    pol.set_split_masks(masks)
    _train(pol, opt, 2, seed=2)
    rms = RunningMeanStd(2, 4)
    rms.update(torch.randn(2, 5, 4))
    spread = GradientSpread()
    spread.add({"x": torch.randn(2, 3)})

    opt_t, opt_meta = optimizer_state_to_tensors(opt.state_dict())
    tensors = {**add_prefix("policy.", pol.state_dict()), **opt_t, **add_prefix("obs_rms.", rms.state_dict()),
               **add_prefix("spread.", spread.state_dict())}
    p = tmp_path / "ckpt.safetensors"
    save_checkpoint(p, tensors, {"optimizer": opt_meta, "iteration": 5})

    _train(pol, opt, 3, seed=3)  # reference continuation
    expected = {k: v.clone() for k, v in pol.state_dict().items()}

    torch.manual_seed(123)  # a fresh, different model
    pol2 = SplitGaussianPolicy(2, 4, 2, hidden=(8, 8))
    opt2 = torch.optim.Adam(pol2.parameters(), lr=5.0)
    loaded, meta = load_checkpoint(p)
    pol2.load_state_dict(strip_prefix("policy.", loaded))
    opt2.load_state_dict(optimizer_state_from_tensors(loaded, meta["optimizer"]))
    rms2 = RunningMeanStd(2, 4)
    rms2.load_state_dict(strip_prefix("obs_rms.", loaded))
    spread2 = GradientSpread()
    spread2.load_state_dict(strip_prefix("spread.", loaded))
    assert opt2.param_groups[0]["lr"] == 1e-2 and opt2.param_groups[0]["betas"] == (0.9, 0.999)
    assert torch.equal(rms2.mean, rms.mean) and torch.equal(spread2.score()["x"], spread.score()["x"])
    _train(pol2, opt2, 3, seed=3)
    for k, v in expected.items():
        assert torch.equal(pol2.state_dict()[k], v), k
