"""The one negative sampler (modalrec.data.negatives) draws exactly what each of the three samplers it replaced
drew for the same seed and inputs: the triples view's (data/views.py), sampled evaluation's (eval/sampled.py) and
the sequential losses' on-device one (models/sequential/objective.py). The old samplers are kept below, as they
were at the merge (commit 6623dc8), as oracles: the merge must not move a single draw, hence a single number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalrec.data.context import DataContext
from modalrec.data.negatives import NegativeSampler
from tests.data.test_views import train_context


# ------------------------------------------------------------------ the three samplers before the merge (oracles)
def old_triples_negatives(ctx: DataContext, distribution: str, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """data/views.py NegativeSampler(ctx, distribution).sample(users, rng)."""
    n = ctx.n_items
    keys = np.repeat(np.arange(ctx.n_users, dtype=np.int64), np.diff(ctx.train.indptr)) * n + ctx.train.indices
    cdf = np.cumsum(np.asarray(ctx.item_popularity, dtype=np.float64)) if distribution == "popularity" else None

    def draw(size: int) -> np.ndarray:
        if cdf is None:
            return rng.integers(0, n, size=size, dtype=np.int64)
        return np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").astype(np.int64)

    def positive(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        query = u * n + i
        where = np.searchsorted(keys, query)
        found = np.zeros(len(query), dtype=bool)
        inside = where < len(keys)
        found[inside] = keys[where[inside]] == query[inside]
        return found

    items = draw(len(users))
    bad = np.flatnonzero(positive(users, items))
    while bad.size:
        items[bad] = draw(bad.size)
        bad = bad[positive(users[bad], items[bad])]
    return items


def old_eval_negatives(
    strategy: str, n_items: int, popularity: np.ndarray, n_negatives: int, rng: np.random.Generator, excluded: np.ndarray
) -> np.ndarray:
    """eval/sampled.py SampledNegatives(strategy, n_items, popularity, n_negatives).sample(rng, excluded)."""
    weights = None if strategy == "uniform" else np.asarray(popularity, dtype=np.float64)
    support = np.arange(n_items) if weights is None else np.flatnonzero(weights > 0)

    def draw(size: int) -> np.ndarray:
        if weights is None:
            return rng.integers(0, n_items, size)
        cdf = np.cumsum(weights) / weights.sum()
        return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n_items - 1)

    def inside(values: np.ndarray) -> np.ndarray:
        if not len(excluded):
            return np.zeros(len(values), dtype=bool)
        return excluded[np.minimum(np.searchsorted(excluded, values), len(excluded) - 1)] == values

    available = n_items - len(excluded) if weights is None else len(support) - int((weights[excluded] > 0).sum())
    want = min(n_negatives, available)
    picked = np.empty(0, dtype=np.int64)
    for _ in range(8):
        if len(picked) >= want:
            return picked[:want]
        draws = draw(int(1.5 * (want - len(picked))) + 16)
        merged = np.concatenate([picked, draws[~inside(draws)]])
        _, first = np.unique(merged, return_index=True)
        picked = merged[np.sort(first)]
    if len(picked) >= want:
        return picked[:want]
    allowed = np.setdiff1d(support, np.concatenate([excluded, picked]))
    p = None if weights is None else weights[allowed] / weights[allowed].sum()
    return np.concatenate([picked, rng.choice(allowed, want - len(picked), replace=False, p=p)])


def old_seeded_negatives(n_items: int, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """models/sequential/objective.py: SeededNegatives(n_items) built under the global seed, then sample(shape)."""
    seed = int(torch.randint(0, 2**62, ()).item())
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, n_items, shape, generator=generator) for shape in shapes]


# ------------------------------------------------------------------ the merged sampler draws the same
@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triples_negatives_unchanged(distribution, seed):
    ctx = train_context(seed=seed)
    users = np.repeat(np.repeat(np.arange(ctx.n_users), np.diff(ctx.train.indptr)), 3)  # CSR order, 3 per pair
    expected = old_triples_negatives(ctx, distribution, users, np.random.default_rng(seed))
    sampler = NegativeSampler.for_training(ctx.n_items, ctx.item_popularity, ctx.train, distribution)
    drawn = sampler.sample(users, np.random.default_rng(seed))
    assert drawn.dtype == np.int64 and np.array_equal(drawn, expected)


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
@pytest.mark.parametrize("n_negatives", [5, 25, 1000])  # few, most of the catalogue (the fallback), all of it
def test_eval_negatives_unchanged(strategy, n_negatives):
    ctx = train_context(seed=3)
    popularity = ctx.item_popularity
    sampler = NegativeSampler(ctx.n_items, popularity if strategy == "popularity" else None)
    old_rng, new_rng = np.random.default_rng(7), np.random.default_rng(7)
    for user in range(ctx.n_users):  # one generator across users, as the evaluator does
        excluded = np.union1d(ctx.train.indices[ctx.train.indptr[user] : ctx.train.indptr[user + 1]], [user % ctx.n_items])
        expected = old_eval_negatives(strategy, ctx.n_items, popularity, n_negatives, old_rng, excluded)
        assert np.array_equal(sampler.sample_distinct(new_rng, excluded, n_negatives), expected)


def test_eval_popularity_negatives_unchanged_on_a_long_tail():
    """Many items, skewed counts (ML-1M-like): the popularity bins are narrow, where a change of arithmetic
    would show first."""
    rng = np.random.default_rng(0)
    n_items = 3706
    popularity = (rng.pareto(1.2, n_items) * 20).astype(np.int64)
    sampler = NegativeSampler(n_items, popularity)
    old_rng, new_rng = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(300):
        excluded = np.unique(rng.integers(0, n_items, 150))
        expected = old_eval_negatives("popularity", n_items, popularity, 100, old_rng, excluded)
        assert np.array_equal(sampler.sample_distinct(new_rng, excluded, 100), expected)


def test_sequential_loss_negatives_unchanged():
    shapes = [(7,), (3000,), (4, 5)]
    torch.manual_seed(2024)
    expected = old_seeded_negatives(50, shapes)
    after_old = torch.rand(3)  # the global stream after construction: unchanged too
    torch.manual_seed(2024)
    sampler = NegativeSampler.seeded_from_torch(50)
    after_new = torch.rand(3)
    drawn = [sampler.sample_tensor(torch.Size(shape), torch.device("cpu")) for shape in shapes]
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected))
    assert torch.equal(after_old, after_new)
