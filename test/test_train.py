"""The experiment runner: split schedule, baselines, resumable runs, bad input."""
import dataclasses
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.config import TrainConfig, parse_count
from mt_specialize.learning.specialize import n_split_entries
from mt_specialize.stop_signals import StopOnSignals
from mt_specialize.train import (Interrupted, RunBusyError, RunExistsError, Trainer, checkpoint_name,
                                 checkpoint_paths, latest_checkpoint, split_due)

TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}


@pytest.fixture
def tiny_experiment(tmp_path):
    """Three hoppers, 3 x 4 envs x 32 steps = 384 samples per iteration."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nbatch_size: 384\nbudget: 3840\n"
                    "tasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n")
    return str(path)


def _config(experiment, **kw):
    base = dict(experiment=experiment, envs_per_task=4, seed=3, checkpoint_every=2)
    base.update(kw)
    config = TrainConfig(**{k: v for k, v in base.items() if k != "ppo"})
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 2
    return config


def _metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def test_checkpoints_are_found_oldest_first_by_sample_count(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for samples in (40_000, 5_000, 1_200_000):
        (tmp_path / "checkpoints" / checkpoint_name(samples)).write_bytes(b"")
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in checkpoint_paths(tmp_path)] == [
        "ckpt_000000005000.safetensors", "ckpt_000000040000.safetensors", "ckpt_000001200000.safetensors"]
    assert latest_checkpoint(tmp_path).name == "ckpt_000001200000.safetensors"
    assert checkpoint_paths(tmp_path / "missing") == [] and latest_checkpoint(tmp_path / "missing") is None


def test_parse_count():
    assert parse_count("400k") == 400_000
    assert parse_count("3M") == 3_000_000
    assert parse_count("1.5M") == 1_500_000
    assert parse_count(2048) == 2048
    with pytest.raises(ValueError, match="sample count"):
        parse_count("lots")


@pytest.mark.parametrize("method, settings, split_at", [
    ("ours", dict(jt=1536, sp=0.25), 1536),  # when the joint phase ends
    ("random", dict(jt=768, sp=0.05), 768),
    ("separate", {}, 0),  # before the first iteration
    ("ours", dict(jt=1536, sp=0.0), None),  # nothing to split
    ("joint", {}, None),
    ("append", {}, None),
])
def test_the_split_schedule(tiny_experiment, method, settings, split_at):
    """``split_due``, the one rule of when a run splits (``Trainer.begin`` and ``end_iteration`` ask it,
    ``tracks_gradients`` scores until then): once, when the counted samples reach joint_samples."""
    config = _config(tiny_experiment, method=method, **settings).resolved(3840, 384)
    for samples in (0, 384, 767, 768, 1152, 1535, 1536, 3840):
        assert split_due(config, False, samples) == (split_at is not None and samples >= split_at), samples
        assert not split_due(config, True, samples)


def test_ours_splits_top_fraction_at_jt_and_specializes(tiny_experiment, tmp_path):
    trainer = Trainer(_config(tiny_experiment, method="ours", jt=1536, sp=0.25), tmp_path / "run")
    shared_before = trainer.policy.effective_params()
    summary = trainer.run()
    rows = _metrics(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["joint"] * 4 + ["specialized"] * 6  # split after 4 x 384 >= 1536
    tensors, meta = ckpt.load_checkpoint(tmp_path / "run" / "split.safetensors")
    n_total = trainer.policy.n_params()
    assert meta["split_entries"] == n_split_entries(n_total, 0.25)
    assert meta["samples"] == 1536
    masks = trainer.policy.split_masks()
    assert sum(int(m.sum()) for m in masks.values()) == n_split_entries(n_total, 0.25)
    # the saved score selects exactly the installed mask: split entries score >= every shared entry
    scores = torch.cat([tensors[f"score/{k}"].flatten() for k in masks])
    flat_mask = torch.cat([masks[k].flatten() for k in masks])
    assert scores[flat_mask].min() >= scores[~flat_mask].max()
    effective = trainer.policy.effective_params()
    for name, mask in masks.items():
        values = effective[name]
        assert torch.equal(values[:, ~mask], values[0:1, ~mask].expand_as(values[:, ~mask])), name
        if mask.any():  # specialized entries moved apart after the split
            assert not torch.equal(values[0][mask], values[1][mask]), name
    assert not torch.equal(effective["mean.0.weight"], shared_before["mean.0.weight"])
    assert summary["samples"] == 3840 and set(summary["returns"]) == {"hopper_capsule", "hopper_box",
                                                                      "hopper_ellipsoid"}
    # the figures the run wrote draw its metrics and its masks
    from mt_specialize.plots import plot_run, plot_split

    assert (tmp_path / "run" / "learning_curve.png").is_file() and (tmp_path / "run" / "split.png").is_file()
    curves = {line.get_label(): line for line in plot_run(tmp_path / "run").axes[0].get_lines()}
    assert list(curves["pooled (last 100 episodes)"].get_ydata()) == [float(r["return_pooled"]) for r in rows]
    assert list(curves["hopper_box"].get_xdata()) == [int(r["samples"]) / 1e6 for r in rows]
    bars = plot_split(tmp_path / "run").axes[0]
    drawn = {label.get_text(): bar.get_height() for label, bar in zip(bars.get_xticklabels(), bars.patches)}
    assert drawn == {name: float(mask.float().mean()) for name, mask in masks.items()}
    assert any((tmp_path / "run" / "tb").iterdir())


def test_sp_zero_is_exactly_joint_training(tiny_experiment, tmp_path):
    Trainer(_config(tiny_experiment, method="ours", jt=1536, sp=0.0), tmp_path / "ours").run()
    Trainer(_config(tiny_experiment, method="joint"), tmp_path / "joint").run()
    assert _metrics(tmp_path / "ours") == _metrics(tmp_path / "joint")


def test_separate_shares_no_policy_or_value_entry(tiny_experiment, tmp_path):
    trainer = Trainer(_config(tiny_experiment, method="separate", samples=768), tmp_path / "sep")
    trainer.run()
    for net in (trainer.policy, trainer.value):
        assert all(bool(m.all()) for m in net.split_masks().values())


def test_random_split_has_the_same_count_as_ours(tiny_experiment, tmp_path):
    trainer = Trainer(_config(tiny_experiment, method="random", jt=768, sp=0.05, samples=1152), tmp_path / "r")
    trainer.run()
    n_split = sum(int(m.sum()) for m in trainer.policy.split_masks().values())
    assert n_split == n_split_entries(trainer.policy.n_params(), 0.05)


def test_append_adds_one_hot_task_input(tiny_experiment, tmp_path):
    trainer = Trainer(_config(tiny_experiment, method="append", samples=384), tmp_path / "a")
    assert trainer.policy_in == trainer.obs_dim + 3
    trainer.run()
    assert not any(bool(m.any()) for m in trainer.policy.split_masks().values())


def test_same_seed_same_metrics_different_seed_different(tiny_experiment, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        Trainer(_config(tiny_experiment, method="joint", samples=768, seed=seed), tmp_path / name).run()
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


def test_sigint_then_resume_matches_uninterrupted_run(tiny_experiment, tmp_path):
    config = _config(tiny_experiment, method="ours", jt=1536, sp=0.25)
    Trainer(config, tmp_path / "full").run()

    def interrupt_at_iteration_5(row):
        if row["iteration"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(config, tmp_path / "cut", progress=interrupt_at_iteration_5)
    with pytest.raises(Interrupted, match="--resume"), StopOnSignals() as stop:
        trainer.run(should_stop=stop)
    assert stop.name == "SIGINT"
    assert latest_checkpoint(tmp_path / "cut").name == f"ckpt_{5 * 384:012d}.safetensors"
    assert len(_metrics(tmp_path / "cut")) == 5
    Trainer(config, tmp_path / "cut", resume=True).run()
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")


def test_run_training_stops_after_the_iteration_should_stop_is_true(tiny_experiment, tmp_path):
    from mt_specialize.train import run_training

    rows = []
    with pytest.raises(Interrupted, match="after iteration 2 "):
        run_training(_config(tiny_experiment, method="joint", samples=3840), tmp_path / "run",
                     progress_callback=rows.append, should_stop=lambda: len(rows) == 2)
    assert len(_metrics(tmp_path / "run")) == 2
    assert latest_checkpoint(tmp_path / "run").name == checkpoint_name(2 * 384)


def test_stop_on_signals_first_signal_asks_to_stop_second_raises_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignals((signal.SIGTERM,)) as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_on_the_train_command_finishes_the_iteration_checkpoints_and_exits_130(tiny_experiment, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "cfg.yaml").write_text("checkpoint_every: 1000\nppo: {minibatch_per_task: 64, epochs: 2}\n")
    proc = subprocess.Popen([sys.executable, "-m", "mt_specialize.cli", "train", tiny_experiment, "--method", "joint",
                             "--seed", "3", "--envs-per-task", "4", "--samples", "38400", "--out", str(out),
                             "--config", str(tmp_path / "cfg.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.csv").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr and "--resume" in stderr
    done = len(_metrics(out))
    assert 1 <= done < 100  # the iteration under way was finished, then the checkpoint of it written
    assert latest_checkpoint(out).name == checkpoint_name(done * 384)


def test_kill_9_between_checkpoints_then_resume(tiny_experiment, tmp_path):
    """A hard kill loses only the iterations since the last checkpoint; the resumed run matches."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "mt_specialize.cli", "train", tiny_experiment, "--method", "joint",
            "--seed", "3", "--envs-per-task", "4", "--samples", "7680", "--out", str(out),
            "--config", str(tmp_path / "cfg.yaml")]
    (tmp_path / "cfg.yaml").write_text("checkpoint_every: 2\nppo: {minibatch_per_task: 64, epochs: 2}\n")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and latest_checkpoint(out) is None:
        time.sleep(0.05)
    while time.time() < deadline and len(_metrics(out)) < 3:  # past the first checkpoint (iteration 2)
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert latest_checkpoint(out) is not None
    done_before_kill = len(_metrics(out))
    assert done_before_kill < 20, "the run finished before it could be killed"
    resume = subprocess.run([sys.executable, "-m", "mt_specialize.cli", "train", "--out", str(out), "--resume"],
                            capture_output=True, text=True, timeout=300)  # the run's own config.yaml
    assert resume.returncode == 0, resume.stderr
    config = TrainConfig.from_yaml(tmp_path / "cfg.yaml")
    config.experiment, config.method, config.seed, config.envs_per_task, config.samples = (
        tiny_experiment, "joint", 3, 4, 7680)
    Trainer(config, tmp_path / "reference").run()
    assert _metrics(out) == _metrics(tmp_path / "reference")


