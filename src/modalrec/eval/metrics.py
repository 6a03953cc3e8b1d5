"""Top-K metrics, vectorised over users.

Two kinds, one registry of names:

- *per-user* (accuracy) metrics read a hit matrix ``hits`` [U, k] (bool, column ``j`` is rank ``j + 1``
  of each user's list) and the number of relevant items ``n_relevant`` [U]; they return one float per
  user, so significance tests can pair users across models.
- *list* (beyond-accuracy) metrics read all evaluated users' top-k item lists ``topk`` [U, k] (item
  indices, ``-1`` where a list is shorter than k) and describe the recommendations as a whole.

Definitions (binary relevance, ranks from 1):
recall@k = hits / |rel|; precision@k = hits / k; hit@k = 1 if any hit; mrr@k = 1 / rank of the first
hit (0 if none); ndcg@k = sum_hits 1/log2(rank + 1) / IDCG with IDCG over min(|rel|, k) ideal hits;
map@k = sum over hit ranks i of precision@i, divided by min(|rel|, k);
coverage@k = distinct recommended items / n_items; avg_popularity@k = mean train popularity of the
recommended items; gini@k = Gini index of how often each catalogue item is recommended (0 = equal).
Users with no relevant item score 0 on every per-user metric (the evaluator never passes them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NoReturn

import numpy as np

from modalrec.errors import UnknownNameError

UserMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]
ListMetric = Callable[[np.ndarray, int, np.ndarray], float]


def _ranks(k: int) -> np.ndarray:
    """1-based ranks 1..k as float64."""
    return np.arange(1, k + 1, dtype=np.float64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape), where=denominator > 0)


# ---------------------------------------------------------------------------------------- per-user
def recall(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Share of a user's relevant items found in the top k."""
    return _safe_divide(hits.sum(axis=1, dtype=np.float64), n_relevant)


def precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Share of the k recommended positions that are relevant."""
    return hits.sum(axis=1, dtype=np.float64) / max(hits.shape[1], 1)


def hit(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """1 when at least one relevant item is in the top k."""
    return np.asarray(hits.any(axis=1), dtype=np.float64)


def mrr(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top k (0 when none)."""
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """DCG with binary gains and a log2(rank + 1) discount, over the ideal DCG of min(|rel|, k) hits."""
    k = hits.shape[1]
    discount = 1.0 / np.log2(_ranks(k) + 1.0)
    dcg = hits @ discount
    ideal_prefix = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal_prefix[np.minimum(np.asarray(n_relevant, dtype=np.int64), k)]
    return _safe_divide(dcg, idcg)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Sum of precision@i over the ranks i that hit, divided by min(|rel|, k)."""
    k = hits.shape[1]
    precision_at_rank = np.cumsum(hits, axis=1, dtype=np.float64) / _ranks(k)
    summed = (precision_at_rank * hits).sum(axis=1)
    return _safe_divide(summed, np.minimum(np.asarray(n_relevant, dtype=np.int64), k))


# ---------------------------------------------------------------------------------------- list-wide
def _recommended(topk: np.ndarray) -> np.ndarray:
    """The recommended item indices of all lists, flattened, without the -1 padding."""
    flat = np.asarray(topk).ravel()
    return flat[flat >= 0]


def coverage(topk: np.ndarray, n_items: int, popularity: np.ndarray) -> float:
    """Distinct recommended items over the catalogue size (a bincount: linear, where np.unique sorts)."""
    return float(np.count_nonzero(np.bincount(_recommended(topk), minlength=n_items)) / max(n_items, 1))


def avg_popularity(topk: np.ndarray, n_items: int, popularity: np.ndarray) -> float:
    """Mean train popularity (interaction count) of the recommended items."""
    items = _recommended(topk)
    return float(np.asarray(popularity, dtype=np.float64)[items].mean()) if items.size else 0.0


def gini(topk: np.ndarray, n_items: int, popularity: np.ndarray) -> float:
    """Gini index of the recommendation counts over all catalogue items: 0 when every item is
    recommended equally often, towards 1 when a few items take all slots."""
    counts = np.sort(np.bincount(_recommended(topk), minlength=n_items).astype(np.float64))
    total = counts.sum()
    if total == 0 or n_items == 0:
        return 0.0
    weights = 2.0 * np.arange(1, n_items + 1) - n_items - 1
    return float((weights @ counts) / (n_items * total))


USER_METRICS: dict[str, UserMetric] = {
    "recall": recall,
    "ndcg": ndcg,
    "hit": hit,
    "mrr": mrr,
    "precision": precision,
    "map": average_precision,
}
LIST_METRICS: dict[str, ListMetric] = {
    "coverage": coverage,
    "avg_popularity": avg_popularity,
    "gini": gini,
}


def known_metrics() -> list[str]:
    """All metric names the evaluator accepts."""
    return sorted([*USER_METRICS, *LIST_METRICS])


def split_metric_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(per-user names, list names) in the given order, duplicates dropped; unknown names raise
    :class:`UnknownNameError` listing the known ones."""
    user: list[str] = []
    lists: list[str] = []
    for name in names:
        key = str(name).lower()
        if key in USER_METRICS:
            target = user
        elif key in LIST_METRICS:
            target = lists
        else:
            raise UnknownNameError("metric", str(name), known_metrics())
        if key not in target:
            target.append(key)
    return user, lists


def user_metrics(hits: np.ndarray, n_relevant: np.ndarray, names: Iterable[str], ks: Iterable[int]) -> dict[str, np.ndarray]:
    """Per-user values ``"name@k" -> [U]`` for each metric and cutoff (``hits`` has >= max(ks) columns)."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant)
    out: dict[str, np.ndarray] = {}
    for name in names:
        fn = USER_METRICS.get(name) or _unknown(name)
        for k in ks:
            out[f"{name}@{k}"] = fn(hits[:, :k], n_relevant)
    return out


def list_metrics(
    topk: np.ndarray, names: Iterable[str], ks: Iterable[int], n_items: int, popularity: np.ndarray
) -> dict[str, float]:
    """Beyond-accuracy values ``"name@k" -> float`` over the top-k lists of all evaluated users."""
    out: dict[str, float] = {}
    for name in names:
        fn = LIST_METRICS.get(name) or _unknown(name)
        for k in ks:
            out[f"{name}@{k}"] = fn(np.asarray(topk)[:, :k], n_items, popularity)
    return out


def _unknown(name: str) -> NoReturn:
    raise UnknownNameError("metric", name, known_metrics())
