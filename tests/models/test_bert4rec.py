"""BERT4Rec: bidirectional reading, the cloze mask, the appended [mask] at inference, learning a successor rule."""

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

N_ITEMS = 20
MAX_LEN = 13  # 12 history items + the [mask]

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(ctx, **overrides):
    torch.manual_seed(0)
    cls = get_model_class("bert4rec")
    return cls(cls.Config(**{"dim": 16, "max_len": MAX_LEN, "dropout": 0.1, **overrides}), ctx)


def test_every_position_reads_the_whole_sequence_but_not_the_padding() -> None:
    ctx, seqs = successor_context()
    model = _model(ctx).eval()
    batch = sequence_batch(seqs[:4], 12, N_ITEMS)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["seq"][:, 4] = (changed["seq"][:, 4] + 7) % N_ITEMS
    padded = {k: v.clone() for k, v in batch.items()}
    padded["seq"][padded["seq"] == N_ITEMS] = 3  # other content where the padding was
    with torch.no_grad():
        before, after = (model.hidden_states(b["seq"], b["lengths"]) for b in (batch, changed))
        assert not torch.allclose(after[:, :4], before[:, :4])  # earlier positions see a later change (not causal)
        same = model.hidden_states(padded["seq"], padded["lengths"])
        valid = torch.arange(12)[None, :] < batch["lengths"][:, None]
        torch.testing.assert_close(same[valid], before[valid])


def test_training_sequences_are_rebuilt_from_both_batch_forms() -> None:
    ctx, seqs = successor_context()
    model = _model(ctx)
    batch = sequence_batch(seqs[:6], 12, N_ITEMS)
    full, lengths = model.full_sequences(batch)
    for row, s in enumerate(seqs[:6]):
        expected = s[-13:]
        assert lengths[row] == len(expected) and full[row, : len(expected)].tolist() == expected.tolist()
        assert (full[row, len(expected) :] == N_ITEMS).all()
    last = {"seq": batch["seq"], "lengths": batch["lengths"], "target": batch["targets"][torch.arange(6), batch["lengths"] - 1]}
    torch.testing.assert_close(model.full_sequences(last)[0], full)


def test_the_cloze_mask_covers_real_items_only_at_the_mask_rate() -> None:
    ctx, _ = successor_context()
    model = _model(ctx, mask_prob=0.3)
    torch.manual_seed(1)
    lengths = torch.randint(1, 13, (4000,))
    masked = model.cloze_mask(lengths, 13)
    positions = torch.arange(13)[None, :]
    assert not (masked & (positions >= lengths[:, None])).any()  # never padding
    assert masked.any(dim=1).all()  # at least one per sequence
    long = lengths >= 10  # the at-least-one rule barely moves the rate of long sequences
    rate = masked[long].sum() / lengths[long].sum()
    assert abs(rate.item() - 0.3) < 0.02
    only_last = _model(ctx, last_item_share=1.0).cloze_mask(lengths, 13)
    assert torch.equal(only_last, positions == (lengths - 1)[:, None])


def test_the_loss_counts_masked_positions_and_the_padding_row_never_learns() -> None:
    ctx, seqs = successor_context()
    model = _model(ctx, mask_prob=1.0, dropout=0.0)
    batch = sequence_batch(seqs[:6], 12, N_ITEMS)
    out = model.loss(batch)
    full, lengths = model.full_sequences(batch)
    with torch.no_grad():  # mask_prob 1: every real item is masked, the loss is their mean cross-entropy
        hidden = model.hidden_states(torch.where(torch.arange(13)[None] < lengths[:, None], model.mask_token, full), lengths)
        valid = torch.arange(13)[None] < lengths[:, None]
        logits = model.project(hidden[valid]) @ model.item_table().T + model.output_bias
        expected = torch.nn.functional.cross_entropy(logits, full[valid])
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    assert model.item_embedding.weight.grad[N_ITEMS].abs().sum() == 0
    assert model.item_embedding.weight.grad[N_ITEMS + 1].abs().sum() > 0  # the [mask] token does learn


def test_scores_come_from_an_appended_mask_and_chunks_concatenate() -> None:
    ctx, _ = successor_context()
    model = _model(ctx).eval()
    users = np.arange(6)
    for phase in (VALID, TEST):
        batch = model.eval_batch(users, ctx, phase)
        assert batch["seq"].shape[1] == MAX_LEN - 1
        with torch.no_grad():
            scores = model.score(batch)
            assert scores.shape == (6, N_ITEMS)
            torch.testing.assert_close(chunked_scores(model, batch, 7), scores)
            # the query is the output at position `lengths`, where the [mask] was put
            seq = torch.cat([batch["seq"], torch.full((6, 1), N_ITEMS)], dim=1)
            seq[torch.arange(6), batch["lengths"]] = model.mask_token
            hidden = model.hidden_states(seq, batch["lengths"] + 1)[torch.arange(6), batch["lengths"]]
            torch.testing.assert_close(scores, model.project(hidden) @ model.item_table().T + model.output_bias)
    empty = {"seq": torch.full((1, MAX_LEN - 1), N_ITEMS), "lengths": torch.zeros(1, dtype=torch.long)}
    with torch.no_grad():
        assert torch.isfinite(model.score(empty)).all()


def test_learns_the_successor_rule() -> None:
    """A masked item is the successor of its left neighbour: unlike SASRec's next-item task, the [mask] input
    carries no information, so the model must learn to attend by relative position (hence more steps)."""
    ctx, _ = successor_context()
    model = _model(ctx, dim=32, dropout=0.0, mask_prob=0.3, last_item_share=0.2, init_std=0.1)
    rng = np.random.default_rng(0)
    losses = train_steps(
        model, lambda: sequence_batch(successor_sequences(N_ITEMS, 32, (3, 12), rng), 11, N_ITEMS), steps=500, lr=0.005
    )
    assert np.mean(losses[-50:]) < 0.2 * np.mean(losses[:50])
    held_out = successor_sequences(N_ITEMS, 50, (2, 10), np.random.default_rng(1))
    batch = sequence_batch(held_out, 12, N_ITEMS)  # the [mask] goes after the last input item
    with torch.no_grad():
        predicted = model.score(batch).argmax(1).numpy()
    assert (predicted == np.array([s[-1] for s in held_out])).mean() >= 0.9


def test_bad_configs_are_refused() -> None:
    ctx, _ = successor_context()
    with pytest.raises(ConfigError, match="multiple of heads"):
        _model(ctx, dim=10, heads=3)
    with pytest.raises(ConfigError, match="mask_prob"):
        _model(ctx, mask_prob=0.0)
    with pytest.raises(ConfigError, match="'model.max_len' must be >= 2"):
        _model(ctx, max_len=1)


def test_trains_and_is_evaluated_end_to_end(tmp_path, synthetic_dir) -> None:
    """Registered like the other sequential models: the trainer's sequences view (both targets), full ranking."""
    from modalrec.config import resolve
    from modalrec.train.experiment import train

    for target in ("all", "last"):
        cfg = resolve(
            [
                f"dataset={synthetic_dir}",
                "model=bert4rec",
                "model.dim=16",
                "model.max_len=21",
                "train.epochs=1",
                f"train.seq_target={target}",
                f"run.dir={tmp_path}",
                f"run.name={target}",
                "train.progress=false",
            ]
        )
        _, results = train(cfg)
        assert results["test"]["ndcg@10"] > 0 and results["epochs_run"] == 1
