"""The diffusion schedule, forward and reverse process, denoiser and importance sampler."""

from __future__ import annotations

import pytest
import torch

from modalrec.errors import ConfigError
from modalrec.nn.diffusion import (
    Denoiser,
    GaussianDiffusion,
    ImportanceSampler,
    directional_noise,
    make_betas,
    timestep_embedding,
)


def test_linear_var_schedule_forces_beta0_and_decreases() -> None:
    d = GaussianDiffusion(50, "linear-var", 1e-5, 1e-5, 1e-4, beta0=1e-5)
    assert len(d.betas) == 50 and d.betas.dtype == torch.float64
    assert d.betas[0].item() == 1e-5
    assert (d.alpha_bar[1:] < d.alpha_bar[:-1]).all() and (d.alpha_bar > 0).all() and (d.alpha_bar <= 1).all()
    # the last reverse step returns the denoiser's x0 exactly
    assert d.coef1[0].item() == pytest.approx(1.0, abs=1e-12) and d.coef2[0].item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("steps", "scale", "low", "high", "beta", "alpha_bar_last", "std_last"),
    [
        (50, 1e-5, 1e-5, 1e-4, 1.8e-11, 0.99999, 3.2e-3),
        (30, 1e-4, 1e-4, 1e-2, 3.4e-8, 0.999989, 3.3e-3),
        (50, 1e-2, 1e-4, 1e-3, 1.8e-7, 0.999981, 4.4e-3),
    ],
)
def test_effective_noise_of_the_released_settings(steps, scale, low, high, beta, alpha_bar_last, std_last) -> None:
    """Spec 4.2's table (ML-1M, Yelp, Amazon-book)."""
    d = GaussianDiffusion(steps, "linear-var", scale, low, high, beta0=1e-5)
    assert d.betas[1:].mean().item() == pytest.approx(beta, rel=0.05)
    assert d.alpha_bar[-1].item() == pytest.approx(alpha_bar_last, abs=1e-6)
    assert (1 - d.alpha_bar[-1]).sqrt().item() == pytest.approx(std_last, rel=0.05)


def test_other_schedules_and_bad_names() -> None:
    for kind in ("linear", "cosine", "binomial"):
        betas = make_betas(kind, 10, 0.1, 1e-4, 2e-2)
        assert betas.shape == (10,) and (betas > 0).all() and (betas <= 0.999).all()
    with pytest.raises(ConfigError, match="unknown noise schedule"):
        make_betas("quadratic", 10, 0.1, 1e-4, 2e-2)


def test_q_sample() -> None:
    d = GaussianDiffusion(5, "linear-var", 0.1, 1e-3, 1e-2)
    x0 = torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 4])
    torch.testing.assert_close(d.q_sample(x0, t, torch.zeros_like(x0)), d.alpha_bar[t].sqrt().float()[:, None] * x0)
    identity = GaussianDiffusion(5, "linear-var", 0.0, 1e-3, 1e-2)
    assert torch.equal(identity.q_sample(x0, t), x0)
    noise = torch.randn_like(x0)
    at0 = d.q_sample(x0, torch.zeros(4, dtype=torch.long), noise)
    torch.testing.assert_close(at0, (1 - 1e-5) ** 0.5 * x0 + 1e-5**0.5 * noise)  # beta_0 override, not the input
    # empirical moments at t = 4
    torch.manual_seed(0)
    z0 = torch.full((200_000, 1), 2.0)
    samples = d.q_sample(z0, torch.full((200_000,), 4))
    assert samples.mean().item() == pytest.approx(2.0 * d.alpha_bar[4].sqrt().item(), abs=3e-3)
    assert samples.var().item() == pytest.approx((1 - d.alpha_bar[4]).item(), rel=0.02)


def test_gather_clamps_every_timestep() -> None:
    d = GaussianDiffusion(5, "linear-var", 0.1, 1e-3, 1e-2)
    like = torch.zeros(3, 2)
    out = d.gather(d.betas, torch.tensor([0, 9, 4]), like)
    torch.testing.assert_close(out.ravel(), d.betas[[0, 4, 4]].float())


def test_directional_noise_signs() -> None:
    x0 = torch.randn(64, 5)
    x0[:, 2] = 0.7  # a constant column: sigma = 0
    n = directional_noise(x0, torch.randn(64, 5))
    mu = x0.mean(0, keepdim=True)
    varying = torch.ones(5, dtype=torch.bool)
    varying[2] = False
    diff = (n - mu)[:, varying]
    assert torch.equal(torch.sign(diff)[diff != 0], torch.sign(x0[:, varying])[diff != 0])
    torch.testing.assert_close(n[:, 2], mu[:, 2].expand(64))


def test_reverse_ends_at_the_denoiser_output() -> None:
    d = GaussianDiffusion(6, "linear-var", 0.1, 1e-3, 1e-2)
    target = torch.randn(1, 4)
    out = d.reverse(torch.randn(3, 4), lambda x, t: target.expand_as(x), n_steps=8)
    torch.testing.assert_close(out, target.expand(3, 4))


def test_timestep_embedding_and_denoiser() -> None:
    emb = timestep_embedding(torch.tensor([0]), 10)
    torch.testing.assert_close(emb, torch.tensor([[1.0] * 5 + [0.0] * 5]))
    f = Denoiser(6, [8, 12], cond_dim=6, time_dim=10, act="relu", dropout=0.5)
    assert f.in_layers[0].in_features == 6 + 10 + 6 and f.in_layers[-1].out_features == 8 and f.out_layers[-1].out_features == 6
    x, t, cond = torch.randn(5, 6), torch.randint(0, 4, (5,)), torch.randn(5, 6)
    f.eval()
    assert f(x, t, cond).shape == (5, 6)
    assert torch.equal(f(x, t, cond), f(x, t, cond))
    # train mode: dropout touches x_t only; with x_t = 0 the output is deterministic
    f.train()
    zero = torch.zeros_like(x)
    assert torch.equal(f(zero, t, cond), f(zero, t, cond))
    assert not torch.equal(f(x, t, cond), f(x, t, cond))
    with pytest.raises(ConfigError, match="activation"):
        Denoiser(6, [8], act="gelu")


def test_importance_sampler_warms_up_uniformly_then_follows_losses() -> None:
    sampler = ImportanceSampler(steps=3, history=2)
    t, pt = sampler.sample(100, torch.device("cpu"))
    assert torch.equal(pt, torch.ones(100))
    sampler.update(torch.tensor([0, 0, 0, 1, 1, 2, 2]), torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0, 100.0, 100.0]))
    assert sampler.loss_count.tolist() == [2, 2, 2]
    assert sampler.loss_history[0].tolist() == [1.0, 1.0]  # the last two of step 0 kept
    torch.manual_seed(0)
    t, pt = sampler.sample(10_000, torch.device("cpu"))
    assert (t == 2).float().mean().item() == pytest.approx(100 / 102, abs=0.02)
    torch.testing.assert_close(pt[t == 2][0], torch.tensor(3 * (100 / 102 * 0.999 + 0.001 / 3)))
