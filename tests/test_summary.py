"""The study-wide summary: our answers are worded from the saved paired differences, the study's from
its published figures, and each question from the first profile whose results file can answer it."""

from __future__ import annotations

import re

import pytest

from minbert.comparison import Difference
from minbert.paths import PROJECT_ROOT
from minbert.records import Results, RunRecord, load_all
from minbert.report.study import (
    QUESTIONS,
    README_END,
    README_START,
    ReadmeSectionError,
    collapse_verdict,
    headline,
    readme_block,
    study_summary,
    write_readme,
)


def smart_results(profile: str, estimate: float) -> Results:
    runs = [RunRecord(f"{arm}-seed{s}", {"sts_pearson": 0.8}, 1, [], group=arm)
            for arm in ("no-smart", "smart", "smart-naive-sts") for s in (1, 2, 3)]
    low, high = estimate - 0.02, estimate + 0.02
    differences = [Difference("smart-naive-sts", "no-smart", "sts", estimate, low, high, [estimate] * 3, 863),
                   Difference("smart-naive-sts", "no-smart", "sst", 0.001, -0.02, 0.02, [0.001] * 3, 1101)]
    differences = [d.to_dict() for d in differences]
    form = Difference("smart-naive-sts", "smart", "sts", estimate / 10, -0.01, 0.01, [0.0] * 3, 863).to_dict()
    return Results("04_smart", profile, {"commit": "abcdef123"}, {}, runs,
                   {"differences": differences, "divergence_form": [form]})


def test_each_question_is_answered_from_the_saved_differences_full_profile_first(tmp_path):
    (tmp_path / "04_smart.full.html").touch()  # its report is rendered: the evidence links to it
    table = study_summary([smart_results("smoke", -0.30), smart_results("full", -0.05)], reports=tmp_path)
    collapse = next(q.text for q in QUESTIONS if q.notebook == "04_smart" and q.ours is not None)
    row = table.set_index("question").loc[collapse]
    assert row["ours (MiniLM)"] == (  # the naive divergence against the right one, with STS trained
        "Does not reproduce at this budget: with STS at 0.800 Pearson under the right divergence, the "
        "naive one moves it by -0.005 [-0.010, +0.010]; what SMART does to STS here, the divergence's form "
        "does not cause.")
    assert row["evidence"] == ('<a href="04_smart.full.html#What-our-numbers-say">04_smart.full (9 runs, '
                               '3 seeds per arm, commit abcdef1)</a>')  # a link to the section that shows it
    assert "0.847 to 0.438" in row["the study (theirs, BERT-base)"]  # BERT Baseline and BERT-SMART, STS
    assert row["status of the study's claim"] == "contradicted"  # its collapse does not come from the form
    unanswered = table.set_index("question").loc["Does Sophia beat AdamW?"]
    assert unanswered["ours (MiniLM)"] == "not run yet" and unanswered["evidence"] == "-"
    smart = table.set_index("question").loc["Does SMART help?"]
    assert smart["ours (MiniLM)"] == "none of these arms ran in this profile"
    assert len(table) == len(QUESTIONS)
    unrendered = study_summary([smart_results("full", -0.05)], reports=tmp_path / "none")
    assert unrendered.set_index("question").loc[collapse, "evidence"] == (
        "04_smart.full (9 runs, 3 seeds per arm, commit abcdef1), no report rendered")  # no dead link


