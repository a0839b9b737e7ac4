"""The paper grid: composition, filters, skip/resume, report, and a Ray head on loopback."""
import csv
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mt_specialize.train import Interrupted, Trainer
from mt_specialize.stop_signals import StopOnSignals
from paper.report import write_report
from paper.reproduce import RunSpec, paper_grid, reproduce, run_status, select

REPO = Path(__file__).resolve().parent.parent  # the paper tooling runs from the repository root

ONE_ITERATION = 3996  # three_hoppers on the paper profile: 3 tasks x 4 envs x 333 steps


def _rows(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if not k.endswith("samples_per_s")} for r in csv.DictReader(f)]


def test_paper_grid_has_every_cell_of_the_paper():
    assert len({s.name for s in paper_grid(seeds=[1, 2, 3])}) == 105  # 2x5x3 main + 2x8x3 sweep + 3x3x3 torso
    grid = paper_grid()  # 5 seeds for the main comparison and Fig. 6, 3 for the sweeps
    names = [s.name for s in grid]
    assert len(names) == len(set(names)) == 2 * 5 * 5 + 3 * 3 * 5 + 2 * 8 * 3
    assert names[:5] == ["three_hoppers/ours_jt400k_sp25/seed1", "three_hoppers/joint/seed1",
                         "three_hoppers/separate/seed1", "three_hoppers/random_jt400k_sp25/seed1",
                         "three_hoppers/append/seed1"]
    # main comparison first, whole seeds at a time; then Fig. 6; then the sweeps
    kinds = ["main" if s.variant in ("ours_jt400k_sp25", "joint", "separate", "random_jt400k_sp25", "append")
             and not s.experiment.startswith("torso") else "torso" if s.experiment.startswith("torso")
             else "sweep" for s in grid]
    assert kinds == ["main"] * 50 + ["torso"] * 45 + ["sweep"] * 48
    assert [s.seed for s in grid[:50:10]] == [1, 2, 3, 4, 5]
    assert {s.profile for s in grid} == {"paper"}
    sweep = {s.variant for s in grid if s.experiment == "biped_fwd_bwd" and s.method == "ours"}
    assert sweep == {f"ours_jt{jt}k_sp{sp}" for jt in (80, 400, 800) for sp in (5, 25, 50)}
    torso = {(s.experiment, s.method) for s in grid if s.experiment.startswith("torso_mass")}
    assert torso == {(e, m) for e in ("torso_mass_3", "torso_mass_8", "torso_mass_14")
                     for m in ("ours", "joint", "separate")}


def test_only_filters_by_glob_and_refuses_a_filter_matching_nothing():
    grid = paper_grid()
    picked = select(grid, ["biped_fwd_bwd/*/seed2", "*/append/*"])
    assert {s.name for s in picked} == (
        {s.name for s in grid if s.experiment == "biped_fwd_bwd" and s.seed == 2}
        | {s.name for s in grid if s.method == "append"})
    with pytest.raises(ValueError, match="matches no run"):
        select(grid, ["four_hoppers/*"])


