"""What the terminal and train.log show for a real `modalrec train`, and errors with brackets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "modalrec", *args], capture_output=True, text=True, timeout=300, env=env)


def test_quiet_training_shows_one_line_per_epoch_and_train_log_records_it(synthetic_dir: Path, tmp_path: Path) -> None:
    out = _cli(
        "train", "model=bpr", f"dataset={synthetic_dir}", "train.epochs=3", f"run.dir={tmp_path}", "run.name=bpr", "--quiet"
    )
    assert out.returncode == 0, out.stderr
    epoch_lines = [line for line in out.stderr.splitlines() if "epoch " in line and "/3" in line]
    assert len(epoch_lines) == 3, out.stderr
    assert "run " not in out.stderr  # INFO lines other than progress stay off the terminal under --quiet
    log = (tmp_path / "bpr" / "train.log").read_text()
    for n in (1, 2, 3):
        assert f"epoch {n}/3  loss" in log
    assert f"run {tmp_path / 'bpr'}: bpr on" in log and "test of epoch" in log


def test_closed_form_model_reports_its_fit(synthetic_dir: Path, tmp_path: Path) -> None:
    out = _cli("train", "model=pop", f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "run.name=pop", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "fitted in closed form" in out.stderr
    assert "fitted in closed form" in (tmp_path / "pop" / "train.log").read_text()


def test_error_messages_keep_their_square_brackets(tmp_path: Path) -> None:
    out = _cli("train", "model=[serve]", f"run.dir={tmp_path}")
    assert out.returncode == 2
    assert "unknown model '[serve]'" in out.stderr and "Traceback" not in out.stderr
    listed = _cli("datasets", "--details")
    assert listed.returncode == 0 and "modalrec[text]" in listed.stdout
