"""Training configuration: one dataclass whose fields declare the settings, method defaults, validation.

A run is fully described by a ``TrainConfig``; it is written to ``RUN_DIR/config.yaml`` and a resumed
run must match it. Each field is declared once with its help, kind, default, allowed values, unit and
what null means (``mt_specialize.settings``); ``SETTINGS`` holds them, and the YAML validation
(``TrainConfig.resolved``), the flags of ``mt-specialize train`` and the learner node's parameters are
made from them. Sample counts accept suffixes: ``400k``, ``3M``, ``3_000_000``.

The paper's names are aliases (``PAPER_ALIASES``, from the settings' ``paper_name``): ``jt`` =
``joint_samples``, ``sp`` = ``split_fraction``, method ``ours`` = ``gradient_guided``; a setting given
under both names must have one value. A run's config.yaml is written under the paper's names
(``TrainConfig.to_run_config``), the format every version of the package reads and resumes.

Imports neither torch nor MuJoCo (``PPOConfig`` is imported where a config is built), so the command
line's --help and the ROS nodes read the settings cheaply.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import methods, profiles
from .methods import get_method
from .settings import (Setting, boolean, choice, count, integer, mapping, number, parse_count, path, settings_of,
                       text)
from .yaml_files import load_yaml_file

if TYPE_CHECKING:
    from .learning.ppo import PPOConfig

__all__ = ["TrainConfig", "SETTINGS", "PAPER_ALIASES", "canonical_settings", "iteration_shape", "parse_count",
           "recorded_before"]

PROFILES = profiles.NAMES  # the profiles (mt_specialize.profiles: each setting with its source)
APPEND_MODES = ("raw", "normalized")
SPLIT_COUNTS = ("round", "floor_nonzero")
SCORE_STATISTICS = ("variance", "std")
SWITCH_BOOTSTRAPS = ("old_task", "new_task")  # TrainConfig.task_switch_bootstrap
TIME_LIMITS = ("bootstrap", "terminal")  # TrainConfig.time_limit
# The training settings of each profile, and the settings profiles gained later (mt_specialize.profiles)
PROFILE_SETTINGS: dict[str, dict[str, Any]] = profiles.TRAINING
RECORDED_BEFORE = profiles.RECORDED_BEFORE
MAX_SEED = 2**32 - 1  # seeds 0 .. 4,294,967,295 (NumPy's and torch's generators take them whole)
MAX_ENVS_PER_TASK = 4096  # parallel envs of one task (each a MuJoCo state stepped every control step)
DEFAULT_JOINT_SAMPLES = 400_000
DEFAULT_SPLIT_FRACTION = 0.25


def iteration_shape(config: "TrainConfig", n_tasks: int) -> tuple[int, int]:
    """(control steps, samples) of one iteration of a resolved ``config`` with ``n_tasks`` tasks: each of
    the tasks' envs_per_task envs steps round(batch_size / (n_tasks * envs_per_task)) times. ValueError
    when no iteration of about batch_size samples fits: more envs than the batch has samples, or an
    iteration beyond the budget (samples)."""
    envs = n_tasks * config.envs_per_task
    if envs > config.batch_size:
        raise ValueError(f"envs_per_task {config.envs_per_task:,} x {n_tasks} tasks = {envs:,} envs, more than the "
                         f"{config.batch_size:,} samples of an iteration (batch_size): every env steps at least once "
                         f"per iteration; give envs_per_task <= {config.batch_size // n_tasks:,}")
    steps = round(config.batch_size / envs)
    if envs * steps > config.samples:
        raise ValueError(f"samples {config.samples:,} is less than one iteration ({envs * steps:,} samples: "
                         f"{n_tasks} tasks x {config.envs_per_task} envs x {steps} steps); give samples >= "
                         f"{envs * steps:,}")
    return steps, envs * steps


def _method_choices() -> dict[str, str]:
    """Every name a method is given by -> its summary (a paper name: none), read from the registry
    ``methods.METHODS`` when asked (``register_method`` may add to it)."""
    out: dict[str, str] = {}
    for method in methods.METHODS.values():
        out[method.name] = method.summary + (f" (the paper's {method.paper_name})" if method.paper_name else "")
        if method.paper_name:
            out[method.paper_name] = ""
    return out


def _by_profile(name: str) -> str:
    """What null means for a setting the profile fills in, with each profile's value:
    ``the profile's (paper, paper_dart: 4; mujoco, none: 16)``."""
    groups: dict[str, list[str]] = {}
    for profile in profiles.NAMES:
        groups.setdefault(str(profiles.TRAINING[profile][name]), []).append(profile)
    return "the profile's (" + "; ".join(f"{', '.join(names)}: {value}" for value, names in groups.items()) + ")"


