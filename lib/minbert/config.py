"""Notebook parameters: every knob with its default in one place, one validated config per notebook.

A run's parameters are the defaults below, then `params/<profile>/<notebook>.yaml`
(which lists only what the profile changes), then `-p key value` overrides
(`minbert.params` reads them). Validation is strict: an unknown key, a value of the wrong type
(a string for a number, a boolean for an integer) or an impossible combination is
an error that names the key.

A new training knob is one field of `MultitaskSettings` (with its default) and its
use in `minbert.training`; a new study arm is one entry of a table in `minbert.arms`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from minbert import tasks as registry
from minbert.arms import ARMS, ATTENTION_ARMS, LEVERS, Arm, arm_updates
from minbert.schedules import SCHEDULES
from minbert.tasks import TaskName

LR_SCHEDULES = ("linear", "constant")  # how the learning rate moves over a run (minbert.training)


def consecutive_seeds(first: int, count: int) -> list[int]:
    """The seeds of `count` runs of one thing: first, first+1, ... (every notebook numbers its runs so)."""
    return list(range(first, first + count))


class ConfigError(ValueError):
    """Parameters that do not fit a notebook: unknown key, wrong type, missing file."""


class Settings(BaseModel):
    """Strict, frozen, and no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def with_updates(self, *updates: dict[str, Any] | None):
        """The same settings with the given fields replaced, validated again (later dicts win)."""
        merged: dict[str, Any] = {}
        for update in updates:
            merged.update(update or {})
        if not merged:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **merged})
        except ValidationError as exc:
            raise ConfigError(describe(type(self), exc)) from None


