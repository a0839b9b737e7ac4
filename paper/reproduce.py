"""The paper's comparison as a resumable grid of runs (Table I, Figs. 3, 5, 6).

Every run is an ordinary training run directory under ``ROOT/<experiment>/<variant>/seed<N>``;
finished runs (``summary.json`` at the budget) are skipped, interrupted ones resumed from their last
checkpoint. Runs execute in local worker processes (as many as cores, one physics thread each) or on
an existing Ray cluster (``--ray-address``), with the same code path.
"""
from __future__ import annotations

import fnmatch
import gzip
import json
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

PAPER_SEEDS = (1, 2, 3)  # the paper's 3 seeds per cell
MAIN_SEEDS = (1, 2, 3, 4, 5)  # the main comparison and Fig. 6: 5 seeds
SWEEP_SEEDS = PAPER_SEEDS  # the jt x sp sweeps
JT_GRID = (80_000, 400_000, 800_000)
SP_GRID = (0.05, 0.25, 0.50)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid in the paper's names: experiment, method (``ours`` = gradient_guided), (jt, sp)
    = (joint_samples, split_fraction) for ours/random, seed; ``ppo``: PPO settings
    that differ from the defaults, as sorted (key, value) pairs (the same for every cell of a grid);
    ``profile``: the settings profile of every run (``TrainConfig.profile``); ``settings``: other
    TrainConfig settings as sorted (key, value) pairs (``physics`` as pairs too) and ``label`` the
    suffix they give the variant's name (``separate+time_limit``), for cells that change a profile."""

    experiment: str
    method: str
    seed: int
    jt: int | None = None
    sp: float | None = None
    ppo: tuple[tuple[str, object], ...] = ()
    profile: str = "paper"
    settings: tuple[tuple[str, object], ...] = ()
    label: str = ""

    @property
    def variant(self) -> str:
        """``ours_jt400k_sp25``, ``random_jt400k_sp25``, ``joint``, ``separate``, ``append``: the method by
        its paper name (``ours`` whether the spec says ``ours`` or ``gradient_guided``)."""
        from mt_specialize.methods import get_method

        method = get_method(self.method)
        name = (f"{method.file_name}_jt{self.jt // 1000}k_sp{round(self.sp * 100)}" if method.chooses_split
                else method.file_name)
        return name + self.label

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.variant}/seed{self.seed}"

    def config(self, samples: int | None = None, physics_threads: int | None = None):
        from mt_specialize.config import TrainConfig
        from mt_specialize.learning.ppo import PPOConfig

        settings = {k: dict(v) if k == "physics" else v for k, v in self.settings}
        return TrainConfig(experiment=self.experiment, method=self.method, seed=self.seed,
                           joint_samples=self.jt, split_fraction=self.sp, samples=samples,
                           physics_threads=physics_threads, ppo=PPOConfig(**dict(self.ppo)), profile=self.profile,
                           **settings)


def with_ppo_settings(specs: list[RunSpec], settings: dict) -> list[RunSpec]:
    """The same cells with PPO ``settings`` (e.g. ``{"minibatch_per_task": 88}``) for every one of
    them, so every method keeps the same budget and settings. Unknown keys or bad values raise
    ValueError naming them."""
    from mt_specialize.config import TrainConfig

    if not settings:
        return list(specs)
    TrainConfig.from_dict({"ppo": settings}, source="PPO settings").resolved(3_000_000, 4000)  # validate
    return [replace(spec, ppo=tuple(sorted({**dict(spec.ppo), **settings}.items()))) for spec in specs]


def _main_cells(experiment: str, seeds: Iterable[int]) -> list[RunSpec]:
    cells = []
    for seed in seeds:
        cells += [RunSpec(experiment, "ours", seed, 400_000, 0.25), RunSpec(experiment, "joint", seed),
                  RunSpec(experiment, "separate", seed), RunSpec(experiment, "random", seed, 400_000, 0.25),
                  RunSpec(experiment, "append", seed)]
    return cells


