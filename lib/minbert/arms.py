"""The study's experiment design as plain data: every notebook's arms, levers and variants.

An arm is a named set of updates to the multitask knobs (`config.MultitaskSettings`), with
the study's row that tried the same idea. Where an arm's value is a notebook parameter (so
that a profile can change it), it says so with `Param("field")`; where it runs on settings an
Optuna study found, `tuned` names the study. `config` validates every name against these
tables, and `comparison_arms` turns a notebook's table into the runs its settings ask for;
nothing here imports the library above the task registry.

A new arm built from existing knobs is one entry below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from minbert import tasks


@dataclass(frozen=True)
class Param:
    """A knob value read from the notebook's parameter of this name (its profile may change it)."""

    name: str


@dataclass(frozen=True)
class Arm:
    """One arm of a comparison: what it does, its knob updates, and the study's row for it (theirs).

    `on` is the training arm (an entry of `ARMS`) it runs on, None for the notebook's `arm`
    (the schedule arms of `ARMS` run on themselves). `smart` gives SMART arms their settings:
    per task of the notebook's `smart_tasks` (every task where it has none) ("each"), or one named
    task, updates over the notebook's SMART parameters where it has them (`smart_defaults`); an arm
    that names a task runs only where that task has SMART. `tuned` names the Optuna study whose best
    settings go over these ("each": every study the notebook ran, merged); a tuned arm runs only
    where its study did. `study_row` may depend on
    the model's mode (bi-encoder, cross-encoder).
    """

    name: str
    summary: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    study_row: str | Mapping[str, str] | None = None
    on: str | None = None
    smart: Mapping[str, Mapping[str, Any]] | None = None
    tuned: str | None = None

    def row_for(self, mode: str) -> str | None:
        """The study's row for this arm with a model of this mode."""
        return self.study_row.get(mode) if isinstance(self.study_row, Mapping) else self.study_row


def _table(*arms: Arm) -> dict[str, Arm]:
    return {arm.name: arm for arm in arms}


# 02 (and the training arm of every other multitask notebook): which tasks train when.
ARMS: dict[str, Arm] = _table(
    Arm("baseline", "each epoch: all STS batches, then SST, then QQP (the study's order)",
        {"task_order": ["sts", "sst", "qqp"]}, "sBERT-Baseline_2"),
    Arm("qqp-first", "the same, QQP first", {"task_order": ["qqp", "sts", "sst"]}, "sBERT-ReorderedTraining"),
    Arm("round-robin", "equal-size chunks of the three tasks, interleaved batch by batch",
        {"schedule": "round-robin", "task_order": ["sts", "qqp", "sst"]}, "sBERT-RoundRobinTraining"),
    Arm("combined", "one batch of each task per step, losses summed",
        {"schedule": "combined", "task_order": ["sst", "qqp", "sts"]}, "sBERT-Combined Loss"),
    Arm("pcgrad", "as combined, with PCGrad gradient surgery on the three task gradients",
        {"schedule": "pcgrad", "task_order": ["sst", "qqp", "sts"]}),  # their PCGrad run died with NaN logits
    Arm("qqp-separate", "the first epoch on QQP alone, then QQP's share cut to the other tasks' size",
        {"task_order": ["sts", "sst", "qqp"], "qqp_only_epochs": 1}),
    Arm("class-weights", "class-weighted cross-entropy for the imbalanced SST and QQP",
        {"task_order": ["sts", "sst", "qqp"], "class_weights": True}),
    Arm("freeze", "the last epoch with BERT frozen, only the heads training", {"freeze_epochs": 1}),
    Arm("proportional", "tasks in proportion to their size, annealed toward equal shares, steps interleaved",
        {"schedule": "proportional", "task_order": ["qqp", "sts", "sst"]}),
    Arm("shared-similarity", "one linear layer shared by QQP and STS before they compare",
        {"task_order": ["sts", "sst", "qqp"], "shared_similarity": True}, "sBERT-Shared Similarity"),
)

_SOPHIA = {"optimizer": "sophia", "lr": Param("sophia_lr"), "rho": Param("sophia_rho"),
           "weight_decay": Param("sophia_weight_decay")}
_SOPHIA_CORRECTED = {**_SOPHIA, "hessian_bias_correction": True,
                     "hessian_interval": Param("corrected_hessian_interval")}

