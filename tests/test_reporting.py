"""Sentences the notebooks print from the numbers, against hand-computed cases."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from minbert.comparison import Comparison
from minbert.records import RunRecord
from minbert.report.tables import comparison_table
from minbert.report.wording import aim_findings


def test_the_comparison_table_shows_seed_spread_and_budget():
    def run(name, sst, seconds):
        history = [{"epoch": 1, "seconds": seconds, "steps": 10, "examples": 320, "heldout_mean": sst}]
        return RunRecord(name, {"sst_acc": sst}, 1, history, heldout={"sst_acc": sst},
                         dev_sizes={"sst": 1101})

    comparison = Comparison("a", {"sst": np.zeros(4)})
    for name, scores in (("a", (0.40, 0.44, 0.42)), ("b", (0.50, 0.50, 0.50))):
        for i, score in enumerate(scores):
            comparison.add(name, run(f"{name}-seed{i}", score, 10.0 + i), {"sst": np.zeros(4)})
    table = comparison_table(comparison)
    assert table.loc["a", "SST acc"] == "0.420 ± 0.020"  # sample standard deviation of .40, .44, .42
    assert table.loc["b", "SST acc"] == "0.500 ± 0.000"
    assert (table.loc["a", "examples"], table.loc["a", "steps"], table.loc["a", "seconds"]) == (320, 10, 11)
    assert table.loc["a", "dev rows"] == "1,101"
    assert comparison.best_arm() == "b"
    assert table.loc["floor: majority class", "SST acc"] == "1.000"  # every gold label is 0 here


def test_floor_rows_score_on_the_same_dev_items():
    gold = np.array([0, 0, 0, 1, 2.0])
    cosine = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    comparison = Comparison("a", {"sst": gold, "sts": np.array([0.0, 1, 2, 3, 4])},
                            floors={"untrained checkpoint (zero-shot cosine)": {"sts": cosine}})
    history = [{"epoch": 1, "seconds": 1.0, "steps": 1, "examples": 5, "heldout_mean": 0.5}]
    comparison.add("a", RunRecord("a-seed1", {"sst_acc": 0.8, "sts_pearson": 0.9}, 1, history),
                   {"sst": gold, "sts": np.arange(5.0)})
    table = comparison_table(comparison)
    assert table.loc["floor: majority class", "SST acc"] == "0.600"  # three of five are class 0
    zero_shot = np.corrcoef(cosine, np.arange(5.0))[0, 1]
    assert table.loc["floor: untrained checkpoint (zero-shot cosine)", "STS pearson"] == f"{zero_shot:.3f}"


def test_aim_findings_say_met_or_short_and_the_trend():
    history = [{"epoch": 1, "sst_acc": 0.40, "sts_pearson": 0.85},
               {"epoch": 2, "sst_acc": 0.45, "sts_pearson": 0.87},
               {"epoch": 3, "sst_acc": 0.47, "sts_pearson": 0.86, "bert_frozen": True}]
    record = RunRecord("final", {"sst_acc": 0.47, "sts_pearson": 0.87}, 2, history)
    sst, sts = aim_findings(record, {"sst_acc": 0.52, "sts_pearson": 0.86})
    assert sst == ("SST acc: 0.470, 0.050 short of the aim 0.52 (by epoch: 0.400 -> 0.450 -> 0.470*); "
                   "still rising at the last epoch.")
    assert sts == "STS pearson: 0.870, aim 0.86 met (by epoch: 0.850 -> 0.870 -> 0.860*)."
    (flat,) = aim_findings(record, {"sts_pearson": 0.9})
    assert flat.endswith("no longer rising at the last epoch.")


def test_a_copy_run_elsewhere_takes_its_commit_from_the_environment(tmp_path, monkeypatch):
    from minbert.records import git_state

    monkeypatch.setenv("MINBERT_COMMIT", "0123abc")
    assert git_state(tmp_path) == ("0123abc", None)
    assert git_state()[0] == "0123abc"  # explicit beats this checkout's own .git
    monkeypatch.delenv("MINBERT_COMMIT")
    assert git_state(tmp_path) == (None, None)


def test_aim_findings_follow_the_held_out_scores_by_epoch():
    history = [{"epoch": 1, "heldout_mean": 0.5, "heldout_sst_acc": 0.41},
               {"epoch": 2, "heldout_mean": 0.6, "heldout_sst_acc": 0.44, "sst_acc": 0.43}]
    record = RunRecord("final", {"sst_acc": 0.43}, 2, history)
    assert aim_findings(record, {"sst_acc": 0.52}) == [
        "SST acc: 0.430, 0.090 short of the aim 0.52 (held-out by epoch: 0.410 -> 0.440); "
        "still rising at the last epoch."]


def loss_run(name: str, epochs: int, shift: float = 0.0) -> RunRecord:
    history = [{"epoch": e, "seconds": 1.0, "heldout_mean": 0.5,
                **{f"{t}_train_loss": 1.0 / e + shift for t in ("sst", "qqp", "sts")},
                **{f"heldout_{t}_loss": 1.2 / e + shift for t in ("sst", "qqp", "sts")}}
               for e in range(1, epochs + 1)]
    return RunRecord(name, {"sst_acc": 0.5}, 1, history, heldout={"sst_acc": 0.5})


def test_loss_plots_are_small_multiples_with_the_legend_outside():
    import matplotlib.pyplot as plt

    from minbert.report.figures import plot_task_losses

    fig = plot_task_losses([loss_run(f"arm{i}", 3, i / 10) for i in range(7)])
    assert [ax.get_title() for ax in fig.axes] == ["SST loss", "QQP loss", "STS loss"]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    fig.canvas.draw()
    legend_top = fig.legends[0].get_window_extent().y1
    assert all(legend_top <= ax.get_window_extent().y0 for ax in fig.axes)  # below the panels
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)  # whole epochs only
    assert len(fig.axes[0].lines) == 14  # a train and a held-out curve per run
    plt.close(fig)
    single = plot_task_losses([loss_run("a", 1), loss_run("b", 1)])
    assert not single.axes[0].lines and len(single.axes[0].patches) == 4  # two bars per run, no lone dots
    plt.close(single)
    late = loss_run("qqp-separate", 2)  # STS trained in the second epoch only: one point, drawn larger
    late.history[0]["sts_train_loss"] = float("nan")
    fig = plot_task_losses([loss_run("a", 2), late])
    sts_train = fig.axes[2].lines[2]  # a's train, a's held-out, then late's train
    assert sts_train.get_markersize() > fig.axes[2].lines[0].get_markersize()
    assert fig.axes[0].lines[2].get_markersize() == fig.axes[0].lines[0].get_markersize()  # SST: a curve
    plt.close(fig)


def test_limits_state_the_budget_and_the_interval_widths():
    from minbert.comparison import Difference
    from minbert.report.wording import limits

    comparison = Comparison("a", {"sst": np.zeros(4)})
    for arm in ("a", "b"):
        for seed in range(3):
            run = loss_run(f"{arm}-{seed}", 2)
            run.train_sizes, run.dev_sizes, run.config = {"sst": 300}, {"sst": 1101}, {"epochs": 2}
            comparison.add(arm, run, {"sst": np.zeros(4)})
    differences = [Difference("b", "a", "sst", 0.01, -0.02, 0.04, [0.01] * 3, 1101)]
    text = limits(comparison, differences, "smoke")
    assert "SST 300 training rows, 2 epochs, 3 seeds per arm; dev rows 1,101" in text
    assert "±0.030 on SST acc" in text
    assert "smoke profile" in text and "smoke profile" not in limits(comparison, differences, "full")
    assert "(sst)." in text  # the one task it has, not sst/qqp/sts


def test_limits_name_each_arms_epochs_where_they_differ():
    from minbert.report.wording import limits

    comparison = Comparison("pretrain", {"sst": np.zeros(4)})
    for arm, epochs in (("pretrain", 10), ("finetune", 3)):
        run = loss_run(f"{arm}-1", 2)
        run.group, run.train_sizes, run.config = arm, {"sst": 5000}, {"epochs": epochs}
        comparison.add(arm, run, {"sst": np.zeros(4)})
    assert "SST 5,000 training rows, 10 epochs (pretrain), 3 epochs (finetune), 1 seed per arm" in limits(
        comparison, [], "smoke")


def test_the_history_plot_draws_what_the_runs_recorded_with_the_legend_below():
    import matplotlib.pyplot as plt

    from minbert.report.figures import plot_history

    runs = [RunRecord(f"run{i}", {"sst_acc": 0.5}, 1,
                      [{"epoch": e, "train_loss": 1.0 / e, "heldout_loss": 1.1 / e,
                        "heldout_acc": 0.4 + e / 100, "dev_acc": 0.4} for e in (1, 2, 3)]) for i in range(6)]
    runs.append(RunRecord("old", {"sst_acc": 0.5}, 1, [{"epoch": 1, "train_loss": 1.0, "dev_acc": 0.4}]))
    fig = plot_history(runs)
    assert [ax.get_title() for ax in fig.axes] == ["train loss", "held-out loss", "held-out acc", "dev acc"]
    assert len(fig.axes[1].lines) == 6  # the run without held-out rows has no held-out line
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    fig.canvas.draw()
    assert all(fig.legends[0].get_window_extent().y1 <= ax.get_window_extent().y0 for ax in fig.axes)
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    plt.close(fig)


def test_the_movement_line_gives_each_variants_range_in_percent():
    from minbert.report.wording import variant_movement_line

    def run(name, moves):
        record = RunRecord(name, {"sst_acc": 0.5}, 1, [{"epoch": 1}])
        record.variant_movement = moves
        return record

    comparison = Comparison("standard", {"sst": np.zeros(4)})
    comparison.add("standard", run("s", None), {"sst": np.zeros(4)})
    for seed, scale in enumerate((1.0, 3.0)):  # the means over the two seeds: 0.02 and 0.01
        moves = [{"layer": 0, "center": 0.01 * scale}, {"layer": 1, "center": 0.005 * scale}]
        comparison.add("center", run(f"c{seed}", moves), {"sst": np.zeros(4)})
    line = variant_movement_line(comparison)
    assert line.startswith("The variants' own parameters moved center 1.0%-2.0% (per layer, mean over seeds)")
    assert "stayed close to standard attention" in line
    comparison.add("linear", run("l", [{"layer": 0, "query_mix": 0.2}]), {"sst": np.zeros(4)})
    assert "linear 20.0%" in variant_movement_line(comparison)
    assert "stayed close" not in variant_movement_line(comparison)
    only_standard = Comparison("standard", {"sst": np.zeros(4)})
    only_standard.add("standard", run("s", None), {"sst": np.zeros(4)})
    assert variant_movement_line(only_standard) == ""


def test_an_ensembles_aim_findings_follow_its_members_curves():
    def member(name, scores):
        history = [{"epoch": e, "heldout_mean": s, "heldout_sst_acc": s} for e, s in enumerate(scores, 1)]
        return RunRecord(name, {"sst_acc": scores[-1]}, len(scores), history)

    one, two = member("m1", [0.40, 0.46]), member("m2", [0.42, 0.40])  # mean change: +0.06 and -0.02
    ensemble = RunRecord("final", {"sst_acc": 0.45}, 0, [{"epoch": 0, "heldout_mean": 0.47,
                                                          "heldout_sst_acc": 0.47}])
    assert aim_findings(ensemble, {"sst_acc": 0.52}, [one, two]) == [
        "SST acc: 0.450, 0.070 short of the aim 0.52 (held-out by epoch: m1 0.400 -> 0.460; "
        "m2 0.420 -> 0.400); still rising at the last epoch."]
    two.history[-1]["heldout_sst_acc"] = 0.30  # now the mean change is -0.03
    (falling,) = aim_findings(ensemble, {"sst_acc": 0.52}, [one, two])
    assert falling.endswith("no longer rising at the last epoch.")


def test_a_page_table_shows_three_decimals_dashes_and_its_stamp_once():
    from minbert.report.tables import page_html

    table = pd.DataFrame({"run": ["a", "b"], "SST acc": [0.5786299172289505, np.nan],
                          "seconds": [21.17033, 640.98], "device": ["cpu (2 cores)", "cpu (2 cores)"],
                          "steps": [10, 20]}).set_index("run")
    page = page_html(table)
    cells = re.findall(r"<td [^>]*>([^<]*)</td>", page)
    assert cells == ["0.579", "21", "10", "–", "641", "20"]  # no NaN, no long decimals, whole seconds
    assert "<caption>all rows: device: cpu (2 cores)</caption>" in page and ">device<" not in page
    assert page == page_html(table)  # the same table renders the same page


def test_a_page_table_keeps_counts_whole_beside_a_floor_row_and_tiny_values_visible():
    from minbert.report.tables import page_html

    # A floor row has no seeds or steps, so pandas turns those counts into floats with NaN.
    table = pd.DataFrame([{"arm": "baseline", "seeds": 3, "mean": 0.5, "examples": 50000, "steps": 1570},
                          {"arm": "floor: majority class", "mean": 0.262}]).set_index("arm")
    assert table["seeds"].dtype == float
    cells = re.findall(r"<td [^>]*>([^<]*)</td>", page_html(table))
    assert cells == ["3", "0.500", "50,000", "1,570", "–", "0.262", "–", "–"]
    # A parity check's differences, in an object column beside text: not rounded to 0.000.
    parity = pd.Series({"checkpoint": "embedded", "max_abs_diff": 1.9073486328125e-06, "rows": 16,
                        "none": None}, name="value").to_frame()
    cells = re.findall(r"<td [^>]*>([^<]*)</td>", page_html(parity))
    assert cells == ["embedded", "1.9e-06", "16", "–"]
    # Float row labels (04's perturbation sizes) alike, not at pandas' six decimals.
    sizes = pd.DataFrame({"task": ["sst"] * 3, "epsilon": [0.0, 1e-5, 0.003], "term": [0.0, 3.7e-7, 0.25]})
    page = page_html(sizes.set_index(["task", "epsilon"]))
    labels = re.findall(r"<th [^>]*row_heading[^>]*>([^<]*)</th>", page)
    assert labels == ["sst", "0.000", "1.0e-05", "0.003"]


def test_a_page_table_wraps_long_text_and_keeps_numbers_on_one_line():
    from minbert.report.tables import page_html

    table = pd.DataFrame({"arm": ["standard", "all three"], "SST acc": ["0.426 ± 0.001", "0.388 ± 0.009"],
                          "study row (theirs)": ["sBERT-BertSelfAttention",
                                                 "sBERT-CenterMatrixLinearSelfAttentionWithSparsemax"]})
    page = page_html(table.set_index("arm"))
    (selectors,) = re.findall(r"([^{}]*)\{[^}]*white-space: normal", page)
    wrapped = re.findall(r"_(row\d+_col\d+)", selectors)
    assert sorted(wrapped) == ["row0_col1", "row1_col1"]  # the study's rows wrap, "mean ± spread" does not


def test_the_quora_caveat_quotes_the_checkpoints_own_model_card(tmp_path):
    from minbert.bert import default_checkpoint
    from minbert.report.wording import quora_caveat

    card = (default_checkpoint() / "README.md").read_text(encoding="utf-8")
    caveat = quora_caveat()
    assert "| 103,663 |" in card and "1,170,060,424" in card  # the card shipped with the embedded weights
    assert "103,663 Quora Question Triplets of the 1,170,060,424 pairs" in caveat and "flattered" in caveat
    assert "does not say" in quora_caveat(str(tmp_path))  # a checkpoint folder without a card


def test_a_page_says_where_another_profile_disagrees():
    from minbert.comparison import Difference
    from minbert.records import Results
    from minbert.report.wording import profile_disagreements

    here = [Difference("mean pooling", "recipe", "sts", -0.119, -0.15, -0.09, [-0.12, -0.11], 863),
            Difference("mean pooling", "recipe", "sst", 0.001, -0.004, 0.006, [0.001, 0.001], 1101)]
    there = [Difference("mean pooling", "recipe", "sts", 0.001, -0.003, 0.004, [0.0, 0.002], 863),
             Difference("mean pooling", "recipe", "sst", 0.002, -0.003, 0.007, [0.002, 0.002], 1101)]
    other = Results("06_final_bert", "full", {"commit": "1edef07abc"}, {}, [],
                    {"differences": [d.to_dict() for d in there]})
    assert profile_disagreements(here, other) == (
        "The full profile's run (commit 1edef07) disagrees on mean pooling on STS pearson: worse here, "
        "negligible there: the budgets differ, so read either as the evidence of its own budget only.")
    assert profile_disagreements(here[1:], other) == "" and profile_disagreements(here, None) == ""


def test_the_readme_states_the_quora_caveat_with_the_model_cards_figures():
    from minbert.paths import PROJECT_ROOT

    readme = " ".join((PROJECT_ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "103,663 Quora Question Triplets among the 1,170,060,424 pairs" in readme


def test_the_runs_table_gives_an_ensemble_no_best_epoch_and_a_run_without_a_study_row_a_dash():
    from minbert.report.tables import multitask_table, page_html

    scores = {"sst_acc": 0.45, "qqp_acc": 0.8, "sts_pearson": 0.86}
    run = RunRecord("final-seed1", scores, 2, [{"seconds": 10}])
    ensemble = RunRecord("final", scores, 0, [{"seconds": 20}])  # an ensemble's record: no one epoch
    table = multitask_table([run, ensemble], {"final": "BERT-Final"}, key="name")
    assert table.loc["final-seed1", "best epoch"] == 2 and pd.isna(table.loc["final", "best epoch"])
    assert table.loc["final", "study SST"] == 0.513 and pd.isna(table.loc["final-seed1", "study SST"])
    cells = re.findall(r"<td [^>]*>([^<]*)</td>", page_html(table))
    width = len(table.columns)
    first, second = cells[:width], cells[width:]
    assert first[list(table.columns).index("best epoch")] == "2"
    assert second[list(table.columns).index("best epoch")] == "–"
    assert first[list(table.columns).index("study row (theirs)")] == "–"


def test_a_comparison_page_says_by_how_much_its_reference_misses_the_evidence_targets():
    import numpy as np

    from minbert.comparison import Comparison
    from minbert.report.wording import limits, target_line

    gold = {"sst": np.zeros(8), "qqp": np.zeros(8), "sts": np.linspace(0, 5, 8)}
    comparison = Comparison("baseline", gold)
    for seed, (sst, qqp, sts) in enumerate([(0.41, 0.80, 0.86), (0.43, 0.78, 0.87)]):
        scores = {"sst_acc": sst, "qqp_acc": qqp, "sts_pearson": sts}
        record = RunRecord(f"baseline-seed{seed}", scores, 1, [], {"mode": "bi-encoder", "epochs": 2},
                           train_sizes=dict.fromkeys(gold, 8), dev_sizes=dict.fromkeys(gold, 8))
        comparison.add("baseline", record, {t: np.zeros(8) for t in gold})
    assert target_line(comparison) == (
        "- Targets: the reference arm baseline's mean dev SST acc 0.420 (target 0.43); QQP acc 0.790 (target "
        "0.77); STS pearson 0.865 (target 0.85) misses SST acc by 0.010: its answers there stand on a "
        "reference weaker than the evidence asks, and more rows for every arm are what would reach it "
        "(notebook 02's final run is the reference recipe on more rows: its page sets it against "
        "the same targets).")
    assert target_line(comparison) in limits(comparison, [], "cpu")
    for record in comparison.runs["baseline"]:  # a cross-encoder's STS target is 0.82
        record.config["mode"], record.dev["sst_acc"], record.dev["sts_pearson"] = "cross-encoder", 0.44, 0.83
    assert target_line(comparison).endswith("STS pearson 0.830 (target 0.82) meets every target.")
    for record in comparison.runs["baseline"]:
        record.dev["qqp_acc"] = 0.75
    assert "misses QQP acc by 0.020" in target_line(comparison) and "notebook 06's final runs" in target_line(
        comparison)


def test_a_final_run_on_more_rows_is_set_against_the_targets():
    """02's final run (its reference recipe on more rows) says what a larger budget reaches."""
    from minbert.report.wording import final_run_line

    run = RunRecord("baseline-final", {"sst_acc": 0.44, "qqp_acc": 0.765, "sts_pearson": 0.843}, 2, [],
                    arm="baseline", train_sizes={"sst": 2036, "qqp": 3227, "sts": 1410})
    assert final_run_line([run]) == (
        "- A larger budget: baseline again on SST 2,036, QQP 3,227, STS 1,410 training rows (one seed, the "
        "same dev rows): SST acc 0.440 (target 0.43: meets); QQP acc 0.765 (target 0.77: misses by 0.005); "
        "STS pearson 0.843 (target 0.85: misses by 0.007).")
    assert final_run_line([]) == ""
