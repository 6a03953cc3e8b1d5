"""Why FindRec-mmd's two-modality alignment can collapse, and the InfoNCE that cannot (issue #15).

FindRec-mmd aligns the text and image latents of the same items by MMD^2 + the paired kernel distance. Both are
discrepancies: 0 when the two point sets coincide, whatever the sets are. A set collapsed to one point shared by
every item of both modalities is such a coincidence, so it is a minimum (0) with no gradient to leave it: nothing
in the alignment keeps items apart. A cross-modal InfoNCE over the same matched rows is log n there, and lowest when
each item's latents match each other and differ from other items'.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalrec.nn.contrastive import info_nce
from modalrec.nn.stein import median_heuristic, mmd, paired_kernel_distance, squared_distances

T = 0.1  # FindRec's default align_temperature


def mmd_alignment(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FindRec's stein_form=mmd term for one modality pair (median-heuristic bandwidths x 0.5, 1, 2)."""
    d2 = squared_distances(x.detach(), y.detach())
    bandwidths = median_heuristic(d2) * torch.tensor([0.5, 1.0, 2.0])
    return mmd(x, y, bandwidths, "v", cross_distances=d2) + paired_kernel_distance(x, y, bandwidths)


def spread_pairs(n: int = 64, dim: int = 32, noise: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit latents of n items in two modalities: each item's two latents close, items spread out."""
    g = torch.Generator().manual_seed(seed)
    code = torch.randn(n, dim, generator=g)
    return (
        F.normalize(code + noise * torch.randn(n, dim, generator=g), dim=-1),
        F.normalize(code + noise * torch.randn(n, dim, generator=g), dim=-1),
    )


def collapsed(n: int = 64, dim: int = 32, seed: int = 1) -> torch.Tensor:
    """Every row the same unit vector (what the ML-1M-MM run's posterior means became)."""
    point = F.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(seed)), dim=0)
    return point.expand(n, dim).clone()


def test_the_mmd_alignment_is_at_its_minimum_zero_with_no_gradient_when_both_modalities_collapse() -> None:
    x, y = spread_pairs()
    spread = mmd_alignment(x, y)
    assert spread > 1e-3  # an aligned-but-noisy spread pair pays something
    point = collapsed().requires_grad_()
    other = collapsed().requires_grad_()
    value = mmd_alignment(point, other)
    assert value.item() == pytest.approx(0.0, abs=1e-7)  # its minimum: both terms are >= 0
    value.backward()
    assert point.grad.abs().max() == 0 and other.grad.abs().max() == 0  # nothing pushes the items apart
    # and spreading the collapsed items apart, perfectly matched, gains nothing: 0 both ways
    x_matched = spread_pairs(noise=0.0)[0]
    assert mmd_alignment(x_matched, x_matched).item() == pytest.approx(0.0, abs=1e-6)


def test_info_nce_is_log_n_at_collapse_and_bounded_below_by_zero() -> None:
    n = 64
    assert info_nce(collapsed(n), collapsed(n, seed=2), T, symmetric=True).item() == pytest.approx(math.log(n), rel=1e-6)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g)
        assert info_nce(a, b, T, symmetric=True) >= 0
        assert info_nce(a, a, T, symmetric=True) >= 0


def test_info_nce_is_lowest_when_items_match_across_modalities_and_spread_apart() -> None:
    """Orthonormal rows matched to themselves: log(1 + (n - 1) e^(-1/t)), below collapse and below any perturbation
    (a mismatch of the pairs, a move toward one point, noise)."""
    n = 16
    basis = torch.eye(n, 32, dtype=torch.float64)
    best = info_nce(basis, basis, T, symmetric=True)
    assert best.item() == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / T)), rel=1e-5)
    assert best < info_nce(collapsed(n), collapsed(n), T, symmetric=True)
    assert best < info_nce(basis, basis.roll(1, 0), T, symmetric=True)  # every item matched to another's latent
    toward_one_point = F.normalize(basis + 2.0 * basis[0], dim=-1)
    assert best < info_nce(toward_one_point, toward_one_point, T, symmetric=True)
    for seed in range(5):
        noise = 0.3 * torch.randn(n, 32, generator=torch.Generator().manual_seed(seed))
        assert best < info_nce(basis + noise, basis, T, symmetric=True)


def test_info_nce_falls_as_matched_pairs_approach() -> None:
    """One modality's latents move from independent points to their partners: the loss falls at every step."""
    g = torch.Generator().manual_seed(3)
    b = torch.randn(64, 32, generator=g)
    start = torch.randn(64, 32, generator=g)
    values = [info_nce((1 - s) * start + s * b, b, T, symmetric=True).item() for s in torch.linspace(0, 1, 11).tolist()]
    assert all(later < earlier for earlier, later in zip(values, values[1:]))
    assert values[0] > 0.9 * math.log(64)  # independent latents: about chance


def test_info_nce_gradient_attracts_matched_pairs_and_repels_the_others() -> None:
    """A gradient step on Gaussian latents raises the cosine of each item's two latents and lowers the cosine
    between different items' latents (while the MMD alignment, at collapse, does not move at all: see above)."""
    x, y = spread_pairs(noise=1.0, seed=4)
    a = x.clone().requires_grad_()
    info_nce(a, y, T, symmetric=True).backward()
    stepped = a.detach() - 0.05 * a.grad

    def cosines(u: torch.Tensor) -> tuple[float, float]:
        c = F.normalize(u, dim=-1) @ y.T
        off = ~torch.eye(len(c), dtype=torch.bool)
        return c.diagonal().mean().item(), c[off].mean().item()

    (matched_before, others_before), (matched_after, others_after) = cosines(x), cosines(stepped)
    assert matched_after > matched_before + 1e-3
    assert others_after < others_before
    # from collapse, spreading matched pairs a little apart lowers it: collapse is no minimum of the InfoNCE, while
    # the MMD alignment is 0 at both
    point = collapsed(64)
    spread = F.normalize(point + 0.1 * spread_pairs(noise=0.0, seed=5)[0], dim=-1)
    assert info_nce(spread, spread, T, symmetric=True) < info_nce(point, point, T, symmetric=True)
    assert mmd_alignment(spread, spread).item() == pytest.approx(0.0, abs=1e-6)
