"""Task models on top of our BertModel: the heads, the one place that knows which task gets which."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minbert.bert import BertModel, Embedded
from minbert.tasks import MULTITASK as TASKS

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

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(self.bert(input_ids, attention_mask), attention_mask, self.pooling)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(embedding))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(input_ids, attention_mask))


def make_head(in_features: int, out_features: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """A task head: dropout then linear, or (with `hidden`) one ReLU hidden layer between."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out_features))


MODES = ("bi-encoder", "cross-encoder")


class MultitaskBert(nn.Module):
    """One BERT shared by SST, QQP and STS, in bi-encoder ("sBERT") mode: every sentence is
    encoded on its own into one vector.

    - SST: a head on the sentence vector, 5 logits.
    - QQP: a head on the pair features [u, v, |u - v|] (Sentence-BERT's classifier), 1 logit.
    - STS: the cosine similarity of u and v as a 0..5 score, 5 max(cos, 0), trained with
      MSE against the real-valued gold score. Unrelated sentences (gold 0) are asked to
      be orthogonal, not opposite, which leaves the pretrained geometry less disturbed
      than mapping -1..1 onto 0..5 would.
    `shared_similarity` adds one linear layer applied to u and v before both QQP and
    STS compare them; `dropout` is one rate or one per task, on each head's input.

    In `cross-encoder` ("BERT") mode the two sentences of a pair go through BERT
    together ([CLS] a [SEP] b [SEP], token types 0 and 1) and one vector of the pair
    feeds a QQP head (1 logit) and an STS regression head, 5 sigmoid(x) on 0..5.
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
        rates = dropout if isinstance(dropout, dict) else dict.fromkeys(TASKS, dropout)
        missing = [t for t in TASKS if t not in rates]
        if missing or set(rates) - set(TASKS):
            raise ValueError(f"dropout needs one rate for each of {list(TASKS)}, got {sorted(rates)}")
        size = pooled_size(bert.config.hidden_size, pooling)
        self.bert = bert
        self.pooling = pooling
        self.mode = mode
        self.sst_head = make_head(size, 5, head_hidden, rates["sst"])
        cross = mode == "cross-encoder"
        self.qqp_head = make_head(size if cross else 3 * size, 1, head_hidden, rates["qqp"])
        self.sts_dropout = nn.Dropout(rates["sts"])
        self.sts_head = make_head(size, 1, head_hidden, rates["sts"]) if cross else None
        self.similarity = nn.Linear(size, size) if shared_similarity else None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.sentence_vector(self.bert.embed(input_ids, attention_mask))

    def sentence_vector(self, embedded: Embedded) -> torch.Tensor:
        """One vector per sentence from the embedding layer's output (SMART perturbs that)."""
        return pool(self.bert.encode(embedded), embedded.attention_mask, self.pooling)

    def head_outputs(self, task: str, vectors: list[torch.Tensor]) -> torch.Tensor:
        """The task's outputs from its sentence vectors: [u] for SST, [u, v] for pairs."""
        if task == "sst":
            return self.sst_head(vectors[0])
        if self.mode == "cross-encoder":  # one vector of the pair read together
            (joint,) = vectors
            if task == "qqp":
                return self.qqp_head(joint).squeeze(-1)
            return 5.0 * torch.sigmoid(self.sts_head(joint).squeeze(-1).float())
        u, v = vectors
        if self.similarity is not None:
            u, v = self.similarity(u), self.similarity(v)
        if task == "qqp":
            return self.qqp_head(torch.cat([u, v, (u - v).abs()], dim=-1)).squeeze(-1)
        if task == "sts":
            cosine = F.cosine_similarity(self.sts_dropout(u).float(), self.sts_dropout(v).float(), dim=-1)
            return 5.0 * cosine.clamp(min=0.0)
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")

    def embed_inputs(self, batch: dict) -> list[Embedded]:
        """The embedding layer's output for each input of a batch (one sentence, or a pair)."""
        inputs = [batch[s] for s in ("a", "b") if s in batch]
        return [self.bert.embed(x["input_ids"], x["attention_mask"], x.get("token_type_ids")) for x in inputs]

    def task_outputs(self, task: str, batch: dict) -> torch.Tensor:
        """The task's raw outputs for a batch of `TaskTensors.batch`."""
        return self.outputs_from_embedded(task, self.embed_inputs(batch))

    def outputs_from_embedded(self, task: str, embedded: list[Embedded]) -> torch.Tensor:
        return self.head_outputs(task, [self.sentence_vector(e) for e in embedded])
