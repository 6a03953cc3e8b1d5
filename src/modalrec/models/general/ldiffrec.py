"""L-DiffRec: latent DiffRec with item clustering.

Wang, Xu, Feng, Lin, He & Chua, "Diffusion Recommender Model", SIGIR 2023, Sec. 3.6 (L-DiffRec).

Items are clustered into C groups by k-means on item embeddings (the released code clusters the item
embeddings of a trained LightGCN, shipped as the ``item_emb`` feature of the DiffRec datasets). Each
group c has its own variational encoder from the user's interactions with that group's items to a
latent of size proportional to the group's share of the catalogue; the latents are concatenated into
z_0, on which DiffRec's diffusion runs (Sec. 3.6, Eq. 17). Per-group decoders map the denoised latent
back to the group's items. Training minimises

    L = L_diffusion(z_0) + L_recon(decode(z^_0), x) + lambda * KL(q(z_0 | x) || N(0, I)),

with the multinomial log-likelihood as L_recon (Mult-VAE) and lambda annealed linearly from
``kl_weight`` to ``kl_cap`` over ``anneal_steps`` updates, as the released code. The autoencoder and
the denoiser have their own learning rates (``ae_lr``; ``train.lr`` for the denoiser). Inference
encodes the train row (posterior mean), runs DiffRec's reverse process on the latent and decodes.
``cluster_feature=svd`` clusters on truncated-SVD item factors of the train matrix for datasets
without item embeddings (not in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, GeneralRecommender, register
from modalrec.models.general.diffrec import DiffusionObjective, check_diffusion_config, train_rows
from modalrec.nn.diffusion import Denoiser, GaussianDiffusion, ImportanceSampler


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 100) -> np.ndarray:
    """Cluster labels [n] of the rows of x by Lloyd's k-means from a k-means++ start (seeded)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    centres = np.asarray(centres)
    labels = np.full(len(x), -1)
    for _ in range(iterations):
        new = (((x**2).sum(1)[:, None] - 2 * x @ centres.T) + (centres**2).sum(1)[None]).argmin(1)
        if (new == labels).all():
            break
        labels = new
        for c in range(k):
            if (labels == c).any():
                centres[c] = x[labels == c].mean(0)
    return labels


