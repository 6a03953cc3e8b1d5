"""Feature extraction: text templates, image inputs, the content-hash cache, bad inputs, fill and provenance."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from feature_fakes import CountingTextEncoder, MeanColourEncoder

from modalrec.data.dataset import Dataset
from modalrec.data.features import (
    FeatureCache,
    add_feature,
    encode_items,
    item_images,
    item_texts,
    make_encoder,
)
from modalrec.data.features.encoders import EncoderUnavailableError, require
from modalrec.data.storage import load_saved_dataset, save_dataset
from modalrec.errors import ModalRecError, UnknownNameError


def small_dataset(n_items: int = 6) -> Dataset:
    users = np.repeat(np.arange(3), n_items)
    items = np.tile(np.arange(n_items), 3)
    ds = Dataset.from_raw("tiny", users, items, item_universe=np.arange(n_items).astype(str))
    ds.item_meta = {
        "title": ["Alien", "Aliens", "Heat", "", None, "Up"][:n_items],
        "categories": [["Horror", "Sci-Fi"], ["Sci-Fi"], ["Crime"], [], [], ["Animation"]][:n_items],
    }
    return ds


def test_template_joins_lists_drops_dangling_separators_and_marks_empty_text_missing() -> None:
    texts = item_texts(small_dataset(), "{title}. {categories}.")
    assert texts[:3] == ["Alien. Horror, Sci-Fi.", "Aliens. Sci-Fi.", "Heat. Crime."]
    assert texts[3] is None and texts[4] is None  # empty title and no genres: nothing to encode
    assert item_texts(small_dataset(), "[{item}] {title}")[0] == "[0] Alien"


def test_template_with_an_unknown_field_names_the_fields_that_exist() -> None:
    with pytest.raises(ModalRecError, match="description.*title"):
        item_texts(small_dataset(), "{title}. {description}")


def test_cache_hit_skips_the_encoder_and_returns_the_same_matrix(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    texts = item_texts(small_dataset(), "{title}. {categories}.")
    first_encoder = CountingTextEncoder()
    first = encode_items(first_encoder, texts, batch_size=2, cache=cache, progress=False)
    assert first_encoder.encoded == 4 and not first.cache_hit
    assert first.encoded.tolist() == [True, True, True, False, False, True]
    second_encoder = CountingTextEncoder()
    second = encode_items(second_encoder, texts, batch_size=2, cache=cache, progress=False)
    assert second.cache_hit and second_encoder.encoded == 0
    np.testing.assert_array_equal(first.values, second.values)


def test_cache_key_changes_with_inputs_and_encoder_version(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    texts = item_texts(small_dataset(), "{title}. {categories}.")
    encode_items(CountingTextEncoder(), texts, cache=cache, progress=False)
    changed_text = CountingTextEncoder()
    encode_items(changed_text, [*texts[:-1], "Up. Animation, Family."], cache=cache, progress=False)
    assert changed_text.encoded == 4
    new_version = CountingTextEncoder(version="2")
    assert not encode_items(new_version, texts, cache=cache, progress=False).cache_hit
    assert len([p for p in cache.root.iterdir() if not p.name.startswith(".")]) == 3


def test_a_tampered_cache_entry_is_rebuilt_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FeatureCache(tmp_path / "cache")
    texts = ["alpha", "beta", "gamma"]
    clean = encode_items(CountingTextEncoder(), texts, cache=cache, progress=False)
    (entry,) = list(cache.root.iterdir())
    values = np.load(entry / "values.npy")
    values[0] += 1.0
    np.save(entry / "values.npy", values)
    encoder = CountingTextEncoder()
    with caplog.at_level(logging.WARNING):
        rebuilt = encode_items(encoder, texts, cache=cache, progress=False)
    assert encoder.encoded == 3 and not rebuilt.cache_hit
    assert "do not match their recorded hashes" in caplog.text
    np.testing.assert_array_equal(rebuilt.values, clean.values)
    meta = json.loads((entry / "entry.json").read_text())
    meta["key"] = "0" * 64
    (entry / "entry.json").write_text(json.dumps(meta))
    assert not encode_items(CountingTextEncoder(), texts, cache=cache, progress=False).cache_hit


def test_a_crash_mid_run_leaves_no_cache_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    encoder = CountingTextEncoder()
    encoder.fail_after = 2
    with pytest.raises(RuntimeError, match="mid-run"):
        encode_items(encoder, ["a", "b", "c", "d", "e"], batch_size=2, cache=cache, progress=False)
    assert not cache.root.exists() or not list(cache.root.iterdir())
    assert not encode_items(CountingTextEncoder(), ["a", "b", "c", "d", "e"], cache=cache, progress=False).cache_hit


def test_unreadable_and_truncated_images_are_skipped_and_listed(image_folder: Path, tmp_path: Path) -> None:
    ds = small_dataset()
    paths = item_images(ds, image_folder)
    assert paths[5] is None  # no file: missing, not an error
    encoder = MeanColourEncoder()
    result = encode_items(
        encoder, paths, batch_size=4, cache=FeatureCache(tmp_path / "cache"), progress=False, item_ids=ds.item_ids.tolist()
    )
    assert result.encoded.tolist() == [True, True, True, False, False, False]
    assert sorted(s["item"] for s in result.skipped) == ["3", "4"]
    assert all(s["reason"] for s in result.skipped)
    np.testing.assert_allclose(result.values[:3], np.eye(3), atol=0.02)  # solid red, green, blue
    again = encode_items(MeanColourEncoder(), paths, cache=FeatureCache(tmp_path / "cache"), progress=False)
    assert again.cache_hit and [s["item"] for s in again.skipped] == [s["item"] for s in result.skipped]


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_fill_policy_provenance_and_storage_round_trip(fill: str, tmp_path: Path) -> None:
    ds = small_dataset()
    out, _ = add_feature(
        ds,
        "text",
        CountingTextEncoder(),
        item_texts(ds, "{title}"),
        fill=fill,
        progress=False,
        cache=FeatureCache(tmp_path / "cache"),
        template="{title}",
    )
    feature = out.features["text"]
    present = feature.values[feature.mask]
    expected_fill = present.mean(axis=0) if fill == "mean" else np.zeros(26)
    np.testing.assert_allclose(feature.values[~feature.mask], np.tile(expected_fill, (2, 1)), rtol=1e-6)
    record = out.meta["features"]["text"]
    assert record["encoder"] == "fake:letters" and record["fill"] == fill and record["dim"] == 26
    assert (record["present"], record["missing"], record["missing_input"], record["skipped_unreadable"]) == (4, 2, 2, 0)
    assert record["template"] == "{title}"
    loaded = load_saved_dataset(save_dataset(out, tmp_path / "saved"))
    np.testing.assert_array_equal(loaded.features["text"].values, feature.values)
    assert loaded.features["text"].provenance["fill"] == fill


def test_inputs_must_match_the_items_and_fill_must_be_known() -> None:
    ds = small_dataset()
    with pytest.raises(ModalRecError, match="5 inputs"):
        add_feature(ds, "text", CountingTextEncoder(), ["a"] * 5, progress=False)
    with pytest.raises(ModalRecError, match="fill"):
        add_feature(ds, "text", CountingTextEncoder(), ["a"] * 6, fill="median", progress=False)


def test_encoder_names_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="efficientnet-lite0"):
        make_encoder("resnet", "image")
    with pytest.raises(ModalRecError, match="not image"):
        make_encoder("minilm", "image")
    with pytest.raises(EncoderUnavailableError, match=r"modalrec\[image\]"):
        require("no_such_module_here", "image", "pillow")
    with pytest.raises(EncoderUnavailableError, match="weights file"):
        make_encoder("open_clip:ViT-B-32", "text")
