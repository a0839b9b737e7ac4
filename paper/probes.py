"""The probes kept with the paper tooling; what every probe found is in ``results/probes/README.md``.

``python -m paper kl-spikes --root results/grid`` counts the approx_kl spikes of a grid and the task
collapses that follow them (:func:`kl_spikes`). ``python -m paper walker2d-probe OUT ...`` trains the
biped's two tasks on Gymnasium's Walker2d-v5 body or ours with some settings changed
(:func:`walker2d_probe`), and ``python -m paper walker2d-figure`` draws the recorded probes' per-task
returns beside the first grid's cell (:func:`plot_walker2d_probes`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

KL_SPIKE = 0.1  # approx_kl above this is a spike (typical iterations: 0.02-0.05)
COLLAPSE_DROP = 0.3  # a task's return falling by more than this fraction ...
COLLAPSE_WINDOW = 20  # ... within this many iterations after a spike is a collapse


@dataclass(frozen=True)
class SpikeCount:
    """One experiment of a grid: runs, PPO iterations, spikes (approx_kl > ``KL_SPIKE``) and collapses."""

    runs: int = 0
    iterations: int = 0
    spikes: int = 0
    collapses: int = 0


def collapses_after(rows: list[dict], spikes: np.ndarray) -> int:
    """How many of the iterations ``spikes`` (row indices) some task's return follows by a drop of more than
    ``COLLAPSE_DROP`` of its level (mean of the spike's and the 3 rows before it) within ``COLLAPSE_WINDOW``
    rows."""
    tasks = [key for key in rows[0] if key.startswith("return/")]
    returns = {key: np.array([r[key] for r in rows]) for key in tasks}
    count = 0
    for i in spikes:
        drop = 0.0
        for values in returns.values():
            before = values[max(0, i - 3):i + 1].mean()
            after = values[i + 1:i + 1 + COLLAPSE_WINDOW].min() if i + 1 < len(values) else before
            drop = max(drop, (before - after) / max(before, 1.0))
        count += drop > COLLAPSE_DROP
    return count


def kl_spikes(root: str | Path) -> dict[str, SpikeCount]:
    """Per experiment of the grid under ``root`` (run directories or an archive): :class:`SpikeCount`."""
    from mt_specialize.plots import read_metrics
    from paper.report import _seed_dirs

    counts: dict[str, SpikeCount] = {}
    for run_dir in _seed_dirs(Path(root)):
        rows = read_metrics(run_dir)
        if not rows:
            continue
        spikes = np.nonzero(np.array([r["approx_kl"] for r in rows]) > KL_SPIKE)[0]
        experiment = run_dir.parent.parent.name
        total = counts.get(experiment, SpikeCount())
        counts[experiment] = SpikeCount(total.runs + 1, total.iterations + len(rows), total.spikes + len(spikes),
                                        total.collapses + collapses_after(rows, spikes))
    return dict(sorted(counts.items()))


def kl_spikes_lines(counts: dict[str, SpikeCount]) -> list[str]:
    return [f"{experiment}: {c.runs} runs, {c.iterations} iterations, {c.spikes} spikes (approx_kl > {KL_SPIKE}), "
            f"{c.collapses} followed by a > {COLLAPSE_DROP:.0%} drop of a task's return within {COLLAPSE_WINDOW} "
            "iterations" for experiment, c in counts.items()]


# -- the biped's forward walking: Walker2d's body against ours ---------------------------------------

WALKER2D_ROBOTS = {"walker2d": "gymnasium:walker2d", "ours": "biped"}
ANKLE_JOINTS = ("foot_joint", "foot_left_joint")
BIPED_TASKS = (("biped_forward", 1), ("biped_backward", -1))


@dataclass(frozen=True)
class Walker2dProbe:
    """One probe: the biped's two tasks (SPEC's reward, termination and observation; the first grid's PPO
    settings, profile none) on ``body`` (Walker2d-v5's file as shipped, or our URDF biped), with what is
    set here in place of the body's own: ankle motors' gear (N·m per unit action; ours 20, Walker2d 100),
    integrator (ours euler, Walker2d rk4), damping and armature of the 6 hinges (ours 1.0 / 1.0, Walker2d
    0.1 / 0.01), sliding friction of every geom (ours 0.9, Walker2d 0.7-1.9). The hip range is the same
    in both bodies."""

    body: str = "walker2d"
    ankle_gear: float | None = None
    integrator: str | None = None
    damping: float | None = None
    armature: float | None = None
    friction: float | None = None
    method: str = "separate"
    seed: int = 1
    samples: int = 3_000_000

    def __post_init__(self):
        if self.body not in WALKER2D_ROBOTS:
            raise ValueError(f"body {self.body!r}: allowed are {sorted(WALKER2D_ROBOTS)}")

    def experiment(self) -> dict:
        """The experiment YAML (as a mapping): the biped's two tasks, named as the grid's so the metrics
        columns keep their names, on the probe's body with its ankle gear."""
        from mt_specialize.experiments import get_experiment

        robot = WALKER2D_ROBOTS[self.body]
        gears = None if self.ankle_gear is None else ankle_gears(robot, self.ankle_gear)
        tasks = [{"name": name, "robot": robot, "direction": direction,
                  **({} if gears is None else {"gears": list(gears)})} for name, direction in BIPED_TASKS]
        return {"name": f"biped_fwd_bwd_{self.body}", "batch_size": get_experiment("biped_fwd_bwd").batch_size,
                "tasks": tasks}

    def config(self, experiment_path: Path):
        """The run's TrainConfig: the experiment file, profile none, the probe's physics run-wide."""
        from mt_specialize.config import TrainConfig
        from mt_specialize.methods import get_method

        physics = {"integrator": self.integrator, "damping": self.damping, "armature": self.armature,
                   "friction": self.friction}
        split = dict(jt=400_000, sp=0.25) if get_method(self.method).chooses_split else {}
        return TrainConfig(experiment=str(experiment_path), profile="none", method=self.method, seed=self.seed,
                           samples=self.samples, physics={k: v for k, v in physics.items() if v is not None}, **split)


def ankle_gears(robot: str, gear: float) -> list[float]:
    """The robot's motor gears (N·m per unit action, motor order) with the ankle motors' set to ``gear``."""
    from mt_specialize.envs import robots

    model = robots.build_model(robot)
    joints = [model.joint(model.actuator_trnid[a, 0]).name for a in range(model.nu)]
    return [gear if joint in ANKLE_JOINTS else float(model.actuator_gear[a, 0]) for a, joint in enumerate(joints)]


def walker2d_probe(probe: Walker2dProbe, out: str | Path, resume: bool = False) -> dict:
    """Train ``probe`` into run directory ``out`` (with its probe.json and experiment.yaml); its summary."""
    import yaml

    from mt_specialize.train import run_training

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(asdict(probe), indent=1))
    experiment_path = out / "experiment.yaml"
    experiment_path.write_text(yaml.safe_dump(probe.experiment(), sort_keys=False))
    return run_training(probe.config(experiment_path), out, resume=resume)


