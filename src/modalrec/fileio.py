"""Small file helpers shared by the data layer, run directories and experiments."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars/arrays and paths as plain JSON; anything else is refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable ({value!r:.80})")


def to_jsonable(value: Any) -> Any:
    """A copy of ``value`` with numpy scalars/arrays and paths turned into plain JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray, Path)):
        return json_default(value)
    return value


def write_atomic(path: Path, write: Callable[[BinaryIO], object], before_rename: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` with what ``write(handle)`` writes, in one rename: the bytes go to a temporary
    file beside ``path``, are flushed to disk (fsync), then renamed over ``path``. A process killed at
    any point leaves either the old file or the new one, never part of one (a stray ``.<name>.*.tmp``
    at worst, which nothing reads). ``before_rename(tmp)`` sees the complete new file just before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (readers never see half a file)."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
