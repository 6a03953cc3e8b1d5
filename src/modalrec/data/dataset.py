"""The one in-memory dataset every reader produces and every model, trainer and server reads.

A :class:`Dataset` is a flat interaction table (user, item, optional timestamp and rating, optional
split label) over contiguous integer ids, the raw-id maps in both directions, item content as named
dense matrices with a presence mask, optional item metadata for display, and a provenance record.
It is a plain value: transformations (preprocess, split, features) return new datasets.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modalrec.errors import FeatureError

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}


@dataclass
class ItemFeature:
    """A dense item-content matrix, row ``i`` for item index ``i``.

    ``mask[i]`` is False where the item lacks this modality; such rows hold the fill value that
    ``provenance['fill']`` names (zero or mean), so models can use the matrix as is.
    """

    values: np.ndarray  # float32 [n_items, dim]
    mask: np.ndarray  # bool [n_items]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def check(self, name: str, n_items: int) -> None:
        """Refuse features that would silently corrupt training (wrong shape, NaN/inf)."""
        if self.values.ndim != 2:
            raise FeatureError(f"feature '{name}' must be a 2-D matrix [n_items, dim], got shape {self.values.shape}")
        if self.values.shape[0] != n_items:
            raise FeatureError(
                f"feature '{name}' has {self.values.shape[0]} rows but the dataset has {n_items} items "
                "(row i must hold item index i)"
            )
        if self.mask.shape != (n_items,):
            raise FeatureError(f"feature '{name}' mask has shape {self.mask.shape}, expected ({n_items},)")
        bad = ~np.isfinite(self.values)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise FeatureError(
                f"feature '{name}' has {int(bad.sum())} NaN/inf values in {len(rows)} rows "
                f"(first rows: {rows[:5].tolist()}); fix or fill them before training"
            )


def _as_text(values: np.ndarray | list) -> np.ndarray:
    """Raw ids as an object array of str (integers become their decimal text)."""
    arr = np.asarray(values)
    if arr.dtype == object and (arr.size == 0 or isinstance(arr.flat[0], str)):
        return arr
    return arr.astype(str).astype(object)


def order_ids(distinct: np.ndarray | list) -> np.ndarray:
    """Distinct raw ids in index order: numerically when all are integers, else as strings."""
    text = np.asarray(_as_text(distinct)).astype(str)
    text = np.unique(text)
    if text.size and np.char.isdigit(np.char.lstrip(text, "-")).all():
        return text[np.argsort(text.astype(np.int64), kind="stable")]
    return text


def index_ids(
    raw: np.ndarray | list, universe: np.ndarray | list | None = None, kind: str = "id"
) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids as str in index order, contiguous index per value).

    Values are hashed in C first (pandas), so only the distinct ids are turned into text: a
    million-row file indexes in well under a second. With ``universe`` the id list (and its order)
    is given; values outside it raise ValueError with a count and examples.
    """
    local, uniques = pd.factorize(np.asarray(raw))
    unique_text = _as_text(np.asarray(uniques))
    ids = order_ids(unique_text) if universe is None else np.asarray(universe).astype(str)
    position = pd.Categorical(unique_text, categories=pd.Index(ids, dtype=object)).codes.astype(np.int64)
    unknown = position < 0
    if unknown.any():
        examples = ", ".join(sorted(unique_text[unknown].tolist())[:5])
        raise ValueError(f"{int(unknown.sum())} {kind} id(s) are not in the {kind} list (e.g. {examples})")
    return ids, position[local]


