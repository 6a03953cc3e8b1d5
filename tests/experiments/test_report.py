"""Tables, plots and the HTML report built from (fabricated) finished run directories."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.errors import ModalRecError
from modalrec.experiments.collect import load_runs
from modalrec.experiments.report import build_report


def _csv_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as handle:
        return {(r["model"], r["metric"]): r for r in csv.DictReader(handle)}


def test_tables_hold_the_run_directories_numbers(fake_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    report = build_report([tmp_path / "runs"], tmp_path / "report", metrics=["ndcg@10", "recall@20", "gini@10"])
    rows = _csv_rows(report.csv)
    for label, paths in fake_runs.items():
        for metric in ("ndcg@10", "recall@20", "gini@10"):
            values = [json.loads((p / "results.json").read_text())["test"][metric] for p in paths]
            row = rows[(label, metric)]
            assert float(row["mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(row["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert row["n_seeds"] == "2"
    # best per column: strong and twin tie on accuracy; gini is lower-is-better so 'weak' (lowest) wins
    assert {k[0] for k, r in rows.items() if r["best"] == "1" and k[1] == "ndcg@10"} == {"strong", "twin"}
    assert {k[0] for k, r in rows.items() if r["best"] == "1" and k[1] == "gini@10"} == {"weak"}
    md = report.markdown.read_text()
    strong_mean = np.mean([json.loads((p / "results.json").read_text())["test"]["ndcg@10"] for p in fake_runs["strong"]])
    assert f"**{strong_mean:.4f} ± " in md


def test_significance_marks_and_p_values_follow_the_per_user_files(fake_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    report = build_report([tmp_path / "runs"], tmp_path / "report", metrics=["ndcg@10"])
    rows = _csv_rows(report.csv)
    assert rows[("strong", "ndcg@10")]["reference"] == "strong"
    # weak: clearly worse -> both marks; twin: identical per user (another order) -> p = 1, no mark
    assert rows[("weak", "ndcg@10")]["marks"] == "*†"
    assert rows[("twin", "ndcg@10")]["marks"] == "" and float(rows[("twin", "ndcg@10")]["t_p"]) == 1.0

    # the raw p-value is scipy's paired t-test over users of seed-averaged values
    def averaged(label: str) -> np.ndarray:
        arrays = []
        for p in fake_runs[label]:
            data = np.load(p / "per_user_test.npz")
            arrays.append(data["ndcg@10"][np.argsort(data["users"])])
        return np.mean(arrays, axis=0)

    expected = stats.ttest_rel(averaged("weak"), averaged("strong")).pvalue
    assert float(rows[("weak", "ndcg@10")]["t_p"]) == pytest.approx(expected, rel=1e-9)
    assert float(rows[("weak", "ndcg@10")]["t_p_holm"]) == pytest.approx(min(1.0, 2 * expected), rel=1e-9)


def test_plots_are_valid_pngs_and_the_html_embeds_them(fake_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    report = build_report([tmp_path / "runs"], tmp_path / "report")
    kinds = report.plots["toy"]
    assert set(kinds) == {"valid_curves", "metric_vs_k", "accuracy_vs_time", "per_user"}
    for path in kinds.values():
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    page = report.html.read_text()
    assert page.count("data:image/png;base64,") == 4
    for label in fake_runs:
        assert f"<th>{label}</th>" in page
    assert "full ranking" in page and "Holm" in page


def test_labels_come_from_the_suite_manifest_and_collisions_do_not_merge(
    fake_runs: dict[str, list[Path]], tmp_path: Path
) -> None:
    manifest = {
        "runs": {
            p.name: {"label": f"{label}-tuned", "dataset": "toy", "seed": i + 1}
            for label, paths in fake_runs.items()
            for i, p in enumerate(paths)
        }
    }
    (tmp_path / "suite.json").write_text(json.dumps(manifest))
    records = load_runs([tmp_path])
    assert {r.label for r in records} == {"strong-tuned", "weak-tuned", "twin-tuned"}
    # the same model and seed twice outside a suite: labelled by directory, never averaged together
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a", "b"):
        shutil.copytree(fake_runs["weak"][0], other / name)
    assert sorted(r.label for r in load_runs([other])) == ["a", "b"]


def test_errors_for_paths_without_runs(tmp_path: Path) -> None:
    with pytest.raises(ModalRecError, match="not a finished run"):
        build_report([tmp_path / "nothing"], tmp_path / "out")


def test_report_command(fake_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(out), "--metrics", "ndcg@10,recall@10"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "results.md").exists()
    assert "strong" in result.output


def test_diagnostics_plot_only_when_runs_recorded_diagnostics(fake_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    """Runs whose metrics.jsonl hold per-epoch model diagnostics get one more plot (loss terms + diagnostics)."""
    path = fake_runs["strong"][0] / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for i, line in enumerate(lines):
        line.update(loss=2.0 - 0.1 * i, ce=1.9 - 0.1 * i, diagnostics={"kl_per_dim": 0.1 * i, "retrieval": 0.2 + 0.1 * i})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = build_report([tmp_path / "runs"], tmp_path / "report")
    plot = report.plots["toy"]["diagnostics"]
    assert plot.name == "toy-diagnostics.png"
    with Image.open(plot) as image:
        assert image.size[0] > 600 and image.size[1] > 400  # 4 panels: train loss, train ce, kl_per_dim, retrieval
    assert report.html.read_text().count("data:image/png;base64,") == 5
    from modalrec.experiments import plots

    assert plots.has_diagnostics({"strong": load_runs([fake_runs["strong"][0]])})
    assert not plots.has_diagnostics({"weak": load_runs(fake_runs["weak"])})
