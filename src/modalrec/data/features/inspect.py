"""A look at item features: coverage, norms, neighbour agreement, a 2-D map and nearest neighbours.

:func:`feature_summary` gives numbers a person can read in a terminal; :func:`neighbour_agreement`
measures whether nearest neighbours share a metadata label (e.g. a genre) more often than random
items do; :func:`plot_features` writes one PNG with a 2-D projection per feature coloured by a
metadata field, and the nearest neighbours of a few items by title; :func:`contact_sheet` shows
the neighbours' images themselves (posters are licensed artwork: keep such sheets local).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modalrec.data.dataset import Dataset
from modalrec.errors import ModalRecError

PROJECTIONS = ("pca", "tsne")


def _unit_rows(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, 1e-12)


def _labels(ds: Dataset, field: str) -> list[set[str]]:
    """Each item's labels from a metadata column (a list column gives several)."""
    if field not in ds.item_meta:
        raise ModalRecError(
            f"dataset '{ds.name}' has no item field '{field}'; its fields: {', '.join(sorted(ds.item_meta)) or '(none)'}"
        )
    out = []
    for value in ds.item_meta[field]:
        values = value if isinstance(value, (list, tuple)) else ([] if value is None else [value])
        out.append({str(v) for v in values})
    return out


def nearest_neighbours(values: np.ndarray, mask: np.ndarray, queries: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most cosine-similar items (with the modality) to each query, excluding itself: ``[len(queries), k]``."""
    unit = _unit_rows(np.asarray(values, dtype=np.float32))
    sims = unit[np.asarray(queries)] @ unit.T
    sims[:, ~np.asarray(mask, dtype=bool)] = -np.inf
    sims[np.arange(len(queries)), np.asarray(queries)] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    return order[:, :k]


def neighbour_agreement(
    ds: Dataset, feature: str, field: str, k: int = 10, sample: int = 2000, seed: int = 0
) -> dict[str, float]:
    """How often an item's ``k`` nearest neighbours share a ``field`` label with it, against random items.

    Measured on up to ``sample`` random items that have the feature and a label (``k`` shrinks on tiny sets).

    ``lift`` > 1 means the features put items with the same label (genre, category) close together.
    """
    f = ds.features[feature]
    labels = _labels(ds, field)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(np.asarray(f.mask) & np.array([bool(x) for x in labels]))
    if candidates.size < 3:
        raise ModalRecError(f"feature '{feature}': too few items with both the feature and a '{field}' label ({candidates.size})")
    k = min(k, candidates.size - 2)
    queries = rng.choice(candidates, size=min(sample, candidates.size), replace=False)
    neighbours = nearest_neighbours(f.values, f.mask, queries, k)
    random_items = rng.choice(candidates, size=neighbours.shape)
    share = lambda q, others: np.mean([bool(labels[q] & labels[o]) for o in others])  # noqa: E731
    knn = float(np.mean([share(q, row) for q, row in zip(queries.tolist(), neighbours.tolist())]))
    chance = float(np.mean([share(q, row) for q, row in zip(queries.tolist(), random_items.tolist())]))
    return {
        "knn_share": knn,
        "random_share": chance,
        "lift": knn / chance if chance else float("nan"),
        "k": k,
        "queries": int(len(queries)),
    }


def feature_summary(ds: Dataset, field: str | None = None, k: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Per feature: dim, coverage, L2 norms of present rows, mean cosine of random pairs, encoder, fill, and
    (with ``field``) the neighbour agreement on that metadata label."""
    rows = []
    rng = np.random.default_rng(seed)
    for name, f in ds.features.items():
        mask = np.asarray(f.mask, dtype=bool)
        present = np.asarray(f.values)[mask]
        norms = np.linalg.norm(present, axis=1) if present.size else np.zeros(1)
        pairs = rng.integers(0, max(1, len(present)), size=(2000, 2))
        unit = _unit_rows(present) if present.size else present
        mean_cos = float(np.mean(np.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], axis=1))) if len(present) > 1 else float("nan")
        row = {
            "feature": name,
            "dim": f.dim,
            "present": int(mask.sum()),
            "items": int(mask.size),
            "coverage": float(mask.mean()) if mask.size else 0.0,
            "norm_mean": float(norms.mean()),
            "norm_std": float(norms.std()),
            "norm_min": float(norms.min()),
            "norm_max": float(norms.max()),
            "mean_cosine": mean_cos,
            "encoder": f.provenance.get("encoder", "unknown"),
            "fill": f.provenance.get("fill", "?"),
            "skipped_unreadable": f.provenance.get("skipped_unreadable", 0),
        }
        if field is not None:
            row.update({f"agreement_{key}": value for key, value in neighbour_agreement(ds, name, field, k=k, seed=seed).items()})
        rows.append(row)
    return rows


