"""The multitask trainer on small synthetic tasks: schedules, resume, freezing, NaN."""

from __future__ import annotations

import math

import pytest
import torch

from minbert.bert import BertModel
from minbert.config import MultitaskSettings
from minbert.data import TaskTensors
from minbert.evaluation import dev_metrics
from minbert.models import MultitaskBert
from minbert.runtime import CPU
from minbert.tasks import mean_score as tasks_mean
from minbert.training import TrainingError, class_weight_tensor, train_multitask


def toy_tasks(n: int, seed: int) -> dict[str, TaskTensors]:
    """SST: class given by a marker token; QQP: duplicate when both sentences are equal;
    STS: score from how many tokens the two sentences share."""
    g = torch.Generator().manual_seed(seed)

    def sentence(marker=None):
        body = torch.randint(20, 1000, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g).tolist()
        return [2] + ([marker] if marker is not None else []) + body + [3]

    sst_labels = torch.randint(0, 5, (n,), generator=g).tolist()
    sst = TaskTensors("sst", [f"s{i}" for i in range(n)], [sentence(10 + y) for y in sst_labels], None,
                      sst_labels)
    a = [sentence() for _ in range(n)]
    dup = torch.randint(0, 2, (n,), generator=g).tolist()
    qqp = TaskTensors("qqp", [f"q{i}" for i in range(n)], a,
                      [list(x) if d else sentence() for x, d in zip(a, dup, strict=True)], dup)
    b = [x[: 1 + len(x) // 2] + sentence()[1:] for x in a]
    scores = [5.0 * len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(a, b, strict=True)]
    sts = TaskTensors("sts", [f"t{i}" for i in range(n)], a, b, scores)
    return {"sst": sst, "qqp": qqp, "sts": sts}


@pytest.fixture(scope="module")
def tasks():
    return toy_tasks(48, 0), toy_tasks(24, 1)


def make_model(tiny_checkpoint, **kwargs) -> MultitaskBert:
    torch.manual_seed(0)
    return MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), **kwargs)


@pytest.mark.parametrize("schedule", ["sequential", "round-robin", "combined", "pcgrad"])
def test_every_schedule_trains_and_reports_all_metrics(tiny_checkpoint, tasks, schedule):
    """...on the same budget: 48 rows per task in batches of 8 are 18 steps of 8 examples for every
    schedule (a combined step takes 3 + 3 + 2 rows of its three tasks); the kept epoch's dev
    predictions give back its dev metrics."""
    from minbert import tasks as registry

    train, dev = tasks
    model = make_model(tiny_checkpoint)
    trained = train_multitask(model, train, dev, MultitaskSettings(schedule=schedule, epochs=1, lr=1e-3,
                                                            batch_size=8), runtime=CPU)
    history, predicted = trained.history, trained.dev_predictions
    record = history[0]
    assert set(record.dev) == {"sst_acc", "qqp_acc", "sts_pearson"} and set(record.train_loss) == set(train)
    values = [*record.dev.values(), *record.train_loss.values(), *record.dev_loss.values(), record.dev_mean]
    assert all(math.isfinite(v) for v in values)
    assert 0 <= record.dev["sst_acc"] <= 1 and -1 <= record.dev["sts_pearson"] <= 1
    assert (record.steps, record.examples) == (18, 144)
    for name, split in dev.items():
        task = registry.get(name)
        assert task.score(predicted[name], split.labels) == pytest.approx(record.dev[task.metric], abs=1e-6)


