"""The model API: two families, one registry.

A model is an ``nn.Module`` built from a hyper-parameter dataclass (``Config``, declared next to its
code) and a :class:`~modalrec.data.context.DataContext`. It declares

- ``train_view``: which batches the trainer feeds it (see :mod:`modalrec.data.views`):
  ``"triples"`` (user, pos, neg), ``"sequences"`` (right-padded, all-position targets),
  ``"users"`` (rows of the train matrix), or ``"none"`` for closed-form models that learn in ``fit``;
- ``loss(batch)``: a scalar tensor or a dict of named terms with the total under ``"loss"``;
- ``encode(batch)`` + ``score_items(query, items)``: the scores of a chunk of items for a chunk of
  queries, so the evaluator can tile users x items with bounded memory. ``score`` combines them.

General models read ``batch["users"]``; sequential models read ``batch["seq"]`` [B, L] (right-padded
with ``n_items``) and ``batch["lengths"]`` [B].

Cold items (a ``dataset.split.cold_items`` split) do not exist at training time: no training batch holds one,
training negatives are drawn among :attr:`DataContext.warm_items <modalrec.data.context.DataContext.warm_items>`,
and a training softmax over the catalogue masks them (:meth:`Recommender.cold_mask`). At evaluation and serving a
model whose item representation comes from content (``scores_cold_items``) scores them from it; a model that has
no representation of them (ID-only) never recommends them (:meth:`Recommender.unscored_items`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from modalrec.checks import check_fields
from modalrec.data.context import DataContext
from modalrec.errors import ConfigError, UnknownNameError

Batch = dict[str, torch.Tensor]

_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model available by ``cls.name`` to the config, CLI and trainer."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"model name '{cls.name}' is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_model_class(name: str) -> type[Recommender]:
    """The registered model class called ``name``; the error lists the known models."""
    key = name.lower()
    if key not in _REGISTRY:
        raise UnknownNameError("model", name, _REGISTRY)
    return _REGISTRY[key]


def select_modalities(requested: list[str], ctx: DataContext, model: str) -> list[str]:
    """The item feature names a model uses (``requested``, or every feature of the dataset), checked against it."""
    available = sorted(ctx.features)
    if not available:
        raise ConfigError(
            f"{model} needs item features but the dataset has none; use a multimodal dataset "
            "(e.g. dataset=ml-1m-mm or dataset=amazon-scientific-mm) or add dataset.feature_files.<name>=<file.npy>"
        )
    chosen = list(requested) or available
    missing = [m for m in chosen if m not in ctx.features]
    if missing:
        raise ConfigError(f"{model}: model.modalities names {missing}, but the dataset's features are {available}")
    return chosen


def registered_models() -> dict[str, type[Recommender]]:
    """All registered models by name (the built-in ones register when :mod:`modalrec.models` is imported)."""
    return dict(sorted(_REGISTRY.items()))


@dataclasses.dataclass(frozen=True)
class Stage:
    """A training stage a model declares (:meth:`Recommender.stages`): an ordinary run of another model on the
    same data, seed and evaluation, trained into ``<run>/<name>`` unless ``source`` names a finished run."""

    name: str  # the stage's run folder inside the run directory
    model: dict[str, Any]  # its model section: {"name": <registered model>, <hyper-parameters>}
    train: dict[str, Any] = dataclasses.field(default_factory=dict)  # train keys that differ from the run's
    source: str = ""  # a finished run directory to load instead of training the stage


@dataclasses.dataclass
class NoConfig:
    """Hyper-parameters of a model that has none."""


class Recommender(nn.Module):
    """Common base: construction from (config, context), scoring, closed-form fit."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # "general" | "sequential"
    paper: ClassVar[str] = ""  # short citation: authors, venue, year
    Config: ClassVar[type] = NoConfig
    train_view: ClassVar[str] = "triples"
    # Trainer defaults this model needs to train well (e.g. lr, batch size, epochs); user overrides win.
    train_defaults: ClassVar[dict[str, Any]] = {}
    # Hyper-parameter search space (modalrec.experiments.search): full config key -> ("log", lo, hi) |
    # ("float", lo, hi) | ("int", lo, hi) | ("choice", [values]), e.g. {"train.lr": ("log", 1e-4, 1e-2)}.
    search_space: ClassVar[dict[str, tuple]] = {}

    if TYPE_CHECKING:  # buffers, parameters and submodules registered by name are read as their own types

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, config: Any, ctx: DataContext):
        super().__init__()
        if dataclasses.is_dataclass(config):
            check_fields(config, "model.")  # the ranges the model's Config declares (Positive dim, ...)
        self.config = config
        self.n_users = ctx.n_users
        self.n_items = ctx.n_items
        self.cold_items: np.ndarray | None = ctx.cold_items  # bool [n_items]: held out of training by the split
        self._cold_tensor: torch.Tensor | None = None

    # -------------------------------------------------------------- training
    @property
    def trainable(self) -> bool:
        """False for models that learn in closed form (``train_view == 'none'``)."""
        return self.train_view != "none"

    def fit(self, ctx: DataContext) -> None:
        """Closed-form learning from the train split; minibatch models do nothing here."""

    def loss(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} is not trained by minibatches")

    def before_epoch(self, epoch: int) -> None:
        """Hook for per-epoch work (e.g. resampling a graph); default nothing."""

    def stages(self) -> list[Stage]:
        """Earlier training stages this model builds on (e.g. HDRM's HGCF encoder). The experiment layer
        trains or loads each one once before the first epoch of a fresh run (not on resume) and hands the
        selected model to :meth:`load_stage`; the model keeps what it needs in buffers, so checkpoints
        hold it. A model never calls the trainer itself. Default none."""
        return []

    def load_stage(self, stage: Stage, model: Recommender, stage_ctx: DataContext, ctx: DataContext, source: str) -> None:
        """Take what this model needs from the trained ``stage`` (its selected ``model``, trained on
        ``stage_ctx``, read from run directory ``source``); ``ctx`` is this run's data."""
        raise NotImplementedError(f"{type(self).__name__} declares stages but does not load them")

    def diagnostics(self, ctx: DataContext) -> dict[str, float]:
        """Numbers that show the model's mechanisms doing their job (a KL per dimension, an alignment, a
        retrieval accuracy, a router entropy, ...), measured by the trainer after every epoch in eval mode
        under ``no_grad`` and recorded in ``metrics.jsonl`` under ``"diagnostics"`` (``modalrec report``
        plots them). Use a fixed, deterministic sample of the train or validation data; never the test
        split. Default none."""
        return {}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: every trainable parameter in one by default; a model whose parts
        want their own learning rate (a fine-tuned content encoder) returns several (``{"params", "lr"?}``)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def provenance(self) -> dict[str, Any]:
        """What the run must record beyond the config about where the model's parts come from (e.g. which
        pretrained encoder, which of its layers were trained, from which weights); default nothing."""
        return {}

    def configure_optimizer(self, train: Any) -> torch.optim.Optimizer | None:
        """A model-specific optimiser built from the train config (e.g. Riemannian SGD for manifold
        parameters); None lets the trainer build ``train.optimizer`` over all parameters."""
        return None

    # -------------------------------------------------------------- cold items
    @property
    def scores_cold_items(self) -> bool:
        """Whether the item representation comes (at least partly) from item content, so that an item never seen in
        training (a cold item) gets a score from what is known of it. False (the default): an ID-only model has
        nothing but an untrained embedding row for such an item."""
        return False

    def unscored_items(self) -> np.ndarray | None:
        """bool [n_items]: the items this model cannot represent, which evaluation and serving never recommend (as
        if their score were -inf): the held-out cold items when the model does not score cold items; None: none."""
        return None if self.cold_items is None or self.scores_cold_items else self.cold_items

    def cold_mask(self, device: torch.device) -> torch.Tensor | None:
        """bool [n_items] on ``device``, True at the held-out cold items (None without them): the columns a training
        softmax over the catalogue sets to -inf, so a cold item is never a negative and gets no gradient."""
        if self.cold_items is None:
            return None
        if self._cold_tensor is None or self._cold_tensor.device != device:
            self._cold_tensor = torch.from_numpy(self.cold_items).to(device)
        return self._cold_tensor

    def zero_cold_rows(self, *tables: torch.Tensor) -> None:
        """Zero the cold items' rows of ID tables [n_items(+1), d] (at construction, in place): a model that adds an
        ID part to content then scores a cold item by its content alone, and the rows stay zero, as no training
        signal reaches them."""
        if self.cold_items is not None:
            with torch.no_grad():
                for table in tables:
                    table[: self.n_items][torch.from_numpy(self.cold_items)] = 0.0

    # -------------------------------------------------------------- scoring
    def prepare_scoring(self) -> None:
        """Called once (in eval mode, under no_grad) before a scoring pass: cache what every
        chunk reuses, e.g. propagated graph embeddings. Default nothing."""

    def eval_batch(self, users: np.ndarray, ctx: DataContext, phase: int) -> Batch:
        """The batch that scores ``users`` for ``phase`` (VALID or TEST)."""
        raise NotImplementedError

    def explain(self, batch: Batch, items: torch.Tensor) -> list[list[dict[str, Any]]] | None:
        """Why each of ``items`` [B, K] (the recommendations of the batch's B queries) was recommended: per
        query, one JSON-able dict per item (e.g. FindRec's routing weights over experts and modalities).
        None: this model has no explanation (the default)."""
        return None

    def encode(self, batch: Batch) -> Any:
        """Per-query representation reused across item chunks (default: the batch itself)."""
        return batch

    def score_items(self, query: Any, items: slice) -> torch.Tensor:
        """Scores [B, len(items)] of a contiguous range of items for encoded queries."""
        raise NotImplementedError

    def score(self, batch: Batch, items: slice | None = None) -> torch.Tensor:
        """Scores [B, n_items] (or of ``items``) for a batch; higher is better."""
        return self.score_items(self.encode(batch), items if items is not None else slice(0, self.n_items))

    @property
    def device(self) -> torch.device:
        for parameter in self.parameters():
            return parameter.device
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")


