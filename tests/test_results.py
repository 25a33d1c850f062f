"""Results files keyed by notebook and profile, the results table across notebooks, the study's table
beside it, and reports/index.html."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from minbert import records
from minbert.published import STATE_OF_THE_ART, STUDY_FIGURES
from minbert.report import figures, index, tables


def run(name, **dev):
    return {"name": name, "dev": dev, "best_epoch": 1, "history": []}


def write_result(folder, notebook, runs, dirty=False, profile="cpu"):
    folder.mkdir(parents=True, exist_ok=True)
    stamp = {"commit": "abcdef1234567", "dirty": dirty, "params": {}, "seed": 1, "device": "cpu (test)",
             "versions": {}, "started": "2026-01-01T00:00:00+00:00", "wall_s": 90.0}
    payload = {"notebook": notebook, "profile": profile, "stamp": stamp, "data": {}, "runs": runs,
               "checks": {}}
    (folder / f"{notebook}.{profile}.json").write_text(json.dumps(payload))


@pytest.fixture
def reports(tmp_path):
    folder = tmp_path / "reports"
    write_result(folder / "results", "01_part1_sst", [run("finetune", sst_acc=0.47)])
    write_result(folder / "results", "02_sbert_baseline",
                 [run("baseline", sst_acc=0.40, qqp_acc=0.76, sts_pearson=0.84),
                  run("qqp-first", sst_acc=0.46, qqp_acc=0.79, sts_pearson=0.83)],
                 dirty=True)
    for name in ("01_part1_sst", "02_sbert_baseline"):
        (folder / f"{name}.cpu.html").write_text("<html></html>")
    return folder


def test_runs_table_has_one_row_per_arm_and_the_stamps_table_one_per_results_file(reports):
    table = tables.runs_table(records.load_all(reports / "results"))
    assert list(table.index) == [("01_part1_sst", "finetune"), ("02_sbert_baseline", "baseline"),
                                 ("02_sbert_baseline", "qqp-first")]
    row = table.loc[("02_sbert_baseline", "qqp-first")]
    assert row["mean"] == pytest.approx((0.46 + 0.79 + 0.83) / 3)
    assert row["profile"] == "cpu" and "device" not in table.columns and "commit" not in table.columns
    stamps = tables.stamps_table(records.load_all(reports / "results"))
    assert list(stamps.index) == [("01_part1_sst", "cpu"), ("02_sbert_baseline", "cpu")]
    stamp = stamps.loc[("02_sbert_baseline", "cpu")]
    assert stamp["commit"] == "abcdef1+" and stamp["device"] == "cpu (test)"
    assert stamp["minutes (wall)"] == "1.5"
    part1 = table.loc[("01_part1_sst", "finetune")]
    assert part1["mean"] == pytest.approx(0.47) and pd.isna(part1["QQP acc"])
    best = tables.headline_runs(table)
    assert list(best.index) == [("01_part1_sst", "finetune"), ("02_sbert_baseline", "qqp-first")]


def test_runs_of_several_profiles_carry_the_profile_in_their_name(reports):
    write_result(reports / "results", "01_part1_sst", [run("finetune", sst_acc=0.5)], profile="full")
    table = tables.runs_table(records.load_all(reports / "results"))
    assert [run for notebook, run in table.index if notebook == "01_part1_sst"] == [
        "finetune (cpu)", "finetune (full)"]
    assert table.loc[("01_part1_sst", "finetune (full)"), "profile"] == "full"
    assert table.loc["02_sbert_baseline"].index.tolist() == ["baseline", "qqp-first"]


def test_no_results_yet_gives_empty_tables_and_the_study_bars(tmp_path):
    table = tables.runs_table(records.load_all(tmp_path))
    assert table.empty and list(table.columns) == ["SST acc", "QQP acc", "STS pearson", "mean",
                                                   "held-out mean", "seeds", "dev rows", "profile",
                                                   "headline"]
    assert tables.headline_runs(table).empty and tables.stamps_table(records.load_all(tmp_path)).empty
    fig = figures.plot_tasks(records.load_all(tmp_path))
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]  # the study's best and the state of the art


def test_study_table_is_theirs_and_complete():
    table = tables.study_table()
    assert len(table) == len(STUDY_FIGURES) + 1
    assert tuple(table.loc["state of the art cited by the study", ["SST acc", "QQP acc", "STS pearson"]]) \
        == STATE_OF_THE_ART
    assert "swapped" in table.loc["sBERT-Sophia balanced data", "note"]
    assert table.index.name == "model (theirs)"


def test_index_links_every_report_with_a_summary(reports):
    page = index.write_index(reports).read_text()
    assert '<a href="01_part1_sst.cpu.html">' in page and '<a href="02_sbert_baseline.cpu.html">' in page
    assert "headline run <code>qqp-first</code>: SST acc 0.460, QQP acc 0.790, STS pearson 0.830" in page
    assert "state of the art cited by the study" in page and "(theirs)" in page
    fig = figures.plot_tasks(records.load_all(reports / "results"))
    assert [ax.get_title() for ax in fig.axes] == ["SST acc", "QQP acc", "STS pearson"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["01 finetune (cpu)",
                                                                      "02 qqp-first (cpu)"]


def test_index_lists_the_runs_of_every_profile(reports):
    write_result(reports / "results", "01_part1_sst", [run("finetune", sst_acc=0.5)], profile="full")
    page = index.write_index(reports).read_text()
    assert "finetune (full)" in page and "finetune (cpu)" in page
    assert "01_part1_sst (full), results file only (no report)" in page


def test_cpu_and_full_results_of_one_notebook_live_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path))
    stamp = {"commit": None, "dirty": None, "device": "cpu (test)", "wall_s": 1.0}
    for profile, score in (("cpu", 0.4), ("full", 0.5)):
        runs = [records.RunRecord("a", {"sst_acc": score}, 1, []),
                records.RunRecord("b", {"sst_acc": 0.1}, 1, [])]
        records.Results("01_part1_sst", profile, stamp, {}, runs).save()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["01_part1_sst.cpu.json",
                                                                       "01_part1_sst.full.json"]
    cpu, full = records.load_results("01_part1_sst", "cpu"), records.load_results("01_part1_sst", "full")
    assert cpu.run("a").dev == {"sst_acc": 0.4} and full.headline().dev == {"sst_acc": 0.5}
    assert records.predictions_dir("01_part1_sst", "full").name == "01_part1_sst.full"


def test_the_headline_run_is_chosen_on_held_out_rows_not_dev():
    better_on_dev = records.RunRecord("a", {"sst_acc": 0.9}, 1, [], heldout={"sst_acc": 0.5})
    better_held_out = records.RunRecord("b", {"sst_acc": 0.6}, 1, [], heldout={"sst_acc": 0.7})
    assert records.headline([better_on_dev, better_held_out]).name == "b"
    older = records.RunRecord("c", {"sst_acc": 0.95}, 1, [])  # recorded before the held-out split
    assert records.headline([better_on_dev, older]).name == "c"  # then dev decides, as it did


def test_the_headline_is_the_best_arm_over_its_seeds_and_the_table_has_a_row_per_arm(tmp_path):
    def seeded(group, seed, held, sst):
        return {**run(f"{group}-seed{seed}", sst_acc=sst), "group": group, "heldout": {"sst_acc": held}}

    # arm "a" has the single best held-out seed (0.9) but the lower mean (0.6 against 0.7)
    runs = [seeded("a", 1, 0.9, 0.50), seeded("a", 2, 0.3, 0.40),
            seeded("b", 1, 0.7, 0.45), seeded("b", 2, 0.7, 0.47)]
    write_result(tmp_path, "02_sbert_baseline", runs)
    (result,) = records.load_all(tmp_path)
    assert result.headline().name == "b-seed1"  # the best arm, then its best held-out seed (first of ties)
    table = tables.runs_table([result])
    assert list(table.index) == [("02_sbert_baseline", "a"), ("02_sbert_baseline", "b")]
    row = table.loc[("02_sbert_baseline", "b")]
    assert row["SST acc"] == pytest.approx(0.46) and row["seeds"] == "2" and row["held-out mean"] == 0.7
    assert list(table["headline"]) == ["", "yes"]  # a page reads "yes" and a blank, not True and False
    assert list(tables.headline_runs(table).index) == [("02_sbert_baseline", "b")]


def test_every_committed_prediction_file_belongs_to_its_folders_results_file():
    """reports/predictions/<notebook>.<profile>/<run>-<task>-<split>.csv: the run is one of that results
    file's runs (a file a rerun no longer writes is gone: a run publishes its folder whole)."""
    import json

    from minbert import tasks as registry

    root = Path(__file__).parents[1] / "reports"
    folders = sorted((root / "predictions").iterdir())
    assert folders
    for folder in folders:
        results = root / "results" / f"{folder.name}.json"
        assert results.is_file(), f"{folder.name}: no results file"
        names = {run["name"] for run in json.loads(results.read_text())["runs"]}
        for csv in folder.glob("*.csv"):
            run, task, split = csv.stem.rsplit("-", 2)
            assert task in registry.TASKS and split in ("dev", "test"), csv.name
            # a single-task run is named after its task (the peer's `peer-sst` writes peer-sst-dev.csv)
            assert run in names or f"{run}-{task}" in names, f"{folder.name}/{csv.name}: not a run of it"


