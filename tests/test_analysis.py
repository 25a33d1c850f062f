"""Error-analysis tables against hand-made outputs; the predictor on raw text."""

from __future__ import annotations

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