def mlp(sizes: list[int], act: type[nn.Module]) -> nn.Sequential:
    """Linear layers with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


@register
class LDiffRec(DiffusionObjective, GeneralRecommender):
    """Clustered variational encoders + latent diffusion + per-cluster decoders."""

    name: ClassVar[str] = "ldiffrec"
    paper: ClassVar[str] = "Wang et al., SIGIR 2023 (L-DiffRec)"

    @dataclass
    class Config:
        n_cate: int = 2  # C, item clusters
        cluster_feature: str = "item_emb"  # ctx feature clustered by k-means, or "svd" (train-matrix factors)
        cluster_seed: int = 0  # k-means seed
        in_dims: list[int] = field(default_factory=lambda: [300])  # encoder sizes; the last is the latent size
        out_dims: list[int] = field(default_factory=list)  # decoder hidden sizes
        ae_dropout: float = 0.1  # dropout on the encoder input
        ae_lr: float = 1e-3  # autoencoder learning rate (the denoiser uses train.lr)
        kl_weight: float = 0.03  # lambda, annealed down to kl_cap
        kl_cap: float = 0.005
        anneal_steps: int = 500  # updates over which lambda decays (0: constant max(kl_weight, kl_cap))
        dims: list[int] = field(default_factory=lambda: [300])  # denoiser hidden sizes
        time_dim: int = 10
        act: str = "tanh"
        dropout: float = 0.5  # dropout on the noisy latent
        norm: bool = False
        mean_type: str = "x0"
        steps: int = 100  # T (ML-1M clean release)
        schedule: str = "linear-var"
        noise_scale: float = 0.005
        noise_min: float = 0.005
        noise_max: float = 0.02
        beta0: float = 1e-5
        sampling_steps: int = 0
        sampling_noise: bool = False
        reweight: bool = True
        eval_seed: int = 0

    train_view: ClassVar[str] = "users"
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "batch_size": 400, "epochs": 100, "patience": 10}
    search_space: ClassVar[dict] = {"train.lr": ("log", 1e-5, 1e-3), "model.n_cate": ("int", 1, 5), "model.noise_scale": ("log", 1e-4, 1e-1), "model.steps": ("choice", [5, 20, 40, 100])}

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        check_diffusion_config(self.name, config)
        if not config.in_dims or config.n_cate < 1 or config.n_cate > self.n_items:
            raise ConfigError(f"ldiffrec: need non-empty in_dims and 1 <= n_cate <= n_items, got in_dims={config.in_dims}, n_cate={config.n_cate}")
        self.train_matrix = ctx.train
        labels = self._clusters(ctx)
        groups = [np.flatnonzero(labels == c) for c in range(config.n_cate)]
        groups = [g for g in groups if len(g)]
        # items in cluster order; decoded scores are scattered back through this map
        self.register_buffer("category_map", torch.from_numpy(np.concatenate(groups)).long(), persistent=False)
        self.group_sizes = [len(g) for g in groups]
        latent = [[max(1, int(d * n / self.n_items)) for d in config.in_dims] for n in self.group_sizes]
        self.latent_sizes = [dims[-1] for dims in latent]
        act = Denoiser.ACTIVATIONS[config.act]
        self.encoders = nn.ModuleList(mlp([n, *dims[:-1], 2 * dims[-1]], act) for n, dims in zip(self.group_sizes, latent))
        self.decoders = nn.ModuleList(
            mlp([dims[-1], *[max(1, int(d * n / self.n_items)) for d in config.out_dims], n], act) for n, dims in zip(self.group_sizes, latent)
        )
        for layer in [*self.encoders.modules(), *self.decoders.modules()]:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, 0.0, 0.001)
        self.ae_drop = nn.Dropout(config.ae_dropout)
        self.diffusion = GaussianDiffusion(config.steps, config.schedule, config.noise_scale, config.noise_min, config.noise_max, config.beta0)
        self.sampler = ImportanceSampler(config.steps)
        self.denoiser = Denoiser(sum(self.latent_sizes), config.dims, time_dim=config.time_dim, act=config.act, dropout=config.dropout, norm=config.norm)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _clusters(self, ctx: DataContext) -> np.ndarray:
        c = self.config
        if c.n_cate == 1:
            return np.zeros(self.n_items, dtype=np.int64)
        if c.cluster_feature == "svd":
            k = max(1, min(64, min(ctx.train.shape) - 1))
            _, s, vt = spla.svds(ctx.train.astype(np.float64), k=k, random_state=c.cluster_seed)
            features = (vt.T * s).astype(np.float64)
        elif c.cluster_feature in ctx.features:
            features = ctx.features[c.cluster_feature].numpy()
        else:
            raise ConfigError(
                f"ldiffrec: item feature '{c.cluster_feature}' is not in this dataset (features: "
                f"{', '.join(ctx.features) or 'none'}); set model.cluster_feature to one of them or to 'svd'"
            )
        return kmeans(features, c.n_cate, c.cluster_seed)

    def configure_optimizer(self, train: Any) -> torch.optim.Optimizer:
        autoencoder = [*self.encoders.parameters(), *self.decoders.parameters()]
        return torch.optim.Adam([
            {"params": autoencoder, "lr": self.config.ae_lr},
            {"params": self.denoiser.parameters(), "lr": train.lr, "weight_decay": train.weight_decay},
        ])

    # ----------------------------------------------------------------- autoencoder
    def encode_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_0, mu, logvar): per-cluster encoders on the (dropped-out) cluster slices of x, concatenated."""
        x = self.ae_drop(x)[:, self.category_map]
        mus, logvars = [], []
        for encoder, part, size in zip(self.encoders, x.split(self.group_sizes, dim=1), self.latent_sizes):
            h = encoder(part)
            mus.append(h[:, :size])
            logvars.append(h[:, size:])
        mu, logvar = torch.cat(mus, 1), torch.cat(logvars, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, mu, logvar

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Scores [B, I] in item order from a latent [B, sum of latent sizes]."""
        parts = [decoder(part) for decoder, part in zip(self.decoders, z.split(self.latent_sizes, dim=1))]
        scores = torch.empty(len(z), self.n_items, dtype=z.dtype, device=z.device)
        scores[:, self.category_map] = torch.cat(parts, 1)
        return scores

    def kl_lambda(self) -> float:
        c = self.config
        if c.anneal_steps > 0:
            return max((1.0 - int(self.updates) / c.anneal_steps) * c.kl_weight, c.kl_cap)
        return max(c.kl_weight, c.kl_cap)

    # ----------------------------------------------------------------- training and scoring
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch["rows"]
        z, mu, logvar = self.encode_latent(x)
        diffusion, z0_hat = self.diffusion_loss(z)
        recon = -(F.log_softmax(self.decode_latent(z0_hat), 1) * x).sum(-1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        weight = self.kl_lambda()
        self.updates += 1
        return {"loss": diffusion + recon + weight * kl, "diffusion": diffusion, "recon": recon, "kl": kl}

    def encode(self, batch: Batch) -> torch.Tensor:
        users = batch["users"]
        _, mu, _ = self.encode_latent(train_rows(self.train_matrix, users))
        return self.decode_latent(self.generate(mu, self.config.eval_seed * 1_000_003 + int(users[0])))

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query[:, items]
