"""Files written before the package's current layout still load and resume: run directories and
checkpoints hold tensors and YAML/JSON, no module paths (docs/design.md, Compatibility)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from mt_specialize.config import TrainConfig
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.train import Interrupted, Trainer, latest_checkpoint

REPO = Path(__file__).resolve().parent.parent
# a cell of the paper grid as it was archived unfinished (results/grid_paper at commit 2517b3c, frozen
# here because the archive moves on): checkpoint at 1.6M samples (iteration 200), its metrics.csv
# runs on to iteration 210, written by the run that went on from that checkpoint
ARCHIVED_RUN = REPO / "test" / "data" / "run_biped_random_seed4_1.6M"
TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def archived_run(tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(ARCHIVED_RUN, run_dir)
    return run_dir


def test_archived_checkpoint_serves_its_tasks(archived_run):
    policy = InferencePolicy.from_checkpoint(latest_checkpoint(archived_run))
    assert policy.task_names == ["biped_forward", "biped_backward"]
    actions = policy.act(np.zeros((2, policy.obs_dim)), np.array([0, 1]))
    assert actions.shape == (2, policy.act_dim) and np.isfinite(actions).all()
    assert not np.array_equal(actions[0], actions[1])  # split entries: the tasks act differently


def _resume_one_iteration(run_dir: Path) -> dict[str, str]:
    """Resume the archived run, redo one iteration, stop; its new metrics row (timing columns aside)."""
    config = TrainConfig.from_yaml(run_dir / "config.yaml", run_config=True)
    trainer = Trainer(config, run_dir, resume=True)
    assert (trainer.iteration, trainer.samples, trainer.split_done) == (200, 1_600_000, True)
    # a paper-profile run recorded before the profile's corrections resumes on the rules it started with
    assert (trainer.config.time_limit, trainer.config.envs_per_task, trainer.config.ppo.advantage_norm) == (
        "bootstrap", 16, "per_task_iteration")
    assert [t.resolved_physics["state_velocity_scale"] for t in trainer.tasks] == [1.0, 1.0]
    assert not trainer.log_end_causes  # its metrics.csv keeps its columns
    with pytest.raises(Interrupted):
        trainer.run(should_stop=lambda: True)
    rows = _rows(run_dir)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 202))  # rows past the checkpoint redone
    assert latest_checkpoint(run_dir).name == "ckpt_000001608000.safetensors"
    return {k: v for k, v in rows[-1].items() if k not in TIMING_COLUMNS}


def test_archived_run_resumes_and_redoes_its_next_iteration(archived_run, tmp_path):
    """The archived run resumes where its checkpoint is and redoes iteration 201: the same counters as
    the row the original run wrote, the same numbers again on a second resume (bit for bit on one
    machine), and numbers close to the original row's. Not equal: that row was computed on a CPU whose
    vector kernels round differently (AVX2 against AVX-512 dispatch in MuJoCo, NumPy and torch), and
    one iteration of contact dynamics amplifies the last bits to ~1 % of a return."""
    archived = {int(row["iteration"]): row for row in _rows(archived_run)}
    redone = _resume_one_iteration(archived_run)
    again = tmp_path / "again"
    shutil.copytree(ARCHIVED_RUN, again)
    assert _resume_one_iteration(again) == redone
    original = {k: v for k, v in archived[201].items() if k not in TIMING_COLUMNS}
    assert redone.keys() == original.keys()
    counters = ("iteration", "samples", "samples_real", "reverted", "reverts", "phase")
    assert {k: redone[k] for k in counters if k in redone} == {k: original[k] for k in counters if k in original}
    for key in redone.keys() - set(counters):
        a, b = float(redone[key]), float(original[key])
        assert abs(a - b) <= 0.05 * max(abs(a), abs(b)) + 0.005, (key, a, b)
