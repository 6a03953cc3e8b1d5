"""Pop, ItemKNN, EASE, BPR, LightGCN on a tiny clustered dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_data import (  # single_thread: fixture used by pytestmark
    chunked_scores,
    clustered_context,
    single_thread,  # noqa: F401
    train_steps,
    triple_batches,
)

from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class
from modalrec.models.general.itemknn import cosine_topk

pytestmark = pytest.mark.usefixtures("single_thread")


def _build(name: str, ctx, **overrides):
    cls = get_model_class(name)
    model = cls(cls.Config(**overrides), ctx)
    model.fit(ctx)
    model.eval()
    return model


def _all_users(ctx) -> dict[str, torch.Tensor]:
    return {"users": torch.arange(ctx.n_users)}


def _in_cluster_rate(scores: torch.Tensor, ctx, user_cluster: np.ndarray, item_cluster: np.ndarray, top: int) -> float:
    """Share of each user's ``top`` best unseen items that belong to the user's own cluster."""
    scores = scores.clone()
    scores[torch.from_numpy(ctx.train.toarray() > 0)] = -torch.inf
    best = scores.topk(top, dim=1).indices.numpy()
    return float((item_cluster[best] == user_cluster[:, None]).mean())


def test_registry_knows_every_baseline() -> None:
    for name in ("pop", "itemknn", "ease", "bpr", "lightgcn"):
        assert get_model_class(name).name == name


def test_pop_scores_train_popularity_for_everyone() -> None:
    ctx, _, _ = clustered_context()
    model = _build("pop", ctx)
    scores = model.score(_all_users(ctx))
    expected = torch.as_tensor(np.asarray(ctx.train.sum(0)).ravel(), dtype=torch.float32)
    assert scores.shape == (ctx.n_users, ctx.n_items)
    torch.testing.assert_close(scores, expected.expand_as(scores))
    torch.testing.assert_close(chunked_scores(model, _all_users(ctx), 7), scores)


def _dense_cosine(x: np.ndarray, shrink: float) -> np.ndarray:
    overlap = x.T @ x
    norms = np.sqrt(x.sum(0))
    denominator = norms[:, None] * norms[None, :] + shrink
    sim = np.divide(overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrink", [0.0, 2.0])
def test_itemknn_equals_bruteforce_cosine_without_truncation(shrink: float) -> None:
    ctx, _, _ = clustered_context()
    x = ctx.train.toarray().astype(np.float64)
    model = _build("itemknn", ctx, k=ctx.n_items, shrink=shrink, chunk_budget=4 * ctx.n_items)  # 4-row chunks
    np.testing.assert_allclose(model.similarity().toarray(), _dense_cosine(x, shrink), rtol=1e-5, atol=1e-7)
    scores = model.score(_all_users(ctx))
    np.testing.assert_allclose(scores.numpy(), x @ _dense_cosine(x, shrink), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked_scores(model, _all_users(ctx), 8), scores)


def test_itemknn_keeps_the_k_largest_similarities_per_item() -> None:
    ctx, _, _ = clustered_context(seed=3)
    k = 4
    index, weight = cosine_topk(ctx.train, k, chunk_budget=7 * ctx.n_items)
    sim = _dense_cosine(ctx.train.toarray().astype(np.float64), 0.0)
    expected = -np.sort(-sim, axis=1)[:, :k]
    np.testing.assert_allclose(weight, expected, rtol=1e-5)  # tie-independent: values, sorted
    np.testing.assert_allclose(np.take_along_axis(sim, index, axis=1), weight, rtol=1e-5)
    assert (index != np.arange(ctx.n_items)[:, None]).all()


def test_itemknn_and_ease_rank_cluster_items_first() -> None:
    ctx, user_cluster, item_cluster = clustered_context()
    for name in ("itemknn", "ease"):
        scores = _build(name, ctx, **({"l2": 10.0} if name == "ease" else {})).score(_all_users(ctx))
        assert _in_cluster_rate(scores, ctx, user_cluster, item_cluster, top=4) == 1.0, name


def test_ease_equals_dense_closed_form() -> None:
    ctx, _, _ = clustered_context(seed=1)
    l2 = 3.0
    model = _build("ease", ctx, l2=l2)
    x = ctx.train.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(ctx.n_items))
    b = np.eye(ctx.n_items) - p @ np.diag(1.0 / np.diag(p))
    np.testing.assert_allclose(model.weights.numpy(), b, rtol=1e-4, atol=1e-6)
    assert np.all(np.diag(model.weights.numpy()) == 0.0)
    scores = model.score(_all_users(ctx))
    np.testing.assert_allclose(scores.numpy(), x @ b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(chunked_scores(model, _all_users(ctx), 9), scores)


def test_ease_refuses_catalogues_above_its_limit() -> None:
    ctx, _, _ = clustered_context()
    cls = get_model_class("ease")
    with pytest.raises(ConfigError, match="max_items"):
        cls(cls.Config(max_items=ctx.n_items - 1), ctx)


# Tiny data (6 train items per user): BPR-MF needs a real prior not to memorise the train pairs.
@pytest.mark.parametrize(("name", "overrides"), [("bpr", {"dim": 8, "reg": 0.05}), ("lightgcn", {"dim": 8})])
def test_pairwise_models_learn_the_clusters(name: str, overrides: dict) -> None:
    torch.manual_seed(0)
    ctx, user_cluster, item_cluster = clustered_context()
    cls = get_model_class(name)
    model = cls(cls.Config(**overrides), ctx)
    batches = triple_batches(ctx, 64, np.random.default_rng(0))
    before = _in_cluster_rate(model.score(_all_users(ctx)).detach(), ctx, user_cluster, item_cluster, top=4)
    losses = train_steps(model, lambda: next(batches), steps=250, lr=0.02)
    assert np.mean(losses[-30:]) < 0.6 * np.mean(losses[:30])
    model.prepare_scoring()
    scores = model.score(_all_users(ctx)).detach()
    after = _in_cluster_rate(scores, ctx, user_cluster, item_cluster, top=4)
    assert before < 0.6 and after >= 0.95, (before, after)
    torch.testing.assert_close(chunked_scores(model, _all_users(ctx), 7).detach(), scores)


def test_pairwise_loss_accepts_several_negatives() -> None:
    torch.manual_seed(0)
    ctx, _, _ = clustered_context()
    for name in ("bpr", "lightgcn"):
        cls = get_model_class(name)
        model = cls(cls.Config(dim=8), ctx)
        batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 10]), "neg": torch.tensor([[5, 20, 25], [1, 2, 3]])}
        out = model.loss(batch)
        assert set(out) == {"loss", "bpr", "reg"} and out["loss"].ndim == 0
        torch.testing.assert_close(out["loss"], out["bpr"] + out["reg"])
        # three negatives: the BPR term is the mean over the 2 x 3 pairs
        single = [model.loss({"users": batch["users"], "pos": batch["pos"], "neg": batch["neg"][:, j]})["bpr"] for j in range(3)]
        torch.testing.assert_close(out["bpr"], torch.stack(single).mean())


def test_lightgcn_final_embeddings_are_layer_mean_and_cache_is_dropped_on_training() -> None:
    torch.manual_seed(0)
    ctx, _, _ = clustered_context()
    cls = get_model_class("lightgcn")
    model = cls(cls.Config(dim=8, layers=2), ctx)
    n_users = ctx.n_users
    r = ctx.train.toarray()
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((ctx.n_items, ctx.n_items))]])
    d = a.sum(1)
    norm = a / np.sqrt(np.outer(np.where(d > 0, d, 1), np.where(d > 0, d, 1)))
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double().numpy()
    final = (ego + norm @ ego + norm @ norm @ ego) / 3
    users, items = model.representations()
    np.testing.assert_allclose(users.detach().numpy(), final[:n_users], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(items.detach().numpy(), final[n_users:], rtol=1e-4, atol=1e-6)

    model.eval()
    model.prepare_scoring()
    cached = model.score({"users": torch.arange(3)})
    with torch.no_grad():
        model.item_embedding.weight.add_(1.0)
    torch.testing.assert_close(model.score({"users": torch.arange(3)}), cached)  # cache in use
    model.train()
    model.eval()
    assert not torch.allclose(model.score({"users": torch.arange(3)}), cached)  # cache dropped by train()
