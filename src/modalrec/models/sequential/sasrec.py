"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

The last ``max_len`` items of a user's history are embedded and given learned absolute positions
(Sec. III-A, E_hat = E + P), passed through ``layers`` causal self-attention blocks (Sec. III-B/C;
dropout, residual connections and layer normalisation), and the state F_t at position t predicts the
item at t + 1 by an inner product with the *shared* item embeddings (Sec. III-D, r_{i,t} = F_t M_i^T).

Deviations / choices, each a flag:
- ``norm_first`` (default True, the paper's x + Drop(g(LN(x)))); False gives the post-LN blocks of
  RecBole's SASRec.
- ``loss`` "ce" (default): cross-entropy over the whole catalogue at every position, which RecBole
  and later work (SASRec+, Klenitskiy & Vasilev, RecSys 2023) found stronger than the paper's binary
  cross-entropy with one sampled negative; "sampled" is the same softmax against ``negatives`` uniform
  items shared by the batch (cheaper on large catalogues); "bce" is the paper's loss (Sec. III-E);
  "bpr" the pairwise version with one uniform negative per position.
- ``item_encoder`` "id" (default, the paper's item embedding table), "text" or "image": end-to-end item
  vectors from the items' texts through MiniLM or their images through EfficientNet-Lite
  (:mod:`modalrec.nn.towers`; MoRec, SIGIR 2023), the encoder's top ``finetune_layers`` layers trained with the
  recommender at ``encoder_lr`` (0 = frozen encoder, only the projection trains), the lower layers' outputs
  cached by content hash. Such items are scored by content alone, so items never seen in training (a
  cold-item split) get meaningful scores. With a cold-item split, cold items are out of every training loss
  (``ce`` masks them, negatives are drawn among warm items); the ID table cannot represent them, so with
  ``item_encoder=id`` they are never recommended.
- Sequences are right-padded (the paper left-pads); positions count from the first item, so padding
  never shifts the positions of real items. Padding is masked as keys and zeroed after every block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, NonNegative, Positive, Rule, multiple_of
from modalrec.data.context import DataContext
from modalrec.data.negatives import NegativeSampler
from modalrec.models.base import Batch, ItemTowerHost, ScoringCache, SequentialRecommender, register
from modalrec.models.sequential.objective import (
    SAMPLED_NEEDS_NEGATIVES,
    Loss,
    TiedItemScoring,
    next_item_loss,
)
from modalrec.nn.item_tower import ItemTower
from modalrec.nn.towers import Tower, build_item_tower
from modalrec.nn.transformer import CausalTransformer


@register
class SASRec(ItemTowerHost, ScoringCache, TiedItemScoring, SequentialRecommender):
    """Causal Transformer over item sequences with tied item embeddings."""

    name: ClassVar[str] = "sasrec"
    paper: ClassVar[str] = "Kang & McAuley, ICDM 2018"

    @dataclass
    class Config:
        dim: Positive = 64  # d, item / position embedding and hidden size
        layers: NonNegative = 2  # b, self-attention blocks
        heads: Positive = 2  # attention heads (the paper uses 1; 2 as in RecBole)
        dropout: Annotated[float, Check(ge=0, lt=1)] = 0.2  # dropout on embeddings, attention weights and block outputs
        attention_dropout: float | None = None  # dropout on attention weights; None = dropout. 0 lets SDPA fuse (faster on CPU)
        max_len: Positive = 50  # n, longest history read (older items are cut)
        norm_first: bool = True  # pre-LN blocks as in the paper; False = post-LN (RecBole)
        inner_dim: int | None = None  # feed-forward width; None = dim (the paper's d x d layers)
        # ce (full softmax) | sampled (softmax over `negatives` shared uniform items) | bce (the SASRec paper's) | bpr
        loss: Loss = "ce"
        negatives: int = 256  # loss "sampled": uniform negatives per batch
        init_std: float = 0.02  # std of the normal initialisation of the embedding tables
        # id (embedding table) | text (MiniLM over item texts) | image (EfficientNet-Lite), end to end
        item_encoder: Literal["id", Tower] = "id"
        finetune_layers: NonNegative = 0  # item_encoder text/image: top encoder layers trained (0 = frozen encoder)
        encoder_lr: float | None = None  # item_encoder text/image: learning rate of those layers; None = train.lr
        encoder_max_length: int = 32  # item_encoder=text: tokens read per item text (cost grows with it)
        rules: ClassVar[tuple[Rule, ...]] = (multiple_of("dim", "heads"), SAMPLED_NEEDS_NEGATIVES)

    train_view: ClassVar[str] = "sequences"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 256, "epochs": 200, "patience": 10}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.dropout": ("float", 0.0, 0.5),
        "model.layers": ("int", 1, 3),
        "model.dim": ("choice", [32, 64, 128]),
        "train.weight_decay": ("log", 1e-8, 1e-3),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.pad = self.n_items
        ids = config.item_encoder == "id"  # with a content tower the items have no ID embedding (content only)
        if ids:
            self.item_embedding = nn.Embedding(self.n_items + 1, config.dim, padding_idx=self.pad)
        self.position_embedding = nn.Embedding(config.max_len, config.dim)
        if ids:
            nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        nn.init.normal_(self.position_embedding.weight, std=config.init_std)
        if ids:
            with torch.no_grad():
                self.item_embedding.weight[self.pad].zero_()
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.encoder = CausalTransformer(
            config.dim,
            config.heads,
            config.layers,
            config.dropout,
            config.norm_first,
            config.inner_dim,
            attention_dropout=config.attention_dropout,
        )
        self.negatives = NegativeSampler.seeded_from_torch(self.n_items, ctx.warm_items)
        self.item_tower: ItemTower | None = None
        if not ids:
            self.item_tower = build_item_tower(
                self.name, config.item_encoder, ctx, config.dim, config.finetune_layers, config.encoder_max_length
            )

    def hidden_states(self, seq: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """F [B, L, d]: the state after reading items 0..t, for every position t (zero at padding); ``table``:
        the item table when the caller has computed it already."""
        length = seq.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"sasrec: sequences of length {length} exceed max_len={self.max_len}; cut them to the last max_len items"
            )
        positions = torch.arange(length, device=seq.device)
        valid = positions.unsqueeze(0) < lengths.to(seq.device).unsqueeze(1)
        embedded = self.embed_items(seq, table) + self.position_embedding(positions)  # E_hat = E + P
        return self.encoder(self.embedding_dropout(embedded), valid)

    def embed_items(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """E [B, L, d]: the input representation of the items of ``seq`` (subclasses may fuse content)."""
        if self.item_tower is None:
            return self.item_embedding(seq)
        return F.pad(self.item_table() if table is None else table, (0, 0, 0, 1))[seq]  # the padding index gets a zero row

    def item_table(self) -> torch.Tensor:
        """V [n_items, d]: the ID embeddings, or the content tower's output (once per scoring pass)."""
        if self.item_tower is None:
            return super().item_table()
        return self.cached_state()

    def scoring_state(self) -> torch.Tensor | None:
        return self.item_tower() if self.item_tower is not None else None

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.clear_scoring_cache()  # parameters are about to change
        table = self.item_table()  # once per step: with a content tower it is the costly part
        hidden = self.hidden_states(batch["seq"], batch["lengths"], table)
        return next_item_loss(
            hidden, batch, table, self.config.loss, self.negatives, self.config.negatives, self.cold_mask(hidden.device)
        )

    @property
    def scores_cold_items(self) -> bool:
        return self.item_tower is not None  # content-only items: a cold item is scored from its text or image
