"""Constraints declared with a config, checked by the config layer, never by hand where a value is used.

- a range, next to the field: ``epochs: Annotated[int, Check(ge=1)] = 100`` (or ``Positive``);
- choices, as the field's type: ``optimizer: Literal["adam", "sgd"] = "adam"``;
- a rule between fields, in the config's ``rules`` (a tuple of :class:`Rule`), e.g. dim a multiple of heads.

Run settings (:mod:`modalrec.config`) and every model's ``Config`` declare theirs; :func:`modalrec.config.coerce`
applies ranges and choices whenever a value is set (YAML, overrides) and :func:`check_fields` re-checks a whole
config object, rules included (at ``resolve`` and when a model is built from Python), so a bad value is refused
with its key and the valid range or choices before a run directory or a model exists.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from modalrec.errors import ConfigError, nearest


@dataclass(frozen=True)
class Check:
    """Bounds and/or choices of one field. Bounded numbers must be finite (NaN and infinity fail
    every bound); ``None`` passes (optional fields say so in their type)."""

    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple[Any, ...] | None = None  # one of these (a Literal[...] field's type says them)

    def __call__(self, value: Any, key: str) -> Any:
        if value is None:
            return value
        if self.choices is not None and value not in self.choices:
            guess = nearest(str(value), self.choices)
            hint = f" Did you mean '{guess}'?" if guess else ""
            raise ConfigError(f"'{key}' must be one of {', '.join(map(str, self.choices))}, got {value!r}.{hint}")
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
Share = Annotated[float, Check(ge=0, lt=1)]  # a dropout rate, a pruned share: [0, 1)
Unit = Annotated[float, Check(ge=0, le=1)]  # a weight or a probability: [0, 1]


def choices(tp: Any) -> tuple[Any, ...]:
    """The values a ``Literal[...]`` type (or ``Literal[...] | None``) allows, nested literals flattened."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return tuple(value for arg in typing.get_args(tp) if arg is not type(None) for value in choices(arg))


@dataclass(frozen=True)
class Rule:
    """A constraint between fields of one config, declared in its ``rules``: ``holds(config)`` must be true,
    else the run is refused naming ``keys`` and ``message`` (formatted with the config's fields)."""

    keys: tuple[str, ...]
    holds: Callable[[Any], bool]
    message: str

    def __call__(self, config: Any, prefix: str) -> None:
        if not self.holds(config):
            names = ", ".join(f"'{prefix}{key}'" for key in self.keys)
            raise ConfigError(f"{names}: {self.message.format(**vars(config))}")


def multiple_of(key: str, divisor: str) -> Rule:
    """The rule that ``key`` is a multiple of ``divisor`` (a width split into heads or factors)."""
    return Rule(
        (key, divisor),
        lambda config: getattr(config, key) % getattr(config, divisor) == 0,
        f"{key} ({{{key}}}) must be a multiple of {divisor} ({{{divisor}}})",
    )


def check_fields(config: Any, prefix: str = "") -> None:
    """Apply the :class:`Check` and ``Literal`` choices of every field of a dataclass instance (nested ones
    too, and the items of list fields), then the config's :class:`Rule` s."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{item.name}.")
        else:
            _check(value, hints[item.name], f"{prefix}{item.name}")
    for rule in getattr(type(config), "rules", ()):
        rule(config, prefix)


def _check(value: Any, tp: Any, key: str) -> None:
    if typing.get_origin(tp) is Literal:
        Check(choices=typing.get_args(tp))(value, key)
        return
    if typing.get_origin(tp) is Annotated:
        for check in tp.__metadata__:
            if isinstance(check, Check):
                check(value, key)
        tp = typing.get_args(tp)[0]
    args = typing.get_args(tp)
    if isinstance(value, (list, tuple)) and len(args) == 1:
        for entry in value:
            _check(entry, args[0], key)
    elif value is not None and any(typing.get_origin(arg) in (Annotated, Literal) for arg in args):  # X | None
        _check(value, next(arg for arg in args if arg is not type(None)), key)
