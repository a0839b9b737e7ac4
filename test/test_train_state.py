"""The checkpoint schema (``train_state.TrainState``) and the one comparison of a checkpoint with a run
(``checkpoint_mismatch``), on the archived run of test/data (written before ``revert_streak`` existed)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.train import Trainer, latest_checkpoint
from mt_specialize.train_state import CHECKPOINT_FORMAT, TrainState, checkpoint_mismatch

ARCHIVED_RUN = Path(__file__).resolve().parent / "data" / "run_biped_random_seed4_1.6M"


@pytest.fixture(scope="module")
def archived():
    """(tensors, metadata) of the archived run's checkpoint."""
    return ckpt.load_checkpoint(latest_checkpoint(ARCHIVED_RUN))


@pytest.fixture(scope="module")
def archived_run(tmp_path_factory):
    """The archived run's resolved config and experiment, as a resume sees them."""
    run_dir = tmp_path_factory.mktemp("compat") / "run"
    shutil.copytree(ARCHIVED_RUN, run_dir)
    trainer = Trainer(TrainConfig.from_yaml(run_dir / "config.yaml", run_config=True), run_dir, resume=True)
    trainer.close()
    return trainer.config, trainer.experiment


def test_an_archived_checkpoint_reads_and_writes_back_unchanged(archived):
    tensors, meta = archived
    state = TrainState.from_checkpoint(tensors, meta)
    assert (state.iteration, state.samples, state.split_done, state.revert_streak) == (200, 1_600_000, True, 0)
    again, again_meta = state.to_checkpoint()
    assert again.keys() == tensors.keys()
    for name, t in tensors.items():
        assert again[name].dtype == t.dtype and torch.equal(again[name], t), name
    assert again_meta == {**meta, "revert_streak": 0}  # the one key added since it was written
    assert again_meta["format"] == CHECKPOINT_FORMAT


def test_keys_a_checkpoint_lacks_read_as_every_run_had_them_then(archived):
    """A checkpoint of a run without the revert rule or task switches, written before those existed."""
    tensors, meta = archived
    tensors = {k: v for k, v in tensors.items() if not k.startswith("revert/")}
    meta = {k: v for k, v in meta.items() if k not in ("samples_real", "reverts", "revert_streak",
                                                        "accepted_return", "accepted_samples", "env_switch_rng")}
    state = TrainState.from_checkpoint(tensors, meta)
    assert state.samples_real == state.samples == 1_600_000
    assert (state.reverts, state.revert_streak, state.accepted_return, state.accepted_samples) == (0, 0, None, 0)
    assert state.accepted_values is None and state.reward_norm is None
    assert "switch_rng" not in state.env and "grace_left" not in state.env
    written, written_meta = state.to_checkpoint()
    assert not any(k.startswith("revert/") for k in written) and "env/grace_left" not in written
    assert written_meta["accepted_return"] is None


def test_one_comparison_for_a_resume_and_a_start(archived, archived_run):
    _, meta = archived
    config, experiment = archived_run
    assert checkpoint_mismatch(meta, config, experiment, own_run=True) is None
    assert checkpoint_mismatch(meta, config, experiment, own_run=False) is None
    # another seed: not this run's checkpoint, but a state this run can start from
    other_seed = dataclasses.replace(config, seed=5)
    assert checkpoint_mismatch(meta, other_seed, experiment, own_run=True) == "seed: it has 4, this run 5"
    assert checkpoint_mismatch(meta, other_seed, experiment, own_run=False) is None
    # the budget may grow on a resume; the state's shape may not change for either
    assert checkpoint_mismatch(meta, dataclasses.replace(config, samples=4_000_000), experiment, own_run=True) is None
    fewer_envs = dataclasses.replace(config, envs_per_task=8)
    for own_run in (True, False):
        assert checkpoint_mismatch(meta, fewer_envs, experiment, own_run=own_run) == \
            "envs_per_task: it has 16, this run 8"
    renamed = {**meta, "task_names": ["biped_a", "biped_b"]}  # as many tasks: a start may, a resume may not
    assert "tasks: it has ['biped_a', 'biped_b']" in checkpoint_mismatch(renamed, config, experiment, own_run=True)
    assert checkpoint_mismatch(renamed, config, experiment, own_run=False) is None
    unreadable = {**meta, "config": {**meta["config"], "no_such_setting": 1}}
    assert "does not load here" in checkpoint_mismatch(unreadable, config, experiment, own_run=True)
