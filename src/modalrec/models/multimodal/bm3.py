"""BM3: bootstrapped multimodal latent alignment without negative samples.

Zhou, Zhou, Zhang, Liu, Zhang, Miao & Chen, "Bootstrap Latent Representations for Multi-modal
Recommendation", WWW 2023. Survey family: feature enhancement / contrastive (negative-free,
BYOL-style) on a user-item bridge; end-to-end.

1. Encoders (Sec. 3.1): LightGCN over the user-item graph gives h_u, h_i from ID embeddings; each
   modality's features are projected, h_i^m = W_m f_i^m + b_m.
2. Views (Sec. 3.2): a shared predictor p(.) (one linear layer) makes the online views p(h); the
   target views are the detached representations with dropout, h~ = dropout(sg(h)) — no negatives
   and no momentum encoder.
3. Losses (Sec. 3.3), over a batch of observed (u, i) pairs:
     graph reconstruction  L_rec   = C(p(h_u), h~_i) + C(p(h_i), h~_u)
     inter-modality align  L_align = sum_m C(p(h_i^m), h~_i)
     intra-modality mask   L_mask  = sum_m C(p(h_i^m), h~_i^m)
   with C(a, b) = 1 - cos(a, b); L = L_rec + cl_weight (L_align + L_mask) + reg ||h_u, h_i||^2.
4. Scores: y_ui = p(h_u)^T p(h_i).

Deviation: the triples view supplies a negative per pair, which BM3 ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, register
from modalrec.models.general.bpr import embedding_l2
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import bootstrap_alignment
from modalrec.nn.graph import mean_propagate


@register
class BM3(MultimodalRecommender):
    """LightGCN encoders aligned with projected modalities by negative-free bootstrapping."""

    name: ClassVar[str] = "bm3"
    paper: ClassVar[str] = "Zhou et al., WWW 2023"

    @dataclass
    class Config(MultimodalConfig):
        dim: int = 64  # embedding size
        layers: int = 1  # LightGCN layers
        dropout: float = 0.3  # dropout making the target views
        cl_weight: float = 2.0  # weight of the alignment and masking terms
        reg: float = 0.1  # L2 weight on the batch's graph representations
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        if not 0.0 <= config.dropout < 1.0 or config.layers < 0:
            raise ConfigError(f"bm3: need 0 <= dropout < 1 and layers >= 0, got {config.dropout}, {config.layers}")
        self.id_embeddings(config.dim)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)  # W_m
        self.predictor = nn.Linear(config.dim, config.dim)  # p(.)
        self.register_user_item_graph(ctx)

    def encode_graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        """h_u, h_i: LightGCN over the user-item graph (Sec. 3.1)."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = mean_propagate(self.adjacency, ego, self.config.layers, adj_t=self.adjacency_t)
        return final[: self.n_users], final[self.n_users :]

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.encode_graph()
        return self.predictor(users), self.predictor(items)  # scores p(h_u)^T p(h_i)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        u, i = batch["users"], batch["pos"]
        h_u, h_i = self.encode_graph()
        h_u, h_i = h_u[u], h_i[i]
        target_u, target_i = F.dropout(h_u.detach(), c.dropout), F.dropout(h_i.detach(), c.dropout)
        reconstruction = bootstrap_alignment(self.predictor(h_u), target_i) + bootstrap_alignment(self.predictor(h_i), target_u)
        align = mask = torch.zeros((), device=h_u.device)
        for proj, f in zip(self.projections, self.features):
            h_m = proj(f[i])
            online_m = self.predictor(h_m)
            align = align + bootstrap_alignment(online_m, target_i)
            mask = mask + bootstrap_alignment(online_m, F.dropout(h_m.detach(), c.dropout))
        prior = c.reg * embedding_l2(len(u), h_u, h_i)
        contrast = c.cl_weight * (align + mask)
        return {"loss": reconstruction + contrast + prior, "reconstruction": reconstruction, "align": align, "mask": mask, "reg": prior}
