"""The planar robot's named quantities, and its control step.

Every robot here moves in the x-z plane on a planar root: slide ``rootx`` (x position), slide
``rootz`` (torso height, absolute through the joint's ``ref``) and hinge ``rooty`` (pitch), the first
three entries of both qpos and qvel; the actuated joints follow. The functions below read these by
name from arrays of any leading shape: one robot's qpos (nq,), a batch (N, nq), or T tasks x E envs
(T, E, nq); the results have the leading shape, as views where NumPy allows.

One control step (``control_step``) is ``ctrl = action``, zero solver warm-start, ``frame_skip``
MuJoCo substeps. The zero warm-start makes a step a pure function of (qpos, qvel, action): the
batched engine (``vec_env``), which runs the same steps through ``mujoco.rollout`` with a zero
``initial_warmstart``, reproduces it bit for bit.
"""
from __future__ import annotations

import mujoco
import numpy as np

ROOT_JOINTS = ("rootx", "rootz", "rooty")  # the planar root, first in qpos and qvel, in this order
X, HEIGHT, PITCH = 0, 1, 2  # index of the root's coordinates in qpos, and of their rates in qvel


def x_position(qpos: np.ndarray) -> np.ndarray:
    """(...) x position (m) of the torso from qpos (..., nq)."""
    return qpos[..., X]


def height(qpos: np.ndarray) -> np.ndarray:
    """(...) torso height (m) above the floor from qpos (..., nq)."""
    return qpos[..., HEIGHT]


def pitch(qpos: np.ndarray) -> np.ndarray:
    """(...) torso pitch (rad, about +y; 0 at the start pose) from qpos (..., nq)."""
    return qpos[..., PITCH]


def speed(qvel: np.ndarray) -> np.ndarray:
    """(...) forward speed (m/s, along +x) of the torso at this instant from qvel (..., nv)."""
    return qvel[..., X]


def mean_speed(x_before, x_after, dt) -> np.ndarray:
    """(...) forward speed (m/s) averaged over a control step: (x_after - x_before) / dt, x in m,
    dt (s) the control period; arguments broadcast."""
    return (np.asarray(x_after, dtype=np.float64) - np.asarray(x_before, dtype=np.float64)) / dt


def without_x(qpos: np.ndarray) -> np.ndarray:
    """(..., nq - 1): qpos without the x position (torso height, pitch, joint angles), a view."""
    return qpos[..., X + 1:]


def state_vector(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """(..., nq + nv) = concat(qpos, qvel) (Gymnasium's ``MujocoEnv.state_vector``), float64."""
    return np.concatenate([np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)], axis=-1)


def without_x_and_height(state: np.ndarray) -> np.ndarray:
    """(..., nq + nv - 2): a ``state_vector`` without x and torso height (pitch, joint angles, every
    velocity), a view; what the hopper's state limit bounds (Gymnasium Hopper's ``state_vector()[2:]``)."""
    return state[..., HEIGHT + 1:]


def check_planar_root(model: mujoco.MjModel, name: str = "model") -> None:
    """ValueError unless the model's first joints are ROOT_JOINTS at qpos/qvel indices X, HEIGHT, PITCH."""
    found = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(min(3, model.njnt))]
    places = [(int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j])) for j in range(min(3, model.njnt))]
    if found != list(ROOT_JOINTS) or places != [(X, X), (HEIGHT, HEIGHT), (PITCH, PITCH)]:
        raise ValueError(f"{name}: a planar robot's first joints must be {list(ROOT_JOINTS)} at qpos indices "
                         f"{[X, HEIGHT, PITCH]}, got {found} at (qpos, qvel) indices {places}")


def control_step(model: mujoco.MjModel, data: mujoco.MjData, action: np.ndarray, frame_skip: int) -> None:
    """Advance ``data`` one control step in place: ``ctrl = action`` (nu,) (MuJoCo clamps it to the
    ctrlrange), zero warm-start, ``frame_skip`` substeps."""
    data.ctrl[:] = action
    data.qacc_warmstart[:] = 0
    mujoco.mj_step(model, data, nstep=frame_skip)


def coordinate_names(model: mujoco.MjModel, kind: str) -> list[str]:
    """``<joint>/<kind>`` for every qpos (kind ``position``) or qvel (kind ``velocity``) entry of a
    model whose joints are hinges and slides (one coordinate each), in array order."""
    address = model.jnt_qposadr if kind == "position" else model.jnt_dofadr
    size = model.nq if kind == "position" else model.nv
    names = [""] * size
    for j in range(model.njnt):
        names[int(address[j])] = f"{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f'joint{j}'}/{kind}"
    if not all(names):
        raise ValueError(f"model has joints with more than one coordinate (free or ball): {kind} names undefined")
    return names


def observation_names(model: mujoco.MjModel) -> list[str]:
    """The name of each entry of a task's observation (``tasks.observation``: qpos without x, then
    qvel clipped): ``rootz/position``, ``rooty/position``, ``<joint>/position``..., then
    ``rootx/velocity``, ..., ``<joint>/velocity``. Positions in m or rad, velocities in m/s or rad/s."""
    return coordinate_names(model, "position")[X + 1:] + coordinate_names(model, "velocity")


def actuators(model: mujoco.MjModel) -> list[dict]:
    """Per actuator, in ``ctrl`` (action) order: the ``joint`` it drives and its ``gear``, the
    torque (N*m, a hinge) or force (N, a slide) of a unit command. ``control_step`` sets
    ``ctrl = action``, which MuJoCo clamps to [-1, 1]; the effort on the joint is ``gear * ctrl``."""
    out = []
    for a in range(model.nu):
        joint = int(model.actuator_trnid[a, 0])
        out.append({"joint": mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint) or f"joint{joint}",
                    "gear": float(model.actuator_gear[a, 0])})
    return out
