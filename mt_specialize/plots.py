"""Learning-curve figures from a run's metrics.csv (matplotlib, headless)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of RUN_DIR/metrics.csv with numbers parsed (phase stays a string)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key != "phase":
                row[key] = float(value)
    return rows


def plot_run(run_dir: str | Path) -> Path | None:
    """Per-task mean episode return (last 100 episodes) against samples; a line marks the split."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        return None
    samples = [r["samples"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key in rows[0]:
        if key.startswith("return/"):
            ax.plot(samples, [r[key] for r in rows], lw=1.2, label=key.split("/", 1)[1])
    ax.plot(samples, [r["return_pooled"] for r in rows], color="k", lw=1.8, label="pooled (last 100 episodes)")
    split_at = next((r["samples"] / 1e6 for r in rows if r["phase"] == "specialized"), None)
    if split_at is not None and rows[0]["phase"] == "joint":
        ax.axvline(split_at, color="grey", ls="--", lw=1)
        ax.text(split_at, ax.get_ylim()[1], " split", va="top", color="grey")
    ax.set_xlabel("samples (millions, summed over tasks)")
    ax.set_ylabel("mean episode return")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    tmp = run_dir / "learning_curve.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
