"""The run directory of one training run: its lock, config.yaml, metrics and checkpoints.

Layout (SPEC §8)::

    .lock                  flock held by the process training the run
    config.yaml            resolved TrainConfig (a resumed run must match it)
    metrics.csv            one row per iteration, per-task columns
    tb/                    TensorBoard scalars (same figures)
    checkpoints/           ckpt_<samples_real, 12 digits>.safetensors, oldest first by name
    split.safetensors      the split masks and the gradient-spread score they came from
    summary.json           final per-task returns
    failure.json           why the run stopped for good (``errors.RevertLoop``), if it did: never resumed
    learning_curve.png     per-task and pooled return against samples

``RunDir`` knows files, not training: the ``Trainer`` decides what goes into a checkpoint and when.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path

import yaml

from .learning import checkpoint as ckpt


class RunExistsError(ValueError):
    """The output directory already holds a run and --resume was not given (nothing is overwritten)."""


class RunBusyError(ValueError):
    """Another process is training in this run directory right now."""


class RunFailedError(ValueError):
    """The run stopped for good (its failure.json says why): it is not resumed."""


def checkpoint_name(samples_real: int) -> str:
    """File name of the checkpoint taken after ``samples_real`` env steps (12 digits: names sort by age)."""
    return f"ckpt_{samples_real:012d}.safetensors"


def checkpoint_paths(run_dir: str | Path) -> list[Path]:
    """The checkpoint files of a run directory (RUN_DIR/checkpoints), oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob("ckpt_*.safetensors"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint file of a run directory, or None (it may not verify:
    ``RunDir.load_newest_checkpoint`` checks)."""
    paths = checkpoint_paths(run_dir)
    return paths[-1] if paths else None


class RunDir:
    """One run directory. ``lock()`` first (``RunBusyError`` if another process trains in it);
    ``close()`` flushes TensorBoard and releases the lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_file = None
        self._tb = None  # TensorBoard writer, opened at the first metrics row

    # -- layout ---------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def split_path(self) -> Path:
        return self.path / "split.safetensors"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def failure_path(self) -> Path:
        return self.path / "failure.json"

    def write_failure(self, record: dict) -> None:
        """Record why the run stopped for good (failure.json, written atomically)."""
        tmp = self.failure_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.failure_path)

    def read_failure(self) -> dict | None:
        """The failure record, or None for a run that has not failed."""
        return json.loads(self.failure_path.read_text()) if self.failure_path.is_file() else None

    # -- lock -----------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take an exclusive ``flock`` on RUN_DIR/.lock until ``close``: two processes never write
        one run (e.g. ``reproduce`` reaching a cell a separate command is still training)."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / ".lock", "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RunBusyError(f"{str(self.path)!r} is being trained by another process (it holds "
                               f"{self.path / '.lock'}); nothing was changed") from None

    def close(self) -> None:
        """Flush TensorBoard and release the lock (idempotent)."""
        if self._tb is not None:
            self._tb.flush()
        if self._lock_file is not None and not self._lock_file.closed:
            self._lock_file.close()  # closing the descriptor drops the flock

    # -- config ---------------------------------------------------------------------------------------
    def read_config(self) -> dict:
        """The run's config.yaml as a dict (ValueError if the directory holds no run)."""
        if not self.config_path.is_file():
            raise ValueError(f"cannot resume: {str(self.path)!r} holds no run (no config.yaml)")
        return yaml.safe_load(self.config_path.read_text()) or {}

    def create(self, config: dict) -> None:
        """Start a new run here: write config.yaml (``RunExistsError`` if the directory already
        holds a run; nothing is overwritten)."""
        if self.config_path.exists() or (self.checkpoint_dir.exists() and any(self.checkpoint_dir.iterdir())):
            raise RunExistsError(f"{str(self.path)!r} already holds a run; pass --resume to continue it "
                                 f"or choose another --out (nothing was overwritten)")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoint_paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        return checkpoint_paths(self.path)

    def save_checkpoint(self, samples_real: int, tensors: dict, metadata: dict, keep: int) -> Path:
        """Write the checkpoint taken after ``samples_real`` env steps; delete all but the newest ``keep``."""
        path = self.checkpoint_dir / checkpoint_name(samples_real)
        ckpt.save_checkpoint(path, tensors, metadata)
        for stale in self.checkpoint_paths()[:-keep]:
            stale.unlink(missing_ok=True)
        return path

    def load_newest_checkpoint(self, checkpoint_format: str) -> tuple[Path, dict, dict] | None:
        """``(path, tensors, metadata)`` of the newest checkpoint that verifies and has metadata
        ``format == checkpoint_format``, or None when there is no checkpoint. A damaged newer one
        (e.g. a kill during a disk-full write) is named in a warning and skipped, never deleted;
        ``CheckpointError`` naming every file when none verifies."""
        paths = self.checkpoint_paths()
        if not paths:
            return None
        damaged = []
        for path in reversed(paths):
            try:
                tensors, metadata = ckpt.load_checkpoint(path)
                if metadata.get("format") != checkpoint_format:
                    raise ckpt.CheckpointError(f"{path}: not a training checkpoint of this version "
                                               f"(format {metadata.get('format')!r})")
                break
            except ckpt.CheckpointError as exc:
                damaged.append(str(exc))
        else:
            raise ckpt.CheckpointError(f"cannot resume {str(self.path)!r}: no checkpoint verifies ("
                                       + "; ".join(damaged) + ")")
        if damaged:
            warnings.warn(f"resuming {str(self.path)!r} from {path.name}, the newest checkpoint that "
                          f"verifies; skipped: {'; '.join(damaged)}", stacklevel=4)
        return path, tensors, metadata

    # -- metrics --------------------------------------------------------------------------------------
    def metrics_columns(self) -> list[str] | None:
        """metrics.csv's header (its column names), or None when there is no metrics file yet."""
        if not self.metrics_path.is_file():
            return None
        with open(self.metrics_path, newline="") as f:
            return next(csv.reader(f), None)

    def truncate_metrics(self, last_iteration: int) -> None:
        """Drop CSV rows written after iteration ``last_iteration`` (a resume redoes them)."""
        if not self.metrics_path.exists():
            return
        with open(self.metrics_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= last_iteration]
        tmp = self.metrics_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, self.metrics_path)

    def copy_metrics_from(self, source: "RunDir", last_iteration: int, columns: list[str]) -> None:
        """metrics.csv = ``source``'s rows up to iteration ``last_iteration`` under ``columns`` (this
        run's): a column the source lacks is empty, but ``samples_real`` (= ``samples``: a run without
        the revert rule counts every sample) and ``reverted``/``reverts`` (0). No source rows: no file."""
        if not source.metrics_path.is_file():
            return
        with open(source.metrics_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= last_iteration]
        if not rows:
            return
        fill = lambda r, k: r.get("samples", "") if k == "samples_real" else ("0" if k in ("reverted", "reverts") else "")  # noqa: E731
        tmp = self.metrics_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: r[k] if k in r else fill(r, k) for k in columns} for r in rows)
        os.replace(tmp, self.metrics_path)

    def append_metrics(self, row: dict, step: int) -> None:
        """Append ``row`` to metrics.csv (header with the first row) and its finite numbers other
        than the counters to TensorBoard at x = ``step`` (env steps). ``row["iteration"]`` of the
        first row written by this process purges TensorBoard events past it (a resume redoes them)."""
        new_file = not self.metrics_path.exists()
        with open(self.metrics_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=row["iteration"])
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("iteration", "samples", "samples_real") \
                    and math.isfinite(value):
                self._tb.add_scalar(key, value, step)