def _default_ppo() -> "PPOConfig":
    from .learning.ppo import PPOConfig  # torch: only where a config is built

    return PPOConfig()


def _same_setting(name: str, a: Any, b: Any) -> bool:
    """Whether two spellings of setting ``name`` are one value (``400k`` and 400000 are)."""
    if a == b:
        return True
    declared = SETTINGS.get(name)
    try:
        return declared is not None and declared.checked(a) == declared.checked(b)
    except (TypeError, ValueError):
        return False


def canonical_settings(data: Mapping[str, Any], source: str = "config",
                       label: Callable[[str], str] = str) -> dict[str, Any]:
    """``data`` with the paper's names replaced by the settings' names: ``jt`` -> ``joint_samples``,
    ``sp`` -> ``split_fraction``, and a method given by its paper name (``ours``) by its name
    (``gradient_guided``). Key order is kept. ValueError if a setting is given under both names with
    different values; ``label`` spells a key in that message (e.g. as a command-line flag)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = PAPER_ALIASES.get(key, key)
        if name in out and not _same_setting(name, out[name], value):
            alias = SETTINGS[name].paper_name
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}{label(alias)} is the paper's name of {label(name)}, and the two differ "
                             f"({label(alias)}={data[alias]}, {label(name)}={data[name]}); give one of them")
        if name not in out or key == name:
            out[name] = value
    method = out.get("method")
    if isinstance(method, str):
        try:
            out["method"] = get_method(method).name
        except ValueError:  # an unknown method is reported by TrainConfig.resolved, with the allowed ones
            pass
    return out


def _accepts_paper_names(cls):
    """Let ``cls(...)`` take the paper's names too (``TrainConfig(jt=400_000, sp=0.25, method="ours")``),
    and read and write each field under its paper's name (``config.jt``)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **canonical_settings(kwargs, source=cls.__name__))

    cls.__init__ = __init__
    for name, declared in settings_of(cls).items():
        if declared.paper_name:
            setattr(cls, declared.paper_name, property(
                lambda self, name=name: getattr(self, name),
                lambda self, value, name=name: setattr(self, name, value),
                doc=f"The paper's name of ``{name}``."))
    return cls


