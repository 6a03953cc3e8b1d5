"""Splits: the right interaction in the right part, the documented rounding and short-user policy,
cold-start handling, determinism by seed, and errors that name the valid choices."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import pytest

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.data.split import SPLIT_METHODS, SplitConfig, split
from modalrec.errors import ConfigError


def user_lengths_dataset(lengths: list[int], seed: int = 0, n_items: int | None = None) -> Dataset:
    """User u has lengths[u] interactions with distinct timestamps, rows shuffled; every user
    interacts with items 0, 1, 2, ... so items recur across users (few cold items)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(lengths)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths])
    items = position % (n_items or max(lengths))
    timestamp = rng.permutation(len(users)).astype(np.float64)
    shuffle = rng.permutation(len(users))
    return Dataset.from_raw(
        "lengths", users[shuffle], items[shuffle], timestamp=timestamp[shuffle], user_universe=np.arange(len(lengths))
    )


def per_user_timelines(ds: Dataset) -> dict[int, list[tuple[float, int]]]:
    """user -> [(timestamp, split label)] in time order."""
    out: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for u, t, s in zip(ds.user.tolist(), ds.timestamp.tolist(), ds.split.tolist()):
        out[u].append((t, s))
    return {u: sorted(v) for u, v in out.items()}


def split_quietly(ds: Dataset, cfg: SplitConfig) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return split(ds, cfg)


def test_leave_one_out_last_is_test_second_last_is_valid():
    lengths = [5, 3, 2, 1, 9]
    out = split_quietly(user_lengths_dataset(lengths), SplitConfig(method="loo", cold_start="keep"))
    assert out.split.dtype == np.int8
    for u, timeline in per_user_timelines(out).items():
        labels = [s for _, s in timeline]
        if lengths[u] >= 3:
            assert labels == [TRAIN] * (lengths[u] - 2) + [VALID, TEST]
        else:  # too short to hold out: all train
            assert labels == [TRAIN] * lengths[u]
    assert out.meta["split"]["counts"] == {"train": 14, "valid": 3, "test": 3}
    assert out.meta["split"]["evaluated_users"] == 3


def test_leave_one_out_breaks_time_ties_by_row_order():
    ds = Dataset.from_raw("ties", [0, 0, 0, 0], [0, 1, 2, 3], timestamp=[1, 7, 7, 7])
    out = split_quietly(ds, SplitConfig(method="loo", cold_start="keep"))
    assert out.split.tolist() == [TRAIN, TRAIN, VALID, TEST]


def test_min_train_raises_the_bar_for_being_evaluated():
    out = split_quietly(user_lengths_dataset([3, 4]), SplitConfig(method="loo", min_train=2, cold_start="keep"))
    assert (out.split[out.user == 0] == TRAIN).all()
    assert sorted(out.split[out.user == 1].tolist()) == [TRAIN, TRAIN, VALID, TEST]


@pytest.mark.parametrize(
    "length,ratios,expected",
    [
        (3, (0.8, 0.1, 0.1), (1, 1, 1)),  # each held-out part gets at least one
        (20, (0.8, 0.1, 0.1), (16, 2, 2)),
        (15, (0.8, 0.1, 0.1), (11, 2, 2)),  # 1.5 rounds up
        (10, (0.6, 0.2, 0.2), (6, 2, 2)),
        (4, (0.1, 0.45, 0.45), (1, 1, 2)),  # 2 + 2 would leave no train: valid gives way first
        (10, (0.9, 0.0, 0.1), (9, 0, 1)),  # no validation share
        (2, (0.8, 0.1, 0.1), (2, 0, 0)),  # too short: all train
    ],
)
@pytest.mark.parametrize("method", ["temporal", "random"])
def test_ratio_split_counts_follow_the_rounding_rule(method, length, ratios, expected):
    out = split_quietly(user_lengths_dataset([length]), SplitConfig(method=method, ratios=ratios, cold_start="keep"))
    assert tuple(np.bincount(out.split, minlength=3).tolist()) == expected


def test_temporal_split_keeps_each_users_parts_in_time_order():
    lengths = list(np.random.default_rng(5).integers(1, 40, 50))
    out = split_quietly(user_lengths_dataset(lengths), SplitConfig(method="temporal", cold_start="keep"))
    for timeline in per_user_timelines(out).values():
        labels = [s for _, s in timeline]
        assert labels == sorted(labels)  # train..., valid..., test...
        if len(labels) >= 3:
            assert labels[0] == TRAIN and VALID in labels and TEST in labels


def test_random_split_is_deterministic_by_seed_and_not_time_ordered():
    ds = user_lengths_dataset([30] * 20)
    cfg = SplitConfig(method="random", cold_start="keep")
    first, again = split_quietly(ds, cfg), split_quietly(ds, cfg)
    other = split_quietly(ds, SplitConfig(method="random", seed=1, cold_start="keep"))
    assert np.array_equal(first.split, again.split)
    assert not np.array_equal(first.split, other.split)
    temporal = split_quietly(ds, SplitConfig(method="temporal", cold_start="keep"))
    test_per_user = [np.bincount(s.user[s.split == TEST], minlength=s.n_users) for s in (first, temporal)]
    assert np.array_equal(*test_per_user)  # same counts per user, different interactions
    assert not np.array_equal(first.split, temporal.split)
    assert first.meta["split"]["seed"] == 0 and other.meta["split"]["seed"] == 1


