"""Message passing over graphs whose edge weights are learned (GRCN's refined user-item graph,
LATTICE's learned item-item graph): an edge list (rows, cols) with differentiable weights.

Products are chunked scatter-adds over the edge list (no sparse tensor is built, so nothing is
sorted per call), and the gradient of every edge weight is <grad_out[row], x[col]>, computed in
chunks of edges, so memory stays O(edges + n * d) in both passes.
"""

from __future__ import annotations

from typing import Any

import scipy.sparse as sp
import numpy as np
import torch

EDGE_CHUNK = 1 << 16  # edges whose [chunk, d] products are formed at once in the backward pass


def _scatter_matmul(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n_rows: int) -> torch.Tensor:
    """out[rows[e]] += values[e] * x[cols[e]], in chunks of edges (no sort, no [edges, d] tensor)."""
    out = x.new_zeros(n_rows, x.shape[1])
    for s in range(0, len(rows), EDGE_CHUNK):
        e = slice(s, s + EDGE_CHUNK)
        out.index_add_(0, rows[e], x[cols[e]] * values[e, None])
    return out


class _EdgeSpmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n_rows: int) -> torch.Tensor:
        ctx.save_for_backward(rows, cols, values, x)
        return _scatter_matmul(rows, cols, values, x, n_rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor | None, torch.Tensor | None, None]:
        rows, cols, values, x = ctx.saved_tensors
        grad_values = grad_x = None
        if ctx.needs_input_grad[2]:
            grad_values = torch.empty_like(values)
            for s in range(0, len(rows), EDGE_CHUNK):
                e = slice(s, s + EDGE_CHUNK)
                grad_values[e] = (grad[rows[e]] * x[cols[e]]).sum(-1)
        if ctx.needs_input_grad[3]:
            grad_x = _scatter_matmul(cols, rows, values.detach(), grad, x.shape[0])
        return None, None, grad_values, grad_x, None


def edge_spmm(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``out[r] = sum over edges e with rows[e] == r of values[e] * x[cols[e]]`` ([n_rows, d]),
    differentiable with respect to both ``values`` and ``x``."""
    return _EdgeSpmm.apply(rows, cols, values, x, n_rows)


class _EdgeDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, cols: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, cols, a, b)
        out = torch.empty(len(rows), dtype=a.dtype, device=a.device)
        for s in range(0, len(rows), EDGE_CHUNK):
            e = slice(s, s + EDGE_CHUNK)
            out[e] = (a[rows[e]] * b[cols[e]]).sum(-1)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor | None, torch.Tensor | None]:
        rows, cols, a, b = ctx.saved_tensors
        grad_a = edge_spmm(rows, cols, grad, b, a.shape[0]) if ctx.needs_input_grad[2] else None
        grad_b = edge_spmm(cols, rows, grad, a, b.shape[0]) if ctx.needs_input_grad[3] else None
        return None, None, grad_a, grad_b


def edge_dot(rows: torch.Tensor, cols: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a[rows[e]], b[cols[e]]>`` for every edge e (a sampled dense-dense product), in O(edges)
    memory: neither the forward nor the backward pass forms an [edges, d] tensor at once."""
    return _EdgeDot.apply(rows, cols, a, b)


def edge_softmax(index: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of edge ``scores`` among the edges sharing the same ``index`` node."""
    peak = torch.full((n,), -torch.inf, dtype=scores.dtype, device=scores.device)
    peak = peak.scatter_reduce(0, index, scores.detach(), reduce="amax")
    weights = (scores - peak[index]).exp()
    return weights / edge_degree(index, weights, n)[index]


def edge_degree(index: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Weighted degree of every node: the sum of ``values`` over the edges whose endpoint is ``index``."""
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, index, values)


def symmetric_edge_norm(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Edge weights of D^-1/2 W D^-1/2 with D the row sums of the square [n, n] matrix W (GCN /
    LATTICE normalisation, as :func:`modalrec.nn.graph.normalise_adjacency` with ``"sym"``);
    degree-0 nodes stay at 0."""
    degree = edge_degree(rows, values, n)
    inv = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return values * inv[rows] * inv[cols]


def edges_of(matrix: sp.spmatrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, values) int64 / float32 tensors of a scipy sparse matrix's stored entries."""
    coo = sp.coo_matrix(matrix)
    return (
        torch.from_numpy(coo.row.astype(np.int64)),
        torch.from_numpy(coo.col.astype(np.int64)),
        torch.from_numpy(coo.data.astype(np.float32)),
    )