def test_the_final_model_questions_read_the_ensemble_the_peer_and_the_ablation():
    history = [{"epoch": 0, "seconds": 10.0}]
    dev = {"sst_acc": 0.5, "qqp_acc": 0.85, "sts_pearson": 0.88}
    runs = [RunRecord("final-seed1", {**dev, "sst_acc": 0.49}, 2, history, heldout={"sst_acc": 0.6}),
            RunRecord("final", dev, 0, history, heldout={"sst_acc": 0.5}, parameters=46_600_000,
                      config={"ensemble": ["final-seed1", "final-seed2"]}),  # chosen; its held-out is lower
            RunRecord("recipe-seed1", {**dev, "sst_acc": 0.3}, 1, history, heldout={"sst_acc": 0.9},
                      group="recipe")]
    peer = [Difference("ours", "peer", "sst", 0.02, 0.005, 0.035, [0.02], 1101).to_dict(),
            Difference("ours", "peer", "qqp", 0.001, -0.004, 0.006, [0.001], 20212).to_dict()]
    lever = [Difference("layer-wise lr decay", "recipe", "sst", -0.03, -0.05, -0.01, [-0.03, -0.02],
                        1000).to_dict()]
    margins = [Difference("recipe", "majority class", "sst", 0.2, 0.18, 0.22, [0.2, 0.2], 1000).to_dict()]
    checks = {"ensemble": ["final-seed1", "final-seed2"], "peer_differences": peer, "differences": lever,
              "margins": margins}
    result = Results("06_final_bert", "full", {"commit": "abcdef123"}, {}, runs, checks)
    table = study_summary([result], short=False).set_index("question")["ours (MiniLM)"]
    assert table["How good is the final multitask model?"] == (
        "final (an ensemble of 2 runs, 46.6M parameters): SST acc 0.500, QQP acc 0.850, STS pearson 0.880 "
        "(dev rows as in the report); its best single run final-seed1: SST acc 0.490, QQP acc 0.850, STS "
        "pearson 0.880.")  # like for like: the ensemble and its best single run, each said to be what it is
    ensemble = next(q.text for q in QUESTIONS if q.checks_key == "peer_differences")
    assert ensemble.startswith("Not like for like")
    beats = table[ensemble]
    assert beats == "ours against peer: better on SST acc +0.020 [+0.005, +0.035]; negligible on QQP acc."
    levers = table["Which choices of the final recipe help (an ablation, each against the recipe)?"]
    assert levers == "layer-wise lr decay against recipe: worse on SST acc -0.030 [-0.050, -0.010]."
    assert headline(result)["seeds"] == "ensemble of 2 runs"  # the README's and the index's headline


def test_a_file_saved_before_the_floors_yields_to_a_profile_that_can_answer():
    """06 full, saved before the floors, still answers the final model; its ablation question (and the
    effects table) comes from the cpu file, whose reference cleared its floors."""
    from minbert.report.study import effect_tables

    def final_bert(profile: str, sst: float, floors: bool) -> Results:
        runs = [RunRecord("final", {"sst_acc": sst}, 1, [], config={"ensemble": ["a", "b"]}),
                RunRecord("recipe-seed1", {"sst_acc": 0.4}, 1, [], group="recipe")]
        lever = [Difference("mean pooling", "recipe", "sst", -0.03, -0.05, -0.02, [-0.03, -0.03],
                            1101).to_dict()]
        margins = [Difference("recipe", "majority class", "sst", 0.15, 0.12, 0.18, [0.15, 0.15],
                              1101).to_dict()]
        checks = {"ensemble": ["a", "b"], "differences": lever, **({"margins": margins} if floors else {})}
        return Results("06_final_bert", profile, {"commit": "abcdef123"}, {}, runs, checks)

    table = study_summary([final_bert("full", 0.48, floors=False), final_bert("cpu", 0.45, floors=True)])
    rows = table.set_index("question")
    assert "06_final_bert.full" in rows.loc["How good is the final multitask model?", "evidence"]
    assert "SST acc 0.480" in rows.loc["How good is the final multitask model?", "ours (MiniLM)"]
    levers = rows.loc["Which choices of the final recipe help (an ablation, each against the recipe)?"]
    assert "06_final_bert.cpu" in levers["evidence"]
    assert levers["ours (MiniLM)"] == "mean pooling worse on SST."
    assert list(effect_tables([final_bert("full", 0.48, False), final_bert("cpu", 0.45, True)])) == [
        "06_final_bert (cpu): the comparison"]
    alone = study_summary([final_bert("full", 0.48, floors=False)]).set_index("question")
    assert alone.loc["Which choices of the final recipe help (an ablation, each against the recipe)?",
                     "ours (MiniLM)"].startswith("No answer: its results file predates the floors")


def test_the_readme_section_is_written_between_its_markers_from_the_results(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nkept above\n\n{README_START}\nold figure 0.999\n{README_END}\n"
                      "\nkept below\n")
    write_readme(readme, [smart_results("full", -0.05)])
    text = readme.read_text()
    assert text.startswith("# title\n\nkept above\n\n") and text.endswith(f"{README_END}\n\nkept below\n")
    assert "0.999" not in text
    # the headline arm is the mean over its three seeds (every STS score 0.8); the stamp's commit, shortened
    assert "| 04_smart   | full      | no-smart | mean of 3 seeds | STS pearson 0.800 |" in text
    assert "abcdef1" in text


