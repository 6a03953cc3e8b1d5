"""SLMRec: self-supervised learning for multimedia recommendation.

Tao, Liu, Xia, Wang, Yang, Hua, Zhu & Liu, "Self-supervised Learning for Multimedia
Recommendation", IEEE TMM 2022. Survey family: feature enhancement / contrastive on a user-item
bridge; end-to-end. Defaults follow the authors' code (zltao/SLMRec, as ported to enoche/MMRec@e775373
``models/slmrec.py``), which agrees with the paper's equations where these are explicit.

1. Backbone (Sec. III-A): one LightGCN per source s on the user-item graph, over the same user table
   and the source's item nodes: the item ID embeddings, and per modality m the projected, L2-normalised
   features W_m f_i / ||f_i||. Each source's layer mean gives (u_s, i_s); the final representations
   are u = W_u [u_id; u_1; ...; u_M] and i = W_i [i_id; i_1; ...; i_M] (``fusion=linear``); y_ui = <u, i>.
2. Main task: in-batch softmax (InfoNCE) between the batch's users and their positives, cosine / 0.2
   (``objective=infonce``); the sampled negative is not used.
3. Self-supervised task ``fac`` (fine and coarse, Sec. III-B): a chain of spaces from the ID view,
   x_0 = i_id, x_k = g_k(x_{k-1}); at step k the ID chain is contrasted with modality k's graph
   view h_k(i_k) by InfoNCE over the batch's positives (dot products / ssl_temperature, other batch
   items as negatives). Every space has width d, the last (coarsest) d/2, as in the code.
4. L = main + ssl_weight * ssl; no L2 term: the code regularises through Adam's weight decay 1e-4
   (``train.weight_decay``, this model's training default).

Earlier ModalRec form (selectable, its results in docs/results/mm-amazon-scientific depend on it):
``objective=bpr fusion=concat shared_users=false normalize_features=false init_std=0.1 reg=1e-4
train.weight_decay=0 ssl_task=content_fac`` (per-source user tables, BPR + L2, and self-supervision on
two augmented views of the projected content encoded by a shared head: ``content_fd`` feature dropout,
``content_fm`` one modality masked per view, ``content_fac`` each single modality against all together).
Not built: the code's graph-level ``FD`` / ``FM`` tasks (MMRec's port cannot run them either).
With one modality (e.g. text only) the chain has a single step; the code's three-modality chain (image,
audio, text) composes linear maps between steps whose product is again one linear map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive, Share
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import info_nce
from modalrec.nn.graph import mean_propagate
from modalrec.nn.typed import TypedModuleList, tensor_sum


def in_batch_softmax(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean cross-entropy of row i of ``a`` picking row i of ``b`` among all rows of ``b`` by raw dot
    products / temperature (the code's ``fac``: no normalisation)."""
    return F.cross_entropy(a @ b.T / temperature, torch.arange(len(a), device=a.device))