# 03: the optimizers, at their defaults and as the Optuna studies tuned them.
OPTIMIZER_ARMS: dict[str, Arm] = _table(
    Arm("adamw", "our AdamW at the run's settings (the reference)", {"optimizer": "adamw"}),
    Arm("sophia", "SophiaG at its reference defaults", _SOPHIA, "sBERT-Sophia Baseline"),
    Arm("sophia-corrected", "Sophia with a bias-corrected Hessian EMA refreshed often: a regime where the "
        "curvature estimate can matter", _SOPHIA_CORRECTED),
    Arm("sophia-newton", "Sophia corrected, at a rho large enough that the estimate sets many steps",
        {**_SOPHIA_CORRECTED, "rho": Param("newton_rho")}),
    Arm("adamw-tuned", "AdamW at the adamw study's best trial", tuned="adamw"),
    Arm("sophia-tuned", "Sophia at the sophia study's best trial", study_row="sBERT-Sophia Tuned",
        tuned="sophia"),
    Arm("sophia-tuned-qqp-separate", "tuned Sophia with the QQP-only first epoch", on="qqp-separate",
        tuned="sophia"),
    Arm("sophia-tuned-class-weights", "tuned Sophia with class-weighted losses", on="class-weights",
        tuned="sophia"),
    Arm("sophia-per-task-tuned", "one Sophia per task, each at its own tuned lr, rho and weight decay",
        _SOPHIA, tuned="sophia-per-task"),
    Arm("sophia-regularised", "Sophia with tuned per-task dropout and weight decay", _SOPHIA,
        "sBERT-Sophia dropout", tuned="regularisation"),
)

# 03's Optuna studies: the knob updates each study's trials start from (its space, `tuning.SPACES`,
# proposes the rest).
STUDY_BASES: dict[str, Mapping[str, Any]] = {
    "adamw": {}, "sophia": {}, "sophia-per-task": _SOPHIA, "regularisation": _SOPHIA}

_DROPOUT_ONLY = {"epsilon": 0.0, "noise_var": 0.0, "steps": 0}

# 04: SMART, its dropout-only control, a classification divergence on STS (our hypothesis), tuned.
SMART_ARMS: dict[str, Arm] = _table(
    Arm("no-smart", "no SMART term (the reference)", {"smart": {}},
        {"bi-encoder": "sBERT-Baseline_2", "cross-encoder": "BERT Baseline"}),
    Arm("dropout-only", "the SMART term at zero perturbation: the dropout-consistency part alone",
        smart={"each": _DROPOUT_ONLY}),
    Arm("smart", "SMART at a perturbation that moves the outputs", smart={"each": {}},
        study_row={"bi-encoder": "sBERT-SMART Baseline"}),
    Arm("smart-naive-sts", "SMART with a classification divergence on STS (our hypothesis of the study's)",
        smart={"each": {}, "sts": {"naive_regression": True}}, study_row={"cross-encoder": "BERT-SMART"}),
    Arm("smart-tuned", "SMART at each task's study's best trial", smart={"each": {}},
        study_row={"bi-encoder": "sBERT-SMART Tuned"}, tuned="each"),
)

# 05: the attention variants, each a run of the notebook's arm with that attention.
ATTENTION_ARMS: dict[str, Arm] = _table(*(
    Arm(variant, summary, {"attention": variant}, row) for variant, summary, row in (
        ("standard", "BERT's scaled dot-product attention (the reference)", "sBERT-BertSelfAttention"),
        ("linear", "queries and keys each a learned linear mix of both", "sBERT-LinearSelfAttention"),
        ("linear-nobias", "the linear mix without its bias", "sBERT-NoBiasLinearSelfAttention"),
        ("center", "a learned centre matrix between queries and keys", "sBERT-CenterMatrixSelfAttention"),
        ("sparsemax", "sparsemax in place of softmax", "sBERT-SparsemaxSelfAttention"),
        ("center+linear", "the centre matrix and the linear mix", "sBERT-CenterMatrixLinearSelfAttention"),
        ("linear+sparsemax", "the linear mix with sparsemax", "sBERT-LinearSelfAttentionWithSparsemax"),
        ("center+sparsemax", "the centre matrix with sparsemax",
         "sBERT-CenterMatrixSelfAttentionWithSparsemax"),
        ("center+linear+sparsemax", "all three", "sBERT-CenterMatrixLinearSelfAttentionWithSparsemax"),
    )))

# 06: the final recipe's levers. The ablation runs the recipe and each lever's alternative (`settings`:
# knob updates over the recipe) on one smaller budget, several seeds, paired intervals against the
# recipe. (The ensemble and the epoch count are measured on the final run itself.)
LEVERS: dict[str, Arm] = _table(
    Arm("constant lr without clipping", "the recipe's warmup, linear decay and clipping to norm 1, "
        "against a constant learning rate without clipping",
        {"lr_schedule": "constant", "max_grad_norm": None}),
    Arm("layer-wise lr decay", "one learning rate for every layer, against each layer at 0.9 times the "
        "rate of the one above it", {"layer_lr_decay": 0.9}),
    Arm("heads at the encoder's lr", "the heads' own learning rate, against the encoder's",
        {"head_lr": None}),
    Arm("sequential tasks", "tasks in proportion to their size, interleaved, against the study's "
        "sequential blocks (QQP, STS, SST)",
        {"schedule": "sequential", "task_order": ["qqp", "sts", "sst"]}),
    Arm("CLS pooling", "the recipe's sentence vector, against BERT's pooler ([CLS]) alone",
        {"pooling": "cls"}),
    Arm("mean pooling", "the recipe's sentence vector, against the token mean alone (what MiniLM was "
        "trained with)", {"pooling": "mean"}),
    Arm("CLS and mean pooling", "the recipe's sentence vector, against the pooler and the token mean "
        "side by side", {"pooling": "cls+mean"}),
    Arm("with R-Drop", "no consistency term, against R-Drop: the symmetric divergence between two "
        "dropout passes (SMART at zero perturbation), weight 1, on every task",
        smart={"each": {**_DROPOUT_ONLY, "weight": 1.0}}),
)

