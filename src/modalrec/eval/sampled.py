"""Sampled evaluation's candidates: per user, negatives neither seen nor relevant, drawn uniformly or by train
popularity (seeded), among which the user's relevant items are ranked (see :class:`modalrec.eval.ranking.Evaluator`).
"""

from __future__ import annotations

import numpy as np

from modalrec.errors import ConfigError


class SampledNegatives:
    """Draws, per user, items that are neither seen nor relevant: uniformly or by train popularity,
    without replacement (fewer when the user has fewer such items)."""

    def __init__(self, strategy: str, n_items: int, popularity: np.ndarray, n_negatives: int):
        self.n_items = n_items
        self.n_negatives = n_negatives
        if strategy == "uniform":
            self.weights = None
            self.support = np.arange(n_items)
        else:
            weights = np.asarray(popularity, dtype=np.float64)
            if weights.sum() <= 0:
                raise ConfigError("popularity-sampled evaluation needs train interactions; the train split is empty")
            self.support = np.flatnonzero(weights > 0)
            self.cdf = np.cumsum(weights) / weights.sum()
            self.weights = weights

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.weights is None:
            return rng.integers(0, self.n_items, size)
        return np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), self.n_items - 1)

    def _available(self, excluded: np.ndarray) -> int:
        """How many items a user with these excluded items can be given."""
        if self.weights is None:
            return self.n_items - len(excluded)
        return len(self.support) - int((self.weights[excluded] > 0).sum())

    def sample(self, rng: np.random.Generator, excluded: np.ndarray) -> np.ndarray:
        """Negatives for one user; ``excluded`` is the sorted array of their seen + relevant items."""
        want = min(self.n_negatives, self._available(excluded))
        picked = np.empty(0, dtype=np.int64)
        for _ in range(8):  # rejection: cheap while the user excludes a small part of the catalogue
            if len(picked) >= want:
                return picked[:want]
            draws = self._draw(rng, int(1.5 * (want - len(picked))) + 16)
            merged = np.concatenate([picked, draws[~_in_sorted(draws, excluded)]])
            _, first = np.unique(merged, return_index=True)
            picked = merged[np.sort(first)]
        if len(picked) >= want:
            return picked[:want]
        allowed = np.setdiff1d(self.support, np.concatenate([excluded, picked]))
        p = None if self.weights is None else self.weights[allowed] / self.weights[allowed].sum()
        return np.concatenate([picked, rng.choice(allowed, want - len(picked), replace=False, p=p)])


def _in_sorted(values: np.ndarray, sorted_array: np.ndarray) -> np.ndarray:
    """values[i] in sorted_array, by binary search."""
    if not len(sorted_array):
        return np.zeros(len(values), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_array, values), len(sorted_array) - 1)
    return sorted_array[position] == values
