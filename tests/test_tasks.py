"""The task registry: each entry's loss, metric, labels and Hessian sampling against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr

from minbert import tasks
from minbert.tasks import TASKS, Task


def test_the_registry_holds_every_task_fact():
    sst, qqp, sts = (TASKS[name] for name in tasks.MULTITASK)
    assert (sst.kind, qqp.kind, sts.kind) == ("multiclass", "binary", "regression")
    assert sst.num_classes == 5 and sst.class_names[0] == "negative" and qqp.num_classes == 2
    assert tasks.metrics() == {"sst": "sst_acc", "qqp": "qqp_acc", "sts": "sts_pearson"}
    assert [t.label_column for t in (sst, qqp, sts)] == ["sentiment", "is_duplicate", "similarity"]
    assert sst.output_shape(4) == (4, 5) and qqp.output_shape(4) == (4,) and sts.output_shape(4) == (4,)
    assert not sst.is_pair and qqp.is_pair and sts.is_pair
    assert qqp.fallback_files == {"train": "quora-train-subset.csv"}
    with pytest.raises(ValueError, match="unknown task 'mnli'"):
        tasks.get("mnli")
    with pytest.raises(ValueError, match="class names are for classification"):
        Task("x", {}, ("a",), "y", "regression", class_names=("p", "q"))


def test_losses_match_torch():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    weights = torch.rand(5) + 0.5
    expected = F.cross_entropy(logits, labels, weights)
    torch.testing.assert_close(TASKS["sst"].loss(logits, labels, weights), expected)
    logit, dup = torch.randn(6), torch.tensor([0, 1, 1, 0, 1, 0])
    pair_weights = torch.tensor([0.7, 1.6])
    expected = F.binary_cross_entropy_with_logits(logit, dup.float(), weight=pair_weights[dup])
    torch.testing.assert_close(TASKS["qqp"].loss(logit, dup, pair_weights), expected)
    scores, gold = torch.rand(6) * 5, torch.rand(6) * 5
    torch.testing.assert_close(TASKS["sts"].loss(scores, gold), ((scores - gold) ** 2).mean())


def test_metrics_and_predicted_labels():
    rng = np.random.default_rng(0)
    predicted, gold = rng.normal(size=50), rng.normal(size=50)
    assert TASKS["sts"].score(predicted, gold) == pytest.approx(pearsonr(predicted, gold).statistic)
    assert TASKS["qqp"].predicted_labels(torch.tensor([-0.1, 0.0, 2.0])) == [0, 0, 1]
    assert TASKS["sst"].predicted_labels(torch.tensor([[0.0, 3.0, 1.0, 0.0, 0.0]])) == [1]
    assert TASKS["sts"].predicted_labels(torch.tensor([1.234567])) == [1.2346]
    assert TASKS["qqp"].score([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5


def test_labels_are_parsed_by_kind():
    assert TASKS["sst"].parse_label("4") == (4, None)
    assert TASKS["sst"].parse_label("5")[1] == "sentiment '5' out of range (classes 0..4)"
    assert TASKS["qqp"].parse_label("1.0") == (1, None)
    assert TASKS["sts"].parse_label(" 3.8 ") == (3.8, None)
    assert TASKS["sts"].parse_label("5.5")[1] == "similarity '5.5' out of range [0.0, 5.0]"
    assert TASKS["sts"].parse_label("nan")[1] == "non-finite similarity 'nan'"
    assert TASKS["qqp"].parse_label("")[1] == "missing label (is_duplicate)"


def test_explanations_of_one_output():
    sst = TASKS["sst"].explain(torch.tensor([0.0, 0.0, 0.0, 0.0, 10.0]))
    assert sst["label"] == "positive" and sum(sst["probabilities"].values()) == pytest.approx(1, abs=0.01)
    assert TASKS["qqp"].explain(torch.tensor(0.0)) == {"duplicate": False, "probability": 0.5}
    assert TASKS["sts"].explain(torch.tensor(3.14159)) == {"similarity": 3.14}
