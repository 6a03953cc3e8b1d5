"""The serving engine: a trained run loaded once and ranked per request, with no HTTP in sight.

What it answers (the HTTP layer in :mod:`modalrec.serve.app` only validates and translates):

- **a known user**: general models score from the user's learned representation; sequential models
  read the user's whole stored history (train + valid + test, time order, last ``max_len`` items).
  ``exclude_seen`` masks every known interaction of the user (all three splits), since a served list
  should not repeat anything the user is known to have consumed;
- **an ad-hoc session** (a list of items): sequential models score it as a sequence. General models
  have no representation for a stranger, so they use an item-based fallback:
  ``item-cosine`` when the model has item vectors (the mean cosine similarity of each item to the
  session's items, over the model's own vectors) and ``co-occurrence`` otherwise (the mean cosine
  of train co-occurrence between each item and the session's items, keeping each session item's
  100 nearest neighbours, precomputed by :meth:`ServingEngine.prepare_sessions` (the server calls it at
  start): the classic item-kNN score);
- **popularity** (train interaction counts) for unknown users when the caller asks for it, and for a
  session none of whose items is known.

Ranking is exact by default, by the evaluator's own top-K kernel
(:func:`modalrec.eval.topk.masked_topk`): scores of every candidate, masked, ties broken by lower
item index. Dot-product models can use an
approximate faiss HNSW index instead (``ann=True``) for very large catalogues; requests with an
allow list are always ranked exactly (only the allowed items are candidates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.data.context import DataContext, pad_sequences
from modalrec.data.dataset import TEST, TRAIN, VALID
from modalrec.data.registry import available_datasets, shared_data_dir
from modalrec.errors import ConfigError, ModalRecError
from modalrec.eval.topk import masked_topk
from modalrec.models.base import EmbeddingScorer, Recommender
from modalrec.models.general.itemknn import cosine_topk
from modalrec.train.experiment import LoadedRun, open_run

SESSION_NEIGHBOURS = 100  # neighbours per item of the co-occurrence session fallback
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")

# how each kind of request was answered (reported in every response)
Strategy = Literal["model", "item-cosine", "co-occurrence", "popularity"]  # how a list was made
MODEL: Strategy = "model"
ITEM_COSINE: Strategy = "item-cosine"
CO_OCCURRENCE: Strategy = "co-occurrence"
POPULARITY: Strategy = "popularity"


class ServeError(ModalRecError):
    """A request the service refuses; ``status`` is the HTTP status it maps to."""

    status: int = 400


class UnknownUserError(ServeError):
    status = 404


class UnknownItemError(ServeError):
    status = 404


class RequestTooLargeError(ServeError):
    status = 413


@dataclass
class Ranked:
    """One ranked list: item indices and scores (best first, only finite scores) and how it was made."""

    items: np.ndarray
    scores: np.ndarray
    strategy: Strategy


@dataclass
class CandidateFilter:
    """Which items may be recommended: ``allow`` (None: all) minus ``deny``, as index arrays."""

    allow: np.ndarray | None = None
    deny: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def blocked(self, n_items: int) -> np.ndarray | None:
        """bool [n_items], True where an item may not be recommended; None when nothing is blocked."""
        if self.allow is None and not len(self.deny):
            return None
        blocked = np.zeros(n_items, dtype=bool) if self.allow is None else np.ones(n_items, dtype=bool)
        if self.allow is not None:
            blocked[self.allow] = False
        blocked[self.deny] = True
        return blocked


def known_histories(ctx: DataContext) -> sp.csr_matrix:
    """Every user's interactions of all three splits as CSR rows in time order (train, valid, test,
    each in its stored order): what the service knows a user has consumed."""
    users, items, keys = [], [], []
    for part in (TRAIN, VALID, TEST):
        rows = ctx.histories[part]
        row_of = np.repeat(np.arange(ctx.n_users), np.diff(rows.indptr))
        users.append(row_of)
        items.append(rows.indices.astype(np.int64))
        keys.append(part * (rows.nnz + 1) + (np.arange(rows.nnz) - rows.indptr[row_of]))  # (part, position)
    user, item, key = (np.concatenate(parts) for parts in (users, items, keys))
    order = np.lexsort((key, user))
    indptr = np.zeros(ctx.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user, minlength=ctx.n_users), out=indptr[1:])
    return sp.csr_matrix((np.ones(len(order), dtype=np.float32), item[order], indptr), shape=(ctx.n_users, ctx.n_items))


def _unique_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The same rows with sorted, de-duplicated columns (what a mask needs)."""
    out = matrix.copy()
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


