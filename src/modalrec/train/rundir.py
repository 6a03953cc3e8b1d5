"""The run directory: everything needed to inspect, resume, evaluate or serve a run.

::

    runs/<name>/
      config.yaml          resolved config (re-run with: modalrec train --config runs/<name>/config.yaml)
      dataset.json         dataset statistics, preprocessing steps, split and content hash
      metrics.jsonl        one JSON line per epoch (losses, time, validation metrics)
      checkpoints/best.pt  the checkpoint selected on validation
      checkpoints/last.pt  the latest epoch (model, optimiser, scheduler, RNG states, early-stopping state)
      results.json         validation + test metrics of the selected checkpoint
      per_user_<split>.npz per-user metrics of the selected checkpoint (for significance tests)
      train.log            the log
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.fileio import to_jsonable, write_text_atomic


@dataclass
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def best(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def per_user(self, split: str) -> Path:
        return self.path / f"per_user_{split}.npz"

    def create(self) -> RunDir:
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return self

    def write_json(self, path: Path, payload: dict[str, Any]) -> None:
        write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2) + "\n")

    def read_json(self, path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the training history (so a resumed run has no stray lines)."""
        write_text_atomic(self.metrics, "".join(json.dumps(to_jsonable(r)) + "\n" for r in history))

    def save_per_user(self, split: str, users: np.ndarray, per_user: dict[str, np.ndarray]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".npz")
        os.close(fd)
        np.savez(tmp, users=users, **per_user)
        os.replace(tmp, self.per_user(split))

    def attach_log(self, logger: logging.Logger) -> logging.Handler:
        handler = logging.FileHandler(self.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        return handler
