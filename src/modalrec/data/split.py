"""Train / validation / test splits of a :class:`~modalrec.data.dataset.Dataset`.

:func:`split` labels every interaction :data:`TRAIN`, :data:`VALID` or :data:`TEST` (``ds.split``,
int8) and records how in ``ds.meta["split"]``. Methods:

``loo``
    Leave-one-out per user in time order: last interaction -> test, second to last -> valid, the
    rest -> train.
``temporal``
    Per user in time order: the oldest share ``ratios[0]`` -> train, then valid, the newest -> test.
``random``
    Per user, the same counts as ``temporal`` but the held-out interactions are drawn at random
    (seeded).
``global_temporal``
    One time cut for everybody at the ``ratios`` quantiles of all timestamps, so no test
    interaction is older than a train one (the setting for "predict the future" evaluation).
``given``
    Keep the labels the source shipped (``ds.split``); refused when there are none.

Time order is ``timestamp`` ascending with ties broken by row order; without timestamps the row
order is the time order.

Per-user policy (``loo``, ``temporal``, ``random``): a user is held out only when at least
``min_train`` interactions stay in train *and* valid and test can each get one, i.e. when the user
has ``>= min_train + 2`` interactions; shorter users go entirely to train (they still train the
model but are not evaluated). With the default ``min_train=1`` that is "users with < 3
interactions are all train".

Rounding of the ratio methods, per evaluated user with ``n`` interactions: ``n_test =
round(n * ratios[2])`` and ``n_valid = round(n * ratios[1])`` (half rounds up), each raised to at
least 1 when its ratio is positive, then lowered (valid first, then test, never below 1) until train
keeps ``min_train``; train gets the rest. So a user with 3 interactions and ratios (0.8, 0.1, 0.1)
gives 1 / 1 / 1, one with 20 gives 16 / 2 / 2.

Cold start: a valid/test interaction is *cold* when its user or its item has no train interaction
(``global_temporal`` makes many, the per-user methods few: only items first seen at the end of
a history). ``cold_start="drop"`` removes them, so every evaluated pair is one a collaborative model
can score; ``"keep"`` leaves them, and a recommender then scores them from content alone or from
nothing. Either way they are counted in ``meta["split"]["cold"]`` and a warning gives the counts.
Ids are not re-mapped, so item features stay aligned and a dropped item stays in the catalogue.

Cold items: ``cold_items=s`` (0 < s < 1) holds out a seeded share ``s`` of the items that have interactions
(``round(s * n)``, at least one, drawn with ``seed``) as *cold items*: after labelling by ``method``, their
train-labelled interactions are removed and their valid/test ones are kept whatever ``cold_start`` says, so a
cold item never appears in training (train matrix, training sequences, item graphs built from train) and is
only ever a valid/test target or a later history item at evaluation. The chosen item indices are recorded in
``meta["split"]["cold_items"]`` (and how many train interactions were removed), which the evaluator reads to
report ``warm/...`` and ``cold/...`` metrics beside the overall ones. Training never reads a cold item, not even as a
negative (:attr:`DataContext.warm_items <modalrec.data.context.DataContext.warm_items>`); content models score
them from content, ID-only models never recommend them (:meth:`modalrec.models.base.Recommender.unscored_items`).

Seen targets: full ranking masks a user's train items (and valid items when testing), so a valid target that
is also a train pair, or a test target that is also a train or valid pair, can never be hit. The protocol has no
repeat-consumption mode, so such targets are always a data defect: :func:`seen_targets` counts them, the split
records the counts in ``meta["split"]["seen_targets"]`` and warns when there are any. A recomputed split of
de-duplicated data has none; a ``given`` split may (the source's choice), and then says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from modalrec.checks import Positive, Rule, Share, check_fields
from modalrec.data.dataset import SPLIT_NAMES, TEST, TRAIN, VALID, Dataset
from modalrec.data.preprocess import positions_in_group, time_order
from modalrec.errors import ConfigError

SplitMethod = Literal["loo", "temporal", "random", "global_temporal", "given"]
SPLIT_METHODS: tuple[str, ...] = get_args(SplitMethod)


@dataclass
class SplitConfig:
    """How :func:`split` labels interactions (see the module docstring for each policy)."""

    # auto (the run config's default): the model family's protocol, named by the experiment before splitting
    method: Literal[SplitMethod, "auto"] = "loo"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / valid / test shares (ratio methods only)
    seed: int = 0  # the only randomness is the "random" method's draw
    cold_start: Literal["drop", "keep"] = "drop"  # drop or keep valid/test interactions whose user or item is not in train
    min_train: Positive = 1  # a user is held out only if this many interactions stay in train (else all train)
    cold_items: Share = 0.0  # share of items held out of training entirely (0 = none; see the module docstring)
    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            ("ratios",),
            lambda c: len(c.ratios) == 3 and all(math.isfinite(r) and r >= 0 for r in c.ratios),
            "ratios must be three non-negative numbers (train, valid, test), got {ratios}",
        ),
        Rule(
            ("ratios",),
            lambda c: c.ratios[0] > 0 and abs(sum(c.ratios) - 1.0) <= 1e-6,
            "ratios must sum to 1 with a positive train share, got {ratios}",
        ),
    )

    def check(self) -> None:
        """Refuse values that would give a silently wrong split (the ranges, choices and rules above)."""
        check_fields(self, "split.")
        if self.method == "auto":
            raise ConfigError(f"split.method=auto names no split; resolve it first (one of {', '.join(SPLIT_METHODS)})")


def split(ds: Dataset, cfg: SplitConfig) -> Dataset:
    """Label every interaction train / valid / test by ``cfg`` and apply the cold-start policy."""
    cfg.check()
    labels = _LABELLERS[cfg.method](ds, cfg)
    before = ds.n_interactions
    cold_item_index = choose_cold_items(ds, cfg.cold_items, cfg.seed)
    is_cold_item = np.zeros(ds.n_items, dtype=bool)
    is_cold_item[cold_item_index] = True
    leaked = is_cold_item[ds.item] & (labels == TRAIN)
    if leaked.any():  # a held-out item's train interactions go: it must never be trained on
        ds = ds.select(~leaked)
        labels = labels[~leaked]
    held_out = labels != TRAIN
    in_train = labels == TRAIN
    user_in_train = np.bincount(ds.user[in_train], minlength=ds.n_users) > 0
    item_in_train = np.bincount(ds.item[in_train], minlength=ds.n_items) > 0
    cold_user = held_out & ~user_in_train[ds.user]
    cold_item = held_out & ~item_in_train[ds.item]
    droppable = cold_user | (cold_item & ~is_cold_item[ds.item])  # held-out cold items are kept as targets
    cold_counts = {
        "interactions": int(droppable.sum()),
        "user_not_in_train": int(cold_user.sum()),
        "item_not_in_train": int((cold_item & ~is_cold_item[ds.item]).sum()),
        "valid": int((droppable & (labels == VALID)).sum()),
        "test": int((droppable & (labels == TEST)).sum()),
    }
    out = ds.replace(split=labels)
    if cfg.cold_start == "drop":
        out = out.select(~droppable)
        labels = labels[~droppable]
    if droppable.any():
        action = "dropped" if cfg.cold_start == "drop" else "kept (scored without train history)"
        warnings.warn(
            f"split '{cfg.method}' of '{ds.name}': {cold_counts['interactions']} cold valid/test interactions "
            f"({cold_counts['valid']} valid, {cold_counts['test']} test; {cold_counts['user_not_in_train']} with a "
            f"user and {cold_counts['item_not_in_train']} with an item absent from train) were {action}",
            stacklevel=2,
        )
    seen = seen_targets(out)
    if seen["valid"] or seen["test"]:
        warnings.warn(
            f"split '{cfg.method}' of '{ds.name}': {seen['valid']} valid targets are also train pairs and {seen['test']} "
            "test targets are also train or valid pairs; evaluation masks those, so they can never be hit "
            "(with a given split: the source's; otherwise keep dataset.preprocess.dedupe on)",
            stacklevel=2,
        )
    counts = np.bincount(labels.astype(np.int64), minlength=3)
    record: dict[str, Any] = {
        "method": cfg.method,
        "ratios": list(cfg.ratios) if cfg.method in ("temporal", "random", "global_temporal") else None,
        "seed": cfg.seed,
        "cold_start": cfg.cold_start,
        "min_train": cfg.min_train,
        "time_key": "timestamp" if ds.timestamp is not None else "row order",
        "counts": {SPLIT_NAMES[code]: int(counts[code]) for code in (TRAIN, VALID, TEST)},
        "cold": cold_counts,
        "cold_dropped": int(droppable.sum()) if cfg.cold_start == "drop" else 0,
        "cold_items": cold_item_index.tolist(),
        "cold_items_share": cfg.cold_items,
        "cold_items_train_removed": int(leaked.sum()),
        "cold_items_targets": int(np.isin(out.item[labels != TRAIN], cold_item_index).sum()),  # their valid/test rows
        "evaluated_users": int(np.unique(out.user[labels != TRAIN]).size),
        "seen_targets": seen,
    }
    out.meta["split"] = record
    out.meta["steps"] = [
        *out.meta.get("steps", []),
        {"op": "split", "method": cfg.method, "before": before, "after": out.n_interactions},
    ]
    return out


def choose_cold_items(ds: Dataset, share: float, seed: int) -> np.ndarray:
    """Sorted indices of ``round(share * n)`` (at least one when share > 0) of the ``n`` items with
    interactions, drawn with ``seed``; empty when ``share`` is 0."""
    if share <= 0:
        return np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(np.bincount(ds.item, minlength=ds.n_items) > 0)
    count = min(max(int(np.floor(share * len(present) + 0.5)), 1), len(present))
    return np.sort(np.random.default_rng(seed).choice(present, size=count, replace=False)).astype(np.int64)


def seen_targets(ds: Dataset) -> dict[str, int]:
    """Held-out interactions that evaluation masks: valid pairs that are also train pairs, test pairs that are
    also train or valid pairs (a split dataset; see the module docstring)."""
    if ds.split is None:
        raise ValueError(f"dataset '{ds.name}' is not split")
    pair = ds.user.astype(np.int64) * max(ds.n_items, 1) + ds.item
    train_pairs = pair[ds.split == TRAIN]
    seen_before_test = pair[ds.split != TEST]
    return {
        "valid": int(np.isin(pair[ds.split == VALID], train_pairs).sum()),
        "test": int(np.isin(pair[ds.split == TEST], seen_before_test).sum()),
    }


def _label_by_rank(ds: Dataset, order: np.ndarray, n_valid: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Labels from each user's rows in ``order`` (grouped by user): last ``n_test`` -> test, the
    ``n_valid`` before them -> valid; ``n_valid`` / ``n_test`` are per user."""
    position, size = positions_in_group(ds.user[order])
    from_end = size - position  # 1 for the last row of each user
    users = ds.user[order]
    labels_sorted = np.full(ds.n_interactions, TRAIN, dtype=np.int8)
    labels_sorted[from_end <= n_test[users] + n_valid[users]] = VALID
    labels_sorted[from_end <= n_test[users]] = TEST
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


