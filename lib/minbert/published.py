"""The figures the study ("Language Ninjas", M.Inf.2202, 2023) published in its README's
results table: dev-set SST-5 accuracy, QQP accuracy and STS Pearson correlation, with
BERT-base and the full QQP train set. They are theirs, shown beside ours for reference
and always labelled so; None where the study gave no figure. Which of our arms each row matches is
said by the arm (`minbert.arms`).
"""

from __future__ import annotations

# name: (sst_acc, qqp_acc, sts_pearson)
STUDY_FIGURES: dict[str, tuple[float | None, float | None, float | None]] = {
    "Part 1 finetune (BERT-base)": (0.5141, None, None),
    "sBERT-Baseline_1": (0.5114, 0.8523, 0.5215),
    "sBERT-Baseline_2": (0.5141, 0.7732, 0.4335),
    "sBERT-Sophia Baseline": (0.3669, 0.8081, 0.4467),
    "sBERT-Sophia Tuned": (0.2625, 0.6274, 0.0306),
    "sBERT-Sophia Tuned standard lr": (0.476, 0.788, 0.367),
    "sBERT-Sophia dropout": (0.381, 0.731, 0.288),
    "sBERT-SMART Baseline": (0.5041, 0.7964, 0.5260),
    "sBERT-SMART Tuned": (0.5141, 0.8058, 0.4846),
    "sBERT-Shared Similarity": (0.5014, 0.7108, 0.4768),
    "sBERT-Combined Loss": (0.3833, 0.8112, 0.4468),
    "sBERT-BertSelfAttention": (0.446, 0.772, 0.483),
    "sBERT-ReorderedTraining": (0.459, 0.793, 0.498),
    "sBERT-RoundRobinTraining": (0.455, 0.775, 0.503),
    "sBERT-LinearSelfAttention": (0.405, 0.756, 0.378),
    "sBERT-NoBiasLinearSelfAttention": (0.405, 0.756, 0.378),
    "sBERT-SparsemaxSelfAttention": (0.390, 0.707, 0.568),
    "sBERT-CenterMatrixSelfAttention": (0.391, 0.764, 0.434),
    "sBERT-LinearSelfAttentionWithSparsemax": (0.401, 0.753, 0.408),
    "sBERT-CenterMatrixSelfAttentionWithSparsemax": (0.391, 0.756, 0.404),
    "sBERT-CenterMatrixLinearSelfAttention": (0.424, 0.762, 0.424),
    "sBERT-CenterMatrixLinearSelfAttentionWithSparsemax": (0.397, 0.764, 0.392),
    "BERT Baseline": (0.503, 0.864, 0.847),
    "BERT-SMART": (0.516, 0.888, 0.438),
    "BERT additional layer": (0.500, 0.884, 0.844),
    "BERT extra classifier training": (0.516, 0.885, 0.843),
    "BERT-Final": (0.512, 0.888, 0.822),
}

# The state of the art the study cites, dev-set figures.
STATE_OF_THE_ART = (0.598, 0.907, 0.93)
