"""BERT4Rec: sequential recommendation with bidirectional encoder representations from Transformer.

Sun, Liu, Wu, Pei, Lin, Ou & Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019.

Input (Sec. 3.4): the item embedding plus a learned absolute position embedding, h0_i = v_i + p_i, followed
(as in BERT) by LayerNorm and dropout. Encoder (Sec. 3.3): ``layers`` Transformer blocks with multi-head
self-attention in which every position reads the whole sequence (no causal mask), a GELU position-wise
feed-forward network of width 4d, and post-LN residuals, A = LN(H + Drop(MH(H))), H' = LN(A + Drop(PFFN(A))).
Output (Sec. 3.5, eq. 7): P(v) = softmax(GELU(h W^P + b^P) E^T + b^O), the item table E shared with the input.

Training (Sec. 3.6), the cloze task: every item of a training sequence is replaced by the [mask] token with
probability ``mask_prob`` (at least one per sequence) and the model predicts the original items at the
masked positions with cross-entropy over all items. Inference: a [mask] is appended after the user's history
and its output distribution ranks the items.

Choices, each a flag or noted: ``last_item_share`` (default 0) of the training sequences mask only their last
item, the paper's extra samples that match inference (its Sec. 3.6 mentions them without a ratio); the
default learning rate is 1e-3 (the paper: 1e-4 over 400k steps, too slow for a CPU budget). ``max_len`` counts
the appended [mask], so a history of up to ``max_len - 1`` items is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Check, NonNegative, Positive, Rule, Share, Unit, multiple_of
from modalrec.data.context import DataContext
from modalrec.data.views import TARGET_PAD
from modalrec.models.base import Batch, EmbeddingScorer, SequentialRecommender, register
from modalrec.nn.transformer import BidirectionalTransformer


@register
class BERT4Rec(EmbeddingScorer, SequentialRecommender):
    """Bidirectional Transformer trained to fill in masked items; ranks by the output at an appended [mask]."""

    name: ClassVar[str] = "bert4rec"
    paper: ClassVar[str] = "Sun et al., CIKM 2019"

    @dataclass
    class Config:
        dim: Positive = 64  # d, embedding and hidden size (the paper: 64)
        layers: NonNegative = 2  # L, Transformer blocks (the paper: 2)
        heads: Positive = 2  # h, attention heads (the paper: 2)
        dropout: Share = 0.1  # dropout on embeddings, attention weights and block outputs (the paper: 0.1)
        max_len: Annotated[int, Check(ge=2)] = 200  # N, longest sequence including the appended [mask] (the paper: 200 on ML-1M)
        # rho, share of items masked in a training sequence (the paper: 0.2 on ML-1M)
        mask_prob: Annotated[float, Check(gt=0, le=1)] = 0.2
        last_item_share: Unit = 0.0  # share of training sequences that mask only their last item
        inner_dim: int | None = None  # feed-forward width; None = 4 * dim (the paper)
        init_std: float = 0.02  # std of the truncated-normal initialisation (BERT's)
        rules: ClassVar[tuple[Rule, ...]] = (multiple_of("dim", "heads"),)

    train_view: ClassVar[str] = "sequences"
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 256, "epochs": 200, "patience": 10}
    search_space: ClassVar[dict] = {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.dropout": ("float", 0.0, 0.5),
        "model.mask_prob": ("float", 0.1, 0.6),
        "model.layers": ("int", 1, 3),
        "model.dim": ("choice", [32, 64, 128]),
    }

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.max_len = config.max_len - 1  # the history read; the [mask] takes the last position
        self.pad, self.mask_token = self.n_items, self.n_items + 1
        self.item_embedding = nn.Embedding(self.n_items + 2, config.dim, padding_idx=self.pad)  # items, pad, [mask]
        self.position_embedding = nn.Embedding(config.max_len, config.dim)
        self.embedding_norm = nn.LayerNorm(config.dim)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.encoder = BidirectionalTransformer(
            config.dim, config.heads, config.layers, config.dropout, inner_dim=config.inner_dim or 4 * config.dim
        )
        self.output_transform = nn.Linear(config.dim, config.dim)  # W^P, b^P of eq. 7
        self.output_bias = nn.Parameter(torch.zeros(self.n_items))  # b^O of eq. 7
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=config.init_std, a=-2 * config.init_std, b=2 * config.init_std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embedding.weight[self.pad].zero_()

    # -------------------------------------------------------------- encoder
    def hidden_states(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, L, d] for right-padded ``seq`` [B, L] (items, [mask] tokens, padding); every position reads all."""
        length = seq.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"bert4rec: sequences of length {length} exceed max_len={self.config.max_len}")
        positions = torch.arange(length, device=seq.device)
        valid = positions.unsqueeze(0) < lengths.to(seq.device).unsqueeze(1)
        embedded = self.item_embedding(seq) + self.position_embedding(positions)  # h0 = v + p
        return self.encoder(self.embedding_dropout(self.embedding_norm(embedded)), valid)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """GELU(h W^P + b^P): the vector that eq. 7 scores against the item table."""
        return F.gelu(self.output_transform(hidden))

    # -------------------------------------------------------------- cloze training
    def full_sequences(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the training sequences [B, max_len] with their last item put back, lengths [B]) from a sequences-view
        batch: ``seq`` holds the history without its last item; ``targets`` (all positions) or ``target``
        (last position) hold that item."""
        seq, lengths = batch["seq"], batch["lengths"]
        rows = torch.arange(seq.shape[0], device=seq.device)
        if "targets" in batch:
            # targets[b] is seq[b] shifted by one: the history is seq[b, 0] followed by targets[b]
            shifted = batch["targets"].masked_fill(batch["targets"] == TARGET_PAD, self.pad)
            return torch.cat([seq[:, :1], shifted], dim=1), lengths + 1
        if "target" in batch:
            full = torch.cat([seq, torch.full_like(seq[:, :1], self.pad)], dim=1)
            full[rows, lengths] = batch["target"]
            return full, lengths + 1
        raise KeyError("a bert4rec training batch needs 'targets' [B, L] or 'target' [B] (the sequences view)")

    def cloze_mask(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """[B, width] bool: the positions to mask, each real item with probability ``mask_prob`` and at least one
        per sequence (its last item when the draw took none); ``last_item_share`` of the sequences mask only
        their last item."""
        device = lengths.device
        positions = torch.arange(width, device=device).unsqueeze(0)
        valid = positions < lengths.unsqueeze(1)
        last = positions == (lengths - 1).unsqueeze(1)
        masked = (torch.rand(valid.shape, device=device) < self.config.mask_prob) & valid
        only_last = torch.rand(lengths.shape, device=device) < self.config.last_item_share
        masked = torch.where(only_last.unsqueeze(1), last, masked)
        return masked | (last & ~masked.any(dim=1, keepdim=True))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        full, lengths = self.full_sequences(batch)
        masked = self.cloze_mask(lengths, full.shape[1])
        hidden = self.hidden_states(full.masked_fill(masked, self.mask_token), lengths)
        logits = self.project(hidden[masked]) @ self.item_table().T + self.output_bias  # eq. 7 at masked positions
        cold = self.cold_mask(logits.device)  # held-out cold items are no softmax candidates
        cloze = F.cross_entropy(logits if cold is None else logits.masked_fill(cold, -torch.inf), full[masked])
        return {"loss": cloze, "cloze": cloze}

    # -------------------------------------------------------------- scoring: the appended [mask]
    def item_table(self) -> torch.Tensor:
        """E [n_items, d]: the input item embeddings, shared with the output layer."""
        return self.item_embedding.weight[: self.n_items]

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        seq, lengths = batch["seq"], batch["lengths"].to(batch["seq"].device)
        with_mask = torch.cat([seq, torch.full_like(seq[:, :1], self.pad)], dim=1)
        rows = torch.arange(seq.shape[0], device=seq.device)
        with_mask[rows, lengths] = self.mask_token
        hidden = self.hidden_states(with_mask, lengths + 1)
        return self.project(hidden[rows, lengths])

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_table()[items]

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query @ self.item_vectors(items).T + self.output_bias[items]
