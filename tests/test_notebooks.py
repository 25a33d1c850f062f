"""Notebook runs end to end with papermill on the smoke profile, and the CLI around them."""

from __future__ import annotations

import json
import re

import pytest

from minbert import cli
from minbert.paths import PROJECT_ROOT
from minbert.published import REPOSITORY
from minbert.runner import notebook_names

# A script or style sheet a page would fetch from elsewhere (links a reader may follow are fine).
FETCHED = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.IGNORECASE)


# A table cell or row label printed at five or more decimals: pandas' default (0.003000), which a page's
# tables never show (minbert.report.tables: three decimals, or scientific notation below them).
LONG_DECIMALS = re.compile(r"<t[dh]\b[^>]*>\s*[-+]?\d+\.\d{5,}\s*</t[dh]>")


def check_clean_report(page) -> None:
    """A rendered report holds no stderr output (warnings, logs), fetches nothing from the network,
    shows no saved widget state (offline it would render as nothing) and prints no number at pandas'
    six decimals (a Styler of its own bypasses the page's formatter: 04's probe table did)."""
    text = page.read_text()
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in text, page.name
    assert not FETCHED.search(text), f"{page.name} fetches {FETCHED.search(text).group(0)}"
    assert "application/vnd.jupyter.widget-state+json" not in text, page.name
    assert "step/s]" not in text and "VBox(children=" not in text, page.name  # no widget's text stand-in
    long = LONG_DECIMALS.findall(text)
    assert not long, f"{page.name} prints {long[:3]}"


def test_every_committed_report_is_clean():
    """The reports in the repository, as readers get them: no stderr, nothing fetched from the network,
    no saved widget state, no six-decimal numbers; the index fetches nothing either."""
    pages = sorted((PROJECT_ROOT / "reports").glob("*.html"))
    assert any(p.name == "index.html" for p in pages) and len(pages) > 1
    for page in pages:
        if page.name == "index.html":
            assert not FETCHED.search(page.read_text()), page.name
        else:
            check_clean_report(page)


def test_the_committed_reports_of_a_profile_come_from_one_clean_commit():
    """A profile is rendered at one commit of a clean tree, so its pages compare like with like: every
    results file of the profile carries that commit, and every page of the profile (07's too) shows it.
    Archived results (reports/results/archive/) are older runs a page cites on purpose."""
    folder = PROJECT_ROOT / "reports"
    commits: dict[str, set[str]] = {}
    for path in (folder / "results").glob("*.json"):
        stamp = json.loads(path.read_text())["stamp"]
        assert not stamp["dirty"], f"{path.name} was run on a changed tree"
        commits.setdefault(path.stem.rsplit(".", 1)[1], set()).add(stamp["commit"])
    assert commits
    for profile, seen in commits.items():
        assert len(seen) == 1, f"the {profile} profile's results come from {sorted(c[:7] for c in seen)}"
        for page in folder.glob(f"*.{profile}.html"):
            assert next(iter(seen)) in page.read_text(), f"{page.name} is not from the {profile} commit"


def dead_links(folder) -> list[str]:
    """Every link of the pages in `folder` that points at nothing: a local file or folder that is not
    there, or an anchor (#id) that no element of its page carries."""
    import re
    from pathlib import Path

    dead = []
    for page in sorted(Path(folder).glob("*.html")):
        for href in re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8")):
            if href.startswith(("http://", "https://", "mailto:", "data:")):
                continue
            target, _, anchor = href.partition("#")
            path = page.parent / target if target else page
            if not path.exists():
                dead.append(f"{page.name}: {href}")
            elif anchor and path.suffix == ".html" and f'id="{anchor}"' not in path.read_text("utf-8"):
                dead.append(f"{page.name}: {href} (no such anchor)")
    return dead


