"""The shared ranking losses: pairwise scores with one or several negatives, BPR, the L2 prior."""

import math

import scipy.sparse as sp
import torch

from modalrec.nn.graph import mean_propagate, propagate, sparse_graph
from modalrec.nn.losses import bpr_loss, embedding_l2, pairwise_scores


def test_pairwise_scores_one_and_several_negatives():
    torch.manual_seed(0)
    u, p = torch.randn(4, 3), torch.randn(4, 3)
    one, several = torch.randn(4, 3), torch.randn(4, 5, 3)
    pos, neg = pairwise_scores(u, p, one)
    assert torch.allclose(pos, (u * p).sum(1)) and torch.allclose(neg, (u * one).sum(1))
    _, neg_n = pairwise_scores(u, p, several)
    assert neg_n.shape == (4, 5)
    assert torch.allclose(neg_n[2, 4], u[2] @ several[2, 4])


def test_bpr_loss_is_log2_at_equal_scores_and_falls_with_the_margin():
    zeros = torch.zeros(6)
    assert math.isclose(bpr_loss(zeros, zeros).item(), math.log(2), rel_tol=1e-6)
    assert bpr_loss(zeros + 3, zeros).item() < bpr_loss(zeros + 1, zeros).item() < math.log(2)
    # several negatives per positive: every pair counts once
    assert math.isclose(bpr_loss(torch.zeros(2), torch.zeros(2, 3)).item(), math.log(2), rel_tol=1e-6)


def test_embedding_l2_is_half_the_squared_norm_per_example():
    a, b = torch.ones(4, 2), 2 * torch.ones(4, 2)
    assert math.isclose(embedding_l2(4, a, b).item(), (8 + 32) / 8)


def test_mean_propagate_is_the_mean_of_the_layers():
    adj, adj_t = sparse_graph(sp.random(6, 6, density=0.5, random_state=0, format="csr"))
    x = torch.randn(6, 2)
    layers = propagate(adj, x, 3, adj_t=adj_t)
    assert torch.allclose(mean_propagate(adj, x, 3, adj_t=adj_t), sum(layers) / 4, atol=1e-6)
