"""Gaussian diffusion for recommendation: the schedule, forward noising, reverse sampling, the MLP
denoiser and importance-sampled timesteps shared by DiffRec, L-DiffRec and HDRM.

Follows DiffRec (Wang et al., SIGIR 2023) section 3 and its released ``GaussianDiffusion``, which HDRM
inherits (spec hdrm.md section 4.2):

- schedules: ``linear-var`` (a linear *variance* 1 - abar_t = v_t, v = linspace(scale*min, scale*max, T),
  beta_t = min(1 - abar_t / abar_{t-1}, 0.999)), ``linear`` (beta linear in [scale*min, scale*max]),
  ``cosine`` and ``binomial``; ``beta0`` overrides beta_0 (DiffRec's ``beta_fixed``: 1e-5) before
  abar is recomputed. ``scale = 0`` is the identity process (no noise; DiffRec's noise_scale = 0).
- posterior q(x_{t-1} | x_t, x_0) with mean coef1_t x_0 + coef2_t x_t; coef1_0 = 1 and coef2_0 = 0, so
  the last reverse step returns the denoiser's x_0 estimate exactly.
- schedule maths in float64 (betas ~1e-11 on HDRM's ML-1M setting), gathered to the input dtype;
  gathering clamps every t to T - 1 (HDRM samples more reverse steps than T on two datasets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Literal, get_args

import numpy as np
import torch
from torch import nn

from modalrec.errors import ConfigError

Schedule = Literal["linear-var", "linear", "cosine", "binomial"]  # a model config's ``schedule``
SCHEDULES: tuple[str, ...] = get_args(Schedule)
Activation = Literal["tanh", "relu", "sigmoid"]  # a model config's denoiser ``act`` (Denoiser.ACTIVATIONS)
MAX_BETA = 0.999


def make_betas(kind: str, steps: int, scale: float, low: float, high: float) -> np.ndarray:
    """The T betas of a schedule (float64); all zero when ``scale == 0``."""
    if steps < 1:
        raise ConfigError(f"diffusion steps must be >= 1, got {steps}")
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown noise schedule '{kind}'; choose one of {', '.join(SCHEDULES)}")
    if scale == 0:
        return np.zeros(steps)
    start, end = scale * low, scale * high
    if kind == "linear":
        return np.linspace(start, end, steps, dtype=np.float64)
    if kind == "linear-var":
        variance = np.linspace(start, end, steps, dtype=np.float64)
        alpha_bar = 1 - variance
        betas = [1 - alpha_bar[0]] + [min(1 - alpha_bar[t] / alpha_bar[t - 1], MAX_BETA) for t in range(1, steps)]
        return np.asarray(betas)
    if kind == "cosine":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731  (Nichol & Dhariwal)
        return np.asarray([min(1 - f((t + 1) / steps) / f(t / steps), MAX_BETA) for t in range(steps)])
    return np.asarray([1 / (steps - t + 1) for t in range(steps)])  # binomial


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim]: [cos(t w_k), sin(t w_k)], w_k = exp(-ln(max_period) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


def directional_noise(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """HDRM's "structural restriction" (spec 4.3): eps' = sgn(x0) |eps| (noise in x0's orthant), then
    mu + sigma eps' with mu, sigma the per-dimension mean and std of x0 over the batch."""
    oriented = torch.sign(x0) * noise.abs()
    mu, sigma = x0.mean(0, keepdim=True), x0.std(0, keepdim=True, unbiased=False)
    return mu + sigma * oriented


class GaussianDiffusion(nn.Module):
    """A DDPM schedule with forward noising and posterior-mean reverse steps (see the module docstring).

    The schedule is derived from the hyper-parameters, so its buffers are not saved in checkpoints.
    """

    # buffers (float64, one entry per step)
    betas: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    noise_var: torch.Tensor
    coef1: torch.Tensor
    coef2: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance: torch.Tensor

    def __init__(
        self,
        steps: int,
        schedule: str = "linear-var",
        scale: float = 0.1,
        low: float = 1e-4,
        high: float = 2e-2,
        beta0: float | None = 1e-5,
    ):
        super().__init__()
        betas = make_betas(schedule, steps, scale, low, high)
        if beta0 is not None and scale != 0:
            betas[0] = beta0  # DiffRec/HDRM beta_fixed
        if (betas < 0).any() or (betas > 1).any():
            raise ConfigError(f"noise schedule gives betas outside [0, 1] (scale={scale}, min={low}, max={high})")
        self.steps = steps
        alphas = 1 - betas
        log_alpha_bar = np.cumsum(np.log1p(-np.minimum(betas, MAX_BETA)))
        alpha_bar = np.exp(log_alpha_bar)
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        # 1 - abar without cancellation (it is ~1e-5 on HDRM's settings)
        noise_var = -np.expm1(log_alpha_bar)
        noise_var_prev = np.append(0.0, noise_var[:-1])
        noisy = noise_var > 0
        safe = np.where(noisy, noise_var, 1.0)
        # t = 0 (abar_{-1} = 1) and identity steps (beta = 0): the posterior mean is x_0 itself
        coef1 = np.where(noisy, betas * np.sqrt(alpha_bar_prev) / safe, 1.0)
        coef2 = np.where(noisy, noise_var_prev * np.sqrt(alphas) / safe, 0.0)
        coef1[0], coef2[0] = 1.0, 0.0
        variance = np.where(noisy, betas * noise_var_prev / safe, 0.0)
        log_variance = (
            np.log(np.append(variance[1], variance[1:]).clip(min=1e-300)) if steps > 1 else np.log(variance.clip(min=1e-300))
        )
        for name, value in dict(
            betas=betas,
            alpha_bar=alpha_bar,
            alpha_bar_prev=alpha_bar_prev,
            noise_var=noise_var,
            coef1=coef1,
            coef2=coef2,
            posterior_variance=variance,
            posterior_log_variance=log_variance,
        ).items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value, dtype=np.float64)), persistent=False)

    def gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as [B, 1, ...] in ``like``'s dtype; every t clamped to T - 1."""
        out = values[t.clamp(max=self.steps - 1)].to(like.dtype)
        return out.reshape(-1, *([1] * (like.dim() - 1)))

    # ----------------------------------------------------------------- forward process
    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, directional: bool = False
    ) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n; n = noise (default N(0, I)), or its directional form."""
        if noise is None:
            noise = torch.randn_like(x0)
        if directional:
            noise = directional_noise(x0, noise)
        return self.gather(self.alpha_bar.sqrt(), t, x0) * x0 + self.gather(self.noise_var.sqrt(), t, x0) * noise

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps."""
        return self.gather((1 / self.alpha_bar).sqrt(), t, x_t) * x_t - self.gather((1 / self.alpha_bar - 1).sqrt(), t, x_t) * eps

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) (float64)."""
        return self.alpha_bar[t] / self.noise_var[t]

    # ----------------------------------------------------------------- reverse process
    def posterior_mean(self, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.gather(self.coef1, t, x_t) * x0_hat + self.gather(self.coef2, t, x_t) * x_t

    def reverse(
        self,
        x_t: torch.Tensor,
        predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        n_steps: int,
        sampling_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Denoise x_t through steps s = n_steps - 1 .. 0 with the posterior mean (plus sqrt(var_s) eps for
        s > 0 when ``sampling_noise``); ``predict_x0(x, t)`` returns the model's x_0 estimate."""
        x = x_t
        for s in reversed(range(n_steps)):
            t = torch.full((x.shape[0],), s, dtype=torch.long, device=x.device)
            x = self.posterior_mean(predict_x0(x, t), x, t)
            if sampling_noise and s > 0:
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = x + self.gather((0.5 * self.posterior_log_variance).exp(), t, x) * eps
        return x


