"""A run's training state as its checkpoints hold it, and the checks that a checkpoint fits a run.

``TrainState`` is the one place of the checkpoint schema (the files: ``run_dir.RunDir``; the atomic,
verified format: ``learning.checkpoint``). Tensors, by name::

    policy/<entry>, value/<entry>       the networks' state dicts (shared and per-task entries, masks)
    obs_rms/{mean,var,count}            the observation normaliser
    reward_norm/...                     the reward scaler (``ppo.reward_norm`` only)
    optim/state.<param>.<key>           the optimiser's moments (metadata ``optimizer`` holds the rest)
    spread/...                          the gradient-spread score's window
    revert/{policy,value,obs_rms}/...   the revert rule's last accepted values (``revert_drop_bound`` only)
    env/{physics,episode_return,episode_length,obs}, env/grace_left (with ``task_switch_grace`` only)
    torch_rng                           torch's generator state

and JSON metadata: ``format`` (``CHECKPOINT_FORMAT``), ``config`` (the run's config.yaml), ``experiment``,
``task_names``, ``obs_dim``, ``act_dim``, ``policy_in``, the counters ``iteration``, ``samples``,
``samples_real``, ``split_done``, the revert rule's ``reverts``, ``revert_streak``, ``accepted_return``
(NaN as ``"nan"``), ``accepted_samples``, the ``optimizer``'s hyper-parameters, the generators ``rng``,
``env_rng``, ``env_switch_rng`` and the return windows ``task_returns``, ``task_lengths``,
``pooled_returns``. A key a checkpoint lacks (written before it existed) reads as the value every run
had then (``from_checkpoint``), so every checkpoint ever written loads and resumes.

``open_run`` checks, once for every way a run begins (new, ``--resume``, ``start_from``), that it may
begin here, and returns the state it goes on from; ``checkpoint_mismatch`` is the one comparison of a
checkpoint with the run that would continue it, for a resume and for a start from another run.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .errors import short_repr
from .experiments import Experiment, complete_physics_record
from .learning import checkpoint as ckpt
from .methods import get_method
from .run_dir import RunDir, RunFailedError, latest_checkpoint

CHECKPOINT_FORMAT = "mt_specialize/run-checkpoint/1"
# Settings a resumed run may change: they do not change any result (the physics is bit-identical
# for any thread count, test/test_vec_env.py), only speed and bookkeeping.
RESULT_NEUTRAL_SETTINGS = {"physics_threads", "checkpoint_every", "keep_checkpoints"}
# Settings that shape the state a checkpoint carries: a run can start from another run's checkpoint
# only if they agree (with the number of tasks and the observation and action sizes)
STATE_SHAPE_SETTINGS = ("method", "envs_per_task", "split_value", "append_mode", "ppo.optimizer",
                        "ppo.policy_hidden", "ppo.value_hidden", "ppo.reward_norm", "ppo.obs_norm_update")


def json_float(value: float | None) -> float | str | None:
    """A float for JSON metadata (NaN as the string 'nan')."""
    return "nan" if value is not None and math.isnan(value) else value


@dataclass
class TrainState:
    """Everything a run needs to go on bit-identically (module docstring: the names in the file)."""

    # which run it is: compared when a run resumes or starts from it (checkpoint_mismatch)
    config: dict  #: the run's settings under the paper's names (``TrainConfig.to_run_config``)
    experiment: str
    task_names: list[str]
    obs_dim: int
    act_dim: int
    policy_in: int  #: the networks' input width: obs_dim (+ T with the task id)
    # how far it is
    iteration: int
    samples: int  #: counted samples (rewound by the revert rule)
    samples_real: int  #: every env step taken
    split_done: bool
    # the learner
    policy: dict[str, torch.Tensor]  #: ``SplitGaussianPolicy.state_dict()``
    value: dict[str, torch.Tensor]  #: ``SplitValue.state_dict()``
    optimizer: dict  #: ``optimizer.state_dict()`` (torch's format)
    obs_rms: dict[str, torch.Tensor]
    reward_norm: dict[str, torch.Tensor] | None  #: None without ``ppo.reward_norm``
    spread: dict[str, torch.Tensor]  #: ``GradientSpread.state_dict()``
    # the revert rule (revert_rule.RevertRule's fields)
    reverts: int
    revert_streak: int
    accepted_return: float | None
    accepted_samples: int
    accepted_values: dict[str, torch.Tensor] | None
    # the envs and the generators
    env: dict  #: ``MultiTaskVecEnv.get_state()`` (``grace_left`` only with a task-switch grace)
    obs: np.ndarray  #: (T, E, obs_dim) the observations to act on next
    rng: dict  #: the trainer's NumPy generator state (action noise, minibatch order)
    torch_rng: torch.Tensor
    # the return windows (episodes.EpisodeLog)
    task_returns: list[list[float]]
    task_lengths: list[list[int]]
    pooled_returns: list[float]

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) as ``learning.checkpoint.save_checkpoint`` writes them."""
        tensors = {f"policy/{k}": v.detach().clone() for k, v in self.policy.items()}
        tensors.update({f"value/{k}": v.detach().clone() for k, v in self.value.items()})
        tensors.update(ckpt.add_prefix("obs_rms/", self.obs_rms))
        if self.reward_norm is not None:
            tensors.update(ckpt.add_prefix("reward_norm/", self.reward_norm))
        optim_tensors, optim_meta = ckpt.optimizer_state_to_tensors(self.optimizer, prefix="optim/")
        tensors.update(optim_tensors)
        tensors.update(ckpt.add_prefix("spread/", self.spread))
        if self.accepted_values is not None:
            tensors.update(ckpt.add_prefix("revert/", self.accepted_values))
        for name in ("physics", "episode_return", "episode_length"):
            tensors[f"env/{name}"] = torch.from_numpy(self.env[name])
        tensors["env/obs"] = torch.from_numpy(np.ascontiguousarray(self.obs))
        if "grace_left" in self.env:
            tensors["env/grace_left"] = torch.from_numpy(self.env["grace_left"])
        tensors["torch_rng"] = self.torch_rng
        metadata = {
            "format": CHECKPOINT_FORMAT, "config": self.config, "experiment": self.experiment,
            "task_names": self.task_names, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "policy_in": self.policy_in, "iteration": self.iteration, "samples": self.samples,
            "samples_real": self.samples_real, "reverts": self.reverts, "revert_streak": self.revert_streak,
            "accepted_return": json_float(self.accepted_return),
            "accepted_samples": self.accepted_samples, "split_done": self.split_done, "optimizer": optim_meta,
            "rng": self.rng, "env_rng": self.env["rng"], "task_returns": self.task_returns,
            "task_lengths": self.task_lengths, "pooled_returns": self.pooled_returns,
        }
        if "switch_rng" in self.env:
            metadata["env_switch_rng"] = self.env["switch_rng"]
        return tensors, metadata

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict) -> TrainState:
        """The state a checkpoint holds; a key written only by later versions takes the value every run
        had before it: ``samples_real`` = ``samples`` and no reverts (no revert rule), no switch
        generator or grace (no task switches)."""
        env = {name: tensors[f"env/{name}"].numpy() for name in ("physics", "episode_return", "episode_length")}
        env["rng"] = meta["env_rng"]
        if "env_switch_rng" in meta:
            env["switch_rng"] = meta["env_switch_rng"]
        if "env/grace_left" in tensors:
            env["grace_left"] = tensors["env/grace_left"].numpy()
        accepted = meta.get("accepted_return")
        return cls(
            config=meta.get("config") or {}, experiment=meta.get("experiment", ""),
            task_names=list(meta["task_names"]), obs_dim=meta.get("obs_dim"), act_dim=meta.get("act_dim"),
            policy_in=meta.get("policy_in"), iteration=meta["iteration"], samples=meta["samples"],
            samples_real=meta.get("samples_real", meta["samples"]), split_done=meta["split_done"],
            policy=ckpt.strip_prefix("policy/", tensors), value=ckpt.strip_prefix("value/", tensors),
            optimizer=ckpt.optimizer_state_from_tensors(tensors, meta["optimizer"], prefix="optim/"),
            obs_rms=ckpt.strip_prefix("obs_rms/", tensors),
            reward_norm=ckpt.strip_prefix("reward_norm/", tensors) or None,
            spread=ckpt.strip_prefix("spread/", tensors),
            reverts=meta.get("reverts", 0), revert_streak=meta.get("revert_streak", 0),
            accepted_return=float("nan") if accepted == "nan" else accepted,
            accepted_samples=meta.get("accepted_samples", 0),
            accepted_values=ckpt.strip_prefix("revert/", tensors) or None,
            env=env, obs=tensors["env/obs"].numpy().copy(), rng=meta["rng"], torch_rng=tensors["torch_rng"],
            task_returns=meta["task_returns"], task_lengths=meta["task_lengths"], pooled_returns=meta["pooled_returns"])


