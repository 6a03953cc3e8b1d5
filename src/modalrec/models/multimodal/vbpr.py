"""VBPR: Visual Bayesian Personalised Ranking.

He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016.
Survey family: content-aware matrix factorisation (pre-graph; not in the survey's list, the classic
baseline of MMRec and Cornac). Model optimisation: features frozen, end-to-end over the projection.

The preference of user u for item i (Eq. 2) adds a content term to BPR-MF:

    x_ui = alpha + beta_u + beta_i + gamma_u^T gamma_i + theta_u^T (E f_i) + beta'^T f_i

with f_i the item's content features, E a learned projection to the visual-factor space and beta'
a content bias. Trained by BPR-Opt (Sec. 4.2) with L2 on the batch's parameters.

Deviations: alpha and beta_u do not change a user's ranking and are dropped; the paper has one
(visual) modality, here f_i is the concatenation of every modality's (L2-normalised) features, so
any set of modalities works. The L2 on E and beta' is left to ``train.weight_decay`` as in MMRec.

``item_encoder="text"`` or ``"image"`` (not in the paper; the survey's end-to-end optimisation): f_i is the
pooled output of MiniLM over the item's text or of EfficientNet-Lite over its image (:mod:`modalrec.nn.towers`),
whose top ``finetune_layers`` layers train with BPR at ``encoder_lr`` (0 = frozen). A training step encodes only
the items of its triples (positives and negatives, each once); scoring encodes the catalogue once per evaluation
pass (cached until the model trains again). See docs/end_to_end.md for the cost.

Cold items (a cold-item split; not in the paper): their gamma_i and beta_i are zero and no triple holds them, so
they are scored by their content terms alone, the model's answer to a new item (the paper's motivation, Sec. 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, ItemTowerHost, register
from modalrec.models.multimodal.base import MultimodalConfig, MultimodalRecommender
from modalrec.nn.item_tower import ItemTower
from modalrec.nn.losses import bpr_loss, pairwise_scores
from modalrec.nn.towers import Tower, build_item_tower


@register
class VBPR(ItemTowerHost, MultimodalRecommender):
    """BPR-MF with a projected-content factor and a content bias per item."""

    name: ClassVar[str] = "vbpr"
    paper: ClassVar[str] = "He & McAuley, AAAI 2016"

    @dataclass
    class Config(MultimodalConfig):
        dim: Positive = 64  # K, latent factors gamma (the content factors theta have the same size)
        content_dim: Positive = 64  # K', size of the projected content E f_i
        reg: float = 1e-4  # L2 weight on the batch's gamma, theta and beta_i
        init_std: float = 0.1  # normal initialisation of the ID factors
        # features (extracted, frozen) | text (MiniLM) | image (EfficientNet-Lite), end to end
        item_encoder: Literal["features", Tower] = "features"
        finetune_layers: NonNegative = 0  # item_encoder text/image: top encoder layers trained (0 = frozen encoder)
        encoder_lr: float | None = None  # item_encoder text/image: learning rate of those layers; None = train.lr
        encoder_max_length: int = 32  # item_encoder=text: tokens read per item text

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.item_tower: ItemTower | None = None
        if config.item_encoder != "features":
            self.item_tower = build_item_tower(
                self.name, config.item_encoder, ctx, None, config.finetune_layers, config.encoder_max_length
            )
            feature_dim = self.item_tower.width
        else:
            feature_dim = sum(f.shape[1] for f in self.features)
        self.gamma_user = nn.Embedding(self.n_users, config.dim)
        self.gamma_item = nn.Embedding(self.n_items, config.dim)
        self.theta_user = nn.Embedding(self.n_users, config.content_dim)
        self.beta_item = nn.Embedding(self.n_items, 1)
        self.projection = nn.Linear(feature_dim, config.content_dim, bias=False)  # E
        self.content_bias = nn.Linear(feature_dim, 1, bias=False)  # beta'
        for table in (self.gamma_user, self.gamma_item, self.theta_user):
            nn.init.normal_(table.weight, std=config.init_std)
        nn.init.zeros_(self.beta_item.weight)
        self.zero_cold_rows(self.gamma_item.weight)  # a cold item: x_ui = theta_u^T (E f_i) + beta'^T f_i

    def content(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """f_i of ``items`` (None = all): the concatenated, per-modality L2-normalised features [n, sum d_m], or
        the item tower's L2-normalised pooled output."""
        if self.item_tower is not None:
            return F.normalize(self.item_tower.pooled(items), dim=1)
        return torch.cat([F.normalize(f if items is None else f[items], dim=1) for f in self.features], dim=1)

    def user_rows(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """[gamma_u; theta_u; 1] of ``users`` (None = all)."""
        gamma, theta = self.gamma_user.weight, self.theta_user.weight
        if users is not None:
            gamma, theta = gamma[users], theta[users]
        return torch.cat([gamma, theta, torch.ones(len(gamma), 1, device=gamma.device)], dim=1)

    def item_rows(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[gamma_i; E f_i; beta_i + beta'^T f_i] of ``items`` (None = all): x_ui is one inner product with a user row."""
        f = self.content(items)
        gamma, beta = self.gamma_item.weight, self.beta_item.weight
        if items is not None:
            gamma, beta = gamma[items], beta[items]
        return torch.cat([gamma, self.projection(f), beta + self.content_bias(f)], dim=1)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_rows(), self.item_rows()

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        # only the batch's rows: each distinct item of the triples is encoded once (the catalogue is not)
        items, index = torch.unique(torch.cat([batch["pos"], batch["neg"]]), return_inverse=True)
        rows = self.item_rows(items)[index]
        positives, negatives = rows[: len(batch["pos"])], rows[len(batch["pos"]) :]
        ranking = bpr_loss(*pairwise_scores(self.user_rows(batch["users"]), positives, negatives))
        prior = self.config.reg * self.l2_terms(batch, self.gamma_user, self.theta_user, self.gamma_item, self.beta_item)
        return {"loss": ranking + prior, "bpr": ranking, "reg": prior}