class Denoiser(nn.Module):
    """DiffRec's MLP denoiser, with HDRM's optional condition.

    h = [dropout(x_t), Linear(temb(t)), cond] -> in layers (each activated) -> out layers (all but the
    last activated). ``dims`` = [h_0, ..., h_m]: the out layers are h_0 -> ... -> h_m -> dim and the in
    layers their mirror (dim + time_dim + cond_dim) -> h_m -> ... -> h_0. Dropout touches x_t only.
    """

    ACTIVATIONS: ClassVar[dict[Activation, Callable[[], nn.Module]]] = {
        "tanh": nn.Tanh,
        "relu": lambda: nn.ReLU(inplace=True),
        "sigmoid": nn.Sigmoid,
    }  # in place: one [B, h] buffer less

    def __init__(
        self,
        dim: int,
        dims: list[int],
        cond_dim: int = 0,
        time_dim: int = 10,
        act: str = "tanh",
        dropout: float = 0.5,
        norm: bool = False,
    ):
        super().__init__()
        if act not in self.ACTIVATIONS:
            raise ConfigError(f"denoiser activation '{act}' is not one of {', '.join(self.ACTIVATIONS)}")
        if not dims or any(d < 1 for d in dims):
            raise ConfigError(f"denoiser dims must be a non-empty list of positive sizes, got {dims}")
        self.time_dim, self.norm = time_dim, norm
        self.time_layer = nn.Linear(time_dim, time_dim)
        self.drop = nn.Dropout(dropout)
        in_sizes = [dim + time_dim + cond_dim, *reversed(dims)]
        out_sizes = [*dims, dim]
        self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(in_sizes[:-1], in_sizes[1:]))
        self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(out_sizes[:-1], out_sizes[1:]))
        self.act = self.ACTIVATIONS[act]()
        for layer in [self.time_layer, *self.in_layers, *self.out_layers]:  # DiffRec's init
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (layer.in_features + layer.out_features)))
            nn.init.normal_(layer.bias, 0.0, 0.001)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm:
            x_t = nn.functional.normalize(x_t, dim=-1)
        parts = [self.drop(x_t), self.time_layer(timestep_embedding(t, self.time_dim).to(x_t.dtype))]
        h = torch.cat(parts if cond is None else [*parts, cond], -1)
        for layer in self.in_layers:
            h = self.act(layer(h))
        for i, layer in enumerate(self.out_layers):
            h = layer(h)
            if i < len(self.out_layers) - 1:
                h = self.act(h)
        return h


