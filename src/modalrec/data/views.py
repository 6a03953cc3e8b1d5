"""Training batches the trainer feeds models, cut from a :class:`~modalrec.data.context.DataContext`.

One entry point, :func:`make_train_batches`, builds one epoch of one *view* of the train split:

``triples``
    (user, positive, negative) for pairwise losses (BPR and friends): one triple per distinct train
    (user, item) pair, shuffled, negatives drawn uniformly or by train popularity and never one of
    the user's train positives nor an item held out by a cold-item split.
``sequences``
    Time-ordered train histories for next-item models (SASRec, FindRec, ...), right-padded with
    ``n_items``; either every position predicts the next item (``target="all"``) or every prefix
    is a sample whose last next item is the target (``target="last"``).
``users``
    Dense rows of the train matrix for autoencoder and diffusion models (Mult-VAE, DiffRec, HDRM).

Everything random (order, negatives) comes from a ``numpy`` generator seeded with ``seed`` when
iteration starts, so the same seed gives identical batches however often the epoch is iterated;
the trainer passes a different seed per epoch.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import TRAIN
from modalrec.data.negatives import NegativeSampler
from modalrec.data.preprocess import check_count
from modalrec.errors import ConfigError

Batch = dict[str, torch.Tensor]
TARGET_PAD = -100  # torch.nn.functional.cross_entropy's default ignore_index


class TrainBatches(ABC):
    """One epoch of training batches: ``len()`` is the number of batches, iterating yields them."""

    def __init__(self, ctx: DataContext, batch_size: int, seed: int):
        self.ctx = ctx
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.seed = seed
        self.rank, self.world_size = 0, 1

    @property
    @abstractmethod
    def n_samples(self) -> int:
        """Samples in one epoch (the last batch may be smaller than ``batch_size``)."""

    def shard(self, rank: int, world_size: int) -> TrainBatches:
        """Yield only ``rank``'s share of every batch: its samples ``rank, rank + world_size, ...``.

        For data-parallel training. Every rank draws the same epoch (same seed), so the shares of the
        ranks partition each batch and ``batch_size`` stays the examples per optimiser step whatever
        the number of ranks. Every rank must take the same number of steps, so a last batch smaller
        than ``world_size`` is dropped (fewer than ``world_size`` samples an epoch).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if self.batch_size < world_size:
            raise ConfigError(f"batch_size {self.batch_size} is smaller than the {world_size} processes sharing each batch")
        self.rank, self.world_size = rank, world_size
        return self

    def __len__(self) -> int:
        full, tail = divmod(self.n_samples, self.batch_size)
        return full + (tail >= self.world_size)

    def global_batch_size(self, step: int) -> int:
        """Samples of batch ``step`` over all ranks (``batch_size`` except maybe the last)."""
        return min(self.batch_size, self.n_samples - step * self.batch_size)

    @abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...

    def _batch_slices(self) -> Iterator[slice]:
        for step in range(len(self)):
            start = step * self.batch_size
            yield slice(start + self.rank, min(start + self.batch_size, self.n_samples), self.world_size)


