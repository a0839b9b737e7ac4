"""Table I and Figs. 3, 5, 6 from the grid's run directories (``python -m paper reproduce``).

Reads ``ROOT/<experiment>/<variant>/seed<N>/metrics.csv`` (and each run's ``config.yaml`` for its
profile) and writes into ``OUT``::

    table1.md                 a verdict, then per profile: Table I beside the paper's, ours against each
                              baseline (IQM, probability of improvement, permutation p), Fig. 6, per-task
                              returns, why trajectories ended over the last 10% of training
    table1_runs.csv           every run's row that Table I reads, both readings
    fig3_three_hoppers.png    learning curves, mean over seeds with a min–max band (accepted iterations)
    fig5_biped_fwd_bwd.png
    fig6_torso_mass.png       three panels: torso 3 / 8 / 14 kg vs 15 kg
    per_task_<experiment>.png the main methods' learning curves, one panel per task
    jt_sp_<experiment>.png    Table I's jt x sp block as heat maps, the paper's beside ours
    end_causes_<experiment>.png why trajectories ended: per task, the share of each cause over training
    gaits/<task>.gif          each task's final policy (ours, jt=400k sp=25%, seed 1)

Every table and figure names the profile its runs ran (:func:`run_profile`: config.yaml's ``profile``,
``paper_v1`` for the paper profile as the first paper grid ran it). The headline profile's figures keep
these names; other grids' get ``_<profile>`` appended (``fig3_three_hoppers_paper_v1.png``).

``python -m paper steps`` writes ``profile_steps.md`` (:func:`write_profile_steps`): the paper profile's
corrections measured one at a time.

The number is the paper's: mean episode return, all tasks pooled, last 100 episodes. It is read two
ways (:data:`READINGS`): ``accepted`` as the authors read Table I (the first iteration not rejected by
the revert rule whose counted ``samples`` reach 3M) and ``real`` (the first iteration whose
``samples_real``, every env step taken, reach 3M). Runs without those columns (older than the revert
rule) read the same both ways. Runs that have not reached 3M are left out of the statistics and counted
as partial. The paper's figures, the profiles' titles and the prose come from
``paper/paper_results.yaml``.
"""
from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import yaml

from mt_specialize.envs.tasks import END_CAUSES
from mt_specialize.plots import plt, read_metrics
from mt_specialize.run_dir import RunDir
from paper.reproduce import POLICY, REPORT_CELL

REFERENCE_FILE = Path(__file__).resolve().parent / "paper_results.yaml"
from mt_specialize.profiles import NAMES as PROFILES  # the values config.yaml's `profile` may take; absent means none


