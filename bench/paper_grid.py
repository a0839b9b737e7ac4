"""The paper's comparison as a benchmark: ours/paper per Table I cell, orderings matched, intervals, targets.

Reads the grids' run directories (``python -m paper reproduce`` writes them; ``--run`` first runs or
resumes the grid under the first ``--root``) and prints, for every profile found (a run's profile is
its config.yaml's ``profile``; runs older than the key are profile ``none``, paper-profile runs older
than ``time_limit`` are ``paper_v1``: ``paper.report.run_profile``), at 3M samples:

- per Table I cell: our mean over seeds (accepted reading, as the paper; the real-sample reading beside
  it where runs log it), the paper's figure and ours/paper;
- per experiment: each main method's IQM with its 95% stratified-bootstrap interval, ours minus each
  baseline with the exact permutation p, and P(ours > baseline) with its interval;
- how many of Table I's pairwise orderings our means reproduce (the 5 main methods, and all 13 rows),
  and how many of Fig. 6's (the better of joint and separate per torso mass; ours above each);
- issue 12's targets, met / not met: paper-profile returns within 20% of the paper's for joint, separate
  and ours on three_hoppers, and the biped walking forward (per-task return above 1000) in some method.

Usage::

    python bench/paper_grid.py [--root runs/paper] [--root results/grid] [--at 3M]
    python bench/paper_grid.py --root results/grid_ankle100 --no-references   # one variant grid alone
    python bench/paper_grid.py --run [--only 'three_hoppers/*'] [--workers 2]   # run/resume, then read

Without ``--no-references`` the archived grids named in paper/paper_results.yaml (the first paper grid,
``results/grid_paper``, and the first grid, ``results/grid``) are read too for the profiles the roots lack. Runs that have not reached ``--at`` are
listed as partial and left out of the means.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the paper tooling (paper/) is not installed

from mt_specialize.config import parse_count  # noqa: E402
from paper.report import (MAIN_VARIANTS, METHOD_NAMES, PAPER_COLUMN, PAPER_FIG6_BETTER_OF_JOINT_SEPARATE,  # noqa: E402
                          PAPER_TABLE_I, REFERENCE, TABLE_AT, TORSO_MASS_EXPERIMENTS, Grid, _label,
                          collect_grids, comparison_table, load_reference, seed_values_at, torso_mass_table)


def pairwise_agreement(means: dict[str, float], paper: dict[str, float]) -> tuple[int, int]:
    """(agreeing, compared): pairs of methods both have, ordered the same way by ours and the paper."""
    pairs = [(a, b) for a, b in itertools.combinations(sorted(means), 2) if a in paper and b in paper]
    agree = sum((means[a] - means[b]) * (paper[a] - paper[b]) > 0 for a, b in pairs)
    return agree, len(pairs)


def fig6_agreement(grid: Grid, at: int, reference: str = REFERENCE) -> tuple[int, int]:
    """(agreeing, compared) over Fig. 6's orderings: per torso mass with all three methods at ``at``, the
    better of joint and separate as in the paper, ours above joint, ours above separate."""
    agree = compared = 0
    for experiment in TORSO_MASS_EXPERIMENTS:
        means = {v: seed_values_at(grid.cells(experiment, v), "return_pooled", at) for v in (reference, "joint", "separate")}
        if not all(means.values()):
            continue
        means = {v: float(np.mean(values)) for v, values in means.items()}
        better = "joint" if means["joint"] > means["separate"] else "separate"
        agree += (better == PAPER_FIG6_BETTER_OF_JOINT_SEPARATE[experiment]) + (means[reference] > means["joint"]) \
            + (means[reference] > means["separate"])
        compared += 3
    return agree, compared


def cell_means(grid: Grid, experiment: str, at: int, reading: str = "accepted",
               key: str = "return_pooled") -> dict[str, list[float]]:
    """variant -> seed values at ``at`` for every Table I variant with at least one run there."""
    out = {}
    for variant in PAPER_TABLE_I:
        values = seed_values_at(grid.cells(experiment, variant), key, at, reading)
        if values:
            out[variant] = values
    return out


def targets(grid: Grid, at: int) -> list[tuple[str, str, str]]:
    """Issue 12's targets on ``grid``: (what, 'met' | 'not met' | 'not measured', the figures)."""
    spec = load_reference()["targets"]
    within, experiment = float(spec["within"]), spec["experiment"]
    column = PAPER_COLUMN[experiment]
    out = []
    values = cell_means(grid, experiment, at)
    ratios = {v: float(np.mean(values[v])) / PAPER_TABLE_I[v][column] for v in spec["variants"] if v in values}
    figures = ", ".join(f"{METHOD_NAMES[v].split(' (')[0]} {r:.2f}" for v, r in ratios.items()) or "no runs"
    if len(ratios) < len(spec["variants"]):
        state = "not measured"
        figures += f" ({len(spec['variants']) - len(ratios)} of the methods without runs at {at:,})"
    else:
        state = "met" if all(abs(r - 1) <= within for r in ratios.values()) else "not met"
    out.append((f"{experiment}: ours/paper within {within:.0%} for {', '.join(spec['variants'])}", state, figures))
    forward = spec["forward_task"]
    best = {v: float(np.mean(vals)) for v, vals in
            ((v, seed_values_at(grid.cells(forward["experiment"], v), forward["key"], at)) for v in MAIN_VARIANTS) if vals}
    if best:
        top = max(best, key=best.get)
        state = "met" if best[top] > forward["above"] else "not met"
        figures = f"best {METHOD_NAMES[top].split(' (')[0]} {best[top]:.0f} (mean over seeds)"
    else:
        state, figures = "not measured", "no runs"
    out.append((f"{forward['experiment']}: {forward['key'].split('/', 1)[1]} above {forward['above']} in some method",
                state, figures))
    return out