def test_local_grid_runs_skips_finished_and_resumes_interrupted(tmp_path):
    root = tmp_path / "grid"
    joint, append = RunSpec("three_hoppers", "joint", 1), RunSpec("three_hoppers", "append", 2)

    def stop_after_first_iteration(row):
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted), StopOnSignals() as stop:  # an interrupted run: one of its two iterations done
        Trainer(joint.config(2 * ONE_ITERATION), root / joint.name,
                progress=stop_after_first_iteration).run(should_stop=stop)
    assert run_status(root / joint.name) == ("partial", ONE_ITERATION)
    first_row = _rows(root / joint.name)[0]

    results = reproduce(root, [joint, append], samples=2 * ONE_ITERATION, workers=2, show_progress=False)
    assert results == {joint.name: "done", append.name: "done"}
    assert run_status(root / joint.name) == ("done", 2 * ONE_ITERATION)
    rows = _rows(root / joint.name)
    assert len(rows) == 2 and rows[0] == first_row  # resumed, not restarted

    summary = root / append.name / "summary.json"
    stamp = summary.stat().st_mtime_ns
    assert reproduce(root, [joint, append], samples=2 * ONE_ITERATION, workers=2, show_progress=False) == results
    assert summary.stat().st_mtime_ns == stamp  # finished runs are skipped

    table = write_report(root, tmp_path / "results", gaits=False, at=2 * ONE_ITERATION, references=()).read_text()
    joint_line = next(line for line in table.splitlines() if line.startswith("| sp=0% |"))
    assert "1601.94" in joint_line and "(1 seed)" in joint_line
    assert "| append | 1603.91 |" in table
    assert (tmp_path / "results" / "fig3_three_hoppers.png").is_file()
    # Fig. 3's left panel: each method's one seed, samples (millions) against its pooled return
    from mt_specialize.plots import read_metrics
    from paper.report import collect_grids, write_figures

    (tmp_path / "figures").mkdir()
    figures = write_figures(collect_grids(root, references=())[0], tmp_path / "figures")
    curves = {line.get_label(): line for line in figures[tmp_path / "figures" / "fig3_three_hoppers.png"].axes[0].get_lines()}
    for spec, label in ((joint, "sp=0% (n=1)"), (append, "append (n=1)")):
        rows = read_metrics(root / spec.name)
        assert list(curves[label].get_xdata()) == [r["samples"] / 1e6 for r in rows]
        assert list(curves[label].get_ydata()) == [r["return_pooled"] for r in rows]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_grid_on_a_local_ray_head_on_loopback(tmp_path):
    pytest.importorskip("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0",
               # Ray otherwise swaps 127.0.0.1 for the machine's "remotely reachable" address
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               # Ray runs its workers at nice 15: on a busy machine the cell then starves past the timeout
               RAY_worker_niceness="0")
    port = _free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # AF_UNIX socket paths must stay < 108 bytes
    start = subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                            f"--temp-dir={ray_tmp}"], env=env, capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr
    try:
        code = ("import sys; from paper.reproduce import RunSpec, reproduce; "
                f"r = reproduce({str(tmp_path / 'grid')!r}, [RunSpec('three_hoppers', 'separate', 1)], "
                f"samples={ONE_ITERATION}, ray_address='127.0.0.1:{port}', show_progress=False); "
                "print(r); sys.exit(0 if set(r.values()) == {'done'} else 1)")
        driver = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert driver.returncode == 0, driver.stdout + driver.stderr
        assert "127.0.0.1" in driver.stderr and "192." not in driver.stderr
        assert run_status(tmp_path / "grid" / "three_hoppers/separate/seed1")[0] == "done"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_batched_cells_give_what_each_cell_gives_alone(tmp_path):
    """``batch_runs``: cells that batch train in one process (here ours, joint, random and separate of
    seeds 1-2 in batches of 3; append apart), with the metrics each cell gets in a process of its own."""
    cells = [RunSpec("three_hoppers", "ours", seed, ONE_ITERATION, 0.25) for seed in (1, 2)] + [
        RunSpec("three_hoppers", "joint", 1), RunSpec("three_hoppers", "random", 2, ONE_ITERATION, 0.5),
        RunSpec("three_hoppers", "separate", 1), RunSpec("three_hoppers", "append", 1)]
    from paper.reproduce import plan_batches

    batches = plan_batches(cells, 2 * ONE_ITERATION, 3)
    assert [[c.name for c in b] for b in batches] == [[c.name for c in cells[:3]], [c.name for c in cells[3:5]],
                                                      [cells[5].name]]
    alone = reproduce(tmp_path / "alone", cells, samples=2 * ONE_ITERATION, workers=2, show_progress=False)
    batched = reproduce(tmp_path / "batched", cells, samples=2 * ONE_ITERATION, workers=2, show_progress=False,
                        batch_runs=3)
    assert alone == batched == {c.name: "done" for c in cells}
    for cell in cells:
        assert _rows(tmp_path / "batched" / cell.name) == _rows(tmp_path / "alone" / cell.name), cell.name


