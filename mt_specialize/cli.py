"""The ``mt-specialize`` command: train multi-task policies, look at them, serve them over ROS 2.

    mt-specialize list                               experiments and their tasks
    mt-specialize snapshot TASK PNG                  headless picture of a task's robot
    mt-specialize train EXPERIMENT --method gradient_guided --joint-samples 400k --split-fraction 0.25
                        --seed 1 --samples 4M --out DIR
    mt-specialize train --config run.yaml [--resume]
    mt-specialize train EXPERIMENT --seeds 1-5 --out DIR  five seeds in one process (DIR/seed1 ... DIR/seed5)
    mt-specialize gait RUN_DIR TASK OUT.gif          a trained policy's gait (optionally switching task)
    mt-specialize export RUN_DIR OUT.safetensors     the serving part of a run's newest checkpoint
    mt-specialize export RUN_DIR OUT.onnx            ... as an ONNX graph + manifest (onnxruntime, C++)
    mt-specialize up | switch | record | rviz-config ROS 2 graph for pip-only users (see docs/ros.md)

The paper's names are accepted everywhere: ``--jt`` = ``--joint-samples``, ``--sp`` =
``--split-fraction``, method ``ours`` = ``gradient_guided`` (``mt-specialize train --method ours --jt
400k --sp 0.25``). The paper's grid of runs and its report are not part of the package: ``python -m
paper --help`` from a source checkout.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .profiles import NAMES as PROFILES  # torch-free: a fast --help

EXPORT_FORMATS = ("safetensors", "onnx")


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .experiments import EXPERIMENTS

    table = Table(title="experiments (mt-specialize train NAME)")
    for column in ("experiment", "tasks", "batch / iteration", "budget (samples)"):
        table.add_column(column)
    for name, exp in EXPERIMENTS.items():
        table.add_row(name, ", ".join(t.name for t in exp.tasks), f"{exp.batch_size:,}", f"{exp.budget:,}")
    Console().print(table)
    print("An experiment YAML file is accepted wherever a name is (see config/experiments/).")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from .envs.render import render_task_png
    from .envs.tasks import get_task

    path = render_task_png(get_task(args.task), args.png, width=args.width, height=args.height, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _train_config(args: argparse.Namespace, out: str | Path | None = None):
    """The run's TrainConfig: --config, or (--resume) the run's saved config.yaml in ``out`` (default
    --out), or the defaults; the command-line flags given override it."""
    from .config import TrainConfig, canonical_settings

    out = args.out if out is None else out
    saved = Path(out or "") / "config.yaml"
    if args.config:
        config = TrainConfig.from_yaml(args.config)
    elif args.resume and out and saved.is_file():  # continue with the run's own settings
        config = TrainConfig.from_yaml(saved, run_config=True)
    else:
        config = TrainConfig()
    flags = {"experiment": args.experiment, "method": args.method, "jt": args.jt,
             "joint_samples": args.joint_samples, "sp": args.sp, "split_fraction": args.split_fraction,
             "seed": args.seed, "samples": args.samples, "envs_per_task": args.envs_per_task,
             "profile": args.profile, "start_from": args.start_from}
    given = {key: value for key, value in flags.items() if value is not None}
    overrides = canonical_settings(given, source="", label=lambda key: "--" + key.replace("_", "-"))
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class _Bar:
    """A rich progress bar on stderr (plain lines every 10 s when not on a terminal): ``label`` its first
    column (a format over the task's fields), then bar, count, time left and ``returns``."""

    def __init__(self, label: str, total: int, start: int, **fields):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[returns]}"), console=self.console, disable=not self.live)
        self.bar = self.progress.add_task("train", total=total, completed=start, returns="", **fields)
        self.last_print = 0.0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)


class _Progress(_Bar):
    """A rich progress bar over samples with per-task returns (plain lines when not on a terminal)."""

    def __init__(self, total: int, task_names: list[str], start: int = 0):
        super().__init__("[bold]{task.fields[phase]}", total, start, phase="joint")
        self.names = task_names

    def __call__(self, row: dict) -> None:
        returns = "  ".join(f"{n}: {_fmt(row[f'return/{n}'])}" for n in self.names)
        rate = f"{row['samples_per_s']:,.0f} samples/s"
        self.progress.update(self.bar, completed=row["samples"], phase=row["phase"], returns=f"{returns}  {rate}")
        import time

        if not self.live and time.monotonic() - self.last_print > 10:
            self.last_print = time.monotonic()
            print(f"[{row['phase']}] it {int(row['iteration'])}  samples {int(row['samples']):,}  "
                  f"pooled {_fmt(row['return_pooled'])}  {returns}  {rate}", file=sys.stderr, flush=True)


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:7.1f}"


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``1-5``, ``1,3,8`` or both (``1-3,7``) -> distinct seeds in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                raise ValueError
            seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give non-negative seeds as a range and/or a list, e.g. 1-5 or "
                         f"1,3,8") from None
    return seeds