def report_grid(grid: Grid, at: int) -> None:
    print(f"\n==== {grid.title}\n     profile {grid.profile}, runs under {grid.root}")
    readings = ("accepted", "real") if grid.has_real_samples else ("accepted",)
    for experiment in [e for e in PAPER_COLUMN if e in grid.runs]:
        column = PAPER_COLUMN[experiment]  # the ankle variant is compared with the paper's biped
        print(f"\n[{experiment}] ours/paper per Table I cell ({' | '.join(readings)} reading)")
        by_reading = {r: cell_means(grid, experiment, at, r) for r in readings}
        for variant, paper in PAPER_TABLE_I.items():
            seeds = grid.cells(experiment, variant)
            if not seeds:
                continue
            cells = []
            for reading in readings:
                values = by_reading[reading].get(variant)
                cells.append(f"{np.mean(values):8.1f} (n={len(values)}) ratio {np.mean(values) / paper[column]:.2f}"
                             if values else f"{'–':>8}                  ")
            partial = len(seeds) - len(by_reading["accepted"].get(variant, []))
            print(f"  {_label(variant):24s} paper {paper[column]:8.1f}   " + "   |   ".join(cells)
                  + (f"   ({partial} partial)" if partial else ""))
        print()
        print("\n".join(f"  {line}" if line else "" for line in comparison_table(grid, experiment, at).splitlines()))
        paper = {v: PAPER_TABLE_I[v][column] for v in PAPER_TABLE_I}
        means = {v: float(np.mean(vals)) for v, vals in by_reading["accepted"].items()}
        main = {v: m for v, m in means.items() if v in MAIN_VARIANTS}
        agree, compared = pairwise_agreement(main, paper)
        agree_all, compared_all = pairwise_agreement(means, paper)
        if compared:
            print(f"\n  Table I pairwise orderings that match the paper: {agree} of {compared} (main methods), "
                  f"{agree_all} of {compared_all} (all rows with runs)")
    if any(e in grid.runs for e in TORSO_MASS_EXPERIMENTS):
        print("\n[torso_mass_3 / 8 / 14 (Fig. 6): two capsule hoppers, torso 15 kg against 3 / 8 / 14 kg]\n")
        print("\n".join(f"  {line}" for line in torso_mass_table(grid, at).splitlines()))
        agree, compared = fig6_agreement(grid, at)
        if compared:
            print(f"\n  Fig. 6 orderings that match the paper: {agree} of {compared}")
    print(f"\n  Targets (issue 12; {'they apply to this profile' if grid.profile == 'paper' else 'they apply to the paper profile, shown for comparison'}):")
    for what, state, figures in targets(grid, at):
        print(f"    {state.upper():12s} {what}: {figures}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", action="append", default=None,
                        help="a grid's root directory (repeatable; default runs/paper)")
    parser.add_argument("--no-references", action="store_true",
                        help="do not add the archived reference grids of paper/paper_results.yaml")
    parser.add_argument("--at", default=str(TABLE_AT), help="sample count to read the returns at (default 3M)")
    parser.add_argument("--run", action="store_true", help="run or resume the grid under the first --root first "
                                                           "(python -m paper reproduce)")
    parser.add_argument("--only", nargs="+", default=None, help="with --run: cells to run (globs, as reproduce)")
    parser.add_argument("--workers", type=int, default=None, help="with --run: parallel runs (default: one per core)")
    args = parser.parse_args(argv)
    roots = args.root or ["runs/paper"]
    try:
        at = parse_count(args.at, "--at")
    except ValueError as exc:
        parser.error(str(exc))
    if args.run:
        from paper.cli import main as paper_main

        command = ["reproduce", "--root", roots[0], "--report", ""]
        if args.only:
            command += ["--only", *args.only]
        if args.workers:
            command += ["--workers", str(args.workers)]
        code = paper_main(command)
        if code:
            return code
    grids = collect_grids(roots, references=() if args.no_references else None)
    grids = [g for g in grids if any(e in g.runs for e in [*PAPER_COLUMN, *TORSO_MASS_EXPERIMENTS])]
    if not grids:
        print(f"no runs of {list(PAPER_COLUMN)} under {roots}: run `python -m paper reproduce --root {roots[0]}` "
              f"or this script with --run", file=sys.stderr)
        return 1
    print(f"Paper grid at {at:,} samples (pooled mean episode return, last 100 episodes); profiles found: "
          + ", ".join(f"{g.profile} ({g.root})" for g in grids))
    if not any(g.profile == "paper" for g in grids):
        print("No paper-profile runs: issue 12's targets are not measured.")
    for grid in sorted(grids, key=lambda g: g.profile != "paper"):
        report_grid(grid, at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
