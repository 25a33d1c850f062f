"""The tables the reports show: a comparison's arms and their scores, differences, budgets, what ran
inside the runs, the results table across notebooks. Ours and theirs never share a column: the study's
figures (BERT-base, its data) and the state of the art it cites are a separate, labelled table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from minbert import tasks
from minbert.arms import ARMS, Arm
from minbert.comparison import Comparison, Difference, cannot_answer, signed
from minbert.epochs import Epoch
from minbert.evaluation import margin_of_error
from minbert.published import README_ROWS, STATE_OF_THE_ART, STUDY_FIGURES, SWAP_NOTE, SWAPPED
from minbert.records import Results, RunRecord
from minbert.report.study import wall_minutes


def metric_labels() -> dict[str, str]:
    """The multitask tasks' metric keys and their labels ("sst_acc" -> "SST acc"), read when called."""
    return {tasks.get(t).metric: tasks.get(t).metric_label for t in tasks.MULTITASK}


# Columns that, where every row has the same value, say where a table's runs ran, not how they differ:
# shown once, in the caption.
STAMP_COLUMNS = ("device", "commit", "precision", "profile")


def _is_duration(column: object) -> bool:
    name = " ".join(map(str, column)) if isinstance(column, tuple) else str(column)
    return "seconds" in name or "minutes" in name


def _number(value: object) -> object:
    """A float at three decimals, or in scientific notation where three decimals would show 0.000
    (a parity check's 2e-06); anything else as it is."""
    if not isinstance(value, float) or pd.isna(value):
        return value
    return f"{value:.1e}" if 0 < abs(value) < 5e-4 else f"{value:.3f}"


def _cell_format(column: object, values: pd.Series) -> str | Callable[[object], object]:
    """How a page prints a column: durations and counts as whole numbers (a count turns float where
    a floor row leaves it empty: seeds, examples, steps), other numbers at three decimals."""
    if values.dtype == object:
        return _number
    present = values.dropna()
    whole = values.isna().any() and bool((present == present.round()).all())
    return "{:,.0f}" if _is_duration(column) or whole else _number


def row_label(value: object) -> object:
    """A row label as a page prints it: numbers like the cells (04's perturbation sizes 0.003 and
    1.0e-05, not pandas' 0.003000 and 0.000010), a dash where there is none. Tables shown as a
    Styler of their own (04's probe) format their index with it too."""
    return "–" if pd.isna(value) else _number(value)


WRAP_LONGER_THAN = 30  # characters: longer text cells may wrap (05's study rows, the skipped rows)


def wrapping(styler: Styler, columns: list) -> Styler:
    """Let these columns' cells wrap: a page keeps cells on one line (for mean ± spread), so long text
    would otherwise push the columns after it off a 1280-px page."""
    if not columns:
        return styler
    return styler.set_properties(subset=columns, **{"white-space": "normal", "overflow-wrap": "anywhere",
                                                    "min-width": "10em"})


def page_html(table: pd.DataFrame) -> str:
    """A table as a report page shows it: numbers at three decimals, row labels alike (durations and
    counts as whole numbers, values too small for three decimals in scientific notation), a dash where
    there is no value, a column of one repeated stamp value (device, commit) said once in the caption,
    and columns of long text allowed to wrap. Every notebook displays its DataFrames through this
    (`start_notebook`)."""
    same = [c for c in table.columns if str(c) in STAMP_COLUMNS and len(table) > 1
            and table[c].astype(str).nunique() == 1]
    caption = "; ".join(f"{c}: {table[c].iloc[0]}" for c in same)
    shown = table.drop(columns=same)
    formats = {c: _cell_format(c, shown[c]) for c in shown.columns
               if pd.api.types.is_float_dtype(shown[c]) or shown[c].dtype == object}
    uuid = hashlib.sha1(shown.to_csv().encode()).hexdigest()[:8]  # stable ids: the same table, the same page
    styler = shown.style.set_uuid(uuid).format(formats, na_rep="–")
    styler = styler.format_index(row_label, axis=0)
    prose = [c for c in shown.columns if (shown[c].dtype == object or pd.api.types.is_string_dtype(shown[c]))
             and shown[c].map(lambda v: len(v) if isinstance(v, str) else 0).max() > WRAP_LONGER_THAN]
    styler = wrapping(styler, prose)
    if caption:
        styler = styler.set_caption(f"all rows: {caption}")
    return styler.to_html()


