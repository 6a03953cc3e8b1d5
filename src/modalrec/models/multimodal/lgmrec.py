"""LGMRec: local graph embeddings plus global hypergraph embeddings.

Guo, Li, Sun, Lin, Wang & Zhang, "LGMRec: Local and Global Graph Learning for Multimodal
Recommendation", AAAI 2024. Survey family: feature interaction / bridge (user-item graph and
modality hypergraphs) with an auxiliary contrastive term; end-to-end.

1. Local graph embedding (Sec. 3.2): collaborative embeddings E_c by LightGCN over ID embeddings;
   modality embeddings E^m by LightGCN over items' projected features W_m f_i and users' mean of
   their items' ones (user modality features come from their behaviour, not from free parameters).
   E_local = E_c + sum_m normalize(E^m).
2. Global hypergraph embedding (Sec. 3.3): per modality A learnable hyperedges; an item's
   dependency on them is H_i^m = GumbelSoftmax(W_m f_i . V^m / tau), a user's H_u^m = R H_i^m;
   hypergraph convolution of the collaborative item embeddings, Z = H_i^T E_c,items, gives
   E^m_global = [H_u^m Z ; H_i^m Z] (repeated ``hyper_layers`` times), E_global = sum_m E^m_global.
3. Fusion (Sec. 3.4): E = E_local + alpha * normalize(E_global); y_ui = <u, i>.
4. L = BPR + cl_weight * InfoNCE between the global embeddings of every pair of modalities (users
   and items of the batch; Sec. 3.5) + L2. With a single modality the contrast term is 0.

Deviation: evaluation uses the plain tempered softmax instead of a Gumbel sample (deterministic
scores; the Gumbel noise is a training-time regulariser).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import info_nce
from modalrec.nn.graph import mean_propagate, propagate
from modalrec.nn.typed import tensor_sum


@register
class LGMRec(MultimodalRecommender):
    """Local user-item graph embeddings (collaborative + modality) plus modality hypergraph embeddings."""

    name: ClassVar[str] = "lgmrec"
    paper: ClassVar[str] = "Guo et al., AAAI 2024"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        ui_layers: int = 2  # LightGCN layers of the collaborative embeddings
        modality_layers: int = 2  # LightGCN layers of the modality embeddings
        hyperedges: Positive = 4  # A, hyperedges per modality
        hyper_layers: Positive = 1  # hypergraph convolutions
        tau: Annotated[float, Check(gt=0)] = 0.2  # Gumbel-softmax temperature
        alpha: float = 0.3  # weight of the global embeddings in the fusion
        cl_weight: float = 1e-4  # weight of the cross-modal hypergraph contrast
        temperature: float = 0.2  # InfoNCE temperature
        reg: float = 1e-4  # L2 on the batch's ID embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        d = config.dim
        self.id_embeddings(d)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in self.features)  # W_m
        self.hyperedge_keys = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, config.hyperedges))) for _ in self.features
        )  # V^m
        self.register_user_item_graph(ctx)
        self.register_user_item_graph(ctx, norm="row", name="mean_adjacency")

    def _lightgcn(self, x: torch.Tensor, layers: int) -> torch.Tensor:
        return mean_propagate(self.adjacency, x, layers, adj_t=self.adjacency_t)

    def _users_from_items(self, items: torch.Tensor) -> torch.Tensor:
        """Each user's mean of their train items' rows (the user block of D^-1 A)."""
        nodes = torch.cat([items.new_zeros(self.n_users, items.shape[1]), items])
        return propagate(self.mean_adjacency, nodes, 1, adj_t=self.mean_adjacency_t)[-1][: self.n_users]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(E_local, E_global, per-modality global embeddings), rows users then items."""
        c = self.config
        collaborative = self._lightgcn(torch.cat([self.user_embedding.weight, self.item_embedding.weight]), c.ui_layers)
        local, global_parts = collaborative, []
        for proj, keys, f in zip(self.projections, self.hyperedge_keys, self.features):
            items = proj(f)
            local = local + F.normalize(
                self._lightgcn(torch.cat([self._users_from_items(items), items]), c.modality_layers), dim=1
            )
            logits = items @ keys  # [n_items, A]
            h_items = F.gumbel_softmax(logits, tau=c.tau, dim=1) if self.training else torch.softmax(logits / c.tau, dim=1)
            h_users = self._users_from_items(h_items)
            z_items = collaborative[self.n_users :]
            for _ in range(c.hyper_layers):
                hyper = h_items.T @ z_items  # [A, d]
                z_items, z_users = h_items @ hyper, h_users @ hyper
            global_parts.append(torch.cat([z_users, z_items]))
        return local, tensor_sum(global_parts), global_parts

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        local, global_, _ = self.embeddings()
        final = local + self.config.alpha * F.normalize(global_, dim=1)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        local, global_, parts = self.embeddings()
        final = local + c.alpha * F.normalize(global_, dim=1)
        ranking = self.bpr_terms(final[: self.n_users], final[self.n_users :], batch)
        nodes = torch.cat([torch.unique(batch["users"]), torch.unique(batch["pos"]) + self.n_users])
        contrast = sum(
            (info_nce(a[nodes], b[nodes], c.temperature, symmetric=True) for a, b in combinations(parts, 2)), local.new_zeros(())
        )
        contrast = c.cl_weight * contrast
        prior = c.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + contrast + prior, "bpr": ranking, "contrast": contrast, "reg": prior}
