"""The trainer hooks search relies on: on_validation after every validation, score_test=False."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalrec.config import resolve
from modalrec.train import experiment


def _cfg(data: Path, runs: Path, *extra: str):
    return resolve([f"dataset={data}", f"run.dir={runs}", "train.progress=false", *extra])


def test_on_validation_follows_every_validation(tmp_path: Path, synthetic_dir: Path) -> None:
    calls: list[tuple[int, float]] = []
    cfg = _cfg(
        synthetic_dir,
        tmp_path,
        "model=bpr",
        "model.dim=8",
        "train.epochs=4",
        "train.eval_every=2",
        "train.batch_size=256",
        "run.name=a",
    )
    run_dir, results = experiment.train(cfg, on_validation=lambda epoch, summary: calls.append((epoch, summary["ndcg@10"])))
    assert [epoch for epoch, _ in calls] == [2, 4]
    assert max(score for _, score in calls) == pytest.approx(results["valid"]["ndcg@10"])
    closed: list[int] = []
    _, pop = experiment.train(
        _cfg(synthetic_dir, tmp_path, "model=pop", "run.name=b"), on_validation=lambda e, s: closed.append(e), score_test=False
    )
    assert closed == [1] and "test" not in pop and "valid" in pop


def test_a_raising_callback_stops_training_with_a_resumable_run(tmp_path: Path, synthetic_dir: Path) -> None:
    class Stop(Exception):
        pass

    def stop_at_two(epoch: int, summary: dict) -> None:
        if epoch == 2:
            raise Stop

    cfg = _cfg(synthetic_dir, tmp_path, "model=bpr", "model.dim=8", "train.epochs=4", "train.batch_size=256", "run.name=c")
    with pytest.raises(Stop):
        experiment.train(cfg, on_validation=stop_at_two)
    run = tmp_path / "c"
    assert (run / "checkpoints" / "last.pt").exists() and len((run / "metrics.jsonl").read_text().splitlines()) == 2
    _, results = experiment.train(None, resume=run)
    assert results["epochs_run"] == 4
