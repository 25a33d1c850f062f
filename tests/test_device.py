"""The library on a device that is not the CPU, without a GPU: the stand-in device (tests/standin_device.py)
refuses an op that mixes devices, as CUDA does, and counts every read of a device value on the host.
What a GPU would hit (a model left on the host, a random state loaded onto the device, a step that waits
on the device) fails here, on the CPU."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from minbert import paths, training
from minbert import runtime as runtime_module
from minbert.bert import BertModel
from minbert.config import MultitaskSettings
from minbert.data import TaskData
from minbert.experiments import load_kept_model, run_arm, save_run_predictions
from minbert.runtime import Runtime, resolve_precision, rng_state, set_rng_state
from minbert.tasks import sample_classes
from minbert.training import FiniteWatch, train_multitask
from tests.standin_device import DEVICE, DeviceMismatch, StandIn, StandInDevice
from tests.test_multitask import make_model


@pytest.fixture
def standin():
    """The stand-in device's mode, and a runtime on it (float32: autocast has no stand-in)."""
    with warnings.catch_warnings():
        # load_state_dict warns that copying into a "meta" parameter is a no-op; into a stand-in it is not
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        with StandInDevice() as mode:
            yield mode, Runtime(DEVICE)


def smoke_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", paths.PROJECT_ROOT / "scripts/gpu/smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the stand-in itself

def test_the_stand_in_refuses_what_cuda_refuses_and_counts_host_reads(standin):
    mode, _ = standin
    x = torch.arange(6.0, device=DEVICE).view(2, 3)
    assert isinstance(x, StandIn) and x.device == DEVICE
    with pytest.raises(DeviceMismatch, match="same device"):
        x + torch.ones(2, 3)  # a host tensor in a device op
    with pytest.raises(DeviceMismatch, match="same device"):
        torch.arange(3.0)[torch.tensor([0], device=DEVICE)]  # a device index into a host tensor
    with pytest.raises(TypeError, match="Tensor.cpu"):
        x.numpy()
    assert mode.read_count() == 0
    y = x * torch.tensor(2.0) + 1  # a CPU 0-dim scalar is allowed, as on CUDA
    picked = y[torch.tensor([1])]  # so is a host index into a device tensor
    assert isinstance(picked, StandIn) and picked.inner.tolist() == [[7.0, 9.0, 11.0]]
    assert mode.read_count() == 0
    assert float(y.sum()) == 36.0 and y.cpu().shape == (2, 3) and y.tolist()[0] == [1.0, 3.0, 5.0]
    assert mode.read_count() == 3
    assert all("test_device.py" in line for line in mode.reads)  # each read named by the line that made it


def test_a_model_moved_to_the_stand_in_trains_on_its_real_values(standin):
    torch.manual_seed(0)
    host = torch.nn.Linear(4, 2)
    expected = torch.nn.Linear(4, 2)
    expected.load_state_dict(host.state_dict())
    x = torch.randn(3, 4)
    expected(x).square().sum().backward()
    moved = host.to(DEVICE)
    moved(x.to(DEVICE)).square().sum().backward()
    assert isinstance(moved.weight, StandIn) and isinstance(moved.weight.grad, StandIn)
    torch.testing.assert_close(moved.weight.grad.inner, expected.weight.grad, rtol=0, atol=0)


# ----------------------------------------------------------------------------- the library on it

@pytest.mark.filterwarnings("ignore")
def test_every_path_of_the_gpu_smoke_script_runs_on_the_stand_in(tiny_checkpoint, standin, capsys):
    """Two paths cannot run here: autocast has no stand-in, and worker processes do not inherit the mode
    (the CPU test of the same script runs both)."""
    mode, runtime = standin
    smoke = smoke_script()
    skipped = ("other precision", "runs in worker processes")
    assert smoke.main(str(tiny_checkpoint), runtime, skip=skipped) == 0
    out = capsys.readouterr().out
    for name in smoke.names():
        assert (f"ok {name} (" in out) != (name in skipped), name
    assert f"all {len(smoke.names()) - 2} paths ran on meta" in out


def _reads_between_checks(mode, monkeypatch) -> list[int]:
    """Host reads inside each stretch of training steps: from a NaN check that found nothing to read (a
    stretch's start) to the next check."""
    stretches: list[int] = []
    check = FiniteWatch.check
    start = None

    def counted(watch: FiniteWatch) -> None:
        nonlocal start
        if watch._places and start is not None:  # the end of a stretch of watched steps
            stretches.append(mode.read_count() - start)
        check(watch)
        start = mode.read_count()

    monkeypatch.setattr(FiniteWatch, "check", counted)
    return stretches


