"""The modalrec CLI in a real subprocess: help, train, recommend, compare, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modalrec", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "command", [[], ["train"], ["evaluate"], ["recommend"], ["data", "info"], ["models"], ["datasets"], ["compare"]]
)
def test_help_is_useful(command: list[str]) -> None:
    out = _cli(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout and len(out.stdout) > 200


def test_models_lists_both_families() -> None:
    out = _cli("models")
    assert out.returncode == 0
    for name in ("pop", "itemknn", "ease", "bpr", "lightgcn", "sasrec", "gru4rec"):
        assert name in out.stdout
    assert "sequential" in out.stdout and "general" in out.stdout


def test_datasets_lists_the_named_datasets() -> None:
    out = _cli("datasets")
    assert out.returncode == 0, out.stderr
    for name in ("ml-100k", "ml-1m", "ml-1m-diffrec-clean", "amazon-scientific", "synthetic"):
        assert name in out.stdout


def test_user_mistakes_give_one_line_errors_without_traceback(synthetic_dir: Path, tmp_path: Path) -> None:
    cases = [
        (["train", "model=sasrek"], "Did you mean 'sasrec'"),
        (["train", "model=bpr", "train.epochs=lots"], "'train.epochs' expects an integer"),
        (["train", "model=bpr", "train.lrr=1"], "Did you mean 'train.lr'"),
        (["train", "model=bpr", "dataset=ml-1mm"], "unknown dataset 'ml-1mm'"),
        (["evaluate", str(tmp_path)], "not a run directory"),
    ]
    for args, message in cases:
        out = _cli(*args, f"run.dir={tmp_path}" if args[0] == "train" else "--split=test")
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_train_recommend_compare(synthetic_dir: Path, tmp_path: Path) -> None:
    common = [f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "train.progress=false"]
    seq = _cli("train", "model=sasrec", "train.epochs=3", "model.dim=16", "run.name=seq", *common)
    assert seq.returncode == 0, seq.stderr
    assert "test" in seq.stdout and "ndcg@10" in seq.stdout
    pop = _cli("train", "model=pop", "run.name=pop", *common)
    assert pop.returncode == 0, pop.stderr
    ease = _cli("train", "model=ease", "run.name=ease", *common)
    assert ease.returncode == 0, ease.stderr

    rec = _cli("recommend", str(tmp_path / "ease"), "--user", "3", "-k", "5")
    assert rec.returncode == 0, rec.stderr
    assert "top-5 for user 3" in rec.stdout
    assert rec.stdout.count("(cluster 3)") >= 4  # titles shown; user 3 walks through cluster 3's items
    seq_rec = _cli("recommend", str(tmp_path / "seq"), "--user", "3", "--user", "4", "-k", "5")
    assert seq_rec.returncode == 0 and "top-5 for user 4" in seq_rec.stdout

    unknown = _cli("recommend", str(tmp_path / "seq"), "--user", "no-such-user")
    assert unknown.returncode == 2 and "unknown user id 'no-such-user'" in unknown.stderr

    table = _cli("compare", str(tmp_path / "ease"), str(tmp_path / "pop"), "--metrics", "ndcg@10,recall@20")
    assert table.returncode == 0, table.stderr
    assert "ease" in table.stdout and "pop" in table.stdout and "recall@20" in table.stdout
    # sasrec was split leave-one-out, pop temporally: not comparable unless forced, and then loudly
    mixed = _cli("compare", str(tmp_path / "seq"), str(tmp_path / "pop"))
    assert mixed.returncode == 2 and "split" in mixed.stderr and "--force" in mixed.stderr, mixed.stderr
    forced = _cli("compare", str(tmp_path / "seq"), str(tmp_path / "pop"), "--force", "--metrics", "ndcg@10")
    assert forced.returncode == 0 and "warning" in forced.stderr and "loo" in forced.stderr and "seq" in forced.stdout

    again = _cli("evaluate", str(tmp_path / "seq"), "--ks", "5,50")
    assert again.returncode == 0, again.stderr
    assert "@50" in again.stdout and "ndcg" in again.stdout
