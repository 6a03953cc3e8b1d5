"""Warnings are said once, in words (no source path, no code line), and a finished run re-opened by
evaluate / recommend does not repeat the notes its training already gave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic

NOTE = "cold valid/test interactions"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modalrec", *args], capture_output=True, text=True, timeout=300)


def test_a_data_note_is_said_once_in_words_and_not_again_on_reopen(tmp_path: Path) -> None:
    # many items and short histories: the temporal split leaves items seen only in valid/test (cold)
    save_dataset(make_synthetic(n_users=40, n_items=300, length=(4, 6), seed=1), tmp_path / "sparse")
    run = tmp_path / "runs" / "pop"
    trained = _cli(
        "train",
        "model=pop",
        f"dataset={tmp_path / 'sparse'}",
        f"run.dir={tmp_path / 'runs'}",
        "run.name=pop",
        "train.progress=false",
    )
    assert trained.returncode == 0, trained.stderr
    said = " ".join(trained.stderr.split())
    assert said.count(NOTE) == 1, trained.stderr
    assert "UserWarning" not in said and ".py:" not in said
    assert NOTE in (run / "train.log").read_text()  # the log file keeps it too
    for command in (["evaluate", str(run)], ["recommend", str(run), "--user", "0"]):
        again = _cli(*command)
        assert again.returncode == 0, again.stderr
        assert NOTE not in again.stderr and "Warning" not in again.stderr, again.stderr
