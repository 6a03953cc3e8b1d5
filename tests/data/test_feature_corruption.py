"""Noisy multimodal inputs: dataset.feature_noise corrupts a share of the items' content, the same items in every
modality, at the feature's scale (gaussian) or by permuting their rows (shuffle); bad settings are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalrec.config import resolve
from modalrec.data.features.corrupt import corrupt_features
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.errors import ConfigError, ModalRecError
from modalrec.train.experiment import prepare_data


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(n_users=30, n_items=200, n_clusters=4, feature_dims={"text": 6, "image": 4}, seed=0)


def _changed(before, after) -> np.ndarray:
    return (before.values != after.values).any(axis=1)


@pytest.mark.parametrize("kind", ["gaussian", "shuffle"])
def test_the_same_share_of_items_is_corrupted_in_every_modality(ds, kind: str) -> None:
    out = corrupt_features(ds, 0.3, kind, seed=1)
    changed = {name: _changed(ds.features[name], out.features[name]) for name in ds.features}
    assert changed["text"].sum() == 60 and np.array_equal(changed["text"], changed["image"])
    assert out.features["text"].provenance["corruption"] == {"p": 0.3, "kind": kind, "seed": 1, "items": 60}
    assert np.array_equal(corrupt_features(ds, 0.3, kind, seed=1).features["text"].values, out.features["text"].values)
    assert not np.array_equal(corrupt_features(ds, 0.3, kind, seed=2).features["text"].values, out.features["text"].values)
    assert corrupt_features(ds, 0.0, kind) is ds
    assert _changed(ds.features["text"], corrupt_features(ds, 1.0, kind, seed=1).features["text"]).all()


def test_gaussian_noise_keeps_the_feature_scale_and_shuffle_keeps_the_rows(ds) -> None:
    noisy = corrupt_features(ds, 1.0, "gaussian", seed=3).features["text"].values
    clean = ds.features["text"].values
    np.testing.assert_allclose(noisy.mean(0), clean.mean(0), atol=0.15)
    np.testing.assert_allclose(noisy.std(0), clean.std(0), rtol=0.2)
    shuffled = corrupt_features(ds, 0.5, "shuffle", seed=3)
    moved = _changed(ds.features["text"], shuffled.features["text"])
    assert {tuple(r) for r in shuffled.features["text"].values[moved]} == {tuple(r) for r in clean[moved]}
    # an item's two modalities move together: its text and image rows come from the same other item
    text_source = {tuple(r): i for i, r in enumerate(clean)}
    image_source = {tuple(r): i for i, r in enumerate(ds.features["image"].values)}
    for item in np.flatnonzero(moved):
        assert (
            text_source[tuple(shuffled.features["text"].values[item])]
            == image_source[tuple(shuffled.features["image"].values[item])]
            != item
        )


def test_the_run_config_applies_it_and_refuses_bad_values(ds, tmp_path: Path) -> None:
    save_dataset(ds, tmp_path / "data")
    cfg = resolve(
        ["model=findrec", f"dataset={tmp_path / 'data'}", "dataset.feature_noise=0.5", "dataset.feature_noise_kind=shuffle"]
    )
    loaded, _ = prepare_data(cfg, "sequential")
    assert loaded.features["text"].provenance["corruption"]["items"] == 100
    for bad, key in (("dataset.feature_noise=1.5", "feature_noise"), ("dataset.feature_noise_kind=blur", "feature_noise_kind")):
        with pytest.raises(ModalRecError, match=key):
            resolve(["model=findrec", f"dataset={tmp_path / 'data'}", bad])
    with pytest.raises(ConfigError, match="has none"):
        corrupt_features(make_synthetic(n_users=10, n_items=20, seed=0), 0.5)
