"""Runs trained in one group (``run_group.RunGroup``) write what each writes alone, bit for bit."""
import csv
import json
from pathlib import Path

import pytest
import torch

from mt_specialize.config import TrainConfig
from mt_specialize.learning import checkpoint as ckpt
from mt_specialize.run_group import RunGroup, batch_key, group_configs, run_groups
from mt_specialize.train import Interrupted, Trainer, checkpoint_paths

TIMING_COLUMNS = {"samples_per_s", "rollout_samples_per_s"}


@pytest.fixture
def tiny_experiment(tmp_path):
    """Three hoppers, 3 x 4 envs x 32 steps = 384 samples per iteration."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nbatch_size: 384\nbudget: 3840\n"
                    "tasks: [hopper_capsule, hopper_box, hopper_ellipsoid]\n")
    return str(path)


def _config(experiment, **kw):
    base = dict(experiment=experiment, envs_per_task=4, checkpoint_every=2, keep_checkpoints=100)
    base.update(kw)
    config = TrainConfig(**base)
    config.ppo.minibatch_per_task = 64
    config.ppo.epochs = 2
    return config


def _metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def _checkpoints(run_dir):
    """{checkpoint name: (tensors, metadata)} of a run."""
    return {p.name: ckpt.load_checkpoint(p) for p in checkpoint_paths(run_dir)}


def assert_same_run(a, b, stopped_at=()):
    """Two run directories hold the same results: metrics (speed aside), summary, every checkpoint (``b``
    also the checkpoints written when it was stopped, at the given real sample counts)."""
    assert _metrics(a) == _metrics(b)
    assert json.loads((Path(a) / "summary.json").read_text()) == json.loads((Path(b) / "summary.json").read_text())
    ca, cb = _checkpoints(a), _checkpoints(b)
    assert ca and set(ca) <= set(cb)
    assert set(cb) - set(ca) <= {f"ckpt_{n:012d}.safetensors" for n in stopped_at}  # a stop's own checkpoint
    for name in ca:
        (ta, ma), (tb, mb) = ca[name], cb[name]
        assert ma == mb, name
        assert sorted(ta) == sorted(tb), name
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{name}: {key}"
    split_a, split_b = Path(a) / "split.safetensors", Path(b) / "split.safetensors"
    assert split_a.exists() == split_b.exists()
    if split_a.exists():
        (ta, ma), (tb, mb) = ckpt.load_checkpoint(split_a), ckpt.load_checkpoint(split_b)
        assert ma == mb and all(torch.equal(ta[k], tb[k]) for k in ta)


# Runs of different methods, seeds, split points and budgets: what one group may mix
MIXED = [dict(method="ours", jt=768, sp=0.25, seed=1, samples=2304),
         dict(method="joint", seed=2, samples=1536),
         dict(method="random", jt=1152, sp=0.5, seed=3, samples=2304),
         dict(method="separate", seed=4, samples=1920)]


def test_mixed_runs_in_a_group_equal_each_run_alone(tiny_experiment, tmp_path):
    configs = [_config(tiny_experiment, physics_threads=1, **kw) for kw in MIXED]
    for k, config in enumerate(configs):
        Trainer(config, tmp_path / f"alone{k}").run()
    rows = []
    summaries = RunGroup(configs, [tmp_path / f"group{k}" for k in range(len(configs))],
                         progress=lambda k, row: rows.append((k, row["iteration"]))).run()
    assert [s["seed"] for s in summaries] == [1, 2, 3, 4]
    for k in range(len(configs)):
        assert_same_run(tmp_path / f"alone{k}", tmp_path / f"group{k}")
    # the joint run (4 iterations) left the group before the others; every run reported each iteration
    assert sorted(rows) == sorted((k, i) for k, kw in enumerate(MIXED) for i in range(1, kw["samples"] // 384 + 1))
    # two groups trained at once on two threads (their bookkeeping takes turns): the same again
    groups = [RunGroup(configs[:2], [tmp_path / f"threaded{k}" for k in (0, 1)]),
              RunGroup(configs[2:], [tmp_path / f"threaded{k}" for k in (2, 3)])]
    summaries = run_groups(groups)
    assert [[s["seed"] for s in group] for group in summaries] == [[1, 2], [3, 4]]
    for k in range(len(configs)):
        assert_same_run(tmp_path / f"alone{k}", tmp_path / f"threaded{k}")


def test_paper_profile_runs_with_reverts_in_a_group_equal_each_alone(tiny_experiment, tmp_path):
    """The authors' optimiser and the revert rule (a bound of 0.1 rejects iterations often, at different
    iterations in different runs: a rejected run sits out the batched update)."""
    # the profile's time limit and advantages as the first paper grid had them: this bound then rejects
    # iterations without a run getting stuck (the corrected profile in a group: the test below)
    configs = [_config(tiny_experiment, profile="paper", revert_drop_bound=0.1, samples=3072, time_limit="bootstrap",
                       **kw) for kw in (dict(method="ours", jt=768, sp=0.25, seed=5), dict(method="joint", seed=6))]
    for config in configs:
        config.ppo.advantage_norm = "per_task_iteration"
    for k, config in enumerate(configs):
        Trainer(config, tmp_path / f"alone{k}").run()
    RunGroup(configs, [tmp_path / f"group{k}" for k in range(2)]).run()
    reverts = []
    for k in range(2):
        assert_same_run(tmp_path / f"alone{k}", tmp_path / f"group{k}")
        reverts.append([int(r["reverted"]) for r in _metrics(tmp_path / f"group{k}")])
    assert any(sum(r) for r in reverts), "the bound should have rejected some iteration"
    assert reverts[0] != reverts[1], "the runs should have rejected different iterations"


def test_the_paper_profiles_terminal_time_limit_and_per_env_advantages_in_a_group_equal_each_alone(
        tiny_experiment, tmp_path):
    configs = [_config(tiny_experiment, profile="paper", samples=3072, **kw)
               for kw in (dict(method="ours", jt=768, sp=0.25, seed=7), dict(method="separate", seed=8))]
    for k, config in enumerate(configs):
        Trainer(config, tmp_path / f"alone{k}").run()
    RunGroup(configs, [tmp_path / f"group{k}" for k in range(2)]).run()
    for k in range(2):
        assert_same_run(tmp_path / f"alone{k}", tmp_path / f"group{k}")
        rows = _metrics(tmp_path / f"group{k}")
        assert any(int(v) for r in rows for key, v in r.items() if key.startswith("ended/")), "episodes ended"


def test_a_run_the_revert_rule_stops_leaves_its_group_and_the_others_go_on(tiny_experiment, tmp_path):
    """One run's RevertLoop (fake episodes of return -1e4 in its return buffer from iteration 3 on: every
    later rollout is rejected) stops that run alone: its state is checkpointed, failure.json says why, a
    resume is refused, and the other run finishes with what it gets alone."""
    from mt_specialize.run_dir import RunFailedError
    from revert_loop import force_revert_loop

    configs = [_config(tiny_experiment, profile="paper", method="joint", seed=s, revert_drop_bound=300,
                       revert_max_streak=3, samples=384 * 8) for s in (1, 2)]
    Trainer(configs[1], tmp_path / "alone1").run()
    dirs = [tmp_path / f"group{k}" for k in range(2)]
    group = RunGroup(configs, dirs)
    force_revert_loop(group.trainers[0], from_iteration=3)
    summaries = group.run()
    assert summaries[0]["run"] == str(dirs[0])
    assert summaries[0]["failed"].startswith("RevertLoop: the revert rule rejected 3 iterations in a row")
    assert summaries[1]["seed"] == 2 and summaries[1]["samples"] == 384 * 8
    assert_same_run(tmp_path / "alone1", dirs[1])
    assert [int(r["reverted"]) for r in _metrics(dirs[0])] == [0, 0, 0, 1, 1]  # the third rejection stops it
    failure = json.loads((dirs[0] / "failure.json").read_text())
    assert (failure["error"], failure["samples"], failure["samples_real"]) == ("RevertLoop", 2 * 384, 6 * 384)
    assert checkpoint_paths(dirs[0])[-1].name == f"ckpt_{6 * 384:012d}.safetensors"  # its state at the stop
    with pytest.raises(RunFailedError, match=r"cannot resume .* stopped for good at 2,304 real samples "
                                             r"\(RevertLoop: .*--start-from"):
        Trainer(configs[0], dirs[0], resume=True)


def test_a_stopped_group_resumes_alone_or_grouped_to_the_same_results(tiny_experiment, tmp_path):
    configs = [_config(tiny_experiment, method="ours", jt=768, sp=0.25, seed=s, samples=2304) for s in (7, 8)]
    for k, config in enumerate(configs):
        Trainer(config, tmp_path / f"alone{k}").run()
    dirs = [tmp_path / f"group{k}" for k in range(2)]
    calls = iter(range(100))
    with pytest.raises(Interrupted, match="--resume"):
        RunGroup(configs, dirs).run(should_stop=lambda: next(calls) == 2)  # after iteration 3
    assert [len(_metrics(d)) for d in dirs] == [3, 3]
    Trainer(configs[0], dirs[0], resume=True).run()  # one run alone
    RunGroup(configs[1:], dirs[1:], resume=True).run()  # the other as a group
    for k in range(2):
        assert_same_run(tmp_path / f"alone{k}", dirs[k], stopped_at=[3 * 384])


def test_groups_on_threads_stop_together_and_resume(tiny_experiment, tmp_path):
    configs = [_config(tiny_experiment, method="joint", seed=s, samples=1920, physics_threads=1) for s in (1, 2, 3)]
    for k, config in enumerate(configs):
        Trainer(config, tmp_path / f"alone{k}").run()
    dirs = [tmp_path / f"t{k}" for k in range(3)]
    asked = []

    def stop_when_both_asked():  # the first group to ask after its second iteration stops both
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(Interrupted):
        run_groups([RunGroup(configs[:1], dirs[:1]), RunGroup(configs[1:], dirs[1:])], stop_when_both_asked)
    assert all(0 < len(_metrics(d)) < 5 for d in dirs)
    stopped = [len(_metrics(d)) * 384 for d in dirs]
    run_groups([RunGroup(configs[:2], dirs[:2], resume=True), RunGroup(configs[2:], dirs[2:], resume=True)])
    for k in range(3):
        assert_same_run(tmp_path / f"alone{k}", dirs[k], stopped_at=[stopped[k]])


def test_what_batches_together(tiny_experiment):
    base = _config(tiny_experiment, method="joint")
    same = [_config(tiny_experiment, seed=9, method="random", jt=1, sp=0.5, samples=99),
            _config(tiny_experiment, method="ours", jt=768, sp=0.05, split_value=True),
            _config(tiny_experiment, method="separate", revert_drop_bound=3.0)]
    same[2].ppo.lr = 1e-4
    same[2].ppo.clip_schedule = "linear"
    for other in same:
        assert batch_key(other) == batch_key(base)
    different = [_config(tiny_experiment, method="append"), _config(tiny_experiment, method="joint", envs_per_task=8),
                 _config(tiny_experiment, method="joint", profile="paper"),
                 _config(tiny_experiment, method="joint", physics={"armature": 0.1})]
    epochs = _config(tiny_experiment, method="joint")
    epochs.ppo.epochs = 3
    for other in different + [epochs]:
        assert batch_key(other) != batch_key(base)
    configs = [base, different[0], same[0], same[2], different[0]]
    assert group_configs(configs) == [[0, 2, 3], [1, 4]]
    assert group_configs(configs, max_runs=2) == [[0, 2], [1, 4], [3]]
    beyond = _config(tiny_experiment, method="ours", jt=10_000)  # jt beyond the budget: alone, fails when run
    assert group_configs([base, beyond, base]) == [[0, 2], [1]]


def test_runs_that_cannot_batch_are_refused_naming_what_differs(tiny_experiment, tmp_path):
    configs = [_config(tiny_experiment, method="joint"), _config(tiny_experiment, method="joint", envs_per_task=8)]
    with pytest.raises(ValueError, match="envs_per_task"):
        RunGroup(configs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="distinct run directories"):
        RunGroup([_config(tiny_experiment, method="joint")] * 2, [tmp_path / "c", tmp_path / "c"])


def test_train_command_with_seeds_writes_each_seeds_run_as_seed_alone(tiny_experiment, tmp_path, capsys):
    from mt_specialize.cli import main

    common = [tiny_experiment, "--method", "ours", "--jt", "384", "--samples", "1152", "--envs-per-task", "4"]
    assert main(["train", *common, "--seeds", "2,5", "--groups", "2", "--out", str(tmp_path / "many")]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["seed2", "seed5"]
    for seed in (2, 5):
        assert main(["train", *common, "--seed", str(seed), "--out", str(tmp_path / f"one{seed}")]) == 0
        assert _metrics(tmp_path / "many" / f"seed{seed}") == _metrics(tmp_path / f"one{seed}")
    # resuming the finished seeds and starting a new one; refusals name the flag
    assert main(["train", *common, "--seeds", "2,5-6", "--out", str(tmp_path / "many"), "--resume"]) == 0
    assert (tmp_path / "many" / "seed6" / "summary.json").exists()
    capsys.readouterr()
    assert main(["train", *common, "--seeds", "5-2"]) == 2
    assert main(["train", *common, "--seeds", "1-2", "--seed", "1"]) == 2
    assert main(["train", *common, "--seeds", "1-2", "--groups", "3"]) == 2
    err = capsys.readouterr().err
    assert "--seeds '5-2'" in err and "--seed or --seeds" in err and "--groups" in err


def test_train_command_with_seeds_names_a_run_the_revert_rule_stopped(tiny_experiment, tmp_path, capsys,
                                                                       monkeypatch):
    """``train --seeds``: a seed the revert rule stops is named with the reason, the others finish and
    are tabled, and the command exits 1."""
    from mt_specialize.cli import main
    from revert_loop import force_revert_loop

    build = RunGroup.__init__

    def build_with_seed5_looping(self, *args, **kwargs):
        build(self, *args, **kwargs)
        for trainer in self.trainers:
            if trainer.config.seed == 5:
                force_revert_loop(trainer, from_iteration=1)
    monkeypatch.setattr(RunGroup, "__init__", build_with_seed5_looping)
    (tmp_path / "revert.yaml").write_text("revert_drop_bound: 300\nrevert_max_streak: 1\n")
    out = tmp_path / "many"
    assert main(["train", tiny_experiment, "--config", str(tmp_path / "revert.yaml"), "--method", "joint",
                 "--samples", "1152", "--envs-per-task", "4", "--seeds", "2,5", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert f"run {out / 'seed5'} stopped: RevertLoop: the revert rule rejected 1 iterations" in printed.err
    assert "seed 2" in printed.out and "seed 5" not in printed.out
    assert (out / "seed2" / "summary.json").exists() and (out / "seed5" / "failure.json").exists()
