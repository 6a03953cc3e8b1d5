"""Tiny multimodal data for the model-zoo tests: clustered users whose item features carry the cluster."""

from __future__ import annotations

import numpy as np
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import ItemFeature
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.data.views import make_train_batches
from modalrec.models.base import get_model_class

N_CLUSTERS = 4


def multimodal_dataset(shuffle_features: bool = False, seed: int = 0, **kwargs):
    """make_synthetic with text + image cluster codes, split per user at random 8:1:1.

    Users have short histories, so interactions alone pin down the clusters poorly and content must
    help. ``shuffle_features`` permutes the item rows of every feature (same marginals, no signal).
    """
    options = dict(
        n_users=120,
        n_items=120,
        n_clusters=N_CLUSTERS,
        length=(4, 7),
        successor_prob=0.0,
        feature_dims={"text": 16, "image": 24},
        feature_noise=0.3,
        seed=seed,
    )
    options.update(kwargs)
    ds = make_synthetic(**options)
    if shuffle_features:
        perm = np.random.default_rng(seed + 1).permutation(ds.n_items)
        for name, feature in list(ds.features.items()):
            ds = ds.with_feature(name, ItemFeature(feature.values[perm], feature.mask[perm], feature.provenance))
    return split(ds, SplitConfig(method="random", seed=seed))


def clusters(ctx: DataContext) -> tuple[np.ndarray, np.ndarray]:
    """Each user's and each item's planted cluster (make_synthetic's assignment)."""
    return np.arange(ctx.n_users) % N_CLUSTERS, np.arange(ctx.n_items) * N_CLUSTERS // ctx.n_items


def build(name: str, ctx: DataContext, **overrides):
    cls = get_model_class(name)
    return cls(cls.Config(**overrides), ctx)


def fit(model, ctx: DataContext, epochs: int, lr: float, batch_size: int = 128, seed: int = 0) -> list[float]:
    """Adam over ``epochs`` epochs of the triples view (as the Trainer does); the mean loss per epoch."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    means = []
    for epoch in range(epochs):
        model.train()
        model.before_epoch(epoch)
        total, count = 0.0, 0
        for batch in make_train_batches(model.train_view, ctx, batch_size, seed=seed * 1000 + epoch):
            out = model.loss(batch)
            loss = out["loss"] if isinstance(out, dict) else out
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(batch["users"]), count + len(batch["users"])
        means.append(total / count)
    model.eval()
    return means


def in_cluster_rate(model, ctx: DataContext, top: int = 10) -> float:
    """Share of every user's top unseen items that belong to the user's own cluster."""
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        scores = model.score({"users": torch.arange(ctx.n_users)})
    scores[torch.from_numpy(ctx.train.toarray() > 0)] = -torch.inf
    best = scores.topk(top, dim=1).indices.numpy()
    user_cluster, item_cluster = clusters(ctx)
    return float((item_cluster[best] == user_cluster[:, None]).mean())
