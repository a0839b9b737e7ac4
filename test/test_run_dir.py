"""RunDir: the run directory's files, without training."""
import csv

import pytest
import torch

from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.run_dir import RunBusyError, RunDir, RunExistsError

FORMAT = "test/format/1"


def _save(run: RunDir, samples_real: int, keep: int = 10):
    return run.save_checkpoint(samples_real, {"w": torch.full((2,), float(samples_real))},
                               {"format": FORMAT, "samples_real": samples_real}, keep=keep)


def test_save_keeps_the_newest_checkpoints_and_load_takes_the_newest(tmp_path):
    run = RunDir(tmp_path)
    run.create({"seed": 1})
    for samples in (100, 2_000, 30_000, 400_000):
        _save(run, samples, keep=2)
    assert [p.name for p in run.checkpoint_paths()] == ["ckpt_000000030000.safetensors",
                                                        "ckpt_000000400000.safetensors"]
    path, tensors, metadata = run.load_newest_checkpoint(FORMAT)
    assert path.name == "ckpt_000000400000.safetensors" and metadata["samples_real"] == 400_000
    assert torch.equal(tensors["w"], torch.full((2,), 400_000.0))


def test_load_skips_a_damaged_or_foreign_newest_checkpoint_naming_it(tmp_path):
    run = RunDir(tmp_path)
    _save(run, 100)
    ckpt.save_checkpoint(run.checkpoint_dir / "ckpt_000000000200.safetensors", {"w": torch.zeros(1)},
                         {"format": "another/format"})
    damaged = _save(run, 300)
    damaged.write_bytes(damaged.read_bytes()[:-5])
    with pytest.warns(UserWarning, match="ckpt_000000000300.*ckpt_000000000200"):
        path, _, _ = run.load_newest_checkpoint(FORMAT)
    assert path.name == "ckpt_000000000100.safetensors" and damaged.exists()
    (run.checkpoint_dir / path.name).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint verifies"):
        run.load_newest_checkpoint(FORMAT)
    assert RunDir(tmp_path / "empty").load_newest_checkpoint(FORMAT) is None


def test_create_refuses_a_directory_that_holds_a_run(tmp_path):
    RunDir(tmp_path).create({"seed": 1})
    assert RunDir(tmp_path).read_config() == {"seed": 1}
    RunDir(tmp_path).create({"seed": 2})  # a config.yaml alone (a start killed before training) is no run
    assert RunDir(tmp_path).read_config() == {"seed": 2}
    trained = RunDir(tmp_path)
    trained.append_metrics({"iteration": 1, "samples": 10}, step=10)
    trained.close()
    with pytest.raises(RunExistsError, match="--resume"):
        RunDir(tmp_path).create({"seed": 3})
    assert RunDir(tmp_path).read_config() == {"seed": 2}
    with pytest.raises(ValueError, match="holds no run"):
        RunDir(tmp_path / "other").read_config()


def test_truncate_metrics_drops_the_rows_after_the_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    for iteration in (1, 2, 3):
        run.append_metrics({"iteration": iteration, "samples": 10 * iteration, "return": 0.5}, step=10 * iteration)
    run.truncate_metrics(2)
    run.close()
    with open(run.metrics_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["1", "2"] and list(rows[0]) == ["iteration", "samples", "return"]
    assert (tmp_path / "tb").is_dir()


def test_lock_is_exclusive_until_close(tmp_path):
    first = RunDir(tmp_path)
    first.lock()
    with pytest.raises(RunBusyError, match="another process"):
        RunDir(tmp_path).lock()
    first.close()
    second = RunDir(tmp_path)
    second.lock()
    second.close()
