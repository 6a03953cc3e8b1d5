"""Seeding, RNG state capture and checkpoints that can run no code and refuse the wrong model or data.

A checkpoint is ``torch.save`` of plain data only: tensors, numbers, strings, lists, tuples and
dicts (``FORMAT`` 2). It is always read with ``torch.load(weights_only=True)``, whose unpickler
builds nothing else, so a file crafted to run code when unpickled is refused instead. The RNG
states and the training state are therefore stored as tensors and dicts, not as the numpy arrays
and dataclasses Python would pickle. Checkpoints of format 1 (ModalRec before pickle-free
checkpoints) held a ``TrainState`` dataclass and numpy RNG arrays: they are read with the same
restricted unpickler, allowing exactly those few classes (:data:`LEGACY_GLOBALS`), never a full
pickle load.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os

# bandit B403 (pickle imported): only for its UnpicklingError type; nothing is unpickled with it
import pickle  # nosec B403
import random
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import torch

from modalrec.errors import CheckpointError
from modalrec.fileio import to_jsonable, write_atomic
from modalrec.models.base import get_model_class

FORMAT = 2


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


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint (as a dict) so a run resumes exactly."""

    epoch: int = 0  # epochs completed
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_evals: int = 0  # validations since the last improvement
    stopped_early: bool = False
    train_seconds: float = 0.0  # wall-clock seconds spent training (validation excluded)
    train_cpu_seconds: float = 0.0  # CPU seconds of this process (all threads) spent training: the compute a table reports
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, strings, lists and dicts (numpy scalars in the history become Python numbers)."""
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, state: dict[str, Any] | TrainState) -> TrainState:
        if isinstance(state, TrainState):  # a format-1 checkpoint
            return state
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors and numbers (loadable with ``weights_only=True``)."""
    version, mt, gauss = random.getstate()
    legacy = cast(tuple[Any, ...], np.random.get_state(legacy=True))  # MT19937's (kind, keys, pos, has_gauss, cached)
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (also the tuple form of format-1 checkpoints)."""
    python, numpy_state = state["python"], state["numpy"]
    if isinstance(python, dict):
        python = (python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"])
    random.setstate(python)
    if isinstance(numpy_state, dict):
        numpy_state = (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(target: Path | BinaryIO, payload: dict[str, Any]) -> None:
    """Write a checkpoint; to a path atomically (temp file, fsync, rename), so a kill mid-write never leaves
    a broken one. The payload must be plain data (tensors, numbers, strings, lists, tuples, dicts)."""
    if isinstance(target, Path):
        write_atomic(target, lambda handle: save_checkpoint(handle, payload))
        return
    torch.save({"format": FORMAT, **payload}, target)


def identity(model_name: str, model_config: dict[str, Any], dataset_hash: str, n_users: int, n_items: int) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that loads it."""
    return {
        "model": model_name,
        "model_config": model_config,
        "dataset_hash": dataset_hash,
        "n_users": n_users,
        "n_items": n_items,
    }


def _model_config_diffs(found: dict[str, Any], expected: dict[str, Any], model: str) -> list[str]:
    """The model-config keys on which a checkpoint and a run disagree.

    A key the checkpoint does not hold was added to the model after the checkpoint was written; the
    checkpoint then behaved as the key's default does (a new key's default keeps the old behaviour), so
    it agrees when the run holds that default and disagrees otherwise. Without this, every run of a
    model that later gained a key could no longer be evaluated, served or resumed.
    """
    defaults = dataclasses.asdict(get_model_class(model).Config())
    diffs = []
    for key, value in expected.items():
        if key in found:
            same = found[key] == value
        else:
            same = key in defaults and defaults[key] == value
        if not same:
            held = repr(found[key]) if key in found else "no such key (written before it existed)"
            diffs.append(f"model_config.{key}: checkpoint has {held}, this run has {value!r}")
    return diffs


def _legacy_globals() -> list[Any]:
    """The classes a format-1 checkpoint pickled, allowed (and only they) when reading one."""
    multiarray = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")  # 2 / 1
    return [
        (TrainState, "modalrec.train.trainer.TrainState"),  # where format 1 defined it
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        *(type(np.dtype(code)) for code in ("u4", "i8", "f8", "f4", "b")),
    ]


_UNSUPPORTED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of ``path``; any file it cannot read safely is a CheckpointError."""
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        what = f"a pickled '{found.group(1)}'" if found else "pickled Python objects"
        raise CheckpointError(
            f"checkpoint {path} holds {what}, which ModalRec never loads (unpickling it could run code); "
            "a ModalRec checkpoint holds only tensors, numbers and strings, so this file was not written by "
            "ModalRec or was altered. Re-train the run, or get the file from a source you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or damaged: {reason}); re-train the run") from None
    if not isinstance(payload, dict) or "model_state" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a ModalRec checkpoint (no model_state)")
    version = payload.get("format", 1)
    if version not in (1, FORMAT):
        raise CheckpointError(f"checkpoint {path} has format {version}; this ModalRec reads formats 1-{FORMAT}: upgrade ModalRec")
    return payload


def load_checkpoint(path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint, refusing one from another model, config or dataset (listing what differs)."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    payload = read_checkpoint(path)
    found = payload.get("identity", {})
    diffs = [
        f"{key}: checkpoint has {found.get(key)!r}, this run has {value!r}"
        for key, value in expected.items()
        if key != "model_config" and found.get(key) != value
    ]
    if "model_config" in expected and expected.get("model") == found.get("model"):
        diffs += _model_config_diffs(found.get("model_config", {}), expected["model_config"], expected["model"])
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not belong to this run:\n  " + "\n  ".join(diffs))
    if "train_state" in payload:
        payload["train_state"] = TrainState.from_dict(payload["train_state"])
    return payload


def restore_model(model: torch.nn.Module, payload: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's parameters into ``model``; parameters this version of the model no longer has (or has
    with another shape) give one message naming them instead of torch's error. Key names are judged after the
    model's own ``load_state_dict`` (which may rename keys of older versions)."""
    state = payload["model_state"]
    try:
        result = model.load_state_dict(state, strict=False)
        problems = [("missing", sorted(result.missing_keys)), ("not in this version", sorted(result.unexpected_keys))]
    except RuntimeError:  # torch checks shapes even when not strict
        own = model.state_dict()
        reshaped = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        problems = [("other shape", reshaped or ["(parameters torch could not load)"])]
    parts = [f"{label} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" for label, keys in problems if keys]
    if parts:
        raise CheckpointError(
            f"checkpoint {path} does not fit this version of model {type(model).__name__} ({'; '.join(parts)}): "
            "train the run again, or use the ModalRec version that wrote it"
        )
