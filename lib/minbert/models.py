"""Task models on top of our BertModel: the heads, the one place that knows which task gets which."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minbert import tasks
from minbert.attention import Packing
from minbert.bert import BertModel, Embedded

POOLINGS = ("cls", "mean", "cls+mean")


def pool(outputs: dict[str, torch.Tensor], attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: BERT's pooler output ([CLS] through dense + tanh), the
    mean of the non-padded token states (what sentence-transformers trained MiniLM with), or
    both side by side (`cls+mean`, twice the hidden size: see `pooled_size`)."""
    if pooling == "cls":
        return outputs["pooler_output"]
    mask = attention_mask.unsqueeze(-1).to(outputs["last_hidden_state"].dtype)
    mean = (outputs["last_hidden_state"] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "mean":
        return mean
    if pooling == "cls+mean":
        return torch.cat([outputs["pooler_output"].to(mean.dtype), mean], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")


def pooled_size(hidden_size: int, pooling: str) -> int:
    """The width of `pool`'s vector."""
    return 2 * hidden_size if pooling == "cls+mean" else hidden_size


class SentenceClassifier(nn.Module):
    """BERT, a sentence embedding, dropout and a linear layer to class logits.

    `freeze_bert` is the study's `pretrain` option: BERT's weights stay fixed and
    only the head learns; otherwise (`finetune`) every weight learns.
    """

    def __init__(self, bert: BertModel, num_classes: int, dropout: float = 0.1,
                 pooling: str = "cls", freeze_bert: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")
        self.bert = bert
        self.pooling = pooling
        self.freeze_bert = freeze_bert
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(pooled_size(bert.config.hidden_size, pooling), num_classes)
        for p in bert.parameters():
            p.requires_grad = not freeze_bert

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              packing: Packing | None = None) -> torch.Tensor:
        """Pooled sentence vectors; `packing` the mask's, found on the host (`minbert.data.on_device`)."""
        return pool(self.bert(input_ids, attention_mask, packing=packing), attention_mask, self.pooling)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(embedding))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                packing: Packing | None = None) -> torch.Tensor:
        return self.classify(self.embed(input_ids, attention_mask, packing))


