"""``train.epoch_samples``: a per-epoch budget of sequence samples (bounds prefix augmentation)."""

from __future__ import annotations

import pytest

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.data.views import make_train_batches
from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class
from modalrec.train.trainer import view_settings


@pytest.fixture(scope="module")
def ctx() -> DataContext:
    return DataContext.from_dataset(split(make_synthetic(n_users=30, n_items=20, seed=1), SplitConfig(method="loo")))


def samples_of(batches) -> list[tuple[int, tuple[int, ...], int]]:
    return [(u, tuple(s), t) for b in batches for u, s, t in zip(b["users"].tolist(), b["seq"].tolist(), b["target"].tolist())]


def test_epoch_samples_draws_a_seeded_subset_without_replacement(ctx: DataContext) -> None:
    full = make_train_batches("sequences", ctx, 8, seed=3, max_len=6, target="last")
    budget = make_train_batches("sequences", ctx, 8, seed=3, max_len=6, target="last", samples=37)
    assert budget.n_samples == 37 and len(budget) == 5
    drawn = samples_of(budget)
    assert len(drawn) == 37 and set(drawn) <= set(samples_of(full))
    assert len({(u, s) for u, s, _ in drawn}) == 37  # no prefix twice
    assert drawn == samples_of(make_train_batches("sequences", ctx, 8, seed=3, max_len=6, target="last", samples=37))
    assert drawn != samples_of(make_train_batches("sequences", ctx, 8, seed=4, max_len=6, target="last", samples=37))
    huge = make_train_batches("sequences", ctx, 8, seed=3, max_len=6, target="last", samples=10**9)
    assert huge.n_samples == full.n_samples  # a budget above the epoch keeps every sample
    with pytest.raises(ConfigError, match="epoch_samples"):
        make_train_batches("sequences", ctx, 8, seed=3, samples=0)


def test_the_trainer_passes_train_epoch_samples_to_the_sequences_view(ctx: DataContext) -> None:
    cfg = resolve(["model=sasrec", "train.epoch_samples=50", "train.seq_target=last"])
    model = get_model_class("sasrec")(get_model_class("sasrec").Config(), ctx)
    assert view_settings(model, cfg) == {"max_len": model.max_len, "target": "last", "samples": 50}
