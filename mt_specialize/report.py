"""Table I and Figs. 3, 5, 6 from the grid's run directories (``mt-specialize reproduce``).

Reads ``ROOT/<experiment>/<variant>/seed<N>/metrics.csv`` and writes into ``OUT``::

    table1.md                 the paper's Table I beside ours (mean ± std over seeds), per-task returns
    fig3_three_hoppers.png    learning curves, mean over seeds with a min–max band
    fig5_biped_fwd_bwd.png
    fig6_torso_mass.png       three panels: torso 3 / 8 / 14 kg vs 15 kg
    per_task_<experiment>.png the main methods' learning curves, one panel per task
    jt_sp_<experiment>.png    Table I's jt x sp block as heat maps, the paper's beside ours
    gaits/<task>.gif          each task's final policy (ours, jt=400k sp=25%, seed 1)

The number is the paper's: mean episode return, all tasks pooled, last 100 episodes, at 3M samples
(the first iteration at or past 3M). Runs that have not reached 3M are left out of the mean and
counted in the ``partial`` column, so a partial table says so.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from .plots import plt, read_metrics

TABLE_AT = 3_000_000

# Table I of the paper (mean final performance over 3 seeds, DART simulator).
PAPER_TABLE_I = {
    "joint": (1601.94, 877.80),
    "separate": (2240.07, 966.65),
    "random_jt400k_sp25": (1994.28, 2154.09),
    "append": (1603.91, 800.59),
    "ours_jt80k_sp5": (2516.05, 1804.13),
    "ours_jt80k_sp25": (2447.45, 1407.69),
    "ours_jt80k_sp50": (2541.31, 2681.31),
    "ours_jt400k_sp5": (2407.68, 2773.29),
    "ours_jt400k_sp25": (2635.56, 2671.23),
    "ours_jt400k_sp50": (2302.74, 2381.18),
    "ours_jt800k_sp5": (2076.98, 1931.47),
    "ours_jt800k_sp25": (2227.95, 2438.77),
    "ours_jt800k_sp50": (2242.20, 2562.53),
}
ROW_LABELS = {
    "joint": "sp=0%", "separate": "jt=0, sp=100%", "random_jt400k_sp25": "jt=400k, sp=25% random",
    "append": "append",
}


# which of Table I's columns an experiment is compared with (the ankle variant: the paper's biped)
PAPER_COLUMN = {"three_hoppers": 0, "biped_fwd_bwd": 1, "biped_fwd_bwd_ankle100": 1}

METHOD_NAMES = {
    "ours_jt400k_sp25": "ours (jt=400k, sp=25%)", "joint": "joint (sp=0%)", "separate": "separate",
    "random_jt400k_sp25": "random split (jt=400k, sp=25%)", "append": "append (one-hot task id)",
}


def _label(variant: str) -> str:
    if variant in ROW_LABELS:
        return ROW_LABELS[variant]
    _, jt, sp = variant.split("_")
    return f"jt={jt[2:]}, sp={sp[2:]}%"


def collect_runs(root: str | Path) -> dict[str, dict[str, dict[int, list[dict]]]]:
    """experiment -> variant -> seed -> metrics rows (runs with at least one row)."""
    root = Path(root)
    runs: dict = {}
    for metrics in sorted(root.glob("*/*/seed*/metrics.csv")):
        seed_dir = metrics.parent
        rows = read_metrics(seed_dir)
        if rows:
            experiment, variant = seed_dir.parent.parent.name, seed_dir.parent.name
            runs.setdefault(experiment, {}).setdefault(variant, {})[int(seed_dir.name[4:])] = rows
    return runs


def value_at(rows: list[dict], key: str, samples: int = TABLE_AT) -> float | None:
    """``key`` at the first iteration with samples >= ``samples``; None if the run is not there yet."""
    for row in rows:
        if row["samples"] >= samples:
            return row[key]
    return None


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:  # no spread to show from one seed
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def table_one(runs: dict, at: int = TABLE_AT) -> str:
    """Markdown Table I: paper vs ours for three_hoppers and biped_fwd_bwd, ours at ``at`` samples."""
    experiments = ("three_hoppers", "biped_fwd_bwd")
    lines = ["| method | 3 Hoppers (paper) | 3 Hoppers (ours) | Biped (paper) | Biped (ours) |",
             "|---|---:|---:|---:|---:|"]
    for variant, paper in PAPER_TABLE_I.items():
        cells = []
        for k, experiment in enumerate(experiments):
            seeds = runs.get(experiment, {}).get(variant, {})
            values = [v for v in (value_at(rows, "return_pooled", at) for rows in seeds.values()) if v is not None]
            partial = len(seeds) - len(values)
            note = (f" ({len(values)} seed{'' if len(values) == 1 else 's'}"
                    + (f", {partial} partial" if partial else "") + ")") if seeds else ""
            cells += [f"{paper[k]:.2f}", _cell(values) + note]
        lines.append(f"| {_label(variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_task_table(runs: dict, experiment: str, at: int = TABLE_AT) -> str:
    variants = runs.get(experiment, {})
    if not variants:
        return ""
    task_keys = [k for k in next(iter(next(iter(variants.values())).values()))[0] if k.startswith("return/")]
    header = "| method | " + " | ".join(k.split("/", 1)[1] for k in task_keys) + " |"
    lines = [header, "|---|" + "---:|" * len(task_keys)]
    for variant in sorted(variants, key=_variant_order):
        cells = []
        for key in task_keys:
            values = [v for v in (value_at(rows, key, at) for rows in variants[variant].values()) if v is not None]
            cells.append(_cell(values))
        lines.append(f"| {_label(variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def permutation_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided exact permutation test of mean(a) - mean(b): the fraction of the C(n_a + n_b, n_a)
    relabellings of the pooled values whose |difference of means| is at least the observed one.

    Seeds are the unit (one value per run). With 3 seeds against 3 the smallest possible p is
    2/20 = 0.1: three seeds cannot show a difference at the 5 % level, however large.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("permutation_p_value needs at least one value on each side")
    pooled = a + b
    observed = abs(np.mean(a) - np.mean(b))
    total = sum(pooled)
    count = extreme = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        sum_a = sum(pooled[i] for i in chosen)
        diff = abs(sum_a / len(a) - (total - sum_a) / len(b))
        extreme += diff >= observed - 1e-9 * max(1.0, observed)
        count += 1
    return extreme / count


def seed_values_at(seeds: dict[int, list[dict]], key: str, at: int) -> list[float]:
    """``key`` at ``at`` samples of every seed that got there (seed -> metrics rows)."""
    return [v for v in (value_at(rows, key, at) for rows in seeds.values()) if v is not None]


def comparison_table(runs: dict, experiment: str, at: int = TABLE_AT,
                     reference: str = "ours_jt400k_sp25") -> str:
    """Markdown: each main method's pooled return at ``at`` against ``reference`` (difference of means
    over seeds, exact permutation p), and the methods ranked by our means beside the paper's ranking."""
    variants = runs.get(experiment, {})
    ours = seed_values_at(variants.get(reference, {}), "return_pooled", at)
    column = PAPER_COLUMN[experiment]
    lines = [f"| method | seeds | mean | {METHOD_NAMES[reference]} minus method | permutation p |",
             "|---|---:|---:|---:|---:|"]
    means = {}
    for variant in MAIN_VARIANTS:
        values = seed_values_at(variants.get(variant, {}), "return_pooled", at)
        if values:
            means[variant] = float(np.mean(values))
        if variant == reference or not values:
            lines.append(f"| {METHOD_NAMES[variant]} | {len(values)} | {_cell(values).split(' ±')[0]} | | |")
            continue
        diff = f"{np.mean(ours) - np.mean(values):+.1f}" if ours else "–"
        p = f"{permutation_p_value(ours, values):.2f}" if ours else "–"
        lines.append(f"| {METHOD_NAMES[variant]} | {len(values)} | {np.mean(values):.1f} | {diff} | {p} |")
    ranked = sorted(means, key=means.get, reverse=True)
    paper = sorted(MAIN_VARIANTS, key=lambda v: PAPER_TABLE_I[v][column], reverse=True)
    lines += ["", "Ranking by mean (best first), ours: " + " > ".join(METHOD_NAMES[v] for v in ranked)
              + (" (methods without a run at this budget left out)" if len(ranked) < len(MAIN_VARIANTS) else ""),
              "", "Ranking in the paper: " + " > ".join(METHOD_NAMES[v] for v in paper)]
    return "\n".join(lines)