@lru_cache(maxsize=None)
def load_reference(path: str | Path = REFERENCE_FILE) -> dict:
    """The paper's figures, targets, profile titles and prose (``paper/paper_results.yaml``)."""
    with open(path) as f:
        data = yaml.safe_load(f)
    missing = [k for k in ("table_i", "paper_column", "main_variants", "method_names", "fig6", "targets",
                           "profiles", "headline_profile", "reference_grids", "differences") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    unlabelled = [p for p in PROFILES if p not in data["profiles"]]
    if unlabelled:
        raise ValueError(f"{path}: profiles has no entry for {unlabelled}")
    return data


_REF = load_reference()
TABLE_AT = int(_REF["table_i"]["at_samples"])
TABLE_COLUMNS = tuple(_REF["table_i"]["columns"])
# variant -> (three_hoppers, biped_fwd_bwd), in the table's order
PAPER_TABLE_I = {v: tuple(float(row[c]) for c in TABLE_COLUMNS) for v, row in _REF["table_i"]["rows"].items()}
ROW_LABELS = {v: row["label"] for v, row in _REF["table_i"]["rows"].items() if "label" in row}
PAPER_COLUMN = {e: TABLE_COLUMNS.index(c) for e, c in _REF["paper_column"].items()}
MAIN_VARIANTS = list(_REF["main_variants"])
METHOD_NAMES = dict(_REF["method_names"])
TORSO_MASS_EXPERIMENTS = tuple(_REF["fig6"]["experiments"])
PAPER_FIG6_BETTER_OF_JOINT_SEPARATE = dict(_REF["fig6"]["better_of_joint_separate"])
REFERENCE = MAIN_VARIANTS[0]  # ours (jt=400k, sp=25%)
# the report's labels of runs, in the report's order: the profiles and earlier versions of them
# (``paper_v1``: the paper profile as the first paper grid ran it); see :func:`run_label`
LABELS = tuple(_REF["profiles"])
BOOTSTRAP_REPS = 50_000  # rliable's default
VERDICT_P = 0.05  # a difference is claimed only if the permutation p is at most this ...
MIN_SEEDS_FOR_VERDICT = 3  # ... and each side has at least this many seeds


def _label(variant: str) -> str:
    if variant in ROW_LABELS:
        return ROW_LABELS[variant]
    _, jt, sp = variant.split("_")
    return f"jt={jt[2:]}, sp={sp[2:]}%"


# ---------------------------------------------------------------------------------------------- reading runs

def run_label(config: dict, source: str | Path = "config.yaml") -> str:
    """The report's label (:data:`LABELS`) of a run whose config.yaml holds ``config``: its ``profile``
    (``none`` when absent: runs older than profiles), or the label of an earlier version of that profile
    when the config lacks the setting that version predates (``paper_results.yaml``: ``config_profile``,
    ``recorded_without``; a paper-profile run without ``time_limit`` is ``paper_v1``). Raises ValueError
    naming ``source`` for a profile not in :data:`PROFILES`."""
    profile = config.get("profile") or "none"
    if profile not in PROFILES:
        raise ValueError(f"{source}: profile {profile!r} is not one of {list(PROFILES)}")
    for label, entry in _REF["profiles"].items():
        if entry.get("config_profile") == profile and entry["recorded_without"] not in config:
            return label
    return profile


def run_profile(run_dir: str | Path) -> str:
    """The report's label of the run in ``run_dir`` (:func:`run_label` of its config.yaml; ``none`` when
    there is no config.yaml). Raises ValueError naming the file for a profile not in :data:`PROFILES`."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return "none"
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    return run_label(config, path)


class Runs(dict):
    """experiment -> variant -> seed -> metrics rows; ``roots``: where they were read from."""

    roots: tuple[Path, ...] = ()


def _seed_dirs(root: Path) -> list[Path]:
    """ROOT/<experiment>/<variant>/seed<N> directories with metrics (a run's metrics.csv, an archive's
    metrics.csv.gz), sorted."""
    return sorted({p.parent for p in root.glob("*/*/seed*/metrics.csv*") if p.name in ("metrics.csv", "metrics.csv.gz")})


def collect_runs(root: str | Path) -> Runs:
    """experiment -> variant -> seed -> metrics rows (runs with at least one row), every profile."""
    root = Path(root)
    runs = Runs()
    runs.roots = (root,)
    for seed_dir in _seed_dirs(root):
        rows = read_metrics(seed_dir)
        if rows:
            experiment, variant = seed_dir.parent.parent.name, seed_dir.parent.name
            runs.setdefault(experiment, {}).setdefault(variant, {})[int(seed_dir.name[4:])] = rows
    return runs


@dataclass
class Grid:
    """The runs of one profile under one root. ``profile``: the runs' label (:data:`LABELS`, e.g.
    ``paper_v1``), which names their tables and figures."""

    root: Path
    profile: str
    runs: dict = field(default_factory=dict)  # experiment -> variant -> seed -> metrics rows
    # (experiment, variant, seed) -> failure.json of a run that stopped for good (the revert rule's RevertLoop)
    failures: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"profile {self.profile} ({self.root})"

    @property
    def title(self) -> str:
        return _REF["profiles"].get(self.profile, {}).get("title", f"profile {self.profile}")

    @property
    def has_real_samples(self) -> bool:
        """Whether any run logs ``samples_real`` (else both readings are the same)."""
        return any("samples_real" in rows[0] for variants in self.runs.values() for seeds in variants.values()
                   for rows in seeds.values())

    def cells(self, experiment: str, variant: str) -> dict[int, list[dict]]:
        return self.runs.get(experiment, {}).get(variant, {})

    def stopped(self, experiment: str, variant: str) -> list[int]:
        """Seeds of the cell whose runs stopped for good (failure.json) before the budget."""
        return sorted(seed for e, v, seed in self.failures if (e, v) == (experiment, variant))


def collect_grids(roots: Iterable[str | Path], references: Iterable[str | Path] | None = None) -> list[Grid]:
    """One :class:`Grid` per (root, profile) found, ``roots`` first, then from the ``references`` that
    exist (default: the data file's ``reference_grids``, relative to the working directory) the grids of
    profiles the roots do not have; a root given twice is read once. A grid's profile is its runs' label
    (:func:`run_profile`); within a root the labels come in the order of :data:`LABELS`."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    references = _REF["reference_grids"] if references is None else references
    grids, seen = [], set()
    for k, root in enumerate([*roots, *references]):
        root = Path(root)
        is_reference = k >= len(roots)
        if root.resolve() in seen or (is_reference and not root.is_dir()):
            continue
        seen.add(root.resolve())
        if is_reference and {run_profile(c.parent) for c in root.glob("*/*/seed*/config.yaml")} \
                <= {g.profile for g in grids}:
            continue  # it stands in only for a profile the roots lack
        by_profile: dict[str, dict] = {}
        failures: dict[str, dict] = {}
        for seed_dir in _seed_dirs(root):
            rows = read_metrics(seed_dir)
            if rows:
                experiment, variant, seed = seed_dir.parent.parent.name, seed_dir.parent.name, int(seed_dir.name[4:])
                profile = run_profile(seed_dir)
                by_profile.setdefault(profile, {}).setdefault(experiment, {}).setdefault(variant, {})[seed] = rows
                failure = RunDir(seed_dir).read_failure()
                if failure is not None:
                    failures.setdefault(profile, {})[(experiment, variant, seed)] = failure
        present = {g.profile for g in grids} if is_reference else set()
        grids += [Grid(root, p, by_profile[p], failures.get(p, {})) for p in LABELS
                  if p in by_profile and p not in present]
    return grids


def accepted_row(rows: list[dict], at: int = TABLE_AT) -> dict | None:
    """The authors' reading: the first row not reverted (``reverted`` 0; absent means 0) whose counted
    ``samples`` are at least ``at``; None if the run is not there yet."""
    for row in rows:
        if not row.get("reverted", 0) and row["samples"] >= at:
            return row
    return None


def real_row(rows: list[dict], at: int = TABLE_AT) -> dict | None:
    """The real-sample reading: the first row whose ``samples_real`` (every env step taken; absent means
    ``samples``) are at least ``at``, reverted or not; None if the run is not there yet."""
    for row in rows:
        if row.get("samples_real", row["samples"]) >= at:
            return row
    return None


READINGS: dict[str, Callable[[list[dict], int], dict | None]] = {"accepted": accepted_row, "real": real_row}


def _reading(reading: str) -> Callable[[list[dict], int], dict | None]:
    if reading not in READINGS:
        raise ValueError(f"reading {reading!r} is not one of {list(READINGS)}")
    return READINGS[reading]


def value_at(rows: list[dict], key: str, samples: int = TABLE_AT, reading: str = "accepted") -> float | None:
    """``key`` at the row ``reading`` picks at ``samples`` (:data:`READINGS`); None if not there yet."""
    row = _reading(reading)(rows, samples)
    return None if row is None else row[key]


def seed_values_at(seeds: dict[int, list[dict]], key: str, at: int, reading: str = "accepted") -> list[float]:
    """``key`` at ``at`` samples of every seed that got there (seed -> metrics rows), in seed order."""
    return [v for v in (value_at(seeds[s], key, at, reading) for s in sorted(seeds)) if v is not None]


def accepted_only(rows: list[dict]) -> list[dict]:
    """The rows the revert rule kept (their ``samples`` rise monotonically)."""
    return [row for row in rows if not row.get("reverted", 0)]


# ---------------------------------------------------------------------------------------------- statistics

def permutation_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided exact permutation test of mean(a) - mean(b): the fraction of the C(n_a + n_b, n_a)
    relabellings of the pooled values whose |difference of means| is at least the observed one.

    Seeds are the unit (one value per run). With 3 seeds against 3 the smallest possible p is
    2/20 = 0.1: three seeds cannot show a difference at the 5 % level, however large.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("permutation_p_value needs at least one value on each side")
    pooled = a + b
    observed = abs(np.mean(a) - np.mean(b))
    total = sum(pooled)
    count = extreme = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        sum_a = sum(pooled[i] for i in chosen)
        diff = abs(sum_a / len(a) - (total - sum_a) / len(b))
        extreme += diff >= observed - 1e-9 * max(1.0, observed)
        count += 1
    return extreme / count


def _scores(values, name: str = "scores") -> np.ndarray:
    """(runs, tasks) float array from a list (one task) or a 2-D array; ValueError if empty or 3-D+."""
    scores = np.asarray(values, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty list of runs or a (runs, tasks) array, got shape {scores.shape}")
    return scores


def iqm(scores) -> float:
    """Interquartile mean over all runs and tasks: the mean of the values left after cutting
    int(0.25 n) from each end of the sorted n values (rliable's ``aggregate_iqm``, i.e.
    ``scipy.stats.trim_mean(scores, 0.25, axis=None)``). scores: (runs,) or (runs, tasks)."""
    return float(_iqm_batched(_scores(scores)[None])[0])


def _iqm_batched(scores: np.ndarray) -> np.ndarray:
    """IQM of each (runs, tasks) array in a (reps, runs, tasks) stack -> (reps,)."""
    flat = np.sort(scores.reshape(scores.shape[0], -1), axis=1)
    cut = int(0.25 * flat.shape[1])
    return flat[:, cut:flat.shape[1] - cut].mean(axis=1)


def probability_of_improvement(scores_x, scores_y) -> float:
    """P(X > Y) + P(X = Y) / 2 for a run of X against a run of Y, per task, averaged over tasks
    (rliable's ``probability_of_improvement``: the Mann–Whitney U statistic of X over n_x n_y).
    scores_x: (runs_x,) or (runs_x, tasks); scores_y: (runs_y,) or (runs_y, tasks)."""
    x, y = _scores(scores_x, "scores_x"), _scores(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"scores_x has {x.shape[1]} tasks, scores_y {y.shape[1]}: they must match")
    return float(_poi_batched(x[None], y[None])[0])


def _poi_batched(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability of improvement for stacks (reps, runs_x, tasks), (reps, runs_y, tasks) -> (reps,)."""
    diff = x[:, :, None, :] - y[:, None, :, :]  # (reps, runs_x, runs_y, tasks)
    per_task = (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))
    return per_task.mean(axis=1)


def _resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified bootstrap resamples of a (runs, tasks) array -> (reps, runs, tasks): within each task
    the runs are drawn with replacement, independently per task (rliable's ``StratifiedBootstrap``)."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def _percentile_interval(statistics: np.ndarray, size: float) -> tuple[float, float]:
    tail = 100 * (1 - size) / 2
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def iqm_interval(scores, reps: int = BOOTSTRAP_REPS, size: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(IQM, low, high): the IQM of ``scores`` ((runs,) or (runs, tasks)) and its stratified-bootstrap
    percentile interval of coverage ``size`` (rliable's ``get_interval_estimates`` with
    ``method='percentile'``); ``seed`` makes it reproducible."""
    scores = _scores(scores)
    rng = np.random.default_rng(seed)
    return (iqm(scores), *_percentile_interval(_iqm_batched(_resample(scores, reps, rng)), size))


def poi_interval(scores_x, scores_y, reps: int = BOOTSTRAP_REPS, size: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(P(X > Y), low, high): the probability of improvement and its percentile interval, X and Y each
    resampled independently and stratified by task (rliable's ``StratifiedIndependentBootstrap``)."""
    x, y = _scores(scores_x, "scores_x"), _scores(scores_y, "scores_y")
    point = probability_of_improvement(x, y)
    rng = np.random.default_rng(seed)
    stats = _poi_batched(_resample(x, reps, rng), _resample(y, reps, rng))
    return (point, *_percentile_interval(stats, size))


@dataclass
class Comparison:
    """Ours against one baseline: seed values, difference of means, permutation p and P(ours > baseline)."""

    ours: list[float]
    other: list[float]

    @property
    def complete(self) -> bool:
        return bool(self.ours) and bool(self.other)

    @property
    def difference(self) -> float:
        return float(np.mean(self.ours) - np.mean(self.other))

    @cached_property
    def p(self) -> float:
        return permutation_p_value(self.ours, self.other)

    @cached_property
    def poi(self) -> tuple[float, float, float]:
        return poi_interval(self.ours, self.other)

    def verdict(self) -> str:
        """``better`` / ``worse`` (ours against the baseline) when the PoI interval excludes 0.5 and the
        permutation p is at most :data:`VERDICT_P`; ``leans better`` / ``leans worse`` when only the
        interval excludes 0.5 (few seeds: the bootstrap interval is too narrow); ``unclear`` otherwise;
        ``too few seeds`` below :data:`MIN_SEEDS_FOR_VERDICT` on a side."""
        if min(len(self.ours), len(self.other)) < MIN_SEEDS_FOR_VERDICT:
            return "too few seeds"
        _, low, high = self.poi
        if low > 0.5:
            return "better" if self.p <= VERDICT_P else "leans better"
        if high < 0.5:
            return "worse" if self.p <= VERDICT_P else "leans worse"
        return "unclear"


def _fmt_interval(estimate: tuple[float, float, float], digits: int = 2) -> str:
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:  # no spread to show from one seed
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def _iqm_cell(values: list[float]) -> str:
    return _fmt_interval(iqm_interval(values), 1) if len(values) >= 2 else (_cell(values) if values else "–")


# ---------------------------------------------------------------------------------------------- tables

def _as_grid(runs) -> Grid:
    """A Grid from a Grid or a bare runs dict (then taken as profile ``none``, the runs before profiles)."""
    if isinstance(runs, Grid):
        return runs
    roots = getattr(runs, "roots", ())
    return Grid(Path(roots[0]) if roots else Path("."), "none", runs)


def _seed_note(values: list, seeds: dict, stopped: int = 0) -> str:
    """' (n seeds[, k stopped][, m partial])': stopped = runs the revert rule stopped for good."""
    if not seeds:
        return ""
    partial = len(seeds) - len(values) - stopped
    return (f" ({len(values)} seed{'' if len(values) == 1 else 's'}" + (f", {stopped} stopped" if stopped else "")
            + (f", {partial} partial" if partial > 0 else "") + ")")


def table_one(runs, at: int = TABLE_AT) -> str:
    """Markdown Table I: the paper's figure beside ours (mean ± std over seeds at ``at`` samples, n
    seeds, partial runs counted) for three_hoppers and biped_fwd_bwd. A grid whose runs log real samples
    gets both readings (accepted, as the paper; real), else the one column they share."""
    grid = _as_grid(runs)
    readings = ("accepted", "real") if grid.has_real_samples else ("accepted",)
    titles = _REF["table_i"]["column_titles"]
    header, rule = ["method"], ["---"]
    for column in TABLE_COLUMNS:
        header.append(f"{titles[column]} (paper)")
        header += [f"{titles[column]} (ours, {r} {at / 1e6:g}M)" for r in readings] if len(readings) > 1 \
            else [f"{titles[column]} (ours)"]
        rule += ["---:"] * (1 + len(readings))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for variant, paper in PAPER_TABLE_I.items():
        cells = []
        for k, experiment in enumerate(TABLE_COLUMNS):
            seeds = grid.cells(experiment, variant)
            cells.append(f"{paper[k]:.2f}")
            for reading in readings:
                values = seed_values_at(seeds, "return_pooled", at, reading)
                cells.append(_cell(values) + _seed_note(values, seeds, len(grid.stopped(experiment, variant))))
        lines.append(f"| {_label(variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _task_keys(variants: dict) -> list[str]:
    keys: list[str] = []
    for seeds in variants.values():
        for rows in seeds.values():
            keys += [k for k in rows[0] if k.startswith("return/") and k not in keys]
    return keys


def per_task_table(runs, experiment: str, at: int = TABLE_AT, reading: str = "accepted") -> str:
    """Markdown: per variant, the pooled return and each task's (``return/<task>``) at ``at`` (mean ±
    std over the seeds there)."""
    variants = _as_grid(runs).runs.get(experiment, {})
    if not variants:
        return ""
    task_keys = _task_keys(variants)
    header = "| method | pooled | " + " | ".join(k.split("/", 1)[1] for k in task_keys) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(task_keys)]
    for variant in sorted(variants, key=_variant_order):
        cells = [_cell(seed_values_at(variants[variant], key, at, reading)) for key in ["return_pooled", *task_keys]]
        lines.append(f"| {_label(variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_table(runs, experiment: str, at: int = TABLE_AT, reference: str = REFERENCE) -> str:
    """Markdown: each main method's pooled return at ``at`` (accepted reading): seeds, mean ± std, IQM
    with its 95% stratified-bootstrap interval; ``reference`` minus the method (difference of means,
    exact permutation p) and P(reference > method) with its interval; then the methods ranked by our
    means beside the paper's ranking."""
    grid = _as_grid(runs)
    ours = seed_values_at(grid.cells(experiment, reference), "return_pooled", at)
    column = PAPER_COLUMN[experiment]
    short = METHOD_NAMES[reference].split(" (")[0]
    lines = [f"| method | seeds | mean | IQM [95% CI] | {METHOD_NAMES[reference]} minus method | permutation p "
             f"| P({short} > method) [95% CI] |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    means = {}
    for variant in MAIN_VARIANTS:
        values = seed_values_at(grid.cells(experiment, variant), "return_pooled", at)
        if values:
            means[variant] = float(np.mean(values))
        head = f"| {METHOD_NAMES[variant]} | {len(values)} | {_cell(values)} | {_iqm_cell(values)} |"
        if variant == reference or not values or not ours:
            lines.append(head + " | | |")
            continue
        comparison = Comparison(ours, values)
        lines.append(head + f" {comparison.difference:+.1f} | {comparison.p:.2f} | {_fmt_interval(comparison.poi)} |")
    ranked = sorted(means, key=means.get, reverse=True)
    paper = sorted(MAIN_VARIANTS, key=lambda v: PAPER_TABLE_I[v][column], reverse=True)
    lines += ["", "Ranking by mean (best first), ours: " + " > ".join(METHOD_NAMES[v] for v in ranked)
              + (" (methods without a run at this budget left out)" if len(ranked) < len(MAIN_VARIANTS) else ""),
              "", "Ranking in the paper: " + " > ".join(METHOD_NAMES[v] for v in paper)]
    return "\n".join(lines)


def _torso_values(grid: Grid, experiment: str, at: int, reference: str,
                  count_stopped: bool = False) -> dict[str, list[float]]:
    """method -> pooled returns at ``at`` of its seeds; ``count_stopped``: with the runs the revert rule
    stopped, each at its pooled return when it stopped (failure.json)."""
    values = {v: seed_values_at(grid.cells(experiment, v), "return_pooled", at) for v in (reference, "joint", "separate")}
    if count_stopped:
        for (e, v, _), record in sorted(grid.failures.items()):
            if e == experiment and v in values and record.get("return_pooled") not in (None, "nan"):
                values[v].append(float(record["return_pooled"]))
    return values


def torso_mass_table(runs, at: int = TABLE_AT, reference: str = REFERENCE, count_stopped: bool = False) -> str:
    """Markdown, one row per torso-mass experiment (Fig. 6): ours, joint and separate at ``at`` (mean ±
    std, seeds), ours minus each (permutation p, P(ours > it) [95% CI]), the better of joint and separate, ours beside the
    paper's, P(joint > separate) with its interval (the similarity trend), and whether ours is on top.
    ``–`` where a method has no run at ``at`` yet. ``count_stopped``: the runs the revert rule stopped
    counted too, each at its pooled return when it stopped (a sensitivity reading; "k at stop")."""
    grid = _as_grid(runs)
    lines = ["| torso vs 15 kg | ours (jt=400k, sp=25%) | joint | separate | ours − joint | ours − separate "
             "| better of joint / separate: ours (paper) | P(joint > separate) [95% CI] | ours on top |",
             "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for experiment in TORSO_MASS_EXPERIMENTS:
        values = _torso_values(grid, experiment, at, reference, count_stopped)
        cells = []
        for variant, vals in values.items():
            stopped = len(grid.stopped(experiment, variant))
            note = (f"; {stopped} at stop" if count_stopped else f"; {stopped} stopped") if stopped else ""
            cells.append(_cell(vals) + (f" ({len(vals)}{note})" if vals or stopped else ""))
        ours = values[reference]
        for other in ("joint", "separate"):
            comparison = Comparison(ours, values[other])
            cells.append(f"{comparison.difference:+.1f} (p {comparison.p:.2f}; P(ours>) {_fmt_interval(comparison.poi)})"
                         if comparison.complete else "–")
        if values["joint"] and values["separate"]:
            better = "joint" if np.mean(values["joint"]) > np.mean(values["separate"]) else "separate"
            trend = _fmt_interval(poi_interval(values["joint"], values["separate"]))
        else:
            better = trend = "–"
        cells += [f"{better} ({PAPER_FIG6_BETTER_OF_JOINT_SEPARATE[experiment]})", trend]
        if all(values.values()):
            on_top = np.mean(ours) > max(np.mean(values["joint"]), np.mean(values["separate"]))
            cells.append("yes" if on_top else "no")
        else:
            cells.append("–")
        lines.append(f"| {experiment.rsplit('_', 1)[1]} kg | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_summary(runs, at: int = TABLE_AT, reference: str = REFERENCE) -> str:
    """Markdown, one row per experiment: ``reference`` against each baseline at ``at``: difference of the
    means over seeds (exact permutation p) and P(reference > baseline) [95% CI]."""
    grid = _as_grid(runs)
    baselines = [v for v in MAIN_VARIANTS if v != reference]
    lines = ["| | " + " | ".join(METHOD_NAMES[v].split(" (")[0] for v in baselines) + " |",
             "|---|" + "---:|" * len(baselines)]
    for experiment in TABLE_COLUMNS:
        ours = seed_values_at(grid.cells(experiment, reference), "return_pooled", at)
        cells = []
        for variant in baselines:
            comparison = Comparison(ours, seed_values_at(grid.cells(experiment, variant), "return_pooled", at))
            cells.append(f"{comparison.difference:+.1f} (p {comparison.p:.2f}; P(ours>) {_fmt_interval(comparison.poi)})"
                         if comparison.complete else "–")
        lines.append(f"| {experiment} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- why trajectories ended

LAST_FRACTION = 0.1  # "the last 10% of training": real samples in ((1 - LAST_FRACTION) R, R]
END_CAUSE_BINS = 15  # bins of real samples in the end-cause figures
# a fixed colour per cause (tasks.END_CAUSES), the same in every figure
CAUSE_COLORS = {"non_finite": "0.25", "state_limit": "tab:red", "height": "tab:blue", "pitch": "tab:orange",
                "time_limit": "tab:green", "switch": "tab:purple"}


def _real_samples(row: dict) -> float:
    """Every env step taken up to the row (``samples_real``; runs without it: ``samples``)."""
    return row.get("samples_real", row["samples"])


def end_cause_columns(rows: list[dict]) -> dict[str, dict[str, str]]:
    """task -> cause -> the metrics column ``ended/<task>/<cause>`` (causes in the order of
    ``tasks.END_CAUSES``, any other after them); {} for a run whose metrics predate the counts."""
    columns: dict[str, dict[str, str]] = {}
    for key in rows[0] if rows else ():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "ended":
            columns.setdefault(parts[1], {})[parts[2]] = key
    rank = {cause: k for k, cause in enumerate(END_CAUSES)}
    return {task: {c: causes[c] for c in sorted(causes, key=lambda c: rank.get(c, len(rank)))}
            for task, causes in columns.items()}


def end_cause_counts(rows: list[dict], low: float = -np.inf, high: float = np.inf) -> dict[str, dict[str, int]]:
    """task -> cause -> trajectories of the task that ended by the cause, summed over the rows (each an
    iteration's rollout, reverted or not) whose real samples lie in (``low``, ``high``]."""
    columns = end_cause_columns(rows)
    counts = {task: dict.fromkeys(causes, 0) for task, causes in columns.items()}
    for row in rows:
        if low < _real_samples(row) <= high:
            for task, causes in columns.items():
                for cause, key in causes.items():
                    counts[task][cause] += int(row[key])
    return counts


def last_tenth(rows: list[dict], at: int = TABLE_AT) -> tuple[float, float, bool]:
    """(low, high, partial): the last 10% of a run's training as real samples (low, high] = (0.9 R, R],
    R the real samples at the row Table I reads (accepted reading at ``at``); for a run not there yet
    (``partial``) R is its last row's."""
    row = accepted_row(rows, at)
    end = _real_samples(rows[-1] if row is None else row)
    return (1 - LAST_FRACTION) * end, end, row is None


def _add_counts(total: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for task, causes in counts.items():
        for cause, n in causes.items():
            total.setdefault(task, {}).setdefault(cause, 0)
            total[task][cause] += n


def _share(n: int, total: int) -> str:
    return "–" if not total else f"{100 * n / total:.1f}%"


def _cause_table(head: list[str], rows: list[tuple[list[str], dict[str, int]]]) -> str:
    """Markdown: ``head`` columns, the number of ended trajectories, then each cause's share of them;
    causes no trajectory of the table ended by are left out and named under it."""
    causes: list[str] = []
    for _, counts in rows:
        causes += [c for c in counts if c not in causes]
    used = [c for c in causes if any(counts.get(c, 0) for _, counts in rows)]
    lines = ["| " + " | ".join([*head, "ended", *used]) + " |",
             "|" + "---|" * len(head) + "---:|" * (1 + len(used))]
    for cells, counts in rows:
        total = sum(counts.values())
        lines.append("| " + " | ".join([*cells, f"{total:,}", *(_share(counts.get(c, 0), total) for c in used)]) + " |")
    unused = [c for c in causes if c not in used]
    if unused:
        lines += ["", "No trajectory here ended by " + ", ".join(f"`{c}`" for c in unused) + "."]
    return "\n".join(lines)


def end_cause_table(runs, experiment: str, at: int = TABLE_AT, variants: Sequence[str] = tuple(MAIN_VARIANTS)) -> str:
    """Markdown: per method of ``variants`` and task, how many trajectories ended over the last 10% of
    training (:func:`last_tenth`) and the share of each cause, summed over the seeds at ``at`` (accepted
    reading; partial and stopped runs, and runs whose metrics predate the counts, left out); '' when no
    run of ``experiment`` counts them."""
    grid = _as_grid(runs)
    rows = []
    for variant in variants:
        pooled: dict[str, dict[str, int]] = {}
        n_runs = 0
        for seed_rows in grid.cells(experiment, variant).values():
            if not end_cause_columns(seed_rows):
                continue
            low, high, partial = last_tenth(seed_rows, at)
            if partial:
                continue
            n_runs += 1
            _add_counts(pooled, end_cause_counts(seed_rows, low, high))
        rows += [([METHOD_NAMES.get(variant, variant), str(n_runs), task], counts) for task, counts in pooled.items()]
    return _cause_table(["method", "runs", "task"], rows) if rows else ""


def end_cause_bins(runs, experiment: str, variants: Sequence[str] = tuple(MAIN_VARIANTS),
                   bins: int = END_CAUSE_BINS) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], int]:
    """What :func:`plot_end_causes` draws: (edges, counts, n_runs). ``edges`` (bins + 1,): real samples
    splitting [0, the most any of the runs reached] evenly; ``counts``: task -> cause -> (bins,)
    trajectories ended so in each bin, summed over every run of ``variants`` that counts them (partial
    runs as far as they are); a row counts in the bin holding its real samples (its rollout's end)."""
    grid = _as_grid(runs)
    counted = [rows for v in variants for rows in grid.cells(experiment, v).values() if end_cause_columns(rows)]
    if not counted:
        return np.zeros(0), {}, 0
    edges = np.linspace(0.0, max(_real_samples(rows[-1]) for rows in counted), bins + 1)
    counts: dict[str, dict[str, np.ndarray]] = {}
    for rows in counted:
        real = np.array([_real_samples(row) for row in rows])
        index = np.clip(np.searchsorted(edges, real, side="left") - 1, 0, bins - 1)  # (edges[k], edges[k+1]] -> k
        for task, causes in end_cause_columns(rows).items():
            for cause, key in causes.items():
                into = counts.setdefault(task, {}).setdefault(cause, np.zeros(bins, dtype=np.int64))
                np.add.at(into, index, np.array([row[key] for row in rows], dtype=np.int64))
    return edges, counts, len(counted)


def plot_end_causes(runs, experiment: str, path: Path, variants: Sequence[str] = tuple(MAIN_VARIANTS),
                    bins: int = END_CAUSE_BINS):
    """One panel per task: stacked bars of the share of the trajectories ended in each bin of real
    samples by each cause, the runs of ``variants`` pooled (:func:`end_cause_bins`), saved to ``path``;
    returns the Figure, or None (nothing written) when no run of ``experiment`` counts them."""
    grid = _as_grid(runs)
    edges, counts, n_runs = end_cause_bins(grid, experiment, variants, bins)
    if not n_runs:
        return None
    fig, axes = plt.subplots(1, len(counts), figsize=(3.6 * len(counts) + 1.4, 3.3), squeeze=False, sharey=True)
    x, width = edges[:-1] / 1e6, np.diff(edges) / 1e6
    shown: dict[str, object] = {}
    for ax, (task, causes) in zip(axes[0], counts.items()):
        total = np.sum(list(causes.values()), axis=0)
        bottom = np.zeros(len(x))
        for cause, n in causes.items():
            if not n.any():
                continue
            share = np.divide(n, total, out=np.zeros(len(x)), where=total > 0)
            shown[cause] = ax.bar(x, share, width, bottom=bottom, align="edge", color=CAUSE_COLORS.get(cause),
                                  edgecolor="white", linewidth=0.4, label=cause)
            bottom += share
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("real samples (millions)")
        ax.set_xlim(0, edges[-1] / 1e6)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of ended trajectories")
    fig.legend(list(shown.values()), list(shown), loc="center right", fontsize=8, title="ended by", title_fontsize=8)
    of = " of the main methods" if list(variants) == list(MAIN_VARIANTS) else ""
    fig.suptitle(f"{experiment}: why trajectories ended, {n_runs} run{'' if n_runs == 1 else 's'}{of} pooled "
                 f"[profile {grid.profile}]", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
    _save(fig, path, tight=False)
    return fig


# ---------------------------------------------------------------------------------------------- corrections one at a time

def _step_name(label: str) -> str:
    """A profile-steps cell's row name from its RunSpec label (``_as_grid+time_limit`` -> ``+ time_limit``)."""
    added = label.removeprefix("_as_grid")
    return f"+ {added.lstrip('+')}" if added else "as the first paper grid (all three undone)"


def _step_status(run_dir: Path, rows: list[dict], at: int, expected: Sequence[str] = ("paper",)) -> str:
    """``3M``, ``partial: N samples (M real)``, ``stopped for good at ...`` or ``not started``; a run
    whose label is not among ``expected`` (default: the corrected paper profile) says so."""
    if not rows:
        return "not started"
    last = rows[-1]
    where = f"{int(last['samples']):,} samples ({int(_real_samples(last)):,} real)"
    if accepted_row(rows, at) is not None:
        status = f"{at / 1e6:g}M"
    elif RunDir(run_dir).read_failure() is not None:
        status = f"stopped for good at {where}"
    else:
        status = f"**partial**: {where}"
    label = run_profile(run_dir)
    if label in expected:
        return status
    return f"{status}; profile `{label}`, not " + (
        "the corrected paper profile" if tuple(expected) == ("paper",) else " or ".join(f"`{e}`" for e in expected))


def _step_rows(runs: list[list[dict]], at: int) -> tuple[list[dict], list[list[dict]], bool]:
    """(the rows the numbers read, the runs they come from, partial): each run's row at ``at`` (accepted
    reading) when any run got there, else each partial run's last accepted row (partial True)."""
    done = [rows for rows in runs if accepted_row(rows, at) is not None]
    if done:
        return [accepted_row(rows, at) for rows in done], done, False
    started = [rows for rows in runs if accepted_only(rows)]
    return [accepted_only(rows)[-1] for rows in started], started, True


def cells_section(rows: list[tuple[str, list[Path]]], at: int = TABLE_AT,
                  reference: dict[str, float] | None = None, expected: Sequence[str] = ("paper",)) -> list[str]:
    """Markdown lines comparing cells of one experiment and method: ``rows`` is [(cell name, its run
    directories)]. A table of each cell's runs, status, pooled and per-task return and mean episode
    length at ``at`` (accepted reading; mean ± std over the runs; a cell none of whose runs is there
    shows its runs' last accepted iteration, marked partial), then per cell and task the trajectories
    that ended over the last 10% of training and each cause's share. ``reference``: a first row of
    published figures ({'pooled': value, task: value, ...}; absent values shown as –); ``expected``: the
    profile labels the runs should have (a run of another is marked in its status)."""
    runs = {name: [(path, read_metrics(path)) for path in paths] for name, paths in rows}
    tasks: list[str] = []
    for found in runs.values():
        tasks += [k.split("/", 1)[1] for _, r in found if r for k in r[0]
                  if k.startswith("return/") and k.split("/", 1)[1] not in tasks]
    header = ["cell", "runs", "status", "pooled return", *(f"return {t}" for t in tasks),
              *(f"length {t}" for t in tasks)]
    table = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
    if reference is not None:
        published = [reference.get(key) for key in ["pooled", *tasks]]
        table.append("| " + " | ".join(["the paper (Table I)", "–", "published",
                                        *("–" if v is None else f"{v:.1f}" for v in published),
                                        *("–" for _ in tasks)]) + " |")
    causes = []
    for name, found in runs.items():
        picked, counted, partial = _step_rows([r for _, r in found if r], at)
        values = [_cell([row[key] for row in picked if key in row])
                  for key in ["return_pooled", *(f"return/{t}" for t in tasks), *(f"length/{t}" for t in tasks)]]
        if partial and picked:
            values = [f"{v} (partial)" if v != "–" else v for v in values]
        paths = "<br>".join(f"`{path}`" for path, _ in found)
        status = "<br>".join(_step_status(path, r, at, expected) for path, r in found)
        table.append("| " + " | ".join([name, paths, status, *values]) + " |")
        pooled: dict[str, dict[str, int]] = {}
        for r in counted:
            low, high, _ = last_tenth(r, at)
            _add_counts(pooled, end_cause_counts(r, low, high))
        note = " (partial)" if partial else ""
        causes += [([name + note, task], counts) for task, counts in pooled.items()]
    return ["\n".join(table), "", "Why trajectories ended:", "",
            _cause_table(["cell", "task"], causes) if causes else
            "no run of these cells counts why its trajectories ended yet."]


def profile_steps_table(root: str | Path, grid_root: str | Path, at: int = TABLE_AT,
                        seeds: Iterable[int] = (1,)) -> str:
    """Markdown: the paper profile's corrections measured one at a time (``paper.reproduce.profile_steps_grid``
    under ``root``; the cell with all three is the paper grid's own, under ``grid_root``). Per experiment:
    each cell's runs and status, the pooled and per-task return and mean episode length at ``at``
    (accepted reading, as Table I; mean ± std over seeds when several), then per cell and task the
    trajectories that ended over the last 10% of training and each cause's share (:func:`last_tenth`).
    A cell no run of which is at ``at`` shows its runs' last accepted iteration, marked partial."""
    from paper.reproduce import AS_FIRST_GRID, RunSpec, profile_steps_grid

    root, grid_root, seeds = Path(root), Path(grid_root), list(seeds)
    cells: dict[tuple[str, str], list[tuple[str, list[Path]]]] = {}
    for spec in profile_steps_grid(seeds):
        rows = cells.setdefault((spec.experiment, spec.method), [])
        if not rows or rows[-1][0] != _step_name(spec.label):
            rows.append((_step_name(spec.label), []))
        rows[-1][1].append(root / spec.name)
    for (experiment, method), rows in cells.items():
        rows.append(("all three (the paper grid's cell)",
                     [grid_root / RunSpec(experiment, method, seed).name for seed in seeds]))
    def assignments(settings: dict) -> str:
        return ", ".join(", ".join(f"physics.{name}={value}" for name, value in v) if k == "physics" else f"{k}={v}"
                         for k, v in settings.items())

    undone = "; ".join(f"`{step}`: {assignments(settings)}" for step, settings in AS_FIRST_GRID.items())
    parts = [f"Each cell is the paper profile with the corrections of `docs/paper_profile_rules.md` undone as the "
             f"first paper grid ran it ({undone}; `paper/reproduce.py` `AS_FIRST_GRID`), but for the one it names; "
             f"\"all three\" is the corrected profile, the paper grid's cell. Seeds: {', '.join(map(str, seeds))}.", "",
             f"Returns: mean episode return of the last 100 episodes (pooled over the tasks, and per task) at the first "
             f"accepted iteration past {at:,} counted samples, as Table I; lengths: mean episode length (control "
             "steps) of the last 100 episodes there; mean ± std over the seeds there. A cell none of whose runs is "
             "there yet shows its runs' last accepted iteration, marked partial, with the samples they reached. "
             f"Why trajectories ended: over the last {LAST_FRACTION:.0%} of training (real samples from 0.9 R to R, "
             "R at the row the returns read), the trajectories of each task that ended and the share of each cause "
             "(`tasks.END_CAUSES`)."]
    for (experiment, method), rows in cells.items():
        parts += ["", f"## {experiment}, {method}", "", *cells_section(rows, at)]
    return "\n".join(parts)


def write_profile_steps(root: str | Path, grid_root: str | Path, out: str | Path, at: int = TABLE_AT,
                        seeds: Iterable[int] = (1,)) -> Path:
    """Write ``out/profile_steps.md`` (:func:`profile_steps_table`); returns its path. FileNotFoundError
    when ``root`` or ``grid_root`` is not a directory."""
    for flag, path in (("root", root), ("grid root", grid_root)):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{flag} {path} is not a directory of runs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    command = (f"python -m paper steps --root {root} --grid-root {grid_root} --out {out} --at {at}"
               + (f" --seeds {','.join(map(str, seeds))}" if seeds != [1] else ""))
    text = ("# The paper profile's corrections, one at a time\n\n"
            f"Generated by `{command}` from the runs of `python -m paper reproduce --grid profile_steps` "
            f"under `{root}` and the paper grid's cells under `{grid_root}`.\n\n"
            + profile_steps_table(root, grid_root, at, seeds) + "\n")
    path = out / "profile_steps.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def engine_cells(dart_root: str | Path) -> list[tuple[str, str, list[int]]]:
    """The (experiment, variant, seeds) cells with runs under ``dart_root`` (``EXPERIMENT/VARIANT/seedN``),
    in Table I's variant order."""
    found: dict[tuple[str, str], list[int]] = {}
    for seed_dir in sorted(Path(dart_root).glob("*/*/seed*")):
        if seed_dir.is_dir() and seed_dir.name.removeprefix("seed").isdigit():
            found.setdefault((seed_dir.parent.parent.name, seed_dir.parent.name), []).append(
                int(seed_dir.name.removeprefix("seed")))
    order = list(PAPER_TABLE_I)
    return [(e, v, sorted(seeds)) for (e, v), seeds in
            sorted(found.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else len(order),
                                                  kv[0][1]))]


def engines_table(mujoco_root: str | Path, dart_root: str | Path, at: int = TABLE_AT) -> str:
    """Markdown: each cell run on DART (``paper_dart`` under ``dart_root``) beside the same cell on MuJoCo
    (``paper`` under ``mujoco_root``, the same seeds) and the paper's Table I figure (:func:`cells_section`:
    returns, episode lengths and why trajectories ended)."""
    mujoco_root, dart_root = Path(mujoco_root), Path(dart_root)
    parts = [f"Returns: mean episode return of the last 100 episodes (pooled over the tasks, and per task) at the "
             f"first accepted iteration past {at:,} counted samples, as Table I; lengths: mean episode length "
             "(control steps) of the last 100 episodes there; mean ± std over the seeds. A cell none of whose runs "
             "is there yet shows its runs' last accepted iteration, marked partial. Why trajectories ended: over "
             f"the last {LAST_FRACTION:.0%} of training, each task's ended trajectories and each cause's share "
             "(`tasks.END_CAUSES`). The paper's figure is Table I's (DART, 3 seeds)."]
    for experiment, variant, seeds in engine_cells(dart_root):
        rows = [(f"{engine} (`{profile}`)", [root / experiment / variant / f"seed{seed}" for seed in seeds])
                for engine, profile, root in (("MuJoCo", "paper", mujoco_root), ("DART", "paper_dart", dart_root))]
        reference = None
        if variant in PAPER_TABLE_I and experiment in PAPER_COLUMN:
            reference = {"pooled": PAPER_TABLE_I[variant][PAPER_COLUMN[experiment]]}
        parts += ["", f"## {experiment}, {METHOD_NAMES.get(variant, variant)}; seeds {', '.join(map(str, seeds))}", "",
                  *cells_section(rows, at, reference, expected=("paper", "paper_dart"))]
    if len(parts) == 1:
        parts += ["", f"No run under {dart_root} yet."]
    return "\n".join(parts)


def write_engines(mujoco_root: str | Path, dart_root: str | Path, out: str | Path, at: int = TABLE_AT) -> Path:
    """Write ``out/engines.md`` (:func:`engines_table`); returns its path. FileNotFoundError when a root is
    not a directory."""
    for flag, path in (("MuJoCo root", mujoco_root), ("DART root", dart_root)):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{flag} {path} is not a directory of runs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m paper engines --mujoco-root {mujoco_root} --dart-root {dart_root} --out {out} --at {at}"
    text = ("# The paper profile on MuJoCo and on DART\n\n"
            f"Generated by `{command}`: the runs of `python -m paper reproduce --profile paper_dart` under "
            f"`{dart_root}` beside the same cells of the paper grid under `{mujoco_root}`.\n\n"
            + engines_table(mujoco_root, dart_root, at) + "\n")
    path = out / "engines.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- verdict

def headline_table(runs, at: int = TABLE_AT, reference: str = REFERENCE) -> str:
    """Markdown, one row per main method (Table I's method rows): for three_hoppers and biped_fwd_bwd the
    paper's figure, ours at ``at`` (mean ± std over seeds, accepted reading, partial runs counted) and
    P(reference > method) with its 95% stratified-bootstrap interval."""
    grid = _as_grid(runs)
    titles = _REF["table_i"]["column_titles"]
    short = METHOD_NAMES[reference].split(" (")[0]
    header, rule = ["method"], ["---"]
    for column in TABLE_COLUMNS:
        header += [f"{titles[column]}: paper", f"{titles[column]}: here", f"P({short} > method)"]
        rule += ["---:"] * 3
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for variant in MAIN_VARIANTS:
        cells = []
        for experiment in TABLE_COLUMNS:
            seeds = grid.cells(experiment, variant)
            values = seed_values_at(seeds, "return_pooled", at)
            ours = seed_values_at(grid.cells(experiment, reference), "return_pooled", at)
            comparison = Comparison(ours, values)
            paper = PAPER_TABLE_I[variant][PAPER_COLUMN[experiment]]
            cells += [f"{paper:.0f}", _cell(values) + _seed_note(values, seeds, len(grid.stopped(experiment, variant))),
                      "" if variant == reference else (_fmt_interval(comparison.poi) if comparison.complete else "–")]
        lines.append(f"| {METHOD_NAMES[variant]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _planned_seeds(profile: str) -> int:
    return int(_REF["profiles"].get(profile, {}).get("seeds", 3))


def _count(grid: Grid, experiments: Iterable[str], variants: Iterable[str], at: int) -> tuple[int, int]:
    """(runs at ``at`` (accepted reading) or stopped for good before it, runs planned) over the given cells."""
    variants, experiments = list(variants), list(experiments)
    done = sum(accepted_row(rows, at) is not None or (e, v, seed) in grid.failures for e in experiments
               for v in variants for seed, rows in grid.cells(e, v).items())
    planned = sum(max(_planned_seeds(grid.profile), len(grid.cells(e, v))) for e in experiments for v in variants)
    return done, planned


def _poi_words(comparison: Comparison, name: str) -> str:
    if not comparison.complete:
        return f"{name}: no runs to compare yet"
    verdict = comparison.verdict()
    words = {"better": f"**ours beats {name}**", "worse": f"**{name} beats ours**",
             "leans better": f"ours ahead of {name} by the interval, not shown by the permutation test",
             "leans worse": f"{name} ahead of ours by the interval, not shown by the permutation test",
             "unclear": f"no clear difference from {name}", "too few seeds": f"{name}: too few seeds to say"}[verdict]
    return (f"{words}: P(ours > {name}) {_fmt_interval(comparison.poi)}, permutation p {comparison.p:.2f}, "
            f"{len(comparison.ours)} vs {len(comparison.other)} seeds")


def _experiment_comparisons(grid: Grid, experiment: str, at: int, reading: str = "accepted") -> dict[str, Comparison]:
    ours = seed_values_at(grid.cells(experiment, REFERENCE), "return_pooled", at, reading)
    return {v: Comparison(ours, seed_values_at(grid.cells(experiment, v), "return_pooled", at, reading))
            for v in MAIN_VARIANTS if v != REFERENCE}


def _real_reading_words(grid: Grid, experiment: str, at: int, accepted: dict[str, Comparison]) -> str:
    """What the real-sample reading changes in the comparisons of ``experiment`` (grids with reverts)."""
    if not grid.has_real_samples:
        return ""
    real = _experiment_comparisons(grid, experiment, at, "real")
    changed = [f"{METHOD_NAMES[v].split(' (')[0]}: {c.verdict()} (P(ours >) {_fmt_interval(c.poi)})"
               for v, c in real.items() if c.complete and accepted[v].complete and c.verdict() != accepted[v].verdict()]
    return (f"At {at / 1e6:g}M real samples: " + ("; ".join(changed) if changed else "the same verdicts") + ".") \
        if any(c.complete for c in real.values()) else ""


def _fig6_words(grid: Grid, at: int, count_stopped: bool = False) -> str:
    """Whether Fig. 6's similarity trend holds: joint's advantage over separate, P(joint > separate), as
    the torso masses become alike, against the paper's orderings (``count_stopped``: as
    :func:`_torso_values`)."""
    parts, signs, strong = [], [], True
    for experiment in TORSO_MASS_EXPERIMENTS:
        values = _torso_values(grid, experiment, at, REFERENCE, count_stopped)
        if not (values["joint"] and values["separate"]):
            return "Fig. 6: not all three torso masses have joint and separate runs at this budget yet"
        comparison = Comparison(values["joint"], values["separate"])
        expected = PAPER_FIG6_BETTER_OF_JOINT_SEPARATE[experiment]
        point = comparison.poi[0]
        signs.append((point > 0.5) == (expected == "joint") and point != 0.5)
        verdict = comparison.verdict()
        strong &= verdict == ("better" if expected == "joint" else "worse")
        parts.append(f"{experiment.rsplit('_', 1)[1]} kg {_fmt_interval(comparison.poi)}")
    if strong:
        state = "holds: every ordering is shown (interval and permutation p)"
    elif all(signs):
        state = "the point estimates follow it, but not every ordering is shown with these seeds"
    else:
        state = f"does not hold: {sum(signs)} of {len(signs)} orderings go the paper's way even in the point estimates"
    on_top = []
    for experiment in TORSO_MASS_EXPERIMENTS:
        values = _torso_values(grid, experiment, at, REFERENCE, count_stopped)
        if all(values.values()):
            on_top.append(np.mean(values[REFERENCE]) > max(np.mean(values["joint"]), np.mean(values["separate"])))
    return (f"Fig. 6 (separate ahead of joint at 3 kg, joint ahead at 8 and 14 kg): {state}; P(joint > separate) "
            + ", ".join(parts) + f". Ours has the highest mean at {sum(on_top)} of {len(on_top)} torso masses.")


def _stopped_words(grid: Grid, at: int) -> str:
    """Which runs the revert rule stopped for good, per cell, and how the statistics treat them."""
    cells: dict[tuple[str, str], list[int]] = {}
    for experiment, variant, seed in sorted(grid.failures):
        cells.setdefault((experiment, variant), []).append(seed)
    listed = "; ".join(f"{e} {METHOD_NAMES.get(v, v).split(' (')[0]} seed{'s' if len(seeds) > 1 else ''} "
                       + ", ".join(map(str, seeds)) for (e, v), seeds in cells.items())
    words = (f"{len(grid.failures)} run{'s' if len(grid.failures) > 1 else ''} stopped for good: the revert rule "
             f"rejected 50 iterations in a row ({listed}). They have no value at the table's budget and are left "
             "out of every statistic above, counted as \"stopped\" beside the seeds.")
    if any(e in TORSO_MASS_EXPERIMENTS for e, _, _ in grid.failures):
        words += (" Counting each at its pooled return when it stopped instead (what its policy then did): "
                  + _fig6_words(grid, at, count_stopped=True))
    return words


def stopped_runs_table(grid: Grid) -> str:
    """Markdown: every run the revert rule stopped for good, where, and its return then against the last
    accepted one (from failure.json)."""
    lines = ["| run | stopped at real samples | counted samples | pooled return at the stop | last accepted "
             "| largest approx_kl of the last 3 accepted updates | median approx_kl of the run |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (experiment, variant, seed), record in sorted(grid.failures.items()):
        pooled, accepted = record.get("return_pooled"), record.get("accepted_return")
        kls = [float(r["approx_kl"]) for r in accepted_only(grid.cells(experiment, variant).get(seed, []))
               if r.get("approx_kl") not in (None, "") and np.isfinite(float(r["approx_kl"]))]
        kl_cells = [f"{max(kls[-3:]):.2f}", f"{np.median(kls):.3f}"] if kls else ["–", "–"]
        lines.append(f"| {experiment}/{variant}/seed{seed} | {record['samples_real']:,} | {record['samples']:,} | "
                     + " | ".join("–" if v is None or v == "nan" else f"{float(v):.1f}" for v in (pooled, accepted))
                     + " | " + " | ".join(kl_cells) + " |")
    return "\n".join(lines)


def verdict(grids: Sequence[Grid], at: int = TABLE_AT) -> str:
    """Plain-words verdict from the data: per experiment on the headline profile, does ours beat joint,
    separate, random and append (probability of improvement with its interval, permutation p), does Fig.
    6's trend hold, and what differs on the other profiles. A difference is claimed only when the PoI
    interval excludes 0.5, p <= :data:`VERDICT_P` and each side has :data:`MIN_SEEDS_FOR_VERDICT` seeds;
    incomplete grids are marked ``partial: n of N runs``."""
    headline = _REF["headline_profile"]
    ordered = sorted(grids, key=lambda g: g.profile != headline)
    lines = [f"Read at {at:,} samples (accepted reading). A difference is claimed only where the 95% interval of "
             f"P(ours > baseline) excludes 0.5 and the exact permutation p is at most {VERDICT_P}, with at least "
             f"{MIN_SEEDS_FOR_VERDICT} seeds a side. Where only the interval excludes 0.5, one method is said to be ahead "
             "\"by the interval\" (with few seeds a bootstrap interval is too narrow); otherwise there is \"no clear "
             "difference\"."]
    if not any(g.profile == headline for g in grids):
        lines += ["", f"- **{headline} profile: no runs yet.**"]
    first = {}
    for grid in ordered:
        if grid.profile in first:
            continue
        first[grid.profile] = grid
    for profile, grid in first.items():
        lines += ["", f"**{grid.title}** [profile `{grid.profile}`] — {grid.root}:"]
        for experiment in TABLE_COLUMNS:
            done, planned = _count(grid, [experiment], MAIN_VARIANTS, at)
            if not done:
                lines.append(f"- {experiment}: no runs at {at:,} samples yet (0 of {planned} runs).")
                continue
            state = "complete" if done >= planned else f"partial: {done} of {planned} runs"
            comparisons = _experiment_comparisons(grid, experiment, at)
            lines.append(f"- {experiment} ({state}):")
            lines += [f"  - {_poi_words(c, METHOD_NAMES[v].split(' (')[0])}" for v, c in comparisons.items()]
            real = _real_reading_words(grid, experiment, at, comparisons)
            if real:
                lines.append(f"  - {real}")
        done, planned = _count(grid, TORSO_MASS_EXPERIMENTS, [REFERENCE, "joint", "separate"], at)
        if done:
            state = "complete" if done >= planned else f"partial: {done} of {planned} runs"
            lines.append(f"- {_fig6_words(grid, at)} ({state})")
        else:
            lines.append(f"- Fig. 6: no torso-mass runs at {at:,} samples yet (0 of {planned} runs).")
        if grid.failures:
            lines.append(f"- {_stopped_words(grid, at)}")
    if headline in first and len(first) > 1:
        main = first[headline]
        for profile, other in first.items():
            if profile == headline:
                continue
            changes = []
            for experiment in TABLE_COLUMNS:
                a, b = _experiment_comparisons(main, experiment, at), _experiment_comparisons(other, experiment, at)
                for variant in a:
                    if a[variant].complete and b[variant].complete:
                        pa, pb = a[variant].poi[0], b[variant].poi[0]
                        if (pa > 0.5) != (pb > 0.5) or a[variant].verdict() != b[variant].verdict():
                            name = METHOD_NAMES[variant].split(" (")[0]
                            changes.append(f"{experiment} vs {name}: P(ours >) {pa:.2f} ({a[variant].verdict()}) "
                                           f"on {headline}, {pb:.2f} ({b[variant].verdict()}) on {profile}")
            lines += ["", f"What changes on profile {profile} against {headline}: "
                      + ("; ".join(changes) + "." if changes else
                         "no comparison changes side or verdict (among those both profiles have).")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- README

def _as_grids(source, references: Iterable[str | Path] | None = None) -> list[Grid]:
    """Grids from a list of Grids, a Grid, a :class:`Runs` (its roots re-read by profile) or roots."""
    if isinstance(source, Grid):
        return [source]
    if isinstance(source, list) and source and all(isinstance(g, Grid) for g in source):
        return source
    if isinstance(source, Runs):
        return collect_grids(source.roots, references)
    if isinstance(source, dict):
        raise TypeError("pass Grid objects, collect_runs()'s result or run roots: a bare dict has no profile")
    return collect_grids(source, references)


def _n_done(grid: Grid, at: int) -> int:
    return sum(accepted_row(rows, at) is not None
               for variants in grid.runs.values() for seeds in variants.values() for rows in seeds.values())


def readme_blocks(source, at: int = TABLE_AT, references: Iterable[str | Path] | None = None) -> dict[str, str]:
    """The READMEs' generated blocks, by marker name: ``verdict`` (:func:`verdict`); for the headline
    profile's grid ``n_done`` (runs at ``at``), ``table1``, ``comparison``, ``torso_mass`` and
    ``headline`` (:func:`headline_table`, the front page's); for the first grid of every other profile P
    the same five named ``<block>_<P>`` (e.g. ``headline_paper_v1``). Each table block opens with a line
    naming its profile (title and label) and root."""
    grids = _as_grids(source, references)
    headline = _REF["headline_profile"]
    blocks = {"verdict": verdict(grids, at)}
    first: dict[str, Grid] = {}
    for grid in grids:
        first.setdefault(grid.profile, grid)
    if headline not in first:
        empty = f"no {headline}-profile runs yet (read: {', '.join(str(g.root) for g in grids) or 'no runs at all'})"
        blocks.update(n_done="0", table1=empty, comparison=empty, torso_mass=empty, headline=empty)
    for profile, grid in first.items():
        suffix = "" if profile == headline else f"_{profile}"
        caption = _block_caption(grid, at)
        blocks.update({f"n_done{suffix}": str(_n_done(grid, at)),
                       f"table1{suffix}": caption + table_one(grid, at),
                       f"comparison{suffix}": caption + comparison_summary(grid, at),
                       f"torso_mass{suffix}": caption + torso_mass_table(grid, at),
                       f"headline{suffix}": caption + headline_table(grid, at)})
    return blocks


def _block_caption(grid: Grid, at: int) -> str:
    """The line above a README block's table that names whose numbers it holds."""
    return (f"**{grid.title}** [profile `{grid.profile}`], runs under `{grid.root}` ({_n_done(grid, at)} at "
            f"{at:,} samples):\n\n")


def fill_blocks(text: str, blocks: dict[str, str], optional: Iterable[str] = ()) -> str:
    """Replace what stands between ``<!-- name -->`` and ``<!-- /name -->`` in ``text`` for every block.

    A block whose content holds a line break is written on lines of its own. Blocks named in ``optional``
    are skipped when neither marker is there. Raises ``ValueError`` naming the markers that are missing
    (or appear more than once, or out of order), before anything is replaced.
    """
    optional = set(optional)
    present = {name: (text.count(f"<!-- {name} -->"), text.count(f"<!-- /{name} -->")) for name in blocks}
    blocks = {name: content for name, content in blocks.items() if not (name in optional and present[name] == (0, 0))}
    bad = [name for name in blocks
           if present[name] != (1, 1) or text.index(f"<!-- {name} -->") > text.index(f"<!-- /{name} -->")]
    if bad:
        raise ValueError("each of these blocks needs exactly one '<!-- NAME -->...<!-- /NAME -->' pair: "
                         + ", ".join(bad))
    for name, content in blocks.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        head, rest = text.split(start)
        _, tail = rest.split(end)
        body = f"\n{content}\n" if "\n" in content else content
        text = head + start + body + end + tail
    return text


REQUIRED_BLOCKS = ("verdict", "n_done", "table1", "comparison", "torso_mass")


def blocks_in(text: str, names: Iterable[str]) -> list[str]:
    """The blocks of ``names`` that ``text`` has a marker of (opening or closing)."""
    return [name for name in names if f"<!-- {name} -->" in text or f"<!-- /{name} -->" in text]


def update_readme(paths: str | Path | Sequence[str | Path], source, at: int = TABLE_AT,
                  references: Iterable[str | Path] | None = None) -> dict[str, str]:
    """Fill the generated blocks (:func:`readme_blocks`) of one Markdown file or several in place,
    atomically; returns the blocks.

    Each file gets the blocks it has markers for (results/README.md the research blocks, README.md the
    headline table). ``source``: Grids, :func:`collect_runs`'s result or run roots (then the data file's
    reference grids are added unless ``references`` says otherwise). ValueError, before any file is
    written, when a file has no block's markers, when ``verdict`` or a headline-profile block of
    :data:`REQUIRED_BLOCKS` is in none of the files, or when a block's markers are broken."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    blocks = readme_blocks(source, at, references)
    texts = {path: path.read_text() for path in paths}
    found = {path: blocks_in(text, blocks) for path, text in texts.items()}
    empty = [str(path) for path in paths if not found[path]]
    if empty:
        raise ValueError(f"{', '.join(empty)}: no '<!-- NAME -->...<!-- /NAME -->' block of {sorted(blocks)}")
    missing = [name for name in REQUIRED_BLOCKS if not any(name in names for names in found.values())]
    if missing:
        raise ValueError("each of these blocks needs a '<!-- NAME -->...<!-- /NAME -->' pair in one of "
                         f"{[str(p) for p in paths]}: " + ", ".join(missing))
    filled = {path: fill_blocks(texts[path], {name: blocks[name] for name in found[path]}) for path in paths}
    for path, text in filled.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return blocks


# ---------------------------------------------------------------------------------------------- per-run rows

def run_rows(grids: Sequence[Grid], at: int = TABLE_AT) -> list[dict]:
    """One dict per run and reading: the row Table I reads (profile, root, experiment, variant, seed,
    reading, iteration, samples, samples_real, reverts, return_pooled and every return/<task>);
    runs not at ``at`` yet give a row with the numbers empty."""
    out = []
    for grid in grids:
        for experiment in sorted(grid.runs):
            for variant in sorted(grid.runs[experiment], key=_variant_order):
                for seed, rows in sorted(grid.runs[experiment][variant].items()):
                    for reading, pick in READINGS.items():
                        row = pick(rows, at)
                        entry = {"profile": grid.profile, "root": str(grid.root), "experiment": experiment,
                                 "variant": variant, "seed": seed, "reading": reading}
                        if row is not None:
                            entry.update(iteration=int(row["iteration"]), samples=int(row["samples"]),
                                         samples_real=int(row.get("samples_real", row["samples"])),
                                         reverts=int(row.get("reverts", 0)), return_pooled=row["return_pooled"])
                            entry.update({k: row[k] for k in row if k.startswith("return/")})
                        out.append(entry)
    return out


def write_run_rows(grids: Sequence[Grid], path: Path, at: int = TABLE_AT) -> Path:
    rows = run_rows(grids, at)
    fields = ["profile", "root", "experiment", "variant", "seed", "reading", "iteration", "samples", "samples_real",
              "reverts", "return_pooled"]
    fields += sorted({k for row in rows for k in row if k.startswith("return/")})
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- figures

def _variant_order(variant: str) -> int:
    order = list(PAPER_TABLE_I)
    return order.index(variant) if variant in order else len(order)


def plot_curves(ax, variants: dict, key: str = "return_pooled", only: list[str] | None = None) -> None:
    """Mean over the seeds present at each counted sample count (line; accepted iterations only), min–max
    band where >= 2 seeds are."""
    for variant in sorted(variants, key=_variant_order):
        if only and variant not in only:
            continue
        seeds = [accepted_only(rows) for rows in variants[variant].values()]
        seeds = [rows for rows in seeds if rows]
        if not seeds:
            continue
        longest = max(seeds, key=lambda rows: rows[-1]["samples"])
        x = np.array([r["samples"] for r in longest])
        y = np.full((len(seeds), len(x)), np.nan)
        for k, rows in enumerate(seeds):  # each seed on the longest seed's sample counts, none past its end
            xs = np.array([r["samples"] for r in rows])
            inside = x <= xs[-1]
            y[k, inside] = np.interp(x[inside], xs, [r[key] for r in rows])
        line, = ax.plot(x / 1e6, np.nanmean(y, axis=0), lw=1.4, label=f"{_label(variant)} (n={len(seeds)})")
        several = np.sum(~np.isnan(y), axis=0) >= 2
        if several.any():
            lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
            ax.fill_between(x[several] / 1e6, lo[several], hi[several], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("counted samples (millions)")
    ax.set_ylabel("mean episode return (pooled)")
    ax.grid(alpha=0.3)


def _save(fig, path: Path, tight: bool = True) -> None:
    """Write ``fig`` to ``path`` atomically and close it (its data stay readable)."""
    tmp = path.with_suffix(".tmp.png")
    if tight:
        fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def plot_jt_sp_grid(runs, experiment: str, path: Path, at: int = TABLE_AT):
    """Table I's 3x3 block as two heat maps, the paper's and ours (mean over the seeds at ``at``, rows jt
    80k / 400k / 800k, columns sp 5 / 25 / 50 %; n in each cell), saved to ``path``; returns the Figure, or
    None (nothing written) if no ``ours`` cell of the sweep has reached ``at``."""
    grid = _as_grid(runs)
    jts, sps = (80, 400, 800), (5, 25, 50)
    column = PAPER_COLUMN[experiment]
    paper = np.array([[PAPER_TABLE_I[f"ours_jt{jt}k_sp{sp}"][column] for sp in sps] for jt in jts])
    ours = np.full((3, 3), np.nan)
    counts = np.zeros((3, 3), dtype=int)
    for a, jt in enumerate(jts):
        for b, sp in enumerate(sps):
            values = seed_values_at(grid.cells(experiment, f"ours_jt{jt}k_sp{sp}"), "return_pooled", at)
            counts[a, b] = len(values)
            if values:
                ours[a, b] = np.mean(values)
    if not counts.any():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, values, title in ((axes[0], paper, "paper (DART)"), (axes[1], ours, f"ours (profile {grid.profile})")):
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis")
        for a in range(3):
            for b in range(3):
                text = "–" if np.isnan(values[a, b]) else f"{values[a, b]:.0f}"
                if values is ours and counts[a, b]:
                    text += f"\n(n={counts[a, b]})"
                bright = image.norm(values[a, b]) > 0.6 if not np.isnan(values[a, b]) else False
                ax.text(b, a, text, ha="center", va="center", color="black" if bright else "white", fontsize=9)
        ax.set_xticks(range(3), [f"sp={sp}%" for sp in sps])
        ax.set_yticks(range(3), [f"jt={jt}k" for jt in jts])
        ax.set_title(f"{experiment}, {title}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)
    return fig


def write_figures(runs, out: Path, root: Path | None = None, suffix: str = "") -> dict[Path, object]:
    """The figures of one grid into ``out`` (file names end in ``suffix``); returns {path: matplotlib
    Figure} in the order written (closed figures: their lines and images hold the plotted data)."""
    grid = _as_grid(runs)
    root = grid.root if root is None else Path(root)
    runs = grid.runs
    tag = f" [profile {grid.profile}]"
    written = {}
    for number, experiment in ((3, "three_hoppers"), (5, "biped_fwd_bwd")):
        if experiment not in runs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        plot_curves(axes[0], runs[experiment], only=MAIN_VARIANTS)
        axes[0].set_title(f"{experiment}: ours (jt=400k, sp=25%) vs baselines{tag}")
        plot_curves(axes[1], runs[experiment], only=[v for v in runs[experiment] if v.startswith("ours_")])
        axes[1].set_title(f"{experiment}: jt × sp grid{tag}")
        for ax in axes:
            ax.legend(fontsize=7)
        path = out / f"fig{number}_{experiment}{suffix}.png"
        _save(fig, path)
        written[path] = fig
    for experiment in PAPER_COLUMN:  # the pooled number hides which task fails
        variants = runs.get(experiment)
        if not variants:
            continue
        task_keys = _task_keys(variants)
        if not task_keys:  # runs that log no per-task returns
            continue
        fig, axes = plt.subplots(1, len(task_keys), figsize=(5.2 * len(task_keys), 4.0), squeeze=False)
        for ax, key in zip(axes[0], task_keys):
            plot_curves(ax, variants, key=key, only=MAIN_VARIANTS)
            ax.set_ylabel("mean episode return")
            ax.set_title(f"{experiment}: {key.split('/', 1)[1]}{tag}")
            ax.legend(fontsize=7)
        path = out / f"per_task_{experiment}{suffix}.png"
        _save(fig, path)
        written[path] = fig
    for experiment in ("three_hoppers", "biped_fwd_bwd"):
        path = out / f"jt_sp_{experiment}{suffix}.png"
        fig = plot_jt_sp_grid(grid, experiment, path)
        if fig:
            written[path] = fig
    from mt_specialize.plots import plot_split

    for run_dir in sorted(Path(root).glob(f"*/{REPORT_CELL}")):  # which weights the score split
        if run_profile(run_dir) != grid.profile:
            continue
        path = out / f"split_{run_dir.parent.parent.name}_seed1{suffix}.png"
        fig = plot_split(run_dir, path)
        if fig:
            written[path] = fig
    if any(e in runs for e in TORSO_MASS_EXPERIMENTS):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), squeeze=False)
        for ax, experiment in zip(axes[0], TORSO_MASS_EXPERIMENTS):
            if experiment in runs:
                plot_curves(ax, runs[experiment])
                ax.legend(fontsize=7)
            ax.set_title(f"{experiment.split('_')[-1]} kg vs 15 kg torso{tag}")
        path = out / f"fig6_torso_mass{suffix}.png"
        _save(fig, path)
        written[path] = fig
    else:  # no torso-mass run of this profile yet: a figure left by an older report is not this profile's
        (out / f"fig6_torso_mass{suffix}.png").unlink(missing_ok=True)
    for experiment in sorted(runs):  # why trajectories ended (runs that count it)
        path = out / f"end_causes_{experiment}{suffix}.png"
        fig = plot_end_causes(grid, experiment, path)
        if fig:
            written[path] = fig
    return written


def write_gaits(root: Path, out: Path, steps: int = 250) -> list[Path]:
    """A GIF of each task's final policy (ours jt=400k sp=25%, seed 1, newest checkpoint), on the robot
    as its run trained it (``experiments.task_as_trained``: the run's profile and physics)."""
    from mt_specialize.experiments import get_experiment, task_as_trained
    from mt_specialize.envs.gait import play, write_animation
    from mt_specialize.learning.inference import InferencePolicy
    from mt_specialize.train import latest_checkpoint

    written = []
    for run_dir in sorted(root.glob(f"*/{REPORT_CELL}")):
        path = latest_checkpoint(run_dir) or (run_dir / POLICY)  # archived grids keep the latter
        if not path.exists():
            continue
        policy = InferencePolicy.from_checkpoint(path)
        experiment = run_dir.parent.parent.name
        for task in get_experiment(experiment).tasks:
            trained = task_as_trained(task.name, policy.run_config)
            episode = play(policy, trained, [(0, task.name)], steps)
            written.append(write_animation(trained, episode.qpos, out / "gaits" / f"{experiment}_{task.name}.gif",
                                           width=180, height=135))
    return written


# ---------------------------------------------------------------------------------------------- the report

def _grid_section(grid: Grid, at: int, suffix: str = "") -> list[str]:
    """table1.md's section of one grid (its figures' names end in ``suffix``)."""
    n_runs = sum(len(seeds) for variants in grid.runs.values() for seeds in variants.values())
    n_done = _n_done(grid, at)
    readings = ("accepted reading (first iteration not reverted with counted samples at or past it, as the "
                f"paper) and real reading (first iteration with every env step counted at or past it)"
                if grid.has_real_samples else "one reading: these runs have no revert rule, so counted and real "
                "samples are the same")
    parts = [f"## {grid.title}", "",
             f"Profile `{grid.profile}`, runs under `{grid.root}`: {n_runs} run directories, {n_done} of them at "
             f"or past {at:,} samples." + (" **Partial.**" if n_done < n_runs else ""), "",
             f"Mean episode return (all tasks pooled, last 100 episodes) at {at:,} samples, {readings}; mean ± std "
             "over the seeds that reached it (n in brackets). Paper: DART simulator, OpenAI Baselines PPO.", "",
             table_one(grid, at)]
    for experiment in PAPER_COLUMN:
        if experiment in grid.runs:
            parts += ["", f"### Ours (jt=400k, sp=25%) against each baseline at {at:,} samples: {experiment} "
                          f"[profile {grid.profile}]", "",
                      "IQM: interquartile mean over seeds with its 95% stratified-bootstrap percentile interval; "
                      "P(ours > method): probability of improvement (a run of ours above a run of the method) "
                      "with its interval (both as rliable defines them); p: exact permutation test of the means.",
                      "", comparison_table(grid, experiment, at)]
    if any(e in grid.runs for e in TORSO_MASS_EXPERIMENTS):
        parts += ["", f"### Torso mass (Fig. 6) at {at:,} samples [profile {grid.profile}]", "",
                  torso_mass_table(grid, at)]
        if any(e in TORSO_MASS_EXPERIMENTS for e, _, _ in grid.failures):
            parts += ["", "The same with the runs the revert rule stopped counted, each at its pooled return when "
                          "it stopped (\"at stop\"): what those seeds' policies then did, instead of leaving them "
                          "out.", "", torso_mass_table(grid, at, count_stopped=True)]
    for experiment in sorted(grid.runs):
        parts += ["", f"### Per-task returns at {at:,} samples (accepted reading): {experiment} "
                      f"[profile {grid.profile}]", "", per_task_table(grid, experiment, at)]
    for experiment in sorted(grid.runs):
        causes = end_cause_table(grid, experiment, at)
        _, _, n_runs = end_cause_bins(grid, experiment)
        if not n_runs:
            continue
        figure = f"end_causes_{experiment}{suffix}.png"
        parts += ["", f"### Why trajectories ended: {experiment} [profile {grid.profile}]", "",
                  f"[{figure}]({figure}): per task, the share of the trajectories that ended in each of "
                  f"{END_CAUSE_BINS} bins of real samples by each cause (`tasks.END_CAUSES`: a termination rule, the "
                  f"time limit, a task switch), summed over the {n_runs} runs of the main methods that count them "
                  "(all seeds pooled, partial runs as far as they are). Below: per method and task, the trajectories "
                  f"that ended over the last {LAST_FRACTION:.0%} of training (real samples from 0.9 R to R, R where "
                  f"Table I reads the run) and each cause's share, summed over the seeds at {at:,} samples. Runs "
                  "whose metrics predate the counts are left out.", "",
                  causes or f"No run of the main methods is at {at:,} samples yet."]
    if grid.failures:
        parts += ["", f"### Runs the revert rule stopped [profile {grid.profile}]", "",
                  "The revert rule (`revert_drop_bound`) restores the last accepted policy when the pooled return of "
                  "the last 100 episodes falls more than the bound below the last accepted one. When the restored "
                  "policy cannot get back within the bound, the authors' loop would repeat the rejected iteration "
                  "for ever; ours stops the run after `revert_max_streak` (50) rejections in a row, keeps its state "
                  "as a checkpoint and records why in its failure.json. Such a run has no value at the table's "
                  "budget in either reading: the tables leave it out and say how many seeds stopped.", "",
                  stopped_runs_table(grid)]
    prose = _REF["differences"].get(grid.profile)
    if prose:
        parts += ["", prose.rstrip().replace("\n## ", "\n### ").replace("## ", "### ", 1)]
    return parts


def write_report(root, out: str | Path, gaits: bool = True, at: int = TABLE_AT,
                 references: Iterable[str | Path] | None = None) -> Path:
    """Write table1.md, table1_runs.csv, the figures and (optionally) gait GIFs; returns the table path.

    ``root``: one run root or several; the data file's reference grids are added unless ``references``
    says otherwise. ``at``: the sample count the tables read (3M as the paper; smaller for a partial
    look). ``gaits``: render the GIFs of the first root; without, the GIFs already in ``out/gaits`` stay
    listed.
    """
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grids = collect_grids(roots, references)
    headline = _REF["headline_profile"]
    grids.sort(key=lambda g: g.profile != headline)  # stable: the given roots' order otherwise
    command = f"python -m paper report --root {' --root '.join(str(r) for r in roots)} --out {out} --at {at}"
    parts = ["# Table I reproduced", "",
             f"Generated by `{command}` from " + ", ".join(f"`{g.root}` ({g.profile})" for g in grids)
             + (" (no runs found)" if not grids else "") + ".", "",
             "## Verdict", "", verdict(grids, at)]
    figures: list[Path] = []
    used_suffixes: set[str] = set()
    for k, grid in enumerate(grids):
        suffix = "" if grid.profile == headline else f"_{grid.profile}"
        if suffix in used_suffixes:
            suffix += f"_{k}"
        used_suffixes.add(suffix)
        parts += [""] + _grid_section(grid, at, suffix)
        figures += list(write_figures(grid, out, suffix=suffix))
    csv_path = write_run_rows(grids, out / "table1_runs.csv", at)
    parts += ["", f"Every run's row that the tables read, both readings: [{csv_path.name}]({csv_path.name})."]
    parts += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    gifs = write_gaits(roots[0], out) if gaits else sorted((out / "gaits").glob("*.gif"))  # keep earlier GIFs listed
    if gifs:
        parts += ["", f"## Gaits (ours, jt=400k sp=25%, seed 1, `{roots[0]}`)", ""] \
            + [f"![{p.stem}](gaits/{p.name})" for p in gifs]
    table = out / "table1.md"
    tmp = table.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts) + "\n")
    os.replace(tmp, table)
    return table
