"""Amazon Review Data, 2018 (Ni et al.) and 2023 (Hou et al.), as JSON lines, plain or gzipped.

2018 reviews: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime`` (seconds); meta: ``asin``,
``title``, ``brand``, ``category`` (list), ``description`` (list), ``imageURL`` / ``imageURLHighRes``.
2023 reviews: ``user_id``, ``parent_asin`` (the item id: variants share it), ``rating``, ``timestamp``
(milliseconds); meta: ``parent_asin``, ``title``, ``store``, ``categories``, ``description`` (list),
``images`` (list of dicts with ``hi_res`` / ``large``). Files are streamed line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.data.dataset import Dataset
from modalrec.data.sources._common import build_dataset, finish, iter_lines, require_file
from modalrec.errors import DataFormatError


@dataclass(frozen=True)
class Layout:
    """The field names of one release, and how to turn its timestamps into epoch seconds."""

    user: str
    item: str
    rating: str
    time: str
    seconds_per_time_unit: float
    meta_item: str
    brand: str
    categories: str


LAYOUTS = {
    2018: Layout("reviewerID", "asin", "overall", "unixReviewTime", 1.0, "asin", "brand", "category"),
    2023: Layout("user_id", "parent_asin", "rating", "timestamp", 1e-3, "parent_asin", "store", "categories"),
}


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) per JSON line; a line that is not a JSON object is refused with its number."""
    for line, text in iter_lines(path):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, f"not valid JSON ({err.msg} at column {err.colno})", line=line) from err
        if not isinstance(record, dict):
            raise DataFormatError(path, f"expected a JSON object per line, got {type(record).__name__}", line=line)
        yield line, record


def _detect(path: Path, record: dict[str, Any], line: int) -> int:
    """The release whose review fields ``record`` has."""
    for version, layout in LAYOUTS.items():
        if all(k in record for k in (layout.user, layout.item, layout.rating, layout.time)):
            return version
    raise DataFormatError(
        path,
        "cannot tell the release from the fields "
        f"{sorted(record)}; 2018 reviews have reviewerID/asin/overall/unixReviewTime, "
        "2023 reviews have user_id/parent_asin/rating/timestamp (pass version= to force one)",
        line=line,
    )


def _text(value: Any) -> str | None:
    """A field that may be a string or a list of strings, as one string (None when empty)."""
    if isinstance(value, list):
        value = " ".join(str(v).strip() for v in value if str(v).strip())
    value = str(value).strip() if value is not None else ""
    return value or None


def _image_urls(record: dict[str, Any], version: int) -> list[str]:
    """The best available image URL per image (high resolution first)."""
    if version == 2018:
        return list(record.get("imageURLHighRes") or record.get("imageURL") or [])
    urls = []
    for image in record.get("images") or []:
        if isinstance(image, dict):
            url = image.get("hi_res") or image.get("large") or image.get("thumb")
            if url:
                urls.append(url)
    return urls


def _item_meta(meta_path: Path, version: int, item_ids: np.ndarray) -> dict[str, list]:
    """title, brand, categories, description, image_urls for the reviewed items (others are skipped)."""
    layout = LAYOUTS[version]
    rows = {raw: i for i, raw in enumerate(item_ids.tolist())}
    n = len(item_ids)
    meta: dict[str, list] = {
        "title": [None] * n,
        "brand": [None] * n,
        "categories": [[] for _ in range(n)],
        "description": [None] * n,
        "image_urls": [[] for _ in range(n)],
    }
    for line, record in _records(meta_path):
        raw = record.get(layout.meta_item)
        if raw is None:
            raise DataFormatError(meta_path, f"item record has no '{layout.meta_item}' (fields: {sorted(record)})", line=line)
        row = rows.get(str(raw))
        if row is None:
            continue
        meta["title"][row] = _text(record.get("title"))
        meta["brand"][row] = _text(record.get(layout.brand))
        categories = record.get(layout.categories) or []
        meta["categories"][row] = [str(c) for c in categories] if isinstance(categories, list) else [str(categories)]
        meta["description"][row] = _text(record.get("description"))
        meta["image_urls"][row] = _image_urls(record, version)
    return meta


def read_amazon(reviews: str | Path, meta: str | Path | None = None, version: int | None = None) -> Dataset:
    """Read Amazon reviews (and optionally item metadata) from the 2018 or 2023 release.

    ``version`` is detected from the first review's fields when None. Timestamps are epoch seconds
    (2023's milliseconds are converted). Items are the reviewed ones; metadata for other items is
    skipped. item_meta: ``title``, ``brand`` (2023: store), ``categories``, ``description``,
    ``image_urls`` (None / [] where unknown).
    """
    reviews = require_file(Path(reviews), "Amazon review file")
    if version is not None and version not in LAYOUTS:
        raise DataFormatError(reviews, f"unknown Amazon release {version}; known: {', '.join(map(str, LAYOUTS))}")
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    layout = None if version is None else LAYOUTS[version]
    for line, record in _records(reviews):
        if layout is None:
            version = _detect(reviews, record, line)
            layout = LAYOUTS[version]
        try:
            users.append(str(record[layout.user]))
            items.append(str(record[layout.item]))
            ratings.append(float(record[layout.rating]))
            times.append(float(record[layout.time]) * layout.seconds_per_time_unit)
        except KeyError as err:
            raise DataFormatError(
                reviews, f"review lacks field {err.args[0]!r} of the {version} release (fields: {sorted(record)})", line=line
            ) from err
        except (TypeError, ValueError) as err:
            raise DataFormatError(reviews, f"rating and time must be numbers ({err})", line=line) from err
    name = reviews.name.split(".")[0]
    ds = build_dataset(
        name,
        reviews,
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        timestamp=np.array(times),
        rating=np.array(ratings),
    )
    details: dict[str, Any] = {"version": version}
    if meta is not None:
        meta_path = require_file(Path(meta), "Amazon metadata file")
        ds = ds.replace(item_meta=_item_meta(meta_path, version or 2018, ds.item_ids))
        details["meta"] = str(meta_path)
    return finish(ds, "amazon", reviews, **details)
