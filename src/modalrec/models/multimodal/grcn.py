"""GRCN: graph-refined convolutional network.

Wei, Wang, Nie, He & Chua, "Graph-Refined Convolutional Network for Multimedia Recommendation with
Implicit Feedback", ACM MM 2020. Survey family: feature interaction / filtration (graph) on a
user-item bridge; end-to-end.

Implicit feedback holds false-positive edges (clicks on items the user does not like). GRCN scores
every train edge by how well the item's content fits the user's preference and down-weights or
prunes the poor fits before convolving (Sec. 3):

1. Graph refining (Sec. 3.2), per modality m: item content c_i = normalize(LeakyReLU(W_m f_i)),
   user preference p_u learned. Prototypical routing (Alg. 1) updates the preference R times,
       a_ui = softmax_{i in N(u)}(p_u^T c_i),   p_u <- normalize(p_u^(0) + sum_i a_ui c_i),
   and the edge's affinity is s_ui^m = p_u^T c_i. Pruning keeps relu(s_ui^m) (negative affinity
   removes the edge); the modalities are fused by max (the paper's default fusion).
2. Graph convolution on the refined graph (Sec. 3.3): with W the refined, D^-1/2 W D^-1/2
   normalised graph, ID embeddings are propagated (mean of L layers) and each modality's nodes
   [p; c] once; the final representation concatenates the ID part and every modality part.
3. y_ui = <u, i>, BPR with L2 on the batch's ID and preference embeddings.

Deviations: routing runs without gradient and only its last step is differentiated (as the
authors' code); the ID convolution is LightGCN's linear mean instead of the code's LeakyReLU sums;
all message passing runs on the train matrix R as one CSR pattern with learned values
(:class:`modalrec.nn.edges.EdgeCSR`: sparse-dense products and sampled dense-dense products) instead
of PyG scatter ops; the bipartite square graph [[0, W], [W^T, 0]] is never materialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.data.views import train_pairs
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.edges import EdgeCSR
from modalrec.nn.typed import TypedModuleList


@register
class GRCN(MultimodalRecommender):
    """Convolution over a user-item graph whose edges are re-weighted by content-preference fit."""

    name: ClassVar[str] = "grcn"
    paper: ClassVar[str] = "Wei et al., ACM MM 2020"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # size of ID, preference and content vectors
        routing: Positive = 3  # R, prototypical routing iterations
        layers: NonNegative = 2  # L, ID propagation layers on the refined graph
        reg: float = 1e-4  # L2 on the batch's ID and preference embeddings
        init_std: float = 0.1

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.user_embedding = nn.Embedding(self.n_users, config.dim)
        self.item_embedding = nn.Embedding(self.n_items, config.dim)
        self.preferences = TypedModuleList(nn.Embedding(self.n_users, config.dim) for _ in self.features)
        for table in (self.user_embedding, self.item_embedding, *self.preferences):
            nn.init.normal_(table.weight, std=config.init_std)
        self.content = nn.ModuleList(nn.Linear(f.shape[1], config.dim) for f in self.features)  # W_m
        users, items = train_pairs(ctx)
        self.graph = EdgeCSR(torch.from_numpy(users), torch.from_numpy(items), self.n_users, self.n_items)  # R

    def refine(self, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(affinity s_ui per train edge, routed preferences p [n_users, d], content c [n_items, d])."""
        g = self.graph
        c = F.normalize(F.leaky_relu(self.content[m](self.features[m])), dim=1)
        p0 = self.preferences[m].weight
        p = F.normalize(p0, dim=1)
        with torch.no_grad():  # Alg. 1, routing iterations before the last
            for _ in range(self.config.routing - 1):
                a = g.row_softmax(g.sddmm(p, c))
                p = F.normalize(p0 + g.weighted(a).matmul(c), dim=1)
        a = g.row_softmax(g.sddmm(p, c)).detach()
        p = F.normalize(p0 + g.weighted(a).matmul(c), dim=1)
        return g.sddmm(p, c), p, c

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.graph
        refined = [self.refine(m) for m in range(len(self.features))]
        weight = torch.stack([s for s, _, _ in refined]).amax(0).clamp_min(0)  # prune + max fusion
        adj = g.weighted(g.symmetric_norm(weight))  # D^-1/2 W D^-1/2 of the bipartite graph, on R's edges

        def convolve(users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return adj.matmul(items), adj.matmul_t(users)

        # the first hop of the ID embeddings and of every modality's [p; c] share one product
        users = torch.cat([self.user_embedding.weight, *(p for _, p, _ in refined)], dim=1)
        items = torch.cat([self.item_embedding.weight, *(c for _, _, c in refined)], dim=1)
        hop_u, hop_i = convolve(users, items)
        d, n_layers = self.config.dim, self.config.layers
        ids = [(users[:, :d], items[:, :d]), (hop_u[:, :d], hop_i[:, :d])][: n_layers + 1]
        while len(ids) < n_layers + 1:
            ids.append(convolve(*ids[-1]))
        return (
            torch.cat(
                [torch.stack([u for u, _ in ids]).mean(0), users[:, d:] + hop_u[:, d:]], dim=1
            ),  # modality parts: node + one hop
            torch.cat([torch.stack([i for _, i in ids]).mean(0), items[:, d:] + hop_i[:, d:]], dim=1),
        )

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, items = self.representations()
        ranking = self.bpr_terms(users, items, batch)
        prior = self.config.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding, *self.preferences)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
