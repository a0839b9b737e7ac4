"""What happens to a walking biped after a task switch (inference only, mean actions).

For a checkpoint of a biped_fwd_bwd run, each way (forward -> backward and back):
- the new task's own states while it walks normally (x-speed, pitch, height percentiles, steps 125-625);
- R robots switched at a random step in 2-5 s (as bench/switch_survival.py): speed and pitch at the
  switch, steps from the switch to the fall, which termination fired (height <= 0.8 m, |pitch| >= 1
  rad, state limit), and the speed/pitch trajectory of a few robots;
- R robots switched at a fixed early step (0, 0.1, 0.2, 0.4, 0.8 s: standing to slow walking):
  how many stay up for 2 s and walk the new way (>= 0.3 m/s over the last second).

Usage: ``python after_switch.py CHECKPOINT [ROBOTS]`` (default 32 robots), from a worktree whose
package is importable (``PYTHONPATH=.``).
"""
import collections
import sys
from pathlib import Path

import numpy as np
import yaml

from mt_specialize.config import TrainConfig
from mt_specialize.envs.tasks import BIPED_HEIGHT_RANGE, BIPED_PITCH_LIMIT
from mt_specialize.envs.vec_env import MultiTaskVecEnv
from mt_specialize.experiments import apply_profile, get_experiment
from mt_specialize.learning.inference import InferencePolicy


def load(checkpoint: Path):
    """(policy, experiment with its physics) of a checkpoint in RUN/checkpoints/."""
    run_dir = checkpoint.parent.parent
    config = TrainConfig.from_run_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    experiment = apply_profile(get_experiment(config.experiment), config.profile, config.physics)
    return InferencePolicy.from_checkpoint(checkpoint), experiment


def rollout(policy, task_a, task_b, robots: int, switch_step: np.ndarray, last: int, seed: int = 0) -> dict:
    """``robots`` robots under task_a, each switched to task_b at switch_step (robots,) (-1 = never),
    for ``last`` control steps. Returns x, height, pitch, x-speed (last+1, robots) (a fallen robot's
    values frozen at the fall's state for that step), the fall step (-1 = none) and its cause."""
    env = MultiTaskVecEnv([task_a, task_b], robots, seed=seed, nthread=1)
    obs = env.reset()[0]
    driver = np.full(robots, policy.task_index(task_a.name))
    new = policy.task_index(task_b.name)
    q, v = env.qpos()[0], env.qvel()[0]
    x, h, p, vx = [q[:, 0].copy()], [q[:, 1].copy()], [q[:, 2].copy()], [v[:, 0].copy()]
    fell = np.full(robots, -1)
    cause = np.array([""] * robots, dtype=object)
    vx_column = env.nq - 1  # the observation is [qpos without x, qvel]
    for t in range(last):
        driver[switch_step == t] = new
        actions = policy.act(obs, driver)
        result = env.step(np.stack([actions, np.zeros_like(actions)]))
        final = result.final_obs[0]
        newly = result.terminated[0] & (fell < 0)
        for r in np.flatnonzero(newly):
            height, pitch = final[r, 0], final[r, 1]
            reasons = ([f"height<={BIPED_HEIGHT_RANGE[0]}"] if height <= BIPED_HEIGHT_RANGE[0] else []) + \
                      ([f"height>={BIPED_HEIGHT_RANGE[1]}"] if height >= BIPED_HEIGHT_RANGE[1] else []) + \
                      ([f"|pitch|>={BIPED_PITCH_LIMIT}"] if abs(pitch) >= BIPED_PITCH_LIMIT else [])
            fell[r], cause[r] = t + 1, ",".join(reasons) or "state limit"
        q, v = env.qpos()[0], env.qvel()[0]
        hh, pp, vv = q[:, 1].copy(), q[:, 2].copy(), v[:, 0].copy()
        hh[newly], pp[newly], vv[newly] = final[newly, 0], final[newly, 1], final[newly, vx_column]
        x.append(q[:, 0].copy()), h.append(hh), p.append(pp), vx.append(vv)
        obs = result.obs[0]
    return {"x": np.array(x), "h": np.array(h), "p": np.array(p), "v": np.array(vx), "fell": fell, "cause": cause}


def spread(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not len(values):
        return "n=0"
    return "n=%d p10 %.2f p50 %.2f p90 %.2f" % (len(values), *np.percentile(values, [10, 50, 90]))


def main() -> None:
    checkpoint, robots = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 32
    policy, experiment = load(checkpoint)
    forward, backward = experiment.tasks
    dt = forward.dt
    second = round(1 / dt)
    print(checkpoint, f"control period {dt} s")
    rng = np.random.default_rng(0)
    for task_a, task_b in ((forward, backward), (backward, forward)):
        own = rollout(policy, task_b, task_a, robots, np.full(robots, -1), 625, seed=1)
        alive = np.arange(626)[:, None] < np.where(own["fell"] < 0, 10**9, own["fell"])[None, :]
        window = slice(125, 626)
        pick = lambda k: own[k][window][alive[window]]  # noqa: E731
        print(f"\n== {task_b.name} walking normally (steps 125-625): x-speed {spread(pick('v'))} m/s; "
              f"pitch {spread(pick('p'))} rad; height {spread(pick('h'))} m")
        switch = rng.integers(250, 626, size=robots)
        out = rollout(policy, task_a, task_b, robots, switch, 625 + 250, seed=0)
        rows = np.arange(robots)
        speed = (out["x"][switch, rows] - out["x"][switch - second, rows]) / (second * dt)
        after = out["fell"] > switch
        print(f"== {task_a.name} -> {task_b.name}, switched at 2-5 s: speed over the last second "
              f"{spread(speed)} m/s, pitch {spread(out['p'][switch, rows])} rad")
        print(f"   fell before the switch {int(((out['fell'] >= 0) & ~after).sum())}, within 2 s after it "
              f"{int((after & (out['fell'] - switch <= 250)).sum())}; steps from switch to fall "
              f"{spread((out['fell'] - switch)[after].astype(float))}; causes {dict(collections.Counter(out['cause'][after]))}")
        for r in rows[:3]:
            if not after[r]:
                continue
            seg = slice(switch[r], out["fell"][r] + 1)
            vv, pp = out["v"][seg, r], out["p"][seg, r]
            at = lambda a, k: a[min(k, len(a) - 1)]  # noqa: E731
            print(f"   robot {r}: x-speed at switch {vv[0]:+.2f}, +10/+25/+50 steps {at(vv, 10):+.2f}/{at(vv, 25):+.2f}/"
                  f"{at(vv, 50):+.2f} m/s; pitch {pp[0]:+.2f} -> {at(pp, 10):+.2f}/{at(pp, 25):+.2f}/{at(pp, 50):+.2f}; "
                  f"fell +{len(vv) - 1} ({out['cause'][r]})")
        for step in (0, 12, 25, 50, 100):
            early = rollout(policy, task_a, task_b, robots, np.full(robots, step), step + 250, seed=2)
            up = early["fell"] < 0
            end = step + 250
            new_way = (early["x"][end] - early["x"][end - second]) / (second * dt) * task_b.direction
            print(f"   switched at {step * dt:.2f} s: x-speed at switch {spread(early['v'][step])}; up after 2 s "
                  f"{up.sum()}/{robots}, walking the new way {(up & (new_way >= 0.3)).sum()}/{robots}")


if __name__ == "__main__":
    main()
