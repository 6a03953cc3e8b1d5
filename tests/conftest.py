"""Fixtures shared by every test folder: a saved synthetic dataset and a recorder of evaluated splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.eval.ranking import Evaluator


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved synthetic dataset (200 users, 100 items, planted clusters and successor walks)."""
    path = tmp_path_factory.mktemp("data") / "synthetic"
    save_dataset(make_synthetic(n_users=200, n_items=100, seed=0), path)
    return path


@pytest.fixture
def evaluated_phases(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The split (VALID / TEST) of every ``Evaluator.evaluate`` call made during the test, in order."""
    phases: list[int] = []
    original = Evaluator.evaluate

    def recording(self, model, phase):
        phases.append(phase)
        return original(self, model, phase)

    monkeypatch.setattr(Evaluator, "evaluate", recording)
    return phases
