"""Top-K metrics, vectorised over users.

Two kinds, one registry of names:

- *per-user* (accuracy) metrics read the hits of the lists cut at k (:class:`Hits`: the (row, rank) pairs of
  the hit matrix [U, k], column ``j`` is rank ``j + 1``) and the number of relevant items ``n_relevant`` [U];
  they return one float per user, so significance tests can pair users across models.
- *list* (beyond-accuracy) metrics describe all evaluated users' top-k item lists ``topk`` [U, k] (item
  indices, ``-1`` where a list is shorter than k) as a whole; each reads the lists' recommendation
  counts per item (:func:`recommendation_counts`).

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
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from modalrec.errors import UnknownNameError

UserMetric = Callable[["Hits", np.ndarray], np.ndarray]
ListMetric = Callable[[np.ndarray, np.ndarray], float]


def _ranks(k: int) -> np.ndarray:
    """1-based ranks 1..k as float64."""
    return np.arange(1, k + 1, dtype=np.float64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape), where=denominator > 0)


# ---------------------------------------------------------------------------------------- per-user
@dataclass(frozen=True)
class Hits:
    """The hits of ``n_users`` ranked lists cut at ``k``: (list row, 0-based rank) of every hit, row-major.

    Hits are sparse (at most |rel| per list), so sums over them are bincounts over the hits rather than passes
    over the dense [U, k] matrix, and one set of pairs serves every cutoff (:meth:`upto`).
    """

    rows: np.ndarray
    ranks: np.ndarray
    n_users: int
    k: int

    @classmethod
    def from_matrix(cls, hits: np.ndarray) -> Hits:
        rows, ranks = np.nonzero(hits)
        return cls(rows, ranks, hits.shape[0], hits.shape[1])

    def upto(self, k: int) -> Hits:
        """The same lists cut at ``k`` <= this cut."""
        keep = self.ranks < k
        return Hits(self.rows[keep], self.ranks[keep], self.n_users, k)

    def per_user(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Per list, the number of hits (or the sum of ``weights`` over them)."""
        return np.bincount(self.rows, weights=weights, minlength=self.n_users).astype(np.float64, copy=False)

    def first_of_row(self) -> np.ndarray:
        """Positions (into rows / ranks) of each hit list's first hit."""
        return np.flatnonzero(np.diff(self.rows, prepend=-1) != 0)


def recall(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """Share of a user's relevant items found in the top k."""
    return _safe_divide(hits.per_user(), n_relevant)


def precision(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """Share of the k recommended positions that are relevant."""
    return hits.per_user() / max(hits.k, 1)


def hit(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """1 when at least one relevant item is in the top k."""
    return np.minimum(hits.per_user(), 1.0)


def mrr(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top k (0 when none)."""
    out = np.zeros(hits.n_users)
    first = hits.first_of_row()
    out[hits.rows[first]] = 1.0 / (hits.ranks[first] + 1.0)
    return out


def ndcg(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """DCG with binary gains and a log2(rank + 1) discount, over the ideal DCG of min(|rel|, k) hits."""
    discount = 1.0 / np.log2(_ranks(hits.k) + 1.0)
    dcg = hits.per_user(discount[hits.ranks])
    ideal_prefix = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal_prefix[np.minimum(np.asarray(n_relevant, dtype=np.int64), hits.k)]
    return _safe_divide(dcg, idcg)


def average_precision(hits: Hits, n_relevant: np.ndarray) -> np.ndarray:
    """Sum of precision@i over the ranks i that hit, divided by min(|rel|, k)."""
    first = hits.first_of_row()
    hits_so_far = np.arange(len(hits.rows)) - np.repeat(first, np.diff(first, append=len(hits.rows))) + 1.0
    summed = hits.per_user(hits_so_far / (hits.ranks + 1.0))
    return _safe_divide(summed, np.minimum(np.asarray(n_relevant, dtype=np.int64), hits.k))


# ---------------------------------------------------------------------------------------- list-wide
# Each reads ``counts`` [n_items]: how often each item is recommended over all top-k lists (one bincount per k
# serves every list metric).
def recommendation_counts(topk: np.ndarray, n_items: int) -> np.ndarray:
    """How often each catalogue item appears in the lists ``topk`` [U, k] (-1 padding ignored)."""
    flat = np.asarray(topk).ravel()
    return np.bincount(flat[flat >= 0], minlength=n_items)


def coverage(counts: np.ndarray, popularity: np.ndarray) -> float:
    """Distinct recommended items over the catalogue size."""
    return float(np.count_nonzero(counts) / max(len(counts), 1))


def avg_popularity(counts: np.ndarray, popularity: np.ndarray) -> float:
    """Mean train popularity (interaction count) of the recommended items."""
    total = counts.sum()
    return float(counts @ np.asarray(popularity, dtype=np.float64) / total) if total else 0.0


def gini(counts: np.ndarray, popularity: np.ndarray) -> float:
    """Gini index of the recommendation counts over all catalogue items: 0 when every item is
    recommended equally often, towards 1 when a few items take all slots."""
    n_items = len(counts)
    ordered = np.sort(counts).astype(np.float64)
    total = ordered.sum()
    if total == 0 or n_items == 0:
        return 0.0
    weights = 2.0 * np.arange(1, n_items + 1) - n_items - 1
    return float((weights @ ordered) / (n_items * total))


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
    """Per-user values ``"name@k" -> [U]`` for each metric and cutoff (``hits`` [U, >= max(ks)] bool)."""
    ks = list(ks)
    names = list(names)
    fns = [(name, USER_METRICS.get(name) or _unknown(name)) for name in names]
    every = Hits.from_matrix(np.asarray(hits, dtype=bool)[:, : max(ks, default=0)])
    n_relevant = np.asarray(n_relevant)
    out: dict[str, np.ndarray] = {}
    for k in ks if fns else ():
        at_k = every.upto(k)
        out.update({f"{name}@{k}": fn(at_k, n_relevant) for name, fn in fns})
    return {f"{name}@{k}": out[f"{name}@{k}"] for name in names for k in ks}


def list_metrics(
    topk: np.ndarray, names: Iterable[str], ks: Iterable[int], n_items: int, popularity: np.ndarray
) -> dict[str, float]:
    """Beyond-accuracy values ``"name@k" -> float`` over the top-k lists of all evaluated users."""
    names = list(names)
    fns = [(name, LIST_METRICS.get(name) or _unknown(name)) for name in names]
    out: dict[str, float] = {}
    for k in ks if fns else ():
        counts = recommendation_counts(np.asarray(topk)[:, :k], n_items)
        out.update({f"{name}@{k}": fn(counts, popularity) for name, fn in fns})
    return {f"{name}@{k}": out[f"{name}@{k}"] for name in names for k in ks}


def _unknown(name: str) -> NoReturn:
    raise UnknownNameError("metric", name, known_metrics())