# What each comparison notebook compares, and the arm the others are measured against (02's reference
# is the first of its `arms`; 05's is standard where it runs).
COMPARISONS: dict[str, tuple[dict[str, Arm], str | None]] = {
    "02_sbert_baseline": (ARMS, None),
    "03_sophia": (OPTIMIZER_ARMS, "adamw"),
    "04_smart": (SMART_ARMS, "no-smart"),
    "05_attention": (ATTENTION_ARMS, "standard"),
    "06_final_bert": (LEVERS, None),
}

# What the final model aims for with the embedded 22M MiniLM: above the study's BERT-base on SST and STS.
FINAL_AIMS = {"sst_acc": 0.52, "qqp_acc": 0.86, "sts_pearson": 0.88}


def resolve(value: Any, cfg: Any) -> Any:
    """A table value with every `Param` read from the notebook's settings."""
    if isinstance(value, Param):
        return getattr(cfg, value.name)
    if isinstance(value, Mapping):
        return {key: resolve(item, cfg) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, cfg) for item in value]
    return value


def arm_updates(arm: Arm, cfg: Any, tuned: Mapping[str, Mapping[str, Any]] | None = None
                ) -> dict[str, Any] | None:
    """The arm's knob updates over the notebook's settings `cfg`, with the settings its Optuna study
    found (`tuned`: study name -> knob updates); None where the arm does not run with these settings
    (its study did not run, or the task it names has no SMART)."""
    tuned = tuned or {}
    updates = resolve(dict(arm.settings), cfg)
    if arm.smart is not None:
        smart_tasks = list(getattr(cfg, "smart_tasks", tasks.MULTITASK))
        named = [task for task in arm.smart if task != "each"]
        if any(task not in smart_tasks for task in named):
            return None
        base = cfg.smart_defaults() if hasattr(cfg, "smart_defaults") else {}
        each = resolve(arm.smart.get("each", {}), cfg)
        updates["smart"] = {task: {**base, **each, **resolve(arm.smart.get(task, {}), cfg)}
                            for task in smart_tasks}
    if arm.tuned is not None:
        studies = list(tuned) if arm.tuned == "each" else [arm.tuned]
        if not studies or any(name not in tuned for name in studies):
            return None
        for name in studies:
            found = dict(tuned[name])
            if "smart" in found and "smart" in updates:  # per task: the study's task over the arm's
                updates["smart"] = {**updates["smart"], **found.pop("smart")}
            updates.update(found)
    return updates


def _attention_arm(variant: str) -> Arm:
    return ATTENTION_ARMS.get(variant) or Arm(variant, f"{variant} attention", {"attention": variant})


def comparison_arms(notebook: str, cfg: Any, tuned: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """What a comparison notebook runs with these settings: label -> (training arm, knob updates), in
    the table's order. 02 runs its `arms`, 05 its `variants`, 06 the recipe and its `levers`; 03 and
    04 every arm of their table that runs here (`arm_updates`)."""
    if notebook == "02_sbert_baseline":
        return {name: (name, None) for name in cfg.arms}
    if notebook == "05_attention":
        return {v: (cfg.arm, arm_updates(_attention_arm(v), cfg)) for v in cfg.variants}
    if notebook == "06_final_bert":
        return {"recipe": (cfg.arm, None),
                **{name: (cfg.arm, arm_updates(LEVERS[name], cfg)) for name in cfg.levers}}
    table, _ = COMPARISONS[notebook]
    runs = {}
    for arm in table.values():
        updates = arm_updates(arm, cfg, tuned)
        if updates is not None:
            runs[arm.name] = (arm.on or cfg.arm, updates)
    return runs


def reference_arm(notebook: str, cfg: Any) -> str:
    """The label the other arms of a comparison are measured against."""
    labels = list(comparison_arms(notebook, cfg))
    _, reference = COMPARISONS[notebook]
    if notebook == "06_final_bert":
        return "recipe"
    return reference if reference in labels else labels[0]


def study_rows(notebook: str, mode: str = "bi-encoder") -> dict[str, str | None]:
    """The study's row for each arm of a comparison notebook's table (theirs, for reference)."""
    table, _ = COMPARISONS[notebook]
    return {name: arm.row_for(mode) for name, arm in table.items()}