WALKER2D_PROBES_DIR = Path("results/probes/walker2d_body")
WALKER2D_GRID_CELL = Path("results/grid/biped_fwd_bwd/separate/seed1")
WALKER2D_PROBES = (  # (run directory under the probes' directory, label)
    ("ours_gear100", "our biped, ankles 100"),
    ("walker2d", "Walker2d-v5 body (ankles 100, armature .01, damping .1, RK4)"),
    ("walker2d_damping1", "Walker2d, damping 1"),
    ("walker2d_euler", "Walker2d, Euler"),
    ("walker2d_gear20", "Walker2d, ankles 20"),
    ("walker2d_gear20_euler_damping1", "Walker2d, ankles 20 + Euler + damping 1"),
)


def plot_walker2d_probes(probes_dir: str | Path = WALKER2D_PROBES_DIR, grid_cell: str | Path = WALKER2D_GRID_CELL,
                         out: str | Path | None = None):
    """Forward and backward return (last 100 episodes) against samples, one line per probe run and one for
    the grid's cell; 20 N·m-ankle bodies dashed. Saved to ``out`` (default PROBES_DIR/per_task_returns.png);
    returns the matplotlib Figure."""
    from mt_specialize.plots import plt, read_metrics

    probes_dir = Path(probes_dir)
    runs = [(Path(grid_cell), "our biped (grid cell: ankles 20, armature 1, damping 1, Euler)")]
    runs += [(probes_dir / name, label) for name, label in WALKER2D_PROBES]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for run_dir, label in runs:
        rows = read_metrics(run_dir)
        if not rows:
            raise FileNotFoundError(f"no metrics.csv(.gz) in {run_dir}")
        style = "--" if "20" in label and "100" not in label else "-"
        for ax, key in zip(axes, ("return/biped_forward", "return/biped_backward")):
            ax.plot([r["samples"] / 1e6 for r in rows], [r[key] for r in rows], style, label=label, lw=1.3)
    for ax, title in zip(axes, ("biped_forward", "biped_backward")):
        ax.set_title(f"{title} (method separate, seed 1; dashed: 20 N·m ankles)")
        ax.set_xlabel("samples, both tasks (millions)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode return (last 100 episodes)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(Path(out) if out else probes_dir / "per_task_returns.png", dpi=110)
    plt.close(fig)
    return fig
