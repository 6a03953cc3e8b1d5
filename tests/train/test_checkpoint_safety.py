"""Run directories are safe to open: a checkpoint that would run code is refused (weights_only), every
file with a recorded SHA-256 is verified before it is parsed, and each failure is one line naming the file.

The malicious checkpoint is proven malicious first (a full pickle load creates the marker file), then
each of ``evaluate``, ``recommend``, ``serve`` and ``train --resume`` runs in a real subprocess and must
refuse it with exit status 2 while the marker never appears."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from modalrec import cli
from modalrec.data.storage import load_saved_dataset
from modalrec.fileio import sha256_file
from modalrec.train import checkpoint, experiment
from modalrec.train.rundir import RunDir

pytestmark = pytest.mark.slow

TRAIN = ["model=bpr", "train.epochs=2", "train.batch_size=64", "model.dim=8", "train.progress=false", "train.patience=100"]


@pytest.fixture(scope="module")
def finished_run(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run; every test works on its own copy."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = experiment.resolve([*TRAIN, f"dataset={synthetic_dir}", f"run.dir={runs}", "run.name=done"])
    run_dir, _ = experiment.train(cfg)
    return run_dir.path


def _copy(run: Path, into: Path) -> Path:
    """A copy of ``run`` without its results (as if it had stopped after its last checkpoint)."""
    target = into / "run"
    shutil.copytree(run, target)
    os.remove(target / "results.json")
    return target


def _user(synthetic_dir: Path) -> str:
    return str(load_saved_dataset(synthetic_dir).user_ids[0])


def _commands(run: Path, synthetic_dir: Path) -> dict[str, list[str]]:
    return {
        "evaluate": ["evaluate", str(run)],
        "recommend": ["recommend", str(run), "--user", _user(synthetic_dir)],
        "serve": ["serve", str(run), "--port", "0"],
        "resume": ["train", "--resume", str(run), "--quiet"],
    }


def _read_checkpoint_of(command: str) -> str:
    return "checkpoints/last.pt" if command == "resume" else "checkpoints/best.pt"


# ---------------------------------------------------------------- a checkpoint that runs code when unpickled
class _Payload:
    """Unpickling this calls ``os.system('touch <marker>')``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _plant_malicious(run: Path, name: str, marker: Path, record_checksum: bool) -> None:
    """Replace ``run/name`` by a valid-looking checkpoint carrying the payload; an attacker who controls
    the folder also rewrites checksums.json (or deletes it, as in a run written by an earlier version)."""
    path = run / name
    payload = torch.load(path, weights_only=True)
    payload["identity"] = dict(payload["identity"], note=_Payload(marker))
    torch.save(payload, path)
    sums = run / "checksums.json"
    if record_checksum:
        recorded = json.loads(sums.read_text())
        recorded["sha256"][name] = [sha256_file(path)]
        sums.write_text(json.dumps(recorded))
    else:
        sums.unlink()


def test_the_planted_checkpoint_does_run_code_under_a_full_pickle_load(finished_run: Path, tmp_path: Path) -> None:
    run, marker = _copy(finished_run, tmp_path), tmp_path / "control-marker"
    _plant_malicious(run, "checkpoints/best.pt", marker, record_checksum=True)
    torch.load(run / "checkpoints" / "best.pt", weights_only=False)  # the unsafe load the project no longer does
    assert marker.exists()


@pytest.mark.parametrize("record_checksum", [True, False], ids=["checksum-rewritten", "no-checksums"])
@pytest.mark.parametrize("command", ["evaluate", "recommend", "serve", "resume"])
def test_every_command_refuses_a_checkpoint_that_would_run_code(
    finished_run: Path, synthetic_dir: Path, tmp_path: Path, command: str, record_checksum: bool
) -> None:
    run, marker = _copy(finished_run, tmp_path), tmp_path / "marker"
    name = _read_checkpoint_of(command)
    _plant_malicious(run, name, marker, record_checksum)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "modalrec", *_commands(run, synthetic_dir)[command]],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"checkpoint {run / name} holds a pickled 'posix.system'" in done.stderr, done.stderr[-2000:]
    assert "never loads" in done.stderr
    assert not marker.exists(), "the checkpoint's code ran"


# ---------------------------------------------------------------- integrity: commands x corruptions
def _truncate(path: Path) -> None:
    os.truncate(path, 1000)  # truncate -s 1000


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit deep inside the tensor data: torch alone would not notice
    path.write_bytes(bytes(data))


def _append(path: Path) -> None:
    with open(path, "ab") as handle:
        handle.write(b"\n")


