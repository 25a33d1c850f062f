"""Sentences the notebooks print from the numbers, against hand-computed cases."""

from __future__ import annotations

from minbert.records import RunRecord
from minbert.reporting import aim_findings, variant_findings


def test_findings_name_only_differences_beyond_the_margin():
    def run(name, sst, qqp, sts):
        losses = {f"{t}_{s}_loss": 0.5 for t in ("sst", "qqp", "sts") for s in ("train", "dev")}
        history = [{"epoch": 1, **losses}]
        return RunRecord(name, {"sst_acc": sst, "qqp_acc": qqp, "sts_pearson": sts}, 1, history)

    runs = [run("base", 0.50, 0.80, 0.85), run("close", 0.52, 0.81, 0.855), run("far", 0.40, 0.80, 0.70)]
    line = variant_findings(runs, "base", {"sst": 1000, "qqp": 1000, "sts": 1000})[-1]
    # SST ±0.031, QQP ±0.025, STS ±0.017 on 1,000 rows: only "far" differs beyond them
    assert "SST ±0.031, QQP ±0.025, STS ±0.017" in line
    assert line.endswith("beyond it: far SST -0.100; far STS -0.150.")
    assert len(variant_findings(runs, "base")) == 3  # no sizes, no margin line


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
