"""Execute a numbered notebook with papermill and render it to HTML with nbconvert.

Parameters are validated before the kernel starts, so a mistyped key fails in
a second, not after a run. The HTML report replaces the old one only when the
notebook ran through; a failed run leaves the previous report in place. A report
opens with its findings (computed last, shown first) and fetches nothing from the
network: it reads the same from a file with the network off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import papermill

from minbert import paths, runlock
from minbert.config import DEFAULT_PROFILE
from minbert.files import atomic_path, atomic_write_text, remove_partials
from minbert.params import load_config
from minbert.records import ensure_reports_writable
from minbert.report.index import navigation, write_index


class NotebookRunError(RuntimeError):
    """A notebook failed; the message names it and the cell's error."""


def notebook_names() -> list[str]:
    """Every numbered notebook, in order."""
    return sorted(p.stem for p in paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def report_path(notebook: str, profile: str) -> Path:
    """The rendered report of a notebook on a profile: cpu and full reports live side by side."""
    return paths.reports_dir(profile) / f"{notebook}.{profile}.html"


TEMPLATES = Path(__file__).parent / "templates"
FINDINGS_TAG = "findings"  # cells a report shows right after its title
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output that is a live widget


def for_reading(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The executed notebook as its report shows it: the cells tagged `findings` right after the title
    (the notebook computes its conclusions last; a reader wants them first), without the `parameters`
    cell (defaults only: the injected cell and the stamp say what ran), and without saved widget state
    (a page offline cannot run widgets; a static table stands in for them), and so without widget
    outputs either: offline, all that is left of one is its text stand-in (a progress bar frozen at
    0%, a panel's `VBox(...)` repr)."""
    notebook = nbformat.from_dict(notebook)
    cells = [c for c in notebook.cells if "parameters" not in c.metadata.get("tags", [])]
    findings = [c for c in cells if FINDINGS_TAG in c.metadata.get("tags", [])]
    rest = [c for c in cells if FINDINGS_TAG not in c.metadata.get("tags", [])]
    for cell in findings:
        if cell.cell_type == "code":  # the conclusions in words; the code that words them is in the notebook
            cell.metadata["transient"] = {"remove_source": True}  # what nbconvert's templates read
    notebook.cells = rest[:1] + findings + rest[1:]
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in o.get("data", {})]
    return notebook


def render_html(notebook_path: Path, html_path: Path) -> Path:
    """nbconvert's HTML of an executed notebook (`for_reading`) in JupyterLab's look without any script
    from the network (templates/minbert_report): code folded under a "code" toggle, the previous and
    next report of its profile that exist linked (`report.index.navigation`, from the report's name
    `<notebook>.<profile>.html`; `write_index` brings every report's links up to date), written
    atomically."""
    from nbconvert import HTMLExporter  # here, not above: a machine that only executes (the GPU) lacks it

    notebook, _, profile = html_path.name.removesuffix(".html").rpartition(".")
    # no In/Out prompts: the findings move to the top, and an Out[17] above In [1] only confuses
    exporter = HTMLExporter(template_name="minbert_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input_prompt=True, exclude_output_prompt=True)
    existing = {p.name for p in html_path.parent.glob(f"*.{profile}.html")} | {html_path.name}
    body, _ = exporter.from_notebook_node(for_reading(nbformat.read(notebook_path, as_version=4)),
                                          resources={"minbert_nav": navigation(notebook, profile, existing)})
    return atomic_write_text(html_path, body)


@contextmanager
def kernel_log(path: Path) -> Iterator[None]:
    """The kernel's own messages (its start-up warning on every run, a socket error when it is stopped)
    to a log beside the executed notebook instead of the terminal: the kernel inherits this process's
    standard error when it starts. A cell's errors and output are in the notebook either way."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def executed_path(notebook: str, profile: str) -> Path:
    """Where a run leaves the executed notebook (outputs and all) that its report is rendered from."""
    return paths.runs_dir() / "executed" / f"{notebook}.{profile}.ipynb"


def failed_path(notebook: str, profile: str) -> Path:
    """Where a failed run leaves its executed notebook (replaced by the next failure, removed by the next
    success): the error's cell and traceback are in it."""
    return executed_path(notebook, profile).with_suffix(".failed.ipynb")


def executed_identity(executed: Path) -> tuple[str, str]:
    """The numbered notebook and the profile an executed notebook ran, read from papermill's record in
    it (not from its file name, which anyone can give it); refused with the reason where it was not run
    by papermill, is not a numbered notebook, or did not run to the end."""
    try:
        notebook = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as exc:
        raise NotebookRunError(f"{executed}: cannot be read as a notebook ({exc})") from None
    record = notebook.metadata.get("papermill")
    if not record:
        raise NotebookRunError(f"{executed}: no papermill record of how it ran (a notebook run in "
                               "JupyterLab?); run it with `minbert run` or papermill to render it")
    name = Path(record.get("input_path") or "").stem
    if name not in notebook_names():
        raise NotebookRunError(f"{executed}: ran {record.get('input_path')!r}, not one of the numbered "
                               f"notebooks {notebook_names()}")
    unfinished = [c for c in notebook.cells if c.cell_type == "code"
                  and c.metadata.get("papermill", {}).get("status", "completed") != "completed"]
    if record.get("exception") or unfinished:
        raise NotebookRunError(f"{executed}: {name} did not run to the end (it stopped at an error or was "
                               "stopped); there is no report to render")
    profile = (record.get("parameters") or {}).get("profile", DEFAULT_PROFILE)  # the notebooks' own default
    claimed = executed.name.removesuffix(".ipynb")
    if claimed.startswith(f"{name}.") and claimed != f"{name}.{profile}":
        raise NotebookRunError(f"{executed}: its name says profile {claimed.removeprefix(name + '.')!r}, but "
                               f"it ran the {profile!r} profile; its report would replace another's")
    return name, profile


def render_executed(executed: Path) -> Path:
    """The report of a notebook executed elsewhere (`run --no-render`, the GPU run, papermill): rendered
    to the reports of the profile it ran (`executed_identity`) as <notebook>.<profile>.html, and the
    index rewritten."""
    notebook, profile = executed_identity(executed)
    html = render_html(executed, report_path(notebook, profile))
    write_index(ensure_reports_writable(profile))
    return html


def run_notebook(name: str, profile: str = DEFAULT_PROFILE, overrides: dict[str, Any] | None = None,
                 timeout_s: int | None = None, render: bool = True) -> Path:
    """Run notebooks/<name>.ipynb with the profile's parameters; return the HTML report path, or with
    `render=False` (a machine without nbconvert) the executed notebook's, to render later."""
    if name not in notebook_names():
        peer = name == "peer_transformers"
        hint = " (the peer is no notebook: `minbert peer --profile P` runs it)" if peer else ""
        raise NotebookRunError(f"unknown notebook {name!r}{hint}; the notebooks: {notebook_names()}")
    load_config(name, profile, overrides)  # fails here, in a second, on a bad parameter
    params = {**(overrides or {}), "profile": profile}  # the notebook reads the profile's file itself
    source = paths.notebooks_dir() / f"{name}.ipynb"
    reports = ensure_reports_writable(profile)
    executed_dir = executed_path(name, profile).parent
    executed_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(executed_dir, executed_path(name, profile).name)
    started = time.perf_counter()
    # The kernel writes where this process reports; progress bars, useful live in
    # JupyterLab, would only be frozen noise in a rendered report.
    with runlock.holding(name, profile) as claimed, \
            paths.environment(MINBERT_REPORTS_DIR=str(reports), TQDM_DISABLE="1", **claimed), \
            atomic_path(executed_path(name, profile)) as executed:
        try:
            with kernel_log(executed_path(name, profile).with_suffix(".log")):
                papermill.execute_notebook(
                    str(source), str(executed), parameters=params, cwd=str(paths.PROJECT_ROOT),
                    kernel_name="python3", progress_bar=False, execution_timeout=timeout_s)
        except papermill.PapermillExecutionError as exc:
            kept = failed_path(name, profile)
            os.replace(executed, kept)  # the traceback and every output up to it, for reading
            raise NotebookRunError(
                f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} (the executed "
                f"notebook, traceback and all: {kept})"
            ) from None
        failed_path(name, profile).unlink(missing_ok=True)  # an earlier failure's notebook is out of date
        if not render:
            print(f"{name}: executed in {time.perf_counter() - started:.0f} s (not rendered)")
            return executed_path(name, profile)
        try:
            html = render_html(executed, report_path(name, profile))
        except OSError as exc:
            raise NotebookRunError(
                f"notebook {name} ran through and wrote its results file and predictions, but its report "
                f"{report_path(name, profile)} could not be written ({exc.strerror or exc}); the previous "
                "report, if any, is unchanged: free space and run it again") from None
    write_index(reports)
    print(f"{name}: rendered {html} in {time.perf_counter() - started:.0f} s")
    return html
