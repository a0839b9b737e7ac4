"""Methods are registered objects: what each fixes, and that a new one needs only a registration."""
from __future__ import annotations

import pytest

from mt_specialize.config import TrainConfig
from mt_specialize.methods import METHODS, Method, get_method, method_names, register_method


def _resolved(**kw) -> TrainConfig:
    return TrainConfig(**kw).resolved(experiment_budget=3_000_000, experiment_batch=4000)


def test_the_papers_methods_are_registered():
    assert list(METHODS) == ["gradient_guided", "joint", "separate", "random", "append"]
    assert [m.name for m in METHODS.values() if m.chooses_split] == ["gradient_guided", "random"]
    assert get_method("gradient_guided").scores_gradients and get_method("random").random_mask
    assert get_method("append").task_id_input and get_method("separate").split_value_net


def test_the_papers_name_of_a_method_finds_it_and_is_what_run_files_record():
    assert get_method("ours") is get_method("gradient_guided")
    assert [m.file_name for m in METHODS.values()] == ["ours", "joint", "separate", "random", "append"]
    assert method_names() == ["gradient_guided", "ours", "joint", "separate", "random", "append"]


@pytest.mark.parametrize("method, joint_samples, split_fraction, split_value", [
    ("gradient_guided", 400_000, 0.25, False), ("ours", 400_000, 0.25, False), ("random", 400_000, 0.25, False),
    ("joint", 3_000_000, 0.0, False), ("append", 3_000_000, 0.0, False), ("separate", 0, 1.0, True)])
def test_each_method_fills_its_defaults(method, joint_samples, split_fraction, split_value):
    c = _resolved(method=method)
    assert (c.joint_samples, c.split_fraction, c.split_value) == (joint_samples, split_fraction, split_value)


def test_a_fixed_setting_given_otherwise_is_refused_naming_the_methods_that_choose_it():
    with pytest.raises(ValueError, match=r"method 'separate' fixes split_fraction \(sp\) = 1.0; got 0.5 "
                                         r"\(use method 'gradient_guided' or 'random'"):
        _resolved(method="separate", sp=0.5)
    with pytest.raises(ValueError, match="allowed methods: \\['gradient_guided', 'ours', 'joint'"):
        _resolved(method="nope")


def test_a_registered_method_is_accepted_by_the_config(monkeypatch):
    monkeypatch.setattr("mt_specialize.methods.METHODS", dict(METHODS))
    register_method(Method("late_split", "joint until 2M, then split a fixed half", joint_phase="chosen",
                           split_fraction=0.5, scores_gradients=True))
    c = _resolved(method="late_split", joint_samples="2M")
    assert (c.joint_samples, c.split_fraction) == (2_000_000, 0.5)
    with pytest.raises(ValueError, match="'late_split' is already registered"):
        register_method(Method("late_split", "again", joint_phase="budget", split_fraction=0.0))
    with pytest.raises(ValueError, match="'ours' is already registered"):  # a paper name is taken too
        register_method(Method("mine", "again", joint_phase="budget", split_fraction=0.0, paper_name="ours"))
