"""The paper's reproduction, run from the repository root::

    python -m paper reproduce [--profile paper] [--only GLOB] [--workers N] [--archive DIR]
    python -m paper report [--root runs/grid_paper] [--out results] [--readme results/README.md --readme README.md]
    python -m paper archive [--root runs/grid_paper] [--to results/grid_paper]
    python -m paper steps [--root runs/profile_steps] [--grid-root runs/grid_paper2] [--out results]
    python -m paper engines [--mujoco-root runs/grid_paper2] [--dart-root runs/grid_paper_dart] [--out results]
    python -m paper kl-spikes [--root results/grid]
    python -m paper walker2d-probe OUT [--body walker2d|ours] [--ankle-gear G] [--integrator euler|rk4] ...
    python -m paper walker2d-figure [--probes results/probes/walker2d_body]

``reproduce`` runs (or resumes) the paper's grid of training runs, ``report`` writes Table I, the
figures and the gait GIFs from the grid's run directories, ``archive`` copies a grid's results and
resume points to a small directory kept in git, ``steps`` writes profile_steps.md: the paper profile's
corrections measured one at a time (``reproduce --grid profile_steps``) beside the paper grid's cells,
``engines`` writes engines.md: the cells run on DART (``reproduce --profile paper_dart``) beside the same
cells on MuJoCo and the paper's figure.
``kl-spikes``, ``walker2d-probe`` and ``walker2d-figure`` are the probes kept (``paper/probes.py``; what
every probe found: ``results/probes/README.md``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mt_specialize.config import PROFILES, parse_count


def key_values(items: list[str], flag: str) -> dict:
    """['minibatch_per_task=88', 'lr=1e-4'] -> {'minibatch_per_task': 88, 'lr': 0.0001} (YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"{flag} {item!r}: value is not a YAML scalar ({exc})") from exc
    return out


