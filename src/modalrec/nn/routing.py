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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.errors import ConfigError
from modalrec.nn.dropout import Dropout
from modalrec.nn.typed import TypedModuleList


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
        return self.net(F.normalize(x, dim=-1))

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


class SharedExperts(nn.Module):
    """E experts ``e_k(x) = L2(Drop(ReLU(W_k x + b_k)))`` shared by all heads; ``forward(x, gates) = sum_k g_k e_k(x)``.

    All experts run as one matrix product (their weights stacked), and the gate mixture is one batched
    product, instead of E separate layers and an [..., E, out] elementwise product.
    """

    def __init__(self, dim: int, out_dim: int, n_experts: int, dropout: float = 0.2):
        super().__init__()
        self.out_dim = out_dim
        self.experts = TypedModuleList(nn.Linear(dim, out_dim) for _ in range(n_experts))
        self.dropout = Dropout(dropout)

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """[..., E, out_dim], each unit-norm (zero when the ReLU zeroes every unit)."""
        weight = torch.cat([expert.weight for expert in self.experts])  # [E out, dim]
        bias = torch.cat([expert.bias for expert in self.experts])
        hidden = F.relu(F.linear(x, weight, bias)).unflatten(-1, (len(self.experts), self.out_dim))
        return F.normalize(self.dropout(hidden), dim=-1)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        return (gates.unsqueeze(-2) @ self.expert_outputs(x)).squeeze(-2)
