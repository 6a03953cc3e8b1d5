"""Feature matrices addressed by raw item id (MicroLens / FindRec: row = id - 1), and their config keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalrec.config import resolve
from modalrec.data.dataset import Dataset
from modalrec.data.sources.feature_files import attach_feature_file
from modalrec.errors import FeatureError


def toy(item_ids: list[str]) -> Dataset:
    return Dataset.from_raw("toy", np.zeros(len(item_ids), dtype=np.int64), np.array(item_ids), item_universe=np.array(item_ids))


def matrix(tmp_path: Path, rows: int, dim: int) -> Path:
    path = tmp_path / "feat.npy"
    np.save(path, np.arange(rows * dim, dtype=np.float32).reshape(rows, dim) / 10)
    return path


def test_microlens_rows_are_raw_id_minus_one_and_dims_come_from_the_array(tmp_path: Path) -> None:
    path = matrix(tmp_path, 6, 3)
    ds = attach_feature_file(toy(["5", "1", "9", "abc"]), "image", path)
    feature = ds.features["image"]
    values = np.load(path)
    assert feature.dim == 3
    np.testing.assert_array_equal(feature.values[0], values[4])  # raw id 5 -> row 4
    np.testing.assert_array_equal(feature.values[1], values[0])
    assert feature.mask.tolist() == [True, True, False, False]  # 9 is out of range, abc is not a number
    assert (feature.values[2:] == 0).all()
    same = attach_feature_file(toy(["5", "1"]), "image", path, rows="token")
    np.testing.assert_array_equal(same.features["image"].values[0], values[5])
    mapped = attach_feature_file(toy(["a", "b"]), "image", path, rows={"b": 2})
    assert mapped.features["image"].mask.tolist() == [False, True]
    np.testing.assert_array_equal(mapped.features["image"].values[1], values[2])


def test_bad_feature_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="does not exist"):
        attach_feature_file(toy(["1"]), "image", tmp_path / "missing.npy")
    with pytest.raises(FeatureError, match="no item"):
        attach_feature_file(toy(["x", "y"]), "image", matrix(tmp_path, 3, 2))
    np.save(tmp_path / "flat.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(FeatureError, match="2-D"):
        attach_feature_file(toy(["1"]), "image", tmp_path / "flat.npy")
    nan = np.zeros((2, 2), dtype=np.float32)
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(FeatureError, match="NaN"):
        attach_feature_file(toy(["1", "2"]), "image", tmp_path / "nan.npy")
    with pytest.raises(FeatureError, match="row rule"):
        attach_feature_file(toy(["1"]), "image", matrix(tmp_path, 3, 2), rows="token+1")


def test_feature_files_are_config_keys() -> None:
    cfg = resolve(["model=findrec", "dataset.feature_files.image=/data/img.npy", "dataset.feature_rows=token"])
    assert cfg.dataset.feature_files == {"image": "/data/img.npy"} and cfg.dataset.feature_rows == "token"
    assert cfg.train.seq_target == "last" and cfg.train.optimizer == "adamw"  # FindRec's released trainer settings