def main_grid(experiments: Iterable[str], seeds: Iterable[int] = PAPER_SEEDS) -> list[RunSpec]:
    """The main comparison (ours jt=400k sp=25%, joint, separate, random, append) on any registered
    experiments, e.g. a variant of the paper's; unknown names raise ValueError listing the allowed."""
    from mt_specialize.experiments import EXPERIMENTS

    experiments, seeds = list(experiments), list(seeds)
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}: allowed are {sorted(EXPERIMENTS)}")
    return [cell for experiment in experiments for cell in _main_cells(experiment, seeds)]


def paper_grid(seeds: Iterable[int] | None = None) -> list[RunSpec]:
    """All runs of the paper's comparison, most important first: the main comparison (Table I's
    method rows) with ``MAIN_SEEDS``, Fig. 6's torso masses with ``MAIN_SEEDS``, then the jt x sp
    sweeps with ``SWEEP_SEEDS``; ``seeds`` given: those seeds for every part. Within a part, the
    seeds come in order, so that a partial grid has whole seeds."""
    main_seeds = list(seeds) if seeds is not None else list(MAIN_SEEDS)
    sweep_seeds = list(seeds) if seeds is not None else list(SWEEP_SEEDS)
    grid = []
    for seed in main_seeds:
        grid += _main_cells("three_hoppers", [seed]) + _main_cells("biped_fwd_bwd", [seed])
    for seed in main_seeds:
        for experiment in ("torso_mass_3", "torso_mass_8", "torso_mass_14"):
            grid += [RunSpec(experiment, "ours", seed, 400_000, 0.25), RunSpec(experiment, "joint", seed),
                     RunSpec(experiment, "separate", seed)]
    for seed in sweep_seeds:
        for experiment in ("three_hoppers", "biped_fwd_bwd"):
            grid += [RunSpec(experiment, "ours", seed, jt, sp) for jt in JT_GRID for sp in SP_GRID
                     if (jt, sp) != (400_000, 0.25)]
    return grid


# The paper profile's three corrections (docs/method.md, Profiles; docs/paper_profile_rules.md), each undone by
# settings: the profile as the first paper grid ran it (results/grid_paper) is all three undone.
AS_FIRST_GRID = {
    "velocity_limit": {"physics": (("state_velocity_scale", 1.0),)},  # the biped's limit on raw qvel
    "time_limit": {"time_limit": "bootstrap"},
    "segments": {"envs_per_task": 16, "ppo.advantage_norm": "per_task_iteration"},
}
PROFILE_STEP_CELLS = (("biped_fwd_bwd", "separate"), ("three_hoppers", "joint"))


def profile_steps_grid(seeds: Iterable[int] = (1,)) -> list[RunSpec]:
    """The corrections of the paper profile measured one at a time (one seed, 3M): for biped_fwd_bwd
    separate and three_hoppers joint, the profile as the first paper grid ran it (``_as_grid``) and
    that plus each correction alone (``_as_grid+time_limit``, ...). The profile with all three is the
    main grid's cell of the same name (``separate``, ``joint``). The hoppers have no
    ``+velocity_limit`` cell: their limit did not change."""
    cells = []
    for seed in seeds:
        for experiment, method in PROFILE_STEP_CELLS:
            for added in (None, *AS_FIRST_GRID):
                if added == "velocity_limit" and experiment != "biped_fwd_bwd":
                    continue
                undone = {k: v for step, settings in AS_FIRST_GRID.items() if step != added
                          for k, v in settings.items()}
                ppo = tuple(sorted((k[4:], v) for k, v in undone.items() if k.startswith("ppo.")))
                settings = tuple(sorted((k, v) for k, v in undone.items() if not k.startswith("ppo.")))
                cells.append(RunSpec(experiment, method, seed, ppo=ppo, settings=settings,
                                     label="_as_grid" + (f"+{added}" if added else "")))
    return cells


def with_profile(specs: list[RunSpec], profile: str) -> list[RunSpec]:
    """The same cells with settings profile ``profile`` (paper | mujoco | none)."""
    from mt_specialize.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed profiles: {list(PROFILES)}")
    return [replace(spec, profile=profile) for spec in specs]


