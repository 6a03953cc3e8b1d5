"""MMRec's dataset folders: ``<name>.inter`` + ``image_feat.npy`` / ``text_feat.npy`` (+ id mappings).

``<name>.inter`` is a tab-separated table with a plain header (``userID``, ``itemID``, optional
``rating`` and ``timestamp``, and ``x_label`` 0/1/2 = train/valid/test). Feature row ``i`` belongs to
itemID ``i``, so items are ``0..n-1`` in that order. ``u_id_mapping.csv`` / ``i_id_mapping.csv``
(raw id, contiguous id; tab- or comma-separated with a header) restore the original ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset, ItemFeature
from modalrec.data.sources._common import build_dataset, finish, infer_name, read_bytes, read_separated, require_file, to_floats
from modalrec.errors import DataFormatError, FeatureError

FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
SPLIT_LABELS = {0: TRAIN, 1: VALID, 2: TEST}
ID_COLUMNS = {"user": "userID", "item": "itemID"}


def _integer_column(frame: pd.DataFrame, column: str, path: Path, raw: bytes) -> np.ndarray:
    """A column of non-negative integers (contiguous ids, split labels); names the first bad line."""
    values = to_floats(frame, column, path, raw, header_lines=1)
    bad = (values < 0) | (values != np.floor(values))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(path, f"column '{column}' needs a non-negative integer, got {values[row]}", line=row + 2)
    return values.astype(np.int64)


def _read_header_table(path: Path) -> tuple[pd.DataFrame, bytes, list[str]]:
    """A tab- (or, failing that, comma-) separated file with a plain header row."""
    raw = read_bytes(path)
    header = raw.partition(b"\n")[0].decode("utf-8", "replace").rstrip("\r")
    sep = "\t" if "\t" in header else ","
    names = [h.strip() for h in header.split(sep)]
    return read_separated(path, raw, sep.encode(), names, header_lines=1), raw, names


def _raw_ids(path: Path, kind: str, count: int) -> np.ndarray:
    """Raw ids ordered by contiguous id from ``u_id_mapping.csv`` / ``i_id_mapping.csv``."""
    frame, raw, names = _read_header_table(path)
    id_column = ID_COLUMNS[kind]
    if id_column not in names or len(names) != 2:
        raise DataFormatError(path, f"expected two columns, a raw id and '{id_column}'; header has {names}", line=1)
    raw_column = next(n for n in names if n != id_column)
    index = _integer_column(frame, id_column, path, raw)
    if sorted(index.tolist()) != list(range(count)):
        raise DataFormatError(
            path, f"'{id_column}' must list each of 0..{count - 1} once ({len(index)} rows, max {index.max(initial=-1)})"
        )
    repeated = frame[raw_column].duplicated().to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        raise DataFormatError(path, f"raw id '{frame[raw_column].iloc[row]}' is mapped twice", line=row + 2)
    ids = np.empty(count, dtype=object)
    ids[index] = frame[raw_column].to_numpy(dtype=object)
    return ids


def read_mmrec(directory: str | Path, name: str | None = None) -> Dataset:
    """Read an MMRec dataset folder (e.g. ``data/baby``) with its given split and item features.

    Features ``image`` / ``text`` come from ``image_feat.npy`` / ``text_feat.npy`` when present.
    The item count is the features' row count (items 0..n-1), else the largest itemID + 1.
    """
    directory = Path(directory)
    name = name or infer_name(directory, ".inter", "MMRec")
    inter_path = require_file(directory / f"{name}.inter", f"MMRec interaction file {name}.inter")
    frame, raw, names = _read_header_table(inter_path)
    missing = [c for c in ("userID", "itemID", "x_label") if c not in names]
    if missing:
        raise DataFormatError(
            inter_path,
            f"missing column(s) {missing}; expected userID, itemID, x_label (rating, timestamp optional); header has {names}",
            line=1,
        )
    users = _integer_column(frame, "userID", inter_path, raw)
    items = _integer_column(frame, "itemID", inter_path, raw)
    labels = _integer_column(frame, "x_label", inter_path, raw)
    unknown = ~np.isin(labels, list(SPLIT_LABELS))
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataFormatError(inter_path, f"x_label must be 0 (train), 1 (valid) or 2 (test), got {labels[row]}", line=row + 2)
    matrices = {}
    for key, file in FEATURE_FILES.items():
        if (directory / file).is_file():
            try:
                matrix = np.load(directory / file, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:  # not a .npy, truncated, or pickled objects (refused)
                raise DataFormatError(directory / file, f"not a readable .npy matrix ({err})") from None
            if matrix.ndim != 2:
                raise DataFormatError(directory / file, f"expected a [n_items, dim] matrix, got shape {list(matrix.shape)}")
            matrices[key] = matrix
    row_counts = {m.shape[0] for m in matrices.values()}
    if len(row_counts) > 1:
        raise DataFormatError(
            directory, f"feature files disagree on the item count: { ({k: m.shape[0] for k, m in matrices.items()}) }"
        )
    n_items = row_counts.pop() if row_counts else int(items.max(initial=-1)) + 1
    if items.size and items.max() >= n_items:
        raise DataFormatError(inter_path, f"itemID {int(items.max())} has no feature row (the feature files have {n_items} rows)")
    n_users = int(users.max(initial=-1)) + 1
    user_map, item_map = directory / "u_id_mapping.csv", directory / "i_id_mapping.csv"
    user_ids = _raw_ids(user_map, "user", n_users) if user_map.is_file() else np.arange(n_users).astype(str)
    item_ids = _raw_ids(item_map, "item", n_items) if item_map.is_file() else np.arange(n_items).astype(str)
    ds = build_dataset(
        name,
        inter_path,
        user_ids[users],
        item_ids[items],
        timestamp=to_floats(frame, "timestamp", inter_path, raw, 1) if "timestamp" in names else None,
        rating=to_floats(frame, "rating", inter_path, raw, 1) if "rating" in names else None,
        split=np.vectorize(SPLIT_LABELS.get, otypes=[np.int8])(labels) if labels.size else labels.astype(np.int8),
        user_universe=user_ids,
        item_universe=item_ids,
    )
    for key, matrix in matrices.items():
        provenance = {"encoder": "unknown", "source": "mmrec", "file": FEATURE_FILES[key], "fill": "zero"}
        try:
            ds = ds.with_feature(key, ItemFeature(matrix.astype(np.float32), np.ones(n_items, bool), provenance))
        except FeatureError as err:
            raise DataFormatError(directory / FEATURE_FILES[key], str(err)) from None
    ds.meta["split"] = {"method": "given", "source": "x_label"}
    return finish(ds, "mmrec", directory, name=name)
