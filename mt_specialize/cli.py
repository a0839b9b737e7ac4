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
import errno
import math
import signal
import sys
from pathlib import Path

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
    from .config import SETTINGS, TrainConfig, canonical_settings

    out = args.out if out is None else out
    saved = Path(out or "") / "config.yaml"
    if args.config:
        config = TrainConfig.from_yaml(args.config)
    elif args.resume and out and saved.is_file():  # continue with the run's own settings
        config = TrainConfig.from_yaml(saved, run_config=True)
    else:
        config = TrainConfig()
    given = {}  # the setting flags given, under the name given (--jt or --joint-samples)
    for name, declared in SETTINGS.items():
        for key in (declared.paper_name, name):
            if key and declared.scalar and getattr(args, key) is not None:
                given[key] = getattr(args, key)
    overrides = canonical_settings(given, source="", label=setting_flag)
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


def parse_seeds(text: str, limit: int | None = None) -> list[int]:
    """``--seeds``: ``1-5``, ``1,3,8`` or both (``1-3,7``) -> distinct seeds in the order given; at most
    ``limit`` of them (ValueError beyond)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                raise ValueError
            if limit is not None and len(seeds) + hi - lo + 1 > limit:
                raise OverflowError
            known = set(seeds)
            seeds += [s for s in range(lo, hi + 1) if s not in known]
    except OverflowError:
        raise ValueError(f"--seeds {text[:80]!r} names more than {limit} runs, the most one process trains (each "
                         f"holds its envs, networks and optimiser): split them over several commands") from None
    except ValueError:
        raise ValueError(f"--seeds {text[:80]!r}: give non-negative seeds as a range and/or a list, e.g. 1-5 or "
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

    from .run_group import MAX_RUNS, RunGroup, run_groups
    from .train import Interrupted

    if args.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds, limit=MAX_RUNS)
    args.groups = 1 if args.groups is None else args.groups
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
    with _stop_signals(args) as stop:
        try:
            for part in parts:
                groups.append(RunGroup([configs[k] for k in part], [out_dirs[k] for k in part],
                                       resume=[resume[k] for k in part]))
        except BaseException:
            for group in groups:
                group.close()
            raise
        trainers = [t for group in groups for t in group.trainers]
        if stop():  # a signal during start-up
            for t in trainers:
                t.run_dir.discard_failed_start()
            print(f"interrupted by {stop.name} before training began", file=sys.stderr)
            return 130
        if not trainers:
            return _report_failed([s for group in groups for s in group.failed.values()])
        c = trainers[0].config
        print(f"{len(seeds)} runs in one process ({args.groups} group{'s' if args.groups > 1 else ''}): "
              f"{trainers[0].experiment.name} "
              f"[{', '.join(trainers[0].task_names)}], method {c.method}, seeds {seeds}, {c.samples:,} samples each, "
              f"into {', '.join(map(str, out_dirs))}", file=sys.stderr)
        with _GroupProgress([t.config for t in trainers], [t.samples for t in trainers]) as progress:
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
    _report_failed(failed)
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


def _report_failed(failed: list[dict]) -> int:
    """Name each run of a group that stopped (``{'failed': reason, 'run': directory}``); 1 if any did."""
    for s in failed:
        print(f"mt-specialize train: run {s['run']} stopped: {s['failed']}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .train import Interrupted, Trainer

    if args.seeds is not None:
        return _cmd_train_seeds(args)
    if args.groups is not None:
        raise ValueError("--groups divides the runs of --seeds into groups: without --seeds it has no effect "
                         "(give --seeds, or leave --groups out)")
    config = _train_config(args)
    out = Path(args.out) if args.out else Path("runs") / _default_run_name(config)
    with _stop_signals(args) as stop:
        trainer = Trainer(config, out, resume=args.resume)
        if stop():  # a signal during start-up
            trainer.run_dir.discard_failed_start()
            print(f"interrupted by {stop.name} before training began", file=sys.stderr)
            return 130
        c = trainer.config
        print(f"run {out}: {trainer.experiment.name} [{', '.join(trainer.task_names)}], method {c.method}, "
              f"joint samples {c.joint_samples:,}, split fraction {c.split_fraction:g}, seed {c.seed}, "
              f"{c.samples:,} samples, "
              f"{trainer.batch:,} samples/iteration ({c.envs_per_task} envs x {trainer.steps} steps per task)",
              file=sys.stderr)
        with _Progress(c.samples, trainer.task_names, start=trainer.samples) as progress:
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

    _output_file(args.out)
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
    """A checkpoint file, or a run directory's newest checkpoint that verifies (a damaged newer one is
    named in a warning and skipped, as a resume does; ValueError if it has none)."""
    import warnings

    from .learning import checkpoint as ckpt
    from .train import checkpoint_paths

    path = Path(source)
    if not path.is_dir():
        return path
    paths = checkpoint_paths(path)
    if not paths:
        found = path / "policy.safetensors"  # archived grid cells keep the latter
        if not found.exists():
            raise ValueError(f"{path} holds no checkpoints/ckpt_*.safetensors")
        return found
    damaged = []
    for candidate in reversed(paths):
        try:
            ckpt.load_checkpoint(candidate)
        except ckpt.CheckpointError as exc:
            damaged.append(str(exc))
            continue
        if damaged:
            warnings.warn(f"using {candidate.name}, the newest checkpoint of {str(path)!r} that verifies; skipped: "
                          f"{'; '.join(damaged)}", stacklevel=2)
        return candidate
    raise ckpt.CheckpointError(f"{str(path)!r}: no checkpoint verifies ({'; '.join(damaged)})")


def _output_file(path: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file to write, checked before any work: ValueError if it is a directory or has none
    of ``suffixes``, the OSError of creating its folder or opening it for writing (a read-only place,
    a file in the way, no permission)."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{path!r} is a directory: give a file name in it, e.g. "
                         f"{str(out / ('out' + (suffixes[0] if suffixes else '')))!r}")
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(f"{path!r}: choose a file name ending in {' or '.join(suffixes)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    existed = out.exists()
    with open(out, "ab"):
        pass
    if not existed:
        out.unlink()
    return out


def _cmd_gait(args: argparse.Namespace) -> int:
    from .envs.gait import play, write_animation
    from .envs.planar import x_position
    from .learning.inference import InferencePolicy

    from .envs.render import check_image_size
    from .experiments import task_as_trained

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1 (control steps to play), got {args.steps}")
    check_image_size(args.width, args.height)
    if args.switch_at is not None and not args.switch_to:
        raise ValueError("--switch-at has no effect without --switch-to (give the task to switch to)")
    switch_at = 250 if args.switch_at is None else args.switch_at
    if args.switch_to and not 0 < switch_at < args.steps:
        raise ValueError(f"--switch-at {switch_at} must be between 1 and {args.steps - 1} (--steps {args.steps} "
                         f"control steps are played): the switch would never happen")
    _output_file(args.out, (".gif", ".mp4"))
    policy = InferencePolicy.from_checkpoint(_checkpoint_path(args.checkpoint))
    schedule = [(0, args.task)]
    if args.switch_to:
        schedule.append((switch_at, args.switch_to))
    task = task_as_trained(args.task, policy.run_config)  # the robot as the run trained it (its profile)
    episode = play(policy, task, schedule, args.steps, seed=args.seed)
    path = write_animation(task, episode.qpos, args.out, width=args.width, height=args.height)
    x = x_position(episode.qpos)
    print(f"wrote {path}: {len(episode.task_index)} control steps ({episode.ended_by}), return "
          f"{episode.episode_return:.1f}, torso x from {x[0]:.2f} m to {x[-1]:.2f} m")
    return 0


#: the metavar of a training setting's flag, by its kind (settings.KINDS)
_METAVARS = {"text": "NAME", "path": "PATH", "integer": "N", "count": "N", "number": "X"}


def setting_flag(name: str) -> str:
    """The command-line flag of setting (or paper's name) ``name``: ``envs_per_task`` -> ``--envs-per-task``."""
    return "--" + name.replace("_", "-")


def add_setting_arguments(parser) -> None:
    """An argument for every scalar training setting (``config.SETTINGS``: its flag, allowed values and
    help with its default) and one for each paper's name of one (``--jt``). Each keeps the text given
    (``TrainConfig.resolved`` checks it) and is None when not given."""
    from .config import SETTINGS

    for name, declared in SETTINGS.items():
        if not declared.scalar:
            continue
        help_text = declared.describe().replace("%", "%%")
        if declared.positional:
            parser.add_argument(name, nargs="?", metavar=name.upper(), help=help_text)
            continue
        options: dict = {"dest": name, "help": help_text}
        if declared.kind == "boolean":
            options["action"] = argparse.BooleanOptionalAction
        elif declared.kind == "choice":
            options["choices"] = list(declared.choice_summaries())
            if any(declared.choice_summaries().values()):  # the help lists them
                options["metavar"] = name.upper()
        else:
            options["metavar"] = _METAVARS[declared.kind]
        parser.add_argument(setting_flag(name), **options)
        if declared.paper_name:
            parser.add_argument(setting_flag(declared.paper_name), dest=declared.paper_name,
                                metavar=options.get("metavar"), help=f"the paper's name of {setting_flag(name)}")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--config", help="YAML file of TrainConfig settings (command-line flags override it)")
    p.add_argument("--out", help="run directory (default runs/<experiment>_<method>_..._seed<N>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(with its saved config.yaml unless --config is given)")
    p.add_argument("--seeds", metavar="LIST", help="train several seeds in one process, e.g. 1-5 or 1,3,8: their "
                   "envs stepped and networks updated together, each run as if alone (same results as --seed), "
                   "into --out/seed<N> (default runs/<experiment>_..._seed<N>)")
    p.add_argument("--groups", type=int, metavar="N",
                   help="with --seeds: split the runs into N groups trained at once on N threads, one core each "
                        "(default 1; same results either way)")
    add_setting_arguments(p.add_argument_group(
        "training settings", "the run's settings (TrainConfig): the same names are the keys of a --config file "
        "and the learner node's parameters; a flag given overrides the file's value"))
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("gait", help="render a trained policy's gait headless to GIF/MP4 (optional task switch)")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("task", help="task (robot, termination) to run, and the first task driving it")
    p.add_argument("out", help="output .gif or .mp4")
    p.add_argument("--steps", type=int, default=500,
                   help="control steps (the task's control period each: 8 ms, 125 per second, for the built-in tasks)")
    p.add_argument("--switch-to", help="switch the driving task at --switch-at, e.g. biped_backward")
    p.add_argument("--switch-at", type=int, help="control step of the switch (default 250)")
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


# what to do about an OS error, by errno
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free space on that disk (or choose another place) and run the command again; a training run "
                  "goes on from its last checkpoint with --resume",
    errno.EDQUOT: "your disk quota is used up: free space and run the command again (a training run: --resume)",
    errno.EROFS: "that file system is read-only: choose a place you can write to",
    errno.EACCES: "you may not write or read there: choose another place, or change its permissions",
    errno.EPERM: "the operation is not permitted there: choose another place",
    errno.EEXIST: "a file of that name is in the way: choose another path",
    errno.ENOTDIR: "a part of that path is a file, not a directory: choose another path",
    errno.EISDIR: "that is a directory: give a file name",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def _os_error_message(exc: OSError, args: argparse.Namespace) -> str:
    """An OSError as one line: what failed, on which path, and what to do."""
    where = exc.filename or getattr(args, "out", None)
    text = f"{exc.strerror or exc}: {str(where)!r}" if where else str(exc.strerror or exc)
    hint = _OS_ERROR_HINTS.get(exc.errno)
    return f"{text}; {hint}" if hint else text


def main(argv: list[str] | None = None) -> int:
    from .stop_signals import StopOnSignals

    # a signal while the modules load only asks to stop: a KeyboardInterrupt inside an import can leave
    # a library half loaded (or be swallowed by it), so none is raised there
    with StopOnSignals() as stop:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
        except KeyboardInterrupt as exc:  # a second signal
            signum = getattr(exc, "signum", signal.SIGINT)
            print("mt-specialize: interrupted while starting; nothing was done", file=sys.stderr)
            return 128 + signum
        if stop():
            print("mt-specialize: interrupted while starting; nothing was done", file=sys.stderr)
            return 128 + stop.signum
        if args.command == "train":  # training takes the signals as its stop request to the end
            args.stop = stop
            return _run(args)
    return _run(args)


def _stop_signals(args: argparse.Namespace):
    """The ``StopOnSignals`` ``main`` installed before the command loaded its modules (a context that
    leaves it installed), else a new one."""
    from contextlib import nullcontext

    from .stop_signals import StopOnSignals

    stop = getattr(args, "stop", None)
    return nullcontext(stop) if stop is not None else StopOnSignals()


def _run(args: argparse.Namespace) -> int:
    """``args.func(args)`` with every error a user can cause as a one-line message and an exit code: 2
    for bad input and OS errors, 1 for a run that stopped for good, 128 + signal for a stop at once."""
    import warnings

    from .errors import StoppedForGood, cut_message

    def error(message: str) -> None:
        print(f"mt-specialize {args.command}: error: {cut_message(message)}", file=sys.stderr)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"mt-specialize {args.command}: warning: {cut_message(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            return int(args.func(args) or 0)
        except ValueError as exc:
            error(str(exc))
            return 2
        except OSError as exc:
            error(_os_error_message(exc, args))
            return 2
        except StoppedForGood as exc:
            error(str(exc))
            return 1
        except KeyboardInterrupt as exc:  # a second stop signal (StopNow), or Ctrl-C outside training
            signum = getattr(exc, "signum", signal.SIGINT)
            print(f"mt-specialize {args.command}: stopped at once by {signal.Signals(signum).name}; a training run "
                  f"goes on from its last checkpoint with --resume", file=sys.stderr)
            return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