@pytest.mark.parametrize("updates", [
    {"schedule": "sequential"},
    {"schedule": "pcgrad"},
    {"schedule": "combined", "smart": {"sts": {"relative": True, "steps": 1}, "sst": {"steps": 1}}},
    {"optimizer": "sophia", "hessian_interval": 1, "task_optimizers": True, "schedule": "round-robin"},
], ids=["sequential", "pcgrad", "smart", "sophia"])
def test_a_training_step_reads_nothing_on_the_host_between_nan_checks(tiny_checkpoint, tasks_small, standin,
                                                                      monkeypatch, updates):
    """PCGrad's projection, SMART's relative sizes and Sophia's sampled labels included (fewer steps
    than `read_every`: one stretch an epoch)."""
    mode, runtime = standin
    stretches = _reads_between_checks(mode, monkeypatch)
    train, dev = tasks_small
    settings = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8).with_updates(updates)
    train_multitask(make_model(tiny_checkpoint), train, dev, settings, runtime=runtime)
    assert len(stretches) == 2 and stretches == [0, 0], (stretches, mode.reads)


def test_part_1_and_the_peer_read_at_most_once_a_step(tiny_checkpoint, standin, monkeypatch):
    """Part 1's loop reads nothing between its NaN checks; the peer (transformers' model) reads once a
    step inside transformers' own forward (its attention mask's check), and nothing more of ours."""
    from minbert.models import SentenceClassifier
    from minbert.notebook_settings import PeerConfig
    from minbert.part1 import train_classifier
    from minbert.peer import fine_tune

    mode, runtime = standin
    stretches = _reads_between_checks(mode, monkeypatch)
    smoke = smoke_script()
    torch.manual_seed(0)
    model = SentenceClassifier(BertModel.from_pretrained(tiny_checkpoint), 5)
    rows = [[2, 10 + i % 7, 30 + i, 3] for i in range(24)]
    train_classifier(model, rows, [i % 5 for i in range(24)], rows, [i % 5 for i in range(24)], epochs=2,
                     lr=1e-3, batch_size=4, runtime=runtime, eval_batch_size=8, lr_schedule="linear",
                     warmup_ratio=0.1, max_grad_norm=1.0)
    assert stretches == [0, 0], mode.reads
    stretches.clear()
    raw = smoke.splits(12)
    fine_tune("qqp", raw["qqp"], raw["qqp"], raw["qqp"], str(tiny_checkpoint),
              PeerConfig(epochs=1, batch_size=4, eval_batch_size=8, max_length=32), runtime, seed=0)
    assert len(stretches) == 1 and stretches[0] <= 3, mode.reads  # 3 steps of 4 rows


def test_a_killed_run_resumes_on_the_device_as_it_would_have_gone_on(tiny_checkpoint, tasks_small, standin,
                                                                     tmp_path):
    """The checkpoint is read on the host (its random state must stay there) and the model's weights,
    the optimizer's moments and the history continue exactly."""
    _, runtime = standin
    train, dev = tasks_small
    run = MultitaskSettings(schedule="round-robin", epochs=2, lr=1e-3, batch_size=8)
    whole = make_model(tiny_checkpoint)
    expected = train_multitask(whole, train, dev, run, runtime=runtime, checkpoint_dir=tmp_path / "a").history
    train_multitask(make_model(tiny_checkpoint), train, dev, run, runtime=runtime,
                    checkpoint_dir=tmp_path / "b", stop_after_epoch=1)
    torch.manual_seed(12345)  # another process: another random state, which resume must restore
    resumed = make_model(tiny_checkpoint)
    got = train_multitask(resumed, train, dev, run, runtime=runtime, checkpoint_dir=tmp_path / "b",
                          resume=True).history
    assert [h.dev for h in got] == [h.dev for h in expected]
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert isinstance(b, StandIn) and torch.equal(a.inner, b.inner), name


