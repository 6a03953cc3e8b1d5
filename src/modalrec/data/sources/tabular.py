"""Any interaction table: CSV / TSV (optionally gzipped) or Parquet, with a column mapping.

For a user's own catalogue export: name the user, item, timestamp and rating columns, or let the
reader find the common names. Date strings in the time column become epoch seconds.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modalrec.data.dataset import Dataset
from modalrec.data.sources._common import build_dataset, finish, open_text, require_file
from modalrec.errors import ConfigError, DataFormatError

DEFAULT_COLUMNS = {
    "user": ("user_id", "userId", "userID", "user", "reviewerID", "customer_id"),
    "item": ("item_id", "itemId", "itemID", "movieId", "movie_id", "item", "asin", "product_id"),
    "timestamp": ("timestamp", "time", "ts", "unixReviewTime", "date", "datetime"),
    "rating": ("rating", "score", "overall", "stars"),
}
REQUIRED = ("user", "item")
SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _suffix(path: Path) -> str:
    """The format suffix, ignoring a trailing ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _sniff(path: Path) -> str:
    """The separator of a text table with an unfamiliar suffix, from its first lines."""
    try:
        with open_text(path) as handle:
            sample = "".join(handle.readline() for _ in range(5))
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not UTF-8 text ({err.reason})") from err
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error as err:
        raise DataFormatError(path, "cannot tell the column separator; pass sep=") from err


def _is_empty(path: Path) -> bool:
    """True for a file without a single byte of content (a ``.gz`` is looked into)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
        return handle.read(1) == b""


def _load(path: Path, sep: str | None) -> pd.DataFrame:
    try:
        return _parse(path, sep)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # a truncated or corrupt .gz, wherever it is read
        raise DataFormatError(path, f"not a readable gzip file ({err})") from err


def _parse(path: Path, sep: str | None) -> pd.DataFrame:
    if path.stat().st_size == 0 or (path.suffix == ".gz" and _is_empty(path)):
        raise DataFormatError(path, "is empty; expected a header row naming the columns, then one interaction per row")
    if _suffix(path) == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several unrelated types for a bad file
            raise DataFormatError(path, f"not a readable Parquet file ({err})") from err
    sep = sep or SEPARATORS.get(_suffix(path)) or _sniff(path)
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[], engine="c")
    except pd.errors.EmptyDataError as err:
        raise DataFormatError(
            path, "has no header row; expected a header naming the columns, then one interaction per row"
        ) from err
    except pd.errors.ParserError as err:
        raise DataFormatError(path, f"not a '{sep}'-separated table: {err}") from err
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not UTF-8 text ({err.reason})") from err


def _resolve_columns(path: Path, available: list[str], columns: dict[str, str] | None) -> dict[str, str]:
    """{role: column} from the user's mapping, falling back to the common names per role."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ConfigError(f"unknown column role(s) {unknown}; valid roles: {', '.join(DEFAULT_COLUMNS)}")
    resolved = {}
    for role, candidates in DEFAULT_COLUMNS.items():
        if role in columns:
            if columns[role] not in available:
                raise DataFormatError(
                    path, f"column '{columns[role]}' (for {role}) is not in the file; columns are: {', '.join(available)}"
                )
            resolved[role] = columns[role]
            continue
        found = next((c for c in candidates if c in available), None)
        if found is None and role in REQUIRED:
            raise DataFormatError(
                path,
                f"no {role} column found (tried {', '.join(candidates)}); columns are: {', '.join(available)}; "
                f"name it: dataset.columns.{role}=<column> (data import: --{role} <column>; Python: columns={{'{role}': ...}})",
            )
        if found is not None:
            resolved[role] = found
    return resolved


