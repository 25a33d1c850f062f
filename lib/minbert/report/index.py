"""reports/index.html, and the links every rendered report opens with."""

from __future__ import annotations

import html
import re
from pathlib import Path

from minbert import paths
from minbert.files import atomic_write_text
from minbert.published import REPOSITORY
from minbert.records import Results, load_all
from minbert.report.study import (
    GLOSSARY,
    NOT_ATTEMPTED,
    QUESTIONS,
    RESUMED,
    deviations,
    effect_tables,
    headline,
    is_resumed,
    status_counts,
    study_summary,
)
from minbert.report.tables import page_html, runs_table, study_table
from minbert.report.wording import quora_caveat


def report_links(notebook: str, profile: str, outputs: bool = True, predictions: bool = True):
    """The links a rendered report (reports/<notebook>.<profile>.html) opens with: back to the index,
    and, with `outputs`, to its results file and (for a notebook that writes them, `predictions`) its
    prediction files (paths relative to reports/)."""
    from IPython.display import HTML

    links = [("all reports", "index.html"), ("glossary", "index.html#glossary")]
    if outputs:
        links.append(("results file", f"results/{notebook}.{profile}.json"))
    if outputs and predictions:
        links.append(("prediction files", f"predictions/{notebook}.{profile}/"))
    items = " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links)
    return HTML(f"<p>{items}</p>")


def navigation(notebook: str, profile: str, existing: set[str]) -> list[tuple[str, str]]:
    """The links at the top and bottom of a report: the nearest earlier and later numbered report of the
    same profile among the `existing` file names (a profile rendered in part links only what is there),
    the index and its glossary (hrefs relative to the reports folder)."""
    names = sorted(n for n in (f.removesuffix(f".{profile}.html") for f in existing)
                   if n[:2].isdigit() and n != notebook)
    before = [n for n in names if n < notebook]
    after = [n for n in names if n > notebook]
    links = [("all reports", "index.html"), ("glossary", "index.html#glossary")]
    if before:
        links.insert(0, (f"← {before[-1]}", f"{before[-1]}.{profile}.html"))
    if after:
        links.append((f"{after[0]} →", f"{after[0]}.{profile}.html"))
    return links


_NAV = re.compile(r'<nav class="minbert-nav">.*?</nav>', re.S)


def refresh_navigation(folder: Path) -> list[Path]:
    """Bring the links between rendered reports up to date (`navigation`): a report rendered before its
    neighbour gains the link to it, and none links a report that is not there. Returns the reports
    rewritten."""
    reports = sorted(folder.glob("[0-9][0-9]_*.*.html"))
    changed = []
    for report in reports:
        notebook, profile = report.stem.rsplit(".", 1)
        existing = {p.name for p in reports if p.name.endswith(f".{profile}.html")}
        links = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>'
                        for label, href in navigation(notebook, profile, existing))
        text = report.read_text(encoding="utf-8")
        block = f'<nav class="minbert-nav">{links}</nav>'
        updated = _NAV.sub(lambda _, block=block: block, text)
        if updated != text:
            atomic_write_text(report, updated)
            changed.append(report)
    return changed


def _summary_line(result: Results) -> str:
    """The headline arm's dev scores (the mean over its seeds where it has several) and its stamp."""
    h = headline(result)
    seeds = f" ({h['seeds']})" if h["seeds"] else ""
    minutes = (f"{h['minutes'].removesuffix(RESUMED)} min, resumed from finished runs (each run's training "
               "time is in the report)" if is_resumed(h["minutes"]) else f"{h['minutes']} min")
    return (f"headline run <code>{html.escape(h['run'])}</code>{seeds}: {h['scores']}; "
            f"profile {h['profile']}, {html.escape(h['device'])}, commit {h['commit']}, {minutes}")


def write_index(reports_dir: Path | None = None) -> Path:
    """reports/index.html: first a summary and where our runs differ from the study's, then the study's
    questions with its answers (quoted), ours and the status of each claim, what we did not attempt, each
    comparison's effects, a link per rendered report (`<notebook>.<profile>.html`) with its headline run,
    the runs, the study's figures and a glossary of the words the pages use. Also brings the links between
    the reports up to date (`refresh_navigation`)."""
    folder = reports_dir or paths.reports_dir()
    refresh_navigation(folder)
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
    counts = status_counts(every)
    said = ", ".join(f"{n} {status}" for status, n in counts.items())
    body = ["<h1>minbert: checking a student study of BERT multitask fine-tuning</h1>",
            f"<p>The study: “Language Ninjas” (M.Inf.2202, 2023), <a href=\"{REPOSITORY}\">{REPOSITORY}</a>; "
            "its figures and sentences below are quoted from its README. Ours re-implement its BERT, "
            "optimisers, SMART, PCGrad and attention variants and ask its questions again on a smaller, "
            "sentence-trained checkpoint (all-MiniLM-L6-v2), several seeds an arm and paired intervals. "
            "Dev-set figures throughout; the study's are theirs (BERT-base).</p>",
            f"<p><b>In short:</b> of the {len(QUESTIONS)} questions below, the status of the study's claim "
            f"on our evidence: {html.escape(said)}. Read them with the deviations: what our checkpoint, "
            "data and budget can and cannot show.</p>",
            "<h2>Where our runs differ from the study's</h2>",
            "<p>The study's setting, ours per profile (read from its results files), and what the difference "
            "can change in an answer.</p>",
            page_html(deviations(every)) if every else "<p>No results yet.</p>",
            "<h2>The study's questions, its answers and ours</h2>",
            study_summary(every, reports=folder).to_html(index=False, escape=False),
            "<p>Ours are verdicts from each notebook's paired differences (see the "
            '<a href="#glossary">glossary</a>: verdict, smallest effect, floor); a comparison whose '
            "reference arm did not clear its floors answers nothing on that task. Each question is answered "
            "by the cpu and full profiles where their results files can (both shown where they differ), "
            "else by the first look that can.</p>",
            f"<p>{html.escape(quora_caveat())}</p>",
            "<h2>What we did not attempt</h2>",
            "<ul>", *[f"<li>{html.escape(what)}: {html.escape(why)}.</li>" for what, why in NOT_ATTEMPTED],
            "</ul>",
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
             study_table().to_html(na_rep=""),
             '<h2 id="glossary">Glossary</h2>', "<dl>",
             *[f"<dt>{html.escape(term)}</dt><dd>{html.escape(meaning)}</dd>" for term, meaning in GLOSSARY],
             "</dl>"]
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>minbert reports</title>"
            "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}"
            "dt{font-weight:bold;margin-top:0.4em}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(folder / "index.html", page)
