"""Full-ranking evaluator on tiny synthetic contexts with fake models defined here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.errors import UnknownNameError
from modalrec.eval.metrics import user_metrics
from modalrec.eval.ranking import Evaluator, ScoringError
from modalrec.eval.topk import order_keys
from modalrec.models.base import EmbeddingScorer, GeneralRecommender, NoConfig


def make_context(n_users: int = 40, n_items: int = 60, seed: int = 0) -> DataContext:
    """Each user gets distinct train / valid / test items; every 7th user has no test target."""
    rng = np.random.default_rng(seed)
    users, items, split = [], [], []
    for u in range(n_users):
        n_train, n_valid = int(rng.integers(3, 15)), int(rng.integers(1, 3))
        n_test = 0 if u % 7 == 3 else int(rng.integers(1, 4))
        chosen = rng.choice(n_items, n_train + n_valid + n_test, replace=False)
        users += [u] * len(chosen)
        items += chosen.tolist()
        split += [TRAIN] * n_train + [VALID] * n_valid + [TEST] * n_test
    ds = Dataset.from_raw(
        "synthetic",
        np.array(users),
        np.array(items),
        split=np.array(split),
        item_universe=np.arange(n_items).astype(str),
        user_universe=np.arange(n_users).astype(str),
    )
    return DataContext.from_dataset(ds)


class DotModel(EmbeddingScorer, GeneralRecommender):
    """Fixed random embeddings; counts scoring passes and records the grad/eval state it scored in."""

    name = "fake-dot"

    def __init__(self, ctx: DataContext, dim: int = 8, seed: int = 0, levels: int | None = None):
        super().__init__(NoConfig(), ctx)
        g = torch.Generator().manual_seed(seed)
        self.user_vectors = nn.Parameter(torch.randn(ctx.n_users, dim, generator=g))
        self.items = nn.Parameter(torch.randn(ctx.n_items, dim, generator=g))
        self.levels = levels  # quantise scores to this many values: many ties
        self.passes = 0
        self.states: set[tuple[bool, bool]] = set()

    def prepare_scoring(self) -> None:
        self.passes += 1

    def query_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_vectors[batch["users"]]

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.items[items]

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        self.states.add((torch.is_grad_enabled(), self.training))
        scores = super().score_items(query, items)
        return scores if self.levels is None else torch.floor(scores * self.levels / 4)


class TableModel(GeneralRecommender):
    """Scores read from a fixed [n_users, n_items] table; ``as_view`` returns views of it."""

    name = "fake-table"

    def __init__(self, ctx: DataContext, table: torch.Tensor, as_view: bool = False):
        super().__init__(NoConfig(), ctx)
        self.register_buffer("table", table)
        self.as_view = as_view

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["users"]

    def score_items(self, users: torch.Tensor, items: slice) -> torch.Tensor:
        if self.as_view:  # same row for every user: a broadcast view of the model's own buffer
            return self.table[0, items].expand(len(users), -1)
        return self.table[users][:, items]


def naive_topk(scores: np.ndarray, seen: np.ndarray | None, k: int) -> list[list[int]]:
    """Per user: unseen items sorted by (score desc, index asc), first k (-1 padded)."""
    out = []
    for u in range(scores.shape[0]):
        candidates = [i for i in range(scores.shape[1]) if seen is None or not seen[u, i]]
        ranked = sorted(candidates, key=lambda i: (-scores[u, i], i))[:k]
        out.append(ranked + [-1] * (k - len(ranked)))
    return out


def dense(matrix) -> np.ndarray:
    return matrix.toarray() > 0


def model_scores(model: DotModel) -> np.ndarray:
    with torch.no_grad():
        return model.score(model.eval_batch(np.arange(model.n_users), None, VALID)).numpy()


# ------------------------------------------------------------------ protocol and alignment
@pytest.mark.parametrize("phase", [VALID, TEST])
def test_metrics_match_naive_full_ranking_per_user(phase: int) -> None:
    ctx = make_context()
    model = DotModel(ctx)
    result = Evaluator(ctx, ks=(5, 10), user_chunk=7, item_chunk=13).evaluate(model, phase)
    targets = dense(ctx.targets(phase))
    expected_users = np.flatnonzero(targets.any(1))
    np.testing.assert_array_equal(result.users, expected_users)
    ranked = np.array(naive_topk(model_scores(model), dense(ctx.seen(phase)), 10))[expected_users]
    np.testing.assert_array_equal(result.topk, ranked)
    hits = np.take_along_axis(targets[expected_users], ranked, axis=1)
    expected = user_metrics(hits, targets[expected_users].sum(1), ["recall", "ndcg", "hit", "mrr", "precision", "map"], [5, 10])
    assert set(result.per_user) == set(expected)
    for key, values in expected.items():
        assert result.per_user[key].shape == (len(expected_users),)
        np.testing.assert_allclose(result.per_user[key], values)
        assert result.summary[key] == pytest.approx(values.mean())
    recommended = ranked[:, :10]
    assert result.summary["coverage@10"] == pytest.approx(len(np.unique(recommended)) / ctx.n_items)
    assert result.summary["avg_popularity@10"] == pytest.approx(ctx.item_popularity[recommended].mean())


def test_users_without_targets_are_not_evaluated() -> None:
    ctx = make_context()
    result = Evaluator(ctx).evaluate(DotModel(ctx), TEST)
    assert 3 not in result.users and 10 not in result.users  # u % 7 == 3 has no test item
    assert len(result.users) == int((np.diff(ctx.targets(TEST).indptr) > 0).sum())


def test_test_masks_train_and_valid_while_valid_masks_train_only() -> None:
    ctx = make_context()
    train, valid = dense(ctx.histories[TRAIN]), dense(ctx.histories[VALID])
    # an adversarial model: train items score highest, then valid items, then the rest
    table = torch.from_numpy(2.0 * train + 1.0 * valid).float() + 0.01 * torch.rand(ctx.n_users, ctx.n_items)
    model = TableModel(ctx, table)
    evaluator = Evaluator(ctx, ks=(5,), item_chunk=17)
    for phase, masked in ((VALID, train), (TEST, train | valid)):
        result = evaluator.evaluate(model, phase)
        rows = masked[result.users]
        assert not np.take_along_axis(rows, result.topk, axis=1).any()
    valid_result = evaluator.evaluate(model, VALID)
    assert valid_result.summary["hit@5"] == 1.0  # valid items are unmasked there, and score highest
    items, _ = evaluator.topk(model, np.arange(ctx.n_users), 5, TEST)
    assert not np.take_along_axis(train | valid, items.numpy(), axis=1).any()
    items, _ = evaluator.topk(model, np.arange(ctx.n_users), 3, TEST, exclude_seen=False)
    assert np.take_along_axis(train, items.numpy(), axis=1).all()


# ------------------------------------------------------------------ ties and chunking
def test_all_equal_scores_return_lowest_indices() -> None:
    ctx = make_context(n_items=30)
    model = TableModel(ctx, torch.zeros(ctx.n_users, ctx.n_items))
    users = np.arange(ctx.n_users)
    for item_chunk in (4, 30, 1000):
        evaluator = Evaluator(ctx, item_chunk=item_chunk, user_chunk=9)
        items, scores = evaluator.topk(model, users, 10, VALID, exclude_seen=False)
        assert (items == torch.arange(10)).all() and (scores == 0).all()
        items, _ = evaluator.topk(model, users, 10, VALID)
        np.testing.assert_array_equal(items.numpy(), naive_topk(np.zeros((ctx.n_users, ctx.n_items)), dense(ctx.seen(VALID)), 10))


def test_negative_zero_ties_with_zero() -> None:
    scores = torch.tensor([[-0.0, 0.0, -1.0, 1.0]])
    keys = order_keys(scores, torch.arange(4).unsqueeze(0))
    assert keys.argsort(descending=True).tolist() == [[3, 0, 1, 2]]


@pytest.mark.parametrize("phase", [VALID, TEST])
def test_results_identical_across_chunk_sizes_with_many_ties(phase: int) -> None:
    ctx = make_context(n_users=35, n_items=80, seed=3)
    model = DotModel(ctx, levels=3)  # a handful of distinct scores: ties everywhere, also at the cut
    reference = np.array(naive_topk(model_scores(model), dense(ctx.seen(phase)), 12))
    results = []
    for user_chunk, item_chunk in ((1, 1), (4, 7), (11, 12), (13, 80), (1000, 1000)):
        result = Evaluator(ctx, ks=(5, 12), user_chunk=user_chunk, item_chunk=item_chunk).evaluate(model, phase)
        np.testing.assert_array_equal(result.topk, reference[result.users])
        results.append(result)
    for other in results[1:]:
        assert other.summary == results[0].summary
        for key in results[0].per_user:
            np.testing.assert_array_equal(other.per_user[key], results[0].per_user[key])


def test_users_with_fewer_unseen_items_than_k_get_padded_lists() -> None:
    ctx = make_context(n_users=10, n_items=20)
    evaluator = Evaluator(ctx, ks=(10,), item_chunk=6)
    items, scores = evaluator.topk(DotModel(ctx), np.arange(10), 20, TEST)
    n_unseen = ctx.n_items - dense(ctx.seen(TEST)).sum(1)
    assert ((items >= 0).sum(1).numpy() == n_unseen).all()
    assert torch.isinf(scores[items < 0]).all()


# ------------------------------------------------------------------ model handling and errors
def test_runs_in_eval_mode_without_grad_and_restores_training_mode() -> None:
    ctx = make_context()
    model = DotModel(ctx)
    model.train()
    Evaluator(ctx, user_chunk=8).evaluate(model, VALID)
    assert model.training
    assert model.states == {(False, False)}
    assert model.passes == 1  # prepare_scoring once per pass, not per chunk
    model.eval()
    Evaluator(ctx).topk(model, [0, 1], 5, TEST)
    assert not model.training and model.passes == 2


def test_nan_scores_raise_with_model_name_and_count() -> None:
    ctx = make_context()
    table = torch.rand(ctx.n_users, ctx.n_items)
    unseen = np.argwhere(~dense(ctx.seen(VALID)))[:3]
    table[unseen[:, 0], unseen[:, 1]] = torch.nan
    with pytest.raises(ScoringError, match=r"fake-table.* 3 NaN"):
        Evaluator(ctx, item_chunk=1000).evaluate(TableModel(ctx, table), VALID)
    seen = np.argwhere(dense(ctx.seen(VALID)))[:2]
    table = torch.rand(ctx.n_users, ctx.n_items)
    table[seen[:, 0], seen[:, 1]] = torch.nan  # hidden by the mask, still a broken model
    with pytest.raises(ScoringError, match="2 NaN"):
        Evaluator(ctx, item_chunk=1000).evaluate(TableModel(ctx, table), VALID)


def test_wrongly_shaped_scores_raise() -> None:
    ctx = make_context()
    with pytest.raises(ScoringError, match=r"shape \(40, 60\).*expected \(1, 60\)"):
        Evaluator(ctx).topk(_WrongShape(ctx), [0], 5, VALID)


class _WrongShape(TableModel):
    def __init__(self, ctx: DataContext):
        super().__init__(ctx, torch.rand(ctx.n_users, ctx.n_items))

    def score_items(self, users: torch.Tensor, items: slice) -> torch.Tensor:
        return self.table[:, items]


def test_score_views_of_model_state_are_not_written() -> None:
    ctx = make_context()
    table = torch.rand(1, ctx.n_items).expand(ctx.n_users, -1).contiguous()
    model = TableModel(ctx, table.clone(), as_view=True)
    Evaluator(ctx, item_chunk=25).evaluate(model, TEST)
    assert torch.equal(model.table, table)


def test_k_larger_than_catalogue_is_clamped_with_warning() -> None:
    ctx = make_context(n_items=20)
    with pytest.warns(UserWarning, match="k=50"):
        evaluator = Evaluator(ctx, ks=(5, 50))
    assert evaluator.ks == (5, 20)
    result = evaluator.evaluate(DotModel(ctx), VALID)
    assert result.topk.shape == (len(result.users), 20) and "recall@20" in result.summary
    with pytest.warns(UserWarning):
        items, _ = evaluator.topk(DotModel(ctx), [0, 1], 99, VALID)
    assert items.shape == (2, 20)


def test_bad_settings_are_refused() -> None:
    ctx = make_context()
    with pytest.raises(UnknownNameError, match="recall"):
        Evaluator(ctx, metrics=("recal",))
    with pytest.raises(UnknownNameError, match="uniform"):
        Evaluator(ctx, sampled="unifrom")
    with pytest.raises(Exception, match="VALID"):
        Evaluator(ctx).evaluate(DotModel(ctx), TRAIN)


def test_result_serialises_and_formats() -> None:
    ctx = make_context()
    result = Evaluator(ctx).evaluate(DotModel(ctx), TEST)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["phase"] == "test" and data["protocol"] == "full" and data["n_users"] == len(result.users)
    assert data["metrics"]["ndcg@10"] == pytest.approx(result.summary["ndcg@10"])
    table = result.format_table()
    assert "full ranking" in table and "sampled" not in table
    assert f"{result.summary['recall@20']:.4f}" in table and "gini" in table


# ------------------------------------------------------------------ sampled evaluation
@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
@pytest.mark.parametrize("phase", [VALID, TEST])
def test_sampled_metrics_bound_full_ranking_from_above(strategy: str, phase: int) -> None:
    ctx = make_context(n_users=60, n_items=200, seed=5)
    model = DotModel(ctx, seed=1)
    full = Evaluator(ctx, ks=(5, 10)).evaluate(model, phase)
    sampled = Evaluator(ctx, ks=(5, 10), sampled=strategy, n_negatives=30, seed=4).evaluate(model, phase)
    np.testing.assert_array_equal(sampled.users, full.users)
    for key, values in full.per_user.items():
        assert (sampled.per_user[key] >= values - 1e-12).all(), key
    assert sampled.summary["recall@10"] > full.summary["recall@10"]
    assert sampled.summary["sampled"] == f"{strategy}-30"
    assert f"(sampled: {strategy}-30)" in sampled.format_table()
    assert sampled.to_dict()["protocol"] == "sampled" and "coverage@10" not in sampled.summary


def test_sampled_candidates_are_unseen_and_sized_by_n_negatives() -> None:
    ctx = make_context(n_users=30, n_items=200, seed=2)
    n_negatives = 6
    result = Evaluator(ctx, ks=(20,), sampled="uniform", n_negatives=n_negatives).evaluate(DotModel(ctx), TEST)
    seen = dense(ctx.seen(TEST))[result.users]
    relevant = dense(ctx.targets(TEST))[result.users]
    listed = result.topk >= 0
    assert not (np.take_along_axis(seen, np.maximum(result.topk, 0), axis=1) & listed).any()
    np.testing.assert_array_equal(listed.sum(1), (relevant & ~seen).sum(1) + n_negatives)
    popular = Evaluator(ctx, ks=(20,), sampled="popularity", n_negatives=n_negatives).evaluate(DotModel(ctx), TEST)
    negatives = popular.topk[(popular.topk >= 0) & ~np.take_along_axis(relevant, np.maximum(popular.topk, 0), axis=1)]
    assert (ctx.item_popularity[negatives] > 0).all()  # never-bought items are never drawn by popularity


def test_sampled_is_seeded_and_independent_of_chunking() -> None:
    ctx = make_context(n_users=30, n_items=100, seed=6)
    model = DotModel(ctx)
    runs = [
        Evaluator(ctx, sampled="uniform", n_negatives=20, seed=seed, user_chunk=uc, item_chunk=ic).evaluate(model, TEST)
        for seed, uc, ic in ((1, 1024, 1000), (1, 4, 9), (2, 1024, 1000))
    ]
    np.testing.assert_array_equal(runs[0].topk, runs[1].topk)
    assert not np.array_equal(runs[0].topk, runs[2].topk)


def test_dense_user_gets_every_available_negative() -> None:
    ctx = make_context(n_users=5, n_items=25, seed=1)
    result = Evaluator(ctx, ks=(25,), sampled="uniform", n_negatives=100).evaluate(DotModel(ctx), VALID)
    seen = dense(ctx.seen(VALID))[result.users]
    assert ((result.topk >= 0).sum(1) == ctx.n_items - seen.sum(1)).all()


def test_no_warning_for_valid_settings() -> None:
    ctx = make_context()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Evaluator(ctx, ks=(10, 20)).evaluate(DotModel(ctx), VALID)


@pytest.mark.parametrize("item_chunk", [1, 3, 7, 50])
def test_masked_topk_kernel_equals_a_full_sort(item_chunk: int) -> None:
    """The one top-K kernel (evaluation and serving): per-row hidden items and globally blocked ones
    never appear, order is (score desc, item asc) whatever the chunking, and rows with fewer than k
    eligible items end in item -1 at -inf."""
    import scipy.sparse as sp

    from modalrec.errors import ConfigError
    from modalrec.eval.topk import masked_topk

    rng = np.random.default_rng(3)
    n_rows, n_items, k = 6, 23, 9
    scores = torch.from_numpy(rng.integers(0, 5, size=(n_rows, n_items)).astype(np.float32))  # many ties
    hide = sp.random(n_rows, n_items, density=0.3, random_state=4, format="csr")
    hide[5] = 1.0  # the last row hides every item: nothing is eligible
    blocked = np.zeros(n_items, dtype=bool)
    blocked[[2, 11, 17]] = True
    items, values = masked_topk(lambda a, b: scores[:, a:b].clone(), n_rows, n_items, k, item_chunk, hide.tocsr(), blocked)
    dense_hide = hide.toarray() != 0
    for row in range(n_rows):
        eligible = [i for i in range(n_items) if not dense_hide[row, i] and not blocked[i]]
        expected = sorted(eligible, key=lambda i: (-float(scores[row, i]), i))[:k]
        assert items[row, : len(expected)].tolist() == expected
        assert (items[row, len(expected) :] == -1).all() and np.isneginf(values[row, len(expected) :]).all()
    assert (items[5] == -1).all()
    wide, _ = masked_topk(lambda a, b: scores[:, a:b].clone(), n_rows, n_items, 10_000, item_chunk)
    assert wide.shape == (n_rows, n_items)  # k above the catalogue: each item once
    with pytest.raises(ConfigError, match="k must be >= 1"):
        masked_topk(lambda a, b: scores[:, a:b], n_rows, n_items, 0, item_chunk)


@pytest.mark.parametrize("item_chunk", [16, 1_000])
def test_masked_topk_orders_tied_rows_among_distinct_ones(item_chunk: int) -> None:
    """Rows of distinct scores (the one-chunk fast path keeps torch.topk's order) next to rows with ties,
    -0.0 beside 0.0 and a row shorter than k: every row in the exact (score desc, item asc) order."""
    from modalrec.eval.topk import masked_topk

    rng = np.random.default_rng(5)
    n_rows, n_items, k = 8, 40, 12
    scores = torch.from_numpy(rng.standard_normal((n_rows, n_items)).astype(np.float32))
    scores[1] = torch.from_numpy(rng.integers(0, 3, n_items).astype(np.float32))  # ties inside the top k
    scores[3, :] = 0.0
    scores[3, ::2] = -0.0  # -0.0 and 0.0 are one score
    scores[5, 6:] = -torch.inf  # only 6 finite scores
    items, values = masked_topk(lambda a, b: scores[:, a:b].clone(), n_rows, n_items, k, item_chunk)
    for row in range(n_rows):
        finite = [i for i in range(n_items) if scores[row, i] > -torch.inf]
        expected = sorted(finite, key=lambda i: (-float(scores[row, i]), i))[:k]
        assert items[row, : len(expected)].tolist() == expected
        assert (items[row, len(expected) :] == -1).all()
    assert items[3].tolist() == list(range(k))


def test_topk_of_users_in_any_order_matches_a_full_sort() -> None:
    # consecutive users share the seen matrix's arrays (Evaluator chunks); any other order indexes them
    ctx = make_context()
    model = DotModel(ctx, levels=3)  # coarse scores: many ties
    seen = dense(ctx.seen(TEST)) != 0
    scores = model_scores(model)
    for users in ([3, 4, 5, 6], [6, 4, 5, 3], [2, 4, 3, 5], [2, 2, 9], list(range(ctx.n_users))):
        items, _ = Evaluator(ctx, user_chunk=4).topk(model, users, 10, TEST)
        assert items.tolist() == naive_topk(scores[users], seen[users], 10)


@pytest.mark.parametrize("hidden_per_row", [1, 40])  # a sparse mask (positions read back) and a dense one (a tile pass)
@pytest.mark.parametrize("item_chunk", [500, 128])
@pytest.mark.parametrize("where", ["none", "hidden", "visible", "blocked"])
def test_masked_topk_finds_nan_wherever_the_mask_leaves_it(hidden_per_row: int, item_chunk: int, where: str) -> None:
    """check_nan sees every NaN of a chunk except those on blocked items (never scored for anyone), including
    NaN on masked (seen) items, with the chunk's scores as the model gave them."""
    import scipy.sparse as sp

    from modalrec.eval.topk import DENSE_MASK, masked_topk

    rng = np.random.default_rng(9)
    n_rows, n_items = 4, 500
    scores = torch.from_numpy(rng.normal(size=(n_rows, n_items)).astype(np.float32))
    columns = np.stack([rng.choice(np.arange(10, n_items), hidden_per_row, replace=False) for _ in range(n_rows)])
    hide = sp.csr_matrix(
        (np.ones(columns.size), (np.repeat(np.arange(n_rows), hidden_per_row), columns.ravel())), (n_rows, n_items)
    )
    assert (hidden_per_row * n_rows * DENSE_MASK > n_rows * min(item_chunk, n_items)) == (hidden_per_row == 40)
    blocked = np.zeros(n_items, dtype=bool)
    blocked[3] = True
    position = {"hidden": (2, int(columns[2, 0])), "visible": (1, 7), "blocked": (0, 3)}.get(where)
    if position is not None:
        scores[position] = torch.nan
    seen_nan: list[int] = []
    masked_topk(
        lambda a, b: scores[:, a:b].clone(),
        n_rows,
        n_items,
        5,
        item_chunk,
        hide,
        blocked,
        check_nan=lambda chunk, a, b: seen_nan.append(int(torch.isnan(chunk).sum())),
    )
    assert seen_nan == ([1] if where in ("hidden", "visible") else [])  # once, with the NaN still in the chunk
