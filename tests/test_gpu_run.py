"""The GPU run's pieces, on the CPU: the dry run's budgets, the carried checkpoint, the wheel list, the size
check, the recorded commit, and a notebook executed without rendering and rendered back home."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import torch
from packaging.utils import canonicalize_name
from safetensors.torch import load_file

from minbert import cli, paths, records
from minbert.bert import CHECKPOINT_ORIGIN, CheckpointError, default_checkpoint
from minbert.notebook_settings import NOTEBOOK_CONFIGS, SCRIPT_CONFIGS
from minbert.params import dry_run_overrides, is_budget, load_config
from minbert.parity import compare_with_transformers


def load_script(name: str):
    path = paths.PROJECT_ROOT / "scripts" / "gpu" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = load_script("bundle")


def _at_most(small, large) -> bool:
    """`small` asks for no more than `large` (None: everything; dicts per task, lists by their largest)."""
    if large is None:
        return True
    if isinstance(small, dict):
        return all(_at_most(v, large.get(k)) for k, v in small.items())
    if isinstance(small, list):
        return max(small) <= max(large)
    return small <= large


@pytest.mark.parametrize("notebook", sorted({**NOTEBOOK_CONFIGS, **SCRIPT_CONFIGS}))
def test_the_dry_run_is_the_full_recipe_on_smaller_budgets(notebook):
    full = load_config(notebook, "full").model_dump()
    dry = load_config(notebook, "full", dry_run_overrides(notebook)).model_dump()
    changed = {k for k in full if full[k] != dry[k]}
    assert all(is_budget(k) for k in changed), changed  # arms, lr, schedule, epochs: as the full profile
    assert all(_at_most(dry[k], full[k]) for k in changed), {k: (full[k], dry[k]) for k in changed}
    if notebook not in ("07_results",):
        assert changed, notebook  # it does shrink something


def test_default_checkpoint_follows_the_environment(tiny_checkpoint, tmp_path, monkeypatch):
    embedded = default_checkpoint()
    monkeypatch.setenv("MINBERT_CHECKPOINT", str(tiny_checkpoint))
    assert default_checkpoint() == tiny_checkpoint and default_checkpoint() != embedded
    assert records.library_versions()["checkpoint"] == str(tiny_checkpoint)  # no origin note: its path
    monkeypatch.setenv("MINBERT_CHECKPOINT", str(tmp_path))
    with pytest.raises(CheckpointError, match="MINBERT_CHECKPOINT"):
        default_checkpoint()


def test_a_readme_rewritten_by_receiving_a_lease_leaves_the_source_clean(tmp_path, monkeypatch):
    """receive.py rewrites the README's results section: the next bundle is not refused for it (nor the
    stamps called dirty), while a change to the source still is."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "lib").mkdir()
    (tmp_path / "reports").mkdir()
    for name in ("README.md", "lib/trainer.py", "reports/index.html"):
        (tmp_path / name).write_text("one\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    monkeypatch.setattr(bundle, "ROOT", tmp_path)
    (tmp_path / "README.md").write_text("results\n")
    (tmp_path / "reports" / "index.html").write_text("two\n")
    assert records.git_state(tmp_path)[1] is False
    bundle.record_commit(tmp_path / "commit", allow_dirty=False)
    assert (tmp_path / "commit").read_text().endswith("\nclean\n")
    (tmp_path / "lib" / "trainer.py").write_text("two\n")
    assert records.git_state(tmp_path)[1] is True
    with pytest.raises(bundle.BundleError, match="uncommitted changes"):
        bundle.record_commit(tmp_path / "commit", allow_dirty=False)


def test_the_commit_a_copy_names(monkeypatch):
    monkeypatch.setenv("MINBERT_COMMIT", "abc123")
    assert records.git_state() == ("abc123", None)
    monkeypatch.setenv("MINBERT_DIRTY", "1")
    assert records.git_state() == ("abc123", True)
    monkeypatch.setenv("MINBERT_DIRTY", "0")
    assert records.git_state() == ("abc123", False)


def test_the_carried_checkpoint_is_the_bfloat16_rounding_and_loads_both_ways(tiny_checkpoint, tmp_path,
                                                                               monkeypatch):
    archive = bundle.pack_checkpoint(tiny_checkpoint, tmp_path / "checkpoint.tar.xz", "tiny BERT")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / "checkpoint"
    original = load_file(tiny_checkpoint / "model.safetensors")
    carried = load_file(folder / "model.safetensors")
    assert carried.keys() == original.keys()
    for name, weight in original.items():
        if weight.is_floating_point():
            assert carried[name].dtype == torch.bfloat16
            assert torch.equal(carried[name], weight.to(torch.bfloat16))  # round to nearest, nothing else
        else:
            assert torch.equal(carried[name], weight)
    size = (folder / "model.safetensors").stat().st_size
    assert size < 0.55 * (tiny_checkpoint / "model.safetensors").stat().st_size
    assert (folder / CHECKPOINT_ORIGIN).read_text().startswith("tiny BERT, weights rounded to bfloat16")
    monkeypatch.setenv("MINBERT_CHECKPOINT", str(folder))
    assert records.library_versions()["checkpoint"].startswith("tiny BERT, weights rounded to bfloat16")
    parity = compare_with_transformers(None, ["w1 w2 w3", "w4"])  # our BERT and transformers' on it
    assert parity["max_abs_diff_last_hidden_state"] < 1e-5 and parity["max_abs_diff_pooler_output"] < 1e-5


def test_the_wheels_are_what_the_run_needs_beyond_the_image_at_our_versions():
    image = bundle.image_packages()
    assert {"torch", "numpy", "pandas", "transformers", "matplotlib", "seaborn", "scipy"} <= image
    from_image: set[str] = set()
    pins = dict(line.split("==") for line in bundle.wheel_requirements(from_image=from_image))
    assert {"papermill", "ipykernel", "ipython", "pyzmq", "optuna", "sqlalchemy", "alembic", "pydantic",
            "pydantic-core", "ipywidgets", "nbclient", "jupyter-client"} <= pins.keys()
    assert not pins.keys() & image and not pins.keys() & bundle.SKIPPED.keys()
    assert all(metadata.version(name) == version for name, version in pins.items())
    assert {"numpy", "pyyaml", "tqdm"} <= from_image <= image
    project = tomllib.loads((paths.PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = dict(re.match(r"([^=\s]+)==([^\s;]+)", d).groups() for d in project)
    for name, version in pinned.items():  # what the project pins travels at that pin
        if canonicalize_name(name) in pins:
            assert pins[canonicalize_name(name)] == version, name


def test_the_size_check_names_the_parts():
    line = bundle.check_size({"tree": 9 * 2**20, "wheels": 13 * 2**20})
    assert line == "tree 9.0 MiB, wheels 13.0 MiB; 22.0 of 64 MiB"
    with pytest.raises(bundle.BundleError, match=r"carry 70\.0 MiB, over its 64 MiB: tree 9\.0 MiB, "
                                                 r"checkpoint 61\.0 MiB"):
        bundle.check_size({"tree": 9 * 2**20, "checkpoint": 61 * 2**20})


def test_a_notebook_executed_without_rendering_is_rendered_back_home(tmp_path, monkeypatch, data_dir):
    """What the GPU run does (run --no-render, pack) and what receive.py does here (unpack, render)."""
    away, home = tmp_path / "away", tmp_path / "home"
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(away / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(away / "runs"))
    cli.main(["run", "01_part1_sst", "--profile", "smoke", "--no-render", "-p", "pretrain_epochs", "1",
              "-p", "seeds", "1"])
    assert not list((away / "reports").glob("*.html"))  # nothing rendered, so no nbconvert needed
    executed = away / "runs" / "executed" / "01_part1_sst.smoke.ipynb"
    assert json.loads(executed.read_text())["cells"]
    (executed.parent / ".02_sbert_baseline.smoke.ipynb.x1y2.part.ipynb").write_text("{")  # a killed run's
    kept = away / "runs" / "finished" / "02_sbert_baseline.smoke" / "baseline-seed11711.npz"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a finished run")  # what the killed notebook finished before it was stopped
    note = away / "runs" / "gpu-state" / "smoke-abc123"
    note.parent.mkdir(parents=True)
    note.touch()  # the lease's smoke step passed at this commit
    archive = tmp_path / "minbert-smoke.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for part in ("reports/results", "reports/predictions", "runs/executed", "runs/finished",
                     "runs/gpu-state"):
            tar.add(away / part, arcname=part)
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(home / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(home / "runs"))
    receive = load_script("receive")
    (html,) = receive.receive(archive)  # the killed notebook's partial file is skipped, not rendered
    reports = home / "reports"
    assert html == reports / "01_part1_sst.smoke.html" and (reports / "index.html").is_file()
    assert "Our BERT against" in html.read_text()
    assert (reports / "results" / "01_part1_sst.smoke.json").read_bytes() == \
        (away / "reports" / "results" / "01_part1_sst.smoke.json").read_bytes()
    assert (reports / "predictions" / "01_part1_sst.smoke" / "finetune-seed11711-sst-dev.csv").is_file()
    # the finished runs and the lease's notes are kept where the next bundle takes them from
    assert (home / "runs" / "finished" / kept.parent.name / kept.name).read_bytes() == kept.read_bytes()
    assert (home / "runs" / "gpu-state" / note.name).is_file()
    staging = tmp_path / "staging"
    bundle.copy_home_state(home / "runs", staging)
    assert (staging / "finished" / kept.parent.name / kept.name).read_bytes() == kept.read_bytes()
    assert [p.name for p in (staging / "state").iterdir()] == [note.name]
    with pytest.raises(SystemExit, match="dry run"):
        receive.receive(archive.rename(tmp_path / "minbert-smoke-dry-run.tar.gz"))
    monkeypatch.setenv("MINBERT_COMMIT", "0" * 40)  # the archive's runs name another commit than here
    with pytest.raises(SystemExit, match="check out that commit"):
        receive.receive(archive.with_name("minbert-smoke-dry-run.tar.gz").rename(archive))


def test_the_gpu_smoke_script_runs_every_training_path_here_on_the_cpu(tiny_checkpoint, capsys):
    """The lease's second step: one short epoch of every path (schedules, optimizers, variants, SMART
    forms, phases, the cross-encoder, the other precision, a resume, kept weights, Part 1, worker
    processes, Optuna, the pretrained view, an ensemble and blend, prediction files, the peer on each
    task) on this machine's device, each named (here with the tiny checkpoint; the lease runs it with
    the MiniLM). tests/test_device.py runs it on the stand-in device."""
    smoke = load_script("smoke")
    assert smoke.main(str(tiny_checkpoint)) == 0
    out = capsys.readouterr().out
    names = smoke.names()
    assert {"schedule pcgrad", "sophia per task", "smart mtdnn", "smart relative", "cross-encoder",
            "checkpoints and resume", "kept weights", "part 1", "runs in worker processes", "optuna trial",
            "pretrained view", "ensemble and blend", "prediction files", "peer qqp", "peer sts"} <= set(names)
    for name in names:
        assert f"ok {name} (" in out, name
    assert f"all {len(names)} paths ran on cpu" in out


def test_a_lease_runs_the_smoke_step_once_a_commit_and_the_benchmarks_once_a_gpu_kind(tmp_path):
    """run.sh on a stand-in Python that only logs what it is asked (a GPU named "Fake GPU"): the first
    lease runs the smoke step and the benchmarks and notes both in runs/gpu-state; the next lease, sent
    those notes, skips both; a lease at another commit runs the smoke step again, not the benchmarks."""
    import shutil
    import subprocess

    tree = tmp_path / "tree"
    (tree / "scripts" / "gpu").mkdir(parents=True)
    for name in ("run.sh", "jobs.txt"):
        shutil.copy(paths.PROJECT_ROOT / "scripts" / "gpu" / name, tree / "scripts" / "gpu" / name)
    bundle_dir = tree / ".gpu"
    bundle_dir.mkdir()
    for part in ("data", "checkpoint"):  # what run.sh unpacks: empty here
        (tmp_path / part).mkdir()
        subprocess.run(["tar", "-cJf", str(bundle_dir / f"{part}.tar.xz"), "-C", str(tmp_path), part],
                       check=True)
    calls = tmp_path / "calls.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n'
                      'case "$*" in *get_device_name*) echo "Fake GPU";; esac\nexit 0\n')
    python.chmod(0o755)

    def lease(commit: str) -> str:
        (bundle_dir / "commit").write_text(f"{commit}\nclean\n")
        out = tmp_path / f"out-{commit}-{len(list(tmp_path.glob('out-*')))}"
        env = {**os.environ, "PYTHON": str(python), "OUT": str(out), "MINBERT_GPU_JOBS": "peer"}
        subprocess.run(["bash", str(tree / "scripts" / "gpu" / "run.sh")], env=env, check=True,
                       capture_output=True)
        with tarfile.open(out / "minbert-full.tar.gz") as tar:  # what receive.py and bundle.py carry over
            notes = [m for m in tar.getmembers() if m.name.startswith("runs/gpu-state/") and m.isfile()]
            (bundle_dir / "state").mkdir(exist_ok=True)
            for member in notes:
                (bundle_dir / "state" / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        return (out / "log.txt").read_text()

    first = lease("aaa111")
    assert "smoke step skipped" not in first and "benchmarks skipped" not in first
    assert sorted(p.name for p in (bundle_dir / "state").iterdir()) == ["benchmarks-Fake-GPU", "smoke-aaa111"]
    calls.write_text("")
    second = lease("aaa111")
    assert "smoke step skipped: it passed at this commit" in second
    assert "benchmarks skipped: they ran on a Fake-GPU" in second
    assert "smoke.py" not in calls.read_text() and "throughput.py" not in calls.read_text()
    assert "-m minbert peer --profile full -p resume true" in calls.read_text()  # the job itself runs
    third = lease("bbb222")  # a new commit: the smoke step again, not the benchmarks
    assert "smoke step skipped" not in third and "benchmarks skipped" in third
