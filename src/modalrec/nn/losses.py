"""Ranking losses and regularisers the model families share.

- :func:`bpr_loss`: Bayesian Personalised Ranking, -mean ln sigma(x_ui - x_uj) (Rendle et al., UAI 2009);
- :func:`embedding_l2`: the L2 prior on a batch's embeddings, averaged over the batch (LightGCN's / MMRec's form);
- :func:`pairwise_scores`: inner-product scores of users with their positive and negative items, one or several
  negatives per user;
- :func:`hyperbolic_margin_loss`: HGCF's margin ranking loss on squared Lorentz distances;
- :func:`binary_ce_loss`: SASRec's binary cross-entropy, -mean [ln sigma(pos) + ln(1 - sigma(neg))];
- :func:`sampled_softmax_loss`: cross-entropy of each target against N negatives shared by the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalrec.nn.hyperbolic import Lorentz


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-mean ln sigma(pos - neg); ``neg_scores`` may carry an extra trailing axis of negatives."""
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_l2(batch_size: int, *embeddings: torch.Tensor) -> torch.Tensor:
    """1/2 sum of squared entries of the given embeddings, divided by the batch size."""
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch_size)  # type: ignore[return-value]


def pairwise_scores(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner products (<u, i+> [B], <u, j-> [B] or [B, n]) of users [B, d] with positives [B, d] and negatives
    [B, d] (one per user) or [B, n, d] (several)."""
    neg_scores = (user.unsqueeze(1) * neg).sum(-1) if neg.dim() == 3 else (user * neg).sum(-1)
    return (user * pos).sum(-1), neg_scores


def hyperbolic_margin_loss(
    manifold: Lorentz, user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float
) -> torch.Tensor:
    """sum_b max(0, d^2(u, i+) - d^2(u, j-) + m); ``neg`` may carry an extra axis of negatives [B, n, D]."""
    pos_d2 = manifold.sqdist(user, pos)
    neg_d2 = manifold.sqdist(user.unsqueeze(1).expand_as(neg), neg) if neg.dim() == 3 else manifold.sqdist(user, neg)
    if neg_d2.dim() == 2:
        pos_d2 = pos_d2.unsqueeze(1)
    return torch.relu(pos_d2 - neg_d2 + margin).sum()


def binary_ce_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-mean [ln sigma(pos)] - mean [ln(1 - sigma(neg))] (Kang & McAuley, ICDM 2018, Sec. III-E, one negative each)."""
    return -(F.logsigmoid(pos_scores).mean() + F.logsigmoid(-neg_scores).mean())


def sampled_softmax_loss(
    states: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each target among itself and ``negatives`` [N] (item indices shared by all P pairs):
    logits [P, 1 + N] = [<h, e_target>, <h, e_neg>...]; a negative equal to the row's target is removed (its logit
    is -inf), so the softmax never counts the target as its own negative. With uniform negatives this is the
    sampled softmax of SASRec+ / gSASRec-style training; N = n_items - 1 approaches full cross-entropy."""
    pos = (states * item_table[targets]).sum(-1, keepdim=True)
    neg = (states @ item_table[negatives].T).masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), -torch.inf)
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))
