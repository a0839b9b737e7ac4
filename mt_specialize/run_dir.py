"""The run directory of one training run: its lock, config.yaml, metrics and checkpoints.

Layout (docs/method.md, What a run leaves behind)::

    .lock                  flock held by the process training the run
    config.yaml            resolved TrainConfig (a resumed run must match it)
    metrics.csv            one row per iteration, per-task columns
    tb/                    TensorBoard scalars (same figures)
    checkpoints/           ckpt_<samples_real, 12 digits>.safetensors, oldest first by name
    split.safetensors      the split masks and the gradient-spread score they came from
    summary.json           final per-task returns
    failure.json           why the run stopped for good (``errors.StoppedForGood``), if it did: never resumed
    learning_curve.png     per-task and pooled return against samples

``RunDir`` knows files, not training: ``train_state.TrainState`` says what goes into a checkpoint, the
``Trainer`` when; ``train_state.open_run`` checks where a run begins.
A resume sees the directory as its checkpoint left it (``discard_after``: later metrics rows, a
later split file or summary are removed; TensorBoard's later events are purged), temporary files of
an interrupted write are removed when the lock is taken, and a start that fails before training
removes what it wrote (``discard_failed_start``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable

import yaml

from .learning import checkpoint as ckpt
from .yaml_files import load_yaml_file

# temporary files of this package's atomic writes (a kill between writing one and renaming it leaves it)
TEMPORARY_FILES = ("*.tmp", ".*.tmp", "*.tmp.png")


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
    ``close()`` closes TensorBoard's event file and releases the lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_file = None
        self._tb = None  # TensorBoard writer, opened at the first metrics row
        self._made_dir = False  # lock() created the directory
        self._made_config = False  # create() wrote config.yaml

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
        """The failure record, or None for a run that has not failed (ValueError naming the file if it
        cannot be read: the run still counts as stopped for good)."""
        if not self.failure_path.is_file():
            return None
        try:
            record = json.loads(self.failure_path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            record = exc
        if not isinstance(record, dict):
            reason = record if isinstance(record, Exception) else f"a {type(record).__name__}, not a record"
            raise ValueError(f"{str(self.failure_path)!r} is damaged ({reason}); it records that the run stopped "
                             f"for good. Start a new run from the run's checkpoints (--start-from "
                             f"{str(self.path)!r}), or delete the file if the run should go on") from None
        return record

    # -- lock -----------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take an exclusive ``flock`` on RUN_DIR/.lock until ``close``: two processes never write
        one run (e.g. ``reproduce`` reaching a cell a separate command is still training)."""
        import fcntl

        self._made_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / ".lock", "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RunBusyError(f"{str(self.path)!r} is being trained by another process (it holds "
                               f"{self.path / '.lock'}); nothing was changed") from None
        self.remove_temporary_files()

    def remove_temporary_files(self) -> list[Path]:
        """Delete the temporary files an interrupted atomic write left (``TEMPORARY_FILES`` in the
        directory and checkpoints/); only under the lock. Returns them."""
        found = [p for folder in (self.path, self.checkpoint_dir) for pattern in TEMPORARY_FILES
                 for p in folder.glob(pattern) if p.is_file()]
        for path in found:
            path.unlink(missing_ok=True)
        return found

    def discard_failed_start(self) -> None:
        """Release the lock and remove what this process wrote before a start failed (config.yaml of a
        new run, the empty checkpoints/ folder, the lock file, the directory if it made it), so that
        the next start is not blocked. Checkpoints and metrics are never removed."""
        self.close()
        if self._made_config and not self.checkpoint_paths() and not self.metrics_path.exists():
            self.config_path.unlink(missing_ok=True)
            if self.checkpoint_dir.is_dir() and not any(self.checkpoint_dir.iterdir()):
                self.checkpoint_dir.rmdir()
        if self._made_dir and {p.name for p in self.path.iterdir()} <= {".lock"}:
            (self.path / ".lock").unlink(missing_ok=True)
            self.path.rmdir()

    def close(self) -> None:
        """Close TensorBoard's event file and release the lock (idempotent)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock_file is not None and not self._lock_file.closed:
            self._lock_file.close()  # closing the descriptor drops the flock

    # -- config ---------------------------------------------------------------------------------------
    def read_config(self) -> dict:
        """The run's config.yaml as a dict (ValueError if the directory holds no run)."""
        if not self.config_path.is_file():
            raise ValueError(f"cannot resume: {str(self.path)!r} holds no run (no config.yaml)")
        return load_yaml_file(self.config_path, "the run's config") or {}

    def holds_run(self) -> bool:
        """Whether the directory holds a run: a checkpoint, metrics, a split, summary or failure file of
        one. A config.yaml alone (of a start killed before its first iteration) is not one."""
        if self.checkpoint_dir.exists() and any(self.checkpoint_dir.iterdir()):
            return True
        return any(p.exists() for p in (self.metrics_path, self.split_path, self.summary_path, self.failure_path))

    def create(self, config: dict) -> None:
        """Start a new run here: write config.yaml (``RunExistsError`` if the directory already
        holds a run; nothing is overwritten but the config.yaml of a start that never trained)."""
        if self.holds_run():
            raise RunExistsError(f"{str(self.path)!r} already holds a run; pass --resume to continue it "
                                 f"or choose another --out (nothing was overwritten)")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)
        self._made_config = True

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

    def load_newest_checkpoint(self, checkpoint_format: str, foreign: Callable[[dict], str | None] = lambda m: None
                               ) -> tuple[Path, dict, dict] | None:
        """``(path, tensors, metadata)`` of the newest checkpoint that verifies, has metadata
        ``format == checkpoint_format`` and belongs to this run (``foreign(metadata)``: None, or why it
        belongs to another run), or None when there is no checkpoint. A damaged or foreign newer one
        (e.g. a kill during a disk-full write, a file copied from another run) is named in a warning
        and skipped, never deleted; ``CheckpointError`` naming every file when none is usable."""
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
                reason = foreign(metadata)
                if reason:
                    raise ckpt.CheckpointError(f"{path}: belongs to another run ({reason})")
                break
            except ckpt.CheckpointError as exc:
                damaged.append(str(exc))
        else:
            raise ckpt.CheckpointError(f"cannot resume {str(self.path)!r}: no checkpoint verifies and belongs to "
                                       "this run (" + "; ".join(damaged) + ")")
        if damaged:
            warnings.warn(f"resuming {str(self.path)!r} from {path.name}, the newest checkpoint that "
                          f"verifies and belongs to the run; skipped: {'; '.join(damaged)}", stacklevel=4)
        return path, tensors, metadata

    def discard_after(self, iteration: int, split_done: bool) -> None:
        """Make the run files those of the checkpoint a resume starts from (after ``iteration``
        iterations; 0: no checkpoint, the run starts over): later metrics rows go, a split file is
        kept only if the checkpoint is past the split, a summary only if it is of that iteration.
        TensorBoard events written after it are purged by ``append_metrics``."""
        self.truncate_metrics(iteration)
        if not split_done:
            for path in (self.split_path, self.path / "split.png"):
                path.unlink(missing_ok=True)
        if self.summary_path.is_file():
            try:
                same = json.loads(self.summary_path.read_text()).get("iterations") == iteration
            except (UnicodeDecodeError, ValueError, AttributeError):
                same = False
            if not same:  # and the curve drawn with it
                self.summary_path.unlink()
                (self.path / "learning_curve.png").unlink(missing_ok=True)

    # -- metrics --------------------------------------------------------------------------------------
    def metrics_columns(self) -> list[str] | None:
        """metrics.csv's header (its column names), or None when there is no metrics file yet."""
        if not self.metrics_path.is_file():
            return None
        with open(self.metrics_path, newline="") as f:
            return next(csv.reader(f), None)

    def truncate_metrics(self, last_iteration: int) -> None:
        """Drop CSV rows written after iteration ``last_iteration`` (a resume redoes them; 0: the whole
        file), a last line a crash cut short, and earlier copies of a row written twice. ValueError
        naming the file and line for a row whose iteration is not a number."""
        if not self.metrics_path.exists():
            return
        if last_iteration <= 0:
            self.metrics_path.unlink()
            return
        try:
            lines = self.metrics_path.read_bytes().decode("utf-8").splitlines(keepends=True)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{str(self.metrics_path)!r} is not UTF-8 text ({exc}); restore or delete it") from None
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # cut short by a crash in the middle of a write
        rows = list(csv.reader(lines))
        if not rows:
            return
        kept: dict[int, list[str]] = {}
        for number, row in enumerate(rows[1:], start=2):
            try:
                iteration = int(row[0])
            except (IndexError, ValueError):
                raise ValueError(f"{str(self.metrics_path)!r} line {number}: the iteration {row[:1]} is not a whole "
                                 f"number (a damaged row): restore the file, or delete that line") from None
            if iteration <= last_iteration:
                kept.pop(iteration, None)  # a row written twice: the later one is the checkpoint's
                kept[iteration] = row
        tmp = self.metrics_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *kept.values()])
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
        than the counters to TensorBoard at x = ``step`` (env steps). The first row written by this
        process purges TensorBoard events at x >= its step (a resume redoes them)."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(row))
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end == 0:
                writer.writeheader()
            writer.writerow(row)
            data = memoryview(text.getvalue().encode())
            try:
                while data:
                    data = data[os.write(fd, data):]
            except OSError as exc:  # e.g. a full disk: no part of the row stays
                os.ftruncate(fd, end)
                raise OSError(exc.errno, exc.strerror, str(self.metrics_path)) from None
        finally:
            os.close(fd)
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # events at x >= step are from iterations after the checkpoint this process resumed from
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=step)
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("iteration", "samples", "samples_real") \
                    and math.isfinite(value):
                self._tb.add_scalar(key, value, step)
