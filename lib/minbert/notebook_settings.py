"""Each notebook's validated config: the run knobs of `minbert.config.MultitaskSettings` (or the
Part 1 and peer recipes' own) with the notebook's own knobs (its arms, studies, sizes), each with its
one default. `minbert.params` reads a profile's file and overrides over these defaults; `validate`
is where any set of values becomes a notebook's config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from minbert import tasks as registry
from minbert.arms import ARMS, ATTENTION_ARMS, LEVERS, Arm, arm_updates
from minbert.config import (
    DEFAULT_PROFILE,
    LR_SCHEDULES,
    PROFILES,
    ComparisonConfig,
    ConfigError,
    MultitaskComparisonConfig,
    MultitaskSettings,
    NotebookConfig,
    Settings,
    arm_settings,
    consecutive_seeds,
    describe,
    every_task,
    lr_schedule_field,
    max_grad_norm_field,
    resume_field,
    warmup_ratio_field,
)
from minbert.tasks import TaskName


class Part1Config(ComparisonConfig):
    """01_part1_sst: SST-5 sentiment with BERT frozen (`pretrain`) or trained (`finetune`)."""

    modes: list[Literal["pretrain", "finetune"]] = Field(["pretrain", "finetune"], min_length=1)
    pooling: Literal["cls", "mean"] = "mean"
    max_length: int = Field(128, gt=2, le=512)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(128, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pretrain_epochs: int = Field(10, gt=0)
    pretrain_lr: float = Field(1e-3, gt=0.0)
    finetune_epochs: int = Field(3, gt=0)
    finetune_lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal[LR_SCHEDULES] = lr_schedule_field()
    warmup_ratio: float = warmup_ratio_field()
    max_grad_norm: float | None = max_grad_norm_field()
    heldout_size: int | None = Field(registry.get("sst").heldout_rows, gt=0, description="seeded rows carved "
                                     "from train on which the best epoch is chosen (dev is only reported); "
                                     "null to choose on dev")
    train_limit: int | None = Field(None, gt=0, description="seeded subsample of train; null for all")
    dev_limit: int | None = Field(None, gt=0, description="seeded subsample of dev and test; null for all")
    resume: bool = resume_field()


def _known(name: str | None, table: dict[str, Arm]) -> str | None:
    if name is not None and name not in table:
        raise ValueError(f"unknown arm {name!r}; known: {list(table)}")
    return name


def _check_arms_fit(settings: MultitaskSettings, names: list[str | None]) -> None:
    """Each arm's knob updates over these settings must be valid settings too (e.g. the freeze arm
    needs two epochs), so a bad combination stops at validation, naming the arm."""
    for arm in names:
        if arm is None:
            continue
        try:
            arm_settings(settings, arm)
        except ConfigError as exc:
            raise ValueError(f"arm {arm!r} ({ARMS[arm].settings}) does not fit these settings: "
                             f"{exc}") from None


class OneArmConfig(MultitaskSettings):
    """A notebook whose runs all follow one study arm."""

    arm: str = "qqp-first"

    @field_validator("arm")
    @classmethod
    def _known_arm(cls, arm: str) -> str:
        return _known(arm, ARMS)

    @model_validator(mode="after")
    def _arm_fits(self) -> OneArmConfig:
        _check_arms_fit(self, [self.arm])
        return self


class SbertConfig(MultitaskSettings, MultitaskComparisonConfig):
    """02_sbert_baseline: multitask bi-encoder on SST, QQP and STS, one run per study arm."""

    arms: list[str] = Field(["baseline", "qqp-first", "round-robin", "combined", "pcgrad", "qqp-separate",
                             "class-weights", "freeze"], min_length=1)
    final_epochs: int = Field(0, ge=0, description="epochs of the final run, an arm retrained on the "
                              "final train sizes after the comparison; 0 for none")
    final_arm: str | None = Field(None, description="arm of the final run; null for the comparison's "
                                  "best")
    final_train_limits: dict[TaskName, int] = Field({}, description="train sizes of the final run")

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, names: list[str]) -> list[str]:
        return [_known(a, ARMS) for a in names]

    @field_validator("final_arm")
    @classmethod
    def _known_final_arm(cls, arm: str | None) -> str | None:
        return _known(arm, ARMS)

    @model_validator(mode="after")
    def _arms_fit(self) -> SbertConfig:
        _check_arms_fit(self, self.arms)
        if self.final_epochs:
            _check_arms_fit(self.model_copy(update={"epochs": self.final_epochs}),
                            [self.final_arm] if self.final_arm else self.arms)
        return self

    def for_final_run(self, arm: str) -> SbertConfig:
        """The settings of the final run of `arm`: the final epochs and train sizes."""
        return self.resized(self.final_epochs, self.final_train_limits, arms=[arm], final_epochs=0,
                            final_arm=None)


class AttentionConfig(OneArmConfig, MultitaskComparisonConfig):
    """05_attention: one multitask run per attention variant, same arm, budget and seed."""

    variants: list[str] = Field(list(ATTENTION_ARMS), min_length=1,
                                description="attention variants, e.g. center+linear+sparsemax")
    variant_lr: float | None = Field(1e-3, gt=0.0, description="peak learning rate of the variants' own "
                                     "parameters: at the run's lr they barely leave standard attention")
    heatmap_sentence: str = Field("The acting is superb, but the plot never quite comes together.",
                                  min_length=1, description="the sentence whose attention is drawn")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        from minbert.attention import canonical_variant

        return [canonical_variant(v) for v in variants]


class TuningConfig(OneArmConfig, MultitaskComparisonConfig):
    """A multitask notebook with Optuna studies: their size, storage and trial data."""

    n_trials: int = Field(5, ge=1, description="finished trials per study")
    storage: str | None = Field(None, description="Optuna storage URL; null for SQLite under runs/optuna/")
    trial_epochs: int = Field(2, ge=1)
    trial_train_limits: dict[TaskName, int] = Field({"sst": 300, "qqp": 300, "sts": 300})
    trial_dev_limits: dict[TaskName, int] = Field(
        {"sst": 250, "qqp": 250, "sts": 250}, description="the trials' dev rows (trials select on held-out)")

    def for_trials(self) -> TuningConfig:
        """The same settings with the tuning trials' epochs and data sizes."""
        return self.resized(self.trial_epochs, self.trial_train_limits, dev_limits=self.trial_dev_limits)


