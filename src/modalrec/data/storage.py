"""Saving a :class:`Dataset` to a folder of ``.npy`` files and loading it back, memory-mapped.

Layout of a saved dataset (one ``.npy`` per array, so loading maps files instead of parsing text)::

    <dir>/meta.json            format version, name, content hash, which arrays exist, feature info, ds.meta
    <dir>/user.npy item.npy    int64 [n_interactions]   (timestamp, rating, split when present)
    <dir>/user_ids.npy         fixed-width unicode [n_users] (item_ids.npy likewise)
    <dir>/features/<f>.npy     float32 [n_items, dim]; <f>.mask.npy bool [n_items]
    <dir>/item_meta.json       {column: [value per item]}

The folder is written under a temporary name next to the target and renamed at the end, so a
failure mid-write never leaves a partial dataset where a later load would find it (a process killed
while the old folder is renamed aside is undone by the next load, see
:func:`modalrec.data.download.recover_directory`). ``meta.json`` records the SHA-256 of every other
file (format 2); each load checks them and names a file that changed since it was saved.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.data.download import recover_directory, replace_directory
from modalrec.errors import DataFormatError, ModalRecError
from modalrec.fileio import json_default, sha256_file

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1 had no file checksums: it loads unverified
META_FILE = "meta.json"
ITEM_META_FILE = "item_meta.json"
FEATURE_DIR = "features"
INTERACTION_ARRAYS = ("user", "item", "timestamp", "rating", "split")
ID_ARRAYS = ("user_ids", "item_ids")
_SAFE_FEATURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def save_dataset(ds: Dataset, directory: str | Path) -> Path:
    """Write ``ds`` to ``directory`` (replacing what is there) atomically; returns the folder."""
    ds.validate()
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _write(ds, staging)
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write(ds: Dataset, into: Path) -> None:
    """Write every file of the layout into the (fresh, empty) folder ``into``."""
    arrays = []
    for name in INTERACTION_ARRAYS:
        values = getattr(ds, name)
        if values is not None:
            np.save(into / f"{name}.npy", np.ascontiguousarray(values), allow_pickle=False)
            arrays.append(name)
    for name in ID_ARRAYS:
        np.save(into / f"{name}.npy", np.asarray(getattr(ds, name)).astype(str), allow_pickle=False)
    features: dict[str, Any] = {}
    if ds.features:
        (into / FEATURE_DIR).mkdir()
    for name, feature in ds.features.items():
        if not _SAFE_FEATURE_NAME.match(name):
            raise ModalRecError(f"feature name '{name}' cannot be saved as a file name; use letters, digits, '_', '-' or '.'")
        np.save(into / FEATURE_DIR / f"{name}.npy", np.ascontiguousarray(feature.values), allow_pickle=False)
        np.save(into / FEATURE_DIR / f"{name}.mask.npy", np.asarray(feature.mask, dtype=bool), allow_pickle=False)
        features[name] = {"dim": feature.dim, "provenance": feature.provenance}
    _write_json(into / ITEM_META_FILE, ds.item_meta, "item_meta")
    checksums = {path.relative_to(into).as_posix(): sha256_file(path) for path in sorted(into.rglob("*")) if path.is_file()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "sha256": checksums,
        "name": ds.name,
        "content_hash": ds.content_hash(),
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_interactions": ds.n_interactions,
        "arrays": arrays,
        "features": features,
        "meta": ds.meta,
    }
    _write_json(into / META_FILE, manifest, "meta")


def _write_json(path: Path, value: Any, what: str) -> None:
    """JSON-encode ``value`` (numpy scalars/arrays and paths allowed) or say which part cannot be."""
    try:
        text = json.dumps(value, default=json_default, ensure_ascii=False)
    except TypeError as exc:
        raise ModalRecError(f"dataset {what} cannot be saved as JSON: {exc}") from exc
    path.write_text(text, encoding="utf-8")


def load_saved_dataset(directory: str | Path, mmap: bool = True, verify: bool = False) -> Dataset:
    """Load a folder written by :func:`save_dataset`.

    With ``mmap`` the arrays are read-only memory maps (instant, shared between processes); copy
    an array before changing it in place. ``verify`` recomputes the content hash and compares it
    with the stored one (reads every array).
    """
    root = Path(directory)
    recover_directory(root)
    manifest = _read_manifest(root)
    _check_files(root, manifest)
    mode: Literal["r"] | None = "r" if mmap else None

    def array(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFormatError(path, f"cannot read saved array ({exc}); delete the folder and rebuild it") from exc

    present = set(manifest["arrays"])

    def column(name: str) -> np.ndarray | None:
        return array(root / f"{name}.npy") if name in present else None

    features = {
        name: ItemFeature(
            values=array(root / FEATURE_DIR / f"{name}.npy"),
            mask=array(root / FEATURE_DIR / f"{name}.mask.npy"),
            provenance=info.get("provenance", {}),
        )
        for name, info in manifest["features"].items()
    }
    ds = Dataset(
        name=manifest["name"],
        user_ids=array(root / "user_ids.npy"),
        item_ids=array(root / "item_ids.npy"),
        features=features,
        item_meta=json.loads((root / ITEM_META_FILE).read_text(encoding="utf-8")),
        meta=manifest["meta"],
        user=array(root / "user.npy"),
        item=array(root / "item.npy"),
        timestamp=column("timestamp"),
        rating=column("rating"),
        split=column("split"),
    )
    _check_sizes(ds, manifest, root)
    if verify and ds.content_hash() != manifest["content_hash"]:
        raise DataFormatError(root, "content hash differs from the one saved; the files were changed after saving")
    return ds


def saved_content_hash(directory: str | Path) -> str:
    """The content hash recorded when the folder was saved (no arrays are read)."""
    return _read_manifest(Path(directory))["content_hash"]


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / META_FILE
    if not path.is_file():
        raise DataFormatError(path, "not a saved ModalRec dataset (meta.json is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON: {exc.msg}", exc.lineno) from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in READABLE_VERSIONS:
        raise DataFormatError(
            path, f"saved with storage format {version}, this ModalRec reads formats {READABLE_VERSIONS}; rebuild it"
        )
    return manifest


def _check_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every file recorded at save time is there with the same SHA-256 (before any of them is parsed)."""
    for name, digest in manifest.get("sha256", {}).items():
        path = root / name
        if not path.is_file():
            raise DataFormatError(path, "is missing from the saved dataset; rebuild it")
        if sha256_file(path) != digest:
            raise DataFormatError(path, "changed after the dataset was saved (its SHA-256 differs from meta.json's); rebuild it")


def _check_sizes(ds: Dataset, manifest: dict[str, Any], root: Path) -> None:
    """Cheap consistency checks (lengths only) so a damaged folder fails here, not inside a model."""
    expected = {"n_users": ds.n_users, "n_items": ds.n_items, "n_interactions": ds.n_interactions}
    for key, got in expected.items():
        if manifest[key] != got:
            raise DataFormatError(root / META_FILE, f"{key} is {manifest[key]} but the arrays hold {got}")
    for name in INTERACTION_ARRAYS[1:]:
        values = getattr(ds, name)
        if values is not None and len(values) != ds.n_interactions:
            raise DataFormatError(root / f"{name}.npy", f"has {len(values)} rows, expected {ds.n_interactions}")
    for name, feature in ds.features.items():
        if feature.values.shape[0] != ds.n_items or feature.mask.shape != (ds.n_items,):
            raise DataFormatError(root / FEATURE_DIR / f"{name}.npy", f"rows do not match the {ds.n_items} items")
