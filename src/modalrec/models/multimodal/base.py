"""What the multimodal collaborative-filtering models share: which item features they read, the
user-item graph, content kNN graphs, and cached final representations for scoring.

Every model here ranks users x items by a dot product of final user and item representations
(DMRL overrides the scorer), so it is a :class:`GeneralRecommender` with an :class:`EmbeddingScorer`.
A model implements :meth:`MultimodalRecommender.representations` (the forward pass of its paper,
returning final user and item matrices) and ``loss``; the base caches the representations for a
scoring pass and drops the cache whenever the model trains again.

Any number (>= 1) of modalities is supported: the model reads ``config.modalities`` or, when that is
empty, every feature of the dataset in name order. Items without a modality (``feature_masks``
false) keep their filled feature row but get no content kNN edges.

Cold items (a cold-item split): every model here puts content into its item representation, so it scores them
(``scores_cold_items``); training never draws them as negatives (the triples view). Only VBPR is adapted further
(its cold ID factors are zero, so a cold item is scored by content alone); the graph models build their content
graphs over the whole catalogue, cold items included, keep random ID rows for them and some (FREEDOM, LATTICE,
BM3, LGMRec, MGCN, MICRO) still pass gradient to those rows in training (docs/end_to_end.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import scipy.sparse as sp
import torch

from modalrec.data.context import DataContext
from modalrec.models.base import Batch, GeneralRecommender, ModelMixin, RepresentationScorer, select_modalities
from modalrec.nn.graph import Normalisation, bipartite_adjacency, normalise_adjacency, sparse_graph
from modalrec.nn.item_graph import LearnedItemGraph
from modalrec.nn.knn import cached_cosine_knn
from modalrec.nn.losses import bpr_loss, embedding_l2, pairwise_scores


@dataclass
class MultimodalConfig:
    """Keys every multimodal model has (its own ``Config`` extends this)."""

    modalities: list[str] = field(default_factory=list)  # item features to use; empty = all the dataset has


class MultimodalRecommender(RepresentationScorer, GeneralRecommender):
    """Base of the multimodal CF models: features as buffers, graphs, cached representations."""

    Config = MultimodalConfig
    train_view = "triples"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 2048, "epochs": 300, "patience": 20}

    def __init__(self, config: MultimodalConfig, ctx: DataContext):
        super().__init__(config, ctx)
        self.modalities = select_modalities(config.modalities, ctx, self.name)
        for i, m in enumerate(self.modalities):
            # data, rebuilt from ctx on construction, so not saved in checkpoints
            self.register_buffer(f"_feature_{i}", ctx.features[m].float(), persistent=False)
            self.register_buffer(f"_feature_mask_{i}", ctx.feature_masks[m].bool(), persistent=False)

    @property
    def scores_cold_items(self) -> bool:
        return True  # item content is part of every item representation here

    # ------------------------------------------------------------------ data
    @property
    def features(self) -> list[torch.Tensor]:
        """Item feature matrices [n_items, d_m], one per modality, in ``self.modalities`` order."""
        return [getattr(self, f"_feature_{i}") for i in range(len(self.modalities))]

    @property
    def feature_masks(self) -> list[torch.Tensor]:
        return [getattr(self, f"_feature_mask_{i}") for i in range(len(self.modalities))]

    def register_user_item_graph(
        self, ctx: DataContext, norm: Normalisation = "sym", name: str = "adjacency", self_loops: bool = False
    ) -> None:
        """Buffers ``name`` and ``name + "_t"``: the normalised train user-item graph (nodes: users then
        items) and its transpose; ``"sym"`` D^-1/2 A D^-1/2 (LightGCN), ``"row"`` D^-1 A (neighbour mean);
        ``self_loops`` normalises A + I instead (LATTICE's and MICRO's code: ``row`` with self loops).
        Not persistent: rebuilt from the train split on construction."""
        adj = bipartite_adjacency(ctx.train, self.n_users, self.n_items, self_loops=self_loops, norm=norm)
        for buffer, tensor in zip((name, f"{name}_t"), sparse_graph(adj)):
            self.register_buffer(buffer, tensor, persistent=False)

    def id_embeddings(self, dim: int, init_std: float | None = None) -> None:
        """``user_embedding`` and ``item_embedding`` tables of size ``dim``: normal(0, init_std) when a
        std is given, else Xavier-uniform."""
        self.user_embedding = torch.nn.Embedding(self.n_users, dim)
        self.item_embedding = torch.nn.Embedding(self.n_items, dim)
        for table in (self.user_embedding, self.item_embedding):
            if init_std is None:
                torch.nn.init.xavier_uniform_(table.weight)
            else:
                torch.nn.init.normal_(table.weight, std=init_std)

    def content_knn(self, modality: int, k: int, weighted: bool, cache: bool = True, include_self: bool = False) -> sp.csr_matrix:
        """The kNN item-item graph of one modality's features, D^-1/2 S D^-1/2 normalised.

        ``weighted``: keep cosine similarities (clipped at 0) as edge weights (LATTICE, MGCN); otherwise
        every kept edge weighs 1 (FREEDOM). ``include_self``: the item is one of its own k neighbours
        (MMRec's convention, see :func:`cosine_knn`)."""
        knn = cached_cosine_knn(
            self.features[modality].cpu(), k, self.feature_masks[modality].cpu(), cache=cache, include_self=include_self
        )
        knn.data = knn.data.clip(min=0) if weighted else knn.data * 0 + 1
        return normalise_adjacency(knn, "sym")

    # ------------------------------------------------------------------ forward
    def bpr_terms(self, users: torch.Tensor, items: torch.Tensor, batch: Batch) -> torch.Tensor:
        """BPR loss of a triples batch under final representations ``users`` / ``items``."""
        return bpr_loss(*pairwise_scores(users[batch["users"]], items[batch["pos"]], items[batch["neg"]]))

    def l2_terms(self, batch: Batch, *tables: torch.nn.Embedding) -> torch.Tensor:
        """L2 of the batch's rows of ID tables: users for a table with n_users rows, items otherwise."""
        rows = []
        for table in tables:
            if table.num_embeddings == self.n_users:
                rows.append(table(batch["users"]))
            else:
                rows += [table(batch["pos"]), table(batch["neg"])]
        return embedding_l2(len(batch["users"]), *rows)


class RefreshedItemGraph(ModelMixin):
    """Mixin of the models on LATTICE's learned item-item graph (LATTICE, MICRO): the graph is built over every
    modality's frozen weighted kNN graph and re-learned at each epoch and before each evaluation pass.
    List it before ``MultimodalRecommender`` in the bases."""

    item_graph: LearnedItemGraph

    def build_graphs(self, ctx: DataContext, k: int, dim: int, skip: float, ui_graph: str, graph_grad: str) -> None:
        """The learned item graph and the user-item graph, each in the paper's form or the authors' code's:
        ``graph_grad="first_batch"`` (edge weights differentiated once per refresh) and ``ui_graph="row_self"``
        (D^-1 (A + I) instead of LightGCN's D^-1/2 A D^-1/2)."""
        frozen = [self.content_knn(m, k, weighted=True) for m in range(len(self.modalities))]
        self.item_graph = LearnedItemGraph(
            frozen, [f.shape[1] for f in self.features], dim, k, skip, grad_first_batch=graph_grad == "first_batch"
        )
        row_self = ui_graph == "row_self"
        self.register_user_item_graph(ctx, norm="row" if row_self else "sym", self_loops=row_self)

    def before_epoch(self, epoch: int) -> None:
        self.item_graph.refresh(self.features)

    def prepare_scoring(self) -> None:
        self.item_graph.refresh(self.features)
        super().prepare_scoring()  # type: ignore[misc]  # the host model's, next in the MRO