@dataclass
class Dataset:
    """Interactions over contiguous ids, with raw-id maps, item content and provenance.

    ``user[k]``, ``item[k]`` (and ``timestamp[k]``, ``rating[k]``, ``split[k]`` when present)
    describe interaction ``k``; ``user_ids[u]`` / ``item_ids[i]`` are the raw ids of indices
    ``u`` / ``i``. ``split`` holds :data:`TRAIN`, :data:`VALID` or :data:`TEST` per interaction.
    """

    name: str
    user: np.ndarray
    item: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamp: np.ndarray | None = None
    rating: np.ndarray | None = None
    split: np.ndarray | None = None
    features: dict[str, ItemFeature] = field(default_factory=dict)
    item_meta: dict[str, list] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_raw(
        cls,
        name: str,
        users: np.ndarray | list,
        items: np.ndarray | list,
        timestamp: np.ndarray | None = None,
        rating: np.ndarray | None = None,
        split: np.ndarray | None = None,
        item_universe: np.ndarray | list | None = None,
        user_universe: np.ndarray | list | None = None,
        source: str | None = None,
    ) -> Dataset:
        """Build a dataset from raw ids, assigning contiguous indices.

        ``item_universe`` / ``user_universe`` give the full id lists (and their order) when the
        source defines them (e.g. an item file listing items with no interaction); otherwise ids
        are the ones seen, sorted numerically when they are all integers.
        """
        item_ids, item_index = index_ids(items, item_universe, "item")
        user_ids, user_index = index_ids(users, user_universe, "user")
        return cls(
            name=name,
            user=user_index,
            item=item_index,
            user_ids=user_ids,
            item_ids=item_ids,
            timestamp=None if timestamp is None else np.asarray(timestamp, dtype=np.float64),
            rating=None if rating is None else np.asarray(rating, dtype=np.float32),
            split=None if split is None else np.asarray(split, dtype=np.int8),
            meta={"source": source or name, "steps": []},
        )

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def n_interactions(self) -> int:
        return int(len(self.user))

    @property
    def density(self) -> float:
        return self.n_interactions / max(1, self.n_users * self.n_items)

    # ------------------------------------------------------------------ id maps
    def user_index(self, raw_id: str) -> int:
        """Index of a raw user id; KeyError when unknown."""
        return self._lookup("_user_lookup", self.user_ids)[str(raw_id)]

    def item_index(self, raw_id: str) -> int:
        """Index of a raw item id; KeyError when unknown."""
        return self._lookup("_item_lookup", self.item_ids)[str(raw_id)]

    def _lookup(self, attr: str, ids: np.ndarray) -> dict[str, int]:
        cached = self.__dict__.get(attr)
        if cached is None or len(cached) != len(ids):
            cached = {r: i for i, r in enumerate(np.asarray(ids).astype(str).tolist())}
            self.__dict__[attr] = cached
        return cached

    # ------------------------------------------------------------------ derived datasets
    def select(self, keep: np.ndarray, step: dict[str, Any] | None = None) -> Dataset:
        """A dataset with only the interactions where ``keep`` is True (ids are not re-mapped)."""
        keep = np.asarray(keep)
        out = self.replace(
            user=self.user[keep],
            item=self.item[keep],
            timestamp=None if self.timestamp is None else self.timestamp[keep],
            rating=None if self.rating is None else self.rating[keep],
            split=None if self.split is None else self.split[keep],
        )
        if step is not None:
            out.meta["steps"] = [*self.meta.get("steps", []), step]
        return out

    def compact(self) -> Dataset:
        """Re-map ids so only users and items that occur remain, keeping their relative order."""
        used_users = np.unique(self.user)
        used_items = np.unique(self.item)
        if used_users.size == self.n_users and used_items.size == self.n_items:
            return self
        user_map = np.full(self.n_users, -1, dtype=np.int64)
        user_map[used_users] = np.arange(used_users.size)
        item_map = np.full(self.n_items, -1, dtype=np.int64)
        item_map[used_items] = np.arange(used_items.size)
        features = {
            name: ItemFeature(f.values[used_items], f.mask[used_items], dict(f.provenance)) for name, f in self.features.items()
        }
        item_meta = {k: [v[i] for i in used_items.tolist()] for k, v in self.item_meta.items()}
        return self.replace(
            user=user_map[self.user],
            item=item_map[self.item],
            user_ids=self.user_ids[used_users],
            item_ids=self.item_ids[used_items],
            features=features,
            item_meta=item_meta,
        )

    def replace(self, **changes: Any) -> Dataset:
        """A shallow copy with some fields replaced (metadata is copied, arrays are shared)."""
        fields: dict[str, Any] = {
            "features": dict(self.features),
            "item_meta": dict(self.item_meta),
            "meta": copy.deepcopy(self.meta),
        }
        fields.update(changes)
        return dataclasses.replace(self, **fields)

    def with_feature(self, name: str, feature: ItemFeature) -> Dataset:
        """Attach (or replace) a named item-content matrix after checking it."""
        feature.check(name, self.n_items)
        features = dict(self.features)
        features[name] = feature
        out = self.replace(features=features)
        out.meta.setdefault("features", {})[name] = {
            "dim": feature.dim,
            "missing": int((~feature.mask).sum()),
            **feature.provenance,
        }
        return out

    # ------------------------------------------------------------------ splits
    def part(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) arrays of one split (TRAIN / VALID / TEST); all interactions when unsplit."""
        if self.split is None:
            if which != TRAIN:
                raise ValueError(f"dataset '{self.name}' has no split; split it first (modalrec.data.split)")
            return self.user, self.item
        keep = self.split == which
        return self.user[keep], self.item[keep]

    # ------------------------------------------------------------------ checks and summaries
    def validate(self) -> None:
        """Check shapes, id ranges and features; raises with counts when something is off."""
        n = self.n_interactions
        for name in ("item", "timestamp", "rating", "split"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"'{name}' has {len(arr)} entries but there are {n} interactions")
        if n:
            if self.user.min() < 0 or self.user.max() >= self.n_users:
                raise ValueError("user indices out of range of user_ids")
            if self.item.min() < 0 or self.item.max() >= self.n_items:
                raise ValueError("item indices out of range of item_ids")
        for name, values in self.item_meta.items():
            if len(values) != self.n_items:
                raise ValueError(f"item metadata '{name}' has {len(values)} rows, expected {self.n_items}")
        for name, feature in self.features.items():
            feature.check(name, self.n_items)

    def content_hash(self) -> str:
        """sha256 over the interaction arrays, id maps and split: identifies the exact data a run used."""
        h = hashlib.sha256()
        for arr in (self.user, self.item, self.split, self.timestamp, self.rating):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        for ids in (self.user_ids, self.item_ids):
            h.update("\x1f".join(np.asarray(ids).astype(str).tolist()).encode())
        return h.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Users, items, interactions, density and per-split counts."""
        out: dict[str, Any] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.density,
        }
        if self.split is not None:
            counts = np.bincount(self.split.astype(np.int64), minlength=3)
            for code, label in SPLIT_NAMES.items():
                out[label] = int(counts[code])
        for name, f in self.features.items():
            out[f"feature:{name}"] = f"{f.dim}-d, {int(f.mask.sum())}/{self.n_items} items"
        return out

    def describe(self) -> str:
        """One human-readable block of :meth:`stats`."""
        rows = []
        for key, value in self.stats().items():
            if isinstance(value, float):
                value = f"{value:.4%}" if key == "density" else f"{value:.4g}"
            elif isinstance(value, int):
                value = f"{value:,}"
            rows.append(f"{key:>14}: {value}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        split = "" if self.split is None else ", split"
        feats = f", features={list(self.features)}" if self.features else ""
        return (
            f"Dataset('{self.name}', users={self.n_users:,}, items={self.n_items:,}, "
            f"interactions={self.n_interactions:,}{split}{feats})"
        )
