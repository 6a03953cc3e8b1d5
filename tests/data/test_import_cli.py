"""A user's own interaction table from the command line: `modalrec data import` and `dataset=FILE`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop.csv"
SHOP_COLUMNS = ["--user", "customer", "--item", "product", "--time", "bought_at", "--rating", "stars"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "modalrec", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_import_the_example_then_train_and_recommend(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    imported = _cli("data", "import", str(EXAMPLE), *SHOP_COLUMNS, "--out", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "users: 40" in imported.stdout and "interactions: 327" in imported.stdout
    assert f"dataset={out}" in imported.stdout
    train = _cli("train", "model=ease", f"dataset={out}", f"run.dir={tmp_path / 'runs'}", "run.name=ease", "--quiet")
    assert train.returncode == 0, train.stderr
    top = _cli("recommend", str(tmp_path / "runs" / "ease"), "--user", "c01", "-k", "3")
    assert top.returncode == 0, top.stderr
    rows = [line for line in top.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3 and all("-" in row.split("│")[2] for row in rows)  # product ids such as tea-01


def test_import_with_an_item_table_gives_titles(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    items = EXAMPLE.with_name("shop_items.csv")
    imported = _cli("data", "import", str(EXAMPLE), *SHOP_COLUMNS, "--items", str(items), "--title", "name", "--out", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "item metadata ['category', 'title'] for 34 of 34 items" in imported.stdout
    train = _cli("train", "model=pop", f"dataset={out}", f"run.dir={tmp_path / 'runs'}", "run.name=pop", "--quiet")
    assert train.returncode == 0, train.stderr
    top = _cli("recommend", str(tmp_path / "runs" / "pop"), "--user", "c01", "-k", "3")
    titles = {line.strip() for line in items.read_text().splitlines()[1:]}
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in top.stdout.splitlines() if line.startswith("│")]
    assert len(cells) == 3 and all(f"{item},{title}," in "\n".join(titles) for _, item, title, _ in cells)


def test_a_file_path_is_a_dataset_with_a_column_mapping(tmp_path: Path) -> None:
    mapping = ["dataset.columns.user=customer", "dataset.columns.item=product", "dataset.columns.timestamp=bought_at"]
    info = _cli("data", "info", str(EXAMPLE), *mapping)
    assert info.returncode == 0, info.stderr
    assert "interactions │      327" in info.stdout
    train = _cli("train", "model=pop", f"dataset={EXAMPLE}", *mapping, f"run.dir={tmp_path}", "run.name=pop", "--quiet")
    assert train.returncode == 0, train.stderr
    wrong = _cli("data", "info", str(EXAMPLE), "dataset.columns.user=client")
    assert (
        wrong.returncode == 2 and "column 'client' (for user) is not in the file; columns are: customer, product" in wrong.stderr
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; expected a header row"),
        ("customer,product,bought_at,stars\n", "holds no interactions"),
        ("client,product\nc1,p1\n", "column 'customer' (for user) is not in the file; columns are: client, product"),
    ],
)
def test_bad_files_exit_2_naming_the_file_and_write_nothing(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text(content)
    out = tmp_path / "out"
    result = _cli("data", "import", str(bad), *SHOP_COLUMNS, "--out", str(out))
    assert result.returncode == 2
    assert f"error: {bad}: {message}" in " ".join(result.stderr.split())  # the whole message, however rich wrapped it
    assert "Traceback" not in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv"]


def test_import_refuses_an_out_folder_that_holds_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = _cli("data", "import", str(EXAMPLE), *SHOP_COLUMNS, "--out", str(tmp_path))
    assert result.returncode == 2 and "exists and is not a saved dataset" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