def make_head(in_features: int, out_features: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """A task head: dropout then linear, or (with `hidden`) one ReLU hidden layer between."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out_features))


MODES = ("bi-encoder", "cross-encoder")


def head_outputs_of(task: tasks.Task) -> int:
    """A task head's outputs: one per class (multiclass), one logit (binary), one score (regression)."""
    return task.num_classes if task.kind == "multiclass" else 1


class MultitaskBert(nn.Module):
    """One BERT shared by the multitask tasks (`tasks.MULTITASK`: SST, QQP and STS), in bi-encoder
    ("sBERT") mode: every sentence is encoded on its own into one vector. Each task's head follows from
    its registry entry (one sentence or a pair, its kind), so a task added there gets one:

    - one sentence (SST): a head on the sentence vector, one logit per class (one for a binary task,
      one score in the task's range for a regression);
    - a classification pair (QQP): a head on the pair features [u, v, |u - v|] (Sentence-BERT's
      classifier), 1 logit for a binary task;
    - a regression pair (STS): the cosine similarity of u and v as a score, 5 max(cos, 0) on 0..5,
      trained with MSE against the real-valued gold score. Unrelated sentences (gold 0) are asked to
      be orthogonal, not opposite, which leaves the pretrained geometry less disturbed
      than mapping -1..1 onto 0..5 would.
    `shared_similarity` adds one linear layer applied to u and v before both QQP and
    STS compare them; `dropout` is one rate or one per task, on each head's input.

    In `cross-encoder` ("BERT") mode the two sentences of a pair go through BERT
    together ([CLS] a [SEP] b [SEP], token types 0 and 1) and one vector of the pair
    feeds a QQP head (1 logit) and an STS regression head, 5 sigmoid(x) on 0..5. Heads are named
    `<task>_head` (and `<task>_dropout` before a bi-encoder's cosine), in the registry's order.
    """

    def __init__(self, bert: BertModel, pooling: str = "mean", head_hidden: int | None = None,
                 dropout: float | dict[str, float] = 0.1, shared_similarity: bool = False,
                 mode: str = "bi-encoder") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {list(MODES)}")
        if mode == "cross-encoder" and shared_similarity:
            raise ValueError("shared_similarity compares two sentence vectors: bi-encoder mode only")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")
        names = tasks.MULTITASK
        rates = dropout if isinstance(dropout, dict) else dict.fromkeys(names, dropout)
        missing = [t for t in names if t not in rates]
        if missing or set(rates) - set(names):
            raise ValueError(f"dropout needs one rate for each of {list(names)}, got {sorted(rates)}")
        size = pooled_size(bert.config.hidden_size, pooling)
        self.bert = bert
        self.pooling = pooling
        self.mode = mode
        self.task_names = tuple(names)
        cross = mode == "cross-encoder"
        for name in names:  # in the registry's order: the same seed gives every head the same start
            task = tasks.get(name)
            if task.is_pair and task.kind == "regression" and not cross:  # the cosine: no weights
                setattr(self, f"{name}_dropout", nn.Dropout(rates[name]))
                setattr(self, f"{name}_head", None)
                continue
            width = 3 * size if task.is_pair and not cross else size
            setattr(self, f"{name}_head", make_head(width, head_outputs_of(task), head_hidden, rates[name]))
        self.similarity = nn.Linear(size, size) if shared_similarity else None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.sentence_vector(self.bert.embed(input_ids, attention_mask))

    def sentence_vector(self, embedded: Embedded) -> torch.Tensor:
        """One vector per sentence from the embedding layer's output (SMART perturbs that)."""
        return pool(self.bert.encode(embedded), embedded.attention_mask, self.pooling)

    def head_outputs(self, task: str, vectors: list[torch.Tensor]) -> torch.Tensor:
        """The task's outputs from its sentence vectors: [u] for one sentence, [u, v] for a pair (one
        vector of the pair read together in cross-encoder mode)."""
        if task not in self.task_names:
            raise ValueError(f"unknown task {task!r}; known: {list(self.task_names)}")
        spec, head = tasks.get(task), getattr(self, f"{task}_head")
        if len(vectors) == 1:  # one sentence, or a pair read together
            return self._finish(spec, head(vectors[0]))
        u, v = vectors
        if self.similarity is not None:
            u, v = self.similarity(u), self.similarity(v)
        if head is None:  # a regression pair: the cosine, scaled to the score's range
            dropout = getattr(self, f"{task}_dropout")
            cosine = F.cosine_similarity(dropout(u).float(), dropout(v).float(), dim=-1)
            low, high = spec.score_range
            return low + (high - low) * cosine.clamp(min=0.0)
        return self._finish(spec, head(torch.cat([u, v, (u - v).abs()], dim=-1)))

    @staticmethod
    def _finish(spec: tasks.Task, out: torch.Tensor) -> torch.Tensor:
        """A head's raw output as the task's: class logits (N, classes), one logit (N,), or a score in
        the task's range (N,), low + (high - low) sigmoid(x)."""
        if spec.kind == "multiclass":
            return out
        if spec.kind == "binary":
            return out.squeeze(-1)
        low, high = spec.score_range
        return low + (high - low) * torch.sigmoid(out.squeeze(-1).float())

    def embed_inputs(self, batch: dict) -> list[Embedded]:
        """The embedding layer's output for each input of a batch (one sentence, or a pair)."""
        inputs = [batch[s] for s in ("a", "b") if s in batch]
        return [self.bert.embed(x["input_ids"], x["attention_mask"], x.get("token_type_ids"),
                                x.get("packing")) for x in inputs]

    def task_outputs(self, task: str, batch: dict) -> torch.Tensor:
        """The task's raw outputs for a batch of `TaskTensors.batch`."""
        return self.outputs_from_embedded(task, self.embed_inputs(batch))

    def outputs_from_embedded(self, task: str, embedded: list[Embedded]) -> torch.Tensor:
        return self.head_outputs(task, [self.sentence_vector(e) for e in embedded])
