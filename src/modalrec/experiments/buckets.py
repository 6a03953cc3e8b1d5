"""Metrics by bucket of user history length: does a model's margin grow with the length of the history?

``bucket_table(groups, split, metric, edges)`` reads each run's per-user metric file
(``per_user_<split>.npz``) and the length of every user's history before that split (train items for
``valid``; train + valid items for ``test``, rebuilt from the run's saved config), cuts the users at
``edges`` (e.g. ``[20, 50, 200]``: <20, 20-49, 50-199, >=200) and averages the metric per bucket and
model (seeds averaged). ``modalrec report --buckets 20,50,200`` writes it to ``buckets.md``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import TRAIN, VALID
from modalrec.errors import ModalRecError
from modalrec.experiments.collect import RunRecord
from modalrec.models.base import get_model_class
from modalrec.train.experiment import prepare_data


def bucket_labels(edges: list[int]) -> list[str]:
    """'<20', '20-49', ..., '>=200' for edges [20, 50, 200]."""
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 1:
        raise ModalRecError(f"--buckets must be increasing positive history lengths, e.g. 20,50,200; got {edges}")
    inner = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def history_lengths(run: RunRecord, split: str, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per user index, the number of items known before ``split`` (the run's data, rebuilt from its config)."""
    key = json.dumps(run.config.get("dataset", {}), sort_keys=True, default=str) + split
    if cache is not None and key in cache:
        return cache[key]
    cfg = resolve(config_file=run.path / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds, _ = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    parts = [TRAIN] if split == "valid" else [TRAIN, VALID]
    lengths = sum(np.diff(ctx.histories[p].indptr) for p in parts)
    if cache is not None:
        cache[key] = lengths
    return lengths


def bucket_table(
    groups: dict[str, list[RunRecord]], split: str, metric: str, edges: list[int]
) -> dict[str, list[tuple[float, int]]]:
    """Per model label, per bucket: (the metric averaged over the bucket's users and the seeds, users)."""
    labels = bucket_labels(edges)
    cache: dict[str, np.ndarray] = {}
    out: dict[str, list[tuple[float, int]]] = {}
    for label, runs in groups.items():
        per_seed = []
        for run in runs:
            users, values = run.per_user(split)
            if metric not in values:
                raise ModalRecError(f"{run.path} has no per-user '{metric}'; choose one of {', '.join(sorted(values))}")
            bucket = np.digitize(history_lengths(run, split, cache)[users], edges)  # 0 .. len(edges)
            per_seed.append(
                [
                    (values[metric][bucket == b].mean() if (bucket == b).any() else np.nan, int((bucket == b).sum()))
                    for b in range(len(labels))
                ]
            )
        out[label] = [(float(np.nanmean([s[b][0] for s in per_seed])), per_seed[0][b][1]) for b in range(len(labels))]
    return out


def to_markdown(dataset: str, table: dict[str, list[tuple[float, int]]], split: str, metric: str, edges: list[int]) -> str:
    labels = bucket_labels(edges)
    counts = next(iter(table.values()))
    head = " | ".join(f"{name} ({n:,} users)" for name, (_, n) in zip(labels, counts))
    lines = [f"### {dataset}: {split} {metric} by history length", "", f"| model | {head} |", "|---|" + "---:|" * len(labels)]
    for label, row in table.items():
        best = [
            max(r[b][0] for r in table.values() if not np.isnan(r[b][0]))
            if any(not np.isnan(r[b][0]) for r in table.values())
            else None
            for b in range(len(labels))
        ]
        cells = [("-" if np.isnan(v) else f"**{v:.4f}**" if v == best[b] else f"{v:.4f}") for b, (v, _) in enumerate(row)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
