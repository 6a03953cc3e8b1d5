"""MICRO: latent item structures with contrastive modality fusion.

Zhang, Zhu, Liu, Wang & Wang, "Latent Structure Mining with Contrastive Modality Fusion for
Multimedia Recommendation", IEEE TKDE 2022. Survey family: feature interaction / bridge (item-item
graph) + feature enhancement / contrastive; end-to-end. MICRO extends LATTICE.

1. Latent structures (Sec. 4.1): LATTICE's per-modality item graphs A^m (frozen raw-feature kNN
   mixed with a learned kNN graph, :class:`modalrec.nn.item_graph.LearnedItemGraph`), but each
   modality convolves the item ID embeddings on its own graph: h^m = (A^m)^L e_item.
2. Contrastive modality fusion (Sec. 4.2): attention fuses the modality views,
       beta_m = softmax_m(q^T tanh(W h^m + b)),   h = sum_m beta_m h^m,
   and InfoNCE pulls every modality view of an item towards its fused view (the other items of
   both views are negatives): L_c = sum_m InfoNCE(h^m, h).
3. As LATTICE (Eq. 10): final item = e_i + h_i / ||h_i|| with e from LightGCN; y_ui = <u, i>;
   L = BPR + lambda_c L_c + L2.

Defaults follow the authors' code (CRIPAC-DIG/MICRO @ 80f6cc6, ``codes/Models.py`` and ``main.py``): Xavier
initialisation; the contrast over **all** items with the other items of both views as negatives (GRACE,
:func:`modalrec.nn.contrastive.grace_loss`, ``contrast=all_items``), averaged over items and summed over
modalities; L2 1e-5 on the batch's final rows u, i+, i- (``reg_form=final``).

Deviations: as in :mod:`modalrec.models.multimodal.lattice`, the learned graphs' kNN structure is
refreshed every epoch and their edge weights are differentiated in every batch (the code: a gradient
only in an epoch's first batch; ``graph_grad=first_batch`` selects that); the user-item graph is LightGCN's
D^-1/2 A D^-1/2 (the code's D^-1 (A + I): ``ui_graph=row_self``); raw features are frozen (trainable
there). Earlier ModalRec form
(selectable; the committed mm-amazon-scientific results used it): ``contrast=batch`` (InfoNCE against
the fused view over the batch's items) ``reg_form=ego reg=1e-4 init_std=0.1``.
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
from modalrec.nn.contrastive import grace_loss, info_nce
from modalrec.nn.graph import mean_propagate
from modalrec.nn.losses import embedding_l2
from modalrec.nn.typed import tensor_sum


@register
class MICRO(RefreshedItemGraph, MultimodalRecommender):
    """LATTICE's learned item graphs per modality, fused by attention and aligned by InfoNCE."""

    name: ClassVar[str] = "micro"
    paper: ClassVar[str] = "Zhang et al., IEEE TKDE 2022"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        knn_k: Positive = 10  # neighbours per item in the content graphs
        skip: float = 0.9  # lambda, weight of the frozen raw-feature graph
        item_layers: Positive = 1  # L, convolutions on each item graph
        ui_layers: NonNegative = 2  # LightGCN layers of the CF backbone
        cl_weight: float = 0.03  # lambda_c, weight of the contrastive fusion loss
        temperature: float = 0.5  # InfoNCE temperature
        contrast: Literal["all_items", "batch"] = (
            "all_items"  # all_items: GRACE over every item (the code) | batch: InfoNCE over the batch
        )
        reg_form: Literal["final", "ego"] = "final"  # L2 on the batch's final rows (the code) | ego: on their ID rows
        reg: float = 1e-5  # weight of that L2
        init_std: float | None = None  # None: Xavier (the code); else normal(0, init_std)
        # user-item graph: sym D^-1/2 A D^-1/2 (LightGCN) | row_self D^-1 (A + I) (the authors' code)
        ui_graph: Literal["sym", "row_self"] = "sym"
        # learned graphs' edge weights: differentiated in every batch | first_batch (the code: once per epoch)
        graph_grad: Literal["every_batch", "first_batch"] = "every_batch"

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.id_embeddings(config.dim, config.init_std)
        self.build_graphs(ctx, config.knn_k, config.dim, config.skip, config.ui_graph, config.graph_grad)
        self.attention = nn.Sequential(nn.Linear(config.dim, config.dim), nn.Tanh(), nn.Linear(config.dim, 1, bias=False))

    def item_views(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(h^m per modality, fused h) (Secs. 4.1-4.2)."""
        views = [
            self.item_graph.propagate(
                self.item_graph.modality_graph(m, self.features), self.item_embedding.weight, self.config.item_layers
            )
            for m in range(len(self.features))
        ]
        stacked = torch.stack(views)  # [M, n_items, d]
        beta = torch.softmax(self.attention(stacked), dim=0)
        return views, (beta * stacked).sum(0)

    def _final(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = mean_propagate(self.adjacency, ego, self.config.ui_layers, adj_t=self.adjacency_t)
        return final[: self.n_users], final[self.n_users :] + F.normalize(fused, dim=1)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._final(self.item_views()[1])

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        views, fused = self.item_views()
        users, items = self._final(fused)
        ranking = self.bpr_terms(users, items, batch)
        if c.contrast == "all_items":
            contrast = c.cl_weight * tensor_sum(grace_loss(v, fused, c.temperature) for v in views)
        else:
            i = torch.unique(batch["pos"])
            contrast = c.cl_weight * tensor_sum(info_nce(v[i], fused[i], c.temperature) for v in views)
        if c.reg_form == "final":
            rows = (users[batch["users"]], items[batch["pos"]], items[batch["neg"]])
            prior = c.reg * embedding_l2(len(batch["users"]), *rows)
        else:
            prior = c.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + contrast + prior, "bpr": ranking, "contrast": contrast, "reg": prior}