@pytest.mark.parametrize("kw, message", [
    (dict(method="magic"), "unknown method 'magic'"),
    (dict(sp=1.5), r"split_fraction \(sp\) must be a number in \[0, 1\], got 1.5"),
    (dict(split_fraction=-0.1), r"split_fraction \(sp\) must be a number in \[0, 1\]"),
    (dict(joint_samples="10M"), "beyond the budget"),
    (dict(experiment="four_hoppers"), "four_hoppers"),
    (dict(method="separate", sp=0.5), r"fixes split_fraction \(sp\)"),
])
def test_bad_settings_are_refused(tiny_experiment, tmp_path, kw, message):
    kw.setdefault("experiment", tiny_experiment)
    with pytest.raises(ValueError, match=message):
        Trainer(_config(**kw), tmp_path / "bad")
    assert not (tmp_path / "bad" / "config.yaml").exists()


def test_config_with_unknown_key_names_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: three_hoppers\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\].*allowed keys"):
        TrainConfig.from_yaml(path)
    path.write_text("ppo: {clip_range: 0.3}\n")
    with pytest.raises(ValueError, match="clip_range"):
        TrainConfig.from_yaml(path)


def test_existing_run_is_never_overwritten(tiny_experiment, tmp_path):
    config = _config(tiny_experiment, method="joint", samples=768)
    Trainer(config, tmp_path / "run").run()
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(config, tmp_path / "run")
    other = _config(tiny_experiment, method="joint", samples=768, seed=9)
    with pytest.raises(ValueError, match="different config"):
        Trainer(other, tmp_path / "run", resume=True)
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after


