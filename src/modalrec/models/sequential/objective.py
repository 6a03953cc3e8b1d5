"""The next-item training objective that sequential models share.

Training batches (see :mod:`modalrec.data.views`) come in two forms:

- all positions: ``targets`` [B, L], the next item after every prefix, -100 at padding;
- last position: ``target`` [B], the item after the whole sequence (``lengths`` says where it ends).

Both reduce to pairs (hidden state h, target item t). The loss is either cross-entropy over the full
catalogue with tied item embeddings (``"ce"``, RecBole's default), or BPR against one uniformly
sampled negative per pair (``"bpr"``; SASRec's paper uses the binary cross-entropy analogue with one
negative). Uniform negatives may hit the target itself (probability 1/n_items); no resampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalrec.errors import ConfigError
from modalrec.models.base import Batch, EmbeddingScorer
from modalrec.nn.losses import bpr_loss

LOSSES = ("ce", "bpr")
IGNORE = -100


def check_loss_name(model: str, loss: str) -> None:
    """Refuse an unknown loss name with the valid choices."""
    if loss not in LOSSES:
        raise ConfigError(f"{model}: unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")


def gather_last(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The state [B, d] at each sequence's last item (position lengths - 1; position 0 when empty)."""
    last = (lengths.to(hidden.device) - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def supervised_pairs(hidden: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [N, d], target items [N]) from an all-positions or a last-position batch."""
    if "targets" in batch:
        targets = batch["targets"]
        keep = targets != IGNORE
        return hidden[keep], targets[keep]
    if "target" in batch:
        return gather_last(hidden, batch["lengths"]), batch["target"]
    raise KeyError("a sequence training batch needs 'targets' [B, L] (all positions) or 'target' [B] (last position)")


class NegativeSampler:
    """Uniform item negatives from a private generator, seeded once from the global RNG.

    The global seed (set by the run) therefore fixes the negatives, while drawing them does not
    disturb the global stream that dropout and shuffling use.
    """

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.seed = int(torch.randint(0, 2**62, ()).item())
        self._generator: torch.Generator | None = None

    def sample(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return torch.randint(0, self.n_items, shape, generator=self._generator, device=device)


def next_item_loss(
    hidden: torch.Tensor, batch: Batch, item_table: torch.Tensor, loss: str, sampler: NegativeSampler
) -> dict[str, torch.Tensor]:
    """The named loss terms for predicting each target from its state, scored against ``item_table`` [n_items, d]."""
    states, targets = supervised_pairs(hidden, batch)
    if loss == "ce":
        ce = F.cross_entropy(states @ item_table.T, targets)
        return {"loss": ce, "ce": ce}
    negatives = sampler.sample(targets.shape, targets.device)
    pos_scores = (states * item_table[targets]).sum(-1)
    neg_scores = (states * item_table[negatives]).sum(-1)
    ranking = bpr_loss(pos_scores, neg_scores)
    return {"loss": ranking, "bpr": ranking}


class TiedItemScoring(EmbeddingScorer):
    """Loss and scoring of a sequence encoder read against its own (tied) item embeddings.

    The model defines ``item_embedding`` (``n_items + 1`` rows, padding last), ``negatives`` (a
    :class:`NegativeSampler`), ``config.loss`` and ``hidden_states(seq, lengths) -> [B, L, d]``;
    the state at each position scores the next item, the state at ``lengths - 1`` is the query.
    """

    def item_table(self) -> torch.Tensor:
        """Item embeddings [n_items, d] without the padding row: input and output table at once."""
        return self.item_embedding.weight[: self.n_items]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        hidden = self.hidden_states(batch["seq"], batch["lengths"])
        return next_item_loss(hidden, batch, self.item_table(), self.config.loss, self.negatives)

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        return gather_last(self.hidden_states(batch["seq"], batch["lengths"]), batch["lengths"])

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_table()[items]
