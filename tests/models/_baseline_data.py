"""Tiny datasets with planted structure for the baseline-model tests (built in code, seeded)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset


def clustered_context(
    n_users: int = 60, n_clusters: int = 3, items_per_cluster: int = 10, per_user: int = 8, seed: int = 0
) -> tuple[DataContext, np.ndarray, np.ndarray]:
    """Users in clusters, each interacting only with ``per_user`` items of their cluster's block.

    The last two interactions of every user are validation and test. Returns the context, each
    user's cluster and each item's cluster.
    """
    rng = np.random.default_rng(seed)
    user_cluster = np.arange(n_users) % n_clusters
    item_cluster = np.repeat(np.arange(n_clusters), items_per_cluster)
    users, items, splits, times = [], [], [], []
    for u in range(n_users):
        chosen = rng.choice(np.flatnonzero(item_cluster == user_cluster[u]), size=per_user, replace=False)
        users += [u] * per_user
        items += chosen.tolist()
        splits += [TRAIN] * (per_user - 2) + [VALID, TEST]
        times += list(range(per_user))
    n_items = n_clusters * items_per_cluster
    ds = Dataset.from_raw(
        "clusters",
        np.array(users),
        np.array(items),
        timestamp=np.array(times),
        split=np.array(splits),
        item_universe=np.arange(n_items),
        user_universe=np.arange(n_users),
    )
    return DataContext.from_dataset(ds), user_cluster, item_cluster


def successor_sequences(n_items: int, n_seqs: int, length: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Walks where the next item is always (item + 1) mod n_items, from random starts."""
    out = []
    for _ in range(n_seqs):
        start = int(rng.integers(n_items))
        out.append((start + np.arange(int(rng.integers(length[0], length[1] + 1)))) % n_items)
    return out


def successor_context(n_items: int = 20, n_users: int = 40, seed: int = 0) -> tuple[DataContext, list[np.ndarray]]:
    """A context whose users' histories follow the successor rule (last two items: valid, test)."""
    rng = np.random.default_rng(seed)
    seqs = successor_sequences(n_items, n_users, (6, 12), rng)
    users = np.concatenate([[u] * len(s) for u, s in enumerate(seqs)])
    items = np.concatenate(seqs)
    times = np.concatenate([np.arange(len(s)) for s in seqs])
    splits = np.concatenate([[TRAIN] * (len(s) - 2) + [VALID, TEST] for s in seqs])
    ds = Dataset.from_raw(
        "successor",
        users,
        items,
        timestamp=times,
        split=splits,
        item_universe=np.arange(n_items),
        user_universe=np.arange(n_users),
    )
    return DataContext.from_dataset(ds), seqs


def sequence_batch(seqs: list[np.ndarray], max_len: int, pad: int) -> dict[str, torch.Tensor]:
    """All-positions training batch: input = sequence without its last item, target = without its first."""
    b = len(seqs)
    seq = torch.full((b, max_len), pad, dtype=torch.long)
    targets = torch.full((b, max_len), -100, dtype=torch.long)
    lengths = torch.zeros(b, dtype=torch.long)
    for row, s in enumerate(seqs):
        s = torch.as_tensor(s[-(max_len + 1) :], dtype=torch.long)
        n = len(s) - 1
        seq[row, :n], targets[row, :n], lengths[row] = s[:-1], s[1:], n
    return {"seq": seq, "lengths": lengths, "targets": targets}


def triple_batches(ctx: DataContext, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
    """Endless (user, observed item, unobserved item) batches sampled uniformly from the train matrix."""
    train = ctx.train.tocoo()
    dense = ctx.train.toarray() > 0
    while True:
        pick = rng.integers(train.nnz, size=batch_size)
        users, pos = train.row[pick], train.col[pick]
        neg = rng.integers(ctx.n_items, size=batch_size)
        clash = dense[users, neg]
        while clash.any():
            neg[clash] = rng.integers(ctx.n_items, size=int(clash.sum()))
            clash = dense[users, neg]
        yield {k: torch.as_tensor(v, dtype=torch.long) for k, v in (("users", users), ("pos", pos), ("neg", neg))}


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run a test with one intra-op thread: tiny models are faster and steadier that way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_steps(model: torch.nn.Module, batches: Callable[[], dict[str, torch.Tensor]], steps: int, lr: float) -> list[float]:
    """A short manual Adam loop; returns the loss of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        out = model.loss(batches())
        loss = out["loss"] if isinstance(out, dict) else out
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def chunked_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk: int) -> torch.Tensor:
    """Scores of all items computed chunk by chunk through encode + score_items."""
    query = model.encode(batch)
    return torch.cat(
        [model.score_items(query, slice(s, min(s + chunk, model.n_items))) for s in range(0, model.n_items, chunk)], dim=1
    )
