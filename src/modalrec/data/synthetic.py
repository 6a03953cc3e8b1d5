"""Synthetic interaction data with planted structure, for tests, examples and smoke runs.

Users belong to taste clusters; each cluster owns a block of items. A user's history is a walk
through their cluster's block where the next item is usually the successor of the current one, so
collaborative models can learn the clusters and sequential models the successor rule. Item
features ("text", "image") are noisy one-hot codes of the item's cluster, so content-aware models
can find the clusters from content too. Everything is fixed by ``seed``.
"""

from __future__ import annotations

import numpy as np

from modalrec.data.dataset import Dataset, ItemFeature


def make_synthetic(
    n_users: int = 200,
    n_items: int = 100,
    n_clusters: int = 5,
    length: tuple[int, int] = (8, 20),
    successor_prob: float = 0.8,
    feature_dims: dict[str, int] | None = None,
    feature_noise: float = 0.5,
    seed: int = 0,
    name: str = "synthetic",
) -> Dataset:
    """A dataset of clustered users walking through their cluster's items (see the module docstring)."""
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(n_items) * n_clusters // n_items
    cluster_items = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    clock = 0.0
    for user in range(n_users):
        block = cluster_items[user % n_clusters]
        steps = int(rng.integers(length[0], length[1] + 1))
        position = int(rng.integers(len(block)))
        visited = []
        for _ in range(steps):
            visited.append(block[position])
            if rng.random() < successor_prob:
                position = (position + 1) % len(block)
            else:
                position = int(rng.integers(len(block)))
        users.extend([user] * steps)
        items.extend(visited)
        times.extend(clock + np.arange(steps))
        clock += steps
    ds = Dataset.from_raw(
        name,
        np.asarray(users),
        np.asarray(items),
        timestamp=np.asarray(times, dtype=np.float64),
        rating=rng.integers(1, 6, size=len(users)).astype(np.float32),
        item_universe=np.arange(n_items).astype(str),
        user_universe=np.arange(n_users).astype(str),
        source="synthetic",
    )
    ds.meta["source"] = {"format": "synthetic", "seed": seed, "n_clusters": n_clusters, "successor_prob": successor_prob}
    ds.item_meta = {
        "title": [f"item {i} (cluster {c})" for i, c in enumerate(item_cluster.tolist())],
        "categories": [[f"cluster-{c}"] for c in item_cluster.tolist()],
    }
    for modality, dim in (feature_dims or {}).items():
        codes = np.zeros((n_items, dim), dtype=np.float32)
        codes[np.arange(n_items), item_cluster % dim] = 1.0
        values = (codes + feature_noise * rng.standard_normal((n_items, dim))).astype(np.float32)
        ds = ds.with_feature(
            modality,
            ItemFeature(values, np.ones(n_items, dtype=bool), {"encoder": "synthetic cluster code", "noise": feature_noise}),
        )
    return ds