def project_2d(values: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows: PCA (numpy SVD of the centred, unit-normalised rows) or t-SNE (scikit-learn)."""
    if method not in PROJECTIONS:
        raise ModalRecError(f"projection must be one of {', '.join(PROJECTIONS)}, got '{method}'")
    unit = _unit_rows(np.asarray(values, dtype=np.float64))
    centred = unit - unit.mean(axis=0)
    if method == "pca":
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    from modalrec.data.features.encoders import require

    manifold = require("sklearn.manifold", "inspect", "scikit-learn")
    start = project_2d(values, "pca")
    start = start / (start[:, 0].std() or 1.0) * 1e-4  # the usual PCA initialisation, scaled as t-SNE expects
    return manifold.TSNE(n_components=2, init=start, perplexity=30, random_state=seed, metric="cosine").fit_transform(centred)


def _title(ds: Dataset, item: int, width: int = 38) -> str:
    titles = ds.item_meta.get("title") or ds.item_meta.get("text")
    text = str(titles[item]) if titles is not None and titles[item] else str(ds.item_ids[item])
    return text if len(text) <= width else text[: width - 1] + "…"


def _colour_labels(ds: Dataset, field: str, top: int = 9) -> tuple[list[str], list[str]]:
    """Each item's colour label (its first label among the ``top`` commonest, else 'other') and the legend order."""
    labels = []
    for value in ds.item_meta[field]:
        values = value if isinstance(value, (list, tuple)) else ([] if value is None else [value])
        labels.append([str(v) for v in values])
    counts = Counter(v[0] for v in labels if v)
    legend = [label for label, _ in counts.most_common(top)]
    chosen = [next((x for x in v if x in legend), "other") if v else "other" for v in labels]
    return chosen, [*legend, "other"]


def default_queries(ds: Dataset, count: int) -> list[int]:
    """The ``count`` most interacted items (well known, so their neighbours are easy to judge)."""
    popularity = np.bincount(np.asarray(ds.item), minlength=ds.n_items)
    return np.argsort(-popularity, kind="stable")[:count].tolist()


def plot_features(
    ds: Dataset,
    out: str | Path,
    features: Sequence[str] | None = None,
    color_by: str | None = None,
    method: str = "pca",
    queries: Sequence[int] | None = None,
    k: int = 5,
    seed: int = 0,
) -> Path:
    """One PNG: a 2-D projection per feature coloured by ``color_by``, and under it the ``k`` nearest
    neighbours (titles) of the ``queries`` items in each feature space."""
    from modalrec.data.features.encoders import require

    require("matplotlib", "inspect", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(features or ds.features)
    missing = [n for n in names if n not in ds.features]
    if not names or missing:
        raise ModalRecError(
            f"dataset '{ds.name}' has features {list(ds.features) or '(none)'}; cannot plot {missing or 'nothing'}"
        )
    queries = list(queries) if queries is not None else default_queries(ds, 4)
    if color_by is not None:
        _labels(ds, color_by)  # a clear error for an unknown field
        colours, legend = _colour_labels(ds, color_by)
    fig, axes = plt.subplots(
        2, len(names), figsize=(7.5 * len(names), 11.5), squeeze=False, gridspec_kw={"height_ratios": [3, 2]}
    )
    palette = plt.get_cmap("tab10")
    for column, name in enumerate(names):
        f = ds.features[name]
        mask = np.asarray(f.mask, dtype=bool)
        coords = project_2d(np.asarray(f.values)[mask], method, seed)
        ax = axes[0, column]
        if color_by is None:
            ax.scatter(coords[:, 0], coords[:, 1], s=4, alpha=0.6, color=palette(0), linewidths=0)
        else:
            present_labels = np.array(colours)[mask]
            for index, label in enumerate(legend):
                pick = present_labels == label
                colour = "lightgrey" if label == "other" else palette(index % 10)
                ax.scatter(
                    coords[pick, 0],
                    coords[pick, 1],
                    s=4,
                    alpha=0.7,
                    color=colour,
                    label=f"{label} ({int(pick.sum())})",
                    linewidths=0,
                )
            ax.legend(markerscale=4, fontsize=8, loc="best", title=f"first {color_by}", title_fontsize=8)
        encoder = f.provenance.get("encoder", "unknown encoder")
        ax.set_title(f"{name}: {encoder}, {f.dim}-d, {int(mask.sum())}/{mask.size} items ({method.upper()})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        lines = []
        usable = [q for q in queries if mask[q]]
        for query, row in zip(usable, nearest_neighbours(f.values, mask, usable, k).tolist() if usable else []):
            lines.append(f"{_title(ds, query, 48)}")
            lines.extend(f"    {rank}. {_title(ds, item, 52)}" for rank, item in enumerate(row, start=1))
        text_ax = axes[1, column]
        text_ax.axis("off")
        text_ax.set_title(f"{k} nearest neighbours (cosine) in '{name}'", fontsize=10, loc="left")
        text_ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8, transform=text_ax.transAxes)
    fig.suptitle(f"{ds.name}: item features", fontsize=12)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def image_paths(ds: Dataset, feature: str) -> list[Path | None]:
    """The image file of each item, from the folder and pattern the feature's provenance records."""
    provenance = ds.features[feature].provenance
    folder = provenance.get("image_folder")
    if not folder or not Path(folder).is_dir():
        raise ModalRecError(
            f"feature '{feature}' records no readable image folder ({folder!r}); a contact sheet needs the images"
        )
    pattern = provenance.get("pattern", "{item}.jpg")
    return [Path(folder) / pattern.format(item=raw) for raw in ds.item_ids.tolist()]


def contact_sheet(
    ds: Dataset, feature: str, out: str | Path, queries: Sequence[int] | None = None, k: int = 6, thumb: int = 120
) -> Path:
    """A grid image: each query item's picture, then its ``k`` nearest neighbours' pictures in ``feature``."""
    from modalrec.data.features.encoders import require
    from modalrec.data.features.image import read_image, square_crop

    image_module = require("PIL.Image", "image", "pillow")
    f = ds.features[feature]
    paths = image_paths(ds, feature)
    mask = np.asarray(f.mask, dtype=bool)
    queries = [q for q in (list(queries) if queries is not None else default_queries(ds, 6)) if mask[q]]
    rows = nearest_neighbours(f.values, mask, queries, k)
    sheet = image_module.new("RGB", ((k + 1) * thumb + 10, len(queries) * thumb), "white")
    for r, (query, neighbours) in enumerate(zip(queries, rows.tolist())):
        for c, item in enumerate([query, *neighbours]):
            tile = image_module.fromarray(square_crop(read_image(paths[item]), thumb))
            sheet.paste(tile, (c * thumb + (10 if c else 0), r * thumb))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