def _numbers(path: Path, frame: pd.DataFrame, column: str, header_lines: int) -> np.ndarray:
    """A numeric column; a cell that is not a number names its line (header = line 1)."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(
            path, f"column '{column}' needs a number, got {frame[column].iloc[row]!r}", line=row + 1 + header_lines
        )
    return values


def _timestamps(path: Path, frame: pd.DataFrame, column: str, header_lines: int) -> np.ndarray:
    """Epoch seconds from numbers, datetimes or date strings (ISO 8601 and the like; naive = UTC)."""
    cells = frame[column]
    if pd.api.types.is_datetime64_any_dtype(cells):
        parsed = pd.to_datetime(cells, utc=True)
    else:
        numeric = pd.to_numeric(cells, errors="coerce")
        if not numeric.isna().any():
            return numeric.to_numpy(dtype=np.float64)
        parsed = pd.to_datetime(cells, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(
            path, f"column '{column}' holds {cells.iloc[row]!r}, neither a number nor a date", line=row + 1 + header_lines
        )
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def read_table(
    path: str | Path, columns: dict[str, str] | None = None, sep: str | None = None, name: str | None = None
) -> Dataset:
    """Read interactions from a CSV/TSV (``.gz`` too) or Parquet file.

    ``columns`` maps roles ``user``, ``item``, ``timestamp``, ``rating`` to column names; roles left
    out are looked up among common names (user_id/userId/user, item_id/itemId/movieId/item,
    timestamp/time/ts, rating/score). ``sep`` overrides the separator implied by the suffix.
    """
    path = require_file(Path(path), "interaction table")
    frame = _load(path, sep)
    roles = _resolve_columns(path, [str(c) for c in frame.columns], columns)
    header_lines = 0 if _suffix(path) == ".parquet" else 1
    ids = {}
    for role in REQUIRED:
        cells = frame[roles[role]].astype(str).to_numpy(dtype=object)
        empty = (cells == "") | frame[roles[role]].isna().to_numpy()
        if empty.any():
            row = int(np.argmax(empty))
            raise DataFormatError(path, f"{role} column '{roles[role]}' is empty", line=row + 1 + header_lines)
        ids[role] = cells
    ds = build_dataset(
        name or path.name.split(".")[0],
        path,
        ids["user"],
        ids["item"],
        timestamp=_timestamps(path, frame, roles["timestamp"], header_lines) if "timestamp" in roles else None,
        rating=_numbers(path, frame, roles["rating"], header_lines) if "rating" in roles else None,
    )
    return finish(ds, "table", path, columns=roles)


def read_item_table(
    ds: Dataset, path: str | Path, item: str | None = None, title: str | None = None, sep: str | None = None
) -> Dataset:
    """``ds`` with item metadata from a table of one row per item (CSV / TSV / Parquet).

    ``item`` names the id column (default: the one the interactions used, else the common names);
    ``title`` names the column shown as the title (default: a ``title`` column). Every other column
    becomes metadata under its own name. Items of ``ds`` missing from the table get None; rows for
    items without interactions are left out.
    """
    path = require_file(Path(path), "item table")
    frame = _load(path, sep)
    available = [str(c) for c in frame.columns]
    recorded = ds.meta.get("source")
    source: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    candidates = [item] if item else [source.get("columns", {}).get("item"), *DEFAULT_COLUMNS["item"]]
    id_column = next((c for c in candidates if c in available), None)
    if id_column is None:
        wanted = f"column '{item}'" if item else f"item column (tried {', '.join(c for c in candidates if c)})"
        raise DataFormatError(path, f"has no {wanted}; columns are: {', '.join(available)}")
    if len(frame) == 0:
        raise DataFormatError(path, "holds no items (only a header?); expected one item per row")
    if title is not None and title not in available:
        raise DataFormatError(path, f"column '{title}' (for title) is not in the file; columns are: {', '.join(available)}")
    ids = frame[id_column].astype(str)
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        raise DataFormatError(
            path, f"item '{ids.iloc[row]}' is listed twice", line=row + 2 if _suffix(path) != ".parquet" else None
        )
    position = {value: row for row, value in enumerate(ids.tolist())}
    rows = [position.get(raw) for raw in ds.item_ids.tolist()]
    item_meta = dict(ds.item_meta)
    for column in available:
        if column == id_column:
            continue
        cells = frame[column].tolist()
        key = "title" if column == (title or "title") else column
        item_meta[key] = [None if r is None or cells[r] == "" else cells[r] for r in rows]
    out = ds.replace(item_meta=item_meta)
    out.meta["source"] = {**source, "items": str(path), "items_listed": int(sum(r is not None for r in rows))}
    return out
