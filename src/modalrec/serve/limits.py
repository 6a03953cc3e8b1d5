"""Bounds on one request (no torch import: the CLI reads the defaults for its options)."""

from __future__ import annotations

from dataclasses import dataclass

from modalrec.errors import ConfigError


@dataclass
class ServeLimits:
    """Bounds on one request, so no caller can make the worker run out of memory or time.

    A request over a bound gets 413 with the bound named (``max_body_bytes`` is enforced on the
    raw body before it is parsed)."""

    max_body_bytes: int = 1 << 20  # bytes of a request body
    max_batch_users: int = 1000  # users in one POST /recommend/batch
    max_session_items: int = 1000  # items in one posted session
    max_filter_items: int = 100_000  # items in an allow or deny list

    def __post_init__(self) -> None:
        for key, value in vars(self).items():
            if int(value) < 1:
                raise ConfigError(f"serve limit {key} must be >= 1, got {value}")
