"""Training configuration: one dataclass, method defaults, validation with clear errors.

A run is fully described by a ``TrainConfig``; it is written to ``RUN_DIR/config.yaml`` and a resumed
run must match it. Sample counts accept suffixes: ``400k``, ``3M``, ``3_000_000``.

The paper's names are aliases (``PAPER_ALIASES``): ``jt`` = ``joint_samples``, ``sp`` =
``split_fraction``, method ``ours`` = ``gradient_guided``; a setting given under both names must have
one value. A run's config.yaml is written under the paper's names (``TrainConfig.to_run_config``), the
format every version of the package reads and resumes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import profiles
from .learning.ppo import PPOConfig
from .methods import METHODS, get_method
from .yaml_files import load_yaml_file

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
# the paper's names of settings (Yu, Turk & Liu, Table I: "jt=400k, sp=25%") -> the names here;
# accepted wherever a setting is given, and the keys of a run's config.yaml
PAPER_ALIASES = {"jt": "joint_samples", "sp": "split_fraction"}
_PAPER_NAME = {name: alias for alias, name in PAPER_ALIASES.items()}

_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")


def parse_count(value: Any, what: str = "count") -> int:
    """``400k`` -> 400000, ``3M`` -> 3000000, ``1.5M`` -> 1500000; ints pass through."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a sample count like 400k or 3M, got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    else:
        match = _COUNT.match(str(value).replace("_", ""))
        if not match:
            raise ValueError(f"{what} must be a sample count like 400k, 3M or 3000000, got {value!r}")
        scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()]
        number = float(match.group(1)) * scale
        if not number.is_integer():
            raise ValueError(f"{what} must be a whole number of samples, got {value!r}")
        count = int(number)
    if count < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return count


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


