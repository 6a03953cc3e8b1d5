"""Preprocessing filters: each keeps exactly the right rows, records its step, and the pipeline's
guarantees hold on what it returns."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.data.preprocess import (
    PreprocessConfig,
    binarize,
    dedupe,
    filter_min_length,
    kcore,
    preprocess,
    truncate_max_length,
)
from modalrec.errors import ConfigError


def random_dataset(seed: int, n: int = 3000, n_users: int = 80, n_items: int = 60) -> Dataset:
    """Skewed random interactions with repeats, tied timestamps and 1-5 ratings."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n) ** 2 // n_users  # skewed activity
    items = (rng.pareto(1.2, n) * 5).astype(np.int64) % n_items  # skewed popularity
    timestamp = rng.integers(0, 200, n)  # many ties
    rating = rng.integers(1, 6, n)
    return Dataset.from_raw("random", users, items, timestamp=timestamp, rating=rating)


def raw_rows(ds: Dataset) -> list[tuple[str, str, float]]:
    """Interactions as (raw user, raw item, timestamp): comparable across id re-mappings."""
    return list(zip(ds.user_ids[ds.user].tolist(), ds.item_ids[ds.item].tolist(), ds.timestamp.tolist()))


def test_binarize_keeps_ratings_at_or_above_threshold_and_records_step():
    ds = Dataset.from_raw("r", [0, 0, 1, 1, 2], [0, 1, 0, 2, 1], rating=[5, 3, 3.5, 4, 1])
    out = binarize(ds, 3.5)
    assert out.rating.tolist() == [5, 3.5, 4]
    assert out.item.tolist() == [0, 0, 2]
    assert out.meta["steps"][-1] == {"op": "binarize", "threshold": 3.5, "before": 5, "after": 3}
    assert ds.n_interactions == 5 and ds.meta["steps"] == []  # input untouched


def test_binarize_without_ratings_is_refused():
    ds = Dataset.from_raw("implicit", [0, 1], [0, 1])
    with pytest.raises(ConfigError, match="no ratings"):
        binarize(ds, 4)


def test_dedupe_keeps_latest_or_earliest_with_row_order_breaking_time_ties():
    # (user 0, item 0) three times: ts 5 (row 0), 9 (row 2), 9 (row 3); (1, 0) once
    ds = Dataset.from_raw("d", [0, 1, 0, 0], [0, 0, 0, 0], timestamp=[5, 1, 9, 9], rating=[1, 2, 3, 4])
    last = dedupe(ds, "last")
    assert sorted(last.rating.tolist()) == [2, 4]  # row 3: latest time, later row among the tie
    first = dedupe(ds, "first")
    assert sorted(first.rating.tolist()) == [1, 2]
    assert last.meta["steps"][-1] == {"op": "dedupe", "keep": "last", "scope": "whole history", "before": 4, "after": 2}


def test_dedupe_without_timestamps_uses_row_order():
    ds = Dataset.from_raw("d", [0, 0, 0], [1, 1, 1], rating=[1, 2, 3])
    assert dedupe(ds, "last").rating.tolist() == [3]
    assert dedupe(ds, "first").rating.tolist() == [1]
    with pytest.raises(ConfigError, match="'first' or 'last'"):
        dedupe(ds, "latest")


def test_dedupe_matches_a_per_pair_reference():
    ds = random_dataset(0)
    out = dedupe(ds, "last")
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for row, (u, i, t) in enumerate(zip(ds.user.tolist(), ds.item.tolist(), ds.timestamp.tolist())):
        best[(u, i)] = max(best.get((u, i), (-1.0, -1)), (t, row))
    expected_rows = sorted(row for _, row in best.values())
    assert out.rating.tolist() == ds.rating[expected_rows].tolist()
    assert out.user.tolist() == ds.user[expected_rows].tolist()


def reference_kcore(rows: list[tuple[str, str, float]], user_k: int, item_k: int) -> list[tuple[str, str, float]]:
    """Textbook k-core: remove offending interactions one pass at a time until nothing changes."""
    while True:
        users = Counter(u for u, _, _ in rows)
        items = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if users[r[0]] >= user_k and items[r[1]] >= item_k]
        if kept == rows:
            return rows
        rows = kept


def test_kcore_needs_several_rounds_and_matches_reference():
    # item 9 has 1 interaction -> removed; that leaves user 2 with 1 interaction -> removed; that
    # leaves item 1 with 1 -> removed, leaving user 1 with 1 -> removed. Users 0, 3 and items 0, 2 stay.
    users = [0, 0, 3, 3, 2, 2, 1, 1, 0, 3]
    items = [0, 2, 0, 2, 9, 1, 1, 5, 5, 5]
    ds = Dataset.from_raw("k", users, items, timestamp=np.arange(10))
    out = kcore(ds, 2, 2)
    assert sorted(out.user_ids.tolist()) == ["0", "3"]
    assert sorted(out.item_ids.tolist()) == ["0", "2", "5"]
    step = out.meta["steps"][-1]
    assert step["op"] == "kcore" and step["rounds"] >= 3 and (step["before"], step["after"]) == (10, 6)
    assert sorted(raw_rows(out)) == sorted(reference_kcore(raw_rows(ds), 2, 2))


