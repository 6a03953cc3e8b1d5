"""DiffRec's released splits: ``train_list.npy`` / ``valid_list.npy`` / ``test_list.npy`` (+ ``item_emb.npy``).

Each list is an int array of (user, item) pairs over 0-based contiguous ids, the layout DiffRec,
DDRM and HDRM publish. Ids are kept exactly (user ``u`` is index ``u``) so results line up with
those papers; the file order inside a split stands in for time (``timestamp`` = global row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset, ItemFeature
from modalrec.data.sources._common import build_dataset, finish, require_file
from modalrec.errors import DataFormatError

SPLIT_FILES = {"train_list.npy": TRAIN, "valid_list.npy": VALID, "test_list.npy": TEST}
ITEM_EMBEDDING_FILE = "item_emb.npy"
ITEM_EMBEDDING_PROVENANCE = {
    "kind": "collaborative",
    "encoder": "LightGCN embeddings released with DiffRec (used by L-DiffRec clustering)",
    "fill": "zero",
}


def _load_pairs(path: Path) -> np.ndarray:
    """One split file as an int64 [n, 2] array of non-negative ids."""
    try:
        pairs = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataFormatError(path, f"not a readable .npy array ({err})") from err
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DataFormatError(path, f"expected an int array of shape [n, 2] (user, item), got shape {list(pairs.shape)}")
    if not np.issubdtype(pairs.dtype, np.integer) and (
        not np.issubdtype(pairs.dtype, np.floating) or not np.all(pairs == np.floor(pairs))
    ):
        raise DataFormatError(path, f"expected integer ids, got dtype {pairs.dtype}")
    pairs = pairs.astype(np.int64)
    if pairs.size and pairs.min() < 0:
        raise DataFormatError(path, f"ids must be >= 0, found {int(pairs.min())} at row {int(np.argmin(pairs.min(axis=1)))}")
    return pairs


def read_diffrec(directory: str | Path, name: str | None = None) -> Dataset:
    """Read a DiffRec split folder (e.g. ``ml-1m_clean``) as a dataset with the given split.

    Users and items are ``0..max`` (as text), so a model's index ``i`` is DiffRec's item ``i``.
    When ``item_emb.npy`` is present it becomes feature ``item_emb`` (its rows fix the item count).
    """
    directory = Path(directory)
    parts = [(_load_pairs(require_file(directory / f, f"DiffRec split file {f}")), code) for f, code in SPLIT_FILES.items()]
    pairs = np.concatenate([p for p, _ in parts])
    split = np.concatenate([np.full(len(p), code, np.int8) for p, code in parts])
    n_users = int(pairs[:, 0].max()) + 1 if len(pairs) else 0
    n_items = int(pairs[:, 1].max()) + 1 if len(pairs) else 0
    emb_path = directory / ITEM_EMBEDDING_FILE
    embedding = None
    if emb_path.is_file():
        embedding = np.load(emb_path, allow_pickle=False)
        if embedding.ndim != 2 or embedding.shape[0] < n_items:
            raise DataFormatError(
                emb_path,
                f"expected a [n_items, dim] matrix with n_items >= {n_items} (largest item id + 1), got shape "
                f"{list(embedding.shape)}",
            )
        n_items = embedding.shape[0]
    ds = build_dataset(
        name or directory.name,
        directory,
        pairs[:, 0],
        pairs[:, 1],
        timestamp=np.arange(len(pairs), dtype=np.float64),
        split=split,
        user_universe=np.arange(n_users).astype(str),
        item_universe=np.arange(n_items).astype(str),
    )
    if embedding is not None:
        ds = ds.with_feature(
            "item_emb", ItemFeature(embedding.astype(np.float32), np.ones(n_items, bool), dict(ITEM_EMBEDDING_PROVENANCE))
        )
    ds.meta["split"] = {"method": "given", "source": "diffrec train/valid/test lists", "time_order": "file order"}
    return finish(ds, "diffrec", directory)
