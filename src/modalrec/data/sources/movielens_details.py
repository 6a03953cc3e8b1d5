"""IMDb details of ML-100K movies (``movielens100k_details.json`` of repo manfredmichael/movielens-details).

A JSON list of objects keyed by the ML-100K ``movie_id``, with ``description`` (the IMDb plot
summary), ``director``, ``writer`` and ``cast`` lists, ``age_rating`` and ``runtime``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modalrec.data.dataset import Dataset
from modalrec.data.sources._common import require_file
from modalrec.errors import DataFormatError

DETAILS_FILE = "movielens100k_details.json"
DETAIL_FIELDS = ("description", "director", "writer", "cast")


def read_details(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{movie_id: {description, director, writer, cast}}`` from the details JSON."""
    path = require_file(Path(path), f"ML-100K details file {DETAILS_FILE}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON ({exc.msg})", exc.lineno) from exc
    if not isinstance(records, list):
        raise DataFormatError(path, f"expected a JSON list of movies, got {type(records).__name__}")
    details = {}
    for position, record in enumerate(records):
        if not isinstance(record, dict) or "movie_id" not in record:
            raise DataFormatError(path, f"entry {position} has no 'movie_id'")
        details[str(record["movie_id"])] = {key: record.get(key) for key in DETAIL_FIELDS}
    return details


def add_details(ds: Dataset, details: dict[str, dict[str, Any]]) -> Dataset:
    """``ds`` with item_meta columns description, director, writer, cast (None for movies without details)."""
    ids = ds.item_ids.tolist()
    meta = dict(ds.item_meta)
    for key in DETAIL_FIELDS:
        meta[key] = [details.get(i, {}).get(key) for i in ids]
    return ds.replace(item_meta=meta)