@pytest.mark.parametrize("batch_runs, started_cells", [(1, 2), (4, 5)])
def test_ctrl_c_checkpoints_running_cells_and_starts_no_other(tmp_path, batch_runs, started_cells):
    """Ctrl-C at a terminal reaches the whole process group: every running cell stops after a
    checkpoint, no queued cell starts, the command exits 130; the same command then resumes.
    Two workers: one cell each (--batch-runs 1), or the batch of four and append (--batch-runs 4)."""
    root = tmp_path / "grid"
    cmd = [sys.executable, "-m", "paper", "reproduce", "--root", str(root), "--workers", "2",
           "--samples", "400k", "--report", "", "--only", "three_hoppers/*/seed1", "--batch-runs", str(batch_runs)]
    # SIGINT back to its default in the child: a runner that starts the suite in the background (e.g.
    # `nohup ... &` from a script) passes SIGINT down as ignored, and Python then keeps ignoring it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(root.glob("*/*/seed1/metrics.csv"))) < started_cells:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    started = sorted(p.parent for p in root.glob("*/*/seed1/config.yaml"))
    assert len(started) == started_cells, started  # what the two workers took; no other cell started
    for run_dir in started:
        status, reached = run_status(run_dir)
        assert status == "partial" and reached > 0
        assert list((run_dir / "checkpoints").glob("ckpt_*.safetensors")), "stopped without a checkpoint"
        assert not (run_dir / ".lock").exists() or not _locked(run_dir / ".lock")


