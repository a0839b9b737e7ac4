"""Count approx_kl spikes (> 0.1; typical iterations are 0.02-0.05) in a grid's metrics, and how many
are followed within 20 iterations by a > 30 % drop of some task's return (a collapse).

    python spikes.py [ROOT]   # default runs/paper
"""
import csv
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/paper")
for experiment in sorted(p.name for p in root.iterdir() if p.is_dir()):
    n_runs = n_iterations = n_spikes = n_collapses = 0
    for path in sorted(root.glob(f"{experiment}/*/seed*/metrics.csv")):
        rows = list(csv.DictReader(path.open()))
        if not rows:
            continue
        kl = np.array([float(r["approx_kl"]) for r in rows])
        tasks = [k for k in rows[0] if k.startswith("return/")]
        n_runs += 1
        n_iterations += len(rows)
        for i in np.nonzero(kl > 0.1)[0]:
            n_spikes += 1
            drop = 0.0
            for key in tasks:
                v = np.array([float(r[key]) for r in rows])
                before = v[max(0, i - 3):i + 1].mean()
                after = v[i + 1:i + 21].min() if i + 1 < len(v) else before
                drop = max(drop, (before - after) / max(before, 1.0))
            n_collapses += drop > 0.3
    print(f"{experiment}: {n_runs} runs, {n_iterations} iterations, {n_spikes} spikes (approx_kl > 0.1), "
          f"{n_collapses} followed by a > 30 % drop of a task's return within 20 iterations")
