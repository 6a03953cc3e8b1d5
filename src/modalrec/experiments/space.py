"""The search-space DSL: what a model declares next to its defaults, checked and turned into Optuna draws.

A space maps a full config key to a distribution::

    {"train.lr": ("log", 1e-4, 1e-2),        # log-uniform float in [lo, hi]
     "model.reg": ("float", 0.0, 0.5),       # uniform float in [lo, hi]
     "model.layers": ("int", 1, 4),          # uniform integer in [lo, hi]
     "model.dim": ("choice", [32, 64, 128])} # one of the values (scalars)

Keys are the same ``section.key`` strings as command-line overrides, so a drawn point is a list of
overrides and every key is validated by :func:`modalrec.config.resolve` like any other.
"""

from __future__ import annotations

from typing import Any

from modalrec.errors import ConfigError

KINDS = ("log", "float", "int", "choice")
Space = dict[str, tuple]


def check_space(space: dict[str, Any], where: str) -> Space:
    """Validate a space (from a model class or a suite file); lists from YAML become tuples."""
    if not isinstance(space, dict):
        raise ConfigError(f"{where}: a search space is a mapping of config key -> [kind, ...], got {space!r}")
    out: Space = {}
    for key, spec in space.items():
        spec = tuple(spec) if isinstance(spec, (list, tuple)) else (spec,)
        kind = spec[0] if spec else None
        if "." not in str(key):
            raise ConfigError(f"{where}: search key '{key}' must be a full config key such as train.lr or model.dim")
        if kind not in KINDS:
            raise ConfigError(f"{where}: '{key}' has kind {kind!r}; use one of {', '.join(KINDS)}")
        if kind == "choice":
            if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
                raise ConfigError(f"{where}: '{key}' is ('choice', [values]), got {spec!r}")
            if not all(isinstance(v, (str, int, float, bool)) or v is None for v in spec[1]):
                raise ConfigError(f"{where}: '{key}' choices must be scalars (Optuna stores them), got {spec[1]!r}")
            out[key] = ("choice", list(spec[1]))
            continue
        if len(spec) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec[1:]):
            raise ConfigError(f"{where}: '{key}' is ({kind!r}, low, high) with numbers, got {spec!r}")
        low, high = spec[1], spec[2]
        if low > high or (kind == "log" and low <= 0) or (kind == "int" and (int(low) != low or int(high) != high)):
            raise ConfigError(
                f"{where}: '{key}' has an invalid range {spec!r} (low <= high; log needs low > 0; int needs integers)"
            )
        out[key] = (kind, int(low), int(high)) if kind == "int" else (kind, float(low), float(high))
    return out


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Draw one point of ``space`` with an Optuna trial: {config key: value}."""
    point: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "log":
            point[key] = trial.suggest_float(key, spec[1], spec[2], log=True)
        elif kind == "float":
            point[key] = trial.suggest_float(key, spec[1], spec[2])
        elif kind == "int":
            point[key] = trial.suggest_int(key, spec[1], spec[2])
        else:
            point[key] = trial.suggest_categorical(key, spec[1])
    return point


def as_overrides(point: dict[str, Any]) -> list[str]:
    """{key: value} -> ["key=value", ...] (command-line override strings)."""
    return [f"{key}={'none' if value is None else value}" for key, value in point.items()]
