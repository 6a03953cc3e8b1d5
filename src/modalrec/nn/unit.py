"""Row L2 normalisation with a cheaper backward than autograd's.

``F.normalize(x) = x / max(|x|, eps)``: autograd differentiates the quotient (5 passes over x-sized tensors:
``g / d``, ``-g x / d^2`` as two products and a negation, the sum over the broadcast norm) and then the norm (2 more).
Written out, ``dx = (g - <g, y> y) / d`` with ``y = x / d`` (the radial term only where |x| > eps, where the clamp
passes a gradient): 3 passes. :func:`unit_norm` is ``F.normalize(x, dim=-1)`` with that backward; same values, the
gradient equal up to float rounding.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch.autograd.function import once_differentiable


class _UnitNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = x.norm(2, -1, keepdim=True)  # the ops of F.normalize, so autocast casts them alike
        denom = norm.clamp_min(eps)
        y = x / denom
        ctx.save_for_backward(y, denom, norm > eps)
        ctx.dtype = x.dtype
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        y, denom, radial = ctx.saved_tensors
        along = (grad * y).sum(-1, keepdim=True).mul_(radial)
        return torch.addcmul(grad, along, y, value=-1.0).div_(denom).to(ctx.dtype), None


def unit_norm(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, dim=-1, eps=eps)``: unit-norm rows (rows below eps scaled by 1 / eps), cheaper to differentiate."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return torch.nn.functional.normalize(x, dim=-1, eps=eps)
    return cast(torch.Tensor, _UnitNorm.apply(x, eps))


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of different rows of x [N, D] (rows normalised here, in float64): 1 when
    every row points the same way, ~0 for independent directions; 0 for fewer than 2 rows. A collapse diagnostic."""
    units = torch.nn.functional.normalize(x.detach().double(), dim=-1)
    total = units.sum(0).pow(2).sum() - units.pow(2).sum()
    return float(total / max(1, len(x) * (len(x) - 1)))
