"""DiffRec: diffusion recommender model on user interaction vectors.

Wang, Xu, Feng, Lin, He & Chua, "Diffusion Recommender Model", SIGIR 2023 (arXiv 2304.04971).

A user's binary train row x_0 in {0, 1}^I is corrupted by the forward process
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Sec. 3.1, with a small noise scale: the paper's point is
that personalised recommendation must not destroy the interactions) and an MLP denoiser predicts x_0
(or eps) from (x_t, t) (Sec. 3.2-3.3). Training minimises the step-weighted MSE (Eq. 12-13): for x_0
prediction the weight of step t is SNR(t-1) - SNR(t) (1 at t = 0), for eps prediction the matching
ELBO weight; steps are drawn by importance sampling on the recent loss of each step (Sec. 3.4, Eq. 14).
Inference (Sec. 3.5): the train row, noised to step ``sampling_steps - 1`` (not at all when 0), is
denoised through all T posterior-mean steps; the result scores every item. Evaluation feeds the train
rows in both phases, as the released code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.checks import NonNegative, Positive, Rule
from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, ModelMixin, register
from modalrec.nn.diffusion import Activation, Denoiser, GaussianDiffusion, ImportanceSampler, Schedule

# DiffRec and L-DiffRec: inference noises the input to a step of the chain
SAMPLING_WITHIN_STEPS = Rule(
    ("sampling_steps", "steps"),
    lambda c: c.sampling_steps <= c.steps,
    "sampling_steps ({sampling_steps}) must be <= steps ({steps})",
)


class DiffusionObjective(ModelMixin):
    """The DiffRec objective and sampler on any x_0 (train rows, or L-DiffRec's latents).

    Hosts need ``self.diffusion``, ``self.sampler``, ``self.denoiser`` and a config with ``mean_type``,
    ``reweight``, ``steps`` and ``sampling_steps``.
    """

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(x_t, t)
        return out if self.config.mean_type == "x0" else self.diffusion.x0_from_eps(x_t, t, out)

    def diffusion_loss(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean weighted loss / p(t), the x_0 prediction) of one batch (Eqs. 12-14)."""
        d, c = self.diffusion, self.config
        t, pt = self.sampler.sample(len(x0), x0.device, importance=c.reweight)
        noise = torch.randn_like(x0)
        x_t = d.q_sample(x0, t, noise)
        out = self.denoiser(x_t, t)
        target = x0 if c.mean_type == "x0" else noise
        mse = (target - out).pow(2).mean(-1)
        x0_hat = out if c.mean_type == "x0" else d.x0_from_eps(x_t, t, out)
        if c.reweight:
            if c.mean_type == "x0":  # SNR(t-1) - SNR(t), 1 at t = 0
                weight = torch.where(t == 0, 1.0, d.snr((t - 1).clamp(min=0)) - d.snr(t))
                loss = mse
            else:  # eps: the ELBO weight; at t = 0 the x_0 likelihood term
                weight = d.noise_var[t] / ((1 - d.alpha_bar_prev[t]).pow(2) * (1 - d.betas[t]))
                weight = torch.where(t == 0, 1.0, weight)
                loss = torch.where(t == 0, (x0 - x0_hat).pow(2).mean(-1) / 2.0, mse)
            loss = weight.to(mse.dtype) * loss
        else:
            loss = mse
        self.sampler.update(t, loss)
        return (loss / pt).mean(), x0_hat

    def generate(self, x_start: torch.Tensor, seed: int) -> torch.Tensor:
        """Sec. 3.5: noise x_start to step sampling_steps - 1 (none when 0), then all T reverse steps."""
        c = self.config
        generator = torch.Generator(device=x_start.device).manual_seed(seed)
        x = x_start
        if c.sampling_steps > 0:
            t = torch.full((len(x),), c.sampling_steps - 1, dtype=torch.long, device=x.device)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = self.diffusion.q_sample(x, t, noise)
        return self.diffusion.reverse(x, self.predict_x0, c.steps, c.sampling_noise, generator)


def train_rows(train: sp.csr_matrix, users: torch.Tensor) -> torch.Tensor:
    """Dense binary train rows [B, I] of ``users``, on their device (the model's input at evaluation)."""
    rows = train[users.cpu().numpy()].toarray().astype(np.float32, copy=False)
    return torch.from_numpy(rows).to(users.device)


@register
class DiffRec(DiffusionObjective, GeneralRecommender):
    """Denoising diffusion over users' interaction rows with an MLP denoiser."""

    name: ClassVar[str] = "diffrec"
    paper: ClassVar[str] = "Wang et al., SIGIR 2023"

    @dataclass
    class Config:
        dims: list[Positive] = field(default_factory=lambda: [200, 600])  # denoiser hidden sizes (ML-1M clean release)
        time_dim: int = 10  # timestep embedding size
        act: Activation = "tanh"  # denoiser activation
        dropout: float = 0.5  # dropout on the noisy input
        norm: bool = False  # L2-normalise x_t before the denoiser
        mean_type: Literal["x0", "eps"] = "x0"  # what the denoiser predicts
        steps: Positive = 40  # T
        schedule: Schedule = "linear-var"
        noise_scale: float = 0.005
        noise_min: float = 0.005
        noise_max: float = 0.01
        beta0: float = 1e-5  # forced beta_0 (beta_fixed)
        sampling_steps: NonNegative = 0  # noise the input to this step at inference (0: none)
        sampling_noise: bool = False
        reweight: bool = True  # importance-sampled steps and SNR weights (Sec. 3.4)
        eval_seed: int = 0  # seeds the inference noise
        rules: ClassVar[tuple[Rule, ...]] = (SAMPLING_WITHIN_STEPS,)

    train_view: ClassVar[str] = "users"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 400, "epochs": 100, "patience": 10}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-5, 1e-3),
        "model.noise_scale": ("log", 1e-4, 1e-1),
        "model.steps": ("choice", [5, 20, 40, 100]),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.train_matrix = ctx.train
        self.diffusion = GaussianDiffusion(
            config.steps, config.schedule, config.noise_scale, config.noise_min, config.noise_max, config.beta0
        )
        self.sampler = ImportanceSampler(config.steps)
        self.denoiser = Denoiser(
            self.n_items, config.dims, time_dim=config.time_dim, act=config.act, dropout=config.dropout, norm=config.norm
        )

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.diffusion_loss(batch["rows"])[0]

    def encode(self, batch: Batch) -> torch.Tensor:
        users = batch["users"]
        return self.generate(train_rows(self.train_matrix, users), self.config.eval_seed * 1_000_003 + int(users[0]))

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query[:, items]
