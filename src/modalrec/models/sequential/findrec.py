"""FindRec: Stein-guided multimodal sequential recommendation with expert routing over Mamba streams.

Wang, Xiao, Wang, Zhang, Ye, Wang, Yin, Guo & Xu, "FindRec: Stein-Guided Entropic Flow for
Multi-Modal Sequential Recommendation", KDD 2025 (arXiv 2507.04651). Reconstructed from the released
code (the paper's method section was not available); section numbers below refer to
``specs/findrec.md``.

Forward (Sec. 1.3), for a right-padded item sequence [B, L]:

1. ID stream (1.4): item embeddings -> ``mamba_layers`` pre-LN Mamba blocks with layer scale
   ``x + gamma * Drop(Mamba(LN(x)))`` -> E_id [B, L, d].
2. Modal projections (1.5): per modality m, frozen item features -> Linear -> L2 -> P_m [B, L, p].
3. IICM (1.6): a Gaussian bottleneck per modality, ``[mu, log var] = g_m(P_m)``,
   ``z_m = L2(mu + eps * exp(log var / 2))``; at the last position of each sequence a score network
   ``s_m`` and an RBF Stein kernel with median-heuristic bandwidth align the latents of modality pairs
   (or the routed modal summary with the ID stream, when there is one modality); KL to N(0, I).
4. Cross-modal multi-head subspace attention (1.7): each modality's latent is split into H subspaces of
   p / H dims; in head j every modality attends to the other modalities (residual), and the head
   concatenates the modalities and layer-normalises -> Hf [B, H, L, M p / H].
5. Routing (1.8): one router shared by all heads gives softmax(logits / tau) gates over E shared
   experts; per head ``o_j = sum_k g_k e_k(h_j)``; heads are fused: M = L2(Drop(LN(ReLU(W [o_1..o_H])))).
   (``expert_routing="top1"``, not in the paper: ``o_j = g_k* e_k*(h_j)`` with k* the largest gate, a cheaper option;
   ``router_scope="position"``, neither: one gate vector per position from all heads' outputs, shared by the heads.)
6. Fusion and output (1.9): ``Z = clamp(LN(Drop(ReLU(LN(W [E_id; M])))), +-10)``; the user vector is Z
   at the last item; scores are inner products with the (tied) item embeddings.
7. Loss: ``CE + lambda (KL + beta * align)`` (lambda = 0.1, beta = 1); with ``align_contrastive`` = gamma > 0 (not in
   the paper) ``CE + lambda (KL + beta * align + gamma * InfoNCE)``, a cross-modal InfoNCE over the batch's items.

Every reading the spec lists as ambiguous (A1-A19, Sec. 5) is a ``Config`` flag. ``mode="faithful"``
reproduces the released code; ``mode="clean"`` switches to the principled variants (textbook KSD, mean
latent at evaluation, causal cross-attention, clamped log-variance, KL at all valid positions, no pad
logit in the CE) and can then train on all positions at once (``train.seq_target=all``); ``mode="mmd"`` is
clean with mechanisms that work: the alignment is a two-sample discrepancy between the modalities' latent
means (``stein_form="mmd"``: multi-bandwidth RBF MMD^2 plus the paired kernel distance, no score networks)
and the bottleneck does not collapse (``logvar_init``, ``free_bits``). ``diagnostics`` measures both every
epoch; ``explain`` returns the routing weights behind each recommended item. Flags left at
``None`` take the mode's value; set them to override. Departures from the released code in every mode:
attention runs over sequence positions, not over the batch axis (A10, a bug that crashes unless B = L),
and any number of modalities >= 1 is accepted (the released code has exactly image + text). ``id_only`` is
the "ID stream only" ablation: steps 2-5 and the IICM loss are not built, ``Z = LN(fusion(E_id))``.
``item_encoder`` "text" / "image" (not in the paper; the survey's end-to-end optimisation) feeds the stream of the
modality of that name from an item tower (:mod:`modalrec.nn.towers`: MiniLM / EfficientNet-Lite) instead of the
frozen features, its top ``finetune_layers`` layers trained with FindRec's loss at ``encoder_lr``; each distinct
item of a batch is encoded once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, NonNegative, Positive, Rule, check_fields, multiple_of
from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, EmbeddingScorer, ItemTowerHost, SequentialRecommender, register, select_modalities
from modalrec.models.sequential.objective import supervised_pairs
from modalrec.nn.contrastive import info_nce
from modalrec.nn.dropout import Dropout
from modalrec.nn.item_tower import ItemTower
from modalrec.nn.mamba import Backend, MambaMixer
from modalrec.nn.routing import BALANCE_LOSSES, BalanceForm, SharedExperts, SharedRouter
from modalrec.nn.stein import (
    SteinForm,
    median_bandwidth,
    median_heuristic,
    mmd,
    paired_kernel_distance,
    squared_distances,
    stein_alignment,
)
from modalrec.nn.towers import Tower, build_item_tower
from modalrec.nn.typed import TypedModuleList
from modalrec.nn.unit import mean_pairwise_cosine, unit_norm

# The flags that ``mode`` sets when they are left at None.
Mode = Literal["faithful", "clean", "mmd"]  # the presets below, one per mode
MODE_PRESETS: dict[Mode, dict[str, Any]] = {  # field values, by field: passed to dataclasses.replace
    "faithful": {
        "stein_form": "findrec_code",
        "sample_at_eval": True,
        "xattn_causal": False,
        "logvar_clamp": None,
        "iicm_positions": "last",
        "ce_include_pad": True,
        "align_floor": None,
        "free_bits": 0.0,
        "align_latent": "sample",
        "encode_per_item": False,
    },
    "clean": {
        "stein_form": "ksd",
        "sample_at_eval": False,
        "xattn_causal": True,
        "logvar_clamp": 10.0,
        "iicm_positions": "all_valid",
        "ce_include_pad": False,
        # the textbook KSD^2 is >= 0 for one score function, but across two modalities with two free score networks
        # k s_x^T s_y is unbounded below (it ran to -4,292 in one ML-1M epoch and swamped CE): floor it where KSD^2 is
        "align_floor": 0.0,
        "free_bits": 0.0,
        "align_latent": "sample",
        "encode_per_item": False,
    },
    # clean, with an alignment that is a discrepancy between the modalities' latent means (multi-bandwidth RBF MMD^2
    # + the paired kernel distance: >= 0, 0 iff matched latents coincide, no score network to game) and a bottleneck
    # that does not collapse: it starts informative (sigma = e^-2) and its first 2 nats per dimension are free
    "mmd": {
        "stein_form": "mmd",
        "sample_at_eval": False,
        "xattn_causal": True,
        "logvar_clamp": 10.0,
        "iicm_positions": "all_valid",
        "ce_include_pad": False,
        "align_floor": None,
        "free_bits": 2.0,
        "logvar_init": -4.0,
        "align_latent": "mean",
        "encode_per_item": True,
    },
}


def l2(x: torch.Tensor) -> torch.Tensor:
    """Unit-norm rows (zero rows stay zero)."""
    return unit_norm(x)


def select_positions(x: torch.Tensor, positions: torch.Tensor, dim: int) -> torch.Tensor:
    """x [B, ..., L (at ``dim``), ...] at the per-row positions [B, Q] -> the same with Q in place of L."""
    shape = [positions.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = positions.shape[1]
    index = positions.view(shape).expand(*x.shape[:dim], positions.shape[1], *x.shape[dim + 1 :])
    return x.gather(dim, index)


class ScaledMambaBlock(nn.Module):
    """x + gamma * Drop(Mamba(LN(x))): pre-norm residual with a learnable per-channel layer scale (Sec. 1.4)."""

    def __init__(
        self, dim: int, d_state: int, d_conv: int, expand: int, dropout: float, scale_init: float, eps: float, backend: str
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mamba = MambaMixer(dim, d_state, d_conv, expand, backend=backend)
        self.dropout = Dropout(dropout)
        self.layer_scale = nn.Parameter(torch.full((dim,), scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.dropout(self.mamba(self.norm(x)))


def mamba_stack(cfg: FindRec.Config, dim: int) -> nn.Sequential:
    """``cfg.mamba_layers`` scaled pre-norm Mamba blocks of width ``dim``."""
    return nn.Sequential(
        *(
            ScaledMambaBlock(
                dim, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dropout, cfg.layer_scale_init, cfg.norm_eps, cfg.mamba_backend
            )
            for _ in range(cfg.mamba_layers)
        )
    )


def score_network(dim: int, dropout: float) -> nn.Sequential:
    """s(z): Linear(p -> 2p) -> LN -> Drop -> GELU -> Linear(2p -> p), trained only through the Stein term (A3)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), Dropout(dropout), nn.GELU(), nn.Linear(2 * dim, dim))


