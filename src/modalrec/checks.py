"""Constraints declared with a config field, e.g. ``epochs: Annotated[int, Check(ge=1)] = 100``.

Run settings (:mod:`modalrec.config`) and every model's ``Config`` declare their ranges and choices
next to the field; :func:`modalrec.config.coerce` applies them whenever a value is set (YAML,
overrides) and :func:`check_fields` re-checks a whole config object (a model built from Python), so
a bad value is refused with its key before a run directory or a model exists.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from modalrec.errors import ConfigError, nearest


@dataclass(frozen=True)
class Check:
    """Bounds and/or choices of one field. Bounded numbers must be finite (NaN and infinity fail
    every bound); ``None`` passes (optional fields say so in their type)."""

    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple[str, ...] | None = None  # one of these strings

    def __call__(self, value: Any, key: str) -> Any:
        if value is None:
            return value
        if self.choices is not None and value not in self.choices:
            guess = nearest(str(value), self.choices)
            hint = f" Did you mean '{guess}'?" if guess else ""
            raise ConfigError(f"'{key}' must be one of {', '.join(self.choices)}, got {value!r}.{hint}")
        bounds = [
            (self.ge, ">=", lambda a, b: a >= b),
            (self.gt, ">", lambda a, b: a > b),
            (self.le, "<=", lambda a, b: a <= b),
            (self.lt, "<", lambda a, b: a < b),
        ]
        wanted = [f"{sign} {bound:g}" for bound, sign, _ in bounds if bound is not None]
        if wanted and (not math.isfinite(value) or not all(ok(value, bound) for bound, _, ok in bounds if bound is not None)):
            raise ConfigError(f"'{key}' must be {' and '.join(wanted)}, got {value!r}")
        return value


Positive = Annotated[int, Check(ge=1)]
NonNegative = Annotated[int, Check(ge=0)]


def check_fields(config: Any, prefix: str = "") -> None:
    """Apply the :class:`Check` of every annotated field of a dataclass instance (nested ones too,
    and the items of list fields)."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{item.name}.")
        else:
            _check(value, hints[item.name], f"{prefix}{item.name}")


def _check(value: Any, tp: Any, key: str) -> None:
    if typing.get_origin(tp) is Annotated:
        for check in tp.__metadata__:
            if isinstance(check, Check):
                check(value, key)
        tp = typing.get_args(tp)[0]
    args = typing.get_args(tp)
    if isinstance(value, (list, tuple)) and len(args) == 1:
        for entry in value:
            _check(entry, args[0], key)
    elif value is not None and any(typing.get_origin(arg) is Annotated for arg in args):  # X | None
        _check(value, next(arg for arg in args if arg is not type(None)), key)