def test_global_temporal_cuts_one_timeline_with_ties_going_later():
    rng = np.random.default_rng(7)
    n = 1000
    timestamp = rng.integers(0, 300, n)  # many ties
    ds = Dataset.from_raw("g", rng.integers(0, 30, n), rng.integers(0, 20, n), timestamp=timestamp)
    out = split_quietly(ds, SplitConfig(method="global_temporal", ratios=(0.7, 0.15, 0.15), cold_start="keep"))
    t = {code: out.timestamp[out.split == code] for code in (TRAIN, VALID, TEST)}
    assert t[TRAIN].max() < t[VALID].min() and t[VALID].max() < t[TEST].min()
    shares = np.bincount(out.split, minlength=3) / n
    assert abs(shares[TRAIN] - 0.7) < 0.02 and abs(shares[TEST] - 0.15) < 0.02
    # the cut sits at the 70% quantile: everything strictly before that timestamp is train
    cut = np.sort(timestamp)[700]
    assert t[TRAIN].max() < cut <= t[VALID].min()


def test_given_keeps_source_labels_and_refuses_missing_or_bad_ones():
    ds = Dataset.from_raw("given", [0, 0, 0, 1], [0, 1, 0, 1], split=[TRAIN, TRAIN, TEST, VALID])
    out = split_quietly(ds, SplitConfig(method="given", cold_start="keep"))
    assert out.split.tolist() == [TRAIN, TRAIN, TEST, VALID]
    with pytest.raises(ConfigError, match="no.*labels|has none"):
        split(Dataset.from_raw("plain", [0], [0]), SplitConfig(method="given"))
    with pytest.raises(ConfigError, match="outside"):
        split(Dataset.from_raw("bad", [0, 1], [0, 1], split=[0, 5]), SplitConfig(method="given"))


def cold_dataset() -> Dataset:
    """User 0: items 0, 1 train, 2 valid, 3 test (item 3 is seen by nobody else); user 1: items 0, 2
    train, 1 test; user 2 only appears in valid/test."""
    users = [0, 0, 0, 0, 1, 1, 1, 2, 2]
    items = [0, 1, 2, 3, 0, 2, 1, 0, 1]
    labels = [TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN, TEST, VALID, TEST]
    return Dataset.from_raw("cold", users, items, timestamp=np.arange(9), split=labels)


def test_cold_start_drop_removes_unscorable_pairs_and_warns_with_counts():
    ds = cold_dataset()
    with pytest.warns(UserWarning, match=r"3 cold valid/test interactions \(1 valid, 2 test"):
        out = split(ds, SplitConfig(method="given", cold_start="drop"))
    # dropped: (0, 3) as item 3 is never in train, and user 2's two rows
    assert (out.user.tolist(), out.item.tolist()) == ([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 2, 1])
    record = out.meta["split"]
    assert record["cold"] == {"interactions": 3, "user_not_in_train": 2, "item_not_in_train": 1, "valid": 1, "test": 2}
    assert record["cold_dropped"] == 3 and record["counts"] == {"train": 4, "valid": 1, "test": 1}
    assert out.n_items == ds.n_items  # ids unchanged: cold items stay in the catalogue
    assert out.meta["steps"][-1] == {"op": "split", "method": "given", "before": 9, "after": 6}


def test_cold_start_keep_leaves_them_and_still_warns():
    ds = cold_dataset()
    with pytest.warns(UserWarning, match="were kept"):
        out = split(ds, SplitConfig(method="given", cold_start="keep"))
    assert np.array_equal(out.split, ds.split)
    assert out.meta["split"]["cold"]["interactions"] == 3 and out.meta["split"]["cold_dropped"] == 0


def test_no_warning_when_nothing_is_cold():
    ds = user_lengths_dataset([6, 6, 6], n_items=3)  # items repeat within a history (not de-duplicated)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cold")
        out = split(ds, SplitConfig(method="loo"))
    assert out.meta["split"]["cold"]["interactions"] == 0
    parts = {
        code: set(zip(out.user[out.split == code].tolist(), out.item[out.split == code].tolist()))
        for code in (TRAIN, VALID, TEST)
    }
    expected = {"valid": len(parts[VALID] & parts[TRAIN]), "test": len(parts[TEST] & (parts[TRAIN] | parts[VALID]))}
    assert out.meta["split"]["seen_targets"] == expected and expected["test"] > 0  # the repeats are counted instead