def parse_seeds(text: str) -> list[int]:
    """``"1-5"`` or ``"1,2,4"`` (or both, ``"1-3,7"``) -> sorted distinct non-negative seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise SystemExit(f"--seeds: {part.strip()!r} is not a seed or range; use e.g. 1-5 or 1,2,4") from None
        if low < 0 or high < low:
            raise SystemExit(f"--seeds: {part.strip()!r}: seeds are >= 0 and a range goes up, e.g. 4-5")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def parse_bytes(text: str, flag: str) -> int:
    """``4G`` / ``512M`` / ``2.5G`` / ``1000000`` -> bytes (G and M binary: GiB, MiB)."""
    scale = {"G": 2**30, "M": 2**20, "K": 2**10}.get(text.strip()[-1:].upper(), 1)
    number = text.strip()[:-1] if scale > 1 else text.strip()
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give bytes like 4G, 512M or 1000000") from None
    if value <= 0:
        raise ValueError(f"{flag} {text!r} must be > 0")
    return int(value)


MAX_BATCH_RUNS = 5  # the default cap: a batch of 5 seeds of one method is the grid's natural unit


def _batch_runs(args: argparse.Namespace) -> int:
    """--batch-runs, or as many runs per worker as --worker-memory allows (at most ``MAX_BATCH_RUNS``)."""
    from paper.reproduce import batch_runs_for_memory

    if args.batch_runs is not None:
        if args.batch_runs < 1:
            raise ValueError(f"--batch-runs must be >= 1, got {args.batch_runs}")
        return args.batch_runs
    if args.worker_memory is not None:
        memory = parse_bytes(args.worker_memory, "--worker-memory")
    else:
        workers = args.workers or os.cpu_count() or 1
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // workers
    return min(MAX_BATCH_RUNS, batch_runs_for_memory(memory))


def cmd_reproduce(args: argparse.Namespace) -> int:
    from paper.reproduce import (MAIN_SEEDS, archive_grid, main_grid, paper_grid, profile_steps_grid, reproduce,
                                 restore_grid, run_status, select, with_ppo_settings, with_profile)

    seeds = parse_seeds(args.seeds) if args.seeds else None
    if args.grid == "profile_steps":
        if args.experiment:
            raise ValueError("--grid profile_steps has its own cells; --experiment is for --grid paper")
        specs = profile_steps_grid(seeds or (1,))
    else:
        specs = main_grid(args.experiment, seeds or MAIN_SEEDS) if args.experiment else paper_grid(seeds)
    specs = with_ppo_settings(select(specs, args.only), key_values(args.ppo or [], "--ppo"))
    specs = with_profile(specs, args.profile)
    args.root = args.root or f"runs/grid_{args.profile}"
    samples = parse_count(args.samples, "samples") if args.samples else None
    if args.archive:
        restored = restore_grid(args.archive, args.root)
        if restored:
            print(f"restored {len(restored)} runs from {args.archive}", file=sys.stderr)
    if args.list:
        for spec in specs:
            status, reached = run_status(Path(args.root) / spec.name)
            print(f"{status:>8} {reached:>10,}  {spec.name}")
        return 0
    print(f"{len(specs)} runs under {args.root} ({args.workers or 'all'} workers, up to {_batch_runs(args)} "
          f"runs per worker process"
          f"{', Ray at ' + args.ray_address if args.ray_address else ''}); finished runs are skipped, "
          f"interrupted ones resumed", file=sys.stderr)
    batch_runs = _batch_runs(args)
    try:
        results = reproduce(args.root, specs, samples=samples, workers=args.workers, ray_address=args.ray_address,
                            batch_runs=batch_runs)
    except KeyboardInterrupt:
        print("interrupted: every running run wrote a checkpoint; run the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        if args.archive:
            archive_grid(args.root, args.archive)
    failed = {k: v for k, v in results.items() if v.startswith("failed")}
    for name, outcome in failed.items():
        print(f"{name}: {outcome}", file=sys.stderr)
    if args.report:
        from paper.report import write_report

        write_report(args.root, args.report)
    return 1 if failed else 0


def cmd_archive(args: argparse.Namespace) -> int:
    from paper.reproduce import archive_grid

    names = archive_grid(args.root, args.to)
    print(f"archived {len(names)} runs of {args.root} into {args.to}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from paper.report import blocks_in, update_readme, write_report

    at = parse_count(args.at, "--at")
    readmes = args.readme or []
    for readme in readmes:
        if not Path(readme).is_file():
            raise SystemExit(f"--readme: no file {readme}")
    roots = args.root or ["runs/grid_paper"]
    path = write_report(roots, args.out, gaits=not args.no_gifs, at=at)
    print(f"wrote {path} and figures in {args.out}")
    if readmes:
        try:
            blocks = update_readme(readmes, roots, at)
        except ValueError as err:
            raise SystemExit(f"--readme: {err}") from None
        for readme in readmes:
            print(f"filled {', '.join(blocks_in(Path(readme).read_text(), blocks))} in {readme} "
                  f"({blocks['n_done']} runs at {at:,} samples)")
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    from paper.report import write_profile_steps

    seeds = parse_seeds(args.seeds)
    path = write_profile_steps(args.root, args.grid_root, args.out, at=parse_count(args.at, "--at"), seeds=seeds)
    print(f"wrote {path}")
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    from paper.report import write_engines

    path = write_engines(args.mujoco_root, args.dart_root, args.out, at=parse_count(args.at, "--at"))
    print(f"wrote {path}")
    return 0


def cmd_kl_spikes(args: argparse.Namespace) -> int:
    from paper.probes import kl_spikes, kl_spikes_lines

    if not Path(args.root).is_dir():
        raise FileNotFoundError(f"--root {args.root}: no such directory")
    counts = kl_spikes(args.root)
    if not counts:
        raise FileNotFoundError(f"--root {args.root}: no run directory with metrics (EXPERIMENT/VARIANT/seedN)")
    print("\n".join(kl_spikes_lines(counts)))
    return 0


def cmd_walker2d_probe(args: argparse.Namespace) -> int:
    from paper.probes import Walker2dProbe, walker2d_probe

    probe = Walker2dProbe(body=args.body, ankle_gear=args.ankle_gear, integrator=args.integrator,
                          damping=args.damping, armature=args.armature, friction=args.friction, method=args.method,
                          seed=args.seed, samples=parse_count(args.samples, "--samples"))
    print(walker2d_probe(probe, args.out, resume=args.resume))
    return 0


def cmd_walker2d_figure(args: argparse.Namespace) -> int:
    from paper.probes import plot_walker2d_probes

    out = Path(args.probes) / "per_task_returns.png"
    plot_walker2d_probes(args.probes, args.grid_cell, out)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("reproduce", help="the paper's grid of runs (resumable), then the report")
    p.add_argument("--root", help="where the grid's run directories go (default runs/grid_PROFILE)")
    p.add_argument("--profile", choices=list(PROFILES), default="paper",
                   help="settings bundle of every run (default paper: as the paper's authors ran it; "
                        "mujoco; none = the first grid's settings, results/grid)")
    p.add_argument("--only", action="append", help="glob(s) over run names, e.g. 'three_hoppers/*' or "
                   "'*/joint/*' (repeatable)")
    p.add_argument("--samples", help="budget per run (default: each experiment's, 3M)")
    p.add_argument("--seeds", help="the grid's seeds, e.g. 1-5 or 4,5 (default: 5 for the main comparison and "
                   "Fig. 6, 1-3 for the sweeps; 1 for --grid profile_steps)")
    p.add_argument("--grid", choices=["paper", "profile_steps"], default="paper",
                   help="paper = Table I, Figs. 3, 5, 6 (default); profile_steps = the paper profile's corrections "
                        "one at a time (biped separate, hoppers joint; the profile with all of them is the paper "
                        "grid's cell)")
    p.add_argument("--experiment", action="append", metavar="NAME",
                   help="instead of the paper's grid, the main comparison (ours jt=400k sp=25%%, joint, separate, "
                   "random, append) on this registered experiment, e.g. biped_fwd_bwd_ankle100 (repeatable)")
    p.add_argument("--workers", type=int, help="worker processes at once (default: one per core)")
    p.add_argument("--batch-runs", type=int, metavar="K",
                   help="cells a worker trains together in one process (one physics call and one batched update "
                        "for all; each cell's results are those it gets alone); default: as many as "
                        "--worker-memory allows, at most 5; 1 = one run per process")
    p.add_argument("--worker-memory", default=None, metavar="BYTES",
                   help="memory bound per worker for --batch-runs' default, e.g. 4G (default: half this "
                        "machine's memory shared by the workers)")
    p.add_argument("--ray-address", help="run on an existing Ray cluster, e.g. 127.0.0.1:6379")
    p.add_argument("--list", action="store_true", help="show the grid and each run's status, run nothing")
    p.add_argument("--ppo", action="append", metavar="KEY=VALUE",
                   help="a PPO setting for EVERY run of the grid, e.g. minibatch_per_task=88 (repeatable); use "
                   "another --root: a run refuses to resume with settings other than its own")
    p.add_argument("--report", default="results", help="write the report here when done ('' to skip)")
    p.add_argument("--archive", help="restore runs from this directory first and archive into it at the end "
                   "(configs, metrics, summaries, unfinished runs' newest checkpoint): the grid in git")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("archive", help="copy a grid's results and resume points to a small directory (for git)")
    p.add_argument("--root", default="runs/grid_paper")
    p.add_argument("--to", default="results/grid_paper")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("report", help="Table I, learning-curve figures and gait GIFs from the grid's runs")
    p.add_argument("--root", action="append",
                   help="a grid's run directories (repeatable, one grid per profile; default runs/grid_paper); "
                        "the archived grids named in paper/paper_results.yaml fill in the other profiles")
    p.add_argument("--out", default="results")
    p.add_argument("--no-gifs", action="store_true")
    p.add_argument("--at", default="3M", help="sample count the table reads (default 3M, as the paper)")
    p.add_argument("--readme", action="append", metavar="FILE",
                   help="also fill FILE's generated blocks, those it has markers for (repeatable; together the "
                        "files hold <!-- verdict -->, n_done, table1, comparison, torso_mass; optional: headline "
                        "and the _none / _mujoco variants): --readme results/README.md --readme README.md")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("steps", help="profile_steps.md: the paper profile's corrections one at a time, with why "
                                     "episodes ended")
    p.add_argument("--root", default="runs/profile_steps",
                   help="the runs of `reproduce --grid profile_steps` (default runs/profile_steps)")
    p.add_argument("--grid-root", default="runs/grid_paper2",
                   help="the corrected paper grid, whose cells have all three corrections (default runs/grid_paper2)")
    p.add_argument("--out", default="results")
    p.add_argument("--at", default="3M", help="sample count the table reads (default 3M, as Table I)")
    p.add_argument("--seeds", default="1", help="the cells' seeds (default 1, as --grid profile_steps)")
    p.set_defaults(func=cmd_steps)

    p = sub.add_parser("engines", help="engines.md: the cells run on DART (paper_dart) beside MuJoCo (paper) and "
                                       "the paper, with why episodes ended")
    p.add_argument("--mujoco-root", default="runs/grid_paper2", help="the paper grid on MuJoCo (default runs/grid_paper2)")
    p.add_argument("--dart-root", default="runs/grid_paper_dart",
                   help="the runs of `reproduce --profile paper_dart` (default runs/grid_paper_dart)")
    p.add_argument("--out", default="results")
    p.add_argument("--at", default="3M", help="sample count the table reads (default 3M, as Table I)")
    p.set_defaults(func=cmd_engines)

    from mt_specialize.envs.physics import INTEGRATORS
    from paper.probes import WALKER2D_GRID_CELL, WALKER2D_PROBES_DIR, WALKER2D_ROBOTS

    p = sub.add_parser("kl-spikes", help="a grid's approx_kl spikes per experiment, and the task collapses after them")
    p.add_argument("--root", default="results/grid", help="run directories or an archive (default results/grid)")
    p.set_defaults(func=cmd_kl_spikes)

    p = sub.add_parser("walker2d-probe", help="the biped's two tasks on Walker2d-v5's body or ours, settings changed "
                                              "one at a time (results/probes/walker2d_body)")
    p.add_argument("out", help="the probe's run directory")
    p.add_argument("--body", choices=sorted(WALKER2D_ROBOTS), default="walker2d")
    p.add_argument("--ankle-gear", type=float, help="gear of both ankle motors, N·m (ours 20, Walker2d 100)")
    p.add_argument("--integrator", choices=INTEGRATORS, help="ours euler, Walker2d rk4")
    p.add_argument("--damping", type=float, help="damping of the 6 hinges (ours 1.0, Walker2d 0.1)")
    p.add_argument("--armature", type=float, help="armature of the 6 hinges (ours 1.0, Walker2d 0.01)")
    p.add_argument("--friction", type=float, help="sliding friction of every geom (ours 0.9, Walker2d 0.7-1.9)")
    p.add_argument("--method", default="separate")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--samples", default="3M", help="budget (default 3M)")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=cmd_walker2d_probe)

    p = sub.add_parser("walker2d-figure", help="per_task_returns.png of the recorded Walker2d-body probes")
    p.add_argument("--probes", default=str(WALKER2D_PROBES_DIR), help="the probes' directory (default %(default)s)")
    p.add_argument("--grid-cell", default=str(WALKER2D_GRID_CELL),
                   help="the grid's run drawn beside them (default %(default)s)")
    p.set_defaults(func=cmd_walker2d_figure)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m paper {args.command}: error: {exc}", file=sys.stderr)
        return 2
