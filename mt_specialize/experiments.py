"""Experiments: named task sets with a batch size (samples per PPO iteration, all tasks together,
split equally among them) and a sample budget (docs/method.md#robots-and-tasks).

``get_experiment`` takes a built-in name or a YAML file::

    name: heavy_vs_user          # optional, default: the file's stem
    batch_size: 4000             # required, samples per iteration over all tasks
    budget: 3000000              # optional, default 3_000_000 samples
    tasks:
      - hopper_capsule           # a built-in task name (mt_specialize.envs.tasks.TASKS)
      - name: heavy_capsule      # or a task defined here
        robot: hopper_capsule    # built-in robot or a URDF path relative to this YAML file
        family: hopper           # hopper | biped (default: the built-in robot's family)
        direction: 1             # +1 / -1 (default +1)
        torso_mass: 6.0          # kg (default: the URDF's)
        mass_scale: 1.0          # every link's mass and inertia (default 1)
        gears: [200, 200, 200]   # torque scale per actuated joint, N*m per unit action (default: the robot's)
        alive_bonus: 1.0         # default 1
        ctrl_cost: 0.001         # default: 1e-3 hopper, 0.1 biped
        speed_cap: 1.0           # m/s: speed rewarded at most this (default: none)
        physics:                 # optional physics settings (mt_specialize.envs.physics), e.g.
          armature: 0.0          #   kg*m^2 on the actuated hinges
          foot_friction: 2.0     #   or one value per foot (leaf link)
          inertia: dart          #   true | dart
          damping: 1.0           #   N*m*s/rad on the actuated hinges (default: the robot file's)

A robot may also be ``gymnasium:hopper`` (Gymnasium's Hopper-v5 model file) or ``gymnasium:walker2d``
(Walker2d-v5's, family biped). Settings such a task leaves unset take the file's values under profile
``none``; other profiles set theirs (e.g. ``mujoco``'s biped frictions), so give ``physics:`` explicitly
to keep the file's.

``apply_profile`` resolves every task's physics under a named profile (``physics.PROFILES``);
``resolved_physics`` lists the result per task for a run's config.yaml; ``complete_physics_record``
reads such a record back with the settings it predates at their defaults.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mt_specialize.envs import physics, planar, robots
from mt_specialize.envs.physics import PROFILE_NAMES, PROFILES  # noqa: F401  (the profiles, re-exported)
from mt_specialize.envs.families import FAMILIES
from mt_specialize.envs.tasks import DEFAULT_ALIVE_BONUS, TASKS, TaskSpec, get_task
from mt_specialize.yaml_files import load_yaml_file

DEFAULT_BUDGET = 3_000_000  # samples, Table I
EXPERIMENT_KEYS = ("name", "batch_size", "budget", "tasks")
TASK_KEYS = ("name", "robot", "family", "direction", "torso_mass", "mass_scale", "gears", "alive_bonus",
             "ctrl_cost", "speed_cap", "overspeed_penalty", "physics")


@dataclass(frozen=True)
class Experiment:
    """A named set of tasks trained together; batch_size and budget in samples (all tasks)."""

    name: str
    tasks: tuple[TaskSpec, ...]
    batch_size: int
    budget: int = DEFAULT_BUDGET

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError(f"experiment {self.name!r}: tasks must not be empty")
        for key in ("batch_size", "budget"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"experiment {self.name!r}: {key} must be a positive integer, got {value!r}")
        if self.batch_size < len(self.tasks):
            raise ValueError(f"experiment {self.name!r}: batch_size {self.batch_size} is smaller than "
                             f"the number of tasks {len(self.tasks)}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: task names must be unique, got {names}")
        dims = {(t.name, t.obs_dim, t.act_dim) for t in self.tasks}
        if len({d[1:] for d in dims}) != 1:
            raise ValueError(f"experiment {self.name!r}: all tasks need the same observation/action "
                             f"dims, got (name, obs_dim, act_dim) = {sorted(dims)}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def samples_per_task(self) -> int:
        """Samples of each task per iteration: batch_size // number of tasks."""
        return self.batch_size // len(self.tasks)


def _builtin(name: str, tasks: tuple[str, ...], batch_size: int) -> Experiment:
    return Experiment(name, tuple(TASKS[t] for t in tasks), batch_size, DEFAULT_BUDGET)


EXPERIMENTS: dict[str, Experiment] = {
    "three_hoppers": _builtin("three_hoppers", ("hopper_capsule", "hopper_box", "hopper_ellipsoid"), 4000),
    "biped_fwd_bwd": _builtin("biped_fwd_bwd", ("biped_forward", "biped_backward"), 8000),
    **{f"torso_mass_{m}": _builtin(f"torso_mass_{m}", ("hopper_torso15", f"hopper_torso{m}"), 4000)
       for m in (3, 8, 14)},
    # not the paper's: the built-in biped with Walker2d's 100 N*m ankles (tasks.BIPED_ANKLE100_GEARS)
    "biped_fwd_bwd_ankle100": _builtin("biped_fwd_bwd_ankle100",
                                       ("biped_forward_ankle100", "biped_backward_ankle100"), 8000),
    # not the paper's: the biped's two tasks on Gymnasium's Walker2d-v5 body
    "walker2d_fwd_bwd": _builtin("walker2d_fwd_bwd", ("walker2d_forward", "walker2d_backward"), 8000),
}


