"""FREEDOM: a frozen item-item graph and degree-sensitive edge pruning.

Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023. Survey family: feature interaction / filtration (graph denoising)
on an item-item bridge; end-to-end.

1. Frozen item-item graph (Sec. 3.1): per modality a cosine kNN graph of the raw features with
   unit edge weights, D^-1/2 S D^-1/2 normalised, combined with fixed weights S = sum_m w_m S^m
   (the paper: 0.1 image, 0.9 text), built once and never learned (LATTICE's learned graph adds
   cost but little accuracy). Item ID embeddings are convolved over it: h = S^L e_item.
2. Degree-sensitive edge pruning (Sec. 3.2): each epoch a share ``prune`` of the user-item edges is
   dropped, sampling the edges kept with probability proportional to 1 / sqrt(d_u d_i), so edges
   between high-degree nodes (likely noise) go first; the kept graph is re-normalised. Evaluation
   uses the full graph.
3. LightGCN over the (pruned) user-item graph; final item = e_i + h_i. Loss: BPR on the final
   representations + lambda * sum_m BPR(u, W_m f_i^m) aligning users with projected features.

Conventions of the authors' code (MMRec's FREEDOM, enoche/MMRec@e775373) kept by default: the kNN graph
is the top-k of the full similarity matrix, so an item is one of its own k neighbours (``knn_self``;
false: k other items), and ID embeddings start Xavier-uniform (``init_std`` null; a number: normal(0, std)).
Deviations: the raw feature tables are frozen (the code fine-tunes them); for any set of modalities,
``modality_weights`` maps names to w_m (unlisted modalities share the rest equally; default: equal weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from modalrec.checks import Positive, Share
from modalrec.data.context import DataContext
from modalrec.data.views import train_pairs
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.graph import bipartite_adjacency, mean_propagate, propagate, sparse_graph


def modality_mixture(modalities: list[str], weights: dict[str, float], model: str) -> list[float]:
    """w_m for every modality: the given ones, the remaining mass shared equally by the others."""
    unknown = sorted(set(weights) - set(modalities))
    if unknown:
        raise ConfigError(f"{model}: modality_weights names {unknown}, not among the model's modalities {modalities}")
    rest = [m for m in modalities if m not in weights]
    left = 1.0 - sum(weights.values())
    if any(w < 0 for w in weights.values()) or left < -1e-6 or (not rest and abs(left) > 1e-6):
        raise ConfigError(f"{model}: modality_weights must be >= 0 and sum to 1 (or less, the rest shared), got {weights}")
    return [weights.get(m, max(left, 0.0) / max(len(rest), 1)) for m in modalities]


@register
class FREEDOM(MultimodalRecommender):
    """LightGCN on a pruned user-item graph plus ID embeddings convolved on a frozen content graph."""

    name: ClassVar[str] = "freedom"
    paper: ClassVar[str] = "Zhou & Shen, ACM MM 2023"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        knn_k: int = 10  # neighbours per item in the frozen content graphs
        modality_weights: dict[str, float] = field(default_factory=dict)  # w_m; empty = equal
        item_layers: int = 1  # L, convolutions on the item-item graph
        ui_layers: int = 2  # LightGCN layers on the user-item graph
        prune: Share = 0.8  # share of user-item edges dropped per epoch (the authors' "dropout")
        feature_weight: float = 1e-4  # lambda, weight of the user-feature BPR terms (the authors' reg_weight)
        knn_self: bool = True  # the item is one of its own k neighbours (the authors' code)
        init_std: float | None = None  # None: Xavier (the authors' code); else normal(0, init_std)

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.id_embeddings(config.dim, config.init_std)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)  # W_m
        weights = modality_mixture(self.modalities, config.modality_weights, self.name)
        knn = [self.content_knn(m, config.knn_k, weighted=False, include_self=config.knn_self) for m in range(len(weights))]
        item_graph = sum(w * graph for w, graph in zip(weights, knn))
        for name, tensor in zip(("item_graph", "item_graph_t"), sparse_graph(item_graph)):
            self.register_buffer(name, tensor, persistent=False)
        self.register_user_item_graph(ctx)
        self.pruned: tuple[torch.Tensor, torch.Tensor] | None = None
        users, items = train_pairs(ctx)
        self.edge_users, self.edge_items = users, items
        degree_u = np.bincount(users, minlength=self.n_users).astype(np.float64)
        degree_i = np.bincount(items, minlength=self.n_items).astype(np.float64)
        self.edge_probability = torch.from_numpy(1.0 / np.sqrt(degree_u[users] * degree_i[items]))

    def before_epoch(self, epoch: int) -> None:
        """Degree-sensitive pruning (Sec. 3.2): keep (1 - prune) of the edges, sampled prop. to 1/sqrt(d_u d_i)."""
        if self.config.prune == 0:
            self.pruned = None
            return
        n_keep = max(1, int(len(self.edge_users) * (1 - self.config.prune)))
        keep = torch.multinomial(self.edge_probability, n_keep, replacement=False).numpy()
        kept = sp.csr_matrix(
            (np.ones(n_keep, dtype=np.float32), (self.edge_users[keep], self.edge_items[keep])),
            shape=(self.n_users, self.n_items),
        )
        graph = bipartite_adjacency(kept, self.n_users, self.n_items, norm="sym")
        self.pruned = sparse_graph(graph, self.adjacency.device)

    def representations(self, graph: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        adjacency, adjacency_t = graph if graph is not None else (self.adjacency, self.adjacency_t)
        h = propagate(self.item_graph, self.item_embedding.weight, c.item_layers, adj_t=self.item_graph_t)[-1]
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        final = mean_propagate(adjacency, ego, c.ui_layers, adj_t=adjacency_t)
        return final[: self.n_users], final[self.n_users :] + h

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations(self.pruned if self.training else None)
        ranking = self.bpr_terms(users, items, batch)
        feature = sum(self.bpr_terms(users, proj(f), batch) for proj, f in zip(self.projections, self.features))
        aligned = self.config.feature_weight * feature
        return {"loss": ranking + aligned, "bpr": ranking, "feature_bpr": aligned}
