"""Training throughput: ours vs Stable-Baselines3 PPO vs the MuJoCo physics bound, in one run.

Prints (docs/design.md#research-tooling: ratios measured in one run, on one machine):

(a) our training throughput (samples/s over whole iterations: rollout + GAE + PPO update) with the
    paper's PPO settings, joint phase and specialized phase separately, per experiment; also the
    rollout-only rate and an *estimate* of the wall time of a 3M-sample run (jt = 400k joint samples,
    the rest specialized; checkpoint and metrics writing not included);
(b) Stable-Baselines3 PPO on the capsule hopper (``TaskEnv("hopper_capsule")``), same network
    (separate 3x64 tanh policy and value nets) and PPO settings (n_steps 4096, 10 epochs,
    minibatch 256, lr 3e-4, gamma .99, lambda .95, clip .2, entropy 0), same torch thread count;
(c) the physics bound: single-core ``mujoco.mj_step`` calls/s on the experiment's models
    (``task.build_model()``), replaying states and actions recorded during (a) (zero warm-start,
    frame skip 4, as training does), as a Python loop of mj_step and as a 1-thread ``mujoco.rollout``
    (no Python per step); the faster is the bound, given as env steps/s = calls/s / 4;
(d) ratios: ours / SB3, and our rollout / (physics bound x physics threads used).
(f) with a profile on the DART engine and its MuJoCo counterpart in ``--profiles`` (``paper_dart`` and
    ``paper``: the same robots, settings and training, another simulator): DART / MuJoCo ratios of (a)
    and (c) per experiment, all measured in this run. A DART profile's physics bound (c) replays the
    recorded steps through ``dart_engine.DartWorld.control_step`` (single core, frame skip 4); its
    training steps the envs in the trainer's process and ``physics threads - 1`` worker processes.

With ``--seeds K`` it times instead many runs in one process (``mt_specialize.run_group.RunGroup``):

(e) K seeds of one config (ours, half the iterations joint, half specialized) trained in one process
    (one group, and two groups on two threads with one physics thread each) against the same K runs
    one after another, each timing in a fresh process: aggregate samples/s
    over whole iterations (the first iteration of each phase, a warm-up, not counted), the speed-up,
    the peak memory of the one process and what each further run adds, and whether every run's
    metrics are identical both ways (they must be); per experiment and profile, beside SB3 (b).

Usage: ``python bench/throughput.py [--samples 24k] [--sb3-samples N] [--experiments ...] [--json]``,
``python bench/throughput.py --profiles paper paper_dart --sb3-samples 0`` (DART against MuJoCo),
``python bench/throughput.py --seeds 5 [--iterations 6]``.
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

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

from mt_specialize.config import DEFAULT_JOINT_SAMPLES, TrainConfig, parse_count
from mt_specialize.experiments import get_experiment
from mt_specialize.envs.tasks import TaskEnv
from mt_specialize.train import Trainer

RUN_SAMPLES = 3_000_000  # the Table I budget the wall-time estimate is for
# timed beside the profiles: the paper profile with the first paper grid's rollout geometry (16 envs per
# task, advantages standardised per task), so the cost of the authors' 4 envs per task reads off one run
PROFILE_VARIANTS = {"paper_16envs": ("paper", {"envs_per_task": 16}, {"advantage_norm": "per_task_iteration"})}
_FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


# -- (a) ours ------------------------------------------------------------------------------------------
def bench_ours(experiment: str, samples_per_phase: int, physics_threads: int | None, torch_threads: int,
               record_steps: int, profile: str = "mujoco") -> dict:
    """Run ``Trainer.run`` through a short joint phase and a short specialized phase.

    One warm-up iteration per phase is run and not counted. Env states and actions of the joint phase
    are recorded (every step, evenly thinned to ``record_steps`` env steps) for the physics bound.
    """
    exp = get_experiment(experiment)
    profile, settings, ppo_settings = PROFILE_VARIANTS.get(profile, (profile, {}, {}))
    probe = TrainConfig(experiment=experiment, profile=profile, **settings).resolved(exp.budget, exp.batch_size)
    n_tasks = len(exp.tasks)
    steps = max(1, round(probe.batch_size / (n_tasks * probe.envs_per_task)))
    batch = n_tasks * probe.envs_per_task * steps
    iters = max(1, -(-samples_per_phase // batch))
    joint_samples = (1 + iters) * batch
    config = TrainConfig(experiment=experiment, method="gradient_guided", seed=1, joint_samples=joint_samples,
                         samples=joint_samples + (1 + iters) * batch,
                         physics_threads=physics_threads, torch_threads=torch_threads, checkpoint_every=10**6,
                         profile=profile, **settings)
    for key, value in ppo_settings.items():
        setattr(config.ppo, key, value)
    rows: list[dict] = []
    out = tempfile.mkdtemp(prefix="mt_bench_")
    try:
        trainer = Trainer(config, out, progress=rows.append)
        env = trainer.env
        recorded: list[tuple[np.ndarray, np.ndarray]] = []
        plain_step = env.step

        def recording_step(actions):
            if not trainer.split_done:
                recorded.append((env.state.copy(), np.asarray(actions, dtype=np.float64).reshape(env.state.shape[0], -1)))
            return plain_step(actions)

        env.step = recording_step
        start = time.perf_counter()
        trainer.run()
        wall = time.perf_counter() - start
        nthread = env.nthread
        models = env.models
        envs_per_task = env.envs_per_task
        from mt_specialize.envs.dart_engine import DartBatch

        # the DART stepper of a profile on the DART engine, else None
        dart = env.stepper if isinstance(env.stepper, DartBatch) else None
        if dart is not None:  # the robots by task index, for the physics bound
            models = [dart.descs[dart.row_robot[k * envs_per_task]] for k in range(len(models))]
    finally:
        shutil.rmtree(out, ignore_errors=True)

    def phase(name: str) -> dict:
        timed = [r for r in rows if r["phase"] == name][1:]  # first iteration of each phase: warm-up
        seconds = sum(batch / r["samples_per_s"] for r in timed)
        rollout_seconds = sum(batch / r["rollout_samples_per_s"] for r in timed)
        return {"iterations": len(timed), "samples": batch * len(timed),
                "samples_per_s": batch * len(timed) / seconds,
                "rollout_samples_per_s": batch * len(timed) / rollout_seconds,
                "update_seconds_per_iteration": (seconds - rollout_seconds) / len(timed)}

    joint, spec = phase("joint"), phase("specialized")
    estimate = (DEFAULT_JOINT_SAMPLES / joint["samples_per_s"]
                + (RUN_SAMPLES - DEFAULT_JOINT_SAMPLES) / spec["samples_per_s"])
    # physics replay set: (model index, state, action) evenly thinned over the joint phase
    states = np.concatenate([s for s, _ in recorded])
    actions = np.concatenate([a for _, a in recorded])
    model_index = np.tile(np.repeat(np.arange(len(models)), envs_per_task), len(recorded))
    keep = np.linspace(0, len(states) - 1, min(record_steps, len(states))).astype(int)
    return {"experiment": experiment, "profile": profile, "engine": "mujoco" if dart is None else "dart",
            "optimizer": probe.ppo.optimizer, "batch": batch, "physics_threads": nthread, "torch_threads": torch_threads,
            "joint": joint, "specialized": spec, "wall_seconds": wall,
            "estimated_3M_run_minutes": estimate / 60.0,
            "_replay": (models, model_index[keep], states[keep], actions[keep])}


# -- (c) physics bound ---------------------------------------------------------------------------------
def bench_physics(models, model_index: np.ndarray, states: np.ndarray, actions: np.ndarray,
                  frame_skip: int = 4, repeats: int = 3) -> dict:
    """Single-core physics rate replaying training's (state, action) pairs as training steps them
    (set state, zero warm-start, ``frame_skip`` substeps).

    Two ways: a Python loop of ``mujoco.mj_step`` calls, and ``mujoco.rollout`` with one thread (the
    same substeps in C, no Python per step). The bound is the faster of the two; best of ``repeats``
    passes each (the pass least disturbed by other processes).
    """
    datas = [mujoco.MjData(m) for m in models]
    n = len(states)

    def python_loop():
        for k, state, action in zip(model_index, states, actions):
            model, data = models[k], datas[k]
            mujoco.mj_setState(model, data, state, _FULLPHYSICS)
            data.ctrl[:] = action
            data.qacc_warmstart[:] = 0
            mujoco.mj_step(model, data, nstep=frame_skip)

    batch_models = [models[k] for k in model_index]
    control = np.repeat(actions[:, None, :], frame_skip, axis=1)
    warmstart = np.zeros((n, models[0].nv))
    runner = mj_rollout.Rollout(nthread=1)

    def native_rollout():
        runner.rollout(batch_models, [datas[0]], states, control, nstep=frame_skip, skip_checks=True,
                       initial_warmstart=warmstart)

    best = {"mj_step_loop": float("inf"), "rollout_1_thread": float("inf")}
    for _ in range(repeats):
        for name, run in (("mj_step_loop", python_loop), ("rollout_1_thread", native_rollout)):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    rates = {f"{name}_mj_step_per_s": n * frame_skip / seconds for name, seconds in best.items()}
    bound = max(rates.values())
    return {"env_steps": n, **rates, "mj_step_per_s": bound, "env_steps_per_s": bound / frame_skip}


def bench_dart_physics(descs, model_index: np.ndarray, states: np.ndarray, actions: np.ndarray,
                       frame_skip: int = 4, repeats: int = 3) -> dict:
    """(c) on the DART engine: single-core control steps/s replaying training's (state, action) pairs through
    ``DartWorld.control_step`` (one world per robot, as a batch's process holds them); best of ``repeats``."""
    from mt_specialize.envs.dart_engine import DartWorld

    worlds = [DartWorld(d, frame_skip) for d in descs]
    n = len(states)
    ndof = worlds[0].ndof
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for k, state, action in zip(model_index, states, actions):
            worlds[k].control_step(state[0], state[1:1 + ndof], state[1 + ndof:], action)
        best = min(best, time.perf_counter() - start)
    rate = n / best
    return {"env_steps": n, "world_step_per_s": rate * frame_skip, "env_steps_per_s": rate}


# -- (b) Stable-Baselines3 -----------------------------------------------------------------------------
def bench_sb3(samples: int, torch_threads: int) -> dict:
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError:
        return {"skipped": "stable-baselines3 is not installed (pip install stable-baselines3)"}

    class Clock(BaseCallback):
        """Wall time spent collecting rollouts (the rest of learn() is the update)."""

        def __init__(self):
            super().__init__()
            self.rollout_seconds = 0.0
            self._t = 0.0

        def _on_rollout_start(self) -> None:
            self._t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.rollout_seconds += time.perf_counter() - self._t

        def _on_step(self) -> bool:
            return True

    torch.set_num_threads(torch_threads)
    n_steps = 4096
    model = PPO("MlpPolicy", TaskEnv("hopper_capsule"), n_steps=n_steps, batch_size=256, n_epochs=10,
                learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64, 64], vf=[64, 64, 64]), activation_fn=torch.nn.Tanh),
                device="cpu", seed=1, verbose=0)
    clock = Clock()
    start = time.perf_counter()
    model.learn(total_timesteps=samples, callback=clock)
    seconds = time.perf_counter() - start
    done = int(model.num_timesteps)
    return {"version": __import__("stable_baselines3").__version__, "n_steps": n_steps, "samples": done,
            "samples_per_s": done / seconds, "rollout_samples_per_s": done / clock.rollout_seconds,
            "torch_threads": torch_threads}