# -- does a checkpoint fit this run? ----------------------------------------------------------------------

def config_differences(recorded: dict, config: TrainConfig, experiment: Experiment, *, source: str,
                       ignore: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{setting: (recorded value, this run's)} of the settings in which a recorded run config
    (config.yaml, a checkpoint's ``config``) differs from ``config`` (resolved), ``RESULT_NEUTRAL_SETTINGS``
    and ``ignore`` aside; PPO settings as ``ppo.<name>``. Read through TrainConfig, so a setting added
    since it was written compares as its default (ValueError naming ``source`` if it does not load)."""
    mine = config.to_dict()
    saved = TrainConfig.from_run_config(recorded, source=source)
    saved = saved.resolved(experiment.budget, experiment.batch_size).to_dict()
    if saved.get("task_physics") is None:  # written before the physics was recorded
        saved["task_physics"] = mine["task_physics"]
    else:  # a physics setting added since the run started compares as its default
        saved["task_physics"] = complete_physics_record(experiment, saved["task_physics"])
    neutral = set(RESULT_NEUTRAL_SETTINGS) | set(ignore)
    diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v and k not in neutral and k != "ppo"}
    theirs = saved.get("ppo") or {}
    diff.update({f"ppo.{k}": (theirs.get(k), v) for k, v in mine["ppo"].items() if theirs.get(k) != v})
    return diff


def checkpoint_mismatch(meta: dict, config: TrainConfig, experiment: Experiment, *, own_run: bool) -> str | None:
    """Why a training checkpoint (its metadata) does not fit the run of ``config`` on ``experiment``, as
    '<what>: it has A, this run B; ...', or None when it fits.

    own_run: it must be this run's own checkpoint (a resume): the same experiment, tasks and sizes, and
    every setting its recorded config resolves to (``config_differences``; the budget ``samples`` and
    ``joint_samples``, which a run may extend, and ``start_from`` aside). Otherwise (``start_from``) it
    must carry state of this run's shape: as many tasks, the same sizes and ``STATE_SHAPE_SETTINGS``."""
    names = [t.name for t in experiment.tasks]
    obs_dim, act_dim = experiment.tasks[0].obs_dim, experiment.tasks[0].act_dim
    policy_in = obs_dim + (len(names) if get_method(config.method).task_id_input else 0)
    differ = []
    if own_run and meta.get("experiment", experiment.name) != experiment.name:
        differ.append(f"experiment: it has {meta.get('experiment')!r}, this run {experiment.name!r}")
    theirs = list(meta.get("task_names", names))
    if (theirs != names) if own_run else (len(theirs) != len(names)):
        differ.append(f"tasks: it has {meta.get('task_names')}, this run {names}")
    for name, here in (("obs_dim", obs_dim), ("act_dim", act_dim), ("policy_in", policy_in)):
        if meta.get(name, here) != here:
            differ.append(f"{name}: it has {meta.get(name)!r}, this run {here!r}")
    if isinstance(meta.get("config"), dict):
        try:
            diff = config_differences(meta["config"], config, experiment, source="its recorded config",
                                      ignore=("start_from", "samples", "joint_samples"))
        except ValueError as exc:
            return f"its recorded config does not load here: {exc}"
        differ += [f"{name}: it has {short_repr(a)}, this run {short_repr(b)}" for name, (a, b) in diff.items()
                   if own_run or name in STATE_SHAPE_SETTINGS]
    return "; ".join(differ) or None


# -- where a run begins ---------------------------------------------------------------------------------

@dataclass
class StartPoint:
    """The state a run goes on from: its own newest checkpoint (``own``), another run's checkpoint
    (``start_from``), or none (a new run). ``over``: a resume before the run's first checkpoint, which
    starts the run over in its directory."""

    state: TrainState | None = None
    path: Path | None = None
    own: bool = False
    over: bool = False

    def settle(self, run_dir: RunDir, task_names: list[str], metrics_columns: list[str]) -> None:
        """Make the run directory that of this start point, once the state is loaded: a resumed run's
        files as its checkpoint left them (``RunDir.discard_after``); a run started from another run's
        checkpoint gets that run's metrics rows up to it (under ``metrics_columns``, when the task names
        agree) and its split file."""
        if self.own:
            run_dir.discard_after(self.state.iteration, self.state.split_done)
            return
        if self.over:
            run_dir.discard_after(0, split_done=False)
        if self.state is None or self.path.parent.name != "checkpoints":
            return
        source = RunDir(self.path.parent.parent)
        if self.state.task_names == list(task_names):
            run_dir.copy_metrics_from(source, self.state.iteration, metrics_columns)
        if self.state.split_done and source.split_path.is_file():
            shutil.copyfile(source.split_path, run_dir.split_path)


def read_start(source: str, config: TrainConfig, experiment: Experiment) -> StartPoint:
    """The checkpoint ``start_from`` names (a file, or a run directory's newest), after checking that
    the run of ``config`` can start from it: ValueError naming what differs; nothing is written."""
    path = Path(source).expanduser()
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise ValueError(f"start_from {source!r}: the directory holds no checkpoint "
                             f"(expected a run directory with checkpoints/ or a .safetensors file)")
        path = newest
    elif not path.is_file():
        raise ValueError(f"start_from {source!r} does not exist (give a training checkpoint file or a run directory)")
    try:
        tensors, meta = ckpt.load_checkpoint(path)
    except ckpt.CheckpointError as exc:
        raise ValueError(f"start_from {str(path)!r}: {exc}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"start_from {str(path)!r} is not a training checkpoint (format "
                         f"{meta.get('format')!r}; an exported serving checkpoint cannot be trained on)")
    differ = checkpoint_mismatch(meta, config, experiment, own_run=False)
    if differ:
        raise ValueError(f"cannot start from {str(path)!r}: what shapes its state differs from this run's ({differ})")
    if meta["samples"] >= config.samples:
        raise ValueError(f"cannot start from {str(path)!r}: it is at {meta['samples']:,} samples, this run's "
                         f"budget (samples) is {config.samples:,}; give a larger budget")
    return StartPoint(TrainState.from_checkpoint(tensors, meta), path)


def open_run(run_dir: RunDir, config: TrainConfig, experiment: Experiment, *, resume: bool) -> StartPoint:
    """Check that the run of ``config`` may begin in ``run_dir`` (locked) and return the state it goes
    on from. Every check comes before anything is written; a new run then writes config.yaml.

    * new: the directory holds no run (``RunExistsError``);
    * ``resume``: the run has not stopped for good (``RunFailedError``), its config.yaml agrees with
      ``config`` (``RESULT_NEUTRAL_SETTINGS`` aside), and it goes on from its newest checkpoint that
      verifies and is its own (``checkpoint_mismatch``; ``CheckpointError`` when none is) or, with no
      checkpoint yet, starts over;
    * ``start_from`` (a new run, or a resume before the first checkpoint): the checkpoint it names fits
      (``read_start``); ``config.start_from`` becomes that file's path, as config.yaml records it.
    """
    own_files = resume and bool(run_dir.checkpoint_paths())
    start = StartPoint()
    if config.start_from is not None and not own_files:
        start = read_start(config.start_from, config, experiment)
        config.start_from = str(start.path)
    if not resume:
        run_dir.create(config.to_run_config())
        return start
    where = str(run_dir.path)
    failure = run_dir.read_failure()
    if failure is not None:
        raise RunFailedError(
            f"cannot resume {where!r}: it stopped for good at {failure['samples_real']:,} real "
            f"samples ({failure['error']}: {failure['message']}). Its last checkpoint is kept: start a new "
            f"run from it with --start-from {where!r} and other settings")
    # a run that has its own checkpoints no longer depends on where it started
    diff = config_differences(run_dir.read_config(), config, experiment, source=str(run_dir.config_path),
                              ignore=("start_from",) if start.state is None else ())
    if diff:
        details = ", ".join(f"{k}: run has {a!r}, given {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"cannot resume {where!r} with a different config ({details})")
    found = run_dir.load_newest_checkpoint(
        CHECKPOINT_FORMAT, foreign=lambda meta: checkpoint_mismatch(meta, config, experiment, own_run=True))
    if found is None:  # stopped before its first checkpoint: start over in the same directory
        start.over = True
        return start
    path, tensors, meta = found
    return StartPoint(TrainState.from_checkpoint(tensors, meta), path, own=True)