class GeneralRecommender(Recommender):
    """User -> all items (collaborative filtering). Batches carry ``users`` [B]."""

    family: ClassVar[str] = "general"

    def eval_batch(self, users: np.ndarray, ctx: DataContext, phase: int) -> Batch:
        return {"users": torch.as_tensor(np.asarray(users), dtype=torch.long, device=self.device)}


class SequentialRecommender(Recommender):
    """Sequence -> all items (next-item). Batches carry ``seq`` [B, L] and ``lengths`` [B].

    Padding is the index ``n_items`` (so item ``i`` is ``i`` everywhere); embedding tables have
    ``n_items + 1`` rows with ``padding_idx = n_items``. Training targets use -100 for padding.
    """

    family: ClassVar[str] = "sequential"
    train_view: ClassVar[str] = "sequences"

    def __init__(self, config: Any, ctx: DataContext):
        super().__init__(config, ctx)
        self.max_len: int = getattr(config, "max_len", 50)

    def eval_batch(self, users: np.ndarray, ctx: DataContext, phase: int) -> Batch:
        seq, lengths = ctx.padded_history(users, phase, self.max_len)
        return {"seq": seq.to(self.device), "lengths": lengths.to(self.device)}


class ModelMixin:
    """Base of the mixins that add one piece of behaviour to a :class:`Recommender` (listed before the family base):
    they use their host model's attributes, which the type checker reads as Any."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


class ItemTowerHost(ModelMixin):
    """Mixin of models whose item content may come from a trainable item tower (``self.item_tower``, None without
    one; ``config.encoder_lr``): the tower's encoder layers get their own learning rate and the run records where
    the tower came from. List it first in the bases."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        if self.item_tower is None:
            return super().parameter_groups()  # type: ignore[misc]  # the host model's, next in the MRO
        return self.item_tower.parameter_groups(self, self.config.encoder_lr)

    def provenance(self) -> dict[str, Any]:
        return {} if self.item_tower is None else {"item_encoder": self.item_tower.record(self.config.encoder_lr)}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Runs saved before the image tower (session 3) kept the tower as ``text_tower.*``: same layers, older name."""
        old = "text_tower."
        renamed = {("item_tower." + k.removeprefix(old) if k.startswith(old) else k): v for k, v in state_dict.items()}
        return super().load_state_dict(renamed, strict, assign)  # type: ignore[misc]  # the host model's, next in the MRO


class EmbeddingScorer(ModelMixin):
    """Mixin for models that score by a dot product of query and item vectors.

    Subclasses implement ``query_vectors(batch) -> [B, d]`` and ``item_vectors(items) -> [n, d]``.
    """

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self, items: slice) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.query_vectors(batch)

    def score_items(self, query: torch.Tensor, items: slice) -> torch.Tensor:
        return query @ self.item_vectors(items).T


class ScoringCache(ModelMixin):
    """Mixin of models whose scoring reuses something costly to compute (propagated graph embeddings, points on a
    manifold). :meth:`scoring_state` computes it from the parameters; :meth:`prepare_scoring` caches it for a
    scoring pass; the cache is dropped when the model trains again (``train()``; a model whose ``loss`` may run
    in eval mode also calls :meth:`clear_scoring_cache` there). Outside a scoring pass :meth:`cached_state`
    computes it afresh, so gradients flow. List it before the family base in the bases."""

    _scoring_state: Any = None

    def scoring_state(self) -> Any:
        """What every scoring chunk reuses, computed from the current parameters."""
        raise NotImplementedError

    def prepare_scoring(self) -> None:
        with torch.no_grad():
            self._scoring_state = self.scoring_state()

    def cached_state(self) -> Any:
        """The cached state during a scoring pass, a fresh one otherwise."""
        return self._scoring_state if self._scoring_state is not None else self.scoring_state()

    def clear_scoring_cache(self) -> None:
        self._scoring_state = None

    def train(self, mode: bool = True) -> Any:
        if mode:
            self.clear_scoring_cache()
        return super().train(mode)  # type: ignore[misc]


class RepresentationScorer(ScoringCache, EmbeddingScorer):
    """Mixin of dot-product models whose user and item vectors come out of one forward pass over every user and
    item (LightGCN, the multimodal CF models): :meth:`representations` computes both tables, a scoring pass
    caches them, queries read the users' rows and candidates the items' rows. List it before the family base."""

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user [n_users, d] and item [n_items, d] representations (the paper's forward pass)."""
        raise NotImplementedError

    def scoring_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.representations()

    def query_vectors(self, batch: Batch) -> torch.Tensor:
        return self.cached_state()[0][batch["users"]]

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.cached_state()[1][items]
