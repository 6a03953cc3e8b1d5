"""Helpers shared by the readers: locating files, opening (gzipped) text, stamping provenance.

Kept small on purpose: each reader owns its format; only what two or more readers need lives here.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from modalrec.data.dataset import Dataset, order_ids
from modalrec.errors import DataFormatError


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """Open a text file for reading, transparently decompressing ``.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file; otherwise a DataFormatError that lists what the folder holds."""
    if path.is_file():
        return path
    folder = path.parent
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    listing = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "") if present else "nothing"
    raise DataFormatError(path, f"{what} not found (the folder holds: {listing})")


def infer_name(directory: Path, suffix: str, what: str, strip: tuple[str, ...] = ()) -> str:
    """The single dataset name ``<name><suffix>`` in ``directory`` (or the folder's own name when several).

    ``strip`` lists inner suffixes to drop (``.train`` for ``x.train.inter``). Lets a user pass a
    folder without repeating the dataset name; refuses to guess between several.
    """
    if not directory.is_dir():
        raise DataFormatError(directory, f"not a folder; pass the folder that holds the {what} files")
    stems = set()
    for file in directory.glob(f"*{suffix}"):
        stem = file.name[: -len(suffix)]
        for inner in strip:
            stem = stem.removesuffix(inner)
        stems.add(stem)
    if len(stems) == 1:
        return stems.pop()
    if directory.name in stems:
        return directory.name
    if not stems:
        raise DataFormatError(directory, f"no '*{suffix}' file here; expected the {what} files of one dataset")
    raise DataFormatError(directory, f"several datasets here ({', '.join(sorted(stems))}); pass name= to pick one")


def ordered_universe(*id_arrays: np.ndarray | list) -> np.ndarray:
    """All distinct raw ids of the arrays, ordered as Dataset.from_raw orders ids it indexes itself."""
    distinct = [pd.unique(np.asarray(a)) for a in id_arrays]
    return order_ids(np.concatenate([np.asarray(d).astype(str) for d in distinct]) if distinct else [])


def build_dataset(
    name: str,
    path: Path,
    users: np.ndarray | list,
    items: np.ndarray | list,
    timestamp: np.ndarray | None = None,
    rating: np.ndarray | None = None,
    split: np.ndarray | None = None,
    item_universe: np.ndarray | list | None = None,
    user_universe: np.ndarray | list | None = None,
) -> Dataset:
    """:meth:`Dataset.from_raw`, with ids outside the given lists reported against the file read.

    A source without a single interaction (a header-only file) is refused here, for every reader."""
    if len(users) == 0:
        raise DataFormatError(path, "holds no interactions (only a header?); expected one interaction per row")
    try:
        ds = Dataset.from_raw(name, users, items, timestamp, rating, split, item_universe, user_universe)
    except ValueError as err:
        raise DataFormatError(path, str(err)) from None
    ds.meta["source"] = name
    return ds


def finish(ds: Dataset, fmt: str, path: Path, **details: Any) -> Dataset:
    """Record where a dataset came from (``meta['source']``) and check it is consistent."""
    ds.meta["source"] = {"format": fmt, "path": str(path), **details}
    ds.validate()
    return ds


def read_bytes(path: Path) -> bytes:
    """The whole file as bytes, decompressing ``.gz`` (fast parsers then work on memory)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def line_of_record(data: bytes, record: int, header_lines: int = 1) -> int:
    """1-based file line of the ``record``-th (0-based) non-blank data line of ``data``.

    Only called on the error path, so a plain scan is fine; it accounts for blank lines that a
    fast parser skipped.
    """
    seen = -1
    number = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if number <= header_lines or not line.strip():
            continue
        seen += 1
        if seen == record:
            return number
    return number


def first_bad_field_count(data: bytes, n_fields: int, sep: bytes, header_lines: int = 1) -> tuple[int, int] | None:
    """(line, fields) of the first non-blank data line whose field count is not ``n_fields``."""
    for number, line in enumerate(data.splitlines(), start=1):
        if number <= header_lines or not line.strip():
            continue
        count = line.count(sep) + 1
        if count != n_fields:
            return number, count
    return None


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for each non-blank line, streaming."""
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                stripped = line.rstrip("\r\n")
                if stripped.strip():
                    yield number, stripped
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not {encoding} text ({err.reason})", line=_undecodable_line(path, encoding)) from None


def _undecodable_line(path: Path, encoding: str) -> int | None:
    """1-based number of the first line that does not decode (a text reader fails a whole chunk ahead)."""
    for number, line in enumerate(read_bytes(path).splitlines(), start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError:
            return number
    return None


def read_separated(
    path: Path,
    raw: bytes,
    sep: bytes,
    names: list[str],
    numeric: frozenset[str] | set[str] = frozenset(),
    encoding: str = "utf-8",
    header_lines: int = 0,
) -> pd.DataFrame:
    """Parse single-character-separated ``raw`` bytes with pandas' C parser.

    Columns in ``numeric`` are parsed as float64 in C; when a cell is not a number the whole file
    is re-read as text so :func:`to_floats` can name the line. Rows with the wrong number of fields
    are refused with their line (the C parser would pad short rows silently).
    """
    frame = None
    typed = {n: np.float64 if n in numeric else object for n in names}
    for dtypes in (typed, object):
        try:
            frame = pd.read_csv(
                io.BytesIO(raw),
                sep=sep.decode(),
                header=None,
                skiprows=header_lines,
                names=names,
                dtype=dtypes,
                quoting=csv.QUOTE_NONE,
                keep_default_na=False,
                na_values=[],
                encoding=encoding,
                engine="c",
            )
            break
        except pd.errors.ParserError:
            break
        except UnicodeDecodeError as err:
            raise DataFormatError(path, f"not {encoding} text ({err.reason}); is the encoding right?") from err
        except ValueError:
            continue
    if frame is None or raw.count(sep) != (len(names) - 1) * (len(frame) + header_lines):
        bad = first_bad_field_count(raw, len(names), sep, header_lines)
        if bad is not None:
            line, count = bad
            shown = sep.decode().replace("\t", "tab").replace("\x1f", "'::'")
            raise DataFormatError(
                path, f"row has {count} {shown}-separated fields, expected {len(names)} ({', '.join(names)})", line=line
            )
    if frame is None:
        raise DataFormatError(path, f"could not be parsed as {len(names)} separated columns ({', '.join(names)})")
    return frame


def to_floats(
    frame: pd.DataFrame, column: str, path: Path, raw: bytes, header_lines: int, allow_missing: bool = False
) -> np.ndarray:
    """A column as float64; a cell that is not a number (or empty, unless allowed) names its line."""
    cells = frame[column]
    if cells.dtype == np.float64:
        return cells.to_numpy()
    values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ((cells != "").to_numpy() | (not allow_missing))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(
            path, f"column '{column}' needs a number, got '{cells.iloc[row]}'", line=line_of_record(raw, row, header_lines)
        )
    return values
