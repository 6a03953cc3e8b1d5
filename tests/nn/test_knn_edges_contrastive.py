"""Graph builders against brute-force dense computations; learned-edge ops against dense autograd;
contrastive losses against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from modalrec.nn.contrastive import bootstrap_alignment, distance_correlation, info_nce
from modalrec.nn.edges import EdgeCSR, edge_softmax, edge_spmm, symmetric_edge_norm
from modalrec.nn.knn import cached_cosine_knn, cooccurrence_knn, cosine_knn, knn_cache_dir


def _dense_cosine_topk(x: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    sim[:, ~mask] = -np.inf
    np.fill_diagonal(sim, -np.inf)
    out = np.zeros_like(sim)
    for i in np.flatnonzero(mask):
        top = np.argsort(-sim[i], kind="stable")[:k]
        out[i, top] = sim[i, top]
    return out


@pytest.mark.parametrize("budget", [1 << 24, 3 * 50])  # one block / 3-row chunks
def test_cosine_knn_equals_brute_force(budget: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    mask = np.ones(50, dtype=bool)
    mask[[3, 17]] = False
    graph = cosine_knn(x, 6, mask, chunk_budget=budget)
    expected = _dense_cosine_topk(x.astype(np.float64), 6, mask)
    np.testing.assert_allclose(graph.toarray(), expected, atol=1e-5)
    assert graph.getnnz(axis=1)[mask].tolist() == [6] * int(mask.sum())
    assert graph[[3, 17]].nnz == 0 and graph[:, [3, 17]].nnz == 0  # masked items: no edges either way


def test_cosine_knn_cache_round_trips_and_keys_on_the_features(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    x = np.random.default_rng(1).standard_normal((30, 5)).astype(np.float32)
    first = cached_cosine_knn(x, 4)
    files = list(knn_cache_dir().glob("*.npz"))
    assert len(files) == 1 and not list(knn_cache_dir().glob("*.tmp*"))
    again = cached_cosine_knn(x, 4)
    assert (first != again).nnz == 0 and len(list(knn_cache_dir().glob("*.npz"))) == 1
    x2 = x.copy()
    x2[0, 0] += 1.0
    cached_cosine_knn(x2, 4)
    cached_cosine_knn(x, 5)
    assert len(list(knn_cache_dir().glob("*.npz"))) == 3
    files[0].write_bytes(b"garbage")  # a corrupt cache file is rebuilt, not trusted
    assert (cached_cosine_knn(x, 4) != first).nnz == 0


def test_cooccurrence_knn_matches_dense_common_counts() -> None:
    rng = np.random.default_rng(2)
    r = sp.csr_matrix((rng.random((40, 25)) < 0.2).astype(np.float32))
    k = 5
    graph = cooccurrence_knn(r, k, chunk_budget=7 * 40)
    common = (r @ r.T).toarray()
    np.fill_diagonal(common, 0)
    for u in range(40):
        row = graph[u]
        assert row.nnz <= k and (row.data > 0).all()
        np.testing.assert_array_equal(row.data, common[u, row.indices])  # values are the counts
        kth = np.sort(common[u])[::-1][k - 1]
        expected_nnz = min(k, int((common[u] > 0).sum()))
        assert row.nnz == expected_nnz and (row.nnz == 0 or row.data.min() >= kth)


def _random_edges(n_rows: int, n_cols: int, n_edges: int, seed: int):
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(n_rows, size=n_edges), rng.integers(n_cols, size=n_edges)], 1), axis=0)
    return torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])


def test_edge_spmm_matches_dense_autograd(monkeypatch) -> None:
    import modalrec.nn.edges as edges

    monkeypatch.setattr(edges, "EDGE_CHUNK", 7)  # exercise the chunked passes
    rows, cols = _random_edges(9, 11, 40, 0)
    values = torch.rand(len(rows), dtype=torch.float64, requires_grad=True)
    x = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda v, y: edge_spmm(rows, cols, v, y, 9), (values, x))
    dense = torch.zeros(9, 11, dtype=torch.float64).index_put((rows, cols), values)
    torch.testing.assert_close(edge_spmm(rows, cols, values, x, 9), dense @ x)


def test_edge_csr_products_match_dense_autograd() -> None:
    rows, cols = _random_edges(9, 11, 40, 2)
    shuffle = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    graph = EdgeCSR(rows[shuffle], cols[shuffle], 9, 11)  # any input order: the graph sorts its edges
    assert sorted(zip(graph.rows.tolist(), graph.cols.tolist())) == list(zip(graph.rows.tolist(), graph.cols.tolist()))
    values = torch.rand(graph.n_edges, dtype=torch.float64, requires_grad=True)
    x = torch.randn(11, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(9, 11, dtype=torch.float64).index_put((graph.rows, graph.cols), values)
    adj = graph.weighted(values)
    torch.testing.assert_close(adj.matmul(x), dense @ x)
    torch.testing.assert_close(adj.matmul_t(y), dense.T @ y)
    torch.testing.assert_close(graph.sddmm(y, x), (y @ x.T)[graph.rows, graph.cols])
    torch.autograd.gradcheck(lambda v, z: graph.weighted(v).matmul(z), (values, x))
    torch.autograd.gradcheck(lambda v, z: graph.weighted(v).matmul_t(z), (values, y))

    def shared(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # one matrix, both products
        adj = graph.weighted(v)
        return adj.matmul(z).sum() * adj.matmul_t(w).sum() + adj.matmul_t(2 * w).square().sum()

    torch.autograd.gradcheck(shared, (values, x, y))
    torch.autograd.gradcheck(graph.sddmm, (y, x))
    softmax = torch.softmax(torch.full((9, 11), -torch.inf, dtype=torch.float64).index_put((graph.rows, graph.cols), values), 1)
    torch.testing.assert_close(graph.row_softmax(values), softmax[graph.rows, graph.cols])
    square = torch.zeros(20, 20, dtype=torch.float64)
    square[:9, 9:], square[9:, :9] = dense, dense.T
    d = square.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    normed = inv[:, None] * square * inv[None, :]
    torch.testing.assert_close(graph.symmetric_norm(values), normed[graph.rows, graph.cols + 9])


def test_edge_softmax_and_symmetric_norm_match_dense() -> None:
    rows, cols = _random_edges(6, 6, 20, 1)
    scores = torch.randn(len(rows), dtype=torch.float64)
    dense = torch.full((6, 6), -torch.inf, dtype=torch.float64).index_put((rows, cols), scores)
    expected = torch.softmax(dense, dim=1)[rows, cols]
    torch.testing.assert_close(edge_softmax(rows, scores, 6), expected)
    values = torch.rand(len(rows), dtype=torch.float64)
    w = torch.zeros(6, 6, dtype=torch.float64).index_put((rows, cols), values)
    d = w.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    torch.testing.assert_close(symmetric_edge_norm(rows, cols, values, 6), (inv[:, None] * w * inv[None, :])[rows, cols])


def test_info_nce_matches_its_definition_and_prefers_matched_views() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.3
    expected = -(s.diag() - s.logsumexp(1)).mean()
    torch.testing.assert_close(info_nce(a, b, 0.3), expected)
    assert info_nce(a, a + 0.01 * torch.randn(8, 5)) < info_nce(a, b)
    torch.testing.assert_close(info_nce(a, b, 0.3, symmetric=True), (expected + info_nce(b, a, 0.3)) / 2)


def test_bootstrap_alignment_stops_the_target_gradient() -> None:
    online, target = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    bootstrap_alignment(online, target).backward()
    assert online.grad is not None and target.grad is None
    assert bootstrap_alignment(target.detach(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_distance_correlation_separates_dependent_from_independent() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g)
    assert distance_correlation(x, 2 * x + 1).item() == pytest.approx(1.0, abs=1e-4)
    nonlinear = distance_correlation(x, x.pow(2)).item()  # dependence a correlation coefficient misses
    independent = [distance_correlation(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)).item() for n in (50, 800)]
    assert independent[1] < independent[0] < nonlinear  # the sample statistic's bias shrinks with n
    assert independent[1] < nonlinear / 3
    x.requires_grad_(True)
    distance_correlation(x, torch.randn(400, 3, generator=g)).backward()
    assert torch.isfinite(x.grad).all()
