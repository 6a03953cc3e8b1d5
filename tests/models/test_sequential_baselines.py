"""SASRec and GRU4Rec: causality, padding, scoring API and learning a successor rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_data import (  # single_thread: fixture used by pytestmark
    chunked_scores,
    sequence_batch,
    single_thread,  # noqa: F401
    successor_context,
    successor_sequences,
    train_steps,
)

from modalrec.data.dataset import TEST, VALID
from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class
from modalrec.nn.transformer import causal_attention_mask

N_ITEMS = 20
MODELS = [("sasrec", {"norm_first": True}), ("sasrec", {"norm_first": False}), ("gru4rec", {})]
IDS = ["sasrec-preln", "sasrec-postln", "gru4rec"]

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(name: str, ctx, **overrides):
    torch.manual_seed(0)
    cls = get_model_class(name)
    base = {"dim": 16, "max_len": 12}
    if name == "sasrec":
        base["dropout"] = 0.1
    else:
        base.update(hidden=32, dropout=0.1)
    return cls(cls.Config(**{**base, **overrides}), ctx)


def _hidden(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.hidden_states(batch["seq"], batch["lengths"])


def test_causal_mask_blocks_future_and_padding_but_never_a_whole_row() -> None:
    valid = torch.tensor([[True, True, False], [False, False, False]])
    mask = causal_attention_mask(valid)[:, 0]
    assert mask[0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert mask[1].tolist() == [[True, False, False], [False, True, False], [False, False, True]]


@pytest.mark.parametrize(("name", "overrides"), MODELS, ids=IDS)
def test_changing_a_future_item_leaves_earlier_positions_unchanged(name: str, overrides: dict) -> None:
    ctx, seqs = successor_context()
    model = _model(name, ctx, **overrides).eval()
    batch = sequence_batch(seqs[:4], 12, N_ITEMS)
    changed = {k: v.clone() for k, v in batch.items()}
    t = 3
    changed["seq"][:, t] = (changed["seq"][:, t] + 7) % N_ITEMS
    with torch.no_grad():
        before, after = _hidden(model, batch), _hidden(model, changed)
    torch.testing.assert_close(after[:, :t], before[:, :t])
    assert not torch.allclose(after[:, t], before[:, t])


@pytest.mark.parametrize(("name", "overrides"), MODELS, ids=IDS)
def test_padding_amount_and_content_do_not_change_outputs(name: str, overrides: dict) -> None:
    ctx, seqs = successor_context()
    model = _model(name, ctx, **overrides).eval()
    short = sequence_batch(seqs[:5], 8, N_ITEMS)  # max history of successor_context is 11 > 8 -> cut
    lengths = short["lengths"]
    longer = sequence_batch([s[-(int(n) + 1) :] for s, n in zip(seqs[:5], lengths)], 12, N_ITEMS)
    torch.testing.assert_close(longer["lengths"], lengths)
    with torch.no_grad():
        a, b = _hidden(model, short), _hidden(model, longer)
        valid = torch.arange(8)[None, :] < lengths[:, None]
        torch.testing.assert_close(b[:, :8][valid], a[valid])
        # queries are read at lengths - 1 and equal for both paddings
        torch.testing.assert_close(model.score(short), model.score(longer))


@pytest.mark.parametrize(("name", "overrides"), MODELS, ids=IDS)
def test_scores_have_catalogue_shape_and_chunks_concatenate(name: str, overrides: dict) -> None:
    ctx, _ = successor_context()
    model = _model(name, ctx, **overrides).eval()
    users = np.arange(6)
    for phase in (VALID, TEST):
        batch = model.eval_batch(users, ctx, phase)
        with torch.no_grad():
            scores = model.score(batch)
            assert scores.shape == (6, N_ITEMS)
            torch.testing.assert_close(chunked_scores(model, batch, 6), scores)
    empty = {"seq": torch.full((1, 12), N_ITEMS), "lengths": torch.zeros(1, dtype=torch.long)}
    with torch.no_grad():
        assert torch.isfinite(model.score(empty)).all()


@pytest.mark.parametrize(
    ("name", "overrides"),
    [*MODELS, ("sasrec", {"loss": "bpr"}), ("sasrec", {"loss": "bce"}), ("sasrec", {"loss": "sampled", "negatives": 12})],
    ids=[*IDS, "sasrec-bpr", "sasrec-bce", "sasrec-sampled"],
)
def test_learns_the_successor_rule(name: str, overrides: dict) -> None:
    ctx, _ = successor_context()
    model = _model(name, ctx, **overrides)
    rng = np.random.default_rng(0)
    losses = train_steps(
        model, lambda: sequence_batch(successor_sequences(N_ITEMS, 32, (3, 12), rng), 12, N_ITEMS), steps=80, lr=0.02
    )
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:15])
    held_out = successor_sequences(N_ITEMS, 50, (2, 10), np.random.default_rng(1))
    batch = sequence_batch(held_out, 12, N_ITEMS)  # the query is the state after the last input item
    with torch.no_grad():
        predicted = model.score(batch).argmax(1).numpy()
    expected = np.array([s[-1] for s in held_out])  # the item after the last input item
    assert (predicted == expected).mean() >= 0.95


@pytest.mark.parametrize("loss", ["ce", "bpr"])
def test_last_target_batches_train_the_state_at_lengths_minus_one(loss: str) -> None:
    ctx, seqs = successor_context()
    model = _model("sasrec", ctx, loss=loss, dropout=0.0)
    full = sequence_batch(seqs[:6], 12, N_ITEMS)
    last = {"seq": full["seq"], "lengths": full["lengths"], "target": full["targets"][torch.arange(6), full["lengths"] - 1]}
    only_last = dict(full, targets=torch.full_like(full["targets"], -100))
    only_last["targets"][torch.arange(6), full["lengths"] - 1] = last["target"]
    if loss == "ce":  # identical supervision, identical loss
        torch.testing.assert_close(model.loss(last)["loss"], model.loss(only_last)["loss"])
    out = model.loss(last)
    out["loss"].backward()
    assert out["loss"].ndim == 0 and loss in out
    assert model.item_embedding.weight.grad[N_ITEMS].abs().sum() == 0  # padding row never learns


def test_sampled_softmax_over_every_item_is_full_cross_entropy() -> None:
    from modalrec.nn.losses import binary_ce_loss, sampled_softmax_loss

    torch.manual_seed(0)
    states, table = torch.randn(30, 8), torch.randn(N_ITEMS, 8)
    targets = torch.randint(0, N_ITEMS, (30,))
    full = torch.nn.functional.cross_entropy(states @ table.T, targets)
    # every item as a negative: each row's own target is removed from its negatives, leaving the full softmax
    torch.testing.assert_close(sampled_softmax_loss(states, targets, table, torch.arange(N_ITEMS)), full)
    few = sampled_softmax_loss(states, targets, table, torch.tensor([0, 1, 2]))
    assert few < full  # fewer competitors, smaller loss
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    expected = (
        -(np.log(1 / (1 + np.exp(-2.0))) + np.log(1 / (1 + np.exp(1.0)))) / 2
        - (np.log(1 - 1 / (1 + np.exp(-0.5))) + np.log(1 - 1 / (1 + np.exp(-3.0)))) / 2
    )
    assert binary_ce_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_fused_causal_attention_equals_the_explicit_mask_at_real_positions() -> None:
    from modalrec.nn.transformer import CausalTransformer, TransformerStack

    torch.manual_seed(0)
    fused = CausalTransformer(16, 2, 2, 0.0).eval()
    masked = TransformerStack(16, 2, 2, 0.0).eval()  # the explicit boolean mask of causal_attention_mask
    masked.load_state_dict(fused.state_dict())
    x = torch.randn(5, 9, 16)
    valid = torch.arange(9)[None, :] < torch.tensor([9, 4, 1, 7, 0])[:, None]
    with torch.no_grad():
        torch.testing.assert_close(fused(x, valid), masked(x, valid))


def test_bpr_negatives_are_reproducible_from_the_global_seed() -> None:
    ctx, seqs = successor_context()
    batch = sequence_batch(seqs[:6], 12, N_ITEMS)
    first, second = (_model("sasrec", ctx, loss="bpr", dropout=0.0) for _ in range(2))
    torch.testing.assert_close(first.loss(batch)["loss"], second.loss(batch)["loss"])
    assert not torch.equal(first.loss(batch)["loss"], first.loss(batch)["loss"])  # fresh negatives per call


def test_bad_configs_are_refused_with_the_choices() -> None:
    ctx, _ = successor_context()
    with pytest.raises(ConfigError, match="ce, sampled, bce, bpr"):
        _model("sasrec", ctx, loss="softmax")
    with pytest.raises(ConfigError, match="model.negatives >= 1"):
        _model("sasrec", ctx, loss="sampled", negatives=0)
    with pytest.raises(ConfigError, match="multiple of heads"):
        _model("sasrec", ctx, dim=10, heads=3)
    with pytest.raises(ConfigError, match="ce, sampled, bce, bpr"):
        _model("gru4rec", ctx, loss="top1")


def test_sequences_longer_than_max_len_are_refused() -> None:
    ctx, seqs = successor_context()
    model = _model("sasrec", ctx)
    with pytest.raises(ValueError, match="max_len"):
        model.loss(sequence_batch(seqs[:2], 13, N_ITEMS))
