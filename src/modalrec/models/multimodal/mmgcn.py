"""MMGCN: a graph convolution network per modality on the user-item graph.

Wei, Wang, Nie, He, Hong & Chua, "MMGCN: Multi-modal Graph Convolution Network for Personalized
Recommendation of Micro-video", ACM MM 2019. Survey family: feature interaction / bridge
(user-item graph); end-to-end.

For every modality m a separate GCN runs on the bipartite user-item graph (Sec. 3). Item nodes
start from their projected features, user nodes from a learned modality-specific preference; both
are L2-normalised. Each layer l (Sec. 3.2):

    aggregation   h_N(v) = LeakyReLU(W1 * mean_{j in N(v)} h_j^(l-1))                    (Eqs. 2-3)
    combination   u_v    = LeakyReLU(W2 h_v^(l-1)) + id_v                                 (Eq. 5)
                  h_v^(l) = LeakyReLU(W3 h_N(v) + u_v)                                    (Eq. 6, sum variant)

with id_v an ID embedding shared by the modalities. The representations are summed over
modalities, y_ui = (sum_m u^m)^T (sum_m i^m) (Sec. 3.3), and trained by BPR with L2 on the batch's
ID and preference embeddings.

Deviations: features are first projected to ``dim`` (as MMRec's ``dim_latent``) so every layer has
the same width; the combination uses the paper's element-wise-sum variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.graph import propagate
from modalrec.nn.typed import TypedModuleList


class ModalityGCN(nn.Module):
    """One modality's GCN: preference / feature nodes, ``layers`` aggregation + combination steps."""

    def __init__(self, n_users: int, feature_dim: int, dim: int, layers: int, init_std: float):
        super().__init__()
        self.projection = nn.Linear(feature_dim, dim)
        self.preference = nn.Parameter(torch.randn(n_users, dim) * init_std)
        self.aggregate = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))  # W1
        self.self_transform = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))  # W2
        self.combine = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))  # W3

    def forward(
        self, adjacency: torch.Tensor, adjacency_t: torch.Tensor, features: torch.Tensor, ids: torch.Tensor
    ) -> torch.Tensor:
        h = F.normalize(torch.cat([self.preference, self.projection(features)]), dim=1)
        for w1, w2, w3 in zip(self.aggregate, self.self_transform, self.combine):
            neighbours = F.leaky_relu(w1(propagate(adjacency, h, 1, adj_t=adjacency_t)[-1]))  # Eqs. 2-3
            own = F.leaky_relu(w2(h)) + ids  # Eq. 5
            h = F.leaky_relu(w3(neighbours) + own)  # Eq. 6
        return h


@register
class MMGCN(MultimodalRecommender):
    """Per-modality GCNs on the user-item graph, summed."""

    name: ClassVar[str] = "mmgcn"
    paper: ClassVar[str] = "Wei et al., ACM MM 2019"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # width of every layer
        layers: Positive = 2  # GCN layers per modality
        reg: float = 1e-4  # L2 on the batch's ID and preference embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.id_embedding = nn.Embedding(self.n_users + self.n_items, config.dim)
        nn.init.normal_(self.id_embedding.weight, std=config.init_std)
        self.gcns = TypedModuleList(
            ModalityGCN(self.n_users, f.shape[1], config.dim, config.layers, config.init_std) for f in self.features
        )
        self.register_user_item_graph(ctx, norm="row")

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.id_embedding.weight
        total = sum(gcn(self.adjacency, self.adjacency_t, f, ids) for gcn, f in zip(self.gcns, self.features))
        return total[: self.n_users], total[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        u, p, n = batch["users"], batch["pos"] + self.n_users, batch["neg"] + self.n_users
        rows = [self.id_embedding(u), self.id_embedding(p), self.id_embedding(n)] + [gcn.preference[u] for gcn in self.gcns]
        prior = self.config.reg * sum(r.pow(2).sum() for r in rows) / (2 * len(u))
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