class GaussianBottleneck(nn.Module):
    """g_m: Linear(p -> p) -> LN -> Drop -> GELU -> Linear(p -> 2p) = [mu, log var]; z = L2(mu + eps sigma) (Sec. 1.6, 1-2)."""

    def __init__(self, dim: int, dropout: float, logvar_clamp: float | None):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), Dropout(dropout), nn.GELU(), nn.Linear(dim, 2 * dim))
        self.logvar_clamp = logvar_clamp

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log var) of q(z | x)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        if self.logvar_clamp is not None:  # A19
            logvar = logvar.clamp(-self.logvar_clamp, self.logvar_clamp)
        return mu, logvar

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """z = L2(mu + noise * sigma); ``noise`` None uses the mean (deterministic)."""
        return l2(mu if noise is None else mu + noise * torch.exp(0.5 * logvar))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, mu, log var)."""
        mu, logvar = self.posterior(x)
        return self.sample(mu, logvar, noise), mu, logvar


def gaussian_kl_dims(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(log var)) || N(0, I)) per row and latent dimension (same shape as mu)."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(log var)) || N(0, I)) per row, summed over the last dim."""
    return gaussian_kl_dims(mu, logvar).sum(-1)


class SubspaceCrossAttention(nn.Module):
    """Cross-modal multi-head subspace attention (Sec. 1.7), one single-head attention per (modality, head).

    Each modality m: Linear(p -> p) -> LN -> Drop -> L2 -> split into H subspaces of d_h = p / H
    (times d_h^-1/2 when ``double_scale``, A12). In head j, modality m queries the other modalities'
    head-j vectors (itself when there is one modality) with its own q/k/v/out projections (the
    layout of ``nn.MultiheadAttention(d_h, 1)``, stacked over heads), adds the residual, and the head
    concatenates the modalities and applies its own LayerNorm: ``h_j = LN_j([a_1j; ...; a_Mj])``.
    Padded keys are masked; ``causal`` also masks keys after the query (A11). ``query_pos`` [B, Q]
    restricts the queries to those positions (keys and values stay every position): the last-position
    objective and scoring need only Q = 1, and every later block then runs on Q rows instead of L.
    ``dropout_masks`` "torch": torch's fused attention draws the attention-dropout mask (``bernoulli_``);
    "uniform": the weights are formed explicitly and dropped by :class:`~modalrec.nn.dropout.Dropout` (the same
    distribution from ``torch.rand``, ~3x cheaper on CPU; other random draws, so not the same run under a seed).
    """

    def __init__(
        self,
        n_modalities: int,
        dim: int,
        heads: int,
        dropout: float,
        causal: bool,
        double_scale: bool,
        window: int | None = None,
        dropout_masks: Literal["torch", "uniform"] = "torch",
    ):
        super().__init__()
        self.heads, self.head_dim, self.causal, self.dropout = heads, dim // heads, causal, dropout
        self.window, self.dropout_masks = window, dropout_masks
        self.weight_dropout = Dropout(dropout)  # the "uniform" masks
        self.input_scale = self.head_dim**-0.5 if double_scale else 1.0
        self.inputs = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), Dropout(dropout)) for _ in range(n_modalities)
        )
        dh = self.head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(n_modalities, heads, 3 * dh, dh))
        self.in_proj_bias = nn.Parameter(torch.zeros(n_modalities, heads, 3 * dh))
        self.out_proj_weight = nn.Parameter(torch.empty(n_modalities, heads, dh, dh))
        self.out_proj_bias = nn.Parameter(torch.zeros(n_modalities, heads, dh))
        for m in range(n_modalities):
            for j in range(heads):  # nn.MultiheadAttention's own init
                nn.init.xavier_uniform_(self.in_proj_weight.data[m, j])
                nn.init.kaiming_uniform_(self.out_proj_weight.data[m, j], a=math.sqrt(5))
        self.head_norms = TypedModuleList(nn.LayerNorm(n_modalities * dh) for _ in range(heads))

    def split_heads(self, latents: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per modality [B, H, L, d_h]: its prepared latent split into its subspaces (a list, not a stacked tensor: each
        modality is read on its own, and the backward of a slice of a stack fills a zero tensor of the whole)."""
        out = []
        for x, prepare in zip(latents, self.inputs):
            b, length, _ = x.shape
            out.append(l2(prepare(x)).view(b, length, self.heads, self.head_dim).transpose(1, 2) * self.input_scale)
        return out

    def key_mask(self, valid: torch.Tensor, n_context: int, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Bool [B, 1, Q, n_context L]: key s (of each context modality) is visible to query t.

        Queries are every position (Q = L) or those of ``query_pos`` [B, Q]."""
        length = valid.shape[1]
        positions = torch.arange(length, device=valid.device)
        if query_pos is None:
            query_pos = positions.expand(valid.shape[0], length)
        allowed = valid[:, None, None, :].expand(-1, 1, query_pos.shape[1], length)
        if self.causal:
            allowed = allowed & (positions <= query_pos.unsqueeze(-1)).unsqueeze(1)
        if self.window is not None:
            allowed = allowed & (positions > query_pos.unsqueeze(-1) - self.window).unsqueeze(1)
        return allowed.repeat(1, 1, 1, n_context)

    def _project(self, x: torch.Tensor, m: int, part: slice) -> torch.Tensor:
        """Per-head projection of x [B, H, L, d_h] by rows ``part`` of modality m's in_proj."""
        return torch.einsum("bhld,hed->bhle", x, self.in_proj_weight[m, :, part]) + self.in_proj_bias[m, :, None, part]

    def attend(
        self,
        heads: list[torch.Tensor],
        valid: torch.Tensor,
        m: int,
        weights_only: bool = False,
        query_pos: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Modality m's residual attention output [B, H, Q, d_h] (or its weights [B, H, Q, keys]); ``mask``: the
        :meth:`key_mask` of these queries when the caller has it (it is the same for every modality)."""
        n_mod, dh = len(heads), self.head_dim
        others = [heads[n] for n in range(n_mod) if n != m] or [heads[m]]
        context = others[0] if len(others) == 1 else torch.cat(others, dim=2)  # keys/values
        query = heads[m] if query_pos is None else select_positions(heads[m], query_pos, dim=2)
        q = self._project(query, m, slice(0, dh))
        k, v = self._project(context, m, slice(dh, 3 * dh)).split(dh, dim=-1)  # one product for both
        if self.window is not None and query_pos is None and not weights_only and valid.shape[1] > self.window:
            out = self._banded(q, k, v, valid, self.window)
            out = torch.einsum("bhle,hde->bhld", out, self.out_proj_weight[m]) + self.out_proj_bias[m, :, None]
            return query + out
        if mask is None:
            mask = self.key_mask(valid, max(1, n_mod - 1), query_pos)
        if weights_only:
            return self._weights(q, k, mask)
        if self.dropout_masks == "uniform":
            out = self.weight_dropout(self._weights(q, k, mask)) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = torch.einsum("bhle,hde->bhld", out, self.out_proj_weight[m]) + self.out_proj_bias[m, :, None]
        return query + out

    def _weights(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_h)) over the visible keys [B, H, Q, keys]; 0 in a row with none (as torch's SDPA)."""
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        weights = torch.softmax(scores.masked_fill_(~mask, -math.inf), dim=-1)
        seen = mask.any(-1, keepdim=True)
        return weights if bool(seen.all()) else weights.masked_fill(~seen, 0.0)

    def _banded(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor, w: int) -> torch.Tensor:
        """Causal attention of every position t to the keys in (t - W, t] only, in blocks: O(L W), not O(L^2).

        q [B, H, L, d], k/v [B, H, C L, d] (C context modalities, each L positions). Positions are cut into
        blocks of W; the queries of block c see the keys of blocks c - 1 and c, masked to the band."""
        b, h, length, dh = q.shape
        n_ctx = k.shape[2] // length
        blocks = -(-length // w)
        pad = blocks * w - length

        def keys(x: torch.Tensor) -> torch.Tensor:  # [B, H, C L, d] -> [B, H, blocks, C 2W, d]
            x = F.pad(x.unflatten(2, (n_ctx, length)), (0, 0, w, pad))  # one empty block in front
            x = x.unflatten(3, (blocks + 1, w))  # [B, H, C, blocks + 1, W, d]
            x = torch.cat([x[:, :, :, :-1], x[:, :, :, 1:]], dim=4)  # blocks c - 1 and c: [B, H, C, blocks, 2W, d]
            return x.permute(0, 1, 3, 2, 4, 5).flatten(3, 4)

        qb = F.pad(q, (0, 0, 0, pad)).unflatten(2, (blocks, w))  # [B, H, blocks, W, d]
        t = torch.arange(blocks * w, device=q.device).view(blocks, w, 1)  # absolute query positions
        s = (torch.arange(blocks, device=q.device).view(blocks, 1, 1) - 1) * w + torch.arange(2 * w, device=q.device)  # keys
        band = (s <= t) & (s > t - w) & (s >= 0)  # [blocks, W, 2W]
        key_valid = F.pad(valid, (w, pad)).unfold(1, 2 * w, w)  # [B, blocks, 2W]: validity of blocks c - 1 and c
        mask = (band.unsqueeze(0) & key_valid.unsqueeze(2)).repeat(1, 1, 1, n_ctx).unsqueeze(1)  # [B, 1, blocks, W, C 2W]
        mask = mask | ~mask.any(-1, keepdim=True)  # padded queries with no key in their band: finite, never read
        if self.dropout_masks == "uniform":
            out = self.weight_dropout(self._weights(qb, keys(k), mask)) @ keys(v)
        else:
            out = F.scaled_dot_product_attention(
                qb, keys(k), keys(v), attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        return out.flatten(2, 3)[:, :, :length]

    def forward(self, latents: list[torch.Tensor], valid: torch.Tensor, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Hf [B, H, Q, M d_h] from the modal latents [B, L, p] and the valid-position mask [B, L]."""
        heads = self.split_heads(latents)
        n_mod = len(heads)
        banded = self.window is not None and query_pos is None and valid.shape[1] > self.window
        mask = None if banded else self.key_mask(valid, max(1, n_mod - 1), query_pos)  # built once for all modalities
        mixed = torch.cat([self.attend(heads, valid, m, query_pos=query_pos, mask=mask) for m in range(n_mod)], dim=-1)
        # the H LayerNorms as one normalisation and a per-head affine map (the same function as calling each)
        weight = torch.stack([norm.weight for norm in self.head_norms]).unsqueeze(1)  # [H, 1, M d_h]
        bias = torch.stack([norm.bias for norm in self.head_norms]).unsqueeze(1)
        return torch.addcmul(bias, F.layer_norm(mixed, mixed.shape[-1:], eps=self.head_norms[0].eps), weight)


@register
class FindRec(ItemTowerHost, EmbeddingScorer, SequentialRecommender):
    """FindRec (see the module docstring); reads every item feature of the dataset (or ``modalities``)."""

    name: ClassVar[str] = "findrec"
    paper: ClassVar[str] = "Wang et al., KDD 2025"

    @dataclass
    class Config:
        # faithful | clean | mmd: preset for every flag below left at None
        mode: Mode = "faithful"
        modalities: list[str] = field(default_factory=list)  # item features to read, in order; [] = all, sorted
        max_len: Positive = 50  # L, longest history read (the most recent items)
        dim: Positive = 128  # d, ID embedding / Mamba / output size
        modal_dim: Positive = 256  # p, modal projection = bottleneck = attention size
        heads: Positive = 8  # H subspaces (d_h = p / H)
        experts: Positive = 4  # E shared experts
        router_hidden: int = 256  # router MLP width
        router_temperature: float = 0.1  # tau of softmax(logits / tau)
        dropout: float = 0.2  # Mamba residual, attention, experts, final fusion
        projection_dropout: float = 0.1  # inside the bottleneck encoders and score networks
        fusion_dropout: float = 0.1  # router and head fusion
        mamba_layers: Positive = 2  # blocks of the ID stream
        d_state: int = 16  # N, Mamba state size
        d_conv: int = 4  # Mamba causal conv width
        expand: int = 2  # Mamba inner width = expand * dim
        layer_scale_init: float = 0.1  # gamma at init
        norm_eps: float = 1e-5  # LayerNorm eps of the Mamba blocks
        mamba_backend: Backend = "auto"  # see modalrec.nn.mamba
        loss_weight: float = 0.1  # lambda: CE + lambda (KL + beta align)
        stein_weight: float = 1.0  # beta
        bandwidth_factor: float = 1.0  # h = clamp(sqrt(median D^2 / 2) * factor, min, max) (A5)
        min_bandwidth: float = 0.1
        max_bandwidth: float = 10.0
        bandwidth_rows: int = 512  # rows used for the median and, with iicm_positions=all_valid, for the Stein term
        # A1: modal_pairs (z_m vs z_n) | modal_id (routed modal summary vs ID stream) | auto
        align_pair: Literal["auto", "modal_pairs", "modal_id"] = "auto"
        # A2: findrec_code | ksd | paired_rbf | mmd (a two-sample discrepancy, no score nets)
        stein_form: Literal[SteinForm, "mmd"] | None = None
        # what modal_pairs aligns: sample (z, as released) | mean (L2(mu), what scoring reads)
        align_latent: Literal["sample", "mean"] | None = None
        # mmd: kernel bandwidths, x the median h
        mmd_scales: list[Annotated[float, Check(gt=0)]] = field(default_factory=lambda: [0.5, 1.0, 2.0])
        # weight of a symmetric cross-modal InfoNCE over the distinct items of the alignment rows, added to the align term
        # (modal_pairs only; 0 = off, every preset): >= 0 and log n when every item's latent is one shared point, where
        # the MMD and the paired kernel distance are both 0 (their collapsed minimum; not in the paper)
        align_contrastive: Annotated[float, Check(ge=0)] = 0.0
        align_temperature: Annotated[float, Check(gt=0)] = 0.1  # t of that InfoNCE (cosine / t)
        # v (mean incl. diagonal, as released) | u (off-diagonal)
        stein_statistic: Literal["v", "u"] = "v"
        score_reg: float = 0.0  # A3: weight of mean ||s(z)||^2 (bounds the score networks; 0 = released)
        align_floor: float | None = None  # A3: clamp the align term from below (faithful: none, as released; clean: 0)
        sample_at_eval: bool | None = None  # A6: reparameterise at evaluation too (seeded per pass)
        eval_seed: int = 0  # seed of the evaluation noise when sample_at_eval
        # A7: last | all_valid (KL masked mean; Stein on <= bandwidth_rows rows)
        iicm_positions: Literal["last", "all_valid"] | None = None
        router_gumbel_hard: bool = False  # A8: straight-through one-hot routing (the released code's dead path)
        balance_coef: float = 0.0  # A8: weight of the load-balance loss (0 = none, as released)
        # entropy: log E - H(mean gate) (the released term, sign-corrected) | switch: E sum_e f_e P_e (Fedus et al. 2022)
        balance_form: BalanceForm = "entropy"
        # dense (every expert on every row, mixed by the gates, as released) | top1 (each row through its largest-gate
        # expert only, scaled by that gate: Switch Transformer's sparse routing, 1/E of the experts' work; another model)
        expert_routing: Literal["dense", "top1"] = "dense"
        # head (each head's output routed on its own by the shared router, as released) | position (one routing per
        # position, from every head's output concatenated, serving all H heads: 1/H of the router's rows; another model)
        router_scope: Literal["head", "position"] = "head"
        # A9: linear | mamba (Linear(2d -> d) then a Mamba stack)
        fusion: Literal["linear", "mamba"] = "linear"
        faithful_param_count: bool = False  # A9: also build the released code's unused modules (param parity)
        xattn_causal: bool | None = None  # A11: causal cross-modal attention
        xattn_double_scale: bool = True  # A12: extra d_h^-1/2 on the attention inputs
        xattn_window: Positive | None = None  # causal cross-attention to the last W positions only: O(L W) instead of O(L^2)
        # torch (SDPA's bernoulli_ masks, as released) | uniform (explicit weights, torch.rand masks: ~3x cheaper on CPU)
        xattn_dropout_masks: Literal["torch", "uniform"] = "torch"
        # A13: faithful (every Linear/Embedding ~ N(0, 0.01), biases 0) | module_default
        init: Literal["faithful", "module_default"] = "faithful"
        ce_include_pad: bool | None = None  # A16: the pad row of the tied table is a CE logit
        output_clamp: float | None = 10.0  # A18: clamp of the final representation
        logvar_clamp: float | None = None  # A19: clamp log var to [-c, c]
        # nats per latent dim the KL may use unpenalised (Kingma et al. 2016); 0 = off
        free_bits: Annotated[float, Check(ge=0)] | None = None
        kl_warmup_epochs: NonNegative = 0  # KL weight ramps linearly from 1/(n+1) to 1 over the first n epochs (0 = off)
        encode_per_item: bool | None = None  # run the bottleneck encoders once per distinct item of a batch (faster)
        logvar_init: float | None = None  # initial log-variance bias of the bottlenecks (None: the init's 0, sigma = 1)
        diagnostic_sample: int = 512  # items and validation users measured by diagnostics() after every epoch
        # ablation "ID stream only": no modal path and no IICM loss; Z = LN(fusion(E_id)), the fusion Linear(d -> d)
        id_only: bool = False
        # features (frozen, as in the paper) | text | image: that modality's stream from an item tower, end to end
        item_encoder: Literal["features", Tower] = "features"
        finetune_layers: NonNegative = 0  # item_encoder text/image: top encoder layers trained (0 = frozen encoder)
        encoder_lr: float | None = None  # item_encoder text/image: learning rate of those layers; None = train.lr
        encoder_max_length: Positive = 32  # item_encoder=text: tokens read per item text
        rules: ClassVar[tuple[Rule, ...]] = (
            multiple_of("modal_dim", "heads"),
            Rule(("mmd_scales",), lambda c: len(c.mmd_scales) > 0, "mmd_scales needs at least one bandwidth"),
            # a flag still None is decided by the mode; these hold again once it is (resolve_flags)
            Rule(
                ("xattn_window", "xattn_causal"),
                lambda c: c.xattn_window is None or c.xattn_causal is not False,
                "xattn_window ({xattn_window}) needs causal cross-attention (xattn_causal=true)",
            ),
            Rule(
                ("score_reg", "stein_form"),
                lambda c: not (c.stein_form == "mmd" and c.score_reg > 0),
                "score_reg regularises score networks, which stein_form=mmd does not have; set score_reg=0",
            ),
            Rule(
                ("item_encoder", "id_only"),
                lambda c: not (c.id_only and c.item_encoder != "features"),
                "item_encoder={item_encoder} feeds a modal stream; id_only=true has none",
            ),
        )

    train_view: ClassVar[str] = "sequences"
    # the released settings: AdamW(1e-3, wd 0.01), batch 128, last-position targets with prefix augmentation
    train_defaults: ClassVar[dict] = {
        "lr": 1e-3,
        "weight_decay": 0.01,
        "optimizer": "adamw",
        "batch_size": 128,
        "epochs": 100,
        "patience": 5,
        "select": "ndcg@20",
        "seq_target": "last",
    }
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 3e-3),
        "model.dropout": ("float", 0.0, 0.5),
        "model.loss_weight": ("log", 1e-3, 1.0),
        "model.stein_weight": ("log", 0.1, 10.0),
        "model.router_temperature": ("log", 0.05, 1.0),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(resolve_flags(config), ctx)  # the flags its mode decides (None) filled in
        cfg = self.config
        self.pad = self.n_items
        d = cfg.dim
        self.item_embedding = nn.Embedding(self.n_items + 1, d, padding_idx=self.pad)
        self.id_stream = mamba_stack(cfg, d)  # Sec. 1.4
        self.modalities: list[str] = []
        self.align_pair = "none"  # id_only: nothing is aligned
        self.item_tower: ItemTower | None = None
        if not cfg.id_only:
            self._build_modal_path(cfg, ctx)
        fusion_in = d if cfg.id_only else 2 * d
        if cfg.fusion == "linear":
            self.final_fusion = nn.Sequential(nn.Linear(fusion_in, d), nn.LayerNorm(d), nn.ReLU(), Dropout(cfg.dropout))
        else:
            self.final_fusion = nn.Sequential(nn.Linear(fusion_in, d), *mamba_stack(cfg, d))
        self.final_norm = nn.LayerNorm(d)
        if cfg.faithful_param_count:
            # built but never called by the released code: the second Mamba stack and a LayerNorm(p)
            self.unused_fusion_mamba = mamba_stack(cfg, d) if cfg.fusion == "linear" else nn.Identity()
            self.unused_layer_norm = nn.LayerNorm(cfg.modal_dim)
        self._eval_generator: torch.Generator | None = None
        self._kl_scale = 1.0  # KL warm-up factor of the current epoch (before_epoch)
        self._init_weights()

    def _build_modal_path(self, cfg: FindRec.Config, ctx: DataContext) -> None:
        """Frozen item content, projections, bottlenecks, score networks, attention, router and experts (1.2-1.8)."""
        self.modalities = select_modalities(cfg.modalities, ctx, self.name)
        n_mod = len(self.modalities)
        self.align_pair = ("modal_pairs" if n_mod > 1 else "modal_id") if cfg.align_pair == "auto" else cfg.align_pair
        if self.align_pair == "modal_pairs" and n_mod < 2:
            raise ConfigError("findrec: align_pair=modal_pairs needs >= 2 modalities; use auto or modal_id")
        if cfg.align_contrastive > 0 and self.align_pair != "modal_pairs":
            raise ConfigError(
                f"findrec: model.align_contrastive contrasts items across modalities (align_pair=modal_pairs); "
                f"this model aligns {self.align_pair} ({n_mod} modality): set model.align_contrastive=0"
            )
        d, p = cfg.dim, cfg.modal_dim
        widths = {m: ctx.features[m].shape[1] for m in self.modalities}
        if cfg.item_encoder != "features":  # that modality's content comes from the tower, end to end
            if cfg.item_encoder not in self.modalities:
                raise ConfigError(
                    f"findrec: model.item_encoder={cfg.item_encoder} replaces the '{cfg.item_encoder}' modality stream, "
                    f"but the model reads {self.modalities}"
                )
            self.item_tower = build_item_tower(
                self.name, cfg.item_encoder, ctx, None, cfg.finetune_layers, cfg.encoder_max_length
            )
            widths[cfg.item_encoder] = self.item_tower.width
        # frozen item content with a zero padding row (Sec. 1.2); dims come from the arrays (A14)
        for m in self.modalities:
            if m != cfg.item_encoder:
                values = ctx.features[m] * ctx.feature_masks[m].unsqueeze(-1).to(ctx.features[m].dtype)
                self.register_buffer(f"feature_{m}", F.pad(values, (0, 0, 0, 1)), persistent=False)
        self.projections = nn.ModuleList(nn.Linear(widths[m], p) for m in self.modalities)  # 1.5
        self.bottlenecks = TypedModuleList(
            GaussianBottleneck(p, cfg.projection_dropout, cfg.logvar_clamp) for _ in self.modalities
        )
        align_dim = p if self.align_pair == "modal_pairs" else d
        n_scores = 0 if cfg.stein_form == "mmd" else n_mod if self.align_pair == "modal_pairs" else 2
        self.score_nets = nn.ModuleList(score_network(align_dim, cfg.projection_dropout) for _ in range(n_scores))
        self.cross_attention = SubspaceCrossAttention(
            n_mod,
            p,
            cfg.heads,
            cfg.dropout,
            bool(cfg.xattn_causal),
            cfg.xattn_double_scale,
            cfg.xattn_window,
            cfg.xattn_dropout_masks,
        )
        head_in = n_mod * p // cfg.heads
        self.router = SharedRouter(
            head_in if cfg.router_scope == "head" else n_mod * p,
            cfg.experts,
            cfg.router_hidden,
            cfg.router_temperature,
            cfg.fusion_dropout,
            gumbel_hard=cfg.router_gumbel_hard,
        )
        self.experts = SharedExperts(head_in, d, cfg.experts, cfg.dropout, top1=cfg.expert_routing == "top1")
        self.head_fusion = nn.Sequential(nn.Linear(cfg.heads * d, d), nn.ReLU(), nn.LayerNorm(d), Dropout(cfg.fusion_dropout))

    # ------------------------------------------------------------------ init (Sec. 1.10, A13)
    def _init_weights(self) -> None:
        pretrained = set(self.item_tower.modules()) if self.item_tower is not None else set()  # keeps its weights
        if self.config.init == "faithful":
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)) and module not in pretrained:
                    nn.init.normal_(module.weight, std=0.01)  # padding row included, as released
                    if isinstance(module, nn.Linear) and module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm) and module not in pretrained:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            if not self.config.id_only:  # the attention's out-projections are nn.Linear in the released code
                nn.init.normal_(self.cross_attention.out_proj_weight, std=0.01)
                nn.init.zeros_(self.cross_attention.out_proj_bias)
        else:
            nn.init.normal_(self.item_embedding.weight, std=0.01)
            with torch.no_grad():
                self.item_embedding.weight[self.pad].zero_()
        if self.config.logvar_init is not None and not self.config.id_only:
            for bottleneck in self.bottlenecks:
                head = cast(nn.Linear, bottleneck.encoder[-1])  # Linear(p -> 2p): [mu, log var]
                nn.init.constant_(head.bias[self.config.modal_dim :], self.config.logvar_init)

    # ------------------------------------------------------------------ forward
    def _noise(self, like: torch.Tensor) -> torch.Tensor | None:
        """eps for the reparameterisation: global RNG in training; seeded per evaluation pass (A6)."""
        if self.training:
            return torch.randn_like(like)
        if not self.config.sample_at_eval:
            return None
        if self._eval_generator is None or self._eval_generator.device != like.device:
            self.prepare_scoring()
        return torch.randn(like.shape, generator=self._eval_generator, device=like.device, dtype=like.dtype)

    def before_epoch(self, epoch: int) -> None:
        """KL warm-up (``kl_warmup_epochs`` = n): weight (epoch + 1) / (n + 1) for the first n epochs, then 1."""
        n = self.config.kl_warmup_epochs
        self._kl_scale = min(1.0, (epoch + 1) / (n + 1)) if n > 0 else 1.0

    def prepare_scoring(self) -> None:
        """Re-seed the evaluation noise so every evaluation pass ranks identically."""
        self._eval_generator = torch.Generator(device=self.device).manual_seed(self.config.eval_seed)

    def forward_states(
        self, seq: torch.Tensor, lengths: torch.Tensor, last_only: bool = False, trace: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Z [B, L, d] (the representation at every position) and the IICM terms {kl, align, ...} (none when id_only).

        ``trace``: a dict that receives the routing's inputs at the query positions (``hf`` [B, H, Q, M d_h],
        ``gates`` [B, H, Q, E], ``e_query`` [B, Q, d], ``modal`` [B, Q, d]), for :meth:`routing_weights`.

        ``last_only``: Z [B, 1, d] at each sequence's last item only, the same values (up to dropout's
        random draws) at a fraction of the cost: the ID stream, projections and bottlenecks still run
        on every position (they are keys of the attention), the attention queries and everything after
        them only on the last one.
        """
        cfg = self.config
        length = seq.shape[1]
        if length > self.max_len:
            raise ValueError(f"findrec: sequences of length {length} exceed max_len={self.max_len}")
        lengths = lengths.to(seq.device)
        valid = torch.arange(length, device=seq.device) < lengths.unsqueeze(1)  # [B, L]
        last = (lengths - 1).clamp(min=0).unsqueeze(1)  # [B, 1]
        # the routed summary / gates are needed at every position when aligned (A1 + A7) or balanced (A8) there
        everywhere = not last_only or (
            not cfg.id_only and (cfg.balance_coef > 0 or (self.align_pair == "modal_id" and cfg.iicm_positions != "last"))
        )
        query_pos = None if everywhere else last
        e_id = self.id_stream(self.item_embedding(seq))  # 1.4: E_id [B, L, d]
        e_query = e_id if query_pos is None else select_positions(e_id, query_pos, dim=1)
        terms: dict[str, torch.Tensor] = {}
        if cfg.id_only:
            fusion_in = e_query
        else:
            modal, terms = self._modal_path(seq, valid, lengths, e_id, query_pos, trace)
            if trace is not None:
                trace.update(e_query=e_query, modal=modal)
            fusion_in = torch.cat([e_query, modal], dim=-1)
        fused = self.final_norm(self.final_fusion(fusion_in))  # 1.9
        if cfg.output_clamp is not None:
            fused = fused.clamp(-cfg.output_clamp, cfg.output_clamp)
        if last_only and query_pos is None:
            fused = select_positions(fused, last, dim=1)
        return fused, terms

    def _modal_path(
        self,
        seq: torch.Tensor,
        valid: torch.Tensor,
        lengths: torch.Tensor,
        e_id: torch.Tensor,
        query_pos: torch.Tensor | None,
        trace: dict[str, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The routed modal summary M [B, Q, d] (Q = L, or the positions of ``query_pos``) and the IICM terms."""
        cfg = self.config
        latents, mus, kls = [], [], []
        rows = self._iicm_rows(valid, lengths)
        align_rows = self._alignment_rows(rows)
        items, inverse = torch.unique(seq, return_inverse=True)  # project each distinct item once
        if cfg.encode_per_item:  # how often each distinct item sits at a KL row
            row_share = torch.bincount(inverse[rows], minlength=len(items)).to(e_id.dtype) / len(rows[0])
        for m, bottleneck in zip(self.modalities, self.bottlenecks):
            p_m = self.project(m, items)  # 1.5: P_m of the batch's distinct items [n, p]
            if cfg.encode_per_item:  # q(z | item) and its KL once per distinct item; eps per position
                mu_items, logvar_items = bottleneck.posterior(p_m)
                mu = mu_items[inverse]
                z = bottleneck.sample(mu, logvar_items[inverse], self._noise(mu))  # 1.6 (1-2)
                kls.append(row_share @ gaussian_kl_dims(mu_items, logvar_items))  # 1.6 (7), A7: [p], mean over rows
            else:  # per position, as released (own dropout masks at every occurrence of an item)
                mu, logvar = bottleneck.posterior(p_m[inverse])
                z = bottleneck.sample(mu, logvar, self._noise(mu))  # 1.6 (1-2)
                kls.append(gaussian_kl_dims(mu[rows], logvar[rows]).mean(0))  # 1.6 (7), A7: [p], batch mean per dim
            latents.append(z)
            mus.append(mu)

        hf = self.cross_attention(latents, valid, query_pos)  # 1.7: [B, H, Q, M d_h]
        gates = self.route(hf)  # 1.8: [B, H, Q, E]
        mixed = self.experts(hf, gates)  # per head o_j [B, H, Q, d]
        modal = l2(self.head_fusion(mixed.transpose(1, 2).flatten(2)))  # M [B, Q, d]
        if trace is not None:
            trace.update(hf=hf, gates=gates)

        if self.align_pair == "modal_pairs":
            points = [l2(mu[align_rows]) for mu in mus] if cfg.align_latent == "mean" else [z[align_rows] for z in latents]
        else:  # A1: the routed modal summary against the ID stream
            points = [modal[align_rows], e_id[align_rows]] if query_pos is None else [modal[:, 0], e_id[rows]]
        kl_dims = torch.stack(kls).mean(0)  # mean over modalities
        terms = {"kl": kl_dims.sum(), **self._alignment(points)}
        if cfg.align_contrastive > 0:  # modal_pairs: row r of every modality's points is the item inverse[align_rows][r]
            terms["align_contrastive"] = self._contrastive(points, inverse[align_rows])
        if cfg.free_bits:  # each dimension's first free_bits nats are not penalised (no gradient below them)
            terms["kl_objective"] = kl_dims.clamp(min=cfg.free_bits).sum()
        if cfg.balance_coef > 0:
            terms["balance"] = BALANCE_LOSSES[cfg.balance_form](gates[valid.unsqueeze(1).expand(-1, gates.shape[1], -1)])
        return modal, terms

    def router_input(self, hf: torch.Tensor) -> torch.Tensor:
        """What the router reads: Hf [B, H, Q, M d_h] itself (``router_scope=head``) or, per position, every head's
        output concatenated [B, 1, Q, H M d_h] (``position``)."""
        return hf if self.config.router_scope == "head" else hf.transpose(1, 2).flatten(2).unsqueeze(1)

    def route(self, hf: torch.Tensor) -> torch.Tensor:
        """The gates [B, H, Q, E] of Hf [B, H, Q, M d_h]: per head, or one per position shared by its H heads."""
        gates = self.router(self.router_input(hf))
        return gates if self.config.router_scope == "head" else gates.expand(-1, hf.shape[1], -1, -1)

    def _iicm_rows(self, valid: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, position) indices where the IICM terms are taken: each last item, or every valid position (A7)."""
        if self.config.iicm_positions == "last":
            batch = torch.arange(valid.shape[0], device=valid.device)
            return batch, (lengths.to(valid.device) - 1).clamp(min=0)
        batch, position = valid.nonzero(as_tuple=True)
        return batch, position

    def _alignment_rows(self, rows: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of ``rows`` that :meth:`_alignment` reads (its evenly spaced ``bandwidth_rows``), picked before
        the latents are gathered and normalised, so that only those rows are."""
        n = len(rows[0])
        if n <= self.config.bandwidth_rows:
            return rows
        keep = torch.linspace(0, n - 1, self.config.bandwidth_rows, device=rows[0].device).long()
        return rows[0][keep], rows[1][keep]

    def project(self, modality: str, items: torch.Tensor) -> torch.Tensor:
        """P_m = L2(Linear(F_m[items])) (Sec. 1.5): items [n] (the padding index gives a zero F_m) -> [n, p]."""
        if self.item_tower is not None and modality == self.config.item_encoder:
            real = items < self.n_items
            content = self.item_tower.pooled(items.clamp(max=self.n_items - 1)) * real.unsqueeze(-1)
        else:
            content = getattr(self, f"feature_{modality}")[items]
        return l2(self.projections[self.modalities.index(modality)](content))

    def _alignment(self, points: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Stein term (or the MMD) averaged over point-set pairs (1.6, 4-6), plus the score regulariser (A3)."""
        cfg = self.config
        if len(points[0]) > cfg.bandwidth_rows:  # all_valid: an evenly spaced, deterministic subset of rows
            keep = torch.linspace(0, len(points[0]) - 1, cfg.bandwidth_rows, device=points[0].device).long()
            points = [x[keep] for x in points]
        scores = [net(x) for net, x in zip(self.score_nets, points)]
        aligns = []
        for a in range(len(points)):
            for b in range(a + 1, len(points)):
                if cfg.stein_form == "mmd":  # the median and the MMD's cross block read the same distances
                    d2 = squared_distances(points[a].detach(), points[b].detach())
                    h = median_heuristic(d2, cfg.bandwidth_factor, cfg.min_bandwidth, cfg.max_bandwidth)
                    bandwidths = h * torch.tensor(cfg.mmd_scales, device=h.device)
                    aligns.append(
                        mmd(points[a], points[b], bandwidths, cfg.stein_statistic, cross_distances=d2)
                        + paired_kernel_distance(points[a], points[b], bandwidths)
                    )
                else:
                    h = median_bandwidth(
                        points[a], points[b], cfg.bandwidth_factor, cfg.min_bandwidth, cfg.max_bandwidth, cfg.bandwidth_rows
                    )
                    aligns.append(
                        stein_alignment(points[a], points[b], scores[a], scores[b], h, cfg.stein_form, cfg.stein_statistic)
                    )
        align = torch.stack(aligns).mean()
        if cfg.align_floor is not None:
            align = align.clamp(min=cfg.align_floor)
        terms = {"align": align}
        if cfg.score_reg > 0:
            terms["score_reg"] = torch.stack([s.pow(2).sum(-1).mean() for s in scores]).mean()
        return terms

    def _contrastive(self, points: list[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between every pair of modalities over the distinct ``items`` [n] of the rows of
        ``points`` (each item once, at its first row: a repeated item would be its own negative), mean over pairs.
        Unlike the MMD, its minimum keeps items apart: at one shared point it is log n."""
        distinct, first_row = torch.unique(items, return_inverse=True)
        rows = torch.arange(len(items), device=items.device)
        first = torch.full((len(distinct),), len(items), device=items.device).scatter_reduce(0, first_row, rows, "amin")
        t = self.config.align_temperature
        return torch.stack(
            [
                info_nce(points[a][first], points[b][first], t, symmetric=True)
                for a in range(len(points))
                for b in range(a + 1, len(points))
            ]
        ).mean()

    # ------------------------------------------------------------------ diagnostics and explanations
    def routing_weights(self, trace: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the routing did at each traced query (see ``forward_states(trace=...)``).

        - ``experts`` [B, Q, E]: the router's gates, averaged over the H heads;
        - ``head_experts`` [B, Q, H, E]: the gates per head (subspace);
        - ``streams`` [B, Q, 1 + M]: the share of the ID stream and of each modality in the user vector, read
          off the linear maps that mix them (contribution norms): at the final fusion ``W [E_id; M]`` the
          ID stream weighs ``|W_id E_id| / (|W_id E_id| + |W_M M|)``; the modal part is split among the
          modalities by ``|W_e[:, m] h_m|``, their share of the experts' pre-activation (mean over heads).
        """
        gates, hf = trace["gates"], trace["hf"]
        fuse = cast(nn.Linear, self.final_fusion[0])  # Linear(2d -> d) in both fusion variants
        d = self.config.dim
        id_part = trace["e_query"] @ fuse.weight[:, :d].T
        modal_part = trace["modal"] @ fuse.weight[:, d:].T
        id_share = id_part.norm(dim=-1) / (id_part.norm(dim=-1) + modal_part.norm(dim=-1)).clamp(min=1e-12)  # [B, Q]
        expert_weight = torch.cat([expert.weight for expert in self.experts.experts])  # [E d, M d_h]
        n_mod = len(self.modalities)
        dh = hf.shape[-1] // n_mod
        parts = torch.stack(
            [(hf[..., m * dh : (m + 1) * dh] @ expert_weight[:, m * dh : (m + 1) * dh].T).norm(dim=-1) for m in range(n_mod)],
            dim=-1,
        )  # [B, H, Q, M]
        modal_share = (parts / parts.sum(-1, keepdim=True).clamp(min=1e-12)).mean(1)  # [B, Q, M]
        streams = torch.cat([id_share.unsqueeze(-1), (1 - id_share).unsqueeze(-1) * modal_share], dim=-1)
        return {"experts": gates.mean(1), "head_experts": gates.transpose(1, 2), "streams": streams}

    def diagnostics(self, ctx: DataContext) -> dict[str, float]:
        """Per-epoch evidence that the IICM and the routing work (written to metrics.jsonl by the trainer).

        On up to ``diagnostic_sample`` items with every modality (evenly spaced, fixed): ``kl_per_dim`` (nats
        per latent dimension), ``z_item_retrieval`` (a sampled latent z, eps from a fixed seed, finds its own
        item's posterior mean among the sample: z carries item identity; chance 1 / n), and
        ``cross_modal_retrieval`` (an item's latent mean in one modality finds the same item's mean in
        another, both ways; chance 1 / n), ``latent_cosine`` (mean cosine between distinct items' L2(mu), mean over
        modalities: near 1 when the posterior means have collapsed to one shared point, what the retrievals then
        miss for lack of spread) and ``kl_item_share`` (the share of the mean KL spent on the item-specific part of mu,
        0.5 mean |mu - mean mu|^2; the rest is the shared offset 0.5 |mean mu|^2 and the variances). On up to as many
        users' validation histories (fixed): ``valid_ce`` of the validation item, ``align`` (the training alignment
        term on their latents), ``align_contrastive`` (with ``align_contrastive`` > 0, the InfoNCE on them),
        ``modal_id_retrieval`` with one modality (a user's routed modal summary finds the same user's ID-stream
        state among the users, the pair that alignment aligns; chance 1 / n),
        ``router_entropy`` (nats, mean over heads; log E is uniform), ``expert_<k>`` (mean gate), ``load_<k>``
        (share of (user, head) rows whose largest gate is k), ``logit_gap_<k>`` (mean of expert k's router logit
        minus the row's largest, before the temperature: an expert whose gap stays below ~ -tau * 10 gets gates
        and gradients of ~e^-10) and
        ``weight_<stream>`` (mean share of the ID stream and each modality, see :meth:`routing_weights`).
        With ``id_only``, ``valid_ce`` only.
        """
        if self.config.id_only:  # no bottleneck, alignment or routing to measure
            return self._user_diagnostics(ctx)
        return {**self._item_diagnostics(ctx), **self._user_diagnostics(ctx)}

    def _item_diagnostics(self, ctx: DataContext) -> dict[str, float]:
        """kl_per_dim, z_item_retrieval, cross_modal_retrieval on a fixed sample of items (see ``diagnostics``)."""
        n = self.config.diagnostic_sample
        out: dict[str, float] = {}
        full = torch.ones(ctx.n_items, dtype=torch.bool)
        for m in self.modalities:
            full &= ctx.feature_masks[m].cpu()
        candidates = full.nonzero().squeeze(1)
        if len(candidates) >= 2:
            items = candidates[torch.linspace(0, len(candidates) - 1, min(n, len(candidates))).long().unique()].to(self.device)
            generator = torch.Generator(device=self.device).manual_seed(self.config.eval_seed)
            kls, own, means, cosines, item_shares = [], [], [], [], []
            for m, bottleneck in zip(self.modalities, self.bottlenecks):
                p_m = self.project(m, items)
                mu, logvar = bottleneck.posterior(p_m)
                eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                sampled, mean = bottleneck.sample(mu, logvar, eps), l2(mu)
                kl = gaussian_kl(mu, logvar).mean()
                kls.append(kl / mu.shape[-1])
                own.append(_retrieval(sampled, mean))
                means.append(mean)
                cosines.append(mean_pairwise_cosine(mu))
                # mean KL = 0.5 |mean mu|^2 (shared offset) + 0.5 mean |mu - mean mu|^2 (item-specific) + variance part
                item_shares.append(0.5 * (mu - mu.mean(0)).pow(2).sum(-1).mean() / kl.clamp(min=1e-12))
            out["kl_per_dim"] = float(torch.stack(kls).mean())
            out["z_item_retrieval"] = float(torch.stack(own).mean())
            out["latent_cosine"] = sum(cosines) / len(cosines)
            out["kl_item_share"] = float(torch.stack(item_shares).mean())
            if len(means) > 1:
                pairs = [_retrieval(means[a], means[b]) for a in range(len(means)) for b in range(len(means)) if a != b]
                out["cross_modal_retrieval"] = float(torch.stack(pairs).mean())
        return out

    def _user_diagnostics(self, ctx: DataContext) -> dict[str, float]:
        """valid_ce, align, routing statistics on a fixed sample of validation users (see ``diagnostics``)."""
        n = self.config.diagnostic_sample
        out: dict[str, float] = {}
        users = np.flatnonzero(np.diff(ctx.histories[VALID].indptr) > 0)
        users = users[np.linspace(0, len(users) - 1, min(n, len(users))).astype(int)] if len(users) else users
        users = np.unique(users)
        if len(users):
            seq, lengths = ctx.padded_history(users, VALID, self.max_len)
            seq, lengths = seq.to(self.device), lengths.to(self.device)
            keep = lengths > 0
            seq, lengths, users = seq[keep], lengths[keep], users[keep.cpu().numpy()]
            targets = torch.as_tensor(
                ctx.histories[VALID].indices[ctx.histories[VALID].indptr[users]], dtype=torch.long, device=self.device
            )
            trace: dict[str, torch.Tensor] = {}
            states, terms = self.forward_states(seq, lengths, last_only=True, trace=trace)
            logits = states[:, 0] @ self.item_embedding.weight[: self.n_items].T
            out["valid_ce"] = float(F.cross_entropy(logits, targets))
            if self.config.id_only:
                return out
            out["align"] = float(terms["align"])
            if "align_contrastive" in terms:
                out["align_contrastive"] = float(terms["align_contrastive"])
            if self.align_pair == "modal_id":  # what that alignment pairs: a user's routed modal summary and ID state
                out["modal_id_retrieval"] = float(_retrieval(trace["modal"][:, 0], trace["e_query"][:, 0]))
            weights = self.routing_weights(trace)
            gates = trace["gates"].clamp(min=1e-12)
            out["router_entropy"] = float(-(gates * gates.log()).sum(-1).mean())
            logits = self.router.logits(self.router_input(trace["hf"])).flatten(0, -2)  # [rows, E]
            load = torch.bincount(logits.argmax(-1), minlength=logits.shape[-1]) / len(logits)
            gap = (logits - logits.max(-1, keepdim=True).values).mean(0)
            for k, value in enumerate(weights["experts"].mean((0, 1)).tolist()):
                out[f"expert_{k}"] = value
                out[f"load_{k}"] = float(load[k])
                out[f"logit_gap_{k}"] = float(gap[k])
            for name, value in zip(["id", *self.modalities], weights["streams"].mean((0, 1)).tolist()):
                out[f"weight_{name}"] = value
        return out

    @torch.no_grad()
    def explain(self, batch: Batch, items: torch.Tensor) -> list[list[dict[str, Any]]] | None:
        """Per user and recommended item (``items`` [B, K]): how FindRec routes that item after the user's
        history. The item is appended to the history (the oldest item dropped at max_len) and read at its
        position, so its content is the query of the cross-modal attention over the history: ``experts``
        (the router's gates, mean over heads), ``head_experts`` (per head) and ``streams`` (the share of the
        ID stream and of each modality; :meth:`routing_weights`). Evaluation mode, posterior means.
        None with ``id_only`` (nothing is routed)."""
        if self.config.id_only:
            return None
        was_training = self.training
        self.eval()
        try:
            seq, lengths = batch["seq"], batch["lengths"]
            n_users, k = items.shape
            rows, new_lengths = [], []
            for b in range(n_users):
                history = seq[b, : int(lengths[b])]
                for item in items[b]:
                    extended = torch.cat([history, item.view(1).to(seq)])[-self.max_len :]
                    rows.append(F.pad(extended, (0, self.max_len - len(extended)), value=self.pad))
                    new_lengths.append(len(extended))
            trace: dict[str, torch.Tensor] = {}
            self.forward_states(torch.stack(rows), torch.tensor(new_lengths, device=seq.device), last_only=True, trace=trace)
            weights = {key: value[:, 0] for key, value in self.routing_weights(trace).items()}
        finally:
            self.train(was_training)
        names = ["id", *self.modalities]
        out = []
        for b in range(n_users):
            per_item = []
            for j in range(k):
                r = b * k + j
                per_item.append(
                    {
                        "experts": [round(v, 6) for v in weights["experts"][r].tolist()],
                        "head_experts": [[round(v, 6) for v in head] for head in weights["head_experts"][r].tolist()],
                        "streams": {name: round(v, 6) for name, v in zip(names, weights["streams"][r].tolist())},
                    }
                )
            out.append(per_item)
        return out

    # ------------------------------------------------------------------ training and scoring
    def output_table(self) -> torch.Tensor:
        """The tied output table: item embeddings, with the pad row when it is a CE logit (A16)."""
        weight = self.item_embedding.weight
        return weight if self.config.ce_include_pad else weight[: self.n_items]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        if "targets" in batch and not self.config.xattn_causal:
            raise ConfigError(
                "findrec with bidirectional cross-attention (mode=faithful) would see the future when trained on "
                "all positions; use train.seq_target=last, or model.mode=clean (or model.xattn_causal=true)"
            )
        last_only = "target" in batch  # the last-position objective needs Z at the last item only
        states, terms = self.forward_states(batch["seq"], batch["lengths"], last_only=last_only)
        states, targets = (states[:, 0], batch["target"]) if last_only else supervised_pairs(states, batch)
        ce = F.cross_entropy(self._without_cold(states @ self.output_table().T), targets)
        total = ce
        if not self.config.id_only:
            kl = self._kl_scale * terms.get("kl_objective", terms["kl"])
            align = self.config.stein_weight * terms["align"] + self.config.align_contrastive * terms.get(
                "align_contrastive", 0.0
            )
            total = total + self.config.loss_weight * (kl + align)
            total = (
                total + self.config.balance_coef * terms.get("balance", 0.0) + self.config.score_reg * terms.get("score_reg", 0.0)
            )
        return {"loss": total, "ce": ce, **terms}

    def _without_cold(self, logits: torch.Tensor) -> torch.Tensor:
        """CE logits [N, n_items (+ pad)] with the held-out cold items at -inf: never a training negative."""
        cold = self.cold_mask(logits.device)
        if cold is None:
            return logits
        return logits.masked_fill(F.pad(cold, (0, logits.shape[-1] - self.n_items), value=False), -torch.inf)

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        states, _ = self.forward_states(batch["seq"], batch["lengths"], last_only=True)
        return states[:, 0]

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items][items]  # the pad row is never ranked


def _retrieval(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Share of rows i whose most cosine-similar key is key i (ties resolved to the lowest index)."""
    best = (l2(queries) @ l2(keys).T).argmax(-1)
    return (best == torch.arange(len(queries), device=queries.device)).float().mean()


def resolve_flags(config: FindRec.Config) -> FindRec.Config:
    """A copy of ``config`` with every None flag set from its mode's preset. Ranges, choices and rules are
    declared with the Config: checked here (the mode names the preset), and with the flags filled in by
    :class:`~modalrec.models.base.Recommender` (:func:`modalrec.checks.check_fields`)."""
    check_fields(config, "model.")
    preset = MODE_PRESETS[config.mode]
    return dataclasses.replace(config, **{k: v for k, v in preset.items() if getattr(config, k) is None})
