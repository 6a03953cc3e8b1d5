"""DualGNN: a user-item graph per modality plus a user co-occurrence graph.

Wang, Wei, Yin, Li, Li & Nie, "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE TMM 2021. Survey family: feature interaction / bridge (user-item and user-user graphs) with
user-specific fusion; end-to-end.

1. Single-modal representation learning (Sec. III-B): per modality m a graph convolution on the
   user-item graph, items starting from projected features W_m f_i and users from a learned
   modality preference; the layer outputs are averaged (LightGCN propagation).
2. Multi-modal fusion (Sec. III-C): every user mixes their modality representations with their own
   learned weights, u_fused = sum_m softmax(w_u)_m u^m (the user-specific fusion pattern);
   items take the mean over modalities plus an ID embedding.
3. User co-occurrence graph (Sec. III-D): each user's k users with the most common train items,
   edge weights the common counts normalised per user; one aggregation step
   u = u_fused + sum_v w_uv u_fused_v lets a user borrow the fusion pattern of similar users.
4. y_ui = <u, i>, BPR with L2 on the batch's embeddings.

The user graph is built sparsely in chunks from the train matrix (never a dense users x users
matrix, never valid/test interactions) — MMRec needs a precomputed ``user_graph_dict.npy`` made
by a dense O(U^2) script. Deviation: the authors' code softmaxes raw counts, which puts nearly all
weight on the first neighbour; counts are normalised by their sum here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import scipy.sparse as sp
import torch
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.graph import mean_propagate, normalise_adjacency, propagate, sparse_graph
from modalrec.nn.knn import cooccurrence_knn
from modalrec.nn.typed import TypedModuleList


@register
class DualGNN(MultimodalRecommender):
    """Per-modality user-item GCNs, user-specific modality fusion, user co-occurrence aggregation."""

    name: ClassVar[str] = "dualgnn"
    paper: ClassVar[str] = "Wang et al., IEEE TMM 2021"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        layers: NonNegative = 2  # propagation layers of each modality's user-item GCN
        user_k: Positive = 10  # neighbours per user in the co-occurrence graph
        reg: float = 1e-4  # L2 on the batch's embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        m = len(self.features)
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        self.preferences = TypedModuleList(nn.Embedding(self.n_users, config.dim) for _ in range(m))
        for table in (self.item_embedding, *self.preferences):
            nn.init.normal_(table.weight, std=config.init_std)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)
        self.fusion = nn.Parameter(torch.zeros(self.n_users, m))  # w_u, user-specific modality weights
        self.register_user_item_graph(ctx)
        for name, tensor in zip(("user_graph", "user_graph_t"), sparse_graph(self.co_occurrence_graph(ctx.train, config.user_k))):
            self.register_buffer(name, tensor, persistent=False)

    @staticmethod
    def co_occurrence_graph(train: sp.csr_matrix, k: int) -> sp.csr_matrix:
        """Row-normalised top-k co-occurrence counts [n_users, n_users] from the train matrix."""
        return normalise_adjacency(cooccurrence_knn(train, k), "row")

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        per_modality_users, per_modality_items = [], []
        for pref, proj, f in zip(self.preferences, self.projections, self.features):
            x = torch.cat([pref.weight, proj(f)])
            final = mean_propagate(self.adjacency, x, self.config.layers, adj_t=self.adjacency_t)
            per_modality_users.append(final[: self.n_users])
            per_modality_items.append(final[self.n_users :])
        weights = torch.softmax(self.fusion, dim=1)  # Sec. III-C
        fused = (torch.stack(per_modality_users, dim=2) * weights[:, None, :]).sum(2)
        users = fused + propagate(self.user_graph, fused, 1, adj_t=self.user_graph_t)[-1]  # Sec. III-D
        items = torch.stack(per_modality_items).mean(0) + self.item_embedding.weight
        return users, items

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        prior = self.config.reg * self.l2_terms(batch, self.item_embedding, *self.preferences)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
