"""Calibration: Stable-Baselines3's standard PPO and our trainer with the same settings, same single task.

For each model (robot + physics), in one run: SB3 ``PPO("MlpPolicy")`` on a ``VecNormalize``-wrapped
Gymnasium env and our ``Trainer`` (method ``joint`` on a one-task experiment) with
``PPOConfig.stable_baselines3()`` (2x64 tanh nets, orthogonal init, 2048 samples per iteration from
one env, 10 epochs of minibatch 64, lr 3e-4, gamma .99, lambda .95, clip .2, value coef .5, gradient
clipping .5, observation normaliser updated per step with clip 10, reward scaling by the discounted
return's std, per-minibatch advantage normalisation, env actions clipped to [-1, 1]).
It shows whether a gap lies in the robot (both trainers low) or in the trainer (ours below SB3).

Models (``--models``):

* ``capsule``: our capsule hopper as the built-in task ``hopper_capsule`` has it;
* ``capsule_paper``, ``capsule_mujoco``, ``capsule_none``: our capsule hopper in each physics
  profile (every physics setting of the profile written into the task's ``physics:``);
  ``capsule_paper_dart`` (not run by default) the same on the DART engine;
* ``gymnasium``: Gymnasium's Hopper-v5 model; SB3 runs ``gymnasium.make("Hopper-v5")``, ours the
  task ``hopper_gymnasium`` (Gymnasium's MJCF in our batched env).

A model whose task cannot be built is reported and skipped.
SB3 runs on ``TaskEnv`` for our models: the same MuJoCo model and stepping as our batched env.

Outputs under ``--out``: ``<model>/<trainer>_seed<k>.json`` (curve: samples and mean return of the
last 100 episodes after every iteration; samples/s over the whole run), reused when present and
made for the same budget and foot friction, so an interrupted run continues; ``<model>.png`` (return vs samples, both
trainers); ``summary.json``; the table printed (mean ± std over seeds at ``--marks``, ours/SB3 ratio
of mean returns and of samples/s).

``--foot-friction 2.0`` gives our robots' foot Gymnasium's hopper-foot friction (both trainers).

Usage: ``python bench/calibration.py [--samples 1M] [--seeds 3] [--models ...] [--foot-friction F] [--out DIR]``.
Needs ``pip install stable-baselines3`` (a benchmark-only dependency).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mt_specialize.config import TrainConfig, parse_count
from mt_specialize.experiments import get_experiment
from mt_specialize.learning.ppo import PPOConfig
from mt_specialize.envs.tasks import TaskEnv

from mt_specialize.profiles import NAMES as PROFILES  # noqa: E402
MODELS = ("capsule", *(f"capsule_{p}" for p in PROFILES), "gymnasium")
DEFAULT_MODELS = (*(f"capsule_{p}" for p in PROFILES if p != "paper_dart"), "gymnasium")  # DART: ask for it
TRAINERS = ("sb3", "ours")
BATCH = 2048  # SB3 n_steps x 1 env
RETURN_WINDOW = 100  # episodes, SB3's ep_info_buffer and our RETURN_WINDOW


def experiment_yaml(model: str, budget: int, directory: Path) -> Path:
    """Write the one-task experiment of ``model`` (batch 2048) and return its path."""
    if model == "capsule":
        task = "hopper_capsule"
    elif model == "gymnasium":
        task = "hopper_gymnasium"
    else:
        from mt_specialize.experiments import apply_profile, get_experiment, resolved_physics

        profile = model.split("_", 1)[1]
        resolved = resolved_physics(apply_profile(get_experiment("three_hoppers"), profile))["hopper_capsule"]
        resolved.pop("torso_mass")
        # every physics setting of the capsule hopper under the profile, explicit in the task
        task = {"name": f"hopper_capsule_{profile}", "robot": "hopper_capsule", "physics": resolved}
    import yaml

    path = directory / f"{model}.yaml"
    path.write_text(yaml.safe_dump({"name": f"calibration_{model}", "batch_size": BATCH, "budget": budget,
                                    "tasks": [task]}, sort_keys=False))
    return path


def sb3_env(model: str, experiment: Path):
    """A Gymnasium env for SB3: Hopper-v5 for ``gymnasium``, else ``TaskEnv`` of the experiment's task."""
    if model == "gymnasium":
        import gymnasium

        return gymnasium.make("Hopper-v5")
    return TaskEnv(get_experiment(str(experiment)).tasks[0])


