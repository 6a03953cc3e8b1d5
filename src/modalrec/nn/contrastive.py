"""Self-supervised objectives shared by the contrastive / bootstrapped multimodal models.

- :func:`info_nce`: InfoNCE over matched rows (SGL, SLMRec, MICRO, MGCN, LGMRec): row i of ``a`` and
  row i of ``b`` are a positive pair, every other row of ``b`` a negative.
- :func:`grace_loss`: InfoNCE with intra- and inter-view negatives over all rows (MICRO).
- :func:`bootstrap_alignment`: BYOL-style negative-free alignment 1 - cos(online, sg(target)) (BM3).
- :func:`distance_correlation`: dependence between two sets of vectors (DMRL's factor
  independence regulariser; 0 iff independent in the population limit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2, symmetric: bool = False) -> torch.Tensor:
    """Mean InfoNCE loss -log exp(s_ii / t) / sum_j exp(s_ij / t), s = cosine; ``symmetric`` averages
    the a->b and b->a directions."""
    if a.shape != b.shape:
        raise ValueError(f"info_nce needs matching views, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(len(a), device=a.device)
    loss = F.cross_entropy(logits, target)
    return (loss + F.cross_entropy(logits.T, target)) / 2 if symmetric else loss


def grace_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.5, chunk: int = 4096) -> torch.Tensor:
    """Mean over rows i of -log e(a_i, b_i) / (sum_j e(a_i, b_j) + sum_{j != i} e(a_i, a_j)), e(x, y) =
    exp(cos(x, y) / t): InfoNCE with the other rows of both views as negatives (intra- and inter-view,
    GRACE, Zhu et al. 2020; MICRO's contrastive fusion). Rows are processed ``chunk`` at a time."""
    if a.shape != b.shape:
        raise ValueError(f"grace_loss needs matching views, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    losses = []
    for start in range(0, len(a), chunk):
        rows = torch.arange(start, min(start + chunk, len(a)), device=a.device)
        inter, intra = a[rows] @ b.T / temperature, a[rows] @ a.T / temperature
        intra = intra.index_put((torch.arange(len(rows), device=a.device), rows), torch.tensor(-torch.inf, device=a.device))
        positive = inter.gather(1, rows[:, None]).squeeze(1)
        losses.append(torch.cat([inter, intra], dim=1).logsumexp(1) - positive)
    return torch.cat(losses).mean()


def bootstrap_alignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(online, stop_gradient(target)) over rows (no negatives needed)."""
    return (1 - F.cosine_similarity(online, target.detach(), dim=-1)).mean()


def _centred_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(-1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(1e-12).sqrt()  # finite gradient at 0 distance
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Sample distance correlation of paired rows of ``x`` [n, p] and ``y`` [n, q], in [0, 1]."""
    a, b = _centred_distances(x), _centred_distances(y)
    dcov_xy = (a * b).mean().clamp_min(0)
    dcov_xx, dcov_yy = (a * a).mean(), (b * b).mean()
    return (dcov_xy / (dcov_xx * dcov_yy).clamp_min(eps).sqrt()).sqrt()
