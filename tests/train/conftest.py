"""Fixtures for the training / CLI tests: a small synthetic dataset saved to disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved synthetic dataset (200 users, 100 items, planted clusters and successor walks)."""
    path = tmp_path_factory.mktemp("data") / "synthetic"
    save_dataset(make_synthetic(n_users=200, n_items=100, seed=0), path)
    return path
