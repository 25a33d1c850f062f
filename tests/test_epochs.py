"""The typed epoch record reads and writes the results files' flat keys exactly, and the selection rule
reads it as it reads a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from minbert import tasks
from minbert.epochs import Epoch, best_epoch, selected_on

RESULTS = sorted((Path(__file__).parents[1] / "reports" / "results").glob("*.json"))


def _multitask_histories():
    for path in RESULTS:
        for run in json.loads(path.read_text())["runs"]:
            if run.get("history") and not path.name.startswith("01_"):  # Part 1 keeps its own record
                yield path.name, run["name"], run["history"]


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_every_committed_epoch_record_round_trips_and_leaves_no_key_unparsed():
    histories = list(_multitask_histories())
    assert len(histories) > 20  # the committed 02-06 and peer results
    for where, name, history in histories:
        for flat in history:
            epoch = Epoch.from_dict(flat)
            again = epoch.to_dict()
            assert again.keys() == flat.keys(), (where, name)
            assert all(_same(again[k], flat[k]) for k in flat), (where, name)
            assert set(epoch.extra) <= {"dev_seconds"}, (where, name, epoch.extra)  # the peer's dev timing


def test_keys_parse_into_their_fields():
    epoch = Epoch.from_dict({"epoch": 2, "seconds": 1.5, "sst_train_loss": 1.2, "sst_steps": 7,
                             "sts_smart_loss": 0.3, "sts_smart_control": 0.1, "sophia_rho_half": 4.0,
                             "heldout_sst_acc": 0.4, "heldout_qqp_loss": 0.6, "heldout_mean": 0.4,
                             "sts_pearson": 0.8, "sts_dev_loss": 1.1})
    assert epoch.train_loss == {"sst": 1.2} and epoch.task_steps == {"sst": 7}
    assert epoch.smart_loss == {"sts": 0.3} and epoch.smart_control == {"sts": 0.1}
    assert epoch.sophia == {"rho_half": 4.0}
    assert epoch.heldout == {"sst_acc": 0.4} and epoch.heldout_loss == {"qqp": 0.6}
    assert epoch.dev == {"sts_pearson": 0.8} and epoch.dev_loss == {"sts": 1.1}
    assert epoch.checked_loss("qqp") == 0.6  # held-out rows decide where the run has them


def test_evaluation_output_splits_into_scores_losses_and_their_mean():
    epoch = Epoch(1)
    epoch.set_heldout({"sst_acc": 0.5, "sst_dev_loss": 1.4, "qqp_acc": 0.7, "qqp_dev_loss": 0.6,
                       "sts_pearson": 0.9, "sts_dev_loss": 0.8})
    assert epoch.heldout == {"sst_acc": 0.5, "qqp_acc": 0.7, "sts_pearson": 0.9}
    assert epoch.heldout_loss == {"sst": 1.4, "qqp": 0.6, "sts": 0.8}
    assert epoch.heldout_mean == pytest.approx(0.7)
    flat = epoch.to_dict()
    assert flat["heldout_sts_loss"] == 0.8 and flat["heldout_mean"] == pytest.approx(0.7)
    without = Epoch(1)
    without.set_dev({"sst_acc": 0.2, "sst_dev_loss": 1.0})
    assert without.checked_loss("sst") == 1.0 and without.selection_score == 0.2  # dev decides alone


def test_the_kept_epoch_is_the_best_held_out_mean_the_latest_of_equals():
    history = [Epoch(1, heldout_mean=0.5, dev_mean=0.9), Epoch(2, heldout_mean=0.7),
               Epoch(3, heldout_mean=0.7, dev_mean=0.1), Epoch(4, heldout_mean=0.6)]
    assert best_epoch(history).epoch == 3  # dev (0.9 at epoch 1) is never chosen on
    assert selected_on(None, 0.3) == 0.3 and selected_on(0.2, 0.3) == 0.2
    with pytest.raises(ValueError, match="nothing to select on"):
        selected_on(None, None)


def test_a_task_added_to_the_registry_is_parsed(monkeypatch):
    toy = tasks.Task("toy", {"train": "a.csv", "dev": "b.csv", "test": "c.csv"}, ("sentence",), "label",
                     "binary", class_names=("no", "yes"))
    monkeypatch.setitem(tasks.TASKS, "toy", toy)
    epoch = Epoch.from_dict({"epoch": 1, "toy_train_loss": 0.5, "heldout_toy_acc": 0.75, "toy_acc": 0.7})
    assert epoch.train_loss == {"toy": 0.5} and epoch.heldout == {"toy_acc": 0.75}
    assert epoch.dev == {"toy_acc": 0.7} and not epoch.extra
