"""Notebook parameters: one validated config object per notebook.

A run's parameters come from `params/<profile>/<notebook>.yaml`, then `-p key
value` overrides, then papermill's injection into the notebook. Each notebook
validates what it received against its config class: an unknown key or a value
of the wrong type is an error that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from minbert import paths

PROFILES = ("smoke", "quick", "full")


class ConfigError(ValueError):
    """Parameters that do not fit a notebook: unknown key, wrong type, missing file."""


class NotebookConfig(BaseModel):
    """Base of every notebook's parameters: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Literal["smoke", "quick", "full"]
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        description="auto: bfloat16 autocast where the processor or GPU supports it, else float32")
    checkpoint: str | None = Field(
        description="Hugging Face BERT checkpoint folder or hub id; null for the embedded MiniLM")
    strict_data: bool = Field(description="stop at the first malformed CSV row instead of skipping")


class Part1Config(NotebookConfig):
    """01_part1_sst: SST-5 sentiment with BERT frozen (`pretrain`) or trained (`finetune`)."""

    modes: list[Literal["pretrain", "finetune"]] = Field(min_length=1)
    pooling: Literal["cls", "mean"]
    max_length: int = Field(gt=2, le=512)
    batch_size: int = Field(gt=0)
    eval_batch_size: int = Field(gt=0)
    dropout: float = Field(ge=0.0, lt=1.0)
    pretrain_epochs: int = Field(gt=0)
    pretrain_lr: float = Field(gt=0.0)
    finetune_epochs: int = Field(gt=0)
    finetune_lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    train_limit: int | None = Field(gt=0, description="seeded subsample of train; null for all")
    dev_limit: int | None = Field(gt=0, description="seeded subsample of dev; null for all")


STRATEGY_NAMES = ("baseline", "qqp-first", "round-robin", "combined", "pcgrad", "qqp-separate",
                  "class-weights", "freeze", "shared-similarity")


class MultitaskConfig(NotebookConfig):
    """What every multitask notebook shares: model, data sizes, training and the strategies' knobs."""

    pooling: Literal["cls", "mean"]
    head_hidden: int | None = Field(gt=0, description="hidden units of the heads; null for linear")
    dropout_sst: float = Field(ge=0.0, lt=1.0)
    dropout_qqp: float = Field(ge=0.0, lt=1.0)
    dropout_sts: float = Field(ge=0.0, lt=1.0)
    max_length: int = Field(gt=2, le=512)
    batch_size: int = Field(gt=0)
    eval_batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0, description="epochs of every strategy")
    baseline_epochs: int = Field(gt=0, description="epochs of the baseline, whose curves show overfitting")
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    loss_weight_sst: float = Field(gt=0.0, description="combined and pcgrad: weight of SST's loss")
    loss_weight_qqp: float = Field(gt=0.0, description="combined and pcgrad: weight of QQP's loss")
    loss_weight_sts: float = Field(gt=0.0, description="combined and pcgrad: weight of STS's loss")
    qqp_only_epochs: int = Field(ge=1, description="qqp-separate: QQP-only epochs before the others")
    freeze_last_epochs: int = Field(ge=1, description="freeze: extra epochs with BERT frozen")
    sst_train_limit: int | None = Field(gt=0)
    qqp_train_limit: int | None = Field(gt=0)
    sts_train_limit: int | None = Field(gt=0)
    dev_limit: int | None = Field(gt=0, description="seeded subsample of each dev set; null for all")
    resume: bool = Field(description="continue each run from its last checkpoint under runs/")

    def resized(self, epochs: int, sst: int | None, qqp: int | None, sts: int | None, **more: Any):
        """The same settings with other epochs and train sizes (and any other fields in `more`)."""
        return self.model_copy(update={"epochs": epochs, "baseline_epochs": epochs, "sst_train_limit": sst,
                                       "qqp_train_limit": qqp, "sts_train_limit": sts, **more})


class SbertConfig(MultitaskConfig):
    """02_sbert_baseline: multitask bi-encoder on SST, QQP and STS, one run per strategy."""

    strategies: list[Literal[STRATEGY_NAMES]] = Field(min_length=1)
    final_epochs: int = Field(ge=0, description="epochs of the final run, a strategy retrained on the "
                              "final train sizes after the comparison; 0 for none")
    final_strategy: Literal[STRATEGY_NAMES] | None = Field(
        description="strategy of the final run; null for the comparison's best")
    final_sst_train_limit: int | None = Field(gt=0)
    final_qqp_train_limit: int | None = Field(gt=0)
    final_sts_train_limit: int | None = Field(gt=0)

    def for_final_run(self) -> SbertConfig:
        """The same settings with the final run's epochs and train sizes."""
        return self.resized(self.final_epochs, self.final_sst_train_limit, self.final_qqp_train_limit,
                            self.final_sts_train_limit)


class AttentionConfig(MultitaskConfig):
    """05_attention: one multitask run per attention variant, same strategy, budget and seed."""

    strategy: Literal[STRATEGY_NAMES]
    variants: list[str] = Field(min_length=1, description="attention variants, e.g. center+linear+sparsemax")
    heatmap_sentence: str = Field(min_length=1, description="the sentence whose attention is drawn")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        from minbert.attention import canonical_variant

        return [canonical_variant(v) for v in variants]


STUDY_NAMES = ("adamw", "sophia", "sophia-per-task", "regularisation")