# ---------------------------------------------------------------------------------------- triples
def train_pairs(ctx: DataContext) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) int64 of the distinct train pairs in CSR order: by user, items ascending."""
    users = np.repeat(np.arange(ctx.n_users, dtype=np.int64), np.diff(ctx.train.indptr))
    return users, ctx.train.indices.astype(np.int64)


class TripleBatches(TrainBatches):
    """``{"users": [B], "pos": [B], "neg": [B] or [B, num_negatives]}`` (int64), one triple per
    distinct train (user, item) pair per epoch. With ``num_negatives > 1`` the negatives of a triple
    are independent draws (they may repeat each other, never a positive)."""

    def __init__(self, ctx: DataContext, batch_size: int, seed: int, negatives: str = "uniform", num_negatives: int = 1):
        super().__init__(ctx, batch_size, seed)
        self.num_negatives = check_count("num_negatives", num_negatives, 1)
        self.sampler = NegativeSampler.for_training(ctx.n_items, ctx.item_popularity, ctx.train, negatives, ctx.warm_items)
        self.users, self.items = train_pairs(ctx)

    @property
    def n_samples(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(self.n_samples)
        # draw in CSR (user-sorted) order, where the membership lookups hit memory in sequence
        # (4x faster than shuffled queries), then shuffle; negatives are i.i.d. given the user either way
        neg = self.sampler.sample(np.repeat(self.users, self.num_negatives), rng).reshape(-1, self.num_negatives)
        users_t, pos_t = torch.from_numpy(self.users[order]), torch.from_numpy(self.items[order])
        neg_t = torch.from_numpy(neg[order] if self.num_negatives > 1 else neg[order, 0])
        for s in self._batch_slices():
            yield {"users": users_t[s].contiguous(), "pos": pos_t[s].contiguous(), "neg": neg_t[s].contiguous()}


# -------------------------------------------------------------------------------------- sequences
class SequenceBatches(TrainBatches):
    """Padded train histories of users with >= 2 train items, from ``ctx.histories[TRAIN]``.

    ``target="all"``: one sample per user, ``seq`` = the history without its last item and
    ``targets`` = the history without its first (both their last ``max_len`` entries, aligned), so
    ``targets[b, t]`` is the item after ``seq[b, t]``; yields ``{"users", "seq" [B, L], "lengths" [B],
    "targets" [B, L]}`` with ``seq`` padded by ``n_items`` and ``targets`` by -100.
    ``target="last"``: every prefix of every history is a sample (prefix augmentation): ``seq`` = the
    last ``max_len`` items before position ``k``, ``target`` = the item at ``k``, for ``k >= 1``;
    yields ``{"users", "seq", "lengths", "target" [B]}``. ``L`` is always ``max_len``, the shape
    :meth:`DataContext.padded_history` gives at evaluation time.
    ``samples``: an epoch is that many samples drawn without replacement (from the epoch's seed) instead
    of all of them, e.g. to bound prefix augmentation (~1M prefixes on ML-1M) to a per-epoch budget.
    """

    def __init__(
        self, ctx: DataContext, batch_size: int, seed: int, max_len: int = 50, target: str = "all", samples: int | None = None
    ):
        super().__init__(ctx, batch_size, seed)
        if target not in ("all", "last"):
            raise ConfigError(f"target must be 'all' or 'last', got {target!r}")
        self.max_len, self.target = check_count("max_len", max_len, 1), target
        self.samples = None if samples is None else check_count("epoch samples (train.epoch_samples)", samples, 1)
        history = ctx.histories[TRAIN]
        self.items = history.indices.astype(np.int64)
        start, length = history.indptr[:-1].astype(np.int64), np.diff(history.indptr).astype(np.int64)
        users = np.flatnonzero(length >= 2)
        if target == "all":
            # sample = (user, position of its last target); input ends just before it
            self.sample_user = users
            self.sample_end = start[users] + length[users] - 1
        else:
            per_user = length[users] - 1  # targets at positions 1 .. length-1
            self.sample_user = np.repeat(users, per_user)
            first_target = np.repeat(start[users] + 1, per_user)
            offset = np.arange(len(self.sample_user)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
            self.sample_end = first_target + offset
        self.sample_start = np.maximum(start[self.sample_user], self.sample_end - self.max_len)

    @property
    def n_samples(self) -> int:
        total = len(self.sample_user)
        return total if self.samples is None else min(self.samples, total)

    def _window(self, begin: np.ndarray, length: np.ndarray, pad: int) -> np.ndarray:
        """[B, max_len] of ``items[begin + t]`` for ``t < length``, ``pad`` elsewhere."""
        steps = np.arange(self.max_len)
        index = begin[:, None] + steps[None, :]
        valid = steps[None, :] < length[:, None]
        return np.where(valid, self.items[np.where(valid, index, 0)], pad)

    def __iter__(self) -> Iterator[Batch]:
        order = np.random.default_rng(self.seed).permutation(len(self.sample_user))[: self.n_samples]
        for s in self._batch_slices():
            chosen = order[s]
            begin, end = self.sample_start[chosen], self.sample_end[chosen]
            lengths = end - begin
            batch = {
                "users": torch.from_numpy(self.sample_user[chosen]),
                "seq": torch.from_numpy(self._window(begin, lengths, self.ctx.n_items)),
                "lengths": torch.from_numpy(lengths),
            }
            if self.target == "all":
                batch["targets"] = torch.from_numpy(self._window(begin + 1, lengths, TARGET_PAD))
            else:
                batch["target"] = torch.from_numpy(self.items[end])
            yield batch


# ------------------------------------------------------------------------------------------ users
class UserRowBatches(TrainBatches):
    """``{"users": [B] int64, "rows": [B, n_items] float32}``: the binary train rows of users with at
    least one train interaction, shuffled."""

    def __init__(self, ctx: DataContext, batch_size: int, seed: int):
        super().__init__(ctx, batch_size, seed)
        self.users = np.flatnonzero(np.diff(ctx.train.indptr) > 0)

    @property
    def n_samples(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[Batch]:
        users = self.users[np.random.default_rng(self.seed).permutation(self.n_samples)]
        for s in self._batch_slices():
            chosen = users[s]
            rows = self.ctx.train[chosen].toarray().astype(np.float32, copy=False)
            yield {"users": torch.from_numpy(chosen), "rows": torch.from_numpy(rows)}


VIEWS: dict[str, type[TrainBatches]] = {"triples": TripleBatches, "sequences": SequenceBatches, "users": UserRowBatches}


def view_options(view: str) -> dict[str, object]:
    """The options a view accepts, with their defaults."""
    if view not in VIEWS:
        raise ConfigError(f"unknown training view '{view}'; valid views: {', '.join(VIEWS)}")
    params = inspect.signature(VIEWS[view].__init__).parameters
    return {name: p.default for name, p in params.items() if name not in ("self", "ctx", "batch_size", "seed")}


def make_train_batches(view: str, ctx: DataContext, batch_size: int, seed: int, **options: object) -> TrainBatches:
    """One epoch of ``view`` batches over the train split of ``ctx``, fully determined by ``seed``."""
    known = view_options(view)
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for view '{view}'; valid options: {valid}")
    return VIEWS[view](ctx, batch_size, seed, **options)
