"""LGMRec: local graph embeddings plus global hypergraph embeddings.

Guo, Li, Sun, Lin, Wang & Zhang, "LGMRec: Local and Global Graph Learning for Multimodal
Recommendation", AAAI 2024. Survey family: feature interaction / bridge (user-item graph and
modality hypergraphs) with an auxiliary contrastive term; end-to-end. Defaults follow the authors'
release (georgeguo-cn/LGMRec, in enoche/MMRec@e775373 ``models/lgmrec.py``).

1. Local graph embedding (Sec. 3.2): collaborative embeddings E_c by LightGCN over ID embeddings;
   modality embeddings E^m by propagating items' projected features W_m f_i (no bias) and users' mean
   of their items' ones (user modality features come from their behaviour, not from free parameters)
   ``modality_layers`` times over the normalised user-item graph, keeping the last layer
   (``modality_readout=last``). E_local = E_c + sum_m normalize(E^m).
2. Global hypergraph embedding (Sec. 3.3): per modality A learnable hyperedges V^m over the raw
   features; items depend on them by H_i^m = GumbelSoftmax(f_i V^m, tau), users by
   H_u^m = GumbelSoftmax(R f V^m, tau) (the sum of their items' logits; ``hyperedge_input=raw``), both
   with dropout 1 - keep_rate while training; hypergraph convolution of the collaborative item
   embeddings, Z = H_i^T E_c,items, gives E^m_global = [H_u^m Z ; H_i^m Z] (``hyper_layers`` times),
   E_global = sum_m E^m_global.
3. Fusion (Sec. 3.4): E = E_local + alpha * normalize(E_global); y_ui = <u, i>.
4. L = BPR + cl_weight * hypergraph contrast + reg * (||u|| + ||i+|| + ||i-||) / B over the batch's final
   rows, unsquared (``reg_form=final_norm``). The contrast (Sec. 3.5), per pair of modalities (a, b) in
   name order (the code: image, text): the batch's users (as drawn) and positive items in a's global embedding against all users /
   items in b's, cosine / tau, summed over the batch. With a single modality it is 0.

Deviation: evaluation uses the plain tempered softmax instead of a Gumbel sample (deterministic
scores; the Gumbel noise is a training-time regulariser). Earlier ModalRec form (selectable; the
committed mm-amazon-scientific results used it): ``hyperedge_input=projected`` (hyperedges over the
projected features, users the mean of their items' dependencies) ``modality_readout=mean keep_rate=1
reg_form=id_l2 reg=1e-4``, with a bias in W_m (``projection_bias=true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.graph import mean_propagate, propagate, sparse_graph
from modalrec.nn.typed import TypedModuleList, tensor_sum


@register
class LGMRec(MultimodalRecommender):
    """Local user-item graph embeddings (collaborative + modality) plus modality hypergraph embeddings."""

    name: ClassVar[str] = "lgmrec"
    paper: ClassVar[str] = "Guo et al., AAAI 2024"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # embedding size
        ui_layers: int = 2  # LightGCN layers of the collaborative embeddings
        modality_layers: int = 2  # propagation layers of the modality embeddings
        hyperedges: Positive = 4  # A, hyperedges per modality
        hyper_layers: Positive = 1  # hypergraph convolutions
        tau: Annotated[float, Check(gt=0)] = 0.2  # Gumbel-softmax and contrast temperature
        keep_rate: Annotated[float, Check(gt=0, le=1)] = 0.5  # 1 - dropout on the hyperedge dependencies while training
        alpha: float = 0.3  # weight of the global embeddings in the fusion
        cl_weight: float = 1e-4  # weight of the cross-modal hypergraph contrast
        reg: float = 1e-6  # weight of the regulariser (reg_form)
        hyperedge_input: Literal["raw", "projected"] = "raw"  # raw features (the code) | projected (earlier form)
        modality_readout: Literal["last", "mean"] = "last"  # last propagation layer (the code) | mean of the layers
        reg_form: Literal["final_norm", "id_l2"] = "final_norm"  # unsquared norms of the final batch rows (the code) | id_l2
        projection_bias: bool = False  # W_m has a bias (earlier form); the code's is a plain matrix
        init_std: float | None = None  # None: Xavier (the code); else normal(0, init_std) for the ID tables

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        d = config.dim
        self.id_embeddings(d, config.init_std)
        self.projections = TypedModuleList(nn.Linear(f.shape[1], d, bias=config.projection_bias) for f in self.features)  # W_m
        for proj in self.projections:
            nn.init.xavier_uniform_(proj.weight)
        key_dims = [f.shape[1] if config.hyperedge_input == "raw" else d for f in self.features]
        self.hyperedge_keys = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(k, config.hyperedges))) for k in key_dims
        )  # V^m
        self.register_user_item_graph(ctx)
        self.register_user_item_graph(ctx, norm="row", name="mean_adjacency")
        train = ctx.train.tocsr().astype(bool).astype("float32")
        for name, tensor in zip(("interactions", "interactions_t"), sparse_graph(train)):  # R [n_users, n_items]
            self.register_buffer(name, tensor, persistent=False)

    def _users_from_items(self, items: torch.Tensor) -> torch.Tensor:
        """Each user's mean of their train items' rows (the user block of D^-1 A)."""
        nodes = torch.cat([items.new_zeros(self.n_users, items.shape[1]), items])
        return propagate(self.mean_adjacency, nodes, 1, adj_t=self.mean_adjacency_t)[-1][: self.n_users]

    def _dependencies(self, m: int, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_u^m [n_users, A], H_i^m [n_items, A]) of modality m (items: its projected features)."""
        c = self.config
        sample = (
            (lambda x: F.gumbel_softmax(x, tau=c.tau, dim=1)) if self.training else (lambda x: torch.softmax(x / c.tau, dim=1))
        )
        if c.hyperedge_input == "projected":
            h_items = sample(items @ self.hyperedge_keys[m])
            h_users = self._users_from_items(h_items)
        else:
            logits = self.features[m] @ self.hyperedge_keys[m]
            user_logits = propagate(self.interactions, logits, 1, adj_t=self.interactions_t)[-1]  # R f V
            h_items, h_users = sample(logits), sample(user_logits)
        if self.training and c.keep_rate < 1:
            h_items, h_users = F.dropout(h_items, 1 - c.keep_rate), F.dropout(h_users, 1 - c.keep_rate)
        return h_users, h_items

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(E_local, E_global, per-modality global embeddings), rows users then items."""
        c = self.config
        ids = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        collaborative = mean_propagate(self.adjacency, ids, c.ui_layers, adj_t=self.adjacency_t)
        local, global_parts = collaborative, []
        for m, (proj, f) in enumerate(zip(self.projections, self.features)):
            items = proj(f)
            nodes = torch.cat([self._users_from_items(items), items])
            if c.modality_readout == "last":
                modal = propagate(self.adjacency, nodes, c.modality_layers, adj_t=self.adjacency_t)[-1]
            else:
                modal = mean_propagate(self.adjacency, nodes, c.modality_layers, adj_t=self.adjacency_t)
            local = local + F.normalize(modal, dim=1)
            h_users, h_items = self._dependencies(m, items)
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

    def contrast(self, a: torch.Tensor, b: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """sum over anchors x of -log exp(cos(a_x, b_x) / tau) / sum_y exp(cos(a_x, b_y) / tau), y over all rows of b."""
        logits = F.normalize(a[anchors], dim=1) @ F.normalize(b, dim=1).T / self.config.tau
        return (logits.logsumexp(1) - logits.gather(1, anchors[:, None]).squeeze(1)).sum()

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        local, global_, parts = self.embeddings()
        final = local + c.alpha * F.normalize(global_, dim=1)
        users, items = final[: self.n_users], final[self.n_users :]
        ranking = self.bpr_terms(users, items, batch)
        contrast = local.new_zeros(())
        for a, b in combinations(parts, 2):
            contrast = contrast + self.contrast(a[: self.n_users], b[: self.n_users], batch["users"])
            contrast = contrast + self.contrast(a[self.n_users :], b[self.n_users :], batch["pos"])
        contrast = c.cl_weight * contrast
        if c.reg_form == "final_norm":
            rows = (users[batch["users"]], items[batch["pos"]], items[batch["neg"]])
            prior = c.reg * tensor_sum(r.norm() for r in rows) / len(batch["users"])
        else:
            prior = c.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + contrast + prior, "bpr": ranking, "contrast": contrast, "reg": prior}
