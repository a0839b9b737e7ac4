"""Training settings declared once (``config.SETTINGS``): each is a YAML key, a flag of ``mt-specialize
train`` and (test/ros/test_learner.py) a learner parameter, checked by one rule that names what it takes."""
from __future__ import annotations

import pytest

from mt_specialize import cli
from mt_specialize.config import SETTINGS, TrainConfig
from mt_specialize.settings import Setting, settings_of

SCALAR = {name: declared for name, declared in SETTINGS.items() if declared.scalar}
BUDGET, BATCH = 10**9, 4000  # an experiment's budget and batch that every example below fits


def example(declared: Setting) -> str:
    """A value ``declared`` takes other than its default, as a command line spells it."""
    if declared.kind == "choice":
        return [c for c in declared.choice_summaries() if c != declared.default][-1]
    if declared.kind == "boolean":
        return "true"
    if declared.kind == "count":
        return "5M"
    if declared.kind == "integer":
        return str(int(declared.high if declared.high is not None else declared.low + 1))
    if declared.kind == "number":
        return str((declared.low + declared.high) / 2 if declared.high is not None else declared.low + 1.5)
    return {"path": "runs/elsewhere", "text": "biped_fwd_bwd"}[declared.kind]


def _resolved(config: TrainConfig) -> TrainConfig:
    return config.resolved(BUDGET, BATCH)


def _train_flags(name: str, value: str) -> list[str]:
    """The command-line words that give setting ``name`` the value ``value``."""
    if SETTINGS[name].positional:
        return [value]
    if SETTINGS[name].kind == "boolean":  # --split-value, --no-split-value
        return [cli.setting_flag(name) if value == "true" else "--no-" + cli.setting_flag(name)[2:]]
    return [cli.setting_flag(name), value]


@pytest.mark.parametrize("name", list(SCALAR))
def test_every_setting_is_a_flag_and_a_yaml_key_with_one_meaning(name):
    declared, value = SETTINGS[name], example(SETTINGS[name])
    args = cli.build_parser().parse_args(["train", *_train_flags(name, value)])
    assert args.experiment is None or name == "experiment"
    from_flag = _resolved(cli._train_config(args))
    from_yaml = _resolved(TrainConfig.from_dict({name: value}))
    assert getattr(from_flag, name) == getattr(from_yaml, name) == declared.checked(value)
    assert getattr(from_flag, name) != getattr(_resolved(TrainConfig()), name)  # the flag took effect
    if declared.paper_name:  # --jt is --joint-samples
        args = cli.build_parser().parse_args(["train", cli.setting_flag(declared.paper_name), value])
        assert getattr(_resolved(cli._train_config(args)), name) == declared.checked(value)


def test_a_flag_not_given_leaves_the_config_files_value(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task_switch_prob: 0.003\nkeep_checkpoints: 7\nsplit_value: true\n")
    args = cli.build_parser().parse_args(["train", "--config", str(path), "--keep-checkpoints", "9"])
    config = _resolved(cli._train_config(args))
    assert (config.task_switch_prob, config.keep_checkpoints, config.split_value) == (0.003, 9, True)
    args = cli.build_parser().parse_args(["train", "--config", str(path), "--no-split-value"])
    assert _resolved(cli._train_config(args)).split_value is False


@pytest.mark.parametrize("name", list(SCALAR))
def test_help_gives_each_settings_meaning_allowed_values_and_default(name):
    declared = SETTINGS[name]
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    action = next(a for a in train._actions if a.dest == name)
    assert action.help.replace("%%", "%") == declared.describe()
    assert declared.help in action.help and declared.default_text() in action.help
    if declared.kind == "choice":
        assert list(action.choices) == list(declared.choice_summaries())


@pytest.mark.parametrize("name, value, message", [
    ("seed", "-1", "seed must be an integer from 0 to 4,294,967,295, got '-1'"),
    ("envs_per_task", "0", "envs_per_task must be an integer from 1 to 4,096, got '0'"),
    ("keep_checkpoints", "two", "keep_checkpoints must be an integer >= 1, got 'two'"),
    ("split_fraction", "1.5", "split_fraction (sp) must be a number in [0, 1], got '1.5'"),
    ("task_switch_prob", "1", "task_switch_prob must be a number in [0, 1), got '1'"),
    ("task_switch_grace", "-2", "task_switch_grace must be a non-negative finite number of seconds, got '-2'"),
    ("task_switch_grace", "inf", "task_switch_grace must be a non-negative finite number of seconds, got 'inf'"),
    ("revert_drop_bound", "never", "revert_drop_bound must be a non-negative finite number or 'off', got 'never'"),
    ("samples", "0", "samples must be a sample count like 400k or 3M (at least 1), got '0'"),
    ("task_switch_start", "1x", "task_switch_start must be a sample count like 400k, 3M or 3000000, got '1x'"),
])
def test_a_bad_value_exits_2_naming_the_setting_and_what_it_takes(tmp_path, capsys, name, value, message):
    code = cli.main(["train", "three_hoppers", *_train_flags(name, value), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"mt-specialize train: error: {message}" in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        _resolved(TrainConfig.from_dict({name: value}))


@pytest.mark.parametrize("name", [n for n, d in SCALAR.items() if d.kind == "choice"])
def test_an_unknown_choice_exits_2_listing_the_allowed_ones(capsys, name):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", cli.setting_flag(name), "bogus"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in err and "Traceback" not in err
    assert all(repr(c) in err for c in SETTINGS[name].choice_summaries())


def test_yaml_numbers_may_be_written_as_text_and_null_takes_the_default():
    config = _resolved(TrainConfig.from_dict({"seed": "3", "task_switch_prob": "0.003", "samples": "2M",
                                              "envs_per_task": None, "split_value": "false"}))
    assert (config.seed, config.task_switch_prob, config.samples) == (3, 0.003, 2_000_000)
    assert config.envs_per_task == 16 and config.split_value is False  # the profile's, and as written
    assert _resolved(TrainConfig(revert_drop_bound=False)).revert_drop_bound == "off"  # YAML 1.1's unquoted off
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 4,294,967,295, got None"):
        _resolved(TrainConfig(seed=None))
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 4,294,967,295, got 3.0"):
        _resolved(TrainConfig(seed=3.0))  # a float is no seed, whatever its value


def test_the_paper_names_come_from_the_declarations():
    from mt_specialize.config import PAPER_ALIASES

    assert PAPER_ALIASES == {"jt": "joint_samples", "sp": "split_fraction"}
    config = TrainConfig(jt="80k")
    config.sp = 0.5
    assert (config.joint_samples, config.split_fraction, config.jt) == ("80k", 0.5, "80k")


def test_a_setting_declared_on_a_dataclass_is_read_back_with_its_name():
    from dataclasses import dataclass

    from mt_specialize import settings

    @dataclass
    class Toy:
        rate: float = settings.number(2.0, "steps per second", low=0, unit="Hz")
        mode: str | None = settings.choice(None, ("a", "b"), "how", null="the profile's")
        plain: int = 3

    declared = settings_of(Toy)
    assert list(declared) == ["rate", "mode"] and Toy().rate == 2.0 and Toy().mode is None
    assert declared["rate"].describe() == "steps per second; a non-negative finite number of Hz (default: 2)"
    assert declared["mode"].checked(None) is None and declared["mode"].checked("b") == "b"
    with pytest.raises(ValueError, match=r"^mode must be one of \['a', 'b'\], got 'c'$"):
        declared["mode"].checked("c")
    with pytest.raises(ValueError, match=r"^rate must be a non-negative finite number of Hz, got None$"):
        declared["rate"].checked(None)
