"""Distributed training: 2 CPU ranks (gloo) against one process; a rank crash; resume after it.

Tolerance: with the same global batch and seed, a 2-process run and a 1-process run compute the
same gradient up to float32 summation order (the all-reduce adds the two halves), so parameters
agree to 1e-5 absolute after a few epochs (measured ~1e-8) and the ranking metrics to 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.split import SplitConfig, split
from modalrec.data.storage import load_saved_dataset
from modalrec.data.views import make_train_batches
from modalrec.train import distributed, experiment
from modalrec.train.trainer import micro_batches

PARAM_ATOL = 1e-5
METRIC_ATOL = 1e-6
ARGS = [
    "model=bpr",
    "train.epochs=4",
    "train.batch_size=50",
    "train.lr=0.01",
    "train.patience=100",
    "train.progress=false",
    "model.dim=16",
]


def _final(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model_state"]
    return state, json.loads((run / "results.json").read_text())


def _assert_same_run(run: Path, reference: Path) -> None:
    state, results = _final(run)
    ref_state, ref_results = _final(reference)
    for key, value in ref_state.items():
        torch.testing.assert_close(state[key], value, atol=PARAM_ATOL, rtol=0)
    for phase in ("valid", "test"):
        for metric, value in ref_results[phase].items():
            assert results[phase][metric] == pytest.approx(value, abs=METRIC_ATOL), (phase, metric)
    assert results["best_epoch"] == ref_results["best_epoch"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop(distributed.FAULT_ENV, None)
    return env


@pytest.fixture(scope="module")
def reference(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process run every distributed run is compared with."""
    runs = tmp_path_factory.mktemp("ref")
    run_dir, _ = experiment.train(resolve([*ARGS, f"dataset={synthetic_dir}", f"run.dir={runs}", "run.name=one"]))
    return run_dir.path


@pytest.fixture(scope="module")
def ctx(synthetic_dir: Path) -> DataContext:
    return DataContext.from_dataset(split(load_saved_dataset(synthetic_dir), SplitConfig(method="loo")))


# ------------------------------------------------------------------------------ in-process units
@pytest.mark.parametrize("view", ["triples", "sequences", "users"])
def test_shards_partition_every_global_batch(ctx: DataContext, view: str) -> None:
    whole = list(make_train_batches(view, ctx, 64, seed=7))
    shards = [list(make_train_batches(view, ctx, 64, seed=7).shard(r, 3)) for r in range(3)]
    n = make_train_batches(view, ctx, 64, seed=7).n_samples
    tail = n % 64
    assert all(len(s) == len(whole) - (0 < tail < 3) for s in shards)  # every rank takes the same steps
    for step, batch in enumerate(whole[: len(shards[0])]):
        for key, value in batch.items():
            parts = [s[step][key] for s in shards]
            assert sum(len(p) for p in parts) == len(value)
            rebuilt = torch.empty_like(value)
            for rank, part in enumerate(parts):
                rebuilt[rank::3] = part
            assert torch.equal(rebuilt, value), (view, step, key)


def test_short_tail_is_dropped_and_batch_must_cover_the_ranks(ctx: DataContext) -> None:
    batches = make_train_batches("users", ctx, 199, seed=0)  # 200 users with train items: a tail of 1
    assert batches.n_samples == 200 and len(batches) == 2 and batches.global_batch_size(1) == 1
    assert len(batches.shard(0, 2)) == 1
    with pytest.raises(distributed.ModalRecError, match="smaller than the 4 processes"):
        make_train_batches("users", ctx, 3, seed=0).shard(0, 4)


def test_micro_batches_are_strided_and_cover_the_batch() -> None:
    batch = {"users": torch.arange(5), "rows": torch.arange(10).view(5, 2)}
    parts = micro_batches(batch, 3)
    assert [p["users"].tolist() for p in parts] == [[0, 3], [1, 4], [2]]
    assert all(p["rows"].is_contiguous() for p in parts)
    assert len(micro_batches({"users": torch.arange(2)}, 4)) == 2  # no empty micro-batch


def test_gradient_accumulation_gives_the_same_updates(synthetic_dir: Path, reference: Path, tmp_path: Path) -> None:
    run_dir, _ = experiment.train(
        resolve([*ARGS, "train.grad_accum=3", f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "run.name=accum"])
    )
    _assert_same_run(run_dir.path, reference)


def test_closed_form_models_refuse_several_processes(synthetic_dir: Path, tmp_path: Path, monkeypatch) -> None:
    result = CliRunner().invoke(app, ["train", "model=ease", f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "--nproc", "2"])
    assert result.exit_code != 0
    assert "closed form" in str(result.exception) and "ease" in str(result.exception)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun would set it
    with pytest.raises(distributed.DistributedError, match="does not run on 2 processes"):
        experiment.train(resolve(["model=itemknn", f"dataset={synthetic_dir}", f"run.dir={tmp_path}"]))
    assert not any(tmp_path.iterdir()), "nothing is written for a refused run"


def test_fault_hook_only_fires_on_its_rank_and_epoch(monkeypatch) -> None:
    monkeypatch.setenv(distributed.FAULT_ENV, "1@2")
    distributed.inject_fault(distributed.Dist(rank=0, world_size=2), 1)
    distributed.inject_fault(distributed.Dist(rank=1, world_size=2), 0)
    with pytest.raises(RuntimeError, match="rank 1 at epoch 2"):
        distributed.inject_fault(distributed.Dist(rank=1, local_rank=1, world_size=2), 1)


# ------------------------------------------------------------------------------ two real processes
@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(synthetic_dir: Path, reference: Path, tmp_path: Path) -> None:
    """``torchrun -m modalrec train`` with 2 gloo ranks (and accumulation on top) equals one process."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "modalrec",
        "train",
        *ARGS,
        "train.grad_accum=2",
        f"dataset={synthetic_dir}",
        f"run.dir={tmp_path}",
        "run.name=ddp",
        "--quiet",
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(tmp_path / "ddp", reference)
    payload = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert len(payload["rng_ranks"]) == 2
    history = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    ref_history = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([h["loss"] for h in history], [h["loss"] for h in ref_history], rtol=1e-5)
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports


@pytest.mark.slow
def test_rank_crash_fails_the_job_naming_the_rank_and_resumes(synthetic_dir: Path, reference: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "modalrec",
        "train",
        *ARGS,
        f"dataset={synthetic_dir}",
        f"run.dir={tmp_path}",
        "run.name=crash",
        "--nproc",
        "2",
        "--quiet",
    ]
    crashed = subprocess.run(cmd, env={**_env(), distributed.FAULT_ENV: "1@3"}, capture_output=True, text=True, timeout=300)
    assert crashed.returncode != 0
    assert "rank 1 of 2 failed" in crashed.stderr and "injected fault" in crashed.stderr, crashed.stderr[-3000:]
    assert "--resume" in crashed.stderr
    run = tmp_path / "crash"
    assert not (run / "results.json").exists()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["epoch"] == 2

    resumed = subprocess.run(
        [sys.executable, "-m", "modalrec", "train", "--resume", str(run), "--nproc", "2", "--quiet"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(run, reference)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