def test_resume_of_a_run_saved_before_a_setting_existed(tiny_experiment, tmp_path):
    """A config.yaml written by an older version (a setting missing) resumes when the new setting is at
    its default, and is still refused when a recorded setting differs."""
    import yaml

    config = _config(tiny_experiment, method="joint", samples=768)
    Trainer(config, tmp_path / "run").run()
    path = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["ppo"]["lr_schedule"], saved["score_statistic"]  # as if written before these existed
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    more = dataclasses.replace(config, samples=1536)
    with pytest.raises(ValueError, match=r"samples: run has 768, given 1536\)"):  # only a real difference
        Trainer(more, tmp_path / "run", resume=True)
    saved["samples"] = saved["jt"] = 1536  # joint: jt is the whole budget
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    summary = Trainer(more, tmp_path / "run", resume=True).run()
    assert summary["samples"] >= 1536
    saved["ppo"]["lr_schedule"] = "linear"
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(ValueError, match="lr_schedule"):
        Trainer(more, tmp_path / "run", resume=True)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_resume_skips_a_damaged_newest_checkpoint_and_names_it(tiny_experiment, tmp_path, damage):
    config = _config(tiny_experiment, method="joint", samples=1536)  # checkpoints at 768 and 1536
    Trainer(config, tmp_path / "run").run()
    paths = sorted((tmp_path / "run" / "checkpoints").glob("ckpt_*.safetensors"))
    assert len(paths) == 2

    def spoil(path):
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    spoil(paths[-1])
    with pytest.warns(UserWarning, match=paths[-1].name):
        resumed = Trainer(config, tmp_path / "run", resume=True)
    assert resumed.samples == 768 and paths[-1].exists()  # the damaged file is kept, not deleted
    resumed.close()
    spoil(paths[0])
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint verifies"):
        Trainer(config, tmp_path / "run", resume=True)