@pytest.mark.parametrize("user_k,item_k", [(3, 5), (10, 2), (0, 8), (6, 0)])
def test_kcore_on_random_data_holds_both_bounds_and_compacts(user_k, item_k):
    ds = random_dataset(1)
    item_number = np.arange(ds.n_items, dtype=np.float32)[:, None]
    ds = ds.with_feature("text", ItemFeature(item_number, np.ones(ds.n_items, bool)))
    out = kcore(ds, user_k, item_k)
    assert sorted(raw_rows(out)) == sorted(reference_kcore(raw_rows(ds), user_k, item_k))
    assert np.bincount(out.user).min() >= user_k and np.bincount(out.item).min() >= item_k
    assert np.unique(out.user).size == out.n_users and np.unique(out.item).size == out.n_items  # contiguous
    out.validate()
    # the feature row of each kept item is still that item's row
    assert out.features["text"].values[:, 0].tolist() == [float(ds.item_index(r)) for r in out.item_ids]


def test_filter_min_length_drops_short_users_only():
    ds = Dataset.from_raw("m", [0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 1, 0])
    out = filter_min_length(ds, 2)
    assert out.user.tolist() == [0, 0, 0, 1, 1]
    assert out.n_users == 3  # ids not re-mapped
    assert out.meta["steps"][-1] == {"op": "filter_min_length", "min_len": 2, "before": 6, "after": 5}
    with pytest.raises(ConfigError, match="min_len"):
        filter_min_length(ds, -1)


def test_truncate_keeps_most_recent_with_stable_ties():
    # user 0 in rows 0..4 with ts 3, 1, 5, 5, 2 -> time order rows 1, 4, 0, 2, 3; keep last 3: rows 0, 2, 3
    ds = Dataset.from_raw("t", [0, 0, 0, 0, 0, 1], [0, 1, 2, 3, 4, 0], timestamp=[3, 1, 5, 5, 2, 0])
    out = truncate_max_length(ds, 3)
    assert out.item.tolist() == [0, 2, 3, 0]
    assert truncate_max_length(ds, 2).item.tolist() == [2, 3, 0]  # tie at ts 5: the later row wins
    with pytest.raises(ConfigError, match="max_len"):
        truncate_max_length(ds, 0)


def test_truncate_matches_per_user_reference():
    ds = random_dataset(2)
    out = truncate_max_length(ds, 7)
    per_user: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for row, (u, t) in enumerate(zip(ds.user.tolist(), ds.timestamp.tolist())):
        per_user[u].append((t, row))
    expected = sorted(row for events in per_user.values() for _, row in sorted(events)[-7:])
    assert out.item.tolist() == ds.item[expected].tolist()


def test_preprocess_pipeline_guarantees_and_provenance():
    ds = random_dataset(3)
    cfg = PreprocessConfig(rating_threshold=2, user_core=3, item_core=4, min_seq_len=5, max_seq_len=12)
    out = preprocess(ds, cfg)
    assert out.n_interactions > 0
    assert (out.rating >= 2).all()
    pairs = out.user * out.n_items + out.item
    assert np.unique(pairs).size == pairs.size  # deduped
    user_len = np.bincount(out.user, minlength=out.n_users)
    assert user_len.min() >= 5 and user_len.max() <= 12
    assert np.bincount(out.item, minlength=out.n_items).min() >= 4
    assert [s["op"] for s in out.meta["steps"]] == ["binarize", "dedupe", "truncate_max_length", "kcore"]
    assert out.meta["steps"][-1]["user_k"] == 5  # min_seq_len folded into the core
    assert out.meta["preprocess"]["max_seq_len"] == 12
    assert ds.meta["steps"] == [] and "preprocess" not in ds.meta


def test_preprocess_without_item_core_filters_users_and_compacts():
    ds = Dataset.from_raw("p", [0, 0, 1, 2, 2, 2], [0, 1, 2, 0, 1, 1], timestamp=[0, 1, 2, 3, 4, 5])
    out = preprocess(ds, PreprocessConfig(min_seq_len=2))
    assert [s["op"] for s in out.meta["steps"]] == ["dedupe", "filter_min_length"]
    assert out.user_ids.tolist() == ["0", "2"] and out.item_ids.tolist() == ["0", "1"]
    assert out.n_interactions == 4


def test_preprocess_rejects_bad_config_before_doing_work():
    ds = random_dataset(4)
    with pytest.raises(ConfigError, match="item_core"):
        preprocess(ds, PreprocessConfig(item_core=-2))
    with pytest.raises(ConfigError, match="max_seq_len"):
        preprocess(ds, PreprocessConfig(max_seq_len=0))


def test_dedupe_on_a_given_split_never_crosses_splits() -> None:
    """A test interaction repeating a train pair must not remove the train one (that would leak test into train)."""
    from modalrec.data.dataset import TEST, TRAIN

    ds = Dataset.from_raw(
        "given",
        np.array(["u", "u", "u", "u"]),
        np.array(["a", "b", "a", "b"]),
        timestamp=np.array([1.0, 2.0, 3.0, 4.0]),
        split=np.array([TRAIN, TRAIN, TEST, TRAIN]),
    )
    out = dedupe(ds, keep="last")
    assert sorted(zip(out.item.tolist(), out.split.tolist())) == [(0, TRAIN), (0, TEST), (1, TRAIN)]
    assert out.timestamp.tolist() == [1.0, 3.0, 4.0]
