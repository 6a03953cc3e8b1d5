"""mean_pairwise_cosine: the collapse diagnostic shared by HDRM and FindRec."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalrec.nn.unit import mean_pairwise_cosine

ONE_DIRECTION = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])  # the same direction at different lengths


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (ONE_DIRECTION, 1.0),
        (torch.eye(4, 6), 0.0),  # orthonormal rows
        (torch.tensor([[1.0, 0.0], [-3.0, 0.0]]), -1.0),  # opposite rows
        (torch.tensor([[1.0, 1.0]]), 0.0),  # fewer than 2 rows: no pair
    ],
)
def test_mean_pairwise_cosine_at_known_configurations(x: torch.Tensor, expected: float) -> None:
    assert mean_pairwise_cosine(x) == pytest.approx(expected, abs=1e-12)


def test_mean_pairwise_cosine_is_the_mean_over_pairs_of_different_rows() -> None:
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    units = F.normalize(x.double(), dim=-1)
    pairs = [float(units[i] @ units[j]) for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_cosine(x) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)
