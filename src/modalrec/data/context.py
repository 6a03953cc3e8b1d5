"""The small, read-only view of a split dataset that models receive (never paths, never the test split
as training data).

Built once per run from a split :class:`~modalrec.data.dataset.Dataset`. It holds sizes, the train
interactions (CSR), item features as tensors, train popularity and each user's time-ordered
histories, from which it cuts the padded sequences sequential models read at evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.data.features.extract import item_images, item_texts
from modalrec.errors import ModalRecError


def _ordered_csr(users: np.ndarray, items: np.ndarray, order_key: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """CSR whose row ``u`` lists user ``u``'s items in time order (stable on ties); data = 1."""
    order = np.lexsort((order_key, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    data = np.ones(len(users), dtype=np.float32)
    return sp.csr_matrix((data, items[order], indptr), shape=(n_users, n_items))


@dataclass(frozen=True)
class ItemImages:
    """Each item's image file (None: none) and the EfficientNet-Lite variant and input size to read them with."""

    paths: list[Path | None]
    variant: str
    size: int


@dataclass
class DataContext:
    """What a model may know about the data.

    ``train`` is the binary train matrix with columns sorted per row (for fast lookups);
    ``histories[p]`` holds, per user, the items of split ``p`` in time order (CSR rows, unsorted
    columns). ``features`` are float32 tensors [n_items, d] with masks. ``cold_items`` (bool [n_items]) marks
    the items a ``cold_items`` split held out of training (None when the split held none out). ``item_texts``
    are the items' texts rendered with the template the dataset's text feature was extracted with (None when it
    has no such feature), for models that encode text end to end; ``item_images`` likewise the items' image files
    and the EfficientNet-Lite settings the dataset's image feature was extracted with.
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix
    histories: dict[int, sp.csr_matrix]
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    feature_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    item_popularity: np.ndarray | None = None
    cold_items: np.ndarray | None = None
    item_texts: list[str | None] | None = None
    item_images: ItemImages | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> DataContext:
        if ds.split is None:
            raise ValueError(f"dataset '{ds.name}' has no split; split it before building a context")
        order_key = ds.timestamp if ds.timestamp is not None else np.arange(ds.n_interactions, dtype=np.float64)
        histories = {}
        for part in (TRAIN, VALID, TEST):
            keep = ds.split == part
            histories[part] = _ordered_csr(ds.user[keep], ds.item[keep], order_key[keep], ds.n_users, ds.n_items)
        train = histories[TRAIN].copy()
        train.sum_duplicates()  # sorts columns, merges repeats
        train.data[:] = 1.0
        cold_index = (ds.meta.get("split") or {}).get("cold_items") or []
        cold_items = None
        if len(cold_index):
            cold_items = np.zeros(ds.n_items, dtype=bool)
            cold_items[np.asarray(cold_index, dtype=np.int64)] = True
        return cls(
            n_users=ds.n_users,
            n_items=ds.n_items,
            train=train,
            histories=histories,
            features={
                k: torch.from_numpy(np.array(f.values, dtype=np.float32)) for k, f in ds.features.items()
            },  # a writable copy (saved datasets are read-only memory maps)
            feature_masks={k: torch.from_numpy(np.array(f.mask, dtype=bool)) for k, f in ds.features.items()},
            item_popularity=np.asarray(train.sum(axis=0)).ravel().astype(np.int64),
            cold_items=cold_items,
            item_texts=_item_texts(ds),
            item_images=_item_images(ds),
        )

    @property
    def warm_items(self) -> np.ndarray | None:
        """The sorted indices of the items that exist at training time, i.e. all but the held-out cold items; None
        without a cold-item split (every item). Training negatives and training softmaxes range over these only:
        a cold item never reaches training, not even as a negative."""
        return None if self.cold_items is None else np.flatnonzero(~self.cold_items)

    def history(self, users: np.ndarray, phase: int) -> list[np.ndarray]:
        """Each user's time-ordered items seen before ``phase`` (VALID: train; TEST: train + valid)."""
        parts = [TRAIN] if phase == VALID else [TRAIN, VALID]
        out = []
        for u in np.asarray(users).tolist():
            rows = [self.histories[p].indices[self.histories[p].indptr[u] : self.histories[p].indptr[u + 1]] for p in parts]
            out.append(np.concatenate(rows) if len(rows) > 1 else rows[0])
        return out

    def padded_history(self, users: np.ndarray, phase: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded last ``max_len`` history items [B, L] (pad = n_items) and lengths [B]."""
        return pad_sequences(self.history(users, phase), max_len, self.n_items)

    def seen(self, phase: int) -> sp.csr_matrix:
        """Items masked when ranking for ``phase``: train for VALID, train + valid for TEST."""
        if phase == VALID:
            return self.train
        seen = (self.histories[TRAIN] + self.histories[VALID]).tocsr()
        seen.sum_duplicates()
        seen.data[:] = 1.0
        return seen

    def targets(self, phase: int) -> sp.csr_matrix:
        """The relevant items of ``phase`` per user (columns sorted, duplicates merged)."""
        t = self.histories[phase].copy()
        t.sum_duplicates()
        t.data[:] = 1.0
        return t


def _item_texts(ds: Dataset) -> list[str | None] | None:
    """The items' texts by the template of the first text feature that records one (None without)."""
    for record in (ds.meta.get("features") or {}).values():
        if record.get("modality") == "text" and record.get("template") and ds.item_meta:
            try:
                return item_texts(ds, record["template"])
            except ModalRecError:  # the metadata the template names is gone (e.g. a re-imported dataset)
                return None
    return None


def _item_images(ds: Dataset) -> ItemImages | None:
    """The items' images by the folder/pattern or field of the first EfficientNet-Lite image feature (None without,
    or when its folder is gone)."""
    for record in (ds.meta.get("features") or {}).values():
        encoder = str(record.get("encoder", ""))
        if record.get("modality") != "image" or not encoder.startswith("efficientnet-lite"):
            continue
        try:
            paths = item_images(ds, record.get("image_folder"), record.get("pattern", "{item}.jpg"), record.get("image_field"))
        except ModalRecError:  # folder moved or field gone
            return None
        return ItemImages(paths, encoder.removeprefix("efficientnet-"), int(record.get("size", 224)))
    return None


def pad_sequences(seqs: list[np.ndarray], max_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad the last ``max_len`` items of each sequence with ``pad``; returns (seq [B, L], lengths [B])."""
    out = np.full((len(seqs), max_len), pad, dtype=np.int64)
    lengths = np.zeros(len(seqs), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-max_len:]
        out[row, : len(s)] = s
        lengths[row] = len(s)
    return torch.from_numpy(out), torch.from_numpy(lengths)
