"""What ``ros2 launch mt_specialize training.launch.py`` and ``mt-specialize up`` check before they
start any node, so that a mistake stops the start with the reason instead of leaving half a graph.

No torch, no rclpy: a checkpoint is read through its header (``learning.policy_file``), the robots
through their task specs. :func:`startup_problem` runs every check on the parameter files of a
config directory and the overrides given on the command line, and returns the first problem (None
if there is none):

* ``simulator.yaml``: robots (``tasks`` / ``namespaces``), ``profile``, ``mode`` and
  ``command_units`` are allowed values;
* ``policy_server.yaml``: ``command_units`` is the simulator's (the server sends what the simulator
  applies);
* ``learner.yaml`` (when the learner runs): ``profile`` is the simulator's (the server hot-loads the
  learner's checkpoints onto the simulated robots);
* the checkpoint to serve (:func:`checkpoint_misfit`): it reads as a policy file; each robot the
  server serves gets a task of the checkpoint for its robot model with its observation size; the
  profile and the physics engine its run trained on are the simulator's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mt_specialize import profiles
from mt_specialize.envs.physics import PROFILE_NAMES
from mt_specialize.learning.policy_file import PolicyFileError, policy_file_info

#: The profile of the simulator, the learner and ``mt-specialize train`` when none is given.
DEFAULT_PROFILE = profiles.DEFAULT
MODES = ("realtime", "lockstep")
#: Units of ``/<robot>/commands``: ``normalized`` (-1..1 per actuator) or ``effort`` (N*m, the
#: actuator's gear times the normalized command, as ros2_control's effort interface).
COMMAND_UNITS = ("normalized", "effort")
DEFAULT_TASKS = ["hopper_capsule"]  # the simulator's ``tasks`` when simulator.yaml gives none


def node_params(config_dir: str | Path, node: str) -> dict:
    """The ``ros__parameters`` of ``node`` in ``<config_dir>/<node>.yaml`` ({} if there are none);
    ValueError naming the file if it is not a ROS 2 parameter file."""
    path = Path(config_dir) / f"{node}.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS 2 parameter file (a mapping of node name -> ros__parameters)")
    for key in (node, f"/{node}", "/**"):
        if isinstance(data.get(key), dict):
            return dict(data[key].get("ros__parameters") or {})
    return {}


def simulated_robots(sim: dict) -> list[tuple[str, str]]:
    """(namespace, task) of every robot of the simulator's parameters; ValueError naming the problem."""
    tasks = sim.get("tasks") or DEFAULT_TASKS
    namespaces = sim.get("namespaces") or tasks
    if isinstance(tasks, str) or isinstance(namespaces, str):
        raise ValueError(f"simulator parameters tasks={tasks!r}, namespaces={namespaces!r}: must be lists of names")
    if len(namespaces) != len(tasks):
        raise ValueError(f"simulator parameter namespaces has {len(namespaces)} entries for {len(tasks)} tasks")
    names = [str(ns).strip().strip("/") for ns in namespaces]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"simulator: robot namespaces must be distinct and non-empty, got {names} (set "
                         f"'namespaces' when a task appears twice)")
    from mt_specialize.envs.tasks import TASKS

    unknown = [str(t) for t in tasks if str(t) not in TASKS]
    if unknown:
        raise ValueError(f"simulator: no task {unknown[0]!r}; tasks: {sorted(TASKS)}")
    return list(zip(names, [str(t) for t in tasks]))


def check_choice(what: str, value: Any, allowed) -> str | None:
    return None if value in allowed else f"{what}={value!r}: allowed values: {list(allowed)}"


def profile_engine(profile: str) -> str:
    """The physics engine (``mujoco`` | ``dart``) a profile's robots are stepped with."""
    from mt_specialize.envs import physics

    return str(physics.get_profile(profile)["settings"].get("engine", "mujoco"))


def trained_engine(run_config: dict) -> set[str]:
    """The physics engines a run stepped its tasks with: its recorded ``task_physics``, else its run-wide
    ``physics`` setting, else its profile's."""
    record = run_config.get("task_physics") or {}
    engines = {str(v.get("engine", "mujoco")) for v in record.values() if isinstance(v, dict)}
    if engines:
        return engines
    return {str((run_config.get("physics") or {}).get("engine")
                or profile_engine(str(run_config.get("profile", "none"))))}


