"""EASE: Embarrassingly Shallow Autoencoder.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

An item-item weight matrix B is learned by ridge regression of the train matrix X on itself, with
the constraint diag(B) = 0 so no item predicts itself (Eq. 1):

    min_B ||X - X B||_F^2 + lambda ||B||_F^2   s.t. diag(B) = 0

whose closed form (Eq. 8) is

    P = (X^T X + lambda I)^-1,   B = I - P diag(1 / diag(P))   (so B_ij = -P_ij / P_jj, B_jj = 0).

Scores are X_u B. B is a dense n_items x n_items matrix; memory and the O(n_items^3) inversion are
inherent to the method, so the model refuses catalogues above ``max_items`` with a clear error
instead of exhausting memory (raise the limit deliberately if the machine has room).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.checks import Check
from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, GeneralRecommender, register


@register
class EASE(GeneralRecommender):
    """Closed-form linear item-item autoencoder with a zero diagonal."""

    name: ClassVar[str] = "ease"
    paper: ClassVar[str] = "Steck, WWW 2019"

    @dataclass
    class Config:
        # lambda: L2 penalty on B (the paper's only hyper-parameter; > 0 makes X^T X + lambda I invertible)
        l2: Annotated[float, Check(gt=0)] = 500.0
        max_items: int = 50_000  # refuse larger catalogues: B is a dense n_items^2 matrix (~20 n^2 bytes at peak)

    search_space: ClassVar[dict] = {"model.l2": ("log", 10.0, 20_000.0)}
    train_view: ClassVar[str] = "none"

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        if self.n_items > config.max_items:
            peak_gib = self.n_items**2 * 20 / 2**30  # float32 B + two float64 n^2 while inverting
            raise ConfigError(
                f"ease: the dataset has {self.n_items:,} items; EASE inverts a dense {self.n_items:,} x {self.n_items:,} "
                f"matrix (~{peak_gib:.1f} GiB at peak) and refuses more than max_items={config.max_items:,}. "
                "Filter rare items (k-core) or set model.max_items higher if the machine has the memory."
            )
        self.train_matrix: sp.csr_matrix = ctx.train  # the user rows X_u that scoring multiplies by B
        # Not persistent: B is re-fitted deterministically from the data rather than stored in checkpoints.
        self.register_buffer("weights", torch.zeros(self.n_items, self.n_items, dtype=torch.float32), persistent=False)

    def fit(self, ctx: DataContext) -> None:
        self.train_matrix = ctx.train
        x = sp.csr_matrix(ctx.train, dtype=np.float64)
        gram = torch.from_numpy((x.T @ x).toarray()).to(self.device)  # X^T X in float64 for a stable inverse
        gram.diagonal().add_(self.config.l2)
        # X^T X + lambda I is symmetric positive definite: invert it through its Cholesky factor,
        # releasing each n^2 intermediate as soon as the next exists (peak: two float64 copies).
        factor = torch.linalg.cholesky(gram)
        del gram
        precision = torch.cholesky_inverse(factor)  # P
        del factor
        precision.div_(-precision.diagonal().clone())  # B_ij = -P_ij / P_jj  (Eq. 8, off the diagonal)
        precision.diagonal().zero_()  # diag(B) = 0
        self.weights.copy_(precision)

    def encode(self, batch: Batch) -> torch.Tensor:
        rows = self.train_matrix[batch["users"].cpu().numpy()].toarray()
        return torch.from_numpy(rows.astype(np.float32)).to(self.device)

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query @ self.weights[:, items]
