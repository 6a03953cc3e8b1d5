"""``modalrec report --sweep KEY --baseline LABEL``: metrics against a config value varied across runs, each model's
change tested against the baseline's change over the same users; tests against a named row in the tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.errors import ModalRecError
from modalrec.experiments.report import build_report

NOISE = (0.0, 0.5, 1.0)
KEY = "dataset.feature_noise"


def _per_user(model: str, p: float, seed: int, base: np.ndarray) -> np.ndarray:
    """'fragile' loses half its value at p = 1, 'robust' a tenth (with per-seed jitter)."""
    rng = np.random.default_rng(seed * 10 + int(p * 2))
    drop = 0.5 if model == "fragile" else 0.1
    return np.clip(base * (1 - drop * p) + rng.normal(0, 0.01, base.size), 0, 1)


@pytest.fixture
def sweep_runs(tmp_path: Path, make_run) -> dict[tuple[str, float, int], np.ndarray]:
    """fragile and robust at p = 0, 0.5, 1 with seeds 1-2 in a suite folder, one dataset label per p (as a suite
    whose datasets differ by an override writes them)."""
    base = np.random.default_rng(0).random(200)
    users = np.arange(200)
    values, manifest = {}, {}
    for p in NOISE:
        for model in ("fragile", "robust"):
            for seed in (1, 2):
                per_user = _per_user(model, p, seed, base)
                values[(model, p, seed)] = per_user
                name = f"toy-p{p}__{model}__seed{seed}"
                path = make_run(tmp_path / "suite" / "runs" / name, model, seed, {"ndcg@10": per_user}, users, [0.1])
                config = yaml.safe_load((path / "config.yaml").read_text())
                config["dataset"] = {"name": "toy", "feature_noise": p}
                (path / "config.yaml").write_text(yaml.safe_dump(config))
                manifest[name] = {"label": model, "model": model, "dataset": f"toy-p{p}", "seed": seed}
    (tmp_path / "suite" / "suite.json").write_text(json.dumps({"name": "sweep", "runs": manifest}))
    return values


def test_the_sweep_table_plot_and_change_tests_follow_the_per_user_files(sweep_runs: dict, tmp_path: Path) -> None:
    report = build_report([tmp_path / "suite"], tmp_path / "report", metrics=["ndcg@10"], baseline="fragile", sweep=KEY)
    assert report.sweep_plot is not None and report.sweep_plot.stat().st_size > 0
    text = report.sweep.read_text()
    rows = {
        line.split("|")[1].strip(): line
        for line in text.splitlines()
        if line.startswith("| fragile") or line.startswith("| robust")
    }
    for model in ("fragile", "robust"):
        first = np.mean([sweep_runs[(model, 0.0, s)].mean() for s in (1, 2)])
        for p in NOISE:
            mean = np.mean([sweep_runs[(model, p, s)].mean() for s in (1, 2)])
            assert f"{mean:.4f}" in rows[model]
            if p:
                assert f"({mean - first:+.4f}, {100 * (mean - first) / first:+.1f} %)" in rows[model]

    # robust's per-user change vs fragile's, seeds averaged: the paired sample of the test (Holm over one model = raw p)
    def change(model: str, p: float) -> np.ndarray:
        return np.mean([sweep_runs[(model, p, s)] - sweep_runs[(model, 0.0, s)] for s in (1, 2)], axis=0)

    for p in NOISE[1:]:
        diff = change("robust", p) - change("fragile", p)
        t_p = stats.ttest_rel(change("robust", p), change("fragile", p)).pvalue
        assert f"change 0 -> {p:g}: mean per-user difference {diff.mean():+.4f} over 200 users, t-test p = {t_p:.3g}" in text
    assert rows["robust"].rstrip(" |").endswith("*†")  # degrades significantly less than the baseline
    assert "*" not in rows["fragile"] and "differs from fragile's" in text


def test_the_tables_test_against_the_baseline_not_the_best(sweep_runs: dict, tmp_path: Path) -> None:
    report = build_report([tmp_path / "suite"], tmp_path / "report", metrics=["ndcg@10"], baseline="fragile")
    at_one = next(t for t in report.tables if t.dataset == "toy-p1.0")
    cell = at_one.cells["robust"]["ndcg@10"]
    assert at_one.reference["ndcg@10"] == "fragile" and cell.best and cell.test is not None and cell.test.mean_diff > 0
    assert "differs from fragile (the best where fragile has no value)" in report.markdown.read_text()
    assert report.sweep is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sweep": "dataset.nope"}, r"--sweep dataset.nope: .*config.yaml has no such key"),
        ({"sweep": "dataset.name"}, r"--sweep dataset.name: .*config.yaml has 'toy' there, not a finite number"),
        ({"sweep": "model.name.x"}, r"no such key"),
        ({"baseline": "nope"}, r"--baseline nope is not a model of these runs; choose one of fragile, robust"),
    ],
)
def test_bad_sweep_or_baseline_is_refused_before_anything_is_written(
    sweep_runs: dict, tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(ModalRecError, match=message):
        build_report([tmp_path / "suite"], tmp_path / "report", metrics=["ndcg@10"], **options)
    assert not (tmp_path / "report").exists()


def test_a_key_every_run_shares_is_refused_and_the_cli_exits_2(sweep_runs: dict, tmp_path: Path) -> None:
    with pytest.raises(ModalRecError, match=r"--sweep train.seed: every run has the same value \(1\)"):
        build_report(sorted((tmp_path / "suite" / "runs").glob("*seed1")), tmp_path / "report", sweep="train.seed")
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "suite"), "--out", str(tmp_path / "r"), "--sweep", "dataset.nope", "--metrics", "ndcg@10"]
    )
    assert isinstance(result.exception, ModalRecError) and "--sweep dataset.nope" in str(result.exception)  # main(): exit 2
    assert not (tmp_path / "r").exists()