def select(grid: list[RunSpec], only: list[str] | None) -> list[RunSpec]:
    """Keep runs whose name matches any ``--only`` glob (e.g. ``three_hoppers/*``, ``*/joint/*``)."""
    if not only:
        return grid
    kept = [spec for spec in grid if any(fnmatch.fnmatch(spec.name, pattern) or pattern in spec.name
                                         for pattern in only)]
    if not kept:
        raise ValueError(f"--only {only} matches no run; run names look like {grid[0].name!r}")
    return kept


def run_status(run_dir: Path) -> tuple[str, int]:
    """('done' | 'failed' | 'partial' | 'new', samples reached). 'failed': the run stopped for good
    (its failure.json, e.g. the revert rule's ``RevertLoop``) and is not retried."""
    summary = run_dir / "summary.json"
    config = run_dir / "config.yaml"
    from mt_specialize.run_dir import RunDir

    failure = RunDir(run_dir).read_failure()
    if failure is not None and config.exists():
        return "failed", int(failure.get("samples", 0))
    if summary.exists() and config.exists():
        import yaml

        data = json.loads(summary.read_text())
        if data.get("samples", 0) >= int(yaml.safe_load(config.read_text())["samples"]):
            return "done", int(data["samples"])
    if config.exists():
        from mt_specialize.plots import read_metrics

        rows = read_metrics(run_dir)
        return "partial", int(rows[-1]["samples"]) if rows else 0
    return "new", 0


def run_one(spec: RunSpec, root: str, samples: int | None, physics_threads: int | None) -> dict:
    """Train (or resume) one cell; returns its summary, or {'interrupted': ...}. Runs in a worker."""
    from mt_specialize.train import Interrupted, RunBusyError, Trainer

    from mt_specialize.errors import StoppedForGood

    run_dir = Path(root) / spec.name
    status = run_status(run_dir)[0]
    if status == "done":  # finished since the grid was planned
        return {"run": spec.name}
    if status == "failed":
        return {"failed": failure_reason(run_dir), "run": spec.name}
    try:
        trainer = Trainer(spec.config(samples, physics_threads), run_dir,
                          resume=(run_dir / "config.yaml").exists())
        from mt_specialize.stop_signals import StopOnSignals

        with StopOnSignals((signal.SIGTERM,)) as stop:  # the driver stops workers with SIGTERM
            return trainer.run(should_stop=stop)
    except Interrupted as exc:
        return {"interrupted": str(exc), "run": spec.name}
    except RunBusyError as exc:
        return {"busy": str(exc), "run": spec.name}
    except StoppedForGood as exc:  # the revert rule's loop, a divergence: in failure.json, not retried
        return {"failed": f"{type(exc).__name__}: {exc}", "run": spec.name}


def run_batch(specs: list[RunSpec], root: str, samples: int | None, physics_threads: int | None) -> dict:
    """Train (or resume) cells that batch together in one process (``mt_specialize.run_group.RunGroup``:
    each run's results are those it gets alone); returns {name: summary | {'interrupted'|'busy': ...}}.
    Runs in a worker. A cell another process trains is left out (reported busy)."""
    from mt_specialize.run_dir import RunBusyError
    from mt_specialize.run_group import RunGroup
    from mt_specialize.stop_signals import StopOnSignals
    from mt_specialize.train import Interrupted

    out: dict = {}
    status = {s.name: run_status(Path(root) / s.name)[0] for s in specs}
    todo = [s for s in specs if status[s.name] not in ("done", "failed")]
    out.update({s.name: {"run": s.name} if status[s.name] == "done" else
                {"failed": failure_reason(Path(root) / s.name), "run": s.name} for s in specs if s not in todo})
    group = None
    while todo and group is None:
        dirs = [Path(root) / s.name for s in todo]
        try:
            group = RunGroup([s.config(samples, physics_threads) for s in todo], dirs,
                             resume=[(d / "config.yaml").exists() for d in dirs])
        except RunBusyError as exc:  # leave that cell to the process that trains it
            busy = next((s for s, d in zip(todo, dirs) if str(d) in str(exc)), todo[0])
            out[busy.name] = {"busy": str(exc), "run": busy.name}
            todo.remove(busy)
    if group is None:
        return out
    try:
        with StopOnSignals((signal.SIGTERM,)) as stop:  # the driver stops workers with SIGTERM
            out.update({s.name: summary for s, summary in zip(todo, group.run(should_stop=stop))})
    except Interrupted as exc:
        for s in todo:  # a cell that finished before the stop is done
            done = run_status(Path(root) / s.name)[0] == "done"
            out[s.name] = {"run": s.name} if done else {"interrupted": str(exc), "run": s.name}
    return out


