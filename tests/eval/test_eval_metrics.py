"""Every metric against a naive per-user implementation on random inputs, plus hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modalrec.errors import UnknownNameError
from modalrec.eval import metrics as M


# ------------------------------------------------------------------ naive references, one user at a time
def naive_user(name: str, hit_row: list[bool], n_rel: int) -> float:
    k = len(hit_row)
    ranks = [i + 1 for i, h in enumerate(hit_row) if h]
    if name == "recall":
        return len(ranks) / n_rel if n_rel else 0.0
    if name == "precision":
        return len(ranks) / k
    if name == "hit":
        return 1.0 if ranks else 0.0
    if name == "mrr":
        return 1.0 / ranks[0] if ranks else 0.0
    if name == "ndcg":
        dcg = sum(1.0 / math.log2(r + 1) for r in ranks)
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_rel, k) + 1))
        return dcg / idcg if idcg else 0.0
    if name == "map":
        total, found = 0.0, 0
        for i, h in enumerate(hit_row, start=1):
            if h:
                found += 1
                total += found / i
        return total / min(n_rel, k) if n_rel else 0.0
    raise AssertionError(name)


def naive_list(name: str, lists: list[list[int]], n_items: int, popularity: list[int]) -> float:
    recommended = [i for row in lists for i in row if i >= 0]
    if name == "coverage":
        return len(set(recommended)) / n_items
    if name == "avg_popularity":
        return sum(popularity[i] for i in recommended) / len(recommended)
    if name == "gini":  # mean absolute difference form: sum_ij |x_i - x_j| / (2 n^2 mean)
        counts = [recommended.count(i) for i in range(n_items)]
        mean = sum(counts) / n_items
        return sum(abs(a - b) for a in counts for b in counts) / (2 * n_items**2 * mean)
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(M.USER_METRICS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_user_metric_matches_naive(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, width = 200, 25
    hits = rng.random((n_users, width)) < rng.uniform(0.02, 0.4, size=(n_users, 1))
    n_rel = hits.sum(1) + rng.integers(0, 6, n_users)
    n_rel[n_rel == 0] = 1
    for k in (1, 5, 25):
        got = M.user_metrics(hits, n_rel, [name], [k])[f"{name}@{k}"]
        expected = [naive_user(name, hits[u, :k].tolist(), int(n_rel[u])) for u in range(n_users)]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(M.LIST_METRICS))
def test_list_metric_matches_naive(name: str) -> None:
    rng = np.random.default_rng(7)
    n_items = 40
    popularity = rng.integers(0, 30, n_items)
    topk = rng.integers(0, n_items, size=(60, 10)) ** 2 % n_items  # skewed counts
    topk[rng.random(topk.shape) < 0.05] = -1  # short lists
    for k in (3, 10):
        got = M.list_metrics(topk, [name], [k], n_items, popularity)[f"{name}@{k}"]
        assert got == pytest.approx(naive_list(name, topk[:, :k].tolist(), n_items, popularity.tolist()), abs=1e-12)


def test_hand_computed_user_metrics() -> None:
    hits = np.array([[False, True, False, True], [True, False, False, False], [False, False, False, False]])
    n_rel = np.array([2, 3, 1])
    out = M.user_metrics(hits, n_rel, list(M.USER_METRICS), [4])
    np.testing.assert_allclose(out["recall@4"], [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(out["precision@4"], [0.5, 0.25, 0.0])
    np.testing.assert_allclose(out["hit@4"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(out["mrr@4"], [0.5, 1.0, 0.0])
    idcg2 = 1 + 1 / math.log2(3)
    idcg3 = idcg2 + 0.5
    np.testing.assert_allclose(out["ndcg@4"], [(1 / math.log2(3) + 1 / math.log2(5)) / idcg2, 1 / idcg3, 0.0])
    np.testing.assert_allclose(out["map@4"], [(1 / 2 + 2 / 4) / 2, 1 / 3, 0.0])


def test_cutoff_caps_ideal_dcg_and_map_denominator() -> None:
    hits = np.array([[True, True]])
    out = M.user_metrics(hits, np.array([5]), ["ndcg", "map", "recall"], [2])
    assert out["ndcg@2"][0] == pytest.approx(1.0)  # perfect list of length 2, though 5 are relevant
    assert out["map@2"][0] == pytest.approx(1.0)
    assert out["recall@2"][0] == pytest.approx(0.4)


def test_hand_computed_list_metrics() -> None:
    popularity = np.array([10, 0, 4, 6])
    equal = M.recommendation_counts(np.array([[0, 1], [2, 3]]), 4)
    assert M.coverage(equal, popularity) == 1.0
    assert M.gini(equal, popularity) == pytest.approx(0.0)
    assert M.avg_popularity(equal, popularity) == pytest.approx(5.0)
    concentrated = M.recommendation_counts(np.array([[2, -1], [2, -1], [2, -1]]), 4)
    assert concentrated.tolist() == [0, 0, 3, 0]
    assert M.coverage(concentrated, popularity) == 0.25
    assert M.gini(concentrated, popularity) == pytest.approx(3 / 4)  # (n - 1) / n: one item takes all
    assert M.avg_popularity(concentrated, popularity) == pytest.approx(4.0)


def test_every_cutoff_at_once_equals_one_cutoff_at_a_time() -> None:
    rng = np.random.default_rng(3)
    hits = rng.random((50, 12)) < 0.2
    n_rel = rng.integers(1, 8, 50)
    together = M.user_metrics(hits, n_rel, list(M.USER_METRICS), [1, 4, 12])
    for k in (1, 4, 12):
        alone = M.user_metrics(hits[:, :k], n_rel, list(M.USER_METRICS), [k])
        for key, values in alone.items():
            np.testing.assert_allclose(together[key], values, rtol=1e-12, atol=1e-15)


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        M.split_metric_names(["recall", "ndgc"])
    message = str(err.value)
    assert "ndgc" in message and "ndcg" in message and "coverage" in message


def test_split_metric_names_sorts_kinds_and_drops_duplicates() -> None:
    assert M.split_metric_names(["NDCG", "gini", "recall", "ndcg"]) == (["ndcg", "recall"], ["gini"])
