"""The probes kept with the paper tooling (paper/probes.py): they run, and count and draw what they say."""
import csv
import gzip
import io
import json
from pathlib import Path

import pytest
import yaml

from mt_specialize.plots import read_metrics
from paper.cli import main
from paper.probes import (SpikeCount, Walker2dProbe, kl_spikes, kl_spikes_lines, plot_walker2d_probes,
                          walker2d_probe)

REPO = Path(__file__).resolve().parent.parent


def _write_metrics(run_dir: Path, kl: list[float], returns: list[float], packed: bool) -> None:
    """A run directory's metrics (metrics.csv, or an archive's metrics.csv.gz): one row per iteration."""
    run_dir.mkdir(parents=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["iteration", "samples", "phase", "approx_kl", "return/a", "return/b"])
    for i, (k, r) in enumerate(zip(kl, returns), start=1):
        writer.writerow([i, 1000 * i, "joint", k, r, 100.0])
    if packed:
        (run_dir / "metrics.csv.gz").write_bytes(gzip.compress(text.getvalue().encode()))
    else:
        (run_dir / "metrics.csv").write_text(text.getvalue())


def test_kl_spikes_counts_spikes_and_the_collapses_after_them(tmp_path, capsys):
    flat = [0.03] * 30
    # seed 1: a spike at row 5 and task a's return falls from 100 to 60 (40 %) 10 rows later: a collapse;
    # a second spike at row 20 with no fall after it
    kl = list(flat)
    kl[5], kl[20] = 0.5, 0.2
    falling = [100.0] * 15 + [60.0] * 15
    _write_metrics(tmp_path / "biped" / "joint" / "seed1", kl, falling, packed=True)
    # seed 2 (run directory, not archived): a fall of 20 %, below the collapse's 30 %
    kl2 = list(flat)
    kl2[3] = 1.2
    _write_metrics(tmp_path / "biped" / "joint" / "seed2", kl2, [100.0] * 10 + [80.0] * 20, packed=False)
    _write_metrics(tmp_path / "hoppers" / "ours_jt400k_sp25" / "seed1", flat, [100.0] * 30, packed=True)
    counts = kl_spikes(tmp_path)
    assert counts == {"biped": SpikeCount(runs=2, iterations=60, spikes=3, collapses=1),
                      "hoppers": SpikeCount(runs=1, iterations=30, spikes=0, collapses=0)}
    assert main(["kl-spikes", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == kl_spikes_lines(counts)
    assert kl_spikes_lines(counts)[0] == ("biped: 2 runs, 60 iterations, 3 spikes (approx_kl > 0.1), 1 followed by a "
                                          "> 30% drop of a task's return within 20 iterations")
    assert main(["kl-spikes", "--root", str(tmp_path / "none")]) == 2
    assert "--root" in capsys.readouterr().err


def test_walker2d_probe_trains_the_biped_tasks_on_the_chosen_body(tmp_path):
    probe = Walker2dProbe(body="walker2d", ankle_gear=20.0, integrator="euler", samples=8000)
    tasks = probe.experiment()["tasks"]
    assert [(t["name"], t["robot"], t["direction"]) for t in tasks] == [
        ("biped_forward", "gymnasium:walker2d", 1), ("biped_backward", "gymnasium:walker2d", -1)]
    assert tasks[0]["gears"] == [100.0, 100.0, 20.0, 100.0, 100.0, 20.0]  # the ankles' set, hips and knees kept
    config = probe.config(tmp_path / "experiment.yaml")
    assert (config.profile, config.method, config.physics) == ("none", "separate", {"integrator": "euler"})
    with pytest.raises(ValueError, match="allowed are"):
        Walker2dProbe(body="walker3d")
    summary = walker2d_probe(probe, tmp_path / "run")
    assert summary["samples"] == 8000 and set(summary["returns"]) == {"biped_forward", "biped_backward"}
    assert json.loads((tmp_path / "run" / "probe.json").read_text())["ankle_gear"] == 20.0
    assert yaml.safe_load((tmp_path / "run" / "experiment.yaml").read_text())["tasks"] == tasks


def test_walker2d_figure_draws_the_recorded_probes_and_the_grid_cell(tmp_path):
    fig = plot_walker2d_probes(REPO / "results" / "probes" / "walker2d_body",
                               REPO / "results" / "grid" / "biped_fwd_bwd" / "separate" / "seed1", tmp_path / "w.png")
    assert (tmp_path / "w.png").is_file()
    forward, backward = fig.axes
    runs = [REPO / "results" / "grid" / "biped_fwd_bwd" / "separate" / "seed1"] + sorted(
        p for p in (REPO / "results" / "probes" / "walker2d_body").iterdir() if p.is_dir())
    assert len(forward.get_lines()) == len(runs) == 7
    drawn = {(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in forward.get_lines()}
    for run_dir in runs:  # each run's forward return against its samples (millions)
        rows = read_metrics(run_dir)
        assert (tuple(r["samples"] / 1e6 for r in rows), tuple(r["return/biped_forward"] for r in rows)) in drawn
    dashed = [line.get_label() for line in backward.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 3 and all("20" in label for label in dashed)  # the 20 N·m-ankle bodies
