"""reports/index.html, and the links every rendered report opens with."""

from __future__ import annotations

import html
from pathlib import Path

from minbert import paths
from minbert.files import atomic_write_text
from minbert.records import Results, load_all
from minbert.report.study import RESUMED, effect_tables, headline, is_resumed, study_summary
from minbert.report.tables import page_html, runs_table, study_table
from minbert.report.wording import quora_caveat


def report_links(notebook: str, profile: str, outputs: bool = True, predictions: bool = True):
    """The links a rendered report (reports/<notebook>.<profile>.html) opens with: back to the index,
    and, with `outputs`, to its results file and (for a notebook that writes them, `predictions`) its
    prediction files (paths relative to reports/)."""
    from IPython.display import HTML

    links = [("all reports", "index.html")]
    if outputs:
        links.append(("results file", f"results/{notebook}.{profile}.json"))
    if outputs and predictions:
        links.append(("prediction files", f"predictions/{notebook}.{profile}/"))
    items = " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links)
    return HTML(f"<p>{items}</p>")


def _summary_line(result: Results) -> str:
    """The headline arm's dev scores (the mean over its seeds where it has several) and its stamp."""
    h = headline(result)
    seeds = f" ({h['seeds']})" if h["seeds"] else ""
    minutes = (f"{h['minutes'].removesuffix(RESUMED)} min, resumed from finished runs (each run's training "
               "time is in the report)" if is_resumed(h["minutes"]) else f"{h['minutes']} min")
    return (f"headline run <code>{html.escape(h['run'])}</code>{seeds}: {h['scores']}; "
            f"profile {h['profile']}, {html.escape(h['device'])}, commit {h['commit']}, {minutes}")


def write_index(reports_dir: Path | None = None) -> Path:
    """reports/index.html: a link per rendered report (`<notebook>.<profile>.html`) with its headline run,
    and the results tables."""
    folder = reports_dir or paths.reports_dir()
    every = load_all(folder / "results")
    reports = {tuple(p.stem.rsplit(".", 1)): p for p in folder.glob("[0-9][0-9]_*.*.html")}
    results = {(r.notebook, r.profile): r for r in every if r.runs}
    items = []
    for notebook, profile in sorted(set(reports) | set(results)):
        result, report = results.get((notebook, profile)), reports.get((notebook, profile))
        summary = _summary_line(result) if result else "the project's results, gathered"
        title = f"{notebook} ({profile})"
        link = f'<a href="{report.name}">{title}</a>' if report else f"{title}, results file only (no report)"
        items.append(f"<li>{link}: {summary}</li>")
    body = ["<h1>minbert reports</h1>",
            "<p>A re-implementation and check of a student study of BERT multitask fine-tuning. Dev-set "
            "figures; the study's are theirs (BERT-base), ours come from the embedded MiniLM.</p>",
            "<h2>The study's questions, its answers and ours</h2>",
            "<p>Ours are verdicts from each notebook's paired differences (95% intervals over the dev "
            "items, several seeds): better or worse where the interval excludes 0, every seed agrees and the "
            "difference is at least the smallest effect worth naming (0.01 accuracy, 0.005 Pearson); "
            "negligible where the whole interval lies inside it; inconclusive otherwise. A comparison whose "
            "reference arm did not clear its floors (the majority class, the untrained checkpoint) answers "
            "nothing on that task. Each question is answered by the first of the full, cpu and quick "
            "profiles whose results file can answer it (one saved before the floors cannot answer a "
            "comparison); the quick profile is a first look, too small to learn: its pages say so.</p>",
            f"<p>{html.escape(quora_caveat())}</p>",
            study_summary(every).to_html(index=False, escape=False),
            "<h2>Effects, comparison by comparison</h2>",
            "<p>Each arm minus its notebook's reference, per task: the difference of the seed means, its "
            "paired 95% interval and its verdict; the first rows are the reference against its floors.</p>",
            *[f"<h3>{html.escape(title)}</h3>" + page_html(table)
              for title, table in effect_tables(every).items()],
            "<h2>Reports</h2>",
            "<p>Rendered notebooks; each carries its run stamp (commit, parameters, device, versions).</p>",
            "<ul>", *items, "</ul>"]
    if every:  # every run, of every profile
        body += ["<h2>Our runs</h2>", "<p>One row per arm (the mean over its seeds); the Reports list "
                 "above gives each results file's device, commit and minutes.</p>",
                 page_html(runs_table(every))]
    body += ["<h2>The study's published figures and the state of the art it cites (theirs)</h2>",
             study_table().to_html(na_rep="")]
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>minbert reports</title>"
            "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(folder / "index.html", page)