def run_sb3(model: str, experiment: Path, seed: int, samples: int) -> dict:
    """SB3 PPO("MlpPolicy") defaults + VecNormalize defaults; the curve after every rollout."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    curve: list[tuple[int, float]] = []

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buf = self.model.ep_info_buffer
            curve.append((int(self.model.num_timesteps),
                          float(np.mean([e["r"] for e in buf])) if len(buf) else float("nan")))

    env = VecNormalize(DummyVecEnv([lambda: Monitor(sb3_env(model, experiment))]), gamma=0.99)
    agent = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    assert agent.n_steps == BATCH and agent.batch_size == 64 and agent.n_epochs == 10
    start = time.perf_counter()
    agent.learn(total_timesteps=samples, callback=Curve())
    wall = time.perf_counter() - start
    import stable_baselines3

    return {"trainer": "sb3", "version": stable_baselines3.__version__, "curve": curve,
            "samples": int(agent.num_timesteps), "wall_s": wall, "samples_per_s": agent.num_timesteps / wall}


def ours_config(experiment: Path, seed: int, samples: int) -> TrainConfig:
    """Our trainer with SB3's settings on the one-task experiment (joint = single-task PPO)."""
    return TrainConfig(experiment=str(experiment), method="joint", seed=seed, samples=samples,
                       batch_size=BATCH, envs_per_task=1, physics_threads=1, torch_threads=1,
                       checkpoint_every=10**6, keep_checkpoints=1, ppo=PPOConfig.stable_baselines3())


def run_ours(experiment: Path, seed: int, samples: int) -> dict:
    from mt_specialize.train import Trainer

    rows: list[dict] = []
    out = tempfile.mkdtemp(prefix="mt_calibration_")
    try:
        trainer = Trainer(ours_config(experiment, seed, samples), out, progress=rows.append)
        start = time.perf_counter()
        trainer.run()
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    curve = [(int(r["samples"]), float(r["return_pooled"])) for r in rows]
    return {"trainer": "ours", "curve": curve, "samples": curve[-1][0], "wall_s": wall,
            "samples_per_s": curve[-1][0] / wall}


def set_foot_friction(friction: float) -> None:
    """Give every model this process compiles from our URDFs a ``foot_geom`` sliding friction of
    ``friction`` (Gymnasium's hopper foot has 2.0; our robots 0.9 on every geom). Both trainers
    build their models through ``robots.build_model``, so both see it."""
    import mujoco

    from mt_specialize.envs import robots

    build = robots.build_model

    def build_with_foot_friction(*args, **kwargs):
        model = build(*args, **kwargs)
        foot = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_geom")
        if foot >= 0:
            model.geom_friction[foot, 0] = friction
        return model

    robots.build_model = build_with_foot_friction


def value_at(curve: list, mark: int) -> float:
    """Return of the last curve point at or before ``mark`` samples (nan if none)."""
    values = [r for s, r in curve if s <= mark]
    return values[-1] if values else float("nan")


