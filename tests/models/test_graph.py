"""nn.graph: adjacency construction and propagation against dense brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from modalrec.nn.graph import bipartite_adjacency, item_item_cooccurrence, propagate, to_torch_sparse


def _train(seed: int = 0, n_users: int = 7, n_items: int = 5) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.4).astype(np.float32)
    dense[3] = 0.0  # an isolated user
    dense[:, 4] = 0.0  # an isolated item
    dense[0, 0] = 1.0
    return sp.csr_matrix(dense)


def _dense_bipartite(r: np.ndarray, self_loops: bool) -> np.ndarray:
    n_users, n_items = r.shape
    a = np.zeros((n_users + n_items,) * 2)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    return a + np.eye(len(a)) if self_loops else a


@pytest.mark.parametrize("self_loops", [False, True])
def test_symmetric_normalisation_matches_dense(self_loops: bool) -> None:
    train = _train()
    a = _dense_bipartite(train.toarray(), self_loops)
    degree = a.sum(1)
    inv_sqrt = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    expected = inv_sqrt[:, None] * a * inv_sqrt[None, :]
    got = bipartite_adjacency(train, 7, 5, self_loops=self_loops, norm="sym")
    np.testing.assert_allclose(got.toarray(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.toarray(), got.toarray().T, atol=1e-7)


def test_row_normalisation_rows_sum_to_one_or_zero() -> None:
    train = _train(seed=1)
    a = _dense_bipartite(train.toarray(), False)
    degree = a.sum(1)
    got = bipartite_adjacency(train, 7, 5, norm="row").toarray()
    expected = np.divide(a, degree[:, None], out=np.zeros_like(a), where=degree[:, None] > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got.sum(1), (degree > 0).astype(float), rtol=1e-6)


def test_repeated_interactions_count_once_and_shape_is_checked() -> None:
    train = _train()
    doubled = sp.csr_matrix((np.full(train.nnz, 3.0, np.float32), train.indices, train.indptr), shape=train.shape)
    np.testing.assert_allclose(bipartite_adjacency(doubled, 7, 5).toarray(), bipartite_adjacency(train, 7, 5).toarray())
    with pytest.raises(ValueError, match="expected"):
        bipartite_adjacency(train, 8, 5)


def test_item_item_cooccurrence_is_gram_matrix() -> None:
    train = _train(seed=2)
    dense = train.toarray()
    np.testing.assert_array_equal(item_item_cooccurrence(train).toarray(), dense.T @ dense)


def test_to_torch_sparse_roundtrip() -> None:
    adj = bipartite_adjacency(_train(), 7, 5)
    t = to_torch_sparse(adj)
    assert t.layout == torch.sparse_csr and t.dtype == torch.float32
    np.testing.assert_allclose(t.to_dense().numpy(), adj.toarray())


def test_propagate_matches_dense_powers_and_backpropagates() -> None:
    adj = bipartite_adjacency(_train(), 7, 5)
    dense = torch.from_numpy(adj.toarray())
    x = torch.randn(12, 4, requires_grad=True, generator=torch.Generator().manual_seed(0))
    outputs = propagate(to_torch_sparse(adj), x, layers=3)
    assert len(outputs) == 4
    for k, out in enumerate(outputs):
        torch.testing.assert_close(out, torch.linalg.matrix_power(dense, k) @ x, rtol=1e-5, atol=1e-6)
    torch.stack(outputs).mean(0).sum().backward()
    expected_grad = sum(torch.linalg.matrix_power(dense, k).T @ torch.ones(12, 4) for k in range(4)) / 4
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_propagate_with_precomputed_transpose_matches_autograd() -> None:
    """The custom backward (A^T given) gives the same gradients as torch's own, for a non-symmetric A."""
    rng = np.random.default_rng(0)
    dense = (rng.random((7, 7)) < 0.4) * rng.random((7, 7))
    adj = to_torch_sparse(sp.csr_matrix(dense))
    adj_t = to_torch_sparse(sp.csr_matrix(dense.T))
    x = torch.randn(7, 3, requires_grad=True)
    weights = torch.randn(7, 3)
    (sum(layer * weights for layer in propagate(adj, x, 3, adj_t=adj_t)).sum()).backward()
    fast = x.grad.clone()
    x.grad = None
    (sum(layer * weights for layer in propagate(adj, x, 3)).sum()).backward()
    assert torch.allclose(fast, x.grad, atol=1e-5)
