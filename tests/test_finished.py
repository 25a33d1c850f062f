"""Finished runs are kept as each ends, and a resumed notebook takes them instead of training again:
after a kill, on the same machine or (without the weights) on another."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from minbert import experiments, finished, paths
from minbert.bert import load_tokenizer
from minbert.experiments import load_kept_model, load_multitask, run_arm, run_comparison
from minbert.finished import finished_path
from minbert.params import load_config
from minbert.runtime import CPU
from minbert.training import TrainingError

SIZES = {"sst": 12, "qqp": 12, "sts": 12}


@pytest.fixture
def setup(tiny_checkpoint, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path))
    cfg = load_config("02_sbert_baseline", "smoke", {
        "checkpoint": str(tiny_checkpoint), "arms": ["baseline", "round-robin"], "seeds": 2,
        "train_limits": SIZES, "dev_limits": SIZES, "heldout_sizes": {"sst": 8, "qqp": 8, "sts": 8},
        "batch_size": 4, "final_epochs": 0})
    return cfg, load_multitask(cfg, load_tokenizer(cfg.checkpoint))


def timeless(record) -> dict:
    values = record.to_dict()
    values["history"] = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in values["history"]]
    return values


def count_training(monkeypatch) -> list[str]:
    trained: list[str] = []
    real = experiments.train_multitask

    def counted(*args, **kwargs):
        trained.append(kwargs["name"])
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "train_multitask", counted)
    return trained


def test_a_resumed_run_is_taken_from_its_file_with_the_same_record_and_outputs(setup, monkeypatch):
    cfg, data = setup
    first = run_arm(cfg, "baseline", data, CPU, notebook="02_sbert_baseline", name="b")
    assert finished_path("02_sbert_baseline", "smoke", "b").is_file()
    trained = count_training(monkeypatch)
    again = run_arm(cfg.with_updates({"resume": True}), "baseline", data, CPU, notebook="02_sbert_baseline",
                    name="b")
    assert trained == []
    assert again.record.to_dict() == first.record.to_dict()
    for task, predicted in first.trained.dev_predictions.items():
        np.testing.assert_array_equal(again.trained.dev_predictions[task], predicted)
        assert again.trained.dev_predictions[task].dtype == predicted.dtype
    assert again.trained.dev_outputs == {}  # kept only where asked (an ensemble's members)
    weights = zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    for kept, loaded in weights:
        assert torch.equal(kept, loaded)  # the kept weights, from best.pt on this machine
    # other settings under the same name: not taken; the trainer's resume refuses them by name
    with pytest.raises(TrainingError, match=r"lr 5e-05 -> 2e-05"):
        run_arm(cfg.with_updates({"resume": True, "lr": 2e-5}), "baseline", data, CPU,
                notebook="02_sbert_baseline", name="b")
    assert trained == ["b"]
    # another commit (a README rewritten between two GPU leases) with the same training code: taken
    monkeypatch.setenv("MINBERT_COMMIT", "0" * 40)
    trained.clear()
    run_arm(cfg.with_updates({"resume": True}), "baseline", data, CPU, notebook="02_sbert_baseline", name="b")
    assert trained == []
    # other training code: not taken from its file (it may train it otherwise); the trainer is called
    monkeypatch.setattr(finished, "sources_fingerprint", lambda root=finished.LIBRARY: "another trainer")
    run_arm(cfg.with_updates({"resume": True}), "baseline", data, CPU, notebook="02_sbert_baseline", name="b")
    assert trained == ["b"]


def test_a_kept_ensemble_member_keeps_its_raw_outputs(setup):
    cfg, data = setup
    first = run_arm(cfg, "baseline", data, CPU, notebook="06_final_bert", name="m", keep_outputs=True)
    again = run_arm(cfg.with_updates({"resume": True}), "baseline", data, CPU, notebook="06_final_bert",
                    name="m")
    for task, outputs in first.trained.dev_outputs.items():
        assert torch.equal(again.trained.dev_outputs[task], outputs)


def test_the_training_code_is_what_keys_a_finished_run(tmp_path):
    """A commit that changes pages, scripts, the command line or the README keeps the runs; one that
    changes the trainer does not."""
    root = tmp_path / "minbert"
    (root / "report").mkdir(parents=True)
    (root / "training.py").write_text("lr = 1e-4\n")
    (root / "report" / "pages.py").write_text("title = 'a'\n")
    before = finished.sources_fingerprint(root)
    (root / "report" / "pages.py").write_text("title = 'b'\n")
    assert finished.sources_fingerprint.__wrapped__(root) == before
    (root / "cli.py").write_text("print('a new subcommand')\n")  # the command line is no training code
    assert finished.sources_fingerprint.__wrapped__(root) == before
    (root / "training.py").write_text("lr = 2e-4\n")
    assert finished.sources_fingerprint.__wrapped__(root) != before
    names = [p.relative_to(finished.LIBRARY).as_posix() for p in finished.training_sources()]
    assert {"training.py", "optim_kernels.c", "checksums.sha256"} <= set(names)
    assert not [n for n in names if n.startswith("report/")] and "cli.py" not in names
    assert {"config.py", "notebook_settings.py", "records.py"} <= set(names)  # settings, what a run records


def test_a_multitask_run_file_with_all_of_qqps_dev_pairs_is_small(tmp_path, monkeypatch):
    """What lets a full notebook's runs travel in a GPU call's 64 MiB: labels in a byte each, compressed."""
    from minbert.config import MultitaskSettings
    from minbert.records import RunRecord
    from minbert.training import Trained

    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    predictions = {"sst": rng.integers(0, 5, 1_101), "qqp": rng.integers(0, 2, 40_429),
                   "sts": rng.uniform(0, 5, 1_500).astype(np.float32)}
    record = RunRecord("r", {"sst_acc": 0.5}, 1, [], {})
    settings = MultitaskSettings(profile="full")
    path = finished.save_finished("02_sbert_baseline", settings, record,
                                  Trained([], dev_predictions=predictions))
    assert path.stat().st_size < 20_000
    _, loaded = finished.load_finished("02_sbert_baseline", settings, "r")
    for task, values in predictions.items():
        np.testing.assert_array_equal(loaded.dev_predictions[task], values)
        assert loaded.dev_predictions[task].dtype == values.dtype


def test_a_killed_comparison_resumed_elsewhere_trains_only_what_it_had_not_finished(setup, monkeypatch):
    cfg, data = setup
    trained = count_training(monkeypatch)
    real = experiments.train_multitask

    def killed_at_the_third(*args, **kwargs):
        if len(trained) == 3:
            raise KeyboardInterrupt  # the lease ran out
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "train_multitask", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(cfg, data, CPU, notebook="02_sbert_baseline")
    folder = paths.runs_dir() / "finished" / "02_sbert_baseline.smoke"
    kept = sorted(p.stem for p in folder.glob("*.npz"))
    assert kept == ["baseline-seed11711", "baseline-seed11712", "round-robin-seed11711"]
    # another machine: the finished-run files came with it, the checkpoints did not
    shutil.rmtree(paths.runs_dir() / "02_sbert_baseline")
    trained.clear()
    monkeypatch.setattr(experiments, "train_multitask", real)
    trained = count_training(monkeypatch)
    resumed = run_comparison(cfg.with_updates({"resume": True}), data, CPU, notebook="02_sbert_baseline")
    assert trained == ["round-robin-seed11712"]
    assert [r.name for r in resumed.records()] == ["baseline-seed11711", "baseline-seed11712",
                                                   "round-robin-seed11711", "round-robin-seed11712"]
    whole = run_comparison(cfg, data, CPU, notebook="02_sbert_baseline")  # afresh, every run trained
    assert [timeless(r) for r in resumed.records()] == [timeless(r) for r in whole.records()]
    # the weights a page needs are trained again where they did not come along: the same on a CPU
    best = resumed.records()[0]
    kept = load_kept_model(cfg, best, "02_sbert_baseline")
    shutil.rmtree(paths.runs_dir() / "02_sbert_baseline" / "smoke" / best.name)
    with pytest.raises(FileNotFoundError, match="no kept weights"):
        load_kept_model(cfg, best, "02_sbert_baseline")
    again = load_kept_model(cfg, best, "02_sbert_baseline", data, CPU)
    for a, b in zip(kept.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_runs_trained_together_in_worker_processes_give_what_they_give_one_after_another(setup, monkeypatch):
    cfg, data = setup
    alone = run_comparison(cfg, data, CPU, notebook="02_sbert_baseline")
    shutil.rmtree(paths.runs_dir())
    trained = count_training(monkeypatch)  # counts this process's training only: the workers train
    together = run_comparison(cfg.with_updates({"parallel_runs": 2}), data, CPU, notebook="02_sbert_baseline")
    assert trained == []
    # the same runs, to float tolerance: the workers compute with their share of the threads, and a
    # matrix product summed over other thread blocks rounds differently
    for mine, theirs in zip(together.records(), alone.records(), strict=True):
        assert timeless(mine).keys() == timeless(theirs).keys() and mine.name == theirs.name
        assert mine.best_epoch == theirs.best_epoch and mine.config == theirs.config
        epochs = zip(timeless(mine)["history"], timeless(theirs)["history"], strict=True)
        for epoch_mine, epoch_theirs in epochs:
            assert epoch_mine == pytest.approx(epoch_theirs, rel=1e-4, abs=1e-5)
        assert mine.dev == pytest.approx(theirs.dev, rel=1e-4, abs=1e-5)
    for arm, runs in alone.predictions.items():  # each run with its own seed and data order
        for one, other in zip(runs, together.predictions[arm], strict=True):
            for task in one:
                np.testing.assert_allclose(one[task], other[task], rtol=1e-4, atol=1e-5)
    seeds = {r.config["seed"] for r in together.records()}
    assert seeds == {11711, 11712}


def test_a_worker_ends_when_the_process_that_started_it_is_killed(tmp_path):
    """A GPU job killed at its cap takes its worker processes with it, not into the next job's time."""
    import subprocess
    import sys
    import time

    pid_file, script = tmp_path / "worker.pid", tmp_path / "job.py"
    script.write_text(f"""
import os, multiprocessing, time
from concurrent.futures import ProcessPoolExecutor
from minbert.experiments import _follow_parent

def work(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(600)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_follow_parent, initargs=(os.getpid(),))
    pool.submit(work, {str(pid_file)!r})
    time.sleep(600)
""")
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 120
    while not pid_file.is_file() and time.time() < deadline:
        time.sleep(0.2)
    worker = int(pid_file.read_text())
    parent.kill()  # as timeout kills the job
    parent.wait()
    deadline = time.time() + 20
    while Path(f"/proc/{worker}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]


def test_a_resumed_part_1_run_is_taken_from_its_file_with_its_logits(tiny_checkpoint, data_dir, tmp_path,
                                                                      monkeypatch):
    """Notebook 01 on a second lease: its finished runs come back with their record and their dev and test
    predictions (what its comparison and prediction files read), not trained again."""
    from minbert import part1

    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path / "reports"))
    cfg = load_config("01_part1_sst", "smoke", {"checkpoint": str(tiny_checkpoint), "train_limit": 16,
                                                "dev_limit": 12, "heldout_size": 8, "finetune_epochs": 1})
    data = part1.load_sentence_task("sst", cfg, load_tokenizer(cfg.checkpoint))
    first = part1.run_sst_mode(cfg, "finetune", data, CPU, seed=3, notebook="01_part1_sst")
    assert first.model is not None and first.labels["test"].shape == (12,)
    monkeypatch.setattr(part1, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    again = part1.run_sst_mode(cfg.with_updates({"resume": True}), "finetune", data, CPU, seed=3,
                               notebook="01_part1_sst")
    assert again.model is None and again.record.to_dict() == first.record.to_dict()
    for split in ("dev", "test"):
        np.testing.assert_array_equal(again.predictions(split), first.predictions(split))
        assert again.predictions(split).dtype == np.int64
    written = part1.save_sst_predictions(again, data, "01_part1_sst", cfg.profile)
    assert written["dev"] == first.predictions("dev").tolist()
    with pytest.raises(pytest.fail.Exception, match="trained again"):  # another seed: not in the files
        part1.run_sst_mode(cfg.with_updates({"resume": True}), "finetune", data, CPU, seed=4,
                           notebook="01_part1_sst")
