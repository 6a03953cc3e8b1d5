"""The cheaper-mask Dropout: nn.Dropout's distribution, scaling, eval identity and gradient."""

from __future__ import annotations

import pytest
import torch

from modalrec.nn.dropout import Dropout


def test_keeps_each_element_with_probability_one_minus_p_and_rescales() -> None:
    torch.manual_seed(0)
    drop = Dropout(0.3).train()
    x = torch.ones(400_000)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.003)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # unbiased, like nn.Dropout


def test_identity_in_eval_or_at_zero_and_zero_at_one() -> None:
    x = torch.randn(5, 7)
    assert Dropout(0.5).eval()(x) is x and Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_gradient_is_the_mask_and_seeded_draws_repeat() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    drop = Dropout(0.5).train()
    torch.manual_seed(1)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)


def test_mask_is_the_uniform_draw_compared_with_p() -> None:
    """The mask is exactly ``(torch.rand(shape) >= p) / (1 - p)`` from the global generator (what FindRec's runs drew)."""
    x = torch.randn(300, 17)
    torch.manual_seed(4)
    y = Dropout(0.3).train()(x)
    torch.manual_seed(4)
    assert torch.equal(y, x * ((torch.rand(x.shape) >= 0.3).float() * (1.0 / 0.7)))
