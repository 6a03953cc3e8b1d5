"""Feature-aware SASRec: SASRec whose item representation also carries the item's content features.

The naive way to use multimodal content in a sequential model, and the baseline that measures what
FindRec's coordination and routing add over it. Each modality's frozen feature matrix is projected
to the hidden size, ``c_m = Drop(W_m f_m + b_m)``, and combined with the ID embedding e into one item
vector, by ``fusion``:

- ``"add"``:    v = e + sum_m c_m
- ``"concat"``: v = W_f [e; c_1; ...; c_M] + b_f

The same fused vectors are the input items and the (tied) output table, so items are scored by
content as well as by ID. Everything else is :class:`~modalrec.models.sequential.sasrec.SASRec`.

Cold items (a cold-item split): their ID rows are zero and no training loss reads them, so their vector is their
content part alone (``fusion="add"``: sum_m c_m) and they are scored from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.checks import Rule
from modalrec.data.context import DataContext
from modalrec.models.base import register, select_modalities
from modalrec.models.sequential.sasrec import SASRec


@register
class SASRecFeatures(SASRec):
    """SASRec over fused (ID + content) item vectors; see the module docstring."""

    name: ClassVar[str] = "sasrec_features"
    paper: ClassVar[str] = "Kang & McAuley, ICDM 2018, with item content fused into the item embedding"

    @dataclass
    class Config(SASRec.Config):
        modalities: list[str] = field(default_factory=list)  # item features to use, in order; [] = all, sorted
        fusion: Literal["add", "concat"] = "add"  # see the module docstring
        rules: ClassVar[tuple[Rule, ...]] = (
            *SASRec.Config.rules,
            Rule(
                ("item_encoder",),
                lambda c: c.item_encoder == "id",
                "sasrec_features fuses extracted features with ID embeddings; for an end-to-end encoder use model=sasrec "
                "model.item_encoder=text (or image)",
            ),
        )
        feature_dropout: float = 0.1  # dropout on each projected feature

    search_space: ClassVar[dict] = {**SASRec.search_space, "model.feature_dropout": ("float", 0.0, 0.5)}

    def __init__(self, config: Config, ctx: DataContext):
        super().__init__(config, ctx)
        self.modalities = select_modalities(config.modalities, ctx, self.name)
        for m in self.modalities:
            self.register_buffer(f"feature_{m}", ctx.features[m] * ctx.feature_masks[m].unsqueeze(-1).float(), persistent=False)
        self.projections = nn.ModuleList(nn.Linear(ctx.features[m].shape[1], config.dim) for m in self.modalities)
        self.feature_dropout = nn.Dropout(config.feature_dropout)
        self.fuse = nn.Linear((1 + len(self.modalities)) * config.dim, config.dim) if config.fusion == "concat" else None
        self.zero_cold_rows(self.item_embedding.weight)

    @property
    def scores_cold_items(self) -> bool:
        return True  # the content part represents a cold item

    def item_table(self) -> torch.Tensor:
        """V [n_items, d]: fused ID + content vectors, the input and output item table."""
        ids = self.item_embedding.weight[: self.n_items]
        content = [
            self.feature_dropout(project(getattr(self, f"feature_{m}"))) for m, project in zip(self.modalities, self.projections)
        ]
        if self.fuse is None:
            return ids + torch.stack(content).sum(0)
        return self.fuse(torch.cat([ids, *content], dim=-1))

    def embed_items(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        return F.pad(self.item_table() if table is None else table, (0, 0, 0, 1))[seq]  # the padding index gets a zero row