STUDY_NAMES = ("adamw", "sophia", "sophia-per-task", "regularisation")


class SophiaConfig(TuningConfig):
    """03_sophia: SophiaG against AdamW on the multitask model, and the Optuna studies."""

    sophia_lr: float = Field(1e-4, gt=0.0, description="Sophia's reference default")
    sophia_rho: float = Field(0.04, gt=0.0)
    sophia_weight_decay: float = Field(0.1, ge=0.0)
    corrected_hessian_interval: int = Field(3, ge=1, description="the sophia-corrected run: steps between "
                                            "Hessian refreshes, sized so that a short run refreshes often")
    newton_rho: float = Field(10.0, gt=0.0, description="the sophia-newton run's rho: with the bias-"
                              "corrected estimate on real batches about half the estimated coordinates step "
                              "unclipped near 13 (the reference's 0.04 clips them all)")
    studies: list[Literal[STUDY_NAMES]] = list(STUDY_NAMES)
    objective: Literal["mean", "sst", "qqp", "sts"] = Field("mean", description="mean of the three dev "
                                                            "scores, or one task's")


class SmartConfig(TuningConfig):
    """04_smart: multitask training without SMART, with its dropout-only part, with SMART at a
    perturbation that moves the outputs (and with a classification divergence on STS there), and tuned."""

    mode: Literal["bi-encoder", "cross-encoder"] = Field(
        "cross-encoder", description="the study's STS collapse under SMART was in its cross-encoder")
    smart_tasks: list[TaskName] = Field(default_factory=every_task, min_length=1,
                                        description="tasks with SMART")
    smart_weight: float = Field(1.0, ge=0.0)
    smart_form: Literal["paper", "mtdnn"] = Field("paper", description="the paper's Algorithm 1, or MT-DNN's "
                                                  "normalised perturbation (minbert.smart)")
    smart_relative: bool = Field(True, description="sizes as multiples of the embeddings' mean per-token "
                                 "norm (the paper's absolute 1e-5 moves nothing)")
    smart_epsilon: float = Field(0.03, ge=0.0, description="size of the perturbation per token")
    smart_step_size: float | None = Field(None, ge=0.0, description="ascent step; null: epsilon, so that one "
                                          "step can reach the ball's edge")
    smart_noise_var: float = Field(1e-5, ge=0.0)
    smart_norm: Literal["inf", "l2", "l1"] = "l2"
    smart_steps: int = Field(1, ge=0)
    smart_through_clean: bool = Field(False, description="back-propagate through the clean pass (MT-DNN)")
    probe_epsilons: list[float] = Field([0.0, 1e-5, 0.003, 0.01, 0.03, 0.1, 0.3], min_length=1,
                                        description="perturbation sizes of the scale probe")
    studies: list[TaskName] = Field(default_factory=every_task, description="one SMART study per task named")

    def smart_defaults(self) -> dict:
        """SmartSettings fields at this config's SMART settings."""
        step = self.smart_epsilon if self.smart_step_size is None else self.smart_step_size
        return {"weight": self.smart_weight, "epsilon": self.smart_epsilon, "step_size": step,
                "noise_var": self.smart_noise_var, "norm": self.smart_norm, "steps": self.smart_steps,
                "form": self.smart_form, "relative": self.smart_relative,
                "through_clean": self.smart_through_clean}