def plot(model: str, results: dict, path: Path, note: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trainer, color in (("sb3", "tab:blue"), ("ours", "tab:orange")):
        runs = results.get(trainer, {})
        for k, (seed, run) in enumerate(sorted(runs.items())):
            s, r = np.array(run["curve"], dtype=float).T
            ax.plot(s, r, color=color, alpha=0.8, lw=1.2,
                    label=f"{'SB3 PPO' if trainer == 'sb3' else 'ours'} ({len(runs)} seeds)" if k == 0 else None)
    ax.set_xlabel("samples (env steps)")
    ax.set_ylabel(f"mean return, last {RETURN_WINDOW} episodes")
    ax.set_title(f"calibration: {model}{note}, SB3 settings on both trainers")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_std(values: list[float]) -> str:
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "n/a"
    return f"{v.mean():.0f} ± {v.std():.0f}" if len(v) > 1 else f"{v.mean():.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="1M", help="samples per run (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N per trainer and model (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS,
                        help="default: %(default)s")
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    parser.add_argument("--marks", nargs="+", default=None,
                        help="sample marks of the table (default: 1/4, 1/2, 3/4 and all of --samples)")
    parser.add_argument("--out", default="results/calibration", help="output directory (default: %(default)s)")
    parser.add_argument("--foot-friction", type=float, default=None,
                        help="sliding friction of our robots' foot_geom (e.g. 2.0, Gymnasium's hopper foot); "
                             "default: the model's own")
    args = parser.parse_args(argv)
    samples = parse_count(args.samples, "--samples")
    if samples < BATCH:
        parser.error(f"--samples must be >= {BATCH} (one iteration)")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    marks = ([parse_count(m, "--marks") for m in args.marks] if args.marks
             else [samples // 4, samples // 2, 3 * samples // 4, samples])
    if args.foot_friction is not None:
        if not args.foot_friction > 0:
            parser.error(f"--foot-friction must be > 0, got {args.foot_friction}")
        set_foot_friction(args.foot_friction)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    print(f"calibration: {samples:,} samples x {args.seeds} seeds, models {args.models}, foot friction "
          f"{args.foot_friction or 'as the model'}, "
          f"load average {os.getloadavg()[0]:.2f}, {platform.processor() or platform.machine()}", flush=True)
    report: dict = {"samples": samples, "seeds": args.seeds, "marks": marks, "foot_friction": args.foot_friction,
                    "models": {}}
    for model in args.models:
        experiment = experiment_yaml(model, samples, out)
        try:
            get_experiment(str(experiment)).tasks[0].obs_dim
        except (ValueError, KeyError) as exc:
            print(f"{model}: skipped, this version cannot build its task ({exc})", flush=True)
            report["models"][model] = {"skipped": str(exc)}
            continue
        results: dict = {}
        for seed in range(1, args.seeds + 1):
            for trainer in args.trainers:
                path = out / model / f"{trainer}_seed{seed}.json"
                run = json.loads(path.read_text()) if path.is_file() else None
                if run is None or run.get("budget") != samples or run.get("foot_friction") != args.foot_friction:
                    print(f"{model}: {trainer} seed {seed} ...", flush=True)
                    run = run_sb3(model, experiment, seed, samples) if trainer == "sb3" else run_ours(experiment, seed, samples)
                    run["budget"], run["foot_friction"] = samples, args.foot_friction
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(run))
                    print(f"{model}: {trainer} seed {seed}: return {run['curve'][-1][1]:.0f} at {run['samples']:,}, "
                          f"{run['samples_per_s']:,.0f} samples/s", flush=True)
                results.setdefault(trainer, {})[seed] = run
        plot(model, results, out / f"{model}.png",
             f" (foot friction {args.foot_friction:g})" if args.foot_friction is not None else "")
        entry = {}
        for trainer, runs in results.items():
            entry[trainer] = {"returns_at_marks": {m: [value_at(r["curve"], m) for r in runs.values()] for m in marks},
                              "samples_per_s": [r["samples_per_s"] for r in runs.values()]}
        report["models"][model] = entry
    (out / "summary.json").write_text(json.dumps(report, indent=1))

    print(f"\nmean return of the last {RETURN_WINDOW} episodes, mean ± std over {args.seeds} seeds "
          f"(SB3 settings on both trainers)")
    header = "| model | trainer | " + " | ".join(f"{m:,}" for m in marks) + " | samples/s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for model, entry in report["models"].items():
        if "skipped" in entry:
            print(f"| {model} | skipped | " + " | ".join("" for _ in marks) + " | |")
            continue
        for trainer, e in entry.items():
            cells = [mean_std(e["returns_at_marks"][m]) for m in marks]
            print(f"| {model} | {trainer} | " + " | ".join(cells) + f" | {mean_std(e['samples_per_s'])} |")
        if "sb3" in entry and "ours" in entry:
            ratio = []
            for m in marks:
                a, b = np.nanmean(entry["ours"]["returns_at_marks"][m]), np.nanmean(entry["sb3"]["returns_at_marks"][m])
                ratio.append(f"{a / b:.2f}" if np.isfinite(a) and np.isfinite(b) and b else "n/a")
            speed = np.mean(entry["ours"]["samples_per_s"]) / np.mean(entry["sb3"]["samples_per_s"])
            print(f"| {model} | ours/SB3 | " + " | ".join(ratio) + f" | {speed:.1f}x |")
    print(f"\nload average {os.getloadavg()[0]:.2f}; curves: {out}/<model>.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