def test_a_run_directory_in_use_is_refused_and_released_after(tiny_experiment, tmp_path):
    config = _config(tiny_experiment, method="joint", samples=768)
    first = Trainer(config, tmp_path / "run")
    with pytest.raises(RunBusyError, match="another process"):
        Trainer(config, tmp_path / "run", resume=True)
    first.run()  # releases the directory when it returns
    Trainer(config, tmp_path / "run", resume=True).close()


def test_the_split_itself_changes_no_action_or_value(tiny_experiment, tmp_path):
    """Per-task copies start from the joint values: splitting alone leaves every task's policy as it was."""
    trainer = Trainer(_config(tiny_experiment, method="ours", jt=768, sp=0.5, split_value=True), tmp_path / "r")
    for _ in range(2):  # joint iterations, as run() does them
        trainer.update(trainer.prepare_batch(trainer.collect()), track_gradients=True)
        trainer.samples += trainer.batch
    obs = torch.randn(3, 40, trainer.policy_in)
    with torch.no_grad():
        actions, values = trainer.policy.mean_action(obs), trainer.value(obs)
    trainer._split()
    with torch.no_grad():
        assert torch.equal(trainer.policy.mean_action(obs), actions)
        assert torch.equal(trainer.value(obs), values)
    assert any(bool(m.any()) for m in trainer.policy.split_masks().values())
    trainer.close()


def test_clip_schedule_reaches_the_update(tiny_experiment, tmp_path):
    """With clip_schedule linear at the end of the budget the clip range is 0: every ratio that moved
    counts as clipped. The same batch with the constant clip (0.2) is clipped far less."""
    fractions = {}
    for schedule in ("constant", "linear"):
        config = _config(tiny_experiment, method="joint", samples=3840)
        config.ppo.clip_schedule = schedule
        trainer = Trainer(config, tmp_path / schedule)
        trainer.samples = config.samples - 1  # progress ~1
        batch = trainer.prepare_batch(trainer.collect())
        fractions[schedule] = trainer.update(batch, track_gradients=False).clip_fraction
        trainer.close()
    assert fractions["linear"] > 0.5 > fractions["constant"]


def _tensors_of(path):
    tensors, meta = ckpt.load_checkpoint(path)
    return tensors, {k: v for k, v in meta.items() if k != "config"}


