"""One run of a notebook and profile at a time; a run's predictions are published with its results."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from minbert import cli, runlock
from minbert.tasks import TASKS

CLAIM = "from minbert import runlock; runlock.claim('01_part1_sst', 'smoke'); print('held', flush=True); " \
        "import time; time.sleep(60)"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def test_a_second_claim_is_refused_and_a_killed_holder_releases(dirs):
    holder = subprocess.Popen([sys.executable, "-c", CLAIM], stdout=subprocess.PIPE, text=True,
                              env=os.environ)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runlock.RunLockedError, match=rf"already running \(pid {holder.pid} on "):
            runlock.claim("01_part1_sst", "smoke")
        runlock.claim("01_part1_sst", "full")  # another profile's outputs are another lock
        runlock.release("01_part1_sst", "full")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    runlock.claim("01_part1_sst", "smoke")  # kill -9 released it with the process
    runlock.release("01_part1_sst", "smoke")


@pytest.mark.filterwarnings("ignore:skipped malformed row")
def test_two_runs_at_once_one_is_refused_and_predictions_match_their_own_results(dirs, data_dir, capsys):
    small = ["-p", "seeds", "1", "-p", "pretrain_epochs", "1"]  # the locking, not the training, is tested
    command = [sys.executable, "-m", "minbert", "run", "01_part1_sst", "--profile", "smoke", *small]
    first = subprocess.Popen(command, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lock = runlock.lock_path("01_part1_sst", "smoke")
    deadline = time.time() + 60
    holder = f"pid {first.pid} "
    while time.time() < deadline and not (lock.is_file() and lock.read_text().startswith(holder)):
        time.sleep(0.2)
    refused = rf"01_part1_sst on profile smoke is already running \(pid {first.pid}"
    with pytest.raises(SystemExit, match=refused):
        cli.main(["run", "01_part1_sst", "--profile", "smoke", "-p", "finetune_lr", "0.0002"])
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output

    def check_predictions_against_results() -> set[str]:
        reports = dirs / "reports"
        results = json.loads((reports / "results" / "01_part1_sst.smoke.json").read_text())
        assert results["stamp"]["params"]["finetune_lr"] == 5e-05
        folder = reports / "predictions" / "01_part1_sst.smoke"
        gold = {}
        with open(data_dir / "ids-sst-dev.csv", encoding="utf-8") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                gold[row["id"].strip()] = int(row["sentiment"])
        for run in results["runs"]:
            if not (folder / f"{run['name']}-sst-dev.csv").is_file():
                continue  # only each mode's first seed writes prediction files
            with open(folder / f"{run['name']}-sst-dev.csv", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            predicted = [int(r["sentiment"]) for r in rows]
            # the prediction file scores exactly what its results file says its model scored
            assert TASKS["sst"].score(predicted, [gold[r["id"]] for r in rows]) == run["dev"]["sst_acc"]
        return {p.name for p in folder.iterdir()}

    assert check_predictions_against_results() == {f"{m}-seed11711-sst-{s}.csv"
                                                   for m in ("pretrain", "finetune") for s in ("dev", "test")}
    # a later run with one mode publishes its own set: no file of the earlier run stays beside it
    cli.main(["run", "01_part1_sst", "--profile", "smoke", "-p", "modes", "[finetune]", *small])
    assert check_predictions_against_results() == {"finetune-seed11711-sst-dev.csv",
                                                   "finetune-seed11711-sst-test.csv"}
    assert not list((dirs / "reports" / "predictions").glob(".*"))  # no staging folder left behind
