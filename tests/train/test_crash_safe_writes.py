"""Writes survive ``kill -9`` at any point: a real subprocess writes version 1 of a checkpoint, a saved
dataset or a feature-cache entry, then starts writing version 2 and stops itself (SIGSTOP) at a chosen
point; the test SIGKILLs it there and the next load must see a complete version (the one the kill point
implies), never a torn file. The kill points are the calls that matter: half of a file's bytes written,
and just before each rename."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modalrec.data.features.cache import FeatureCache
from modalrec.data.storage import load_saved_dataset
from modalrec.train.rundir import RunDir

pytestmark = pytest.mark.slow

CHILD = r'''
import io, os, shutil, signal, sys
from pathlib import Path
import numpy as np

artefact, point, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def stop():
    os.kill(os.getpid(), signal.SIGSTOP)  # the parent SIGKILLs us here
    raise SystemExit("resumed after SIGSTOP: the parent should have killed this process")


def stop_before(module, name, n):
    """Stop just before the n-th call of module.name."""
    real, calls = getattr(module, name), [0]
    def hooked(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            stop()
        return real(*args, **kwargs)
    setattr(module, name, hooked)


def half_written(module, name, n, position):
    """The n-th call of module.name writes half of its bytes to its target (argument ``position``), then stops."""
    real, calls = getattr(module, name), [0]
    def hooked(*args, **kwargs):
        calls[0] += 1
        if calls[0] != n:
            return real(*args, **kwargs)
        target, buffer = args[position], io.BytesIO()
        real(*args[:position], buffer, *args[position + 1:], **kwargs)
        data = buffer.getvalue()
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as handle:
                handle.write(data[: len(data) // 2])
        else:
            target.write(data[: len(data) // 2]); target.flush()
        stop()
    setattr(module, name, hooked)


def hooks(save_module, save_name, position):
    kind, _, n = point.partition(":")
    if kind == "half":
        half_written(save_module, save_name, int(n), position)
    elif kind == "replace":
        stop_before(os, "replace", int(n))
    elif kind == "rmtree":
        stop_before(shutil, "rmtree", int(n))
    else:
        assert kind == "end", point


if artefact == "checkpoint":
    import torch
    from modalrec.train.rundir import RunDir
    run = RunDir(root).create()
    def version(v):
        return {"identity": {}, "model_state": {"w": torch.full((50_000,), float(v))}}
    run.save_checkpoint(run.last, version(1))
    hooks(torch, "save", 1)  # torch.save(obj, file)
    run.save_checkpoint(run.last, version(2))
elif artefact == "dataset":
    from modalrec.data.storage import save_dataset
    from modalrec.data.synthetic import make_synthetic
    save_dataset(make_synthetic(n_users=50, n_items=30, seed=1), root / "saved")
    hooks(np, "save", 0)  # np.save(file, array)
    save_dataset(make_synthetic(n_users=60, n_items=30, seed=2), root / "saved")
elif artefact == "features":
    from modalrec.data.features.cache import Encoded, FeatureCache
    cache = FeatureCache(root / "cache")
    def version(v):
        return Encoded(np.full((400, 64), v, dtype=np.float32), np.ones(400, dtype=bool), {"encoder": "test"})
    cache.save("k" * 64, version(1))
    hooks(np, "save", 0)  # np.save(file, array)
    cache.save("k" * 64, version(2))
'''


def _kill_at(artefact: str, point: str, root: Path) -> None:
    """Run the writer until it stops at ``point``, then SIGKILL it (``end``: let it finish)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, artefact, point, str(root)], env=env, stderr=subprocess.PIPE)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if point == "end":
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, proc.stderr.read().decode()[-2000:]
    else:
        assert os.WIFSTOPPED(status), f"the writer never reached {point}: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        _, status = os.waitpid(proc.pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    proc.returncode = status  # reaped here; keep Popen from waiting again
    proc.stderr.close()


# (kill point, the version the next load must see). Checkpoint: torch.save's bytes go to a temporary file;
# the renames are checksums.json (old + new digests), the checkpoint, checksums.json (new digest only).
CHECKPOINT_POINTS = [("half:1", 1), ("replace:1", 1), ("replace:2", 1), ("replace:3", 2), ("end", 2)]
# Saved dataset: np.save of each array into a staging folder; renames: old folder aside, staging in; then
# the old folder is deleted. A kill between the renames leaves no folder: the next load puts the old one back.
DATASET_POINTS = [("half:1", 50), ("half:4", 50), ("replace:1", 50), ("replace:2", 50), ("rmtree:1", 60), ("end", 60)]
FEATURE_POINTS = [("half:1", 1.0), ("half:2", 1.0), ("replace:1", 1.0), ("replace:2", 1.0), ("rmtree:1", 2.0), ("end", 2.0)]


@pytest.mark.parametrize(("point", "version"), CHECKPOINT_POINTS)
def test_checkpoint_killed_while_written(tmp_path: Path, point: str, version: int) -> None:
    _kill_at("checkpoint", point, tmp_path)
    run = RunDir(tmp_path)
    run.verify(run.last)  # the file matches a recorded digest
    payload = run.load_checkpoint(run.last, {})
    torch.testing.assert_close(payload["model_state"]["w"], torch.full((50_000,), float(version)))


@pytest.mark.parametrize(("point", "users"), DATASET_POINTS)
def test_saved_dataset_killed_while_written(tmp_path: Path, point: str, users: int) -> None:
    _kill_at("dataset", point, tmp_path)
    ds = load_saved_dataset(tmp_path / "saved", verify=True)  # every file checksum and the content hash
    assert ds.n_users == users
    assert not list(tmp_path.glob(".saved.*.old/previous"))  # a folder set aside was put back or deleted


@pytest.mark.parametrize(("point", "value"), FEATURE_POINTS)
def test_feature_cache_entry_killed_while_written(tmp_path: Path, point: str, value: float) -> None:
    _kill_at("features", point, tmp_path)
    entry = FeatureCache(tmp_path / "cache").load("k" * 64)
    assert entry is not None and entry.cache_hit
    np.testing.assert_array_equal(entry.values, np.full((400, 64), value, dtype=np.float32))
