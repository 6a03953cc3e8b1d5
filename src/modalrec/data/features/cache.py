"""The feature cache: encoded matrices keyed by a hash of (encoder identity, every input).

An entry is a folder ``<root>/<key>/`` with ``values.npy`` (float32 ``[n, dim]``, zero rows where
nothing was encoded), ``encoded.npy`` (bool ``[n]``) and ``entry.json`` (the key, the encoder
identity, the skipped inputs, and the sha256 of both arrays). Entries are written to a temporary
folder and renamed, so an interrupted run leaves nothing a later run would read; an entry whose
recorded key or array hashes do not match is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.data.download import cache_dir, recover_directory, replace_directory

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
CACHE_FORMAT = 1


def cache_key(identity: dict[str, Any], input_digests: list[str | None]) -> str:
    """sha256 over the encoder identity and the per-item input digests (None = item without input)."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **identity}, sort_keys=True).encode())
    for item in input_digests:
        digest.update(b"\x00" if item is None else item.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass
class Encoded:
    """An encoded matrix: ``values[i]`` is valid where ``encoded[i]``; ``skipped`` lists unreadable inputs."""

    values: np.ndarray
    encoded: np.ndarray
    identity: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"item", "input", "reason"}
    seconds: float = 0.0  # encoding time when it was computed
    cache_hit: bool = False


class FeatureCache:
    """Encoded matrices on disk under ``root`` (default ``<modalrec cache>/features``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "features"

    def load(self, key: str) -> Encoded | None:
        """The entry for ``key``, or None when absent; a damaged or mismatched entry is removed."""
        folder = self.root / key
        recover_directory(folder)  # the previous entry, when a save was killed while swapping folders
        if not folder.is_dir():
            return None
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            values = np.load(folder / "values.npy", allow_pickle=False)
            encoded = np.load(folder / "encoded.npy", allow_pickle=False)
            problem = None
            if entry.get("key") != key:
                problem = "its recorded key differs"
            elif _array_digest(values) != entry["values_sha256"] or _array_digest(encoded) != entry["encoded_sha256"]:
                problem = "its arrays do not match their recorded hashes"
        except (OSError, ValueError, KeyError) as exc:
            problem = f"it cannot be read ({exc})"
        if problem is not None:
            log.warning("feature cache entry %s is unusable (%s); rebuilding it", folder, problem)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return Encoded(values, encoded, entry["identity"], entry["skipped"], entry["seconds"], cache_hit=True)

    def save(self, key: str, result: Encoded) -> Path:
        """Write an entry atomically (temporary folder, then rename) and return its folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=self.root))
        try:
            np.save(staging / "values.npy", np.ascontiguousarray(result.values, dtype=np.float32), allow_pickle=False)
            np.save(staging / "encoded.npy", np.asarray(result.encoded, dtype=bool), allow_pickle=False)
            entry = {
                "key": key,
                "identity": result.identity,
                "skipped": result.skipped,
                "seconds": result.seconds,
                "values_sha256": _array_digest(result.values.astype(np.float32)),
                "encoded_sha256": _array_digest(result.encoded.astype(bool)),
            }
            (staging / ENTRY_FILE).write_text(json.dumps(entry, indent=1), encoding="utf-8")
            replace_directory(staging, self.root / key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.root / key
