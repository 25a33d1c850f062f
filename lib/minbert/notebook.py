"""What every numbered notebook does first, in one call: its config, its runtime, its claim and stamp.

`start_notebook(NOTEBOOK, globals())` reads the parameters the notebook was given (papermill's
injected cell, or the values edited in its parameters cell: `minbert.params`), resolves the
device and precision, claims the notebook's outputs (one run at a time), stamps the run and
shows the report's links and the stamp. `write_parameters_cells` keeps every notebook's
parameters cell in step with its config.
"""

from __future__ import annotations

from typing import Any

import nbformat

from minbert import paths
from minbert.config import Settings
from minbert.params import injected_names, notebook_config, parameters_cell
from minbert.records import RunStamp, start_run
from minbert.runtime import Runtime

# The notebooks that write prediction files (their reports link to them); 07 trains nothing at all.
WRITES_PREDICTIONS = frozenset({"01_part1_sst", "02_sbert_baseline", "06_final_bert"})
GATHERS_ONLY = frozenset({"07_results"})


def start_notebook(notebook: str, namespace: dict[str, Any]) -> tuple[Settings, Runtime | None, RunStamp]:
    """The notebook's config, runtime (None for a notebook that trains nothing) and run stamp; shows the
    report's links and the stamp as the page's opening."""
    from IPython.display import display

    from minbert.report.index import report_links

    show_tables_as_pages()
    cfg = notebook_config(notebook, namespace)
    warning = overwrite_warning(notebook, cfg.profile, namespace)
    if warning:
        print(warning)
    if notebook in GATHERS_ONLY:
        runtime, stamp = None, RunStamp.of(cfg, Runtime())
        display(report_links(notebook, cfg.profile, outputs=False))
    else:
        runtime = Runtime.resolve(cfg.device, cfg.precision, cfg.seed)
        stamp = start_run(notebook, cfg, runtime)  # claims this notebook's outputs: one run at a time
        display(report_links(notebook, cfg.profile, predictions=notebook in WRITES_PREDICTIONS))
    display(stamp.table())
    return cfg, runtime, stamp


def overwrite_warning(notebook: str, profile: str, namespace: dict[str, Any]) -> str | None:
    """What a run started by hand (JupyterLab's Run All: no papermill cell) says first when it will
    replace the committed results of its profile; None for a papermill run (`minbert run` chose its
    profile on purpose) and for the smoke profile (its outputs go to runs/)."""
    if injected_names(namespace.get("In", [])) is not None or profile == "smoke":
        return None
    results = paths.reports_dir(profile) / "results" / f"{notebook}.{profile}.json"
    if paths.PROJECT_ROOT not in results.parents:
        return None
    return (f"Note: run by hand on the {profile!r} profile, this notebook replaces the committed "
            f"{results.relative_to(paths.PROJECT_ROOT)} and its report's figures when it finishes. For a "
            "scratch run set profile = \"smoke\" in the parameters cell; `git checkout reports/` undoes it.")


def show_tables_as_pages() -> None:
    """Display every DataFrame through `report.tables.page_html` (three decimals, dashes for missing
    values, stamps in the caption), in the running kernel; nothing outside IPython."""
    import pandas as pd
    from IPython import get_ipython

    from minbert.report.tables import page_html

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, page_html)


def parameters_cell_of(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The cell tagged `parameters` (papermill's), of which a notebook has exactly one."""
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def write_parameters_cells(names: list[str]) -> list[str]:
    """Rewrite each notebook's parameters cell from its config (`params.parameters_cell`); returns the
    notebooks whose cell changed."""
    changed = []
    for name in names:
        path = paths.notebooks_dir() / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        cell = parameters_cell_of(notebook)
        source = parameters_cell(name)
        if cell.source != source:
            cell.source = source
            nbformat.write(notebook, path)
            changed.append(name)
    return changed
