"""The MuJoCo physics engine (``engine: mujoco``, the default): the batched stepper and one robot's step.

A control step is ``ctrl = action`` (MuJoCo clamps it to the ctrlrange) held for ``frame_skip``
substeps with the constraint solver started from a zero warm-start, so it is a pure function of (qpos,
qvel, action). The batched stepper runs that rule natively through ``mujoco.rollout`` (C threads without
the GIL, one contiguous chunk of rows per thread), one robot through ``planar.control_step``; the two
agree bit for bit whatever the thread count and scheduling (``test/test_vec_env.py``).
"""
from __future__ import annotations

import os
import weakref

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from . import planar

# Every MuJoCo rollout runner made here (its thread pool), by the stepper that holds it. A forked process
# inherits the runners but not their threads: freeing one there (e.g. when the child's garbage
# collector frees an env left in a reference cycle) joins threads that do not exist and hangs or
# aborts the child ("thread::join failed"). After a fork the child keeps the runners it inherited
# alive for good; it never steps the parent's envs, and forked workers leave with os._exit.
_RUNNERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_INHERITED_RUNNERS: list = []


def _keep_inherited_runners() -> None:
    _INHERITED_RUNNERS.extend(_RUNNERS.values())


os.register_at_fork(after_in_child=_keep_inherited_runners)


def check(task) -> None:
    """Every task can run on MuJoCo."""


class MujocoBatch:
    """N rows stepped by one ``mujoco.rollout`` call per control step.

    models: (N,) the compiled model of each row (models of one size signature); nthread: rollout threads.
    """

    def __init__(self, models, frame_skip: int, nthread: int):
        self.models = list(models)
        first = self.models[0]
        n = len(self.models)
        self.frame_skip, self.nu = int(frame_skip), first.nu
        self.nstate = mujoco.mj_stateSize(first, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self.nthread = int(nthread)
        self._runner = mj_rollout.Rollout(nthread=self.nthread)
        _RUNNERS[self] = self._runner
        self._datas = [mujoco.MjData(first) for _ in range(self.nthread)]
        # one contiguous chunk per thread: on an idle 2-core machine 2.0-2.1x one thread's rate for 32-48
        # envs, against 1.7x with 4 chunks per thread (bench/README.md); results do not depend on it
        self._chunk = max(1, -(-n // self.nthread))
        self._ctrl = np.zeros((n, self.frame_skip, self.nu))
        self._out = np.zeros((n, self.frame_skip, self.nstate))
        self._sensor = np.zeros((n, self.frame_skip, 0))
        self._warmstart = np.zeros((n, first.nv))

    def step(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (N, nstate), actions (N, nu) -> (N, nstate) one control step later (a view of a buffer
        this stepper overwrites at its next step)."""
        self._ctrl[:] = np.asarray(actions, dtype=np.float64).reshape(-1, 1, self.nu)
        self._runner.rollout(self.models, self._datas, state, self._ctrl, nstep=self.frame_skip,
                             skip_checks=True, initial_warmstart=self._warmstart, state=self._out,
                             sensordata=self._sensor, chunk_size=self._chunk)
        return self._out[:, -1]

    def close(self) -> None:
        """The runner's threads end with the stepper (garbage collection)."""


def batch(tasks, models, envs_per_task: int, frame_skip: int, nthread: int) -> MujocoBatch:
    """The rows of ``tasks`` (``envs_per_task`` each, task-major) on MuJoCo; ``models[i]`` is task i's."""
    return MujocoBatch([m for m in models for _ in range(envs_per_task)], frame_skip, nthread)


class MujocoRobot:
    """One robot stepped by ``planar.control_step``."""

    def __init__(self, model: mujoco.MjModel, frame_skip: int):
        self.model, self.frame_skip = model, int(frame_skip)

    def step(self, data: mujoco.MjData, action: np.ndarray) -> None:
        planar.control_step(self.model, data, action, self.frame_skip)


def robot(task, model: mujoco.MjModel, frame_skip: int) -> MujocoRobot:
    """One robot of ``task`` (its compiled ``model``) on MuJoCo."""
    return MujocoRobot(model, frame_skip)
