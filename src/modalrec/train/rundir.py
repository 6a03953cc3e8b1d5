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
      status.json          running | finished | failed (with the error) | interrupted | pruned (by a search)
      checksums.json       SHA-256 of config.yaml, dataset.json and the checkpoints, recorded as they are
                           written and verified before any of them is read again (see docs/security.md)

Nothing is written before the config, the data and the model are validated; a run that fails after
that says so in status.json, so it never looks like a finished run (``compare`` refuses it).

Every file is written to a temporary name and renamed into place. A file with a recorded checksum is
replaced in three steps, so a process killed at any point leaves a file that matches its record:
record both the old and the new SHA-256, rename the new file in, record only the new one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modalrec.errors import IntegrityError
from modalrec.fileio import sha256_file, to_jsonable, write_atomic, write_text_atomic
from modalrec.train.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from modalrec.config import RunConfig

RUNNING, FINISHED, FAILED, INTERRUPTED, PRUNED = "running", "finished", "failed", "interrupted", "pruned"


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

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    def mark(self, status: str, error: BaseException | None = None) -> None:
        """Record the run's state (and the error that ended it) in status.json."""
        payload: dict[str, Any] = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if error is not None:
            payload["error"] = f"{type(error).__name__}: {error}"
        self.write_json(self.status_file, payload)

    def status(self) -> dict[str, Any]:
        """status.json's content; a run from before status files is finished when it has results.json."""
        if self.status_file.exists():
            return self.read_json(self.status_file)
        return {"status": FINISHED if self.results.exists() else "unknown"}

    def setup(self, split: str) -> dict[str, str]:
        """What must match for two runs' ``split`` metrics to be comparable: the dataset (name and
        content hash), the split method and the evaluation protocol (full or sampled ranking)."""
        import yaml

        config = yaml.safe_load(self.config.read_text()) if self.config.exists() else {}
        dataset = config.get("dataset") or {}
        data = self.read_json(self.dataset) if self.dataset.exists() else {}
        evaluated = (self.read_json(self.results) if self.results.exists() else {}).get(f"{split}_eval") or {}
        protocol = evaluated.get("protocol", "full")
        if evaluated.get("sampled"):
            protocol += f" ({evaluated['sampled']}, {evaluated.get('n_negatives')} negatives)"
        return {
            "dataset": str(dataset.get("name")),
            "data hash": str(data.get("content_hash", "?"))[:12],
            "split": str((dataset.get("split") or {}).get("method")),
            "protocol": protocol,
        }

    @property
    def checksums(self) -> Path:
        return self.path / "checksums.json"

    def per_user(self, split: str) -> Path:
        return self.path / f"per_user_{split}.npz"

    def create(self) -> RunDir:
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return self

    def write_json(self, path: Path, payload: dict[str, Any]) -> None:
        write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2) + "\n")

    # ------------------------------------------------------------------ recorded files (checksums.json)
    def _recorded(self) -> dict[str, list[str]] | None:
        if not self.checksums.exists():
            return None
        try:
            recorded = json.loads(self.checksums.read_text(encoding="utf-8"))["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{self.checksums} is damaged ({exc}); the run's files cannot be verified") from None
        return {str(k): list(v) for k, v in recorded.items()}

    def _record(self, name: str, digests: list[str]) -> None:
        recorded = self._recorded() or {}
        recorded[name] = digests
        write_text_atomic(self.checksums, json.dumps({"sha256": recorded}, indent=2, sort_keys=True) + "\n")

    def write_recorded(self, path: Path, write: Any) -> None:
        """Write ``path`` (``write(handle)`` gives the bytes) atomically and record its SHA-256."""
        name = path.relative_to(self.path).as_posix()
        digest: list[str] = []

        def record_both(tmp: Path) -> None:  # the old file and the new one are both valid while renaming
            digest.append(sha256_file(tmp))
            previous = (self._recorded() or {}).get(name, [])[-1:] if path.exists() else []
            self._record(name, previous + digest)

        write_atomic(path, write, before_rename=record_both)
        self._record(name, digest)

    def write_recorded_text(self, path: Path, text: str) -> None:
        self.write_recorded(path, lambda handle: handle.write(text.encode("utf-8")))

    def verify(self, *paths: Path) -> None:
        """Refuse any of ``paths`` whose SHA-256 is not the one recorded when it was written (checked before
        torch or YAML parses it). Runs written before checksums existed are not verified (a warning)."""
        recorded = self._recorded()
        if recorded is None:
            log.warning(
                "%s has no %s (written by an earlier ModalRec): its files are not verified", self.path, self.checksums.name
            )
            return
        for path in paths:
            name = path.relative_to(self.path).as_posix()
            if name not in recorded:
                log.warning("%s has no recorded checksum (written by an earlier ModalRec); it is not verified", path)
                continue
            if not path.exists():
                continue  # the caller says what is missing
            found = sha256_file(path)
            if found not in recorded[name]:
                raise IntegrityError(
                    f"{path} changed after it was written: its SHA-256 is {found[:16]}..., {self.checksums.name} "
                    f"recorded {recorded[name][-1][:16]}... ({path.stat().st_size} bytes now: truncated, edited or "
                    "replaced); restore the file or re-train the run"
                )

    def save_checkpoint(self, path: Path, payload: dict[str, Any]) -> None:
        """A checkpoint of this run (see train/checkpoint.py), written atomically with its checksum recorded."""
        self.write_recorded(path, lambda handle: save_checkpoint(handle, payload))

    def load_checkpoint(self, path: Path, expected: dict[str, Any]) -> dict[str, Any]:
        """Verify the checkpoint's checksum, then load it (weights only) and check it belongs to this run."""
        self.verify(path)
        return load_checkpoint(path, expected)

    def read_json(self, path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the training history (so a resumed run has no stray lines)."""
        write_text_atomic(self.metrics, "".join(json.dumps(to_jsonable(r)) + "\n" for r in history))

    def save_per_user(self, split: str, users: np.ndarray, per_user: dict[str, np.ndarray]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".npz")
        os.close(fd)
        arrays: dict[str, Any] = {"users": users, **per_user}
        np.savez(tmp, **arrays)
        os.replace(tmp, self.per_user(split))

    def attach_log(self, logger: logging.Logger) -> logging.Handler:
        """Append ``logger``'s INFO-and-up records to train.log: the lines the terminal shows (epoch lines
        included, also under ``--quiet``, which filters only the terminal). A logger left at NOTSET is set
        to INFO, or the file would get warnings only."""
        handler = logging.FileHandler(self.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return handler


def default_run_name(cfg: RunConfig) -> str:
    """``<model>-<dataset>-<date>-<time>``: the run folder's name when ``run.name`` is empty."""
    dataset = Path(cfg.dataset.name).name
    return f"{cfg.model_name}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