def test_training_improves_the_dev_losses(tiny_checkpoint, tasks):
    train, dev = tasks
    model = make_model(tiny_checkpoint)
    before = dev_metrics(model, dev, 32, CPU)
    train_multitask(model, train, dev, MultitaskSettings(epochs=4, lr=1e-3, batch_size=8), runtime=CPU)
    after = dev_metrics(model, dev, 32, CPU)
    assert after["sts_dev_loss"] < before["sts_dev_loss"]
    assert after["sst_dev_loss"] < before["sst_dev_loss"]


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tiny_checkpoint, tasks, tmp_path):
    train, dev = tasks
    run = MultitaskSettings(schedule="round-robin", epochs=3, lr=1e-3, batch_size=8)
    whole = make_model(tiny_checkpoint)
    expected = train_multitask(whole, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "a").history

    first = make_model(tiny_checkpoint)
    train_multitask(first, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b", stop_after_epoch=1)
    torch.manual_seed(12345)  # a new process: another random state, which resume must restore
    resumed = make_model(tiny_checkpoint)
    got = train_multitask(resumed, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b",
                          resume=True).history
    drop = ("seconds",)
    assert [{k: v for k, v in h.to_dict().items() if k not in drop} for h in got] == [
        {k: v for k, v in h.to_dict().items() if k not in drop} for h in expected]
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_without_epoch_checkpoints_only_the_kept_weights_are_written(tiny_checkpoint, tasks, tmp_path):
    """What a GPU lease writes: no last.pt per epoch (it could not be resumed on the next machine), the
    same run and the same kept weights."""
    train, dev = tasks
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8)
    with_them, without = make_model(tiny_checkpoint), make_model(tiny_checkpoint)
    expected = train_multitask(with_them, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "a").history
    train_multitask(without, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b", stop_after_epoch=1,
                    epoch_checkpoints=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["best.pt"]  # killed after epoch 1
    without = make_model(tiny_checkpoint)
    got = train_multitask(without, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b",
                          epoch_checkpoints=False).history
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["finished"] is True  # history only
    drop = ("seconds",)
    assert [{k: v for k, v in h.to_dict().items() if k not in drop} for h in got] == [
        {k: v for k, v in h.to_dict().items() if k not in drop} for h in expected]
    for a, b in zip(with_them.state_dict().values(), without.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_finished_run_keeps_a_small_last_checkpoint_and_resuming_it_trains_nothing(tiny_checkpoint, tasks,
                                                                                    tmp_path):
    train, dev = tasks
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8)
    first = make_model(tiny_checkpoint)
    expected = train_multitask(first, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path).history
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["finished"] is True and "model" not in state and "optimizers" not in state
    assert (tmp_path / "last.pt").stat().st_size < (tmp_path / "best.pt").stat().st_size / 100
    again = make_model(tiny_checkpoint)
    steps = []
    got = train_multitask(again, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path, resume=True,
                          on_epoch=steps.append).history
    assert steps == [] and got == expected  # no epoch ran; the kept weights and their dev scores return
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_freeze_last_epoch_and_separate_qqp_phase(tiny_checkpoint, tasks):
    train, dev = tasks
    model = make_model(tiny_checkpoint)
    run = MultitaskSettings(epochs=3, lr=1e-3, batch_size=8, qqp_only_epochs=1, freeze_epochs=1)
    snapshots = []
    history = train_multitask(model, train, dev, run, runtime=CPU,
                              on_epoch=lambda r: snapshots.append(
                                  {k: v.clone() for k, v in model.bert.state_dict().items()})).history
    assert [h.qqp_only for h in history] == [True, False, False]
    assert math.isnan(history[0].train_loss["sst"]) and math.isfinite(history[1].train_loss["sst"])
    assert [h.bert_frozen for h in history] == [False, False, True]
    for name, value in snapshots[2].items():
        assert torch.equal(value, snapshots[1][name]), f"{name} changed while frozen"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_checkpoint, tasks, tmp_path):
    train, dev = tasks
    model = make_model(tiny_checkpoint)
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8)
    train_multitask(model, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path, stop_after_epoch=1)
    good = torch.load(tmp_path / "last.pt", weights_only=True)
    with torch.no_grad():
        model.sst_head[1].bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at n, epoch 1, step \d+, task sst"):
        train_multitask(model, train, dev, run, name="n", runtime=CPU)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == good["epoch"] == 1


def test_class_weights_and_bad_runs():
    torch.testing.assert_close(class_weight_tensor([0, 0, 0, 1], 2), torch.tensor([4 / 6, 2.0]))
    with pytest.raises(ValueError, match="schedule"):
        MultitaskSettings(schedule="shuffle")
    with pytest.raises(ValueError, match="must name each task at most once"):
        MultitaskSettings(task_order=["sst", "qqp", "sst"])
    # a task the order does not name follows in the registry's order (a task added later joins the arms)
    assert MultitaskSettings(task_order=["qqp", "sst"]).task_order == ["qqp", "sst", "sts"]


