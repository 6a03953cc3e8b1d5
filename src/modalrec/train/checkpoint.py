"""Seeding, RNG state capture and checkpoints that refuse to load into the wrong model or data."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalrec.errors import CheckpointError


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """One seed for python, numpy and torch (CPU and CUDA); optionally deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's batches: fixed by (run seed, epoch), so a resumed epoch replays exactly."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def identity(model_name: str, model_config: dict[str, Any], dataset_hash: str, n_users: int, n_items: int) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that loads it."""
    return {
        "model": model_name,
        "model_config": model_config,
        "dataset_hash": dataset_hash,
        "n_users": n_users,
        "n_items": n_items,
    }


def load_checkpoint(path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint, refusing one from another model, config or dataset (listing what differs)."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    found = payload.get("identity", {})
    diffs = [
        f"{key}: checkpoint has {found.get(key)!r}, this run has {value!r}"
        for key, value in expected.items()
        if found.get(key) != value
    ]
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not belong to this run:\n  " + "\n  ".join(diffs))
    return payload
