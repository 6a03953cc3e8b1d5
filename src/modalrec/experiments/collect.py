"""Finished run directories -> records the report builders read (no model is rebuilt, no data loaded).

A path may be a run directory (it has ``results.json``), a suite output directory (it has
``suite.json``: its finished runs, labelled as the suite names them) or a directory of run directories.
A run's label in tables is its suite label, else its model name; runs of one (dataset, label) with
different seeds are the seeds of one table row.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modalrec.errors import ModalRecError


@dataclass
class RunRecord:
    """What a finished run recorded: config, results, per-epoch history, per-user metric files."""

    path: Path
    label: str
    model: str
    dataset: str
    seed: int
    config: dict[str, Any]
    results: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)  # the suite's (select, tune_metric, min_seeds); {} outside a suite
    entry: dict[str, Any] = field(default_factory=dict)  # the suite's record of this label (tuning, reference, search outcome)

    @property
    def select(self) -> str:
        return str(self.config.get("train", {}).get("select", "ndcg@10")).lower()

    @property
    def capped_improving(self) -> bool:
        """Whether training hit its epoch cap while still improving: it ran every allowed epoch without early
        stopping and its best validation was the last one (so more epochs might have helped: a lower bound).
        Closed-form fits (no loss in their history) never count."""
        cap = self.results.get("epoch_cap", self.config.get("train", {}).get("epochs"))
        trained = any("loss" in record for record in self.history)
        epochs = int(self.results.get("epochs_run", 0))
        return bool(
            trained
            and cap
            and not self.results.get("stopped_early", False)
            and epochs >= int(cap)
            and int(self.results.get("best_epoch", -1)) == epochs
        )

    @property
    def cpu_seconds(self) -> float | None:
        """CPU seconds of training (all threads); None for runs recorded before the trainer measured it."""
        value = self.results.get("train_cpu_seconds")
        return None if value is None else float(value)

    def summary(self, split: str) -> dict[str, Any]:
        if split not in self.results:
            raise ModalRecError(f"{self.path}/results.json has no '{split}' metrics (a search trial has valid only)")
        return self.results[split]

    def per_user(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(users, {metric: per-user values}) of the selected checkpoint on ``split``."""
        path = self.path / f"per_user_{split}.npz"
        if not path.exists():
            raise ModalRecError(f"{path} is missing: significance tests need the run's per-user metrics")
        with np.load(path) as data:
            return data["users"], {k: data[k] for k in data.files if k != "users"}


def _read_run(path: Path, manifest: dict[str, Any]) -> RunRecord:
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    results = json.loads((path / "results.json").read_text())
    metrics = path / "metrics.jsonl"
    history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    model = str(config.get("model", {}).get("name", results.get("model", "?")))
    entry = manifest.get("runs", {}).get(path.name, {})
    dataset = entry.get("dataset") or Path(str(config.get("dataset", {}).get("name", results.get("dataset", "?")))).name
    seed = int(entry.get("seed", config.get("train", {}).get("seed", 0)))
    label = str(entry.get("label", model))
    described: dict[str, Any] = {}
    if entry:
        described = {
            **(manifest.get("models", {}).get(label) or {}),
            "search": manifest.get("searches", {}).get(f"{dataset}__{label}"),
        }
    return RunRecord(
        path,
        label,
        model,
        str(dataset),
        seed,
        config,
        results,
        history,
        protocol=dict(manifest.get("protocol") or {}),
        entry=described,
    )


def _suite_manifest(run_path: Path) -> dict[str, Any]:
    """The ``suite.json`` of the suite a run belongs to ({} for a run outside a suite)."""
    manifest = run_path.parent.parent / "suite.json"
    return json.loads(manifest.read_text()) if manifest.exists() else {}


def expand(paths: list[Path]) -> list[Path]:
    """Run directories named by ``paths`` (runs, suite outputs, or folders of runs), in order, once each."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / "results.json").exists():
            found.append(path)
        elif (path / "suite.json").exists():
            names = json.loads((path / "suite.json").read_text()).get("runs", {})
            found.extend(path / "runs" / n for n in names if (path / "runs" / n / "results.json").exists())
        elif path.is_dir() and any((child / "results.json").exists() for child in path.iterdir()):
            found.extend(sorted(child for child in path.iterdir() if (child / "results.json").exists()))
        else:
            raise ModalRecError(
                f"{path} is not a finished run (no results.json), a suite output (suite.json) or a folder of runs"
            )
    seen: dict[Path, Path] = {}
    for p in found:
        seen.setdefault(p.resolve(), p)  # once each, as first named
    unique = list(seen.values())
    if not unique:
        raise ModalRecError(f"no finished runs under {', '.join(map(str, paths))}")
    return unique


def load_runs(paths: list[Path]) -> list[RunRecord]:
    """Records of every finished run under ``paths``; two runs that would share a (dataset, label, seed)
    cell are labelled by their directory names instead, so no result silently replaces another."""
    records = [_read_run(p, _suite_manifest(p)) for p in expand(paths)]
    cells = Counter((r.dataset, r.label, r.seed) for r in records)
    for r in records:
        if cells[(r.dataset, r.label, r.seed)] > 1:
            r.label = r.path.name
    return records


def by_dataset(records: list[RunRecord]) -> dict[str, dict[str, list[RunRecord]]]:
    """{dataset: {label: [runs over seeds]}} in first-seen order."""
    grouped: dict[str, dict[str, list[RunRecord]]] = {}
    for r in records:
        grouped.setdefault(r.dataset, {}).setdefault(r.label, []).append(r)
    return grouped
