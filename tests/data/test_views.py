"""Training views: every sample exactly once per epoch, negatives never positives and drawn from the
stated distribution, padded sequences that match the histories, identical batches for one seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import TRAIN, VALID, Dataset
from modalrec.data.negatives import NegativeSampler
from modalrec.data.views import make_train_batches, view_options
from modalrec.errors import ConfigError


def train_context(seed: int = 0, n_users: int = 40, n_items: int = 30, n: int = 600) -> DataContext:
    """Random train interactions with repeats, tied timestamps and skewed popularity, plus ~10% valid
    rows. User 0 has no train interaction, user 1 exactly one, and the last user has seen every
    item but 0 and 1 (so most uniform draws for them are rejected)."""
    rng = np.random.default_rng(seed)
    users = np.r_[rng.integers(2, n_users - 1, n), 1, np.full(n_items - 2, n_users - 1)]
    items = np.r_[(rng.pareto(1.0, n) * 4).astype(np.int64) % n_items, 0, np.arange(2, n_items)]
    labels = np.where(rng.random(len(users)) < 0.1, VALID, TRAIN)
    labels[n:] = TRAIN
    ds = Dataset(
        name="views",
        user=users,
        item=items,
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        timestamp=rng.integers(0, 50, len(users)).astype(np.float64),
        split=labels.astype(np.int8),
    )
    return DataContext.from_dataset(ds)


def train_pairs(ctx: DataContext) -> set[tuple[int, int]]:
    coo = ctx.train.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def histories(ctx: DataContext) -> dict[int, list[int]]:
    h = ctx.histories[TRAIN]
    return {u: h.indices[h.indptr[u] : h.indptr[u + 1]].tolist() for u in range(ctx.n_users)}


def collect(batches) -> dict[str, torch.Tensor]:
    """Concatenate an epoch's batches key by key (checking len() against what was yielded)."""
    out = list(batches)
    assert len(out) == len(batches)
    return {key: torch.cat([b[key] for b in out]) for key in out[0]}


# ----------------------------------------------------------------------------------------- triples
@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_triples_cover_each_train_pair_once_with_true_negatives(negatives):
    ctx = train_context()
    batches = make_train_batches("triples", ctx, batch_size=64, seed=3, negatives=negatives)
    sizes = [len(b["users"]) for b in batches]
    assert sizes[:-1] == [64] * (len(sizes) - 1) and 0 < sizes[-1] <= 64
    epoch = collect(batches)
    assert all(t.dtype == torch.int64 for t in epoch.values())
    positives = train_pairs(ctx)
    users, pos, neg = (epoch[k].tolist() for k in ("users", "pos", "neg"))
    assert sorted(zip(users, pos)) == sorted(positives)
    assert not any((u, j) in positives for u, j in zip(users, neg))
    assert all(0 <= j < ctx.n_items for j in neg)


def test_triples_are_shuffled_and_determined_by_seed():
    ctx = train_context()
    first = collect(make_train_batches("triples", ctx, 50, seed=11))
    again = collect(make_train_batches("triples", ctx, 50, seed=11))
    other = collect(make_train_batches("triples", ctx, 50, seed=12))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["users"], other["users"]) and not torch.equal(first["neg"], other["neg"])
    assert not torch.equal(first["users"], first["users"].sort().values)  # not in CSR order
    batches = make_train_batches("triples", ctx, 50, seed=11)
    assert all(torch.equal(a["neg"], b["neg"]) for a, b in zip(batches, batches))  # re-iteration repeats


def test_several_negatives_per_triple():
    ctx = train_context()
    epoch = collect(make_train_batches("triples", ctx, 32, seed=0, num_negatives=4))
    assert epoch["neg"].shape == (ctx.train.nnz, 4)
    positives = train_pairs(ctx)
    for u, row in zip(epoch["users"].tolist(), epoch["neg"].tolist()):
        assert not any((u, j) in positives for j in row)


def expected_negative_frequency(ctx: DataContext, user: int, weights: np.ndarray) -> np.ndarray:
    """The sampling distribution restricted to the user's non-positives, renormalised."""
    p = weights.astype(np.float64).copy()
    p[ctx.train.indices[ctx.train.indptr[user] : ctx.train.indptr[user + 1]]] = 0
    return p / p.sum()


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_negative_distribution_matches_its_definition(distribution):
    ctx = train_context(seed=1)
    sampler = NegativeSampler.for_training(ctx.n_items, ctx.item_popularity, ctx.train, distribution)
    user = int(np.argmax(np.diff(ctx.train.indptr)[:-1]))  # a busy user: many rejections
    draws = 200_000
    items = sampler.sample(np.full(draws, user), np.random.default_rng(0))
    observed = np.bincount(items, minlength=ctx.n_items) / draws
    weights = ctx.item_popularity if distribution == "popularity" else np.ones(ctx.n_items)
    expected = expected_negative_frequency(ctx, user, weights)
    tolerance = 5 * np.sqrt(expected * (1 - expected) / draws) + 1e-12  # 5 binomial standard errors
    assert np.all(np.abs(observed - expected) <= tolerance)
    if distribution == "popularity":
        unseen = ctx.item_popularity == 0
        assert observed[unseen].sum() == 0  # items nobody trained on are never drawn
        assert np.corrcoef(observed[expected > 0], ctx.item_popularity[expected > 0])[0, 1] > 0.9


def test_negatives_for_a_user_who_saw_nearly_everything():
    ctx = train_context()
    dense = ctx.n_users - 1
    sampler = NegativeSampler.for_training(ctx.n_items, ctx.item_popularity, ctx.train, "uniform")
    items = sampler.sample(np.full(5000, dense), np.random.default_rng(0))
    allowed = set(range(ctx.n_items)) - {j for u, j in train_pairs(ctx) if u == dense}
    assert set(items.tolist()) == allowed


