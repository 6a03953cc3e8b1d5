"""The benchmark / search / report commands end to end on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modalrec.cli import app


def test_benchmark_command_runs_reports_and_skips_on_rerun(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "cli",
                "datasets": [str(synthetic_dir)],
                "seeds": [3],
                "models": ["pop", "itemknn"],
                "common": {"eval.ks": "5,10"},
            }
        )
    )
    out = tmp_path / "out"
    runner = CliRunner()
    dry = runner.invoke(app, ["benchmark", str(suite), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "synthetic__pop__seed3" in dry.output and "new" in dry.output and not (out / "runs").exists()
    first = runner.invoke(app, ["benchmark", str(suite), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    for name in ("results.md", "results.csv", "report.html"):
        assert (out / "report" / name).exists()
    assert "trained" in first.output
    log = (out / "runs" / "synthetic__itemknn__seed3" / "train.log").read_text()
    assert "run " in log  # quiet keeps the terminal quiet, not the run's log
    second = runner.invoke(app, ["benchmark", str(suite), "--out", str(out), "--quiet"])
    assert second.exit_code == 0 and "done" in second.output and "trained" not in second.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"datasets": [str(synthetic_dir)], "models": ["nosuchmodel"]}))
    result = runner.invoke(app, ["benchmark", str(bad)])
    assert result.exit_code != 0 and "nosuchmodel" in str(result.exception)


def _two_seed_suite(tmp_path: Path, data: Path) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "cli", "datasets": [str(data)], "seeds": [3, 5], "models": ["pop", "itemknn"]}))
    return suite


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "two"], "--seeds takes comma-separated integers such as 1 or 2,3, got 'two'"),
        (["--seeds", "1,,2"], "--seeds takes comma-separated integers"),
        (["--seeds", "4"], "--seeds names 4, not seeds of suite cli (3, 5)"),
        (["--datasets", "ml-1m"], "--datasets names ml-1m, not dataset labels of suite cli (synthetic)"),
        (["--only", "bpr"], "--only names bpr, not model labels of suite cli (pop, itemknn)"),
    ],
)
def test_benchmark_refuses_a_selection_outside_the_suite(
    tmp_path: Path, synthetic_dir: Path, flags: list[str], message: str
) -> None:
    suite = _two_seed_suite(tmp_path, synthetic_dir)
    out = tmp_path / "out"
    for dry in ([], ["--dry-run"]):
        result = CliRunner().invoke(app, ["benchmark", str(suite), "--out", str(out), "--quiet", *flags, *dry])
        assert result.exit_code != 0 and message in str(result.exception)
        assert not out.exists()


def test_benchmark_dry_run_lists_only_the_selected_runs(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = _two_seed_suite(tmp_path, synthetic_dir)
    dry = CliRunner().invoke(app, ["benchmark", str(suite), "--out", str(tmp_path / "out"), "--dry-run", "--seeds", "5"])
    assert dry.exit_code == 0, dry.output
    assert "synthetic__pop__seed5" in dry.output and "synthetic__itemknn__seed5" in dry.output
    assert "seed3" not in dry.output


def test_benchmark_dry_run_lists_only_the_selected_searches(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = tmp_path / "suite.yaml"
    body = {"name": "cli", "datasets": [str(synthetic_dir)], "seeds": [3], "models": ["pop", "itemknn"]}
    suite.write_text(yaml.safe_dump({**body, "search": {"trials": 2, "models": ["itemknn"]}}))
    out = str(tmp_path / "out")
    tuned = CliRunner().invoke(app, ["benchmark", str(suite), "--out", out, "--dry-run", "--only", "itemknn"])
    assert tuned.exit_code == 0, tuned.output
    assert "search synthetic__itemknn (2 trials)" in tuned.output
    untuned = CliRunner().invoke(app, ["benchmark", str(suite), "--out", out, "--dry-run", "--only", "pop"])
    assert untuned.exit_code == 0, untuned.output
    assert "search" not in untuned.output and "synthetic__pop__seed3" in untuned.output


def test_search_command_writes_the_best_point(tmp_path: Path, synthetic_dir: Path) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "model=ease",
            f"dataset={synthetic_dir}",
            "--out",
            str(out),
            "--trials",
            "2",
            "--quiet",
            "--space",
            '{"model.l2": ["log", 1, 1000]}',
        ],
    )
    assert result.exit_code == 0, result.output
    best = json.loads((out / "best.json").read_text())
    assert set(best["best_params"]) == {"model.l2"} and best["complete"] == 2
    assert "train it: modalrec train model=ease" in result.output.replace("\n", " ")