CORRUPTIONS: dict[str, tuple[str | None, Callable[[Path], None]]] = {
    # name: (the file it damages, None = the checkpoint the command reads; how)
    "truncated-checkpoint": (None, _truncate),
    "bit-flipped-checkpoint": (None, _flip_byte),
    "appended-checkpoint": (None, _append),
    "truncated-best-checkpoint": ("checkpoints/best.pt", _truncate),
    "edited-config": ("config.yaml", lambda p: p.write_text(p.read_text().replace("dim: 8", "dim: 16"))),
    "edited-dataset-record": ("dataset.json", _append),
}


def _run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``modalrec ARGS`` through the console entry point, in this process (``serve`` never binds a socket)."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("serve started although its run is damaged"))
    monkeypatch.setattr(sys, "argv", ["modalrec", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return int(exited.value.code), capsys.readouterr().err


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("command", ["evaluate", "recommend", "serve", "resume"])
def test_a_changed_file_is_named_before_it_is_parsed(
    finished_run: Path,
    synthetic_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    command: str,
    corruption: str,
) -> None:
    run = _copy(finished_run, tmp_path)
    target, damage = CORRUPTIONS[corruption]
    name = target or _read_checkpoint_of(command)
    damage(run / name)
    opened: list[Path] = []
    monkeypatch.setattr(checkpoint, "read_checkpoint", lambda path: opened.append(path) or pytest.fail(f"{path} parsed"))
    code, err = _run_cli(_commands(run, synthetic_dir)[command], monkeypatch, capsys)
    assert code == 2, err
    message = err.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"{run / name} changed after it was written" in message, message
    assert "truncated, edited or replaced" in message
    assert not opened


@pytest.mark.parametrize("command", ["evaluate", "recommend", "serve", "resume"])
def test_a_truncated_checkpoint_without_checksums_is_still_one_line(
    finished_run: Path,
    synthetic_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    command: str,
) -> None:
    """A run written before checksums existed: torch's own failure becomes the one-line error (issue #14)."""
    run = _copy(finished_run, tmp_path)
    (run / "checksums.json").unlink()
    name = _read_checkpoint_of(command)
    _truncate(run / name)
    code, err = _run_cli(_commands(run, synthetic_dir)[command], monkeypatch, capsys)
    assert code == 2, err
    message = err.strip().splitlines()[-1]
    assert f"checkpoint {run / name} cannot be read (truncated or damaged" in message, err
    assert "Traceback" not in err


def test_checksums_follow_every_rewrite_and_an_intact_run_reopens(finished_run: Path, tmp_path: Path) -> None:
    run = RunDir(_copy(finished_run, tmp_path))
    recorded = json.loads(run.checksums.read_text())["sha256"]
    assert set(recorded) == {"config.yaml", "dataset.json", "checkpoints/best.pt", "checkpoints/last.pt"}
    for name, digests in recorded.items():
        assert digests == [sha256_file(run.path / name)], name
    run.verify(run.config, run.dataset, run.best, run.last)
    loaded = experiment.open_run(run.path)
    assert loaded.model.name == "bpr"


# ---------------------------------------------------------------- checkpoints of earlier versions
def test_a_format_1_checkpoint_loads_safely_and_resumes(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 1 pickled a TrainState dataclass (as modalrec.train.trainer.TrainState) and numpy RNG arrays;
    they load with exactly those classes allowed, and the run resumes to the end."""
    run = _copy(finished_run, tmp_path)
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    payload.pop("format")
    state = checkpoint.TrainState.from_dict(payload["train_state"])
    state.epoch, state.stopped_early = 1, False
    state.history = state.history[:1]
    state.best_score = float(state.history[0]["valid"]["ndcg@10"])
    for record in state.history:  # numpy scalars, as format 1 could hold
        record["valid"] = {k: np.float64(v) for k, v in record["valid"].items()}
    payload["train_state"] = state
    payload["rng"] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    monkeypatch.setattr(checkpoint.TrainState, "__module__", "modalrec.train.trainer")
    torch.save(payload, run / "checkpoints" / "last.pt")
    monkeypatch.undo()
    (run / "checksums.json").unlink()
    assert "modalrec.train.trainer.TrainState" in torch.serialization.get_unsafe_globals_in_checkpoint(
        run / "checkpoints" / "last.pt"
    )

    loaded = checkpoint.read_checkpoint(run / "checkpoints" / "last.pt")
    assert isinstance(loaded["train_state"], checkpoint.TrainState) and loaded["train_state"].epoch == 1
    run_dir, results = experiment.train(None, resume=run)
    assert results["epochs_run"] == 2
    assert json.loads(run_dir.checksums.read_text())["sha256"]["checkpoints/last.pt"] == [sha256_file(run_dir.last)]
    resaved = torch.load(run_dir.last, weights_only=True)  # rewritten in format 2: no class needed
    assert resaved["format"] == checkpoint.FORMAT and resaved["train_state"]["epoch"] == 2
