"""Switch survival: does a walking robot keep walking when its task is switched (the policy server's
switch service), e.g. a biped walking forward switched to walking backward?

For a trained run whose experiment has two tasks that drive the same robot (biped forward and
backward), and for each direction of switch A -> B: R robots start under task A (reset noise of the
run's physics), each is switched to task B at a random time in [--switch-from, --switch-to] s, and
then watched for --window s (default 2 s). A switch counts if the robot was walking at switch time
(alive, and its mean velocity over the last second in A's direction >= --min-speed). It survives if
the robot does not fall (task termination) within the window and its mean velocity over the last
second of the window in B's direction is >= --min-speed: it walks the other way. The same robots
are also run without a switch over the same window (the control: how often a walking robot falls or
stops anyway). Fractions come with Wilson 95 % intervals.

Usage: ``python bench/switch_survival.py RUN [RUN ...] [--robots 64] [--seed 0] [--json]``, RUN a run
directory (its newest checkpoint), a checkpoint file of one, or an exported policy file; the tasks
and their robots as the run trained them (``experiments.task_as_trained``: its recorded physics).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from mt_specialize.config import TrainConfig
from mt_specialize.envs import planar
from mt_specialize.experiments import Experiment, task_as_trained
from mt_specialize.learning.inference import InferencePolicy
from mt_specialize.train import latest_checkpoint
from mt_specialize.envs.vec_env import MultiTaskVecEnv


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial fraction."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))  # clamped: rounding can leave [0, 1] at p = 0 or 1


def run_switches(policy: InferencePolicy, task_a, task_b, robots: int, seed: int, switch_window: tuple[float, float],
                 window: float, min_speed: float, switch: bool) -> dict:
    """R robots under ``task_a``, switched to ``task_b`` (or not, ``switch=False``) at a random time."""
    env = MultiTaskVecEnv([task_a, task_b], robots, seed=seed, nthread=1)
    dt = task_a.dt
    rng = np.random.default_rng(seed)
    switch_step = rng.integers(round(switch_window[0] / dt), round(switch_window[1] / dt) + 1, size=robots)
    window_steps, second = round(window / dt), round(1.0 / dt)
    last = int(switch_step.max()) + window_steps
    if last >= task_a.horizon:
        raise ValueError(f"switch time + window ({last} steps) must end before the horizon ({task_a.horizon})")
    obs = env.reset()[0]  # row 0: task a's robots (row 1 only fills the batch)
    ia, ib = policy.task_index(task_a.name), policy.task_index(task_b.name)
    driver = np.full(robots, ia)
    x = np.empty((last + 1, robots))
    x[0] = planar.x_position(env.qpos()[0])  # task a's robots
    fell = np.full(robots, np.inf)
    for t in range(last):
        if switch:
            driver[switch_step == t] = ib
        actions = policy.act(obs, driver)
        both = np.stack([actions, np.zeros_like(actions)])
        result = env.step(both)
        x[t + 1] = planar.x_position(env.qpos()[0])  # task a's robots
        fell[(result.terminated[0] | result.truncated[0]) & np.isinf(fell)] = t + 1
        obs = result.obs[0]
    rows = np.arange(robots)
    speed_before = (x[switch_step, rows] - x[switch_step - second, rows]) / (second * dt) * task_a.direction
    walking = (fell > switch_step) & (speed_before >= min_speed)
    end = switch_step + window_steps
    direction_after = task_b.direction if switch else task_a.direction
    speed_after = (x[end, rows] - x[end - second, rows]) / (second * dt) * direction_after
    survived = walking & (fell > end) & (speed_after >= min_speed)
    n, k = int(walking.sum()), int(survived.sum())
    return {"walking_at_switch": n, "robots": robots, "survived": k,
            "fraction": k / n if n else float("nan"), "interval95": wilson(k, n),
            "fell": int((walking & (fell <= end)).sum()),
            "mean_speed_after": float(speed_after[walking].mean()) if n else float("nan")}


def measure(run: Path, robots: int, seed: int, switch_window, window: float, min_speed: float) -> dict:
    """``run``: a run directory (its newest checkpoint) or one of its checkpoint files."""
    if run.is_file():
        run_dir, checkpoint = run.parent.parent, run
    else:
        run_dir, checkpoint = run, latest_checkpoint(run)
        if checkpoint is None:
            raise SystemExit(f"{run_dir}: no checkpoint")
    policy = InferencePolicy.from_checkpoint(checkpoint)
    # the run's settings: the checkpoint's own record (also in an exported policy file), else config.yaml
    recorded = policy.run_config or yaml.safe_load((run_dir / "config.yaml").read_text())
    config = TrainConfig.from_run_config(recorded)
    experiment = Experiment(policy.experiment or "policy", tuple(task_as_trained(name, recorded)
                                                                 for name in policy.task_names), len(policy.task_names))
    groups = MultiTaskVecEnv(experiment.tasks, 1, nthread=1).robot_groups()
    if not groups:
        raise SystemExit(f"{run_dir}: experiment {experiment.name} has no two tasks of one robot to switch between")
    out = {"run": str(run_dir if not run.is_file() or run.parent.name == "checkpoints" else run),
           "checkpoint": checkpoint.name, "profile": config.profile,
           "task_switch_prob": config.task_switch_prob, "task_switch_start": config.task_switch_start,
           "task_switch_grace": config.task_switch_grace, "task_switch_bootstrap": config.task_switch_bootstrap,
           "switches": {}}
    for group in groups:
        for a in group:
            for b in group:
                if a == b:
                    continue
                ta, tb = experiment.tasks[a], experiment.tasks[b]
                kw = dict(robots=robots, seed=seed, switch_window=switch_window, window=window, min_speed=min_speed)
                out["switches"][f"{ta.name} -> {tb.name}"] = {
                    "switch": run_switches(policy, ta, tb, switch=True, **kw),
                    "control (no switch)": run_switches(policy, ta, tb, switch=False, **kw)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or checkpoint files of runs")
    parser.add_argument("--robots", type=int, default=64, help="robots per switch direction (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--switch-from", type=float, default=2.0, help="earliest switch time, s (default %(default)s)")
    parser.add_argument("--switch-to", type=float, default=5.0, help="latest switch time, s (default %(default)s)")
    parser.add_argument("--window", type=float, default=2.0, help="s the robot must keep walking (default %(default)s)")
    parser.add_argument("--min-speed", type=float, default=0.3,
                        help="m/s in the task's direction that counts as walking (default %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [measure(run, args.robots, args.seed, (args.switch_from, args.switch_to), args.window, args.min_speed)
               for run in args.runs]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"switch survival: walking at switch time (>= {args.min_speed} m/s over the last second), then "
          f"still walking the other way {args.window:g} s later; switch times {args.switch_from:g}-{args.switch_to:g} s")
    for r in results:
        print(f"\n{r['run']} ({r['checkpoint']}, profile {r['profile']}, trained with task_switch_prob "
              f"{r['task_switch_prob']:g} from {r['task_switch_start']:,} samples, task_switch_grace "
              f"{r['task_switch_grace']:g} s, task_switch_bootstrap {r['task_switch_bootstrap']})")
        for name, parts in r["switches"].items():
            for kind, s in parts.items():
                lo, hi = s["interval95"]
                print(f"  {name:<45} {kind:<20} {s['survived']:>3}/{s['walking_at_switch']:<3} = "
                      f"{s['fraction']:6.1%} [{lo:.0%}, {hi:.0%}]  fell {s['fell']}, mean speed after "
                      f"{s['mean_speed_after']:+.2f} m/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
