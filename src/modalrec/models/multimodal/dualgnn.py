"""DualGNN: a user-item graph per modality plus a user co-occurrence graph.

Wang, Wei, Yin, Li, Li & Nie, "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE TMM 2021. Survey family: feature interaction / bridge (user-item and user-user graphs) with
user-specific fusion; end-to-end. Defaults follow the authors' code as ported to enoche/MMRec@e775373
(``models/dualgnn.py``).

1. Single-modal representation learning (Sec. III-B): per modality m, items start from their features
   through a two-layer MLP, W'_m LeakyReLU(W_m f_i) (d_f -> 4d -> d; ``feature_mlp``), users from a
   learned modality preference; the rows are L2-normalised (``normalize_inputs``) and propagated over the
   normalised user-item graph, x^m = x + A x + ... + A^L x (``readout=sum``; L = ``layers``).
2. Multi-modal fusion (Sec. III-C): every user mixes their modality representations with their own
   learned weights, u_fused = sum_m softmax(w_u)_m u^m (the user-specific fusion pattern); items take
   the sum over modalities (``item_id=false``: no ID embedding, as the code).
3. User co-occurrence graph (Sec. III-D): each user's k = 40 users with the most common train items,
   edge weights the common counts normalised per user; one aggregation step
   u = u_fused + sum_v w_uv u_fused_v lets a user borrow the fusion pattern of similar users.
4. y_ui = <u, i>, BPR with L2 on the batch's preference (and, with ``item_id``, item ID) rows.

The user graph is built sparsely in chunks from the train matrix (never a dense users x users
matrix, never valid/test interactions) — MMRec needs a precomputed ``user_graph_dict.npy`` made
by a dense O(U^2) script. Deviations: the authors' code softmaxes raw counts, which puts nearly all
weight on the first neighbour, and pads users with fewer than k neighbours by repeating random ones;
counts are normalised by their sum here. The code uses the fusion weights w_u as they are (softmaxed
once at initialisation) and regularises their mean square; here softmax(w_u) in every pass. Its BPR
is in bits (log2) and its L2 a mean over the entries (a rescaling of the loss and of ``reg``).
Earlier ModalRec form (selectable; the committed mm-amazon-scientific results used it):
``feature_mlp=false normalize_inputs=false readout=mean item_id=true user_k=10 init_std=0.1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import scipy.sparse as sp
import torch
import torch.nn.functional as F
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
        readout: Literal["sum", "mean"] = "sum"  # sum of the layers (the code) | mean (LightGCN)
        feature_mlp: bool = True  # d_f -> 4d -> d MLP with LeakyReLU (the code); false: one linear map
        normalize_inputs: bool = True  # L2-normalise user preference and item feature rows before propagating
        item_id: bool = False  # add an item ID embedding to the items (earlier form; the code has none)
        user_k: Positive = 40  # neighbours per user in the co-occurrence graph
        reg: float = 1e-4  # L2 on the batch's preference (and item ID) rows
        init_std: float | None = None  # None: Xavier (the code); else normal(0, init_std)

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        m, d = len(self.features), config.dim
        self.preferences = TypedModuleList(nn.Embedding(self.n_users, d) for _ in range(m))
        tables = list(self.preferences)
        if config.item_id:
            self.item_embedding = nn.Embedding(self.n_items, d)
            tables.append(self.item_embedding)
        for table in tables:
            if config.init_std is None:
                nn.init.xavier_normal_(table.weight)
            else:
                nn.init.normal_(table.weight, std=config.init_std)
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
            if config.feature_mlp
            else nn.Linear(f.shape[1], d)
            for f in self.features
        )
        self.fusion = nn.Parameter(torch.zeros(self.n_users, m))  # w_u, user-specific modality weights
        self.register_user_item_graph(ctx)
        for name, tensor in zip(("user_graph", "user_graph_t"), sparse_graph(self.co_occurrence_graph(ctx.train, config.user_k))):
            self.register_buffer(name, tensor, persistent=False)

    @staticmethod
    def co_occurrence_graph(train: sp.csr_matrix, k: int) -> sp.csr_matrix:
        """Row-normalised top-k co-occurrence counts [n_users, n_users] from the train matrix."""
        return normalise_adjacency(cooccurrence_knn(train, k), "row")

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        per_modality_users, per_modality_items = [], []
        for pref, proj, f in zip(self.preferences, self.projections, self.features):
            x = torch.cat([pref.weight, proj(f)])
            if c.normalize_inputs:
                x = F.normalize(x, dim=1)
            if c.readout == "sum":
                final = torch.stack(propagate(self.adjacency, x, c.layers, adj_t=self.adjacency_t)).sum(0)
            else:
                final = mean_propagate(self.adjacency, x, c.layers, adj_t=self.adjacency_t)
            per_modality_users.append(final[: self.n_users])
            per_modality_items.append(final[self.n_users :])
        weights = torch.softmax(self.fusion, dim=1)  # Sec. III-C
        fused = (torch.stack(per_modality_users, dim=2) * weights[:, None, :]).sum(2)
        users = fused + propagate(self.user_graph, fused, 1, adj_t=self.user_graph_t)[-1]  # Sec. III-D
        if c.item_id:  # the earlier form: modality mean plus an ID embedding
            return users, torch.stack(per_modality_items).mean(0) + self.item_embedding.weight
        return users, torch.stack(per_modality_items).sum(0)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        tables = [*self.preferences] + ([self.item_embedding] if self.config.item_id else [])
        prior = self.config.reg * self.l2_terms(batch, *tables)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