@pytest.mark.filterwarnings("ignore")
def test_kept_weights_come_back_on_the_device_into_predictions_and_attention_maps(tiny_checkpoint, standin,
                                                                                  tmp_path, monkeypatch):
    """02 and 05 reload a run trained earlier (`resume`) and predict with it: the model must be on the
    runtime's device, or the batches sent there meet weights on the host."""
    from minbert.analysis import sentence_attention
    from minbert.bert import load_tokenizer

    _, runtime = standin
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path / "reports"))
    smoke = smoke_script()
    tokenizer = load_tokenizer(tiny_checkpoint)
    raw = smoke.splits()
    from minbert.data import tensors_for

    tensors = {t: tensors_for(s, tokenizer, 32) for t, s in raw.items()}
    data = TaskData(splits={s: raw for s in ("train", "dev", "heldout", "test")},
                    tensors={s: tensors for s in ("train", "dev", "heldout", "test")}, summary={})
    cfg = MultitaskSettings(profile="smoke", epochs=1, batch_size=4, eval_batch_size=8,
                            checkpoint=str(tiny_checkpoint), num_layers=1)
    first = run_arm(cfg, "baseline", data, runtime, notebook="nb")
    again = run_arm(cfg, "baseline", data, runtime, notebook="nb", updates={"resume": True})  # not trained
    assert again.record.to_dict() == first.record.to_dict()
    for model in (again.model, load_kept_model(cfg, first.record, "nb", runtime=runtime)):
        assert all(isinstance(p, StandIn) for p in model.parameters())
        predicted = save_run_predictions(model, data, "kept", "nb", cfg, runtime)
        assert set(predicted) == {"sst", "qqp", "sts"}
        _, weights = sentence_attention(model, tokenizer, smoke.SENTENCES[0], runtime)
        assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
    # without need_model (a comparison reading its workers' runs) nothing is loaded
    taken = run_arm(cfg, "baseline", data, runtime, notebook="nb", updates={"resume": True}, need_model=False)
    assert taken.model is None and taken.record.to_dict() == first.record.to_dict()


@pytest.fixture(scope="module")
def tasks_small():
    from tests.test_multitask import toy_tasks

    return toy_tasks(16, 0), toy_tasks(8, 1)


# ----------------------------------------------------------------------------- the GPU's own settings

def test_a_gpu_run_saves_and_restores_the_gpus_random_state_too(monkeypatch):
    """The CPU generator alone would let a resumed GPU run draw other dropout masks than the
    uninterrupted one: the GPU's own state travels with it (torch.cuda's calls stood in here)."""
    saved_gpu = torch.arange(16, dtype=torch.uint8)
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": saved_gpu.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.update(gpu=state))
    gpu = torch.device("cuda")
    state = rng_state(gpu)
    assert torch.equal(state["cuda"], saved_gpu) and torch.equal(state["cpu"], torch.get_rng_state())
    drawn = torch.rand(3)
    set_rng_state(state, gpu)
    assert torch.equal(torch.rand(3), drawn) and torch.equal(restored["gpu"], saved_gpu)
    assert set(rng_state(torch.device("cpu"))) == {"cpu"}
    set_rng_state(state["cpu"], torch.device("cpu"))  # an older checkpoint's bare CPU state
    assert torch.equal(torch.rand(3), drawn)


def test_auto_precision_takes_bfloat16_only_where_the_gpu_computes_it_natively(monkeypatch):
    """A T4 or V100 emulates bfloat16 (slower than float32 there): torch counts emulation unless told."""
    for native in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True, native=native: native or including_emulation)
        expected = torch.bfloat16 if native else torch.float32
        assert resolve_precision("auto", torch.device("cuda")) == expected
    assert runtime_module.resolve_precision("bfloat16", torch.device("cuda")) == torch.bfloat16  # as asked


def test_sampled_classes_follow_the_probabilities():
    """Sophia's sampled labels without torch.multinomial (which reads a GPU twice): the same
    distribution, never a class of probability 0."""
    torch.manual_seed(0)
    probabilities = torch.tensor([[0.1, 0.2, 0.0, 0.3, 0.4]]).expand(200_000, 5)
    drawn = sample_classes(probabilities)
    frequencies = torch.bincount(drawn, minlength=5).double() / len(drawn)
    torch.testing.assert_close(frequencies, probabilities[0].double(), atol=4e-3, rtol=0)
    assert not (drawn == 2).any()
    assert (sample_classes(torch.tensor([[0.0, 0.0, 1.0]]).expand(1000, 3)) == 2).all()


def test_smarts_dropout_control_is_measured_on_a_sample_of_a_long_epochs_steps(tiny_checkpoint, monkeypatch):
    """The control (one more forward pass, logged, not trained on): every one of an epoch's first 32 SMART
    steps of a task, then every 8th; its epoch mean over those batches."""
    from minbert import smart_probe
    from tests.test_multitask import toy_tasks

    calls = []
    control = smart_probe.dropout_control
    monkeypatch.setattr(smart_probe, "dropout_control", lambda *a, **k: calls.append(1) or control(*a, **k))
    train = {"sst": toy_tasks(48, 0)["sst"]}
    settings = MultitaskSettings(epochs=1, lr=1e-3, batch_size=1, smart={"sst": {"steps": 1}})
    record = train_multitask(make_model(tiny_checkpoint), train, train, settings).history[0]
    assert (training.CONTROL_ALL, training.CONTROL_EVERY) == (32, 8)
    assert record.task_steps["sst"] == 48 and len(calls) == 32 + 2  # steps 0-31, 32 and 40
    assert record.smart_control["sst"] >= 0 and record.smart_loss["sst"] > 0
