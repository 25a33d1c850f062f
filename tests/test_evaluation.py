"""Metrics and prediction files against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from minbert.evaluation import (
    margin_of_error,
    normalised_confusion,
    per_class_report,
    write_predictions,
)
from minbert.tasks import TASKS


def test_accuracy_and_normalised_confusion():
    gold = [0, 0, 1, 1, 1, 2]
    pred = [0, 1, 1, 1, 0, 2]
    assert TASKS["sst"].score(pred, gold) == 4 / 6
    matrix = normalised_confusion(gold, pred, labels=range(4))
    np.testing.assert_allclose(matrix[:3], [[0.5, 0.5, 0, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0]])
    assert matrix[3].tolist() == [0, 0, 0, 0]  # a class absent from gold stays empty


def test_per_class_report():
    report = per_class_report([0, 0, 1, 1], [0, 1, 1, 1], labels=[0, 1], names=["neg", "pos"])
    assert report.loc["neg", "precision"] == 1.0 and report.loc["neg", "recall"] == 0.5
    assert report.loc["pos", "precision"] == 2 / 3 and report.loc["pos", "support"] == 2


def test_predictions_are_tab_separated_like_the_inputs(tmp_path):
    path = write_predictions(tmp_path / "out" / "sst-dev.csv", ["a1", "b2"], [3, 0], "sentiment")
    assert path.read_text() == "id\tsentiment\na1\t3\nb2\t0\n"
    assert [p.name for p in path.parent.iterdir()] == ["sst-dev.csv"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = write_predictions(tmp_path / "p.csv", ["a"], [1], "sentiment")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_margin_of_error_for_an_accuracy_is_the_normal_interval():
    assert margin_of_error("sst_acc", 0.5, 100) == pytest.approx(1.96 * 0.05)
    assert margin_of_error("qqp_acc", 0.8, 1000) == pytest.approx(1.96 * (0.8 * 0.2 / 1000) ** 0.5)


def test_margin_of_error_for_a_correlation_matches_scipys_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = x + rng.normal(scale=0.6, size=400)
    result = stats.pearsonr(x, y)
    low, high = result.confidence_interval(0.95)
    assert margin_of_error("sts_pearson", result.statistic, 400) == pytest.approx((high - low) / 2, rel=1e-3)


def test_margin_of_error_refuses_unknown_metrics_and_tiny_sets():
    with pytest.raises(ValueError, match="sts_spearman"):
        margin_of_error("sts_spearman", 0.8, 100)
    with pytest.raises(ValueError, match="at least 4"):
        margin_of_error("sst_acc", 0.5, 3)

