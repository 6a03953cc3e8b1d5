"""The next-item training objective that sequential models share.

Training batches (see :mod:`modalrec.data.views`) come in two forms:

- all positions: ``targets`` [B, L], the next item after every prefix, -100 at padding;
- last position: ``target`` [B], the item after the whole sequence (``lengths`` says where it ends).

Both reduce to pairs (hidden state h, target item t), scored against the tied item embeddings. Losses:

- ``"ce"``: cross-entropy over the full catalogue (RecBole's default; SASRec+ of Klenitskiy & Vasilev 2023);
- ``"sampled"``: cross-entropy of the target against ``negatives`` uniform items shared by the batch (sampled
  softmax; a negative equal to a pair's target is removed for that pair), cheaper than ``ce`` on a large catalogue;
- ``"bce"``: SASRec's paper loss, binary cross-entropy with one uniform negative per pair;
- ``"bpr"``: the pairwise version with one uniform negative per pair.

The one-negative losses may draw the target itself (probability 1/n_items); no resampling. With a cold-item split
no loss reads a cold item: ``ce`` masks their logits (``cold``), the samplers draw among the warm items.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from modalrec.checks import Rule
from modalrec.data.negatives import NegativeSampler
from modalrec.data.views import TARGET_PAD
from modalrec.models.base import Batch, EmbeddingScorer
from modalrec.nn.losses import binary_ce_loss, bpr_loss, sampled_softmax_loss

Loss = Literal["ce", "sampled", "bce", "bpr"]  # a model's ``loss`` field
# the rule of every config with ``loss`` and ``negatives``: a sampled softmax needs negatives
SAMPLED_NEEDS_NEGATIVES = Rule(
    ("loss", "negatives"),
    lambda c: c.loss != "sampled" or c.negatives >= 1,
    "loss 'sampled' needs model.negatives >= 1, got {negatives}",
)


def gather_last(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The state [B, d] at each sequence's last item (position lengths - 1; position 0 when empty)."""
    last = (lengths.to(hidden.device) - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def supervised_pairs(hidden: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [N, d], target items [N]) from an all-positions or a last-position batch."""
    if "targets" in batch:
        targets = batch["targets"]
        keep = targets != TARGET_PAD
        return hidden[keep], targets[keep]
    if "target" in batch:
        return gather_last(hidden, batch["lengths"]), batch["target"]
    raise KeyError("a sequence training batch needs 'targets' [B, L] (all positions) or 'target' [B] (last position)")


def next_item_loss(
    hidden: torch.Tensor,
    batch: Batch,
    item_table: torch.Tensor,
    loss: str,
    sampler: NegativeSampler,
    negatives: int = 1,
    cold: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The named loss terms for predicting each target from its state, scored against ``item_table`` [n_items, d];
    ``negatives``: the shared negatives of ``loss="sampled"``; ``cold`` (bool [n_items]): items left out of the
    ``ce`` softmax (the held-out cold items; the sampler already draws around them)."""
    states, targets = supervised_pairs(hidden, batch)
    if loss == "ce":
        logits = states @ item_table.T
        ce = F.cross_entropy(logits if cold is None else logits.masked_fill(cold, -torch.inf), targets)
        return {"loss": ce, "ce": ce}
    if loss == "sampled":
        sampled = sampled_softmax_loss(
            states, targets, item_table, sampler.sample_tensor(torch.Size([negatives]), targets.device)
        )
        return {"loss": sampled, "sampled_ce": sampled}
    drawn = sampler.sample_tensor(targets.shape, targets.device)
    pos_scores = (states * item_table[targets]).sum(-1)
    neg_scores = (states * item_table[drawn]).sum(-1)
    value = binary_ce_loss(pos_scores, neg_scores) if loss == "bce" else bpr_loss(pos_scores, neg_scores)
    return {"loss": value, loss: value}


class TiedItemScoring(EmbeddingScorer):
    """Loss and scoring of a sequence encoder read against its own (tied) item embeddings.

    The model defines ``item_embedding`` (``n_items + 1`` rows, padding last), ``negatives``
    (:meth:`NegativeSampler.seeded_from_torch` over ``ctx.warm_items``), ``config.loss``, ``config.negatives`` and
    ``hidden_states(seq, lengths) -> [B, L, d]``; the state at each position scores the next item, the state at
    ``lengths - 1`` is the query.
    """

    def item_table(self) -> torch.Tensor:
        """Item embeddings [n_items, d] without the padding row: input and output table at once."""
        return self.item_embedding.weight[: self.n_items]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        hidden = self.hidden_states(batch["seq"], batch["lengths"])
        return next_item_loss(
            hidden,
            batch,
            self.item_table(),
            self.config.loss,
            self.negatives,
            self.config.negatives,
            self.cold_mask(hidden.device),
        )

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        return gather_last(self.hidden_states(batch["seq"], batch["lengths"]), batch["lengths"])

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_table()[items]
