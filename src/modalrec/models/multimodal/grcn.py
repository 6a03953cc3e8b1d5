"""GRCN: graph-refined convolutional network.

Wei, Wang, Nie, He & Chua, "Graph-Refined Convolutional Network for Multimedia Recommendation with
Implicit Feedback", ACM MM 2020. Survey family: feature interaction / filtration (graph) on a
user-item bridge; end-to-end. Defaults follow the authors' code (weiyinwei/GRCN as ported to
enoche/MMRec@e775373 ``models/grcn.py``) except the routing (below).

Implicit feedback holds false-positive edges (clicks on items the user does not like). GRCN scores
every train edge by how well the item's content fits the user's preference and down-weights or
prunes the poor fits before convolving (Sec. 3):

1. Graph refining (Sec. 3.2), per modality m: item content c_i = normalize(LeakyReLU(W_m f_i)),
   user preference p_u learned. Prototypical routing (Alg. 1) updates the preference R times,
       a_ui = softmax_{i in N(u)}(p_u^T c_i),   p_u <- normalize(p_u^(0) + sum_i a_ui c_i).
   ``refine=attention`` (the code): the edge's weight towards the user is the attention
   a_ui = softmax over u's items of p_u^T c_i times the item's learned confidence beta_i^m, towards
   the item softmax over i's users times beta_u^m; the modality content part is the node plus its
   attention-weighted neighbours, [p_u + sum_i a_ui c_i ; c_i + sum_u a_iu p_u].
   ``refine=affinity`` (earlier form): the weight is the raw fit p_u^T c_i, symmetric-normalised
   (D^-1/2 W D^-1/2) into one graph, and the content part is node + one hop of that graph.
   Pruning keeps relu(weight) (a negative fit removes the edge); modalities are fused by max.
2. Graph convolution on the refined graph (Sec. 3.3): the ID embeddings, L2-normalised
   (``normalize_ids``), are propagated over the refined weights and the layers summed,
   x + A x + ... + A^L x (``readout=sum``); the final representation concatenates the ID part and
   every modality part.
3. y_ui = <u, i>, BPR with L2 on the batch's ID and preference embeddings.

Deviations: routing runs without gradient and only its last step is differentiated. The code's
routing is a no-op (its routing messages flow only from users to items, so the preferences never
change): ``routing=0`` reproduces that, the default keeps the paper's R = 3. The code's L2 is a mean
over the entries (a rescaling of ``reg``). All message passing runs on the train matrix R as one CSR
pattern with learned values (:class:`modalrec.nn.edges.EdgeCSR`: sparse-dense products and sampled
dense-dense products) instead of PyG scatter ops; the bipartite square graph is never materialised.
Earlier ModalRec form (selectable; the committed mm-amazon-scientific results used it):
``refine=affinity readout=mean normalize_ids=false init_std=0.1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.data.views import train_pairs
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.edges import EdgeCSR, edge_softmax
from modalrec.nn.typed import TypedModuleList


@register
class GRCN(MultimodalRecommender):
    """Convolution over a user-item graph whose edges are re-weighted by content-preference fit."""

    name: ClassVar[str] = "grcn"
    paper: ClassVar[str] = "Wei et al., ACM MM 2020"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # size of ID, preference and content vectors
        routing: NonNegative = 3  # R, prototypical routing iterations (0: the code's effective behaviour)
        layers: NonNegative = 2  # L, ID propagation layers on the refined graph
        refine: Literal["attention", "affinity"] = "attention"  # attention x confidence (the code) | affinity (earlier form)
        readout: Literal["sum", "mean"] = "sum"  # sum of the ID layers (the code) | mean
        normalize_ids: bool = True  # L2-normalise the ID embeddings before propagating (the code)
        reg: float = 1e-4  # L2 on the batch's ID and preference embeddings
        init_std: float | None = None  # None: Xavier-normal (the code); else normal(0, init_std)

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.user_embedding = nn.Embedding(self.n_users, config.dim)
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        self.preferences = TypedModuleList(nn.Embedding(self.n_users, config.dim) for _ in self.features)
        self.content = TypedModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)  # W_m
        tables = [self.user_embedding.weight, self.item_embedding.weight, *(p.weight for p in self.preferences)]
        if config.refine == "attention":  # beta^m: one confidence per node and modality
            self.confidence = nn.Parameter(torch.empty(self.n_users + self.n_items, len(self.features)))
            tables.append(self.confidence)
        for weight in tables:
            if config.init_std is None:
                nn.init.xavier_normal_(weight)
            else:
                nn.init.normal_(weight, std=config.init_std)
        if config.init_std is None:
            for layer in self.content:
                nn.init.xavier_normal_(layer.weight)
        users, items = train_pairs(ctx)
        self.graph = EdgeCSR(torch.from_numpy(users), torch.from_numpy(items), self.n_users, self.n_items)  # R

    def refine_modality(self, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fit p_u^T c_i per train edge, routed preferences p [n_users, d], content c [n_items, d])."""
        g = self.graph
        c = F.normalize(F.leaky_relu(self.content[m](self.features[m])), dim=1)
        p0 = self.preferences[m].weight
        p = F.normalize(p0, dim=1)
        if self.config.routing > 0:
            with torch.no_grad():  # Alg. 1, routing iterations before the last
                for _ in range(self.config.routing - 1):
                    a = g.row_softmax(g.sddmm(p, c))
                    p = F.normalize(p0 + g.weighted(a).matmul(c), dim=1)
            a = g.row_softmax(g.sddmm(p, c)).detach()
            p = F.normalize(p0 + g.weighted(a).matmul(c), dim=1)
        return g.sddmm(p, c), p, c

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        g, c = self.graph, self.config
        refined = [self.refine_modality(m) for m in range(len(self.features))]
        ids_u, ids_i = self.user_embedding.weight, self.item_embedding.weight
        if c.normalize_ids:
            ids_u, ids_i = F.normalize(ids_u, dim=1), F.normalize(ids_i, dim=1)
        if c.refine == "attention":
            to_user, to_item, parts_u, parts_i = [], [], [], []
            for m, (fit, p, cont) in enumerate(refined):
                a_user, a_item = g.row_softmax(fit), edge_softmax(g.cols, fit, self.n_items)  # over u's items / i's users
                parts_u.append(p + g.weighted(a_user).matmul(cont))
                parts_i.append(cont + g.weighted(a_item).matmul_t(p))
                beta = self.confidence[:, m]
                to_user.append(a_user * beta[self.n_users :].index_select(0, g.cols))  # message item -> user
                to_item.append(a_item * g.by_row(beta[: self.n_users]))  # message user -> item
            adj_u = g.weighted(torch.stack(to_user).amax(0).clamp_min(0))  # prune + max fusion
            adj_i = g.weighted(torch.stack(to_item).amax(0).clamp_min(0))

            def convolve(users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return adj_u.matmul(items), adj_i.matmul_t(users)

            layers = [(ids_u, ids_i)]
            for _ in range(c.layers):
                layers.append(convolve(*layers[-1]))
        else:
            weight = torch.stack([fit for fit, _, _ in refined]).amax(0).clamp_min(0)  # prune + max fusion
            adj = g.weighted(g.symmetric_norm(weight))  # D^-1/2 W D^-1/2 of the bipartite graph, on R's edges

            def convolve(users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return adj.matmul(items), adj.matmul_t(users)

            # the first hop of the ID embeddings and of every modality's [p; c] share one product
            d = c.dim
            users = torch.cat([ids_u, *(p for _, p, _ in refined)], dim=1)
            items = torch.cat([ids_i, *(cont for _, _, cont in refined)], dim=1)
            hop_u, hop_i = convolve(users, items)
            parts_u, parts_i = [users[:, d:] + hop_u[:, d:]], [items[:, d:] + hop_i[:, d:]]  # node + one hop
            layers = [(ids_u, ids_i), (hop_u[:, :d], hop_i[:, :d])][: c.layers + 1]
            while len(layers) < c.layers + 1:
                layers.append(convolve(*layers[-1]))
        pool = (lambda xs: torch.stack(xs).sum(0)) if c.readout == "sum" else (lambda xs: torch.stack(xs).mean(0))
        return (
            torch.cat([pool([u for u, _ in layers]), *parts_u], dim=1),
            torch.cat([pool([i for _, i in layers]), *parts_i], dim=1),
        )

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        prior = self.config.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding, *self.preferences)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