@pytest.mark.filterwarnings("ignore:skipped malformed row")
def test_resume_on_the_smoke_profile_with_real_data(data_dir, tmp_path):
    """The smoke profile's data and the embedded MiniLM: killed after one epoch and resumed,
    the run ends with the same metrics as one that ran straight through."""
    from minbert.bert import load_tokenizer
    from minbert.config import arm_settings
    from minbert.experiments import load_multitask
    from minbert.params import load_config

    cfg = load_config("02_sbert_baseline", "smoke")
    data = load_multitask(cfg, load_tokenizer())
    run = arm_settings(cfg, "baseline")

    def fresh():
        torch.manual_seed(cfg.seed)
        return MultitaskBert(BertModel.from_pretrained(), pooling=cfg.pooling)

    straight = train_multitask(fresh(), data.train, data.dev, run, runtime=CPU,
                               checkpoint_dir=tmp_path / "straight").history
    train_multitask(fresh(), data.train, data.dev, run, runtime=CPU, checkpoint_dir=tmp_path / "killed",
                    stop_after_epoch=1)
    resumed = train_multitask(fresh(), data.train, data.dev, run, runtime=CPU,
                              checkpoint_dir=tmp_path / "killed", resume=True).history
    assert len(straight) == 2
    assert [(h.dev, h.train_loss) for h in resumed] == [(h.dev, h.train_loss) for h in straight]


def test_sophia_trains_with_hessian_refreshes_and_resumes(tiny_checkpoint, tasks, tmp_path):
    train, dev = tasks
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8, optimizer="sophia", hessian_interval=2,
                       weight_decay=0.1)
    model = make_model(tiny_checkpoint)
    before = dev_metrics(model, dev, 32, CPU)
    # stopped as a kill after the last epoch would: last.pt keeps the optimizer state (a finished
    # run's does not)
    expected = train_multitask(model, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "a",
                               stop_after_epoch=2).history
    assert expected[-1].dev_loss["sts"] < before["sts_dev_loss"]
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["optimizers"]["all"]["state"]
    hessians = [s["hessian"] for s in state.values()]
    assert hessians and all(torch.isfinite(h).all() for h in hessians)
    assert sum(int((h > 0).sum()) for h in hessians) > 0  # the refresh ran and left curvature

    first = make_model(tiny_checkpoint)
    train_multitask(first, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b", stop_after_epoch=1)
    resumed = make_model(tiny_checkpoint)
    history = train_multitask(resumed, train, dev, run, runtime=CPU, checkpoint_dir=tmp_path / "b",
                              resume=True).history
    assert [h.dev_mean for h in history] == [h.dev_mean for h in expected]


def test_one_optimizer_per_task_uses_its_own_settings(tiny_checkpoint, tasks):
    train, dev = tasks
    run = MultitaskSettings(epochs=1, lr=1e-3, batch_size=8, optimizer="sophia", task_optimizers=True,
                       task_settings={"sst": {"lr": 0.0}, "qqp": {"lr": 0.0}, "sts": {"lr": 0.0}})
    model = make_model(tiny_checkpoint)
    bert_before = {k: v.clone() for k, v in model.bert.state_dict().items()}
    train_multitask(model, train, dev, run, runtime=CPU)
    # lr 0 for every task: nothing moves (weight decay is scaled by lr)
    assert all(torch.equal(bert_before[k], v) for k, v in model.bert.state_dict().items())
    with pytest.raises(ValueError, match="one task per step"):
        MultitaskSettings(schedule="combined", task_optimizers=True)
    with pytest.raises(ValueError, match="task_settings"):
        MultitaskSettings(task_optimizers=True, task_settings={"sst": {"beta": 0.5}})
    with pytest.raises(ValueError, match="optimizer"):
        MultitaskSettings(optimizer="sgd")


def test_cross_encoder_trains_with_smart_and_sophia(tiny_checkpoint, tasks):
    def joint(data: TaskTensors) -> TaskTensors:
        if data.b is None:
            return data
        pairs = [x + y[1:] for x, y in zip(data.a, data.b, strict=True)]  # [CLS] a [SEP] b [SEP]
        return TaskTensors(data.task, data.ids, pairs, None, data.labels, [len(x) for x in data.a])

    train, dev = ({task: joint(t) for task, t in split.items()} for split in tasks)
    torch.manual_seed(0)
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), mode="cross-encoder")
    before = dev_metrics(model, dev, 32, CPU)
    run = MultitaskSettings(epochs=3, lr=1e-3, batch_size=8, optimizer="sophia", hessian_interval=2,
                       smart={"qqp": {}, "sts": {"epsilon": 1e-3}})
    history = train_multitask(model, train, dev, run, runtime=CPU).history
    assert all(math.isfinite(h.dev_mean) for h in history) and math.isfinite(before["sts_dev_loss"])
    # SST's loss falls epoch by epoch (STS's, on this toy at lr 1e-3 under Sophia, swings from seed to seed)
    sst = [h.train_loss["sst"] for h in history]
    assert sst[0] > sst[1] > sst[2]
    assert all(h.smart_loss["qqp"] >= 0 and h.smart_loss["sts"] >= 0 for h in history)