class NotebookConfig(Settings):
    """What every training notebook has: profile, seed, where it computes, checkpoint, data policy."""

    profile: Literal["smoke", "quick", "full"] = "quick"
    seed: int = Field(11711, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 autocast where the processor or GPU supports it, else float32")
    checkpoint: str | None = Field(
        None, description="Hugging Face BERT checkpoint folder or hub id; null for the embedded MiniLM")
    strict_data: bool = Field(False, description="stop at the first malformed CSV row instead of skipping")


class ComparisonConfig(NotebookConfig):
    """A notebook that compares arms (modes, variants...): each runs once per seed on the same data
    (`seed` draws the data and is the first run seed; the others follow it)."""

    seeds: int = Field(3, ge=1, description="runs per arm, seeds seed, seed+1, ...: the spread and the "
                       "paired intervals of a comparison need several")

    def run_seeds(self) -> list[int]:
        return consecutive_seeds(self.seed, self.seeds)


# The standard recipe's knobs, each with its one default, shared by every notebook that trains (and the peer).
def _lr_schedule() -> Any:
    return Field("linear", description="linear: warmup then linear decay to 0 over the run's steps (the "
                 "standard recipe, as Hugging Face's Trainer and the official Sophia script); constant: one "
                 "lr")


def _warmup_ratio() -> Any:
    return Field(0.1, ge=0.0, lt=1.0, description="share of the steps spent warming up")


def _max_grad_norm() -> Any:
    return Field(1.0, gt=0.0, description="gradient-norm clipping, AdamW and Sophia alike; null for none")


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
    lr_schedule: Literal[LR_SCHEDULES] = _lr_schedule()
    warmup_ratio: float = _warmup_ratio()
    max_grad_norm: float | None = _max_grad_norm()
    heldout_size: int | None = Field(registry.get("sst").heldout_rows, gt=0, description="seeded rows carved "
                                     "from train on which the best epoch is chosen (dev is only reported); "
                                     "null to choose on dev")
    train_limit: int | None = Field(None, gt=0, description="seeded subsample of train; null for all")
    dev_limit: int | None = Field(None, gt=0, description="seeded subsample of dev and test; null for all")


def _per_task(value: float) -> Any:
    """A default of one value per multitask task, made when a config is (so a new task gets one too)."""
    return lambda: dict.fromkeys(registry.MULTITASK, value)


def _every_task() -> list[str]:
    return list(registry.MULTITASK)


class MultitaskSettings(NotebookConfig):
    """Every knob of a multitask run (data, model, training) with its default: the standard recipe.

    The trainer reads its knobs from here, a study arm is a set of updates to them
    (`minbert.arms`), and an Optuna space proposes updates to them.
    """

    # data
    max_length: int = Field(64, gt=2, le=512)
    train_limits: dict[TaskName, int] = Field(
        {}, description="seeded train subsample per task; a task not named keeps all its rows")
    dev_limits: dict[TaskName, int] = Field(
        {}, description="seeded dev subsample per task, for speed; a task not named is scored on all its dev "
        "rows (SST and STS dev are small: keep them whole)")
    test_limit: int | None = Field(None, gt=0, description="seeded subsample of each test-student file whose "
                                   "predictions are written; null for all")
    heldout_sizes: dict[TaskName, int] = Field(
        default_factory=lambda: {task: registry.get(task).heldout_rows for task in registry.MULTITASK},
        description="seeded rows carved from each train file: every selection (best epoch, tuning, "
        "headline run) is made on them; dev is only reported")
    # model
    mode: Literal["bi-encoder", "cross-encoder"] = Field(
        "bi-encoder", description="sentences of a pair encoded apart (sBERT) or read together (BERT)")
    attention: str = Field("standard", description="attention variant, e.g. center+linear+sparsemax")
    pooling: Literal["cls", "mean", "cls+mean"] = Field(
        "mean", description="the sentence vector: BERT's pooler, the mean of the tokens, or both together")
    head_hidden: int | None = Field(None, gt=0, description="hidden units of the heads; null for linear")
    num_layers: int | None = Field(None, gt=0, description="encoder layers kept, the checkpoint's first ones "
                                   "(null for all): a smaller model of the same weights")
    dropout: dict[TaskName, float] = Field(default_factory=_per_task(0.1),
                                           description="dropout before each task's head")
    shared_similarity: bool = Field(False, description="bi-encoder: one linear layer shared by QQP and STS")
    variant_lr: float | None = Field(None, gt=0.0, description="peak learning rate of the attention "
                                     "variants' own parameters (linear mixes, centre matrix); null: the lr")
    # training
    schedule: Literal[SCHEDULES] = Field(
        "sequential", description="which tasks train at each step (minbert.schedules)")
    task_order: list[TaskName] = Field(["sts", "sst", "qqp"], description="order of tasks within an epoch; "
                                       "tasks not named follow in the registry's order")
    epochs: int = Field(2, gt=0, description="epochs of the run, the QQP-only and frozen ones included: "
                        "every epoch is one pass's worth of steps (minbert.schedules), so arms with the "
                        "same epochs have the same budget")
    qqp_only_epochs: int = Field(0, ge=0, description="of the epochs, the first ones on QQP alone")
    freeze_epochs: int = Field(0, ge=0, description="of the epochs, the last ones with BERT frozen (heads "
                               "only)")
    lr: float = Field(5e-5, gt=0.0, description="peak learning rate (of the top BERT layer)")
    layer_lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="each BERT layer's learning rate is this "
                                  "times the one above it (the embeddings lowest); 1 for one rate")
    head_lr: float | None = Field(None, gt=0.0, description="peak learning rate of the task heads; null: lr")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better "
                                 "held-out score (the best epoch's weights are kept either way); null: never")
    lr_schedule: Literal[LR_SCHEDULES] = _lr_schedule()
    warmup_ratio: float = _warmup_ratio()
    max_grad_norm: float | None = _max_grad_norm()
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(128, gt=0)
    loss_weights: dict[TaskName, float] = Field(default_factory=_per_task(1.0),
                                                description="combined and pcgrad: the tasks' loss weights")
    class_weights: bool = Field(False, description="inverse-frequency class weights in the losses")
    optimizer: Literal["adamw", "sophia"] = "adamw"
    rho: float = Field(0.04, gt=0.0, description="sophia: clipping scale")
    hessian_interval: int = Field(10, ge=1, description="sophia: steps between Hessian refreshes (k)")
    hessian_bias_correction: bool = Field(False, description="sophia: divide the Hessian EMA by 1 - b2^n "
                                          "(our addition; off as in the official code)")
    task_optimizers: bool = Field(False, description="one optimizer per task, as the study did")
    task_settings: dict[TaskName, dict[Literal["lr", "rho", "weight_decay"], float]] = Field(
        {}, description="with task_optimizers: a task's own lr, rho and weight decay")
    smart: dict[TaskName, dict[str, float | int | str | bool]] = Field(
        {}, description="SMART per task: minbert.smart.SmartSettings fields ({} for the paper's)")
    resume: bool = Field(False, description="continue each run from its last checkpoint under runs/")

    @field_validator("attention")
    @classmethod
    def _known_variant(cls, variant: str) -> str:
        from minbert.attention import canonical_variant

        return canonical_variant(variant)

    @field_validator("dropout", "loss_weights")
    @classmethod
    def _every_task(cls, values: dict[str, float]) -> dict[str, float]:
        if sorted(values) != sorted(registry.MULTITASK):
            raise ValueError(f"needs one value for each of {list(registry.MULTITASK)}, "
                             f"got {sorted(values)}")
        return values

    @field_validator("task_order")
    @classmethod
    def _each_task_once(cls, order: list[str]) -> list[str]:
        """Each task at most once; the tasks not named join at the end, in the registry's order (so the
        study's three-task orders of `minbert.arms` hold for a task added later)."""
        if len(set(order)) != len(order):
            raise ValueError(f"must name each task at most once, got {order}")
        return [*order, *(task for task in registry.MULTITASK if task not in order)]

    @field_validator("smart")
    @classmethod
    def _smart_settings(cls, smart: dict[str, dict]) -> dict[str, dict]:
        from minbert.smart import SmartSettings

        for task, settings in smart.items():
            try:
                SmartSettings(**settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{task}: {exc}") from None
        return smart

    @model_validator(mode="after")
    def _consistent(self) -> MultitaskSettings:
        if self.task_optimizers and self.schedule in ("combined", "pcgrad"):
            raise ValueError(f"task_optimizers needs one task per step (sequential or round-robin), "
                             f"not schedule {self.schedule!r}")
        if self.task_settings and not self.task_optimizers:
            raise ValueError("task_settings need task_optimizers: true")
        if self.qqp_only_epochs + self.freeze_epochs >= self.epochs:
            raise ValueError(f"epochs ({self.epochs}) counts the QQP-only ({self.qqp_only_epochs}) and "
                             f"frozen ({self.freeze_epochs}) epochs and needs one more on every task")
        if self.shared_similarity and self.mode == "cross-encoder":
            raise ValueError("shared_similarity compares two sentence vectors: bi-encoder mode only")
        return self

    def resized(self, epochs: int, train_limits: dict[str, int], **more: Any):
        """The same settings with other epochs and train sizes (and any other fields in `more`)."""
        return self.with_updates({"epochs": epochs, "train_limits": train_limits, **more})


def arm_settings(cfg: MultitaskSettings, arm: str, *updates: dict[str, Any] | None) -> MultitaskSettings:
    """The run knobs of the notebook's settings with the training arm's updates (`minbert.arms.ARMS`),
    then any further updates, validated (as plain `MultitaskSettings`: the notebook's own fields, such as
    its list of arms, are not the run's)."""
    knobs = MultitaskSettings.model_validate(cfg.model_dump(include=set(MultitaskSettings.model_fields)))
    return knobs.with_updates(ARMS[arm].settings, *updates)


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


class SbertConfig(MultitaskSettings, ComparisonConfig):
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


class AttentionConfig(OneArmConfig, ComparisonConfig):
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


class TuningConfig(OneArmConfig, ComparisonConfig):
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
    perturbation that moves the outputs (and with the study's STS divergence there), and tuned."""

    mode: Literal["bi-encoder", "cross-encoder"] = Field(
        "cross-encoder", description="the study's STS collapse under SMART was in its cross-encoder")
    smart_tasks: list[TaskName] = Field(default_factory=_every_task, min_length=1,
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
    studies: list[TaskName] = Field(default_factory=_every_task, description="one SMART study per task named")

    def smart_defaults(self) -> dict:
        """SmartSettings fields at this config's SMART settings."""
        step = self.smart_epsilon if self.smart_step_size is None else self.smart_step_size
        return {"weight": self.smart_weight, "epsilon": self.smart_epsilon, "step_size": step,
                "noise_var": self.smart_noise_var, "norm": self.smart_norm, "steps": self.smart_steps,
                "form": self.smart_form, "relative": self.smart_relative,
                "through_clean": self.smart_through_clean}


class FinalConfig(OneArmConfig, ComparisonConfig):
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

    profile: Literal["smoke", "quick", "full"] = "quick"


class PeerConfig(NotebookConfig):
    """The peer (`minbert.peer`): transformers' own fine-tune of the same weights, one task at a time,
    with its usual recipe, on the rows notebook 06 uses (its data knobs must equal 06's: a test checks)."""

    tasks: list[TaskName] = Field(default_factory=_every_task, min_length=1)
    lr: float = Field(1e-4, gt=0.0)
    epochs: int = Field(3, gt=0, description="the epoch kept is the best on the held-out rows")
    batch_size: int = Field(MultitaskSettings.model_fields["batch_size"].default, gt=0)
    eval_batch_size: int = Field(MultitaskSettings.model_fields["eval_batch_size"].default, gt=0)
    warmup_ratio: float = _warmup_ratio()
    weight_decay: float = Field(0.01, ge=0.0, description="the peer's own: transformers users' usual 0.01")
    max_grad_norm: float = _max_grad_norm()
    max_length: int = Field(MultitaskSettings.model_fields["max_length"].default, gt=2, le=512)
    train_limits: dict[TaskName, int] = Field({}, description="as notebook 06's")
    dev_limits: dict[TaskName, int] = Field({}, description="as notebook 06's")
    heldout_sizes: dict[TaskName, int] = Field(default_factory=MultitaskSettings.model_fields["heldout_sizes"]
                                               .default_factory,
                                               description="as notebook 06's")


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


def describe(cls: type[BaseModel], exc: ValidationError) -> str:
    """A validation error as one line per offending key."""
    problems, unknown = [], False
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(parameters)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown parameter {key!r}")
            unknown = True
        else:
            problems.append(f"parameter {key!r}: {err['msg']} (got {err.get('input')!r})")
    known = f" (known: {', '.join(cls.model_fields)})" if unknown else ""
    return "; ".join(problems) + known


def validate(notebook: str, values: dict[str, Any]) -> Settings:
    """The notebook's config from plain values over the defaults; errors name each offending key."""
    cls = config_class(notebook)
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{notebook}: {describe(cls, exc)}") from None
