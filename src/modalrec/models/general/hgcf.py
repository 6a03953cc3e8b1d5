"""HGCF: hyperbolic graph convolution for collaborative filtering.

Sun, Cheng, Ghosh, Malhotra, Schmidt, Swaminathan & Zhu, "HGCF: Hyperbolic Graph Convolution Networks
for Collaborative Filtering", WWW 2021; stage 1 of HDRM (spec hdrm.md section 3).

User and item embeddings are points on the hyperboloid H (Lorentz model, curvature -1/K), initialised
as exp_o of uniform(-s, s) vectors. They are mapped to the tangent space at the origin and
propagated there, without weights or non-linearities, over the row-normalised user-item graph with
self loops, A_hat = D~^-1 (A + I); the output is the sum of layers 1..L ("ResSum": layer 0 excluded):

    Z_0 = log_o(E),   Z_l = A_hat Z_{l-1},   Z = sum_{l=1..L} Z_l,   H = exp_o(Z).

Training minimises the margin ranking loss on squared hyperbolic distances, summed over the batch,

    L = sum_b max(0, d^2(h_u, h_i+) - d^2(h_u, h_j-) + m),

with Riemannian SGD (geoopt; momentum, Euclidean weight decay on the ambient coordinates, as HGCF's
RSGD). Items are ranked by -d^2(h_u, h_i), i.e. by the Minkowski product <h_u, h_i>_L, all items of a user
chunk in one float32 Lorentz GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import geoopt
import torch

from modalrec.checks import Check, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, ModelMixin, ScoringCache, register
from modalrec.nn.graph import bipartite_adjacency, propagate, to_torch_sparse
from modalrec.nn.hyperbolic import Lorentz, lorentz_matmul
from modalrec.nn.losses import hyperbolic_margin_loss


class HyperbolicScorer(ModelMixin):
    """Ranks items by their Minkowski product with the user, <x_u, x_i>_L: -d^2 = -K arcosh(-<x, y>_L / K)^2
    is increasing in it, so the order is -d^2's without the arcosh (and without the ties of its d^2 <= 50
    clamp). One float32 Lorentz GEMM per user chunk; subclasses return the points of all items (computed in
    float64, stored in float32) from ``item_points`` and user points from ``encode``."""

    manifold: Lorentz

    def item_points(self) -> torch.Tensor:
        raise NotImplementedError

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return lorentz_matmul(query.float(), self.item_points()[items])


@register
class HGCF(ScoringCache, HyperbolicScorer, GeneralRecommender):
    """Lorentz embeddings, tangent-space ResSum propagation, hyperbolic margin loss, Riemannian SGD."""

    name: ClassVar[str] = "hgcf"
    paper: ClassVar[str] = "Sun et al., WWW 2021"

    @dataclass
    class Config:
        dim: Annotated[int, Check(ge=2)] = 64  # D = d + 1, ambient width of the Lorentz points (HDRM releases 512; 64 fits a CPU)
        layers: Positive = 3  # L, propagation layers (HDRM: 3 on ML-1M and Yelp)
        margin: float = 0.1  # m of the margin loss (HGCF paper; HDRM's stage-2 code hard-codes 0.2)
        curvature: Annotated[float, Check(gt=0)] = 1.0  # c; the hyperboloid has K = 1/c (fixed, not trained)
        init_scale: float = 0.1  # E = exp_o(uniform(-s, s))
        momentum: float = 0.95  # momentum of Riemannian SGD

    train_view: ClassVar[str] = "triples"
    train_defaults: ClassVar[dict] = {
        "lr": 1e-3,
        "weight_decay": 1e-3,
        "batch_size": 10_000,
        "epochs": 500,
        "eval_every": 5,
        "patience": 10,
    }
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "train.weight_decay": ("log", 1e-5, 1e-2),
        "model.margin": ("float", 0.05, 0.5),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.manifold = Lorentz(1.0 / config.curvature)
        self.user_embedding = geoopt.ManifoldParameter(self._init_points(self.n_users), manifold=self.manifold)
        self.item_embedding = geoopt.ManifoldParameter(self._init_points(self.n_items), manifold=self.manifold)
        # A_hat = D~^-1 (A + I): data, rebuilt from ctx, not saved in checkpoints
        adjacency = bipartite_adjacency(ctx.train, self.n_users, self.n_items, self_loops=True, norm="row")
        self.register_buffer("adjacency", to_torch_sparse(adjacency), persistent=False)
        self.register_buffer("adjacency_t", to_torch_sparse(adjacency.T.tocsr()), persistent=False)  # for the backward

    def _init_points(self, n: int) -> torch.Tensor:
        s = self.config.init_scale
        return self.manifold.expmap0(torch.empty(n, self.config.dim).uniform_(-s, s))

    def configure_optimizer(self, train: Any) -> torch.optim.Optimizer:
        return geoopt.optim.RiemannianSGD(
            self.parameters(), lr=train.lr, momentum=self.config.momentum, weight_decay=train.weight_decay
        )

    # ----------------------------------------------------------------- encoder
    def tangent_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z_u [U, D], Z_i [I, D]): ResSum of the propagated tangent vectors at the origin (column 0 is 0)."""
        ego = self.manifold.logmap0(self.manifold.projx(torch.cat([self.user_embedding, self.item_embedding])))
        layers = propagate(self.adjacency, ego, self.config.layers, adj_t=self.adjacency_t)
        z = torch.stack(layers[1:]).sum(0)  # layer 0 excluded
        return z[: self.n_users], z[self.n_users :]

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users and items back on H: (exp_o(Z_u), exp_o(Z_i))."""
        z_u, z_i = self.tangent_embeddings()
        return self.manifold.expmap0(z_u), self.manifold.expmap0(z_i)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        h_u, h_i = self.embeddings()
        margin = hyperbolic_margin_loss(
            self.manifold, h_u[batch["users"]], h_i[batch["pos"]], h_i[batch["neg"]], self.config.margin
        )
        return {"loss": margin}

    # ----------------------------------------------------------------- scoring
    def scoring_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item points (float64 exponential map, kept in float32)."""
        z_u, z_i = self.tangent_embeddings()
        return self.manifold.expmap0(z_u.double()).float(), self.manifold.expmap0(z_i.double()).float()

    def item_points(self) -> torch.Tensor:
        return self.cached_state()[1]

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.cached_state()[0][batch["users"]]
