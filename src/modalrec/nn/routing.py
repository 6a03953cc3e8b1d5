"""Mixture-of-experts routing with one router and one expert pool shared by every head / token.

A :class:`SharedRouter` maps each input vector (e.g. one attention head's output at one position) to
a distribution over E experts, ``softmax(logits / tau)`` floored at ``gate_floor``; the same weights
serve every head, so heads differ only by their inputs. :class:`SharedExperts` evaluates all experts
densely on every input and mixes their (L2-normalised) outputs by the gates.

Keeping every expert in use (a soft router at a low temperature starves the experts it stops choosing: the
gradient reaching expert k and its logit is proportional to its gate): :func:`balance_loss` (the KL of the mean
gate from uniform) and :func:`switch_balance_loss` (Switch Transformer's auxiliary loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from modalrec.errors import ConfigError
from modalrec.nn.dropout import Dropout
from modalrec.nn.typed import TypedModuleList
from modalrec.nn.unit import unit_norm


class SharedRouter(nn.Module):
    """Gates [..., E] from inputs [..., d]: L2 -> LN -> Linear -> GELU -> Drop -> LN -> Linear -> softmax(/tau).

    ``gumbel_hard``: straight-through one-hot Gumbel-softmax gates in training and argmax one-hot at
    evaluation (an option; dense soft gates are the default).
    """

    def __init__(
        self,
        dim: int,
        n_experts: int,
        hidden: int = 256,
        temperature: float = 0.1,
        dropout: float = 0.1,
        gate_floor: float = 1e-6,
        gumbel_hard: bool = False,
    ):
        super().__init__()
        if n_experts < 1 or temperature <= 0:
            raise ConfigError(f"router needs n_experts >= 1 and temperature > 0, got {n_experts}, {temperature}")
        self.temperature, self.gate_floor, self.gumbel_hard = temperature, gate_floor, gumbel_hard
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            Dropout(dropout),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, n_experts),
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight, gain=0.1)  # small logits: near-uniform gates at start
                nn.init.zeros_(layer.bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(unit_norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.gumbel_hard:
            if self.training:
                return F.gumbel_softmax(logits, tau=self.temperature, hard=True)
            return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return torch.softmax(logits / self.temperature, dim=-1).clamp(self.gate_floor, 1.0)


def balance_loss(gates: torch.Tensor) -> torch.Tensor:
    """log E - H(mean gate): 0 when experts are used equally on average, log E when one takes all.

    (FindRec's released code has an unreached ``+entropy`` term whose minimisation would *unbalance*
    the experts; this is the sign-corrected version, a non-faithful option.)
    """
    mean = gates.reshape(-1, gates.shape[-1]).mean(0).clamp(min=1e-12)
    return math.log(gates.shape[-1]) + (mean * mean.log()).sum()


def switch_balance_loss(gates: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary load-balancing loss (Fedus et al. 2022, eq. 4): ``E sum_e f_e P_e``, with
    f_e the share of rows whose largest gate is e (no gradient) and P_e the mean gate of e. 1 when the rows
    are spread evenly, E when one expert takes every row with gate 1; its gradient lowers the gates of the
    experts that take more than their share of rows."""
    flat = gates.reshape(-1, gates.shape[-1])
    n_experts = flat.shape[-1]
    load = F.one_hot(flat.argmax(-1), n_experts).to(flat.dtype).mean(0)
    return n_experts * (load * flat.mean(0)).sum()


BalanceForm = Literal["entropy", "switch"]  # a model config's ``balance_form``
BALANCE_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"entropy": balance_loss, "switch": switch_balance_loss}