class ServingEngine:
    """A finished run, loaded once, that ranks items for users, sessions and popularity.

    ``item_chunk`` bounds the score tile (requests x items) held at once; ``ann`` builds a faiss
    HNSW index over the item vectors (dot-product models only; needs the ``ann`` extra);
    ``image_dir`` is a folder of ``<raw item id>.<jpg|png|...>`` images (e.g. posters) to serve; by
    default the folder an image feature of the dataset was encoded from, when it is on this disk.
    """

    def __init__(
        self,
        loaded: LoadedRun,
        item_chunk: int = 100_000,
        ann: bool = False,
        ann_ef_search: int = 128,
        image_dir: str | Path | None = None,
    ):
        if item_chunk < 1:
            raise ConfigError(f"serve item_chunk must be >= 1, got {item_chunk}")
        self.run = loaded
        self.model = loaded.model.eval()
        self.ctx = loaded.ctx
        self.dataset = loaded.dataset
        self.n_items = self.ctx.n_items
        self.item_chunk = int(item_chunk)
        self.family = self.model.family
        self.item_ids = np.asarray(self.dataset.item_ids).astype(str)
        self.user_ids = np.asarray(self.dataset.user_ids).astype(str)
        self._user_lookup = {raw: index for index, raw in enumerate(self.user_ids.tolist())}
        self._item_lookup = {raw: index for index, raw in enumerate(self.item_ids.tolist())}
        self.histories = known_histories(self.ctx)
        self.seen = _unique_rows(self.histories)
        self.popularity = (
            np.asarray(self.ctx.item_popularity if self.ctx.item_popularity is not None else self.ctx.train.sum(axis=0))
            .ravel()
            .astype(np.float32)
        )
        self.titles: list | None = self.dataset.item_meta.get("title")
        self.images = ImageFolder(image_dir) if image_dir is not None else dataset_image_folder(self.dataset)
        self.image_urls = _first_urls(self.dataset.item_meta.get("image_urls"))
        # Precomputed at start: cached propagation (prepare_scoring) and, for dot-product models, the
        # item vector matrix, so a request costs one query encoding and one matrix product.
        with torch.inference_mode():
            self.model.prepare_scoring()
            self.item_vectors = (
                self.model.item_vectors(slice(0, self.n_items)).detach().float().contiguous()
                if isinstance(self.model, EmbeddingScorer)
                else None
            )
        self.session_strategy = (
            MODEL if self.family == "sequential" else (ITEM_COSINE if self.item_vectors is not None else CO_OCCURRENCE)
        )
        self._unit_vectors: torch.Tensor | None = None
        self._neighbours: sp.csr_matrix | None = None
        self.ann = _AnnIndex(self.item_vectors, ann_ef_search, self.model) if ann else None
        self.unscored = self.model.unscored_items()  # items the model cannot represent (cold items of an ID-only run)

    def prepare_sessions(self) -> None:
        """Precompute what the item-based session fallback reads (unit item vectors, or each item's
        co-occurrence neighbours); the server does it at start, a CLI call only if it needs it."""
        if self.session_strategy == ITEM_COSINE and self._unit_vectors is None:
            vectors = cast(torch.Tensor, self.item_vectors)  # ITEM_COSINE is chosen only for models with item vectors
            self._unit_vectors = torch.nn.functional.normalize(vectors, dim=1)
        elif self.session_strategy == CO_OCCURRENCE and self._neighbours is None:  # item-kNN: most co-occurring items by cosine
            index, weight = cosine_topk(self.ctx.train, min(SESSION_NEIGHBOURS, max(self.n_items - 1, 1)))
            rows = np.repeat(np.arange(self.n_items), index.shape[1])
            self._neighbours = sp.csr_matrix((weight.ravel(), (rows, index.ravel())), shape=(self.n_items, self.n_items))

    @classmethod
    def open(cls, run_dir: str | Path, device: str = "cpu", **options: Any) -> ServingEngine:
        """Load a run directory (config, data checked by content hash, selected checkpoint)."""
        return cls(open_run(run_dir, device=device), **options)

    # ------------------------------------------------------------------ ids and metadata
    def user_index(self, raw: str) -> int | None:
        return self._user_lookup.get(str(raw))

    def item_index(self, raw: str) -> int | None:
        return self._item_lookup.get(str(raw))

    def item_indices(self, raws: list[str]) -> tuple[np.ndarray, list[str]]:
        """Indices of the known raw ids (order kept) and the unknown ids, in the order given."""
        known, unknown = [], []
        for raw in raws:
            index = self._item_lookup.get(str(raw))
            if index is None:
                unknown.append(str(raw))
            else:
                known.append(index)
        return np.asarray(known, dtype=np.int64), unknown

    def history(self, user: int) -> np.ndarray:
        """The user's known items (all splits), oldest first."""
        return self.histories.indices[self.histories.indptr[user] : self.histories.indptr[user + 1]]

    def title(self, item: int) -> str | None:
        if self.titles is None or self.titles[item] is None:
            return None
        return str(self.titles[item])

    def image(self, item: int) -> str | None:
        """Where the item's image is: ``local`` (served by the app) or a URL from the metadata."""
        if self.images is not None and self.images.path(self.item_ids[item]) is not None:
            return "local"
        return self.image_urls.get(item)

    def metadata(self, item: int) -> dict[str, Any]:
        """All metadata fields of one item (JSON-safe), with its train popularity."""
        fields = {key: _jsonable(values[item]) for key, values in self.dataset.item_meta.items()}
        return {"popularity": int(self.popularity[item]), "metadata": fields}

    # ------------------------------------------------------------------ requests
    def recommend_users(self, users: np.ndarray, k: int, exclude_seen: bool, candidates: CandidateFilter) -> list[Ranked]:
        """Top-k for known users (indices), one forward pass for the whole batch."""
        users = np.asarray(users, dtype=np.int64)
        if not len(users):
            return []
        with torch.inference_mode():
            batch = self._user_batch(users)
            return self._rank(
                self.model.encode(batch), len(users), k, self.seen[users] if exclude_seen else None, candidates, MODEL
            )

    def recommend_session(self, items: np.ndarray, k: int, exclude_seen: bool, candidates: CandidateFilter) -> Ranked:
        """Top-k after an ad-hoc list of known items (oldest first); popularity when it is empty."""
        if not len(items):
            return self.popular(k, candidates)
        hide = (
            _unique_rows(sp.csr_matrix((np.ones(len(items)), (np.zeros(len(items)), items)), shape=(1, self.n_items)))
            if exclude_seen
            else None
        )
        with torch.inference_mode():
            if self.session_strategy == MODEL:
                query = self.model.encode(self._sequence_batch([items]))
                return self._rank(query, 1, k, hide, candidates, MODEL)[0]
            self.prepare_sessions()
            unit, neighbours = self._unit_vectors, self._neighbours  # set by prepare_sessions for this strategy
            if self.session_strategy == ITEM_COSINE:  # mean cosine to the session's items
                unit = cast(torch.Tensor, unit)
                scores = (unit @ unit[torch.from_numpy(items)].mean(0)).unsqueeze(0)
            else:  # mean co-occurrence cosine to the session's items (over each item's nearest neighbours)
                neighbours = cast(sp.csr_matrix, neighbours)
                scores = torch.from_numpy(np.asarray(neighbours[items].sum(axis=0)) / len(items))
            return self._rank_scores(scores.float(), k, hide, candidates, self.session_strategy)

    # ------------------------------------------------------------------ explanations
    @property
    def explains(self) -> bool:
        """Whether the model explains its recommendations (``Recommender.explain``; FindRec: routing weights)."""
        return type(self.model).explain is not Recommender.explain

    def explain_users(self, users: np.ndarray, ranked: list[Ranked]) -> list[list[dict[str, Any]]] | None:
        """Per user, one explanation per item of its list (from :meth:`recommend_users`); None without one."""
        return self._explain(self._user_batch(np.asarray(users, dtype=np.int64)), ranked)

    def explain_session(self, items: np.ndarray, ranked: Ranked) -> list[dict[str, Any]] | None:
        """One explanation per item of a session's list when the model made it; None otherwise."""
        if ranked.strategy != MODEL or not len(items):
            return None
        explained = self._explain(self._sequence_batch([items]), [ranked])
        return None if explained is None else explained[0]

    def _explain(self, batch: dict[str, torch.Tensor], ranked: list[Ranked]) -> list[list[dict[str, Any]]] | None:
        if not self.explains or not ranked:
            return None
        k = max(len(r.items) for r in ranked)
        if k == 0:
            return [[] for _ in ranked]
        items = torch.zeros(len(ranked), k, dtype=torch.long)
        for row, r in enumerate(ranked):
            items[row, : len(r.items)] = torch.from_numpy(r.items)
        with torch.inference_mode():
            explained = self.model.explain(batch, items.to(self.model.device))
        return None if explained is None else [row[: len(r.items)] for row, r in zip(explained, ranked)]

    def popular(self, k: int, candidates: CandidateFilter) -> Ranked:
        """The most interacted-with train items (ties by lower index)."""
        scores = torch.from_numpy(self.popularity).unsqueeze(0)
        return self._rank_scores(scores, k, None, candidates, POPULARITY)

    # ------------------------------------------------------------------ ranking
    def _user_batch(self, users: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch a known user is scored from: the whole stored history (sequential) or the learned user."""
        if self.family == "sequential":
            return self._sequence_batch([self.history(u) for u in users.tolist()])
        return self.model.eval_batch(users, self.ctx, TEST)

    def _sequence_batch(self, sequences: list[np.ndarray]) -> dict[str, torch.Tensor]:
        seq, lengths = pad_sequences(sequences, self.model.max_len, self.n_items)
        return {"seq": seq.to(self.model.device), "lengths": lengths.to(self.model.device)}

    def _chunk_scores(self, query: Any, start: int, stop: int) -> torch.Tensor:
        if self.item_vectors is not None:
            return query @ self.item_vectors[start:stop].T
        return self.model.score_items(query, slice(start, stop))

    def _blocked(self, candidates: CandidateFilter) -> np.ndarray | None:
        """Items a model-made list may not hold: those the request blocks and those the model cannot represent."""
        blocked = candidates.blocked(self.n_items)
        if self.unscored is None:
            return blocked
        return self.unscored if blocked is None else blocked | self.unscored

    def _rank(
        self, query: Any, n_rows: int, k: int, hide: sp.csr_matrix | None, candidates: CandidateFilter, strategy: Strategy
    ) -> list[Ranked]:
        """Top-k of encoded queries: approximate through the index when there is one and no allow
        list, else exact, by the evaluator's kernel (:func:`modalrec.eval.topk.masked_topk`)."""
        blocked = self._blocked(candidates)
        if self.ann is not None and candidates.allow is None:
            excluded = None if hide is None else [hide.indices[hide.indptr[r] : hide.indptr[r + 1]] for r in range(n_rows)]
            return self.ann.search(query.float().cpu().numpy(), k, excluded, blocked, strategy)
        items, scores = masked_topk(
            lambda start, stop: self._chunk_scores(query, start, stop), n_rows, self.n_items, k, self.item_chunk, hide, blocked
        )
        return [_finite(s, i, strategy) for s, i in zip(scores, items)]

    def _rank_scores(
        self, scores: torch.Tensor, k: int, hide: sp.csr_matrix | None, candidates: CandidateFilter, strategy: Strategy
    ) -> Ranked:
        """Top-k of one row of precomputed scores [1, n_items] (fallbacks)."""
        blocked = candidates.blocked(self.n_items) if strategy == POPULARITY else self._blocked(candidates)
        items, best = masked_topk(lambda start, stop: scores[:, start:stop], 1, self.n_items, k, self.item_chunk, hide, blocked)
        return _finite(best[0], items[0], strategy)


def _finite(scores: np.ndarray, items: np.ndarray, strategy: Strategy) -> Ranked:
    """Drop -inf entries (masked or unavailable: 'not recommended')."""
    keep = np.isfinite(scores)
    return Ranked(items=items[keep].astype(np.int64), scores=scores[keep].astype(np.float64), strategy=strategy)


class _AnnIndex:
    """Approximate maximum-inner-product top-k over the item vectors with a faiss HNSW graph.

    Masked items are removed after the search, so it asks for k + (the most items any row masks)
    neighbours; rows left with fewer than k items simply return fewer (as exact ranking does when
    a user has seen nearly everything)."""

    def __init__(self, vectors: torch.Tensor | None, ef_search: int, model: Any):
        if vectors is None:
            raise ConfigError(
                f"approximate top-K (ann) needs a dot-product model with item vectors; '{model.name}' scores "
                "items another way, so serve it without --ann (exact ranking)"
            )
        try:
            import faiss
        except ImportError:
            raise ConfigError("approximate top-K needs faiss: pip install 'modalrec[ann]' (faiss-cpu)") from None
        self.n_items, dim = vectors.shape
        self.index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 200
        self.index.add(np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32))
        self.ef_search = int(ef_search)

    def search(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray] | None, blocked: np.ndarray | None, strategy: Strategy
    ) -> list[Ranked]:
        import faiss

        masked = (max((len(e) for e in excluded), default=0) if excluded else 0) + (
            int(blocked.sum()) if blocked is not None else 0
        )
        want = min(self.n_items, k + masked)
        # faiss's bundled stubs leave out the SWIG class SearchParametersHNSW (faiss >= 1.7.3 has it)
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, want))  # type: ignore[attr-defined]
        scores, items = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), want, params=params)
        out = []
        for row in range(len(queries)):
            keep = items[row] >= 0
            if blocked is not None:
                keep &= ~blocked[np.maximum(items[row], 0)]
            if excluded is not None:
                keep &= ~np.isin(items[row], excluded[row])
            row_items, row_scores = items[row][keep], scores[row][keep]
            order = np.lexsort((row_items, -row_scores))[:k]  # same tie order as exact ranking
            out.append(Ranked(row_items[order].astype(np.int64), row_scores[order].astype(np.float64), strategy))
        return out