def test_reports_link_only_the_neighbours_that_are_rendered(tmp_path):
    """A profile rendered in part links what is there; a report rendered later gains its neighbours."""
    from minbert.report.index import navigation, refresh_navigation

    existing = {"01_part1_sst.cpu.html", "03_sophia.cpu.html", "06_final_bert.cpu.html"}
    assert navigation("03_sophia", "cpu", existing) == [
        ("← 01_part1_sst", "01_part1_sst.cpu.html"), ("all reports", "index.html"),
        ("glossary", "index.html#glossary"), ("06_final_bert →", "06_final_bert.cpu.html")]
    nav = '<nav class="minbert-nav"><a href="index.html">all reports</a></nav>'
    for name in ("01_part1_sst.cpu.html", "06_final_bert.full.html"):
        (tmp_path / name).write_text(f"<body>{nav}<p>report</p>{nav}</body>")
    rewritten = [tmp_path / "01_part1_sst.cpu.html", tmp_path / "06_final_bert.full.html"]
    assert refresh_navigation(tmp_path) == rewritten
    first = (tmp_path / "01_part1_sst.cpu.html").read_text()
    assert first.count('<a href="index.html#glossary">glossary</a></nav>') == 2 and "06_final" not in first
    (tmp_path / "02_sbert_baseline.cpu.html").write_text(f"<body>{nav}</body>")
    refresh_navigation(tmp_path)
    first = (tmp_path / "01_part1_sst.cpu.html").read_text()
    assert '<a href="02_sbert_baseline.cpu.html">02_sbert_baseline →</a>' in first
    assert refresh_navigation(tmp_path) == []  # up to date: nothing rewritten


def test_the_results_figure_leaves_first_looks_out_where_evidence_exists(tmp_path):
    """A smoke reference that never learned STS would stretch the STS axis beside the cpu evidence."""
    from minbert.records import Results, RunRecord

    def result(profile, sts):
        run = RunRecord("a-seed1", {"sst_acc": 0.4, "qqp_acc": 0.7, "sts_pearson": sts}, 1, [],
                        heldout={"sst_acc": 0.4}, group="a")
        return Results("02_sbert_baseline", profile, {"commit": "abc"}, {}, [run], {})

    fig = figures.plot_tasks([result("smoke", 0.22), result("cpu", 0.86)])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["02 a (cpu)"]
    fig = figures.plot_tasks([result("smoke", 0.22)])  # nothing else: the first look is all there is
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["02 a (smoke)"]
