"""Errors a person can act on.

Every error raised for a user mistake derives from :class:`ModalRecError`; the CLI prints its
message (no traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ModalRecError(Exception):
    """Base class of the errors caused by user input (files, names, configs)."""


class DataFormatError(ModalRecError):
    """A file is malformed: names the file and, when known, the 1-based line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class UnknownNameError(ModalRecError, KeyError):
    """An unknown dataset, model, metric, ... : lists the known names and the closest one."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class FeatureError(ModalRecError):
    """Item features that cannot be used (NaN/inf, wrong row count, wrong dtype)."""


class ConfigError(ModalRecError):
    """A config key or value that is wrong: names the key and what was expected."""


class CheckpointError(ModalRecError):
    """A checkpoint that does not belong to this model / dataset / config, or cannot be read safely."""


class IntegrityError(ModalRecError):
    """A file whose SHA-256 differs from the one recorded when it was written (truncated, edited, replaced)."""


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The closest known name to ``name`` (for 'did you mean' hints), or None."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else None