class _GroupProgress(_Bar):
    """One rich bar over the samples of all runs of a group, each run's pooled return beside it."""

    def __init__(self, configs: list, starts: list[int]):
        super().__init__("[bold]{task.fields[n]} runs", sum(c.samples for c in configs), sum(starts), n=len(configs))
        self.seeds = [c.seed for c in configs]
        self.budgets = [c.samples for c in configs]
        self.samples = list(starts)
        self.returns = [float("nan")] * len(configs)

    def __call__(self, k: int, row: dict) -> None:
        import time

        self.samples[k], self.returns[k] = int(row["samples"]), row["return_pooled"]
        text = "  ".join(f"seed{s}: {_fmt(r)}" for s, r in zip(self.seeds, self.returns))
        running = sum(n < b for n, b in zip(self.samples, self.budgets)) or 1
        text += f"  {row['samples_per_s'] * running:,.0f} samples/s"  # a row's rate is per run of the group
        self.progress.update(self.bar, completed=sum(self.samples), returns=text)
        if not self.live and time.monotonic() - self.last_print > 10:
            self.last_print = time.monotonic()
            print(f"samples {sum(self.samples):,}  pooled {text}", file=sys.stderr, flush=True)


def _cmd_train_seeds(args: argparse.Namespace) -> int:
    """``train --seeds``: the runs of several seeds in one process (``run_group.RunGroup``)."""
    import copy

    import numpy as np

    from .run_group import RunGroup, run_groups
    from .stop_signals import StopOnSignals
    from .train import Interrupted

    if args.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds)
    base = _train_config(args, out="")
    configs, out_dirs = [], []
    for seed in seeds:
        config = copy.deepcopy(base)
        config.seed = seed
        out = Path(args.out) / f"seed{seed}" if args.out else Path("runs") / _default_run_name(config)
        if args.resume and not args.config and (out / "config.yaml").is_file():
            config = _train_config(args, out=out)  # the run's own settings, the flags given on top
            config.seed = seed
        configs.append(config)
        out_dirs.append(out)
    resume = [args.resume and (d / "config.yaml").is_file() for d in out_dirs]
    if args.groups < 1 or args.groups > len(seeds):
        raise ValueError(f"--groups must be between 1 and the number of seeds ({len(seeds)}), got {args.groups}")
    if args.groups > 1:
        for config in configs:
            config.physics_threads = 1  # one core per group (result-neutral)
    parts = [list(part) for part in np.array_split(np.arange(len(seeds)), args.groups)]
    groups = []
    try:
        for part in parts:
            groups.append(RunGroup([configs[k] for k in part], [out_dirs[k] for k in part],
                                   resume=[resume[k] for k in part]))
    except BaseException:
        for group in groups:
            group.close()
        raise
    trainers = [t for group in groups for t in group.trainers]
    c = trainers[0].config
    print(f"{len(seeds)} runs in one process ({args.groups} group{'s' if args.groups > 1 else ''}): "
          f"{trainers[0].experiment.name} "
          f"[{', '.join(trainers[0].task_names)}], method {c.method}, seeds {seeds}, {c.samples:,} samples each, "
          f"into {', '.join(map(str, out_dirs))}", file=sys.stderr)
    with _GroupProgress([t.config for t in trainers], [t.samples for t in trainers]) as progress, \
            StopOnSignals() as stop:
        for part, group in zip(parts, groups):
            group.progress = lambda i, row, part=part: progress(int(part[i]), row)
        try:
            summaries = [s for group_summaries in run_groups(groups, should_stop=stop) for s in group_summaries]
        except Interrupted as exc:
            print(f"interrupted by {stop.name}: {exc}", file=sys.stderr)
            return 130
    from rich.console import Console
    from rich.table import Table

    failed = [s for s in summaries if "failed" in s]
    finished = [s for s in summaries if "failed" not in s]
    for s in failed:
        print(f"mt-specialize train: run {s['run']} stopped: {s['failed']}", file=sys.stderr)
    if finished:
        table = Table(title=f"{finished[0]['experiment']} / {finished[0]['method']}: mean return of the last 100 "
                            f"episodes")
        table.add_column("task")
        for s in finished:
            table.add_column(f"seed {s['seed']}", justify="right")
        for name in finished[0]["returns"]:
            table.add_row(name, *(_fmt(s["returns"][name]) for s in finished))
        table.add_row("[bold]pooled", *(_fmt(s["return_pooled"]) for s in finished))
        Console().print(table)
        done = [d for d, s in zip(out_dirs, summaries) if "failed" not in s]
        print(f"results: {', '.join(f'{d}/summary.json' for d in done)}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .stop_signals import StopOnSignals
    from .train import Interrupted, Trainer

    if args.seeds is not None:
        return _cmd_train_seeds(args)
    config = _train_config(args)
    out = Path(args.out) if args.out else Path("runs") / _default_run_name(config)
    trainer = Trainer(config, out, resume=args.resume)
    c = trainer.config
    print(f"run {out}: {trainer.experiment.name} [{', '.join(trainer.task_names)}], method {c.method}, "
          f"joint samples {c.joint_samples:,}, split fraction {c.split_fraction:g}, seed {c.seed}, "
          f"{c.samples:,} samples, "
          f"{trainer.batch:,} samples/iteration ({c.envs_per_task} envs x {trainer.steps} steps per task)",
          file=sys.stderr)
    with _Progress(c.samples, trainer.task_names, start=trainer.samples) as progress, StopOnSignals() as stop:
        trainer.progress = progress
        try:
            summary = trainer.run(should_stop=stop)
        except Interrupted as exc:
            print(f"interrupted by {stop.name}: {exc}", file=sys.stderr)
            return 130
    table = Table(title=f"{summary['experiment']} / {summary['method']}: mean return of the last 100 episodes")
    table.add_column("task")
    table.add_column("return", justify="right")
    for name, value in summary["returns"].items():
        table.add_row(name, _fmt(value))
    table.add_row("[bold]pooled", _fmt(summary["return_pooled"]))
    Console().print(table)
    print(f"results: {out}/summary.json, curve: {out}/learning_curve.png, "
          f"TensorBoard: tensorboard --logdir {out}/tb")
    return 0


def _default_run_name(config) -> str:
    """``<experiment>_<method>[_jt<J>_sp<S>]_seed<N>`` in the paper's names
    (``three_hoppers_ours_jt400k_sp0.25_seed1``)."""
    exp = Path(str(config.experiment)).stem
    from .methods import get_method

    try:
        method = get_method(config.method)
    except ValueError:
        method = None
    parts = [exp, method.file_name if method else config.method]
    if method is not None and method.chooses_split:
        parts += [f"jt{config.joint_samples or '400k'}",
                  f"sp{config.split_fraction if config.split_fraction is not None else 0.25}"]
    return "_".join(str(p) for p in parts + [f"seed{config.seed}"])


def _cmd_export(args: argparse.Namespace) -> int:
    from .learning.inference import InferencePolicy

    source = _checkpoint_path(args.source)
    if (args.format or ("onnx" if Path(args.out).suffix == ".onnx" else "safetensors")) == "onnx":
        return _export_onnx(source, Path(args.out))
    path = InferencePolicy.export(source, args.out)
    policy = InferencePolicy.from_checkpoint(path)
    print(f"wrote {path} ({path.stat().st_size:,} bytes): tasks {policy.task_names}, from {source}")
    return 0


def _export_onnx(source: Path, out: Path) -> int:
    """The checkpoint's policy as an ONNX graph with its manifest (``learning.onnx_export``); the
    manifest's layout gives each task's robot as the run trained it (``experiments.task_io``)."""
    from .experiments import task_io
    from .learning.inference import InferencePolicy

    try:
        from .learning.onnx_export import export_onnx

        policy = InferencePolicy.from_checkpoint(source)
        layout = {task: task_io(task, policy.run_config) for task in policy.task_names}
        path, manifest = export_onnx(policy, out, layout, source=str(source))
    except ImportError as exc:
        print(f"mt-specialize export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and its manifest {manifest}: tasks {policy.task_names}, "
          f"inputs observation (robots, {policy.obs_dim}) float64 and task (robots,) int64, output action "
          f"(robots, {policy.act_dim}); from {source}")
    return 0


def _checkpoint_path(source: str) -> Path:
    """A checkpoint file, or a run directory's newest checkpoint (ValueError if it has none)."""
    from .train import latest_checkpoint

    path = Path(source)
    if path.is_dir():
        found = latest_checkpoint(path) or (path / "policy.safetensors")  # archived grid cells keep the latter
        if not found.exists():
            raise ValueError(f"{path} holds no checkpoints/ckpt_*.safetensors")
        return found
    return path


def _cmd_gait(args: argparse.Namespace) -> int:
    from .envs.gait import play, write_animation
    from .envs.planar import x_position
    from .learning.inference import InferencePolicy

    from .experiments import task_as_trained

    policy = InferencePolicy.from_checkpoint(_checkpoint_path(args.checkpoint))
    schedule = [(0, args.task)]
    if args.switch_to:
        schedule.append((args.switch_at, args.switch_to))
    task = task_as_trained(args.task, policy.run_config)  # the robot as the run trained it (its profile)
    episode = play(policy, task, schedule, args.steps, seed=args.seed)
    path = write_animation(task, episode.qpos, args.out, width=args.width, height=args.height)
    x = x_position(episode.qpos)
    print(f"wrote {path}: {len(episode.task_index)} control steps ({episode.ended_by}), return "
          f"{episode.episode_return:.1f}, torso x from {x[0]:.2f} m to {x[-1]:.2f} m")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .methods import METHODS, method_names

    parser = argparse.ArgumentParser(prog="mt-specialize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="experiments and their tasks")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("snapshot", help="render a task's robot headless to a PNG")
    p.add_argument("task", help="task name (see `mt-specialize list`)")
    p.add_argument("png", help="output PNG path")
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_snapshot)

    p = sub.add_parser("train", help="train one run (joint -> split -> specialize, or a baseline)")
    p.add_argument("experiment", nargs="?", help="built-in experiment name or experiment YAML file")
    p.add_argument("--config", help="YAML file of TrainConfig settings (command-line flags override it)")
    methods = [m.name + (f" (the paper's {m.paper_name})" if m.paper_name else "") + f": {m.summary}"
               for m in METHODS.values()]
    p.add_argument("--method", choices=method_names(), metavar="METHOD",
                   help="; ".join(methods).replace("%", "%%") + " (default gradient_guided)")
    p.add_argument("--joint-samples", dest="joint_samples", metavar="N",
                   help="joint-training samples (all tasks) before the split, e.g. 400k (default 400k)")
    p.add_argument("--jt", metavar="N", help="the paper's name of --joint-samples")
    p.add_argument("--split-fraction", dest="split_fraction", metavar="F",
                   help="fraction of the policy's entries split into per-task copies, in [0, 1] (default 0.25)")
    p.add_argument("--sp", metavar="F", help="the paper's name of --split-fraction")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", metavar="LIST", help="train several seeds in one process, e.g. 1-5 or 1,3,8: their "
                   "envs stepped and networks updated together, each run as if alone (same results as --seed), "
                   "into --out/seed<N> (default runs/<experiment>_..._seed<N>)")
    p.add_argument("--groups", type=int, default=1, metavar="N",
                   help="with --seeds: split the runs into N groups trained at once on N threads, one core each "
                        "(default 1; same results either way)")
    p.add_argument("--samples", help="budget: env steps summed over tasks, e.g. 3M")
    p.add_argument("--envs-per-task", type=int, dest="envs_per_task")
    p.add_argument("--out", help="run directory (default runs/<experiment>_<method>_..._seed<N>)")
    p.add_argument("--profile", choices=list(PROFILES),
                   help="settings bundle: paper (robots, optimiser, revert rule as the paper's authors ran "
                        "them, the robots emulated in MuJoCo), paper_dart (the same on the DART engine, the "
                        "authors' simulator: pip install .[dart]), mujoco (physically correct robots, Gymnasium's contact conventions; the "
                        "default), none (every setting at its own default: the first grid's robots)")
    p.add_argument("--start-from", dest="start_from", metavar="CHECKPOINT",
                   help="start this new run from another run's training checkpoint (or its run directory's "
                        "newest) and train on under this run's settings, e.g. with task switches")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(with its saved config.yaml unless --config is given)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("gait", help="render a trained policy's gait headless to GIF/MP4 (optional task switch)")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("task", help="task (robot, termination) to run, and the first task driving it")
    p.add_argument("out", help="output .gif or .mp4")
    p.add_argument("--steps", type=int, default=500,
                   help="control steps (the task's control period each: 8 ms, 125 per second, for the built-in tasks)")
    p.add_argument("--switch-to", help="switch the driving task at --switch-at, e.g. biped_backward")
    p.add_argument("--switch-at", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.set_defaults(func=_cmd_gait)

    p = sub.add_parser("export", help="a small serving checkpoint (policy + normaliser) from a run, or an ONNX graph")
    p.add_argument("source", help="a run directory (its newest checkpoint) or a checkpoint file")
    p.add_argument("out", help="output file: .safetensors, or .onnx (with its manifest beside it as .json)")
    p.add_argument("--format", choices=EXPORT_FORMATS,
                   help="safetensors: the policy weights and normaliser, for mt_specialize (gait, policy server); "
                        "onnx: every task's policy as one graph (inputs observation and task, output the mean "
                        "action) plus a manifest, for onnxruntime without Python (needs pip install "
                        "mt_specialize[onnx]). Default: onnx if OUT ends in .onnx, else safetensors")
    p.set_defaults(func=_cmd_export)

    try:
        from .ros.cli import add_ros_subcommands
    except ImportError:  # ROS 2 not installed: the core CLI still works
        pass
    else:
        add_ros_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import RevertLoop

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mt-specialize {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RevertLoop as exc:
        print(f"mt-specialize {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
