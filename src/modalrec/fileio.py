"""Small file helpers shared by the data layer, run directories and experiments."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
