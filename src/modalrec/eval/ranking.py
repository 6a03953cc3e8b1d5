"""Full-ranking evaluation: every user against every item, seen items masked, exact deterministic ties.

The evaluator tiles users x items. For each user chunk it encodes the queries once, then streams item
chunks through ``model.score_items``, masks the chunk's seen items to -inf and merges the chunk's best
k into a running top-k, so peak memory is O(user_chunk * item_chunk) whatever the catalogue size.

Ties: equal scores rank by lower item index, exactly and independent of the chunk sizes: the order is
the strict total order (score descending, item ascending). Building it for whole chunks is slow, so a
chunk is first cut with a float top-(k+1); only rows whose k-th and (k+1)-th values are equal (a tie
across the cut) are redone on int64 keys (:func:`order_keys`: an order-preserving integer of the
score in the high half, the item index in the low half), and the small merges of the per-chunk
top-k into the running top-k sort on (score, item) exactly.

Protocol: a user is evaluated in a phase when they have at least one target there. Seen items
(VALID: train; TEST: train + valid) are masked; a target that is also a seen item stays counted in
``|rel|`` but can never be hit. A score of -inf means "not recommended": such list positions hold item
-1 and never count as hits (this is where a user has fewer unseen items than k).

Sampled evaluation (``sampled="uniform" | "popularity"``) is offered for comparison with papers that
use it: per user, ``n_negatives`` items neither seen nor relevant are drawn (uniformly or in
proportion to train popularity, seeded) and the user's unseen relevant items are ranked among them.
The candidates are a subset of the full ranking's candidates holding every relevant one, so each
sampled metric is >= its full-ranking value for the same model. Results say so loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import SPLIT_NAMES, TEST, VALID
from modalrec.errors import ConfigError, ModalRecError, UnknownNameError
from modalrec.eval.metrics import list_metrics, split_metric_names, user_metrics
from modalrec.models.base import Recommender

DEFAULT_METRICS = ("recall", "ndcg", "hit", "mrr", "precision", "map")
BEYOND_ACCURACY = ("coverage", "avg_popularity", "gini")
SAMPLING_STRATEGIES = ("uniform", "popularity")

_NO_SCORES = np.zeros(0, dtype=np.float32)
_NO_ROWS = np.zeros(0, dtype=np.int64)
_LOW_32_BITS = 0xFFFFFFFF
_MAGNITUDE_BITS = 0x7FFFFFFF


class ScoringError(ModalRecError):
    """A model returned scores the evaluator cannot rank (NaN, wrong shape)."""


# ---------------------------------------------------------------------------------------------- result
@dataclass
class EvalResult:
    """Metrics of one evaluation pass, per user and summarised.

    ``users[i]`` is the user of row ``i`` of every ``per_user`` array and of ``topk``; ``topk`` holds
    the ranked item indices (-1 where a list is shorter). ``summary`` has the per-user means (and the
    beyond-accuracy metrics in full ranking); in sampled mode it also carries ``"sampled"``.
    """

    phase: int
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    summary: dict[str, Any]
    topk: np.ndarray
    sampled: str | None = None
    n_negatives: int | None = None
    ks: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings and summary (per-user arrays are left out)."""
        return {
            "phase": SPLIT_NAMES.get(self.phase, str(self.phase)),
            "n_users": int(len(self.users)),
            "ks": [int(k) for k in self.ks],
            "protocol": "full" if self.sampled is None else "sampled",
            "sampled": self.sampled,
            "n_negatives": None if self.n_negatives is None else int(self.n_negatives),
            "metrics": {key: float(value) for key, value in self.summary.items() if key != "sampled"},
        }

    def format_table(self) -> str:
        """A plain-text table: one row per metric, one column per cutoff."""
        header = f"{SPLIT_NAMES.get(self.phase, self.phase).upper()} — {len(self.users):,} users — "
        if self.sampled is None:
            header += "full ranking, seen items masked"
        else:
            header += (
                f"(sampled: {self.sampled}) !! SAMPLED EVALUATION: relevant items ranked against "
                f"{self.n_negatives} sampled negatives, NOT the full catalogue; optimistic and not "
                "comparable with full-ranking numbers"
            )
        names: list[str] = []
        for key in self.summary:
            if "@" in key and key.split("@")[0] not in names:
                names.append(key.split("@")[0])
        width = max([len("metric"), *map(len, names)])
        lines = [header, f"{'metric':<{width}}" + "".join(f"{'@' + str(k):>12}" for k in self.ks)]
        for name in names:
            cells = "".join(_format_cell(self.summary.get(f"{name}@{k}")) for k in self.ks)
            lines.append(f"{name:<{width}}{cells}")
        return "\n".join(lines)