def test_user_without_any_negative_is_refused():
    ds = Dataset.from_raw("full", [0, 0, 1], [0, 1, 0], split=[TRAIN, TRAIN, TRAIN])
    with pytest.raises(ConfigError, match="every item"):
        make_train_batches("triples", DataContext.from_dataset(ds), 4, seed=0)
    # user 0 saw every item anyone trained on; only item 3 (never in train) is left for them
    ds = Dataset.from_raw("popular", [0, 0, 0, 1], [0, 1, 2, 0], split=[TRAIN] * 4)
    ctx = DataContext.from_dataset(ds.replace(item_ids=np.array(["0", "1", "2", "3"])))
    with pytest.raises(ConfigError, match="negatives='uniform'"):
        make_train_batches("triples", ctx, 4, seed=0, negatives="popularity")
    epoch = collect(make_train_batches("triples", ctx, 4, seed=0, negatives="uniform"))
    assert set(epoch["neg"][epoch["users"] == 0].tolist()) == {3}


# --------------------------------------------------------------------------------------- sequences
def test_sequences_all_targets_are_the_shifted_history():
    ctx = train_context()
    max_len = 6
    epoch = collect(make_train_batches("sequences", ctx, 7, seed=0, max_len=max_len))
    hist = histories(ctx)
    assert sorted(epoch["users"].tolist()) == [u for u, h in hist.items() if len(h) >= 2]
    assert epoch["seq"].shape == (len(epoch["users"]), max_len) == epoch["targets"].shape
    for u, seq, length, targets in zip(*(epoch[k].tolist() for k in ("users", "seq", "lengths", "targets"))):
        inputs, shifted = hist[u][:-1][-max_len:], hist[u][1:][-max_len:]
        assert length == len(inputs)
        assert seq == inputs + [ctx.n_items] * (max_len - length)
        assert targets == shifted + [-100] * (max_len - length)


def test_sequences_last_turns_every_prefix_into_a_sample():
    ctx = train_context()
    max_len = 5
    batches = make_train_batches("sequences", ctx, 16, seed=2, max_len=max_len, target="last")
    epoch = collect(batches)
    hist = histories(ctx)
    expected = sorted((u, tuple(h[:k][-max_len:]), h[k]) for u, h in hist.items() if len(h) >= 2 for k in range(1, len(h)))
    got = []
    for u, seq, length, target in zip(*(epoch[k].tolist() for k in ("users", "seq", "lengths", "target"))):
        assert seq[length:] == [ctx.n_items] * (max_len - length)
        got.append((u, tuple(seq[:length]), target))
    assert sorted(got) == expected
    assert batches.n_samples == len(expected)


def test_sequences_follow_time_order_not_item_order():
    # user 0 saw items 5, 1, 3 in that time order (rows given out of order)
    ds = Dataset.from_raw("order", [0, 0, 0], [3, 5, 1], timestamp=[30, 10, 20], split=[TRAIN] * 3)
    ds = ds.replace(item_ids=np.arange(6).astype(str), item=np.array([3, 5, 1]))
    batch = next(iter(make_train_batches("sequences", DataContext.from_dataset(ds), 4, seed=0, max_len=4)))
    assert batch["seq"][0].tolist() == [5, 1, 6, 6] and batch["targets"][0].tolist() == [1, 3, -100, -100]


@pytest.mark.parametrize("target", ["all", "last"])
def test_sequences_are_determined_by_seed(target):
    ctx = train_context()
    first = collect(make_train_batches("sequences", ctx, 8, seed=5, target=target))
    again = collect(make_train_batches("sequences", ctx, 8, seed=5, target=target))
    other = collect(make_train_batches("sequences", ctx, 8, seed=6, target=target))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["users"], other["users"])


# ------------------------------------------------------------------------------------------- users
def test_user_rows_are_the_train_matrix_rows():
    ctx = train_context()
    first = collect(make_train_batches("users", ctx, 9, seed=4))
    assert first["rows"].dtype == torch.float32 and first["rows"].shape[1] == ctx.n_items
    active = np.flatnonzero(np.diff(ctx.train.indptr) > 0)
    assert sorted(first["users"].tolist()) == active.tolist()  # user 0 (no train items) is left out
    assert np.array_equal(first["rows"].numpy(), ctx.train[first["users"].numpy()].toarray())
    again = collect(make_train_batches("users", ctx, 9, seed=4))
    other = collect(make_train_batches("users", ctx, 9, seed=5))
    assert torch.equal(first["users"], again["users"]) and not torch.equal(first["users"], other["users"])


# ------------------------------------------------------------------------------------------ errors
def test_unknown_view_and_options_name_the_valid_ones():
    ctx = train_context()
    with pytest.raises(ConfigError, match="triples, sequences, users"):
        make_train_batches("pairs", ctx, 8, seed=0)
    with pytest.raises(ConfigError, match=r"num_neg.*negatives='uniform', num_negatives=1"):
        make_train_batches("triples", ctx, 8, seed=0, num_neg=2)
    with pytest.raises(ConfigError, match="valid options: none"):
        make_train_batches("users", ctx, 8, seed=0, max_len=3)
    with pytest.raises(ConfigError, match="'all' or 'last'"):
        make_train_batches("sequences", ctx, 8, seed=0, target="next")
    with pytest.raises(ConfigError, match="'uniform' or 'popularity'"):
        make_train_batches("triples", ctx, 8, seed=0, negatives="hard")
    with pytest.raises(ConfigError, match="batch_size"):
        make_train_batches("users", ctx, 0, seed=0)
    assert view_options("sequences") == {"max_len": 50, "target": "all", "samples": None}
