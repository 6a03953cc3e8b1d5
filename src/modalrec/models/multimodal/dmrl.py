"""DMRL: disentangled multimodal representation learning.

Liu, Yang, Chen, Wang & Liu, "Disentangled Multimodal Representation Learning for Recommendation",
IEEE TMM 2022. Survey family: feature enhancement / disentangled representation learning with
fine-grained (factor x modality) attention; end-to-end.

1. Disentangled representations (Sec. III-B): users, item IDs and every modality's projected
   content c_i^m = W_m f_i^m are vectors of K chunks (factors) of size d/K; a distance-correlation
   penalty makes the K factors of a batch's representations mutually independent (Eq. 6).
2. Factor-modality attention (Sec. III-C): for user u, item i and factor k, the sources
   s in {ID, m_1, ..., m_M} of item factor x_ik^s are weighted per user and factor,
       a_uiks = softmax_s(<u_k, x_ik^s> / sqrt(d/K)),
   so a user can attend to images for one factor and to text for another.
3. Preference (Sec. III-D): y_ui = sum_k sum_s a_uiks <u_k, x_ik^s>; L = BPR + lambda_dc * dCor
   + L2 on the batch's ID embeddings.

Deviations: the distance correlation is computed on the first ``dcor_rows`` rows of each
(shuffled) batch, since its cost is quadratic in the rows (Cornac trains DMRL with batches of 32);
the paper's attention network over [u_k ; x_ik^s] is reduced to its bilinear
(scaled inner-product) form, which keeps full ranking O(users x items x K x sources) without a
hidden layer per (user, item) pair.

``form=code`` is the authors' code instead (liufancs/DMRL @ 0da50e5, ``DMRL.py``): each modality is
projected by normalize -> linear (``hidden``) -> LeakyReLU(0.2) -> normalize -> linear (its dropout
is never active there); per factor an MLP, softmax(W_o tanh(W_h normalize([u_k; x_ik^1; ...; x_ik^S]) + b)),
shared by the factors, weights the sources, and y_ui = sum_k sum_s a_uiks softplus(<u_k, x_ik^s>);
the loss is softplus(-(y_ui - max_j y_uj)) over the hardest of the batch's negatives (set
``train.num_negatives``), the distance correlation runs over consecutive factors (k, k+1) only,
summed and divided by K(K+1)/2, and **only the ID embeddings are trained**: the code's optimiser is
given the user and item tables alone, so the projections and the attention MLP keep their Xavier
initialisation. The code sums the loss over the batch where this is a mean: its ``decay_r`` and
``decay_c`` are ``reg`` and ``dcor_weight`` times the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, Positive, Rule, multiple_of
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.contrastive import distance_correlation
from modalrec.nn.losses import bpr_loss
from modalrec.nn.typed import tensor_sum

SCORE_ITEM_CHUNK = 512  # items scored at once inside score_items (bounds the [B, n, K, S] attention)


class CodeProjection(nn.Module):
    """The code's content projection: normalize -> linear -> LeakyReLU(0.2) -> normalize -> linear."""

    def __init__(self, features: int, hidden: int, dim: int):
        super().__init__()
        self.inner, self.outer = nn.Linear(features, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(F.normalize(F.leaky_relu(self.inner(F.normalize(x, dim=-1)), 0.2), dim=-1))


@register
class DMRL(MultimodalRecommender):
    """K-factor users and items with per-user, per-factor attention over ID and content sources."""

    name: ClassVar[str] = "dmrl"
    paper: ClassVar[str] = "Liu et al., IEEE TMM 2022"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # total size; split into ``factors`` chunks
        factors: Positive = 4  # K, disentangled factors
        dcor_weight: float = 0.01  # lambda_dc, weight of the distance-correlation penalty
        # batch rows the penalty is computed on (its cost is O(rows^2) per factor pair)
        dcor_rows: Annotated[int, Check(ge=2)] = 256
        reg: float = 1e-4  # L2 on the batch's ID embeddings
        init_std: float | None = 0.1  # None: Xavier-uniform (the code)
        form: Literal["paper", "code"] = "paper"  # code: the authors' code (see the module docstring)
        hidden: Positive = 256  # form=code: hidden width of each projection MLP (the code's text: 2 x 128)
        rules: ClassVar[tuple[Rule, ...]] = (multiple_of("dim", "factors"),)

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.id_embeddings(config.dim, config.init_std)
        if config.form == "paper":
            self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(f.shape[1], config.dim), nn.Tanh()) for f in self.features)
            return
        sources, width = 1 + len(self.features), config.dim // config.factors
        self.encoders = nn.ModuleList(CodeProjection(f.shape[1], config.hidden, config.dim) for f in self.features)
        self.source_hidden = nn.Linear((sources + 1) * width, sources)  # W_h, b of the code's attention MLP
        self.source_out = nn.Linear(sources, sources, bias=False)  # W_o
        for layer in [self.source_hidden, self.source_out, *(m for enc in self.encoders for m in enc.children())]:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        for parameter in [*self.encoders.parameters(), *self.source_hidden.parameters(), *self.source_out.parameters()]:
            parameter.requires_grad_(False)  # the code optimises the ID tables only

    def _factors(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], self.config.factors, -1)

    def item_sources(self, items: torch.Tensor | slice) -> torch.Tensor:
        """x_i^s for the given items: [n, S, K, d/K] over sources (ID, then every modality)."""
        sources = [self.item_embedding.weight[items]] + [enc(f[items]) for enc, f in zip(self.encoders, self.features)]
        return self._factors(torch.stack(sources, dim=1))

    def preference(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """y for users [B, K, dk] against items [n, S, K, dk]: [B, n] (Sec. III-C/D)."""
        affinity = torch.einsum("bkd,nskd->bnks", users, items)  # <u_k, x_ik^s>
        if self.config.form == "code":
            mix = self._source_weights(users[:, None], items[None], "bnkd,od->bnko", "bnskd,osd->bnko")
            return (mix * F.softplus(affinity)).sum((-1, -2))
        attention = torch.softmax(affinity / users.shape[-1] ** 0.5, dim=-1)
        return (attention * affinity).sum((-1, -2))

    def _pair_preference(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """y for matched rows users [B, K, dk], items [B, S, K, dk]: [B]."""
        affinity = torch.einsum("bkd,bskd->bks", users, items)
        if self.config.form == "code":
            mix = self._source_weights(users, items, "bkd,od->bko", "bskd,osd->bko")
            return (mix * F.softplus(affinity)).sum((-1, -2))
        return (torch.softmax(affinity / users.shape[-1] ** 0.5, dim=-1) * affinity).sum((-1, -2))

    def _source_weights(self, users: torch.Tensor, items: torch.Tensor, user_eq: str, item_eq: str) -> torch.Tensor:
        """The code's attention softmax(W_o tanh(W_h normalize([u_k; x_k^1..S]) + b)) per factor [..., K, S],
        without building the concatenation: W_h [u; x] = W_u u + sum_s W_s x^s, divided by its norm."""
        hidden = self.source_hidden
        width, sources = users.shape[-1], hidden.out_features
        w_user, w_items = hidden.weight[:, :width], hidden.weight[:, width:].reshape(sources, -1, width)
        linear = torch.einsum(user_eq, users, w_user) + torch.einsum(item_eq, items, w_items)
        norm = (users.pow(2).sum(-1) + items.pow(2).sum(-1).sum(-2)).clamp_min(1e-12).sqrt()
        return torch.softmax(self.source_out(torch.tanh(linear / norm[..., None] + hidden.bias)), dim=-1)

    def disentanglement(self, x: torch.Tensor) -> torch.Tensor:
        """Mean distance correlation between every pair of factors of x [B, K, dk] (Eq. 6); form=code: the
        sum over consecutive factors (k, k+1) divided by K(K+1)/2, as the code."""
        k = x.shape[1]
        if self.config.form == "code":
            return tensor_sum(distance_correlation(x[:, a], x[:, a + 1]) for a in range(k - 1)) / (k * (k + 1) / 2)
        pairs = list(combinations(range(k), 2))
        if not pairs:
            return x.new_zeros(())
        return tensor_sum(distance_correlation(x[:, a], x[:, b]) for a, b in pairs) / len(pairs)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        users = self._factors(self.user_embedding(batch["users"]))
        pos = self.item_sources(batch["pos"])
        if c.form == "code":  # the hardest of the batch's negatives, softplus(-(pos - neg)) = -ln sigma(pos - neg)
            negs = batch["neg"].reshape(len(users), -1)
            neg_sources = self.item_sources(negs.reshape(-1)).reshape(*negs.shape, *pos.shape[1:])
            neg_scores = self._pair_preference(users.repeat_interleave(negs.shape[1], 0), neg_sources.flatten(0, 1))
            ranking = bpr_loss(self._pair_preference(users, pos), neg_scores.reshape(negs.shape).amax(1))
        else:
            ranking = bpr_loss(self._pair_preference(users, pos), self._pair_preference(users, self.item_sources(batch["neg"])))
        rows = slice(0, c.dcor_rows)  # the batch is shuffled, so its first rows are a random sample
        dcor = self.disentanglement(users[rows]) + sum(self.disentanglement(pos[rows, s]) for s in range(pos.shape[1]))
        dcor = c.dcor_weight * dcor
        prior = c.reg * self.l2_terms(batch, self.user_embedding, self.item_embedding)
        return {"loss": ranking + dcor + prior, "bpr": ranking, "dcor": dcor, "reg": prior}

    # ---------------------------------------------------------------- scoring (not a dot product)
    def scoring_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._factors(self.user_embedding.weight), self.item_sources(slice(None))

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.cached_state()[0][batch["users"]]

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        all_items = self.cached_state()[1]
        start, stop, _ = items.indices(self.n_items)
        return torch.cat(
            [
                self.preference(query, all_items[s : min(s + SCORE_ITEM_CHUNK, stop)])
                for s in range(start, stop, SCORE_ITEM_CHUNK)
            ],
            dim=1,
        )
