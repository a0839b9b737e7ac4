"""Faults a week-long training job meets, and what the package promises for each (docs/failure_modes.md):
crashes at any moment, full and read-only disks, foreign and damaged checkpoints, divergence, bad input.
Tiny runs (three hoppers, 384 samples per iteration); the whole file runs in about a minute."""
from __future__ import annotations

import csv
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mt_specialize import cli
from mt_specialize.config import TrainConfig
from mt_specialize.errors import Diverged
from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.run_dir import RunDir
from mt_specialize.run_group import RunGroup
from mt_specialize.train import Trainer, checkpoint_paths

REPO = Path(__file__).resolve().parent.parent
TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}
ITERATION = 384  # samples


@pytest.fixture
def tiny(tmp_path) -> str:
    """Three hoppers, 3 x 4 envs x 32 steps = 384 samples per iteration."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nbatch_size: 384\nbudget: 3840\n"
                    "tasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n")
    return str(path)


@pytest.fixture
def settings(tmp_path) -> str:
    """A --config file: checkpoints every 3 iterations, all kept; small PPO epochs."""
    path = tmp_path / "settings.yaml"
    path.write_text("checkpoint_every: 3\nkeep_checkpoints: 100\nppo: {minibatch_per_task: 64, epochs: 2}\n")
    return str(path)


def _config(experiment: str, **kw) -> TrainConfig:
    base = dict(experiment=experiment, method="joint", envs_per_task=4, seed=3, checkpoint_every=3,
                keep_checkpoints=100, samples=6 * ITERATION)
    base.update(kw)
    config = TrainConfig(**base)
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 2
    return config


def _train_args(tiny, settings, out, *more) -> list[str]:
    return ["train", tiny, "--method", "joint", "--seed", "3", "--envs-per-task", "4", "--config", settings,
            "--out", str(out), *more]


def _metrics(run_dir) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def _tensorboard_steps(run_dir, tag: str = "policy_loss") -> list[int]:
    """The x values of ``tag`` as TensorBoard shows them (events a resume purged left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tb"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def assert_same_checkpoints(a, b) -> None:
    """Every checkpoint of run ``a`` is in run ``b``, bit for bit."""
    names = [p.name for p in checkpoint_paths(a)]
    assert names and set(names) <= {p.name for p in checkpoint_paths(b)}
    for name in names:
        (ta, ma), (tb, mb) = (ckpt.load_checkpoint(Path(d) / "checkpoints" / name) for d in (a, b))
        assert ma == mb and sorted(ta) == sorted(tb), name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


def _temporary_files(run_dir) -> list[Path]:
    return [p for p in Path(run_dir).rglob("*") if p.name.endswith((".tmp", ".tmp.png"))]


def _cli(args, capsys) -> tuple[int, str]:
    """``mt-specialize ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def _refused(args, capsys, *needles) -> str:
    """``mt-specialize ARGS`` exits 2 with one message naming each of ``needles``."""
    code, err = _cli(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err and "error:" in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


class CrashAt(Exception):
    """Raised from a progress callback: the process 'dies' after that iteration (no stop, no checkpoint)."""


def _crash_after(iterations: int):
    def progress(*args):
        row = args[-1]
        if row["iteration"] == iterations:
            raise CrashAt
    return progress


# -- 1. resume is exact whatever the moment of the crash ---------------------------------------------------

def test_a_crash_before_the_first_checkpoint_then_resume_equals_the_uninterrupted_run(tiny, tmp_path):
    config = _config(tiny)
    Trainer(config, tmp_path / "reference").run()
    with pytest.raises(CrashAt):
        Trainer(config, tmp_path / "run", progress=_crash_after(2)).run()
    assert len(_metrics(tmp_path / "run")) == 2 and not checkpoint_paths(tmp_path / "run")
    Trainer(config, tmp_path / "run", resume=True).run()
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "reference")  # iterations 1, 2 once each
    assert _tensorboard_steps(tmp_path / "run") == _tensorboard_steps(tmp_path / "reference")
    assert_same_checkpoints(tmp_path / "reference", tmp_path / "run")


def test_a_resume_from_a_checkpoint_keeps_tensorboard_before_it(tiny, tmp_path):
    config = _config(tiny)
    with pytest.raises(CrashAt):
        Trainer(config, tmp_path / "run", progress=_crash_after(5)).run()  # checkpoint at 3, rows to 5
    Trainer(config, tmp_path / "run", resume=True).run()
    assert _tensorboard_steps(tmp_path / "run") == [ITERATION * i for i in range(1, 7)]


def test_a_crash_before_the_first_checkpoint_of_a_group_then_resume(tiny, tmp_path):
    configs = [_config(tiny, seed=seed, physics_threads=1) for seed in (1, 2)]
    dirs = [tmp_path / f"seed{seed}" for seed in (1, 2)]
    with pytest.raises(CrashAt):
        RunGroup(configs, dirs, progress=_crash_after(2)).run()
    RunGroup(configs, dirs, resume=True).run()
    for config, run in zip(configs, dirs):
        Trainer(config, tmp_path / f"alone{config.seed}").run()
        assert _metrics(run) == _metrics(tmp_path / f"alone{config.seed}")


def test_a_resume_drops_a_split_and_summary_written_after_its_checkpoint(tiny, tmp_path):
    config = _config(tiny, method="ours", jt=4 * ITERATION, sp=0.25)  # split at iteration 4
    with pytest.raises(CrashAt):
        Trainer(config, tmp_path / "run", progress=_crash_after(5)).run()
    run = RunDir(tmp_path / "run")
    run.summary_path.write_text(json.dumps({"iterations": 5}))
    for path in checkpoint_paths(run.path)[1:]:  # back to the checkpoint of iteration 3, before the split
        path.unlink()
    assert run.split_path.exists()
    resumed = Trainer(config, run.path, resume=True)
    assert resumed.iteration == 3 and not resumed.split_done
    assert not run.split_path.exists() and not run.summary_path.exists()
    assert [int(r["iteration"]) for r in _metrics(run.path)] == [1, 2, 3]
    resumed.close()


def test_temporary_files_of_an_interrupted_write_are_removed_when_the_run_is_opened(tiny, tmp_path):
    config = _config(tiny, samples=3 * ITERATION)
    Trainer(config, tmp_path / "run").run()
    left = [tmp_path / "run" / "checkpoints" / ".ckpt_000000001536.safetensors.x1y2.tmp",
            tmp_path / "run" / "summary.json.tmp", tmp_path / "run" / "learning_curve.tmp.png"]
    for path in left:
        path.write_bytes(b"\0" * 1000)
    Trainer(config, tmp_path / "run", resume=True).close()
    assert not _temporary_files(tmp_path / "run")


def test_a_failed_start_leaves_nothing_that_blocks_the_next(tiny, settings, tmp_path, capsys):
    out = tmp_path / "run"
    _refused(_train_args(tiny, settings, out, "--samples", "3840", "--seed", "99999999999999999999"), capsys,
             "seed must be an integer from 0 to")
    assert not out.exists()
    _refused(["train", "--out", tmp_path / "nothing", "--resume"], capsys, "holds no run")
    assert not (tmp_path / "nothing").exists()
    # a start that fails after writing config.yaml (a bad start_from) removes it again
    _refused(_train_args(tiny, settings, out, "--samples", "768", "--start-from", tmp_path / "missing"), capsys,
             "does not exist")
    assert not out.exists()
    # a start killed before training (config.yaml only) does not block the next one
    out.mkdir()
    (out / "config.yaml").write_text("seed: 1\n")
    assert _cli(_train_args(tiny, settings, out, "--samples", "768"), capsys)[0] == 0


# -- 2. divergence is an error, early ----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["joint", "ours"])
def test_a_diverging_run_stops_with_its_reason_and_exit_1(tiny, settings, tmp_path, capsys, method):
    config = tmp_path / "lr.yaml"
    config.write_text("checkpoint_every: 3\nppo: {minibatch_per_task: 64, epochs: 2, lr: 1000}\n")
    out = tmp_path / "run"
    args = ["train", tiny, "--method", method, "--seed", "3", "--envs-per-task", "4", "--config", config,
            "--samples", "3840", "--out", out] + (["--jt", "1536"] if method == "ours" else [])
    code, err = _cli(args, capsys)
    assert code == 1, err
    assert "diverged in iteration 1" in err and "ppo.lr 1000" in err and "Traceback" not in err
    failure = RunDir(out).read_failure()
    assert failure["error"] == "Diverged" and failure["iteration"] == 0
    assert not checkpoint_paths(out) and not (out / "summary.json").exists()
    _refused(["train", "--out", out, "--resume"], capsys, "stopped for good")


def test_divergence_keeps_the_last_finite_checkpoint_however_few_are_kept(tiny, tmp_path):
    config = _config(tiny, checkpoint_every=2, keep_checkpoints=1)
    trainer = Trainer(config, tmp_path / "run")
    update = trainer.update

    def update_then_blow_up(batch, track_gradients):
        stats = update(batch, track_gradients)
        if trainer.iteration == 4:  # the update of iteration 5
            with torch.no_grad():
                next(trainer.policy.parameters()).fill_(float("nan"))
        return stats
    trainer.update = update_then_blow_up
    with pytest.raises(Diverged, match=r"iteration 5 .*the weights policy/"):
        trainer.run()
    [kept] = checkpoint_paths(tmp_path / "run")
    assert kept.name == f"ckpt_{4 * ITERATION:012d}.safetensors"
    tensors, _ = ckpt.load_checkpoint(kept)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert RunDir(tmp_path / "run").read_failure()["error"] == "Diverged"
    assert len(_metrics(tmp_path / "run")) == 4  # no row of the diverged iteration


def test_a_non_finite_state_is_never_checkpointed(tiny, tmp_path):
    trainer = Trainer(_config(tiny), tmp_path / "run")
    with torch.no_grad():
        next(trainer.value.parameters())[0] = float("inf")
    with pytest.raises(Diverged, match="state to checkpoint"):
        trainer.save()
    trainer.close()
    assert not checkpoint_paths(tmp_path / "run")


def test_a_diverging_run_of_a_group_stops_alone(tiny, tmp_path):
    good = _config(tiny, seed=2, physics_threads=1)
    bad = _config(tiny, seed=1, physics_threads=1)
    bad.ppo.lr = 1000.0
    summaries = RunGroup([bad, good], [tmp_path / "bad", tmp_path / "good"]).run()
    assert "Diverged" in summaries[0]["failed"] and summaries[1]["seed"] == 2
    Trainer(good, tmp_path / "alone").run()
    assert _metrics(tmp_path / "good") == _metrics(tmp_path / "alone")


def test_summary_json_is_valid_json_when_no_episode_finished(tiny, tmp_path):
    trainer = Trainer(_config(tiny), tmp_path / "run")
    summary = trainer.finish()  # before any iteration: every return is NaN
    trainer.close()
    assert np.isnan(summary["return_pooled"])

    def refuse(name):
        raise ValueError(f"bare {name} in summary.json")
    written = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)
    assert written["return_pooled"] is None and set(written["returns"].values()) == {None}


@pytest.fixture
def trained(tmp_path_factory) -> Path:
    """A finished tiny run (2 iterations, checkpoints at both)."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text("name: tiny\nbatch_size: 384\nbudget: 3840\n"
                                    "tasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n")
    Trainer(_config(str(root / "tiny.yaml"), samples=2 * ITERATION, checkpoint_every=1), root / "run").run()
    return root / "run"


