"""Everything the project attributes to the study, checked against the study's own README
(../shared/study/README.md, verbatim; SOURCE.md says where it comes from): every figure of
`minbert.published` against the README's tables, every quoted sentence against its text, and every
study answer on the index against those figures."""

from __future__ import annotations

import re

import pytest

from minbert import paths
from minbert.published import QUOTES, README_ROWS, STATE_OF_THE_ART, STUDY_FIGURES, SWAPPED

STUDY_README = paths.PROJECT_ROOT.parent / "shared" / "study" / "README.md"
COLUMNS = ("SST", "QQP", "STS")


def percent(cell: str) -> float | None:
    """A README figure as a fraction: "51.41 %", "77. 32 %", "47,6 %", "50%" (None for anything else)."""
    text = cell.replace(" ", "").replace(",", ".").removesuffix("%")
    return round(float(text) / 100, 6) if re.fullmatch(r"\d+(\.\d+)?", text) else None


def readme_tables(text: str) -> list[tuple[str, tuple[float | None, ...]]]:
    """Every row of every results table (a header naming SST, QQP or STS columns) as its label and its
    figures in SST, QQP, STS order (None where the table has no such column)."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [next((k for k, name in enumerate(COLUMNS) if c.upper().startswith(name)), None)
                      for c in cells]
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        if any(h is not None for h in header):
            figures = [None, None, None]
            for column, cell in zip(header, cells, strict=False):
                if column is not None:
                    figures[column] = percent(cell)
            rows.append((cells[0], tuple(figures)))
    return rows


@pytest.fixture(scope="module")
def readme() -> str:
    assert STUDY_README.is_file(), f"{STUDY_README}: the study's README is the source of its figures"
    return STUDY_README.read_text(encoding="utf-8")


def test_the_parser_reads_the_readmes_spellings():
    assert [percent(c) for c in ("51.41 %", "77. 32 %", "47,6 %", "50%", "3.061 %", "x")] == \
        [0.5141, 0.7732, 0.476, 0.5, 0.03061, None]


def test_every_study_figure_is_the_readmes(readme):
    rows = readme_tables(readme)
    labels = {label for label, _ in rows}
    assert set(README_ROWS) == set(STUDY_FIGURES)
    for name, figures in STUDY_FIGURES.items():
        found = [f for label, f in rows if label in README_ROWS[name]]
        assert found, f"{name}: none of {README_ROWS[name]} in the README's tables ({sorted(labels)})"
        for theirs in found:
            given = tuple(t for t in theirs if t is not None)
            ours = tuple(f for f, t in zip(figures, theirs, strict=True) if t is not None)
            if name in SWAPPED and given != ours:
                ours = (ours[1], ours[0], *ours[2:])  # the table's swapped columns
            assert given == pytest.approx(ours, abs=1e-9), (name, theirs)
    for name in SWAPPED:  # put right: SST the lower of the two, as the other table or plausibility says
        sst, qqp, _ = STUDY_FIGURES[name]
        assert sst < qqp
    (state,) = [f for label, f in rows if label == "State-of-the-Art"]
    assert state == pytest.approx(STATE_OF_THE_ART)


def test_the_headline_is_bert_final_as_both_tables_give_it(readme):
    finals = [f for label, f in readme_tables(readme) if label == "BERT-Final"]
    assert len(finals) == 2 and all(f == (0.513, 0.889, 0.851) for f in finals)
    assert STUDY_FIGURES["BERT-Final"] == (0.513, 0.889, 0.851)


def test_every_quoted_sentence_is_the_studys_own(readme):
    flat = " ".join(readme.split())
    for key, quote in QUOTES.items():
        assert " ".join(quote.split()) in flat, key


def test_every_study_answer_quotes_the_study_and_its_figures():
    """Each answer attributed to the study on the index: its figures are the README's (three decimals of
    a `STUDY_FIGURES` value), its quotation is verbatim, and it names the comparison the study made."""
    from minbert.report.study import QUESTIONS

    published = {f"{v:.3f}" for row in STUDY_FIGURES.values() for v in row if v is not None}
    quoted = set(QUOTES.values())
    for question in QUESTIONS:
        figures = re.findall(r"\b0\.\d{3}\b", question.theirs)
        assert set(figures) <= published, (question.text, set(figures) - published)
        for quote in re.findall(r"“([^”]+)”", question.theirs):
            assert quote in quoted, (question.text, quote)
    by_notebook: dict[str, str] = {}
    for question in QUESTIONS:  # each notebook's first question
        by_notebook.setdefault(question.notebook, question.theirs)
    attention = by_notebook["05_attention"]
    assert "0.568" in attention and "0.483" in attention  # its stated exception: sparsemax STS
    reorder = by_notebook["02_sbert_baseline"]
    assert "0.446" in reorder and "0.459" in reorder  # against its own BertSelfAttention baseline
    assert "0.514" not in reorder  # not Baseline_2, another experiment
    assert "0.513" in by_notebook["06_final_bert"] and "0.851" in by_notebook["06_final_bert"]


def test_a_claims_status_counts_our_verdicts_against_the_differences_its_figures_name():
    """The study's reordering against its baseline: +0.013 SST, +0.021 QQP, +0.015 STS (all past our
    smallest effects, so all three are claimed 'better'); round-robin: +0.009 SST and +0.003 QQP are
    below them (no claim), +0.020 STS is claimed."""
    from minbert.comparison import Difference
    from minbert.records import Results, RunRecord
    from minbert.report.study import QUESTIONS, claim_status

    question = next(q for q in QUESTIONS if q.notebook == "02_sbert_baseline")

    def diff(arm, task, estimate, low, high):
        return Difference(arm, "baseline", task, estimate, low, high, [estimate] * 2, 1000).to_dict()

    margins = [Difference("baseline", "majority class", t, 0.2, 0.1, 0.3, [0.2, 0.2], 1000).to_dict()
               for t in ("sst", "qqp", "sts")]
    runs = [RunRecord(f"{a}-seed1", {}, 1, [], group=a) for a in ("baseline", "qqp-first", "round-robin")]

    def status(*found):
        return claim_status(question, Results("02_sbert_baseline", "cpu", {}, {}, runs,
                                              {"differences": list(found), "margins": margins}))

    better = [diff("qqp-first", t, 0.03, 0.02, 0.04) for t in ("sst", "qqp", "sts")]
    assert status(*better) == "reproduced (3 agree, 0 disagree, 0 open of the 3 differences it named)"
    from minbert.report.study import status_counts

    counts = status_counts([Results("02_sbert_baseline", "cpu", {}, {}, runs,
                                    {"differences": better, "margins": margins})])
    assert counts["reproduced"] == 1 and sum(counts.values()) == len(QUESTIONS)
    assert counts["not asked by the study"] == 3 and counts["not testable here"] == 2
    mixed = [diff("qqp-first", "sst", 0.0, -0.004, 0.004), diff("qqp-first", "qqp", 0.03, 0.02, 0.04),
             diff("qqp-first", "sts", 0.01, -0.02, 0.04), diff("round-robin", "sst", -0.05, -0.07, -0.03)]
    assert status(*mixed) == "partly reproduced (1 agree, 1 disagree, 1 open of the 3 differences it named)"
    against = [diff("round-robin", "sts", -0.02, -0.03, -0.01)]
    assert status(*against) == "contradicted (0 agree, 1 disagree, 0 open of the 1 differences it named)"
    assert status(diff("qqp-first", "sts", 0.01, -0.02, 0.04)).startswith("not settled at this budget")


def test_a_named_verdict_that_holms_correction_undoes_leaves_the_claim_open():
    """The page's family is every difference it judged: with p-values 0.001 (qqp-first's STS) and 0.03
    (round-robin's STS) among four, Holm keeps the first (0.001 <= 0.05 / 4) and not the second (0.03 >
    0.05 / 3), so the claim's status counts round-robin's 'worse' as open, and the short answer says how
    many named differences the correction keeps (hand-computed)."""
    from minbert.comparison import Difference
    from minbert.records import Results, RunRecord
    from minbert.report.study import QUESTIONS, claim_status, effects, short_answer

    question = next(q for q in QUESTIONS if q.notebook == "02_sbert_baseline")

    def diff(arm, task, estimate, low, high, p):
        return Difference(arm, "baseline", task, estimate, low, high, [estimate] * 3, 1000, p).to_dict()

    margins = [Difference("baseline", "majority class", t, 0.2, 0.1, 0.3, [0.2] * 3, 1000, 0.0).to_dict()
               for t in ("sst", "qqp", "sts")]
    runs = [RunRecord(f"{a}-seed1", {}, 1, [], group=a) for a in ("baseline", "qqp-first", "round-robin")]
    found = [diff("qqp-first", "sts", 0.03, 0.02, 0.04, 0.001),
             diff("round-robin", "sts", -0.02, -0.03, -0.01, 0.03),
             diff("qqp-first", "sst", 0.0, -0.004, 0.004, 0.9),
             diff("qqp-first", "qqp", 0.01, -0.02, 0.04, 0.5)]
    result = Results("02_sbert_baseline", "cpu", {}, {}, runs, {"differences": found, "margins": margins})
    assert claim_status(question, result) == (
        "partly reproduced (1 agree, 1 disagree, 2 open of the 4 differences it named)")
    result.checks["differences"][1]["p_value"] = 0.011  # now 0.011 <= 0.05 / 3: round-robin's 'worse' holds
    assert claim_status(question, result).startswith("partly reproduced (1 agree, 2 disagree, 1 open")
    result.checks["differences"][1]["p_value"] = 0.03
    assert short_answer(question, result) == (
        "qqp-first better on STS; round-robin worse on STS; otherwise 1 negligible, 1 inconclusive of 4 "
        "differences. Holm's correction for the page's 4 differences keeps 1 of the 2 named.")
    table = effects(result)
    assert table.loc["round-robin − baseline", "STS pearson"].endswith("worse (not after Holm)")
    assert table.loc["qqp-first − baseline", "STS pearson"].endswith("better")


def test_the_deviations_table_reads_each_profiles_settings_from_its_results_file():
    from minbert.comparison import ZERO_SHOT
    from minbert.records import Results, RunRecord
    from minbert.report.study import deviations

    def result(profile, sizes, seeds):
        config = {"lr": 1e-4, "epochs": 2, "batch_size": 32}
        runs = [RunRecord(f"{arm}-seed{s}", {}, 1, [], config, train_sizes=sizes, group=arm,
                          parameters=22_700_000) for arm in ("baseline", "qqp-first") for s in range(seeds)]
        checks = {"floors": {ZERO_SHOT: {"sts": 0.838}}}
        return Results("02_sbert_baseline", profile, {"device": f"cpu ({profile})"}, {}, runs, checks)

    table = deviations([result("cpu", {"sst": 8000, "qqp": 12000, "sts": 5000}, 3),
                        result("smoke", {"sst": 300, "qqp": 300, "sts": 300}, 2)])
    assert list(table.columns) == ["the study", "ours: cpu (02)", "ours: smoke (02)", "what it can change"]
    assert table.loc["train rows (SST / QQP / STS)", "ours: cpu (02)"] == "8,000 / 12,000 / 5,000"
    assert table.loc["task proportions", "ours: cpu (02)"] == "QQP 1.5x SST, STS 0.6x SST"
    assert table.loc["task proportions", "the study"] == "QQP 16.6x SST, STS 0.7x SST"
    assert table.loc["seeds", "ours: cpu (02)"] == "3 a configuration"
    assert table.loc["seeds", "ours: smoke (02)"] == "2 a configuration"
    assert "STS zero-shot 0.838" in table.loc["checkpoint training", "ours: cpu (02)"]
    assert table.loc["hardware", "ours: smoke (02)"] == "cpu (smoke)"
