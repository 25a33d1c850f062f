"""Error-analysis tables against hand-made outputs; the predictor on raw text."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from minbert import analysis
from minbert.bert import BertModel, load_tokenizer
from minbert.data import Example, TaskSplit
from minbert.models import MultitaskBert
from minbert.tasks import SENTIMENT, TASKS


def split_of(task, rows):
    return TaskSplit(task, "dev", "test", [Example(f"e{i}", texts, label) for i, (texts, label) in
                                           enumerate(rows)], [])


def test_sst_tables_rank_by_confidence():
    split = split_of("sst", [(("good",), 4), (("bad",), 0), (("meh",), 2)])
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 5.0],   # right, sure
                           [0.0, 0.0, 0.0, 0.0, 3.0],   # wrong (says 4), fairly sure
                           [0.0, 0.0, 0.2, 0.0, 0.0]])  # right, unsure
    table = analysis.examples_table("sst", split, logits)
    assert table["correct"].tolist() == [True, False, True]
    assert analysis.least_confident(table, 1)["id"].tolist() == ["e2"]
    assert analysis.most_wrong(table, 5)["id"].tolist() == ["e1"]
    expected = torch.softmax(torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0]), -1).max()
    assert table.loc[1, "confidence"] == pytest.approx(float(expected))


def test_qqp_confidence_and_sts_errors():
    qqp = analysis.examples_table("qqp", split_of("qqp", [(("a", "b"), 1), (("c", "d"), 0)]),
                                  torch.tensor([0.0, 2.0]))
    assert qqp["confidence"].tolist() == pytest.approx([0.5, float(torch.sigmoid(torch.tensor(2.0)))])
    assert qqp["correct"].tolist() == [False, False]  # logit 0 is "not duplicate"; 2.0 says duplicate
    sts = analysis.examples_table("sts", split_of("sts", [(("a", "b"), 1.0), (("c", "d"), 4.0)]),
                                  torch.tensor([1.5, 1.0]))
    assert analysis.most_wrong(sts, 1)["id"].tolist() == ["e1"] and sts["error"].tolist() == [0.5, 3.0]
    with pytest.raises(ValueError, match="regression"):
        TASKS["sts"].confidence(torch.zeros(2))


def test_metric_by_length_bins():
    table = pd.DataFrame({"correct": [True, True, False, False, True, False]})
    frame = analysis.metric_by_length("sst", table, [3, 4, 10, 11, 20, 21], bins=3)
    assert frame["examples"].tolist() == [2, 2, 2]
    assert frame["metric"].tolist() == [1.0, 0.0, 0.5]


@pytest.mark.parametrize("mode", ["bi-encoder", "cross-encoder"])
def test_predictor_on_raw_text(tiny_checkpoint, mode):
    torch.manual_seed(0)
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), mode=mode)
    predictor = analysis.Predictor(model, load_tokenizer(tiny_checkpoint))
    sst = predictor.predict("sst", "w1 w2 w3")
    assert sst["label"] in SENTIMENT
    assert sum(sst["probabilities"].values()) == pytest.approx(1, abs=0.01)
    assert 0 <= predictor.predict("qqp", "w1 w2", "w3")["probability"] <= 1
    assert 0 <= predictor.predict("sts", "w1 w2", "w1 w2")["similarity"] <= 5
    with pytest.raises(ValueError, match="two sentences"):
        predictor.predict("sts", "w1")
    panel = analysis.prediction_panel(predictor)
    panel.children[3].click()  # the button: runs a prediction without a kernel to show it in


def test_the_learning_curve_fits_the_gain_per_doubling_and_extrapolates_to_the_aim():
    """Scores laid exactly on 0.40 + 0.05 log2(rows / 1000): the fit gives back the slope, the rows at
    which 0.55 is reached (8,000) and the score at the study's QQP size; runs of one size are averaged."""
    import math

    from minbert.analysis import STUDY_QQP_TRAIN, learning_curve
    from minbert.records import RunRecord

    def run(n, score, name):
        dev = {"sst_acc": score, "qqp_acc": score}
        return RunRecord(name, dev, 1, [], train_sizes={"sst": n, "qqp": n})

    runs = [run(1000, 0.40, "a"), run(2000, 0.45, "b"), run(4000, 0.49, "c1"), run(4000, 0.51, "c2")]
    table = learning_curve(runs, {"sst_acc": 0.55, "qqp_acc": 0.86})
    sst = table.loc["SST acc"]
    assert sst["gain per doubling"] == pytest.approx(0.05, abs=1e-4)
    assert sst["rows to reach the aim (fit)"] == "8,000"
    assert sst["points (rows: dev)"] == "1,000: 0.400, 2,000: 0.450, 4,000: 0.500"
    expected = 0.40 + 0.05 * math.log2(STUDY_QQP_TRAIN / 1000)
    study = table.loc["QQP acc", "with the study's 141,506 QQP pairs (fit)"]
    assert study == pytest.approx(expected, abs=1e-3)
    assert "STS pearson" not in table.index  # no STS points
    fig = analysis.plot_fits(runs, on="dev")  # ticks: the measured sizes, the extrapolation's end
    assert [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes] == [
        ["1,000", "2,000", "4,000", "16,000"], ["1,000", "2,000", "4,000", "141,506"]]
    assert all(t.get_text() == "" for ax in fig.axes for t in ax.get_xticklabels(minor=True))


