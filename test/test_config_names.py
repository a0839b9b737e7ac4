"""Descriptive setting names with the paper's as aliases: ``joint_samples`` (jt), ``split_fraction`` (sp),
method ``gradient_guided`` (ours). Every spelling gives one config, two spellings of one setting must
agree, and run files keep the paper's names, so old and new run directories resume alike."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from mt_specialize import cli
from mt_specialize.config import TrainConfig, canonical_settings
from mt_specialize.experiments import get_experiment
from mt_specialize.train import Interrupted, Trainer
from paper.reproduce import RunSpec, paper_grid

REPO = Path(__file__).resolve().parent.parent
# run directories written by earlier versions: the archived grids and the committed resume fixture
OLD_CONFIGS = sorted(REPO.glob("results/grid*/*/*/seed*/config.yaml")) + \
    [REPO / "test" / "data" / "run_biped_random_seed4_1.6M" / "config.yaml"]


def _resolved(config: TrainConfig) -> TrainConfig:
    experiment = get_experiment(config.experiment)
    return config.resolved(experiment.budget, experiment.batch_size)


@pytest.fixture
def tiny_experiment(tmp_path):
    """Two hoppers, 2 x 4 envs x 32 steps = 256 samples per iteration."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nbatch_size: 256\nbudget: 1024\ntasks: [hopper_capsule, hopper_box]\n")
    return str(path)


def test_the_papers_names_and_the_descriptive_ones_make_the_same_config():
    paper = TrainConfig(method="ours", jt="80k", sp=0.05)
    named = TrainConfig(method="gradient_guided", joint_samples="80k", split_fraction=0.05)
    assert paper == named and paper.method == "gradient_guided"
    assert (paper.jt, paper.sp) == ("80k", 0.05)  # read under the paper's names too
    from_yaml = TrainConfig.from_dict({"method": "ours", "jt": "80k", "sp": 0.05})
    assert from_yaml == named
    resolved = _resolved(named)
    assert (resolved.joint_samples, resolved.split_fraction) == (80_000, 0.05)
    resolved.jt = 160_000  # the alias writes the field
    assert resolved.joint_samples == 160_000
    assert dataclasses.replace(resolved, joint_samples=240_000).jt == 240_000


@pytest.mark.parametrize("data", [{"jt": "80k", "joint_samples": 400_000}, {"sp": 0.5, "split_fraction": 0.25}])
def test_one_setting_under_two_names_with_two_values_is_refused(data):
    alias, name = data
    with pytest.raises(ValueError, match=rf"run.yaml: {alias} is the paper's name of {name}, and the two differ"):
        TrainConfig.from_dict(data, source="run.yaml")
    with pytest.raises(ValueError, match=f"{alias} is the paper's name of {name}"):
        TrainConfig(**data)


def test_one_setting_under_two_names_with_one_value_is_accepted():
    config = TrainConfig.from_dict({"jt": "400k", "joint_samples": 400_000, "sp": 0.25, "split_fraction": "0.25"})
    assert (config.joint_samples, config.split_fraction) == (400_000, "0.25")  # the descriptive name's spelling


def test_an_unknown_method_is_refused_listing_both_names_of_the_papers():
    with pytest.raises(ValueError, match=r"unknown method 'ourz'; allowed methods: "
                                         r"\['gradient_guided', 'ours', 'joint'"):
        _resolved(TrainConfig(method="ourz"))


def test_every_config_yaml_of_an_older_run_reads_and_writes_back_unchanged():
    """config.yaml of archived runs (the paper's names, settings added since missing): every key the file
    has is written back by ``to_run_config`` with the same value, in the same order."""
    assert len(OLD_CONFIGS) > 100
    methods = set()
    for path in OLD_CONFIGS:
        saved = yaml.safe_load(path.read_text())
        config = _resolved(TrainConfig.from_yaml(path, run_config=True))
        written = config.to_run_config()
        methods.add((saved["method"], config.method))
        for key, value in saved.items():
            if key == "ppo":
                assert {k: written["ppo"][k] for k in value} == value, path
            else:
                assert written[key] == value, (path, key)
        assert [k for k in written if k in saved] == list(saved), path
    assert ("ours", "gradient_guided") in methods and ("random", "random") in methods


