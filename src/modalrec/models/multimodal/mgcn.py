"""MGCN: multi-view graph convolution with behaviour-purified modality features.

Yu, Li, Zhou, Ma & Li, "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023. Survey family: feature interaction / bridge (user-item + item-item graphs) with
coarse attention fusion and an auxiliary contrastive term; end-to-end.

1. Behaviour-guided purifier (Sec. 3.2): projected features f'_i^m = W_1 f_i^m + b_1 are gated by
   the item's ID embedding, x~_i^m = e_i^id * sigmoid(W_2 f'_i^m + b_2), removing
   preference-irrelevant content.
2. Multi-view encoder (Sec. 3.3): the ID view is LightGCN over the user-item graph; each
   modality view convolves the purified item features once over a frozen content kNN item-item
   graph (unit weights, D^-1/2 S D^-1/2) and gives users the normalised sum of their items' ones.
3. Behaviour-aware fuser (Sec. 3.4): modality-shared part by attention,
       alpha_m = softmax_m(q^T tanh(W_3 e^m + b_3)),   e_s = sum_m alpha_m e^m,
   modality-specific parts e~^m = e^m - e_s gated by the behaviour (ID-view) preference,
       e_mul = e_s + 1/|M| sum_m sigmoid(W_4 e^id + b_4) * e~^m;
   the final representation is e^id + e_mul, y_ui = <u, i>.
4. L = BPR + lambda_c (InfoNCE(e^id_u, e_mul_u) + InfoNCE(e^id_i, e_mul_i)) over the batch
   (Sec. 3.5, self-supervised auxiliary task) + L2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import info_nce
from modalrec.nn.graph import mean_propagate, propagate, sparse_graph


@register
class MGCN(MultimodalRecommender):
    """Purified modality views on item-item graphs, fused with the ID view by behaviour-aware attention."""

    name: ClassVar[str] = "mgcn"
    paper: ClassVar[str] = "Yu et al., ACM MM 2023"

    @dataclass
    class Config(MultimodalConfig):
        dim: int = 64  # embedding size
        knn_k: int = 10  # neighbours per item in the content graphs
        ui_layers: int = 2  # LightGCN layers of the ID view
        cl_weight: float = 0.01  # lambda_c, weight of the view-contrast term
        temperature: float = 0.2  # InfoNCE temperature
        reg: float = 1e-4  # L2 on the batch's ID embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        if config.knn_k < 1 or config.ui_layers < 0:
            raise ConfigError(f"mgcn: need knn_k >= 1 and ui_layers >= 0, got {config.knn_k}, {config.ui_layers}")
        d = config.dim
        self.id_embeddings(d)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in self.features)  # W_1, b_1
        self.gates = nn.ModuleList(nn.Linear(d, d) for _ in self.features)  # W_2, b_2
        self.attention = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))  # q^T tanh(W_3 . + b_3)
        self.preference_gates = nn.ModuleList(nn.Linear(d, d) for _ in self.features)  # W_4, b_4 per modality
        self.register_user_item_graph(ctx)
        for m in range(len(self.features)):
            for name, tensor in zip(("item_graph", "item_graph_t"), sparse_graph(self.content_knn(m, config.knn_k, weighted=False))):
                self.register_buffer(f"{name}_{m}", tensor, persistent=False)

    def views(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(ID view [n_users + n_items, d], one modality view per modality) (Secs. 3.2-3.3)."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        id_view = mean_propagate(self.adjacency, ego, self.config.ui_layers, adj_t=self.adjacency_t)
        modality_views = []
        for m, (proj, gate, f) in enumerate(zip(self.projections, self.gates, self.features)):
            purified = self.item_embedding.weight * torch.sigmoid(gate(proj(f)))  # Sec. 3.2
            items = propagate(getattr(self, f"item_graph_{m}"), purified, 1, adj_t=getattr(self, f"item_graph_t_{m}"))[-1]
            nodes = torch.cat([torch.zeros_like(self.user_embedding.weight), items])
            users = propagate(self.adjacency, nodes, 1, adj_t=self.adjacency_t)[-1][: self.n_users]  # user <- items
            modality_views.append(torch.cat([users, items]))
        return id_view, modality_views

    def fuse(self, id_view: torch.Tensor, modality_views: list[torch.Tensor]) -> torch.Tensor:
        """e_mul: shared attention part plus behaviour-gated specific parts (Sec. 3.4)."""
        stacked = torch.stack(modality_views)  # [M, N, d]
        alpha = torch.softmax(self.attention(stacked), dim=0)  # [M, N, 1]
        shared = (alpha * stacked).sum(0)
        specific = sum(torch.sigmoid(g(id_view)) * (v - shared) for g, v in zip(self.preference_gates, modality_views))
        return shared + specific / len(modality_views)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        id_view, modality_views = self.views()
        final = id_view + self.fuse(id_view, modality_views)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        id_view, modality_views = self.views()
        fused = self.fuse(id_view, modality_views)
        final = id_view + fused
        ranking = self.bpr_terms(final[: self.n_users], final[self.n_users :], batch)
        u, i = torch.unique(batch["users"]), torch.unique(batch["pos"]) + self.n_users
        contrast = c.cl_weight * (info_nce(id_view[u], fused[u], c.temperature) + info_nce(id_view[i], fused[i], c.temperature))
        prior = c.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + contrast + prior, "bpr": ranking, "contrast": contrast, "reg": prior}
