"""Full-ranking evaluation: every user against every item, seen items masked, exact deterministic ties.

The evaluator tiles users x items. For each user chunk it encodes the queries once, then streams item
chunks through ``model.score_items``, masks the chunk's seen items to -inf and merges the chunk's best
k into a running top-k, so peak memory is O(user_chunk * item_chunk) whatever the catalogue size.

Ties break by lower item index, exactly (:mod:`modalrec.eval.topk`, the kernel serving uses too).

Protocol: a user is evaluated in a phase when they have at least one target there. Seen items
(VALID: train; TEST: train + valid) are masked; a target that is also a seen item stays counted in
``|rel|`` but can never be hit. A score of -inf means "not recommended": such list positions hold item
-1 and never count as hits (this is where a user has fewer unseen items than k).

Warm / cold targets: when the split held items out of training (``ctx.cold_items``, the
``dataset.split.cold_items`` share), every per-user metric is also reported as ``warm/<name>@k`` over the
users' warm targets only and ``cold/<name>@k`` over their cold targets only (each averaged over the users that
have such a target; ``warm/users`` and ``cold/users`` count them). The ranked list is the same mixed list over
the whole catalogue: a cold item ranked above a warm target costs the warm metric a place, as it would a user.
That mixed list asks whether a model *recommends* cold items. A model that cannot represent cold items (ID-only:
:meth:`~modalrec.models.base.Recommender.unscored_items`) never recommends them, in either list, so its ``cold/``
and ``cold-only/`` metrics are 0 by construction. ``cold-only/<name>@k`` asks whether it can *rank* them (the strict cold-start
protocol, e.g. DropoutNet, CLCRec): the same users' cold targets ranked among the unseen cold items only.

Sampled evaluation (``sampled="uniform" | "popularity"``) is offered for comparison with papers that
use it: per user, ``n_negatives`` items neither seen nor relevant are drawn (uniformly or in
proportion to train popularity, seeded) and the user's unseen relevant items are ranked among them.
The candidates are a subset of the full ranking's candidates holding every relevant one, so each
sampled metric is >= its full-ranking value for the same model. Results say so loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, VALID
from modalrec.data.negatives import NegativeSampler
from modalrec.errors import ConfigError, ModalRecError, UnknownNameError
from modalrec.eval.metrics import list_metrics, split_metric_names, user_metrics
from modalrec.eval.results import EvalResult
from modalrec.eval.topk import masked_topk, order_keys
from modalrec.models.base import Recommender

DEFAULT_METRICS = ("recall", "ndcg", "hit", "mrr", "precision", "map")
BEYOND_ACCURACY = ("coverage", "avg_popularity", "gini")
SAMPLING_STRATEGIES = ("uniform", "popularity")
_BROADCAST_TARGETS = 4  # up to this many targets per user, hits by a [B, k, T] comparison instead of a search


class ScoringError(ModalRecError):
    """A model returned scores the evaluator cannot rank (NaN, wrong shape)."""


# ---------------------------------------------------------------------------------------------- CSR rows
class _Rows:
    """A CSR matrix with sorted rows, read a chunk of users at a time without a Python loop."""

    def __init__(self, matrix: sp.csr_matrix):
        matrix = matrix.tocsr()
        matrix.sort_indices()
        self.matrix = matrix

    def counts(self) -> np.ndarray:
        return np.diff(self.matrix.indptr)

    def select(self, users: np.ndarray) -> sp.csr_matrix:
        """The users' rows as a CSR; a run of consecutive users (the evaluator's chunks) shares this matrix's
        arrays instead of copying them."""
        if len(users) == 0 or not (np.diff(users) == 1).all():
            return self.matrix[users]
        first, last = int(users[0]), int(users[-1]) + 1
        entries = slice(self.matrix.indptr[first], self.matrix.indptr[last])
        indptr = self.matrix.indptr[first : last + 1] - self.matrix.indptr[first]
        rows = (self.matrix.data[entries], self.matrix.indices[entries], indptr)
        return sp.csr_matrix(rows, shape=(len(users), self.matrix.shape[1]), copy=False)

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
        hits_parts, topk_parts, cold_parts = [], [], []  # hits: sampled ranking only (full ranking: once, below)
        unscored = _unscored(model)
        warm_blocked = None if self.ctx.cold_items is None or self.sampled else ~np.asarray(self.ctx.cold_items, dtype=bool)
        if warm_blocked is not None and unscored is not None:
            warm_blocked = warm_blocked | unscored
        rng = np.random.default_rng(self.seed)
        weights = self.popularity if self.sampled == "popularity" else None
        sampler = None if self.sampled is None else NegativeSampler(self.ctx.n_items, weights)
        with _scoring_mode(model):
            for start in range(0, len(users), self.user_chunk):
                chunk = users[start : start + self.user_chunk]
                query = model.encode(model.eval_batch(chunk, self.ctx, phase))
                if sampler is None:
                    seen = self._rows(self._seen, self.ctx.seen, phase)
                    items, _ = self._rank(model, query, chunk, max_k, seen, blocked=unscored)
                    if warm_blocked is not None:  # the cold-only list: warm items blocked for every user
                        cold_parts.append(self._rank(model, query, chunk, max_k, seen, blocked=warm_blocked)[0].numpy())
                else:
                    items, chunk_hits = self._rank_sampled(model, query, chunk, max_k, phase, sampler, rng)
                    hits_parts.append(chunk_hits.numpy())
                topk_parts.append(items.numpy())
        topk = np.concatenate(topk_parts) if topk_parts else np.zeros((0, max_k), dtype=np.int64)
        if sampler is None:  # one search over every user's targets: per chunk it cost more than the lookup
            sorted_targets = targets.padded(users, self.ctx.n_items)
            hits = self._hits(topk, sorted_targets)
            cold_parts = [self._hits(np.concatenate(cold_parts), sorted_targets)] if cold_parts else []
        else:
            hits = np.concatenate(hits_parts) if hits_parts else np.zeros((0, max_k), dtype=bool)
        per_user = user_metrics(hits, n_relevant_all[users], self.user_metric_names, self.ks)
        summary: dict[str, Any] = {key: float(values.mean()) if len(values) else 0.0 for key, values in per_user.items()}
        if self.ctx.cold_items is not None:
            summary.update(self._warm_cold(hits, topk, targets, users, cold_parts))
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
                items, scores = self._rank(model, query, chunk, k, seen, blocked=_unscored(model))
                items_parts.append(items)
                scores_parts.append(scores)
        if not items_parts:
            return torch.zeros((0, k), dtype=torch.long), torch.zeros((0, k))
        return torch.cat(items_parts), torch.cat(scores_parts)

    # ------------------------------------------------------------------ full ranking
    def _rank(
        self, model: Recommender, query: Any, users: np.ndarray, k: int, seen: _Rows | None, blocked: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k (items, scores) on CPU for one user chunk, masking the users' seen items (and ``blocked``)."""
        items, scores = masked_topk(
            lambda start, stop: self._chunk_scores(model, query, start, stop, len(users)),
            len(users),
            self.ctx.n_items,
            k,
            self.item_chunk,
            hide=None if seen is None else seen.select(users),
            blocked=blocked,
            check_nan=lambda scores, start, stop: self._check_nan(model, scores, users, start, stop),
        )
        return torch.from_numpy(items), torch.from_numpy(scores)

    @staticmethod
    def _hits(items: np.ndarray, sorted_targets: np.ndarray) -> np.ndarray:
        """hits[b, j] = items[b, j] is among user b's targets (``sorted_targets`` [B, T], rows sorted and padded
        with a value above every item). With few targets per user (leave-one-out: T = 1) one broadcast
        comparison; else one binary search: row b's values are shifted by b * (max value + 1), which keeps the
        flattened target rows sorted."""
        if sorted_targets.shape[1] <= _BROADCAST_TARGETS:
            found = (items[:, :, None] == sorted_targets[:, None, :]).any(axis=2)
            return found & (items >= 0)
        shift = (np.arange(len(items)) * (int(max(sorted_targets.max(initial=0), items.max(initial=0))) + 1))[:, None]
        haystack = (sorted_targets + shift).ravel()
        needles = items + shift
        position = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
        return (haystack[position] == needles) & (items >= 0)

    # ------------------------------------------------------------------ sampled ranking
    def _rank_sampled(
        self,
        model: Recommender,
        query: Any,
        users: np.ndarray,
        k: int,
        phase: int,
        sampler: NegativeSampler,
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
            rows.append((relevant, sampler.sample_distinct(rng, excluded, self.n_negatives)))
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
        self._check_nan(model, candidate_scores, users, 0, self.ctx.n_items)
        unscored = _unscored(model)
        if unscored is not None:  # items the model cannot represent are never recommended
            candidate_scores[(candidates >= 0) & torch.from_numpy(unscored)[candidates.clamp(min=0)]] = -torch.inf
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
    def _warm_cold(
        self, hits: np.ndarray, topk: np.ndarray, targets: _Rows, users: np.ndarray, cold_only: list[np.ndarray]
    ) -> dict[str, float]:
        """``warm/<metric>`` and ``cold/<metric>`` means: hits and |rel| restricted to warm or to cold targets;
        ``cold-only/<metric>`` from the hits of the list ranked among cold items only (full ranking)."""
        cold = np.asarray(self.ctx.cold_items, dtype=bool)
        rows = targets.matrix[users]
        n_cold = np.bincount(
            np.repeat(np.arange(len(users)), np.diff(rows.indptr)), weights=cold[rows.indices], minlength=len(users)
        )
        n_cold = n_cold.astype(np.int64)
        n_warm = np.diff(rows.indptr) - n_cold
        hit_cold = hits & (topk >= 0) & cold[np.maximum(topk, 0)]
        out: dict[str, float] = {}
        groups = [("warm", hits & ~hit_cold, n_warm), ("cold", hit_cold, n_cold)]
        if cold_only:
            groups.append(("cold-only", np.concatenate(cold_only), n_cold))
        for group, group_hits, n_relevant in groups:
            has = n_relevant > 0
            out[f"{group}/users"] = int(has.sum())
            values = user_metrics(group_hits[has], n_relevant[has], self.user_metric_names, self.ks)
            out.update({f"{group}/{key}": float(v.mean()) if len(v) else 0.0 for key, v in values.items()})
        return out

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
    def _check_nan(model: Recommender, scores: torch.Tensor, users: np.ndarray, start: int, stop: int) -> None:
        """Stop with the model, the number of NaN scores and the users they belong to, if ``scores`` (unmasked:
        a NaN on a seen item is still a broken model) hold any."""
        nan = torch.isnan(scores)
        count = int(nan.sum())
        if count == 0:
            return
        bad_users = users[nan.any(dim=1).cpu().numpy()][:5].tolist()
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


def _unscored(model: Recommender) -> np.ndarray | None:
    """The items ``model`` cannot represent (:meth:`Recommender.unscored_items`; a duck-typed scorer has none)."""
    return model.unscored_items() if isinstance(model, Recommender) else None


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