def test_the_readme_section_needs_exactly_one_pair_of_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no section here\n")
    with pytest.raises(ReadmeSectionError, match="expected one results section"):
        write_readme(readme, [])
    assert readme.read_text() == "# no section here\n"  # left as it was


def test_the_committed_readme_states_the_committed_results():
    """Every figure of the README's results section comes from reports/results/: after a run, rewrite it
    with `python -m minbert readme`."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(README_START):readme.index(README_END) + len(README_END)]
    assert section == readme_block(load_all(PROJECT_ROOT / "reports" / "results")), \
        "README's results section is stale: run `python -m minbert readme`"


def test_the_collapse_verdict_needs_an_sts_that_has_something_to_lose():
    """The study's collapse (0.847 -> 0.438): seen only where the naive divergence is detected below the
    right one; where the right one's STS is no higher than 0.438 the budget cannot tell."""
    def runs(pearson):
        return [RunRecord(f"smart-seed{s}", {"sts_pearson": p}, 1, [], group="smart")
                for s, p in enumerate(pearson)]

    drop = Difference("smart-naive-sts", "smart", "sts", -0.30, -0.35, -0.25, [-0.3, -0.28, -0.32], 863)
    flat = Difference("smart-naive-sts", "smart", "sts", 0.002, 0.001, 0.003, [-0.004, 0.006, 0.003], 863)
    assert collapse_verdict(drop, runs([0.80, 0.82, 0.78])) == (
        "reproduces at this budget: against the squared-difference divergence at the same size, the naive "
        "one moves STS Pearson by -0.300 [-0.350, -0.250] (from 0.800).")
    assert collapse_verdict(flat, runs([0.17, 0.30, 0.21])).startswith(
        "cannot be judged at this budget: with the right divergence STS reaches only 0.227 Pearson, no "
        "higher than the study's collapsed 0.438")
    assert collapse_verdict(flat, runs([0.80, 0.80, 0.80])).startswith("does not reproduce at this budget")


def test_a_resumed_render_says_its_wall_time_is_not_the_profiles():
    from minbert.report.study import RESUMED, headline

    fresh = smart_results("full", -0.05)
    assert headline(fresh)["minutes"] == "0.0"
    fresh.stamp.update(wall_s=600.0, params={"resume": False})
    assert headline(fresh)["minutes"] == "10.0"
    fresh.stamp["params"]["resume"] = True
    assert headline(fresh)["minutes"] == "10.0" + RESUMED


def test_the_readme_and_the_index_explain_a_resumed_render(tmp_path, monkeypatch):
    """The README's table marks a resumed render's minutes and says once, under the table, what they
    are; the index says it on the render's own line. A fresh render gets neither."""
    from minbert.report.index import write_index
    from minbert.report.study import RESUMED_NOTE, readme_block

    result = smart_results("full", -0.05)
    result.stamp.update(wall_s=600.0, device="cpu", dirty=False, params={"resume": False})
    assert RESUMED_NOTE not in readme_block([result])
    result.stamp["params"]["resume"] = True
    block = readme_block([result])
    assert "| 10.0 (resumed)" in block and block.index(RESUMED_NOTE) > block.index("| 10.0 (resumed)")
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path))
    result.save()
    index = write_index(tmp_path).read_text()
    assert "10.0 min, resumed from finished runs" in index


