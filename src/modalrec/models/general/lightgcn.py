"""LightGCN: simplified graph convolution for collaborative filtering.

He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020.

Only the ego embeddings E^(0) of users and items are trained. They are propagated over the
symmetric-normalised user-item graph without self loops, feature transforms or non-linearities
(Eq. 3, in matrix form Eq. 8):

    E^(k+1) = D^-1/2 A D^-1/2 E^(k),       A = [[0, R], [R^T, 0]]

and the final representation is the mean of the layers, alpha_k = 1 / (K + 1) (Eq. 4):

    E = 1/(K+1) sum_{k=0..K} E^(k).

Prediction is the inner product y_ui = e_u^T e_i (Eq. 5); training minimises BPR with L2 on the
batch's ego embeddings (Eq. 15). Propagation runs over the full graph for every training batch, as in
the paper; for evaluation it runs once per pass in :meth:`prepare_scoring` and is cached until the
model trains again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, RepresentationScorer, register
from modalrec.nn.graph import bipartite_adjacency, mean_propagate, to_torch_sparse
from modalrec.nn.losses import bpr_loss, embedding_l2, pairwise_scores


@register
class LightGCN(RepresentationScorer, GeneralRecommender):
    """Mean of K linear propagations of ego embeddings over the normalised bipartite graph."""

    name: ClassVar[str] = "lightgcn"
    paper: ClassVar[str] = "He et al., SIGIR 2020"

    @dataclass
    class Config:
        dim: Positive = 64  # embedding size of users and items
        layers: NonNegative = 3  # K, propagation layers (the paper's best is 3)
        reg: float = 1e-4  # lambda, weight of L2 on the batch's ego embeddings (Eq. 15)
        init_std: float = 0.1  # std of the normal initialisation of E^(0) (as the authors' code)

    train_view: ClassVar[str] = "triples"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 2048, "epochs": 300, "patience": 20}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.layers": ("int", 1, 4),
        "model.reg": ("log", 1e-6, 1e-2),
        "model.dim": ("choice", [32, 64, 128]),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.user_embedding = nn.Embedding(self.n_users, config.dim)
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        # The graph is data, rebuilt from ctx on construction, so it is not saved in checkpoints.
        adjacency = to_torch_sparse(bipartite_adjacency(ctx.train, self.n_users, self.n_items, self_loops=False, norm="sym"))
        self.register_buffer("adjacency", adjacency, persistent=False)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user [n_users, d] and item [n_items, d] representations (Eqs. 3-4)."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = mean_propagate(self.adjacency, ego, self.config.layers, adj_t=self.adjacency)  # D^-1/2 A D^-1/2 is symmetric
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.clear_scoring_cache()  # parameters are about to change
        users_final, items_final = self.representations()
        user = users_final[batch["users"]]
        pos = items_final[batch["pos"]]
        neg = items_final[batch["neg"]]
        ranking = bpr_loss(*pairwise_scores(user, pos, neg))
        ego = (self.user_embedding(batch["users"]), self.item_embedding(batch["pos"]), self.item_embedding(batch["neg"]))
        prior = self.config.reg * embedding_l2(len(user), *ego)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
