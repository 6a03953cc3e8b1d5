"""Pop: rank every item by its number of train interactions, the same list for every user.

The floor every personalised model must beat (e.g. the "MostPop" row of RecBole, Cornac and MMRec
tables); it needs no paper. Learns in closed form in :meth:`Pop.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, register


@register
class Pop(GeneralRecommender):
    """Score(u, i) = number of train interactions of item i (independent of u)."""

    name: ClassVar[str] = "pop"
    paper: ClassVar[str] = "most-popular baseline"

    @dataclass
    class Config:
        """Pop has no hyper-parameters."""

    train_view: ClassVar[str] = "none"

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        # A buffer so the counts travel with checkpoints and .to(device).
        self.register_buffer("popularity", torch.zeros(self.n_items, dtype=torch.float32))

    def fit(self, ctx: DataContext) -> None:
        counts = ctx.item_popularity
        if counts is None:
            counts = np.asarray(ctx.train.sum(axis=0)).ravel()
        self.popularity.copy_(torch.as_tensor(np.asarray(counts), dtype=torch.float32))

    def encode(self, batch: Batch) -> torch.Tensor:
        return batch["users"]

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return self.popularity[items].unsqueeze(0).expand(len(query), -1)
