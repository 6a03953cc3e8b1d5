"""A run killed mid-training (a real subprocess, SIGKILL) and resumed ends with the same metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic

pytestmark = pytest.mark.slow


def _train_cmd(data: Path, runs: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modalrec",
        "train",
        "model=bpr",
        f"dataset={data}",
        "train.epochs=5",
        "train.batch_size=32",
        "train.lr=0.01",
        "train.patience=100",
        "train.progress=false",
        "train.deterministic=true",
        "model.dim=32",
        f"run.dir={runs}",
        f"run.name={name}",
        "--quiet",
    ]


def _finished_epochs(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def test_killed_run_resumes_to_identical_results(tmp_path: Path) -> None:
    data = tmp_path / "data"
    save_dataset(make_synthetic(n_users=2000, n_items=400, seed=3), data)
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONHASHSEED="0")

    reference = subprocess.run(_train_cmd(data, runs, "whole"), env=env, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr

    victim = subprocess.Popen(_train_cmd(data, runs, "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _finished_epochs(runs / "killed") < 2 and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the third epoch
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed = runs / "killed"
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    done = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["train_state"]["epoch"]
    assert 2 <= done < 5

    resumed = subprocess.run(
        [sys.executable, "-m", "modalrec", "train", "--resume", str(killed), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = json.loads((runs / "whole" / "results.json").read_text())
    again = json.loads((killed / "results.json").read_text())
    assert again["test"] == whole["test"]
    assert again["valid"] == whole["valid"]
    assert again["best_epoch"] == whole["best_epoch"]
    history = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    reference_history = [json.loads(line) for line in (runs / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in history] == [r["loss"] for r in reference_history]
