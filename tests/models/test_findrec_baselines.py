"""FindRec's baselines: Mamba4Rec and feature-aware SASRec (causality, padding, learning, content use)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _baseline_data import sequence_batch, successor_context, successor_sequences, train_steps

from modalrec.data.context import DataContext
from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class

MODELS = [
    ("mamba4rec", {"dim": 16, "d_state": 8}),
    ("mamba4rec", {"dim": 16, "d_state": 8, "layers": 2, "init": "module_default"}),
    ("sasrec_features", {"dim": 16, "heads": 2, "max_len": 12}),
    ("sasrec_features", {"dim": 16, "heads": 2, "max_len": 12, "fusion": "concat"}),
]
IDS = ["mamba4rec", "mamba4rec-2layers", "sasrec_features-add", "sasrec_features-concat"]
N_ITEMS = 20  # successor_context()


def with_features(ctx: DataContext, seed: int = 0) -> DataContext:
    g = torch.Generator().manual_seed(seed)
    features = {"text": torch.randn(ctx.n_items, 6, generator=g), "image": torch.randn(ctx.n_items, 10, generator=g)}
    masks = {k: torch.ones(ctx.n_items, dtype=torch.bool) for k in features}
    return dataclasses.replace(ctx, features=features, feature_masks=masks)


def build(name: str, ctx: DataContext, **overrides: object):
    torch.manual_seed(0)
    cls = get_model_class(name)
    return cls(cls.Config(**overrides), ctx)


def hidden(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.hidden_states(batch["seq"], batch["lengths"])


@pytest.mark.parametrize(("name", "overrides"), MODELS, ids=IDS)
def test_future_items_do_not_change_earlier_states(name: str, overrides: dict) -> None:
    ctx, seqs = successor_context()
    model = build(name, with_features(ctx), **overrides).eval()
    batch = sequence_batch(seqs[:4], 12, N_ITEMS)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["seq"][:, 3] = (changed["seq"][:, 3] + 7) % N_ITEMS
    with torch.no_grad():
        before, after = hidden(model, batch), hidden(model, changed)
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3], before[:, 3])


@pytest.mark.parametrize(("name", "overrides"), MODELS, ids=IDS)
def test_padding_content_does_not_change_scores(name: str, overrides: dict) -> None:
    ctx, seqs = successor_context()
    model = build(name, with_features(ctx), **overrides).eval()
    batch = sequence_batch(seqs[:5], 12, N_ITEMS)
    noisy = dict(batch, seq=batch["seq"].clone())
    pad = torch.arange(12) >= batch["lengths"][:, None]
    noisy["seq"][pad] = torch.randint(0, N_ITEMS, (int(pad.sum()),))
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), model.score(noisy))


@pytest.mark.parametrize(("name", "overrides"), [MODELS[0], MODELS[2]], ids=[IDS[0], IDS[2]])
def test_learns_the_successor_rule(name: str, overrides: dict) -> None:
    ctx, _ = successor_context()
    model = build(name, with_features(ctx), **overrides)
    rng = np.random.default_rng(0)
    losses = train_steps(
        model, lambda: sequence_batch(successor_sequences(N_ITEMS, 32, (3, 12), rng), 12, N_ITEMS), steps=80, lr=0.02
    )
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:15])
    held_out = successor_sequences(N_ITEMS, 50, (2, 10), np.random.default_rng(1))
    model.eval()
    with torch.no_grad():
        predicted = model.score(sequence_batch(held_out, 12, N_ITEMS)).argmax(1).numpy()
    assert (predicted == np.array([s[-1] for s in held_out])).mean() >= 0.9


def test_sasrec_features_scores_depend_on_item_content() -> None:
    ctx, seqs = successor_context()
    rich = with_features(ctx)
    model = build("sasrec_features", rich, dim=16, heads=2, max_len=12).eval()
    batch = sequence_batch(seqs[:3], 12, N_ITEMS)
    with torch.no_grad():
        before = model.score(batch)
        model.feature_text[5] += 3.0  # item 5's content changes: its score column changes
        after = model.score(batch)
    assert not torch.allclose(before[:, 5], after[:, 5])
    with pytest.raises(ConfigError, match="needs item features"):
        build("sasrec_features", ctx, dim=16, heads=2)
    with pytest.raises(ConfigError, match="fusion"):
        build("sasrec_features", rich, dim=16, heads=2, fusion="gate")
