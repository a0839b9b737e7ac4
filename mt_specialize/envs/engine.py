"""The physics engines behind one small interface, and their registry.

Every engine steps the same thing: a planar robot whose model is the MuJoCo model the URDF gives
(``robots.build_model``, every physics setting applied) and whose state is MuJoCo's
(``mjSTATE_FULLPHYSICS`` without activations: a row [time, qpos (nq), qvel (nv)]). The named quantities
(``planar``), the rules (``tasks``), the batched env's state rows (``vec_env``), checkpoints and MuJoCo's
renderer therefore serve every engine alike. A task picks its engine with the physics setting ``engine``.

An engine is a module with three functions (dm_control's ``Physics`` in spirit: the simulator behind
named quantities; here the quantities are shared and only the stepping differs):

- ``check(task)``: None, or ValueError naming what the task needs that the engine lacks (a missing
  dependency, a setting with no counterpart); ``TaskSpec`` calls it when it is built.
- ``batch(tasks, models, envs_per_task, frame_skip, nthread)``: a :class:`BatchStepper` over
  ``len(tasks) * envs_per_task`` rows, task-major (``models[i]`` is task i's compiled model).
- ``robot(task, model, frame_skip)``: a :class:`RobotStepper` for one robot (``tasks.TaskRobot``: the
  Gymnasium env, ``gait``, the simulator node).

A control step is a pure function of (qpos, qvel, action) on every engine: the action is held for
``frame_skip`` substeps and nothing else carries over, so a batch and a single robot given the same
states and actions agree bit for bit, and a run resumes exactly from its checkpointed states.

Adding an engine: one module with those functions and one line in :data:`ENGINES` (and its name among
the ``engine`` setting's values in ``physics.ENGINES``, which lists these keys). Nothing else under
``envs/`` imports an engine module (``test/test_layering.py``).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, Sequence

import numpy as np

# engine name (the physics setting ``engine``) -> the module that implements it, imported when first used
ENGINES = {
    "mujoco": "mt_specialize.envs.mujoco_engine",
    "dart": "mt_specialize.envs.dart_engine",
}


class BatchStepper(Protocol):
    """N robots' state rows stepped together."""

    def step(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (N, nstate) rows [time, qpos, qvel], actions (N, nu) -> (N, nstate) the states one control
        step later (an array the stepper may own and overwrite at its next step)."""

    def close(self) -> None:
        """Free threads or worker processes (idempotent)."""


class RobotStepper(Protocol):
    """One robot stepped in place."""

    def step(self, data, action: np.ndarray) -> None:
        """Advance MuJoCo ``data`` (qpos, qvel, time; poses recomputed) one control step under action (nu,)."""


def get(name: str) -> ModuleType:
    """The module of engine ``name``; ValueError lists the engines."""
    if name not in ENGINES:
        raise ValueError(f"unknown physics engine {name!r}; allowed {list(ENGINES)}")
    return importlib.import_module(ENGINES[name])


def of_tasks(tasks: Sequence) -> str:
    """The one engine that ``tasks`` (``tasks.TaskSpec``) run on; ValueError when they mix engines."""
    names = sorted({t.resolved_physics["engine"] for t in tasks})
    if len(names) != 1:
        raise ValueError(f"tasks trained together need one physics engine; tasks "
                         f"{[(t.name, t.resolved_physics['engine']) for t in tasks]} mix {names}")
    return names[0]


def batch_stepper(tasks: Sequence, models: Sequence, envs_per_task: int, frame_skip: int,
                  nthread: int) -> BatchStepper:
    """The stepper of a batched env over ``tasks`` (one engine for all; ``of_tasks``)."""
    return get(of_tasks(tasks)).batch(tasks, models, envs_per_task, frame_skip, nthread)


def robot_stepper(task, model, frame_skip: int) -> RobotStepper:
    """The stepper of one robot of ``task`` (``model`` its compiled MuJoCo model)."""
    return get(task.resolved_physics["engine"]).robot(task, model, frame_skip)


def check(task) -> None:
    """ValueError unless ``task`` can run on its engine (the engine's ``check``)."""
    get(task.resolved_physics["engine"]).check(task)
