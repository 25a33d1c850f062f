"""The final recipe's levers (layer-wise learning rates, head learning rate, proportional sampling,
pooling, early stopping), the ensemble, and the peer (transformers' own fine-tune)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minbert import tasks as registry
from minbert.bert import BertModel
from minbert.config import PROFILES, ConfigError, MultitaskSettings
from minbert.ensemble import Ensemble, average_outputs, choose_members
from minbert.models import MultitaskBert, pool
from minbert.params import load_config
from minbert.runtime import CPU
from minbert.schedules import annealed_exponent, epoch_plan
from minbert.training import make_optimizers, train_multitask
from tests.test_multitask import make_model, toy_tasks


@pytest.fixture(scope="module")
def tasks():
    return toy_tasks(48, 0), toy_tasks(24, 1)


# ----------------------------------------------------------------------------- proportional sampling

def test_proportional_shares_follow_size_to_the_annealed_power_and_are_spread_evenly():
    batches = {"sst": 100, "qqp": 400, "sts": 25}
    assert [annealed_exponent(e, 5) for e in (1, 3, 5)] == pytest.approx([1.0, 0.6, 0.2])
    assert annealed_exponent(1, 1) == 1.0
    for exponent in (1.0, 0.5, 0.2):
        plan = epoch_plan("proportional", batches, ["qqp", "sts", "sst"], exponent=exponent)
        assert len(plan) == 525  # the same budget as every schedule
        counts = {t: plan.count((t,)) for t in batches}
        weights = {t: n ** exponent for t, n in batches.items()}
        for task in batches:  # by hand: 525 * n^a / sum(n^a), to within the rounding of one step
            assert abs(counts[task] - 525 * weights[task] / sum(weights.values())) < 1
        # spread evenly: STS's steps never more than one even gap (plus one step) apart
        where = [k for k, step in enumerate(plan) if step == ("sts",)]
        assert max(np.diff(where)) <= math.ceil(525 / counts["sts"]) + 1
        assert where[0] < 525 / counts["sts"]  # ...and it starts in the first gap, not at the end
    at_one = epoch_plan("proportional", batches, ["qqp", "sts", "sst"], exponent=1.0)
    assert {t: at_one.count((t,)) for t in batches} == batches  # exponent 1: each task's own batches


def test_the_trainer_anneals_the_proportional_schedule_over_its_epochs(tiny_checkpoint):
    small = {"sst": toy_tasks(64, 0)["sst"], "qqp": toy_tasks(16, 1)["qqp"], "sts": toy_tasks(16, 2)["sts"]}
    dev = toy_tasks(8, 3)
    run = MultitaskSettings(schedule="proportional", epochs=2, batch_size=8, lr=1e-3)
    history = train_multitask(make_model(tiny_checkpoint), small, dev, run, runtime=CPU).history
    first, last = (h.task_steps for h in history)
    assert first == {"sst": 8, "qqp": 2, "sts": 2}  # exponent 1: in proportion to the 8/2/2 batches
    assert last["sst"] < 8 and last["qqp"] > 2  # exponent 0.2: nearer equal shares
    assert sum(first.values()) == sum(last.values()) == 12


# ----------------------------------------------------------------------------- learning rates

def test_layer_wise_decay_and_head_rate_give_each_weight_its_hand_computed_rate(tiny_checkpoint):
    model = make_model(tiny_checkpoint, head_hidden=8)  # 3 layers
    names = {id(p): n for n, p in model.named_parameters()}
    run = MultitaskSettings(lr=1e-3, layer_lr_decay=0.5, head_lr=7e-3)
    groups = make_optimizers(model, run)["all"].param_groups
    rate = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert len(rate) == len(names)  # every weight in exactly one group
    expected = {"bert.embeddings.word_embeddings.weight": 1e-3 * 0.5 ** 3,
                "bert.encoder.layer.0.attention.qkv.weight": 1e-3 * 0.5 ** 2,
                "bert.encoder.layer.2.output.dense.weight": 1e-3,
                "bert.pooler.dense.weight": 1e-3, "sst_head.1.weight": 7e-3, "qqp_head.4.bias": 7e-3}
    for name, lr in expected.items():
        matches = [n for n in rate if n == name] or [n for n in rate if n.startswith(name.rsplit(".", 2)[0])]
        assert matches, name
        assert rate[matches[0]] == pytest.approx(lr), name
    assert groups[0]["lr"] == 1e-3  # the top layer's group first: the rate an epoch records
    plain = make_optimizers(model, MultitaskSettings(lr=1e-3))["all"].param_groups
    assert [g["lr"] for g in plain] == [1e-3]


# ----------------------------------------------------------------------------- pooling

def test_cls_and_mean_pooling_sets_both_vectors_side_by_side(tiny_checkpoint):
    bert = BertModel.from_pretrained(tiny_checkpoint)
    ids = torch.tensor([[2, 40, 41, 3, 0], [2, 50, 3, 0, 0]])
    mask = (ids != 0).long()
    outputs = bert(ids, mask)
    both = pool(outputs, mask, "cls+mean")
    hidden = outputs["last_hidden_state"]
    by_hand = torch.stack([hidden[0, :4].mean(0), hidden[1, :3].mean(0)])  # the real tokens only
    torch.testing.assert_close(both[:, :64], outputs["pooler_output"])
    torch.testing.assert_close(both[:, 64:], by_hand)
    model = MultitaskBert(bert, pooling="cls+mean", mode="cross-encoder")
    assert model.sst_head[-1].in_features == 128
    assert model.task_outputs("sst", {"a": {"input_ids": ids, "attention_mask": mask}}).shape == (2, 5)


# ----------------------------------------------------------------------------- early stopping

def test_patience_stops_a_run_whose_held_out_score_stopped_rising(tiny_checkpoint, tasks, monkeypatch):
    from minbert import training

    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])  # best at epoch 2, then two epochs below it

    heldout = toy_tasks(8, 5)

    def scripted(model, data, *args, **kwargs):  # the held-out rows score as scripted; dev 0.1
        score = next(scores) if data is heldout else 0.1
        return {"sst_acc": score, "qqp_acc": score, "sts_pearson": score}

    monkeypatch.setattr(training, "dev_metrics", scripted)
    train, dev = tasks
    run = MultitaskSettings(epochs=6, batch_size=16, lr=1e-3, patience=2)
    history = train_multitask(make_model(tiny_checkpoint), train, dev, run, heldout=heldout).history
    assert [h.epoch for h in history] == [1, 2, 3, 4]
    assert [h.heldout_mean for h in history] == pytest.approx([0.5, 0.7, 0.6, 0.65])
    assert [h.epoch for h in history if h.dev] == [2]


# ----------------------------------------------------------------------------- the ensemble

def test_averaging_happens_in_probability_space_and_returns_to_the_output_space():
    sst = [torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0, 0.0, 3.0]])]
    averaged = average_outputs("sst", sst)
    expected = (sst[0].softmax(-1) + sst[1].softmax(-1)) / 2
    torch.testing.assert_close(averaged.softmax(-1), expected)
    qqp = [torch.tensor([2.0, -1.0]), torch.tensor([-4.0, 1.0])]
    torch.testing.assert_close(torch.sigmoid(average_outputs("qqp", qqp)),
                               (torch.sigmoid(qqp[0]) + torch.sigmoid(qqp[1])) / 2)
    torch.testing.assert_close(average_outputs("sts", [torch.tensor([1.0]), torch.tensor([4.0])]),
                               torch.tensor([2.5]))


def test_greedy_selection_adds_members_only_while_the_held_out_mean_rises():
    gold = {"qqp": [1, 1, 1, 0, 0, 0], "sts": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}
    sts = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])

    def member(qqp_logits, sts_noise):
        return {"qqp": torch.tensor(qqp_logits), "sts": sts + torch.tensor(sts_noise)}

    # member 0: 5/6 right; member 1: 4/6, confident where 0 is wrong, unsure where it is; 2: all wrong
    members = [member([3.0, 3.0, -0.5, -3.0, -3.0, -3.0], [0.4, -0.4, 0.4, -0.4, 0.4, -0.4]),
               member([3.0, -0.2, 3.0, 0.5, -3.0, -3.0], [-0.4, 0.4, -0.4, 0.4, -0.4, 0.4]),
               member([-3.0, -3.0, -3.0, 3.0, 3.0, 3.0], [3.0, -3.0, 3.0, -3.0, 3.0, -3.0])]
    chosen, trace = choose_members(members, gold)
    assert chosen == [0, 1]  # 1 fixes 0's mistakes and cancels its STS noise; 2 only hurts
    assert trace[1] > trace[0]
    assert trace[1] == pytest.approx((1.0 + 1.0) / 2)  # averaged: every QQP row right, STS exact
    assert choose_members(members[2:], gold)[0] == [0]  # one member: itself


def test_an_ensemble_predicts_the_average_of_its_members(tiny_checkpoint, tasks):
    _, dev = tasks
    members = [make_model(tiny_checkpoint, mode="cross-encoder") for _ in range(2)]
    torch.manual_seed(1)
    members[1].sst_head.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    ensemble = Ensemble(members).eval()
    batch = {"a": {"input_ids": torch.tensor([[2, 30, 31, 3]]), "attention_mask": torch.ones(1, 4).long()}}
    with torch.no_grad():
        outs = [m.eval().task_outputs("sst", batch) for m in members]
        torch.testing.assert_close(ensemble.task_outputs("sst", batch).softmax(-1),
                                   (outs[0].softmax(-1) + outs[1].softmax(-1)) / 2)
    with pytest.raises(ValueError, match="modes"):
        Ensemble([members[0], make_model(tiny_checkpoint)])


# ----------------------------------------------------------------------------- the config

def test_levers_are_checked_against_the_recipe():
    cfg = load_config("06_final_bert", "smoke", {"levers": ["CLS pooling", "with R-Drop"]})
    assert cfg.levers == ["CLS pooling", "with R-Drop"]
    with pytest.raises(ConfigError, match="unknown levers"):
        load_config("06_final_bert", "smoke", {"levers": ["more cowbell"]})


@pytest.mark.parametrize("profile", PROFILES)
def test_the_peer_trains_on_the_rows_notebook_06_uses(profile):
    """Same train subsample, held-out carve, dev rows, sequence length and seed: the comparison is fair."""
    peer, final = load_config("peer_transformers", profile), load_config("06_final_bert", profile)
    for knob in ("train_limits", "dev_limits", "heldout_sizes", "max_length", "seed", "checkpoint"):
        assert getattr(peer, knob) == getattr(final, knob), knob


# ----------------------------------------------------------------------------- the peer

def test_the_peer_fine_tunes_with_transformers_and_keeps_its_best_held_out_epoch(data_dir, tmp_path,
                                                                                  monkeypatch):
    """On real rows (smoke sizes): every task trains, the kept epoch is the best held-out one, the dev
    score is the task's metric of the written predictions, and `versus_peer` reads them back by id
    (the peer against itself differs by exactly 0)."""
    import pandas as pd

    from minbert import peer
    from minbert.data import load_tasks
    from minbert.peer import record_peer, versus_peer
    from minbert.records import load_results, published_predictions_dir

    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    record_peer("smoke", {"tasks": ["sst", "sts"], "epochs": 2})
    results = load_results("peer_transformers", "smoke")
    assert [r.name for r in results.runs] == ["peer-sst", "peer-sts"]
    # a lease that ran out: the peer resumed takes its finished runs, the same records and predictions
    folder = published_predictions_dir("peer_transformers", "smoke")
    written = {p.name: p.read_bytes() for p in folder.iterdir()}
    trained = []
    monkeypatch.setattr(peer, "fine_tune", lambda *a, **k: trained.append(a[0]))
    record_peer("smoke", {"tasks": ["sst", "sts"], "epochs": 2, "resume": True})
    assert trained == []
    assert [r.to_dict() for r in load_results("peer_transformers", "smoke").runs] == \
        [r.to_dict() for r in results.runs]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == written
    monkeypatch.undo()
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path))
    cfg = load_config("peer_transformers", "smoke")
    from minbert.bert import load_tokenizer

    data = load_tasks(load_tokenizer(None), cfg.max_length, names=("sst", "sts"),
                      train_limits=cfg.train_limits, dev_limits=cfg.dev_limits, seed=cfg.seed,
                      heldout_sizes=cfg.heldout_sizes)
    for run in results.runs:
        task = registry.get(run.name.removeprefix("peer-"))
        held = [h[f"heldout_{task.metric}"] for h in run.history]
        assert run.best_epoch == max(e for e, s in enumerate(held, 1) if s == max(held))
        assert run.heldout[task.metric] == max(held)
        written = pd.read_csv(published_predictions_dir("peer_transformers", "smoke") / f"{run.name}-dev.csv",
                              sep="\t", dtype={"id": str})
        split = data.splits["dev"][task.name]
        assert list(written["id"]) == [e.id for e in split.examples]
        gold = [e.label for e in split.examples]
        rescored = task.score(written.iloc[:, 1].to_numpy(), gold)
        assert rescored == pytest.approx(run.dev[task.metric], abs=1e-3)
        (same,) = versus_peer({task.name: written.iloc[:, 1].to_numpy()}, {task.name: list(written["id"])},
                              {task.name: gold}, "smoke")
        assert same.estimate == 0.0 and same.low == same.high == 0.0
    assert versus_peer({"qqp": [0, 1]}, {"qqp": ["a", "b"]}, {"qqp": [0, 1]}, "smoke") == []  # not run


def test_averaging_the_members_saved_outputs_equals_the_ensembles_own_prediction(tiny_checkpoint, tasks):
    """The final model averages the dev outputs its members computed at the end of their runs instead of
    a second pass over dev: the same outputs as predicting with the `Ensemble`."""
    from minbert.evaluation import predict

    _, dev = tasks
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), mode="bi-encoder").eval())
    ensemble = Ensemble(members)
    for task, split in dev.items():
        saved = [predict(m, split, 8, CPU) for m in members]
        torch.testing.assert_close(average_outputs(task, saved), predict(ensemble, split, 8, CPU),
                                   atol=1e-5, rtol=1e-5)


def test_snapshots_hold_each_epochs_weights_as_a_run_stopped_there_has_them(tiny_checkpoint, tasks):
    """A checkpoint ensemble's earlier members are the `snapshots` of a run: epoch 1's equal the weights
    of the same run stopped after epoch 1 (training is deterministic on the CPU), and the last epoch's
    equal the trained model's when that epoch is the one kept."""
    train, dev = tasks
    run = MultitaskSettings(epochs=2, batch_size=16, lr=1e-3)
    model = make_model(tiny_checkpoint)
    trained = train_multitask(model, train, dev, run, keep_snapshots=True)
    history, snapshots = trained.history, trained.snapshots
    assert sorted(snapshots) == [1, 2]
    stopped = make_model(tiny_checkpoint)
    train_multitask(stopped, train, dev, run, stop_after_epoch=1)
    for name, weight in stopped.state_dict().items():
        torch.testing.assert_close(snapshots[1][name], weight, msg=name)
    assert any(not torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])  # epoch 2 trained on
    kept = max(history, key=lambda h: (h.dev_mean, h.epoch)).epoch
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(snapshots[kept][name], weight, msg=name)
        assert snapshots[kept][name].device.type == "cpu" and snapshots[kept][name] is not weight


