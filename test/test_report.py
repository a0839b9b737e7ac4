"""Report: Table I's two readings, profiles, statistics (permutation, IQM, probability of improvement,
stratified bootstrap), the verdict and the README blocks, on hand-made run directories and rows."""
import csv
import random

import numpy as np
import pytest
import yaml

from paper.report import (PAPER_COLUMN, PAPER_TABLE_I, Grid, accepted_row, collect_grids, comparison_table, iqm,
                          iqm_interval, permutation_p_value, poi_interval, probability_of_improvement, real_row,
                          run_profile, table_one, value_at, verdict)

M = 1_000_000


def _write_run(root, name, rows, profile=None):
    """A run directory ROOT/<experiment>/<variant>/seed<N> with config.yaml and metrics.csv holding
    ``rows`` (dicts with the same keys). ``profile``: as a run written today records it (with its
    ``time_limit``); ``paper_v1``: profile paper as the first paper grid recorded it (no ``time_limit``
    key); None: no profile key (runs older than profiles)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"experiment": name.split("/")[0], "seed": int(name.rsplit("seed", 1)[1])}
    if profile == "paper_v1":
        config["profile"] = "paper"
    elif profile is not None:
        config.update(profile=profile, time_limit="terminal" if profile == "paper" else "bootstrap")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


def _new_row(iteration, samples, samples_real, reverted, reverts, pooled):
    return {"iteration": iteration, "samples": samples, "samples_real": samples_real, "reverted": reverted,
            "reverts": reverts, "phase": "joint", "return_pooled": pooled, "return/a": pooled + 1,
            "return/b": pooled - 1}


# a run with a revert: the reverted row reaches 3M real and 3M counted samples; the counted samples are
# rewound and the next (accepted) row reaches 3M counted samples at 4M real
REVERTED_RUN = [_new_row(1, 1 * M, 1 * M, 0, 0, 100.0), _new_row(2, 2 * M, 2 * M, 0, 0, 200.0),
                _new_row(3, 3 * M, 3 * M, 1, 1, 50.0), _new_row(4, 3 * M, 4 * M, 0, 1, 300.0)]
OLD_RUN = [{"iteration": i, "samples": i * M, "phase": "joint", "return_pooled": 10.0 * i, "return/a": 10.0 * i}
           for i in (1, 2, 3, 4)]


def test_readings_skip_a_reverted_row_and_count_real_samples(tmp_path):
    _write_run(tmp_path / "new", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper")
    _write_run(tmp_path / "old", "three_hoppers/joint/seed1", OLD_RUN)
    new, old = collect_grids([tmp_path / "new", tmp_path / "old"], references=())
    assert (new.profile, old.profile) == ("paper", "none")  # no profile key: the runs before profiles
    assert new.has_real_samples and not old.has_real_samples
    rows = new.runs["three_hoppers"]["joint"][1]
    # the authors' reading skips the reverted row past 3M and takes the next accepted one
    assert accepted_row(rows)["iteration"] == 4 and value_at(rows, "return_pooled") == 300.0
    assert value_at(rows, "return/a") == 301.0
    # the real-sample reading takes the first row with 3M env steps, reverted or not
    assert real_row(rows)["iteration"] == 3 and value_at(rows, "return_pooled", reading="real") == 50.0
    assert value_at(rows, "return_pooled", 5 * M, "real") is None  # not there yet
    # old runs (no samples_real / reverted columns): both readings are the first row at 3M samples
    old_rows = old.runs["three_hoppers"]["joint"][1]
    assert value_at(old_rows, "return_pooled") == value_at(old_rows, "return_pooled", reading="real") == 30.0
    with pytest.raises(ValueError, match="'counted'.*accepted"):
        value_at(old_rows, "return_pooled", reading="counted")


def test_table_one_shows_both_readings_only_for_runs_that_log_real_samples(tmp_path):
    _write_run(tmp_path / "new", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper")
    _write_run(tmp_path / "old", "three_hoppers/joint/seed1", OLD_RUN)
    new, old = collect_grids([tmp_path / "new", tmp_path / "old"], references=())
    header, _, joint = table_one(new).splitlines()[:3]
    assert "3 Hoppers (ours, accepted 3M)" in header and "3 Hoppers (ours, real 3M)" in header
    assert joint.startswith("| sp=0% | 1601.94 | 300.0 (1 seed) | 50.0 (1 seed) | 877.80 | – | – |")
    header, _, joint = table_one(old).splitlines()[:3]
    assert "real" not in header and joint.startswith("| sp=0% | 1601.94 | 30.0 (1 seed) | 877.80 | – |")


def test_profiles_split_one_root_and_a_bad_profile_is_named(tmp_path):
    _write_run(tmp_path, "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper")
    _write_run(tmp_path, "three_hoppers/joint/seed2", OLD_RUN)
    grids = collect_grids(tmp_path, references=())
    assert [(g.profile, sorted(g.runs["three_hoppers"]["joint"])) for g in grids] == [("paper", [1]), ("none", [2])]
    bad = _write_run(tmp_path, "three_hoppers/joint/seed3", OLD_RUN, profile="dart")
    with pytest.raises(ValueError, match=r"seed3/config.yaml: profile 'dart' is not one of \['paper', 'paper_dart', 'mujoco', 'none'\]"):
        run_profile(bad)
    # a reference grid that is not there is skipped; a root given twice is read once
    assert len(collect_grids([tmp_path / "x"], references=[tmp_path / "missing"])) == 0
    (bad / "config.yaml").write_text("profile: mujoco\n")
    assert [g.profile for g in collect_grids(tmp_path, references=[tmp_path])] == ["paper", "mujoco", "none"]
    # a reference grid stands in only for the profiles the roots lack
    _write_run(tmp_path / "ref", "three_hoppers/joint/seed1", OLD_RUN)
    _write_run(tmp_path / "ref", "three_hoppers/joint/seed2", OLD_RUN, profile="paper")
    _write_run(tmp_path / "only_paper", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper")
    grids = collect_grids(tmp_path / "only_paper", references=[tmp_path / "ref"])
    assert [(g.profile, g.root.name) for g in grids] == [("paper", "only_paper"), ("none", "ref")]
    assert collect_grids(tmp_path, references=[tmp_path / "ref"]) == collect_grids(tmp_path, references=())


def test_permutation_p_value_by_hand():
    # 3 vs 3 completely separated: only the observed split and its mirror are as extreme: 2 of 20
    assert permutation_p_value([10, 11, 12], [0, 1, 2]) == pytest.approx(0.1)
    assert permutation_p_value([1, 2, 3], [1, 2, 3]) == 1.0
    # [1, 2] vs [3]: splits {1,2}|3 -> 1.5, {1,3}|2 -> 0, {2,3}|1 -> 1.5: 2 of 3 at least 1.5
    assert permutation_p_value([1, 2], [3]) == pytest.approx(2 / 3)
    # order does not matter; a single outlier seed does not make a difference "significant"
    assert permutation_p_value([0, 1, 2], [10, 11, 12]) == pytest.approx(0.1)
    assert permutation_p_value([100, 0, 0], [1, 1, 1]) > 0.5
    with pytest.raises(ValueError, match="at least one value"):
        permutation_p_value([], [1.0])


def test_iqm_trims_a_quarter_from_each_end():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0, 1, 2, 3, 1000]) == pytest.approx(2.0)  # 5 seeds: int(1.25) = 1 cut each end
    assert iqm([5, 1, 9]) == pytest.approx(5.0)  # 3 seeds: nothing cut, the mean
    assert iqm([[1, 100], [2, 200], [3, 300], [4, 400]]) == pytest.approx(np.mean([3, 4, 100, 200]))  # over runs and tasks
    with pytest.raises(ValueError, match="non-empty"):
        iqm([])


def test_probability_of_improvement_counts_pairs_and_ties():
    assert probability_of_improvement([10, 11, 12], [0, 1, 2]) == 1.0
    assert probability_of_improvement([0, 1, 2], [10, 11, 12]) == 0.0
    assert probability_of_improvement([1, 3], [2]) == pytest.approx(0.5)
    assert probability_of_improvement([2, 2], [2, 1]) == pytest.approx(0.75)  # ties count half
    # per task, then averaged over tasks
    assert probability_of_improvement([[5, 0], [6, 0]], [[1, 9], [2, 9]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 tasks.*1"):
        probability_of_improvement([[1, 2]], [[1]])


def test_bootstrap_intervals():
    # clearly separated samples: every resample keeps ours above, so the interval is [1, 1]
    point, low, high = poi_interval([2000, 2010, 2020, 2030, 2040], [1000, 1010, 1020, 1030, 1040], reps=2000)
    assert point == low == high == 1.0
    # overlapping samples: a wide interval around the point estimate, inside [0, 1]
    point, low, high = poi_interval([1, 3, 5, 7, 9], [2, 4, 6, 8, 10], reps=4000)
    assert point == pytest.approx(0.4) and 0 <= low < 0.4 < high <= 1 and high - low > 0.4
    # stratified by task: each task's runs are resampled within the task, so a task column that is
    # constant stays constant and the IQM of [[0, 100], [0, 100]] is 50 in every resample
    assert iqm_interval([[0, 100], [0, 100]], reps=500) == (50.0, 50.0, 50.0)
    # the interval's ends are the 2.5% and 97.5% percentiles of the IQMs of resampled seeds: the same as
    # a plain loop drawing 6 seeds with replacement
    values = [0.0, 10.0, 20.0, 40.0, 80.0, 160.0]
    draw = random.Random(0)
    loop = np.percentile([iqm(draw.choices(values, k=6)) for _ in range(20_000)], [2.5, 97.5])
    point, low, high = iqm_interval(values, reps=20_000)
    assert point == 37.5 and low == pytest.approx(loop[0], abs=2.5) and high == pytest.approx(loop[1], abs=2.5)
    assert iqm_interval(values, reps=1000, seed=3) == iqm_interval(values, reps=1000, seed=3)  # reproducible


def _rows(final: float, until: int = 3 * M):
    """metrics rows rising linearly to ``final`` at 3M samples, logged every 1M up to ``until``."""
    return [{"samples": s, "return_pooled": final * s / (3 * M)} for s in range(M, until + 1, M)]


def _seeds(*finals, until=3 * M):
    return {k + 1: _rows(f, until) for k, f in enumerate(finals)}


def test_comparison_table_differences_p_values_intervals_and_rankings():
    runs = {"three_hoppers": {
        "ours_jt400k_sp25": _seeds(1000, 1100, 1200),
        "joint": _seeds(500, 600, 700),
        "append": _seeds(1500, 1600),
        "separate": _seeds(900, until=2 * M),  # not at 3M yet: left out
    }}
    table = comparison_table(Grid(".", "none", runs), "three_hoppers")
    assert "| joint (sp=0%) | 3 | 600.0 ± 81.6 | 600.0 [500.0, 700.0] | +500.0 | 0.10 | 1.00 [1.00, 1.00] |" in table
    assert "| append (one-hot task id) | 2 | 1550.0 ± 50.0 | 1550.0 [1500.0, 1600.0] | -450.0 | 0.10 | 0.00 [0.00, 0.00] |" in table
    assert "| separate | 0 | – | – | | |" in table
    ours_rank = next(line for line in table.splitlines() if line.startswith("Ranking by mean")).split(": ", 1)[1]
    assert ours_rank.index("append") < ours_rank.index("ours") < ours_rank.index("joint")
    assert "left out" in ours_rank
    paper_rank = next(line for line in table.splitlines() if line.startswith("Ranking in the paper"))
    assert paper_rank.startswith("Ranking in the paper: ours (jt=400k, sp=25%) > separate")
    # Table I counts the partial run as partial, not in the mean
    separate_row = next(line for line in table_one(runs).splitlines() if line.startswith("| jt=0, sp=100% |"))
    assert "– (0 seeds, 1 partial)" in separate_row


def _paper_grid(profile="paper", ours=(2000, 2010, 2020, 2030, 2040), joint=(1000, 1010, 1020, 1030, 1040),
                separate=(1990, 2015, 2025, 2035, 2005), fig6=True):
    runs = {"three_hoppers": {"ours_jt400k_sp25": _seeds(*ours), "joint": _seeds(*joint),
                              "separate": _seeds(*separate), "append": _seeds(900, 910)}}
    if fig6:  # separate ahead at 3 kg, joint ahead at 8 and 14 kg, as the paper's Fig. 6
        low, high = (500, 510, 520, 530, 540), (900, 910, 920, 930, 940)
        for experiment, (j, s) in {"torso_mass_3": (low, high), "torso_mass_8": (high, low),
                                   "torso_mass_14": (high, low)}.items():
            runs[experiment] = {"ours_jt400k_sp25": _seeds(*high), "joint": _seeds(*j), "separate": _seeds(*s)}
    return Grid(f"runs/{profile}", profile, runs)


def test_verdict_claims_only_what_the_data_support():
    text = verdict([_paper_grid()])
    lines = text.splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("- three_hoppers"))
    # 5 main methods x 5 seeds planned; 5 + 5 + 5 + 2 there, random missing
    assert lines[at] == "- three_hoppers (partial: 17 of 25 runs):"
    # 2 of 252 relabellings as extreme: p 0.01
    assert lines[at + 1] == "  - **ours beats joint**: P(ours > joint) 1.00 [1.00, 1.00], permutation p 0.01, 5 vs 5 seeds"
    # 15 of the 25 pairs have ours above: 0.60, the interval around it, no claim
    assert lines[at + 2].startswith("  - no clear difference from separate: P(ours > separate) 0.60 [")
    assert lines[at + 3] == "  - random split: no runs to compare yet"
    assert lines[at + 4].startswith("  - append: too few seeds to say: P(ours > append) 1.00")  # 2 seeds, both below
    assert "- biped_fwd_bwd: no runs at 3,000,000 samples yet (0 of 25 runs)." in text
    fig6 = next(line for line in text.splitlines() if line.startswith("- Fig. 6"))
    assert "holds: every ordering is shown" in fig6 and "(complete)" in fig6
    assert "Ours has the highest mean at 0 of 3 torso masses" in fig6  # ties with the better one are not "on top"
    # 3 seeds against 3, completely separated: the interval excludes 0.5 but p = 0.1, so no "beats"
    three = verdict([_paper_grid(ours=(2000, 2010, 2020), joint=(1000, 1010, 1020), fig6=False)])
    assert "ours ahead of joint by the interval, not shown by the permutation test" in three
    assert "ours beats" not in three


def test_verdict_says_what_changes_on_the_other_profile_and_when_the_headline_has_no_runs():
    paper = _paper_grid()
    first = _paper_grid("none", ours=(1000, 1010, 1020), joint=(2000, 2010, 2020), fig6=False)
    text = verdict([first, paper])  # the headline profile comes first whatever the order given
    assert text.index("**paper profile") < text.index("**profile none")
    change = text.split("What changes on profile none against paper: ")[1]
    assert "three_hoppers vs joint: P(ours >) 1.00 (better) on paper, 0.00 (leans worse) on none" in change
    assert "three_hoppers (complete" not in text  # 3 seeds planned on none, but random missing
    assert "- **paper profile: no runs yet.**" in verdict([first])
    # the Fig. 6 ordering reversed: the trend does not hold
    reversed_fig6 = _paper_grid()
    reversed_fig6.runs["torso_mass_3"]["joint"], reversed_fig6.runs["torso_mass_3"]["separate"] = \
        reversed_fig6.runs["torso_mass_3"]["separate"], reversed_fig6.runs["torso_mass_3"]["joint"]
    assert "does not hold: 2 of 3 orderings" in verdict([reversed_fig6])


def test_real_reading_changes_are_named_in_the_verdict(tmp_path):
    for seed in range(1, 6):
        # ours: accepted reading 300 + seed, real reading 50 + seed (a revert at 3M real)
        rows = [dict(r, return_pooled=r["return_pooled"] + seed) for r in REVERTED_RUN]
        _write_run(tmp_path, f"three_hoppers/ours_jt400k_sp25/seed{seed}", rows, profile="paper")
        joint = [_new_row(i, i * M, i * M, 0, 0, 100.0 + seed) for i in (1, 2, 3, 4)]
        _write_run(tmp_path, f"three_hoppers/joint/seed{seed}", joint, profile="paper")
    text = verdict(collect_grids(tmp_path, references=()))
    assert "  - **ours beats joint**" in text
    assert "  - At 3M real samples: joint: worse (P(ours >) 0.00 [0.00, 0.00])." in text


def test_jt_sp_heat_map_only_when_a_sweep_cell_reached_the_budget(tmp_path):
    from paper.report import plot_jt_sp_grid

    runs = {"three_hoppers": {"ours_jt400k_sp25": {1: _rows(1000)}, "ours_jt80k_sp5": {1: _rows(900, until=2 * M)}}}
    assert plot_jt_sp_grid({"three_hoppers": {"joint": {1: _rows(500)}}}, "three_hoppers", tmp_path / "a.png") is None
    assert not (tmp_path / "a.png").exists()
    fig = plot_jt_sp_grid(runs, "three_hoppers", tmp_path / "b.png")
    assert (tmp_path / "b.png").is_file()
    paper, ours = (ax.images[0].get_array() for ax in fig.axes[:2])  # rows jt 80k / 400k / 800k, columns sp 5 / 25 / 50
    column = PAPER_COLUMN["three_hoppers"]
    assert paper.tolist() == [[PAPER_TABLE_I[f"ours_jt{jt}k_sp{sp}"][column] for sp in (5, 25, 50)]
                              for jt in (80, 400, 800)]
    assert ours[1, 1] == 1000.0  # ours_jt400k_sp25's one seed at 3M
    assert ours.mask.sum() == 8  # every other cell empty: jt80k sp5 stopped at 2M


README = ("# x\n\n<!-- verdict --><!-- /verdict -->\n<!-- n_done -->0<!-- /n_done --> runs\n\n<!-- table1 -->\nold table\n"
          "<!-- /table1 -->\ntext kept\n<!-- comparison --><!-- /comparison -->\n<!-- torso_mass --><!-- /torso_mass -->\n"
          "second: <!-- n_done_none -->0<!-- /n_done_none -->\n<!-- table1_none --><!-- /table1_none -->\nend\n")


def test_readme_blocks_filled_in_place_and_missing_markers_named(tmp_path):
    from paper.report import fill_blocks, readme_blocks, update_readme

    paper = Grid("runs/paper", "paper", {"three_hoppers": {"ours_jt400k_sp25": _seeds(1000, 1100, 1200),
                                                           "joint": _seeds(500, 600, 700, until=2 * M)}})
    first = Grid("results/grid", "none", {"three_hoppers": {"ours_jt400k_sp25": _seeds(1000, 1100, 1200),
                                                            "joint": _seeds(500, 600, 700)}})
    readme = tmp_path / "README.md"
    readme.write_text(README)
    blocks = update_readme(readme, [paper, first])
    text = readme.read_text()
    assert blocks["n_done"] == "3" and "<!-- n_done -->3<!-- /n_done --> runs" in text
    assert "second: <!-- n_done_none -->6<!-- /n_done_none -->" in text
    assert "old table" not in text and "text kept\n" in text and text.endswith("end\n")
    assert "| sp=0% | 1601.94 | – (0 seeds, 3 partial) |" in text.split("<!-- /table1 -->")[0]
    assert "| sp=0% | 1601.94 | 600.0 ± 81.6 (3 seeds) |" in text.split("<!-- table1_none -->")[1]
    comparison = text.split("<!-- comparison -->\n")[1].split("\n<!-- /comparison -->")[0].splitlines()
    # every table block opens with its profile's title, label and root
    assert comparison[0] == "**paper profile (the authors' DART robots, optimiser, revert rule, append, episode rules and " \
                            "rollouts, in MuJoCo)** [profile `paper`], runs under `runs/paper` (3 at 3,000,000 samples):"
    assert comparison[4] == "| three_hoppers | – | – | – | – |"
    assert "[profile `none`], runs under `results/grid`" in text.split("<!-- table1_none -->")[1]
    verdict_text = text.split("<!-- verdict -->\n")[1].split("\n<!-- /verdict -->")[0]
    assert "three_hoppers (partial: 3 of 25 runs)" in verdict_text
    assert "comparison_none" in blocks and "<!-- comparison_none -->" not in text  # optional: no markers, not written
    assert fill_blocks(text, blocks, optional=[b for b in blocks if b.endswith("_none") or b == "headline"]) == text  # idempotent
    # no paper-profile runs: the headline blocks say so
    assert readme_blocks([first])["table1"] == "no paper-profile runs yet (read: results/grid)"

    broken = text.replace("<!-- /table1 -->", "")
    readme.write_text(broken)
    with pytest.raises(ValueError, match="table1"):
        update_readme(readme, [paper, first])
    assert readme.read_text() == broken  # nothing written on error
    readme.write_text(README.replace("<!-- verdict --><!-- /verdict -->", ""))
    with pytest.raises(ValueError, match="verdict"):  # the headline blocks and the verdict are required
        update_readme(readme, [paper])


def test_research_blocks_in_one_file_and_the_headline_table_in_another(tmp_path):
    """One report run fills results/README.md (research blocks) and README.md (the front page's
    headline table); a block in neither file, or a file with no block, is an error before any write."""
    from paper.report import update_readme

    paper = Grid("runs/paper", "paper", {"three_hoppers": {"ours_jt400k_sp25": _seeds(1000, 1100, 1200),
                                                           "joint": _seeds(500, 600, 700),
                                                           "append": _seeds(1500, until=2 * M)}})
    results = tmp_path / "results.md"
    results.write_text(README)
    front = tmp_path / "README.md"
    front.write_text("# front\n\n<!-- headline -->\nold\n<!-- /headline -->\nDetail: results.md\n")
    update_readme([results, front], [paper])
    headline = front.read_text().split("<!-- headline -->\n")[1].split("\n<!-- /headline -->")[0].splitlines()
    assert headline[0].startswith("**paper profile (") and "[profile `paper`], runs under `runs/paper`" in headline[0]
    assert headline[2].startswith("| method | 3 Hoppers: paper | 3 Hoppers: here | P(ours > method) |")
    assert headline[4].startswith("| ours (jt=400k, sp=25%) | 2636 | 1100.0 ± 81.6 (3 seeds) |  |")
    assert headline[5].startswith("| joint (sp=0%) | 1602 | 600.0 ± 81.6 (3 seeds) | 1.00 [1.00, 1.00] |")
    assert headline[8].startswith("| append (one-hot task id) | 1604 | – (0 seeds, 1 partial) | – |")
    assert front.read_text().endswith("<!-- /headline -->\nDetail: results.md\n")
    assert "<!-- n_done -->6<!-- /n_done -->" in results.read_text() and "<!-- headline -->" not in results.read_text()

    before = {results: results.read_text(), front: front.read_text()}
    unrelated = tmp_path / "NOTES.md"
    unrelated.write_text("# notes\n")
    with pytest.raises(ValueError, match="NOTES.md: no '<!-- NAME -->"):
        update_readme([results, front, unrelated], [paper])
    with pytest.raises(ValueError, match="verdict, n_done, table1, comparison, torso_mass"):
        update_readme([front], [paper])  # the research blocks are in neither file
    assert {path: path.read_text() for path in before} == before


def test_torso_mass_table_against_the_papers_orderings():
    from paper.report import torso_mass_table

    runs = {"torso_mass_3": {"ours_jt400k_sp25": {1: _rows(900), 2: _rows(1100)},
                             "joint": {1: _rows(400), 2: _rows(600)},
                             "separate": {1: _rows(700), 2: _rows(900)}},
            "torso_mass_8": {"ours_jt400k_sp25": {1: _rows(500)}, "joint": {1: _rows(800)},
                             "separate": {1: _rows(600)}},
            "torso_mass_14": {"joint": {1: _rows(800, until=2 * M)}}}
    rows = {line.split(" |")[0]: line for line in torso_mass_table(runs).splitlines()[2:]}
    assert rows["| 3 kg"] == ("| 3 kg | 1000.0 ± 100.0 (2) | 500.0 ± 100.0 (2) | 800.0 ± 100.0 (2) "
                              "| +500.0 (p 0.33; P(ours>) 1.00 [1.00, 1.00]) | +200.0 (p 0.67; P(ours>) 0.88 [0.50, 1.00]) "
                              "| separate (separate) | 0.00 [0.00, 0.00] | yes |")
    assert rows["| 8 kg"].endswith("| -300.0 (p 1.00; P(ours>) 0.00 [0.00, 0.00]) | -100.0 (p 1.00; P(ours>) 0.00 [0.00, 0.00]) "
                                   "| joint (joint) | 1.00 [1.00, 1.00] | no |")
    assert rows["| 14 kg"] == "| 14 kg | – | – | – | – | – | – (joint) | – | – |"  # not at 3M yet


def test_ankle_variant_is_compared_with_the_papers_biped_ranking():
    runs = {"biped_fwd_bwd_ankle100": {"ours_jt400k_sp25": {1: _rows(2000)}, "joint": {1: _rows(1500)}}}
    table = comparison_table(runs, "biped_fwd_bwd_ankle100")
    assert "| joint (sp=0%) | 1 | 1500.0 | 1500.0 | +500.0 | 1.00 | 1.00 [1.00, 1.00] |" in table
    assert "Ranking in the paper: ours (jt=400k, sp=25%) > random split (jt=400k, sp=25%) > separate" in table


def test_write_report_labels_every_grid_and_lists_every_run(tmp_path):
    from paper.report import write_report

    _write_run(tmp_path / "paper", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper")
    _write_run(tmp_path / "old", "three_hoppers/joint/seed1", OLD_RUN)
    table = write_report(tmp_path / "paper", tmp_path / "out", gaits=False, references=[tmp_path / "old"]).read_text()
    assert table.index("## paper profile") < table.index("## profile none")
    assert f"Profile `paper`, runs under `{tmp_path / 'paper'}`" in table and f"Profile `none`, runs under `{tmp_path / 'old'}`" in table
    assert "[profile paper]" in table and "[profile none]" in table
    assert "### What still differs from the paper on the paper profile" in table
    assert "fig3_three_hoppers.png" in table and "fig3_three_hoppers_none.png" in table
    with open(tmp_path / "out" / "table1_runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = {(r["profile"], r["reading"]): (r["iteration"], r["samples_real"], r["reverts"], r["return_pooled"], r["return/a"])
              for r in rows}
    assert picked == {("paper", "accepted"): ("4", str(4 * M), "1", "300.0", "301.0"),
                      ("paper", "real"): ("3", str(3 * M), "1", "50.0", "51.0"),
                      ("none", "accepted"): ("3", str(3 * M), "0", "30.0", "30.0"),
                      ("none", "real"): ("3", str(3 * M), "0", "30.0", "30.0")}


def test_a_stale_torso_mass_figure_is_removed_when_the_profile_has_no_torso_mass_runs(tmp_path):
    from paper.report import write_figures

    out = tmp_path / "out"
    out.mkdir()
    (out / "fig6_torso_mass.png").write_bytes(b"an older report's figure of another profile")
    write_figures({"three_hoppers": {"joint": {1: _rows(500)}}}, out)
    assert not (out / "fig6_torso_mass.png").exists()
    figures = write_figures({"torso_mass_3": {"joint": {1: _rows(500)}}}, out)
    assert (out / "fig6_torso_mass.png").is_file()
    three_kg = figures[out / "fig6_torso_mass.png"].axes[0]
    line, = three_kg.get_lines()  # the one seed's curve: samples (millions) against its pooled return
    assert line.get_label() == "sp=0% (n=1)"  # joint, in the paper's name
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0] and list(line.get_ydata()) == [r["return_pooled"] for r in _rows(500)]


def test_runs_the_revert_rule_stopped_are_counted_apart_and_listed(tmp_path):
    """A run with failure.json (stopped for good before 3M) is left out of the statistics, counted as
    stopped beside the seeds (Table I, Fig. 6 table), listed with its returns, and named in the verdict."""
    import json

    from paper.report import torso_mass_table, write_report

    def _rows(final, until=3 * M):  # with the columns a run writes
        return [_new_row(k, s, s, 0, 0, final * s / (3 * M)) for k, s in enumerate(range(M, until + 1, M), 1)]

    root = tmp_path / "grid"
    for seed, final in ((1, 1000.0), (2, 1200.0)):
        _write_run(root, f"torso_mass_3/joint/seed{seed}", _rows(final), profile="paper")
    rows = [{**row, "approx_kl": kl} for row, kl in zip(_rows(1500, until=2 * M), (0.02, 4.0))]  # a blow-up
    stopped = _write_run(root, "torso_mass_3/joint/seed3", rows, profile="paper")
    (stopped / "failure.json").write_text(json.dumps({
        "error": "RevertLoop", "message": "the revert rule rejected 50 iterations in a row", "iteration": 80,
        "samples": 1_800_000, "samples_real": 2_000_000, "return_pooled": 290.6, "accepted_return": 1383.9}))
    _write_run(root, "three_hoppers/joint/seed1", _rows(700), profile="paper")
    _write_run(root, "three_hoppers/joint/seed2", _rows(900, until=2 * M), profile="paper")
    grid, = collect_grids([root], references=())
    assert grid.stopped("torso_mass_3", "joint") == [3] and grid.stopped("three_hoppers", "joint") == []
    joint_3kg = torso_mass_table(grid).splitlines()[2].split(" | ")[2]
    assert joint_3kg == "1100.0 ± 100.0 (2; 1 stopped)"  # the stopped run is not in the mean
    assert "700.0 (1 seed, 1 partial)" in table_one(grid)
    table = write_report(root, tmp_path / "out", gaits=False, references=()).read_text()
    assert "| torso_mass_3/joint/seed3 | 2,000,000 | 1,800,000 | 290.6 | 1383.9 | 4.00 | 2.010 |" in table
    assert "1 run stopped for good: the revert rule rejected 50 iterations in a row (torso_mass_3 joint seed 3)" \
        in verdict([grid])
    # the sensitivity reading counts it at its pooled return when it stopped
    counted = torso_mass_table(grid, count_stopped=True).splitlines()[2].split(" | ")[2]
    assert counted == f"{np.mean([1000, 1200, 290.6]):.1f} ± {np.std([1000, 1200, 290.6]):.1f} (3; 1 at stop)"
    assert "Counting each at its pooled return when it stopped instead" in verdict([grid])


# ---------------------------------------------------------------------------------------------- the first paper grid's label

def test_the_first_paper_grid_is_labelled_paper_v1_and_shown_beside_the_corrected_one(tmp_path):
    """A paper-profile run without `time_limit` in its config.yaml (written before the corrections) is
    `paper_v1`; with it, `paper`. The corrected grid is the headline, the first one a reference with
    its own title, tables, figure suffix and README blocks; the first grid alone still makes its tables."""
    from paper.report import readme_blocks, run_label, write_report

    assert run_label({"profile": "paper"}) == "paper_v1"
    assert run_label({"profile": "paper", "time_limit": "terminal"}) == "paper"
    # a profile-steps cell undoes the time limit explicitly: it records the key, so it is not the first grid
    assert run_label({"profile": "paper", "time_limit": "bootstrap"}) == "paper"
    assert run_label({"profile": "mujoco"}) == "mujoco" and run_label({}) == "none"
    v1, corrected = tmp_path / "grid_paper", tmp_path / "grid_paper2"
    for seed in (1, 2, 3):
        _write_run(v1, f"three_hoppers/joint/seed{seed}", REVERTED_RUN, profile="paper_v1")
    _write_run(corrected, "three_hoppers/joint/seed1", [_new_row(1, M, M, 0, 0, 77.0)], profile="paper")  # partial

    grids = collect_grids(corrected, references=[v1])
    assert [(g.profile, g.root) for g in grids] == [("paper", corrected), ("paper_v1", v1)]
    assert grids[1].title.startswith("paper profile as the first paper grid ran it (paper_v1)")
    # both in one root: two grids, the corrected one first
    _write_run(tmp_path / "mixed", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper_v1")
    _write_run(tmp_path / "mixed", "three_hoppers/joint/seed2", REVERTED_RUN, profile="paper")
    assert [(g.profile, sorted(g.runs["three_hoppers"]["joint"])) for g in collect_grids(tmp_path / "mixed", ())] \
        == [("paper", [2]), ("paper_v1", [1])]

    table = write_report(corrected, tmp_path / "out", gaits=False, references=[v1]).read_text()
    assert table.index("## paper profile (") < table.index("## paper profile as the first paper grid ran it (paper_v1)")
    assert "Profile `paper`, runs under" in table and "**Partial.**" in table
    assert "| sp=0% | 1601.94 | 300.0 ± 0.0 (3 seeds) | 50.0 ± 0.0 (3 seeds) |" in table  # the v1 grid's Table I
    assert "[profile paper_v1]" in table and "### How the first paper grid differs from the corrected paper profile" in table
    out = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"fig3_three_hoppers.png", "fig3_three_hoppers_paper_v1.png"} <= out

    verdict_text = verdict(grids)
    assert "**paper profile (" in verdict_text and "[profile `paper_v1`] — " in verdict_text
    assert "What changes on profile paper_v1 against paper" in verdict_text
    blocks = readme_blocks(grids)
    assert blocks["headline"].startswith("**paper profile (") and "[profile `paper`]" in blocks["headline"].splitlines()[0]
    assert "[profile `paper_v1`], runs under" in blocks["headline_paper_v1"].splitlines()[0]
    assert "| joint (sp=0%) | 1602 | 300.0 ± 0.0 (3 seeds) |" in blocks["headline_paper_v1"]
    assert "| joint (sp=0%) | 1602 | – (0 seeds, 1 partial) |" in blocks["headline"]

    # the first grid alone: its tables, labelled paper_v1; the headline profile has no runs, and says so
    alone = write_report(v1, tmp_path / "alone", gaits=False, references=()).read_text()
    assert "## paper profile as the first paper grid ran it (paper_v1)" in alone
    assert "- **paper profile: no runs yet.**" in alone
    written = {p.name for p in (tmp_path / "alone").iterdir()}
    assert "fig3_three_hoppers_paper_v1.png" in written and "fig3_three_hoppers.png" not in written
    assert readme_blocks(collect_grids(v1, ()))["headline"].startswith("no paper-profile runs yet")


# ---------------------------------------------------------------------------------------------- why trajectories ended

def _ended_row(iteration, samples, real, counts, reverted=0, pooled=100.0):
    """A metrics row with ``ended/<task>/<cause>`` columns: ``counts`` task -> cause -> n for tasks a, b
    (every cause of tasks.END_CAUSES, 0 where not given)."""
    from mt_specialize.envs.tasks import END_CAUSES

    row = {"iteration": iteration, "samples": samples, "samples_real": real, "reverted": reverted, "reverts": 0,
           "phase": "joint", "return_pooled": pooled, "return/a": pooled + 10, "length/a": 200.0 + iteration,
           "return/b": pooled - 10, "length/b": 100.0 + iteration}
    for task in ("a", "b"):
        row.update({f"ended/{task}/{cause}": counts.get(task, {}).get(cause, 0) for cause in END_CAUSES})
    return row


# seed 1: the last 10% of its 3M is (2.7M, 3M]: the rows at 2.8M and 3M
SEED1 = [_ended_row(1, 1 * M, 1 * M, {"a": {"height": 50}, "b": {"pitch": 40}}),
         _ended_row(2, 2 * M, 2 * M, {"a": {"height": 30, "pitch": 10}}),
         _ended_row(3, 2_800_000, 2_800_000, {"a": {"height": 6, "time_limit": 2}, "b": {"state_limit": 3}}),
         _ended_row(4, 3 * M, 3 * M, {"a": {"height": 4, "time_limit": 3}, "b": {"state_limit": 1, "pitch": 4}}),
         _ended_row(5, 3_200_000, 3_200_000, {"a": {"pitch": 99}})]  # past the row Table I reads: not counted
# seed 2: reverted at 3M; Table I reads the next row, 3M counted at 4M real: its last 10% is (3.6M, 4M]
SEED2 = [_ended_row(1, 1 * M, 1 * M, {"a": {"pitch": 70}}),
         _ended_row(2, 2 * M, 2 * M, {"a": {"height": 20}}),
         _ended_row(3, 3 * M, 3 * M, {"a": {"height": 9}, "b": {"height": 9}}, reverted=1),
         _ended_row(4, 3 * M, 4 * M, {"a": {"time_limit": 5}, "b": {"pitch": 2}})]
PARTIAL = [_ended_row(1, 1 * M, 1 * M, {"a": {"non_finite": 7}}), _ended_row(2, 2 * M, 2 * M, {"b": {"switch": 1}})]


def test_end_cause_shares_over_the_last_tenth_equal_a_hand_count(tmp_path):
    from paper.report import end_cause_counts, end_cause_table, last_tenth

    root = tmp_path / "grid"
    _write_run(root, "three_hoppers/joint/seed1", SEED1, profile="paper")
    _write_run(root, "three_hoppers/joint/seed2", SEED2, profile="paper")
    _write_run(root, "three_hoppers/joint/seed3", PARTIAL, profile="paper")  # not at 3M: not in the table
    _write_run(root, "three_hoppers/joint/seed4", REVERTED_RUN, profile="paper")  # no ended/ columns: skipped
    grid, = collect_grids(root, references=())
    assert last_tenth(SEED1) == (0.9 * 3 * M, 3 * M, False) and last_tenth(SEED2) == (0.9 * 4 * M, 4 * M, False)
    assert last_tenth(PARTIAL) == (0.9 * 2 * M, 2 * M, True)
    assert end_cause_counts(SEED1, *last_tenth(SEED1)[:2])["a"] == \
        {"non_finite": 0, "state_limit": 0, "height": 10, "pitch": 0, "time_limit": 5, "switch": 0}
    table = end_cause_table(grid, "three_hoppers").splitlines()
    # by hand, seeds 1 and 2: a: height 6 + 4 = 10, time_limit 2 + 3 + 5 = 10 -> 20 ended, 50% / 50%;
    # b: state_limit 3 + 1 = 4, pitch 4 + 2 = 6 -> 10 ended, 40% / 60%. The columns with no trajectory
    # (non_finite, switch: only the partial run has them) are left out and named.
    assert table[0] == "| method | runs | task | ended | state_limit | height | pitch | time_limit |"
    assert table[2] == "| joint (sp=0%) | 2 | a | 20 | 0.0% | 50.0% | 0.0% | 50.0% |"
    assert table[3] == "| joint (sp=0%) | 2 | b | 10 | 40.0% | 0.0% | 60.0% | 0.0% |"
    assert table[-1] == "No trajectory here ended by `non_finite`, `switch`."
    assert end_cause_table(collect_grids(tmp_path / "none", ()) or {}, "three_hoppers") == ""


def test_end_cause_figure_bins_every_run_that_counts_them(tmp_path):
    from paper.report import end_cause_bins, plot_end_causes, write_report

    root = tmp_path / "grid"
    _write_run(root, "three_hoppers/joint/seed1", SEED1, profile="paper")
    _write_run(root, "three_hoppers/joint/seed2", SEED2, profile="paper")
    _write_run(root, "three_hoppers/separate/seed1", PARTIAL, profile="paper")  # partial: as far as it is
    _write_run(root, "three_hoppers/joint/seed4", REVERTED_RUN, profile="paper")  # no counts: not a run of the figure
    _write_run(root, "three_hoppers/ours_jt80k_sp5/seed1", SEED1, profile="paper")  # not a main method
    grid, = collect_grids(root, references=())
    edges, counts, n_runs = end_cause_bins(grid, "three_hoppers", bins=4)
    assert n_runs == 3 and list(edges) == [0, 1 * M, 2 * M, 3 * M, 4 * M]  # up to the most real samples (seed 2)
    # bin k holds the rows with real samples in (edges[k], edges[k+1]]
    assert list(counts["a"]["height"]) == [50, 30 + 20, 6 + 4 + 9, 0]
    assert list(counts["a"]["pitch"]) == [70, 10, 0, 99]
    assert list(counts["a"]["time_limit"]) == [0, 0, 2 + 3, 5]
    assert list(counts["a"]["non_finite"]) == [7, 0, 0, 0]
    assert list(counts["b"]["switch"]) == [0, 1, 0, 0] and list(counts["b"]["height"]) == [0, 0, 9, 0]
    fig = plot_end_causes(grid, "three_hoppers", tmp_path / "end.png", bins=4)
    assert (tmp_path / "end.png").is_file()
    for ax, task in zip(fig.axes, ("a", "b")):  # per bin, each cause's share of the task's ended trajectories
        assert ax.get_title() == task
        total = sum(counts[task].values())
        drawn = {bars.get_label(): [bar.get_height() for bar in bars] for bars in ax.containers}
        assert drawn.keys() == {cause for cause, n in counts[task].items() if n.any()}
        for cause, heights in drawn.items():  # stacked: a bar's height is top - bottom, rounded
            assert heights == pytest.approx(np.divide(counts[task][cause], total, out=np.zeros(4), where=total > 0))
    assert plot_end_causes(collect_grids(tmp_path / "x", ()) or {}, "three_hoppers", tmp_path / "no.png") is None
    # the report: a section and a figure per experiment whose runs count them, none for a grid that does not
    _write_run(tmp_path / "old", "three_hoppers/joint/seed1", REVERTED_RUN, profile="paper_v1")
    table = write_report(root, tmp_path / "out", gaits=False, references=[tmp_path / "old"]).read_text()
    assert table.count("### Why trajectories ended") == 1 and "summed over the 3 runs of the main methods" in table
    assert (tmp_path / "out" / "end_causes_three_hoppers.png").exists()
    assert not (tmp_path / "out" / "end_causes_three_hoppers_paper_v1.png").exists()


# ---------------------------------------------------------------------------------------------- profile steps

def test_profile_steps_table_reads_each_cell_and_marks_partial_runs(tmp_path):
    from paper.cli import main
    from paper.report import profile_steps_table

    steps, grid = tmp_path / "profile_steps", tmp_path / "grid_paper2"
    _write_run(steps, "biped_fwd_bwd/separate_as_grid/seed1", SEED1, profile="paper")
    _write_run(steps, "biped_fwd_bwd/separate_as_grid+time_limit/seed1", PARTIAL, profile="paper")
    _write_run(grid, "biped_fwd_bwd/separate/seed1", SEED2, profile="paper")
    _write_run(grid, "three_hoppers/joint/seed1", SEED1, profile="paper_v1")  # the wrong grid's cell: said so
    text = profile_steps_table(steps, grid)
    biped = text.split("## biped_fwd_bwd, separate")[1].split("## three_hoppers")[0]
    returns = biped.split("Why trajectories ended:")[0]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in returns.splitlines() if line.startswith("| ")}
    # the row Table I reads: seed 1 at 3M (iteration 4: pooled 100, a 110, b 90, lengths 204 / 104)
    first = rows["as the first paper grid (all three undone)"]
    assert first[2:] == ["3M", "100.0", "110.0", "90.0", "204.0", "104.0 |"]
    # partial: its last accepted row (iteration 2), marked, with its samples
    partial = rows["+ time_limit"]
    assert partial[2] == "**partial**: 2,000,000 samples (2,000,000 real)"
    assert partial[3:] == ["100.0 (partial)", "110.0 (partial)", "90.0 (partial)", "202.0 (partial)", "102.0 (partial) |"]
    assert rows["+ velocity_limit"][2:4] == ["not started", "–"] and rows["+ segments"][2] == "not started"
    # all three = the paper grid's cell: seed 2 reads its accepted row at 3M counted (4M real)
    assert rows["all three (the paper grid's cell)"][2:4] == ["3M", "100.0"]
    # why trajectories ended, last 10% (as the hand count above): seed 1 a height 10, time_limit 5; seed 2 a
    # time_limit 5
    causes = biped.split("Why trajectories ended:")[1]
    assert "| cell | task | ended | state_limit | height | pitch | time_limit | switch |" in causes
    assert "| as the first paper grid (all three undone) | a | 15 | 0.0% | 66.7% | 0.0% | 33.3% | 0.0% |" in causes
    assert "| all three (the paper grid's cell) | a | 5 | 0.0% | 0.0% | 0.0% | 100.0% | 0.0% |" in causes
    # the partial run's last 10%, (1.8M, 2M]: b ended once, by a task switch (its non_finite is earlier)
    assert "| + time_limit (partial) | b | 1 | 0.0% | 0.0% | 0.0% | 0.0% | 100.0% |" in causes
    assert "No trajectory here ended by `non_finite`." in causes
    hoppers = text.split("## three_hoppers, joint")[1]
    assert "3M; profile `paper_v1`, not the corrected paper profile" in hoppers
    assert "| + velocity_limit" not in hoppers  # the hoppers' velocity limit did not change: no such cell

    assert main(["steps", "--root", str(steps), "--grid-root", str(grid), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "profile_steps.md").read_text().endswith(text + "\n")
    assert main(["steps", "--root", str(tmp_path / "missing"), "--grid-root", str(grid), "--out", str(tmp_path)]) == 2


def test_engines_table_puts_each_dart_cell_beside_mujoco_and_the_paper(tmp_path):
    from paper.cli import main
    from paper.report import PAPER_COLUMN, PAPER_TABLE_I, engine_cells, engines_table

    mujoco, dart = tmp_path / "grid_paper2", tmp_path / "grid_paper_dart"
    _write_run(dart, "biped_fwd_bwd/separate/seed1", SEED1, profile="paper_dart")
    _write_run(dart, "three_hoppers/joint/seed1", PARTIAL, profile="paper_dart")
    _write_run(mujoco, "biped_fwd_bwd/separate/seed1", SEED2, profile="paper")
    _write_run(mujoco, "three_hoppers/joint/seed1", SEED1, profile="paper_v1")  # another profile: said so
    _write_run(mujoco, "three_hoppers/separate/seed1", SEED1, profile="paper")  # no DART run: no cell
    assert engine_cells(dart) == [("biped_fwd_bwd", "separate", [1]), ("three_hoppers", "joint", [1])]
    text = engines_table(mujoco, dart)
    biped = text.split("## biped_fwd_bwd, separate; seeds 1")[1].split("## three_hoppers")[0]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in biped.split("Why")[0].splitlines()
            if line.startswith("| ")}
    paper = PAPER_TABLE_I["separate"][PAPER_COLUMN["biped_fwd_bwd"]]
    assert rows["the paper (Table I)"][2:4] == ["published", f"{paper:.1f}"]
    assert rows["DART (`paper_dart`)"][2:] == ["3M", "100.0", "110.0", "90.0", "204.0", "104.0 |"]
    assert rows["MuJoCo (`paper`)"][2:4] == ["3M", "100.0"]
    hoppers = text.split("## three_hoppers, joint (sp=0%); seeds 1")[1]
    assert "**partial**: 2,000,000 samples" in hoppers and "100.0 (partial)" in hoppers
    assert "3M; profile `paper_v1`, not `paper` or `paper_dart`" in hoppers
    assert "three_hoppers, separate" not in text

    assert main(["engines", "--mujoco-root", str(mujoco), "--dart-root", str(dart), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "engines.md").read_text().endswith(text + "\n")
    assert main(["engines", "--mujoco-root", str(mujoco), "--dart-root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2


def test_gaits_play_each_task_on_the_robot_its_run_trained(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    import mt_specialize.envs.gait as gait
    from mt_specialize.experiments import task_as_trained
    from mt_specialize.learning.inference import InferencePolicy
    from paper.report import write_gaits

    archived = Path(__file__).resolve().parent.parent / "results/grid_paper/three_hoppers/ours_jt400k_sp25/seed1"
    run = tmp_path / "grid/three_hoppers/ours_jt400k_sp25/seed1"
    run.mkdir(parents=True)
    shutil.copy(archived / "policy.safetensors", run / "policy.safetensors")
    played = []
    monkeypatch.setattr(gait, "play", lambda policy, task, schedule, steps: played.append(task) or
                        SimpleNamespace(qpos=np.zeros((steps + 1, 6))))
    monkeypatch.setattr(gait, "write_animation", lambda task, qpos, path, **kw: path)
    written = write_gaits(tmp_path / "grid", tmp_path / "out")
    assert [p.name for p in written] == [f"three_hoppers_{t}.gif" for t in
                                         ("hopper_capsule", "hopper_box", "hopper_ellipsoid")]
    config = InferencePolicy.from_checkpoint(run / "policy.safetensors").run_config
    assert config["profile"] == "paper"
    for task in played:  # the run's robots (the paper profile's), not the built-in tasks' defaults
        assert task.resolved_physics == task_as_trained(task.name, config).resolved_physics
        assert task.resolved_physics["inertia"] == "dart"