# -- (e) K seeds in one process -------------------------------------------------------------------------
def _time_seeds(experiment: str, profile: str, seeds: list[int], iterations: int, groups: int,
                physics_threads: int | None, torch_threads: int) -> dict:
    """In a fresh process: train ``seeds`` (ours, jt = half of ``iterations``) one after another
    (``groups`` 0), in one group, or in ``groups`` groups on as many threads (1 physics thread each);
    per run its metrics rows; the timed seconds and samples (warm-up iterations excluded); peak RSS."""
    import resource

    from mt_specialize.run_group import RunGroup, run_groups

    exp = get_experiment(experiment)
    profile, settings, ppo_settings = PROFILE_VARIANTS.get(profile, (profile, {}, {}))
    probe = TrainConfig(experiment=experiment, profile=profile, **settings).resolved(exp.budget, exp.batch_size)
    steps = max(1, round(probe.batch_size / (len(exp.tasks) * probe.envs_per_task)))
    batch = len(exp.tasks) * probe.envs_per_task * steps
    jt = (iterations // 2) * batch
    configs = [TrainConfig(experiment=experiment, method="gradient_guided", seed=seed, joint_samples=jt,
                           samples=iterations * batch, torch_threads=torch_threads,
                           physics_threads=1 if groups > 1 else physics_threads,
                           checkpoint_every=10**6, keep_checkpoints=1, profile=profile) for seed in seeds]
    out = tempfile.mkdtemp(prefix="mt_bench_seeds_")
    rows: dict[int, list[dict]] = {k: [] for k in range(len(seeds))}
    try:
        dirs = [os.path.join(out, f"seed{seed}") for seed in seeds]
        if groups:
            parts = np.array_split(np.arange(len(seeds)), groups)
            run_groups([RunGroup([configs[k] for k in part], [dirs[k] for k in part],
                                 progress=lambda i, row, part=part: rows[int(part[i])].append(row)) for part in parts])
        else:
            for k, (config, run_dir) in enumerate(zip(configs, dirs)):
                Trainer(config, run_dir, progress=rows[k].append).run()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    parts = np.array_split(np.arange(len(seeds)), max(groups, 1)) if groups else [[k] for k in range(len(seeds))]
    group_seconds = []  # per group (sequential: per run) the timed iterations' wall time
    counted = 0
    for part in parts:
        total = 0.0
        for k in part:
            run_rows = rows[int(k)]
            for i, row in enumerate(run_rows):
                if i == 0 or (row["phase"] == "specialized" and run_rows[i - 1]["phase"] == "joint"):
                    continue  # warm-up: the first iteration of each phase
                counted += batch
                total += batch / row["samples_per_s"] / len(part)  # a group's row: its iteration's time per run
        group_seconds.append(total)
    # runs one after another add up; groups on threads run at the same time: the slowest one's time
    seconds = sum(group_seconds) if not groups else max(group_seconds)
    timing = {"samples_per_s", "rollout_samples_per_s"}
    return {"batch": batch, "samples": counted, "seconds": seconds, "samples_per_s": counted / seconds,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "metrics": [[{k: v for k, v in r.items() if k not in timing} for r in rows[k]] for k in sorted(rows)]}


def bench_seeds(experiment: str, profile: str, n_seeds: int, iterations: int, physics_threads: int | None,
                torch_threads: int) -> dict:
    """(e): K seeds in one process vs one after another, and one run alone (for memory), each in a
    fresh process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    seeds = list(range(1, n_seeds + 1))
    context = multiprocessing.get_context("spawn")

    def fresh(*args):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_time_seeds, experiment, profile, *args, physics_threads, torch_threads).result()

    one = fresh(seeds[:1], iterations, 0)
    sequential = fresh(seeds, iterations, 0)
    grouped = fresh(seeds, iterations, 1)
    threaded = fresh(seeds, iterations, 2)
    return {"experiment": experiment, "profile": profile, "seeds": n_seeds, "iterations": iterations,
            "batch": grouped["batch"], "sequential_samples_per_s": sequential["samples_per_s"],
            "grouped_samples_per_s": grouped["samples_per_s"],
            "speedup": grouped["samples_per_s"] / sequential["samples_per_s"],
            "two_groups_samples_per_s": threaded["samples_per_s"],
            "two_groups_speedup": threaded["samples_per_s"] / sequential["samples_per_s"],
            "identical_metrics": grouped["metrics"] == sequential["metrics"] == threaded["metrics"],
            "process_rss_bytes": one["peak_rss_bytes"], "grouped_rss_bytes": grouped["peak_rss_bytes"],
            "rss_per_further_run_bytes": (grouped["peak_rss_bytes"] - one["peak_rss_bytes"]) / max(1, n_seeds - 1)}


def _report_seeds(args) -> int:
    load_before = os.getloadavg()
    results = [bench_seeds(e, p, args.seeds, args.iterations, args.physics_threads, args.torch_threads)
               for p in args.profiles for e in args.experiments]
    sb3_samples = parse_count(args.sb3_samples, "--sb3-samples") if args.sb3_samples is not None else 4 * 4096
    sb3 = bench_sb3(sb3_samples, args.torch_threads) if sb3_samples > 0 else {"skipped": "--sb3-samples 0"}
    report = {"seeds": results, "sb3": sb3, "load_average": {"before": load_before, "after": os.getloadavg()}}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.seeds} seeds in one process vs one after another ({args.iterations} iterations per run, the "
          f"first of each phase not timed); load average before {load_before[0]:.2f}, after "
          f"{report['load_average']['after'][0]:.2f}")
    mib = 2**20
    for r in results:
        print(f"[{r['experiment']}@{r['profile']}] batch {r['batch']}: sequential {r['sequential_samples_per_s']:,.0f} "
              f"samples/s, one group {r['grouped_samples_per_s']:,.0f} samples/s = {r['speedup']:.2f}x, two groups on "
              f"two threads {r['two_groups_samples_per_s']:,.0f} samples/s = {r['two_groups_speedup']:.2f}x; "
              f"memory: one run's process {r['process_rss_bytes'] / mib:,.0f} MiB, {args.seeds} runs "
              f"{r['grouped_rss_bytes'] / mib:,.0f} MiB (+{r['rss_per_further_run_bytes'] / mib:,.0f} MiB per further run); "
              f"metrics identical to the runs alone: {'yes' if r['identical_metrics'] else 'NO'}")
    if "samples_per_s" in sb3:
        print(f"SB3 {sb3['version']} PPO, hopper_capsule, one run: {sb3['samples_per_s']:,.0f} samples/s over "
              f"{sb3['samples']:,} samples")
        for r in results:
            print(f"  {r['experiment']}@{r['profile']}: {args.seeds} seeds in one process / SB3 = "
                  f"{r['grouped_samples_per_s'] / sb3['samples_per_s']:.1f}x, sequential / SB3 = "
                  f"{r['sequential_samples_per_s'] / sb3['samples_per_s']:.1f}x")
    else:
        print(f"SB3: {sb3['skipped']}")
    return 0 if all(r["identical_metrics"] for r in results) else 1


# -- report --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["three_hoppers", "biped_fwd_bwd"],
                        help="experiments to time (the first is compared with SB3; default: %(default)s)")
    parser.add_argument("--samples", default="24k",
                        help="samples timed per phase (joint, specialized) per experiment, plus one warm-up "
                             "iteration each (default: %(default)s)")
    parser.add_argument("--sb3-samples", default=None,
                        help="SB3 samples (rounded up to whole 4096-step rollouts; default: as many as ours timed "
                             "on the first experiment; 0 skips SB3)")
    parser.add_argument("--physics-steps", default="20k",
                        help="env steps replayed for the physics bound, per experiment (default: %(default)s)")
    parser.add_argument("--physics-threads", type=int, default=None,
                        help="our MuJoCo rollout threads (default: the trainer's default, min(2, cores))")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads for ours and SB3 (default: %(default)s, the TrainConfig default)")
    parser.add_argument("--profiles", nargs="+", default=["mujoco", "paper"],
                        choices=["paper", "paper_dart", "mujoco", "none", *PROFILE_VARIANTS],
                        help="settings profiles to time ours with (default: %(default)s; paper = the authors' "
                             "optimiser, T single-task Adam steps per minibatch; paper_dart = paper on the DART "
                             "engine, compared with paper in (f))")
    parser.add_argument("--seeds", type=int, default=None, metavar="K",
                        help="time K seeds trained in one process against K runs one after another, (e)")
    parser.add_argument("--iterations", type=int, default=6,
                        help="with --seeds: iterations per run, half joint, half specialized (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    args = parser.parse_args(argv)
    if args.seeds is not None:
        if args.seeds < 2 or args.iterations < 4:
            parser.error("--seeds needs K >= 2 and --iterations >= 4")
        return _report_seeds(args)
    samples = parse_count(args.samples, "--samples")
    physics_steps = parse_count(args.physics_steps, "--physics-steps")

    load_before = os.getloadavg()
    report: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                "python": platform.python_version(), "torch": torch.__version__,
                                "mujoco": mujoco.__version__, "numpy": np.__version__}}
    ours = {}
    for experiment, profile in ((e, p) for p in args.profiles for e in args.experiments):
        name = f"{experiment}@{profile}"
        result = bench_ours(experiment, samples, args.physics_threads, args.torch_threads, physics_steps, profile)
        replay = result.pop("_replay")
        result["physics_bound"] = bench_physics(*replay) if result["engine"] == "mujoco" else bench_dart_physics(*replay)
        bound = result["physics_bound"]["env_steps_per_s"] * result["physics_threads"]
        for phase in ("joint", "specialized"):
            result[phase]["rollout_over_physics_bound_x_cores"] = result[phase]["rollout_samples_per_s"] / bound
        ours[name] = result
    report["ours"] = ours
    if "paper" in args.profiles and "paper_dart" in args.profiles:  # (f) the same run on both simulators
        report["dart_over_mujoco"] = {e: {
            **{f"{phase}_samples_per_s": ours[f"{e}@paper_dart"][phase]["samples_per_s"]
               / ours[f"{e}@paper"][phase]["samples_per_s"] for phase in ("joint", "specialized")},
            **{f"{phase}_rollout_samples_per_s": ours[f"{e}@paper_dart"][phase]["rollout_samples_per_s"]
               / ours[f"{e}@paper"][phase]["rollout_samples_per_s"] for phase in ("joint", "specialized")},
            "physics_bound_env_steps_per_s": ours[f"{e}@paper_dart"]["physics_bound"]["env_steps_per_s"]
            / ours[f"{e}@paper"]["physics_bound"]["env_steps_per_s"]} for e in args.experiments}
    first = next(iter(ours.values()))
    sb3_samples = (parse_count(args.sb3_samples, "--sb3-samples") if args.sb3_samples is not None
                   else first["joint"]["samples"] + first["specialized"]["samples"])
    if sb3_samples > 0:
        report["sb3"] = bench_sb3(sb3_samples, args.torch_threads)
        if "samples_per_s" in report["sb3"]:
            sb3 = report["sb3"]["samples_per_s"]
            report["ratios_vs_sb3"] = {f"{name}/{phase}": ours[name][phase]["samples_per_s"] / sb3
                                       for name in ours for phase in ("joint", "specialized")}
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"machine: {m['cpus']} cpus ({m['processor']}), torch {m['torch']}, mujoco {m['mujoco']}; "
          f"load average before {load_before[0]:.2f}, after {report['load_average']['after'][0]:.2f} "
          f"(other processes compete for the cores: compare the ratios, measured in this one run)")
    for name, r in ours.items():
        pb = r["physics_bound"]
        print(f"\n[{name}] batch {r['batch']}, optimizer {r['optimizer']}, physics threads {r['physics_threads']}, "
              f"torch threads {r['torch_threads']}")
        for phase in ("joint", "specialized"):
            p = r[phase]
            print(f"  (a) ours {phase:<11}: {p['samples_per_s']:8,.0f} samples/s over {p['iterations']} iterations "
                  f"(rollout alone {p['rollout_samples_per_s']:,.0f}/s, update {p['update_seconds_per_iteration']:.2f} "
                  f"s/iteration)")
        if r["engine"] == "dart":
            print(f"  (c) physics bound     : {pb['world_step_per_s']:8,.0f} DART world steps/s = {pb['env_steps_per_s']:,.0f} "
                  f"env steps/s single core ({pb['env_steps']:,} recorded training steps replayed through "
                  f"DartWorld.control_step)")
        else:
            print(f"  (c) physics bound     : {pb['mj_step_per_s']:8,.0f} mj_step/s = {pb['env_steps_per_s']:,.0f} env steps/s "
                  f"single core ({pb['env_steps']:,} recorded training steps replayed; Python mj_step loop "
                  f"{pb['mj_step_loop_mj_step_per_s']:,.0f}/s, 1-thread mujoco.rollout {pb['rollout_1_thread_mj_step_per_s']:,.0f}/s)")
        for phase in ("joint", "specialized"):
            print(f"  (d) rollout / (bound x {r['physics_threads']} cores), {phase:<11}: "
                  f"{r[phase]['rollout_over_physics_bound_x_cores']:.0%}")
        print(f"      3M-sample run (jt {DEFAULT_JOINT_SAMPLES // 1000}k): ~{r['estimated_3M_run_minutes']:.1f} min "
              f"(ESTIMATE from the per-phase throughput above; checkpoints/metrics not included)")
    for experiment, ratio in report.get("dart_over_mujoco", {}).items():
        print(f"\n(f) {experiment}, paper_dart (DART) / paper (MuJoCo), this run: training "
              f"{ratio['joint_samples_per_s']:.2f}x joint, {ratio['specialized_samples_per_s']:.2f}x specialized; "
              f"rollout {ratio['joint_rollout_samples_per_s']:.2f}x / {ratio['specialized_rollout_samples_per_s']:.2f}x; "
              f"physics bound (single core) {ratio['physics_bound_env_steps_per_s']:.2f}x")
    if "sb3" in report:
        s = report["sb3"]
        if "skipped" in s:
            print(f"\n(b) SB3: skipped, {s['skipped']}")
        else:
            print(f"\n(b) SB3 {s['version']} PPO, hopper_capsule: {s['samples_per_s']:,.0f} samples/s over {s['samples']:,} "
                  f"samples (rollout alone {s['rollout_samples_per_s']:,.0f}/s; torch threads {s['torch_threads']})")
            for key, ratio in report["ratios_vs_sb3"].items():
                print(f"(d) ours/SB3 {key}: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