def test_a_checkpoint_ensemble_with_no_earlier_epoch_is_skipped_and_says_why():
    """The checkpoint ensemble adds each run's epochs before its kept one; where no run has one (kept its
    first epoch, or resumed: the earlier weights are gone) it would be the kept epochs again, so it is
    skipped with the reason; one run with an earlier epoch is enough to score it."""
    from minbert.final import no_earlier_epochs
    from minbert.records import RunRecord

    def run(name: str, best: int) -> RunRecord:
        return RunRecord(name=name, dev={}, best_epoch=best, history=[{"epoch": e} for e in range(1, 4)])

    weights = {"w": torch.zeros(1)}
    first, resumed = run("a", 1), run("b", 3)
    reason = no_earlier_epochs([first, resumed], [{1: weights}, {3: weights}], ensemble_epochs=2)
    assert reason is not None and reason.startswith("No checkpoint ensemble")
    assert "a kept epoch 1, its first" in reason and "b kept epoch 3, and epoch 2 trained" in reason
    three = no_earlier_epochs([resumed], [{}], ensemble_epochs=3)
    assert three is not None and "epochs 1, 2 trained before a resume" in three
    trained = [{1: weights}, {2: weights, 3: weights}]
    assert no_earlier_epochs([first, resumed], trained, ensemble_epochs=2) is None
    # only the epochs the ensemble would take count: epoch 1 is outside a two-epoch window ending at 3
    assert no_earlier_epochs([resumed], [{1: weights}], ensemble_epochs=2) is not None