class _GatedUnitMixture(torch.autograd.Function):
    """``sum_k g_k h_k / max(|h_k|, eps)`` for h = ReLU(a) * keep [..., E, d] (``keep`` the dropout's scaled mask),
    with a hand-written backward that keeps only h.

    The same function as ReLU -> dropout -> ``F.normalize`` -> gate product, with the normaliser folded into the
    gates (``(g / |h|) h``): autograd of that chain keeps five [..., E, d] tensors and its backward makes ~10 passes
    over them (the quotient rule of the normalisation alone is 5); here the backward is one batched product and
    ~4 elementwise passes. With c = g / |h| and s_k = <dout, h_k>:
    ``dg = s / |h|``, ``dh_k = c_k dout - (s_k c_k / |h_k|^2) h_k`` (no second term where |h_k| <= eps, the clamp),
    ``da = dh * keep`` where h > 0 (ReLU and the mask: h > 0 exactly where both pass, and keep is then the scale).
    """

    @staticmethod
    def forward(
        ctx: Any, a: torch.Tensor, gates: torch.Tensor, keep: torch.Tensor | None, scale: float, eps: float
    ) -> torch.Tensor:
        h = F.relu(a) if keep is None else keep.mul_(a).clamp_min_(0.0)  # = ReLU(a) * keep (keep >= 0), in keep's memory
        norm = torch.linalg.vector_norm(h, dim=-1)
        coef = gates / norm.clamp(min=eps)
        ctx.save_for_backward(h, norm, coef)
        ctx.eps, ctx.scale, ctx.dtypes = eps, None if keep is None else scale, (a.dtype, gates.dtype)
        if h.shape[-2] == 1:  # one expert per row (top-1): the same products, without a batch of 1 x 1 matmuls
            return coef * h.squeeze(-2)
        return (coef.unsqueeze(-2) @ h).squeeze(-2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, norm, coef = ctx.saved_tensors
        s = (h * grad.unsqueeze(-2)).sum(-1)  # [..., E]: a batch of d-long dot products (3x cheaper than as bmm)
        clamped = norm.clamp(min=ctx.eps)
        d_gates = s / clamped
        radial = torch.where(norm > ctx.eps, s * coef / clamped.square(), 0.0)
        d_h = coef.unsqueeze(-1) * grad.unsqueeze(-2)
        d_h.addcmul_(radial.unsqueeze(-1), h, value=-1.0)
        # zero where h = 0 (the ReLU or the mask): h >= 0, so sign(h) is that 0/1 indicator; a product, ~10x
        # cheaper on CPU than masked_fill_ with this data-dependent mask (a branch per element)
        d_a = d_h.mul_(h.sign())
        if ctx.scale is not None:
            d_a.mul_(ctx.scale)
        return d_a.to(ctx.dtypes[0]), d_gates.to(ctx.dtypes[1]), None, None, None


class SharedExperts(nn.Module):
    """E experts ``e_k(x) = L2(Drop(ReLU(W_k x + b_k)))`` shared by all heads; ``forward(x, gates) = sum_k g_k e_k(x)``.

    All experts run as one matrix product (their weights stacked); the mixture runs fused (:class:`_GatedUnitMixture`,
    the unit-norm outputs never built; same values, same dropout draws, up to float rounding) unless ``fused=False``.
    ``top1=True`` is sparse routing (a different model, an option): each row is evaluated by its largest-gate expert
    only, ``g_k* e_k*(x)`` (:meth:`top1`).
    """

    def __init__(self, dim: int, out_dim: int, n_experts: int, dropout: float = 0.2, fused: bool = True, top1: bool = False):
        super().__init__()
        self.out_dim, self.fused, self.top1_routing = out_dim, fused, top1
        self.experts = TypedModuleList(nn.Linear(dim, out_dim) for _ in range(n_experts))
        self.dropout = Dropout(dropout)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """W_k x + b_k of every expert: [..., E, out_dim]."""
        weight = torch.cat([expert.weight for expert in self.experts])  # [E out, dim]
        bias = torch.cat([expert.bias for expert in self.experts])
        return F.linear(x, weight, bias).unflatten(-1, (len(self.experts), self.out_dim))

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """[..., E, out_dim], each unit-norm (zero when the ReLU zeroes every unit)."""
        return self._units(self.pre_activations(x))

    def _units(self, a: torch.Tensor) -> torch.Tensor:
        """``L2(Drop(ReLU(a)))`` of pre-activations, unfused: an expert's output."""
        return F.normalize(self.dropout(F.relu(a)), dim=-1)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        if self.top1_routing:
            return self.top1(x, gates)
        if not self.fused:
            return (gates.unsqueeze(-2) @ self.expert_outputs(x)).squeeze(-2)
        return self._mixture(self.pre_activations(x), gates)

    def _mixture(self, a: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """``sum_k g_k L2(Drop(ReLU(a_k)))`` for pre-activations a [..., K, d] and gates [..., K], fused."""
        keep = self.dropout.scaled_mask(a)
        scale = 1.0 / (1.0 - self.dropout.p) if self.dropout.p < 1.0 else 0.0
        return cast(torch.Tensor, _GatedUnitMixture.apply(a, gates, keep, scale, 1e-12))

    def top1(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """``g_k* e_k*(x)`` with k* = argmax_k g_k per row (Switch Transformer's top-1 routing, Fedus et al. 2022).

        Each expert runs only on the rows it is chosen for (rows grouped by expert: 1/E of the dense work). The
        gate value is kept as the output's scale, so the router still learns: ``d out / d g_k* = e_k*(x)``, and
        through the softmax every logit j moves by ``g_k* (1[j = k*] - g_j) / tau`` times that, raising the
        chosen expert's gate when its output helps the loss and lowering the others'; the argmax itself has no
        gradient, and an expert gets no gradient from rows it is not chosen for.
        """
        n_experts = len(self.experts)
        flat, flat_gates = x.reshape(-1, x.shape[-1]), gates.reshape(-1, n_experts)
        choice = flat_gates.argmax(-1)
        order = choice.argsort(stable=True)  # rows grouped by their expert
        counts = torch.bincount(choice, minlength=n_experts).tolist()
        parts = flat[order].split(counts)
        a = torch.cat([F.linear(part, expert.weight, expert.bias) for part, expert in zip(parts, self.experts)])
        chosen = flat_gates.gather(1, choice.unsqueeze(1))[order]  # [R, 1]
        if self.fused:
            grouped = self._mixture(a.unsqueeze(1), chosen)
        else:
            grouped = chosen * self._units(a)
        out = grouped.new_empty(grouped.shape).index_copy(0, order, grouped)  # back to the rows' order
        return out.view(*x.shape[:-1], self.out_dim)
