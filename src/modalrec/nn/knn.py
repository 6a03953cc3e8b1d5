"""Sparse k-nearest-neighbour graphs: item-item graphs from content features (LATTICE, FREEDOM, MGCN,
MICRO) and user-user co-occurrence graphs from the train matrix (DualGNN).

Both are built in row chunks whose dense block is bounded (``chunk_budget`` entries), so memory is
O(n * k + chunk) and never a dense n x n matrix. Feature graphs depend only on the feature values
(never on interactions, so no validation or test data can reach them) and are cached on disk by a
hash of the features and the build settings under ``<modalrec cache>/knn/``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.errors import ConfigError

CACHE_VERSION = 1  # bump when the construction changes, so stale cached graphs are not reused


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"a kNN graph needs k >= 1 neighbours, got {k!r}")


def _rows_per_chunk(n_cols: int, chunk_budget: int) -> int:
    return max(1, min(max(n_cols, 1), chunk_budget // max(n_cols, 1)))


def _topk_csr(index: np.ndarray, value: np.ndarray, keep: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """CSR from per-row (index, value) candidates, keeping the entries where ``keep`` is true."""
    n_rows, k = index.shape
    rows = np.repeat(np.arange(n_rows), k)[keep.ravel()]
    out = sp.csr_matrix(
        (value.ravel()[keep.ravel()], (rows, index.ravel()[keep.ravel()])), shape=(n_rows, n_cols), dtype=np.float32
    )
    out.sort_indices()
    return out


def chunked_topk(
    block: Callable[[int, int], torch.Tensor], n_rows: int, n_cols: int, k: int, chunk_budget: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of every row of an [n_rows, n_cols] similarity that is only ever built a few rows
    at a time: ``block(start, stop)`` returns the dense rows ``start:stop`` (entries that may not be chosen set to
    -inf), at most ``chunk_budget`` entries at once. Returns (index [n_rows, k] int64, value [n_rows, k] float32),
    each row sorted largest first; among equal values at the k-th place the choice is arbitrary."""
    index = np.zeros((n_rows, k), dtype=np.int64)
    value = np.zeros((n_rows, k), dtype=np.float32)
    if k == 0:
        return index, value
    chunk = _rows_per_chunk(n_cols, chunk_budget)
    with torch.no_grad():
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            top = torch.topk(block(start, stop), k, dim=1)
            index[start:stop] = top.indices.numpy()
            value[start:stop] = top.values.numpy()
    return index, value


def cosine_knn(
    features: np.ndarray | torch.Tensor,
    k: int,
    mask: np.ndarray | torch.Tensor | None = None,
    chunk_budget: int = 1 << 24,
    include_self: bool = False,
) -> sp.csr_matrix:
    """Each row's ``k`` most cosine-similar other rows, as a CSR matrix [n, n] of similarities.

    Row i holds i's neighbours (no self loop). ``include_self``: the row itself competes for the k
    places (MMRec's convention: top-k of the full similarity matrix, so an item keeps itself, weight
    cos(i, i) = 1, and k - 1 others). Rows whose ``mask`` is false (items without this
    content) have no neighbours and are no one's neighbour. Similarities may be <= 0 when fewer
    than ``k`` positive ones exist; they are kept (explicitly stored) so the structure is exactly
    the top-k. Among equal similarities at the k-th place the choice is arbitrary.
    """
    _check_k(k)
    x = torch.as_tensor(features, dtype=torch.float32)
    if x.dim() != 2:
        raise ConfigError(f"features must be a matrix [n, d], got shape {tuple(x.shape)}")
    n = x.shape[0]
    valid = torch.ones(n, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    x = torch.nn.functional.normalize(x, dim=1) * valid[:, None]
    k = min(k, max(int(valid.sum()) - (0 if include_self else 1), 0))
    if k == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    blocked = ~valid

    def block(start: int, stop: int) -> torch.Tensor:
        sim = x[start:stop] @ x.T  # [chunk, n]
        sim[:, blocked] = -torch.inf
        if not include_self:
            sim[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
        return sim

    index, value = chunked_topk(block, n, n, k, chunk_budget)
    keep = np.repeat(valid.numpy()[:, None], k, axis=1) & np.isfinite(value)
    return _topk_csr(index, value, keep, n)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def knn_cache_dir() -> Path:
    """Where cached feature graphs live: ``<modalrec cache>/knn``."""
    from modalrec.data.download import cache_dir

    return cache_dir() / "knn"


def cached_cosine_knn(
    features: np.ndarray | torch.Tensor,
    k: int,
    mask: np.ndarray | torch.Tensor | None = None,
    chunk_budget: int = 1 << 24,
    cache: bool = True,
    include_self: bool = False,
) -> sp.csr_matrix:
    """:func:`cosine_knn`, loaded from / saved to the cache keyed by (features, mask, k, include_self).

    The file is written to a temporary name and renamed, so a crash never leaves half a graph."""
    if not cache:
        return cosine_knn(features, k, mask, chunk_budget, include_self)
    x = np.ascontiguousarray(torch.as_tensor(features, dtype=torch.float32).numpy())
    m = np.ones(len(x), dtype=bool) if mask is None else np.ascontiguousarray(torch.as_tensor(mask, dtype=torch.bool).numpy())
    parts = [str(CACHE_VERSION).encode(), str(x.shape).encode(), x.tobytes(), m.tobytes(), str(k).encode()]
    key = _digest(b"cosine", *parts, *([b"self"] if include_self else []))  # graphs without self loops keep their keys
    path = knn_cache_dir() / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a corrupt file is rebuilt
    graph = cosine_knn(x, k, m, chunk_budget, include_self)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, data=graph.data, indices=graph.indices, indptr=graph.indptr, shape=np.asarray(graph.shape))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return graph


def cooccurrence_knn(train_csr: sp.spmatrix, k: int, chunk_budget: int = 1 << 24) -> sp.csr_matrix:
    """Each user's ``k`` users with the most train items in common, as CSR [n_users, n_users] of counts.

    Computed as R[chunk] R^T one chunk of users at a time (the full users x users product is never
    formed). Only pairs with at least one common item are kept, so a user may have fewer than ``k``.
    Among equal counts at the k-th place the choice is arbitrary.
    """
    _check_k(k)
    r = sp.csr_matrix(train_csr, dtype=np.float32, copy=True)
    r.sum_duplicates()
    r.data[:] = 1.0
    n = r.shape[0]
    rt = r.T.tocsc()

    def block(start: int, stop: int) -> torch.Tensor:
        common = torch.from_numpy((r[start:stop] @ rt).toarray())  # [chunk, n] common-item counts
        common[torch.arange(stop - start), torch.arange(start, stop)] = -1.0
        return common

    index, value = chunked_topk(block, n, n, min(k, max(n - 1, 0)), chunk_budget)
    return _topk_csr(index, value, value > 0, n)
