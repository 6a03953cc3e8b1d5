"""L-DiffRec: latent DiffRec with item clustering.

Wang, Xu, Feng, Lin, He & Chua, "Diffusion Recommender Model", SIGIR 2023, Sec. 3.6 (L-DiffRec); training as
the released code (``L-DiffRec/main.py``, ``models/Autoencoder.py``).

Items are clustered into C groups by k-means on item embeddings (the released code clusters the item
embeddings of a trained LightGCN, shipped as the ``item_emb`` feature of the DiffRec datasets). Each
group c has its own variational encoder from the user's interactions with that group's items to a
latent of size proportional to the group's share of the catalogue (the last group takes the remainder,
so the sizes sum to ``in_dims[-1]``); every encoder layer is followed by the activation, the last one
(which outputs [mu, logvar]) included. The latents are concatenated into z_0, on which DiffRec's
diffusion runs (Eq. 17). One Linear(latent -> I) decodes the whole latent (``decoder=linear``, the release's
ML-1M setting); ``decoder=per_cluster`` gives each group a decoder mirroring its encoder (the release's
multi-layer decoder). Training minimises (the release, ``reweight`` on)

    L = lambda_e * L_diffusion(z_0) + L_recon(decode(z^_0), x~) + a_s * KL(q(z_0 | x) || N(0, I)),

lambda_e = max((1 - e / elbo_anneal_epochs) * elbo_weight, elbo_weight_cap) at epoch e (0.03 -> 0.005),
a_s = min(kl_cap, s / kl_anneal_steps) after s updates (slope 1/200: 0.3 after 60 batches), L_recon the multinomial
log-likelihood (Mult-VAE) of the dropped-out input x~ the encoder saw (as the release). Without ``reweight``
the release uses L_diffusion + lambda_e (L_recon + a_s KL). The autoencoder and the denoiser have their own
learning rates (``ae_lr``; ``train.lr`` for the denoiser). Inference encodes the train row (posterior mean),
runs DiffRec's reverse process on the latent and decodes. ``cluster_feature=svd`` clusters on
truncated-SVD item factors of the train matrix for datasets without item embeddings (not in the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import NonNegative, Positive, Rule
from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import Batch, GeneralRecommender, register
from modalrec.models.general.diffrec import SAMPLING_WITHIN_STEPS, DiffusionObjective, train_rows
from modalrec.nn.diffusion import Activation, Denoiser, GaussianDiffusion, ImportanceSampler, Schedule


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 100) -> np.ndarray:
    """Cluster labels [n] of the rows of x by Lloyd's k-means from a k-means++ start (seeded)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    seeds = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.asarray(seeds)[None]) ** 2).sum(-1), axis=1)
        seeds.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    centres = np.asarray(seeds)
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


