"""Forward and backward per-task return of each probe against the grid's cell (separate, seed 1).

    python plot.py   # writes per_task_returns.png next to this file
"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
GRID = HERE.parent.parent / "grid" / "biped_fwd_bwd" / "separate" / "seed1" / "metrics.csv"
PROBES = [  # (directory or file, label)
    (GRID, "our biped (grid cell: ankles 20, armature 1, damping 1, Euler)"),
    (HERE / "ours_gear100", "our biped, ankles 100"),
    (HERE / "walker2d", "Walker2d-v5 body (ankles 100, armature .01, damping .1, RK4)"),
    (HERE / "walker2d_damping1", "Walker2d, damping 1"),
    (HERE / "walker2d_euler", "Walker2d, Euler"),
    (HERE / "walker2d_gear20", "Walker2d, ankles 20"),
    (HERE / "walker2d_gear20_euler_damping1", "Walker2d, ankles 20 + Euler + damping 1"),
]

fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
for path, label in PROBES:
    path = path if path.suffix == ".csv" else path / "metrics.csv"
    rows = list(csv.DictReader(path.open()))
    x = [int(r["samples"]) / 1e6 for r in rows]
    style = "-" if "20" not in label or "100" in label else "--"
    for ax, key in zip(axes, ("return/biped_forward", "return/biped_backward")):
        ax.plot(x, [float(r[key]) for r in rows], style, label=label, lw=1.3)
for ax, title in zip(axes, ("biped_forward", "biped_backward")):
    ax.set_title(f"{title} (method separate, seed 1; dashed: 20 N*m ankles)")
    ax.set_xlabel("samples, both tasks (millions)")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("mean episode return (last 100 episodes)")
axes[1].legend(fontsize=7, loc="upper left")
fig.tight_layout()
fig.savefig(HERE / "per_task_returns.png", dpi=110)
print(HERE / "per_task_returns.png")
