"""MGCN: multi-view graph convolution with behaviour-purified modality features.

Yu, Li, Zhou, Ma & Li, "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023. Survey family: feature interaction / bridge (user-item + item-item graphs) with
coarse attention fusion and an auxiliary contrastive term; end-to-end.

1. Behaviour-guided purifier (Sec. 3.2): projected features f'_i^m = W_1 f_i^m + b_1 are gated by
   the item's ID embedding, x~_i^m = e_i^id * sigmoid(W_2 f'_i^m + b_2), removing
   preference-irrelevant content.
2. Multi-view encoder (Sec. 3.3): the ID view is LightGCN over the user-item graph; each
   modality view convolves the purified item features once over a frozen content kNN item-item
   graph (cosine weights, the item itself among its k neighbours, D^-1/2 S D^-1/2: the authors'
   code) and gives users the normalised sum of their items' ones.
3. Behaviour-aware fuser (Sec. 3.4): modality-shared part by attention,
       alpha_m = softmax_m(q^T tanh(W_3 e^m + b_3)),   e_s = sum_m alpha_m e^m,
   modality-specific parts e~^m = e^m - e_s gated by the behaviour (ID-view) preference,
       e_mul = (e_s + sum_m sigmoid(W_4 e^id + b_4) * e~^m) / (|M| + 1);
   the final representation is e^id + e_mul, y_ui = <u, i>.
4. L = BPR + lambda_c (InfoNCE(e_mul_u, e^id_u) + InfoNCE(e_mul_i, e^id_i)) over the batch's users and
   positive items (Sec. 3.5, self-supervised auxiliary task) + reg * L2 of the batch's final
   representations (u, i+, i-), 1/2 sum ||.||^2 / batch.

Where the paper and the authors' code (MMRec's MGCN, enoche/MMRec@e775373, a port of
github.com/demonph10/MGCN) differ, we follow the code, the reference people compare against: the fusion divides
the shared part and the specific parts together by 3 for two modalities (the paper's fusion adds
e_s to the mean of the specific parts); we write it (e_s + sum_m ...) / (|M| + 1), which is the code for
two modalities and an equal share per part for any number (``fusion: mean_specific`` is the paper's
e_s + 1/|M| sum_m); the item graph keeps cosine weights and the item itself (``knn_self: false``
drops it; MMRec builds the graph from the top-k of the full similarity matrix); the InfoNCE rows are
the batch's users and positives as drawn, duplicates included (``contrast_unique: true`` takes each
row once, so a repeated row is not its own negative); the L2 is on the final representations; and
the learning rate decays by 0.96 every 50 epochs (smoothly, lr * 0.96^(epoch/50): ``train.scheduler
exponential``, ``train.gamma`` 0.96^(1/50), the model's training default). Negative cosine weights
are clipped at 0 (none occur at k = 10 on real features). Deviation: the raw feature tables are
frozen (the code fine-tunes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import scipy.sparse as sp
import torch
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import info_nce
from modalrec.nn.graph import mean_propagate, propagate, sparse_graph
from modalrec.nn.losses import embedding_l2


@register
class MGCN(MultimodalRecommender):
    """Purified modality views on item-item graphs, fused with the ID view by behaviour-aware attention."""

    name: ClassVar[str] = "mgcn"
    paper: ClassVar[str] = "Yu et al., ACM MM 2023"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        knn_k: Positive = 10  # neighbours per item in the content graphs
        ui_layers: NonNegative = 2  # LightGCN layers of the ID view
        cl_weight: float = 0.01  # lambda_c, weight of the view-contrast term
        temperature: float = 0.2  # InfoNCE temperature
        reg: float = 1e-4  # L2 on the batch's final representations
        # "code": (e_s + sum_m parts) / (|M| + 1); "mean_specific": e_s + mean_m parts (Eq. 13)
        fusion: Literal["code", "mean_specific"] = "code"
        knn_self: bool = True  # the item is one of its own k neighbours (the authors' code)
        contrast_unique: bool = False  # InfoNCE over unique batch rows instead of the rows as drawn
        init_std: float | None = None  # None: Xavier (the authors' code); else normal(0, init_std)

    # the authors' learning-rate decay, lr * 0.96^(epoch / 50)
    train_defaults: ClassVar[dict[str, Any]] = {
        **MultimodalRecommender.train_defaults,
        "scheduler": "exponential",
        "gamma": 0.96 ** (1 / 50),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        d = config.dim
        self.id_embeddings(d, config.init_std)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in self.features)  # W_1, b_1
        self.gates = nn.ModuleList(nn.Linear(d, d) for _ in self.features)  # W_2, b_2
        self.attention = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))  # q^T tanh(W_3 . + b_3)
        self.preference_gates = nn.ModuleList(nn.Linear(d, d) for _ in self.features)  # W_4, b_4 per modality
        self.register_user_item_graph(ctx)
        for m in range(len(self.features)):
            for name, tensor in zip(("item_graph", "item_graph_t"), sparse_graph(self.item_item_graph(m))):
                self.register_buffer(f"{name}_{m}", tensor, persistent=False)

    def item_item_graph(self, m: int) -> sp.csr_matrix:
        """Modality m's frozen item-item graph: cosine kNN, weighted, normalised (Sec. 3.3)."""
        return self.content_knn(m, self.config.knn_k, weighted=True, include_self=self.config.knn_self)

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
        if self.config.fusion == "mean_specific":
            return shared + specific / len(modality_views)
        return (shared + specific) / (len(modality_views) + 1)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        id_view, modality_views = self.views()
        final = id_view + self.fuse(id_view, modality_views)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        id_view, modality_views = self.views()
        fused = self.fuse(id_view, modality_views)
        users, items = (id_view + fused).split([self.n_users, self.n_items])
        ranking = self.bpr_terms(users, items, batch)
        u, i = batch["users"], batch["pos"] + self.n_users
        if c.contrast_unique:
            u, i = torch.unique(u), torch.unique(i)
        contrast = c.cl_weight * (info_nce(fused[u], id_view[u], c.temperature) + info_nce(fused[i], id_view[i], c.temperature))
        rows = (users[batch["users"]], items[batch["pos"]], items[batch["neg"]])
        prior = c.reg * embedding_l2(len(batch["users"]), *rows)
        return {"loss": ranking + contrast + prior, "bpr": ranking, "contrast": contrast, "reg": prior}