@_accepts_paper_names
@dataclass
class TrainConfig:
    """Everything that defines a training run (docs/method.md#the-algorithm). Each field is one setting, declared once: its
    help, kind, default, allowed values and what null means (``SETTINGS``; ``mt-specialize train --help``
    lists them). ``None`` fields take the method's, the experiment's or the profile's value
    (``resolved``). The paper's names are accepted as keywords and YAML keys, and read as attributes:
    ``jt``, ``sp`` and method ``ours``. Comments give what a one-line help cannot.
    """

    experiment: str = text("three_hoppers", "built-in experiment name or path to an experiment YAML file",
                           positional=True)
    method: str = choice("gradient_guided", _method_choices, "how the tasks are trained (mt_specialize.methods)")
    joint_samples: int | None = count(
        None, "joint-training samples (all tasks) before the split", paper_name="jt",
        null=f"{DEFAULT_JOINT_SAMPLES // 1000}k where the method chooses it (gradient_guided, random), else the method's")
    split_fraction: float | None = number(
        None, "fraction of the policy's entries split into per-task copies", low=0, high=1, paper_name="sp",
        null=f"{DEFAULT_SPLIT_FRACTION:g} where the method chooses it (gradient_guided, random), else the method's")
    # seeds the networks' initialisation, the envs' resets, the minibatch order and the random split
    seed: int = integer(1, "run seed (networks, env resets, minibatch order, random split)", low=0, high=MAX_SEED)
    samples: int | None = count(None, "budget: env steps summed over tasks", low=1, null="the experiment's budget")
    batch_size: int | None = count(None, "samples per iteration over all tasks", low=1, null="the experiment's")
    # the per-task batch is envs_per_task * steps, so each env steps batch_size / (tasks x envs_per_task)
    # control steps per iteration (its segment); paper: 4, as the authors' 4 workers
    envs_per_task: int | None = integer(None, "parallel envs per task", low=1, high=MAX_ENVS_PER_TASK,
                                        null=_by_profile("envs_per_task"))
    split_value: bool | None = boolean(None, "split the value net too", null="the method's (only separate does)")
    score_window: int = integer(10, "iterations of per-task gradients averaged into the split score (paper: 10)",
                                low=1)
    score_statistic: str | None = choice(None, SCORE_STATISTICS, "spread of the per-task gradients (population)",
                                         null=_by_profile("score_statistic"))
    # the split and the last iteration always write one
    checkpoint_every: int = integer(25, "iterations between checkpoints", low=1)
    keep_checkpoints: int = integer(3, "newest checkpoints kept in RUN_DIR/checkpoints (older ones deleted)", low=1)
    torch_threads: int = integer(1, "torch intra-op threads of the rollout and the update", low=1)
    # results do not depend on it, so a resumed run may change it (as checkpoint_every, keep_checkpoints)
    physics_threads: int | None = integer(None, "threads stepping the batched physics", low=1,
                                          null="the CPU cores, at most 2")
    # the PPO, network and normaliser settings (PPOConfig, mt_specialize.learning.ppo); YAML: a ppo: mapping
    ppo: PPOConfig = field(default_factory=_default_ppo)
    # paper = as the paper's authors ran it (their DART robots emulated in MuJoCo); paper_dart = the same
    # simulated by DART itself (physics engine: dart); mujoco = physically correct robots with Gymnasium's
    # contact conventions; none = every setting at its own default (the robots of the first grid: armature
    # 1.0, friction 0.9). A run directory written before profiles existed reads as none.
    profile: str = choice(profiles.DEFAULT, profiles.NAMES,
                          "robot physics and the training settings left null (mt_specialize.profiles): paper (as the "
                          "paper's authors ran it, MuJoCo), paper_dart (the same on DART: pip install .[dart]), "
                          "mujoco (physically correct robots), none (every setting at its own default)")
    # applied to every task on top of the profile and the task's own settings (mt_specialize.envs.physics)
    physics: dict = mapping("run-wide physics settings: setting -> value (mt_specialize.envs.physics)")
    # when the mean of the last 100 finished episodes (all tasks pooled) falls more than this below the
    # last accepted iteration's, the iteration is rejected: policy, value net and normaliser go back to
    # their values at the last accepted iteration and the counted samples rewind (the authors'
    # reward_drop_bound)
    revert_drop_bound: float | str | None = number(
        None, "pooled-return drop (return units) that rejects an iteration and reverts it", low=0, words=("off",),
        null=_by_profile("revert_drop_bound"))
    # a policy that cannot bring the pooled return back within the bound would otherwise loop for ever
    # (the authors' code has no such limit; the last checkpoint stays). Only read when the rule is on
    revert_max_streak: int = integer(50, "consecutive rejected iterations after which the run stops with an error",
                                     low=1)
    # raw = appended after normalisation; normalized = before it, as the authors' env did (the per-task
    # normaliser then maps it to ~0)
    append_mode: str | None = choice(None, APPEND_MODES, "where the one-hot task id (method append) joins the "
                                     "observation: after (raw) or before (normalized) normalisation",
                                     null=_by_profile("append_mode"))
    # round = round(split_fraction * n) entries; floor_nonzero = the int(split_fraction * n) highest scores,
    # only those with a nonzero score (the authors')
    split_count: str | None = choice(None, SPLIT_COUNTS, "how many entries the split takes",
                                     null=_by_profile("split_count"))
    # trains the switches a policy server makes (MultiTaskVecEnv switch_prob): the tasks driving one robot
    # (biped forward/backward)
    task_switch_prob: float = number(0.0, "per control step and env, the probability that the robot goes on "
                                     "under another task of its robot model", low=0, high=1, below_high=True)
    # e.g. 3M: learn each task, then its switches
    task_switch_start: int = count(0, "counted samples before task switches begin")
    # the new task's direction * velocity term is floored at 0 (MultiTaskVecEnv switch_grace), so that
    # falling never pays more than turning round; 0 = the tasks' rewards unchanged
    task_switch_grace: float = number(0.0, "time after a switch during which the new task does not charge the "
                                      "robot for the momentum it was handed", low=0, unit="seconds")
    # old_task = that task's own value of the state reached, as at a time limit (a gait is never charged
    # for a switch it cannot survive); new_task = the value of the task that takes the robot over, so the
    # policy learns the return the robot really gets when switches come at random times
    task_switch_bootstrap: str = choice("old_task", SWITCH_BOOTSTRAPS,
                                        "the value that ends a task's trajectory at a switch")
    # bootstrap = an episode cut by the time limit is valued from the state it reached (the value target
    # adds gamma * V(s_T)); terminal = the time limit ends the episode like a termination, no bootstrap
    # (the authors' PPO). A task switch always bootstraps
    time_limit: str | None = choice(None, TIME_LIMITS, "how an episode cut by the time limit (horizon) is valued",
                                    null=_by_profile("time_limit"))
    # networks, split masks, normalisers, Adam moments, env states, generators, counters and return
    # windows are taken from it, and training goes on under this run's settings (e.g. task switches,
    # other task rewards, a longer budget). The sample counters go on from the checkpoint's, so samples,
    # joint_samples and task_switch_start count from the source run's start; its metrics rows up to the
    # checkpoint are copied when the task names agree. What shapes the state must agree (tasks' number and
    # sizes, method, envs_per_task, network sizes, optimiser, normalisers)
    start_from: str | None = path(None, "a training checkpoint, or a run directory (its newest), this run starts "
                                  "from and trains on under its own settings", null="from scratch")
    # written by the trainer, not a setting: every task's resolved physics (task -> setting -> value)
    task_physics: dict | None = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """Build from a mapping (YAML), the paper's names accepted (``canonical_settings``); unknown keys
        are an error naming them and the allowed ones."""
        from .learning.ppo import PPOConfig

        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        data = canonical_settings(data, source)
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed), key=str)  # a YAML key may be a number
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys: {allowed} "
                             f"(and the paper's names {list(PAPER_ALIASES)})")
        ppo_data = data.pop("ppo", None) or {}
        if not isinstance(ppo_data, dict):
            raise ValueError(f"{source}: 'ppo' must be a mapping of PPO settings")
        ppo_allowed = [f.name for f in dataclasses.fields(PPOConfig)]
        ppo_unknown = sorted(set(ppo_data) - set(ppo_allowed), key=str)
        if ppo_unknown:
            raise ValueError(f"{source}: unknown ppo key(s) {ppo_unknown}; allowed: {ppo_allowed}")
        config = cls(**data, ppo=PPOConfig(**ppo_data))
        return config

    @classmethod
    def from_run_config(cls, data: dict, source: str = "config.yaml") -> "TrainConfig":
        """A run directory's saved config.yaml: a run written before profiles existed (no
        ``profile`` key) ran every setting at its own default, i.e. profile ``none``; a setting a
        profile gained later (``RECORDED_BEFORE``) that the file does not name takes the value every
        run had before it (``recorded_before``)."""
        if isinstance(data, dict):
            data = recorded_before(data)
        return cls.from_dict(data, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path, *, run_config: bool = False) -> "TrainConfig":
        """Read a YAML file of settings; ``run_config``: it is a run directory's config.yaml
        (see :meth:`from_run_config`)."""
        path = Path(path)
        data = load_yaml_file(path, "config file") or {}
        if run_config:
            return cls.from_run_config(data, source=str(path))
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict:
        """Every field by its name (plain values; ``ppo`` a mapping)."""
        return dataclasses.asdict(self)

    def to_run_config(self) -> dict:
        """What a run's config.yaml and its checkpoints' metadata hold: :meth:`to_dict` under the
        paper's names (``jt``, ``sp``, method ``ours``), in the same order: the file format every
        version reads, so a run resumes under older and newer code alike."""
        out = {_PAPER_NAME.get(key, key): value for key, value in self.to_dict().items()}
        try:
            out["method"] = get_method(self.method).file_name
        except ValueError:
            pass
        return out

    # -- validation and defaults --------------------------------------------------------------------
    def resolved(self, experiment_budget: int, experiment_batch: int) -> "TrainConfig":
        """A copy with every value checked against its setting (``SETTINGS``: text of a number taken as
        the number) and the nulls filled in from the experiment, the method and the profile
        (ValueError on bad input)."""
        c = dataclasses.replace(self, ppo=dataclasses.replace(self.ppo))
        method = get_method(c.method)
        c.method = method.name
        c.samples = experiment_budget if c.samples is None else c.samples
        c.batch_size = experiment_batch if c.batch_size is None else c.batch_size
        if c.revert_drop_bound is False:  # YAML 1.1 reads an unquoted off as false
            c.revert_drop_bound = "off"
        for name, declared in SETTINGS.items():
            setattr(c, name, declared.checked(getattr(c, name)))
        # the method's rules for the split settings
        fixed = {"joint_samples": 0 if method.joint_phase == "none" else None,
                 "split_fraction": method.split_fraction}
        for name, want in fixed.items():
            given = getattr(c, name)
            if given is not None and want is not None and given != want:
                choosers = " or ".join(repr(m.name) for m in methods.METHODS.values() if m.chooses_split)
                raise ValueError(f"method {c.method!r} fixes {SETTINGS[name].label} = {want}; got {given} "
                                 f"(use method {choosers} to choose joint_samples and split_fraction)")
        if method.split_fraction is not None:
            c.split_fraction = method.split_fraction
        elif c.split_fraction is None:
            c.split_fraction = DEFAULT_SPLIT_FRACTION
        if method.joint_phase == "budget":
            c.joint_samples = c.samples
        elif method.joint_phase == "none":
            c.joint_samples = 0
        else:
            c.joint_samples = DEFAULT_JOINT_SAMPLES if c.joint_samples is None else c.joint_samples
            if c.joint_samples > c.samples:
                raise ValueError(f"joint_samples (jt) = {c.joint_samples:,} is beyond the budget "
                                 f"samples = {c.samples:,}")
        if method.scores_gradients and c.joint_samples == 0 and 0.0 < c.split_fraction < 1.0:
            raise ValueError(f"method {c.method!r} with joint_samples (jt) = 0 has no joint-training gradients "
                             "to score; use joint_samples > 0, or split_fraction 1 (that is method 'separate')")
        if c.split_value is None:
            c.split_value = method.split_value_net
        # the profile's values of the settings left null (TrainConfig fields and ppo.<field>)
        for name, value in PROFILE_SETTINGS[c.profile].items():
            owner = c if name in SETTINGS else c.ppo
            if getattr(owner, name) is None:
                setattr(owner, name, value)
        return c


#: every setting of a run, by field name (``ppo`` and ``task_physics`` are no settings of their own)
SETTINGS: dict[str, Setting] = settings_of(TrainConfig)
# the paper's names of settings (Yu, Turk & Liu, Table I: "jt=400k, sp=25%") -> the names here;
# accepted wherever a setting is given, and the keys of a run's config.yaml
PAPER_ALIASES = {declared.paper_name: name for name, declared in SETTINGS.items() if declared.paper_name}
_PAPER_NAME = {name: alias for alias, name in PAPER_ALIASES.items()}


def recorded_before(data: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved config.yaml (a mapping) with the settings it ran at made explicit: no ``profile``
    -> ``none`` (written before profiles existed); every ``RECORDED_BEFORE`` setting it does not name ->
    the value runs had before the setting existed."""
    out = dict(data)
    out.setdefault("profile", "none")
    for key, value in RECORDED_BEFORE.items():
        group, _, name = key.rpartition(".")
        if group == "":
            out.setdefault(name, value)
        elif group == "ppo":
            ppo = out.get("ppo")
            if ppo is None or isinstance(ppo, Mapping):
                out["ppo"] = {name: value, **(ppo or {})}
    return out
