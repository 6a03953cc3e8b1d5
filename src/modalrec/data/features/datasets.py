"""Multimodal named datasets: a base dataset plus the features its recipe builds.

``ml-1m-mm`` is ML-1M with title/genre text features and poster image features; ``ml-100k-plot``
is ML-100K with IMDb plot text; ``amazon-scientific-mm`` is the UniSRec Scientific set with its item
text encoded. Loading one of them through :func:`modalrec.data.registry.load_dataset` builds the
features on first use (progress bar; both modalities of ML-1M take a few minutes on two CPU cores)
and saves the result with the processed datasets, so later loads are instant and need no encoder
packages. ``modalrec features extract dataset=<name> key=value...`` rebuilds them with other settings.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modalrec.data.dataset import Dataset
from modalrec.data.download import DownloadError, cache_dir, download
from modalrec.data.features.cache import FeatureCache
from modalrec.data.features.config import (
    FeatureConfig,
    ImageFeatureConfig,
    TextFeatureConfig,
    image_encoder,
    text_encoder,
)
from modalrec.data.features.extract import add_feature, item_images, item_texts
from modalrec.data.registry import DatasetUnavailableError, LoadRequest, load_dataset, shared_data_dir
from modalrec.errors import ModalRecError

log = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "brand", "categories", "description", "text")  # the default template, in this order
MODALITIES = ("text", "image")


@dataclass
class Recipe:
    """How a multimodal dataset is made: its base dataset, default feature settings, extra item metadata."""

    base: str
    defaults: Callable[[], FeatureConfig]
    enrich: Callable[[Dataset, Path | None], Dataset] | None = None  # adds item metadata (e.g. plot text)
    notes: dict[str, Any] = field(default_factory=dict)


def default_template(ds: Dataset) -> str:
    """``"{title}. {categories}. ..."`` over the text fields the dataset has."""
    present = [f for f in TEXT_FIELDS if f in ds.item_meta]
    if not present:
        raise ModalRecError(
            f"dataset '{ds.name}' has no item text field ({', '.join(TEXT_FIELDS)}); its item fields are "
            f"{', '.join(sorted(ds.item_meta)) or '(none)'}; pass text.template='{{field}} ...'"
        )
    return " ".join(f"{{{f}}}." for f in present)


def fetch_images(urls: list[str | None], folder: Path, retries: int = 3) -> list[Path | None]:
    """Download each URL once into ``folder`` (named by the URL's sha1), retrying with back-off.

    URLs that still fail are logged and give None (the item counts as missing an image).
    """
    paths: list[Path | None] = []
    failures = 0
    for url in urls:
        if not url:
            paths.append(None)
            continue
        target = folder / (hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest() + Path(url.split("?")[0]).suffix[:5])
        for attempt in range(retries):
            if target.is_file():
                break
            try:
                download(url, target, sha256=None, progress=False)
            except DownloadError as exc:
                if attempt == retries - 1:
                    failures += 1
                    log.warning("image %s not downloaded after %d tries (%s)", url, retries, exc)
                else:
                    time.sleep(2**attempt)
        paths.append(target if target.is_file() else None)
    if failures:
        log.warning("%d of %d image URLs could not be downloaded", failures, sum(u is not None for u in urls))
    return paths


def _image_inputs(ds: Dataset, cfg: FeatureConfig, home: Path) -> tuple[list[Path | None], dict[str, Any]]:
    """The image path per item and where they came from (folder, field, or downloaded URLs)."""
    image = cfg.image
    if image.download:
        if image.field is None:
            raise ModalRecError("image.download=true needs image.field=<item field holding image URLs> (e.g. image_urls)")
        urls = [(v[0] if v else None) if isinstance(v, (list, tuple)) else v for v in ds.item_meta.get(image.field, [])]
        if len(urls) != ds.n_items:
            raise ModalRecError(
                f"dataset '{ds.name}' has no item field '{image.field}'; its fields: {', '.join(sorted(ds.item_meta))}"
            )
        folder = home / "images" / ds.name
        return fetch_images(urls, folder), {
            "image_source": f"downloaded from item field '{image.field}'",
            "image_cache": str(folder),
        }
    paths = item_images(ds, image.folder, image.pattern, image.field)
    where = {"image_folder": str(image.folder), "pattern": image.pattern} if image.folder else {"image_field": image.field}
    return paths, where


def build_features(ds: Dataset, cfg: FeatureConfig, home: Path | None = None) -> tuple[Dataset, dict[str, dict[str, Any]]]:
    """Encode the modalities ``cfg`` asks for and attach them; returns the dataset and a report per feature."""
    unknown = [m for m in cfg.modalities if m not in MODALITIES]
    if unknown or not cfg.modalities:
        raise ModalRecError(f"modalities must name text and/or image, got {cfg.modalities or '(none)'}")
    home = home or cache_dir()
    cache = FeatureCache(cfg.cache or home / "features")
    report: dict[str, dict[str, Any]] = {}
    for modality in cfg.modalities:
        inputs: Sequence[str | Path | None]
        section: TextFeatureConfig | ImageFeatureConfig
        if modality == "text":
            template = cfg.text.template or default_template(ds)
            inputs, where = item_texts(ds, template), {"template": template}
            encoder, section = text_encoder(cfg), cfg.text
        else:
            inputs, where = _image_inputs(ds, cfg, home)
            encoder, section = image_encoder(cfg), cfg.image
        ds, result = add_feature(
            ds,
            section.name,
            encoder,
            inputs,
            fill=cfg.fill,
            batch_size=section.batch_size,
            cache=cache,
            progress=cfg.progress,
            **where,
        )
        present = int(result.encoded.sum())
        report[section.name] = {
            **ds.meta["features"][section.name],
            "cache_hit": result.cache_hit,
            "items_per_second": round(present / result.seconds, 2) if result.seconds and not result.cache_hit else None,
        }
    return ds, report


# ------------------------------------------------------------------------------------------ recipes
def _shared(subpath: str) -> str | None:
    shared = shared_data_dir()
    return str(shared / subpath) if shared is not None else None


def _ml1m_mm() -> FeatureConfig:
    cfg = FeatureConfig(modalities=["text", "image"])
    cfg.text.template = "{title}. {categories}."
    cfg.image.folder = _shared("ml-1m-posters/posters")
    cfg.image.size = 160  # the posters are 185 px wide; 160 px keeps ~2 min for all of them on 2 cores
    return cfg


def _ml100k_plot() -> FeatureConfig:
    cfg = FeatureConfig(modalities=["text"])
    cfg.text.template = "{title}. {categories}. {description}"
    return cfg


def _scientific_mm() -> FeatureConfig:
    cfg = FeatureConfig(modalities=["text"])
    cfg.text.template = "{text}"
    return cfg


def _add_plots(ds: Dataset, path: Path | None) -> Dataset:
    """ML-100K with IMDb plot, director, writers and cast from ``ml-100k-details/``."""
    from modalrec.data.sources.movielens_details import DETAILS_FILE, add_details, read_details

    shared = _shared("ml-100k-details")
    folder = path or (Path(shared) if shared else None)
    if folder is None or not (folder / DETAILS_FILE).is_file():
        raise DatasetUnavailableError(
            f"'ml-100k-plot' needs {DETAILS_FILE} (repo manfredmichael/movielens-details); looked in {folder}. "
            "Put it in a folder named ml-100k-details under $MODALREC_SHARED_DATA, or pass path=<that folder>."
        )
    return add_details(ds, read_details(folder / DETAILS_FILE))


RECIPES: dict[str, Recipe] = {
    "ml-1m-mm": Recipe("ml-1m", _ml1m_mm, notes={"posters": "path= or image.folder= points at a folder of <MovieID>.jpg"}),
    "ml-100k-plot": Recipe("ml-100k", _ml100k_plot, enrich=_add_plots),
    "amazon-scientific-mm": Recipe("amazon-scientific", _scientific_mm),
}


def recipe_config(name: str) -> FeatureConfig:
    """A fresh copy of the default feature settings of multimodal dataset ``name``."""
    return copy.deepcopy(RECIPES[name].defaults())


def build_named(
    name: str, cfg: FeatureConfig, home: Path, path: Path | None = None, progress: bool = True
) -> tuple[Dataset, dict[str, dict[str, Any]]]:
    """Base dataset of ``name``'s recipe + its metadata + the features ``cfg`` asks for."""
    recipe = RECIPES[name]
    ds = load_dataset(recipe.base, data_home=home, progress=progress)
    if recipe.enrich is not None:
        ds = recipe.enrich(ds, path)
    ds, report = build_features(ds, cfg, home)
    ds.name = name
    ds.meta["source"] = {**(ds.meta.get("source") or {}), "dataset": name, "base": recipe.base, "features": "modalrec features"}
    return ds, report


def load_multimodal(request: LoadRequest) -> Dataset:
    """Registry loader of the multimodal names: builds the features on first load (see the module docstring)."""
    cfg = recipe_config(request.name)
    cfg.progress = request.progress
    if "image" in cfg.modalities:
        if request.path is not None:
            cfg.image.folder = str(request.path)
        if cfg.image.folder is None or not Path(cfg.image.folder).is_dir():
            raise DatasetUnavailableError(
                f"'{request.name}' needs its image folder ({cfg.image.folder or 'no $MODALREC_SHARED_DATA'} is not one): "
                f"load_dataset('{request.name}', path=<folder of <item>.jpg>) or "
                f"`modalrec features extract dataset={request.name} image.folder=<folder>`"
            )
    log.info("building the features of '%s' (once; later loads read the saved copy)", request.name)
    path = request.path if "image" not in cfg.modalities else None
    ds, _ = build_named(request.name, cfg, request.home, path, request.progress)
    return ds