@pytest.fixture
def report_dirs(tmp_path, monkeypatch, data_dir):
    """Reports and runs in a temporary folder; afterwards, every report the test rendered must be clean."""
    monkeypatch.setenv("MINBERT_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "reports"
    for page in (tmp_path / "reports").glob("*.html"):
        if page.name != "index.html":
            check_clean_report(page)


def test_part1_smoke_run_writes_report_results_and_predictions_that_07_gathers(report_dirs):
    """One 01 run (a notebook run costs seconds of kernel start and rendering) serves both: its own
    outputs, then 07's report and the index built from them."""
    cli.main(["run", "01_part1_sst", "--profile", "smoke", "-p", "finetune_epochs", "2"])
    results = json.loads((report_dirs / "results" / "01_part1_sst.smoke.json").read_text())
    assert set(results) == {"notebook", "profile", "stamp", "data", "runs", "checks"}
    assert results["notebook"] == "01_part1_sst" and results["profile"] == "smoke"
    stamp = results["stamp"]
    assert set(stamp) == {"commit", "dirty", "params", "changed", "seed", "device", "versions", "started",
                          "wall_s"}
    assert stamp["params"]["finetune_epochs"] == 2 and stamp["seed"] == 11711
    assert stamp["changed"]["finetune_epochs"] == 2 and "pooling" not in stamp["changed"]  # a default
    assert stamp["device"].startswith("cpu") and stamp["versions"]["torch"].startswith("2.13.0")
    assert results["data"]["sst"]["train"] == {"source": "ids-sst-train.csv", "size": 64, "skipped": 0}
    assert [r["name"] for r in results["runs"]] == ["pretrain-seed11711", "pretrain-seed11712",
                                                    "finetune-seed11711", "finetune-seed11712"]
    assert results["runs"][1]["config"]["seed"] == 11712
    runs = {r["name"].removesuffix("-seed11711"): r for r in results["runs"] if r["name"].endswith("11711")}
    assert len(runs["pretrain"]["history"]) == 2 and len(runs["finetune"]["history"]) == 2
    assert results["data"]["sst"]["heldout"]["size"] == 32  # carved from train, selected on
    for run in runs.values():
        assert 0.0 <= run["dev"]["sst_acc"] <= 1.0
        kept = max(run["history"], key=lambda h: h["heldout_acc"])  # chosen on held-out rows, not dev
        assert run["best_epoch"] == kept["epoch"] and run["dev"]["sst_acc"] == kept["dev_acc"]
        assert run["heldout"] == {"sst_acc": kept["heldout_acc"]}
    trainable = {name: run["config"]["trainable_parameters"] for name, run in runs.items()}
    assert trainable["pretrain"] < trainable["finetune"]
    (difference,) = results["checks"]["differences"]
    assert (difference["arm"], difference["reference"], difference["task"]) == ("finetune", "pretrain", "sst")
    assert difference["low"] <= difference["estimate"] <= difference["high"]
    assert len(difference["seed_differences"]) == 2 and difference["items"] == 32
    parity = results["checks"]["bert_parity"]
    assert parity["max_abs_diff_last_hidden_state"] < 1e-5 and parity["max_abs_diff_pooler_output"] < 1e-5
    predictions = report_dirs / "predictions" / "01_part1_sst.smoke"
    for mode in ("pretrain", "finetune"):
        for split in ("dev", "test"):
            lines = (predictions / f"{mode}-seed11711-sst-{split}.csv").read_text().splitlines()
            assert lines[0] == "id\tsentiment" and len(lines) == 33
            assert all(line.split("\t")[1] in "01234" for line in lines[1:])
    html = (report_dirs / "01_part1_sst.smoke.html").read_text()
    assert "Our BERT against" in html and "data:image/png;base64" in html
    for link in ("index.html", "results/01_part1_sst.smoke.json", "predictions/01_part1_sst.smoke/"):
        assert f'<a href="{link}">' in html  # the report links back to the index and to its outputs
    nav = ('<nav class="minbert-nav"><a href="index.html">all reports</a>'
           '<a href="index.html#glossary">glossary</a></nav>')
    assert html.count(nav) == 2  # top and bottom: the index; no other report of the profile exists yet
    assert '<details class="minbert-code"><summary>code</summary>' in html  # code folded, one click away
    assert ".jp-OutputArea-output pre { word-break: normal;" in html  # printed lines wrap between words

    # 07 gathers every results file there is (here, 01's) into its report and the index
    cli.main(["run", "07_results", "--profile", "smoke"])
    html = (report_dirs / "07_results.smoke.html").read_text()
    assert "state of the art cited by the study" in html and "finetune" in html
    assert "Where each results file ran" in html
    index = (report_dirs / "index.html").read_text()
    assert '<a href="01_part1_sst.smoke.html">' in index and '<a href="07_results.smoke.html">' in index
    # both open with the study's questions, the study's answers and ours, from the saved differences
    worded = ("finetune better on", "finetune worse on", "No difference named", "No answer at this budget")
    assert "The study's questions, its answers and ours" in index and any(w in index for w in worded)
    assert "Does fine-tuning all of BERT beat" in html
    assert html.index('id="Findings:-the-study') < html.index('id="Our-runs"')
    # the links between reports follow what exists: 01 now links 07 as its next report, 07 links back
    first = (report_dirs / "01_part1_sst.smoke.html").read_text()
    assert first.count('<a href="07_results.smoke.html">07_results →</a></nav>') == 2
    assert html.count('<nav class="minbert-nav"><a href="01_part1_sst.smoke.html">← 01_part1_sst</a>') == 2
    assert "wrote index" not in html  # no stray output line
    for section in ("In short:", "Where our runs differ from the study's", "What we did not attempt",
                    'id="glossary"', "status of the study's claim", REPOSITORY):
        assert section in index, section
    assert index.index("In short:") < index.index("Where our runs differ") < index.index(
        "The study's questions, its answers and ours")
    assert dead_links(report_dirs) == []


def test_unknown_parameter_stops_before_running(report_dirs, capsys):
    with pytest.raises(SystemExit, match="unknown parameter 'finetune_lrr'"):
        cli.main(["run", "01_part1_sst", "--profile", "smoke", "-p", "finetune_lrr", "0.1"])
    assert not report_dirs.exists()


def test_a_profile_given_with_p_is_refused_naming_the_profile_flag(report_dirs, tmp_path):
    """`-p profile smoke` would run the default profile under its lock and over its committed reports:
    refused in a second, pointing at --profile, before any lock is taken."""
    for command in (["run", "05_attention"], ["peer"]):
        with pytest.raises(SystemExit, match="-p profile smoke: the profile is chosen with --profile .* "
                                             "use --profile smoke"):
            cli.main([*command, "-p", "profile", "smoke"])
    assert not (tmp_path / "runs" / "locks").exists() and not report_dirs.exists()


def test_a_negative_number_is_a_value_and_the_peer_is_no_notebook(report_dirs):
    """`-p lr -1e-5` reaches validation as the number it is (and is refused there, by name); `run
    peer_transformers` says the peer has a command of its own, in one line."""
    with pytest.raises(SystemExit, match=r"lr.*greater than or equal to 0|lr.*-1e-05"):
        cli.main(["run", "02_sbert_baseline", "--profile", "smoke", "-p", "lr", "-1e-5"])
    with pytest.raises(SystemExit, match=r"unknown notebook 'peer_transformers' \(the peer is no notebook: "
                                         r"`minbert peer --profile P` runs it\)"):
        cli.main(["run", "peer_transformers", "--profile", "smoke"])
    assert not report_dirs.exists()


def test_a_failed_run_keeps_its_executed_notebook_and_says_where(report_dirs, tmp_path, tiny_checkpoint):
    """A notebook that fails in a cell (here: a checkpoint with a damaged value) leaves the executed
    notebook, traceback and all, where the one-line error says; the report is not written."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "damaged"
    shutil.copytree(tiny_checkpoint, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["pooler.dense.weight"][0, 0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", "01_part1_sst", "--profile", "smoke", "-p", "checkpoint", str(folder)])
    message = str(stopped.value)
    assert "failed in cell" in message and "CheckpointError" in message and "pooler.dense.weight" in message
    kept = tmp_path / "runs" / "executed" / "01_part1_sst.smoke.failed.ipynb"
    assert f"traceback and all: {kept})" in message
    assert "CheckpointError" in kept.read_text()
    assert not (report_dirs / "01_part1_sst.smoke.html").exists()


def test_fetch_data_command(tmp_path, data_dir, capsys):
    cli.main(["fetch-data", "--dest", str(tmp_path), "--mirror", str(data_dir), "--url-base", ""])
    assert "11 data files ready" in capsys.readouterr().out
    assert (tmp_path / "quora-dev.csv").is_file()


def test_notebooks_are_numbered_and_stored_without_outputs():
    names = notebook_names()
    assert names and names[0] == "01_part1_sst"
    from minbert import paths

    for name in names:
        nb = json.loads((paths.notebooks_dir() / f"{name}.ipynb").read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, name


def test_sbert_smoke_run_reports_every_arm(report_dirs):
    cli.main(["run", "02_sbert_baseline", "--profile", "smoke"])
    results = json.loads((report_dirs / "results" / "02_sbert_baseline.smoke.json").read_text())
    names = [r["name"] for r in results["runs"]]
    best_arm = results["checks"]["best_arm"]
    arms = ["baseline", "pcgrad", "qqp-separate"]
    assert names == [f"{arm}-seed{seed}" for arm in arms for seed in (11711, 11712)] + ["baseline-final"]
    assert best_arm in arms
    comparison, final = results["data"]["comparison"], results["data"]["final"]
    assert comparison["qqp"]["train"]["source"] in ("quora-train.csv", "quora-train-subset.csv")
    assert comparison["qqp"]["dev"] == final["qqp"]["dev"] == {
        "source": "quora-dev.csv", "size": 32, "skipped": 2,
        "skipped rows": "line 2577: missing label (is_duplicate); line 14222: empty sentence2"}
    assert comparison["sst"]["train"]["size"] == 32 and final["sst"]["train"]["size"] == 64
    assert results["runs"][-1]["train_sizes"] == {"sst": 64, "qqp": 64, "sts": 64}
    assert results["runs"][-1]["arm"] == "baseline"  # the final run's arm, as the profile names it
    for run in results["runs"]:
        assert set(run["dev"]) == {"sst_acc", "qqp_acc", "sts_pearson"}
        assert all(-1.0 <= v <= 1.0 for v in run["dev"].values())
    by_name = {r["name"]: r for r in results["runs"]}
    assert by_name["baseline-seed11712"]["config"]["seed"] == 11712
    # equal budgets: every arm of the comparison took the same steps and saw the same examples
    budgets = {(sum(h["steps"] for h in by_name[n]["history"]),
                sum(h["examples"] for h in by_name[n]["history"])) for n in names[:-1]}
    assert budgets == {(2 * 6, 2 * 6 * 16)}  # 2 epochs of 3 x 32 rows in batches of 16
    assert [h["qqp_only"] for h in by_name["qqp-separate-seed11711"]["history"]] == [True, False]
    differences = results["checks"]["differences"]
    assert {(d["arm"], d["task"]) for d in differences} == {(a, t) for a in arms[1:]
                                                            for t in ("sst", "qqp", "sts")}
    for d in differences:
        assert d["reference"] == "baseline" and d["low"] <= d["estimate"] <= d["high"]
        assert len(d["seed_differences"]) == 2 and d["items"] in (32, 32 - 2)
    best = results["checks"]["best_run"]
    dev_sst = (report_dirs / "predictions" / "02_sbert_baseline.smoke" / f"{best}-sst-dev.csv").read_text()
    assert dev_sst.splitlines()[0] == "id\tsentiment" and len(dev_sst.splitlines()) == 33
    page = (report_dirs / "02_sbert_baseline.smoke.html").read_text()
    assert "study SST" in page and "A larger budget: baseline again on SST 64, QQP 64, STS 64" in page


def test_attention_smoke_run_compares_variants(report_dirs):
    cli.main(["run", "05_attention", "--profile", "smoke"])
    results = json.loads((report_dirs / "results" / "05_attention.smoke.json").read_text())
    runs = {r["group"]: r for r in results["runs"]}
    assert [r["name"] for r in results["runs"]] == ["standard-seed11711", "center+linear+sparsemax-seed11711"]
    assert {r["config"]["attention"] for r in runs.values()} == set(runs)
    # the variant adds 6 mixing coefficients and a 32x32 centre matrix per head: 12 heads x 6 layers
    extra = runs["center+linear+sparsemax"]["parameters"] - runs["standard"]["parameters"]
    assert extra == 6 * 12 * (6 + 32 * 32)
    assert results["checks"]["reference"] == "standard"
    assert [(d["arm"], d["reference"]) for d in results["checks"]["differences"]] == [
        ("center+linear+sparsemax", "standard")] * 3
    variant = runs["center+linear+sparsemax"]
    assert variant["config"]["variant_lr"] == 1e-3
    assert len(variant["variant_movement"]) == 6  # one entry per layer
    assert all(layer["center"] > 0 and layer["query_mix"] > 0 for layer in variant["variant_movement"])
    assert "variant_movement" not in runs["standard"]
    assert set(results["checks"]["loss_gaps"]) == set(runs)
    html = (report_dirs / "05_attention.smoke.html").read_text()
    assert "Softmax against sparsemax" in html and "How far the variants" in html
    assert "sBERT-CenterMatrixLinearSelfAttentionWithSparsemax" in html


def test_sophia_smoke_run_tunes_and_compares_optimizers(report_dirs):
    cli.main(["run", "03_sophia", "--profile", "smoke"])
    results = json.loads((report_dirs / "results" / "03_sophia.smoke.json").read_text())
    names = [r["group"] for r in results["runs"]]
    assert names == ["adamw", "sophia", "sophia-corrected", "sophia-newton", "adamw-tuned", "sophia-tuned",
                     "sophia-tuned-qqp-separate", "sophia-tuned-class-weights", "sophia-per-task-tuned",
                     "sophia-regularised"]
    assert results["runs"][0]["name"] == "adamw-seed11711"
    by_name = {r["group"]: r for r in results["runs"]}
    assert by_name["sophia"]["config"]["optimizer"] == "sophia"
    assert by_name["sophia"]["config"]["rho"] == 0.04
    assert by_name["sophia-per-task-tuned"]["config"]["task_optimizers"] is True
    studies = results["checks"]["studies"]
    assert set(studies) == {"adamw", "sophia", "sophia-per-task", "regularisation"}
    for study in studies.values():
        assert study["finished_trials"] >= 2
    tuned = by_name["sophia-tuned"]["config"]
    assert tuned["lr"] == studies["sophia"]["params"]["lr"]
    assert tuned["hessian_interval"] == studies["sophia"]["params"]["hessian_interval"]
    assert (report_dirs.parent / "runs" / "optuna" / "03_sophia-smoke-sophia.db").is_file()
    assert {d["arm"] for d in results["checks"]["differences"]} == set(names[1:])
    corrected = by_name["sophia-corrected"]["config"]
    assert corrected["hessian_bias_correction"] is True
    assert by_name["sophia"]["config"]["hessian_bias_correction"] is False
    assert by_name["sophia-newton"]["config"]["rho"] == 10.0
    assert by_name["sophia-newton"]["config"]["hessian_bias_correction"] is True
    regime = {r["arm"]: r for r in results["checks"]["sophia_regime"]}
    assert set(regime) == {n for n in names if n.startswith("sophia")}
    assert all(0.0 <= r["clipped share"] <= 1.0 for r in regime.values())
    estimated = [r["clipped share where h > 0"] for r in regime.values()]  # NaN: no refresh in a smoke run
    assert all(share != share or 0.0 <= share <= 1.0 for share in estimated)
    assert "sophia_clipped_share" in by_name["sophia"]["history"][0]
    assert "Which regime Sophia ran in" in (report_dirs / "03_sophia.smoke.html").read_text()


def test_smart_smoke_run_compares_and_tunes(report_dirs):
    cli.main(["run", "04_smart", "--profile", "smoke"])
    results = json.loads((report_dirs / "results" / "04_smart.smoke.json").read_text())
    by_name = {r["group"]: r for r in results["runs"]}
    assert list(by_name) == ["no-smart", "dropout-only", "smart", "smart-naive-sts", "smart-tuned"]
    assert {d["reference"] for d in results["checks"]["differences"]} == {"no-smart"}
    assert by_name["no-smart"]["config"]["smart"] == {}
    assert by_name["no-smart"]["config"]["mode"] == "cross-encoder"  # where the study's STS collapsed
    assert by_name["dropout-only"]["config"]["smart"]["sst"]["epsilon"] == 0.0
    smart = by_name["smart"]["config"]["smart"]["sts"]
    assert (smart["epsilon"], smart["step_size"], smart["relative"]) == (0.03, 0.03, True)
    assert by_name["smart-naive-sts"]["config"]["smart"]["sts"]["naive_regression"] is True
    first = by_name["smart"]["history"][0]
    assert first["sts_smart_loss"] > 0 and first["sts_smart_control"] > 0
    assert "sts_smart_loss" not in by_name["no-smart"]["history"][0]
    # the probe: a perturbation of 3% of the embedding scale moves the outputs; none does not
    probe = {(r["task"], r["epsilon"]): r for r in results["checks"]["probe"]}
    for task in ("sst", "qqp", "sts"):
        assert probe[(task, 0.0)]["eval term"] <= 1e-9 < probe[(task, 0.03)]["eval term"]
        paper = probe[(task, "paper's own: ε 1e-5, inf, absolute")]
        assert paper["eval term"] < probe[(task, 0.03)]["eval term"]
    terms = {(t["arm"], t["task"]): t for t in results["checks"]["smart_terms"]}
    dropout_only = terms[("dropout-only", "STS")]  # two dropout passes of the same inputs: equal on average
    assert abs(dropout_only["added by the perturbation"]) < 0.25 * dropout_only["SMART term"]
    html = (report_dirs / "04_smart.smoke.html").read_text()
    assert "Does the perturbation perturb?" in html and "STS collapse" in html
    (form,) = results["checks"]["divergence_form"]  # the naive divergence against the right one
    assert (form["arm"], form["reference"], form["task"]) == ("smart-naive-sts", "smart", "sts")
    # the findings open the report (right after the title), worded; the code that words them is hidden
    assert html.index('id="Findings"') < html.index('id="Data"')
    assert "theirs_before, theirs_after" not in html
    assert "param probe_epsilons" in html  # what the profile changed, in the stamp
    studies = results["checks"]["studies"]
    assert set(studies) == {"sst", "qqp", "sts"}
    for task, study in studies.items():
        assert study["finished_trials"] >= 2
        assert by_name["smart-tuned"]["config"]["smart"][task]["norm"] == study["params"]["norm"]


def test_final_model_smoke_run_with_error_analysis(report_dirs):
    """The recipe at two seeds, the members chosen on held-out rows, the ablation of two levers against
    the recipe (paired differences), the error analysis and the panel's static stand-in."""
    cli.main(["run", "06_final_bert", "--profile", "smoke"])
    results = json.loads((report_dirs / "results" / "06_final_bert.smoke.json").read_text())
    members = [r for r in results["runs"] if r["name"].startswith("final")]
    assert {r["name"] for r in members} >= {"final-seed11711", "final-seed11712"}
    for run in members:
        config = run["config"]
        assert config["mode"] == "cross-encoder" and config["schedule"] == "proportional"
        assert (config["pooling"], config["head_lr"], config["smart"]) == ("cls+mean", 5e-4, {"sts": {}})
    checks = results["checks"]
    assert checks["selected"] and set(checks["selected"]) <= {"final-seed11711", "final-seed11712"}
    assert len(checks["selection_trace"]) == len(checks["selected"])
    # two ways of assembling the final model, scored on held-out; the one with the higher mean is kept
    candidates = checks["candidates"]
    assert set(candidates) == {"seed ensemble", "checkpoint ensemble"}
    assert candidates["seed ensemble"]["members"] == checks["selected"]
    runs = {r["name"]: r for r in members}
    expected = [f"{name} epoch {e}" for name in ("final-seed11711", "final-seed11712")
                for e in range(max(1, runs[name]["best_epoch"] - 1), runs[name]["best_epoch"] + 1)]
    assert candidates["checkpoint ensemble"]["members"] == expected
    held = {n: sum(c["heldout"].values()) for n, c in candidates.items()}
    kept = checks["kept_candidate"]
    assert held[kept] == max(held.values()) and checks["ensemble"] == candidates[kept]["members"]
    # the pretrained view blended into the kept ensemble: a weight per task, chosen on held-out; the
    # final record scores the blend, the kept candidate is the model without the view
    blend = checks["blend"]
    assert set(blend["weights"]) == {"sst", "qqp", "sts"}
    assert blend["seconds"] > 0
    assert all(0 <= w <= 1 for w in blend["weights"].values())
    assert blend["dev"]["without"] == pytest.approx(candidates[kept]["dev"])
    assert blend["heldout"]["without"] == pytest.approx(candidates[kept]["heldout"])
    for task, metric in (("sst", "sst_acc"), ("qqp", "qqp_acc"), ("sts", "sts_pearson")):
        if blend["weights"][task] == 0:  # no blend: the task as the ensemble left it
            assert blend["dev"]["with"][metric] == pytest.approx(blend["dev"]["without"][metric])
        assert blend["heldout"]["with"][metric] >= blend["heldout"]["without"][metric]  # chosen there
    final = runs["final"]
    assert final["config"]["blend"] == blend["weights"]
    # the final model's weights: its members' and the frozen view's (the whole checkpoint, 6 layers)
    used = {name.split(" epoch ")[0] for name in checks["ensemble"]}
    assert final["parameters"] == sum(runs[name]["parameters"] for name in used) + blend["parameters"]
    assert blend["parameters"] > max(runs[name]["parameters"] for name in used)  # smoke members: 2 layers
    assert final["dev"] == pytest.approx(blend["dev"]["with"])
    assert final["heldout"] == pytest.approx(blend["heldout"]["with"])
    assert {(d["arm"], d["reference"], d["task"]) for d in checks["blend_differences"]} == {
        ("with the pretrained view", "without it", task) for task in ("sst", "qqp", "sts")}
    assert {(d["arm"], d["reference"], d["task"]) for d in checks["candidate_differences"]} == {
        ("checkpoint ensemble", "seed ensemble", task) for task in ("sst", "qqp", "sts")}
    assert set(checks["aims_met"]) == {"sst_acc", "qqp_acc", "sts_pearson"}
    assert checks["peer_differences"] == []  # the peer has not run on this profile here
    assert {(d["arm"], d["reference"]) for d in checks["differences"]} == {
        ("layer-wise lr decay", "recipe"), ("mean pooling", "recipe")}
    ablation = [r for r in results["runs"] if r.get("group") in ("recipe", "layer-wise lr decay")]
    assert {r["examples"] if "examples" in r else sum(h["examples"] for h in r["history"])
            for r in ablation} == {96}  # the same budget: 32 rows per task, one epoch
    curve_runs = {r["name"] for r in results["runs"] if r["name"].startswith(("curve-", "layers-"))}
    assert curve_runs == {f"{p}-seed{s}" for p in ("curve-24", "layers-1") for s in (11711, 11712)}
    smaller = next(r for r in results["runs"] if r["name"] == "layers-1-seed11711")  # the model-size point
    assert smaller["config"]["num_layers"] == 1
    assert smaller["train_sizes"] == dict.fromkeys(("sst", "qqp", "sts"), 24)
    predictions = report_dirs / "predictions" / "06_final_bert.smoke"
    for task, column in (("sst", "sentiment"), ("qqp", "is_duplicate"), ("sts", "similarity")):
        lines = (predictions / f"final-{task}-dev.csv").read_text().splitlines()
        assert lines[0] == f"id\t{column}" and len(lines) == 33
    assert (predictions / "final-sts-test.csv").is_file()
    html = (report_dirs / "06_final_bert.smoke.html").read_text()
    assert "most wrong" in html and "wrong answers one class off" in html  # the error analysis
    assert "per doubling of the encoder" in html and "at BERT-base" in html  # the model-size estimate
    assert "Holm's correction, each comparison its own family. Against the peer" not in html  # no peer here
    assert "Holm's correction, each comparison its own family." in html and "The ablation: Judged" in html
    assert "No peer results for the smoke profile" in html
    # the static stand-in for the panel: the model's answers to example inputs
    assert "A dull, lifeless and badly acted film." in html and "label: " in html and "probability: " in html


def test_report_names_the_failed_notebook_and_cell_and_runs_the_others(report_dirs, tmp_path, monkeypatch,
                                                                        capsys):
    report_dirs.mkdir(parents=True)
    (report_dirs / "01_part1_sst.smoke.html").write_text("the previous report")
    monkeypatch.setenv("MINBERT_DATA_DIR", str(tmp_path / "no-data"))  # 01 fails where it reads SST
    monkeypatch.setattr(cli, "notebook_names", lambda: ["01_part1_sst", "07_results"])
    with pytest.raises(SystemExit, match=r"^1 notebook\(s\) failed: 01_part1_sst$"):
        cli.main(["report", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert re.search(r"FAILED notebook 01_part1_sst failed in cell \d+: \w+Error: .*ids-sst", err), err
    assert (report_dirs / "01_part1_sst.smoke.html").read_text() == "the previous report"
    assert (report_dirs / "07_results.smoke.html").is_file() and (report_dirs / "index.html").is_file()


def test_a_resumed_report_continues_every_notebook_that_keeps_its_runs(monkeypatch):
    """`report --resume` hands `resume: true` to each notebook whose settings have it (07 trains nothing
    and has none), and a stopped report names that command; a plain report resumes nothing."""
    from minbert.notebook_settings import NOTEBOOK_CONFIGS

    calls = []
    monkeypatch.setattr(cli, "run_notebook", lambda name, profile, overrides=None, timeout_s=None:
                        calls.append((name, profile, overrides)))
    cli.main(["report", "--profile", "smoke", "--resume"])
    resumed = {name for name, _, overrides in calls if overrides == {"resume": True}}
    assert [name for name, _, _ in calls] == notebook_names()
    assert resumed == {n for n in notebook_names() if "resume" in NOTEBOOK_CONFIGS[n].model_fields}
    assert "01_part1_sst" in resumed and "07_results" not in resumed
    calls.clear()
    cli.main(["report", "--profile", "smoke"])
    assert [overrides for _, _, overrides in calls] == [None] * len(notebook_names())
    for argv, command in [(["report"], "python -m minbert report --resume"),
                          (["report", "--resume"], "python -m minbert report --resume")]:
        message = cli._stopped(cli.build_parser().parse_args(argv), argv)
        assert message.endswith(f"continue with: {command}"), message


def test_the_index_command_rewrites_the_index_from_the_results_files(report_dirs, capsys):
    """`minbert index` writes reports/index.html from the results files alone (no notebook runs): here the
    committed cpu results, whose 02 headline and question it must show."""
    import shutil

    from minbert import paths

    shutil.copytree(paths.PROJECT_ROOT / "reports" / "results", report_dirs / "results")
    cli.main(["index"])
    assert f"wrote {report_dirs / 'index.html'}" in capsys.readouterr().out
    page = (report_dirs / "index.html").read_text()
    assert "Does a different task order or schedule train the three tasks better together?" in page
    assert "02_sbert_baseline (cpu), results file only (no report)" in page


def test_figures_in_the_notebooks_prose_are_the_studys_own():
    """Every three-decimal figure a notebook's text quotes is one of the study's published figures
    (`minbert.published`, from its results table), so a hand-typed figure cannot drift from the table;
    the few hyper-parameters written with three decimals are named here."""
    import nbformat

    from minbert import paths
    from minbert.published import STATE_OF_THE_ART, STUDY_FIGURES

    published = {round(v, 3) for row in STUDY_FIGURES.values() for v in row if v is not None}
    published |= {round(v, 3) for v in STATE_OF_THE_ART}
    from minbert.comparison import SMALLEST_EFFECT

    # Sophia's beta1 (the reference implementation's default) and the smallest effects worth naming
    hyper_parameters = {0.965, *SMALLEST_EFFECT.values()}
    quoted = []
    for name in notebook_names():
        notebook = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                quoted += [(name, float(m)) for m in re.findall(r"(?<![\d.])0\.\d{3}(?!\d)", cell.source)]
    assert quoted  # the test reads the intros' quotes
    strays = [(name, value) for name, value in quoted if value not in published | hyper_parameters]
    assert not strays, f"figures in prose that are not the study's: {strays}"
    assert STUDY_FIGURES["BERT-Final"] == (0.513, 0.889, 0.851)  # the row 06 quotes, as the study gives it


def test_reports_open_with_findings_and_comparisons_end_with_their_limits():
    import nbformat

    from minbert import paths

    for name in notebook_names():
        cells = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4).cells
        tagged = [c for c in cells if "findings" in c.metadata.get("tags", [])]
        assert [c.cell_type for c in tagged] == ["markdown", "code"], name
        assert tagged[0].source.startswith("## Findings"), name
        if name not in ("06_final_bert", "07_results"):  # one model; the gathered results
            assert any(c.source.strip() == "## Limits" for c in cells), name


def test_a_report_links_to_prediction_files_only_where_its_notebook_writes_them():
    """The link to predictions/<notebook>.<profile>/ at the top of a report must not point at nothing:
    a notebook that writes no prediction files asks for its links without it."""
    import nbformat

    from minbert import paths
    from minbert.notebook import WRITES_PREDICTIONS

    writers = ("save_run_predictions(", "save_sst_predictions(", "final_model(")
    for name in notebook_names():
        source = "\n".join(c.source for c in nbformat.read(paths.notebooks_dir() / f"{name}.ipynb",
                                                            as_version=4).cells if c.cell_type == "code")
        assert "start_notebook(NOTEBOOK, globals())" in source, name
        assert (name in WRITES_PREDICTIONS) == any(w in source for w in writers), name


def test_a_report_drops_widget_outputs_and_keeps_the_rest():
    """Offline a widget output is only its text stand-in (a progress bar frozen at 0%, a panel's repr):
    the report leaves it out, and keeps the plain outputs of the same cell."""
    import nbformat

    from minbert.runner import WIDGET_VIEW, for_reading

    cell = nbformat.v4.new_code_cell("train()")
    bar = {WIDGET_VIEW: {"model_id": "x"}, "text/plain": "epoch 1:   0%|  | 0/75 [?step/s]"}
    cell.outputs = [nbformat.v4.new_output("display_data", bar),
                    nbformat.v4.new_output("stream", name="stdout", text="trained\n"),
                    nbformat.v4.new_output("display_data", {"text/plain": "a table"})]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"), cell])
    (shown,) = [c for c in for_reading(notebook).cells if c.cell_type == "code"]
    assert [o.get("text") or o["data"]["text/plain"] for o in shown.outputs] == ["trained\n", "a table"]
    assert len(cell.outputs) == 3  # the executed notebook itself is left alone


def test_render_reads_the_profile_from_the_executed_notebook_and_refuses_a_mismatch(report_dirs, tmp_path):
    """`minbert render /tmp/out.ipynb` (the documented papermill line's output) renders to the profile the
    notebook ran; a smoke run renamed to look like a cpu one, a run that stopped at an error and a
    notebook run outside papermill are refused, and no committed-profile page is written."""
    import nbformat

    from minbert import paths

    def executed(name: str, **record):
        notebook = nbformat.read(paths.notebooks_dir() / "01_part1_sst.ipynb", as_version=4)
        notebook.metadata["papermill"] = {"input_path": "notebooks/01_part1_sst.ipynb", "exception": None,
                                          "parameters": {"profile": "smoke"}, **record}
        path = tmp_path / name
        nbformat.write(notebook, path)
        return path

    cli.main(["render", str(executed("out.ipynb"))])
    assert (report_dirs / "01_part1_sst.smoke.html").is_file()
    refused = [(executed("01_part1_sst.cpu.ipynb"), "name says profile 'cpu', but it ran the 'smoke'"),
               (executed("failed.ipynb", exception=True), "did not run to the end"),
               (executed("elsewhere.ipynb", input_path="/tmp/mine.ipynb"), "not one of the numbered")]
    plain = nbformat.read(paths.notebooks_dir() / "01_part1_sst.ipynb", as_version=4)
    nbformat.write(plain, tmp_path / "lab.ipynb")
    refused.append((tmp_path / "lab.ipynb", "no papermill record"))
    for path, reason in refused:
        with pytest.raises(SystemExit, match=reason):
            cli.main(["render", str(path)])
    assert sorted(p.name for p in report_dirs.glob("*.html")) == ["01_part1_sst.smoke.html", "index.html"]


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stopped_run_says_in_one_line_what_was_kept_and_how_to_continue(tmp_path, data_dir, stop):
    """Ctrl-C (SIGINT to the whole process group, kernel included) or `kill` (SIGTERM to the command)
    in the middle of a run: one line naming the command that continues it, no traceback (the kernel's
    own messages go to its log), no partial file; exit 128 + the signal."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "MINBERT_RUNS_DIR": str(tmp_path / "runs"),
           "MINBERT_REPORTS_DIR": str(tmp_path / "reports")}
    command = [sys.executable, "-m", "minbert", "run", "02_sbert_baseline", "--profile", "smoke"]
    inherited = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, [])

    def as_a_terminal_starts_it() -> None:
        """SIGINT at its default and not blocked, as in a foreground command: a process that starts with
        it ignored or blocked (a background job of a script does) keeps it so, and Ctrl-C means nothing
        to it; under the full suite the command was started so now and then, and ran to its end."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True, preexec_fn=as_a_terminal_starts_it)
    executed = tmp_path / "runs" / "executed"
    started = time.monotonic()
    while not list(executed.glob(".*.part*")) and time.monotonic() - started < 120:
        time.sleep(0.2)
    time.sleep(5)  # the kernel is running the notebook's cells
    signum = getattr(signal, stop)
    if stop == "SIGINT":
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, (inherited, out[-1500:], err[-1500:])
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert err.strip() == ("stopped: the runs that had finished are kept under runs/; continue with: "
                           "python -m minbert run 02_sbert_baseline --profile smoke -p resume true")
    assert [p.name for p in executed.iterdir()] == ["02_sbert_baseline.smoke.log"]
    assert not (tmp_path / "reports" / "02_sbert_baseline.smoke.html").exists()


def documented_commands() -> list[str]:
    """Every `.venv/bin/...` command line in the README's and docs/running.md's code blocks."""
    from minbert import paths

    lines = []
    for doc in (paths.PROJECT_ROOT / "README.md", paths.PROJECT_ROOT / "docs" / "running.md"):
        blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S)
        lines += [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
                  if line.startswith(".venv/bin/")]
    return lines


def test_every_documented_command_line_works_in_smoke_form():
    """Each command the README and docs/running.md show, in smoke form (its profile made smoke, /tmp/out
    a temporary file): `minbert run` lines parse and their parameters validate, as a run checks them
    before it starts; papermill's lines list the knobs and take the -p values (a papermill run and
    `minbert render` of its output are the smoke runs and `test_render_reads_the_profile_...`). A
    command whose flags or keys went stale fails here."""
    import shlex
    import subprocess

    from minbert import paths
    from minbert.params import load_config, parse_override

    commands = documented_commands()
    assert len(commands) >= 6
    for line in commands:
        words = shlex.split(re.sub(r"--profile \w+", "--profile smoke", line))
        if words[:3] == [".venv/bin/python", "-m", "minbert"]:
            args = cli.build_parser().parse_args(words[3:])
            if args.command == "run":
                overrides = {key: parse_override(value) for key, value in args.param}
                assert "profile" not in overrides, line
                load_config(args.notebook, args.profile, overrides)
            else:
                assert args.command == "render" and args.executed, line
        elif words[1] == "--help-notebook":
            shown = subprocess.run([str(paths.PROJECT_ROOT / words[0]), *words[1:]], capture_output=True,
                                   text=True, cwd=paths.PROJECT_ROOT, check=True).stdout
            assert "lr: float" in shown and "seeds: int" in shown, line
        else:  # papermill NOTEBOOK OUT -p key value ...: the values a run of that notebook takes
            assert words[0] == ".venv/bin/papermill" and words[2].startswith("/tmp/"), line
            values = dict(zip(words[4::3], map(parse_override, words[5::3]), strict=True))
            load_config(words[1].rsplit("/", 1)[-1].removesuffix(".ipynb"), values.pop("profile"), values)
