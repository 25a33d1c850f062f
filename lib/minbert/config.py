"""The knobs of a run, each with its one default: `MultitaskSettings` (every multitask run's data, model
and training knobs) and what all notebook configs share. Each notebook's own config, built on these,
is in `minbert.notebook_settings`.

A run's parameters are the defaults, then `params/<profile>/<notebook>.yaml`
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
from minbert.arms import ARMS
from minbert.schedules import SCHEDULES
from minbert.tasks import TaskName

PROFILES = ("smoke", "cpu", "full")  # params/<profile>/: the tests' budget, the evidence on a CPU, a GPU's
DEFAULT_PROFILE = "cpu"  # what a notebook, `minbert run` and `make report` run unless told otherwise
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

    profile: Literal[PROFILES] = DEFAULT_PROFILE
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


class MultitaskComparisonConfig(ComparisonConfig):
    """A comparison of multitask arms (`minbert.experiments.run_comparison`)."""

    parallel_runs: int = Field(1, ge=1, description="a comparison's runs trained at once, each in its own "
                               "process (small runs together keep one GPU busy); 1: one after another; "
                               "the results are the same")


# The standard recipe's knobs, each with its one default, shared by every notebook that trains (and the peer).
def lr_schedule_field() -> Any:
    return Field("linear", description="linear: warmup then linear decay to 0 over the run's steps (the "
                 "standard recipe, as Hugging Face's Trainer and the official Sophia script); constant: one "
                 "lr")


def warmup_ratio_field() -> Any:
    return Field(0.1, ge=0.0, lt=1.0, description="share of the steps spent warming up")


def resume_field() -> Any:
    return Field(False, description="take the runs that finished earlier with the same settings and code "
                 "(runs/finished/) instead of training them again")


def max_grad_norm_field() -> Any:
    return Field(1.0, gt=0.0, description="gradient-norm clipping, AdamW and Sophia alike; null for none")


def _per_task(value: float) -> Any:
    """A default of one value per multitask task, made when a config is (so a new task gets one too)."""
    return lambda: dict.fromkeys(registry.MULTITASK, value)


def every_task() -> list[str]:
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
    lr_schedule: Literal[LR_SCHEDULES] = lr_schedule_field()
    warmup_ratio: float = warmup_ratio_field()
    max_grad_norm: float | None = max_grad_norm_field()
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

    @field_validator("train_limits", "dev_limits", "heldout_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: dict[str, int]) -> dict[str, int]:
        """Row counts are at least 1 (a limit above a file's rows keeps them all); a task left out of
        train_limits or dev_limits keeps all its rows."""
        bad = {task: n for task, n in sizes.items() if n < 1}
        if bad:
            raise ValueError(f"every row count must be at least 1, got {bad}")
        return sizes

    @field_validator("dropout", "loss_weights")
    @classmethod
    def _one_value_per_task(cls, values: dict[str, float]) -> dict[str, float]:
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
