"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking.

Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from Implicit
Feedback", UAI 2009.

Each user u and item i has a latent vector; the predicted preference is x_ui = <p_u, q_i>. For a
sampled triple (u, i, j) with i observed and j not, BPR-Opt (Sec. 4.1) maximises
ln sigma(x_ui - x_uj) with a Gaussian prior on the parameters, i.e. minimises

    L = -mean ln sigma(x_ui - x_uj) + reg * 1/2 (||p_u||^2 + ||q_i||^2 + ||q_j||^2) / B

where, as in LightGCN's and MMRec's implementations, the L2 prior is applied to the embeddings of the
batch (not the full tables) and averaged over the batch. With several negatives per user
(``neg`` [B, n]) every (i, j) pair counts once in the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from modalrec.checks import Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, EmbeddingScorer, GeneralRecommender, register
from modalrec.nn.losses import bpr_loss, embedding_l2, pairwise_scores


@register
class BPR(EmbeddingScorer, GeneralRecommender):
    """Matrix factorisation with the pairwise BPR objective."""

    name: ClassVar[str] = "bpr"
    paper: ClassVar[str] = "Rendle et al., UAI 2009"

    @dataclass
    class Config:
        dim: Positive = 64  # latent dimension of user and item vectors
        reg: float = 1e-4  # weight of the L2 prior on the batch's embeddings
        init_std: float = 0.1  # std of the normal initialisation (the paper's N(0, sigma^2))

    train_view: ClassVar[str] = "triples"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 2048, "epochs": 300, "patience": 20}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.dim": ("choice", [32, 64, 128]),
        "model.reg": ("log", 1e-6, 1e-2),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.user_embedding = nn.Embedding(self.n_users, config.dim)
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        user = self.user_embedding(batch["users"])  # [B, d]
        pos = self.item_embedding(batch["pos"])  # [B, d]
        neg = self.item_embedding(batch["neg"])  # [B, d] or [B, n, d]
        ranking = bpr_loss(*pairwise_scores(user, pos, neg))
        prior = self.config.reg * embedding_l2(len(user), user, pos, neg)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        return self.user_embedding(batch["users"])

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_embedding.weight[items]