TORSO_MASS_EXPERIMENTS = ("torso_mass_3", "torso_mass_8", "torso_mass_14")
# Fig. 6 gives no numbers, only orderings: separate beats joint when the torsos differ most (3 vs 15 kg),
# joint beats separate as they become alike (8, 14 kg), and ours is on top in all three.
PAPER_FIG6_BETTER_OF_JOINT_SEPARATE = {"torso_mass_3": "separate", "torso_mass_8": "joint", "torso_mass_14": "joint"}


def torso_mass_table(runs: dict, at: int = TABLE_AT, reference: str = "ours_jt400k_sp25") -> str:
    """Markdown, one row per torso-mass experiment (Fig. 6): ours, joint and separate at ``at`` (mean ±
    std, seeds), ours minus each (permutation p), and the better of joint and separate, ours beside the
    paper's. ``–`` where a method has no run at ``at`` yet."""
    lines = ["| torso vs 15 kg | ours (jt=400k, sp=25%) | joint | separate | ours − joint | ours − separate "
             "| better of joint / separate: ours (paper) | ours on top |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for experiment in TORSO_MASS_EXPERIMENTS:
        variants = runs.get(experiment, {})
        values = {v: seed_values_at(variants.get(v, {}), "return_pooled", at) for v in (reference, "joint", "separate")}
        cells = [_cell(vals) + (f" ({len(vals)})" if vals else "") for vals in values.values()]
        ours = values[reference]
        for other in ("joint", "separate"):
            cells.append(f"{np.mean(ours) - np.mean(values[other]):+.1f} (p {permutation_p_value(ours, values[other]):.2f})"
                         if ours and values[other] else "–")
        if values["joint"] and values["separate"]:
            better = "joint" if np.mean(values["joint"]) > np.mean(values["separate"]) else "separate"
        else:
            better = "–"
        cells.append(f"{better} ({PAPER_FIG6_BETTER_OF_JOINT_SEPARATE[experiment]})")
        if all(values.values()):
            on_top = np.mean(ours) > max(np.mean(values["joint"]), np.mean(values["separate"]))
            cells.append("yes" if on_top else "no")
        else:
            cells.append("–")
        lines.append(f"| {experiment.rsplit('_', 1)[1]} kg | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_summary(runs: dict, at: int = TABLE_AT, reference: str = "ours_jt400k_sp25") -> str:
    """Markdown, one row per experiment: ``reference`` minus each baseline at ``at`` (difference of the
    means over seeds, exact permutation p), the compact form of :func:`comparison_table`."""
    baselines = [v for v in MAIN_VARIANTS if v != reference]
    lines = ["| | " + " | ".join(METHOD_NAMES[v].split(" (")[0] for v in baselines) + " |",
             "|---|" + "---:|" * len(baselines)]
    for experiment in ("three_hoppers", "biped_fwd_bwd"):
        variants = runs.get(experiment, {})
        ours = seed_values_at(variants.get(reference, {}), "return_pooled", at)
        cells = []
        for variant in baselines:
            values = seed_values_at(variants.get(variant, {}), "return_pooled", at)
            cells.append(f"{np.mean(ours) - np.mean(values):+.1f} (p {permutation_p_value(ours, values):.2f})"
                         if ours and values else "–")
        lines.append(f"| {experiment} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_blocks(runs: dict, at: int = TABLE_AT) -> dict[str, str]:
    """The README's generated blocks, by marker name: ``n_done`` (runs at or past ``at``), ``table1``
    (:func:`table_one`), ``comparison`` (:func:`comparison_summary`) and ``torso_mass``
    (:func:`torso_mass_table`)."""
    n_done = sum(value_at(rows, "return_pooled", at) is not None
                 for variants in runs.values() for seeds in variants.values() for rows in seeds.values())
    return {"n_done": str(n_done), "table1": table_one(runs, at), "comparison": comparison_summary(runs, at),
            "torso_mass": torso_mass_table(runs, at)}


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    """Replace what stands between ``<!-- name -->`` and ``<!-- /name -->`` in ``text`` for every block.

    A block whose content holds a line break is written on lines of its own. Raises ``ValueError``
    naming the markers that are missing (or appear more than once), before anything is replaced.
    """
    bad = [name for name in blocks
           if text.count(f"<!-- {name} -->") != 1 or text.count(f"<!-- /{name} -->") != 1
           or text.index(f"<!-- {name} -->") > text.index(f"<!-- /{name} -->")]
    if bad:
        raise ValueError("each of these blocks needs exactly one '<!-- NAME -->...<!-- /NAME -->' pair: "
                         + ", ".join(bad))
    for name, content in blocks.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        head, rest = text.split(start)
        _, tail = rest.split(end)
        body = f"\n{content}\n" if "\n" in content else content
        text = head + start + body + end + tail
    return text


def update_readme(path: str | Path, runs: dict, at: int = TABLE_AT) -> dict[str, str]:
    """Fill ``path``'s generated blocks (:func:`readme_blocks`) in place, atomically; returns them."""
    path = Path(path)
    blocks = readme_blocks(runs, at)
    text = fill_blocks(path.read_text(), blocks)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return blocks


def _variant_order(variant: str) -> int:
    order = list(PAPER_TABLE_I)
    return order.index(variant) if variant in order else len(order)


def plot_curves(ax, variants: dict, key: str = "return_pooled", only: list[str] | None = None) -> None:
    """Mean over the seeds present at each sample count (line), min–max band where >= 2 seeds are."""
    for variant in sorted(variants, key=_variant_order):
        if only and variant not in only:
            continue
        seeds = list(variants[variant].values())
        longest = max(seeds, key=len)
        x = np.array([r["samples"] for r in longest]) / 1e6
        y = np.full((len(seeds), len(longest)), np.nan)
        for k, rows in enumerate(seeds):  # runs of one experiment log at the same sample counts
            y[k, :len(rows)] = [r[key] for r in rows]
        line, = ax.plot(x, np.nanmean(y, axis=0), lw=1.4, label=f"{_label(variant)} (n={len(seeds)})")
        several = np.sum(~np.isnan(y), axis=0) >= 2
        if several.any():
            lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
            ax.fill_between(x[several], lo[several], hi[several], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("samples (millions)")
    ax.set_ylabel("mean episode return (pooled)")
    ax.grid(alpha=0.3)


DIFFERENCES = """## Where ours differs from the paper, and why

- **Simulator.** The paper used DART (DartEnv); we use MuJoCo 4 with the same geometry, masses, joint
  limits, damping, torque scales, timestep and first-order integrator (SPEC §4). Contact models,
  friction (0.9 on every geom here), joint armature (1.0, as Gymnasium's hopper) and DART's collision
  handling differ, so absolute returns are not comparable between the two columns; the comparison
  that carries over is the ranking of methods within a column. How much such a choice matters: a
  one-seed probe of the biped with Walker2d's joint armature 0.01 instead of 1.0 (SPEC does not fix
  it; ours, jt=400k, sp=25%, seed 1, 3M samples) reached 3112 backward / 370 forward (pooled 808)
  against 529 / 440 (pooled 480) for the grid's cell. The grid keeps armature 1.0 for every method.
- **The biped's hard direction.** In every method the biped learns to walk backward (up to ~2,700)
  long before forward (300–900 at 3M): the pooled return, dominated by the many short episodes of
  the failing task, mostly measures forward walking (see the per-task curves). The paper's separate
  and joint rows (967 and 878) look the same; its ours row (2671) is where both directions were
  learned. Why forward is harder: the biped's 20 N·m ankles (SPEC's, as the authors' DART model's
  action_scale). One-factor probes (method separate, seed 1; results/probes/walker2d_body/): our biped
  with 100 N·m ankles walks forward at 2,664 by 1.5M samples (this grid's cell: 314); Gymnasium's
  Walker2d body learns forward with its 100 N·m ankles (3,070 at 2M) and fails with 20 N·m ones (402).
  The hips' backward-only range, blamed in an earlier diagnosis, is the same in Walker2d and is not
  the cause. How the paper's DART biped walked forward with 20 N·m ankles is not known from here.
  The main comparison on the 100 N·m variant is a separate sensitivity grid (biped_fwd_bwd_ankle100).
- **PPO minibatches.** As SPEC §5 chooses, every Adam step here uses one mixed minibatch of 256 samples
  of each task; the authors stepped task by task (4 MPI workers x 64 samples of one task). With the
  same 10 epochs that is about 3x fewer Adam steps per iteration here (e.g. 50 instead of ~150 for
  three_hoppers), one likely reason our returns rise more slowly and are still rising at 3M samples:
  a one-seed probe with `ppo: {minibatch_per_task: 88}` (~150 steps per iteration, as the authors)
  reached a pooled 883.6 at 1M samples of three_hoppers (ours, jt=400k, sp=25%) against 519.0 with
  the grid's setting. The grid keeps SPEC's setting for every method.
- **Learning-rate schedule.** SPEC §5 gives a constant lr (3e-4) and clip (0.2). OpenAI Baselines'
  ppo1 `run_mujoco.py`, the PPO the paper names, anneals both linearly to 0 over the run
  (`schedule='linear'`); whether the authors kept it is not known. With constant steps, late biped
  iterations here sometimes spike (approx_kl 0.1–1.3 against ~0.03; 84 spikes in the 39 biped runs,
  14 followed by a > 30 % drop of a task's return; 2 in the 39 three_hoppers runs, 17 in the 27
  torso-mass runs): results/probes/kl_spikes/. The same update by autograd spikes identically.
- **Seeds and budget.** 3 seeds per cell, as the paper; 3M samples per run (Table I's point); the
  statistic is the same (pooled mean episode return of the last 100 episodes). Every method gets the
  same budget, batch, network and PPO settings; no baseline was tuned.
- **Code versions.** Speed work changed float rounding twice while the grid ran (session 1: NumPy
  rollout forward; session 2: hand-written PPO backward and fused Adam): cells that started before
  and resumed after such a change are not bit-identical to a fresh run of today's code. Seeded runs of
  the old and new code agree within the seed spread (`bench/learning_equivalence.py`, figures in
  bench/README.md).
"""

MAIN_VARIANTS = ["ours_jt400k_sp25", "joint", "separate", "random_jt400k_sp25", "append"]


def _save(fig, path: Path) -> None:
    tmp = path.with_suffix(".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def plot_jt_sp_grid(runs: dict, experiment: str, path: Path, at: int = TABLE_AT) -> Path | None:
    """Table I's 3x3 block as two heat maps, the paper's and ours (mean over the seeds at ``at``;
    n in each cell); None if no ``ours`` cell of the sweep has reached ``at``."""
    jts, sps = (80, 400, 800), (5, 25, 50)
    column = PAPER_COLUMN[experiment]
    paper = np.array([[PAPER_TABLE_I[f"ours_jt{jt}k_sp{sp}"][column] for sp in sps] for jt in jts])
    ours = np.full((3, 3), np.nan)
    counts = np.zeros((3, 3), dtype=int)
    for a, jt in enumerate(jts):
        for b, sp in enumerate(sps):
            values = seed_values_at(runs.get(experiment, {}).get(f"ours_jt{jt}k_sp{sp}", {}), "return_pooled", at)
            counts[a, b] = len(values)
            if values:
                ours[a, b] = np.mean(values)
    if not counts.any():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, values, title in ((axes[0], paper, "paper (DART)"), (axes[1], ours, "ours (MuJoCo)")):
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis")
        for a in range(3):
            for b in range(3):
                text = "–" if np.isnan(values[a, b]) else f"{values[a, b]:.0f}"
                if values is ours and counts[a, b]:
                    text += f"\n(n={counts[a, b]})"
                bright = image.norm(values[a, b]) > 0.6 if not np.isnan(values[a, b]) else False
                ax.text(b, a, text, ha="center", va="center", color="black" if bright else "white", fontsize=9)
        ax.set_xticks(range(3), [f"sp={sp}%" for sp in sps])
        ax.set_yticks(range(3), [f"jt={jt}k" for jt in jts])
        ax.set_title(f"{experiment}, {title}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)
    return path


def write_figures(runs: dict, out: Path, root: Path) -> list[Path]:
    written = []
    for number, experiment in ((3, "three_hoppers"), (5, "biped_fwd_bwd")):
        if experiment not in runs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        plot_curves(axes[0], runs[experiment], only=MAIN_VARIANTS)
        axes[0].set_title(f"{experiment}: ours (jt=400k, sp=25%) vs baselines")
        plot_curves(axes[1], runs[experiment], only=[v for v in runs[experiment] if v.startswith("ours_")])
        axes[1].set_title(f"{experiment}: jt × sp grid")
        for ax in axes:
            ax.legend(fontsize=7)
        path = out / f"fig{number}_{experiment}.png"
        _save(fig, path)
        written.append(path)
    for experiment in PAPER_COLUMN:  # the pooled number hides which task fails
        variants = runs.get(experiment)
        if not variants:
            continue
        first_rows = next(iter(next(iter(variants.values())).values()))
        task_keys = [k for k in first_rows[0] if k.startswith("return/")]
        fig, axes = plt.subplots(1, len(task_keys), figsize=(5.2 * len(task_keys), 4.0), squeeze=False)
        for ax, key in zip(axes[0], task_keys):
            plot_curves(ax, variants, key=key, only=MAIN_VARIANTS)
            ax.set_ylabel("mean episode return")
            ax.set_title(f"{experiment}: {key.split('/', 1)[1]}")
            ax.legend(fontsize=7)
        path = out / f"per_task_{experiment}.png"
        _save(fig, path)
        written.append(path)
    for experiment in ("three_hoppers", "biped_fwd_bwd"):
        path = plot_jt_sp_grid(runs, experiment, out / f"jt_sp_{experiment}.png")
        if path:
            written.append(path)
    from .plots import plot_split

    for run_dir in sorted(Path(root).glob("*/ours_jt400k_sp25/seed1")):  # which weights the score split
        path = plot_split(run_dir, out / f"split_{run_dir.parent.parent.name}_seed1.png")
        if path:
            written.append(path)
    if any(e in runs for e in TORSO_MASS_EXPERIMENTS):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), squeeze=False)
        for ax, experiment in zip(axes[0], TORSO_MASS_EXPERIMENTS):
            if experiment in runs:
                plot_curves(ax, runs[experiment])
                ax.legend(fontsize=7)
            ax.set_title(f"{experiment.split('_')[-1]} kg vs 15 kg torso")
        path = out / "fig6_torso_mass.png"
        _save(fig, path)
        written.append(path)
    return written


def write_gaits(root: Path, out: Path, steps: int = 250) -> list[Path]:
    """A GIF of each task's final policy (ours jt=400k sp=25%, seed 1, newest checkpoint)."""
    from .experiments import get_experiment
    from .gait import play, write_animation
    from .inference import InferencePolicy
    from .train import latest_checkpoint

    written = []
    for run_dir in sorted(root.glob("*/ours_jt400k_sp25/seed1")):
        path = latest_checkpoint(run_dir) or (run_dir / "policy.safetensors")  # archived grids keep the latter
        if not path.exists():
            continue
        policy = InferencePolicy.from_checkpoint(path)
        experiment = run_dir.parent.parent.name
        for task in get_experiment(experiment).tasks:
            episode = play(policy, task.name, [(0, task.name)], steps)
            written.append(write_animation(task.name, episode.qpos, out / "gaits" / f"{experiment}_{task.name}.gif",
                                           width=180, height=135))
    return written


def write_report(root: str | Path, out: str | Path, gaits: bool = True, at: int = TABLE_AT) -> Path:
    """Write table1.md, the figures and (optionally) gait GIFs; returns the table path.

    ``at``: the sample count the table reads (3M as the paper; smaller for a partial look).
    ``gaits``: render the GIFs; without, the GIFs already in ``out/gaits`` stay listed.
    """
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(root)
    n_runs = sum(len(seeds) for variants in runs.values() for seeds in variants.values())
    n_done = sum(value_at(rows, "return_pooled", at) is not None
                 for variants in runs.values() for seeds in variants.values() for rows in seeds.values())
    parts = [
        "# Table I reproduced",
        "",
        f"Generated by `mt-specialize report --root {root} --out {out} --at {at}` from {n_runs} run directories, "
        f"{n_done} of them at or past {at:,} samples." + (" **Partial: the grid is still running.**"
                                                                 if n_done < n_runs or n_runs < 105 else ""),
        "",
        f"Mean episode return (all tasks pooled, last 100 episodes) at {at:,} samples; mean ± std over the "
        f"seeds that reached it (n in brackets). Paper: DART simulator, OpenAI Baselines PPO; ours: MuJoCo, this "
        "package.",
        "",
        table_one(runs, at),
    ]
    for experiment in PAPER_COLUMN:
        if experiment in runs:
            parts += ["", f"## Ours (jt=400k, sp=25%) against each baseline at {at:,} samples: {experiment}", "",
                      comparison_table(runs, experiment, at)]
    if any(e in runs for e in TORSO_MASS_EXPERIMENTS):
        parts += ["", f"## Torso mass (Fig. 6) at {at:,} samples", "", torso_mass_table(runs, at)]
    for experiment in sorted(runs):
        parts += ["", f"## Per-task returns at {at:,} samples: {experiment}", "",
                  per_task_table(runs, experiment, at)]
    parts += ["", DIFFERENCES]
    figures = write_figures(runs, out, root)
    parts += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    gifs = write_gaits(root, out) if gaits else sorted((out / "gaits").glob("*.gif"))  # keep earlier GIFs listed
    if gifs:
        parts += ["", "## Gaits (ours, jt=400k sp=25%, seed 1)", ""] + [f"![{p.stem}](gaits/{p.name})" for p in gifs]
    table = out / "table1.md"
    tmp = table.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts) + "\n")
    os.replace(tmp, table)
    return table
