"""Parameter validation: unknown keys and wrong types name the key; profiles are complete."""

from __future__ import annotations

import json

import pytest
import yaml

from minbert import paths
from minbert.config import (
    NOTEBOOK_CONFIGS,
    PROFILES,
    ConfigError,
    load_params,
    notebook_parameters,
    parse_override,
    validate,
)


def quick_values(notebook="01_part1_sst"):
    return load_params(notebook, "quick")


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match="unknown parameter 'finetune_lrr'"):
        load_params("01_part1_sst", "quick", {"finetune_lrr": 0.1})


@pytest.mark.parametrize("key, value, message", [
    ("finetune_epochs", "three", "parameter 'finetune_epochs'"),
    ("modes", ["pretrain", "finetuning"], "parameter 'modes.1'"),
    ("dropout", 1.5, "parameter 'dropout'"),
    ("pooling", "max", "parameter 'pooling'"),
])
def test_wrong_values_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_params("01_part1_sst", "quick", {key: value})


def test_missing_parameter_is_named():
    values = quick_values()
    del values["seed"]
    with pytest.raises(ConfigError, match="parameter 'seed': Field required"):
        validate("01_part1_sst", values)


def test_unknown_notebook_and_profile():
    with pytest.raises(ConfigError, match="unknown notebook"):
        load_params("99_nothing", "quick")
    with pytest.raises(ConfigError, match="unknown profile"):
        load_params("01_part1_sst", "huge")


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_file_is_valid(notebook, profile):
    assert load_params(notebook, profile)["profile"] == profile


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
def test_parameters_cell_equals_the_quick_profile(notebook):
    """The notebook opened in JupyterLab runs the quick profile as it stands."""
    nb = json.loads((paths.notebooks_dir() / f"{notebook}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    namespace: dict = {}
    exec("".join(cells[0]["source"]), {}, namespace)
    assert validate(notebook, namespace).model_dump() == quick_values(notebook)


def test_overrides_are_read_as_yaml():
    assert parse_override("0.001") == 0.001
    assert parse_override("null") is None
    assert parse_override("[finetune]") == ["finetune"]
    assert parse_override("true") is True
    # PyYAML reads 1e-5 without a dot as a string; validation turns it into the float
    assert parse_override("1e-5") == "1e-5"
    params = load_params("01_part1_sst", "quick", {"finetune_lr": parse_override("1e-5")})
    assert params["finetune_lr"] == 1e-5


def test_notebook_parameters_are_the_names_defined_after_the_snapshot():
    namespace = {"pd": object(), "_before": None}
    before = set(namespace)
    namespace.update({"seed": 1, "typo_param": 2, "_": 3, "Out": {}})
    assert notebook_parameters(before, namespace) == {"seed": 1, "typo_param": 2}


def test_yaml_floats_in_the_profiles_are_floats():
    for profile in PROFILES:
        raw = yaml.safe_load((paths.params_dir() / profile / "01_part1_sst.yaml").read_text())
        assert isinstance(raw["finetune_lr"], float) and isinstance(raw["pretrain_lr"], float)


def test_attention_variants_are_checked_and_made_canonical():
    values = load_params("05_attention", "smoke", {"variants": ["sparsemax+center", "standard"]})
    assert values["variants"] == ["center+sparsemax", "standard"]
    with pytest.raises(ConfigError, match="parameter 'variants'.*unknown attention variant 'softmax'"):
        load_params("05_attention", "smoke", {"variants": ["softmax"]})
