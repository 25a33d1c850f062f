"""The study-wide summary: our answers are worded from the saved paired differences, the study's from
its published figures, and the full profile answers where it ran."""

from __future__ import annotations

from minbert.comparison import Difference
from minbert.records import Results, RunRecord
from minbert.summary import QUESTIONS, study_summary


def smart_results(profile: str, estimate: float) -> Results:
    runs = [RunRecord(f"{arm}-seed{s}", {"sts_pearson": 0.8}, 1, [], group=arm)
            for arm in ("no-smart", "smart-naive-sts") for s in (1, 2, 3)]
    low, high = estimate - 0.02, estimate + 0.02
    differences = [Difference("smart-naive-sts", "no-smart", "sts", estimate, low, high, [estimate] * 3, 863),
                   Difference("smart-naive-sts", "no-smart", "sst", 0.001, -0.02, 0.02, [0.001] * 3, 1101)]
    differences = [d.to_dict() for d in differences]
    form = Difference("smart-naive-sts", "smart", "sts", estimate / 10, -0.01, 0.01, [0.0] * 3, 863).to_dict()
    return Results("04_smart", profile, {"commit": "abcdef123"}, {}, runs,
                   {"differences": differences, "divergence_form": [form]})


def test_each_question_is_answered_from_the_saved_differences_full_profile_first():
    table = study_summary([smart_results("quick", -0.30), smart_results("full", -0.05)])
    row = table.set_index("question").loc["Does a classification divergence on the STS score collapse STS?"]
    assert row["ours (MiniLM)"] == ("smart-naive-sts against smart: no difference detected at this budget on "
                                    "any task (STS pearson).")  # the naive divergence against the right one
    assert row["evidence"] == "04_smart.full (6 runs, 3 seed(s) per arm, commit abcdef1)"
    assert "0.847 to 0.438" in row["the study (theirs, BERT-base)"]  # BERT Baseline and BERT-SMART, STS
    unanswered = table.set_index("question").loc["Does Sophia beat AdamW?"]
    assert unanswered["ours (MiniLM)"] == "not run yet" and unanswered["evidence"] == "-"
    smart = table.set_index("question").loc["Does SMART help?"]
    assert smart["ours (MiniLM)"] == "none of these arms ran in this profile"
    assert len(table) == len(QUESTIONS)
