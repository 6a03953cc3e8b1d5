"""Mamba4Rec: sequential recommendation with selective state-space models.

Liu, Lyu, Zhang, Wang & Zhang, "Mamba4Rec: Towards Efficient Sequential Recommendation with Selective
State Space Models", 2024 (arXiv 2403.03900).

Embedding layer (Sec. 3.1): item embeddings -> dropout -> LayerNorm. Mamba layers (Sec. 3.2), each a
Mamba block with dropout, a residual connection and post-LayerNorm, ``H = LN(x + Drop(Mamba(x)))``
(no residual when there is a single layer, as in the released code), followed by a position-wise
feed-forward network with GELU, 4x width, dropout, residual and LayerNorm (Sec. 3.3). Prediction
(Sec. 3.4): the state at the last item scores every item by an inner product with the (tied) item
embeddings; trained with cross-entropy over the catalogue.

Choice (a flag): ``init="recbole"`` re-initialises every Linear/Embedding ~ N(0, 0.02) with zero
biases, as the released code's ``apply(_init_weights)`` does (this also replaces Mamba's dt init);
``"module_default"`` keeps Mamba's own initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

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
from modalrec.nn.mamba import Backend, MambaMixer
from modalrec.nn.transformer import FeedForward


class MambaLayer(nn.Module):
    """LN(x + Drop(Mamba(x))) (residual only when stacked), then LN(h + Drop(FFN(h))) (Sec. 3.2-3.3)."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: int, dropout: float, residual: bool, backend: str):
        super().__init__()
        self.residual = residual
        self.mamba = MambaMixer(dim, d_state, d_conv, expand, backend=backend)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.feed_forward = FeedForward(dim, 4 * dim, dropout, activation="gelu")
        self.feed_forward_norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.mamba(x))
        h = self.norm(h + x if self.residual else h)
        return self.feed_forward_norm(h + self.dropout(self.feed_forward(h)))


@register
class Mamba4Rec(TiedItemScoring, SequentialRecommender):
    """Post-LN Mamba blocks with feed-forward networks over item sequences, tied output."""

    name: ClassVar[str] = "mamba4rec"
    paper: ClassVar[str] = "Liu et al., arXiv 2403.03900 (2024)"

    @dataclass
    class Config:
        dim: Positive = 64  # item embedding and hidden size
        layers: Positive = 1  # Mamba layers
        d_state: Positive = 32  # N, SSM state size
        d_conv: int = 4  # causal conv width
        expand: int = 2  # inner width = expand * dim
        dropout: Annotated[float, Check(ge=0, lt=1)] = 0.2  # on embeddings, Mamba outputs and the feed-forward network
        max_len: Positive = 50  # longest history read (the most recent items)
        # ce (full softmax) | sampled (softmax over `negatives` shared uniform items) | bce (the SASRec paper's) | bpr
        loss: Loss = "ce"
        negatives: int = 256  # loss "sampled": uniform negatives per batch
        rules: ClassVar[tuple[Rule, ...]] = (SAMPLED_NEEDS_NEGATIVES,)
        # recbole (every Linear/Embedding ~ N(0, 0.02)) | module_default
        init: Literal["recbole", "module_default"] = "recbole"
        mamba_backend: Backend = "auto"  # see modalrec.nn.mamba

    train_view: ClassVar[str] = "sequences"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 256, "epochs": 200, "patience": 10}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.dropout": ("float", 0.0, 0.5),
        "model.d_state": ("choice", [16, 32, 64]),
        "model.dim": ("choice", [32, 64, 128]),
        "model.layers": ("int", 1, 2),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.pad = self.n_items
        self.item_embedding = nn.Embedding(self.n_items + 1, config.dim, padding_idx=self.pad)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.embedding_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.layers = nn.Sequential(
            *(
                MambaLayer(
                    config.dim,
                    config.d_state,
                    config.d_conv,
                    config.expand,
                    config.dropout,
                    config.layers > 1,
                    config.mamba_backend,
                )
                for _ in range(config.layers)
            )
        )
        self.negatives = NegativeSampler.seeded_from_torch(self.n_items, ctx.warm_items)
        if config.init == "recbole":
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)
                    if isinstance(module, nn.Linear) and module.bias is not None:
                        nn.init.zeros_(module.bias)
        else:
            nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[self.pad].zero_()

    def hidden_states(self, seq: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, dim]: the state after items 0..t (causal, so right padding never reaches real positions)."""
        return self.layers(self.embedding_norm(self.embedding_dropout(self.item_embedding(seq))))
