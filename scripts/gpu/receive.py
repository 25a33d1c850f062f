"""Bring a GPU run home: unpack the archive scripts/gpu/run.sh left, put its results and predictions into
reports/, render each executed notebook there with nbconvert, keep its finished-run files under
runs/finished/ and its notes under runs/gpu-state/ (the next `make gpu-bundle` sends them: the next lease
resumes from the runs and skips the smoke step and benchmarks already done), and rewrite the index and the
README's results section (a change the next bundle does not count as uncommitted source).

    .venv/bin/python scripts/gpu/receive.py FOLDER_OR_ARCHIVE        (or: make gpu-receive FROM=...)

Refuses a dry run's archive (its figures are the first steps only) and an archive whose runs name another
commit than the one checked out here, unless --any-commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from minbert import paths  # noqa: E402
from minbert.records import git_state, load_all  # noqa: E402
from minbert.report.study import write_readme  # noqa: E402
from minbert.runner import render_executed  # noqa: E402


def find_archive(source: Path) -> Path:
    if source.is_file():
        return source
    archives = sorted(source.glob("minbert-*.tar.gz"))
    if len(archives) != 1:
        raise SystemExit(f"error: {source}: expected one minbert-<profile>.tar.gz, found {len(archives)}")
    return archives[0]


def receive(archive: Path, any_commit: bool = False) -> list[Path]:
    if "dry-run" in archive.name:
        raise SystemExit(f"error: {archive.name} is a dry run's: its figures are not results")
    reports = paths.reports_dir()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        unpacked = Path(tmp)
        results = sorted((unpacked / "reports" / "results").glob("*.json"))
        here = git_state()[0]
        for path in results:
            commit = json.loads(path.read_text())["stamp"]["commit"]
            if commit != here and not any_commit:
                raise SystemExit(f"error: {path.name} was run at {commit}, this checkout is {here}: "
                                 "check out that commit first (or pass --any-commit)")
        (reports / "results").mkdir(parents=True, exist_ok=True)
        for path in results:
            shutil.copy2(path, reports / "results" / path.name)
        for folder in sorted((unpacked / "reports" / "predictions").glob("*")):
            target = reports / "predictions" / folder.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder, target)
        finished = sorted((unpacked / "runs" / "finished").glob("*/*.npz"))
        for path in finished:
            target = paths.runs_dir() / "finished" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        if finished:
            print(f"kept {len(finished)} finished runs under {paths.runs_dir() / 'finished'}")
        for path in sorted((unpacked / "runs" / "gpu-state").glob("*")):  # what the next lease may skip
            (paths.runs_dir() / "gpu-state").mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, paths.runs_dir() / "gpu-state" / path.name)
        executed = sorted((unpacked / "runs" / "executed").glob("*.ipynb"))
        killed = [nb for nb in executed if nb.name.startswith(".") or ".part" in nb.name
                  or nb.name.endswith(".failed.ipynb")]
        for nb in killed:  # what a notebook killed mid-run or failed left: nothing to render
            print(f"skipped {nb.name}: a notebook stopped before it finished")
        rendered = [render_executed(nb) for nb in executed if nb not in killed]
    print(f"{len(results)} results files and {len(rendered)} reports from {archive.name}")
    return rendered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the folder the device call's files came back to, or the "
                                                   "archive itself")
    parser.add_argument("--any-commit", action="store_true")
    args = parser.parse_args(argv)
    for html in receive(find_archive(args.source), args.any_commit):
        print(f"rendered {html}")
    print(f"wrote {write_readme(ROOT / 'README.md', load_all(paths.reports_dir() / 'results'))}")


if __name__ == "__main__":
    main()