@register
class SLMRec(MultimodalRecommender):
    """Per-source LightGCNs fused by a linear map, trained by in-batch softmax plus ID-modality contrast."""

    name: ClassVar[str] = "slmrec"
    paper: ClassVar[str] = "Tao et al., IEEE TMM 2022"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size of every source
        layers: NonNegative = 3  # LightGCN layers (the code's layer_num)
        objective: Literal["infonce", "bpr"] = "infonce"  # infonce (the paper and code) | bpr (earlier ModalRec form)
        fusion: Literal["linear", "concat"] = "linear"  # linear: W_u / W_i over the concatenated sources (the code) | concat
        shared_users: bool = True  # one user table for every source (the code); false: one per source
        normalize_features: bool = True  # L2-normalise raw features before the projection (the code)
        temperature: float = 0.2  # main-task softmax temperature (the code's temp)
        ssl_task: Literal["fac", "content_fd", "content_fm", "content_fac"] = (
            "fac"  # fac (the code) | content_fd | content_fm | content_fac (earlier forms)
        )
        ssl_weight: float = 0.1  # ssl_alpha
        ssl_temperature: float = 0.2  # ssl_temp
        dropout: Share = 0.2  # feature dropout of content_fd
        reg: float = 0.0  # L2 on the batch's ID rows (the code has none: weight decay instead)
        init_std: float | None = None  # None: Xavier (the code); else normal(0, init_std)

    train_defaults: ClassVar[dict[str, Any]] = {**MultimodalRecommender.train_defaults, "weight_decay": 1e-4}

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        d, m = config.dim, len(self.features)
        self.user_embeddings = TypedModuleList(nn.Embedding(self.n_users, d) for _ in range(1 if config.shared_users else m + 1))
        self.item_embedding = nn.Embedding(self.n_items, d)
        for table in (self.item_embedding, *self.user_embeddings):
            if config.init_std is None:
                nn.init.xavier_uniform_(table.weight)
            else:
                nn.init.normal_(table.weight, std=config.init_std)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in self.features)  # W_m
        if config.fusion == "linear":
            self.user_fusion, self.item_fusion = nn.Linear((m + 1) * d, d), nn.Linear((m + 1) * d, d)
        if config.ssl_task == "fac":
            widths = [d] * (m - 1) + [d // 2]  # the last, coarsest space is half as wide
            self.chain = nn.ModuleList(nn.Linear(d, w) for w in widths)  # g_k, from the previous space
            self.views = nn.ModuleList(nn.Linear(d, w) for w in widths)  # h_k, from modality k's view
        else:  # the shared content head g of the content_* tasks
            self.head = nn.Sequential(nn.Linear(m * d, d), nn.LeakyReLU(), nn.Linear(d, d))
        if config.init_std is None:  # the code's Xavier weights (biases keep PyTorch's default); not the content head
            heads = [*getattr(self, "chain", ()), *getattr(self, "views", ())]
            fusions = [self.user_fusion, self.item_fusion] if config.fusion == "linear" else []
            for layer in (*self.projections, *fusions, *heads):
                nn.init.xavier_uniform_(layer.weight)
        self.register_user_item_graph(ctx)

    def item_sources(self) -> list[torch.Tensor]:
        """Item nodes of every source: the ID table, then each modality's projected features."""
        feats = [F.normalize(f, dim=1) if self.config.normalize_features else f for f in self.features]
        return [self.item_embedding.weight] + [proj(f) for proj, f in zip(self.projections, feats)]

    def source_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(users, items) layer means of every source's LightGCN, ID first."""
        views = []
        for s, items in enumerate(self.item_sources()):
            users = self.user_embeddings[0 if self.config.shared_users else s].weight
            final = mean_propagate(self.adjacency, torch.cat([users, items]), self.config.layers, adj_t=self.adjacency_t)
            views.append((final[: self.n_users], final[self.n_users :]))
        return views

    def fuse(self, views: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = torch.cat([u for u, _ in views], dim=1), torch.cat([i for _, i in views], dim=1)
        if self.config.fusion == "linear":
            return self.user_fusion(users), self.item_fusion(items)
        return users, items

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fuse(self.source_views())

    def fac_loss(self, views: list[tuple[torch.Tensor, torch.Tensor]], items: torch.Tensor) -> torch.Tensor:
        """Sum over modalities of the ID chain's step k against modality k's view (the code's ``fac``)."""
        c = self.config
        x, loss = views[0][1][items], torch.zeros((), device=items.device)
        for k, (g, h) in enumerate(zip(self.chain, self.views)):
            x = g(x)
            loss = loss + in_batch_softmax(x, h(views[k + 1][1][items]), c.ssl_temperature)
        return loss

    def content_ssl_loss(self, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between two augmented content views of the batch's items (earlier ModalRec form)."""
        c = self.config
        projected = [view[items] for view in self.item_sources()[1:]]  # [B, d] each
        encode = lambda views: self.head(torch.cat(views, dim=1))  # noqa: E731
        if c.ssl_task == "content_fd":
            view = lambda: encode([F.dropout(p, c.dropout, training=True) for p in projected])  # noqa: E731
            return info_nce(view(), view(), c.ssl_temperature)
        if c.ssl_task == "content_fm":

            def masked() -> torch.Tensor:
                drop = torch.randint(len(projected), (len(items),), device=items.device)
                return encode([p * (drop != m).unsqueeze(1) for m, p in enumerate(projected)])

            return info_nce(masked(), masked(), c.ssl_temperature)
        coarse = encode(projected)
        fine = [encode([p if j == m else torch.zeros_like(p) for j, p in enumerate(projected)]) for m in range(len(projected))]
        return tensor_sum(info_nce(f, coarse, c.ssl_temperature) for f in fine) / len(fine)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        views = self.source_views()
        users, items = self.fuse(views)
        if c.objective == "infonce":
            main = info_nce(users[batch["users"]], items[batch["pos"]], c.temperature)
        else:
            main = self.bpr_terms(users, items, batch)
        if c.ssl_task == "fac":
            ssl = self.fac_loss(views, batch["pos"])
        else:
            ssl = self.content_ssl_loss(torch.unique(batch["pos"]))
        ssl = c.ssl_weight * ssl
        prior = c.reg * self.l2_terms(batch, self.item_embedding, *self.user_embeddings)
        return {"loss": main + ssl + prior, "main": main, "ssl": ssl, "reg": prior}
