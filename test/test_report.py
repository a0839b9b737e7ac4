"""Report statistics: exact permutation test and the ours-vs-baselines table, on hand-made runs."""
import pytest

from mt_specialize.report import comparison_table, permutation_p_value, table_one


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


def _rows(final: float, until: int = 3_000_000):
    """metrics rows rising linearly to ``final`` at 3M samples, logged every 1M up to ``until``."""
    return [{"samples": s, "return_pooled": final * s / 3_000_000} for s in range(1_000_000, until + 1, 1_000_000)]


def test_comparison_table_differences_p_values_and_rankings():
    runs = {"three_hoppers": {
        "ours_jt400k_sp25": {1: _rows(1000), 2: _rows(1100), 3: _rows(1200)},
        "joint": {1: _rows(500), 2: _rows(600), 3: _rows(700)},
        "append": {1: _rows(1500), 2: _rows(1600)},
        "separate": {1: _rows(900, until=2_000_000)},  # not at 3M yet: left out
    }}
    table = comparison_table(runs, "three_hoppers")
    assert "| joint (sp=0%) | 3 | 600.0 | +500.0 | 0.10 |" in table
    assert "| append (one-hot task id) | 2 | 1550.0 | -450.0 | 0.10 |" in table
    assert "| separate | 0 | – | | |" in table
    ours_rank = next(line for line in table.splitlines() if line.startswith("Ranking by mean")).split(": ", 1)[1]
    assert ours_rank.index("append") < ours_rank.index("ours") < ours_rank.index("joint")
    assert "left out" in ours_rank
    paper_rank = next(line for line in table.splitlines() if line.startswith("Ranking in the paper"))
    assert paper_rank.startswith("Ranking in the paper: ours (jt=400k, sp=25%) > separate")
    # Table I counts the partial run as partial, not in the mean
    separate_row = next(line for line in table_one(runs).splitlines() if line.startswith("| jt=0, sp=100% |"))
    assert "– (0 seeds, 1 partial)" in separate_row


def test_jt_sp_heat_map_only_when_a_sweep_cell_reached_the_budget(tmp_path):
    from mt_specialize.report import plot_jt_sp_grid

    runs = {"three_hoppers": {"ours_jt400k_sp25": {1: _rows(1000)}, "ours_jt80k_sp5": {1: _rows(900, until=2_000_000)}}}
    assert plot_jt_sp_grid({"three_hoppers": {"joint": {1: _rows(500)}}}, "three_hoppers", tmp_path / "a.png") is None
    assert not (tmp_path / "a.png").exists()
    path = plot_jt_sp_grid(runs, "three_hoppers", tmp_path / "b.png")
    assert path == tmp_path / "b.png" and path.stat().st_size > 10_000


def test_readme_blocks_filled_in_place_and_missing_markers_named(tmp_path):
    from mt_specialize.report import fill_blocks, update_readme

    runs = {"three_hoppers": {"ours_jt400k_sp25": {1: _rows(1000), 2: _rows(1100), 3: _rows(1200)},
                              "joint": {1: _rows(500), 2: _rows(600), 3: _rows(700, until=2_000_000)}}}
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- n_done -->0<!-- /n_done --> runs\n\n<!-- table1 -->\nold table\n<!-- /table1 -->\n"
                      "text kept\n<!-- comparison --><!-- /comparison -->\n<!-- torso_mass --><!-- /torso_mass -->\nend\n")
    blocks = update_readme(readme, runs)
    text = readme.read_text()
    assert blocks["n_done"] == "5" and "<!-- n_done -->5<!-- /n_done --> runs" in text
    assert "old table" not in text and "text kept\n" in text and text.endswith("end\n")
    assert "| sp=0% | 1601.94 | 550.0 ± 50.0 (2 seeds, 1 partial) |" in text
    comparison = text.split("<!-- comparison -->\n")[1].split("\n<!-- /comparison -->")[0].splitlines()
    assert comparison[2] == "| three_hoppers | +550.0 (p 0.10) | – | – | – |"
    assert comparison[3] == "| biped_fwd_bwd | – | – | – | – |"
    assert fill_blocks(text, blocks) == text  # filling again changes nothing

    broken = text.replace("<!-- /table1 -->", "")
    readme.write_text(broken)
    with pytest.raises(ValueError, match="table1"):
        update_readme(readme, runs)
    assert readme.read_text() == broken  # nothing written on error


def test_torso_mass_table_against_the_papers_orderings():
    from mt_specialize.report import torso_mass_table

    runs = {"torso_mass_3": {"ours_jt400k_sp25": {1: _rows(900), 2: _rows(1100)},
                             "joint": {1: _rows(400), 2: _rows(600)},
                             "separate": {1: _rows(700), 2: _rows(900)}},
            "torso_mass_8": {"ours_jt400k_sp25": {1: _rows(500)}, "joint": {1: _rows(800)},
                             "separate": {1: _rows(600)}},
            "torso_mass_14": {"joint": {1: _rows(800, until=2_000_000)}}}
    rows = {line.split(" |")[0]: line for line in torso_mass_table(runs).splitlines()[2:]}
    assert rows["| 3 kg"] == ("| 3 kg | 1000.0 ± 100.0 (2) | 500.0 ± 100.0 (2) | 800.0 ± 100.0 (2) "
                              "| +500.0 (p 0.33) | +200.0 (p 0.67) | separate (separate) | yes |")
    assert rows["| 8 kg"].endswith("| -300.0 (p 1.00) | -100.0 (p 1.00) | joint (joint) | no |")
    assert rows["| 14 kg"] == "| 14 kg | – | – | – | – | – | – (joint) | – |"  # not at 3M yet


def test_ankle_variant_is_compared_with_the_papers_biped_ranking():
    runs = {"biped_fwd_bwd_ankle100": {"ours_jt400k_sp25": {1: _rows(2000)}, "joint": {1: _rows(1500)}}}
    table = comparison_table(runs, "biped_fwd_bwd_ankle100")
    assert "| joint (sp=0%) | 1 | 1500.0 | +500.0 | 1.00 |" in table
    assert "Ranking in the paper: ours (jt=400k, sp=25%) > random split (jt=400k, sp=25%) > separate" in table
