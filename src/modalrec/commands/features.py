"""``modalrec features extract | inspect | import-mmrec``: build, look at and import item features."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modalrec.console import setup_logging
from modalrec.errors import ModalRecError

features_app = typer.Typer(
    help="Build item content features (text, image), look at them, import MMRec features.", no_args_is_help=True
)
console = Console()

EXTRACT_HELP = (
    "key=value settings, e.g. dataset=ml-1m-mm image.size=224 fill=mean; keys: dataset, modalities, fill, device, cache, "
    "progress, text.{encoder,template,batch_size,max_length,allow_download,name}, "
    "image.{encoder,folder,pattern,field,download,size,batch_size,name}"
)


def _report_table(report: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="features")
    for column in ("feature", "encoder", "dim", "present", "missing", "unreadable", "fill", "cache", "items/s", "encode s"):
        table.add_column(column, justify="left" if column in ("feature", "encoder", "fill", "cache") else "right")
    for name, row in report.items():
        rate = row.get("items_per_second")
        table.add_row(
            name,
            row["encoder"],
            str(row["dim"]),
            f"{row['present']:,}/{row['items']:,}",
            f"{row['missing']:,}",
            str(row["skipped_unreadable"]),
            row["fill"],
            "hit" if row["cache_hit"] else "built",
            "-" if rate is None else f"{rate:.1f}",
            f"{row['encode_seconds']:.1f}",
        )
    return table


@features_app.command("extract")
def extract(
    settings: Annotated[list[str] | None, typer.Argument(help=EXTRACT_HELP)] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Save the dataset with its features here (train on it with dataset=<out>). "
            "Default for multimodal names (ml-1m-mm, ...): their processed copy."
        ),
    ] = None,
) -> None:
    """Encode a dataset's item text and/or images (cached by encoder + inputs hash) and save it with the features."""
    from modalrec.config import apply_values, parse_overrides
    from modalrec.data.download import cache_dir
    from modalrec.data.features.config import FeatureConfig
    from modalrec.data.features.datasets import (
        RECIPES,
        build_features,
        build_named,
        recipe_config,
    )
    from modalrec.data.registry import load_source, processed_dir
    from modalrec.data.storage import save_dataset

    setup_logging()
    values = parse_overrides(settings or [])
    name = values.get("dataset", {}).get("name") if isinstance(values.get("dataset"), dict) else None
    if not name:
        raise ModalRecError("name the dataset: modalrec features extract dataset=<name or saved folder> [key=value ...]")
    cfg = recipe_config(name) if name in RECIPES else FeatureConfig()
    apply_values(cfg, values)
    home = cache_dir()
    if name in RECIPES:
        ds, report = build_named(name, cfg, home, progress=cfg.progress)
        target = out or processed_dir(name, home)
    else:
        if out is None:
            raise ModalRecError(
                f"'{name}' has no built-in feature recipe; pass --out <folder> to save the dataset with its features"
            )
        ds = load_source(name)
        if not cfg.modalities:
            cfg.modalities = ["text"] + (["image"] if cfg.image.folder or cfg.image.field else [])
        ds, report = build_features(ds, cfg, home)
        target = out
    save_dataset(ds, target)
    console.print(_report_table(report))
    for feature, row in report.items():
        for skipped in row.get("skipped", [])[:10]:
            console.print(
                f"[yellow]{escape(feature)}: skipped item {escape(skipped['item'])}[/yellow] {escape(skipped['input'])} "
                f"({escape(skipped['reason'])})",
                highlight=False,
            )
    console.print(f"saved {ds.name} with features {list(ds.features)} to {target}")


@features_app.command("inspect")
def inspect(
    name: Annotated[str, typer.Argument(help="A named dataset or a saved dataset folder with features.")],
    out: Annotated[Path | None, typer.Option(help="Write a PNG: 2-D projection per feature + nearest neighbours.")] = None,
    color_by: Annotated[str, typer.Option(help="Item field that colours the map and scores neighbour agreement.")] = "categories",
    method: Annotated[str, typer.Option(help="pca or tsne (t-SNE needs scikit-learn).")] = "pca",
    items: Annotated[
        str | None, typer.Option(help="Raw item ids whose neighbours to show, comma-separated (default: the 4 most popular).")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Neighbours per item.")] = 5,
    contact_sheet: Annotated[
        Path | None, typer.Option(help="Also write the image neighbours as a picture grid (keep licensed images local).")
    ] = None,
) -> None:
    """Coverage, norms and neighbour agreement of every feature; optionally a PNG and an image contact sheet."""
    from modalrec.data.features import inspect as look
    from modalrec.data.registry import load_source

    ds = load_source(name)
    if not ds.features:
        raise ModalRecError(
            f"dataset '{ds.name}' has no features; build them with `modalrec features extract dataset={name} ...`"
        )
    field = color_by if color_by in ds.item_meta else None
    rows = look.feature_summary(ds, field=field)
    table = Table(title=f"{ds.name}: item features")
    columns = ["feature", "encoder", "dim", "coverage", "norm mean±std", "mean cos", "unreadable", "fill"]
    if field:
        columns.append(f"kNN shares {field} (random)")
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [
            row["feature"],
            row["encoder"],
            str(row["dim"]),
            f"{row['present']:,}/{row['items']:,} ({row['coverage']:.1%})",
            f"{row['norm_mean']:.3f}±{row['norm_std']:.3f}",
            f"{row['mean_cosine']:.3f}",
            str(row["skipped_unreadable"]),
            row["fill"],
        ]
        if field:
            cells.append(
                f"{row['agreement_knn_share']:.1%} ({row['agreement_random_share']:.1%}), lift {row['agreement_lift']:.2f}"
            )
        table.add_row(*cells)
    console.print(table)
    queries = None
    if items:
        try:
            queries = [ds.item_index(i.strip()) for i in items.split(",") if i.strip()]
        except KeyError as exc:
            raise ModalRecError(f"unknown item id {exc} in dataset '{ds.name}'") from None
    if out is not None:
        console.print(f"wrote {look.plot_features(ds, out, color_by=field, method=method, queries=queries, k=k)}")
    if contact_sheet is not None:
        images = [n for n, f in ds.features.items() if f.provenance.get("modality") == "image"]
        if not images:
            raise ModalRecError(f"dataset '{ds.name}' has no image feature for a contact sheet")
        console.print(f"wrote {look.contact_sheet(ds, images[0], contact_sheet, queries=queries, k=k)}")


@features_app.command("import-mmrec")
def import_mmrec(
    folder: Annotated[Path, typer.Argument(help="An MMRec dataset folder (<name>.inter, image_feat.npy, text_feat.npy).")],
    out: Annotated[Path, typer.Option(help="Where to save the dataset (train on it with dataset=<out>).")],
) -> None:
    """Import an MMRec-format folder with its features; their encoder is recorded as unknown."""
    from modalrec.data.sources.mmrec import read_mmrec
    from modalrec.data.storage import save_dataset

    ds = read_mmrec(folder)
    save_dataset(ds, out)
    console.print(ds.describe())
    console.print(f"saved to {out} (feature provenance: encoder unknown, as MMRec files do not record it)")
