"""Metrics by bucket of user history length (modalrec report --buckets), from real (tiny) runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.config import resolve
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.errors import ModalRecError
from modalrec.experiments.buckets import bucket_labels, bucket_table
from modalrec.experiments.collect import by_dataset, load_runs
from modalrec.experiments.report import build_report
from modalrec.experiments.significance import holm
from modalrec.train.experiment import open_run, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("buckets")
    save_dataset(make_synthetic(n_users=90, n_items=200, n_clusters=2, length=(4, 30), seed=2), root / "data")
    out = []
    for name, model, extra in (
        ("pop", "pop", []),
        ("sasrec", "sasrec", ["train.epochs=2", "model.dim=8"]),
        ("sasrec-b", "sasrec", ["train.epochs=1", "model.dim=16"]),  # same seed: labelled by its directory
    ):
        cfg = resolve(
            [
                f"model={model}",
                f"dataset={root / 'data'}",
                f"run.dir={root / 'runs'}",
                f"run.name={name}",
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


def test_each_bucket_is_tested_on_its_own_users(runs: list[Path], tmp_path: Path) -> None:
    """Per bucket, both other models against the baseline over the users both put in that bucket (Pop runs on its
    own ratio split, so its buckets differ from the leave-one-out models'), Holm-corrected over the two."""
    ((dataset, groups),) = by_dataset(load_runs(runs)).items()
    table = bucket_table(dataset, groups, "test", "ndcg@10", [10, 20], baseline="sasrec")
    data, bucket = {}, {}
    for name, run in zip(("pop", "sasrec", "sasrec-b"), runs):
        ctx = open_run(run).ctx
        lengths = np.diff(ctx.histories[0].indptr) + np.diff(ctx.histories[1].indptr)
        with np.load(run / "per_user_test.npz") as loaded:
            order = np.argsort(loaded["users"])
            data[name] = loaded["ndcg@10"].astype(np.float64)[order]
            bucket[name] = np.digitize(lengths[loaded["users"][order]], [10, 20])
    assert not np.array_equal(bucket["pop"], bucket["sasrec"])  # the mixed-split case is exercised
    assert np.array_equal(bucket["sasrec-b"], bucket["sasrec"]) and not np.array_equal(data["sasrec-b"], data["sasrec"])
    assert table.counts == [int((bucket["pop"] == b).sum()) for b in range(3)]  # the first model's buckets
    assert table.reference == ["sasrec"] * 3
    for b in range(3):
        pairs = {}
        for name in ("pop", "sasrec-b"):
            both = (bucket[name] == b) & (bucket["sasrec"] == b)
            pairs[name] = (data[name][both], data["sasrec"][both])
            assert table.means[name][b] == pytest.approx(float(data[name][bucket[name] == b].mean()))
        t_holm = holm([stats.ttest_rel(v, r).pvalue for v, r in pairs.values()])
        w_holm = holm([stats.wilcoxon(v, r).pvalue if np.any(v != r) else 1.0 for v, r in pairs.values()])
        for i, (name, (v, r)) in enumerate(pairs.items()):
            test = table.tests[name][b]
            assert test is not None and test.n_users == len(v) >= 2
            assert test.mean_diff == pytest.approx(float(np.mean(v - r)))
            assert test.t_p_holm == pytest.approx(t_holm[i]) and test.w_p_holm == pytest.approx(w_holm[i])
        assert table.tests["sasrec"][b] is None
    report = build_report(runs, tmp_path / "r", metrics=["ndcg@10"], buckets=[10, 20], baseline="sasrec")
    text = report.buckets.read_text()
    row = text.split("Difference from the reference")[1].split("| pop |")[1].splitlines()[0]
    test = table.tests["pop"][0]
    assert test is not None and f"{test.mean_diff:+.4f} ({test.t_p_holm:.2g} / {test.w_p_holm:.2g})" in row
    assert "| sasrec | (reference) | (reference) | (reference) |" in text


def test_without_a_baseline_each_bucket_is_tested_against_its_own_best(runs: list[Path]) -> None:
    ((dataset, groups),) = by_dataset(load_runs(runs)).items()
    table = bucket_table(dataset, groups, "test", "ndcg@10", [10, 20])
    for b, reference in enumerate(table.reference):
        assert reference is not None
        assert table.means[reference][b] == max(means[b] for means in table.means.values())
        assert table.tests[reference][b] is None
        assert all(table.tests[label][b] is not None for label in table.means if label != reference)
