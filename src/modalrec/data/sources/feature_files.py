"""Item features from a ``.npy`` matrix whose rows are addressed by the items' raw ids.

The MicroLens feature files that FindRec's released code reads (``MicroLens-100k_image_features_CLIPRN50.npy``,
``MicroLens-100k_title_en_text_features_BgeM3.npy``, ``[19738, 1024]`` each) hold the item with raw
id ``t`` in row ``t - 1``. ``rows`` says how a raw id finds its row:

- ``"token-1"``: row = int(raw id) - 1 (MicroLens, FindRec);
- ``"token"``:   row = int(raw id);
- ``"index"``:   row = the item's index in the dataset (the matrix is already aligned);
- a mapping ``{raw id: row}``: explicit.

The feature dimension is the array's. Items without a row (non-integer id, out of range, absent from
the mapping) get a zero vector and ``mask = False``; if no item finds a row the file is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.errors import FeatureError

ROW_RULES = ("token-1", "token", "index")


def feature_rows(item_ids: np.ndarray, rows: str | Mapping[str, int], n_rows: int) -> np.ndarray:
    """The matrix row of every item (-1 where it has none)."""
    ids = np.asarray(item_ids).astype(str)
    if isinstance(rows, Mapping):
        out = np.array([int(rows.get(t, -1)) for t in ids.tolist()], dtype=np.int64)
    elif rows == "index":
        out = np.arange(len(ids), dtype=np.int64)
    elif rows in ("token-1", "token"):
        numeric = np.char.isdigit(ids)
        out = np.full(len(ids), -1, dtype=np.int64)
        out[numeric] = ids[numeric].astype(np.int64) - (1 if rows == "token-1" else 0)
    else:
        raise FeatureError(
            f"unknown feature row rule '{rows}'; choose one of {', '.join(ROW_RULES)} or give a {{raw id: row}} mapping"
        )
    out[(out < 0) | (out >= n_rows)] = -1
    return out


def attach_feature_file(ds: Dataset, name: str, path: str | Path, rows: str | Mapping[str, int] = "token-1") -> Dataset:
    """``ds`` with the feature ``name`` read from the ``.npy`` matrix at ``path`` (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FeatureError(f"feature file '{path}' for '{name}' does not exist")
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise FeatureError(f"{path}: not a numeric .npy matrix ({err})") from None
    if matrix.ndim != 2:
        raise FeatureError(f"{path}: feature matrices are 2-D [rows, dim], got shape {matrix.shape}")
    index = feature_rows(ds.item_ids, rows, matrix.shape[0])
    found = index >= 0
    if not found.any():
        raise FeatureError(
            f"{path}: no item of '{ds.name}' finds a row with rows='{rows}' ({matrix.shape[0]} rows; item ids look like "
            f"{', '.join(map(str, ds.item_ids[:3]))}); pick another row rule or give a mapping"
        )
    values = np.zeros((ds.n_items, matrix.shape[1]), dtype=np.float32)
    values[found] = np.asarray(matrix[index[found]], dtype=np.float32)
    provenance = {"file": str(path), "rows": rows if isinstance(rows, str) else "mapping", "file_rows": int(matrix.shape[0])}
    return ds.with_feature(name, ItemFeature(values, found, provenance))


def attach_feature_files(ds: Dataset, files: Mapping[str, str], rows: str = "token-1") -> Dataset:
    """Attach every ``{name: path}`` of ``files`` with the same row rule."""
    for name, path in files.items():
        ds = attach_feature_file(ds, name, path, rows)
    return ds