def _format_cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>12}"
    return f"{value:>12.4f}" if abs(value) < 1000 else f"{value:>12.1f}"


# ---------------------------------------------------------------------------------------------- CSR rows
class _Rows:
    """A CSR matrix with sorted rows, read a chunk of users at a time without a Python loop."""

    def __init__(self, matrix: sp.csr_matrix):
        matrix = matrix.tocsr()
        matrix.sort_indices()
        self.matrix = matrix

    def counts(self) -> np.ndarray:
        return np.diff(self.matrix.indptr)

    def padded(self, users: np.ndarray, pad: int) -> np.ndarray:
        """The users' rows as a [B, max_len] array right-padded with ``pad`` (rows stay sorted when
        ``pad`` exceeds every column)."""
        rows = self.matrix[users]
        counts = np.diff(rows.indptr)
        out = np.full((len(users), max(int(counts.max(initial=0)), 1)), pad, dtype=np.int64)
        row_of = np.repeat(np.arange(len(users)), counts)
        out[row_of, np.arange(rows.nnz) - rows.indptr[:-1][row_of]] = rows.indices
        return out

    def row(self, user: int) -> np.ndarray:
        return self.matrix.indices[self.matrix.indptr[user] : self.matrix.indptr[user + 1]]


# ---------------------------------------------------------------------------------------------- exact order
def order_keys(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """int64 keys whose order is (score descending, item index ascending) as larger-is-better.

    The float32 bit pattern read as int32 orders non-negative floats; flipping the magnitude bits of
    negative ones makes it order all floats. ``+ 0.0`` turns -0.0 into +0.0 so equal scores get equal
    high halves; the low half is ``2^32 - 1 - item`` so the lower index wins a tie.
    """
    bits = (scores.float() + 0.0).view(torch.int32)
    bits = bits ^ ((bits >> 31) & _MAGNITUDE_BITS)
    return (bits.to(torch.int64) << 32) | (_LOW_32_BITS - items)


def _exact_topk(scores: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (scores, items) per row under the exact order, sorted best first."""
    order = torch.topk(order_keys(scores, items), min(k, scores.shape[1]), dim=1).indices
    return scores.gather(1, order), items.gather(1, order)


def _merge_topk(scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (scores, items) per row, sorted by score descending then item ascending.

    For the small [B, 2k] merges: numpy's lexsort on one thread beats a dozen tiny torch ops, each of
    which wakes the thread pool. Scores hold no NaN here (checked before) and -0.0 sorts equal to 0.0.
    """
    order = np.lexsort((items, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(items, order, 1)


def _chunk_topk(scores: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact best-k set of one item chunk (global indices ``offset + column``), not yet ordered.

    A float top-(k+1) is exact unless the k-th and (k+1)-th values tie; only those rows are redone on
    keys. Ties at -inf are left alone: those positions become 'not recommended' anyway.
    """
    n = scores.shape[1]
    if n <= k:
        columns = torch.arange(n, device=scores.device).expand(scores.shape[0], n)
        return scores, columns + offset
    values, columns = torch.topk(scores, k + 1, dim=1)
    tied = (values[:, k - 1] == values[:, k]) & (values[:, k - 1] > -torch.inf)
    values, columns = values[:, :k], columns[:, :k]
    if bool(tied.any()):
        rows = torch.nonzero(tied).squeeze(1)
        local = torch.arange(n, device=scores.device).expand(len(rows), n)
        exact_values, exact_columns = _exact_topk(scores[rows], local, k)
        values, columns = values.clone(), columns.clone()
        values[rows], columns[rows] = exact_values, exact_columns
    return values, columns + offset


def _hide(scores: torch.Tensor, flat_index: np.ndarray) -> np.ndarray:
    """Set the scores at ``flat_index`` (row-major positions) to -inf in place; returns what they were.

    On CPU this goes through numpy: these scattered writes are small, and torch's thread pool costs
    more to wake than the work (several times slower on a busy 2-core machine).
    """
    if scores.device.type == "cpu":
        flat = scores.view(-1).numpy()
        hidden = flat[flat_index]
        flat[flat_index] = -np.inf
        return hidden
    index = torch.from_numpy(flat_index).to(scores.device)
    hidden = scores.view(-1).take(index)
    scores.view(-1).index_fill_(0, index, -torch.inf)
    return hidden.cpu().numpy()


# ---------------------------------------------------------------------------------------------- the kernel
ScoreChunk = Callable[[int, int], torch.Tensor]
NanCheck = Callable[[torch.Tensor, np.ndarray, np.ndarray, int, int], None]


def masked_topk(
    score_chunk: ScoreChunk,
    n_rows: int,
    n_items: int,
    k: int,
    item_chunk: int,
    hide: sp.csr_matrix | None = None,
    blocked: np.ndarray | None = None,
    check_nan: NanCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k (items [n_rows, k], scores [n_rows, k]) of ``n_rows`` score rows, best first:
    the one top-K kernel of evaluation and serving.

    ``score_chunk(start, stop)`` gives the scores of items [start, stop) (float [n_rows, stop - start],
    on any device); item chunks of ``item_chunk`` stream through, so peak memory is one tile.
    ``hide`` (CSR [n_rows, n_items]) holds each row's masked items and ``blocked`` (bool [n_items])
    the items masked for every row; masked scores become -inf. Order: score descending, then lower
    item index (exact, independent of the chunk size). Positions past a row's last finite score hold
    item -1 and score -inf. ``check_nan(scores, hidden, hidden_rows, start, stop)`` is called for a
    chunk whose scores (or masked-out scores) hold a NaN; it should raise.
    """
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    k = min(int(k), n_items)
    if hide is not None and n_items > item_chunk:  # several item chunks: each reads its columns of the CSC
        by_column = hide.tocsc()
        by_column.sort_indices()
        mask_rows = by_column.indices.astype(np.int64)
        mask_items = np.repeat(np.arange(n_items), np.diff(by_column.indptr))
        item_ptr = by_column.indptr
    elif hide is not None:  # one chunk holds every item (most catalogues): the CSR's own entries, no conversion
        mask_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(hide.indptr))
        mask_items = hide.indices.astype(np.int64, copy=False)
        item_ptr = np.full(n_items + 1, hide.nnz)  # the only chunk, [0, n_items), holds entries [0, nnz)
        item_ptr[0] = 0
    best_scores = best_items = None
    for start in range(0, n_items, item_chunk):
        stop = min(start + item_chunk, n_items)
        scores = _writable(score_chunk(start, stop))
        if blocked is not None and blocked[start:stop].any():
            scores[:, torch.from_numpy(blocked[start:stop]).to(scores.device)] = -torch.inf
        hidden, hidden_rows = _NO_SCORES, _NO_ROWS
        if hide is not None:
            entries = slice(item_ptr[start], item_ptr[stop])
            hidden_rows = mask_rows[entries]
            hidden = _hide(scores, hidden_rows * (stop - start) + (mask_items[entries] - start))
        values, items = (part.cpu().numpy() for part in _chunk_topk(scores, k, start))
        # topk puts NaN first; a NaN among the hidden scores makes their sum NaN
        if check_nan is not None and (np.isnan(values[:, 0]).any() or np.isnan(hidden.sum())):
            check_nan(scores, hidden, hidden_rows, start, stop)
        if best_scores is not None:
            values, items = np.concatenate([best_scores, values], 1), np.concatenate([best_items, items], 1)
        best_scores, best_items = _merge_topk(values, items, k)
        del scores  # free this tile before the next is scored: peak memory is one tile, not two
    if best_scores is None:
        return np.zeros((n_rows, 0), dtype=np.int64), np.zeros((n_rows, 0), dtype=np.float32)
    return np.where(best_scores == -np.inf, -1, best_items), best_scores


def _writable(scores: torch.Tensor) -> torch.Tensor:
    """float32 scores that masking may write into in place (a model's own tensor is copied)."""
    if scores.dtype != torch.float32:
        return scores.float()
    if scores._base is not None:  # a view of something the model keeps: do not mask it in place
        return scores.clone()
    return scores.contiguous()


# ---------------------------------------------------------------------------------------------- sampling
class _NegativeSampler:
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


# ---------------------------------------------------------------------------------------------- evaluator
class Evaluator:
    """Ranks every evaluated user's unseen items with a model and computes top-K metrics.

    ``ks``: cutoffs; ``metrics``: per-user and/or beyond-accuracy names (see
    :mod:`modalrec.eval.metrics`), ``beyond``: beyond-accuracy names added in full ranking;
    ``user_chunk`` x ``item_chunk``: the score tile, which bounds memory; ``sampled``: None for full
    ranking (the default and the protocol to report), or "uniform" / "popularity" with
    ``n_negatives`` negatives per user drawn with ``seed``.
    """

    def __init__(
        self,
        ctx: DataContext,
        ks: Sequence[int] = (10, 20),
        metrics: Iterable[str] = DEFAULT_METRICS,
        user_chunk: int = 1024,
        item_chunk: int = 100_000,
        sampled: str | None = None,
        n_negatives: int = 100,
        seed: int = 0,
        beyond: Iterable[str] = BEYOND_ACCURACY,
    ):
        if not ks or any(int(k) != k or k < 1 for k in ks):
            raise ConfigError(f"eval ks must be positive integers, got {list(ks)}")
        for key, value in (("user_chunk", user_chunk), ("item_chunk", item_chunk)):
            if int(value) < 1:
                raise ConfigError(f"eval {key} must be >= 1, got {value}")
        if sampled is not None and sampled not in SAMPLING_STRATEGIES:
            raise UnknownNameError("sampling strategy", str(sampled), SAMPLING_STRATEGIES)
        if sampled is not None and int(n_negatives) < 1:
            raise ConfigError(f"eval n_negatives must be >= 1 for sampled evaluation, got {n_negatives}")
        self.ctx = ctx
        self.ks = self._clamp_ks(ks, ctx.n_items)
        self.user_metric_names, self.list_metric_names = split_metric_names([*metrics, *beyond])
        self.user_chunk = int(user_chunk)
        self.item_chunk = int(item_chunk)
        self.sampled = sampled
        self.n_negatives = int(n_negatives)
        self.seed = int(seed)
        self.popularity = (
            ctx.item_popularity if ctx.item_popularity is not None else np.asarray(ctx.train.sum(axis=0)).ravel().astype(np.int64)
        )
        self._seen: dict[int, _Rows] = {}
        self._targets: dict[int, _Rows] = {}

    @staticmethod
    def _clamp_ks(ks: Iterable[int], n_items: int) -> tuple[int, ...]:
        """Sorted unique cutoffs, those above the catalogue size lowered to it with a warning."""
        out = []
        for k in sorted({int(k) for k in ks}):
            if k > n_items:
                warnings.warn(f"k={k} exceeds the {n_items} items of the catalogue; using k={n_items}", stacklevel=3)
                k = n_items
            if k not in out:
                out.append(k)
        return tuple(out)

    # ------------------------------------------------------------------ public API
    def summary_keys(self) -> list[str]:
        """The ``name@k`` keys that :meth:`evaluate`'s summary holds (list metrics in full ranking only)."""
        names = [*self.user_metric_names, *(self.list_metric_names if self.sampled is None else ())]
        return [f"{name}@{k}" for name in names for k in self.ks]

    def evaluate(self, model: Recommender, phase: int) -> EvalResult:
        """Metrics of ``model`` on ``phase`` (VALID or TEST) over every user with a target there."""
        self._check_phase(phase)
        targets = self._rows(self._targets, self.ctx.targets, phase)
        n_relevant_all = targets.counts()
        users = np.flatnonzero(n_relevant_all > 0)
        max_k = self.ks[-1]
        hits_parts, topk_parts = [], []
        rng = np.random.default_rng(self.seed)
        sampler = None if self.sampled is None else _NegativeSampler(self.sampled, self.ctx.n_items, self.popularity, self.n_negatives)
        with _scoring_mode(model):
            for start in range(0, len(users), self.user_chunk):
                chunk = users[start : start + self.user_chunk]
                query = model.encode(model.eval_batch(chunk, self.ctx, phase))
                if self.sampled is None:
                    items, _ = self._rank(model, query, chunk, max_k, self._rows(self._seen, self.ctx.seen, phase))
                    hits = self._hits(items, targets.padded(chunk, self.ctx.n_items))
                else:
                    items, hits = self._rank_sampled(model, query, chunk, max_k, phase, sampler, rng)
                hits_parts.append(hits.numpy())
                topk_parts.append(items.numpy())
        hits = np.concatenate(hits_parts) if hits_parts else np.zeros((0, max_k), dtype=bool)
        topk = np.concatenate(topk_parts) if topk_parts else np.zeros((0, max_k), dtype=np.int64)
        per_user = user_metrics(hits, n_relevant_all[users], self.user_metric_names, self.ks)
        summary: dict[str, Any] = {key: float(values.mean()) if len(values) else 0.0 for key, values in per_user.items()}
        if self.sampled is None:
            summary.update(list_metrics(topk, self.list_metric_names, self.ks, self.ctx.n_items, self.popularity))
        else:
            summary["sampled"] = f"{self.sampled}-{self.n_negatives}"
        return EvalResult(
            phase=phase,
            users=users,
            per_user=per_user,
            summary=summary,
            topk=topk,
            sampled=summary.get("sampled"),
            n_negatives=self.n_negatives if self.sampled else None,
            ks=self.ks,
        )

    def topk(
        self, model: Recommender, users: Sequence[int] | np.ndarray, k: int, phase: int, exclude_seen: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best ``k`` items (LongTensor [B, k]) and their scores ([B, k]) for ``users``, best first.

        Seen items of ``phase`` are excluded unless ``exclude_seen`` is False; where fewer than k items
        are left, the tail holds item -1 with score -inf.
        """
        self._check_phase(phase)
        (k,) = self._clamp_ks([k], self.ctx.n_items)
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        seen = self._rows(self._seen, self.ctx.seen, phase) if exclude_seen else None
        items_parts, scores_parts = [], []
        with _scoring_mode(model):
            for start in range(0, len(users), self.user_chunk):
                chunk = users[start : start + self.user_chunk]
                query = model.encode(model.eval_batch(chunk, self.ctx, phase))
                items, scores = self._rank(model, query, chunk, k, seen)
                items_parts.append(items)
                scores_parts.append(scores)
        if not items_parts:
            return torch.zeros((0, k), dtype=torch.long), torch.zeros((0, k))
        return torch.cat(items_parts), torch.cat(scores_parts)

    # ------------------------------------------------------------------ full ranking
    def _rank(
        self, model: Recommender, query: Any, users: np.ndarray, k: int, seen: _Rows | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k (items, scores) on CPU for one user chunk, masking the users' seen items."""
        items, scores = masked_topk(
            lambda start, stop: self._chunk_scores(model, query, start, stop, len(users)),
            len(users),
            self.ctx.n_items,
            k,
            self.item_chunk,
            hide=None if seen is None else seen.matrix[users],
            check_nan=lambda scores, hidden, rows, start, stop: self._check_nan(model, scores, hidden, rows, users, start, stop),
        )
        return torch.from_numpy(items), torch.from_numpy(scores)

    @staticmethod
    def _hits(items: torch.Tensor, sorted_targets: np.ndarray) -> torch.Tensor:
        """hits[b, j] = items[b, j] is among user b's targets, by one binary search: row b's values are
        shifted by b * (max value + 1), which keeps the flattened target rows sorted."""
        items_np = items.numpy()
        shift = (np.arange(len(items_np)) * (int(max(sorted_targets.max(initial=0), items_np.max(initial=0))) + 1))[:, None]
        haystack = (sorted_targets + shift).ravel()
        needles = items_np + shift
        position = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
        return torch.from_numpy((haystack[position] == needles) & (items_np >= 0))

    # ------------------------------------------------------------------ sampled ranking
    def _rank_sampled(
        self,
        model: Recommender,
        query: Any,
        users: np.ndarray,
        k: int,
        phase: int,
        sampler: _NegativeSampler,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(items [B, k], hits [B, k]) ranking each user's unseen relevant items among sampled negatives."""
        seen = self._rows(self._seen, self.ctx.seen, phase)
        targets = self._rows(self._targets, self.ctx.targets, phase)
        rows = []
        for user in users.tolist():
            seen_items, relevant = seen.row(user), targets.row(user)
            excluded = np.union1d(seen_items, relevant)
            relevant = np.setdiff1d(relevant, seen_items, assume_unique=True)
            rows.append((relevant, sampler.sample(rng, excluded)))
        width = max(1, *(len(r) + len(n) for r, n in rows))
        candidates = torch.full((len(users), width), -1, dtype=torch.long)
        is_relevant = torch.zeros((len(users), width), dtype=torch.bool)
        for b, (relevant, negatives) in enumerate(rows):
            candidates[b, : len(relevant) + len(negatives)] = torch.from_numpy(np.concatenate([relevant, negatives]))
            is_relevant[b, : len(relevant)] = True
        candidate_scores = torch.full(candidates.shape, -torch.inf)
        row_of = torch.arange(len(users)).unsqueeze(1).expand_as(candidates)
        for start in range(0, self.ctx.n_items, self.item_chunk):
            stop = min(start + self.item_chunk, self.ctx.n_items)
            scores = self._chunk_scores(model, query, start, stop, len(users))
            inside = (candidates >= start) & (candidates < stop)
            index = (row_of[inside].to(scores.device), (candidates[inside] - start).to(scores.device))
            candidate_scores[inside] = scores[index].cpu()
            del scores
        self._check_nan(model, candidate_scores, _NO_SCORES, _NO_ROWS, users, 0, self.ctx.n_items)
        keys = order_keys(candidate_scores, candidates.clamp(min=0)).masked_fill(candidates < 0, torch.iinfo(torch.int64).min)
        order = torch.topk(keys, min(k, width), dim=1).indices
        ranked_scores = candidate_scores.gather(1, order)
        items = candidates.gather(1, order).masked_fill(ranked_scores == -torch.inf, -1)
        hits = is_relevant.gather(1, order) & (items >= 0)
        if items.shape[1] < k:  # fewer candidates than k: the tail is 'not recommended'
            pad = k - items.shape[1]
            items = torch.nn.functional.pad(items, (0, pad), value=-1)
            hits = torch.nn.functional.pad(hits, (0, pad), value=False)
        return items, hits

    # ------------------------------------------------------------------ helpers
    def _chunk_scores(self, model: Recommender, query: Any, start: int, stop: int, n_users: int) -> torch.Tensor:
        """The model's scores [B, stop - start], shape-checked."""
        scores = model.score_items(query, slice(start, stop))
        if tuple(scores.shape) != (n_users, stop - start):
            raise ScoringError(
                f"model '{_model_name(model)}' returned scores of shape {tuple(scores.shape)} for items "
                f"[{start}, {stop}), expected ({n_users}, {stop - start}) = (users in batch, items in range)"
            )
        return scores

    @staticmethod
    def _check_nan(
        model: Recommender,
        scores: torch.Tensor,
        hidden: np.ndarray,
        hidden_rows: np.ndarray,
        users: np.ndarray,
        start: int,
        stop: int,
    ) -> None:
        """Stop with the model, the number of NaN scores and the users they belong to, if there are any
        in ``scores`` or in the masked-out ``hidden`` scores (of chunk rows ``hidden_rows``)."""
        hidden_nan = np.isnan(hidden)
        count = int(torch.isnan(scores).sum()) + int(hidden_nan.sum())
        if count == 0:
            return
        nan_rows = torch.isnan(scores).any(dim=1).cpu().numpy()
        nan_rows[hidden_rows[hidden_nan]] = True
        bad_users = users[nan_rows][:5].tolist()
        raise ScoringError(
            f"model '{_model_name(model)}' returned {count} NaN scores among {len(users)} users x items "
            f"[{start}, {stop}) (first users: {bad_users}); the model has diverged or reads NaN inputs — "
            "check its features, learning rate and loss"
        )

    @staticmethod
    def _rows(cache: dict[int, _Rows], build: Any, phase: int) -> _Rows:
        if phase not in cache:
            cache[phase] = _Rows(build(phase))
        return cache[phase]

    @staticmethod
    def _check_phase(phase: int) -> None:
        if phase not in (VALID, TEST):
            raise ConfigError(f"evaluation phase must be VALID ({VALID}) or TEST ({TEST}), got {phase!r}")


def _model_name(model: Recommender) -> str:
    return getattr(model, "name", "") or type(model).__name__


@contextmanager
def _scoring_mode(model: Recommender) -> Iterator[None]:
    """model.eval() under torch.no_grad() with prepare_scoring() once; the training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.prepare_scoring()
            yield
    finally:
        model.train(was_training)
