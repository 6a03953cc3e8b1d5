"""Graphs built from the train matrix: the user-item bipartite adjacency, item-item co-occurrence,
and linear propagation over them (the operator that LightGCN, NGCF-style and multimodal graph
models such as LATTICE / FREEDOM share).

Adjacencies are built in scipy (cheap to construct, easy to inspect) and moved to torch as sparse
CSR tensors for propagation with ``torch.sparse.mm``, which differentiates with respect to the dense
operand, so embeddings propagated through a fixed graph train end to end.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

Normalisation = Literal["sym", "row", "none"]


def normalise_adjacency(adj: sp.spmatrix, norm: Normalisation = "sym") -> sp.csr_matrix:
    """Normalise a square non-negative adjacency by node degree (row sums).

    ``"sym"``: D^-1/2 A D^-1/2 (GCN / LightGCN); ``"row"``: D^-1 A (mean aggregation, random walk);
    ``"none"``: A unchanged. Isolated nodes (degree 0) keep an all-zero row and column instead of
    dividing by zero.
    """
    adj = sp.csr_matrix(adj, dtype=np.float32)
    if norm == "none":
        return adj
    degree = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        if norm == "sym":
            scale = np.where(degree > 0, degree**-0.5, 0.0).astype(np.float32)
            return (sp.diags(scale) @ adj @ sp.diags(scale)).tocsr()
        if norm == "row":
            scale = np.where(degree > 0, 1.0 / degree, 0.0).astype(np.float32)
            return (sp.diags(scale) @ adj).tocsr()
    raise ValueError(f"unknown normalisation '{norm}'; choose 'sym', 'row' or 'none'")


def bipartite_adjacency(
    train_csr: sp.spmatrix,
    n_users: int,
    n_items: int,
    self_loops: bool = False,
    norm: Normalisation = "sym",
) -> sp.csr_matrix:
    """The (n_users + n_items) square adjacency [[0, R], [R^T, 0]] of the user-item graph, normalised.

    Nodes ``0..n_users-1`` are users and ``n_users + i`` is item ``i``. Repeated interactions count
    once (R is binarised). ``self_loops`` adds I before normalising (NGCF's A + I); LightGCN uses none.
    """
    if train_csr.shape != (n_users, n_items):
        raise ValueError(f"train matrix has shape {train_csr.shape}, expected ({n_users}, {n_items})")
    r = sp.csr_matrix(train_csr, dtype=np.float32, copy=True)
    r.sum_duplicates()
    r.data[:] = 1.0
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if self_loops:
        adj = (adj + sp.identity(n_users + n_items, dtype=np.float32, format="csr")).tocsr()
    out = normalise_adjacency(adj, norm)
    out.sort_indices()
    return out


def item_item_cooccurrence(train_csr: sp.spmatrix) -> sp.csr_matrix:
    """C = R^T R over the binarised train matrix: ``C[i, j]`` users who interacted with both i and j.

    The diagonal holds each item's train popularity; callers that want a graph without self loops
    should ``setdiag(0)`` and ``eliminate_zeros()``.
    """
    r = sp.csr_matrix(train_csr, dtype=np.float32, copy=True)
    r.sum_duplicates()
    r.data[:] = 1.0
    out = (r.T @ r).tocsr()
    out.sort_indices()
    return out


def sparse_graph(csr: sp.spmatrix, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A torch sparse graph and its transpose (for :func:`propagate`'s fast backward)."""
    return to_torch_sparse(csr, device), to_torch_sparse(sp.csr_matrix(csr).T.tocsr(), device)


def to_torch_sparse(csr: sp.spmatrix, device: torch.device | str | None = None) -> torch.Tensor:
    """A float32 ``torch.sparse_csr_tensor`` with the same entries as a scipy matrix.

    Indices are int32 when they fit: the CPU sparse-dense product (MKL) needs int32 indices and
    otherwise converts a copy of them on every call (~35% of a LightGCN propagation on ML-1M)."""
    csr = sp.csr_matrix(csr, dtype=np.float32)
    csr.sort_indices()
    index = np.int32 if csr.nnz < np.iinfo(np.int32).max and max(csr.shape) < np.iinfo(np.int32).max else np.int64
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(index)),
            torch.from_numpy(csr.indices.astype(index)),
            torch.from_numpy(csr.data),
            size=csr.shape,
            dtype=torch.float32,
            device=device,
            check_invariants=False,
        )


class _SparseMatmul(torch.autograd.Function):
    """``A @ x`` whose backward uses a precomputed ``A^T`` (torch transposes a CSR matrix on every
    backward otherwise, which made a LightGCN step on ML-1M ~6x slower)."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def propagate(adj: torch.Tensor, x: torch.Tensor, layers: int, adj_t: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Linear propagation without weights or non-linearity: ``[x, A x, A^2 x, ..., A^layers x]``.

    ``adj`` is a torch sparse (CSR or COO) [N, N] matrix, ``x`` a dense [N, d] tensor; gradients
    flow to ``x`` through every layer. Pass ``adj_t`` (= ``adj`` for a symmetric matrix) to make the
    backward pass a plain sparse product.
    """
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    if adj.shape[1] != x.shape[0]:
        raise ValueError(f"adjacency is {tuple(adj.shape)} but features have {x.shape[0]} rows")
    outputs = [x]
    for _ in range(layers):
        if adj_t is not None and torch.is_grad_enabled() and outputs[-1].requires_grad:
            outputs.append(_SparseMatmul.apply(adj, adj_t, outputs[-1]))
        else:
            outputs.append(torch.sparse.mm(adj, outputs[-1]))
    return outputs


def mean_propagate(adj: torch.Tensor, x: torch.Tensor, layers: int, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """LightGCN's layer combination (Eq. 4 of He et al., SIGIR 2020): the mean of ``x, A x, ..., A^layers x``,
    alpha_k = 1 / (K + 1). The graph backbone of LightGCN and of most multimodal graph models."""
    return torch.stack(propagate(adj, x, layers, adj_t=adj_t)).mean(0)