def test_encoder_size_counts_the_layers_weights_as_transformers_does():
    """BERT-base's encoder is 12 layers of 7,087,872 weights (4 attention projections of 768 x 768 plus
    biases, two LayerNorms, 768 -> 3072 -> 768): 85,054,464, as transformers' own encoder counts."""
    import transformers

    from minbert.bert import BertConfig, encoder_parameters

    assert encoder_parameters(BertConfig()) == 12 * (4 * (768 * 768 + 768) + 2 * 2 * 768
                                                     + 768 * 3072 + 3072 + 3072 * 768 + 768) == 85_054_464
    small = transformers.BertConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                    intermediate_size=128)
    theirs = sum(p.numel() for p in transformers.BertModel(small).encoder.parameters())
    assert encoder_parameters(BertConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                         intermediate_size=128)) == theirs


def test_the_model_size_curve_fits_a_power_law_in_the_error_and_stays_below_a_perfect_score():
    """Runs keeping 1, 2 and all 4 layers of a checkpoint (one layer = P weights), scores laid on
    1 - 0.6 * 0.8^doublings: the law gives back the gain of the next doubling at 4 P (0.384 * 0.2) and
    the score at a reference encoder of 16 P (1 - 0.6 * 0.8^4); steep gains never read above 1."""
    from minbert.analysis import model_size_curve
    from minbert.bert import BertConfig
    from minbert.records import RunRecord

    checkpoint = BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)
    reference = BertConfig(hidden_size=64, num_hidden_layers=16, num_attention_heads=4, intermediate_size=128)

    def run(layers, sts, qqp):
        return RunRecord(f"layers-{layers}", {"sts_pearson": 0.0}, 1, [],
                         heldout={"sts_pearson": sts, "qqp_acc": qqp}, config={"num_layers": layers})

    runs = [run(1, 1 - 0.6, 0.50), run(2, 1 - 0.6 * 0.8, 0.80), run(None, 1 - 0.6 * 0.64, 0.95)]
    table = model_size_curve(runs, checkpoint, {"sts_pearson": 0.88}, reference=reference)
    sts = table.loc["STS pearson"]
    assert sts["gain per doubling"] == pytest.approx(0.384 * 0.2, abs=1e-4)
    column = next(c for c in table.columns if c.startswith("at BERT-base's encoder"))
    assert sts[column] == pytest.approx(1 - 0.6 * 0.8 ** 4, abs=1e-3)
    assert sts["points (heldout)"] == ("1 layers (0.0335M): 0.400; 2 layers (0.0669M): 0.520; "
                                       "4 layers (0.134M): 0.616")
    assert 0.95 < table.loc["QQP acc", column] < 1  # a line in the score itself would read 1.25 here
    assert list(table.index) == ["QQP acc", "STS pearson"]  # SST has no points: left out