def _evaluated(ds: Dataset, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-user interaction counts and whether the user is held out (>= min_train + 2 interactions)."""
    length = np.bincount(ds.user, minlength=ds.n_users)
    return length, length >= cfg.min_train + 2


def _leave_one_out(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    _, evaluated = _evaluated(ds, cfg)
    one = evaluated.astype(np.int64)
    return _label_by_rank(ds, time_order(ds), n_valid=one, n_test=one)


def _ratio_counts(ds: Dataset, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (n_valid, n_test) under the rounding rule of the module docstring."""
    length, evaluated = _evaluated(ds, cfg)
    _, r_valid, r_test = cfg.ratios

    def share(ratio: float) -> np.ndarray:
        count = np.floor(length * ratio + 0.5).astype(np.int64)
        return np.maximum(count, 1) if ratio > 0 else count

    n_valid, n_test = share(r_valid), share(r_test)
    excess = np.maximum(n_valid + n_test - (length - cfg.min_train), 0)
    valid_floor = 1 if r_valid > 0 else 0
    from_valid = np.minimum(excess, np.maximum(n_valid - valid_floor, 0))
    n_valid -= from_valid
    n_test -= excess - from_valid
    return np.where(evaluated, n_valid, 0), np.where(evaluated, n_test, 0)


def _temporal(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    n_valid, n_test = _ratio_counts(ds, cfg)
    return _label_by_rank(ds, time_order(ds), n_valid, n_test)


def _random(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    n_valid, n_test = _ratio_counts(ds, cfg)
    draw = np.random.default_rng(cfg.seed).random(ds.n_interactions)
    return _label_by_rank(ds, np.lexsort((draw, ds.user)), n_valid, n_test)


def _global_temporal(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    """Cut at the timestamps found at the ``ratios`` quantiles of all interactions.

    Every interaction at a cut timestamp goes to the later part, so a part never shares a
    timestamp with an earlier one (the shares can then differ a little from ``ratios``).
    """
    n = ds.n_interactions
    time_key = ds.timestamp if ds.timestamp is not None else np.arange(n, dtype=np.float64)
    sorted_time = np.sort(time_key)
    labels = np.full(n, TRAIN, dtype=np.int8)
    r_train, r_valid, _ = cfg.ratios
    for code, share in ((VALID, r_train), (TEST, r_train + r_valid)):
        first = int(np.floor(n * share + 0.5))
        if first < n:
            labels[time_key >= sorted_time[first]] = code
    return labels


def _given(ds: Dataset, cfg: SplitConfig) -> np.ndarray:
    if ds.split is None:
        raise ConfigError(
            f"split.method 'given' needs split labels from the source, but dataset '{ds.name}' has none; "
            f"choose one of: {', '.join(m for m in SPLIT_METHODS if m != 'given')}"
        )
    labels = np.asarray(ds.split, dtype=np.int8)
    unknown = ~np.isin(labels, (TRAIN, VALID, TEST))
    if unknown.any():
        raise ConfigError(
            f"dataset '{ds.name}' has {int(unknown.sum())} split labels outside {{0: train, 1: valid, 2: test}} "
            f"(first values: {np.unique(labels[unknown])[:5].tolist()})"
        )
    return labels.copy()


_LABELLERS = {
    "loo": _leave_one_out,
    "temporal": _temporal,
    "random": _random,
    "global_temporal": _global_temporal,
    "given": _given,
}
