"""Sentences the notebooks print from the numbers, against hand-computed cases."""

from __future__ import annotations

import numpy as np

from minbert.comparison import Comparison
from minbert.records import RunRecord
from minbert.reporting import aim_findings, comparison_table


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


def test_aim_findings_say_met_or_short_and_the_trend():
    history = [{"epoch": 1, "sst_acc": 0.40, "sts_pearson": 0.85},
               {"epoch": 2, "sst_acc": 0.45, "sts_pearson": 0.87},
               {"epoch": 3, "sst_acc": 0.47, "sts_pearson": 0.86, "bert_frozen": True}]
    record = RunRecord("final", {"sst_acc": 0.47, "sts_pearson": 0.87}, 2, history)
    sst, sts = aim_findings(record, {"sst_acc": 0.52, "sts_pearson": 0.86})
    assert sst == ("sst_acc: 0.470, 0.050 short of the aim 0.52 (by epoch: 0.400 -> 0.450 -> 0.470*); "
                   "still rising at the last epoch.")
    assert sts == "sts_pearson: 0.870, aim 0.86 met (by epoch: 0.850 -> 0.870 -> 0.860*)."
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
        "sst_acc: 0.430, 0.090 short of the aim 0.52 (held-out by epoch: 0.410 -> 0.440); "
        "still rising at the last epoch."]
