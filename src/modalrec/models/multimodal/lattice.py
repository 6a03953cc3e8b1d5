"""LATTICE: latent item-item structure learned from multimodal features.

Zhang, Zhu, Liu, Wu, Wang & Wang, "Mining Latent Structures for Multimedia Recommendation",
ACM MM 2021. Survey family: feature interaction / bridge (item-item graph); end-to-end.

1. Item-item graphs (Sec. 3.1, Eqs. 1-7): per modality a frozen cosine kNN graph of the raw
   features mixed with a kNN graph of learned projections, A^m = lambda A_frozen + (1 - lambda)
   A_learned, combined over modalities with softmax weights (:class:`modalrec.nn.item_graph.LearnedItemGraph`).
2. Graph convolution on the item graph (Eqs. 8-9): h = A^L x with x the item ID embeddings.
3. Combination with a CF backbone (Eq. 10): users and items from LightGCN over the user-item graph;
   the final item is e_i + h_i / ||h_i||. Scores are inner products; training is BPR with L2 on
   the batch's ego embeddings.

Deviations: the authors' code rebuilds the learned graph (with gradient) on the first batch of each
epoch and reuses it detached afterwards; here the kNN structure is refreshed before every epoch and
before scoring, and the edge weights on it are recomputed with gradient in every batch (same graph
family, gradient in every step, O(n k) memory instead of a dense n x n similarity); the user-item graph is
LightGCN's D^-1/2 A D^-1/2 (the code's: D^-1 (A + I)). Both of the code's forms are selectable,
``graph_grad=first_batch`` and ``ui_graph=row_self`` (measured side by side in docs/multimodal.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import (
    MultimodalConfig,
    MultimodalRecommender,
    RefreshedItemGraph,
)
from modalrec.nn.graph import mean_propagate


@register
class LATTICE(RefreshedItemGraph, MultimodalRecommender):
    """LightGCN users/items plus item ID embeddings convolved over learned content item graphs."""

    name: ClassVar[str] = "lattice"
    paper: ClassVar[str] = "Zhang et al., ACM MM 2021"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size of IDs and projected features
        knn_k: Positive = 10  # neighbours per item in the content graphs (Eq. 2)
        skip: float = 0.9  # lambda, weight of the frozen raw-feature graph (Eq. 6)
        item_layers: NonNegative = 1  # L, convolutions on the item graph (Eq. 8)
        ui_layers: NonNegative = 2  # LightGCN layers of the CF backbone
        reg: float = 1e-4  # L2 on the batch's ego embeddings
        init_std: float = 0.1
        # user-item graph: sym D^-1/2 A D^-1/2 (LightGCN) | row_self D^-1 (A + I) (the authors' code)
        ui_graph: Literal["sym", "row_self"] = "sym"
        # learned graphs' edge weights: differentiated in every batch | first_batch (the code: once per epoch)
        graph_grad: Literal["every_batch", "first_batch"] = "every_batch"

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.id_embeddings(config.dim, config.init_std)
        self.build_graphs(ctx, config.knn_k, config.dim, config.skip, config.ui_graph, config.graph_grad)
        self.modality_logits = nn.Parameter(torch.zeros(len(self.modalities)))  # alpha_m before the softmax (Eq. 7)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        graph = self.item_graph(self.features, torch.softmax(self.modality_logits, dim=0))  # Eq. 7
        h = self.item_graph.propagate(graph, self.item_embedding.weight, c.item_layers)  # Eqs. 8-9
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = mean_propagate(self.adjacency, ego, c.ui_layers, adj_t=self.adjacency_t)  # backbone
        users, items = final[: self.n_users], final[self.n_users :]
        return users, items + F.normalize(h, dim=1)  # Eq. 10

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        prior = self.config.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
