"""Metrics by bucket of user history length (modalrec report --buckets), from real (tiny) runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.config import resolve
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.errors import ModalRecError
from modalrec.experiments.buckets import bucket_labels
from modalrec.experiments.report import build_report
from modalrec.train.experiment import open_run, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("buckets")
    save_dataset(make_synthetic(n_users=90, n_items=200, n_clusters=2, length=(4, 30), seed=2), root / "data")
    out = []
    for model, extra in (("pop", []), ("sasrec", ["train.epochs=2", "model.dim=8"])):
        cfg = resolve(
            [
                f"model={model}",
                f"dataset={root / 'data'}",
                f"run.dir={root / 'runs'}",
                f"run.name={model}",
                "train.progress=false",
                *extra,
            ]
        )
        out.append(train(cfg)[0].path)
    return out


def test_bucket_means_follow_the_per_user_files_and_history_lengths(runs: list[Path], tmp_path: Path) -> None:
    report = build_report(runs, tmp_path / "report", metrics=["ndcg@10"], buckets=[10, 20])
    text = report.buckets.read_text()
    assert "| model | <10 (" in text and "10-19 (" in text and ">=20 (" in text
    ctx = open_run(runs[1]).ctx
    lengths = np.diff(ctx.histories[0].indptr) + np.diff(ctx.histories[1].indptr)  # train + valid before test
    data = np.load(runs[1] / "per_user_test.npz")
    bucket = np.digitize(lengths[data["users"]], [10, 20])
    for b in range(3):
        expected = data["ndcg@10"][bucket == b].mean()
        assert f"{expected:.4f}" in text.split("| sasrec |")[1].splitlines()[0]
    assert f"({(bucket == 0).sum():,} users)" in text


def test_bad_bucket_edges_are_refused(runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ModalRecError, match="increasing"):
        bucket_labels([50, 20])
    assert bucket_labels([20, 50, 200]) == ["<20", "20-49", "50-199", ">=200"]
    result = CliRunner().invoke(app, ["report", str(runs[0]), "--out", str(tmp_path / "r"), "--buckets", "20,x"])
    assert isinstance(result.exception, ModalRecError) and "--buckets" in str(result.exception)  # main() prints it, exit 2
    assert not (tmp_path / "r").exists()  # refused before anything is written