def test_the_readme_is_short_and_its_links_resolve():
    """A newcomer reads the README in minutes: at most 10,000 bytes; the rest lives in docs/, and every
    relative link it gives leads to a file or folder that exists."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 10_000
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert "docs/protocol.md" in links and "docs/modules.md" in links
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (PROJECT_ROOT / link).exists(), link


def test_the_short_answer_names_the_arms_that_differ_counts_the_rest_and_the_unanswered_tasks():
    from minbert.report.study import short_answer

    question = next(q for q in QUESTIONS if q.notebook == "02_sbert_baseline")
    d = [Difference("round-robin", "baseline", "qqp", 0.03, 0.02, 0.04, [0.03, 0.03], 5000),
         Difference("round-robin", "baseline", "sts", 0.001, -0.002, 0.004, [0.001, 0.001], 863),
         Difference("combined", "baseline", "qqp", 0.01, -0.01, 0.03, [0.01, 0.01], 5000),
         Difference("combined", "baseline", "sst", -0.05, -0.08, -0.02, [-0.05, -0.04], 1101)]
    margins = [Difference("baseline", "majority class", "qqp", 0.12, 0.1, 0.14, [0.12, 0.12], 5000),
               Difference("baseline", "majority class", "sst", 0.004, -0.01, 0.02, [0.004, 0.004], 1101)]
    runs = [RunRecord(f"{a}-seed{s}", {"qqp_acc": 0.8}, 1, [], group=a) for a in ("baseline", "round-robin")
            for s in (1, 2)]
    result = Results("02_sbert_baseline", "cpu", {}, {}, runs,
                     {"differences": [x.to_dict() for x in d], "margins": [m.to_dict() for m in margins]})
    text = short_answer(question, result)
    assert text == ("round-robin better on QQP; otherwise 1 negligible, 1 inconclusive of 3 differences; "
                    "SST acc not answered (the reference did not learn).")  # combined's SST is not named
    assert len(text.split()) <= 25
    never = Results("02_sbert_baseline", "cpu", {}, {}, runs, {"differences": [d[3].to_dict()],
                                                               "margins": [margins[1].to_dict()]})
    assert short_answer(question, never) == "No answer at this budget: the reference did not learn (SST acc)."



def test_a_comparison_saved_before_floors_names_no_difference():
    """A results file without margins cannot say whether its reference learned: its comparison answers
    nothing (the index, 07 and the effect tables), while 01's modes and the peer need no floors."""
    from minbert.report.study import UNJUDGED, effects, short_answer

    question = next(q for q in QUESTIONS if q.notebook == "02_sbert_baseline")
    up = Difference("round-robin", "baseline", "qqp", 0.03, 0.02, 0.04, [0.03, 0.03], 5000)
    runs = [RunRecord(f"{a}-seed{s}", {"qqp_acc": 0.8}, 1, [], group=a) for a in ("baseline", "round-robin")
            for s in (1, 2)]
    old = Results("02_sbert_baseline", "smoke", {}, {}, runs, {"differences": [up.to_dict()]})
    assert short_answer(question, old) == UNJUDGED
    assert effects(old).loc["round-robin − baseline", "QQP acc"].endswith("not judged (no floors)")
    part1 = next(q for q in QUESTIONS if q.notebook == "01_part1_sst")
    finetune = Difference("finetune", "pretrain", "sst", 0.045, 0.018, 0.071, [0.04, 0.05], 1101)
    modes = Results("01_part1_sst", "cpu", {}, {}, runs, {"differences": [finetune.to_dict()]})
    assert short_answer(part1, modes) == "finetune better on SST."
    assert effects(modes).loc["finetune − pretrain", "SST acc"].endswith("better")


def test_the_studys_answers_are_its_own_figures():
    """Every figure a question quotes for the study is one of its published figures, and a comparison of
    two of its rows says above or below as its table has them."""
    import re as regex

    from minbert.published import STUDY_FIGURES
    from minbert.report.study import versus

    published = {f"{v:.3f}" for row in STUDY_FIGURES.values() for v in row if v is not None}
    for question in QUESTIONS:
        for figure in regex.findall(r"\d\.\d{3}", question.theirs):
            assert figure in published, (question.text, figure)
    assert versus("sBERT-Sophia Baseline", "sBERT-Baseline_2") == (
        "above on QQP 0.808 vs 0.773, STS 0.447 vs 0.433; below on SST 0.367 vs 0.514")
    sophia = next(q for q in QUESTIONS if q.notebook == "03_sophia")
    assert sophia.theirs.startswith("One run each") and "above on QQP 0.808 vs 0.773" in sophia.theirs


def test_the_short_answer_names_every_arm_it_counts():
    from minbert.report.study import short_answer

    question = next(q for q in QUESTIONS if q.notebook == "02_sbert_baseline")
    arms = ("qqp-first", "round-robin", "combined", "pcgrad")
    found = [Difference(a, "baseline", "qqp", 0.03, 0.02, 0.04, [0.03, 0.03], 5000).to_dict() for a in arms]
    margins = [Difference("baseline", "majority class", "qqp", 0.12, 0.1, 0.14, [0.12, 0.12], 5000).to_dict()]
    runs = [RunRecord(f"{a}-seed1", {"qqp_acc": 0.8}, 1, [], group=a) for a in ("baseline", *arms)]
    result = Results("02_sbert_baseline", "cpu", {}, {}, runs, {"differences": found, "margins": margins})
    assert short_answer(question, result) == ("qqp-first better on QQP; round-robin better on QQP; combined "
                                              "better on QQP; pcgrad better on QQP.")