def _with_nan_policy(source: Path, target: Path) -> Path:
    tensors, meta = ckpt.load_checkpoint(source)
    name = next(k for k in tensors if k.startswith("policy/") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    return ckpt.save_checkpoint(target, tensors, meta)


def test_export_gait_and_serving_refuse_a_non_finite_policy(trained, tmp_path, capsys):
    nan = _with_nan_policy(checkpoint_paths(trained)[-1], tmp_path / "nan.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="non-finite"):
        InferencePolicy.from_checkpoint(nan)  # what the policy server loads with
    _refused(["export", nan, tmp_path / "policy.safetensors"], capsys, "non-finite", "diverged")
    assert not (tmp_path / "policy.safetensors").exists()
    _refused(["gait", nan, "hopper_capsule", tmp_path / "gait.gif", "--steps", "5"], capsys, "non-finite")
    assert not (tmp_path / "gait.gif").exists()


# -- 3. a checkpoint belongs to its run --------------------------------------------------------------------

def test_a_checkpoint_of_another_seed_is_skipped_and_named(tiny, tmp_path):
    mine, other = _config(tiny, seed=1, samples=3 * ITERATION), _config(tiny, seed=2, samples=6 * ITERATION)
    Trainer(mine, tmp_path / "run").run()
    Trainer(other, tmp_path / "other").run()
    foreign = checkpoint_paths(tmp_path / "other")[-1]
    (tmp_path / "run" / "checkpoints" / foreign.name).write_bytes(foreign.read_bytes())  # the newest now
    with pytest.warns(UserWarning, match=rf"{foreign.name}: belongs to another run \(seed: it has 2, this run 1"):
        resumed = Trainer(mine, tmp_path / "run", resume=True)
    assert resumed.config.seed == 1 and resumed.samples == 3 * ITERATION
    summary = resumed.run()
    assert summary["seed"] == 1 and json.loads((tmp_path / "run" / "summary.json").read_text())["seed"] == 1


def test_a_re_signed_checkpoint_with_a_changed_config_is_skipped(tiny, tmp_path):
    config = _config(tiny, samples=6 * ITERATION)
    Trainer(config, tmp_path / "run").run()
    newest = checkpoint_paths(tmp_path / "run")[-1]
    tensors, meta = ckpt.load_checkpoint(newest)
    meta["config"]["ppo"]["gamma"] = 0.5  # a valid digest over a config that is not the run's
    ckpt.save_checkpoint(newest, tensors, meta)
    with pytest.warns(UserWarning, match=r"ppo.gamma: it has 0.5, this run 0.99"):
        resumed = Trainer(config, tmp_path / "run", resume=True)
    assert resumed.samples == 3 * ITERATION
    resumed.close()


def test_a_checkpoint_of_another_experiment_stops_only_that_run_of_a_group(tiny, tmp_path):
    two = tmp_path / "two.yaml"
    two.write_text("name: two\nbatch_size: 256\nbudget: 3840\ntasks: [hopper_capsule, hopper_box]\n")
    Trainer(_config(str(two), samples=3 * 256), tmp_path / "two").run()
    configs = [_config(tiny, seed=seed, physics_threads=1, samples=3 * ITERATION) for seed in (1, 2)]
    dirs = [tmp_path / "seed1", tmp_path / "seed2"]
    RunGroup(configs, dirs).run()
    for path in checkpoint_paths(dirs[0]):  # run 1's only checkpoint is another experiment's
        path.unlink()
    foreign = checkpoint_paths(tmp_path / "two")[-1]
    (dirs[0] / "checkpoints" / foreign.name).write_bytes(foreign.read_bytes())
    longer = [_config(tiny, seed=seed, physics_threads=1, samples=4 * ITERATION) for seed in (1, 2)]
    for d in dirs:  # a longer budget, as config.yaml says
        (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("samples: 1152", "samples: 1536")
                                       .replace("jt: 1152", "jt: 1536"))
    summaries = RunGroup(longer, dirs, resume=True).run()
    assert "belongs to another run (experiment: it has 'two'" in summaries[0]["failed"]
    assert summaries[1]["seed"] == 2 and summaries[1]["samples"] == 4 * ITERATION


def test_archived_runs_belong_to_themselves(tmp_path):
    """The identity check accepts every archived checkpoint (results/, test/data) under its config.yaml."""
    import shutil
    import warnings

    runs = sorted({p.parent.parent for p in REPO.glob("results/grid*/**/checkpoints/ckpt_*.safetensors")})
    runs.append(REPO / "test" / "data" / "run_biped_random_seed4_1.6M")
    for k, source in enumerate(runs):
        run = tmp_path / str(k)
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("tb", "*.png"))
        (run / "failure.json").unlink(missing_ok=True)
        config = TrainConfig.from_yaml(run / "config.yaml", run_config=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a skipped checkpoint warns
            found = RunDir(run).load_newest_checkpoint("mt_specialize/run-checkpoint/1")
            trainer = Trainer(config, run, resume=True)
        assert trainer.samples_real == found[2]["samples_real"], source
        trainer.close()


# -- 4. every user error exits 2 with a message, no traceback ----------------------------------------------

def _mount_tmpfs(path: Path, size: str, *options: str) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (root only); False where this process may not."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written in: a read-only tmpfs where this process may mount one, else
    (not root) a directory without write permission; None for root without mount permission."""
    path = tmp_path / "read_only"
    if _mount_tmpfs(path, "1m", "ro"):
        yield path
        subprocess.run(["umount", str(path)], check=True)
    elif os.geteuid() != 0:
        path.chmod(0o555)
        yield path
    else:
        yield None


def test_out_in_the_way_or_read_only_exits_2(tiny, settings, tmp_path, capsys, read_only_dir):
    (tmp_path / "file").write_text("")
    _refused(_train_args(tiny, settings, tmp_path / "file", "--samples", "768"), capsys, "file", "choose another")
    _refused(_train_args(tiny, settings, tmp_path / "file" / "run", "--samples", "768"), capsys,
             "Not a directory", "file/run")
    if read_only_dir is not None:
        _refused(_train_args(tiny, settings, read_only_dir / "run", "--samples", "768"), capsys, "read_only/run")


def test_export_and_gait_destinations_and_sizes_exit_2(trained, tmp_path, capsys, read_only_dir):
    (tmp_path / "file").write_text("")
    for command, name in (("export", "p.safetensors"), ("gait", "g.gif")):
        more = ["hopper_capsule"] if command == "gait" else []
        for out in (tmp_path, tmp_path / "file" / name, *([read_only_dir / name] if read_only_dir else [])):
            _refused([command, trained, *more, out, *(["--steps", "3"] if more else [])], capsys,
                     str(out if out.is_dir() else out.parent))
    for size in ("0", "100000"):
        _refused(["gait", trained, "hopper_capsule", tmp_path / "g.gif", "--width", size], capsys, "width")
    _refused(["gait", trained, "hopper_capsule", tmp_path / "g.gif", "--steps", "0"], capsys, "--steps")
    _refused(["gait", trained, "hopper_capsule", tmp_path / "g.gif", "--switch-at", "3"], capsys, "--switch-to")
    _refused(["gait", trained, "hopper_capsule", tmp_path / "g.gif", "--steps", "100", "--switch-to", "hopper_box"],
             capsys, "--switch-at 250")
    assert not list(tmp_path.glob("g.gif"))


@pytest.mark.parametrize("where, text", [  # a number beside an unknown name: the two do not sort
    ("config", "1: 2\nfoo: 3\n"),
    ("config", "ppo: {1: 2, foo: 3}\n"),
    ("config", "physics: {1: 2, foo: 3}\n"),
    ("experiment", "name: x\n1: 2\nfoo: 3\nbatch_size: 384\ntasks: [hopper_box]\n"),
])
def test_yaml_keys_that_are_not_names_exit_2(tiny, settings, tmp_path, capsys, where, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    args = _train_args(str(path) if where == "experiment" else tiny, str(path) if where == "config" else settings,
                       tmp_path / "run", "--samples", "768")
    _refused(args, capsys, "unknown", "[1, 'foo']")


def test_a_second_signal_or_one_during_start_up_stops_cleanly(tiny, settings, tmp_path):
    """Ctrl-C twice (or SIGTERM twice) stops at once with 128 + the signal, without a traceback; the run
    resumes. Ctrl-C while the command starts leaves nothing behind."""
    slow = tmp_path / "slow.yaml"  # iterations of a few seconds: both signals arrive within one
    slow.write_text("checkpoint_every: 3\nppo: {minibatch_per_task: 64, epochs: 40}\n")
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / sig.name
        proc = subprocess.Popen([sys.executable, "-m", "mt_specialize.cli",
                                 *_train_args(tiny, str(slow), out, "--samples", "384000")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.02)
        proc.send_signal(sig)
        time.sleep(0.3)  # the first one handled (two pending signals of a kind are delivered as one)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err and f"stopped at once by {sig.name}" in err
    proc = subprocess.Popen([sys.executable, "-m", "mt_specialize.cli",
                             *_train_args(tiny, settings, tmp_path / "early", "--samples", "3840")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # importing torch, building the parser or the trainer
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not (tmp_path / "early").exists() or (tmp_path / "early" / "metrics.csv").exists()


def test_messages_quoting_input_are_cut_and_name_the_file(tiny, settings, tmp_path, capsys):
    laughs = "&l0 [" + ", ".join(["1.0"] * 10) + "]"
    for level in range(1, 6):  # 10^6 values
        laughs = f"&l{level} [{laughs}" + f", *l{level - 1}" * 9 + "]"
    (tmp_path / "laughs.yaml").write_text(f"physics:\n  foot_friction: {laughs}\n")
    err = _refused(_train_args(tiny, str(tmp_path / "laughs.yaml"), tmp_path / "run"), capsys, "laughs.yaml")
    assert len(err) < 3000
    (tmp_path / "latin1.yaml").write_bytes("seed: 3  # café\n".encode("latin-1"))
    _refused(_train_args(tiny, str(tmp_path / "latin1.yaml"), tmp_path / "run"), capsys, "latin1.yaml", "UTF-8")
    (tmp_path / "twice.yaml").write_text("seed: 3\nenvs_per_task: 4\nseed: 4\n")
    _refused(_train_args(tiny, str(tmp_path / "twice.yaml"), tmp_path / "run"), capsys, "twice.yaml", "'seed' twice")
    (tmp_path / "twice_experiment.yaml").write_text("name: x\nbatch_size: 384\nbatch_size: 10\ntasks: [hopper_box]\n")
    _refused(_train_args(str(tmp_path / "twice_experiment.yaml"), settings, tmp_path / "run"), capsys,
             "twice_experiment.yaml", "'batch_size' twice")
    assert not (tmp_path / "run").exists()


def test_damaged_run_files_are_named(tiny, settings, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(_train_args(tiny, settings, out, "--samples", "1536"), capsys)[0] == 0
    config = (out / "config.yaml").read_bytes()
    (out / "config.yaml").write_bytes(config.replace(b"seed: 3", b"seed: 3 # \xff"))
    _refused(["train", "--out", out, "--resume"], capsys, "config.yaml", "UTF-8")
    (out / "config.yaml").write_bytes(config)
    rows = (out / "metrics.csv").read_text().splitlines(keepends=True)
    (out / "metrics.csv").write_text("".join(rows[:2] + ["garbage,row\r\n"] + rows[2:]))
    _refused(["train", "--out", out, "--resume"], capsys, "metrics.csv", "line 3")
    (out / "failure.json").write_text("{not json")
    _refused(["train", "--out", out, "--resume"], capsys, "failure.json", "damaged")


def test_export_and_gait_fall_back_past_a_damaged_newest_checkpoint(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    newest = checkpoint_paths(run)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    code, err = _cli(["export", run, tmp_path / "p.safetensors"], capsys)
    assert code == 0 and "skipped" in err and newest.name in err and "Traceback" not in err, err
    assert InferencePolicy.from_checkpoint(tmp_path / "p.safetensors").task_names[0] == "hopper_capsule"


# -- 5. refuse what cannot be meant ------------------------------------------------------------------------

def _robot_experiment(tmp_path, axis: str = "0 -1 0", **task) -> str:
    urdf = (REPO / "urdf" / "hopper_capsule.urdf").read_text()
    (tmp_path / "bent.urdf").write_text(urdf.replace('<axis xyz="0 -1 0" />', f'<axis xyz="{axis}" />', 1))
    fields = "".join(f", {k}: {v}" for k, v in task.items())
    path = tmp_path / "robot.yaml"
    path.write_text(f"name: r\nbatch_size: 384\ntasks:\n  - {{name: bent, robot: bent.urdf, family: hopper{fields}}}\n")
    return str(path)


@pytest.mark.parametrize("axis, task, needle", [
    ("1 0 0", {}, "turns about [1.0, 0.0, 0.0]"),
    ("0 -1 0", {"torso_mass": "1.0e+30"}, "would weigh 1e+30 kg"),
    ("0 -1 0", {"mass_scale": "1.0e-9"}, "allowed 0.001 to 10,000 kg"),
])
def test_robots_that_are_not_planar_or_weigh_absurdly_are_refused(tmp_path, settings, capsys, axis, task, needle):
    experiment = _robot_experiment(tmp_path, axis, **task)
    _refused(_train_args(experiment, settings, tmp_path / "run", "--samples", "768"), capsys, needle)


@pytest.mark.parametrize("flags, needle", [
    (["--envs-per-task", "200000", "--samples", "24k"], "envs_per_task must be an integer from 1 to 4,096"),
    (["--envs-per-task", "200", "--samples", "24k"], "more than the 384 samples of an iteration"),
    (["--samples", "100"], "less than one iteration (384 samples"),
    (["--seeds", "1-100000"], "more than 100 runs"),
    (["--seeds", "1-99999999999999999999"], "more than 100 runs"),
    (["--groups", "2"], "--groups divides the runs of --seeds"),
])
def test_settings_beyond_the_limits_and_flags_without_effect_exit_2(tiny, settings, tmp_path, capsys, flags,
                                                                    needle):
    args = _train_args(tiny, settings, tmp_path / "run")
    args.remove("--envs-per-task"), args.remove("4")
    if "--seeds" in flags:
        args.remove("--seed"), args.remove("3")
    _refused(args + flags, capsys, needle)
    assert not (tmp_path / "run").exists()


# -- 6. fault injection: kills at any moment, a full disk ---------------------------------------------------

def test_sigkill_at_any_moment_then_resume_equals_the_uninterrupted_run(tiny, settings, tmp_path):
    """SIGKILL after the first metrics row (before the first checkpoint), in the middle of a checkpoint
    write (its temporary file written, not renamed), after a later row and at random moments; each
    time the run is resumed, and at the end it equals the run never interrupted, file for file."""
    reference = TrainConfig.from_yaml(settings)
    reference.experiment, reference.method, reference.seed, reference.envs_per_task = tiny, "joint", 3, 4
    reference.samples = 9 * ITERATION
    Trainer(reference, tmp_path / "reference").run()
    out = tmp_path / "run"
    base = [sys.executable, str(REPO / "test" / "fault_injection.py")]
    rng = random.Random(25)
    moments = ["row:1", "tmp:1", "row:2", "random", "random"]
    for k, moment in enumerate(moments):
        args = _train_args(tiny, settings, out, "--samples", str(9 * ITERATION)) + (["--resume"] if k else [])
        proc = subprocess.Popen(base + [moment if moment != "random" else "none", "--", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if moment == "random":
            time.sleep(rng.uniform(1.0, 4.0))
            proc.kill()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (-signal.SIGKILL, 0), err
        assert "Traceback" not in err, err
        if moment == "tmp:1":  # killed with the first checkpoint's temporary file on disk
            assert _temporary_files(out) and not checkpoint_paths(out)
    final = subprocess.run([sys.executable, "-m", "mt_specialize.cli", "train", "--out", str(out), "--resume"],
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert _metrics(out) == _metrics(tmp_path / "reference")
    assert _tensorboard_steps(out) == _tensorboard_steps(tmp_path / "reference")
    assert_same_checkpoints(tmp_path / "reference", out)
    assert not _temporary_files(out)


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(directory, make_room): a 1.2 MB tmpfs (root; room for two tiny checkpoints) whose make_room()
    grows it to 64 MB; else a directory where checkpoint writes from the third on fail with ENOSPC
    (a patched write) until make_room()."""
    path = tmp_path / "disk"
    if _mount_tmpfs(path, "1200k"):
        yield path, lambda: subprocess.run(["mount", "-o", "remount,size=64m", str(path)], check=True)
        subprocess.run(["umount", str(path)], check=True)
        return
    fsync, written = ckpt.os.fsync, []

    def fsync_until_full(fd):
        written.append(fd)
        if len(written) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)
    monkeypatch.setattr(ckpt.os, "fsync", fsync_until_full)
    yield path, lambda: monkeypatch.setattr(ckpt.os, "fsync", fsync)


def test_a_full_disk_exits_2_keeps_every_checkpoint_and_resumes_exactly(tiny, settings, tmp_path, capsys, small_disk):
    disk, make_room = small_disk
    (tmp_path / "every.yaml").write_text("checkpoint_every: 1\nkeep_checkpoints: 100\n"
                                         "ppo: {minibatch_per_task: 64, epochs: 2}\n")
    out = disk / "run"
    args = _train_args(tiny, str(tmp_path / "every.yaml"), out, "--samples", str(6 * ITERATION))
    err = _refused(args, capsys, "No space left on device", "--resume")
    kept = checkpoint_paths(out)
    assert 1 <= len(kept) < 6 and not _temporary_files(out)
    for path in kept:
        ckpt.load_checkpoint(path)  # every earlier checkpoint verifies
    make_room()
    assert _cli(["train", "--out", out, "--resume"], capsys)[0] == 0, err
    Trainer(_config(tiny, samples=6 * ITERATION, checkpoint_every=3), tmp_path / "reference").run()
    assert _metrics(out) == _metrics(tmp_path / "reference")
