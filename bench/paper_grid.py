"""The paper's comparison as a benchmark: Table I figures, ours against each baseline, rankings.

Reads the grid's run directories (``mt-specialize reproduce`` writes them; ``--run`` first runs or
resumes the grid itself) and prints, per experiment, at 3M samples (the paper's point):

- each method's pooled mean episode return over seeds, the paper's figure beside it, and ours/paper;
- ours (jt=400k, sp=25%) minus each baseline, with an exact permutation p over seeds;
- the methods ranked by our means and by the paper's, and how many of the paper's pairwise orderings
  of the 5 main methods our means reproduce;
- for the torso-mass experiments (Fig. 6), ours, joint and separate and how many of the figure's
  orderings (the better of joint and separate; ours above each) our means reproduce.

Usage::

    python bench/paper_grid.py [--root runs/paper] [--at 3M]           # read what is there
    python bench/paper_grid.py --root runs/paper_ankle100               # a variant grid (reproduce --experiment)
    python bench/paper_grid.py --run [--only 'three_hoppers/*'] [--workers 2]   # run/resume, then read

Runs that have not reached ``--at`` are listed as partial and left out of the means.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from mt_specialize.config import parse_count
from mt_specialize.report import (MAIN_VARIANTS, METHOD_NAMES, PAPER_COLUMN, PAPER_FIG6_BETTER_OF_JOINT_SEPARATE,
                                  PAPER_TABLE_I,
                                  TABLE_AT, TORSO_MASS_EXPERIMENTS, collect_runs, comparison_table, seed_values_at,
                                  torso_mass_table)



def pairwise_agreement(means: dict[str, float], paper: dict[str, float]) -> tuple[int, int]:
    """(agreeing, compared): pairs of methods both have, ordered the same way by ours and the paper."""
    pairs = [(a, b) for a, b in itertools.combinations(sorted(means), 2) if a in paper and b in paper]
    agree = sum((means[a] - means[b]) * (paper[a] - paper[b]) > 0 for a, b in pairs)
    return agree, len(pairs)


def fig6_agreement(runs: dict, at: int, reference: str = "ours_jt400k_sp25") -> tuple[int, int]:
    """(agreeing, compared) over Fig. 6's orderings: per torso mass with all three methods at ``at``, the
    better of joint and separate as in the paper, ours above joint, ours above separate."""
    agree = compared = 0
    for experiment in TORSO_MASS_EXPERIMENTS:
        means = {v: seed_values_at(runs.get(experiment, {}).get(v, {}), "return_pooled", at)
                 for v in (reference, "joint", "separate")}
        if not all(means.values()):
            continue
        means = {v: float(np.mean(values)) for v, values in means.items()}
        better = "joint" if means["joint"] > means["separate"] else "separate"
        agree += (better == PAPER_FIG6_BETTER_OF_JOINT_SEPARATE[experiment]) + (means[reference] > means["joint"]) \
            + (means[reference] > means["separate"])
        compared += 3
    return agree, compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/paper", help="the grid's root directory (default runs/paper)")
    parser.add_argument("--at", default=str(TABLE_AT), help="sample count to read the returns at (default 3M)")
    parser.add_argument("--run", action="store_true", help="run or resume the grid first (mt-specialize reproduce)")
    parser.add_argument("--only", nargs="+", default=None, help="with --run: cells to run (globs, as reproduce)")
    parser.add_argument("--workers", type=int, default=None, help="with --run: parallel runs (default: one per core)")
    args = parser.parse_args(argv)
    try:
        at = parse_count(args.at, "--at")
    except ValueError as exc:
        parser.error(str(exc))
    if args.run:
        from mt_specialize.cli import main as cli_main

        cli = ["reproduce", "--root", args.root, "--report", ""]
        if args.only:
            cli += ["--only", *args.only]
        if args.workers:
            cli += ["--workers", str(args.workers)]
        code = cli_main(cli)
        if code:
            return code
    runs = collect_runs(args.root)
    if not any(e in runs for e in PAPER_COLUMN):
        print(f"no runs of {list(PAPER_COLUMN)} under {args.root}: run `mt-specialize reproduce --root {args.root}` "
              f"or this script with --run", file=sys.stderr)
        return 1
    print(f"Paper grid at {at:,} samples, runs under {args.root} (pooled mean episode return, last 100 episodes)")
    for experiment in [e for e in PAPER_COLUMN if e in runs]:
        column = PAPER_COLUMN[experiment]  # the ankle variant is compared with the paper's biped
        variants = runs.get(experiment, {})
        print(f"\n[{experiment}]")
        means, paper = {}, {}
        for variant in MAIN_VARIANTS:
            seeds = variants.get(variant, {})
            values = seed_values_at(seeds, "return_pooled", at)
            reference = PAPER_TABLE_I[variant][column]
            paper[variant] = reference
            partial = len(seeds) - len(values)
            if values:
                means[variant] = float(np.mean(values))
                spread = f" ± {np.std(values):6.1f}" if len(values) > 1 else " " * 9
                figure = (f"{np.mean(values):8.1f}{spread} (n={len(values)})   paper {reference:8.1f}"
                          f"   ours/paper {np.mean(values) / reference:.2f}")
            else:
                figure = f"{'–':>8}                     paper {reference:8.1f}"
            print(f"  {METHOD_NAMES[variant]:32s} {figure}" + (f"   ({partial} partial)" if partial else ""))
        print()
        print("\n".join(f"  {line}" if line else "" for line in comparison_table(runs, experiment, at).splitlines()))
        agree, compared = pairwise_agreement(means, paper)
        if compared:
            print(f"\n  pairwise orderings that match the paper: {agree} of {compared}")
    if any(e in runs for e in TORSO_MASS_EXPERIMENTS):
        print("\n[torso_mass_3 / 8 / 14 (Fig. 6): two capsule hoppers, torso 15 kg against 3 / 8 / 14 kg]\n")
        print("\n".join(f"  {line}" for line in torso_mass_table(runs, at).splitlines()))
        agree, compared = fig6_agreement(runs, at)
        if compared:
            print(f"\n  Fig. 6 orderings that match the paper: {agree} of {compared}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