class ImageFolder:
    """Item images in one folder, found by raw item id: the file ``pattern`` names (``{item}`` is the
    raw id, e.g. ``{item}.jpg``), or ``<raw id>.<jpg|jpeg|png|webp|gif>`` without a pattern.

    A path is served only when, resolved (symlinks followed), it is an image file inside the folder:
    an id such as ``../x`` or ``/etc/passwd`` (an imported catalogue may hold anything) finds nothing.
    """

    def __init__(self, folder: str | Path, pattern: str | None = None):
        self.root = Path(folder).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"image folder {folder} does not exist (expected files named <raw item id>.jpg/.png)")
        if pattern is not None:
            try:
                pattern.format(item="x")
            except (KeyError, IndexError, ValueError):
                raise ConfigError(f"image pattern '{pattern}' may only use {{item}} (the raw item id)") from None
        self.pattern = pattern
        self._found: dict[str, Path | None] = {}

    def path(self, raw_id: str) -> Path | None:
        """The image file of the item with this raw id, or None (no file, or a path outside the folder)."""
        if raw_id not in self._found:
            names = [self.pattern.format(item=raw_id)] if self.pattern else [f"{raw_id}{suffix}" for suffix in IMAGE_SUFFIXES]
            self._found[raw_id] = next((p for p in map(self._inside, names) if p is not None), None)
        return self._found[raw_id]

    def _inside(self, name: str) -> Path | None:
        if "\x00" in name:
            return None
        try:
            candidate = (self.root / name).resolve()
        except (OSError, RuntimeError):  # a symlink loop, a name too long
            return None
        inside = candidate.is_relative_to(self.root) and candidate != self.root
        return candidate if inside and candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file() else None


def dataset_image_folder(dataset: Any) -> ImageFolder | None:
    """The dataset's item images when they are on this disk: the folder (and file pattern) an image
    feature was encoded from, else the folder its registry entry names under the shared data (ml-1m's
    posters); None otherwise."""
    for feature in dataset.features.values():
        provenance = getattr(feature, "provenance", None) or {}
        folder = provenance.get("image_folder")
        if folder and folder != "None" and Path(folder).expanduser().is_dir():
            return ImageFolder(folder, provenance.get("pattern"))
    spec, shared = available_datasets().get(dataset.name), shared_data_dir()
    if spec is not None and spec.images and shared is not None and (shared / spec.images).is_dir():
        return ImageFolder(shared / spec.images)
    return None


def _first_urls(urls: list | None) -> dict[int, str]:
    """item index -> its first http(s) image URL from the ``image_urls`` metadata."""
    if urls is None:
        return {}
    out = {}
    for item, value in enumerate(urls):
        first = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(first, str) and first.startswith(("http://", "https://")):
            out[item] = first
    return out


def _jsonable(value: Any) -> Any:
    """Metadata values as JSON types (numpy scalars/arrays to Python, NaN to None)."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