def _robot_family(robot: str) -> str | None:
    known = {**robots.ROBOTS, **robots.MJCF_ROBOTS}
    return known[robot].family if robot in known else None


def _robot_names() -> list[str]:
    return sorted(robots.ROBOTS) + sorted(robots.MJCF_ROBOTS)


def _check_keys(mapping: dict, allowed, required, where: str) -> None:
    """ValueError naming unknown keys (with the allowed ones) or the first missing required key."""
    unknown = sorted(set(mapping) - set(allowed), key=str)  # a YAML key may be a number
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed {list(allowed)}")
    for key in required:
        if key not in mapping:
            raise ValueError(f"{where}: missing required key {key!r}")


def _task_from_mapping(entry: dict, base_dir: Path, where: str) -> TaskSpec:
    _check_keys(entry, TASK_KEYS, ("name", "robot"), where)
    name, robot = entry["name"], entry["robot"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: name must be a non-empty string, got {name!r}")
    if not isinstance(robot, str) or not robot:
        raise ValueError(f"{where}: robot must be a built-in robot {_robot_names()} or a URDF path, "
                         f"got {robot!r}")
    if robot not in robots.ROBOTS and robot not in robots.MJCF_ROBOTS:
        if not robot.lower().endswith(".urdf"):
            raise ValueError(f"{where}: unknown robot {robot!r}; allowed {_robot_names()} or a path "
                             "to a .urdf file (relative to the YAML file)")
        path = Path(robot).expanduser()
        robot = str((base_dir / path).resolve() if not path.is_absolute() else path)
        if not Path(robot).is_file():
            raise ValueError(f"{where}: URDF file not found: {robot}")
    family = entry.get("family", _robot_family(robot))
    if family not in FAMILIES:
        raise ValueError(f"{where}: family {family!r}; allowed {list(FAMILIES)} (required for a URDF robot)")
    kwargs = {key: entry[key] for key in ("direction", "torso_mass", "mass_scale", "gears", "alive_bonus", "physics",
                                          "speed_cap", "overspeed_penalty") if key in entry}
    kwargs.setdefault("alive_bonus", DEFAULT_ALIVE_BONUS)
    kwargs["ctrl_cost"] = entry.get("ctrl_cost", FAMILIES[family].ctrl_cost)
    try:
        task = TaskSpec(name=name, robot=robot, family=family, **kwargs)
        task.obs_dim  # compile the model now: URDF errors surface here, with the task's name
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return task


def load_experiment_yaml(path: str | Path) -> Experiment:
    """Parse and validate an experiment YAML file (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"experiment file not found: {path}")
    doc = load_yaml_file(path, "experiment YAML")
    if not isinstance(doc, dict):
        raise ValueError(f"experiment YAML {path}: expected a mapping with keys {list(EXPERIMENT_KEYS)}")
    _check_keys(doc, EXPERIMENT_KEYS, ("batch_size", "tasks"), f"experiment YAML {path}")
    entries = doc["tasks"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"experiment YAML {path}: tasks must be a non-empty list of task names or mappings")
    tasks = []
    for i, entry in enumerate(entries):
        where = f"experiment YAML {path}: tasks[{i}]"
        if isinstance(entry, str):
            try:
                tasks.append(get_task(entry))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif isinstance(entry, dict):
            tasks.append(_task_from_mapping(entry, path.parent, where))
        else:
            raise ValueError(f"{where}: expected a task name or a mapping with keys {list(TASK_KEYS)}, "
                             f"got {entry!r}")
    try:
        return Experiment(str(doc.get("name", path.stem)), tuple(tasks), doc["batch_size"],
                          doc.get("budget", DEFAULT_BUDGET))
    except ValueError as exc:
        raise ValueError(f"experiment YAML {path}: {exc}") from None


def get_experiment(name_or_path: str | Path) -> Experiment:
    """A built-in experiment by name, or one loaded from a YAML file path."""
    if isinstance(name_or_path, str) and name_or_path in EXPERIMENTS:
        return EXPERIMENTS[name_or_path]
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.lower().endswith((".yaml", ".yml")):
        return load_experiment_yaml(Path(text).expanduser())
    raise ValueError(f"unknown experiment {text!r}: allowed are {sorted(EXPERIMENTS)} or a path to a "
                     ".yaml experiment file")


def apply_profile(experiment: Experiment, profile: str | None,
                  physics_overrides: Mapping | None = None) -> Experiment:
    """``experiment`` with every task's physics fully resolved under ``profile``.

    Precedence, lowest first: the profile's bundle (``physics.PROFILES``; None = ``none``, every
    setting at its default), the task's own settings (built-in or YAML), then ``physics_overrides``
    (setting -> value, applied to every task). A profile may also change built-in tasks' fields (the
    ``paper`` profile's torso masses 3.3 / 8.5 / 14.35 kg); task names never change. ValueError on an
    unknown profile or setting (listing the allowed ones) or a bad value (naming the task).
    """
    bundle = physics.get_profile(profile)
    overrides = physics.validate(physics_overrides, "physics_overrides")
    tasks = []
    for task in experiment.tasks:
        changes = bundle["tasks"].get(task.name, {}) if TASKS.get(task.name) == task else {}
        settings = {**physics.profile_settings(profile, task.family), **task.physics, **overrides}
        resolved = {**robots.default_physics(task.robot, task.family), **settings}
        try:
            tasks.append(dataclasses.replace(task, physics=resolved, **changes))
        except ValueError as exc:
            raise ValueError(f"experiment {experiment.name!r}, profile {profile!r}: {exc}") from None
    return dataclasses.replace(experiment, tasks=tuple(tasks))


def profiled_task(task: str | TaskSpec, profile: str | None, physics_overrides: Mapping | None = None) -> TaskSpec:
    """One task with the robot a run of ``profile`` trains it on (``apply_profile`` of that task
    alone): what a simulator must step to serve such a run's policy."""
    task = get_task(task)
    return apply_profile(Experiment(task.name, (task,), 1, 1), profile, physics_overrides).tasks[0]