class ImportanceSampler(nn.Module):
    """DiffRec's loss-aware timestep sampling: p(t) ~ sqrt(E[L_t^2]) over the last ``history`` losses of
    each step, mixed with ``uniform_prob`` of the uniform law; uniform until every step has a full
    history. Returns (t, p(t) * T) so that loss / (p(t) T) is unbiased. History lives in buffers, so
    a resumed run samples as the uninterrupted one."""

    loss_history: torch.Tensor  # [steps, history] buffer
    loss_count: torch.Tensor  # [steps] buffer

    def __init__(self, steps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__()
        self.steps, self.history, self.uniform_prob = steps, history, uniform_prob
        self.register_buffer("loss_history", torch.zeros(steps, history, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(steps, dtype=torch.long))

    def sample(self, batch: int, device: torch.device, importance: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if not importance or not bool((self.loss_count == self.history).all()):
            return torch.randint(0, self.steps, (batch,), device=device), torch.ones(batch, device=device)
        weights = self.loss_history.pow(2).mean(-1).sqrt()
        p = weights / weights.sum() * (1 - self.uniform_prob) + self.uniform_prob / self.steps
        t = torch.multinomial(p, batch, replacement=True)
        return t.to(device), (p[t] * self.steps).float().to(device)

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append each step's new losses (in batch order) and keep the last ``history``."""
        t, losses = t.cpu(), losses.detach().double().cpu()
        for step in torch.unique(t).tolist():
            count = int(self.loss_count[step])
            merged = torch.cat([self.loss_history[step, :count], losses[t == step]])[-self.history :]
            self.loss_history[step, : len(merged)] = merged
            self.loss_count[step] = len(merged)
