"""`python -m minbert ...`: fetch the data, run one notebook or the whole report, or write the README's
results section."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from pathlib import Path

from minbert import paths
from minbert.config import DEFAULT_PROFILE, PROFILES, ConfigError
from minbert.data import DEFAULT_URL_BASE, DataError, fetch_data
from minbert.params import dry_run_overrides, parse_override
from minbert.records import OutputError, load_all
from minbert.report.study import ReadmeSectionError, write_readme
from minbert.runlock import RunLockedError
from minbert.runner import NotebookRunError, notebook_names, render_executed, run_notebook


def _fetch(args: argparse.Namespace) -> None:
    fetched = fetch_data(args.dest, args.mirror, args.url_base or None)
    print(f"{len(fetched)} data files ready in {args.dest or paths.data_dir()}")


def _overrides(args: argparse.Namespace, notebook: str) -> dict:
    """-p values over, with --dry-run, the smoke profile's budgets (`params.dry_run_overrides`). The
    profile is not one of them: it picks the params file, the lock and where the outputs go, so it is
    chosen with --profile alone (papermill's `-p profile smoke` is the notebook's way)."""
    if "profile" in dict(args.param):
        value = dict(args.param)["profile"]
        raise ConfigError(f"-p profile {value}: the profile is chosen with --profile (it picks the params "
                          f"file, the lock and the reports a run writes); use --profile {value}")
    dry = dry_run_overrides(notebook) if args.dry_run else {}
    return {**dry, **{key: parse_override(value) for key, value in args.param}}


def _run(args: argparse.Namespace) -> None:
    run_notebook(args.notebook, args.profile, _overrides(args, args.notebook), args.timeout,
                 render=not args.no_render)


def _render(args: argparse.Namespace) -> None:
    for executed in args.executed:
        print(f"rendered {render_executed(executed)}")


def _resumable(notebook: str) -> bool:
    """Whether the notebook keeps its finished runs under runs/ and can continue from them."""
    from minbert.notebook_settings import NOTEBOOK_CONFIGS

    return "resume" in getattr(NOTEBOOK_CONFIGS.get(notebook), "model_fields", {})


def _report(args: argparse.Namespace) -> None:
    failures = []
    for name in notebook_names():
        try:
            run_notebook(name, args.profile, {"resume": True} if args.resume and _resumable(name) else None,
                         timeout_s=args.timeout)
        except (NotebookRunError, ConfigError, RunLockedError) as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            failures.append(name)
    if failures:
        raise SystemExit(f"{len(failures)} notebook(s) failed: {', '.join(failures)}")


def _peer(args: argparse.Namespace) -> None:
    from minbert.peer import record_peer

    print(f"wrote {record_peer(args.profile, _overrides(args, 'peer_transformers'))}")


def _parameters_cells(args: argparse.Namespace) -> None:
    from minbert.notebook import write_parameters_cells

    changed = write_parameters_cells(notebook_names())
    print(f"rewrote the parameters cell of {', '.join(changed)}" if changed else "every parameters cell is "
          "in step with its config")


def _index(args: argparse.Namespace) -> None:
    from minbert.report.index import write_index

    print(f"wrote {write_index()} from {paths.reports_dir() / 'results'}")


def _readme(args: argparse.Namespace) -> None:
    results_dir = args.results or paths.reports_dir() / "results"
    print(f"wrote {write_readme(args.readme, load_all(results_dir))} from {results_dir}")


PROFILE_HELP = "the budget (params/<profile>/): smoke for the tests, cpu the evidence (default), full a GPU's"
DRY_RUN_HELP = ("the profile's recipe on the smoke profile's budgets (rows, seeds, trials): its first steps, "
                "to check a long run before it is sent")


# A value that starts with a minus sign (`-p lr -1e-5`) is a value, not an option: argparse's own pattern
# knows -1 and -0.5 but not numbers with an exponent.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minbert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch-data", help="fill the data folder, checking SHA-256 sums")
    fetch.add_argument("--dest", type=Path, default=None, help="default: data/ or $MINBERT_DATA_DIR")
    fetch.add_argument("--mirror", type=Path, default=None,
                       help="folder with copies; default: ../shared/data/minbert or "
                            "$MINBERT_DATA_MIRROR")
    fetch.add_argument("--url-base", default=DEFAULT_URL_BASE,
                       help="where to download files the mirror lacks ('' for nowhere)")
    fetch.set_defaults(func=_fetch)

    run = sub.add_parser("run", help="execute one notebook with papermill and render its report")
    run.add_argument("notebook", help="e.g. 01_part1_sst")
    run.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help=PROFILE_HELP)
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("KEY", "VALUE"), help="override one parameter (YAML value)")
    run.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    run.add_argument("--no-render", action="store_true",
                     help="execute only (runs/executed/<notebook>.<profile>.ipynb); render it with `render`")
    run.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    run.set_defaults(func=_run)

    render = sub.add_parser("render", help="render notebooks executed elsewhere (`run --no-render`, the GPU "
                                           "run) into reports/ and rewrite the index")
    render.add_argument("executed", type=Path, nargs="+", help="<notebook>.<profile>.ipynb files")
    render.set_defaults(func=_render)

    peer = sub.add_parser("peer", help="fine-tune the same weights with transformers, one task at a time "
                                       "(the peer row of notebook 06), as a recorded run")
    peer.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help=PROFILE_HELP)
    peer.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    peer.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    peer.set_defaults(func=_peer)

    report = sub.add_parser("report", help="run every notebook in order and render reports/")
    report.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help=PROFILE_HELP)
    report.add_argument("--timeout", type=int, default=None)
    report.add_argument("--resume", action="store_true",
                        help="continue each notebook's runs from those finished under runs/ (what a stopped "
                             "report kept), training only the missing ones")
    report.set_defaults(func=_report)
    cells = sub.add_parser("parameters-cells", help="rewrite each notebook's parameters cell from its config "
                                                    "(the knobs papermill lists and takes with -p)")
    cells.set_defaults(func=_parameters_cells)
    index = sub.add_parser("index", help="rewrite reports/index.html from the results files (after a change "
                                         "to how the index words them; no notebook runs)")
    index.set_defaults(func=_index)
    readme = sub.add_parser("readme", help="rewrite the README's results section from the results files")
    readme.add_argument("--readme", type=Path, default=paths.PROJECT_ROOT / "README.md")
    readme.add_argument("--results", type=Path, default=None, help="default: reports/results/")
    readme.set_defaults(func=_readme)
    for command in sub.choices.values():
        command._negative_number_matcher = NEGATIVE_NUMBER  # argparse reads it; no public setting
    return parser


_signals: list[int] = []  # the signal that stopped this process, if one did


def _on_sigterm(signum: int, frame) -> None:
    """`kill` (SIGTERM) stops a run as Ctrl-C does: every `finally` runs, so no partial file is left."""
    _signals.append(signum)
    raise KeyboardInterrupt


def _stopped(args: argparse.Namespace, argv: list[str]) -> str:
    """The one line a stopped command prints: what was kept, and the exact command that continues."""
    again = " ".join(["python -m minbert", *argv])
    if args.command == "run" and _resumable(args.notebook):
        resume = "" if ["resume", "true"] in [list(p) for p in args.param] else " -p resume true"
        return f"stopped: the runs that had finished are kept under runs/; continue with: {again}{resume}"
    if args.command == "report":
        resume = "" if args.resume else " --resume"
        return (f"stopped: the notebooks that had finished kept their reports and every finished run is kept "
                f"under runs/; continue with: {again}{resume}")
    return f"stopped: nothing of this run is kept; run it again with: {again}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signals can be caught
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        args.func(args)
    except (ConfigError, DataError, NotebookRunError, RunLockedError, OutputError,
            ReadmeSectionError) as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        # the notebook client's tasks die with the kernel; asyncio would log each as it is collected
        logging.getLogger("asyncio").disabled = True
        print(_stopped(args, argv), file=sys.stderr)
        raise SystemExit(128 + (_signals[-1] if _signals else signal.SIGINT)) from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
