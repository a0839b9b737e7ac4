"""Fig. 6 with each run the revert rule stopped replaced by its continuation with the rule off (run.sh),
read at 3M counted samples as the grid's runs. Run from the repository root:
``PYTHONPATH=. .venv/bin/python results/probes/revert_stops/summarize.py``."""
from pathlib import Path

from mt_specialize.plots import read_metrics
from paper.report import accepted_row, collect_grids, torso_mass_table

ARCHIVE, PROBE = Path("results/grid_paper"), Path("results/probes/revert_stops/runs")  # run.sh copies them there

grid, = collect_grids([ARCHIVE], references=())
print("| run | pooled return at the stop | continued with the rule off, at 3M |\n|---|---:|---:|")
for (experiment, variant, seed), record in sorted(grid.failures.items()):
    rows = read_metrics(PROBE / f"{experiment}_{variant}_seed{seed}")
    row = accepted_row(rows)
    grid.runs[experiment][variant][seed] = rows  # the continuation's rows (the source's copied before it)
    print(f"| {experiment}/{variant}/seed{seed} | {float(record['return_pooled']):.1f} | "
          + ("–" if row is None else f"{float(row['return_pooled']):.1f}") + " |")
grid.failures = {}
print("\nFig. 6 with the continued runs in place of the stopped ones:\n")
print(torso_mass_table(grid))