class TuningConfig(MultitaskConfig):
    """A multitask notebook with Optuna studies: their size, storage and trial data."""

    strategy: Literal[STRATEGY_NAMES]
    n_trials: int = Field(ge=1, description="finished trials per study")
    storage: str | None = Field(description="Optuna storage URL; null for SQLite under runs/optuna/")
    trial_epochs: int = Field(ge=1)
    trial_sst_train_limit: int | None = Field(gt=0)
    trial_qqp_train_limit: int | None = Field(gt=0)
    trial_sts_train_limit: int | None = Field(gt=0)
    trial_dev_limit: int | None = Field(gt=0)

    def for_trials(self) -> TuningConfig:
        """The same settings with the tuning trials' epochs and data sizes."""
        return self.resized(self.trial_epochs, self.trial_sst_train_limit, self.trial_qqp_train_limit,
                            self.trial_sts_train_limit, dev_limit=self.trial_dev_limit)


class SophiaConfig(TuningConfig):
    """03_sophia: SophiaG against AdamW on the multitask model, and the Optuna studies."""

    sophia_lr: float = Field(gt=0.0)
    sophia_rho: float = Field(gt=0.0)
    sophia_weight_decay: float = Field(ge=0.0)
    hessian_interval: int = Field(ge=1, description="Sophia: steps between Hessian refreshes (k)")
    studies: list[Literal[STUDY_NAMES]]
    objective: Literal["mean", "sst", "qqp", "sts"] = Field(description="mean of the three dev scores, "
                                                            "or one task's")

    def sophia_defaults(self) -> dict:
        """MultitaskRun options for Sophia at this config's default settings."""
        return {"optimizer": "sophia", "lr": self.sophia_lr, "rho": self.sophia_rho,
                "weight_decay": self.sophia_weight_decay, "hessian_interval": self.hessian_interval}


class SmartConfig(TuningConfig):
    """04_smart: multitask training without and with SMART, and SMART tuned per task."""

    smart_tasks: list[Literal["sst", "qqp", "sts"]] = Field(min_length=1, description="tasks with SMART")
    smart_weight: float = Field(ge=0.0)
    smart_epsilon: float = Field(ge=0.0)
    smart_step_size: float = Field(ge=0.0)
    smart_noise_var: float = Field(ge=0.0)
    smart_norm: Literal["inf", "l2", "l1"]
    smart_steps: int = Field(ge=0)
    studies: list[Literal["sst", "qqp", "sts"]] = Field(description="one SMART study per task named")

    def smart_defaults(self) -> dict:
        """SmartSettings fields at this config's default settings."""
        return {"weight": self.smart_weight, "epsilon": self.smart_epsilon, "step_size": self.smart_step_size,
                "noise_var": self.smart_noise_var, "norm": self.smart_norm, "steps": self.smart_steps}


class FinalConfig(MultitaskConfig):
    """06_final_bert: the final multitask model (cross-encoder by default), its error analysis."""

    mode: Literal["bi-encoder", "cross-encoder"]
    strategy: Literal[STRATEGY_NAMES]
    task_order: list[Literal["sst", "qqp", "sts"]] = Field(min_length=3, max_length=3,
                                                           description="order of tasks within an epoch")
    optimizer: Literal["adamw", "sophia"]
    sophia_rho: float = Field(gt=0.0)
    hessian_interval: int = Field(ge=1)
    smart_tasks: list[Literal["sst", "qqp", "sts"]] = Field(description="tasks with SMART (paper defaults "
                                                             "unless tuned settings are given)")
    smart_settings: dict[Literal["sst", "qqp", "sts"], dict[str, float | int | str]] = Field(
        description="per task SMART settings replacing the defaults, e.g. from notebook 04's studies")
    examples_shown: int = Field(gt=0, description="rows of the least confident / most wrong tables")


class ResultsConfig(BaseModel):
    """07_results: gathers the other notebooks' results; it trains nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Literal["smoke", "quick", "full"]


NOTEBOOK_CONFIGS: dict[str, type[BaseModel]] = {
    "01_part1_sst": Part1Config,
    "02_sbert_baseline": SbertConfig,
    "03_sophia": SophiaConfig,
    "04_smart": SmartConfig,
    "05_attention": AttentionConfig,
    "06_final_bert": FinalConfig,
    "07_results": ResultsConfig,
}


def config_class(notebook: str) -> type[BaseModel]:
    try:
        return NOTEBOOK_CONFIGS[notebook]
    except KeyError:
        raise ConfigError(f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOK_CONFIGS)}") from None


def validate(notebook: str, values: dict[str, Any]) -> BaseModel:
    """The notebook's config from plain values; errors name each offending key."""
    cls = config_class(notebook)
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"]) or "(parameters)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown parameter {key!r} (known: {', '.join(cls.model_fields)})")
            else:
                problems.append(f"parameter {key!r}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{notebook}: " + "; ".join(problems)) from None


def params_file(notebook: str, profile: str) -> Path:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; known: {list(PROFILES)}")
    return paths.params_dir() / profile / f"{notebook}.yaml"


def load_params(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> dict:
    """Profile file plus overrides, validated; returned as plain values for papermill."""
    config_class(notebook)
    path = params_file(notebook, profile)
    if not path.is_file():
        raise ConfigError(f"{path}: no parameter file for {notebook} in profile {profile!r}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values")
    values = {**values, **(overrides or {}), "profile": profile}
    return validate(notebook, values).model_dump()


def parse_override(text: str) -> Any:
    """A `-p key value` value as YAML would read it (numbers, booleans, null, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def notebook_parameters(before: set[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """The names a notebook's parameters cell (and papermill's injection) defined.

    `before` is the set of global names taken just before the parameters cell;
    everything new and public since then is a parameter, so a mistyped name
    injected by papermill reaches validation and is refused there.
    """
    return {k: v for k, v in namespace.items()
            if k not in before and not k.startswith("_") and k not in {"In", "Out"}}
