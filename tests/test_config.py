"""Parameter validation: unknown keys and wrong types name the key; profiles are complete."""

from __future__ import annotations

import json

import pytest
import yaml

from minbert import paths
from minbert.config import ConfigError, arm_settings
from minbert.notebook_settings import NOTEBOOK_CONFIGS, config_class, validate
from minbert.params import (
    PROFILES,
    load_config,
    load_params,
    notebook_config,
    notebook_parameters,
    parameters_cell,
    parse_override,
    read_yaml,
)


def default_values(notebook="01_part1_sst"):
    return load_params(notebook, "cpu")


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match="unknown parameter 'finetune_lrr'"):
        load_params("01_part1_sst", "cpu", {"finetune_lrr": 0.1})


@pytest.mark.parametrize("key, value, message", [
    ("finetune_epochs", "three", "parameter 'finetune_epochs'"),
    ("modes", ["pretrain", "finetuning"], "parameter 'modes.1'"),
    ("dropout", 1.5, "parameter 'dropout'"),
    ("pooling", "max", "parameter 'pooling'"),
])
def test_wrong_values_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_params("01_part1_sst", "cpu", {key: value})


def test_a_parameter_not_given_takes_its_one_default():
    values = default_values()
    del values["seed"]
    assert validate("01_part1_sst", values).seed == 11711
    assert validate("02_sbert_baseline", {}).lr == validate("06_final_bert", {}).lr == 5e-5


