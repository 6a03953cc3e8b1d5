"""Every suite shipped in suites/ loads and validates (names, keys, splits, search spaces) without any data present,
so an edit that breaks one fails here rather than hours into a benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalrec.experiments.suite import Suite

SUITES = sorted((Path(__file__).resolve().parents[2] / "suites").glob("*.yaml"))


def test_the_suites_folder_is_found() -> None:
    assert len(SUITES) >= 10


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_a_shipped_suite_validates(path: Path) -> None:
    suite = Suite.load(path)
    suite.validate()
    assert suite.plan(), f"{path.name} plans no run"