def test_seeds_of_one_model_size_are_averaged_and_only_runs_on_the_same_rows_join_the_fit():
    """Two seeds per size, each pair straddling the law of the test above by +-0.05: the fit reads their
    means, so it gives that law back; a curve run on other rows (its train sizes) is left out."""
    from minbert.analysis import model_size_curve
    from minbert.bert import BertConfig
    from minbert.final import same_budget
    from minbert.records import RunRecord

    checkpoint = BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)

    def run(layers, seed, sts, rows=800):
        return RunRecord(f"layers-{layers}-seed{seed}", {"sts_pearson": 0.0}, 1, [],
                         heldout={"sts_pearson": sts}, config={"num_layers": layers},
                         train_sizes=dict.fromkeys(("sst", "qqp", "sts"), rows))

    smaller = [run(1, s, 0.4 + d) for s, d in ((1, -0.05), (2, 0.05))]
    curve = [run(None, s, 1 - 0.6 * 0.8 + d) for s, d in ((1, 0.05), (2, -0.05))] + [run(None, 1, 0.99, 5000)]
    beside = same_budget(curve, smaller[0])
    assert [r.train_sizes["sts"] for r in beside] == [800, 800]
    sts = model_size_curve([*smaller, *beside], checkpoint, {}).loc["STS pearson"]
    assert sts["points (heldout)"] == "1 layers (0.0335M): 0.400; 4 layers (0.134M): 0.520"


def test_the_error_profile_counts_what_the_mistakes_share():
    """Hand-made tables: SST's wrong answers one class off and its commonest confusion; QQP's mistakes by
    kind and the word overlap of each cell; STS's signed error by gold band."""
    from minbert.analysis import error_profile

    sst = pd.DataFrame({"gold": [2, 2, 3, 0, 4], "predicted": [3, 3, 4, 3, 4],
                        "correct": [False] * 4 + [True]})
    qqp = pd.DataFrame({"text": ["a b c || a b c", "a b || c d", "a b c d || a b c e", "x y || z w"],
                        "gold": [1, 1, 0, 0], "predicted": [1, 0, 1, 0], "confidence": [0.9, 0.8, 0.7, 0.9]})
    qqp["correct"] = qqp["gold"] == qqp["predicted"]
    sts = pd.DataFrame({"gold": [0.5, 0.2, 4.5], "predicted": [1.5, 0.2, 4.0]})
    profile = error_profile({"sst": sst, "qqp": qqp, "sts": sts})["value"]
    assert profile[("SST", "wrong answers one class off")] == "75%"  # 2->3, 2->3, 3->4; not 0->3
    assert profile[("SST", "most frequent confusion (gold -> predicted)")].endswith("(2 rows)")
    assert profile[("QQP", "false duplicates / missed duplicates")] == "1 / 1"
    assert profile[("QQP", "word overlap (Jaccard): duplicates found / missed")] == "1.00 / 0.00"
    assert profile[("QQP", "word overlap: non-duplicates kept apart / called duplicates")] == "0.00 / 0.60"
    assert profile[("STS", "mean predicted - gold, gold 0-1")] == "+0.50 (2 rows)"
    assert profile[("STS", "mean predicted - gold, gold 4-5")] == "-0.50 (1 rows)"


def test_examples_view_left_aligns_the_text_columns_only_and_wraps_the_sentences():
    from minbert.report.tables import examples_view

    table = pd.DataFrame({"id": ["e1", "e2"], "text": ["a long sentence", "b"], "gold": [2, 3],
                          "confidence": [0.61234, 0.5], "correct": [True, False]})
    page = examples_view(table).to_html()
    style = page.split("<style")[1].split("</style>")[0]

    def cells_with(rule: str) -> set[str]:
        return {cell for selectors, body in re.findall(r"([^{}]*)\{([^}]*)\}", style) if rule in body
                for cell in re.findall(r"_(row\d+_col\d+)", selectors)}

    assert cells_with("text-align: left") == {"row0_col0", "row0_col1", "row1_col0", "row1_col1"}
    assert cells_with("white-space: normal") == {"row0_col1", "row1_col1"}  # the sentences; ids stay whole
    assert "0.612<" in page and "0.61234" not in page and 'class="row_heading' not in page