def test_a_new_run_writes_the_papers_names_and_resumes_under_either(tiny_experiment, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(experiment=tiny_experiment, method="gradient_guided", joint_samples=512,
                         split_fraction=0.25, envs_per_task=4, samples=768)
    config.ppo.epochs = 1
    with pytest.raises(Interrupted):  # after the first iteration, before the split
        Trainer(config, run).run(should_stop=lambda: True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert list(saved)[:4] == ["experiment", "method", "jt", "sp"]
    assert (saved["method"], saved["jt"], saved["sp"]) == ("ours", 512, 0.25)
    same = {"experiment": tiny_experiment, "envs_per_task": 4, "samples": 768, "ppo": {"epochs": 1}}
    for spelling in ({"method": "ours", "jt": 512, "sp": 0.25},
                     {"method": "gradient_guided", "joint_samples": "512", "split_fraction": 0.25}):
        Trainer(TrainConfig.from_dict({**same, **spelling}), run, resume=True).close()
    with pytest.raises(ValueError, match=r"joint_samples: run has 512, given 256"):
        Trainer(TrainConfig.from_dict({**same, "jt": 256}), run, resume=True)
    # resumed from the run's own config.yaml, as `mt-specialize train --out RUN --resume` does
    summary = Trainer(TrainConfig.from_yaml(run / "config.yaml", run_config=True), run, resume=True).run()
    assert summary["samples"] == 768 and (run / "split.safetensors").is_file()
    written = json.loads((run / "summary.json").read_text())
    assert (written["method"], written["jt"], written["sp"]) == ("ours", 512, 0.25)


def test_command_line_takes_both_names_and_refuses_two_values(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["train", "three_hoppers", "--method", "ours", "--jt", "80k", "--sp", "0.05"])
    config = cli._train_config(args)
    assert (config.method, config.joint_samples, config.split_fraction) == ("gradient_guided", "80k", "0.05")
    assert cli._default_run_name(config) == "three_hoppers_ours_jt80k_sp0.05_seed1"  # the names runs had
    args = parser.parse_args(["train", "three_hoppers", "--joint-samples", "80k", "--split-fraction", "0.05"])
    assert cli._train_config(args) == config
    code = cli.main(["train", "three_hoppers", "--jt", "80k", "--joint-samples", "400k"])
    assert code == 2
    assert ("--jt is the paper's name of --joint-samples, and the two differ (--jt=80k, --joint-samples=400k)"
            in capsys.readouterr().err)


def test_command_line_flags_override_a_config_file_in_either_name(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("experiment: three_hoppers\njt: 80k\nsp: 0.05\n")
    args = cli.build_parser().parse_args(["train", "--config", str(path), "--joint-samples", "800k"])
    config = cli._train_config(args)
    assert (config.joint_samples, config.split_fraction) == ("800k", 0.05)


def test_grid_run_names_are_the_papers_whichever_name_the_method_has():
    spec = RunSpec("three_hoppers", "gradient_guided", 1, 400_000, 0.25)
    assert spec.name == "three_hoppers/ours_jt400k_sp25/seed1"
    assert spec.config().method == "gradient_guided"
    assert (spec.config().joint_samples, spec.config().split_fraction) == (400_000, 0.25)
    names = {s.name for s in paper_grid()}
    assert {"three_hoppers/ours_jt400k_sp25/seed5", "biped_fwd_bwd/ours_jt80k_sp5/seed3",
            "biped_fwd_bwd/random_jt400k_sp25/seed1", "torso_mass_8/ours_jt400k_sp25/seed2"} <= names
    assert not any("gradient_guided" in name for name in names)


def test_canonical_settings_keeps_key_order_and_leaves_unknown_methods_for_validation():
    assert list(canonical_settings({"seed": 1, "jt": 5, "method": "ours"})) == ["seed", "joint_samples", "method"]
    assert canonical_settings({"method": "nope"}) == {"method": "nope"}
