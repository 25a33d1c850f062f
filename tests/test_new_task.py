"""A new task is its registry entry alone: added to `tasks.TASKS` and `tasks.MULTITASK`, it is validated
in the settings, loaded, given a head and trained beside SST, QQP and STS, with no other edit."""

from __future__ import annotations

import pandas as pd
import pytest

from minbert import tasks
from minbert.analysis import error_profile
from minbert.bert import BertModel, load_tokenizer
from minbert.config import arm_settings
from minbert.experiments import load_multitask, run_arm
from minbert.params import load_config
from minbert.pretrained_view import PretrainedView
from minbert.runtime import CPU

# A binary sentence task on the CFIMDB files (the registry's own cfimdb entry is a two-class multiclass
# task): a kind of head no multitask task had, one logit on the sentence vector.
TOY = tasks.Task("toy", {"train": "ids-cfimdb-train.csv", "dev": "ids-cfimdb-dev.csv",
                         "test": "ids-cfimdb-test-student.csv"},
                 ("sentence",), "sentiment", "binary", class_names=("negative", "positive"), heldout_rows=16)


@pytest.fixture
def toy_task(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, "toy", TOY)
    monkeypatch.setattr(tasks, "MULTITASK", (*tasks.MULTITASK, "toy"))


@pytest.mark.parametrize("arm", ["baseline", "combined"])
def test_a_fourth_task_trains_beside_the_three_by_its_entry_alone(toy_task, data_dir, tmp_path, monkeypatch,
                                                                   arm):
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path))
    sizes = {"sst": 16, "qqp": 16, "sts": 16, "toy": 16}
    cfg = load_config("02_sbert_baseline", "smoke", {"arms": [arm], "num_layers": 1, "seeds": 1,
                                                      "train_limits": sizes, "dev_limits": sizes,
                                                      "heldout_sizes": sizes})
    assert cfg.dropout == {"sst": 0.1, "qqp": 0.1, "sts": 0.1, "toy": 0.1}  # per-task defaults grow with it
    settings = arm_settings(cfg, arm)
    assert settings.task_order[-1] == "toy"  # the arm's three-task order holds; the new task follows
    data = load_multitask(cfg, load_tokenizer(cfg.checkpoint))
    assert set(data.train) == {"sst", "qqp", "sts", "toy"} and len(data.train["toy"]) == 16
    run = run_arm(cfg, arm, data, CPU, notebook="toy-test")
    assert run.model.toy_head[-1].out_features == 1  # one logit: the binary kind's head
    record = run.record
    assert set(record.dev) == {"sst_acc", "qqp_acc", "sts_pearson", "toy_acc"}
    assert set(record.heldout) == set(record.dev) and 0.0 <= record.dev["toy_acc"] <= 1.0
    epoch = record.history[0]
    assert epoch["toy_train_loss"] > 0 and epoch["toy_steps"] > 0
    assert set(run.trained.dev_predictions["toy"]) <= {0, 1} and len(run.trained.dev_predictions["toy"]) == 16
    if arm == "combined":  # every step takes a batch of each of the four tasks
        assert epoch["toy_steps"] == epoch["sst_steps"] == epoch["steps"]
    else:  # the final model's pretrained view fits it by its kind: a one-logit probe on the sentence vector
        view = PretrainedView.fit(BertModel.from_pretrained(cfg.checkpoint), {"toy": data.train["toy"]})
        assert view.heads["toy"].in_features == 384 and view.heads["toy"].out_features == 1
        assert view.all_features("toy", data.dev["toy"], 8).shape == (16, 384)


def test_the_error_profile_reads_a_new_task_by_its_kind(toy_task):
    table = pd.DataFrame({"gold": [1, 1, 0, 0], "predicted": [1, 0, 1, 0],
                          "correct": [True, False, False, True], "confidence": [0.9, 0.8, 0.7, 0.6],
                          "text": ["a", "b", "c", "d"]})
    profile = error_profile({"toy": table})["value"]
    assert profile[("TOY", "false positives / missed positives")] == "1 / 1"
    assert ("TOY", "word overlap (Jaccard): positives found / missed") not in profile  # one sentence: no pair


def test_a_task_outside_the_registry_is_refused_by_name():
    with pytest.raises(Exception, match="unknown task 'toy'"):
        load_config("02_sbert_baseline", "smoke", {"train_limits": {"toy": 16}})
