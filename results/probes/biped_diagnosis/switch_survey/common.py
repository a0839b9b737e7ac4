"""Scratch helpers for the biped switch survey (not part of the repo)."""
import glob, json, sys, time
from pathlib import Path
import numpy as np
import mujoco
sys.path.insert(0, "/work/main")
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.envs.tasks import TaskEnv, get_task
from mt_specialize.train import latest_checkpoint

ROOT = Path("/work/main")
FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
DIRS = {"biped_forward": 1, "biped_backward": -1}
OTHER = {"biped_forward": "biped_backward", "biped_backward": "biped_forward"}


def run_dirs():
    out = []
    for d in sorted(glob.glob(str(ROOT / "runs/paper/biped_fwd_bwd/*/seed*"))) + [str(ROOT / "runs/probe_biped_mb125_seed1")]:
        d = Path(d)
        if not (d / "summary.json").exists():   # unfinished (still training): skip
            continue
        out.append(d)
    return out


def label(d: Path) -> str:
    return "probe_mb125/seed1" if "probe" in d.name else f"{d.parent.name}/{d.name}"


def get_state(env):
    s = np.empty(mujoco.mj_stateSize(env.model, FULL))
    mujoco.mj_getState(env.model, env.data, s, FULL)
    return s


def set_state(env, s, steps):
    mujoco.mj_resetData(env.model, env.data)
    mujoco.mj_setState(env.model, env.data, s, FULL)
    mujoco.mj_forward(env.model, env.data)
    env._steps = steps
    return env.task.observation(env.data.qpos[None], env.data.qvel[None])[0]


def foot_contacts(env):
    """(right foot on floor, left foot on floor)"""
    m, d = env.model, env.data
    r = l = False
    for i in range(d.ncon):
        g = {d.contact[i].geom1, d.contact[i].geom2}
        if 0 in g:
            r |= 4 in g
            l |= 7 in g
    return r, l


def rollout(policy, task, seed, steps, record=False):
    """Deterministic single-task rollout via TaskEnv. Returns dict with x trajectory, fell step, states."""
    env = TaskEnv(get_task(task))
    obs, _ = env.reset(seed=seed)
    idx = np.array([policy.task_index(task)])
    xs = [float(env.data.qpos[0])]
    states, vx, contacts, heights, angles = [], [], [], [], []
    if record:
        states.append(get_state(env)); contacts.append(foot_contacts(env))
    fell = None
    for t in range(steps):
        obs, r, term, trunc, info = env.step(policy.act(obs[None], idx)[0])
        xs.append(float(env.data.qpos[0]))
        if record:
            states.append(get_state(env)); vx.append(float(env.data.qvel[0]))
            contacts.append(foot_contacts(env)); heights.append(float(env.data.qpos[1])); angles.append(float(env.data.qpos[2]))
        if term:
            fell = t + 1
            break
        if trunc:
            break
    return dict(x=np.array(xs), fell=fell, states=states, vx=np.array(vx), contacts=contacts,
                heights=np.array(heights), angles=np.array(angles))


def branch(policy, task_from, states, switch_steps, task_to, after, obs_list=None):
    """From states[s] (after s steps of task_from), drive task_to for `after` steps, all branches in lockstep
    with one batched act() call per step. Returns (fell_after (B,) int or -1, dx (B,) new-direction displacement)."""
    envs, obs = [], []
    for s in switch_steps:
        e = TaskEnv(get_task(task_from))  # robot/termination are the same for both biped tasks
        obs.append(set_state(e, states[s], s))
        envs.append(e)
    obs = np.array(obs)
    B = len(envs)
    idx = np.full(B, policy.task_index(task_to))
    alive = np.ones(B, bool)
    fell = np.full(B, -1)
    x0 = np.array([e.data.qpos[0] for e in envs])
    xend = x0.copy()
    xt = np.zeros((B, after))
    sign = DIRS[task_to]
    for k in range(after):
        act = policy.act(obs, idx)
        for b in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[b].step(act[b])
            obs[b] = o
            xend[b] = envs[b].data.qpos[0]
            if term:
                fell[b] = k + 1
                alive[b] = False
        xt[:, k] = xend
        if not alive.any():
            xt[:, k + 1:] = xend[:, None]
            break
    branch.traj = sign * (xt - x0[:, None])  # (B, after) new-direction displacement after k+1 steps (frozen at fall)
    return fell, sign * (xend - x0)