def test_unknown_notebook_and_profile():
    with pytest.raises(ConfigError, match="unknown notebook"):
        load_params("99_nothing", "cpu")
    with pytest.raises(ConfigError, match="unknown profile"):
        load_params("01_part1_sst", "huge")


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_file_is_valid(notebook, profile):
    assert load_params(notebook, profile)["profile"] == profile


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
def test_parameters_cell_declares_every_knob_with_its_default(notebook):
    """The parameters cell is the config's (written by `python -m minbert parameters-cells`): run as it is,
    it defines every field at its default; opened in JupyterLab unedited, the notebook loads the cpu
    profile's file over the defaults, as papermill would."""
    nb = json.loads((paths.notebooks_dir() / f"{notebook}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1 and "".join(cells[0]["source"]) == parameters_cell(notebook)
    namespace: dict = {}
    exec("".join(cells[0]["source"]), {}, namespace)
    namespace.pop("__annotations__", None)
    assert namespace == config_class(notebook)().model_dump()
    assert notebook_config(notebook, namespace).model_dump() == default_values(notebook)


@pytest.mark.parametrize("notebook", ["02_sbert_baseline", "06_final_bert"])
def test_papermill_lists_every_knob_with_its_type_and_default(notebook):
    """What `papermill --help-notebook` reads from the parameters cell: every field, its type and default."""
    import papermill

    found = papermill.inspect_notebook(str(paths.notebooks_dir() / f"{notebook}.ipynb"))
    assert list(found) == list(config_class(notebook).model_fields)
    assert (found["lr"]["inferred_type_name"], found["lr"]["default"]) == ("float", "5e-05")
    head_lr = found["head_lr"]
    assert (head_lr["inferred_type_name"], head_lr["default"]) == ("Optional[float]", "None")
    assert found["epochs"]["inferred_type_name"] == "int" and found["dropout"]["inferred_type_name"] == "dict"
    assert found["lr"]["help"].startswith("peak learning rate")


def test_injected_parameters_are_read_from_papermills_cell():
    """Under papermill, exactly the names its injected cell set are the run's parameters (a default
    value given with -p still wins over the profile's file); in JupyterLab, the edited values."""
    defaults = config_class("02_sbert_baseline")().model_dump()
    injected = '# Parameters\nprofile = "smoke"\nlr = 5e-05\ntypo_param = 2\n'
    namespace = {**defaults, "profile": "smoke", "typo_param": 2, "In": ["import x", injected]}
    assert notebook_parameters("02_sbert_baseline", namespace) == {"profile": "smoke", "lr": 5e-05,
                                                                   "typo_param": 2}
    with pytest.raises(ConfigError, match="unknown parameter 'typo_param'"):
        notebook_config("02_sbert_baseline", namespace)
    edited = {**defaults, "seeds": 1, "In": ["import x", "seeds = 1"]}
    assert notebook_parameters("02_sbert_baseline", edited) == {"seeds": 1}
    cfg = notebook_config("02_sbert_baseline", edited)
    assert cfg.seeds == 1 and cfg.epochs == load_config("02_sbert_baseline", "cpu").epochs


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
@pytest.mark.parametrize("profile", PROFILES)
def test_profile_files_list_only_what_they_change(notebook, profile):
    path = paths.params_dir() / profile / f"{notebook}.yaml"
    values = read_yaml(path.read_text()) or {}
    defaults = config_class(notebook)().model_dump()
    assert {k: v for k, v in values.items() if defaults.get(k) == v} == {}, path


def test_per_task_sizes_are_checked_by_name_and_an_override_keeps_the_tasks_it_does_not_name():
    """`-p dev_limits '{sst: 0}'` and `-p train_limits '{sst: -5}'` are refused when the config is read,
    before any data, naming the knob and the task; `-p heldout_sizes '{sst: 200}'` keeps QQP's and STS's
    held-out rows (the profile's), where it used to replace the whole dict and leave them none."""
    for key, value in (("dev_limits", 0), ("train_limits", -5), ("heldout_sizes", 0)):
        with pytest.raises(ConfigError, match=rf"parameter '{key}': .*at least 1, got {{'sst': {value}}}"):
            load_config("02_sbert_baseline", "smoke", {key: {"sst": value}})
    cfg = load_config("02_sbert_baseline", "cpu",
                      {"heldout_sizes": {"sst": 200}, "train_limits": {"qqp": 99}})
    profile = read_yaml((paths.params_dir() / "cpu" / "02_sbert_baseline.yaml").read_text())
    assert cfg.heldout_sizes == {**profile["heldout_sizes"], "sst": 200}
    assert cfg.train_limits == {**profile["train_limits"], "qqp": 99}
    defaults = config_class("02_sbert_baseline")().heldout_sizes  # no profile value: over the defaults
    assert load_config("02_sbert_baseline", "full", {"heldout_sizes": {"sts": 50}}).heldout_sizes == {
        **load_config("02_sbert_baseline", "full").heldout_sizes, "sts": 50} != defaults


def test_a_key_given_twice_in_a_params_file_is_refused_with_its_line(tmp_path, monkeypatch):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "02_sbert_baseline.yaml").write_text("seeds: 1\nlr: 1.0e-4\nseeds: 3\n")
    monkeypatch.setattr(paths, "params_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match=r"02_sbert_baseline.yaml: not valid YAML .*the key 'seeds' is "
                                          r"given twice.*line 3"):
        load_config("02_sbert_baseline", "smoke")
    with pytest.raises(yaml.YAMLError, match="given twice"):
        read_yaml("train_limits: {sst: 5, sst: 6}")


def test_overrides_and_profile_files_read_numbers_as_numbers():
    assert parse_override("0.001") == 0.001
    assert parse_override("null") is None
    assert parse_override("[finetune]") == ["finetune"]
    assert parse_override("true") is True
    # PyYAML alone reads 1e-5 (no dot) as a string; ours reads it as YAML 1.2 does
    assert yaml.safe_load("1e-5") == "1e-5" and parse_override("1e-5") == 1e-5
    assert parse_override("5e-05") == 5e-05 and parse_override("-2E+3") == -2000.0
    assert parse_override("1_000") == 1000 and parse_override("v1e5") == "v1e5"
    values = load_params("01_part1_sst", "cpu", {"finetune_lr": parse_override("1e-5")})
    assert values["finetune_lr"] == 1e-5


def test_a_string_is_not_a_number_nor_a_boolean_an_integer():
    with pytest.raises(ConfigError, match="parameter 'lr': Input should be a valid number"):
        load_params("06_final_bert", "cpu", {"lr": "5e-05"})
    with pytest.raises(ConfigError, match="parameter 'finetune_epochs': Input should be a valid integer"):
        load_params("01_part1_sst", "cpu", {"finetune_epochs": True})


def test_knob_combinations_and_arms_are_checked():
    with pytest.raises(ConfigError, match="task_optimizers needs one task per step"):
        load_params("03_sophia", "smoke", {"schedule": "pcgrad", "task_optimizers": True})
    with pytest.raises(ConfigError, match="parameter 'arms'.*unknown arm 'qqp-last'"):
        load_params("02_sbert_baseline", "smoke", {"arms": ["baseline", "qqp-last"]})
    with pytest.raises(ConfigError, match="parameter 'dropout'.*one value for each"):
        load_params("02_sbert_baseline", "smoke", {"dropout": {"sst": 0.2}})
    with pytest.raises(ConfigError, match="parameter 'smart'.*unknown SMART norm"):
        load_params("06_final_bert", "smoke", {"smart": {"sst": {"norm": "l3"}}})


def test_an_arm_is_its_knob_updates_over_the_notebook_settings():
    from minbert.arms import ARMS

    cfg = load_config("06_final_bert", "cpu")
    frozen = arm_settings(cfg, "freeze")
    assert frozen.freeze_epochs == 1 and frozen.epochs == cfg.epochs  # the frozen epoch is one of them
    assert frozen.task_order == cfg.task_order  # the arm leaves the order alone
    assert arm_settings(cfg, "proportional").task_order == ["qqp", "sts", "sst"]
    assert arm_settings(cfg, "round-robin").schedule == "round-robin"
    for name in ARMS:  # every entry is a valid set of knob updates
        assert arm_settings(load_config("02_sbert_baseline", "smoke"), name).model_dump() is not None, name


def test_attention_variants_are_checked_and_made_canonical():
    values = load_params("05_attention", "smoke", {"variants": ["sparsemax+center", "standard"]})
    assert values["variants"] == ["center+sparsemax", "standard"]
    with pytest.raises(ConfigError, match="parameter 'variants'.*unknown attention variant 'softmax'"):
        load_params("05_attention", "smoke", {"variants": ["softmax"]})


def test_a_new_arm_is_one_table_entry(monkeypatch):
    """An arm built from existing knobs is one entry in ARMS: validation and `arm_settings` read the table."""
    from minbert import arms

    with pytest.raises(ConfigError, match="unknown arm 'round-robin-weighted'"):
        load_params("02_sbert_baseline", "smoke", {"arms": ["round-robin-weighted"]})
    arm = arms.Arm("round-robin-weighted", "round-robin, class-weighted losses",
                    {"schedule": "round-robin", "class_weights": True})
    monkeypatch.setitem(arms.ARMS, arm.name, arm)
    cfg = load_config("02_sbert_baseline", "smoke", {"arms": ["round-robin-weighted"]})
    settings = arm_settings(cfg, "round-robin-weighted")
    assert settings.schedule == "round-robin" and settings.class_weights and settings.lr == cfg.lr


def test_epochs_count_the_qqp_only_and_frozen_ones():
    cfg = load_config("02_sbert_baseline", "smoke")
    assert arm_settings(cfg, "qqp-separate").epochs == arm_settings(cfg, "baseline").epochs == 2
    with pytest.raises(ValueError, match=r"epochs \(1\) counts the QQP-only \(1\) and frozen \(0\)"):
        arm_settings(cfg, "qqp-separate", {"epochs": 1})
    # a profile whose arm cannot run with its epochs stops at validation, naming the arm
    with pytest.raises(ConfigError, match=r"arm 'freeze' \(\{'freeze_epochs': 1\}\) does not fit"):
        load_config("06_final_bert", "smoke", {"arm": "freeze", "epochs": 1})
    with pytest.raises(ConfigError, match=r"arm 'qqp-separate' .* does not fit"):
        load_config("02_sbert_baseline", "smoke", {"epochs": 1})
    with pytest.raises(ConfigError, match=r"arm 'freeze' .* does not fit"):  # the final run: 1 epoch
        load_config("02_sbert_baseline", "smoke", {"final_arm": "freeze"})
    assert load_config("02_sbert_baseline", "cpu").run_seeds() == [11711, 11712, 11713]


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
@pytest.mark.parametrize("profile", ["cpu", "full"])
def test_sst_and_sts_dev_are_scored_whole_outside_the_smoke_profile(notebook, profile):
    """Issue 13: the small dev sets are never subsampled; only QQP's 20,212 pairs may be, for speed."""
    values = load_params(notebook, profile)
    for key in ("dev_limits", "ablation_dev_limits"):
        assert set(values.get(key, {})) <= {"qqp"}, (notebook, profile, key)
    assert values.get("dev_limit") is None  # 01 (SST alone) keeps its whole dev set too


@pytest.mark.parametrize("profile", ["cpu", "full"])
def test_no_profile_asks_for_more_train_rows_than_are_left_after_the_held_out_rows(profile, data_dir):
    """A train limit above what a task's train file has once its held-out rows are carved is a budget
    that silently is not: every `*train_limits` knob of every notebook fits the files here."""
    from minbert.data import load_split
    from minbert.params import load_config

    rows = {task: len(load_split(task, "train")) for task in ("sst", "qqp", "sts")}
    for notebook in NOTEBOOK_CONFIGS:
        cfg = load_config(notebook, profile)
        held = getattr(cfg, "heldout_sizes", {}) or {}
        for knob in ("train_limits", "trial_train_limits", "ablation_train_limits", "final_train_limits"):
            for task, limit in (getattr(cfg, knob, None) or {}).items():
                left = rows[task] - held.get(task, 0)
                assert limit <= left, f"{notebook}.{profile} {knob}[{task}] = {limit} > {left} rows left"
        for size in getattr(cfg, "curve_sizes", []):
            assert all(size <= rows[t] - held.get(t, 0) for t in rows), f"{notebook}.{profile} curve {size}"


def test_a_run_by_hand_says_first_that_it_replaces_the_committed_results(monkeypatch):
    """JupyterLab's Run All (no papermill cell in the input history) on the cpu profile writes the
    committed results file: the notebook says so, naming it; a papermill run and a smoke run do not."""
    from minbert.notebook import overwrite_warning

    monkeypatch.delenv("MINBERT_REPORTS_DIR", raising=False)
    by_hand = {"In": ["from minbert.notebook import start_notebook", "seeds = 1"]}
    warning = overwrite_warning("02_sbert_baseline", "cpu", by_hand)
    assert warning and "replaces the committed reports/results/02_sbert_baseline.cpu.json" in warning
    assert 'profile = "smoke"' in warning
    injected = {"In": ["import x", '# Parameters\nprofile = "cpu"\n']}
    assert overwrite_warning("02_sbert_baseline", "cpu", injected) is None
    assert overwrite_warning("02_sbert_baseline", "smoke", by_hand) is None


@pytest.mark.parametrize("notebook", ["02_sbert_baseline", "03_sophia", "04_smart", "05_attention",
                                      "06_final_bert"])
def test_the_default_profile_keeps_the_train_files_proportions(notebook, data_dir):
    """Issue 52: the study's schedules, QQP phase and class weights answer QQP being the largest task; an
    equal number of rows a task would remove what they are tested on. Every multitask budget of the
    default profile takes one fraction of each train file, once its held-out rows are carved."""
    from minbert.config import DEFAULT_PROFILE
    from minbert.data import load_split

    cfg = load_config(notebook, DEFAULT_PROFILE)
    for knob in ("train_limits", "ablation_train_limits", "final_train_limits"):
        limits = getattr(cfg, knob, None)
        if not limits:
            continue
        left = {task: len(load_split(task, "train")) - cfg.heldout_sizes[task] for task in limits}
        fractions = {task: limits[task] / left[task] for task in left}
        assert max(fractions.values()) - min(fractions.values()) < 0.001, (notebook, knob, fractions)
        assert limits["qqp"] > limits["sst"] > limits["sts"], (notebook, knob, limits)
