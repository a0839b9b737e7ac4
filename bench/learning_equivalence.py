"""Did a speed change change learning? Seeded runs of two code versions, compared at the same samples.

Runs ``--seeds`` seeded trainings of ``--experiment`` (method ``--method``, ``--samples`` each) with
the code of git revision ``--base`` (checked out into a temporary worktree) and with the current
working tree, two runs at a time, then prints for each version the pooled mean episode return of
every seed at each ``--marks`` sample count, the means, the difference and an exact permutation p
over seeds. Identical code gives identical numbers (the runs are seeded and deterministic); a change
that only moves float rounding should give differences well inside the seed-to-seed spread.

Usage::

    python bench/learning_equivalence.py --base 60d6e90 [--experiment three_hoppers] [--seeds 1 2 3]
        [--samples 600k] [--jt 400k] [--marks 200k 400k 600k] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the paper tooling (paper/) is not installed

from mt_specialize.config import parse_count  # noqa: E402
from mt_specialize.plots import read_metrics  # noqa: E402
from paper.report import permutation_p_value, value_at  # noqa: E402

_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import mt_specialize
assert mt_specialize.__file__.startswith(sys.argv[1]), mt_specialize.__file__
from mt_specialize.config import TrainConfig
from mt_specialize.train import run_training
samples, jt = int(sys.argv[6]), int(sys.argv[7])
run_training(TrainConfig(experiment=sys.argv[3], method=sys.argv[4], seed=int(sys.argv[5]), samples=samples,
                         **({"jt": jt} if sys.argv[4] in ("ours", "random") else {})), sys.argv[2])
"""


def run(code_root: Path, out: Path, experiment: str, method: str, seed: int, samples: int, jt: int) -> Path:
    """One seeded training with the package found under ``code_root``; returns its run directory."""
    cmd = [sys.executable, "-c", _RUN, str(code_root), str(out), experiment, method, str(seed), str(samples),
           str(jt)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        raise RuntimeError(f"run {out} failed:\n{done.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare the working tree against")
    parser.add_argument("--experiment", default="three_hoppers")
    parser.add_argument("--method", default="ours")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--samples", default="600k")
    parser.add_argument("--jt", default="400k", help="joint samples of ours/random (default 400k, the paper's)")
    parser.add_argument("--marks", nargs="+", default=["200k", "400k", "600k"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    samples = parse_count(args.samples, "--samples")
    marks = [parse_count(m, "--marks") for m in args.marks]
    jt = parse_count(args.jt, "--jt")
    with tempfile.TemporaryDirectory(prefix="mt_equiv_") as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base],
                       check=True, capture_output=True)
        try:
            versions = {f"base {args.base}": base_tree, "working tree": REPO}
            jobs = [(name, root, seed) for seed in args.seeds for name, root in versions.items()]
            with ThreadPoolExecutor(args.workers) as pool:
                dirs = list(pool.map(lambda job: run(job[1], tmp / f"{job[0].split()[0]}_seed{job[2]}",
                                                     args.experiment, args.method, job[2], samples, jt), jobs))
            returns = {name: {} for name in versions}
            for (name, _, seed), run_dir in zip(jobs, dirs):
                rows = read_metrics(run_dir)
                returns[name][seed] = [value_at(rows, "return_pooled", m) for m in marks]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
                           capture_output=True)
    if args.json:
        print(json.dumps({"marks": marks, "returns": returns}))
        return 0
    print(f"{args.experiment}, method {args.method}, seeds {args.seeds}, {samples:,} samples each; "
          f"pooled mean episode return (last 100 episodes)")
    (base_name, base), (head_name, head) = returns.items()
    for k, mark in enumerate(marks):
        a = [base[s][k] for s in args.seeds]
        b = [head[s][k] for s in args.seeds]
        print(f"\n  at {mark:,} samples")
        for seed, x, y in zip(args.seeds, a, b):
            print(f"    seed {seed}: {base_name} {x:8.1f}   {head_name} {y:8.1f}   diff {y - x:+8.1f}")
        print(f"    mean:   {np.mean(a):8.1f} ± {np.std(a):6.1f}   vs   {np.mean(b):8.1f} ± {np.std(b):6.1f}   "
              f"diff {np.mean(b) - np.mean(a):+.1f}, permutation p {permutation_p_value(a, b):.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
