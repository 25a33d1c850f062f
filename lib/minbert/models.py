"""Task models on top of our BertModel."""

from __future__ import annotations

import torch
from torch import nn

from minbert.bert import BertModel

POOLINGS = ("cls", "mean")


def pool(outputs: dict[str, torch.Tensor], attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: BERT's pooler output ([CLS] through dense + tanh), or the
    mean of the non-padded token states (what sentence-transformers trained MiniLM with)."""
    if pooling == "cls":
        return outputs["pooler_output"]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(outputs["last_hidden_state"].dtype)
        return (outputs["last_hidden_state"] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")


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
        self.head = nn.Linear(bert.config.hidden_size, num_classes)
        for p in bert.parameters():
            p.requires_grad = not freeze_bert

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(self.bert(input_ids, attention_mask), attention_mask, self.pooling)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(embedding))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(input_ids, attention_mask))