def test_a_fresh_run_replaces_its_tensorboard_log_and_a_resumed_one_continues_it(tiny_checkpoint, tasks,
                                                                                  tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, dev = tasks
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8)
    logs, checkpoints = tmp_path / "tb", tmp_path / "ckpt"

    def logged_epochs() -> list[int]:
        events = EventAccumulator(str(logs), purge_orphaned_data=False)  # keep repeated steps visible
        events.Reload()
        return [event.step for event in events.Scalars("dev/mean")]

    train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=CPU, log_dir=logs)
    assert logged_epochs() == [1, 2]
    train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=CPU, log_dir=logs,
                    checkpoint_dir=checkpoints, stop_after_epoch=1)
    assert logged_epochs() == [1]
    train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=CPU, log_dir=logs,
                    checkpoint_dir=checkpoints, resume=True)
    assert logged_epochs() == [1, 2]


def test_resume_refuses_other_settings_and_names_them(tiny_checkpoint, tasks, tmp_path):
    train, dev = tasks
    run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8, seed=3)
    train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=CPU, checkpoint_dir=tmp_path,
                    stop_after_epoch=1)
    other = run.with_updates({"lr": 0.01, "seed": 5, "train_limits": {"sst": 100}})
    with pytest.raises(TrainingError, match=r"cannot resume .*\(seed 3 -> 5; train_limits \{\} -> "
                                            r"\{'sst': 100\}; lr 0\.001 -> 0\.01\)"):
        train_multitask(make_model(tiny_checkpoint), train, dev, other, runtime=CPU, checkpoint_dir=tmp_path,
                        resume=True)
    resumed = train_multitask(make_model(tiny_checkpoint), train, dev, run.with_updates({"resume": True}),
                              runtime=CPU, checkpoint_dir=tmp_path, resume=True).history
    assert [h.epoch for h in resumed] == [1, 2]  # the same settings (and `resume` itself) continue


def test_the_standard_recipe_warms_up_decays_to_zero_and_clips(tiny_checkpoint, tasks, tmp_path):
    """Linear warmup over 10% of the steps, then linear decay to 0 at the last step (hand-computed),
    for AdamW and Sophia alike; the schedule spans exactly the steps the run takes."""
    from minbert.training import clip_gradients, optimizer_steps

    train, dev = tasks
    for optimizer in ("adamw", "sophia"):
        run = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8, optimizer=optimizer)
        per_epoch = sum(math.ceil(len(t) / 8) for t in train.values())  # sequential: every batch once
        total, warmup = 2 * per_epoch, round(0.1 * 2 * per_epoch)
        assert optimizer_steps(train, run) == {"all": total}
        history = train_multitask(make_model(tiny_checkpoint), train, dev, run,
                                  checkpoint_dir=tmp_path / optimizer,
                                  stop_after_epoch=2).history  # as a kill after the last epoch: last.pt whole
        assert history[0].lr == pytest.approx(1e-3 * (total - per_epoch) / (total - warmup))
        assert history[1].lr == 0.0
        state = torch.load(tmp_path / optimizer / "last.pt", weights_only=True)["schedulers"]["all"]
        assert state["last_epoch"] == total
    constant = train_multitask(make_model(tiny_checkpoint), train, dev, MultitaskSettings(
        epochs=1, lr=1e-3, batch_size=8, lr_schedule="constant")).history
    assert constant[0].lr == 1e-3
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])  # total norm 5
    clip_gradients(torch.optim.SGD([a, b], lr=0.1), 1.0)
    assert a.grad.item() == pytest.approx(0.6) and b.grad.item() == pytest.approx(0.8)