def plan_batches(specs: list[RunSpec], samples: int | None, batch_runs: int) -> list[list[RunSpec]]:
    """The cells in batches of at most ``batch_runs`` that train together (``run_group.group_configs``:
    one experiment, profile and update shape; ``append`` apart), in the grid's order of importance."""
    from mt_specialize.run_group import group_configs

    groups = group_configs([s.config(samples) for s in specs], max_runs=batch_runs)
    return [[specs[i] for i in group] for group in groups]


def batch_runs_for_memory(worker_memory: int, per_run: int = 0) -> int:
    """Runs per batch that fit ``worker_memory`` bytes: (memory - one process) // memory per run
    (``RUN_MEMORY``, measured by bench/throughput.py --seeds), at least 1."""
    per_run = per_run or RUN_MEMORY
    return max(1, (worker_memory - PROCESS_MEMORY) // per_run)


# measured (bench/throughput.py --seeds 5, peak RSS): a worker process with torch and MuJoCo loaded,
# and what each further three_hoppers / biped run of a batch adds; the larger figure is used for both
PROCESS_MEMORY = 600 * 2**20
RUN_MEMORY = 120 * 2**20


def reproduce(root: str | Path, specs: list[RunSpec], *, samples: int | None = None, workers: int | None = None,
              ray_address: str | None = None, show_progress: bool = True, batch_runs: int = 1) -> dict[str, str]:
    """Run every pending cell; returns name -> 'done' | 'interrupted' | 'failed: ...'. With
    ``batch_runs`` > 1 a worker trains up to that many cells that batch together in one process
    (``plan_batches``; each cell's results are those it gets alone)."""
    root = Path(root)
    workers = workers or os.cpu_count() or 1
    status = {s.name: run_status(root / s.name)[0] for s in specs}
    pending = [s for s in specs if status[s.name] not in ("done", "failed")]
    results = {s.name: "done" if status[s.name] == "done" else f"failed: {failure_reason(root / s.name)}"
               for s in specs if s not in pending}
    physics_threads = 1 if workers > 1 else None
    progress = _GridProgress(root, specs, samples) if show_progress else None
    if ray_address:
        return _reproduce_ray(root, pending, samples, ray_address, results, progress)
    queue = plan_batches(pending, samples, batch_runs) if batch_runs > 1 else [[s] for s in pending]
    futures: dict = {}
    previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        while queue or futures:
            while queue and len(futures) < workers:  # one batch per worker: nothing queued behind it
                batch = queue.pop(0)
                future = (pool.submit(run_one, batch[0], str(root), samples, physics_threads) if len(batch) == 1
                          else pool.submit(run_batch, batch, str(root), samples, physics_threads))
                futures[future] = batch
            done, _ = wait(futures, timeout=5.0, return_when=FIRST_COMPLETED)
            for future in done:
                results.update(_batch_outcome(futures.pop(future), future))
            if progress:
                progress.update(results)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every running run checkpoints, then stops
        for process in list(getattr(pool, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()  # SIGTERM: the trainer saves at the end of its iteration
        for future in list(futures):
            results.update(_batch_outcome(futures.pop(future), future))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous_term)
        if progress:
            progress.close(results)
    return results


def _ignore_sigint() -> None:
    """Grid workers ignore the terminal's Ctrl-C; the driver stops them with one SIGTERM each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _batch_outcome(batch: list[RunSpec], future) -> dict[str, str]:
    """name -> outcome of each cell of a finished worker task (one cell: ``run_one``; more: ``run_batch``)."""
    if len(batch) == 1:
        return {batch[0].name: _outcome(future)}
    try:
        result = future.result()
    except Exception as exc:  # a failed batch is reported for each of its cells, the grid goes on
        return {s.name: f"failed: {type(exc).__name__}: {exc}" for s in batch}
    return {s.name: _summarize(result.get(s.name, {"interrupted": "not run", "run": s.name})) for s in batch}


def _outcome(future) -> str:
    try:
        result = future.result()
    except Exception as exc:  # a failed run is reported, the grid goes on
        return f"failed: {type(exc).__name__}: {exc}"
    return _summarize(result)


def failure_reason(run_dir: Path) -> str:
    """'Error: message' from a failed run's failure.json."""
    from mt_specialize.run_dir import RunDir

    record = RunDir(run_dir).read_failure()
    return f"{record['error']}: {record['message']}"


def _summarize(result: dict) -> str:
    if "failed" in result:
        return f"failed: {result['failed']}"
    if "busy" in result:
        return "busy"  # another process trains it: the next `reproduce` picks it up if unfinished
    return "interrupted" if "interrupted" in result else "done"


def _reproduce_ray(root, pending, samples, address, results, progress):
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray-address needs Ray: pip install 'ray[default]'") from exc
    import sys

    # this module is not installed with mt_specialize: send its functions to the workers by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_one)
    refs = {remote.remote(s, str(root), samples, 1): s for s in pending}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=5.0)
            for ref in ready:
                spec = refs.pop(ref)
                try:
                    results[spec.name] = _summarize(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - reported per run
                    results[spec.name] = f"failed: {exc}"
            if progress:
                progress.update(results)
    finally:
        if progress:
            progress.close(results)
    return results


class _GridProgress:
    """One bar for the whole grid (samples over all runs) and a line per finished run."""

    def __init__(self, root: Path, specs: list[RunSpec], samples: int | None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from mt_specialize.experiments import get_experiment

        self.root, self.specs = root, specs
        self.budget = {s.name: samples or get_experiment(s.experiment).budget for s in specs}
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("grid"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[runs]}"), console=self.console,
                                 disable=not self.console.is_terminal)
        self.progress.start()
        self.bar = self.progress.add_task("grid", total=sum(self.budget.values()), runs="")
        self.reported: set[str] = set()
        self.last_line = 0.0
        self.update({})

    def update(self, results: dict[str, str]) -> None:
        done_samples = 0
        n_done = n_failed = 0
        for spec in self.specs:
            status, reached = run_status(self.root / spec.name)
            # a failed run does no more work: its whole budget counts as gone through
            done_samples += self.budget[spec.name] if status == "failed" else min(reached, self.budget[spec.name])
            n_done += status == "done"
            n_failed += status == "failed"
        runs = f"{n_done}/{len(self.specs)} runs done" + (f", {n_failed} failed" if n_failed else "")
        self.progress.update(self.bar, completed=done_samples, runs=runs)
        for name, outcome in results.items():
            if name not in self.reported:
                self.reported.add(name)
                self.progress.console.print(f"{outcome:>11}  {name}")
        if not self.console.is_terminal and time.monotonic() - self.last_line > 60:
            self.last_line = time.monotonic()
            total = sum(self.budget.values())
            print(f"grid: {done_samples:,}/{total:,} samples, {runs}", flush=True)

    def close(self, results: dict[str, str]) -> None:
        self.update(results)
        self.progress.stop()


# -- carrying the grid across machines and sessions -----------------------------------------------
ARCHIVED_FILES = ("config.yaml", "metrics.csv", "summary.json", "split.safetensors", "failure.json")
ARCHIVED_METRICS = "metrics.csv.gz"  # the archive keeps metrics.csv gzip-compressed (about 2x smaller)
# the cell whose split masks (split figure) and final policy (gait GIFs) the report draws, per experiment
REPORT_CELL = "ours_jt400k_sp25/seed1"
POLICY = "policy.safetensors"  # the report cell's final policy, slim (``InferencePolicy.export``)


def archive_grid(root: str | Path, archive: str | Path) -> list[str]:
    """Copy what the grid's results and its continuation need into ``archive`` (small, git-friendly).

    Per cell: config.yaml, metrics.csv (whole lines only, gzip-compressed: metrics.csv.gz, which the
    report reads as it is and ``restore_grid`` expands), summary.json, failure.json. An unfinished cell
    also keeps split.safetensors and its newest checkpoint, so ``restore_grid`` + ``reproduce`` continue
    it elsewhere. A finished cell (done, or stopped for good) keeps no checkpoint and, outside
    ``REPORT_CELL``, no split.safetensors; the ``REPORT_CELL`` keeps its split and its final policy
    (slim, policy.safetensors). TensorBoard files and older checkpoints stay behind. Cells archived
    before keep no more than that either. Returns the cells archived.
    """
    from mt_specialize.run_dir import latest_checkpoint

    root, archive = Path(root), Path(archive)
    archived = []
    for config in sorted(root.glob("*/*/seed*/config.yaml")):
        run_dir = config.parent
        name = str(run_dir.relative_to(root))
        target = archive / name
        status, reached = run_status(run_dir)
        finished = status in ("done", "failed")
        newest = latest_checkpoint(run_dir)
        report_cell = name.endswith(REPORT_CELL)
        up_to_date = finished and run_status(target) == (status, reached)
        target.mkdir(parents=True, exist_ok=True)
        _drop_unkept(target, newest, finished, report_cell)
        if finished and report_cell and newest is not None and not (up_to_date and (target / POLICY).exists()):
            from mt_specialize.learning.inference import InferencePolicy

            InferencePolicy.export(newest, target / POLICY)  # for the report's gaits
        if up_to_date:
            continue
        if not finished and newest is not None and not (target / "checkpoints" / newest.name).exists():
            (target / "checkpoints").mkdir(exist_ok=True)
            _atomic_copy(newest, target / "checkpoints" / newest.name)
        for file in ARCHIVED_FILES:
            if file == "split.safetensors" and finished and not report_cell:
                continue
            if (run_dir / file).exists():
                data = (run_dir / file).read_bytes()
                if file == "metrics.csv":  # the trainer may be appending: whole lines only
                    data = gzip.compress(data[: data.rfind(b"\n") + 1], mtime=0)
                    file = ARCHIVED_METRICS
                    (target / "metrics.csv").unlink(missing_ok=True)  # an archive written before compression
                _atomic_write(target / file, data)
        archived.append(name)
    return archived


def _drop_unkept(target: Path, newest: Path | None, finished: bool, report_cell: bool) -> None:
    """Remove from archived cell ``target`` what the archive does not keep: while the run is unfinished,
    every checkpoint but its ``newest``; once ``finished``, every checkpoint and, outside the report's
    cell, split.safetensors."""
    from mt_specialize.run_dir import checkpoint_paths

    for stale in checkpoint_paths(target):
        if finished or newest is None or stale.name != newest.name:
            stale.unlink()
    if (target / "checkpoints").is_dir() and not any((target / "checkpoints").iterdir()):
        (target / "checkpoints").rmdir()
    if finished and not report_cell:
        (target / "split.safetensors").unlink(missing_ok=True)


def restore_grid(archive: str | Path, root: str | Path) -> list[str]:
    """Copy archived cells into ``root`` where ``root`` has none or fewer samples; returns them."""
    import shutil

    archive, root = Path(archive), Path(root)
    restored = []
    for config in sorted(archive.glob("*/*/seed*/config.yaml")):
        source = config.parent
        name = str(source.relative_to(archive))
        if run_status(source)[1] <= run_status(root / name)[1] and (root / name / "config.yaml").exists():
            continue
        if (root / name).exists():
            shutil.rmtree(root / name)
        shutil.copytree(source, root / name)
        packed = root / name / ARCHIVED_METRICS
        if packed.exists():  # a run directory holds metrics.csv, which the trainer appends to
            _atomic_write(root / name / "metrics.csv", gzip.decompress(packed.read_bytes()))
            packed.unlink()
        restored.append(name)
    return restored


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_copy(source: Path, target: Path) -> None:
    _atomic_write(target, source.read_bytes())
