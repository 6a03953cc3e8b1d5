"""GRU4Rec: session-based recommendation with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016.

Items of the sequence are embedded, passed through dropout and a stack of GRU layers, and the
hidden state after item t, projected to the embedding size, predicts item t + 1.

Deviation (as RecBole's GRU4Rec, the variant most papers compare with): instead of the paper's
session-parallel mini-batches with one-hot inputs, TOP1 / BPR ranking losses over in-batch
negatives and a separate output layer, the model reads padded user sequences with an item embedding,
ties the output to that embedding (score = h W_out . e_i), and is trained with cross-entropy over all
items at every position (``loss="ce"``; ``"sampled"``, ``"bce"`` and ``"bpr"`` as in
:mod:`modalrec.models.sequential.objective`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import nn

from modalrec.checks import Check, Positive, Rule
from modalrec.data.context import DataContext
from modalrec.data.negatives import NegativeSampler
from modalrec.models.base import SequentialRecommender, register
from modalrec.models.sequential.objective import (
    SAMPLED_NEEDS_NEGATIVES,
    Loss,
    TiedItemScoring,
)


@register
class GRU4Rec(TiedItemScoring, SequentialRecommender):
    """GRU over item embeddings, projected back to the embedding space for tied scoring."""

    name: ClassVar[str] = "gru4rec"
    paper: ClassVar[str] = "Hidasi et al., ICLR 2016"

    @dataclass
    class Config:
        dim: Positive = 64  # item embedding size (and size of the projected output state)
        hidden: Positive = 128  # GRU hidden size
        layers: Positive = 1  # stacked GRU layers
        dropout: Annotated[float, Check(ge=0, lt=1)] = 0.3  # dropout on the input embeddings
        max_len: Positive = 50  # longest history read (older items are cut)
        # ce (full softmax) | sampled (softmax over `negatives` shared uniform items) | bce (the SASRec paper's) | bpr
        loss: Loss = "ce"
        negatives: int = 256  # loss "sampled": uniform negatives per batch
        rules: ClassVar[tuple[Rule, ...]] = (SAMPLED_NEEDS_NEGATIVES,)

    train_view: ClassVar[str] = "sequences"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 256, "epochs": 200, "patience": 10}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.dropout": ("float", 0.0, 0.5),
        "model.hidden": ("choice", [64, 128, 256]),
        "model.dim": ("choice", [32, 64, 128]),
        "model.layers": ("int", 1, 2),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.pad = self.n_items
        self.item_embedding = nn.Embedding(self.n_items + 1, config.dim, padding_idx=self.pad)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[self.pad].zero_()
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.hidden, config.layers, batch_first=True, bias=False)
        self.projection = nn.Linear(config.hidden, config.dim)
        self.negatives = NegativeSampler.seeded_from_torch(self.n_items, ctx.warm_items)

    def hidden_states(self, seq: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, dim]: the projected GRU state after items 0..t. A left-to-right GRU never reads
        ahead, so right padding cannot change the states at real positions."""
        states, _ = self.gru(self.embedding_dropout(self.item_embedding(seq)))
        return self.projection(states)