def task_as_trained(name: str, run_config: Mapping | None) -> TaskSpec:
    """Task ``name`` as a run trained it, from the run's config (its config.yaml, or a checkpoint's
    ``config`` metadata): the experiment's task (rewards, caps) when the experiment still loads,
    else the built-in task of that name, with the physics and torso mass the run recorded
    (``task_physics``), or its profile's when it recorded none (a run without a profile: ``none``).
    No config: the built-in task. ValueError when neither the experiment nor a built-in has it."""
    config = dict(run_config or {})
    task = None
    if config.get("experiment"):
        try:
            task = next((t for t in get_experiment(config["experiment"]).tasks if t.name == name), None)
        except (ValueError, OSError):
            task = None  # e.g. an experiment file that is gone: the built-in task of that name below
    if task is None:
        try:
            task = get_task(name)
        except ValueError:
            raise ValueError(f"task {name!r}: not in the run's experiment {config.get('experiment')!r} (which "
                             f"does not load here) and not a built-in task") from None
    if not config:
        return task
    record = (config.get("task_physics") or {}).get(name)
    if isinstance(record, Mapping):
        settings = {k: v for k, v in record.items() if k != "torso_mass"}
        physics_settings = {**robots.default_physics(task.robot, task.family), **settings}
        return dataclasses.replace(task, physics=physics_settings, torso_mass=record.get("torso_mass", task.torso_mass))
    return profiled_task(task, config.get("profile", "none"), config.get("physics") or None)


def task_io(name: str, run_config: Mapping | None = None) -> dict:
    """What a controller must know to run a policy of task ``name`` on its robot as the run trained
    it (``task_as_trained``): ``robot``, ``engine`` (the physics engine it trained on),
    ``control_period_s``, ``observation`` (the name of each entry, ``planar.observation_names``) and
    ``actuators`` (each one's ``joint`` and ``gear``, N*m of a unit action; ``planar.actuators``).
    ValueError as ``task_as_trained``."""
    task = task_as_trained(name, run_config)
    model = task.build_model()
    return {"robot": task.robot, "engine": str(task.resolved_physics.get("engine", "mujoco")),
            "control_period_s": float(task.dt), "observation": planar.observation_names(model),
            "actuators": planar.actuators(model)}


def resolved_physics(experiment: Experiment) -> dict[str, dict]:
    """Task name -> every physics setting (plain YAML types) and the task's torso_mass (kg or None)."""
    return {task.name: {**task.resolved_physics, "torso_mass": task.torso_mass} for task in experiment.tasks}


def complete_physics_record(experiment: Experiment, record: Mapping) -> dict[str, dict]:
    """A run's recorded ``resolved_physics`` (task -> setting -> value) with every physics setting it
    does not name at that task's default: a run recorded before a setting existed ran at its default,
    which builds the model the run had. Tasks ``experiment`` lacks are kept as they are."""
    defaults = {task.name: robots.default_physics(task.robot, task.family) for task in experiment.tasks}
    return {name: {**defaults.get(name, {}), **values} if isinstance(values, Mapping) else values
            for name, values in record.items()}


def with_unrecorded_defaults(experiment: Experiment, record: Mapping) -> Experiment:
    """``experiment`` with each physics setting that a run's recorded ``task_physics`` (task -> setting
    -> value) does not name for a task set to the robot's default: the run was recorded before the
    setting existed and ran at its default, so it resumes on the model it had even where its profile
    now sets another value. Settings the record names are left as ``experiment`` has them."""
    tasks = []
    for task in experiment.tasks:
        values = record.get(task.name)
        if isinstance(values, Mapping):
            defaults = robots.default_physics(task.robot, task.family)
            missing = {k: v for k, v in defaults.items() if k not in values}
            if missing:
                task = dataclasses.replace(task, physics={**task.physics, **missing})
        tasks.append(task)
    return dataclasses.replace(experiment, tasks=tuple(tasks))