def arms_table(names: list[str] | None = None, table: dict[str, Arm] = ARMS,
               mode: str = "bi-encoder") -> pd.DataFrame:
    """A comparison's arms as `minbert.arms` defines them (the training arms by default): what each
    does, the knobs it changes over the notebook's settings, and the study's row for it (theirs)."""
    rows = [{"arm": arm.name, "what it does": arm.summary,
             "knobs it sets": ", ".join(f"{k}={v}" for k, v in arm.settings.items()) or "-",
             "study row (theirs)": arm.row_for(mode) or "-"}
            for arm in table.values() if names is None or arm.name in names]
    return pd.DataFrame(rows).set_index("arm")


def data_table(summaries: dict[str, dict], splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The data a notebook used, one row per (data set, task, split): source file, rows, skipped rows."""
    rows = [{"data": which, "task": task, "split": split, **info}
            for which, summary in summaries.items() for task, by_split in summary.items()
            for split, info in by_split.items() if splits is None or split in splits]
    return pd.DataFrame(rows).set_index(["data", "task", "split"])


def multitask_table(runs: list[RunRecord], study_rows: dict[str, str | None],
                    key: str = "arm") -> pd.DataFrame:
    """Our dev scores per run beside the study's figure for the same idea (labelled as theirs);
    `study_rows` maps each run's `key` attribute (its arm by default, or its name) to the study's row.
    An ensemble has no best epoch of its own (its record says 0): a dash there."""
    rows = []
    for run in runs:
        study_row = study_rows.get(getattr(run, key) or run.name)
        theirs = STUDY_FIGURES.get(study_row, (None, None, None))
        sizes = run.train_sizes or {}
        scores = {label: run.dev.get(metric) for metric, label in metric_labels().items()}
        rows.append({"run": run.name, **scores,
                     "mean": run.mean, "held-out mean": run.heldout_mean,
                     "best epoch": run.best_epoch or None,
                     "seconds": round(run.seconds),
                     "train sst/qqp/sts": "/".join(str(sizes.get(t, "?")) for t in tasks.MULTITASK),
                     "parameters": run.parameters, "study row (theirs)": study_row,
                     "study SST": theirs[0], "study QQP": theirs[1], "study STS": theirs[2]})
    return pd.DataFrame(rows).set_index("run")


def checked_on(run: RunRecord) -> str:
    """What each epoch of a run was scored on: "held-out" (rows carved from train), or "dev" for runs
    without them (`Epoch.checked_loss` reads the matching loss)."""
    return "held-out" if run.epochs and run.epochs[0].heldout_mean is not None else "dev"


def overfitting_table(runs: list[RunRecord], names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per run and task at the last epoch: train loss, held-out loss (dev for runs without held-out
    rows) and their gap, and how much the held-out loss rose from its lowest epoch: the signs of
    overfitting, in numbers."""
    rows = []
    for run in runs:
        label, epochs = checked_on(run), run.epochs
        last = epochs[-1]
        row = {"run": run.name, "epochs": last.epoch}
        for task in names or tasks.MULTITASK:
            losses = [e.checked_loss(task) for e in epochs]
            row[f"{task} train"] = last.train_loss[task]
            row[f"{task} {label}"] = losses[-1]
            row[f"{task} gap"] = losses[-1] - last.train_loss[task]
            row[f"{task} {label} rise"] = losses[-1] - min(losses)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def examples_view(table: pd.DataFrame):
    """An examples table (`analysis.examples_table` rows) as a page shows it: sentences read left to
    right (pandas right-aligns every cell) and wrap, ids stay whole, scores to 3 digits, no row numbers."""
    text = list(table.select_dtypes(exclude=["number", "bool"]).columns)
    styler = (table.style.hide(axis="index").format(precision=3)
              .set_properties(subset=text, **{"text-align": "left"}))
    return wrapping(styler, [c for c in text if c != "id"])


def comparison_table(comparison: Comparison, study_rows: dict[str, str | None] | None = None) -> pd.DataFrame:
    """One row per arm: each task's dev score as mean ± standard deviation over its seeds, the
    held-out mean it is selected on, and its budget per run (examples, optimizer steps, seconds),
    so a reader sees that the arms had the same budget; then one row per floor (the majority class,
    the untrained checkpoint) scored on the same dev items, which the reference arm must clear."""
    rows = []
    for arm, runs in comparison.runs.items():
        row: dict = {"arm": arm, "seeds": len(runs)}
        for metric, label in metric_labels().items():
            scores = [r.dev[metric] for r in runs if metric in r.dev]
            if scores:
                spread = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
                row[label] = f"{np.mean(scores):.3f} ± {spread:.3f}"
        row["mean"] = round(float(np.mean([r.mean for r in runs])), 3)
        held = [r.heldout_mean for r in runs if r.heldout]
        row["held-out mean"] = round(float(np.mean(held)), 3) if held else None
        row["dev rows"] = dev_rows(runs[0])
        row["examples"] = runs[0].examples
        row["steps"] = runs[0].steps
        row["seconds"] = round(float(np.mean([r.seconds for r in runs])))
        if study_rows is not None:
            study_row = study_rows.get(arm) or "-"
            theirs = STUDY_FIGURES.get(study_row, (None, None, None))
            row.update({"study row (theirs)": study_row, "study SST": theirs[0], "study QQP": theirs[1],
                        "study STS": theirs[2]})
        rows.append(row)
    for name, scores in comparison.floor_scores().items():
        rows.append({"arm": f"floor: {name}",
                     **{tasks.get(task).metric_label: f"{score:.3f}" for task, score in scores.items()}})
    return pd.DataFrame(rows).set_index("arm")


def dev_rows(run: RunRecord) -> str | None:
    """The dev rows each task's score is on, sst/qqp/sts (fewer than the file where a seeded subset
    was used for speed), or None for records that predate counting them."""
    if not run.dev_sizes:
        return None
    return "/".join(f"{run.dev_sizes[t]:,}" for t in tasks.MULTITASK if t in run.dev_sizes)


def differences_table(differences: list[Difference], answers: dict[str, bool] | None = None) -> pd.DataFrame:
    """Each arm minus the reference per task: the seed-mean difference, its paired 95% bootstrap
    interval over the seeds and the dev items, the difference by seed, and its verdict
    (`comparison.Difference`); on a task where the reference did not learn (`answers`, from
    `comparison.learned`) the verdict column says so instead of naming a difference the findings do
    not name."""
    def said(d: Difference) -> str:
        if cannot_answer(d, answers):
            return "not answered (the reference did not learn)"
        return d.verdict + (f" ({d.why_inconclusive})" if d.why_inconclusive else "")

    rows = [{"arm": d.arm, "task": tasks.get(d.task).metric_label, "Δ": signed(d.estimate),
             "95% interval": f"[{signed(d.low)}, {signed(d.high)}]",
             "by seed": " ".join(signed(x) for x in d.seed_differences), "dev items": d.items,
             "verdict": said(d)}
            for d in differences]
    columns = ["arm", "task", "Δ", "95% interval", "by seed", "dev items", "verdict"]
    return pd.DataFrame(rows, columns=columns).set_index(["arm", "task"])  # columns even when empty


def margins_table(margins: list[Difference]) -> pd.DataFrame:
    """Whether the reference arm learned: per floor and task, the reference's seed-mean dev score minus
    the floor's on the same items, its paired 95% interval, and whether it clears the floor (better by
    at least the smallest effect worth naming)."""
    rows = [{"floor": d.reference, "task": tasks.get(d.task).metric_label, "reference": d.arm,
             "margin": signed(d.estimate), "95% interval": f"[{signed(d.low)}, {signed(d.high)}]",
             "by seed": " ".join(signed(x) for x in d.seed_differences),
             "cleared": "yes" if d.verdict == "better" else "no"} for d in margins]
    columns = ["floor", "task", "reference", "margin", "95% interval", "by seed", "cleared"]
    return pd.DataFrame(rows, columns=columns).set_index(["floor", "task"])


def candidates_table(candidates: dict[str, dict], kept: str | None) -> pd.DataFrame:
    """The ways of assembling the final model side by side: members, held-out scores (what chose the
    one kept) and dev scores (reported only), each with the mean of the tasks."""
    rows = {}
    for name, found in candidates.items():
        row = {"kept": "yes" if name == kept else "", "members": len(found["members"])}
        for split in ("heldout", "dev"):
            label = "held-out" if split == "heldout" else "dev"
            row |= {f"{label} {task.upper()}": found[split][key] for task, key in tasks.metrics().items()}
            row[f"{label} mean"] = tasks.mean_score(found[split])
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("ensemble")


def blend_table(blend: dict) -> pd.DataFrame:
    """The pretrained view's blend per task: the view's weight (chosen on the held-out rows) and the
    held-out and dev scores of the final model without the view, of the view alone, and with it. Its
    seconds (fitting the view, scoring it) are in `blend["seconds"]`."""
    weights = {tasks.get(task).metric_label: w for task, w in blend["weights"].items()}
    rows = {("weight of the view", ""): weights}
    for split in ("heldout", "dev"):
        for which, found in blend[split].items():
            rows[("held-out" if split == "heldout" else "dev", which)] = {
                tasks.get(task).metric_label: found[key] for task, key in tasks.metrics().items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["rows", "model"])


def runs_table(results: list[Results]) -> pd.DataFrame:
    """One row per arm (the runs of one `group`, its seeds; a run without a group is its own row) of
    every notebook and profile: its mean dev scores over the seeds (blank where a task was not run),
    the mean of those it has, the held-out mean, how many seeds, its profile, and "yes" where it is its
    file's headline run (`Results.headline`). Where a notebook has
    results of several profiles, each row's name carries its profile. The device and commit are the
    same for every row of one results file, so `stamps_table` gives them once per file: as columns here
    they varied between profiles and pushed the table past the page."""
    profiles: dict[str, set[str]] = {}
    for result in results:
        profiles.setdefault(result.notebook, set()).add(result.profile)
    rows = []
    for result in results:
        several = len(profiles[result.notebook]) > 1  # e.g. a cpu run here and a full one on a GPU
        top = result.headline() if result.runs else None
        groups: dict[str, list[RunRecord]] = {}
        for run in result.runs:
            groups.setdefault(run.group or run.name, []).append(run)
        for group, runs in groups.items():
            name = f"{group} ({result.profile})" if several else group
            scores = {label: _mean_or_none([r.dev.get(metric) for r in runs])
                      for metric, label in metric_labels().items()}
            rows.append({"notebook": result.notebook, "run": name, **scores,
                         "mean": _mean_or_none([r.mean if r.dev else None for r in runs]),
                         "held-out mean": _mean_or_none([r.heldout_mean for r in runs]),
                         "seeds": _seeds(runs), "dev rows": dev_rows(runs[0]), "profile": result.profile,
                         "headline": "yes" if any(r is top for r in runs) else ""})
    columns = ["notebook", "run", *metric_labels().values(), "mean", "held-out mean", "seeds", "dev rows",
               "profile", "headline"]
    return pd.DataFrame(rows, columns=columns).set_index(["notebook", "run"])  # columns even when empty


def stamps_table(results: list[Results]) -> pd.DataFrame:
    """Where each results file of `runs_table` comes from: one row per notebook and profile with the
    stamp's device, commit ("+" for uncommitted changes) and wall minutes (as the README gives them)."""
    rows = [{"notebook": r.notebook, "profile": r.profile, "device": r.stamp["device"],
             "commit": _short_commit(r.stamp), "minutes (wall)": wall_minutes(r.stamp)}
            for r in results if r.runs]
    return pd.DataFrame(rows, columns=["notebook", "profile", "device", "commit", "minutes (wall)"]
                        ).set_index(["notebook", "profile"])


def _seeds(runs: list[RunRecord]) -> str:
    """How many seeds a row stands for: its runs, or an ensemble's members (one record of several runs)."""
    members = runs[0].config.get("ensemble") if len(runs) == 1 else None
    return f"{len(members)} (ensemble)" if members else str(len(runs))


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _short_commit(stamp: dict) -> str:
    return (stamp["commit"] or "?")[:7] + ("+" if stamp["dirty"] else "")


def study_table() -> pd.DataFrame:
    """The study's published dev figures and the state of the art it cites (theirs), each row with its
    label in the study's README and, where one of its tables swaps two columns, a note."""
    rows = [{"model (theirs)": name, "SST acc": sst, "QQP acc": qqp, "STS pearson": sts,
             "in its README": " / ".join(README_ROWS[name]), "note": SWAP_NOTE if name in SWAPPED else ""}
            for name, (sst, qqp, sts) in STUDY_FIGURES.items()]
    rows.append({"model (theirs)": "state of the art cited by the study", "SST acc": STATE_OF_THE_ART[0],
                 "QQP acc": STATE_OF_THE_ART[1], "STS pearson": STATE_OF_THE_ART[2],
                 "in its README": "State-of-the-Art", "note": ""})
    return pd.DataFrame(rows).set_index("model (theirs)")


def headline_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Each results file's headline run (`records.headline`), without the marker column."""
    return table.loc[table["headline"] == "yes"].drop(columns="headline")


def _epoch_mean(runs: list[RunRecord], read: Callable[[Epoch], float | None]) -> float | None:
    """The mean of one value of an epoch over every epoch of every run that records it."""
    values = [v for r in runs for e in r.epochs if (v := read(e)) is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def smart_terms_table(comparison: Comparison, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per arm and task, means over seeds and epochs: the task loss, the SMART term trained on, and the
    same term at zero perturbation (dropout alone); their difference is what the perturbation adds."""
    rows = []
    for arm, runs in comparison.runs.items():
        for task in names or tasks.MULTITASK:
            term = _epoch_mean(runs, lambda e, t=task: e.smart_loss.get(t))
            control = _epoch_mean(runs, lambda e, t=task: e.smart_control.get(t))
            if term is None:
                continue
            loss = _epoch_mean(runs, lambda e, t=task: e.train_loss.get(t))
            rows.append({"arm": arm, "task": task.upper(), "task loss": loss,
                         "SMART term": term, "at zero perturbation": control,
                         "added by the perturbation": term - control if control is not None else None})
    columns = ["arm", "task", "task loss", "SMART term", "at zero perturbation", "added by the perturbation"]
    return pd.DataFrame(rows, columns=columns).set_index(["arm", "task"])


def _rho(run: RunRecord) -> str:
    """The rho a Sophia run stepped with (each task's, with one optimizer per task)."""
    own = {t: s["rho"] for t, s in (run.config.get("task_settings") or {}).items() if "rho" in s}
    if run.config.get("task_optimizers") and own:
        return ", ".join(f"{t} {v:.3g}" for t, v in own.items())
    return f"{run.config.get('rho', float('nan')):.3g}"


def sophia_regime_table(comparison: Comparison) -> pd.DataFrame:
    """Per Sophia arm, means over seeds and epochs: the share of coordinate steps clipped to
    lr * sign(m) (near 1: sign descent; lower: Newton-like steps where the Hessian estimate is
    trusted), the same among coordinates with an estimate (h > 0; rows no refresh reached always
    clip), the Hessian estimate's mean as the step used it, and the rho at which half the estimated
    coordinates would step unclipped beside the run's own rho (far above it: sign descent)."""
    def sophia(name: str) -> Callable[[Epoch], float | None]:
        return lambda e: e.sophia.get(name)

    rows = [{"arm": arm, "clipped share": _epoch_mean(runs, sophia("clipped_share")),
             "clipped share where h > 0": _epoch_mean(runs, sophia("clipped_share_estimated")),
             "Hessian mean": _epoch_mean(runs, sophia("hessian_mean")),
             "rho for half unclipped": _epoch_mean(runs, sophia("rho_half")),
             "rho": _rho(runs[0])}
            for arm, runs in comparison.runs.items()
            if _epoch_mean(runs, sophia("clipped_share")) is not None]
    columns = ["arm", "clipped share", "clipped share where h > 0", "Hessian mean", "rho for half unclipped",
               "rho"]
    return pd.DataFrame(rows, columns=columns).set_index("arm")


def variant_movement_table(comparison: Comparison) -> pd.DataFrame:
    """Per attention variant with parameters of its own, how far each moved from its start
    (||theta - start|| / ||start||, where start is standard attention): one column per layer,
    means over the seeds."""
    rows = []
    for arm, runs in comparison.runs.items():
        moved = [r.variant_movement for r in runs if r.variant_movement]
        if not moved:
            continue
        names = [k for k in moved[0][0] if k != "layer"]
        for name in names:
            rows.append({"variant": arm, "parameter": name,
                         **{f"layer {layer['layer']}": float(np.mean([m[i][name] for m in moved]))
                            for i, layer in enumerate(moved[0])}})
    return pd.DataFrame(rows).set_index(["variant", "parameter"]) if rows else pd.DataFrame()


def loss_gaps(comparison: Comparison, names: tuple[str, ...] | None = None) -> pd.Series:
    """Per arm, the held-out (dev without held-out rows) minus train loss at the last epoch, averaged
    over the tasks and seeds: larger where an arm fits its training data better than new data."""
    gaps = {}
    for arm, runs in comparison.runs.items():
        table = overfitting_table(runs, names)
        gaps[arm] = float(table[[f"{task} gap" for task in names or tasks.MULTITASK]].to_numpy().mean())
    return pd.Series(gaps, name="loss gap")


def peer_table(ours: dict[str, RunRecord], peer: Results | None,
               differences: list[Difference]) -> pd.DataFrame:
    """Per task, whose each row is: the study's final BERT-base (theirs), the peer (transformers' own
    fine-tune of the same weights, one task at a time) and each of `ours` (label -> record): the dev
    score with its 95% margin, the dev rows, the training seconds; then ours minus the peer with its
    paired interval."""
    theirs = STUDY_FIGURES["BERT-Final"]
    rows = []
    for k, task in enumerate(tasks.MULTITASK):
        spec = tasks.get(task)
        rows.append({"task": spec.metric_label, "model": "study BERT-Final (theirs; BERT-base, all of QQP)",
                     "dev": f"{theirs[k]:.3f}", "dev rows": "", "seconds": ""})
        entries = []
        if peer is not None:
            run = next((r for r in peer.runs if spec.metric in r.dev), None)
            if run is not None:
                entries.append(("peer: transformers, one run per task (same weights, same rows)", run))
        entries += [(label, record) for label, record in ours.items()]
        for label, record in entries:
            score, n = record.dev[spec.metric], (record.dev_sizes or {}).get(task)
            margin = f" ± {margin_of_error(spec.metric, score, n):.3f}" if n and n >= 4 else ""
            rows.append({"task": spec.metric_label, "model": label, "dev": f"{score:.3f}{margin}",
                         "dev rows": f"{n:,}" if n else "", "seconds": f"{record.seconds:,.0f}"})
        for d in differences:
            if d.task == task:
                rows.append({"task": spec.metric_label, "model": f"{d.arm} − peer (paired 95% interval)",
                             "dev": d.span,
                             "dev rows": f"{d.items:,}", "seconds": ""})
    return pd.DataFrame(rows).set_index(["task", "model"])