def test_bad_configs_name_the_valid_choices():
    ds = user_lengths_dataset([5])
    with pytest.raises(ConfigError) as err:
        split(ds, SplitConfig(method="leave_one_out"))
    assert all(m in str(err.value) for m in SPLIT_METHODS)
    with pytest.raises(ConfigError, match="drop, keep"):
        split(ds, SplitConfig(cold_start="ignore"))
    with pytest.raises(ConfigError, match="sum to 1"):
        split(ds, SplitConfig(method="temporal", ratios=(0.5, 0.1, 0.1)))
    with pytest.raises(ConfigError, match="three non-negative"):
        split(ds, SplitConfig(method="temporal", ratios=(0.9, 0.2, -0.1)))
    with pytest.raises(ConfigError, match="min_train"):
        split(ds, SplitConfig(min_train=0))


def test_split_does_not_touch_its_input():
    ds = user_lengths_dataset([5, 4])
    split_quietly(ds, SplitConfig(method="loo"))
    assert ds.split is None and ds.meta["steps"] == [] and "split" not in ds.meta


# ---------------------------------------------------------------------- re-splitting a given split
def given_split_with_a_repeat() -> Dataset:
    """User 0: train a, b, c, d; test a again (the source's split holds the pair twice); users 1 and 2 read
    items 0-4 (train, train, train, valid, test). Cold targets are kept, so every count below is exact."""
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    items = np.array([0, 1, 2, 3, 0, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    user0 = [TRAIN, TRAIN, TRAIN, TRAIN, TEST]
    others = [TRAIN, TRAIN, TRAIN, VALID, TEST]
    labels = np.array(user0 + others + others, dtype=np.int8)
    return Dataset.from_raw("given", users, items, timestamp=np.arange(15, dtype=np.float64), split=labels)


def test_a_recomputed_split_dedupes_the_whole_history_so_no_target_is_a_training_pair() -> None:
    from modalrec.data.preprocess import PreprocessConfig, preprocess
    from modalrec.data.split import seen_targets

    raw = given_split_with_a_repeat()
    # the old order (dedupe within the source's splits, then re-split) leaves (0, a) twice: a test target in train
    within = split_quietly(preprocess(raw, PreprocessConfig()), SplitConfig(method="loo", cold_start="keep"))
    assert seen_targets(within) == {"valid": 0, "test": 1}
    with pytest.warns(UserWarning, match="1 test targets are also train or valid pairs"):
        split(preprocess(raw, PreprocessConfig()), SplitConfig(method="loo", cold_start="keep"))
    whole = split_quietly(preprocess(raw, PreprocessConfig(), resplit=True), SplitConfig(method="loo", cold_start="keep"))
    pairs = whole.user.astype(np.int64) * whole.n_items + whole.item
    assert len(np.unique(pairs)) == len(pairs) == 14  # the earlier (0, a) is gone
    assert seen_targets(whole) == {"valid": 0, "test": 0}
    assert whole.meta["split"]["seen_targets"] == {"valid": 0, "test": 0}
    assert whole.meta["steps"][0]["scope"] == "whole history"
    # a kept ('given') split keeps the source's labels, duplicates and all, and says so
    given = split_quietly(preprocess(raw, PreprocessConfig()), SplitConfig(method="given"))
    assert given.meta["split"]["seen_targets"] == {"valid": 0, "test": 1}


def test_prepare_data_dedupes_before_a_recomputed_split(tmp_path) -> None:
    from modalrec.config import resolve
    from modalrec.data.storage import save_dataset
    from modalrec.train.experiment import prepare_data

    save_dataset(given_split_with_a_repeat(), tmp_path / "given")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept, _ = prepare_data(
            resolve([f"dataset={tmp_path / 'given'}", "dataset.split.method=given", "dataset.split.cold_start=keep"]), "general"
        )
        redone, _ = prepare_data(
            resolve([f"dataset={tmp_path / 'given'}", "dataset.split.method=loo", "dataset.split.cold_start=keep"]), "general"
        )
    assert kept.n_interactions == 15 and redone.n_interactions == 14
    assert redone.meta["split"]["seen_targets"] == {"valid": 0, "test": 0}


def test_data_info_prints_the_seen_target_check(tmp_path) -> None:
    from typer.testing import CliRunner

    from modalrec.cli import app
    from modalrec.data.storage import save_dataset

    save_dataset(given_split_with_a_repeat(), tmp_path / "given")
    runner = CliRunner()
    kept = runner.invoke(
        app, ["data", "info", str(tmp_path / "given"), "dataset.split.method=given", "dataset.split.cold_start=keep"]
    )
    assert kept.exit_code == 0, kept.output
    assert "seen targets: 0 valid targets in train, 1 test targets in train or valid (never hittable" in " ".join(
        kept.output.split()
    )
    redone = runner.invoke(
        app, ["data", "info", str(tmp_path / "given"), "dataset.split.method=loo", "dataset.split.cold_start=keep"]
    )
    assert "seen targets: 0 valid targets in train, 0 test targets in train or valid (ok)" in " ".join(redone.output.split())
