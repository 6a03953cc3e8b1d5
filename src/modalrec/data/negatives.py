"""Negative items, drawn by one sampler for every user of them: the triples view (one negative per train pair,
never a train positive), sampled evaluation (per user, distinct, neither seen nor relevant) and the sequential
losses (on-device draws from a private generator, no exclusion).

Items are drawn uniformly or in proportion to train popularity (items nobody trained on are never drawn). An
excluded item is rejected by a binary search in sorted keys, and only the rejected candidates are drawn again.
``items`` restricts the draws to part of the catalogue: training samplers get the items that exist at training time
(:attr:`DataContext.warm_items <modalrec.data.context.DataContext.warm_items>`), so an item held out by a cold-item
split is never a training negative (in a real cold start it does not exist yet).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.errors import ConfigError

MAX_REJECTION_ROUNDS = 1000  # rounds the triples view redraws rejected negatives before giving up


class NegativeSampler:
    """Draws items uniformly or by ``popularity`` (counts per item; ``None`` = uniform), among ``items`` (sorted
    indices; ``None`` = the whole catalogue).

    ``positives`` (a users x items CSR, e.g. the train matrix) is what :meth:`sample` never returns: its
    ``(user, item)`` pairs become one global key ``user * n_items + item``, sorted across the whole matrix
    because rows come in user order and columns are sorted inside a row, so one ``np.searchsorted`` checks
    a whole array of candidates. ``seed`` seeds the private torch generator of :meth:`sample_tensor`.
    """

    def __init__(
        self,
        n_items: int,
        popularity: np.ndarray | None = None,
        positives: sp.csr_matrix | None = None,
        seed: int = 0,
        items: np.ndarray | None = None,
    ):
        self.n_items = n_items
        self.weights = None if popularity is None else np.asarray(popularity, dtype=np.float64)
        self.items = None if items is None else np.asarray(items, dtype=np.int64)
        if self.items is not None and self.weights is not None:  # popularity mass only on the allowed items
            allowed = np.zeros(n_items, dtype=bool)
            allowed[self.items] = True
            self.weights = np.where(allowed, self.weights, 0.0)
        # popularity: draw u ~ U[0, total) and take the item whose cumulative-popularity bin holds it
        self.cdf = None if self.weights is None else np.cumsum(self.weights)
        if self.cdf is not None and not self.cdf[-1] > 0:
            raise ConfigError("popularity-sampled negatives need train interactions; the train split is empty")
        if self.weights is not None:
            self.support = np.flatnonzero(self.weights > 0)  # drawable items
        else:
            self.support = np.arange(n_items) if self.items is None else self.items
        self._support_tensor: torch.Tensor | None = None
        self.keys = np.empty(0, dtype=np.int64)
        if positives is not None:
            users = np.repeat(np.arange(positives.shape[0], dtype=np.int64), np.diff(positives.indptr))
            self.keys = users * n_items + positives.indices.astype(np.int64)
        self.seed = seed
        self._generator: torch.Generator | None = None

    @classmethod
    def for_training(
        cls,
        n_items: int,
        popularity: np.ndarray | None,
        train: sp.csr_matrix,
        distribution: str,
        items: np.ndarray | None = None,
    ) -> NegativeSampler:
        """The triples view's sampler: never a train positive, only ``items`` (None: any); refuses users for whom
        no negative exists."""
        if distribution not in ("uniform", "popularity"):
            raise ConfigError(f"negatives must be 'uniform' or 'popularity', got {distribution!r}")
        sampler = cls(n_items, popularity if distribution == "popularity" else None, positives=train, items=items)
        degree = np.diff(train.indptr)
        weights, cdf = sampler.weights, sampler.cdf
        if weights is None or cdf is None:  # train positives lie among ``items`` (the training catalogue)
            sampleable = degree < len(sampler.support)
        else:  # a user whose positives hold all the popularity mass has nothing left to draw
            users = np.repeat(np.arange(train.shape[0]), degree)
            positive_mass = np.bincount(users, weights=weights[train.indices], minlength=train.shape[0])
            sampleable = positive_mass < cdf[-1]
        unsampleable = np.flatnonzero(~sampleable & (degree > 0))
        if unsampleable.size:
            raise ConfigError(
                f"{unsampleable.size} users (first: {unsampleable[:5].tolist()}) have interacted in train "
                f"with every item the '{distribution}' negative sampler can draw, so no negative exists for them"
                + ("; use negatives='uniform'" if distribution == "popularity" else "")
            )
        return sampler

    @classmethod
    def seeded_from_torch(cls, n_items: int, items: np.ndarray | None = None) -> NegativeSampler:
        """Uniform on-device draws (among ``items``; None: all) from a private generator seeded once from the global
        torch RNG: the run's seed fixes the negatives, while drawing them leaves the global stream (dropout,
        shuffling) alone."""
        return cls(n_items, seed=int(torch.randint(0, 2**62, ()).item()), items=items)

    # ------------------------------------------------------------------ candidates
    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent items (int64) from the distribution, nothing excluded."""
        if self.cdf is None:
            if self.items is not None:
                return self.items[rng.integers(0, len(self.items), size=size, dtype=np.int64)]
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        return np.minimum(np.searchsorted(self.cdf, rng.random(size) * self.cdf[-1], side="right"), self.n_items - 1)

    def sample_tensor(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Uniform items of ``shape`` drawn on ``device`` from the private generator (seeded with ``seed``)."""
        if self.cdf is not None:
            raise ValueError("on-device negatives are uniform; popularity draws are numpy's (sample, sample_distinct)")
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        if self.items is None:
            return torch.randint(0, self.n_items, shape, generator=self._generator, device=device)
        if self._support_tensor is None or self._support_tensor.device != device:
            self._support_tensor = torch.from_numpy(self.items).to(device)
        return self._support_tensor[torch.randint(0, len(self.items), shape, generator=self._generator, device=device)]

    # ------------------------------------------------------------------ excluding positives
    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is one of ``positives``."""
        return _in_sorted(users * self.n_items + items, self.keys)

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One negative item per entry of ``users``, never a positive (users may repeat; sorted users are
        fastest: the lookups then hit memory in sequence)."""
        items = self.draw(rng, len(users))
        bad = np.flatnonzero(self.is_positive(users, items))
        for _ in range(MAX_REJECTION_ROUNDS):
            if bad.size == 0:
                return items
            items[bad] = self.draw(rng, bad.size)
            bad = bad[self.is_positive(users[bad], items[bad])]
        raise RuntimeError(f"negative sampling did not converge after {MAX_REJECTION_ROUNDS} rounds")

    def sample_distinct(self, rng: np.random.Generator, excluded: np.ndarray, n: int) -> np.ndarray:
        """Up to ``n`` distinct items for one user, none in the sorted array ``excluded`` (fewer when fewer
        can be drawn): rejection while the user excludes a small part of the catalogue, then an exact draw
        without replacement among what is left."""
        if self.weights is not None:
            excluded_drawable = int((self.weights[excluded] > 0).sum())
        else:
            excluded_drawable = len(excluded) if self.items is None else int(_in_sorted(excluded, self.items).sum())
        available = len(self.support) - excluded_drawable
        want = min(n, available)
        picked = np.empty(0, dtype=np.int64)
        for _ in range(8):
            if len(picked) >= want:
                return picked[:want]
            draws = self.draw(rng, int(1.5 * (want - len(picked))) + 16)
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
