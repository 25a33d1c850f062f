"""What a careful user can break, and the one clear message each gets: data files, checkpoints,
output folders, interrupted writes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from minbert import cli, data
from minbert.bert import BertModel, CheckpointError
from minbert.data import DataError, fetch_data, fetch_file, known_checksums, load_split, parse_task_file
from minbert.tasks import TASKS


def test_non_utf8_rows_are_named_and_skipped_unless_strict(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b"\tid\tsentence1\tsentence2\tis_duplicate\n0\ta\tq1?\tq2?\t1.0\n"
                     b"1\tb\tcaf\xe9?\tq2?\t0.0\n2\tc\tq3?\tq4?\t0.0\n")
    examples, problems = parse_task_file(path, TASKS["qqp"])
    assert [e.id for e in examples] == ["a", "c"]
    assert [str(p) for p in problems] == ["q.csv, line 3: not valid UTF-8 (byte 0xe9 at column 8)"]
    with pytest.raises(DataError, match=r"q.csv, line 3: not valid UTF-8"):
        parse_task_file(path, TASKS["qqp"], strict=True)
    path.write_bytes(b"\tid\tsentence\xff\n")
    with pytest.raises(DataError, match=r"q.csv, line 1: header not valid UTF-8"):
        parse_task_file(path, TASKS["sst"])


def test_a_known_file_cut_short_is_refused_and_fetch_restores_it(data_dir, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = (data_dir / "sts-dev.csv").read_bytes().split(b"\n")
    (folder / "sts-dev.csv").write_bytes(b"\n".join(lines[:400]) + b"\n")  # cut at a line boundary
    with pytest.raises(DataError, match=r"sts-dev.csv: differs from the known sts-dev.csv .*fetch-data"):
        load_split("sts", "dev", folder)
    fetch_file("sts-dev.csv", folder, data_dir, None, known_checksums()["sts-dev.csv"])
    assert len(load_split("sts", "dev", folder)) == 863


def test_a_corrupt_copy_that_cannot_be_refetched_is_removed(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "sts-dev.csv").write_text("garbage")
    with pytest.raises(DataError, match=r"failed its checksum and was removed"):
        fetch_file("sts-dev.csv", folder, None, None, known_checksums()["sts-dev.csv"])
    assert not (folder / "sts-dev.csv").exists()


def test_fetch_clears_what_an_interrupted_fetch_left(data_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / ".sts-dev.csv.x1y2.part.csv").write_text("half a file")
    fetch_data(folder, mirror=data_dir, url_base=None)
    assert not list(folder.glob(".*"))


def test_a_train_split_without_rows_is_one_error(tmp_path, monkeypatch, data_dir):
    folder = tmp_path / "data"
    shutil.copytree(data_dir, folder)
    (folder / "ids-sst-train.csv").write_text("\tid\tsentence\tsentiment\n")
    monkeypatch.setenv("MINBERT_DATA_DIR", str(folder))
    monkeypatch.setattr(data, "known_checksums", lambda: {})  # an edited copy, on purpose
    with pytest.raises(DataError, match=r"ids-sst-train.csv: no valid train rows for sst \(0 skipped\)"):
        data.load_tasks(lambda texts, **_: {"input_ids": [[2, 3]] * len(texts)}, 16, names=("sst",))


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_checkpoint, folder)
    return folder


def test_a_truncated_safetensors_file_names_its_path(checkpoint_copy):
    weights = checkpoint_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=rf"{weights}: cannot be read .*damaged or truncated"):
        BertModel.from_pretrained(checkpoint_copy)


def test_a_broken_config_names_its_path(checkpoint_copy):
    config = checkpoint_copy / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=rf"{config}: not valid JSON"):
        BertModel.from_pretrained(checkpoint_copy)
    config.write_text(json.dumps({**json.loads(text), "num_attention_heads": 5}))
    with pytest.raises(CheckpointError, match=rf"{config}: hidden_size 64 is not a multiple of "
                                              r"num_attention_heads 5"):
        BertModel.from_pretrained(checkpoint_copy)


def test_a_failed_checkpoint_write_is_one_error_and_keeps_the_previous_one(tiny_checkpoint, tmp_path,
                                                                           monkeypatch):
    from minbert import training
    from minbert.config import MultitaskSettings
    from minbert.models import MultitaskBert
    from tests.test_multitask import toy_tasks

    train, dev = toy_tasks(16, 0), toy_tasks(8, 1)
    settings = MultitaskSettings(epochs=2, lr=1e-3, batch_size=8)
    (tmp_path / ".last.pt.abc123.part.pt").write_bytes(b"a kill interrupted this write")
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint))
    training.train_multitask(model, train, dev, settings, checkpoint_dir=tmp_path, stop_after_epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # the leftover is gone
    saved = (tmp_path / "last.pt").read_bytes()

    def full_disk(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
                           "file data/12: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    failed = r"(best|last).pt: the checkpoint could not be written .*disk full"
    with pytest.raises(training.TrainingError, match=failed):
        training.train_multitask(model, train, dev, settings.with_updates({"resume": True}),
                                 checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_an_unwritable_reports_folder_stops_the_run_before_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(blocker / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match=r"a-file/reports: the reports folder cannot be created"):
        cli.main(["run", "01_part1_sst", "--profile", "smoke"])
    assert not (tmp_path / "runs" / "executed").exists()  # refused before papermill started


def test_a_report_that_cannot_be_written_is_named_after_the_run(tmp_path, monkeypatch):
    from minbert import runner

    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))

    def full_disk(notebook_path, html_path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "render_html", full_disk)
    message = r"07_results ran through .* its report .*07_results.smoke.html could not be written \(No space"
    with pytest.raises(SystemExit, match=message):
        cli.main(["run", "07_results", "--profile", "smoke"])