@pytest.mark.parametrize("on_disk", [True, False])
def test_the_kept_epoch_is_the_best_on_held_out_rows(tiny_checkpoint, tasks, tmp_path, on_disk):
    """Every epoch is scored on the held-out rows alone; dev is evaluated once, for the kept weights
    (from best.pt, or kept in memory without a checkpoint folder), and only that epoch holds it."""

    train, dev = tasks
    heldout = toy_tasks(16, 2)
    model = make_model(tiny_checkpoint)
    trained = train_multitask(model, train, dev, MultitaskSettings(epochs=3, lr=1e-3, batch_size=8),
                              heldout=heldout, checkpoint_dir=tmp_path if on_disk else None)
    history, predicted = trained.history, trained.dev_predictions
    assert all({"sst_acc", "sts_pearson"} <= set(h.heldout) and "qqp" in h.heldout_loss for h in history)
    best = max(history, key=lambda h: h.heldout_mean)
    assert best.selection_score == best.heldout_mean
    assert [h.epoch for h in history if h.dev] == [best.epoch]  # dev is scored once, for the kept epoch
    again = tasks_mean(dev_metrics(model, heldout, 32, CPU))  # the weights kept are that epoch's
    assert again == pytest.approx(best.heldout_mean, abs=1e-6)
    assert dev_metrics(model, dev, 32, CPU)["sts_pearson"] == pytest.approx(best.dev["sts_pearson"], abs=1e-6)
    assert set(predicted) == {"sst", "qqp", "sts"} and len(predicted["sst"]) == len(dev["sst"])


def test_sophia_records_its_regime_per_epoch_also_with_one_optimizer_per_task(tiny_checkpoint, tasks):
    train, dev = tasks
    for task_optimizers in (False, True):
        run = MultitaskSettings(epochs=1, lr=1e-3, batch_size=8, optimizer="sophia", hessian_interval=2,
                                task_optimizers=task_optimizers, hessian_bias_correction=True)
        (record,) = train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=CPU).history
        assert 0.0 <= record.sophia["clipped_share"] <= 1.0
        assert 0.0 <= record.sophia["clipped_share_estimated"] <= 1.0
        assert record.sophia["hessian_mean"] > 0.0
    adamw = train_multitask(make_model(tiny_checkpoint), train, dev,
                            MultitaskSettings(epochs=1, batch_size=8), runtime=CPU).history
    assert not adamw[0].sophia


def test_attention_variant_parameters_get_their_own_learning_rate(tiny_checkpoint, tasks):
    from minbert.attention import variant_movement
    from minbert.training import make_optimizers

    train, dev = tasks
    moved = {}
    for variant_lr in (None, 1e-2):
        run = MultitaskSettings(epochs=1, lr=1e-4, batch_size=8, attention="center+linear",
                                variant_lr=variant_lr)
        torch.manual_seed(0)
        model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint, attention="center+linear"))
        assert variant_movement(model) and all(v == 0.0 for layer in variant_movement(model)
                                              for k, v in layer.items() if k != "layer")
        groups = make_optimizers(model, run)["all"].param_groups
        assert [g["lr"] for g in groups] == ([1e-4] if variant_lr is None else [1e-4, 1e-2])
        if variant_lr is not None:
            names = {id(p): n for n, p in model.named_parameters()}
            assert {names[id(p)].rsplit(".", 1)[-1] for p in groups[1]["params"]} == {"query_mix", "key_mix",
                                                                                      "center"}
        train_multitask(model, train, dev, run, runtime=CPU)
        moved[variant_lr] = max(layer["center"] for layer in variant_movement(model))
    assert moved[1e-2] > 10 * moved[None] > 0
    assert variant_movement(make_model(tiny_checkpoint)) == []  # standard attention has nothing to move


def test_a_profiled_step_is_labelled_by_region(tiny_checkpoint, tasks):
    """What `benchmarks/step_profile.py` groups a step's time by: under torch.profiler every region of
    the step shows, once a step (the forward once a task batch), and evaluation once an epoch plus
    once for dev; each region holds the ops it names (the optimizer's update, the backward's)."""
    from minbert.training import REGIONS

    train, dev = tasks
    run = MultitaskSettings(epochs=1, lr=1e-3, batch_size=8, max_grad_norm=1.0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trained = train_multitask(make_model(tiny_checkpoint), train, dev, run, heldout=dev, runtime=CPU)
    events = prof.events()
    counts = {region: sum(e.name == f"minbert::{region}" for e in events) for region in REGIONS}
    steps = trained.history[0].steps
    assert counts == {"data": steps, "forward": 2 * steps, "smart": 0, "backward": steps, "clip": steps,
                      "optimizer": steps, "evaluate": 2}

    def inside(event, region: str) -> bool:
        parent = event.cpu_parent
        while parent is not None and parent.name != f"minbert::{region}":
            parent = parent.cpu_parent
        return parent is not None

    assert any(inside(e, "optimizer") for e in events if e.name.startswith("Optimizer.step#AdamW"))
    assert any(inside(e, "backward") for e in events if e.name == "aten::embedding_dense_backward")
