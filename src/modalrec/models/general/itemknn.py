"""ItemKNN: item-based collaborative filtering with cosine similarity and k nearest neighbours.

Sarwar et al., "Item-based collaborative filtering recommendation algorithms", WWW 2001, with the
top-N formulation of Deshpande & Karypis, "Item-based top-N recommendation algorithms", TOIS 2004.

The similarity of items i and j is the cosine of their (binary) train columns, optionally shrunk
towards zero for rarely co-rated pairs:

    sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink)

For every item i only its ``k`` most similar items j != i are kept (row i of the sparse model S),
and a user's scores are their train row times S: score(u, j) = sum over items i of u whose
neighbourhood contains j of sim(i, j).

Scaling: S is computed in row chunks whose dense width is bounded (``chunk_budget`` entries), so
memory is O(n_items * k + chunk), never O(n_items^2). Scoring is sparse (scipy) on the CPU; the
scores are moved to the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.checks import Check, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, register
from modalrec.nn.knn import chunked_topk


def cosine_topk(
    train_csr: sp.spmatrix, k: int, shrink: float = 0.0, chunk_budget: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` most cosine-similar other items: (index [n_items, k] int64, weight [n_items, k] float32).

    Rows are ordered by decreasing similarity; items with fewer than ``k`` positive similarities
    are padded with weight 0 (the padded indices are meaningless). ``chunk_budget`` bounds the
    entries of the one dense block [chunk, n_items] held at a time.
    """
    x = sp.csr_matrix(train_csr, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.data[:] = 1.0
    n_items = x.shape[1]
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
    items_by_users = x.T.tocsr()

    def block(start: int, stop: int) -> torch.Tensor:
        overlap = (items_by_users[start:stop] @ x).toarray()  # [chunk, n_items] co-occurrence counts
        denominator = norms[start:stop, None] * norms[None, :] + shrink
        sim = torch.from_numpy(np.divide(overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0))
        sim[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf  # an item is not its own neighbour
        return sim

    index, weight = chunked_topk(block, n_items, n_items, min(k, max(n_items - 1, 0)), chunk_budget)
    return index, weight


@register
class ItemKNN(GeneralRecommender):
    """Item-based kNN with cosine similarity; learns in closed form in :meth:`fit`."""

    name: ClassVar[str] = "itemknn"
    paper: ClassVar[str] = "Sarwar et al., WWW 2001; Deshpande & Karypis, TOIS 2004"

    @dataclass
    class Config:
        k: Positive = 100  # neighbours kept per item
        shrink: Annotated[float, Check(ge=0)] = 0.0  # added to the cosine denominator; damps similarities of rare items
        chunk_budget: int = 1 << 24  # max entries of the dense similarity block computed at once

    search_space: ClassVar[dict] = {"model.k": ("choice", [20, 50, 100, 200, 400]), "model.shrink": ("float", 0.0, 100.0)}
    train_view: ClassVar[str] = "none"

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.train_matrix: sp.csr_matrix = ctx.train  # the user rows that scoring multiplies by S
        k = min(config.k, max(self.n_items - 1, 0))
        self.register_buffer("neighbour_index", torch.zeros(self.n_items, k, dtype=torch.long))
        self.register_buffer("neighbour_weight", torch.zeros(self.n_items, k, dtype=torch.float32))
        self._similarity: sp.csc_matrix | None = None

    def fit(self, ctx: DataContext) -> None:
        self.train_matrix = ctx.train
        index, weight = cosine_topk(ctx.train, self.config.k, self.config.shrink, self.config.chunk_budget)
        self.neighbour_index.copy_(torch.from_numpy(index))
        self.neighbour_weight.copy_(torch.from_numpy(weight))
        self.prepare_scoring()

    def similarity(self) -> sp.csc_matrix:
        """The sparse item-item model S [n_items, n_items] (row i: item i's neighbours)."""
        if self._similarity is None:
            self.prepare_scoring()
        return self._similarity

    def prepare_scoring(self) -> None:
        index = self.neighbour_index.cpu().numpy()
        weight = self.neighbour_weight.cpu().numpy()
        rows = np.repeat(np.arange(self.n_items), index.shape[1])
        s = sp.csr_matrix((weight.ravel(), (rows, index.ravel())), shape=(self.n_items, self.n_items))
        s.eliminate_zeros()
        self._similarity = s.tocsc()

    def encode(self, batch: Batch) -> sp.csr_matrix:
        return self.train_matrix[batch["users"].cpu().numpy()]

    def score_items(self, query: sp.csr_matrix, items: slice) -> torch.Tensor:
        scores = (query @ self.similarity()[:, items]).toarray()
        return torch.from_numpy(np.asarray(scores, dtype=np.float32)).to(self.device)