def _same_setting(name: str, a: Any, b: Any) -> bool:
    """Whether two spellings of setting ``name`` are one value (``400k`` and 400000 are)."""
    if a == b:
        return True
    try:
        if name == "joint_samples":
            return parse_count(a, name) == parse_count(b, name)
        if name == "split_fraction":
            return float(a) == float(b)
    except (TypeError, ValueError):
        pass
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
            alias = _PAPER_NAME[name]
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
    """Let ``cls(...)`` take the paper's names too (``TrainConfig(jt=400_000, sp=0.25, method="ours")``)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **canonical_settings(kwargs, source=cls.__name__))

    cls.__init__ = __init__
    return cls


@_accepts_paper_names
@dataclass
class TrainConfig:
    """Everything that defines a training run (SPEC §5). ``None`` fields take the method's default.
    The paper's names are accepted as keywords and YAML keys, and read as attributes: ``jt``, ``sp``
    and method ``ours``.

    experiment:     built-in experiment name or path to an experiment YAML file
    method:         gradient_guided (the paper's ``ours``) | joint | separate | random | append
                    (mt_specialize.methods: what each fixes)
    joint_samples:  the paper's ``jt``: joint-training samples (all tasks) before the split
                    (gradient_guided, random); default 400k
    split_fraction: the paper's ``sp``: fraction of policy entries split into per-task copies
                    (gradient_guided, random); default 0.25
    seed:           seeds the networks' initialisation, the envs' resets, the minibatch order and the
                    random split
    samples:        total env steps summed over tasks (default: the experiment's budget)
    batch_size:     samples per iteration over all tasks (default: the experiment's)
    envs_per_task:  parallel envs per task; the per-task batch is envs_per_task * steps, so each env
                    steps batch_size / (tasks x envs_per_task) control steps per iteration (its
                    segment); null = the profile's (paper: 4, as the authors' 4 workers; else 16)
    split_value:    split the value net too (default: the method's; only ``separate`` does)
    score_window:   iterations of per-task gradients averaged into the split score (paper: 10)
    score_statistic: ``variance`` | ``std`` (population) of the per-task gradients; null = profile's
    checkpoint_every: iterations between checkpoints (the split and the last iteration always write one)
    keep_checkpoints: newest checkpoints kept in RUN_DIR/checkpoints; older ones are deleted
    torch_threads:  torch intra-op threads (torch.set_num_threads) of the rollout and the update
    physics_threads: threads stepping the batched physics; null = the CPU cores, at most 2. Results do not
                    depend on it, so a resumed run may change it (as checkpoint_every, keep_checkpoints)
    ppo:            the PPO, network and normaliser settings (``PPOConfig``; YAML: a ``ppo:`` mapping)
    profile:        paper | paper_dart | mujoco | none: a bundle of robot physics (mt_specialize.envs.physics)
                    and of the training settings below that are null (PROFILE_SETTINGS). ``paper`` = as the
                    paper's authors ran it (their DART robots emulated in MuJoCo), ``paper_dart`` = the same
                    simulated by DART itself (physics engine: dart), ``mujoco`` = physically correct robots with Gymnasium's
                    contact conventions, ``none`` = every setting at its own default (the robots of
                    the first grid: armature 1.0, friction 0.9). A run directory written before
                    profiles existed reads as ``none``.
    physics:        run-wide physics settings applied to every task on top of the profile and the
                    task's own settings (mapping setting -> value, see mt_specialize.envs.physics)
    revert_drop_bound: return units, or "off": when the mean of the last 100 finished episodes
                    (all tasks pooled) falls more than this below the last accepted iteration's, the
                    iteration is rejected: policy, value net and normaliser go back to their values
                    at the last accepted iteration and the counted samples rewind (the authors'
                    ``reward_drop_bound``); null = the profile's
    revert_max_streak: consecutive rejected iterations after which the run stops with an error
                    instead of reverting on: a policy that cannot bring the pooled return back within
                    the bound would otherwise loop for ever (the authors' code has no such limit;
                    the last checkpoint stays). Only read when the revert rule is on
    append_mode:    ``raw`` = the one-hot task id is appended after observation normalisation;
                    ``normalized`` = before it, as the authors' env did (the per-task normaliser then
                    maps it to ~0); null = the profile's
    split_count:    ``round`` = round(split_fraction * n) entries; ``floor_nonzero`` = the
                    int(split_fraction * n) highest
                    scores, only those with a nonzero score (the authors'); null = the profile's
    task_switch_prob: per control step and env, the probability that a robot walking under one task
                    goes on under another task that drives the same robot (biped forward/backward):
                    trains the switches a policy server makes (MultiTaskVecEnv ``switch_prob``); 0 = never
    task_switch_start: counted samples before task switches begin (e.g. 3M: learn each task, then its
                    switches); 0 = from the start
    task_switch_grace: s after a switch during which the new task's reward does not charge the robot
                    for the momentum it was handed (its direction * velocity term floored at 0), so
                    that falling never pays more than turning round (MultiTaskVecEnv ``switch_grace``);
                    0 = the tasks' rewards unchanged
    task_switch_bootstrap: the value that ends a task's trajectory at a switch (the robot goes on
                    under another task): ``old_task`` = that task's own value of the state reached, as
                    at a time limit (a gait is never charged for a switch it cannot survive);
                    ``new_task`` = the value of the task that takes the robot over, so the policy
                    learns the return the robot really gets when switches come at random times
    start_from:     a training checkpoint file, or a run directory (its newest checkpoint), that this run
                    starts from instead of from scratch: networks, split masks, normalisers, Adam
                    moments, env states, generators, counters and return windows are taken from it,
                    and training goes on under this run's settings (e.g. task switches, other task
                    rewards, a longer budget). The sample counters go on from the checkpoint's, so
                    ``samples``, ``joint_samples`` and ``task_switch_start`` count from the source
                    run's start; its metrics rows up to the checkpoint are copied when the task names
                    agree. What shapes the state must agree (tasks' number and sizes, method,
                    envs_per_task, network sizes, optimiser, normalisers); null = from scratch
    time_limit:     ``bootstrap`` = an episode cut by the time limit (horizon) is valued from the state
                    it reached (the value target adds gamma * V(s_T)); ``terminal`` = the time limit
                    ends the episode like a termination, no bootstrap (the authors' PPO); null = the
                    profile's (paper: terminal, else bootstrap). A task switch always bootstraps
    task_physics:   written by the trainer, not a setting: every task's resolved physics (task ->
                    setting -> value), recorded in the run's config.yaml
    """

    experiment: str = "three_hoppers"
    method: str = "gradient_guided"
    joint_samples: int | None = None
    split_fraction: float | None = None
    seed: int = 1
    samples: int | None = None
    batch_size: int | None = None
    envs_per_task: int | None = None
    split_value: bool | None = None
    score_window: int = 10
    score_statistic: str | None = None
    checkpoint_every: int = 25
    keep_checkpoints: int = 3
    torch_threads: int = 1
    physics_threads: int | None = None
    ppo: PPOConfig = field(default_factory=PPOConfig)
    profile: str = "mujoco"
    physics: dict = field(default_factory=dict)
    revert_drop_bound: float | str | None = None
    revert_max_streak: int = 50
    append_mode: str | None = None
    split_count: str | None = None
    task_switch_prob: float = 0.0
    task_switch_start: int = 0
    task_switch_grace: float = 0.0
    task_switch_bootstrap: str = "old_task"
    time_limit: str | None = None
    start_from: str | None = None
    task_physics: dict | None = None

    # -- the paper's names ---------------------------------------------------------------------------
    @property
    def jt(self):
        """The paper's name of ``joint_samples``."""
        return self.joint_samples

    @jt.setter
    def jt(self, value) -> None:
        self.joint_samples = value

    @property
    def sp(self):
        """The paper's name of ``split_fraction``."""
        return self.split_fraction

    @sp.setter
    def sp(self, value) -> None:
        self.split_fraction = value

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """Build from a mapping (YAML), the paper's names accepted (``canonical_settings``); unknown keys
        are an error naming them and the allowed ones."""
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
        """A copy with method defaults filled in and every value checked (ValueError on bad input)."""
        c = dataclasses.replace(self, ppo=dataclasses.replace(self.ppo))
        method = get_method(c.method)
        c.samples = parse_count(c.samples if c.samples is not None else experiment_budget, "samples")
        if c.samples <= 0:
            raise ValueError("samples must be > 0")
        c.batch_size = parse_count(c.batch_size if c.batch_size is not None else experiment_batch, "batch_size")
        c.method = method.name
        if c.joint_samples is not None:
            c.joint_samples = parse_count(c.joint_samples, "joint_samples (jt)")
        if c.split_fraction is not None:
            try:
                c.split_fraction = float(c.split_fraction)
            except (TypeError, ValueError):
                raise ValueError(f"split_fraction (sp) must be a number in [0, 1], got {c.split_fraction!r}") from None
            if not 0.0 <= c.split_fraction <= 1.0:
                raise ValueError("split_fraction (sp) must be in [0, 1] (a fraction of the policy's entries), "
                                 f"got {c.split_fraction}")
        fixed = {"joint_samples": 0 if method.joint_phase == "none" else None,
                 "split_fraction": method.split_fraction}
        for name, given in (("joint_samples", c.joint_samples), ("split_fraction", c.split_fraction)):
            want = fixed[name]
            if given is not None and want is not None and given != want:
                choosers = " or ".join(repr(m.name) for m in METHODS.values() if m.chooses_split)
                raise ValueError(f"method {c.method!r} fixes {name} ({_PAPER_NAME[name]}) = {want}; got {given} "
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
        if c.profile not in PROFILES:
            raise ValueError(f"unknown profile {c.profile!r}; allowed profiles: {list(PROFILES)}")
        defaults = PROFILE_SETTINGS[c.profile]
        if c.envs_per_task is None:
            c.envs_per_task = defaults["envs_per_task"]
        if c.time_limit is None:
            c.time_limit = defaults["time_limit"]
        if c.time_limit not in TIME_LIMITS:
            raise ValueError(f"time_limit must be one of {list(TIME_LIMITS)}, got {c.time_limit!r}")
        if c.ppo.advantage_norm is None:
            c.ppo.advantage_norm = defaults["advantage_norm"]
        for name in ("envs_per_task", "score_window", "checkpoint_every", "keep_checkpoints", "torch_threads"):
            value = getattr(c, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if c.physics_threads is not None and (not isinstance(c.physics_threads, int) or c.physics_threads < 1):
            raise ValueError(f"physics_threads must be an integer >= 1 or null, got {c.physics_threads!r}")
        p = c.task_switch_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"task_switch_prob must be a probability in [0, 1), got {p!r}")
        c.task_switch_start = parse_count(c.task_switch_start, "task_switch_start")
        g = c.task_switch_grace
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < float("inf"):
            raise ValueError(f"task_switch_grace must be a non-negative finite number of seconds, got {g!r}")
        if c.task_switch_bootstrap not in SWITCH_BOOTSTRAPS:
            raise ValueError(f"task_switch_bootstrap must be one of {list(SWITCH_BOOTSTRAPS)}, "
                             f"got {c.task_switch_bootstrap!r}")
        if c.start_from is not None:
            if not isinstance(c.start_from, (str, Path)) or not str(c.start_from):
                raise ValueError(f"start_from must be a checkpoint file or run directory (a path), "
                                 f"got {c.start_from!r}")
            c.start_from = str(c.start_from)
        if not isinstance(c.physics, dict):
            raise ValueError(f"physics must be a mapping of physics settings, got {c.physics!r}")
        if c.ppo.optimizer is None:
            c.ppo.optimizer = defaults["optimizer"]
        for name in ("revert_drop_bound", "append_mode", "score_statistic", "split_count"):
            if getattr(c, name) is None:
                setattr(c, name, defaults[name])
        if c.revert_drop_bound is False:
            c.revert_drop_bound = "off"
        if c.revert_drop_bound != "off":
            bound = c.revert_drop_bound
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) \
                    or bound < 0:
                raise ValueError(f"revert_drop_bound must be a return difference >= 0 or 'off', got {bound!r}")
            c.revert_drop_bound = float(bound)
        if isinstance(c.revert_max_streak, bool) or not isinstance(c.revert_max_streak, int) or c.revert_max_streak < 1:
            raise ValueError(f"revert_max_streak must be an integer >= 1, got {c.revert_max_streak!r}")
        for name, allowed in (("append_mode", APPEND_MODES), ("score_statistic", SCORE_STATISTICS),
                              ("split_count", SPLIT_COUNTS)):
            if getattr(c, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(c, name)!r}")
        if not isinstance(c.seed, int) or isinstance(c.seed, bool) or not 0 <= c.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED:,}, got {c.seed!r}")
        if c.envs_per_task > MAX_ENVS_PER_TASK:
            raise ValueError(f"envs_per_task must be at most {MAX_ENVS_PER_TASK:,} (every env of every task is "
                             f"stepped at least once per iteration), got {c.envs_per_task:,}")
        return c


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
