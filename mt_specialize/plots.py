"""Learning-curve figures from a run's metrics.csv (matplotlib, headless)."""
from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def metrics_file(run_dir: str | Path) -> Path | None:
    """RUN_DIR/metrics.csv, or the gzip-compressed metrics.csv.gz an archived run keeps; None if neither."""
    for name in ("metrics.csv", "metrics.csv.gz"):
        path = Path(run_dir) / name
        if path.is_file():
            return path
    return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of RUN_DIR/metrics.csv (or an archive's metrics.csv.gz) with numbers parsed (phase stays a string)."""
    path = metrics_file(run_dir)
    if path is None:
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key != "phase":
                row[key] = float(value)
    return rows


def plot_run(run_dir: str | Path):
    """Per-task mean episode return (last 100 episodes) against samples (millions), then the pooled
    return; a line marks the split. Saved to RUN_DIR/learning_curve.png; returns the matplotlib Figure
    (closed, its lines hold the plotted data), or None when the run has no metrics."""
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
    return fig


def plot_split(run_dir: str | Path, out: str | Path | None = None):
    """Bar chart of the fraction of each policy tensor that was split (RUN_DIR/split.safetensors; tensors
    ordered by module and layer), written to ``out`` (default RUN_DIR/split.png); returns the matplotlib
    Figure (closed, its bars hold the plotted fractions), or None when the run has no split file."""
    from .learning.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    path = run_dir / "split.safetensors"
    if not path.exists():
        return None
    tensors, meta = load_checkpoint(path)
    names = [k[len("mask/"):] for k in tensors if k.startswith("mask/")]
    order = sorted(names, key=lambda n: (n.split(".")[0], int(n.split(".")[1]) if n.count(".") else 0, n))
    fractions = [float(tensors[f"mask/{n}"].float().mean()) for n in order]
    sizes = [tensors[f"mask/{n}"].numel() for n in order]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    bars = ax.bar(range(len(order)), fractions, color="tab:green")
    for bar, size in zip(bars, sizes):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{size}", ha="center", va="bottom", fontsize=7)
    ax.axhline(meta["split_entries"] / meta["policy_entries"], color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("fraction split (per task)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{'/'.join(run_dir.parts[-3:])}: {meta['method']}, sp={meta['sp']:g} at {meta['samples']:,} samples "
                 f"({meta['split_entries']:,} of {meta['policy_entries']:,} entries; numbers: tensor sizes)",
                 fontsize=8)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "split.png"
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return fig