def mlp(sizes: list[int], act: Callable[[], nn.Module], last_act: bool = False) -> nn.Sequential:
    """Linear layers with ``act`` between them, and after the last one when ``last_act``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


@register
class LDiffRec(DiffusionObjective, GeneralRecommender):
    """Clustered variational encoders + latent diffusion + per-cluster decoders."""

    name: ClassVar[str] = "ldiffrec"
    paper: ClassVar[str] = "Wang et al., SIGIR 2023 (L-DiffRec)"

    @dataclass
    class Config:
        n_cate: Positive = 2  # C, item clusters
        cluster_feature: str = "item_emb"  # ctx feature clustered by k-means, or "svd" (train-matrix factors)
        cluster_seed: int = 0  # k-means seed
        in_dims: list[Positive] = field(default_factory=lambda: [300])  # encoder sizes; the last is the latent size
        # linear: one Linear(latent -> I) (the release) | per_cluster: one MLP per cluster mirroring its encoder
        decoder: Literal["linear", "per_cluster"] = "linear"
        ae_act: Activation = "tanh"  # autoencoder activation (after every encoder layer, the last included)
        ae_dropout: float = 0.1  # dropout on the encoder input
        ae_lr: float = 1e-3  # autoencoder learning rate (ML-1M clean release; the denoiser uses train.lr)
        elbo_weight: float = 0.03  # lambda on the diffusion loss, decayed per epoch ...
        elbo_weight_cap: float = 0.005  # ... down to this floor ...
        elbo_anneal_epochs: int = 500  # ... over this many epochs (0: constant max(elbo_weight, elbo_weight_cap))
        kl_cap: float = 0.3  # KL weight min(kl_cap, updates / kl_anneal_steps) ...
        kl_anneal_steps: int = 200  # ... (0: constant kl_cap)
        dims: list[Positive] = field(default_factory=lambda: [300])  # denoiser hidden sizes
        time_dim: int = 10
        act: Activation = "tanh"  # denoiser activation
        dropout: float = 0.5  # dropout on the noisy latent
        norm: bool = False
        mean_type: Literal["x0", "eps"] = "x0"
        steps: Positive = 40  # T (ML-1M clean release; 100 on the noisy split)
        schedule: Schedule = "linear-var"
        noise_scale: float = 0.005
        noise_min: float = 0.005
        noise_max: float = 0.02
        beta0: float | None = None  # forced beta_0; None = none (L-DiffRec's beta_fixed=False, unlike DiffRec)
        sampling_steps: NonNegative = 0
        sampling_noise: bool = False
        reweight: bool = True  # importance-sampled steps + SNR weights, and the loss form above
        eval_seed: int = 0
        rules: ClassVar[tuple[Rule, ...]] = (
            SAMPLING_WITHIN_STEPS,
            Rule(("in_dims",), lambda c: len(c.in_dims) > 0, "in_dims needs at least one size (the last is the latent size)"),
        )

    train_view: ClassVar[str] = "users"
    # the release: lr2 = 5e-4, batch 400, up to 1000 epochs validated every 5, stop 20 epochs after the best
    train_defaults: ClassVar[dict] = {"lr": 5e-4, "batch_size": 400, "epochs": 1000, "eval_every": 5, "patience": 4}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-5, 1e-3),
        "model.n_cate": ("int", 1, 5),
        "model.noise_scale": ("log", 1e-4, 1e-1),
        "model.steps": ("choice", [5, 20, 40, 100]),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        if config.n_cate > self.n_items:
            raise ConfigError(f"ldiffrec: model.n_cate ({config.n_cate}) must be <= the dataset's {self.n_items} items")
        self.train_matrix = ctx.train
        labels = self._clusters(ctx)
        groups = [np.flatnonzero(labels == c) for c in range(config.n_cate)]
        groups = [g for g in groups if len(g)]
        # items in cluster order; decoded scores are scattered back through this map
        self.register_buffer("category_map", torch.from_numpy(np.concatenate(groups)).long(), persistent=False)
        self.group_sizes = [len(g) for g in groups]
        latent = self._latent_sizes(config.in_dims)
        self.latent_sizes = [dims[-1] for dims in latent]
        act = Denoiser.ACTIVATIONS[config.ae_act]
        self.encoders = nn.ModuleList(
            mlp([n, *dims[:-1], 2 * dims[-1]], act, last_act=True) for n, dims in zip(self.group_sizes, latent)
        )
        if config.decoder == "per_cluster":
            self.decoders = nn.ModuleList(mlp([dims[-1], *dims[-2::-1], n], act) for n, dims in zip(self.group_sizes, latent))
        else:
            self.decoders = nn.ModuleList([nn.Linear(sum(self.latent_sizes), self.n_items)])
        for layer in [*self.encoders.modules(), *self.decoders.modules()]:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.ae_drop = nn.Dropout(config.ae_dropout)
        self.diffusion = GaussianDiffusion(
            config.steps, config.schedule, config.noise_scale, config.noise_min, config.noise_max, config.beta0
        )
        self.sampler = ImportanceSampler(config.steps)
        self.denoiser = Denoiser(
            sum(self.latent_sizes),
            config.dims,
            time_dim=config.time_dim,
            act=config.act,
            dropout=config.dropout,
            norm=config.norm,
        )
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.epoch = 0  # set by before_epoch; the diffusion weight decays per epoch

    def _latent_sizes(self, in_dims: list[int]) -> list[list[int]]:
        """Per group, its encoder sizes: each of ``in_dims`` scaled by the group's share of the items (at least 1);
        the last group takes what the others leave, so every layer's sizes sum to ``in_dims`` (as the release)."""
        sizes = [[max(1, int(d * n / self.n_items)) for d in in_dims] for n in self.group_sizes[:-1]]
        last = [d - sum(group[j] for group in sizes) for j, d in enumerate(in_dims)]
        if min(last) < 1:
            raise ConfigError(
                f"ldiffrec: in_dims={in_dims} are too small for {len(self.group_sizes)} item clusters; raise them or lower n_cate"
            )
        return [*sizes, last]

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
        return torch.optim.Adam(
            [
                {"params": autoencoder, "lr": self.config.ae_lr},
                {"params": self.denoiser.parameters(), "lr": train.lr, "weight_decay": train.weight_decay},
            ]
        )

    # ----------------------------------------------------------------- autoencoder
    def encode_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_0, mu, logvar, x~): per-cluster encoders on the cluster slices of the dropped-out input x~ (returned in
        item order: the reconstruction target, as the release), latents concatenated."""
        dropped = self.ae_drop(x)
        mus, logvars = [], []
        for encoder, part, size in zip(
            self.encoders, dropped[:, self.category_map].split(self.group_sizes, dim=1), self.latent_sizes
        ):
            h = encoder(part)
            mus.append(h[:, :size])
            logvars.append(h[:, size:])
        mu, logvar = torch.cat(mus, 1), torch.cat(logvars, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, mu, logvar, dropped

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Scores [B, I] in item order from a latent [B, sum of latent sizes]."""
        if self.config.decoder == "linear":
            decoded = self.decoders[0](z)  # one Linear over the whole latent, items in cluster order
        else:
            decoded = torch.cat([decoder(part) for decoder, part in zip(self.decoders, z.split(self.latent_sizes, dim=1))], 1)
        scores = torch.empty(len(z), self.n_items, dtype=decoded.dtype, device=z.device)
        scores[:, self.category_map] = decoded
        return scores

    def before_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def elbo_lambda(self) -> float:
        """The diffusion loss weight of this epoch: elbo_weight decayed linearly per epoch to elbo_weight_cap."""
        c = self.config
        if c.elbo_anneal_epochs > 0:
            return max((1.0 - self.epoch / c.elbo_anneal_epochs) * c.elbo_weight, c.elbo_weight_cap)
        return max(c.elbo_weight, c.elbo_weight_cap)

    def kl_anneal(self) -> float:
        """The KL weight after ``updates`` steps: min(kl_cap, updates / kl_anneal_steps), as the release."""
        c = self.config
        return min(c.kl_cap, int(self.updates) / c.kl_anneal_steps) if c.kl_anneal_steps > 0 else c.kl_cap

    # ----------------------------------------------------------------- training and scoring
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        z, mu, logvar, target = self.encode_latent(batch["rows"])
        diffusion, z0_hat = self.diffusion_loss(z)
        recon = -(F.log_softmax(self.decode_latent(z0_hat), 1) * target).sum(-1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        lam, anneal = self.elbo_lambda(), self.kl_anneal()
        self.updates += 1
        vae = recon + anneal * kl
        total = lam * diffusion + vae if self.config.reweight else diffusion + lam * vae
        return {"loss": total, "diffusion": diffusion, "recon": recon, "kl": kl}

    def encode(self, batch: Batch) -> torch.Tensor:
        users = batch["users"]
        _, mu, _, _ = self.encode_latent(train_rows(self.train_matrix, users))
        return self.decode_latent(self.generate(mu, self.config.eval_seed * 1_000_003 + int(users[0])))

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query[:, items]
