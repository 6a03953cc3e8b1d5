"""Noisy multimodal inputs: corrupt the content of a share of the items (the robustness protocol).

``corrupt_features(ds, p, kind, seed)`` picks ``round(p * n)`` of the items that have content (the same
items for every modality: an item's content is corrupted, not one of its views) and, in every feature matrix,

- ``gaussian``: replaces their rows by Gaussian noise at the feature's scale, ``mean_d + std_d * eps`` with
  the per-dimension mean and standard deviation over the items that have content (the row keeps the
  matrix's marginal scale and carries nothing about its item);
- ``shuffle``: permutes their rows among themselves (each gets another corrupted item's real content; a
  derangement, so no row stays in place when 2 or more are picked).

Applied to the dataset before training, so training, validation and test all see the same corrupted
catalogue. The provenance of each feature records ``corruption: {p, kind, seed, items}``.
"""

from __future__ import annotations

import numpy as np

from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.errors import ConfigError

CORRUPTIONS = ("gaussian", "shuffle")


def corrupt_features(ds: Dataset, p: float, kind: str = "gaussian", seed: int = 0) -> Dataset:
    """A copy of ``ds`` whose items' content is corrupted for a share ``p`` of the items (see the module docstring)."""
    if kind not in CORRUPTIONS:
        raise ConfigError(f"dataset.feature_noise_kind '{kind}' is not one of {', '.join(CORRUPTIONS)}")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"dataset.feature_noise must be a share of items in [0, 1], got {p}")
    if p == 0.0:
        return ds
    if not ds.features:
        raise ConfigError(f"dataset.feature_noise={p} needs item features, and '{ds.name}' has none")
    present = np.flatnonzero(np.logical_or.reduce([f.mask for f in ds.features.values()]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(present, size=int(round(p * len(present))), replace=False))
    order = _derangement(len(chosen), rng)
    for name, feature in ds.features.items():
        values = np.array(feature.values, dtype=np.float32)
        if kind == "gaussian":
            rows = values[feature.mask]
            mean, std = rows.mean(0), rows.std(0)
            values[chosen] = mean + std * rng.standard_normal((len(chosen), values.shape[1])).astype(np.float32)
        else:
            values[chosen] = values[chosen[order]]
        provenance = {**feature.provenance, "corruption": {"p": p, "kind": kind, "seed": seed, "items": int(len(chosen))}}
        ds = ds.with_feature(name, ItemFeature(values, feature.mask.copy(), provenance))
    return ds


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) with no fixed point (identity for n < 2): a random n-cycle."""
    if n < 2:
        return np.arange(n)
    cycle = rng.permutation(n)
    order = np.empty(n, dtype=np.int64)
    order[cycle] = np.roll(cycle, -1)  # cycle[k] takes the row of cycle[k + 1]
    return order