class FinalConfig(OneArmConfig, MultitaskComparisonConfig):
    """06_final_bert: the final multitask model (cross-encoder by default), the ablation of its recipe's
    levers, its error analysis."""

    arm: str = "proportional"
    mode: Literal["bi-encoder", "cross-encoder"] = "cross-encoder"
    ensemble_size: int = Field(1, ge=1, description="runs of the recipe at seeds seed, seed+1, ...; the "
                               "members kept are chosen on held-out rows and their predictions averaged")
    ensemble_epochs: int = Field(1, ge=1, description="above 1, a second candidate beside the seed ensemble: "
                                 "each run's kept epoch and the ones before it, this many in all, averaged; "
                                 "the candidate with the higher held-out mean is the final model")
    pretrained_view: bool = Field(False, description="blend the pretrained checkpoint's own view into the "
                                  "final model (minbert.pretrained_view): linear models on its frozen "
                                  "sentence embeddings, fit on train, one weight per task chosen on held-out "
                                  "rows")
    levers: list[str] = Field([], description="the ablation: the recipe against each of these alternatives "
                              "(minbert.arms.LEVERS); empty for none")
    ablation_epochs: int = Field(2, ge=1)
    ablation_train_limits: dict[TaskName, int] = Field({"sst": 1000, "qqp": 1000, "sts": 1000})
    ablation_dev_limits: dict[TaskName, int] = Field(
        {"qqp": 1000}, description="the ablation's and learning curve's dev subsample per task; a task not "
        "named keeps all its dev rows")
    curve_sizes: list[int] = Field([], description="train rows per task of the learning curve's runs (the "
                                   "recipe, the final run's epochs and dev rows); empty for none")
    size_layers: list[int] = Field([], description="encoder layers of the model-size runs (the checkpoint's "
                                   "first ones): the recipe on the first of `curve_sizes`, beside the "
                                   "curve's runs there with every layer; empty for none")
    curve_seeds: int = Field(1, gt=0, description="runs of each learning-curve and model-size point, at "
                             "seeds seed, seed+1, ... (averaged: one run's SST is too noisy to fit)")
    examples_shown: int = Field(8, gt=0, description="rows of the least confident / most wrong tables")

    def curve_run_seeds(self) -> list[int]:
        return consecutive_seeds(self.seed, self.curve_seeds)

    @field_validator("levers")
    @classmethod
    def _known_levers(cls, levers: list[str]) -> list[str]:
        unknown = [name for name in levers if name not in LEVERS]
        if unknown:
            raise ValueError(f"unknown levers {unknown}; known: {list(LEVERS)}")
        return levers

    @model_validator(mode="after")
    def _sizes_have_a_budget(self) -> FinalConfig:
        if self.size_layers and not self.curve_sizes:
            raise ValueError("size_layers runs on the first of curve_sizes: name at least one curve size")
        return self

    @model_validator(mode="after")
    def _levers_fit(self) -> FinalConfig:
        for name in self.levers:
            try:
                arm_settings(self, self.arm, arm_updates(LEVERS[name], self))
            except ConfigError as exc:
                raise ValueError(f"lever {name!r} does not fit these settings: {exc}") from None
        return self


