"""The one top-K kernel of evaluation and serving: exact, deterministic ties, bounded memory.

Ties: equal scores rank by lower item index, exactly and independent of the chunk sizes: the order is
the strict total order (score descending, item ascending). Building it for whole chunks is slow, so a
chunk is first cut with a float top-(k+1); only rows whose k-th and (k+1)-th values are equal (a tie
across the cut) are redone on int64 keys (:func:`order_keys`: an order-preserving integer of the
score in the high half, the item index in the low half), and the small merges of the per-chunk
top-k into the running top-k sort on (score, item) exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.errors import ConfigError

NO_INDEX = np.zeros(0, dtype=np.int64)
_LOW_32_BITS = 0xFFFFFFFF
_MAGNITUDE_BITS = 0x7FFFFFFF


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


def _order_rows(scores: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows put in the exact order (score descending, item ascending), lexsorting only the rows that need it.

    A chunk's top-k comes out of ``torch.topk`` sorted by score; a row whose scores strictly decrease is
    then already in the exact order (no tie to break), which is almost every row of real scores. Rows with
    an equal pair (ties, -inf padding, -0.0 next to 0.0), a NaN or an unsorted tail go through
    :func:`_merge_topk`.
    """
    unordered = np.flatnonzero(~(scores[:, :-1] > scores[:, 1:]).all(axis=1))
    if len(unordered) == 0:
        return scores, items
    scores, items = np.array(scores), np.array(items)  # owned copies: the rows are rewritten in place
    scores[unordered], items[unordered] = _merge_topk(scores[unordered], items[unordered], scores.shape[1])
    return scores, items


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


def _hide(scores: torch.Tensor, flat_index: np.ndarray) -> None:
    """Set the scores at ``flat_index`` (row-major positions) to -inf in place.

    On CPU this goes through numpy: these scattered writes are small, and torch's thread pool costs
    more to wake than the work (several times slower on a busy 2-core machine).
    """
    if scores.device.type == "cpu":
        scores.view(-1).numpy()[flat_index] = -np.inf
    else:
        scores.view(-1).index_fill_(0, torch.from_numpy(flat_index).to(scores.device), -torch.inf)


def _any_nan_at(scores: torch.Tensor, flat_index: np.ndarray) -> bool:
    """Whether a score at ``flat_index`` is NaN: the masked positions alone, read back before masking."""
    if scores.device.type == "cpu":
        return bool(np.isnan(scores.view(-1).numpy()[flat_index]).any())
    return bool(torch.isnan(scores.view(-1).take(torch.from_numpy(flat_index).to(scores.device))).any())


def _has_nan(scores: torch.Tensor) -> bool:
    """Whether a tile holds a NaN: on CPU numpy's max (which propagates NaN), one vectorised pass several times
    cheaper than ``torch.isnan(...).any()``."""
    if scores.numel() == 0:
        return False
    if scores.device.type == "cpu":
        return bool(np.isnan(scores.numpy().max()))
    return bool(torch.isnan(scores).any())


# A masked position read back costs a cache miss, about as much as reading DENSE_MASK scores in one pass: with more
# masked positions than 1 / DENSE_MASK of a tile (ML-1M: 4 %) one pass over the whole tile finds a NaN sooner.
DENSE_MASK = 50


ScoreChunk = Callable[[int, int], torch.Tensor]
NanCheck = Callable[[torch.Tensor, int, int], None]


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
    item -1 and score -inf. ``check_nan(scores, start, stop)`` is called for a chunk whose scores hold a
    NaN outside ``blocked``, before ``hide`` masks them (a NaN on a seen item is still a broken model); it
    should raise.
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
        one_chunk_index = np.repeat(np.arange(0, n_rows * n_items, n_items, dtype=np.int64), np.diff(hide.indptr))
        one_chunk_index += hide.indices  # in place: no second index-sized array
    best_scores = best_items = None
    for start in range(0, n_items, item_chunk):
        stop = min(start + item_chunk, n_items)
        scores = _writable(score_chunk(start, stop))
        if blocked is not None and blocked[start:stop].any():
            scores[:, torch.from_numpy(blocked[start:stop]).to(scores.device)] = -torch.inf
        index = NO_INDEX
        if hide is not None and n_items <= item_chunk:
            index = one_chunk_index  # row-major positions in the [n_rows, n_items] tile
        elif hide is not None:
            entries = slice(item_ptr[start], item_ptr[stop])
            index = mask_rows[entries] * (stop - start) + (mask_items[entries] - start)
        # NaN (before the seen items are masked, see the docstring): a dense mask, one pass over the tile; a sparse
        # one, its positions read back, and the unmasked scores through the top-k, which ranks NaN first
        dense = len(index) * DENSE_MASK > scores.numel()
        if check_nan is not None and (_has_nan(scores) if dense else _any_nan_at(scores, index)):
            check_nan(scores, start, stop)
        _hide(scores, index)
        values, items = (part.cpu().numpy() for part in _chunk_topk(scores, k, start))
        if check_nan is not None and not dense and np.isnan(values).any():
            check_nan(scores, start, stop)
        if best_scores is None:  # the first chunk: already sorted by score, only ties to order
            best_scores, best_items = _order_rows(values, items)
        else:
            values, items = np.concatenate([best_scores, values], 1), np.concatenate([best_items, items], 1)
            best_scores, best_items = _merge_topk(values, items, k)
        del scores  # free this tile before the next is scored: peak memory is one tile, not two
    if best_scores is None or best_items is None:
        return np.zeros((n_rows, 0), dtype=np.int64), np.zeros((n_rows, 0), dtype=np.float32)
    return np.where(best_scores == -np.inf, -1, best_items), best_scores


def _writable(scores: torch.Tensor) -> torch.Tensor:
    """float32 scores that masking may write into in place (a model's own tensor is copied)."""
    if scores.dtype != torch.float32:
        return scores.float()
    if scores._base is not None:  # a view of something the model keeps: do not mask it in place
        return scores.clone()
    return scores.contiguous()