def _locked(path):
    import fcntl

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def test_archive_restore_resume_matches_an_uninterrupted_run(tmp_path):
    """The archive (what goes to git) carries an unfinished cell to another machine, where it resumes
    to the same metrics as a run that was never interrupted."""
    spec = RunSpec("three_hoppers", "joint", 1)
    budget = 3 * ONE_ITERATION
    Trainer(spec.config(budget), tmp_path / "full" / spec.name).run()

    def stop_after_two(row):
        if row["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted), StopOnSignals() as stop:
        Trainer(spec.config(budget), tmp_path / "a" / spec.name, progress=stop_after_two).run(should_stop=stop)
    from paper.reproduce import archive_grid, restore_grid

    assert archive_grid(tmp_path / "a", tmp_path / "archive") == [spec.name]
    kept = sorted(p.relative_to(tmp_path / "archive" / spec.name).as_posix()
                  for p in (tmp_path / "archive" / spec.name).rglob("*") if p.is_file())
    assert kept == ["checkpoints/ckpt_000000007992.safetensors", "config.yaml", "metrics.csv.gz", "summary.json"]
    # the archive's metrics are the run's, compressed; restored, the run directory has metrics.csv again
    import gzip

    assert gzip.decompress((tmp_path / "archive" / spec.name / "metrics.csv.gz").read_bytes()) == \
        (tmp_path / "a" / spec.name / "metrics.csv").read_bytes()
    assert restore_grid(tmp_path / "archive", tmp_path / "b") == [spec.name]
    assert (tmp_path / "b" / spec.name / "metrics.csv").is_file()
    assert not (tmp_path / "b" / spec.name / "metrics.csv.gz").exists()
    assert reproduce(tmp_path / "b", [spec], samples=budget, workers=1, show_progress=False) == {spec.name: "done"}
    assert _rows(tmp_path / "b" / spec.name) == _rows(tmp_path / "full" / spec.name)
    # finished cells are archived without checkpoints, and restoring never replaces a run that is ahead
    archive_grid(tmp_path / "b", tmp_path / "archive")
    assert not list((tmp_path / "archive" / spec.name).glob("checkpoints/*"))
    assert restore_grid(tmp_path / "archive", tmp_path / "b") == []


def test_a_finished_cells_archive_keeps_only_what_the_report_reads(tmp_path):
    """A finished cell is archived without checkpoints; split.safetensors and the slim final policy
    only in the report's cell (ours jt=400k sp=25% seed 1: the split figure and the gaits). An archive
    holding more (written by an earlier archiver) loses it when archived again."""
    from mt_specialize.learning.inference import InferencePolicy
    from mt_specialize.run_dir import latest_checkpoint
    from paper.reproduce import REPORT_CELL, archive_grid

    spec = RunSpec("three_hoppers", "ours", 1, ONE_ITERATION, 0.25)  # splits after one iteration
    report_cell = tmp_path / "grid" / "three_hoppers" / REPORT_CELL
    Trainer(spec.config(2 * ONE_ITERATION), report_cell).run()
    other = tmp_path / "grid" / "three_hoppers" / "ours_jt400k_sp5" / "seed1"
    shutil.copytree(report_cell, other)
    assert (other / "split.safetensors").is_file() and latest_checkpoint(other) is not None

    def archived(cell):
        return sorted(p.relative_to(cell).as_posix() for p in cell.rglob("*") if p.is_file())

    archive = tmp_path / "archive" / "three_hoppers"
    assert len(archive_grid(tmp_path / "grid", tmp_path / "archive")) == 2
    assert archived(archive / REPORT_CELL) == ["config.yaml", "metrics.csv.gz", "policy.safetensors",
                                               "split.safetensors", "summary.json"]
    assert archived(archive / "ours_jt400k_sp5" / "seed1") == ["config.yaml", "metrics.csv.gz", "summary.json"]
    policy = InferencePolicy.from_checkpoint(archive / REPORT_CELL / "policy.safetensors")
    assert policy.task_names == ["hopper_capsule", "hopper_box", "hopper_ellipsoid"]
    (archive / "ours_jt400k_sp5" / "seed1" / "checkpoints").mkdir()
    shutil.copy(latest_checkpoint(other), archive / "ours_jt400k_sp5" / "seed1" / "checkpoints")
    shutil.copy(other / "split.safetensors", archive / "ours_jt400k_sp5" / "seed1")
    assert archive_grid(tmp_path / "grid", tmp_path / "archive") == []  # both archived already: only trimmed
    assert archived(archive / "ours_jt400k_sp5" / "seed1") == ["config.yaml", "metrics.csv.gz", "summary.json"]


def test_a_cell_the_revert_rule_stopped_is_reported_archived_and_not_retried(tmp_path):
    """A cell whose run stopped for good (RevertLoop, forced here by fake episodes of return -1e4 in its
    return buffer) is reported failed with the reason and left as it is; the others run; the archive
    carries its failure.json, and a restored grid still does not retry it."""
    from mt_specialize.errors import RevertLoop
    from paper.reproduce import archive_grid, restore_grid
    from revert_loop import force_revert_loop

    failing, other = RunSpec("three_hoppers", "joint", 1), RunSpec("three_hoppers", "joint", 2)
    config = failing.config(3 * ONE_ITERATION)
    config.revert_drop_bound, config.revert_max_streak = 300, 1
    trainer = Trainer(config, tmp_path / "grid" / failing.name)
    force_revert_loop(trainer, from_iteration=2)
    with pytest.raises(RevertLoop):
        trainer.run()
    del trainer  # its MuJoCo thread pool must not be inherited by forked workers
    gc.collect()
    assert run_status(tmp_path / "grid" / failing.name) == ("failed", ONE_ITERATION)
    metrics = tmp_path / "grid" / failing.name / "metrics.csv"
    stamp = metrics.stat().st_mtime_ns
    for batch_runs in (1, 2):
        results = reproduce(tmp_path / "grid", [failing, other], samples=ONE_ITERATION, workers=1,
                            show_progress=False, batch_runs=batch_runs)
        assert results[other.name] == "done"
        assert results[failing.name].startswith("failed: RevertLoop: the revert rule rejected 1 iterations")
    assert metrics.stat().st_mtime_ns == stamp  # not retried
    archive_grid(tmp_path / "grid", tmp_path / "archive")
    assert (tmp_path / "archive" / failing.name / "failure.json").is_file()
    assert not (tmp_path / "archive" / failing.name / "checkpoints").exists()  # it never resumes
    restore_grid(tmp_path / "archive", tmp_path / "elsewhere")
    assert run_status(tmp_path / "elsewhere" / failing.name)[0] == "failed"


def test_ppo_settings_reach_every_cell_and_a_run_refuses_to_resume_with_others(tmp_path):
    import yaml

    from paper.reproduce import with_ppo_settings

    root = tmp_path / "grid"
    specs = with_ppo_settings([RunSpec("three_hoppers", "joint", 1), RunSpec("three_hoppers", "append", 1)],
                              {"minibatch_per_task": 88})
    results = reproduce(root, specs, samples=ONE_ITERATION, workers=1, show_progress=False)
    assert set(results.values()) == {"done"}
    for spec in specs:
        saved = yaml.safe_load((root / spec.name / "config.yaml").read_text())
        assert saved["ppo"]["minibatch_per_task"] == 88
    plain = RunSpec("three_hoppers", "joint", 1)  # the profile's default 256: the finished-looking cell must not continue
    with pytest.raises(ValueError, match="minibatch_per_task"):
        Trainer(plain.config(ONE_ITERATION), root / plain.name, resume=True)
    with pytest.raises(ValueError, match="unknown ppo key"):
        with_ppo_settings(specs, {"minibatch": 88})
    with pytest.raises(ValueError, match="minibatch_per_task"):
        with_ppo_settings(specs, {"minibatch_per_task": 0})


def test_seeds_option_sets_the_grid_and_bad_seeds_are_named(tmp_path, capsys):
    from paper.cli import main

    assert main(["reproduce", "--root", str(tmp_path), "--seeds", "2,4-5", "--only", "three_hoppers/joint/*",
                 "--list"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert listed == [f"three_hoppers/joint/seed{n}" for n in (2, 4, 5)]
    for bad in ("5-4", "x", "1,,2", "-1"):
        with pytest.raises(SystemExit, match="--seeds"):
            main(["reproduce", "--root", str(tmp_path), "--seeds", bad, "--list"])
    assert list(tmp_path.iterdir()) == []  # --list made nothing


def test_experiment_option_runs_the_main_comparison_on_a_variant(tmp_path, capsys):
    from paper.cli import main
    from paper.reproduce import main_grid

    assert main(["reproduce", "--root", str(tmp_path), "--experiment", "biped_fwd_bwd_ankle100", "--seeds", "1",
                 "--list"]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert listed == [f"biped_fwd_bwd_ankle100/{v}/seed1" for v in
                      ("ours_jt400k_sp25", "joint", "separate", "random_jt400k_sp25", "append")]
    assert sorted(s.name for s in main_grid(["biped_fwd_bwd"], seeds=[1, 2, 3])) == sorted(
        s.name for s in paper_grid(seeds=[1, 2, 3]) if s.experiment == "biped_fwd_bwd" and s.seed <= 3
        and s.variant in ("ours_jt400k_sp25", "joint", "separate", "random_jt400k_sp25", "append"))
    assert main(["reproduce", "--root", str(tmp_path), "--experiment", "four_hoppers", "--list"]) == 2
    assert "unknown experiment(s) ['four_hoppers']" in capsys.readouterr().err


def test_profile_steps_undo_all_corrections_but_one():
    """Each profile-steps cell resolves to the first paper grid's settings (results/grid_paper) except
    the one correction it adds; the profile with all three is the paper grid's own cell."""
    from mt_specialize.config import TrainConfig
    from paper.reproduce import profile_steps_grid

    def resolved(config, batch):
        data = config.resolved(3_000_000, batch).to_dict()
        return {k: v for k, v in data.items() if k not in ("task_physics", "physics_threads")}

    first = {e: TrainConfig.from_yaml(REPO / "results" / "grid_paper" / e / m / "seed1" / "config.yaml", run_config=True)
             for e, m in (("biped_fwd_bwd", "separate"), ("three_hoppers", "joint"))}
    cells = profile_steps_grid()
    assert [c.name for c in cells] == [
        "biped_fwd_bwd/separate_as_grid/seed1", "biped_fwd_bwd/separate_as_grid+velocity_limit/seed1",
        "biped_fwd_bwd/separate_as_grid+time_limit/seed1", "biped_fwd_bwd/separate_as_grid+segments/seed1",
        "three_hoppers/joint_as_grid/seed1", "three_hoppers/joint_as_grid+time_limit/seed1",
        "three_hoppers/joint_as_grid+segments/seed1"]
    expected_change = {"": set(), "+velocity_limit": {"physics"}, "+time_limit": {"time_limit"},
                       "+segments": {"envs_per_task", "ppo"}}
    for cell in cells:
        batch = 8000 if cell.experiment == "biped_fwd_bwd" else 4000
        old = resolved(first[cell.experiment], batch)
        old["physics"] = {"state_velocity_scale": 1.0}  # what the old record means (with_unrecorded_defaults)
        new = resolved(cell.config(), batch)
        assert {k for k in new if new[k] != old[k]} == expected_change[cell.label.replace("_as_grid", "")], cell.name
    main = {s.name: s for s in paper_grid()}
    assert "biped_fwd_bwd/separate/seed1" in main and "three_hoppers/joint/seed1" in main