class ResultsConfig(Settings):
    """07_results: gathers the other notebooks' results; it trains nothing."""

    profile: Literal[PROFILES] = DEFAULT_PROFILE


class PeerConfig(NotebookConfig):
    """The peer (`minbert.peer`): transformers' own fine-tune of the same weights, one task at a time,
    with its usual recipe, on the rows notebook 06 uses (its data knobs must equal 06's: a test checks)."""

    tasks: list[TaskName] = Field(default_factory=every_task, min_length=1)
    lr: float = Field(1e-4, gt=0.0)
    epochs: int = Field(3, gt=0, description="the epoch kept is the best on the held-out rows")
    batch_size: int = Field(MultitaskSettings.model_fields["batch_size"].default, gt=0)
    eval_batch_size: int = Field(MultitaskSettings.model_fields["eval_batch_size"].default, gt=0)
    warmup_ratio: float = warmup_ratio_field()
    weight_decay: float = Field(0.01, ge=0.0, description="the peer's own: transformers users' usual 0.01")
    max_grad_norm: float = max_grad_norm_field()
    max_length: int = Field(MultitaskSettings.model_fields["max_length"].default, gt=2, le=512)
    train_limits: dict[TaskName, int] = Field({}, description="as notebook 06's")
    dev_limits: dict[TaskName, int] = Field({}, description="as notebook 06's")
    heldout_sizes: dict[TaskName, int] = Field(default_factory=MultitaskSettings.model_fields["heldout_sizes"]
                                               .default_factory,
                                               description="as notebook 06's")
    resume: bool = resume_field()


NOTEBOOK_CONFIGS: dict[str, type[Settings]] = {
    "01_part1_sst": Part1Config,
    "02_sbert_baseline": SbertConfig,
    "03_sophia": SophiaConfig,
    "04_smart": SmartConfig,
    "05_attention": AttentionConfig,
    "06_final_bert": FinalConfig,
    "07_results": ResultsConfig,
}


# Recorded runs that are not notebooks: their params files sit beside the notebooks'.
SCRIPT_CONFIGS: dict[str, type[Settings]] = {"peer_transformers": PeerConfig}


def config_class(notebook: str) -> type[Settings]:
    known = {**NOTEBOOK_CONFIGS, **SCRIPT_CONFIGS}
    try:
        return known[notebook]
    except KeyError:
        raise ConfigError(f"unknown notebook {notebook!r}; known: {sorted(known)}") from None


def validate(notebook: str, values: dict[str, Any]) -> Settings:
    """The notebook's config from plain values over the defaults; errors name each offending key."""
    cls = config_class(notebook)
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{notebook}: {describe(cls, exc)}") from None