def test_a_run_started_from_a_checkpoint_goes_on_as_the_source_run(tiny_experiment, tmp_path):
    """Same settings: the new run is the source run from that checkpoint on, bit for bit (its rows up
    to the checkpoint copied); other settings: the same rows up to the checkpoint, then its own."""
    config = _config(tiny_experiment, method="ours", jt=1536, sp=0.25, keep_checkpoints=10)
    Trainer(config, tmp_path / "full").run()
    at_4 = tmp_path / "full" / "checkpoints" / checkpoint_name(4 * 384)
    Trainer(dataclasses.replace(config, start_from=str(at_4)), tmp_path / "branch").run()
    assert _metrics(tmp_path / "branch") == _metrics(tmp_path / "full")
    last = checkpoint_name(10 * 384)
    ours, theirs = (_tensors_of(tmp_path / run / "checkpoints" / last) for run in ("branch", "full"))
    assert ours[1] == theirs[1] and ours[0].keys() == theirs[0].keys()
    assert all(torch.equal(ours[0][k], theirs[0][k]) for k in ours[0])
    assert (tmp_path / "branch" / "split.safetensors").is_file()
    saved = TrainConfig.from_yaml(tmp_path / "branch" / "config.yaml", run_config=True)
    assert saved.start_from == str(at_4)

    other = dataclasses.replace(config, start_from=str(tmp_path / "full"), samples=12 * 384)  # newest: 10
    other.ppo = dataclasses.replace(config.ppo, lr=1e-3)
    Trainer(other, tmp_path / "other").run()
    rows = _metrics(tmp_path / "other")
    assert len(rows) == 12 and rows[:10] == _metrics(tmp_path / "full")
    assert TrainConfig.from_yaml(tmp_path / "other" / "config.yaml", run_config=True).start_from == \
        str(tmp_path / "full" / "checkpoints" / last)


def test_a_run_started_from_a_checkpoint_trains_alike_in_a_group(tiny_experiment, tmp_path):
    from mt_specialize.run_group import RunGroup

    config = _config(tiny_experiment, method="ours", jt=1536, sp=0.25, samples=4 * 384)
    Trainer(config, tmp_path / "source").run()
    branch = dataclasses.replace(config, samples=7 * 384, start_from=str(tmp_path / "source"))
    plain = dataclasses.replace(config, method="joint", joint_samples=None, split_fraction=None, seed=4)
    Trainer(branch, tmp_path / "alone").run()
    RunGroup([branch, plain], [tmp_path / "grouped", tmp_path / "plain"]).run()
    assert _metrics(tmp_path / "grouped") == _metrics(tmp_path / "alone")


@pytest.mark.parametrize("change, message", [
    (dict(envs_per_task=2), "envs_per_task: it has 4, this run 2"),
    (dict(method="joint", joint_samples=None, split_fraction=None),
     "method: it has 'gradient_guided', this run 'joint'"),
    (dict(samples=2 * 384), "it is at 1,536 samples, this run's budget"),
    (dict(start_from="missing_dir/ckpt.safetensors"), "does not exist"),
])
def test_a_start_that_does_not_fit_is_refused_before_anything_is_written(tiny_experiment, tmp_path, change,
                                                                          message):
    config = _config(tiny_experiment, method="ours", jt=384, sp=0.25, samples=4 * 384)
    Trainer(config, tmp_path / "source").run()
    bad = dataclasses.replace(config, start_from=str(tmp_path / "source"), samples=8 * 384)
    for key, value in change.items():
        setattr(bad, key, value)
    with pytest.raises(ValueError, match=message):
        Trainer(bad, tmp_path / "bad")
    assert not (tmp_path / "bad" / "config.yaml").exists()


def test_a_serving_checkpoint_is_no_start(tiny_experiment, tmp_path):
    from mt_specialize.learning.inference import InferencePolicy

    config = _config(tiny_experiment, method="joint", samples=2 * 384)
    Trainer(config, tmp_path / "source").run()
    exported = InferencePolicy.export(latest_checkpoint(tmp_path / "source"), tmp_path / "policy.safetensors")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        Trainer(dataclasses.replace(config, samples=4 * 384, start_from=str(exported)), tmp_path / "bad")