def checkpoint_misfit(checkpoint: str | Path, config_dir: str | Path, profile: str | None = None) -> str | None:
    """Why the policy server could not serve ``checkpoint`` (a checkpoint or an ONNX export) to the
    simulator's robots as configured in ``config_dir`` (simulator.yaml, policy_server.yaml), or None.

    Checked per robot the server serves: the file reads as a policy; the task the server gives the
    robot (policy_server.yaml ``tasks``, else one of the checkpoint's tasks for that robot model) is in
    it; its robot model (``TaskSpec.robot``) and observation size are the simulated robot's; the
    profile its run trained on is the simulator's (``profile``, else simulator.yaml's, else mujoco), and
    so is the physics engine it stepped the robots with (``mujoco`` or ``dart``: its recorded
    ``task_physics``, else its ``physics`` setting, else its profile's). A policy without a run record
    (made by hand) passes the last two.
    """
    from mt_specialize.envs.tasks import TASKS

    try:
        info = policy_file_info(checkpoint)
    except (PolicyFileError, ImportError) as exc:
        return f"checkpoint {checkpoint} cannot be loaded: {exc}"
    names = list(info.task_names)
    sim, server = node_params(config_dir, "simulator"), node_params(config_dir, "policy_server")
    simulated_profile = profile or str(sim.get("profile") or DEFAULT_PROFILE)
    robots = simulated_robots(sim)
    if info.run_config:  # a run without a profile trained on every setting's default: none
        if info.profile != simulated_profile:
            return (f"checkpoint {checkpoint} was trained on profile {info.profile!r} robots, the simulator would "
                    f"step profile {simulated_profile!r} ones (pass --profile {info.profile} / profile:="
                    f"{info.profile}, or set profile in simulator.yaml)")
        trained_engines = trained_engine(info.run_config)
        simulated_engine = profile_engine(simulated_profile)
        if trained_engines - {simulated_engine}:
            return (f"checkpoint {checkpoint} was trained on the {' and '.join(sorted(trained_engines))} physics "
                    f"engine, the simulator would step its robots with {simulated_engine} (profile "
                    f"{simulated_profile!r}; profile paper_dart steps the robots with dart)")
    simulated = dict(robots)
    served = [str(r).strip("/") for r in (server.get("robots") or [])]
    server_tasks = list(server.get("tasks") or [])
    model = lambda task: TASKS[task].robot if task in TASKS else None  # noqa: E731
    for i, robot in enumerate(served):
        sim_task = simulated.get(robot)
        want = model(sim_task) if sim_task else None
        where = f"robot {robot!r}" + (f" (simulated as task {sim_task!r}, robot model {want!r})" if sim_task else "")
        if server_tasks and i < len(server_tasks):
            task = str(server_tasks[i])
            if task not in names:
                return (f"checkpoint {checkpoint} has tasks {names}, not {task!r}, the task policy_server.yaml "
                        f"gives {where}")
        else:
            fitting = [n for n in names if want is None or model(n) in (want, None)]
            if not fitting:
                return f"checkpoint {checkpoint} has tasks {names}, none of them for {where}"
            task = robot if robot in fitting else fitting[0]
        if want is not None and model(task) not in (want, None):
            return (f"checkpoint task {task!r} drives robot model {model(task)!r}, but {where} is simulated "
                    f"(tasks {names} in the checkpoint)")
        if sim_task is not None:
            obs_dim = TASKS[sim_task].obs_dim
            if obs_dim != info.obs_dim:
                return f"checkpoint {checkpoint} expects {info.obs_dim} observation values, {where} gives {obs_dim}"
    return None


def startup_problem(config_dir: str | Path, *, checkpoint: str | Path | None = None, profile: str | None = None,
                    mode: str | None = None, learner: bool = True) -> str | None:
    """The first reason not to start the nodes with the parameter files of ``config_dir`` and these
    command-line overrides (see the module docstring), or None."""
    try:
        sim = node_params(config_dir, "simulator")
        server = node_params(config_dir, "policy_server")
        learner_params = node_params(config_dir, "learner") if learner else {}
        simulated_robots(sim)
    except ValueError as exc:
        return str(exc)
    sim_profile = profile or str(sim.get("profile") or DEFAULT_PROFILE)
    units = str(sim.get("command_units") or COMMAND_UNITS[0])
    problem = (check_choice("profile", sim_profile, PROFILE_NAMES)
               or check_choice("simulator mode", mode or sim.get("mode") or MODES[0], MODES)
               or check_choice("simulator command_units", units, COMMAND_UNITS))
    if problem:
        return problem
    server_units = str(server.get("command_units") or COMMAND_UNITS[0])
    if server_units != units:
        return (f"policy_server.yaml command_units={server_units!r} but simulator.yaml command_units={units!r}: "
                f"the simulator would misread every command (set both to one of {list(COMMAND_UNITS)})")
    if learner:
        learner_profile = profile or str(learner_params.get("profile") or DEFAULT_PROFILE)
        if learner_profile != sim_profile:
            return (f"learner.yaml profile {learner_profile!r} but simulator.yaml profile {sim_profile!r}: the policy "
                    f"server would serve the learner's policies on other robots (give profile:= / --profile, or set "
                    f"both files alike)")
    if checkpoint:
        return checkpoint_misfit(checkpoint, config_dir, profile)
    return None
