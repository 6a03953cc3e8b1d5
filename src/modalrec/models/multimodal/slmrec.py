"""SLMRec: self-supervised learning for multimedia recommendation.

Tao, Liu, Xia, Wang, Yang, Hua, Zhu & Liu, "Self-supervised Learning for Multimedia
Recommendation", IEEE TMM 2022. Survey family: feature enhancement / contrastive on a user-item
bridge; end-to-end.

1. Backbone (Sec. III-A): one LightGCN per source on the user-item graph — the ID embeddings, and
   per modality m users' learned embeddings with items' projected features W_m f_i. The final
   representation concatenates every source's layer mean; y_ui = <u, i>.
2. Self-supervised tasks on item content (Sec. III-B), two augmented views per batch item, each
   encoded by a shared two-layer head g over the concatenated projected modalities:
     ``fd``  feature dropout: dropout on every projected modality, independently per view;
     ``fm``  feature masking: each view zeroes one randomly chosen modality per item;
     ``fac`` fine and coarse: every single modality (fine view, others zeroed) against all
             modalities together (coarse view).
   The views of the same item are a positive pair, other batch items negatives: InfoNCE (Sec. III-C).
3. L = BPR + ssl_weight * InfoNCE + L2 on the batch's embeddings.

Deviation: the main task uses BPR instead of the in-batch softmax of the paper and of MMRec's port
(enoche/MMRec@e775373 ``SLMRec.infonce``: cosine / 0.2 over the batch's positives, no L2 term, Adam weight
decay 1e-4).
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
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import info_nce
from modalrec.nn.graph import mean_propagate
from modalrec.nn.typed import TypedModuleList, tensor_sum


@register
class SLMRec(MultimodalRecommender):
    """Per-source LightGCNs, concatenated, with content-augmentation contrastive learning."""

    name: ClassVar[str] = "slmrec"
    paper: ClassVar[str] = "Tao et al., IEEE TMM 2022"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size of every source
        layers: NonNegative = 2  # LightGCN layers
        ssl_task: Literal["fd", "fm", "fac"] = "fac"  # fd | fm | fac (Sec. III-B)
        dropout: float = 0.2  # feature dropout of the fd task
        ssl_weight: float = 0.1  # weight of the InfoNCE term
        temperature: float = 0.2  # InfoNCE temperature
        reg: float = 1e-4  # L2 on the batch's embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        m = len(self.features)
        self.user_embeddings = TypedModuleList(nn.Embedding(self.n_users, config.dim) for _ in range(m + 1))  # ID + modalities
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        for table in (self.item_embedding, *self.user_embeddings):
            nn.init.normal_(table.weight, std=config.init_std)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)  # W_m
        self.head = nn.Sequential(nn.Linear(m * config.dim, config.dim), nn.LeakyReLU(), nn.Linear(config.dim, config.dim))  # g
        self.register_user_item_graph(ctx)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.item_embedding.weight] + [proj(f) for proj, f in zip(self.projections, self.features)]
        parts = []
        for users, item_nodes in zip(self.user_embeddings, items):
            x = torch.cat([users.weight, item_nodes])
            parts.append(mean_propagate(self.adjacency, x, self.config.layers, adj_t=self.adjacency_t))
        final = torch.cat(parts, dim=1)
        return final[: self.n_users], final[self.n_users :]

    def ssl_loss(self, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between two augmented content views of the batch's items (Sec. III-B/C)."""
        c = self.config
        projected = [proj(f[items]) for proj, f in zip(self.projections, self.features)]  # [B, d] each
        encode = lambda views: self.head(torch.cat(views, dim=1))  # noqa: E731
        if c.ssl_task == "fd":
            view = lambda: encode([F.dropout(p, c.dropout, training=True) for p in projected])  # noqa: E731
            return info_nce(view(), view(), c.temperature)
        if c.ssl_task == "fm":

            def masked() -> torch.Tensor:
                drop = torch.randint(len(projected), (len(items),), device=items.device)
                return encode([p * (drop != m).unsqueeze(1) for m, p in enumerate(projected)])

            return info_nce(masked(), masked(), c.temperature)
        coarse = encode(projected)
        fine = [encode([p if j == m else torch.zeros_like(p) for j, p in enumerate(projected)]) for m in range(len(projected))]
        return tensor_sum(info_nce(f, coarse, c.temperature) for f in fine) / len(fine)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        ssl = self.config.ssl_weight * self.ssl_loss(torch.unique(batch["pos"]))
        prior = self.config.reg * self.l2_terms(batch, self.item_embedding, *self.user_embeddings)
        return {"loss": ranking + ssl + prior, "bpr": ranking, "ssl": ssl, "reg": prior}
